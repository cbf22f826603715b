/* size.c — byte sizes from text and back (see size.h). */
#include "engine/base/size.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <strings.h>

static const struct { const char *name; uint64_t mult; } units[] = {
    { "", 1 }, { "b", 1 },
    /* A bare letter is binary, as systemd reads MemoryMax=; "KB" is decimal, "KiB" binary. */
    { "k", 1ull << 10 }, { "kb", 1000ull }, { "kib", 1ull << 10 },
    { "m", 1ull << 20 }, { "mb", 1000000ull }, { "mib", 1ull << 20 },
    { "g", 1ull << 30 }, { "gb", 1000000000ull }, { "gib", 1ull << 30 },
    { "t", 1ull << 40 }, { "tb", 1000000000000ull }, { "tib", 1ull << 40 },
};

int size_parse(const char *s, size_t *out)
{
    uint64_t whole = 0, frac = 0, den = 1, mult = 0, bytes;
    const char *p = s;

    if (!isdigit((unsigned char)*p))
        return -EINVAL;
    for (; isdigit((unsigned char)*p); p++)
        if (__builtin_mul_overflow(whole, 10, &whole) || __builtin_add_overflow(whole, (uint64_t)(*p - '0'), &whole))
            return -ERANGE;
    if (*p == '.') {
        if (!isdigit((unsigned char)*++p))
            return -EINVAL;
        for (; isdigit((unsigned char)*p); p++) {
            if (den == 1000000)
                return -EINVAL;
            frac = frac * 10 + (uint64_t)(*p - '0');
            den *= 10;
        }
    }
    while (*p == ' ')
        p++;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcasecmp(p, units[i].name))
            mult = units[i].mult;
    if (!mult || (den > 1 && mult == 1))  /* unknown unit, or a fraction of a byte */
        return -EINVAL;
    /* frac < 10^6 and mult <= 2^40: the product fits in 64 bits. */
    if (__builtin_mul_overflow(whole, mult, &bytes) || __builtin_add_overflow(bytes, frac * mult / den, &bytes)
        || bytes > SIZE_MAX)
        return -ERANGE;
    *out = (size_t)bytes;
    return 0;
}

void size_format(size_t bytes, char *buf, size_t n)
{
    static const char *const names[] = { "KiB", "MiB", "GiB", "TiB" };
    int unit = -1;

    for (int k = 0; k < 4 && bytes && bytes % ((size_t)1 << (10 * (k + 1))) == 0; k++)
        unit = k;
    if (unit < 0)
        snprintf(buf, n, "%zu", bytes);
    else
        snprintf(buf, n, "%zu%s", bytes >> (10 * (unit + 1)), names[unit]);
}
