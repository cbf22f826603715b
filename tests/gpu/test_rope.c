/* test_rope.c — rotary embedding against the CPU backend (positions up to 128k, where the
 * angle's f32 product and accurate cos/sin matter; head_dim 128, 64 and 24 — the last has
 * no 16-byte vectors; Phi-4-mini's partial rotary (96 of 128 dims) with LongRoPE's mscale,
 * and a partial rotary without 16-byte vectors). The fused rope_cache_update is tested beside its kernel, in
 * test_cache_update.c. */
#ifdef OSPREY_CUDA
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"
#include "tests/gpu/gpu_test.h"

struct rope_shape {
    int H, KV, D, n;
    int rd;                    /* rotary dims, 0 = D */
    float ms;                  /* mscale, 0 = 1 */
};

static bool backends(struct gt *t)
{
    struct backend_options o = { .max_tokens = 512, .max_reqs = 8, .max_blocks_per_req = 8,
                                 .num_kv_groups = 1, .vocab_size = 16 };
    return gt_backends(t, &o);
}

static void rope_once(struct gt *t, const struct rope_shape *s)
{
    int stride = (s->H + 2 * s->KV) * s->D;
    size_t elems = (size_t)s->n * stride;
    float *x = malloc(elems * 4), *ref = malloc(elems * 4), *got = malloc(elems * 4);
    float inv[256];
    int32_t *pos = malloc((size_t)s->n * 4);
    struct dbuf q = { 0 };
    struct rbuf p = { 0 }, f = { 0 };
    struct rope_params rc, rg;
    int rd = s->rd ? s->rd : s->D;
    float ms = s->ms ? s->ms : 1.0f;

    if (!gt_check(t, x && ref && got && pos, "out of host memory"))
        goto out;
    gt_fill(&t->rng, x, elems, -4.0f, 4.0f);
    gt_inv_freq(inv, rd, 500000.0);
    gt_positions(&t->rng, pos, s->n);
    if (!dbuf_create(t, &q, elems, false) || !dbuf_set(t, &q, x) ||
        !rbuf_create(t, &p, pos, (size_t)s->n * 4) || !rbuf_create(t, &f, inv, (size_t)s->D / 2 * 4))
        goto out;
    rc = (struct rope_params){ s->H, s->KV, s->D, stride, f.cpu, rd, ms };
    rg = (struct rope_params){ s->H, s->KV, s->D, stride, f.gpu, rd, ms };
    gt_check(t, t->cpu->ops->rope(t->cpu, q.cpu, (float *)q.cpu + s->H * s->D, p.cpu, s->n, &rc) == 0,
             "cpu rope failed");
    gt_check(t, t->gpu->ops->rope(t->gpu, q.gpu, (uint16_t *)q.gpu + s->H * s->D, p.gpu, s->n, &rg) == 0,
             "cuda rope failed");
    if (dbuf_get(t, &q, ref, got))
        gt_compare(t, "rope q/k/v", got, ref, elems, 1e-4, 8e-3, 1e-5);
out:
    dbuf_free(t, &q);
    rbuf_free(t, &p);
    rbuf_free(t, &f);
    free(x);
    free(ref);
    free(got);
    free(pos);
}

static void rope_matches_cpu(struct gt *t)
{
    const struct rope_shape shapes[] = {
        { 32, 8, 128, 1, 0, 0 }, { 32, 8, 128, 37, 0, 0 }, { 32, 8, 128, 512, 0, 0 },
        { 16, 16, 64, 37, 0, 0 }, { 4, 2, 24, 37, 0, 0 }, { 4, 2, 16, 512, 0, 0 },
        { 24, 8, 128, 37, 96, 1.19f }, { 4, 2, 24, 37, 12, 1.3f },
    };

    if (!backends(t))
        return;
    for (size_t i = 0; i < ARRAY_LEN(shapes); i++)
        rope_once(t, &shapes[i]);
    gt_note(t, "H/KV/D 32/8/128 x 1/37/512 tokens, 16/16/64, 4/2/24, 4/2/16, partial 96 of "
            "24/8/128 and 12 of 4/2/24 with mscale; pos < 128k");
}

const struct gt_case gt_cases_rope[] = {
    { "rope_matches_cpu", rope_matches_cpu },
    { NULL, NULL },
};
#endif
