/* kv_cache.c — block tables per request and group, each group over its own block pool:
 * allocation for new tokens (check first, then commit, so a failure changes nothing), sliding-window
 * release, prefix-cache lookup and registration of full blocks. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"          /* ASSERT, MIN, MAX */
#include "scheduler/kv_cache.h"

int kv_cache_init(struct kv_cache *kv, int block_size, const int *group_blocks, int num_groups,
                  const int *group_window, int max_model_len, bool prefix_caching)
{
    int rc = 0;

    memset(kv, 0, sizeof *kv);
    if (block_size < 1 || num_groups < 1 || num_groups > KV_MAX_GROUPS || max_model_len < 1)
        return -EINVAL;
    for (int g = 0; g < num_groups; g++)
        if (group_window[g] < 0)
            return -EINVAL;
    kv->block_size = block_size;
    kv->num_groups = num_groups;
    memcpy(kv->group_window, group_window, num_groups * sizeof *group_window);
    kv->max_blocks_per_req = (max_model_len + block_size - 1) / block_size;
    kv->prefix_caching = prefix_caching;
    for (int g = 0; g < num_groups && !rc; g++)
        rc = block_pool_init(&kv->pool[g], group_blocks[g]);
    kv->scratch = malloc(kv->max_blocks_per_req + 1);
    if (!rc && !kv->scratch)
        rc = -ENOMEM;
    if (rc)
        kv_cache_fini(kv);
    return rc;
}

void kv_cache_fini(struct kv_cache *kv)
{
    for (int g = 0; g < KV_MAX_GROUPS; g++)
        if (kv->pool[g].blocks)
            block_pool_fini(&kv->pool[g]);
    free(kv->scratch);
    memset(kv, 0, sizeof *kv);
}

int kv_cache_req_init(struct kv_cache *kv, struct kv_req *kr, int max_tokens)
{
    memset(kr, 0, sizeof *kr);
    kr->cap_blocks = MIN((max_tokens + kv->block_size - 1) / kv->block_size,
                         kv->max_blocks_per_req);
    kr->hashes = malloc(kr->cap_blocks * sizeof *kr->hashes);
    if (!kr->hashes)
        goto fail;
    for (int g = 0; g < kv->num_groups; g++) {
        kr->block_table[g] = malloc(kr->cap_blocks * sizeof *kr->block_table[g]);
        if (!kr->block_table[g])
            goto fail;
        for (int j = 0; j < kr->cap_blocks; j++)
            kr->block_table[g][j] = KV_NO_BLOCK;
    }
    return 0;
fail:
    kv_cache_req_fini(kv, kr);
    return -ENOMEM;
}

void kv_cache_req_fini(struct kv_cache *kv, struct kv_req *kr)
{
    kv_cache_free(kv, kr);
    free(kr->hashes);
    for (int g = 0; g < KV_MAX_GROUPS; g++)
        free(kr->block_table[g]);
    memset(kr, 0, sizeof *kr);
}

int kv_cache_max_blocks(const struct kv_cache *kv, int g, int num_tokens, int max_chunk)
{
    int bs = kv->block_size, full = (num_tokens + bs - 1) / bs, w = kv->group_window[g];

    /* A step over [c, c + n) holds the blocks of positions [c - w + 1, c + n): an interval
     * of at most w + n - 1 positions, which touches at most (w + n - 2) / bs + 2 blocks. */
    return w == 0 ? full : MIN(full, (w + max_chunk - 2) / bs + 2);
}

/* Hash chain of the first n full blocks of tokens (computed once per request). */
static void ensure_hashes(struct kv_cache *kv, struct kv_req *kr, const int32_t *tokens, int n)
{
    ASSERT(n <= kr->cap_blocks);
    for (int j = kr->num_hashes; j < n; j++)
        kr->hashes[j] = block_pool_hash(&kv->pool[0], j ? &kr->hashes[j - 1] : NULL,
                                        tokens + (size_t)j * kv->block_size, kv->block_size);
    kr->num_hashes = MAX(kr->num_hashes, n);
}

/* First block that a request with e cached blocks still needs in group g. */
static int first_needed_block(const struct kv_cache *kv, int g, int e)
{
    return kv_cache_window_start(kv, g, e * kv->block_size) / kv->block_size;
}

int kv_cache_lookup(struct kv_cache *kv, struct kv_req *kr, const int32_t *tokens, int num_tokens)
{
    int max_blocks = (num_tokens - 1) / kv->block_size, hit = max_blocks;
    uint8_t *ok = kv->scratch;   /* ok[e]: every window group can serve a prefix of e blocks */

    for (int g = 0; g < kv->num_groups; g++)
        ASSERT(kr->num_blocks[g] == 0);
    if (!kv->prefix_caching || max_blocks <= 0)
        return 0;
    ensure_hashes(kv, kr, tokens, max_blocks);
    /* Full attention: the longest run of cached blocks from block 0, in every such group. */
    for (int g = 0; g < kv->num_groups; g++) {
        int e = 0;

        if (kv->group_window[g] > 0)
            continue;
        while (e < hit && block_pool_lookup(&kv->pool[g], g, kr->hashes[e]) >= 0)
            e++;
        hit = e;
    }
    /* Sliding window: a prefix of e blocks needs only blocks [first_needed_block(e), e), so
     * validity is not monotone in e; track the run of cached blocks ending at each e. */
    memset(ok, 1, hit + 1);
    for (int g = 0; g < kv->num_groups; g++) {
        int run = 0;

        if (kv->group_window[g] == 0)
            continue;
        for (int e = 1; e <= hit; e++) {
            run = block_pool_lookup(&kv->pool[g], g, kr->hashes[e - 1]) >= 0 ? run + 1 : 0;
            if (run < e - first_needed_block(kv, g, e))
                ok[e] = 0;
        }
    }
    while (hit > 0 && !ok[hit])
        hit--;
    return hit * kv->block_size;
}

/* Window groups: releases blocks that no query at position >= num_computed sees. */
static void release_out_of_window(struct kv_cache *kv, struct kv_req *kr, int num_computed)
{
    for (int g = 0; g < kv->num_groups; g++) {
        int end;

        if (kv->group_window[g] == 0)
            continue;
        end = MIN(kv_cache_window_start(kv, g, num_computed) / kv->block_size, kr->num_blocks[g]);
        for (int j = kr->first_live[g]; j < end; j++) {
            block_pool_free(&kv->pool[g], kr->block_table[g][j]);
            kr->block_table[g][j] = KV_NO_BLOCK;
        }
        kr->first_live[g] = MAX(kr->first_live[g], end);
    }
}

int kv_cache_allocate(struct kv_cache *kv, struct kv_req *kr, const int32_t *tokens,
                      int num_cached, int num_computed, int num_new)
{
    int bs = kv->block_size, end = num_computed + num_new, need = (end + bs - 1) / bs;
    int e = num_cached / bs;

    ASSERT(num_new > 0 && need <= kr->cap_blocks && num_cached % bs == 0);
    ASSERT(num_cached == 0 || num_cached == num_computed);
    release_out_of_window(kv, kr, num_computed);

    /* Count first, in every group's own pool: blocks to take from its free list, cached
     * ones we revive included. */
    for (int g = 0; g < kv->num_groups; g++) {
        struct block_pool *p = &kv->pool[g];
        int num_take = MAX(0, need - MAX(kr->num_blocks[g], e));

        ASSERT(e == 0 || kr->num_blocks[g] == 0);
        for (int j = first_needed_block(kv, g, e); j < e; j++) {
            int id = block_pool_lookup(p, g, kr->hashes[j]);

            ASSERT(id >= 0);   /* kv_cache_lookup found it and nothing ran since */
            num_take += block_pool_ref_count(p, id) == 0;
        }
        if (num_take > block_pool_num_free(p))
            return -ENOSPC;
    }

    /* Take a group's cached blocks before allocating any: an allocation evicts the least
     * recently freed block, which may be one that this group is about to revive. */
    for (int g = 0; g < kv->num_groups && e > 0; g++) {
        int first = first_needed_block(kv, g, e);

        for (int j = first; j < e; j++) {
            kr->block_table[g][j] = block_pool_lookup(&kv->pool[g], g, kr->hashes[j]);
            block_pool_ref(&kv->pool[g], kr->block_table[g][j]);
        }
        kr->first_live[g] = first;
        kr->num_blocks[g] = kr->num_registered[g] = e;
    }
    for (int g = 0; g < kv->num_groups; g++) {
        while (kr->num_blocks[g] < need) {
            int id = block_pool_alloc(&kv->pool[g]);

            ASSERT(id >= 0);   /* counted above */
            kr->block_table[g][kr->num_blocks[g]++] = id;
        }
    }
    if (!kv->prefix_caching)
        return 0;
    ensure_hashes(kv, kr, tokens, end / bs);
    for (int g = 0; g < kv->num_groups; g++) {
        for (int j = MAX(kr->num_registered[g], kr->first_live[g]); j < end / bs; j++)
            block_pool_register(&kv->pool[g], kr->block_table[g][j], g, kr->hashes[j]);
        kr->num_registered[g] = MAX(kr->num_registered[g], end / bs);
    }
    return 0;
}

void kv_cache_free(struct kv_cache *kv, struct kv_req *kr)
{
    for (int g = 0; g < kv->num_groups; g++) {
        for (int j = kr->num_blocks[g] - 1; j >= kr->first_live[g]; j--) {
            block_pool_free(&kv->pool[g], kr->block_table[g][j]);
            kr->block_table[g][j] = KV_NO_BLOCK;
        }
        for (int j = 0; j < kr->first_live[g]; j++)
            kr->block_table[g][j] = KV_NO_BLOCK;
        kr->num_blocks[g] = kr->first_live[g] = kr->num_registered[g] = 0;
    }
}

void kv_cache_forget(struct kv_cache *kv, struct kv_req *kr)
{
    for (int g = 0; g < kv->num_groups; g++)
        for (int j = kr->first_live[g]; j < kr->num_blocks[g]; j++)
            if (block_pool_ref_count(&kv->pool[g], kr->block_table[g][j]) == 1)
                block_pool_forget(&kv->pool[g], kr->block_table[g][j]);
}

int64_t kv_cache_slot(const struct kv_cache *kv, const struct kv_req *kr, int g, int pos)
{
    int32_t id;

    ASSERT(pos >= 0 && pos / kv->block_size < kr->num_blocks[g]);
    id = kr->block_table[g][pos / kv->block_size];
    ASSERT(id != KV_NO_BLOCK);
    return (int64_t)id * kv->block_size + pos % kv->block_size;
}
