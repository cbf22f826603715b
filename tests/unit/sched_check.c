/* sched_check.c — request helpers and the step-batch checker shared by test_scheduler.c and
 * test_sched_random.c (see sched_check.h). The checks restate the spec (DESIGN.md "The step
 * batch", scheduler.h) independently of the scheduler's code. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/sched_check.h"

struct sched_request *treq_new(uint64_t id, const int32_t *prompt, int num_prompt, int max_tokens)
{
    struct sched_request *r = calloc(1, sizeof *r);

    ck_assert_ptr_nonnull(r);
    r->token_ids = calloc(num_prompt + max_tokens + 1, sizeof *r->token_ids);
    ck_assert_ptr_nonnull(r->token_ids);
    if (num_prompt > 0)
        memcpy(r->token_ids, prompt, num_prompt * sizeof *prompt);
    r->id = id;
    r->num_prompt_tokens = r->num_tokens = num_prompt;
    r->max_tokens = max_tokens;
    return r;
}

void treq_free(struct sched_request *r)
{
    if (r)
        free(r->token_ids);
    free(r);
}

void treq_tokens(int32_t *t, int n, uint32_t seed, int vocab)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

    for (int i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        t[i] = 3 + (int32_t)(x % (uint64_t)vocab);
    }
}

/* Blocks of group g's pool: sched_config's override, else num_blocks. */
static int group_blocks(const struct sched_config *c, int g)
{
    return c->group_num_blocks[g] > 0 ? c->group_num_blocks[g] : c->num_blocks;
}

void checker_init(struct sched_checker *ck, const struct scheduler *s, const struct sched_config *c)
{
    int max_blocks = 0;
    size_t slots;

    for (int g = 0; g < c->num_kv_groups; g++)
        max_blocks = group_blocks(c, g) > max_blocks ? group_blocks(c, g) : max_blocks;
    slots = (size_t)max_blocks * c->block_size;
    memset(ck, 0, sizeof *ck);
    ck->kv = sched_kv_cache(s);
    ck->cfg = *c;
    for (int g = 0; g < c->num_kv_groups; g++)
        ck_assert_ptr_nonnull(ck->shadow[g] = calloc(slots, sizeof(uint64_t)));
    ck_assert_ptr_nonnull(ck->seen = calloc(slots, 1));
    ck_assert_ptr_nonnull(ck->owners = calloc(max_blocks, sizeof *ck->owners));
    ck_assert_ptr_nonnull(ck->keys = calloc(c->max_model_len, sizeof *ck->keys));
}

void checker_fini(struct sched_checker *ck)
{
    for (int g = 0; g < KV_MAX_GROUPS; g++)
        free(ck->shadow[g]);
    free(ck->seen);
    free(ck->owners);
    free(ck->keys);
}

/* keys[k] names the token prefix [0, k]: equal keys, equal KV (never 0). */
static void prefix_keys(uint64_t *keys, const int32_t *tokens, int n)
{
    uint64_t h = 0x12345;

    for (int k = 0; k < n; k++) {
        h = (h ^ (uint32_t)tokens[k]) * 0x100000001b3ull;
        h ^= h >> 29;
        keys[k] = h | 1;
    }
}

static int window_start(const struct sched_config *c, int g, int pos)
{
    int w = c->group_window[g];

    return w > 0 && pos - w + 1 > 0 ? pos - w + 1 : 0;
}

/* One group's pool: its ids are its own, so each group is counted apart. */
static void group_ownership(struct sched_checker *ck, int g, struct sched_request *const *live,
                            int num_live)
{
    const struct block_pool *p = &ck->kv->pool[g];
    int nb = group_blocks(&ck->cfg, g), num_zero = 0;

    CHECK_EQ(p->num_blocks, nb);
    memset(ck->owners, 0, nb * sizeof *ck->owners);
    for (int i = 0; i < num_live; i++) {
        const struct sched_request *r = live[i];
        const struct kv_req *kr = &r->kv;

        if (r->status != SCHED_RUNNING)
            CHECK(kr->num_blocks[g] == 0, "waiting req %llu holds %d blocks",
                  (unsigned long long)r->id, kr->num_blocks[g]);
        for (int j = 0; j < kr->num_blocks[g]; j++) {
            int32_t id = kr->block_table[g][j];

            if (j < kr->first_live[g]) {
                CHECK_EQ(id, KV_NO_BLOCK);
                continue;
            }
            CHECK(id >= 0 && id < nb, "req %llu g%d entry %d: bad id %d",
                  (unsigned long long)r->id, g, j, id);
            ck->owners[id]++;
        }
    }
    for (int id = 0; id < nb; id++) {
        int hg = -1;

        CHECK(block_pool_ref_count(p, id) == ck->owners[id],
                      "g%d block %d: ref count %d, %d owners", g, id, block_pool_ref_count(p, id),
                      ck->owners[id]);
        if (ck->owners[id] > 1)
            CHECK(block_pool_hash_of(p, id, NULL, NULL),
                          "g%d block %d shared by %d tables without a prefix-cache hash", g, id,
                          ck->owners[id]);
        if (block_pool_hash_of(p, id, &hg, NULL))
            CHECK(hg == g, "g%d block %d hashed under group %d", g, id, hg);
        num_zero += ck->owners[id] == 0;
    }
    CHECK_EQ(block_pool_num_free(p), num_zero);
}

void checker_ownership(struct sched_checker *ck, struct sched_request *const *live, int num_live)
{
    for (int g = 0; g < ck->cfg.num_kv_groups; g++)
        group_ownership(ck, g, live, num_live);
}

/* Row layout: positions, ids, sampling, block-table rows. Returns the row's new tokens. */
static int check_row(struct sched_checker *ck, const struct step_batch *b, int i)
{
    const struct sched_request *r = b->reqs[i];
    int n = b->query_start_loc[i + 1] - b->query_start_loc[i], t0 = b->query_start_loc[i];
    int c = b->seq_lens[i] - n, mbr = b->max_blocks_per_req;

    CHECK(n >= 1, "row %d has %d tokens", i, n);
    CHECK_EQ(r->status, SCHED_RUNNING);
    CHECK_EQ(c, r->num_computed_tokens);
    CHECK(b->seq_lens[i] <= r->num_tokens, "b->seq_lens[i] <= r->num_tokens");
    CHECK(b->seq_lens[i] <= ck->cfg.max_model_len, "b->seq_lens[i] <= ck->cfg.max_model_len");
    for (int k = 0; k < n; k++) {
        CHECK_EQ(b->positions[t0 + k], c + k);
        CHECK_EQ(b->input_ids[t0 + k], r->token_ids[c + k]);
    }
    for (int g = 0; g < ck->cfg.num_kv_groups; g++) {
        const int32_t *row = b->block_table[g] + (size_t)i * mbr;

        for (int j = 0; j < mbr; j++)
            CHECK_EQ(row[j], j < r->kv.num_blocks[g] ? r->kv.block_table[g][j]
                                                              : KV_NO_BLOCK);
    }
    return n;
}

/* Slots: block_id * block_size + pos % block_size in a block of the row, unique per group. */
static void check_slots(struct sched_checker *ck, const struct step_batch *b, int g)
{
    int bs = ck->cfg.block_size, mbr = b->max_blocks_per_req;

    memset(ck->seen, 0, (size_t)group_blocks(&ck->cfg, g) * bs);
    for (int i = 0; i < b->num_reqs; i++) {
        const int32_t *row = b->block_table[g] + (size_t)i * mbr;

        for (int t = b->query_start_loc[i]; t < b->query_start_loc[i + 1]; t++) {
            int64_t slot = b->slot_mapping[g][t];
            int pos = b->positions[t];

            CHECK(row[pos / bs] != KV_NO_BLOCK, "g%d row %d pos %d has no block", g, i, pos);
            CHECK(slot == (int64_t)row[pos / bs] * bs + pos % bs,
                          "g%d token %d: slot %lld", g, t, (long long)slot);
            CHECK(!ck->seen[slot], "g%d slot %lld written twice in one step", g,
                          (long long)slot);
            ck->seen[slot] = 1;
        }
    }
}

void checker_step(struct sched_checker *ck, const struct step_batch *b,
                  struct sched_request *const *live, int num_live)
{
    int bs = ck->cfg.block_size, mbr = b->max_blocks_per_req, ns = 0, maxq = 0, maxs = 0;
    bool decode_only = true;

    CHECK(b->num_reqs >= 1, "b->num_reqs >= 1");
    CHECK(b->num_reqs <= ck->cfg.max_num_seqs, "b->num_reqs <= ck->cfg.max_num_seqs");
    CHECK(b->num_tokens <= ck->cfg.max_num_batched_tokens, "b->num_tokens <= ck->cfg.max_num_batched_tokens");
    CHECK_EQ(b->query_start_loc[0], 0);
    CHECK_EQ(b->query_start_loc[b->num_reqs], b->num_tokens);
    CHECK_EQ(b->num_tokens_padded, b->num_tokens);
    for (int i = 0; i < b->num_reqs; i++) {
        int n = check_row(ck, b, i);

        for (int j = 0; j < i; j++)
            CHECK(b->reqs[j] != b->reqs[i], "request in rows %d and %d", j, i);
        if (b->seq_lens[i] == b->reqs[i]->num_tokens) {   /* samples exactly then */
            CHECK(ns < b->num_sample, "ns < b->num_sample");
            CHECK_EQ(b->sample_req[ns], i);
            CHECK_EQ(b->logits_indices[ns], b->query_start_loc[i + 1] - 1);
            ns++;
        }
        decode_only &= n == 1;
        maxq = n > maxq ? n : maxq;
        maxs = b->seq_lens[i] > maxs ? b->seq_lens[i] : maxs;
    }
    CHECK_EQ(ns, b->num_sample);
    CHECK_EQ(decode_only, b->decode_only);
    CHECK_EQ(maxq, b->max_query_len);
    CHECK_EQ(maxs, b->max_seq_len);
    checker_ownership(ck, live, num_live);

    for (int g = 0; g < ck->cfg.num_kv_groups; g++) {
        check_slots(ck, b, g);
        /* The runner writes every new token's K/V first... */
        for (int i = 0; i < b->num_reqs; i++) {
            prefix_keys(ck->keys, b->reqs[i]->token_ids, b->seq_lens[i]);
            for (int t = b->query_start_loc[i]; t < b->query_start_loc[i + 1]; t++)
                ck->shadow[g][b->slot_mapping[g][t]] = ck->keys[b->positions[t]];
        }
        /* ...then each request reads its whole attended context, which must be its own. */
        for (int i = 0; i < b->num_reqs; i++) {
            const int32_t *row = b->block_table[g] + (size_t)i * mbr;
            int first = b->positions[b->query_start_loc[i]];

            prefix_keys(ck->keys, b->reqs[i]->token_ids, b->seq_lens[i]);
            for (int k = window_start(&ck->cfg, g, first); k < b->seq_lens[i]; k++) {
                CHECK(row[k / bs] != KV_NO_BLOCK,
                              "req %llu g%d: key %d (window from %d) was released",
                              (unsigned long long)b->reqs[i]->id, g, k,
                              window_start(&ck->cfg, g, first));
                CHECK(ck->shadow[g][(int64_t)row[k / bs] * bs + k % bs] == ck->keys[k],
                              "req %llu g%d: key %d holds another prefix's KV",
                              (unsigned long long)b->reqs[i]->id, g, k);
            }
        }
    }
}

void checker_pool_full(const struct sched_checker *ck)
{
    for (int g = 0; g < ck->cfg.num_kv_groups; g++) {
        const struct block_pool *p = &ck->kv->pool[g];

        CHECK_EQ(block_pool_num_free(p), group_blocks(&ck->cfg, g));
        for (int id = 0; id < group_blocks(&ck->cfg, g); id++)
            CHECK_EQ(block_pool_ref_count(p, id), 0);
    }
}
