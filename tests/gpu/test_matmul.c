/* test_matmul.c — the bf16 products against the CPU backend: linear layers (bf16 out)
 * with and without a bias (added before the one rounding), weights stacked from several
 * parts of mixed dtypes (upload_weight converts F32 and F16 to bf16), 1 to 256 rows; and
 * the LM head with f32 logits; a guard row past each output must stay untouched. Products of one row run the backend's GEMV by default
 * (kernels/gemv.cu), larger ones cuBLAS; the gemv_ cases run both paths on the decode
 * products of the models we serve, count which one ran, and replay the GEMV in a graph. */
#ifdef OSPREY_CUDA
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/base/util.h"
#include "engine/cuda/backend_cuda.h"   /* backend_cuda_set_gemv_max, backend_cuda_gemv_count */
#include "tests/gpu/gpu_test.h"

static bool backends(struct gt *t)
{
    struct backend_options o = { .max_tokens = 512, .max_reqs = 8, .max_blocks_per_req = 8,
                                 .num_kv_groups = 1, .vocab_size = 16 };
    return gt_backends(t, &o);
}

/* A weight of `nparts` equal parts stacked by rows, part i stored as dtypes[i]. */
static bool stacked_weight(struct gt *t, struct bk_weight *cw, struct bk_weight *gw, void **blobs,
                           const float *host, int rows, int cols, int nparts, const enum dtype *dtypes)
{
    struct tensor_ref parts[4];
    int pr = rows / nparts;
    char err[ERR_LEN] = "";

    for (int p = 0; p < nparts; p++) {
        size_t n = (size_t)pr * cols;
        const float *src = host + (size_t)p * n;

        parts[p] = (struct tensor_ref){ .name = "stacked.part", .dtype = dtypes[p],
                                        .ndim = cols > 1 ? 2 : 1, .shape = { pr, cols },
                                        .nbytes = n * dtype_size(dtypes[p]) };
        if (!(blobs[p] = malloc(parts[p].nbytes)))
            return gt_check(t, false, "out of host memory");
        for (size_t i = 0; i < n; i++) {
            if (dtypes[p] == DT_F32)
                ((float *)blobs[p])[i] = src[i];
            else if (dtypes[p] == DT_BF16)
                ((uint16_t *)blobs[p])[i] = f32_to_bf16(src[i]);
            else
                ((uint16_t *)blobs[p])[i] = f32_to_f16(src[i]);
        }
        parts[p].data = blobs[p];
    }
    return gt_check(t, t->cpu->ops->upload_weight(t->cpu, cw, parts, nparts, err) == 0,
                    "cpu upload_weight: %s", err) &&
           gt_check(t, t->gpu->ops->upload_weight(t->gpu, gw, parts, nparts, err) == 0,
                    "cuda upload_weight: %s", err) &&
           gt_check(t, gw->rows == rows && gw->cols == cols && gw->dtype == DT_BF16,
                    "cuda weight is [%d, %d] %s, expected [%d, %d] BF16", gw->rows, gw->cols,
                    dtype_name(gw->dtype), rows, cols);
}

/* A weight's CPU and GPU copies freed (either may never have been uploaded). */
static void free_weights(struct gt *t, struct bk_weight *cw, struct bk_weight *gw)
{
    if (cw->data)
        t->cpu->ops->free_weight(t->cpu, cw);
    if (gw->data)
        t->gpu->ops->free_weight(t->gpu, gw);
}

static void matmul_once(struct gt *t, int n, int rows, int cols, int nparts, bool bias,
                        bool lm_head)
{
    static const enum dtype mixed[4] = { DT_BF16, DT_F32, DT_F16, DT_BF16 };
    float *x = malloc((size_t)n * cols * 4), *w = malloc((size_t)rows * cols * 4);
    /* the output with a guard row past its n, left NaN: a write past the product fails */
    float *b = malloc((size_t)rows * 4), *ref = malloc((size_t)(n + 1) * rows * 4);
    float *got = malloc((size_t)(n + 1) * rows * 4);
    void *blobs[4] = { 0 }, *bblob[1] = { 0 };
    struct bk_weight cw = { 0 }, gw = { 0 }, cb = { 0 }, gb = { 0 };
    struct dbuf bx = { 0 }, out = { 0 };
    double sd = sqrt(cols / 9.0);   /* std of an output: U(-1,1) products summed */
    char what[96];
    enum dtype bf = DT_BF16;
    size_t past = 0;

    if (!gt_check(t, x && w && b && ref && got, "out of host memory"))
        goto out;
    gt_fill(&t->rng, x, (size_t)n * cols, -1.0f, 1.0f);
    gt_fill(&t->rng, w, (size_t)rows * cols, -1.0f, 1.0f);
    gt_fill(&t->rng, b, rows, -8.0f, 8.0f);
    if (!stacked_weight(t, &cw, &gw, blobs, w, rows, cols, nparts, mixed) ||
        (bias && !stacked_weight(t, &cb, &gb, bblob, b, rows, 1, 1, &bf)) ||
        !dbuf_create(t, &bx, (size_t)n * cols, false) || !dbuf_set(t, &bx, x) ||
        !dbuf_create(t, &out, (size_t)(n + 1) * rows, lm_head) || !dbuf_poison(t, &out))
        goto out;
    if (lm_head) {
        gt_check(t, t->cpu->ops->lm_head(t->cpu, out.cpu, bx.cpu, &cw, n) == 0, "cpu lm_head");
        gt_check(t, t->gpu->ops->lm_head(t->gpu, out.gpu, bx.gpu, &gw, n) == 0, "cuda lm_head");
    } else {
        gt_check(t, t->cpu->ops->matmul(t->cpu, out.cpu, bx.cpu, &cw, bias ? &cb : NULL, n) == 0,
                 "cpu matmul");
        gt_check(t, t->gpu->ops->matmul(t->gpu, out.gpu, bx.gpu, &gw, bias ? &gb : NULL, n) == 0,
                 "cuda matmul");
    }
    snprintf(what, sizeof what, "%s n %d [%d, %d]%s, %d parts", lm_head ? "lm_head" : "matmul",
             n, rows, cols, bias ? " +bias" : "", nparts);
    if (dbuf_get(t, &out, ref, got)) {
        if (lm_head)   /* f32 out: only the order of the f32 sums differs */
            gt_compare(t, what, got, ref, (size_t)n * rows, 1e-5 * sd, 1e-4, 1e-9);
        else           /* bf16 out: one rounding */
            gt_compare(t, what, got, ref, (size_t)n * rows, 1e-3 * sd, 8e-3, 2e-5);
        for (int r = 0; r < rows; r++)
            past += !isnan(got[(size_t)n * rows + r]);
        gt_check(t, past == 0, "%s: %zu values written past the output", what, past);
    }
out:
    free_weights(t, &cw, &gw);
    free_weights(t, &cb, &gb);
    for (int i = 0; i < 4; i++)
        free(blobs[i]);
    free(bblob[0]);
    dbuf_free(t, &bx);
    dbuf_free(t, &out);
    free(x);
    free(w);
    free(b);
    free(ref);
    free(got);
}

static void matmul_matches_cpu(struct gt *t)
{
    if (!backends(t))
        return;
    matmul_once(t, 1, 4096, 4096, 1, false, false);
    matmul_once(t, 37, 384, 64, 1, false, false);
    matmul_once(t, 3, 3072, 2048, 3, false, false);
    matmul_once(t, 8, 2048, 8192, 1, false, false);
    matmul_once(t, 5, 1000, 24, 1, false, false);
    matmul_once(t, 128, 6144, 4096, 3, false, false);   /* q, k, v stacked, mixed dtypes */
    matmul_once(t, 256, 2048, 1024, 2, false, false);
    gt_note(t, "1/37/128/256 rows, up to [6144, 4096], 1-3 parts of BF16/F32/F16");
}

static void matmul_with_bias_matches_cpu(struct gt *t)
{
    if (!backends(t))
        return;
    matmul_once(t, 1, 384, 64, 3, true, false);
    matmul_once(t, 37, 1536, 512, 3, true, false);
    matmul_once(t, 4, 1536, 512, 3, true, false);
    matmul_once(t, 256, 1024, 1024, 1, true, false);
    gt_note(t, "Qwen2-style q/k/v bias, 1/37/256 rows");
}

static void lm_head_matches_cpu(struct gt *t)
{
    if (!backends(t))
        return;
    matmul_once(t, 1, 128256, 1024, 1, false, true);
    matmul_once(t, 7, 32000, 1024, 1, false, true);
    matmul_once(t, 64, 384, 64, 1, false, true);
    gt_note(t, "f32 logits: vocab 128256/32000/384, 1/7/64 rows");
}

/* ---- the decode GEMV against cuBLAS's path, both against the CPU ---- */

/* matmul_once on the GPU backend with its GEMV for up to gemv_max rows (-1: the backend's
 * default), checking that the product ran on the GEMV exactly when it should: when n is
 * within the limit and the GEMV takes the shape (`fits`: cols % 8 == 0). */
static void gemv_once(struct gt *t, int gemv_max, int n, int rows, int cols, bool bias,
                      bool lm_head, bool fits)
{
    int max_n = backend_cuda_set_gemv_max(t->gpu, -1);
    long c0, want;

    if (gemv_max >= 0)
        backend_cuda_set_gemv_max(t->gpu, max_n = gemv_max);
    want = fits && n <= max_n;
    c0 = backend_cuda_gemv_count(t->gpu);
    matmul_once(t, n, rows, cols, 1, bias, lm_head);
    gt_check(t, backend_cuda_gemv_count(t->gpu) - c0 == want,
             "n %d [%d, %d] with the GEMV up to %d rows: %ld GEMV launches, expected %ld", n,
             rows, cols, max_n, backend_cuda_gemv_count(t->gpu) - c0, want);
}

/* The decode products (q/k/v fused, o, gate_up fused, down; LM head with f32 logits) of
 * bench-1.5b (Qwen2-1.5B: hidden 1536, q/k/v with a bias), llama-3.2-1b and llama-3.1-8b,
 * as the runner calls them: at n = 1 on the GEMV (and bench-1.5b's on cuBLAS, the GEMV
 * off), at n = 2 on the GEMV's pair kernel; one product at n = 1 and 2 on the default path.
 * Catches: a GEMV whose index arithmetic, chunk stride or
 * unrolled step is off (wrong sums on every shape: the 1536-column rows end inside a step,
 * the 8960- and 14336-column ones take several), a bias dropped or added after the
 * rounding, f32 logits written as bf16, and a selection that never takes (or never leaves)
 * the GEMV (the launch counts). */
static void gemv_model_products_match_cpu(struct gt *t)
{
    static const struct { int rows, cols; bool bias, lm_head; } shapes[] = {
        { 2048, 1536, true, false }, { 1536, 1536, false, false },       /* bench-1.5b */
        { 17920, 1536, false, false }, { 1536, 8960, false, false },
        { 151936, 1536, false, true },
        { 3072, 2048, false, false }, { 2048, 2048, false, false },      /* llama-3.2-1b */
        { 16384, 2048, false, false }, { 2048, 8192, false, false },
        { 6144, 4096, false, false }, { 4096, 4096, false, false },      /* llama-3.1-8b */
        { 28672, 4096, false, false }, { 4096, 14336, false, false },
    };

    if (!backends(t))
        return;
    for (size_t i = 0; i < ARRAY_LEN(shapes); i++) {
        int r = shapes[i].rows, c = shapes[i].cols;
        bool b = shapes[i].bias, lm = shapes[i].lm_head;

        gemv_once(t, 1, 1, r, c, b, lm, true);           /* the GEMV at n = 1 */
        if (lm)
            continue;   /* the logits' f32 path once is enough: 150k rows */
        if (i < 4)   /* cuBLAS on bench-1.5b's (matmul_matches_cpu has the larger ones) */
            gemv_once(t, 0, 1, r, c, b, lm, true);
        gemv_once(t, 2, 2, r, c, b, lm, true);           /* the pair kernel */
    }
    gemv_once(t, -1, 1, 4096, 4096, false, false, true);   /* as by default */
    gemv_once(t, -1, 2, 4096, 4096, false, false, true);
    gt_note(t, "bench-1.5b, llama-3.2-1b, llama-3.1-8b products, n 1 and 2 on the GEMV");
}

/* Shapes at the GEMV's edges. Catches: a short tile's rows past the last not dropped (rows
 * 1, 3, 1001, 4095: not multiples of 4; their sums land in the next token's first rows or
 * in matmul_once's guard row past the output), the token pair's missing second token
 * written (n 3, 5, 9: the guard row), a column tail (cols % 8 != 0 must be declined, so
 * cuBLAS runs it: the launch count), a row shorter than one thread's stride (8 and 64
 * columns: most threads idle), a row ending mid-step (4104, 8960 columns), and blocks of
 * tokens past the first (n 9: grid.y 5). Reads past w or x (the re-read last row or token
 * clamped away) show only under compute-sanitizer. */
static void gemv_edge_shapes_match_cpu(struct gt *t)
{
    if (!backends(t))
        return;
    gemv_once(t, 1, 1, 1, 4096, false, false, true);
    gemv_once(t, 1, 1, 3, 1536, true, false, true);
    gemv_once(t, 1, 1, 1001, 64, false, false, true);
    gemv_once(t, 1, 1, 1001, 8, true, false, true);
    gemv_once(t, 1, 1, 1001, 4104, false, true, true);
    gemv_once(t, 1, 1, 1000, 1001, false, false, false);   /* odd cols: cuBLAS */
    gemv_once(t, 1, 1, 384, 36, true, false, false);
    gemv_once(t, 1, 1, 7, 20, false, true, false);
    gemv_once(t, 16, 3, 1003, 1536, true, false, true);
    gemv_once(t, 16, 5, 4095, 2048, false, true, true);
    gemv_once(t, 16, 9, 2050, 8960, false, false, true);
    gt_note(t, "rows 1/3/1001/4095, cols 8-8960 (1001/36/20: cuBLAS), n 1/3/5/9, bias, f32");
}

struct gemv_graph {
    struct backend *be;
    void *out;
    const void *x;
    const struct bk_weight *w, *bias;
};

static int gemv_graph_body(void *arg)
{
    struct gemv_graph *g = arg;

    return g->be->ops->matmul(g->be, g->out, g->x, g->w, g->bias, 1);
}

/* The GEMV captured in a decode graph: the replay writes what an eager call writes, bit for
 * bit, and a replay after x changed in place multiplies the new x (matching the CPU).
 * Catches: a launch that is not capturable or reads host state at replay, and a product
 * whose blocks race on the output (run to run differences). */
static void gemv_graph_replay_matches_eager(struct gt *t)
{
    static const enum dtype bf[1] = { DT_BF16 };
    int rows = 2048, cols = 1536, size = 1;
    float *x = malloc((size_t)cols * 4), *w = malloc((size_t)rows * cols * 4);
    float *b = malloc((size_t)rows * 4), *ref = malloc((size_t)rows * 4);
    float *eager = malloc((size_t)rows * 4), *got = malloc((size_t)rows * 4);
    void *blobs[1] = { 0 }, *bblob[1] = { 0 };
    struct bk_weight cw = { 0 }, gw = { 0 }, cb = { 0 }, gb = { 0 };
    struct dbuf bx = { 0 }, o1 = { 0 }, o2 = { 0 };
    struct gemv_graph g = { 0 };
    long c0;

    if (!backends(t) || !gt_check(t, x && w && b && ref && eager && got, "out of host memory"))
        goto out;
    gt_fill(&t->rng, x, cols, -1.0f, 1.0f);
    gt_fill(&t->rng, w, (size_t)rows * cols, -1.0f, 1.0f);
    gt_fill(&t->rng, b, rows, -8.0f, 8.0f);
    if (!stacked_weight(t, &cw, &gw, blobs, w, rows, cols, 1, bf) ||
        !stacked_weight(t, &cb, &gb, bblob, b, rows, 1, 1, bf) ||
        !dbuf_create(t, &bx, cols, false) || !dbuf_set(t, &bx, x) ||
        !dbuf_create(t, &o1, rows, false) || !dbuf_poison(t, &o1) ||
        !dbuf_create(t, &o2, rows, false) || !dbuf_poison(t, &o2))
        goto out;
    backend_cuda_set_gemv_max(t->gpu, 1);
    c0 = backend_cuda_gemv_count(t->gpu);
    g = (struct gemv_graph){ t->gpu, o2.gpu, bx.gpu, &gw, &gb };
    if (!gt_check(t, t->gpu->ops->matmul(t->gpu, o1.gpu, bx.gpu, &gw, &gb, 1) == 0, "eager matmul") ||
        !gt_check(t, t->gpu->ops->graph_capture(t->gpu, size, gemv_graph_body, &g) == 0,
                  "graph_capture") ||
        !gt_check(t, backend_cuda_gemv_count(t->gpu) - c0 == 2, "%ld GEMV launches, expected 2",
                  backend_cuda_gemv_count(t->gpu) - c0) ||
        !gt_check(t, t->gpu->ops->graph_replay(t->gpu, size) == 0, "graph_replay") ||
        !dbuf_get(t, &o1, NULL, eager) || !dbuf_get(t, &o2, NULL, got))
        goto out;
    gt_compare(t, "replay vs eager", got, eager, rows, 0, 0, 0);
    /* new x in the same buffer: the replay reads it */
    gt_fill(&t->rng, x, cols, -1.0f, 1.0f);
    if (!dbuf_set(t, &bx, x) || !dbuf_poison(t, &o2) ||
        !gt_check(t, t->gpu->ops->graph_replay(t->gpu, size) == 0, "graph_replay") ||
        !gt_check(t, t->cpu->ops->matmul(t->cpu, o2.cpu, bx.cpu, &cw, &cb, 1) == 0, "cpu matmul") ||
        !dbuf_get(t, &o2, ref, got))
        goto out;
    gt_compare(t, "replay with new x vs cpu", got, ref, rows, 1e-3 * sqrt(cols / 9.0), 8e-3, 2e-5);
    gt_note(t, "[2048, 1536] +bias, n 1: replay = eager bitwise; new x in place");
out:
    free_weights(t, &cw, &gw);
    free_weights(t, &cb, &gb);
    free(blobs[0]);
    free(bblob[0]);
    dbuf_free(t, &bx);
    dbuf_free(t, &o1);
    dbuf_free(t, &o2);
    free(x);
    free(w);
    free(b);
    free(ref);
    free(eager);
    free(got);
}

const struct gt_case gt_cases_matmul[] = {
    { "matmul_matches_cpu", matmul_matches_cpu },
    { "matmul_with_bias_matches_cpu", matmul_with_bias_matches_cpu },
    { "lm_head_matches_cpu", lm_head_matches_cpu },
    { "gemv_model_products_match_cpu", gemv_model_products_match_cpu },
    { "gemv_edge_shapes_match_cpu", gemv_edge_shapes_match_cpu },
    { "gemv_graph_replay_matches_eager", gemv_graph_replay_matches_eager },
    { NULL, NULL },
};
#endif
