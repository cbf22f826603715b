/* test_kv_groups.c — two KV-cache groups staged side by side, each with its own block table
 * and slot mapping (as the scheduler builds them: a pool per group, each with its own ids
 * and size, here in different shuffled orders; the window group's blocks below every
 * query's window are KV_NO_BLOCK). Checks, per group, against the CPU backend: the CUDA
 * staging copies that group's table and slot mapping (read back from the device), the
 * cache write lands in that group's slots (whole caches compared bit for bit), and the
 * attention over that group's table (window 0 and 24) matches. The runner test gives every
 * group the same blocks; here a backend that staged or read group 0's arrays for group 1
 * would fail. */
#ifdef OSPREY_CUDA
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"
#include "tests/gpu/gpu_test.h"

enum { G = 2, H = 8, KVH = 2, D = 64, BS = 16, R = 3, PAD = 2 };

static const int q_lens[R] = { 20, 1, 33 };     /* a prefill chunk, a decode, a fresh prompt */
static const int seq_lens[R] = { 60, 70, 33 };
static const int windows[G] = { 0, 24 };

/* The step: group g's block j of request r is ids[g][r][j]; tokens' slots follow. */
static void build(struct step_batch *b, int ids[G][R][8], int MB, int *num_tokens)
{
    int t = 0;

    b->query_start_loc[0] = 0;
    for (int r = 0; r < R; r++) {
        int start = seq_lens[r] - q_lens[r];

        for (int g = 0; g < G; g++) {
            /* the scheduler's release rule: blocks wholly below the first query's window */
            int lo = windows[g] ? MAX(0, start - windows[g] + 1) : 0;
            for (int j = 0; j < MB; j++)
                b->block_table[g][(size_t)r * MB + j] =
                    j * BS >= seq_lens[r] || (j + 1) * BS <= lo ? KV_NO_BLOCK : ids[g][r][j];
        }
        for (int i = 0; i < q_lens[r]; i++, t++) {
            int pos = start + i;
            b->input_ids[t] = 0;
            b->positions[t] = pos;
            for (int g = 0; g < G; g++)
                b->slot_mapping[g][t] = (int64_t)ids[g][r][pos / BS] * BS + pos % BS;
        }
        b->query_start_loc[r + 1] = t;
        b->seq_lens[r] = seq_lens[r];
        b->max_query_len = MAX(b->max_query_len, q_lens[r]);
        b->max_seq_len = MAX(b->max_seq_len, seq_lens[r]);
    }
    for (int i = t; i < t + PAD; i++) {   /* padding tokens after the last request */
        b->input_ids[i] = 0;
        b->positions[i] = 0;
        for (int g = 0; g < G; g++)
            b->slot_mapping[g][i] = KV_PADDING_SLOT;
    }
    b->num_reqs = b->num_reqs_padded = R;
    b->num_tokens = t;
    b->num_tokens_padded = t + PAD;
    b->num_sample = b->num_sample_padded = 0;
    *num_tokens = t + PAD;
}

/* The device copy of group g's table and slot mapping equals the host batch's. */
static void check_staged(struct gt *t, const struct step_batch *b, const struct bk_batch *dev,
                         int g, int T, int MB)
{
    size_t tb = (size_t)R * MB * sizeof(int32_t), sb = (size_t)T * sizeof(int64_t);
    int32_t *table = malloc(tb);
    int64_t *slots = malloc(sb);

    if (gt_check(t, table && slots, "out of host memory") &&
        gt_check(t, !t->gpu->ops->download(t->gpu, table, dev->block_table[g], tb) &&
                    !t->gpu->ops->download(t->gpu, slots, dev->slot_mapping[g], sb),
                 "download of group %d's staged arrays", g)) {
        gt_check(t, !memcmp(table, b->block_table[g], tb),
                 "group %d: the staged block table differs from the batch's", g);
        gt_check(t, !memcmp(slots, b->slot_mapping[g], sb),
                 "group %d: the staged slot mapping differs from the batch's", g);
    }
    free(table);
    free(slots);
}

static void kv_groups_keep_their_own_tables_and_slots(struct gt *t)
{
    int MB = 0, num_blocks[G], T = 0, stride = (H + 2 * KVH) * D, row = KVH * D, total = 0;
    int ids[G][R][8], *perm = NULL, differ = 0;
    size_t cache_elems[G], max_elems = 0;
    struct backend_options o = { 0 };
    struct step_batch b = { 0 };
    struct bk_batch bc, bg;
    struct dbuf qkv = { 0 }, kc[G] = { { 0 } }, vc[G] = { { 0 } }, out = { 0 };
    float *host = NULL, *ref = NULL, *got = NULL;

    /* each group has its own pool of block ids and its own cache sized for it: the window
     * group's pool is the larger here, so that a cache sized for the other group's would
     * not hold its slots */
    for (int r = 0; r < R; r++) {
        MB = MAX(MB, (seq_lens[r] + BS - 1) / BS);
        total += (seq_lens[r] + BS - 1) / BS;
    }
    for (int g = 0; g < G; g++) {
        num_blocks[g] = total + 4 + 6 * g;
        cache_elems[g] = (size_t)num_blocks[g] * BS * row;
        max_elems = MAX(max_elems, cache_elems[g]);
    }
    o = (struct backend_options){ .max_tokens = 64, .max_reqs = R, .max_blocks_per_req = MB,
                                  .num_kv_groups = G, .vocab_size = 16 };
    perm = malloc(num_blocks[G - 1] * sizeof *perm);
    host = malloc(MAX(max_elems, (size_t)64 * stride) * 4);
    ref = malloc(MAX(max_elems, (size_t)64 * H * D) * 4);
    got = malloc(MAX(max_elems, (size_t)64 * H * D) * 4);
    if (!gt_check(t, perm && host && ref && got, "out of host memory") || !gt_backends(t, &o) ||
        !gt_check(t, batch_init(&b, 64, R, G, MB) == 0, "batch_init"))
        goto out;

    /* every group shuffles its own pool and takes its ids from it, in its own order */
    for (int g = 0; g < G; g++) {
        int next = 0;

        for (int i = 0; i < num_blocks[g]; i++)
            perm[i] = i;
        for (int i = num_blocks[g] - 1; i > 0; i--) {
            int j = gt_randint(&t->rng, i + 1), tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        for (int r = 0; r < R; r++)
            for (int j = 0; j < 8; j++)
                ids[g][r][j] = j * BS < seq_lens[r] ? perm[next++] : KV_NO_BLOCK;
    }
    build(&b, ids, MB, &T);
    /* two independent shuffles: a few slots may coincide by chance, most must not */
    for (int i = 0; i < b.num_tokens; i++)
        differ += b.slot_mapping[0][i] != b.slot_mapping[1][i];
    gt_check(t, 2 * differ > b.num_tokens, "test set-up: %d of %d tokens have different slots",
             differ, b.num_tokens);

    if (!gt_stage(t, &b, NULL, &bc, &bg) || !dbuf_create(t, &qkv, (size_t)T * stride, false) ||
        !dbuf_create(t, &out, (size_t)T * H * D, false))
        goto out;
    gt_fill(&t->rng, host, (size_t)T * stride, -1.0f, 1.0f);
    if (!dbuf_set(t, &qkv, host))
        goto out;
    for (int g = 0; g < G; g++) {
        /* random everywhere: the earlier tokens' K and V, and what the group must not read */
        if (!dbuf_create(t, &kc[g], cache_elems[g], false) ||
            !dbuf_create(t, &vc[g], cache_elems[g], false))
            goto out;
        gt_fill(&t->rng, host, cache_elems[g], -1.0f, 1.0f);
        if (!dbuf_set(t, &kc[g], host))
            goto out;
        gt_fill(&t->rng, host, cache_elems[g], -1.0f, 1.0f);
        if (!dbuf_set(t, &vc[g], host))
            goto out;
    }

    for (int g = 0; g < G; g++) {
        struct cache_layout l = { num_blocks[g], BS, KVH, D, DT_F32, 0, 0 };
        struct attn_params p = { H, KVH, D, 1.0f / sqrtf((float)D), 0.0f, windows[g], l, NULL };
        size_t esz[2] = { 4, 2 };   /* cpu f32, cuda bf16 */
        char what[96];
        float mx = 0.0f;

        check_staged(t, &b, &bg, g, T, MB);
        gt_check(t, t->cpu->ops->cache_update(t->cpu, (char *)qkv.cpu + (size_t)H * D * esz[0],
                                              (char *)qkv.cpu + (size_t)(H + KVH) * D * esz[0],
                                              stride, bc.slot_mapping[g], T, kc[g].cpu,
                                              vc[g].cpu, &l) == 0, "cpu cache_update group %d", g);
        gt_check(t, t->gpu->ops->cache_update(t->gpu, (char *)qkv.gpu + (size_t)H * D * esz[1],
                                              (char *)qkv.gpu + (size_t)(H + KVH) * D * esz[1],
                                              stride, bg.slot_mapping[g], T, kc[g].gpu,
                                              vc[g].gpu, &l) == 0, "cuda cache_update group %d", g);
        /* copies of bf16 values: the whole caches agree bit for bit */
        for (int kv = 0; kv < 2; kv++) {
            if (!dbuf_get(t, kv ? &vc[g] : &kc[g], ref, got))
                goto out;
            snprintf(what, sizeof what, "group %d %s cache after cache_update", g, kv ? "V" : "K");
            gt_compare(t, what, got, ref, cache_elems[g], 0.0, 0.0, 0.0);
        }
        if (!dbuf_poison(t, &out))
            goto out;
        gt_check(t, t->cpu->ops->attention(t->cpu, out.cpu, qkv.cpu, stride, kc[g].cpu,
                                           vc[g].cpu, &bc, g, &p) == 0, "cpu attention group %d", g);
        gt_check(t, t->gpu->ops->attention(t->gpu, out.gpu, qkv.gpu, stride, kc[g].gpu,
                                           vc[g].gpu, &bg, g, &p) == 0, "cuda attention group %d", g);
        if (!dbuf_get(t, &out, ref, got))
            goto out;
        for (size_t i = 0; i < (size_t)T * H * D; i++)
            mx = fmaxf(mx, fabsf(ref[i]));
        snprintf(what, sizeof what, "group %d (window %d) attention", g, windows[g]);
        /* as test_attention.c: bf16 probabilities in P·V and a bf16 output, ~2^-8 relative */
        gt_compare(t, what, got, ref, (size_t)T * H * D, 4e-3 * mx + 1e-6, 2e-2, 1e-4);
    }
    gt_note(t, "2 groups (full, window 24), each its own shuffled pool (%d, %d blocks), %d tokens, "
            "%d reqs", num_blocks[0], num_blocks[1], T, R);
out:
    dbuf_free(t, &qkv);
    dbuf_free(t, &out);
    for (int g = 0; g < G; g++) {
        dbuf_free(t, &kc[g]);
        dbuf_free(t, &vc[g]);
    }
    batch_fini(&b);
    free(perm);
    free(host);
    free(ref);
    free(got);
}

const struct gt_case gt_cases_kv_groups[] = {
    { "kv_groups_keep_their_own_tables_and_slots", kv_groups_keep_their_own_tables_and_slots },
    { NULL, NULL },
};
#endif
