/* test_rope.c — rotary embedding against the CPU backend (positions up to 128k, where the
 * angle's f32 product and accurate cos/sin matter; head_dim 128, 64 and 24 — the last has
 * no 16-byte vectors), and the fused rope_cache_update against rope followed by
 * cache_update on the GPU: the same q, k and cache bits, padding slots untouched. */
#ifdef OSPREY_CUDA
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"
#include "tests/gpu/gpu_test.h"

struct rope_shape {
    int H, KV, D, n;
};

static bool backends(struct gt *t)
{
    struct backend_options o = { .max_tokens = 512, .max_reqs = 8, .max_blocks_per_req = 8,
                                 .num_kv_groups = 1, .vocab_size = 16 };
    return gt_backends(t, &o);
}

static void make_inv_freq(float *f, int D, double theta)
{
    for (int i = 0; i < D / 2; i++)
        f[i] = (float)pow(theta, -2.0 * i / D);
}

static void make_positions(struct gt *t, int32_t *pos, int n)
{
    for (int i = 0; i < n; i++)
        pos[i] = i % 3 == 0 ? gt_randint(&t->rng, 131072) : gt_randint(&t->rng, 4096);
    pos[0] = 0;
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

    if (!gt_check(t, x && ref && got && pos, "out of host memory"))
        goto out;
    gt_fill(&t->rng, x, elems, -4.0f, 4.0f);
    make_inv_freq(inv, s->D, 500000.0);
    make_positions(t, pos, s->n);
    if (!dbuf_create(t, &q, elems, false) || !dbuf_set(t, &q, x) ||
        !rbuf_create(t, &p, pos, (size_t)s->n * 4) || !rbuf_create(t, &f, inv, (size_t)s->D / 2 * 4))
        goto out;
    rc = (struct rope_params){ s->H, s->KV, s->D, stride, f.cpu };
    rg = (struct rope_params){ s->H, s->KV, s->D, stride, f.gpu };
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
        { 32, 8, 128, 1 }, { 32, 8, 128, 37 }, { 32, 8, 128, 512 },
        { 16, 16, 64, 37 }, { 4, 2, 24, 37 }, { 4, 2, 16, 512 },
    };

    if (!backends(t))
        return;
    for (size_t i = 0; i < ARRAY_LEN(shapes); i++)
        rope_once(t, &shapes[i]);
    gt_note(t, "H/KV/D 32/8/128 x 1/37/512 tokens, 16/16/64, 4/2/24, 4/2/16; pos < 128k");
}

/* The same q, k, v and poisoned caches through both paths on the GPU. */
static void fused_once(struct gt *t, const struct rope_shape *s, int bs)
{
    int stride = (s->H + 2 * s->KV) * s->D, row = s->KV * s->D;
    int num_blocks = (2 * s->n + bs - 1) / bs + 1;
    size_t elems = (size_t)s->n * stride, cache = (size_t)num_blocks * bs * row;
    struct backend *g = t->gpu;
    float *x = malloc(elems * 4), inv[256];
    int32_t *pos = malloc((size_t)s->n * 4);
    int64_t *slots = malloc((size_t)s->n * 8);
    uint16_t *poison = malloc(cache * 2), *a = malloc(2 * (elems + 2 * cache) * 2);
    uint16_t *b = a ? a + elems + 2 * cache : NULL;
    struct dbuf q1 = { 0 }, q2 = { 0 };
    struct rbuf p = { 0 }, f = { 0 }, sm = { 0 };
    void *kc[2] = { 0 }, *vc[2] = { 0 };
    struct cache_layout l = { num_blocks, bs, s->KV, s->D, DT_F32, 0, 0 };
    struct rope_params rp;
    uint16_t *k1, *k2;
    char err[ERR_LEN];
    size_t diff = 0;

    if (!gt_check(t, x && pos && slots && poison && a, "out of host memory"))
        goto out;
    gt_fill(&t->rng, x, elems, -4.0f, 4.0f);
    make_inv_freq(inv, s->D, 10000.0);
    make_positions(t, pos, s->n);
    for (int i = 0; i < s->n; i++)
        slots[i] = i % 4 == 3 ? KV_PADDING_SLOT : (int64_t)(2 * i + (i & 1));
    for (size_t i = 0; i < cache; i++)
        poison[i] = (uint16_t)gt_rand_u64(&t->rng);
    if (!dbuf_create(t, &q1, elems, false) || !dbuf_set(t, &q1, x) ||
        !dbuf_create(t, &q2, elems, false) || !dbuf_set(t, &q2, x) ||
        !rbuf_create(t, &p, pos, (size_t)s->n * 4) || !rbuf_create(t, &f, inv, (size_t)s->D / 2 * 4) ||
        !rbuf_create(t, &sm, slots, (size_t)s->n * 8))
        goto out;
    for (int i = 0; i < 2; i++) {
        kc[i] = g->ops->alloc(g, cache * 2, err);
        vc[i] = g->ops->alloc(g, cache * 2, err);
        if (!gt_check(t, kc[i] && vc[i], "alloc: %s", err) ||
            !gt_check(t, !g->ops->upload(g, kc[i], poison, cache * 2) &&
                         !g->ops->upload(g, vc[i], poison, cache * 2), "upload"))
            goto out;
    }
    rp = (struct rope_params){ s->H, s->KV, s->D, stride, f.gpu };
    k1 = (uint16_t *)q1.gpu + s->H * s->D;
    k2 = (uint16_t *)q2.gpu + s->H * s->D;
    gt_check(t, g->ops->rope(g, q1.gpu, k1, p.gpu, s->n, &rp) == 0 &&
                g->ops->cache_update(g, k1, k1 + row, stride, sm.gpu, s->n, kc[0], vc[0], &l) == 0,
             "rope + cache_update failed");
    gt_check(t, g->ops->rope_cache_update(g, q2.gpu, k2, k2 + row, p.gpu, sm.gpu, s->n, &rp,
                                          kc[1], vc[1], &l) == 0, "rope_cache_update failed");
    for (int i = 0; i < 2; i++) {
        uint16_t *dst = i ? b : a;
        if (!gt_check(t, !g->ops->download(g, dst, i ? q2.gpu : q1.gpu, elems * 2) &&
                         !g->ops->download(g, dst + elems, kc[i], cache * 2) &&
                         !g->ops->download(g, dst + elems + cache, vc[i], cache * 2), "download"))
            goto out;
    }
    for (size_t i = 0; i < elems + 2 * cache; i++)
        diff += a[i] != b[i];
    gt_check(t, diff == 0, "fused and unfused differ in %zu of %zu elements (H %d KV %d D %d n %d)",
             diff, elems + 2 * cache, s->H, s->KV, s->D, s->n);
    /* padding slots and unmapped slots kept their poison in both */
    for (int sl = 0; sl < num_blocks * bs; sl++) {
        bool mapped = false;
        for (int i = 0; i < s->n && !mapped; i++)
            mapped = slots[i] == sl;
        if (!mapped && memcmp(b + elems + (size_t)sl * row, poison + (size_t)sl * row, row * 2)) {
            gt_check(t, false, "slot %d was written but no token maps to it", sl);
            break;
        }
    }
out:
    for (int i = 0; i < 2; i++) {
        if (kc[i])
            g->ops->free(g, kc[i]);
        if (vc[i])
            g->ops->free(g, vc[i]);
    }
    dbuf_free(t, &q1);
    dbuf_free(t, &q2);
    rbuf_free(t, &p);
    rbuf_free(t, &f);
    rbuf_free(t, &sm);
    free(x);
    free(pos);
    free(slots);
    free(poison);
    free(a);
}

static void rope_cache_update_equals_rope_then_cache_update(struct gt *t)
{
    const struct rope_shape shapes[] = {
        { 32, 8, 128, 1 }, { 32, 8, 128, 37 }, { 32, 8, 128, 512 }, { 8, 1, 64, 37 },
        { 4, 2, 24, 37 },
    };

    if (!backends(t))
        return;
    for (size_t i = 0; i < ARRAY_LEN(shapes); i++)
        fused_once(t, &shapes[i], i % 2 ? 16 : 32);
    gt_note(t, "bit-exact q, k, K and V caches; padding slots untouched");
}

const struct gt_case gt_cases_rope[] = {
    { "rope_matches_cpu", rope_matches_cpu },
    { "rope_cache_update_equals_rope_then_cache_update", rope_cache_update_equals_rope_then_cache_update },
    { NULL, NULL },
};
#endif
