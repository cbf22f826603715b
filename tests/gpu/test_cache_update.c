/* test_cache_update.c — kernel 1 on a poisoned cache: after cache_update exactly the mapped
 * slots hold the tokens' K and V rows (bit for bit), every other byte of the cache is the
 * poison it was, padding tokens (slot -1) and slots outside the cache write nothing; and
 * the written rows equal the CPU backend's. Block sizes 1, 16, 32; KV heads 1, 2, 8; one
 * token, a count that is not a multiple of the block, and the largest graph size. And the
 * fused rope_cache_update (kernels/cache_update.cu, the default GPU path) against rope
 * followed by cache_update: the same q, k and cache bits, padding slots untouched. */
#ifdef OSPREY_CUDA
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"
#include "tests/gpu/gpu_test.h"

#define LARGEST_GRAPH 512

/* One run: n tokens of a qkv buffer ([n, (H + 2 KV) * D], H = 2 KV) into a cache of
 * enough blocks for twice the tokens; every 5th token is padding; `extra_slot` >= 0 gives
 * token 0 that slot instead (outside the cache: GPU only, the CPU refuses it). */
static void run(struct gt *t, int n, int bs, int kvh, int D, long long extra_slot)
{
    int H = 2 * kvh, stride = (H + 2 * kvh) * D, row = kvh * D;
    int num_blocks = (2 * n + bs - 1) / bs + 3;
    long long num_slots = (long long)num_blocks * bs;
    size_t cache_elems = (size_t)num_slots * row;
    float *qkv = malloc((size_t)n * stride * 4);
    int64_t *slots = malloc((size_t)n * 8);
    long long *perm = malloc((size_t)num_slots * sizeof *perm);
    uint16_t *poison = malloc(cache_elems * 2), *got[2] = { malloc(cache_elems * 2), malloc(cache_elems * 2) };
    float *cpu_cache[2] = { malloc(cache_elems * 4), malloc(cache_elems * 4) };
    struct cache_layout l = { num_blocks, bs, kvh, D, DT_F32, 0, 0 };
    struct dbuf x = { 0 };
    struct rbuf sm = { 0 };
    void *gk = NULL, *gv = NULL, *ck = NULL, *cv = NULL;
    char err[ERR_LEN];
    int written = 0;

    if (!gt_check(t, qkv && slots && perm && poison && got[0] && got[1] && cpu_cache[0] &&
                  cpu_cache[1], "out of host memory"))
        goto out;
    gt_fill(&t->rng, qkv, (size_t)n * stride, -4.0f, 4.0f);
    for (long long s = 0; s < num_slots; s++)
        perm[s] = s;
    for (long long s = num_slots - 1; s > 0; s--) {   /* distinct random slots */
        long long j = (long long)(gt_rand_u64(&t->rng) % (uint64_t)(s + 1)), tmp = perm[s];
        perm[s] = perm[j];
        perm[j] = tmp;
    }
    for (int i = 0; i < n; i++)
        slots[i] = i % 5 == 4 ? KV_PADDING_SLOT : perm[i];
    if (extra_slot >= 0)
        slots[0] = extra_slot;
    for (size_t i = 0; i < cache_elems; i++)
        poison[i] = (uint16_t)gt_rand_u64(&t->rng);   /* any bits, NaNs included */

    if (!dbuf_create(t, &x, (size_t)n * stride, false) || !dbuf_set(t, &x, qkv) ||
        !rbuf_create(t, &sm, slots, (size_t)n * 8))
        goto out;
    gk = t->gpu->ops->alloc(t->gpu, cache_elems * 2, err);
    gv = t->gpu->ops->alloc(t->gpu, cache_elems * 2, err);
    ck = t->cpu->ops->alloc(t->cpu, cache_elems * 4, err);
    cv = t->cpu->ops->alloc(t->cpu, cache_elems * 4, err);
    if (!gt_check(t, gk && gv && ck && cv, "alloc: %s", err) ||
        !gt_check(t, !t->gpu->ops->upload(t->gpu, gk, poison, cache_elems * 2) &&
                     !t->gpu->ops->upload(t->gpu, gv, poison, cache_elems * 2), "upload"))
        goto out;
    memset(ck, 0xff, cache_elems * 4);
    memset(cv, 0xff, cache_elems * 4);

    gt_check(t, t->gpu->ops->cache_update(t->gpu, (uint16_t *)x.gpu + H * D,
                                          (uint16_t *)x.gpu + (H + kvh) * D, stride, sm.gpu, n,
                                          gk, gv, &l) == 0, "cuda cache_update failed");
    if (extra_slot < 0)
        gt_check(t, t->cpu->ops->cache_update(t->cpu, (float *)x.cpu + H * D,
                                              (float *)x.cpu + (H + kvh) * D, stride, sm.cpu, n,
                                              ck, cv, &l) == 0, "cpu cache_update failed");
    if (!gt_check(t, !t->gpu->ops->download(t->gpu, got[0], gk, cache_elems * 2) &&
                     !t->gpu->ops->download(t->gpu, got[1], gv, cache_elems * 2), "download"))
        goto out;
    memcpy(cpu_cache[0], ck, cache_elems * 4);
    memcpy(cpu_cache[1], cv, cache_elems * 4);

    /* expected: poison everywhere, the token's row at each mapped slot */
    for (int kv = 0; kv < 2; kv++) {
        uint16_t *want = malloc(cache_elems * 2);
        size_t diff = 0, first = 0;

        if (!gt_check(t, want != NULL, "out of host memory"))
            goto out;
        memcpy(want, poison, cache_elems * 2);
        for (int i = 0; i < n; i++) {
            if (slots[i] < 0 || slots[i] >= num_slots)
                continue;
            for (int e = 0; e < row; e++)
                want[(size_t)slots[i] * row + e] =
                    f32_to_bf16(qkv[(size_t)i * stride + (H + kv * kvh) * D + e]);
            written += kv == 0;
        }
        for (size_t e = 0; e < cache_elems; e++)
            if (want[e] != got[kv][e] && diff++ == 0)
                first = e;
        gt_check(t, diff == 0, "%s cache: %zu elements differ, first at slot %zu (n %d, block %d, "
                 "kv heads %d, D %d)", kv ? "V" : "K", diff, first / row, n, bs, kvh, D);
        free(want);
    }
    /* and the mapped rows equal the CPU backend's */
    if (extra_slot < 0)
        for (int kv = 0; kv < 2; kv++)
            for (int i = 0; i < n; i++) {
                float g[1024];
                if (slots[i] < 0 || row > 1024)
                    continue;
                for (int e = 0; e < row; e++)
                    g[e] = bf16_to_f32(got[kv][(size_t)slots[i] * row + e]);
                if (!gt_compare(t, kv ? "V row vs cpu" : "K row vs cpu", g,
                                cpu_cache[kv] + (size_t)slots[i] * row, row, 0.0, 0.0, 0.0))
                    break;
            }
    gt_check(t, written == n - n / 5 - (extra_slot >= 0), "%d rows written, expected %d",
             written, n - n / 5 - (extra_slot >= 0));
out:
    if (gk)
        t->gpu->ops->free(t->gpu, gk);
    if (gv)
        t->gpu->ops->free(t->gpu, gv);
    if (ck)
        t->cpu->ops->free(t->cpu, ck);
    if (cv)
        t->cpu->ops->free(t->cpu, cv);
    dbuf_free(t, &x);
    rbuf_free(t, &sm);
    free(qkv);
    free(slots);
    free(perm);
    free(poison);
    free(got[0]);
    free(got[1]);
    free(cpu_cache[0]);
    free(cpu_cache[1]);
}

static bool backends(struct gt *t)
{
    struct backend_options o = { .num_threads = 0, .max_tokens = LARGEST_GRAPH, .max_reqs = 8,
                                 .max_blocks_per_req = 8, .num_kv_groups = 1, .vocab_size = 16 };
    return gt_backends(t, &o);
}

static void writes_exactly_the_mapped_slots(struct gt *t, int bs)
{
    const int heads[] = { 1, 2, 8 }, counts[] = { 1, 37, LARGEST_GRAPH };

    if (!backends(t))
        return;
    for (size_t h = 0; h < ARRAY_LEN(heads); h++)
        for (size_t c = 0; c < ARRAY_LEN(counts); c++)
            run(t, counts[c], bs, heads[h], 128, -1);
    run(t, 37, bs, 2, 64, -1);
    run(t, 37, bs, 2, 24, -1);
    gt_note(t, "block %d: kv heads 1/2/8 x tokens 1/37/%d, D 128 (+64, 24)", bs, LARGEST_GRAPH);
}

static void cache_update_writes_exactly_the_mapped_slots_bs1(struct gt *t)
{
    writes_exactly_the_mapped_slots(t, 1);
}

static void cache_update_writes_exactly_the_mapped_slots_bs16(struct gt *t)
{
    writes_exactly_the_mapped_slots(t, 16);
}

static void cache_update_writes_exactly_the_mapped_slots_bs32(struct gt *t)
{
    writes_exactly_the_mapped_slots(t, 32);
}

static void cache_update_odd_row_width_takes_the_scalar_path(struct gt *t)
{
    if (!backends(t))
        return;
    run(t, 37, 16, 1, 12, -1);   /* a row of 12 elements: no 16-byte vectors */
    run(t, 5, 16, 3, 6, -1);
    gt_note(t, "rows of 12 and 18 elements");
}

static void cache_update_ignores_slots_outside_the_cache(struct gt *t)
{
    if (!backends(t))
        return;
    run(t, 37, 16, 2, 128, (2 * 37 + 15) / 16 * 16 + 3 * 16);   /* == num_slots */
    run(t, 37, 16, 2, 128, 1LL << 40);
    gt_note(t, "slot == num_slots and 2^40: nothing written");
}

/* ---- rope_cache_update: RoPE and the same write in one pass (the default GPU path) ---- */

struct fused_shape {
    int H, KV, D, n;
    int rd;                    /* rotary dims, 0 = D (Phi-3's partial rotary otherwise) */
    float ms;                  /* mscale, 0 = 1 */
};

/* The same q, k, v and poisoned caches through both paths on the GPU; fp8: an e4m3 cache
 * with scales that are not powers of two (and small enough for k to saturate). Compared as
 * bytes: q (bf16), then the K and V caches (es bytes an element). */
static void fused_once(struct gt *t, const struct fused_shape *s, int bs, bool fp8)
{
    int stride = (s->H + 2 * s->KV) * s->D, row = s->KV * s->D;
    int num_blocks = (2 * s->n + bs - 1) / bs + 1;
    size_t es = fp8 ? 1 : 2, elems = (size_t)s->n * stride, cache = (size_t)num_blocks * bs * row;
    size_t qb = elems * 2, cb = cache * es, total = qb + 2 * cb;
    struct backend *g = t->gpu;
    float *x = malloc(elems * 4), inv[256];
    int32_t *pos = malloc((size_t)s->n * 4);
    int64_t *slots = malloc((size_t)s->n * 8);
    uint8_t *poison = malloc(cb), *a = malloc(2 * total);
    uint8_t *b = a ? a + total : NULL;
    struct dbuf q1 = { 0 }, q2 = { 0 };
    struct rbuf p = { 0 }, f = { 0 }, sm = { 0 };
    void *kc[2] = { 0 }, *vc[2] = { 0 };
    struct cache_layout l = { num_blocks, bs, s->KV, s->D, fp8 ? DT_F8_E4M3 : DT_F32,
                              fp8 ? 0.0113f : 0.0f, fp8 ? 0.37f : 0.0f };
    struct rope_params rp;
    uint16_t *k1, *k2;
    char err[ERR_LEN];
    size_t diff = 0, first = 0;

    if (!gt_check(t, x && pos && slots && poison && a, "out of host memory"))
        goto out;
    gt_fill(&t->rng, x, elems, -4.0f, 4.0f);
    gt_inv_freq(inv, s->rd ? s->rd : s->D, 10000.0);
    gt_positions(&t->rng, pos, s->n);
    for (int i = 0; i < s->n; i++)
        slots[i] = i % 4 == 3 ? KV_PADDING_SLOT : (int64_t)(2 * i + (i & 1));
    for (size_t i = 0; i < cb; i++)
        poison[i] = (uint8_t)gt_rand_u64(&t->rng);
    if (!dbuf_create(t, &q1, elems, false) || !dbuf_set(t, &q1, x) ||
        !dbuf_create(t, &q2, elems, false) || !dbuf_set(t, &q2, x) ||
        !rbuf_create(t, &p, pos, (size_t)s->n * 4) || !rbuf_create(t, &f, inv, (size_t)s->D / 2 * 4) ||
        !rbuf_create(t, &sm, slots, (size_t)s->n * 8))
        goto out;
    for (int i = 0; i < 2; i++) {
        kc[i] = g->ops->alloc(g, cb, err);
        vc[i] = g->ops->alloc(g, cb, err);
        if (!gt_check(t, kc[i] && vc[i], "alloc: %s", err) ||
            !gt_check(t, !g->ops->upload(g, kc[i], poison, cb) &&
                         !g->ops->upload(g, vc[i], poison, cb), "upload"))
            goto out;
    }
    rp = (struct rope_params){ s->H, s->KV, s->D, stride, f.gpu, s->rd ? s->rd : s->D,
                               s->ms ? s->ms : 1.0f };
    k1 = (uint16_t *)q1.gpu + s->H * s->D;
    k2 = (uint16_t *)q2.gpu + s->H * s->D;
    gt_check(t, g->ops->rope(g, q1.gpu, k1, p.gpu, s->n, &rp) == 0 &&
                g->ops->cache_update(g, k1, k1 + row, stride, sm.gpu, s->n, kc[0], vc[0], &l) == 0,
             "rope + cache_update failed");
    gt_check(t, g->ops->rope_cache_update(g, q2.gpu, k2, k2 + row, p.gpu, sm.gpu, s->n, &rp,
                                          kc[1], vc[1], &l) == 0, "rope_cache_update failed");
    for (int i = 0; i < 2; i++) {
        uint8_t *dst = i ? b : a;
        if (!gt_check(t, !g->ops->download(g, dst, i ? q2.gpu : q1.gpu, qb) &&
                         !g->ops->download(g, dst + qb, kc[i], cb) &&
                         !g->ops->download(g, dst + qb + cb, vc[i], cb), "download"))
            goto out;
    }
    for (size_t i = 0; i < total; i++)
        if (a[i] != b[i] && diff++ == 0)
            first = i;
    gt_check(t, diff == 0, "%s: fused and unfused differ in %zu of %zu bytes, first in %s at "
             "byte %zu (0x%02x unfused, 0x%02x fused; H %d KV %d D %d n %d)", fp8 ? "fp8" : "bf16",
             diff, total, first < qb ? "q/k" : first < qb + cb ? "the K cache" : "the V cache",
             first < qb ? first : (first - qb) % cb, a[first], b[first], s->H, s->KV, s->D, s->n);
    /* padding slots and unmapped slots kept their poison in both caches */
    for (int sl = 0; sl < num_blocks * bs; sl++) {
        bool mapped = false;
        for (int i = 0; i < s->n && !mapped; i++)
            mapped = slots[i] == sl;
        for (int c = 0; c < 2 && !mapped; c++)
            if (memcmp(b + qb + c * cb + (size_t)sl * row * es, poison + (size_t)sl * row * es,
                       row * es)) {
                gt_check(t, false, "%s: slot %d of the %s cache was written but no token maps to it",
                         fp8 ? "fp8" : "bf16", sl, c ? "V" : "K");
                mapped = true;
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
    const struct fused_shape shapes[] = {
        { 32, 8, 128, 1, 0, 0 }, { 32, 8, 128, 37, 0, 0 }, { 32, 8, 128, 512, 0, 0 },
        { 8, 1, 64, 37, 0, 0 }, { 4, 2, 24, 37, 0, 0 },
        { 24, 8, 128, 37, 96, 1.19f }, { 4, 2, 24, 37, 12, 1.3f },   /* Phi-3's partial rotary */
    };

    if (!backends(t))
        return;
    for (size_t i = 0; i < ARRAY_LEN(shapes); i++)
        fused_once(t, &shapes[i], i % 2 ? 16 : 32, false);
    gt_note(t, "bit-exact q, k, K and V caches; padding slots untouched");
}

static void fp8_rope_cache_update_equals_rope_then_cache_update(struct gt *t)
{
    const struct fused_shape shapes[] = {
        { 32, 8, 128, 1, 0, 0 }, { 32, 8, 128, 37, 0, 0 }, { 32, 8, 128, 512, 0, 0 },
        { 8, 1, 64, 37, 0, 0 }, { 4, 2, 24, 37, 0, 0 },
        { 24, 8, 128, 37, 96, 1.19f }, { 4, 2, 24, 37, 12, 1.3f },
    };

    if (!backends(t))
        return;
    for (size_t i = 0; i < ARRAY_LEN(shapes); i++)
        fused_once(t, &shapes[i], i % 2 ? 16 : 32, true);
    gt_note(t, "fp8 e4m3 caches (k_scale 0.0113, v_scale 0.37): bit-exact, padding untouched");
}

const struct gt_case gt_cases_cache_update[] = {
    { "cache_update_writes_exactly_the_mapped_slots_bs1", cache_update_writes_exactly_the_mapped_slots_bs1 },
    { "cache_update_writes_exactly_the_mapped_slots_bs16", cache_update_writes_exactly_the_mapped_slots_bs16 },
    { "cache_update_writes_exactly_the_mapped_slots_bs32", cache_update_writes_exactly_the_mapped_slots_bs32 },
    { "cache_update_odd_row_width_takes_the_scalar_path", cache_update_odd_row_width_takes_the_scalar_path },
    { "cache_update_ignores_slots_outside_the_cache", cache_update_ignores_slots_outside_the_cache },
    { "rope_cache_update_equals_rope_then_cache_update", rope_cache_update_equals_rope_then_cache_update },
    { "fp8_rope_cache_update_equals_rope_then_cache_update", fp8_rope_cache_update_equals_rope_then_cache_update },
    { NULL, NULL },
};
#endif
