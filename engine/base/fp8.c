/* fp8.c — float8_e4m3fn conversions (see fp8.h). Both directions work on the bits of an
 * IEEE f32, so the results do not depend on the FPU's rounding mode. */
#include "engine/base/fp8.h"

#include <string.h>

float fp8_e4m3_to_f32(uint8_t c)
{
    uint32_t sign = (uint32_t)(c & 0x80) << 24, e = (c >> 3) & 0xf, m = c & 7, u;
    float f;

    if ((c & 0x7f) == 0x7f) {
        u = sign | 0x7fc00000u;                     /* quiet NaN */
    } else if (e == 0) {
        f = (float)m * (1.0f / 512.0f);             /* subnormal: m * 2^-9, exact */
        return sign ? -f : f;
    } else {
        u = sign | ((e + 127 - 7) << 23) | (m << 20);   /* 2^(e-7) * (1 + m/8) */
    }
    memcpy(&f, &u, sizeof f);
    return f;
}

/* x >> s rounded to nearest, ties to even (s in 1..31). */
static uint32_t shift_rne(uint32_t x, int s)
{
    uint32_t q = x >> s, rest = x & ((1u << s) - 1), half = 1u << (s - 1);

    return q + (rest > half || (rest == half && (q & 1)));
}

uint8_t fp8_e4m3_from_f32(float f)
{
    uint32_t u, abs, sign;
    int e;

    memcpy(&u, &f, sizeof u);
    sign = (u >> 24) & 0x80;
    abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u)
        return (uint8_t)(sign | 0x7f);
    if (abs >= 0x43e00000u)                         /* >= 448 (and infinity): saturate */
        return (uint8_t)(sign | 0x7e);
    e = (int)(abs >> 23) - 127;
    if (e < -6) {
        /* below the smallest normal 2^-6: a count of 2^-9 steps, 0..8 (8 is 2^-6, code 0x08,
         * which is where the normals start: the carry lands on the right code) */
        uint32_t full = (abs & 0x7fffffu) | 0x800000u;
        int s = 14 - e;                             /* full * 2^(e-23) / 2^-9 */

        if (e < -127 + 1 || s > 25)                 /* f32 subnormals and tiny: below 2^-10 */
            return (uint8_t)sign;
        return (uint8_t)(sign | shift_rne(full, s));
    }
    /* normal: rebias the exponent to 7 and keep 3 of the 23 mantissa bits; a mantissa carry
     * moves into the exponent, which is what rounding up to the next binade means */
    return (uint8_t)(sign | shift_rne(((uint32_t)(e + 7) << 23) | (abs & 0x7fffffu), 20));
}

void fp8_e4m3_table(float table[256])
{
    for (int c = 0; c < 256; c++)
        table[c] = fp8_e4m3_to_f32((uint8_t)c);
}

void fp8_e4m3_quantize(uint8_t *dst, const float *src, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = fp8_e4m3_from_f32(src[i] / scale);
}
