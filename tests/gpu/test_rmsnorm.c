/* test_rmsnorm.c — RMSNorm against the CPU backend: plain and with the residual add fused
 * (the updated residual compared too), widths with and without 16-byte vectors, 1 to 512
 * rows; and the per-head q/k norm of Qwen3 in place inside qkv rows. */
#ifdef OSPREY_CUDA
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

static void norm_once(struct gt *t, int n, int dim, bool residual)
{
    size_t e = (size_t)n * dim;
    float *x = malloc(e * 4), *r = malloc(e * 4), *w = malloc(dim * 4);
    float *ref = malloc(e * 4), *got = malloc(e * 4);
    struct dbuf bx = { 0 }, br = { 0 }, bo = { 0 };
    struct dweight dw = { 0 };
    char what[64];

    if (!gt_check(t, x && r && w && ref && got, "out of host memory"))
        goto out;
    gt_fill(&t->rng, x, e, -3.0f, 3.0f);
    gt_fill(&t->rng, r, e, -3.0f, 3.0f);
    gt_fill(&t->rng, w, dim, 0.5f, 1.5f);
    if (!dbuf_create(t, &bx, e, false) || !dbuf_set(t, &bx, x) || !dbuf_create(t, &br, e, false) ||
        !dbuf_set(t, &br, r) || !dbuf_create(t, &bo, e, false) || !dbuf_poison(t, &bo) ||
        !dweight_create(t, &dw, w, dim, 1, DT_BF16))
        goto out;
    gt_check(t, t->cpu->ops->rmsnorm(t->cpu, bo.cpu, residual ? br.cpu : NULL, bx.cpu, &dw.cpu, n,
                                     1e-5f) == 0, "cpu rmsnorm failed");
    gt_check(t, t->gpu->ops->rmsnorm(t->gpu, bo.gpu, residual ? br.gpu : NULL, bx.gpu, &dw.gpu, n,
                                     1e-5f) == 0, "cuda rmsnorm failed");
    snprintf(what, sizeof what, "rmsnorm n %d dim %d%s", n, dim, residual ? " +residual" : "");
    /* the GPU normalizes the bf16-rounded residual sum: within a bf16 step of the f32 path */
    if (dbuf_get(t, &bo, ref, got))
        gt_compare(t, what, got, ref, e, 2e-2, 1.6e-2, 1e-4);
    if (residual && dbuf_get(t, &br, ref, got))
        gt_compare(t, "residual += x", got, ref, e, 1e-6, 4e-3, 1e-5);
out:
    dbuf_free(t, &bx);
    dbuf_free(t, &br);
    dbuf_free(t, &bo);
    dweight_free(t, &dw);
    free(x);
    free(r);
    free(w);
    free(ref);
    free(got);
}

static void rmsnorm_matches_cpu(struct gt *t)
{
    const int dims[] = { 64, 4096, 8192, 1000 }, ns[] = { 1, 37, 512 };

    if (!backends(t))
        return;
    for (size_t d = 0; d < ARRAY_LEN(dims); d++)
        for (size_t i = 0; i < ARRAY_LEN(ns); i++)
            for (int res = 0; res < 2; res++)
                norm_once(t, ns[i], dims[d], res);
    norm_once(t, 3, 1001, true);   /* odd width: the scalar path */
    gt_note(t, "dims 64/4096/8192/1000/1001 x 1/37/512 rows, with and without residual");
}

static void head_once(struct gt *t, int n, int H, int KV, int D)
{
    int stride = (H + 2 * KV) * D;
    size_t e = (size_t)n * stride;
    float *x = malloc(e * 4), *w = malloc(D * 4), *ref = malloc(e * 4), *got = malloc(e * 4);
    struct dbuf b = { 0 };
    struct dweight dw = { 0 };

    if (!gt_check(t, x && w && ref && got, "out of host memory"))
        goto out;
    gt_fill(&t->rng, x, e, -3.0f, 3.0f);
    gt_fill(&t->rng, w, D, 0.5f, 1.5f);
    if (!dbuf_create(t, &b, e, false) || !dbuf_set(t, &b, x) || !dweight_create(t, &dw, w, D, 1, DT_BF16))
        goto out;
    /* q heads, then k heads: the layer's two calls */
    gt_check(t, t->cpu->ops->head_rmsnorm(t->cpu, b.cpu, stride, H, D, &dw.cpu, n, 1e-6f) == 0 &&
                t->cpu->ops->head_rmsnorm(t->cpu, (float *)b.cpu + H * D, stride, KV, D, &dw.cpu, n,
                                          1e-6f) == 0, "cpu head_rmsnorm failed");
    gt_check(t, t->gpu->ops->head_rmsnorm(t->gpu, b.gpu, stride, H, D, &dw.gpu, n, 1e-6f) == 0 &&
                t->gpu->ops->head_rmsnorm(t->gpu, (uint16_t *)b.gpu + H * D, stride, KV, D, &dw.gpu,
                                          n, 1e-6f) == 0, "cuda head_rmsnorm failed");
    if (dbuf_get(t, &b, ref, got))
        gt_compare(t, "head_rmsnorm", got, ref, e, 1e-5, 8e-3, 1e-5);
out:
    dbuf_free(t, &b);
    dweight_free(t, &dw);
    free(x);
    free(w);
    free(ref);
    free(got);
}

static void head_rmsnorm_matches_cpu(struct gt *t)
{
    if (!backends(t))
        return;
    head_once(t, 1, 32, 8, 128);
    head_once(t, 37, 32, 8, 128);
    head_once(t, 512, 16, 4, 64);
    head_once(t, 37, 4, 2, 24);
    head_once(t, 5, 4, 2, 12);     /* no 16-byte vectors */
    gt_note(t, "q then k heads in qkv rows: D 128/64/24/12, 1 to 512 rows");
}

const struct gt_case gt_cases_rmsnorm[] = {
    { "rmsnorm_matches_cpu", rmsnorm_matches_cpu },
    { "head_rmsnorm_matches_cpu", head_rmsnorm_matches_cpu },
    { NULL, NULL },
};
#endif
