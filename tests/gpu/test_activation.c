/* test_activation.c — SwiGLU's silu(gate) * up and Gemma's GeGLU gelu_tanh(gate) * up against
 * the CPU backend, 1 to 512 rows, widths with and without 16-byte vectors, gates large
 * enough to saturate the sigmoid and the tanh. */
#ifdef OSPREY_CUDA
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/base/util.h"
#include "tests/gpu/gpu_test.h"

static void act_once(struct gt *t, int n, int ffn, bool gelu)
{
    size_t e = (size_t)n * ffn;
    float *x = malloc(2 * e * 4), *ref = malloc(e * 4), *got = malloc(e * 4);
    struct dbuf in = { 0 }, out = { 0 };
    char what[64];

    if (!gt_check(t, x && ref && got, "out of host memory"))
        goto out;
    gt_fill(&t->rng, x, 2 * e, -12.0f, 12.0f);
    if (!dbuf_create(t, &in, 2 * e, false) || !dbuf_set(t, &in, x) ||
        !dbuf_create(t, &out, e, false) || !dbuf_poison(t, &out))
        goto out;
    if (gelu) {
        gt_check(t, t->cpu->ops->gelu_tanh_mul(t->cpu, out.cpu, in.cpu, n, ffn) == 0,
                 "cpu gelu_tanh_mul");
        gt_check(t, t->gpu->ops->gelu_tanh_mul(t->gpu, out.gpu, in.gpu, n, ffn) == 0,
                 "cuda gelu_tanh_mul");
    } else {
        gt_check(t, t->cpu->ops->silu_mul(t->cpu, out.cpu, in.cpu, n, ffn) == 0, "cpu silu_mul");
        gt_check(t, t->gpu->ops->silu_mul(t->gpu, out.gpu, in.gpu, n, ffn) == 0, "cuda silu_mul");
    }
    snprintf(what, sizeof what, "%s n %d ffn %d", gelu ? "gelu_tanh_mul" : "silu_mul", n, ffn);
    if (dbuf_get(t, &out, ref, got))
        gt_compare(t, what, got, ref, e, 1e-5, 8e-3, 1e-5);
out:
    dbuf_free(t, &in);
    dbuf_free(t, &out);
    free(x);
    free(ref);
    free(got);
}

static void silu_mul_matches_cpu(struct gt *t)
{
    struct backend_options o = { .max_tokens = 512, .max_reqs = 8, .max_blocks_per_req = 8,
                                 .num_kv_groups = 1, .vocab_size = 16 };

    if (!gt_backends(t, &o))
        return;
    act_once(t, 1, 14336, false);
    act_once(t, 37, 128, false);
    act_once(t, 512, 8192, false);
    act_once(t, 7, 100, false);
    gt_note(t, "ffn 14336/128/8192/100, 1 to 512 rows, gates in [-12, 12]");
}

/* Gemma 3 4B's ffn 10240 and Gemma 2 2B's 9216, a width without 16-byte vectors */
static void gelu_tanh_mul_matches_cpu(struct gt *t)
{
    struct backend_options o = { .max_tokens = 512, .max_reqs = 8, .max_blocks_per_req = 8,
                                 .num_kv_groups = 1, .vocab_size = 16 };

    if (!gt_backends(t, &o))
        return;
    act_once(t, 1, 10240, true);
    act_once(t, 37, 9216, true);
    act_once(t, 512, 128, true);
    act_once(t, 7, 100, true);
    gt_note(t, "ffn 10240/9216/128/100, 1 to 512 rows, gates in [-12, 12]");
}

const struct gt_case gt_cases_activation[] = {
    { "silu_mul_matches_cpu", silu_mul_matches_cpu },
    { "gelu_tanh_mul_matches_cpu", gelu_tanh_mul_matches_cpu },
    { NULL, NULL },
};
#endif
