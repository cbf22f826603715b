/* gpu_test.h — the small check framework of build/osprey-gpu-tests and the helpers every
 * GPU test shares: the CPU and CUDA backends side by side, buffers that live on both
 * (f32 on the CPU, bf16 or f32 on the GPU), seeded random data rounded to bf16 so that
 * both backends see identical inputs, NaN poisoning, and llm.c-style comparisons
 * (|got - ref| <= atol + rtol * |ref|, with max abs error and nmse reported). Each test
 * file defines cases; gpu_main.c lists them, runs them and prints the table. */
#ifndef OSPREY_GPU_TEST_H
#define OSPREY_GPU_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/backend.h"
#include "scheduler/batch.h"

/* One case's record: the first failure message, and the worst comparison seen. */
struct gt {
    const char *name;
    int checks, failures;
    char first_failure[256];
    double max_abs, nmse;     /* worst over the case's comparisons */
    char note[160];           /* what the case covered, printed in the table */
    struct backend *cpu, *gpu;
    uint64_t rng;
};

struct gt_case {
    const char *name;
    void (*fn)(struct gt *t);
};

/* Records a check; on failure keeps the first message. Returns cond. */
bool gt_check(struct gt *t, bool cond, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void gt_note(struct gt *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* rm -rf of the path (a case's temporary model folder); a failure is a failed check. */
void gt_remove(struct gt *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Compares n values: every |got - ref| <= atol + rtol * |ref| (NaN fails), and nmse =
 * Σ(got - ref)² / Σ ref² <= max_nmse. Records max abs error and nmse. Returns true on pass. */
bool gt_compare(struct gt *t, const char *what, const float *got, const float *ref, size_t n,
                double atol, double rtol, double max_nmse);

/* Creates the CPU and CUDA backends with the same options (t->cpu, t->gpu); false (and a
 * failure) when either fails. gt_backends_free destroys them (also done after each case). */
bool gt_backends(struct gt *t, const struct backend_options *o);
void gt_backends_free(struct gt *t);

/* Seeded random numbers (splitmix64). */
uint64_t gt_rand_u64(uint64_t *s);
float gt_randf(uint64_t *s, float lo, float hi);      /* uniform, rounded to bf16 */
int gt_randint(uint64_t *s, int n);                    /* [0, n) */
void gt_fill(uint64_t *s, float *x, size_t n, float lo, float hi);
/* RoPE inputs: inv_freq[D / 2] = theta^(-2i/D); n positions, every third up to 128k (where
 * the angle's f32 product matters), the others below 4096, the first 0. */
void gt_inv_freq(float *f, int D, double theta);
void gt_positions(uint64_t *s, int32_t *pos, int n);

/* A buffer of n elements on both backends: f32 on the CPU; bf16 (or f32 when f32 is set)
 * on the GPU. */
struct dbuf {
    void *cpu, *gpu;
    size_t n;
    bool f32;
};

bool dbuf_create(struct gt *t, struct dbuf *d, size_t n, bool f32);
void dbuf_free(struct gt *t, struct dbuf *d);
bool dbuf_set(struct gt *t, struct dbuf *d, const float *host);   /* same values on both */
bool dbuf_poison(struct gt *t, struct dbuf *d);                   /* NaN on both */
bool dbuf_get(struct gt *t, const struct dbuf *d, float *cpu_out, float *gpu_out);  /* either may be NULL */

/* Raw bytes on both backends (ids, positions, slot mappings): the same bytes on each. */
struct rbuf {
    void *cpu, *gpu;
    size_t bytes;
};

bool rbuf_create(struct gt *t, struct rbuf *r, const void *host, size_t bytes);
void rbuf_free(struct gt *t, struct rbuf *r);

/* A weight from host f32 values, stored as `dtype` in a tensor_ref and uploaded to both
 * backends (bf16 values so that both compute on the same numbers). */
struct dweight {
    struct bk_weight cpu, gpu;
    void *blob;                /* the tensor's bytes */
};

bool dweight_create(struct gt *t, struct dweight *w, const float *host, int rows, int cols,
                    enum dtype dtype);
void dweight_free(struct gt *t, struct dweight *w);

/* Stages b (and rows, may be NULL) on both backends. */
bool gt_stage(struct gt *t, const struct step_batch *b, const struct sample_row *rows,
              struct bk_batch *cpu, struct bk_batch *gpu);

/* A random-weight model of go (out_dir set here) written into a new folder made from the
 * mkdtemp template dir, and opened into m. False (a failed check, the folder removed again)
 * when any of it fails; else the caller closes m and removes dir (gt_remove). */
struct model;
struct gen_model_opts;
bool gt_gen_model(struct gt *t, char *dir, struct gen_model_opts *go, struct model *m);

/* The median of v[n] (sorts v). */
double gt_median(double *v, int n);

/* The cases, one function per test file. */
extern const struct gt_case gt_cases_cache_update[], gt_cases_attention[], gt_cases_rope[],
    gt_cases_rmsnorm[], gt_cases_embedding[], gt_cases_matmul[], gt_cases_activation[],
    gt_cases_sampling[], gt_cases_graph[], gt_cases_runner[], gt_cases_kv_groups[],
    gt_cases_scale[], gt_cases_fp8_cache[], gt_cases_fp8_gemm[],
    gt_cases_moe[], gt_cases_tp[], gt_cases_runner_masks[], gt_cases_pieces[];

/* bench.c: prints the kernel benchmarks (never asserts). Returns 0. */
int gt_bench(void);
/* bench_moe.c: the MoE block's grouped GEMMs at Qwen3-30B-A3B's expert shapes (--bench-moe). */
int gt_bench_moe(void);
/* Decode-shaped cuBLAS products against cuBLASLt's other candidates (bench_gemm.c). */
void gt_bench_gemm(void);
/* llama-3.1-8b's products through the backend, fp8 against bf16 (bench_gemm.c). */
void gt_bench_fp8_gemm(void);
/* The bf16 decode products of three models, cuBLAS against the backend's GEMV (--bench-gemv). */
void gt_bench_gemv(void);

#endif
