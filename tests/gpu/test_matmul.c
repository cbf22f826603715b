/* test_matmul.c — the cuBLAS products against the CPU backend: linear layers (bf16 out)
 * with and without a bias (added before the one rounding), weights stacked from several
 * parts of mixed dtypes (upload_weight converts F32 and F16 to bf16), 1 to 256 rows; and
 * the LM head with f32 logits. */
#ifdef OSPREY_CUDA
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/base/util.h"
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

static void matmul_once(struct gt *t, int n, int rows, int cols, int nparts, bool bias,
                        bool lm_head)
{
    static const enum dtype mixed[4] = { DT_BF16, DT_F32, DT_F16, DT_BF16 };
    float *x = malloc((size_t)n * cols * 4), *w = malloc((size_t)rows * cols * 4);
    float *b = malloc((size_t)rows * 4), *ref = malloc((size_t)n * rows * 4);
    float *got = malloc((size_t)n * rows * 4);
    void *blobs[4] = { 0 }, *bblob[1] = { 0 };
    struct bk_weight cw = { 0 }, gw = { 0 }, cb = { 0 }, gb = { 0 };
    struct dbuf bx = { 0 }, out = { 0 };
    double sd = sqrt(cols / 9.0);   /* std of an output: U(-1,1) products summed */
    char what[96];
    enum dtype bf = DT_BF16;

    if (!gt_check(t, x && w && b && ref && got, "out of host memory"))
        goto out;
    gt_fill(&t->rng, x, (size_t)n * cols, -1.0f, 1.0f);
    gt_fill(&t->rng, w, (size_t)rows * cols, -1.0f, 1.0f);
    gt_fill(&t->rng, b, rows, -8.0f, 8.0f);
    if (!stacked_weight(t, &cw, &gw, blobs, w, rows, cols, nparts, mixed) ||
        (bias && !stacked_weight(t, &cb, &gb, bblob, b, rows, 1, 1, &bf)) ||
        !dbuf_create(t, &bx, (size_t)n * cols, false) || !dbuf_set(t, &bx, x) ||
        !dbuf_create(t, &out, (size_t)n * rows, lm_head) || !dbuf_poison(t, &out))
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
    }
out:
    if (cw.data)
        t->cpu->ops->free_weight(t->cpu, &cw);
    if (gw.data)
        t->gpu->ops->free_weight(t->gpu, &gw);
    if (cb.data)
        t->cpu->ops->free_weight(t->cpu, &cb);
    if (gb.data)
        t->gpu->ops->free_weight(t->gpu, &gb);
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

const struct gt_case gt_cases_matmul[] = {
    { "matmul_matches_cpu", matmul_matches_cpu },
    { "matmul_with_bias_matches_cpu", matmul_with_bias_matches_cpu },
    { "lm_head_matches_cpu", lm_head_matches_cpu },
    { NULL, NULL },
};
#endif
