/* test_scale.c — the scalings of kernels/scale.cu against the CPU backend: Gemma's embedding
 * scale on bf16 rows (sqrt(2560) and sqrt(2304) rounded to bf16, as HF multiplies) and the
 * final logit soft-cap on f32 logits, including logits far beyond the cap (tanh saturates)
 * and a count that is not a multiple of the block. */
#ifdef OSPREY_CUDA
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/base/util.h"
#include "tests/gpu/gpu_test.h"

static struct backend_options opts(void)
{
    return (struct backend_options){ .max_tokens = 512, .max_reqs = 8, .max_blocks_per_req = 8,
                                     .num_kv_groups = 1, .vocab_size = 16 };
}

static void scale_once(struct gt *t, int n, int dim, float s)
{
    size_t e = (size_t)n * dim;
    float *x = malloc(e * 4), *ref = malloc(e * 4), *got = malloc(e * 4);
    struct dbuf b = { 0 };
    char what[64];

    if (!gt_check(t, x && ref && got, "out of host memory"))
        goto out;
    gt_fill(&t->rng, x, e, -3.0f, 3.0f);
    if (!dbuf_create(t, &b, e, false) || !dbuf_set(t, &b, x))
        goto out;
    gt_check(t, t->cpu->ops->scale(t->cpu, b.cpu, n, dim, s) == 0, "cpu scale");
    gt_check(t, t->gpu->ops->scale(t->gpu, b.gpu, n, dim, s) == 0, "cuda scale");
    snprintf(what, sizeof what, "scale n %d dim %d by %g", n, dim, s);
    if (dbuf_get(t, &b, ref, got))
        gt_compare(t, what, got, ref, e, 1e-5, 8e-3, 1e-5);   /* one bf16 rounding */
out:
    dbuf_free(t, &b);
    free(x);
    free(ref);
    free(got);
}

static void scale_matches_cpu(struct gt *t)
{
    struct backend_options o = opts();

    if (!gt_backends(t, &o))
        return;
    scale_once(t, 1, 2560, bf16_to_f32(f32_to_bf16(sqrtf(2560.0f))));
    scale_once(t, 512, 2304, bf16_to_f32(f32_to_bf16(sqrtf(2304.0f))));
    scale_once(t, 3, 100, 8.0f);
    gt_note(t, "Gemma 3 4B and Gemma 2 2B embedding scales, 1 to 512 rows");
}

static void softcap_once(struct gt *t, int n, int vocab, float cap)
{
    size_t e = (size_t)n * vocab;
    float *x = malloc(e * 4), *ref = malloc(e * 4), *got = malloc(e * 4);
    struct dbuf b = { 0 };
    char what[64];

    if (!gt_check(t, x && ref && got, "out of host memory"))
        goto out;
    gt_fill(&t->rng, x, e, -4.0f * cap, 4.0f * cap);
    if (!dbuf_create(t, &b, e, true) || !dbuf_set(t, &b, x))
        goto out;
    gt_check(t, t->cpu->ops->softcap(t->cpu, b.cpu, n, vocab, cap) == 0, "cpu softcap");
    gt_check(t, t->gpu->ops->softcap(t->gpu, b.gpu, n, vocab, cap) == 0, "cuda softcap");
    snprintf(what, sizeof what, "softcap n %d vocab %d cap %g", n, vocab, cap);
    if (dbuf_get(t, &b, ref, got))
        gt_compare(t, what, got, ref, e, 1e-5, 1e-5, 1e-10);   /* f32 both: tanhf's ulps */
out:
    dbuf_free(t, &b);
    free(x);
    free(ref);
    free(got);
}

static void softcap_matches_cpu(struct gt *t)
{
    struct backend_options o = opts();

    if (!gt_backends(t, &o))
        return;
    softcap_once(t, 1, 256000, 30.0f);
    softcap_once(t, 8, 1000, 2.0f);
    softcap_once(t, 3, 7, 50.0f);
    gt_note(t, "Gemma 2's vocabulary and cap 30, logits to 4x the cap");
}

const struct gt_case gt_cases_scale[] = {
    { "scale_matches_cpu", scale_matches_cpu },
    { "softcap_matches_cpu", softcap_matches_cpu },
    { NULL, NULL },
};
#endif
