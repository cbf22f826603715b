/* size.h — byte sizes as people write them ("512MiB", "1.5G", "8GB") and back: the one
 * parser every command uses (config/ for `osprey serve`, the offline commands through it),
 * so that "8G" is the same number of bytes wherever it is typed. */
#ifndef OSPREY_SIZE_H
#define OSPREY_SIZE_H

#include <stddef.h>

/* Digits, an optional fraction of up to 6 digits, optional spaces, an optional unit, case
 * ignored: B; K, M, G, T and KiB … TiB are binary (as systemd reads MemoryMax=), KB, MB,
 * GB, TB decimal. Exact integer arithmetic ("1.5G" is 1610612736). Returns 0 with *out
 * set, -EINVAL (not a size) or -ERANGE (more than size_t holds). */
int size_parse(const char *s, size_t *out);

/* "1GiB" when bytes is a whole number of KiB/MiB/GiB/TiB, else plain bytes ("1000"):
 * text size_parse reads back as the same value. */
void size_format(size_t bytes, char *buf, size_t n);

#endif
