/* fuzz.h — what every libFuzzer harness in tests/fuzz/ shares: splitting one input into
 * two files at its first NUL, copying bytes into a NUL-terminated string, finding the fixed
 * data the harnesses load once (tests/fuzz/data/), checking UTF-8, and silencing the log. Header-only so
 * each harness stays one file plus this. */
#ifndef OSPREY_FUZZ_H
#define OSPREY_FUZZ_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "engine/base/log.h"
#include "engine/base/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A property the harness checks on what a parser accepted; failing it is a crash that
 * libFuzzer records, with the property on stderr. */
#define FUZZ_CHECK(x, ...) do { if (!(x)) { fprintf(stderr, "fuzz: %s:%d: %s failed: ", \
        __FILE__, __LINE__, #x); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); abort(); } } while (0)

/* Bytes up to the first NUL are the first file, the rest the second; with no NUL there is
 * no second file (*b NULL). Neither is NUL-terminated: the parsers take lengths. */
static inline void fuzz_split(const uint8_t *data, size_t size, const char **a, size_t *alen,
                              const char **b, size_t *blen)
{
    const uint8_t *nul = memchr(data, 0, size);

    *a = (const char *)data;
    *alen = nul ? (size_t)(nul - data) : size;
    *b = nul ? (const char *)nul + 1 : NULL;
    *blen = nul ? size - *alen - 1 : 0;
}

/* A malloc'd NUL-terminated copy (an inner NUL simply ends the string early). Aborts on
 * out of memory: that is the harness's failure, not the parser's. */
static inline char *fuzz_strndup(const char *s, size_t n)
{
    char *c = malloc(n + 1);

    if (!c)
        abort();
    memcpy(c, s, n);
    c[n] = 0;
    return c;
}

/* The whole of a committed file (NUL-terminated), `path` relative to the repository root:
 * the working directory (make runs the harnesses there) or $OSPREY_ROOT. Aborts when
 * missing: a harness without its fixed data must not pass silently. */
static inline char *fuzz_read(const char *path, size_t *len)
{
    const char *root = getenv("OSPREY_ROOT");
    char full[4096], err[ERR_LEN];
    char *out;

    snprintf(full, sizeof full, "%s/%s", root ? root : ".", path);
    if (read_file(full, &out, len, err) != 0) {
        fprintf(stderr, "fuzz: %s (run from the repository root or set OSPREY_ROOT)\n", err);
        abort();
    }
    return out;
}

/* Bytes of s[0..len) that are well-formed UTF-8 from the start (no overlong forms,
 * surrogates or code points past U+10FFFF), by utf8proc: independent of the tokenizer's own
 * decoder. */
static inline size_t fuzz_utf8_prefix(const char *s, size_t len)
{
    utf8proc_int32_t c;
    size_t i = 0;

    while (i < len) {
        utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                              (utf8proc_ssize_t)(len - i), &c);
        if (n <= 0)
            break;
        i += (size_t)n;
    }
    return i;
}

static inline bool fuzz_utf8_valid(const char *s, size_t len)
{
    return fuzz_utf8_prefix(s, len) == len;
}

/* Parsers log what they reject; a fuzzer would print that millions of times. */
static inline void fuzz_quiet(void)
{
    log_level = 0;
}

#endif
