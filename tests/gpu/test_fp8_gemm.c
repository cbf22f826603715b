/* test_fp8_gemm.c — the CUDA backend's fp8 linear layers against the CPU backend's W8A16
 * reference: block-wise (128x128), per-channel and per-tensor weights, fused parts, with and
 * without a bias, 1 to 300 rows; static activation scales; the W8A16 fallback kernel alone;
 * the LM head (f32 out); each of the decode GEMV's kernels (warp, tile) up to 8 rows;
 * graph replay bit for bit equal to the eager product; and the absmax op.
 *
 * Tolerance. Both backends multiply the same e4m3 weights by the same scales; only the CUDA
 * fast path quantizes the activations, to e4m3 per token (or per 128-wide k-block) with
 * scale absmax / 448. Round to nearest with 3 mantissa bits moves each activation by at
 * most 2^-4 of itself, so an output's error is a sum of cols independent terms whose RMS
 * is at most 2^-4 of the output's own RMS: nmse <= 2^-8 (3.9e-3; about 1e-3 is typical,
 * the bound is taken), and an element lies within 5 of those standard deviations,
 * 5 * 2^-4 * sd = 0.31 sd, of the reference. The W8A16 kernel does not quantize the
 * activations: it meets the bf16 product's bounds (one bf16 rounding). */
#ifdef OSPREY_CUDA
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/fp8.h"
#include "engine/base/util.h"
#include "engine/cuda/backend_cuda.h"   /* backend_cuda_fp8_counts */
#include "tests/gpu/gpu_test.h"

enum scheme { SC_BLOCK, SC_CHANNEL, SC_TENSOR, SC_BLOCK64 };

static const char *const scheme_names[] = { "block", "channel", "tensor", "block64" };

static bool backends(struct gt *t, int max_tokens)
{
    struct backend_options o = { .max_tokens = max_tokens, .max_reqs = 8,
                                 .max_blocks_per_req = 8, .num_kv_groups = 1, .vocab_size = 16 };
    return gt_backends(t, &o);
}

/* An fp8 weight made of parts of prows[i] rows each, quantized from w as a checkpoint of
 * the scheme would hold it (scales as quant.c binds them), uploaded to both backends. */
struct fp8w {
    struct bk_weight cpu, gpu;
    uint8_t *data[4];
    float *scales[4];
    struct tensor_ref scale_ref[4];
    float in_scale[4];                /* static activation scales, per part */
    struct tensor_ref in_ref[4];
};

static bool fp8_weight(struct gt *t, struct fp8w *fw, const float *w, int cols, const int *prows,
                       int nparts, enum scheme sc, const float *in_scale)
{
    struct tensor_ref parts[4];
    char err[ERR_LEN] = "";
    int row0 = 0, blk = sc == SC_BLOCK64 ? 64 : 128;

    memset(fw, 0, sizeof *fw);
    for (int p = 0; p < nparts; p++) {
        int pr = prows[p], sr, scols;
        const float *src = w + (size_t)row0 * cols;

        if (sc == SC_BLOCK || sc == SC_BLOCK64)
            sr = (pr + blk - 1) / blk, scols = (cols + blk - 1) / blk;
        else if (sc == SC_CHANNEL)
            sr = pr, scols = 1;
        else
            sr = 1, scols = 1;
        fw->data[p] = malloc((size_t)pr * cols);
        fw->scales[p] = malloc((size_t)sr * scols * sizeof(float));
        if (!gt_check(t, fw->data[p] && fw->scales[p], "out of host memory"))
            return false;
        for (int i = 0; i < sr * scols; i++) {
            int rb = i / scols, cb = i % scols;
            int r0 = sc == SC_TENSOR ? 0 : sc == SC_CHANNEL ? rb : rb * blk;
            int r1 = sc == SC_TENSOR ? pr : sc == SC_CHANNEL ? rb + 1 : MIN(pr, r0 + blk);
            int c0 = sc == SC_BLOCK || sc == SC_BLOCK64 ? cb * blk : 0;
            int c1 = sc == SC_BLOCK || sc == SC_BLOCK64 ? MIN(cols, c0 + blk) : cols;
            float amax = 0.0f;

            for (int r = r0; r < r1; r++)
                for (int c = c0; c < c1; c++)
                    amax = fmaxf(amax, fabsf(src[(size_t)r * cols + c]));
            fw->scales[p][i] = amax > 0.0f ? amax / FP8_E4M3_MAX : 1.0f;
            for (int r = r0; r < r1; r++)
                for (int c = c0; c < c1; c++)
                    fw->data[p][(size_t)r * cols + c] =
                        fp8_e4m3_from_f32(src[(size_t)r * cols + c] / fw->scales[p][i]);
        }
        fw->scale_ref[p] = (struct tensor_ref){ .name = "fp8.weight_scale", .data = fw->scales[p],
                                                .dtype = DT_F32, .ndim = 2, .shape = { sr, scols },
                                                .nbytes = (size_t)sr * scols * sizeof(float) };
        parts[p] = (struct tensor_ref){ .name = "fp8.weight", .data = fw->data[p],
                                        .dtype = DT_F8_E4M3, .ndim = 2, .shape = { pr, cols },
                                        .nbytes = (size_t)pr * cols, .scale = &fw->scale_ref[p] };
        if (in_scale) {   /* a static activation scheme's input_scale */
            fw->in_scale[p] = in_scale[p];
            fw->in_ref[p] = (struct tensor_ref){ .name = "fp8.input_scale", .data = &fw->in_scale[p],
                                                 .dtype = DT_F32, .ndim = 0, .nbytes = 4 };
            parts[p].input_scale = &fw->in_ref[p];
        }
        parts[p].scale_block[0] = sc == SC_TENSOR ? pr : sc == SC_CHANNEL ? 1 : blk;
        parts[p].scale_block[1] = sc == SC_BLOCK || sc == SC_BLOCK64 ? blk : cols;
        row0 += pr;
    }
    return gt_check(t, t->cpu->ops->upload_weight(t->cpu, &fw->cpu, parts, nparts, err) == 0,
                    "cpu upload_weight: %s", err) &&
           gt_check(t, t->gpu->ops->upload_weight(t->gpu, &fw->gpu, parts, nparts, err) == 0,
                    "cuda upload_weight: %s", err) &&
           gt_check(t, fw->gpu.dtype == DT_F8_E4M3 && fw->gpu.rows == row0 && fw->gpu.cols == cols,
                    "cuda weight is [%d, %d] %s, expected [%d, %d] F8_E4M3", fw->gpu.rows,
                    fw->gpu.cols, dtype_name(fw->gpu.dtype), row0, cols);
}

static void fp8_weight_free(struct gt *t, struct fp8w *fw)
{
    if (fw->cpu.data)
        t->cpu->ops->free_weight(t->cpu, &fw->cpu);
    if (fw->gpu.data)
        t->gpu->ops->free_weight(t->gpu, &fw->gpu);
    for (int p = 0; p < 4; p++) {
        free(fw->data[p]);
        free(fw->scales[p]);
    }
}

/* A bf16 bias on both backends. */
static bool bias_weight(struct gt *t, struct bk_weight *cb, struct bk_weight *gb, uint16_t *blob,
                        const float *b, int rows)
{
    struct tensor_ref r = { .name = "bias", .data = blob, .dtype = DT_BF16, .ndim = 1,
                            .shape = { rows }, .nbytes = (size_t)rows * 2 };
    char err[ERR_LEN] = "";

    for (int i = 0; i < rows; i++)
        blob[i] = f32_to_bf16(b[i]);
    return gt_check(t, t->cpu->ops->upload_weight(t->cpu, cb, &r, 1, err) == 0, "cpu bias: %s", err) &&
           gt_check(t, t->gpu->ops->upload_weight(t->gpu, gb, &r, 1, err) == 0, "cuda bias: %s", err);
}

struct product {
    int n, cols, nparts;
    int prows[4];
    enum scheme sc;
    bool bias, lm_head;
    bool w8a16;                /* expect the W8A16 kernel (tighter bounds) */
    int static_input;          /* 0 dynamic; 1 static input_scale max|x| / 448 (the largest
                                * of the parts'); 2 half that: |x| above max|x| / 2 saturates */
    int gemv_max;              /* run_set: the backend's TEST_OSPREY_CUDA_FP8_GEMV_MAX, and
                                * gemv_row_counts; 0: FP8_GEMV_MAX and row_counts */
};

/* One product on both backends, compared; returns false after a failure. */
static bool fp8_once(struct gt *t, const struct product *pr)
{
    int rows = 0, n = pr->n, cols = pr->cols;
    float *x, *w, *b, *ref, *got;
    uint16_t *bblob;
    struct fp8w fw;
    struct bk_weight cb = { 0 }, gb = { 0 };
    struct dbuf bx = { 0 }, bxc = { 0 }, out = { 0 };
    double sd = sqrt(cols / 9.0);   /* std of an output: U(-1,1) products summed */
    char what[128];
    bool ok = false;
    float in_scale[4], amax = 0.0f;

    for (int p = 0; p < pr->nparts; p++)
        rows += pr->prows[p];
    x = malloc((size_t)n * cols * 4), w = malloc((size_t)rows * cols * 4);
    b = malloc((size_t)rows * 4), ref = malloc((size_t)n * rows * 4);
    got = malloc((size_t)n * rows * 4), bblob = malloc((size_t)rows * 2);
    memset(&fw, 0, sizeof fw);
    if (!gt_check(t, x && w && b && ref && got && bblob, "out of host memory"))
        goto out;
    gt_fill(&t->rng, x, (size_t)n * cols, -1.0f, 1.0f);
    gt_fill(&t->rng, w, (size_t)rows * cols, -1.0f, 1.0f);
    gt_fill(&t->rng, b, rows, -8.0f, 8.0f);
    for (size_t i = 0; i < (size_t)n * cols; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    for (int p = 0; p < 4; p++)   /* part 0's is the largest: the one the fused layer uses */
        in_scale[p] = amax / FP8_E4M3_MAX / (pr->static_input == 2 ? 2.0f : 1.0f) / (1.0f + 0.25f * p);
    if (!fp8_weight(t, &fw, w, cols, pr->prows, pr->nparts, pr->sc,
                    pr->static_input ? in_scale : NULL) ||
        (pr->bias && !bias_weight(t, &cb, &gb, bblob, b, rows)) ||
        !dbuf_create(t, &bx, (size_t)n * cols, false) || !dbuf_set(t, &bx, x) ||
        !dbuf_create(t, &out, (size_t)n * rows, pr->lm_head) || !dbuf_poison(t, &out))
        goto out;
    if (pr->static_input == 2) {
        /* the reference multiplies x clamped where e4m3 saturates: +-448 * the static scale */
        float lim = in_scale[0] * FP8_E4M3_MAX;

        for (size_t i = 0; i < (size_t)n * cols; i++)
            x[i] = fmaxf(-lim, fminf(lim, x[i]));
        if (!dbuf_create(t, &bxc, (size_t)n * cols, false) || !dbuf_set(t, &bxc, x))
            goto out;
    }
    snprintf(what, sizeof what, "%s %s n %d [%d, %d]%s, %d parts%s", pr->lm_head ? "lm_head" : "matmul",
             scheme_names[pr->sc], n, rows, cols, pr->bias ? " +bias" : "", pr->nparts,
             pr->static_input == 2 ? ", static scale saturating" : pr->static_input ? ", static scale" : "");
    if (pr->lm_head) {
        if (!gt_check(t, t->cpu->ops->lm_head(t->cpu, out.cpu, bx.cpu, &fw.cpu, n) == 0,
                      "%s: cpu lm_head", what) ||
            !gt_check(t, t->gpu->ops->lm_head(t->gpu, out.gpu, bx.gpu, &fw.gpu, n) == 0,
                      "%s: cuda lm_head", what))
            goto out;
    } else {
        if (!gt_check(t, t->cpu->ops->matmul(t->cpu, out.cpu, bxc.cpu ? bxc.cpu : bx.cpu, &fw.cpu,
                                             pr->bias ? &cb : NULL, n) == 0, "%s: cpu matmul", what) ||
            !gt_check(t, t->gpu->ops->matmul(t->gpu, out.gpu, bx.gpu, &fw.gpu,
                                             pr->bias ? &gb : NULL, n) == 0, "%s: cuda matmul", what))
            goto out;
    }
    if (!dbuf_get(t, &out, ref, got))
        goto out;
    if (pr->w8a16)
        ok = gt_compare(t, what, got, ref, (size_t)n * rows, 1e-3 * sd, 8e-3, 2e-5);
    else
        ok = gt_compare(t, what, got, ref, (size_t)n * rows, 0.31 * sd, 0.02, 3.9e-3);
out:
    fp8_weight_free(t, &fw);
    if (cb.data)
        t->cpu->ops->free_weight(t->cpu, &cb);
    if (gb.data)
        t->gpu->ops->free_weight(t->gpu, &gb);
    dbuf_free(t, &bx);
    dbuf_free(t, &bxc);
    dbuf_free(t, &out);
    free(x);
    free(w);
    free(b);
    free(ref);
    free(got);
    free(bblob);
    return ok;
}

static const int row_counts[] = { 1, 7, 64, 300, 4, 3, 256, 8, 9 };
/* every token-block size of the GEMVs (1, 2, 4, 8), full and partial, and past it */
static const int gemv_row_counts[] = { 1, 2, 3, 4, 5, 8, 9, 64 };

#define GEMV_MAX 1   /* engine/cuda/cuda_fp8_gemm.c: FP8_GEMV_MAX */

/* Which kernel a set's products must run: FAST (the GEMV up to GEMV_MAX rows, or the set's
 * gemv_max, cuBLASLt above), cuBLASLt for every n (TEST_OSPREY_CUDA_FP8=lt or split), the
 * plain W8A16 kernel, or the GEMV up to that limit and the plain kernel above (shapes
 * cuBLASLt cannot take).
 * The W8A16 kernels (GEMV included) are held to the tight bound. */
enum path { PATH_FAST, PATH_LT, PATH_W8A16, PATH_GEMV_W8A16 };

static void run_set(struct gt *t, const struct product *base, enum path expect)
{
    long lt0, g0, w0, lt1, g1, w1, want_lt = 0, want_g = 0, want_w = 0;
    const int *ns = base->gemv_max ? gemv_row_counts : row_counts;
    size_t num = base->gemv_max ? ARRAY_LEN(gemv_row_counts) : ARRAY_LEN(row_counts);
    int gemv_max = base->gemv_max ? base->gemv_max : GEMV_MAX;

    backend_cuda_fp8_counts(t->gpu, &lt0, &g0, &w0);
    for (size_t i = 0; i < num; i++) {
        struct product p = *base;
        bool gemv = (expect == PATH_FAST || expect == PATH_GEMV_W8A16) && ns[i] <= gemv_max;

        p.n = ns[i];
        p.w8a16 = expect == PATH_W8A16 || expect == PATH_GEMV_W8A16 || gemv;
        want_lt += expect == PATH_LT || (expect == PATH_FAST && !gemv);
        want_g += gemv;
        want_w += expect == PATH_W8A16 || (expect == PATH_GEMV_W8A16 && !gemv);
        if (!fp8_once(t, &p))
            return;
    }
    backend_cuda_fp8_counts(t->gpu, &lt1, &g1, &w1);
    gt_check(t, lt1 - lt0 == want_lt && g1 - g0 == want_g && w1 - w0 == want_w,
             "%s: %ld products on cuBLASLt, %ld on the GEMV, %ld on W8A16; expected %ld, %ld, "
             "%ld (see the log for why)", scheme_names[base->sc], lt1 - lt0, g1 - g0, w1 - w0,
             want_lt, want_g, want_w);
}

/* The same sets with the GEMV off: cuBLASLt's small-n paths (one row, rows of 4 + a tail). */
static void run_set_lt(struct gt *t, const struct product *base)
{
    setenv("TEST_OSPREY_CUDA_FP8", "lt", 1);
    if (backends(t, 512))
        run_set(t, base, PATH_LT);
    unsetenv("TEST_OSPREY_CUDA_FP8");
}

static void fp8_block_matches_cpu(struct gt *t)
{
    if (!backends(t, 512))
        return;
    run_set(t, &(struct product){ .cols = 2048, .nparts = 1, .prows = { 1024 }, .sc = SC_BLOCK }, PATH_FAST);
    /* q, k, v fused: 512 + 128 + 128 rows, every part whole 128-row blocks */
    run_set(t, &(struct product){ .cols = 1024, .nparts = 3, .prows = { 512, 128, 128 },
                                  .sc = SC_BLOCK }, PATH_FAST);
    /* a k that is not a multiple of 128 (the last k-block partial), rows ending mid-block */
    run_set(t, &(struct product){ .cols = 1040, .nparts = 1, .prows = { 1008 }, .sc = SC_BLOCK }, PATH_FAST);
    gt_note(t, "128x128 blocks, n 1/3/4/7/8/9/64/256/300, fused q/k/v, partial k and row blocks");
}

static void fp8_channel_matches_cpu(struct gt *t)
{
    if (!backends(t, 512))
        return;
    run_set(t, &(struct product){ .cols = 2048, .nparts = 1, .prows = { 1536 }, .sc = SC_CHANNEL }, PATH_FAST);
    run_set(t, &(struct product){ .cols = 4096, .nparts = 2, .prows = { 1024, 1024 },
                                  .sc = SC_CHANNEL }, PATH_FAST);
    run_set(t, &(struct product){ .cols = 512, .nparts = 3, .prows = { 512, 128, 128 },
                                  .sc = SC_TENSOR }, PATH_FAST);
    gt_note(t, "per-channel and per-tensor (3 fused parts, 3 scales), n 1..300");
}

static void fp8_with_bias_matches_cpu(struct gt *t)
{
    if (!backends(t, 512))
        return;
    run_set(t, &(struct product){ .cols = 1024, .nparts = 3, .prows = { 512, 128, 128 },
                                  .sc = SC_BLOCK, .bias = true }, PATH_FAST);
    run_set(t, &(struct product){ .cols = 1024, .nparts = 3, .prows = { 512, 128, 128 },
                                  .sc = SC_CHANNEL, .bias = true }, PATH_FAST);
    gt_note(t, "Qwen2-style q/k/v bias, block-wise and per-channel");
}

/* With the GEMV off, cuBLASLt runs every n: its one-product and rows-of-4 + tail paths. */
static void fp8_cublaslt_small_n_matches_cpu(struct gt *t)
{
    run_set_lt(t, &(struct product){ .cols = 1024, .nparts = 3, .prows = { 512, 128, 128 },
                                     .sc = SC_BLOCK, .bias = true });
    run_set_lt(t, &(struct product){ .cols = 2048, .nparts = 1, .prows = { 1536 }, .sc = SC_CHANNEL });
    run_set_lt(t, &(struct product){ .cols = 1024, .nparts = 3, .prows = { 512, 128, 128 },
                                     .sc = SC_TENSOR, .static_input = 2, .bias = true });
    gt_note(t, "TEST_OSPREY_CUDA_FP8=lt: block + bias, channel, static saturating scale; n 1..300");
}

/* The activation buffers are sized at upload for every fp8 weight so far: a wide weight,
 * then a deep one, then the wide one's product again. */
static void fp8_buffers_cover_every_weight(struct gt *t)
{
    if (!backends(t, 512))
        return;
    fp8_once(t, &(struct product){ .n = 64, .cols = 256, .nparts = 1, .prows = { 2048 }, .sc = SC_CHANNEL });
    fp8_once(t, &(struct product){ .n = 64, .cols = 2048, .nparts = 1, .prows = { 256 }, .sc = SC_BLOCK });
    fp8_once(t, &(struct product){ .n = 64, .cols = 256, .nparts = 1, .prows = { 2048 }, .sc = SC_CHANNEL });
    fp8_once(t, &(struct product){ .n = 300, .cols = 2048, .nparts = 1, .prows = { 256 }, .sc = SC_BLOCK });
    gt_note(t, "[2048, 256] after [256, 2048] and back");
}

/* Shapes cuBLASLt's FP8 GEMM cannot take run our W8A16 kernel, and so does everything
 * under TEST_OSPREY_CUDA_FP8=w8a16. */
static void fp8_w8a16_fallback_matches_cpu(struct gt *t)
{
    if (!backends(t, 512))
        return;
    run_set(t, &(struct product){ .cols = 1024, .nparts = 1, .prows = { 512 }, .sc = SC_BLOCK64 },
            PATH_GEMV_W8A16);
    run_set(t, &(struct product){ .cols = 1000, .nparts = 1, .prows = { 384 }, .sc = SC_CHANNEL },
            PATH_W8A16);   /* k % 16 != 0: not for the GEMV either */
    run_set(t, &(struct product){ .cols = 1024, .nparts = 2, .prows = { 200, 312 }, .sc = SC_BLOCK },
            PATH_GEMV_W8A16);   /* a part ends mid-block */
    setenv("TEST_OSPREY_CUDA_FP8", "w8a16", 1);
    if (backends(t, 512)) {
        run_set(t, &(struct product){ .cols = 2048, .nparts = 1, .prows = { 1024 }, .sc = SC_BLOCK },
                PATH_W8A16);
        run_set(t, &(struct product){ .cols = 1024, .nparts = 3, .prows = { 512, 128, 128 },
                                      .sc = SC_CHANNEL, .bias = true }, PATH_W8A16);
    }
    unsetenv("TEST_OSPREY_CUDA_FP8");
    gt_note(t, "64x64 blocks, k 1000, a part ending mid-block, TEST_OSPREY_CUDA_FP8=w8a16");
}

/* Per-channel products also in rows of 4 plus a padded tail (TEST_OSPREY_CUDA_FP8=split), the
 * layout the block-wise path always uses. */
static void fp8_split_rows_match_cpu(struct gt *t)
{
    setenv("TEST_OSPREY_CUDA_FP8", "split", 1);
    if (backends(t, 512)) {
        run_set(t, &(struct product){ .cols = 2048, .nparts = 1, .prows = { 1536 },
                                      .sc = SC_CHANNEL }, PATH_LT);
        run_set(t, &(struct product){ .cols = 1024, .nparts = 3, .prows = { 512, 128, 128 },
                                      .sc = SC_CHANNEL, .bias = true }, PATH_LT);
    }
    unsetenv("TEST_OSPREY_CUDA_FP8");
    gt_note(t, "per-channel as rows of 4 + a padded tail");
}

/* Static activation scales (input_scale of a static scheme): the fused layer quantizes with
 * the largest of its parts' scales, and saturates beyond 448 times it, as vLLM does. */
static void fp8_static_input_scale_matches_cpu(struct gt *t)
{
    if (!backends(t, 512))
        return;
    run_set(t, &(struct product){ .cols = 1024, .nparts = 3, .prows = { 512, 128, 128 },
                                  .sc = SC_CHANNEL, .static_input = 1 }, PATH_FAST);
    run_set(t, &(struct product){ .cols = 1024, .nparts = 3, .prows = { 512, 128, 128 },
                                  .sc = SC_TENSOR, .static_input = 2, .bias = true }, PATH_FAST);
    gt_note(t, "per-tensor input_scale, max of 3 fused parts; half of it saturates like "
            "clamping x");
}

static void fp8_lm_head_matches_cpu(struct gt *t)
{
    if (!backends(t, 512))
        return;
    fp8_once(t, &(struct product){ .n = 1, .cols = 1024, .nparts = 1, .prows = { 32000 },
                                   .sc = SC_CHANNEL, .lm_head = true });
    fp8_once(t, &(struct product){ .n = 7, .cols = 1024, .nparts = 1, .prows = { 32000 },
                                   .sc = SC_BLOCK, .lm_head = true });
    fp8_once(t, &(struct product){ .n = 64, .cols = 512, .nparts = 1, .prows = { 384 },
                                   .sc = SC_BLOCK64, .lm_head = true, .w8a16 = true });
    gt_note(t, "f32 logits: vocab 32000 per-channel and block-wise, W8A16");
}

/* ---- the decode GEMV ---- */

/* Backends whose GEMV takes up to gemv_max rows (TEST_OSPREY_CUDA_FP8_GEMV_MAX; 0:
 * FP8_GEMV_MAX); the variable is unset again. */
static bool gemv_backends(struct gt *t, int gemv_max)
{
    char max[16];
    bool ok;

    snprintf(max, sizeof max, "%d", gemv_max);
    if (gemv_max)
        setenv("TEST_OSPREY_CUDA_FP8_GEMV_MAX", max, 1);
    ok = backends(t, 512);
    unsetenv("TEST_OSPREY_CUDA_FP8_GEMV_MAX");
    return ok;
}

/* The GEMV up to 8 rows (tokens blocks of 1, 2, 4 and 8, full and partial), cuBLASLt
 * or the W8A16 kernel above: 128x128 blocks (whole, and partial in k and rows), 64x64
 * blocks (a scale every 64 columns), per-channel (K 4096: two chunks a thread; K 14336:
 * seven, the last step half out of range; 258 rows: the last row tile half full),
 * per-tensor fused with a bias and a saturating static scale, K 1040 (threads with no
 * chunk), K 1000 (declined: the W8A16 kernel), parts ending mid-block (scales per row), the
 * f32 LM head. Held to the W8A16 bound (f32 sums of the exact weights). */
static void fp8_gemv_matches_cpu(struct gt *t)
{
    const int g = 8;

    if (!gemv_backends(t, g))
        return;
    run_set(t, &(struct product){ .cols = 2048, .nparts = 1, .prows = { 1024 }, .sc = SC_BLOCK,
                                  .gemv_max = g }, PATH_FAST);
    run_set(t, &(struct product){ .cols = 1040, .nparts = 1, .prows = { 1008 }, .sc = SC_BLOCK,
                                  .gemv_max = g }, PATH_FAST);
    run_set(t, &(struct product){ .cols = 1024, .nparts = 3, .prows = { 512, 128, 128 },
                                  .sc = SC_BLOCK, .bias = true, .gemv_max = g }, PATH_FAST);
    run_set(t, &(struct product){ .cols = 1024, .nparts = 1, .prows = { 512 }, .sc = SC_BLOCK64,
                                  .gemv_max = g }, PATH_GEMV_W8A16);
    run_set(t, &(struct product){ .cols = 4096, .nparts = 2, .prows = { 1024, 1024 },
                                  .sc = SC_CHANNEL, .gemv_max = g }, PATH_FAST);
    run_set(t, &(struct product){ .cols = 14336, .nparts = 1, .prows = { 258 }, .sc = SC_CHANNEL,
                                  .gemv_max = g }, PATH_GEMV_W8A16);   /* rows % 4: not LT */
    run_set(t, &(struct product){ .cols = 512, .nparts = 3, .prows = { 512, 128, 128 },
                                  .sc = SC_TENSOR, .static_input = 2, .bias = true,
                                  .gemv_max = g }, PATH_FAST);
    run_set(t, &(struct product){ .cols = 1000, .nparts = 1, .prows = { 384 }, .sc = SC_CHANNEL,
                                  .gemv_max = g }, PATH_W8A16);
    run_set(t, &(struct product){ .cols = 1024, .nparts = 2, .prows = { 200, 312 }, .sc = SC_BLOCK,
                                  .gemv_max = g }, PATH_GEMV_W8A16);
    fp8_once(t, &(struct product){ .n = 1, .cols = 1024, .nparts = 1, .prows = { 32000 },
                                   .sc = SC_CHANNEL, .lm_head = true, .w8a16 = true });
    fp8_once(t, &(struct product){ .n = 5, .cols = 1024, .nparts = 1, .prows = { 32000 },
                                   .sc = SC_BLOCK, .lm_head = true, .w8a16 = true });
    gt_note(t, "GEMV_MAX 8: block/block64/channel/"
            "tensor, bias, static scale, K 512..14336, partial tiles, f32 LM head");
}

/* ---- graph replay ---- */

struct fp8_graph_arg {
    struct backend *be;
    void *out;
    const void *x;
    const struct bk_weight *w, *bias;
    int n;
};

static int fp8_body(void *arg)
{
    struct fp8_graph_arg *a = arg;

    return a->be->ops->matmul(a->be, a->out, a->x, a->w, a->bias, a->n);
}

/* The replays of one backend pair's products: 1 and 9 rows (cuBLASLt: a tail alone, and
 * rows of 4 + a tail), 5 (the GEMV when it takes up to 8 rows). */
static void graph_replay_cases(struct gt *t)
{
    static const enum scheme schemes[] = { SC_BLOCK, SC_CHANNEL, SC_BLOCK64 };
    int cols = 1024, prows[3] = { 512, 128, 128 }, rows = 768;

    for (size_t s = 0; s < ARRAY_LEN(schemes); s++)
        for (int n = 1; n <= 9; n += 4) {
            float *x = malloc((size_t)n * cols * 4), *w = malloc((size_t)rows * cols * 4);
            float *b = malloc((size_t)rows * 4), *eager = malloc((size_t)n * rows * 4);
            float *replay = malloc((size_t)n * rows * 4);
            uint16_t *bblob = malloc((size_t)rows * 2);
            struct bk_weight cb = { 0 }, gb = { 0 };
            struct dbuf bx = { 0 }, out = { 0 };
            struct fp8w fw;
            struct fp8_graph_arg a;
            int size = 100 + (int)s * 10 + n;

            memset(&fw, 0, sizeof fw);
            if (!gt_check(t, x && w && b && eager && replay && bblob, "out of host memory"))
                goto next;
            gt_fill(&t->rng, x, (size_t)n * cols, -1.0f, 1.0f);
            gt_fill(&t->rng, w, (size_t)rows * cols, -1.0f, 1.0f);
            gt_fill(&t->rng, b, rows, -8.0f, 8.0f);
            if (!fp8_weight(t, &fw, w, cols, prows, 3, schemes[s], NULL) ||
                !bias_weight(t, &cb, &gb, bblob, b, rows) ||
                !dbuf_create(t, &bx, (size_t)n * cols, false) || !dbuf_set(t, &bx, x) ||
                !dbuf_create(t, &out, (size_t)n * rows, false) || !dbuf_poison(t, &out))
                goto next;
            a = (struct fp8_graph_arg){ t->gpu, out.gpu, bx.gpu, &fw.gpu, &gb, n };
            if (!gt_check(t, fp8_body(&a) == 0, "eager matmul") ||
                !dbuf_get(t, &out, NULL, eager) || !dbuf_poison(t, &out) ||
                !gt_check(t, t->gpu->ops->graph_capture(t->gpu, size, fp8_body, &a) == 0,
                          "graph_capture") ||
                !gt_check(t, t->gpu->ops->graph_replay(t->gpu, size) == 0, "graph_replay") ||
                !dbuf_get(t, &out, NULL, replay))
                goto next;
            gt_check(t, !memcmp(eager, replay, (size_t)n * rows * 4), "%s n %d: the replayed "
                     "product differs from the eager one", scheme_names[schemes[s]], n);
            /* new activations at the same address: the replay reads them */
            gt_fill(&t->rng, x, (size_t)n * cols, -2.0f, 2.0f);
            if (!dbuf_set(t, &bx, x) || !gt_check(t, fp8_body(&a) == 0, "eager matmul") ||
                !dbuf_get(t, &out, NULL, eager) || !dbuf_poison(t, &out) ||
                !gt_check(t, t->gpu->ops->graph_replay(t->gpu, size) == 0, "graph_replay") ||
                !dbuf_get(t, &out, NULL, replay))
                goto next;
            gt_check(t, !memcmp(eager, replay, (size_t)n * rows * 4), "%s n %d: the replay "
                     "with new activations differs from the eager product",
                     scheme_names[schemes[s]], n);
next:
            fp8_weight_free(t, &fw);
            if (cb.data)
                t->cpu->ops->free_weight(t->cpu, &cb);
            if (gb.data)
                t->gpu->ops->free_weight(t->gpu, &gb);
            dbuf_free(t, &bx);
            dbuf_free(t, &out);
            free(x);
            free(w);
            free(b);
            free(eager);
            free(replay);
            free(bblob);
        }
}

/* Once as the backend runs by default, then with the GEMV taking up to 8 rows. */
static void fp8_graph_replay_equals_eager(struct gt *t)
{
    if (backends(t, 512))
        graph_replay_cases(t);
    if (!t->failures && gemv_backends(t, 8))
        graph_replay_cases(t);
    gt_note(t, "block, channel, W8A16 with bias; n 1, 5 and 9; default, then the GEMV up to "
            "8 rows; new inputs replayed");
}

/* absmax: the cuda op against the cpu one on the same (bf16) values, strided rows. */
static void absmax_matches_cpu(struct gt *t)
{
    static const int shapes[][3] = { { 1, 64, 96 }, { 37, 256, 768 }, { 300, 1024, 1536 } };

    if (!backends(t, 512))
        return;
    for (size_t i = 0; i < ARRAY_LEN(shapes); i++) {
        int rows = shapes[i][0], cols = shapes[i][1], stride = shapes[i][2];
        float *x = malloc((size_t)rows * stride * 4), c = -1.0f, g = -1.0f;
        struct dbuf d = { 0 };

        if (!gt_check(t, x != NULL, "out of host memory"))
            return;
        gt_fill(&t->rng, x, (size_t)rows * stride, -3.0f, 3.0f);
        x[(size_t)(rows - 1) * stride + cols - 1] = -7.5f;    /* the last element is the max */
        x[(size_t)(rows - 1) * stride + cols] = 99.0f;        /* outside the rows: not counted */
        if (dbuf_create(t, &d, (size_t)rows * stride, false) && dbuf_set(t, &d, x) &&
            gt_check(t, t->cpu->ops->absmax(t->cpu, &c, d.cpu, stride, rows, cols) == 0, "cpu") &&
            gt_check(t, t->gpu->ops->absmax(t->gpu, &g, d.gpu, stride, rows, cols) == 0, "cuda"))
            gt_check(t, c == g && g == 7.5f, "absmax [%d, %d] stride %d: cuda %g, cpu %g", rows,
                     cols, stride, g, c);
        dbuf_free(t, &d);
        free(x);
    }
    gt_note(t, "1/37/300 rows, strided, exact");
}

const struct gt_case gt_cases_fp8_gemm[] = {
    { "fp8_block_matches_cpu", fp8_block_matches_cpu },
    { "fp8_channel_matches_cpu", fp8_channel_matches_cpu },
    { "fp8_with_bias_matches_cpu", fp8_with_bias_matches_cpu },
    { "fp8_cublaslt_small_n_matches_cpu", fp8_cublaslt_small_n_matches_cpu },
    { "fp8_buffers_cover_every_weight", fp8_buffers_cover_every_weight },
    { "fp8_w8a16_fallback_matches_cpu", fp8_w8a16_fallback_matches_cpu },
    { "fp8_split_rows_match_cpu", fp8_split_rows_match_cpu },
    { "fp8_static_input_scale_matches_cpu", fp8_static_input_scale_matches_cpu },
    { "fp8_lm_head_matches_cpu", fp8_lm_head_matches_cpu },
    { "fp8_gemv_matches_cpu", fp8_gemv_matches_cpu },
    { "fp8_graph_replay_equals_eager", fp8_graph_replay_equals_eager },
    { "absmax_matches_cpu", absmax_matches_cpu },
    { NULL, NULL },
};
#endif
