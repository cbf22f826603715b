/* block_pool.h — the paged KV cache's blocks as ids 0..num_blocks-1: reference counts, the LRU
 * free list and the prefix-cache map from (KV group, block hash) to block id. It knows nothing
 * of requests or positions; kv_cache.c builds per-request block tables on top of it.
 *
 * A block is live (ref_cnt > 0, held by that many block tables) or free (ref_cnt 0, on the
 * free list). A free block may still carry its hash: it is a prefix-cache entry that a new
 * request can revive with block_pool_ref() until block_pool_alloc() evicts it. */
#ifndef OSPREY_BLOCK_POOL_H
#define OSPREY_BLOCK_POOL_H

#include <stdbool.h>
#include <stdint.h>

/* XXH3 128-bit hash of a full block: over the parent block's hash (16 zero bytes for the
 * first block) then the block's token ids (int32, host order). Equal hashes = equal prefixes. */
struct block_hash {
    uint64_t lo, hi;
};

struct pool_block {
    int32_t ref_cnt;         /* block tables holding it; 0 = on the free list */
    int32_t prev, next;      /* free-list neighbours, -1 at either end; meaningful while free */
    int32_t hash_next;       /* next block in the same map bucket, -1 at the end */
    int16_t group;           /* KV group of the hash below; -1 = no hash */
    struct block_hash hash;  /* valid when group >= 0 */
};

struct block_pool {
    int num_blocks;
    struct pool_block *blocks;  /* [num_blocks] */
    int free_head, free_tail;   /* LRU order: the head (least recently freed) is taken first */
    int num_free;               /* blocks on the free list, cached ones included */
    int num_hashed;             /* blocks carrying a hash, live or free */
    int32_t *buckets;           /* [bucket_mask + 1] first block of each hash chain, -1 = none */
    uint32_t bucket_mask;       /* bucket count - 1; the count is a power of two >= num_blocks */
    void *xxh_state;            /* XXH3_state_t for block_pool_hash */
};

/* All blocks free, in id order, none hashed. Returns 0, -EINVAL (num_blocks < 1 or beyond
 * INT32_MAX / 2) or -ENOMEM. */
int block_pool_init(struct block_pool *p, int num_blocks);
void block_pool_fini(struct block_pool *p);

/* Takes the head of the free list (the least recently freed block), drops its hash from the
 * map if it had one, and returns its id with ref_cnt 1; -1 when no block is free. */
int block_pool_alloc(struct block_pool *p);

/* One more owner of a block; a free block (ref_cnt 0, a prefix-cache hit) leaves the free
 * list with its hash intact. */
void block_pool_ref(struct block_pool *p, int id);

/* One owner fewer. At zero the block joins the free list: at the tail (most recently freed)
 * when it carries a hash, at the head when it does not, since it holds nothing worth keeping.
 * Freeing a block with ref_cnt 0 is our own bug: ASSERT. */
void block_pool_free(struct block_pool *p, int id);

/* The block cached under (group, h), live or free, or -1. Changes nothing. */
int block_pool_lookup(const struct block_pool *p, int group, struct block_hash h);

/* Enters a live, unhashed block into the map under (group, h). Returns false (and leaves the
 * block unhashed) when another block already holds that key: two requests computed the same
 * block at once, and the first one to register keeps it. */
bool block_pool_register(struct block_pool *p, int id, int group, struct block_hash h);
/* Drops block id's prefix-cache entry, if it has one: its contents can no longer be trusted. */
void block_pool_forget(struct block_pool *p, int id);

/* The hash of a full block: parent is the previous block's hash, or NULL for the first. */
struct block_hash block_pool_hash(struct block_pool *p, const struct block_hash *parent,
                                  const int32_t *tokens, int num_tokens);

static inline int block_pool_num_free(const struct block_pool *p) { return p->num_free; }
static inline int block_pool_ref_count(const struct block_pool *p, int id)
{
    return p->blocks[id].ref_cnt;
}
/* true and the key when block id carries a hash. */
bool block_pool_hash_of(const struct block_pool *p, int id, int *group, struct block_hash *h);

#endif
