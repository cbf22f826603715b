/* test_kv_groups_memory.c — KV memory per KV-cache group: how engine/kv_budget.c splits the
 * cache's bytes among the groups' pools, and the figure of issue 11 — the Gemma-3-4B shape
 * (34 layers, 5 global and 29 with a window of 1024, 4 KV heads of 256) with 64 requests
 * of 16k context holds at most 0.25x the KV bytes of the same model with every layer
 * global, computed through the real kv_cache.c allocation and kv_budget.c sizing. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine/kv_budget.h"
#include "scheduler/kv_cache.h"

enum { BS = 16, REQS = 64, CONTEXT = 16384, CHUNK = 2048, MAX_LEN = CONTEXT + 64 };

/* Gemma 3's pattern: every sixth layer global, the others a sliding window of `window`
 * (window 0: every layer global). */
static void gemma3_4b_config(struct model_config *c, int window)
{
    memset(c, 0, sizeof *c);
    c->num_layers = 34;
    c->num_kv_heads = 4;
    c->head_dim = 256;
    for (int l = 0; l < c->num_layers; l++)
        c->layer_window[l] = l % 6 == 5 ? 0 : window;
    c->num_kv_groups = model_kv_groups(c, c->kv_group_window, c->layer_kv_group,
                                       MODEL_MAX_KV_GROUPS);
    ck_assert_int_gt(c->num_kv_groups, 0);
}

/* bf16 K and V of one block in one layer */
static size_t layer_block_bytes(const struct model_config *c)
{
    return (size_t)2 * BS * c->num_kv_heads * c->head_dim * 2;
}

/* Sizes the pools from `bytes`, prefills REQS requests of CONTEXT - 1 tokens in chunks of
 * CHUNK, decodes one token each, and returns the bytes of the blocks then in use. */
static size_t bytes_in_use(const struct model_config *c, size_t bytes, int *used)
{
    static int32_t tokens[MAX_LEN];
    static struct kv_req reqs[REQS];
    int group_blocks[KV_MAX_GROUPS] = { 0 };
    struct kv_cache kv;
    char err[256] = "";
    size_t in_use;

    ck_assert_msg(kv_budget_split(c, bytes, layer_block_bytes(c), BS, REQS, CHUNK, MAX_LEN,
                                  group_blocks, err) == 0, "%s", err);
    ck_assert_int_eq(kv_cache_init(&kv, BS, group_blocks, c->num_kv_groups, c->kv_group_window,
                                   MAX_LEN, false), 0);
    for (int i = 0; i < REQS; i++) {
        ck_assert_int_eq(kv_cache_req_init(&kv, &reqs[i], MAX_LEN), 0);
        for (int done = 0; done < CONTEXT - 1; done += CHUNK) {
            int n = CONTEXT - 1 - done < CHUNK ? CONTEXT - 1 - done : CHUNK;

            ck_assert_int_eq(kv_cache_allocate(&kv, &reqs[i], tokens, 0, done, n), 0);
        }
    }
    for (int i = 0; i < REQS; i++)
        ck_assert_int_eq(kv_cache_allocate(&kv, &reqs[i], tokens, 0, CONTEXT - 1, 1), 0);
    for (int g = 0; g < c->num_kv_groups; g++)
        used[g] = kv_cache_num_blocks(&kv, g) - kv_cache_num_free(&kv, g);
    in_use = kv_budget_bytes(c, used, layer_block_bytes(c));
    for (int i = 0; i < REQS; i++)
        kv_cache_req_fini(&kv, &reqs[i]);
    for (int g = 0; g < c->num_kv_groups; g++)
        ck_assert_int_eq(kv_cache_num_free(&kv, g), group_blocks[g]);
    kv_cache_fini(&kv);
    return in_use;
}

START_TEST(gemma3_4b_64_requests_of_16k_hold_at_most_a_quarter_of_all_global)
{
    struct model_config hybrid, global;
    int used_h[KV_MAX_GROUPS] = { 0 }, used_g[KV_MAX_GROUPS] = { 0 };
    size_t bytes, in_h, in_g;
    double ratio;

    gemma3_4b_config(&hybrid, 1024);
    gemma3_4b_config(&global, 0);
    ck_assert_int_eq(hybrid.num_kv_groups, 2);
    ck_assert_int_eq(global.num_kv_groups, 1);
    /* the same memory for both: what the all-global model needs for the 64 requests */
    bytes = (size_t)REQS * (MAX_LEN / BS) * global.num_layers * layer_block_bytes(&global);
    in_h = bytes_in_use(&hybrid, bytes, used_h);
    in_g = bytes_in_use(&global, bytes, used_g);
    ratio = (double)in_h / (double)in_g;
    printf("kv_groups_memory: Gemma-3-4B shape, %d requests x %d tokens, blocks of %d: "
           "window 1024 (5 global + 29 window layers): %d + %d blocks in use, %.2f GiB; "
           "all 34 layers global: %d blocks in use, %.2f GiB; ratio %.3f (target <= 0.25)\n",
           REQS, CONTEXT, BS, used_h[0], used_h[1], in_h / 1073741824.0, used_g[0],
           in_g / 1073741824.0, ratio);
    /* a full group holds every block of the context; the window group a window's worth */
    ck_assert_int_eq(used_h[0], REQS * (CONTEXT / BS));
    ck_assert_int_le(used_h[1], REQS * (1024 / BS + 2));
    ck_assert_int_eq(used_g[0], REQS * (CONTEXT / BS));
    ck_assert_msg(ratio <= 0.25, "ratio %.3f", ratio);
}
END_TEST

/* A window group gets what max_num_seqs requests can hold in it (kv_cache_max_blocks at
 * max_model_len with chunks of max_num_batched_tokens), at most the even share; full groups
 * share the rest; a model of window groups only keeps the even share. */
START_TEST(split_gives_a_window_group_what_max_num_seqs_requests_hold)
{
    struct model_config c;
    int blocks[KV_MAX_GROUPS] = { 0 }, layers_full = 5, layers_win = 29;
    size_t lb, bytes;
    char err[256] = "";
    int even = 1000, win_need = 4 * ((1024 + 256 - 2) / BS + 2);   /* 4 seqs, chunk 256 */

    gemma3_4b_config(&c, 1024);
    lb = layer_block_bytes(&c);
    bytes = (size_t)even * c.num_layers * lb;
    ck_assert_int_eq(kv_budget_split(&c, bytes, lb, BS, 4, 256, 8192, blocks, err), 0);
    ck_assert_int_eq(blocks[1], win_need);
    ck_assert_int_eq(blocks[0], (int)((bytes - (size_t)win_need * layers_win * lb) /
                                      ((size_t)layers_full * lb)));
    ck_assert_uint_le(kv_budget_bytes(&c, blocks, lb), bytes);
    /* many sequences: the window group is capped at the even share, full gets the same */
    ck_assert_int_eq(kv_budget_split(&c, bytes, lb, BS, 256, 256, 8192, blocks, err), 0);
    ck_assert_int_eq(blocks[1], even);
    ck_assert_int_eq(blocks[0], even);
    /* every layer a window: nothing to give to, the even share everywhere */
    for (int l = 0; l < c.num_layers; l++)
        c.layer_window[l] = 1024;
    c.num_kv_groups = model_kv_groups(&c, c.kv_group_window, c.layer_kv_group,
                                      MODEL_MAX_KV_GROUPS);
    ck_assert_int_eq(kv_budget_split(&c, bytes, lb, BS, 4, 256, 8192, blocks, err), 0);
    ck_assert_int_eq(blocks[0], even);
    /* less than a block in every layer: refused, naming the sizes */
    ck_assert_int_eq(kv_budget_split(&c, lb * c.num_layers - 1, lb, BS, 4, 256, 8192, blocks,
                                     err), -ENOMEM);
    ck_assert_ptr_nonnull(strstr(err, "--kv-cache-memory"));
}
END_TEST

/* One request must fit every group's pool: the window group's small pool bounds it only
 * while a request's window blocks do not fit. */
START_TEST(max_request_tokens_needs_every_groups_pool)
{
    const int win[KV_MAX_GROUPS] = { 0, 64 };

    /* full: 100 blocks = 1600 tokens; window 64, chunk 32: (64 + 32 - 2) / 16 + 2 = 7 */
    ck_assert_int_eq(kv_budget_max_request_tokens((int[]){ 100, 7 }, BS, 2, win, 32, 4096), 1600);
    /* 6 window blocks: a request of 6 * 16 = 96 tokens fits, one more token needs 7 */
    ck_assert_int_eq(kv_budget_max_request_tokens((int[]){ 100, 6 }, BS, 2, win, 32, 4096), 96);
}
END_TEST

Suite *kv_groups_memory_suite(void)
{
    Suite *s = suite_create("kv_groups_memory");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, gemma3_4b_64_requests_of_16k_hold_at_most_a_quarter_of_all_global);
    tcase_add_test(tc, split_gives_a_window_group_what_max_num_seqs_requests_hold);
    tcase_add_test(tc, max_request_tokens_needs_every_groups_pool);
    suite_add_tcase(s, tc);
    return s;
}
