/* mxfp4.h — MXFP4 (OCP microscaling FP4) as gpt-oss's checkpoints publish their experts:
 * 32 values per block, each a 4-bit e2m1 code (sign, 2 exponent bits bias 1, 1 mantissa bit:
 * 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives), two codes a byte, the even element in the
 * low nibble; one e8m0 byte a block, the scale 2^(byte - 127). A weight that transformers
 * holds as [E, in, out] (gpt-oss's input-major experts) is stored output-major: *_blocks
 * [E, out, in / 32, 16] and *_scales [E, out, in / 32]. Loading dequantizes them into the
 * input-major float layout the bf16 checkpoints publish (engine/model/model_experts.c);
 * gen-model writes them (engine/model/gen_model.c). */
#ifndef OSPREY_MXFP4_H
#define OSPREY_MXFP4_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/util.h"

#define MXFP4_BLOCK 32          /* values per scale */
#define MXFP4_BLOCK_BYTES 16    /* packed bytes per block */

/* The value of the 4-bit e2m1 code c (0..15). */
float mxfp4_e2m1(unsigned c);

/* The e8m0 scale byte s as a float: 2^(s - 127) (255, NaN in OCP's spec, read as 2^128 = inf
 * as transformers' ldexp does). */
float mxfp4_scale(uint8_t s);

/* Dequantizes one expert's weight: blocks [out, in / 32, 16] and scales [out, in / 32] into
 * dst [in, out] (input-major, transposed) in dt (F32, BF16 or F16; every e2m1 value times a
 * power of two is exact in each but where it under- or overflows f16). */
void mxfp4_dequantize(void *dst, enum dtype dt, const uint8_t *blocks, const uint8_t *scales,
                      int64_t out, int64_t in);

/* Quantizing, as the reference quantizer (triton_kernels' downcast_to_mxfp, its default
 * rounding) does: the block's scale is amax / 6 rounded up to a power of two (so that no
 * value clips), an all-zero block gets the smallest (byte 0); each value divided by it is
 * rounded to the nearest e2m1, ties to the even code. */
uint8_t mxfp4_scale_for(float amax);
uint8_t mxfp4_e2m1_from(float x);

#endif
