/* fp8.h — float8_e4m3fn (OCP FP8 "E4M3", torch.float8_e4m3fn), the FP8 format of published
 * checkpoints (weights) and of osprey's fp8 KV cache: 1 sign bit, 4 exponent bits (bias 7),
 * 3 mantissa bits, subnormals, no infinities; 0x7f and 0xff are NaN; the largest finite
 * value is 448. Pure C: a leaf, like the rest of engine/base/. */
#ifndef OSPREY_FP8_H
#define OSPREY_FP8_H

#include <stddef.h>
#include <stdint.h>

#define FP8_E4M3_MAX 448.0f

/* The value of one code: every one of the 256 is defined (0x7f/0xff give NaN). */
float fp8_e4m3_to_f32(uint8_t c);

/* f32 → e4m3 with round-to-nearest-even. Magnitudes at or beyond 448 (infinities too)
 * saturate to ±448, as vLLM clamps before its casts; NaN gives 0x7f with f's sign. */
uint8_t fp8_e4m3_from_f32(float f);

/* All 256 decoded values, table[c] == fp8_e4m3_to_f32(c): for loops that decode many
 * elements (the CPU matmul and attention keep one on the stack). */
void fp8_e4m3_table(float table[256]);

/* dst[i] = fp8(src[i] / scale) for i < n; scale > 0. */
void fp8_e4m3_quantize(uint8_t *dst, const float *src, size_t n, float scale);

#endif
