/* kv_cache.h — per-request block tables, one per KV-cache group, each over its group's pool.
 * Allocates blocks for a step's new tokens, frees sliding-window blocks that fell out of the
 * window, and finds a request's longest cached prefix (prefix caching). The token at position
 * pos of group g lives in slot block_table[g][pos / block_size] * block_size + pos % block_size.
 *
 * A pool per group, with its own block ids 0..group_blocks[g]-1: a layer of group g has
 * storage for g's blocks only, so a block costs its own group's layers and nothing else.
 * A sliding-window group, which holds about window / block_size blocks per request, thus
 * needs far less memory than a full group (engine/kv_budget.c sizes the pools). A step's
 * allocation must fit in every group's pool at once, or nothing is taken (-ENOSPC, and the
 * scheduler preempts).
 *
 * Sliding window W: the query at position p sees keys at (p - W, p]. Once a request has
 * computed c tokens, no later query looks below c - W + 1, so every block whose last position
 * is at most c - W is released (prefix-cached if hashed) and its entry becomes KV_NO_BLOCK.
 *
 * Prefix caching covers every group. A full block's hash chains the tokens from position 0
 * (block_pool.h), the map key is (group, hash), and a prefix of e blocks is reusable when
 * every full-attention group has blocks 0..e-1 cached and every window group has the blocks
 * that the query at e * block_size still sees. */
#ifndef OSPREY_KV_CACHE_H
#define OSPREY_KV_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "scheduler/batch.h"       /* KV_MAX_GROUPS, KV_NO_BLOCK */
#include "scheduler/block_pool.h"

struct kv_cache {
    struct block_pool pool[KV_MAX_GROUPS];   /* [num_groups] one per group, own block ids */
    int block_size;                      /* tokens per block */
    int num_groups;
    int group_window[KV_MAX_GROUPS];     /* 0 = full attention, else the window in tokens */
    int max_blocks_per_req;              /* ceil(max_model_len / block_size) */
    bool prefix_caching;
    uint8_t *scratch;                    /* [max_blocks_per_req + 1] for kv_cache_lookup */
};

/* One request's share of the cache; it lives inside struct sched_request. */
struct kv_req {
    int cap_blocks;                          /* entries each table can hold */
    int32_t *block_table[KV_MAX_GROUPS];     /* [cap_blocks] block ids; KV_NO_BLOCK below
                                                first_live and at or beyond num_blocks */
    int num_blocks[KV_MAX_GROUPS];           /* table entries in use, freed ones included */
    int first_live[KV_MAX_GROUPS];           /* entries below were released (window groups) */
    int num_registered[KV_MAX_GROUPS];       /* entries below were offered to the prefix cache */
    struct block_hash *hashes;               /* [cap_blocks] hash chain of full blocks */
    int num_hashes;                          /* hashes computed so far */
};

/* group_blocks[g]: the blocks of group g's pool. Returns 0, -EINVAL (a bad size or window)
 * or -ENOMEM. */
int kv_cache_init(struct kv_cache *kv, int block_size, const int *group_blocks, int num_groups,
                  const int *group_window, int max_model_len, bool prefix_caching);
void kv_cache_fini(struct kv_cache *kv);

/* Empty tables for a request of at most max_tokens tokens (prompt + output). 0 or -ENOMEM. */
int kv_cache_req_init(struct kv_cache *kv, struct kv_req *kr, int max_tokens);
/* Releases every block the request holds and its tables. Safe on a zeroed kv_req. */
void kv_cache_req_fini(struct kv_cache *kv, struct kv_req *kr);

/* Blocks of group g a request of num_tokens tokens can hold at once, at worst, when no step
 * gives it more than max_chunk new tokens: the admission bound (a request above a group's
 * pool never fits). Reads only block_size and group_window. */
int kv_cache_max_blocks(const struct kv_cache *kv, int g, int num_tokens, int max_chunk);

/* Free blocks of group g's pool (prefix-cached ones nobody holds included), and its size. */
static inline int kv_cache_num_free(const struct kv_cache *kv, int g)
{
    return block_pool_num_free(&kv->pool[g]);
}
static inline int kv_cache_num_blocks(const struct kv_cache *kv, int g)
{
    return kv->pool[g].num_blocks;
}

/* The longest prefix of tokens[0, num_tokens) that the prefix cache can serve, in tokens: a
 * multiple of block_size that leaves at least the last token to compute (it must be run to
 * sample). 0 when prefix caching is off. Changes no block; kr must hold none. */
int kv_cache_lookup(struct kv_cache *kv, struct kv_req *kr, const int32_t *tokens, int num_tokens);

/* Gives the request blocks for positions [0, num_computed + num_new) in every group, after
 * releasing window blocks nobody will read again. num_cached is the kv_cache_lookup result on
 * the request's first allocation (then num_computed == num_cached and the cached blocks are
 * taken first), else 0. tokens must hold every position below num_computed + num_new. Blocks
 * that this step fills are entered in the prefix cache at once: the runner writes each layer's
 * cache before that layer's attention, so another request of the same step may read them.
 * Returns 0, or -ENOSPC with nothing allocated when any group's pool is short. */
int kv_cache_allocate(struct kv_cache *kv, struct kv_req *kr, const int32_t *tokens,
                      int num_cached, int num_computed, int num_new);

/* Releases every block (last block first, so that a prefix outlives its tail in the LRU);
 * keeps the tables' memory and the hashes for a later recomputation. */
void kv_cache_free(struct kv_cache *kv, struct kv_req *kr);
/* Before freeing a request whose step failed: blocks it alone holds lose their prefix-cache
 * hash, since the failed step may have left them half written. Blocks shared with other
 * requests were computed in an earlier step and keep theirs. */
void kv_cache_forget(struct kv_cache *kv, struct kv_req *kr);

/* First position the query at pos attends to in group g. */
static inline int kv_cache_window_start(const struct kv_cache *kv, int g, int pos)
{
    int w = kv->group_window[g];

    return w > 0 && pos - w + 1 > 0 ? pos - w + 1 : 0;
}

/* Cache slot of position pos in group g; the block must be held. */
int64_t kv_cache_slot(const struct kv_cache *kv, const struct kv_req *kr, int g, int pos);

#endif
