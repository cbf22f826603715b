/* test_fp8_cache.c — the fp8 (e4m3) KV cache write on the GPU against the CPU backend:
 * cache_update on a poisoned byte cache writes at each mapped slot exactly the bytes the
 * CPU backend writes (engine/cpu/cache_update.c through engine/base/fp8.c), every other
 * byte keeps its poison, padding tokens (slot -1) write nothing; scales that are not powers
 * of two, values that saturate at 448 and values in the subnormal range. And the rounding
 * itself, exhaustively: every one of the 65536 bf16 bit patterns (NaNs, infinities,
 * subnormals, both zeros) through the kernel gives fp8_e4m3_from_f32(x / scale). */
#ifdef OSPREY_CUDA
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/fp8.h"
#include "engine/base/util.h"
#include "tests/gpu/gpu_test.h"

/* n tokens of a qkv buffer ([n, (H + 2 KV) * D], H = 2 KV), values in [-lim, lim], into a
 * poisoned e4m3 cache of enough blocks for twice the tokens; every 5th token is padding. */
static void fp8_run(struct gt *t, int n, int bs, int kvh, int D, float lim, float ks, float vs)
{
    int H = 2 * kvh, stride = (H + 2 * kvh) * D, row = kvh * D, written = 0;
    int num_blocks = (2 * n + bs - 1) / bs + 3;
    long long num_slots = (long long)num_blocks * bs;
    size_t bytes = (size_t)num_slots * row;
    float *qkv = malloc((size_t)n * stride * 4);
    int64_t *slots = malloc((size_t)n * 8);
    uint8_t *poison = malloc(bytes), *got = malloc(bytes), *cpu = malloc(bytes);
    struct cache_layout l = { num_blocks, bs, kvh, D, DT_F8_E4M3, ks, vs };
    struct dbuf x = { 0 };
    struct rbuf sm = { 0 };
    void *gc[2] = { 0 }, *cc[2] = { 0 };
    char err[ERR_LEN] = "";

    if (!gt_check(t, qkv && slots && poison && got && cpu, "out of host memory"))
        goto out;
    gt_fill(&t->rng, qkv, (size_t)n * stride, -lim, lim);
    for (int i = 0; i < n; i++)   /* distinct slots, spread over the cache, not in order */
        slots[i] = i % 5 == 4 ? KV_PADDING_SLOT : (int64_t)((i * 7919LL) % num_slots);
    for (size_t i = 0; i < bytes; i++)
        poison[i] = (uint8_t)gt_rand_u64(&t->rng);
    if (!dbuf_create(t, &x, (size_t)n * stride, false) || !dbuf_set(t, &x, qkv) ||
        !rbuf_create(t, &sm, slots, (size_t)n * 8))
        goto out;
    for (int c = 0; c < 2; c++) {
        gc[c] = t->gpu->ops->alloc(t->gpu, bytes, err);
        cc[c] = t->cpu->ops->alloc(t->cpu, bytes, err);
        if (!gt_check(t, gc[c] && cc[c], "alloc: %s", err) ||
            !gt_check(t, !t->gpu->ops->upload(t->gpu, gc[c], poison, bytes), "upload"))
            goto out;
        memcpy(cc[c], poison, bytes);
    }
    gt_check(t, t->gpu->ops->cache_update(t->gpu, (uint16_t *)x.gpu + H * D,
                                          (uint16_t *)x.gpu + (H + kvh) * D, stride, sm.gpu, n,
                                          gc[0], gc[1], &l) == 0, "cuda fp8 cache_update failed");
    gt_check(t, t->cpu->ops->cache_update(t->cpu, (float *)x.cpu + H * D,
                                          (float *)x.cpu + (H + kvh) * D, stride, sm.cpu, n,
                                          cc[0], cc[1], &l) == 0, "cpu fp8 cache_update failed");
    for (int c = 0; c < 2; c++) {
        size_t diff = 0, first = 0;

        if (!gt_check(t, !t->gpu->ops->download(t->gpu, got, gc[c], bytes), "download"))
            goto out;
        memcpy(cpu, cc[c], bytes);
        /* the CPU backend wrote the same poisoned cache: every byte must agree, written or not */
        for (size_t e = 0; e < bytes; e++)
            if (got[e] != cpu[e] && diff++ == 0)
                first = e;
        gt_check(t, diff == 0, "%s cache: %zu bytes differ from the cpu backend's, first at "
                 "slot %zu element %zu: gpu 0x%02x cpu 0x%02x poison 0x%02x (n %d, block %d, "
                 "kv heads %d, D %d, scale %g)", c ? "V" : "K", diff, first / row, first % row,
                 diff ? got[first] : 0, diff ? cpu[first] : 0, diff ? poison[first] : 0, n, bs,
                 kvh, D, c ? vs : ks);
        /* and the writes are where the slots say: poison everywhere else */
        for (long long sl = 0; sl < num_slots; sl++) {
            bool mapped = false;
            for (int i = 0; i < n && !mapped; i++)
                mapped = slots[i] == sl;
            written += mapped && c == 0;
            if (!mapped && memcmp(got + sl * row, poison + sl * row, row)) {
                gt_check(t, false, "%s cache: slot %lld was written but no token maps to it",
                         c ? "V" : "K", sl);
                break;
            }
        }
    }
    gt_check(t, written == n - n / 5, "%d slots mapped, expected %d", written, n - n / 5);
out:
    for (int c = 0; c < 2; c++) {
        if (gc[c])
            t->gpu->ops->free(t->gpu, gc[c]);
        if (cc[c])
            t->cpu->ops->free(t->cpu, cc[c]);
    }
    dbuf_free(t, &x);
    rbuf_free(t, &sm);
    free(qkv);
    free(slots);
    free(poison);
    free(got);
    free(cpu);
}

static bool backends(struct gt *t, int max_tokens)
{
    struct backend_options o = { .num_threads = 0, .max_tokens = max_tokens, .max_reqs = 8,
                                 .max_blocks_per_req = 8, .num_kv_groups = 1, .vocab_size = 16 };
    return gt_backends(t, &o);
}

static void fp8_cache_update_writes_the_cpu_backends_bytes(struct gt *t)
{
    if (!backends(t, 512))
        return;
    /* k: |x| / 0.0113 up to 354 (and 4 / 0.0071 = 563: saturates); v: 0.37, subnormals near 0 */
    fp8_run(t, 1, 16, 8, 128, 4.0f, 0.0113f, 0.37f);
    fp8_run(t, 37, 16, 2, 128, 4.0f, 0.0071f, 0.37f);
    fp8_run(t, 512, 32, 8, 128, 4.0f, 0.0113f, 1.0f);
    fp8_run(t, 37, 1, 2, 64, 0.01f, 1.0f, 3.3f);        /* mostly e4m3 subnormals */
    fp8_run(t, 37, 16, 2, 24, 4.0f, 0.02f, 0.5f);
    fp8_run(t, 37, 16, 1, 12, 4.0f, 0.02f, 0.5f);       /* rows of 12: the scalar path */
    fp8_run(t, 5, 16, 3, 6, 4.0f, 0.02f, 0.5f);
    gt_note(t, "tokens 1/37/512, kv heads 1-8, D 128/64/24/12/6, saturating and subnormal "
            "scales: bytes == cpu backend's");
}

/* Every bf16 bit pattern as K (and, reversed, as V) of 512 tokens of 128 elements. */
static void fp8_cache_update_rounds_every_bf16_as_engine_base_fp8(struct gt *t)
{
    const float scales[] = { 1.0f, 0.37f, 0.0113f, 5.0f };
    const int n = 512, row = 128, total = n * row;
    uint16_t *bits = malloc((size_t)2 * total * 2);
    int64_t *slots = malloc((size_t)n * 8);
    uint8_t *got = malloc((size_t)2 * total);
    struct rbuf kv = { 0 }, sm = { 0 };
    void *gc[2] = { 0 };
    char err[ERR_LEN] = "";

    if (!backends(t, n) || !gt_check(t, bits && slots && got, "out of host memory"))
        goto out;
    for (int i = 0; i < total; i++) {
        bits[i] = (uint16_t)i;                      /* K: pattern i */
        bits[total + i] = (uint16_t)(total - 1 - i);   /* V: the patterns backwards */
    }
    for (int i = 0; i < n; i++)
        slots[i] = n - 1 - i;
    if (!rbuf_create(t, &kv, bits, (size_t)2 * total * 2) ||
        !rbuf_create(t, &sm, slots, (size_t)n * 8))
        goto out;
    for (int c = 0; c < 2; c++)
        if (!gt_check(t, (gc[c] = t->gpu->ops->alloc(t->gpu, total, err)) != NULL, "alloc: %s", err))
            goto out;
    for (size_t s = 0; s < ARRAY_LEN(scales); s++) {
        struct cache_layout l = { 1, n, 1, row, DT_F8_E4M3, scales[s], scales[s] };
        size_t diff = 0;
        int first = -1;

        if (!gt_check(t, t->gpu->ops->cache_update(t->gpu, kv.gpu, (uint16_t *)kv.gpu + total,
                                                   row, sm.gpu, n, gc[0], gc[1], &l) == 0,
                      "cuda fp8 cache_update failed (scale %g)", scales[s]) ||
            !gt_check(t, !t->gpu->ops->download(t->gpu, got, gc[0], total) &&
                         !t->gpu->ops->download(t->gpu, got + total, gc[1], total), "download"))
            goto out;
        for (int c = 0; c < 2; c++)
            for (int i = 0; i < total; i++) {
                /* token i / row went to slot n - 1 - i / row */
                uint16_t b = bits[c * total + i];
                uint8_t want = fp8_e4m3_from_f32(bf16_to_f32(b) / scales[s]);
                uint8_t have = got[c * total + (n - 1 - i / row) * row + i % row];
                if (want != have && diff++ == 0)
                    first = b;
            }
        gt_check(t, diff == 0, "scale %g: %zu of 131072 conversions differ from "
                 "fp8_e4m3_from_f32, first bf16 0x%04x (%g): want 0x%02x", scales[s], diff,
                 first < 0 ? 0 : first, first < 0 ? 0.0 : bf16_to_f32((uint16_t)first),
                 first < 0 ? 0 : fp8_e4m3_from_f32(bf16_to_f32((uint16_t)first) / scales[s]));
    }
    gt_note(t, "all 65536 bf16 patterns x scales 1, 0.37, 0.0113, 5: bit-exact");
out:
    for (int c = 0; c < 2; c++)
        if (gc[c])
            t->gpu->ops->free(t->gpu, gc[c]);
    rbuf_free(t, &kv);
    rbuf_free(t, &sm);
    free(bits);
    free(slots);
    free(got);
}

/* A scale the CPU backend refuses is refused here too, and writes nothing. */
static void fp8_cache_update_refuses_bad_scales(struct gt *t)
{
    const float bad[] = { 0.0f, -1.0f, INFINITY, NAN };
    int64_t slot = 0;
    uint16_t k[8] = { 0x3f80 };
    uint8_t poison[8] = { 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5 }, got[8];
    struct rbuf kv = { 0 }, sm = { 0 }, cache = { 0 };

    if (!backends(t, 8) || !rbuf_create(t, &kv, k, sizeof k) ||
        !rbuf_create(t, &sm, &slot, sizeof slot) || !rbuf_create(t, &cache, poison, sizeof poison))
        goto out;
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct cache_layout l = { 1, 1, 1, 8, DT_F8_E4M3, i % 2 ? 1.0f : bad[i], i % 2 ? bad[i] : 1.0f };
        gt_check(t, t->gpu->ops->cache_update(t->gpu, kv.gpu, kv.gpu, 8, sm.gpu, 1, cache.gpu,
                                              cache.gpu, &l) == -EINVAL,
                 "a %s scale of %g was not refused", i % 2 ? "v" : "k", bad[i]);
    }
    if (gt_check(t, !t->gpu->ops->download(t->gpu, got, cache.gpu, sizeof got), "download"))
        gt_check(t, !memcmp(got, poison, sizeof got), "a refused cache_update wrote the cache");
    gt_note(t, "k or v scale 0, -1, inf, nan: -EINVAL, nothing written");
out:
    rbuf_free(t, &kv);
    rbuf_free(t, &sm);
    rbuf_free(t, &cache);
}

const struct gt_case gt_cases_fp8_cache[] = {
    { "fp8_cache_update_writes_the_cpu_backends_bytes", fp8_cache_update_writes_the_cpu_backends_bytes },
    { "fp8_cache_update_rounds_every_bf16_as_engine_base_fp8", fp8_cache_update_rounds_every_bf16_as_engine_base_fp8 },
    { "fp8_cache_update_refuses_bad_scales", fp8_cache_update_refuses_bad_scales },
    { NULL, NULL },
};
#endif
