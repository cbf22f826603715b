/* block_pool.c — KV block ids with reference counts, an LRU free list threaded through the
 * blocks (no allocation after init), and a chained hash map keyed by (group, block hash) for
 * prefix caching. Every operation but block_pool_hash is O(1) expected. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>   /* XXH3_128bits_* */

#include "engine/base/util.h"            /* ASSERT */
#include "scheduler/block_pool.h"

static uint32_t bucket_of(const struct block_pool *p, int group, struct block_hash h)
{
    /* The hash is already uniform; fold the group in so that groups do not share chains. */
    return (uint32_t)(h.lo ^ (h.hi >> 7) ^ ((uint64_t)group * 0x9e3779b97f4a7c15ull)) & p->bucket_mask;
}

static void free_list_unlink(struct block_pool *p, int id)
{
    struct pool_block *b = &p->blocks[id];

    if (b->prev >= 0)
        p->blocks[b->prev].next = b->next;
    else
        p->free_head = b->next;
    if (b->next >= 0)
        p->blocks[b->next].prev = b->prev;
    else
        p->free_tail = b->prev;
    b->prev = b->next = -1;
    p->num_free--;
}

static void free_list_push_tail(struct block_pool *p, int id)
{
    struct pool_block *b = &p->blocks[id];

    b->prev = p->free_tail;
    b->next = -1;
    if (p->free_tail >= 0)
        p->blocks[p->free_tail].next = id;
    else
        p->free_head = id;
    p->free_tail = id;
    p->num_free++;
}

static void free_list_push_head(struct block_pool *p, int id)
{
    struct pool_block *b = &p->blocks[id];

    b->next = p->free_head;
    b->prev = -1;
    if (p->free_head >= 0)
        p->blocks[p->free_head].prev = id;
    else
        p->free_tail = id;
    p->free_head = id;
    p->num_free++;
}

int block_pool_init(struct block_pool *p, int num_blocks)
{
    uint32_t nb = 1;

    memset(p, 0, sizeof *p);
    if (num_blocks < 1 || num_blocks > INT32_MAX / 2)
        return -EINVAL;
    while (nb < (uint32_t)num_blocks)
        nb <<= 1;
    p->num_blocks = num_blocks;
    p->blocks = calloc(num_blocks, sizeof *p->blocks);
    p->buckets = malloc(nb * sizeof *p->buckets);
    p->xxh_state = XXH3_createState();
    if (!p->blocks || !p->buckets || !p->xxh_state) {
        block_pool_fini(p);
        return -ENOMEM;
    }
    p->bucket_mask = nb - 1;
    for (uint32_t i = 0; i < nb; i++)
        p->buckets[i] = -1;
    p->free_head = p->free_tail = -1;
    for (int i = 0; i < num_blocks; i++) {
        p->blocks[i].group = -1;
        p->blocks[i].hash_next = -1;
        free_list_push_tail(p, i);
    }
    return 0;
}

void block_pool_fini(struct block_pool *p)
{
    free(p->blocks);
    free(p->buckets);
    XXH3_freeState(p->xxh_state);
    memset(p, 0, sizeof *p);
}

/* Removes block id's (group, hash) entry from the map; the block must carry one. */
static void unhash(struct block_pool *p, int id)
{
    struct pool_block *b = &p->blocks[id];
    int32_t *link = &p->buckets[bucket_of(p, b->group, b->hash)];

    while (*link != id) {
        ASSERT(*link >= 0);
        link = &p->blocks[*link].hash_next;
    }
    *link = b->hash_next;
    b->hash_next = -1;
    b->group = -1;
    p->num_hashed--;
}

void block_pool_forget(struct block_pool *p, int id)
{
    ASSERT(id >= 0 && id < p->num_blocks);
    if (p->blocks[id].group >= 0)
        unhash(p, id);
}

int block_pool_alloc(struct block_pool *p)
{
    int id = p->free_head;

    if (id < 0)
        return -1;
    ASSERT(p->blocks[id].ref_cnt == 0);
    free_list_unlink(p, id);
    if (p->blocks[id].group >= 0)
        unhash(p, id);
    p->blocks[id].ref_cnt = 1;
    return id;
}

void block_pool_ref(struct block_pool *p, int id)
{
    ASSERT(id >= 0 && id < p->num_blocks);
    if (p->blocks[id].ref_cnt == 0)
        free_list_unlink(p, id);
    p->blocks[id].ref_cnt++;
}

void block_pool_free(struct block_pool *p, int id)
{
    ASSERT(id >= 0 && id < p->num_blocks);
    ASSERT(p->blocks[id].ref_cnt > 0);
    if (--p->blocks[id].ref_cnt > 0)
        return;
    if (p->blocks[id].group >= 0)
        free_list_push_tail(p, id);
    else
        free_list_push_head(p, id);
}

int block_pool_lookup(const struct block_pool *p, int group, struct block_hash h)
{
    for (int id = p->buckets[bucket_of(p, group, h)]; id >= 0; id = p->blocks[id].hash_next) {
        const struct pool_block *b = &p->blocks[id];

        if (b->group == group && b->hash.lo == h.lo && b->hash.hi == h.hi)
            return id;
    }
    return -1;
}

bool block_pool_register(struct block_pool *p, int id, int group, struct block_hash h)
{
    struct pool_block *b = &p->blocks[id];
    uint32_t k;

    ASSERT(b->ref_cnt > 0 && b->group < 0 && group >= 0);
    if (block_pool_lookup(p, group, h) >= 0)
        return false;
    k = bucket_of(p, group, h);
    b->group = (int16_t)group;
    b->hash = h;
    b->hash_next = p->buckets[k];
    p->buckets[k] = id;
    p->num_hashed++;
    return true;
}

struct block_hash block_pool_hash(struct block_pool *p, const struct block_hash *parent,
                                  const int32_t *tokens, int num_tokens)
{
    static const struct block_hash zero;
    uint64_t head[2];
    XXH128_hash_t h;

    if (!parent)
        parent = &zero;
    head[0] = parent->lo;
    head[1] = parent->hi;
    XXH3_128bits_reset(p->xxh_state);
    XXH3_128bits_update(p->xxh_state, head, sizeof head);
    XXH3_128bits_update(p->xxh_state, tokens, (size_t)num_tokens * sizeof *tokens);
    h = XXH3_128bits_digest(p->xxh_state);
    return (struct block_hash){ .lo = h.low64, .hi = h.high64 };
}

bool block_pool_hash_of(const struct block_pool *p, int id, int *group, struct block_hash *h)
{
    const struct pool_block *b = &p->blocks[id];

    if (b->group < 0)
        return false;
    if (group)
        *group = b->group;
    if (h)
        *h = b->hash;
    return true;
}
