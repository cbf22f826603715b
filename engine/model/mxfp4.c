/* mxfp4.c — MXFP4 codes and scales to floats and back (engine/model/mxfp4.h). */
#include "engine/model/mxfp4.h"

#include <math.h>

float mxfp4_e2m1(unsigned c)
{
    /* exponent field e (bits 2..1), mantissa m (bit 0): subnormal 0.5 * m when e is 0, else
     * 2^(e - 1) * (1 + m / 2) */
    unsigned e = c >> 1 & 3, m = c & 1;
    float v = e ? ldexpf(1.0f + 0.5f * (float)m, (int)e - 1) : 0.5f * (float)m;

    return c & 8 ? -v : v;
}

float mxfp4_scale(uint8_t s)
{
    return ldexpf(1.0f, (int)s - 127);
}

static void store(void *dst, enum dtype dt, size_t i, float v)
{
    if (dt == DT_F32)
        ((float *)dst)[i] = v;
    else if (dt == DT_BF16)
        ((uint16_t *)dst)[i] = f32_to_bf16(v);
    else
        ((uint16_t *)dst)[i] = f32_to_f16(v);
}

void mxfp4_dequantize(void *dst, enum dtype dt, const uint8_t *blocks, const uint8_t *scales,
                      int64_t out, int64_t in)
{
    int64_t groups = in / MXFP4_BLOCK;
    float lut[16];

    for (unsigned c = 0; c < 16; c++)
        lut[c] = mxfp4_e2m1(c);
    for (int64_t r = 0; r < out; r++)
        for (int64_t g = 0; g < groups; g++) {
            const uint8_t *b = blocks + (size_t)(r * groups + g) * MXFP4_BLOCK_BYTES;
            float s = mxfp4_scale(scales[r * groups + g]);
            int64_t k0 = g * MXFP4_BLOCK;

            for (int j = 0; j < MXFP4_BLOCK_BYTES; j++) {
                store(dst, dt, (size_t)(k0 + 2 * j) * out + r, lut[b[j] & 15] * s);
                store(dst, dt, (size_t)(k0 + 2 * j + 1) * out + r, lut[b[j] >> 4] * s);
            }
        }
}

uint8_t mxfp4_scale_for(float amax)
{
    int e;

    if (!(amax > 0) || !isfinite(amax))
        return 0;
    /* the smallest power of two p with amax / p <= 6: frexp gives amax / 6 = f * 2^e, f in
     * [0.5, 1); p = 2^e unless f is exactly 0.5 (then 2^(e - 1) is exact) */
    float f = frexpf(amax / 6.0f, &e);

    if (f == 0.5f)
        e--;
    e += 127;
    return (uint8_t)(e < 0 ? 0 : e > 254 ? 254 : e);
}

uint8_t mxfp4_e2m1_from(float x)
{
    float a = fabsf(x);
    unsigned best = 0;

    /* nearest of the eight magnitudes; on a tie the lower code wins when even, else the next */
    for (unsigned c = 1; c < 8; c++) {
        float d = fabsf(a - mxfp4_e2m1(c)), db = fabsf(a - mxfp4_e2m1(best));

        if (d < db || (d == db && (best & 1)))
            best = c;
    }
    if (isnan(x))
        best = 7;
    return (uint8_t)(best | (signbit(x) ? 8 : 0));
}
