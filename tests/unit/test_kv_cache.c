/* test_kv_cache.c — block tables and slots: hand-computed slot numbers (directly and in a
 * step batch), padding slots after batch_pad, two groups (full + sliding window) with their
 * own tables, window blocks released exactly when out of the window, prefix lookups for full
 * and window groups, block hashes that chain the prefix, and an allocation failure that
 * changes nothing; each group over its own pool (its own ids and size): a short pool fails
 * the step, and a prefix hit needs every group's blocks. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/kv_cache.h"
#include "scheduler/scheduler.h"
#include "tests/unit/sched_check.h"

static const int full1[KV_MAX_GROUPS] = { 0 };

START_TEST(slot_is_block_id_times_block_size_plus_offset)
{
    struct kv_cache kv;
    struct kv_req a, b;
    int32_t tok[16] = { 0 };

    ck_assert_int_eq(kv_cache_init(&kv, 4, (int[]){ 8 }, 1, full1, 64, false), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &a, 8), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &b, 16), 0);
    ck_assert_int_eq(kv_cache_allocate(&kv, &a, tok, 0, 0, 3), 0);    /* a: block 0 */
    ck_assert_int_eq(kv_cache_allocate(&kv, &b, tok, 0, 0, 10), 0);   /* b: blocks 1, 2, 3 */
    kv_cache_req_fini(&kv, &a);                                       /* block 0 is free again */
    ck_assert_int_eq(kv_cache_allocate(&kv, &b, tok, 0, 10, 4), 0);   /* b: + block 0 */
    ck_assert_int_eq(b.num_blocks[0], 4);
    ck_assert_int_eq(b.block_table[0][3], 0);
    ck_assert_int_eq(kv_cache_slot(&kv, &b, 0, 0), 1 * 4 + 0);
    ck_assert_int_eq(kv_cache_slot(&kv, &b, 0, 5), 2 * 4 + 1);
    ck_assert_int_eq(kv_cache_slot(&kv, &b, 0, 11), 3 * 4 + 3);
    ck_assert_int_eq(kv_cache_slot(&kv, &b, 0, 13), 0 * 4 + 1);
    kv_cache_req_fini(&kv, &b);
    ck_assert_int_eq(block_pool_num_free(&kv.pool[0]), 8);
    kv_cache_fini(&kv);
}
END_TEST

static struct sched_config small_config(int bs, int num_blocks)
{
    return (struct sched_config){ .block_size = bs, .num_blocks = num_blocks, .max_num_seqs = 4,
                                  .max_num_batched_tokens = 32, .max_model_len = 64,
                                  .num_kv_groups = 1 };
}

/* Runs one step, feeding sampled token 7 to every sampled row; returns the batch's copy of
 * slot_mapping[0] in out (num_tokens entries). */
static int step(struct scheduler *s, int64_t *out)
{
    struct step_batch *b = sched_schedule(s);
    struct sched_request **fin;
    int32_t sampled[8] = { 7, 7, 7, 7, 7, 7, 7, 7 };
    int nf, n;

    ck_assert_ptr_nonnull(b);
    n = b->num_tokens;
    memcpy(out, b->slot_mapping[0], n * sizeof *out);
    ck_assert_int_eq(sched_update(s, b, sampled, &fin, &nf), 0);
    return n;
}

START_TEST(batch_slot_mapping_matches_hand_computed_slots)
{
    struct sched_config c = small_config(4, 8);
    struct scheduler *s;
    int32_t p[6] = { 3, 4, 5, 6, 7, 8 };
    struct sched_request *a = treq_new(1, p, 3, 1), *b = treq_new(2, p, 6, 5);
    int64_t slots[32];
    const int64_t want1[9] = { 0, 1, 2, 4, 5, 6, 7, 8, 9 };   /* a: block 0; b: blocks 1, 2 */

    ck_assert_int_eq(sched_create(&s, &c, NULL), 0);
    ck_assert_int_eq(sched_add(s, a, NULL), 0);
    ck_assert_int_eq(sched_add(s, b, NULL), 0);
    ck_assert_int_eq(step(s, slots), 9);                /* a finishes: max_tokens 1 */
    for (int i = 0; i < 9; i++)
        ck_assert_int_eq(slots[i], want1[i]);
    ck_assert_int_eq(a->finish_reason, FINISH_LENGTH);
    ck_assert_int_eq(step(s, slots), 1);                /* b pos 6: block 2, offset 2 */
    ck_assert_int_eq(slots[0], 2 * 4 + 2);
    ck_assert_int_eq(step(s, slots), 1);                /* pos 7 */
    ck_assert_int_eq(slots[0], 2 * 4 + 3);
    ck_assert_int_eq(step(s, slots), 1);                /* pos 8: a's old block 0 */
    ck_assert_int_eq(slots[0], 0 * 4 + 0);
    sched_destroy(s);
    treq_free(a);
    treq_free(b);
}
END_TEST

START_TEST(padding_tokens_get_the_padding_slot_after_batch_pad)
{
    struct sched_config c = small_config(4, 16);
    struct scheduler *s;
    struct sched_request *r[3];
    int32_t p[2] = { 5, 6 }, sampled[3] = { 9, 9, 9 };
    struct sched_request **fin;
    struct step_batch *b;
    int nf;

    c.num_kv_groups = 2;
    c.group_window[1] = 4;
    c.batch_capacity_tokens = c.batch_capacity_reqs = 8;
    ck_assert_int_eq(sched_create(&s, &c, NULL), 0);
    for (int i = 0; i < 3; i++) {
        r[i] = treq_new(i, p, 1, 4);
        ck_assert_int_eq(sched_add(s, r[i], NULL), 0);
    }
    b = sched_schedule(s);
    ck_assert_int_eq(sched_update(s, b, sampled, &fin, &nf), 0);
    b = sched_schedule(s);
    ck_assert(b->decode_only);
    ck_assert_int_eq(b->num_tokens, 3);
    ck_assert_int_eq(batch_pad(b, 8), 0);
    for (int g = 0; g < 2; g++) {
        for (int t = 0; t < 3; t++)
            ck_assert_int_ge(b->slot_mapping[g][t], 0);
        for (int t = 3; t < 8; t++)
            ck_assert_int_eq(b->slot_mapping[g][t], KV_PADDING_SLOT);
        for (int i = 3; i < 8; i++)
            for (int j = 0; j < b->max_blocks_per_req; j++)
                ck_assert_int_eq(b->block_table[g][i * b->max_blocks_per_req + j], KV_NO_BLOCK);
    }
    for (int t = 3; t < 8; t++) {
        ck_assert_int_eq(b->input_ids[t], 0);
        ck_assert_int_eq(b->seq_lens[t], 0);
    }
    ck_assert_int_eq(sched_update(s, b, sampled, &fin, &nf), 0);
    sched_destroy(s);
    for (int i = 0; i < 3; i++)
        treq_free(r[i]);
}
END_TEST

START_TEST(full_and_window_groups_keep_different_tables)
{
    const int win[KV_MAX_GROUPS] = { 0, 32 };
    struct kv_cache kv;
    struct kv_req r;
    int32_t tok[101] = { 0 };

    /* each group has its own pool and ids: the window group's is the smaller one */
    ck_assert_int_eq(kv_cache_init(&kv, 16, (int[]){ 64, 8 }, 2, win, 256, false), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &r, 200), 0);
    ck_assert_int_eq(kv_cache_allocate(&kv, &r, tok, 0, 0, 100), 0);
    ck_assert_int_eq(r.num_blocks[0], 7);
    ck_assert_int_eq(r.num_blocks[1], 7);
    for (int j = 0; j < 7; j++)
        ck_assert(r.block_table[1][j] >= 0 && r.block_table[1][j] < 8);
    ck_assert_int_eq(kv_cache_num_free(&kv, 0), 64 - 7);
    ck_assert_int_eq(kv_cache_num_free(&kv, 1), 8 - 7);
    /* Decode at 100: it sees keys (68, 100], so blocks 0..3 (positions 0..63) go. */
    ck_assert_int_eq(kv_cache_allocate(&kv, &r, tok, 0, 100, 1), 0);
    for (int j = 0; j < 4; j++)
        ck_assert_int_eq(r.block_table[1][j], KV_NO_BLOCK);
    for (int j = 4; j < 7; j++)
        ck_assert_int_ne(r.block_table[1][j], KV_NO_BLOCK);
    for (int j = 0; j < 7; j++)
        ck_assert_int_ne(r.block_table[0][j], KV_NO_BLOCK);
    ck_assert_int_eq(kv_cache_num_free(&kv, 0), 64 - 7);
    ck_assert_int_eq(kv_cache_num_free(&kv, 1), 8 - 7 + 4);
    ck_assert_int_eq(kv_cache_slot(&kv, &r, 1, 100), (int64_t)r.block_table[1][6] * 16 + 4);
    ck_assert_int_eq(kv_cache_slot(&kv, &r, 0, 100), (int64_t)r.block_table[0][6] * 16 + 4);
    kv_cache_req_fini(&kv, &r);
    ck_assert_int_eq(kv_cache_num_free(&kv, 0), 64);
    ck_assert_int_eq(kv_cache_num_free(&kv, 1), 8);
    kv_cache_fini(&kv);
}
END_TEST

/* W = 10 with blocks of 4 (a window that is not a multiple of the block), decoding one token
 * at a time: block j is live exactly while its last position 4j + 3 is >= c - 9. */
START_TEST(window_blocks_released_once_out_of_window_never_while_needed)
{
    const int win[KV_MAX_GROUPS] = { 10 };
    struct kv_cache kv;
    struct kv_req r;
    int32_t tok[64] = { 0 };
    int bound, max_live = 0;

    ck_assert_int_eq(kv_cache_init(&kv, 4, (int[]){ 32 }, 1, win, 64, false), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &r, 64), 0);
    bound = kv_cache_max_blocks(&kv, 0, 64, 1);
    ck_assert_int_eq(bound, (10 + 1 - 2) / 4 + 2);
    for (int c = 0; c < 60; c++) {
        int live = 0;

        ck_assert_int_eq(kv_cache_allocate(&kv, &r, tok, 0, c, 1), 0);
        ck_assert_int_eq(r.num_blocks[0], c / 4 + 1);
        for (int j = 0; j <= c / 4; j++) {
            bool want_live = 4 * j + 3 >= c - 9;

            ck_assert_msg((r.block_table[0][j] != KV_NO_BLOCK) == want_live,
                          "c=%d block %d live=%d", c, j, r.block_table[0][j] != KV_NO_BLOCK);
            live += want_live;
        }
        ck_assert_int_eq(block_pool_num_free(&kv.pool[0]), 32 - live);
        max_live = live > max_live ? live : max_live;
    }
    ck_assert_int_le(max_live, bound);
    kv_cache_req_fini(&kv, &r);
    kv_cache_fini(&kv);
}
END_TEST

START_TEST(prefix_lookup_serves_full_blocks_and_leaves_the_last_token)
{
    struct kv_cache kv;
    struct kv_req a, b;
    int32_t ta[11], tb[11];

    treq_tokens(ta, 11, 1, 100);
    ck_assert_int_eq(kv_cache_init(&kv, 4, (int[]){ 16 }, 1, full1, 64, true), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &a, 16), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &b, 16), 0);
    ck_assert_int_eq(kv_cache_lookup(&kv, &a, ta, 10), 0);
    ck_assert_int_eq(kv_cache_allocate(&kv, &a, ta, 0, 0, 10), 0);   /* blocks 0, 1 full */

    ck_assert_int_eq(kv_cache_lookup(&kv, &b, ta, 10), 8);
    ck_assert_int_eq(kv_cache_lookup(&kv, &b, ta, 11), 8);
    ck_assert_int_eq(kv_cache_lookup(&kv, &b, ta, 8), 4);   /* the 8th token must run */
    memcpy(tb, ta, sizeof tb);
    tb[6] = 2;                                               /* differs inside block 1 */
    kv_cache_req_fini(&kv, &b);
    ck_assert_int_eq(kv_cache_req_init(&kv, &b, 16), 0);
    ck_assert_int_eq(kv_cache_lookup(&kv, &b, tb, 11), 4);
    ck_assert_int_eq(kv_cache_allocate(&kv, &b, tb, 4, 4, 7), 0);
    ck_assert_int_eq(b.block_table[0][0], a.block_table[0][0]);
    ck_assert_int_ne(b.block_table[0][1], a.block_table[0][1]);
    ck_assert_int_eq(block_pool_ref_count(&kv.pool[0], a.block_table[0][0]), 2);
    ck_assert_int_eq(block_pool_ref_count(&kv.pool[0], a.block_table[0][1]), 1);
    tb[0] = 1;                                               /* differs in block 0 */
    kv_cache_req_fini(&kv, &b);
    ck_assert_int_eq(kv_cache_req_init(&kv, &b, 16), 0);
    ck_assert_int_eq(kv_cache_lookup(&kv, &b, tb, 11), 0);
    kv_cache_req_fini(&kv, &a);
    kv_cache_req_fini(&kv, &b);
    ck_assert_int_eq(block_pool_num_free(&kv.pool[0]), 16);
    kv_cache_fini(&kv);
}
END_TEST

/* A block's hash chains its parent's, so the same 4 tokens under another prefix are another
 * block. a = [S T U x]: its block 1 holds T at positions 4..7 after S. b = [T V ...] starts
 * with T's tokens: hashed alone, b's block 0 would be a's block 1 (keys of other positions,
 * computed after S). c = [W T U x] has a's blocks 1 and 2 token for token under another
 * block 0; in a window-only model (window 4, so a query at 12 sees only block 2), hashes
 * without the parent would serve c 12 tokens of a's cache. Both must get nothing. */
START_TEST(same_tokens_under_another_prefix_share_no_block)
{
    const int win4[KV_MAX_GROUPS] = { 4 };
    struct kv_cache kv;
    struct kv_req a, b, c;
    int32_t ta[13], tb[13], tc[13];

    for (int i = 0; i < 13; i++)
        ta[i] = 10 + i;                 /* S = 10..13, T = 14..17, U = 18..21, x = 22 */
    memcpy(tb, ta + 4, 9 * sizeof *tb); /* T U x ... */
    tb[9] = tb[10] = tb[11] = tb[12] = 99;
    memcpy(tc, ta, sizeof tc);
    tc[0] = 50;                         /* W: block 0 differs, blocks 1 and 2 are a's */

    /* full attention: a's block 1 must not serve b's block 0 */
    ck_assert_int_eq(kv_cache_init(&kv, 4, (int[]){ 16 }, 1, full1, 64, true), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &a, 13), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &b, 13), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &c, 13), 0);
    ck_assert_int_eq(kv_cache_allocate(&kv, &a, ta, 0, 0, 13), 0);   /* blocks 0..2 hashed */
    ck_assert_int_eq(kv_cache_lookup(&kv, &c, ta, 13), 12);          /* a's own prefix: hit */
    ck_assert_int_eq(kv_cache_lookup(&kv, &b, tb, 13), 0);
    ck_assert_int_eq(kv_cache_allocate(&kv, &b, tb, 0, 0, 13), 0);
    for (int j = 0; j < 3; j++)
        for (int k = 0; k < 3; k++)
            ck_assert_int_ne(b.block_table[0][j], a.block_table[0][k]);
    kv_cache_req_fini(&kv, &a);
    kv_cache_req_fini(&kv, &b);
    kv_cache_req_fini(&kv, &c);
    kv_cache_fini(&kv);

    /* a window-only model: c's window at 12 covers only block 2, equal token for token */
    ck_assert_int_eq(kv_cache_init(&kv, 4, (int[]){ 16 }, 1, win4, 64, true), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &a, 13), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &b, 13), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &c, 13), 0);
    ck_assert_int_eq(kv_cache_allocate(&kv, &a, ta, 0, 0, 13), 0);
    ck_assert_int_eq(kv_cache_lookup(&kv, &b, ta, 13), 12);
    ck_assert_int_eq(kv_cache_lookup(&kv, &c, tc, 13), 0);
    kv_cache_req_fini(&kv, &a);
    kv_cache_req_fini(&kv, &b);
    kv_cache_req_fini(&kv, &c);
    ck_assert_int_eq(block_pool_num_free(&kv.pool[0]), 16);
    kv_cache_fini(&kv);
}
END_TEST

START_TEST(freed_prefix_is_revived_from_the_free_list)
{
    struct kv_cache kv;
    struct kv_req a, b;
    int32_t t[13];
    int32_t ids[3];

    treq_tokens(t, 13, 2, 100);
    ck_assert_int_eq(kv_cache_init(&kv, 4, (int[]){ 8 }, 1, full1, 64, true), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &a, 13), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &b, 13), 0);
    ck_assert_int_eq(kv_cache_allocate(&kv, &a, t, 0, 0, 12), 0);
    memcpy(ids, a.block_table[0], sizeof ids);
    kv_cache_free(&kv, &a);
    ck_assert_int_eq(block_pool_num_free(&kv.pool[0]), 8);
    ck_assert_int_eq(kv_cache_lookup(&kv, &b, t, 13), 12);
    ck_assert_int_eq(kv_cache_allocate(&kv, &b, t, 12, 12, 1), 0);
    for (int j = 0; j < 3; j++)
        ck_assert_int_eq(b.block_table[0][j], ids[j]);
    ck_assert_int_eq(block_pool_num_free(&kv.pool[0]), 8 - 4);
    kv_cache_req_fini(&kv, &a);
    kv_cache_req_fini(&kv, &b);
    kv_cache_fini(&kv);
}
END_TEST

/* Full group + window 8, blocks of 4. a has run 24 tokens and decoded one, releasing window
 * blocks 0..3, which a filler request then evicts. A prefix of 24 tokens is still served
 * (the query at 24 needs only window blocks 4 and 5); a prefix of 16 is not (it would need
 * window blocks 2 and 3, gone), nor any shorter one. */
START_TEST(window_group_hit_needs_only_the_blocks_in_the_window)
{
    const int win[KV_MAX_GROUPS] = { 0, 8 };
    struct kv_cache kv;
    struct kv_req a, f, b;
    int32_t t[32], u[32];

    treq_tokens(t, 32, 3, 100);
    treq_tokens(u, 32, 4, 100);
    /* pools: group 0 holds a's 7 blocks and f's 3; group 1 a's 3 live ones and f's 3 */
    ck_assert_int_eq(kv_cache_init(&kv, 4, (int[]){ 10, 6 }, 2, win, 64, true), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &a, 32), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &f, 32), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &b, 32), 0);
    ck_assert_int_eq(kv_cache_allocate(&kv, &a, t, 0, 0, 24), 0);    /* 12 blocks */
    ck_assert_int_eq(kv_cache_allocate(&kv, &a, t, 0, 24, 1), 0);    /* -4 window, +2 */
    ck_assert_int_eq(a.first_live[1], 4);
    ck_assert_int_eq(kv_cache_num_free(&kv, 0), 10 - 7);
    ck_assert_int_eq(kv_cache_num_free(&kv, 1), 6 - 3);
    ck_assert_int_eq(kv_cache_allocate(&kv, &f, u, 0, 0, 12), 0);    /* takes all 6 */
    ck_assert_int_eq(kv_cache_num_free(&kv, 0), 0);
    ck_assert_int_eq(kv_cache_num_free(&kv, 1), 0);

    ck_assert_int_eq(kv_cache_lookup(&kv, &b, t, 25), 24);
    memcpy(u, t, 16 * sizeof *t);                                    /* t's first 16 tokens */
    ck_assert_int_eq(kv_cache_lookup(&kv, &b, u, 20), 0);
    kv_cache_req_fini(&kv, &f);
    ck_assert_int_eq(kv_cache_lookup(&kv, &b, t, 25), 24);
    ck_assert_int_eq(kv_cache_allocate(&kv, &b, t, 24, 24, 1), 0);
    for (int j = 0; j < 6; j++)
        ck_assert_int_eq(b.block_table[0][j], a.block_table[0][j]);
    for (int j = 0; j < 4; j++)
        ck_assert_int_eq(b.block_table[1][j], KV_NO_BLOCK);
    for (int j = 4; j < 6; j++)
        ck_assert_int_eq(b.block_table[1][j], a.block_table[1][j]);
    ck_assert_int_ne(b.block_table[1][6], a.block_table[1][6]);   /* a's is not full yet */
    kv_cache_req_fini(&kv, &a);
    kv_cache_req_fini(&kv, &b);
    ck_assert_int_eq(kv_cache_num_free(&kv, 0), 10);
    ck_assert_int_eq(kv_cache_num_free(&kv, 1), 6);
    kv_cache_fini(&kv);
}
END_TEST

/* Two groups, a pool of 2 each. a's cached blocks (id 0 in each group's pool) are the least
 * recently freed; b hits both and needs one new block per group. A group's new block must
 * not evict the cached block it is about to revive: c's blocks (id 1) go instead. */
START_TEST(hits_in_every_group_are_taken_before_any_allocation_evicts_them)
{
    const int win[KV_MAX_GROUPS] = { 0, 0 };
    struct kv_cache kv;
    struct kv_req a, c, b;
    int32_t t[5], u[5];

    treq_tokens(t, 5, 5, 100);
    treq_tokens(u, 5, 6, 100);
    ck_assert_int_eq(kv_cache_init(&kv, 4, (int[]){ 2, 2 }, 2, win, 64, true), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &a, 8), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &c, 8), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &b, 8), 0);
    ck_assert_int_eq(kv_cache_allocate(&kv, &a, t, 0, 0, 4), 0);
    ck_assert_int_eq(kv_cache_allocate(&kv, &c, u, 0, 0, 4), 0);
    ck_assert_int_eq(a.block_table[0][0], 0);
    ck_assert_int_eq(a.block_table[1][0], 0);
    kv_cache_free(&kv, &a);
    kv_cache_free(&kv, &c);
    ck_assert_int_eq(kv_cache_lookup(&kv, &b, t, 5), 4);
    ck_assert_int_eq(kv_cache_allocate(&kv, &b, t, 4, 4, 1), 0);
    ck_assert_int_eq(b.block_table[0][0], 0);
    ck_assert_int_eq(b.block_table[1][0], 0);
    ck_assert_int_eq(b.block_table[0][1], 1);   /* c's blocks were evicted instead */
    ck_assert_int_eq(b.block_table[1][1], 1);
    kv_cache_req_fini(&kv, &a);
    kv_cache_req_fini(&kv, &c);
    kv_cache_req_fini(&kv, &b);
    kv_cache_fini(&kv);
}
END_TEST

START_TEST(failed_allocation_changes_nothing)
{
    struct kv_cache kv;
    struct kv_req a, b;
    int32_t t[16] = { 0 };

    ck_assert_int_eq(kv_cache_init(&kv, 4, (int[]){ 3 }, 1, full1, 64, false), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &a, 16), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &b, 16), 0);
    ck_assert_int_eq(kv_cache_allocate(&kv, &a, t, 0, 0, 16), -ENOSPC);
    ck_assert_int_eq(a.num_blocks[0], 0);
    ck_assert_int_eq(block_pool_num_free(&kv.pool[0]), 3);
    ck_assert_int_eq(kv_cache_allocate(&kv, &a, t, 0, 0, 8), 0);
    ck_assert_int_eq(kv_cache_allocate(&kv, &b, t, 0, 0, 5), -ENOSPC);
    ck_assert_int_eq(b.num_blocks[0], 0);
    ck_assert_int_eq(block_pool_num_free(&kv.pool[0]), 1);
    kv_cache_req_fini(&kv, &a);
    kv_cache_req_fini(&kv, &b);
    kv_cache_fini(&kv);
}
END_TEST

/* Each group allocates from its own pool: a short window pool refuses the step although
 * the full group's pool has room, and takes nothing from either. */
START_TEST(a_short_group_pool_fails_the_step_and_changes_nothing)
{
    const int win[KV_MAX_GROUPS] = { 0, 4 };
    struct kv_cache kv;
    struct kv_req a, b;
    int32_t t[16] = { 0 };

    ck_assert_int_eq(kv_cache_init(&kv, 4, (int[]){ 16, 2 }, 2, win, 64, false), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &a, 16), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &b, 16), 0);
    ck_assert_int_eq(kv_cache_allocate(&kv, &a, t, 0, 0, 8), 0);
    ck_assert_int_eq(kv_cache_num_free(&kv, 0), 14);
    ck_assert_int_eq(kv_cache_num_free(&kv, 1), 0);
    ck_assert_int_eq(kv_cache_allocate(&kv, &b, t, 0, 0, 4), -ENOSPC);
    ck_assert_int_eq(b.num_blocks[0], 0);
    ck_assert_int_eq(b.num_blocks[1], 0);
    ck_assert_int_eq(kv_cache_num_free(&kv, 0), 14);
    kv_cache_free(&kv, &a);
    ck_assert_int_eq(kv_cache_allocate(&kv, &b, t, 0, 0, 4), 0);
    ck_assert_int_eq(kv_cache_num_free(&kv, 0), 15);
    ck_assert_int_eq(kv_cache_num_free(&kv, 1), 1);
    kv_cache_req_fini(&kv, &a);
    kv_cache_req_fini(&kv, &b);
    kv_cache_fini(&kv);
}
END_TEST

/* Pools are per group, so one group can evict a prefix that another still caches: a hit
 * needs every group's blocks, else the prefix is recomputed. Group 0's pool of 2 loses a's
 * blocks to c; group 1's pool of 8 keeps them, and that is not enough. */
START_TEST(a_prefix_hit_needs_every_groups_blocks)
{
    const int win[KV_MAX_GROUPS] = { 0, 0 };
    struct kv_cache kv;
    struct kv_req a, c, b;
    int32_t t[9], u[9];

    treq_tokens(t, 9, 7, 100);
    treq_tokens(u, 9, 8, 100);
    ck_assert_int_eq(kv_cache_init(&kv, 4, (int[]){ 2, 8 }, 2, win, 64, true), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &a, 9), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &c, 9), 0);
    ck_assert_int_eq(kv_cache_req_init(&kv, &b, 9), 0);
    ck_assert_int_eq(kv_cache_allocate(&kv, &a, t, 0, 0, 8), 0);
    kv_cache_free(&kv, &a);
    ck_assert_int_eq(kv_cache_lookup(&kv, &b, t, 9), 8);   /* both groups have it */
    ck_assert_int_eq(kv_cache_allocate(&kv, &c, u, 0, 0, 8), 0);
    ck_assert_int_eq(kv_cache_num_free(&kv, 0), 0);
    ck_assert_int_eq(kv_cache_lookup(&kv, &b, t, 9), 0);   /* group 0's went to c */
    kv_cache_free(&kv, &c);
    ck_assert_int_eq(kv_cache_lookup(&kv, &b, t, 9), 0);
    ck_assert_int_eq(kv_cache_allocate(&kv, &b, t, 0, 0, 8), 0);   /* recomputed */
    kv_cache_req_fini(&kv, &a);
    kv_cache_req_fini(&kv, &c);
    kv_cache_req_fini(&kv, &b);
    ck_assert_int_eq(kv_cache_num_free(&kv, 0), 2);
    ck_assert_int_eq(kv_cache_num_free(&kv, 1), 8);
    kv_cache_fini(&kv);
}
END_TEST

START_TEST(worst_case_bound_per_group)
{
    const int win[KV_MAX_GROUPS] = { 0, 32 };
    struct kv_cache kv;

    ck_assert_int_eq(kv_cache_init(&kv, 16, (int[]){ 64, 64 }, 2, win, 256, false), 0);
    /* full: ceil(100 / 16) = 7; window 32, chunk 1: (32 + 1 - 2) / 16 + 2 = 3 */
    ck_assert_int_eq(kv_cache_max_blocks(&kv, 0, 100, 1), 7);
    ck_assert_int_eq(kv_cache_max_blocks(&kv, 1, 100, 1), 3);
    /* chunk 64: (32 + 64 - 2) / 16 + 2 = 7, capped by the 7 blocks of 100 tokens */
    ck_assert_int_eq(kv_cache_max_blocks(&kv, 1, 100, 64), 7);
    kv_cache_fini(&kv);
}
END_TEST

Suite *kv_cache_suite(void)
{
    Suite *s = suite_create("kv_cache");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, slot_is_block_id_times_block_size_plus_offset);
    tcase_add_test(tc, batch_slot_mapping_matches_hand_computed_slots);
    tcase_add_test(tc, padding_tokens_get_the_padding_slot_after_batch_pad);
    tcase_add_test(tc, full_and_window_groups_keep_different_tables);
    tcase_add_test(tc, window_blocks_released_once_out_of_window_never_while_needed);
    tcase_add_test(tc, prefix_lookup_serves_full_blocks_and_leaves_the_last_token);
    tcase_add_test(tc, freed_prefix_is_revived_from_the_free_list);
    tcase_add_test(tc, window_group_hit_needs_only_the_blocks_in_the_window);
    tcase_add_test(tc, hits_in_every_group_are_taken_before_any_allocation_evicts_them);
    tcase_add_test(tc, failed_allocation_changes_nothing);
    tcase_add_test(tc, a_short_group_pool_fails_the_step_and_changes_nothing);
    tcase_add_test(tc, a_prefix_hit_needs_every_groups_blocks);
    tcase_add_test(tc, worst_case_bound_per_group);
    tcase_add_test(tc, same_tokens_under_another_prefix_share_no_block);
    suite_add_tcase(s, tc);
    return s;
}
