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

/* Rows of `out` taken together: each block's 32 values are written along dst's rows
 * (contiguous in r) rather than down its columns, while the tile's bytes of one group stay
 * in L1 (64 rows of 16 bytes); each row's 16 values at its block's scale are converted to dt
 * once, so the inner loop is a table look-up. */
#define ROW_TILE 64

void mxfp4_dequantize(void *dst, enum dtype dt, const uint8_t *blocks, const uint8_t *scales,
                      int64_t out, int64_t in)
{
    int64_t groups = in / MXFP4_BLOCK;
    float lut[16];
    union { float f[ROW_TILE][16]; uint16_t h[ROW_TILE][16]; } t;

    for (unsigned c = 0; c < 16; c++)
        lut[c] = mxfp4_e2m1(c);
    for (int64_t r0 = 0; r0 < out; r0 += ROW_TILE) {
        int64_t nr = out - r0 < ROW_TILE ? out - r0 : ROW_TILE;

        for (int64_t g = 0; g < groups; g++) {
            for (int64_t i = 0; i < nr; i++) {
                float s = mxfp4_scale(scales[(r0 + i) * groups + g]);

                for (int c = 0; c < 16; c++) {
                    if (dt == DT_F32)
                        t.f[i][c] = lut[c] * s;
                    else
                        t.h[i][c] = dt == DT_BF16 ? f32_to_bf16(lut[c] * s) : f32_to_f16(lut[c] * s);
                }
            }
            for (int k = 0; k < MXFP4_BLOCK; k++) {
                /* element k of the block: byte k / 2, the low nibble for even k */
                const uint8_t *b = blocks + (r0 * groups + g) * MXFP4_BLOCK_BYTES + k / 2;
                size_t row = (size_t)(g * MXFP4_BLOCK + k) * out + r0;
                size_t stride = (size_t)groups * MXFP4_BLOCK_BYTES;
                int shift = k & 1 ? 4 : 0;

                if (dt == DT_F32)
                    for (int64_t i = 0; i < nr; i++)
                        ((float *)dst)[row + i] = t.f[i][b[i * stride] >> shift & 15];
                else
                    for (int64_t i = 0; i < nr; i++)
                        ((uint16_t *)dst)[row + i] = t.h[i][b[i * stride] >> shift & 15];
            }
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
