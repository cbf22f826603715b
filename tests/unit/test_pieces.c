/* test_pieces.c — piecewise graphs of mixed and prefill steps (engine/runner_pieces.c)
 * against the eager forward, on the cpu backend with the fake graph backend (fake_graphs.c:
 * a "graph" replays by calling its body again, after checking that the restaged batch has
 * the token count it was captured with). Two runners of one model run the same random steps
 * in lockstep, one eager and one with pieces (and small decode graphs beside them): prefill
 * chunks, decodes, prompts whose first blocks come from another request's cache (prefix
 * caching), steps with masks (the forward alone, then the sampler), steps larger than the
 * largest bucket (eager). The cpu backend is deterministic, so the logits and the cache
 * bytes must be equal bit for bit, and the pieces runner's step may change no cache row
 * but the real tokens' slots. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/runner.h"
#include "engine/runner_pieces.h"
#include "engine/runner_tp.h"   /* runner__download_logits */
#include "tests/unit/fake_graphs.h"
#include "tests/unit/fixtures.h"
#include "tests/unit/forward_sim.h"

static const int buckets[] = { 16, 4, 8, 8 };     /* unsorted, with a duplicate */
#define LARGEST_BUCKET 16
static const int decode_sizes[] = { 1, 2 };        /* decodes of 3 and more: pieces */

struct tally {
    int steps, piece_steps, eager_big, masked, prefix_hits, padded;
};

/* Every layer's K and V cache of s, copied. */
static char **cache_copy(struct sim *s)
{
    const struct model_config *c = &s->fx.m.cfg;
    size_t row = (size_t)c->num_kv_heads * c->head_dim * s->kv_elem;
    char **out = calloc(2 * c->num_layers, sizeof *out);

    ck_assert_ptr_nonnull(out);
    for (int l = 0; l < c->num_layers; l++) {
        size_t n = (size_t)s->group_blocks[c->layer_kv_group[l]] * s->block_size * row;
        void *kc, *vc;

        ck_assert_int_eq(runner_layer_cache(s->r, l, &kc, &vc), 0);
        out[2 * l] = malloc(n);
        out[2 * l + 1] = malloc(n);
        ck_assert(out[2 * l] && out[2 * l + 1]);
        memcpy(out[2 * l], kc, n);
        memcpy(out[2 * l + 1], vc, n);
    }
    return out;
}

static void cache_free(struct sim *s, char **c)
{
    for (int i = 0; i < 2 * s->fx.m.cfg.num_layers; i++)
        free(c[i]);
    free(c);
}

static bool real_slot(const struct step_batch *b, int g, int64_t slot)
{
    for (int i = 0; i < b->num_tokens; i++)
        if (b->slot_mapping[g][i] == slot)
            return true;
    return false;
}

/* The step of s changed no row of before but the real tokens' slots; and s's cache now
 * equals the eager runner's, byte for byte. */
static void check_caches(struct sim *s, char **before, struct sim *eager)
{
    const struct model_config *c = &s->fx.m.cfg;
    size_t row = (size_t)c->num_kv_heads * c->head_dim * s->kv_elem;

    for (int l = 0; l < c->num_layers; l++) {
        int g = c->layer_kv_group[l];
        size_t slots = (size_t)s->group_blocks[g] * s->block_size;
        void *kc[2], *ec[2];

        ck_assert_int_eq(runner_layer_cache(s->r, l, &kc[0], &kc[1]), 0);
        ck_assert_int_eq(runner_layer_cache(eager->r, l, &ec[0], &ec[1]), 0);
        for (int kv = 0; kv < 2; kv++) {
            for (size_t slot = 0; slot < slots; slot++)
                if (memcmp((char *)kc[kv] + slot * row, before[2 * l + kv] + slot * row, row))
                    ck_assert_msg(real_slot(&s->b, g, (int64_t)slot),
                                  "layer %d: slot %zu changed, no real token has it", l, slot);
            ck_assert_msg(!memcmp(kc[kv], ec[kv], slots * row),
                          "layer %d: the %s cache differs from the eager runner's", l,
                          kv ? "V" : "K");
        }
    }
}

/* rows for a masked step: every row allows the tokens whose id is not 0 mod 3, plus one */
static const struct sample_row *masked_rows(struct sample_row *rows, uint32_t *mask, int n,
                                            int vocab, int step)
{
    memset(mask, 0, (size_t)(vocab + 31) / 32 * sizeof *mask);
    for (int t = 0; t < vocab; t++)
        if (t % 3 || t == step % vocab)
            mask[t >> 5] |= 1u << (t & 31);
    for (int i = 0; i < n; i++)
        rows[i] = (struct sample_row){ .top_p = 1.0f, .repetition_penalty = 1.0f,
                                       .num_logprobs = -1, .allowed = mask };
    return rows;
}

/* One step of both runners; the logits, the tokens and the caches must agree. The sampled
 * tokens are left in res. */
static void lockstep_step(struct sim *e, struct sim *p, int step, struct tally *t,
                          struct sample_result *res)
{
    struct sample_result rp[MAX_SEQS];
    struct sample_row rows[MAX_SEQS];
    uint32_t mask[8];
    int V = e->fx.m.cfg.vocab_size, n = p->b.num_tokens;
    bool masked = step % 3 == 1;
    const struct sample_row *r = masked ? masked_rows(rows, mask, p->b.num_sample, V, step) : NULL;
    float *le = malloc(sizeof(float) * MAX_SEQS * V), *lp = malloc(sizeof(float) * MAX_SEQS * V);
    char **before = cache_copy(p);
    uint64_t pieces0 = runner_piece_steps(p->r);
    bool captured = fake_graphs.piece_captures > 0;   /* --calculate-kv-scales: not before
                                                       * the first step */

    ck_assert(le && lp && V <= 8 * 32);
    ck_assert_int_eq(runner_execute(e->r, &e->b, r, res), 0);
    ck_assert_int_eq(runner_execute(p->r, &p->b, r, rp), 0);
    ck_assert_int_eq(runner__download_logits(e->r, le, e->b.num_sample), 0);
    ck_assert_int_eq(runner__download_logits(p->r, lp, p->b.num_sample), 0);
    ck_assert_msg(!memcmp(le, lp, sizeof(float) * e->b.num_sample * V),
                  "step %d (%d tokens): the logits differ from the eager runner's", step, n);
    for (int i = 0; i < e->b.num_sample; i++)
        ck_assert_int_eq(res[i].token, rp[i].token);
    check_caches(p, before, e);
    cache_free(p, before);
    free(le);
    free(lp);
    t->steps++;
    t->masked += masked;
    t->piece_steps += runner_piece_steps(p->r) > pieces0;
    t->padded += runner_piece_steps(p->r) > pieces0 && p->b.num_tokens_padded > n;
    if (n > LARGEST_BUCKET) {
        ck_assert_int_eq(runner_piece_steps(p->r), pieces0);   /* eager */
        t->eager_big++;
    } else if (captured && (!e->b.decode_only || n > decode_sizes[1])) {
        ck_assert_msg(runner_piece_steps(p->r) == pieces0 + 1,
                      "step %d of %d tokens did not run through the pieces", step, n);
    }
}

/* Greedy generation of reqs in both runners, step by step (sim_run_greedy's loop). */
static void lockstep(struct sim *e, struct sim *p, struct sim_req *qe, struct sim_req *qp,
                     int nreq, struct tally *t)
{
    struct sample_result res[MAX_SEQS];

    for (int step = 0; !sim_all_done(qe, nreq, true); step++) {
        int k = sim_pick(e, qe, nreq, step, true);

        ck_assert_int_eq(sim_pick(p, qp, nreq, step, true), k);
        if (k == 0)
            continue;
        sim_build(e, k);
        sim_build(p, k);
        lockstep_step(e, p, step, t, res);
        for (int i = 0; i < e->b.num_sample; i++) {
            int j = e->b.sample_req[i], at = e->reqs[j]->computed + e->n_new[j];

            e->reqs[j]->tokens[at] = p->reqs[j]->tokens[at] = res[i].token;
            e->reqs[j]->generated++;
            p->reqs[j]->generated++;
        }
        for (int i = 0; i < k; i++) {
            e->reqs[i]->computed += e->n_new[i];
            p->reqs[i]->computed += p->n_new[i];
        }
    }
}

/* q continues from the prompt of `from`, whose first full blocks of that prompt it shares
 * (as the prefix cache hands them out): a new request with them computed already. */
static void share_prefix(struct sim_req *q, const struct sim_req *from, int block_size,
                         int num_groups, int len)
{
    int blocks = (from->prompt_len - 1) / block_size;

    for (int i = 0; i < blocks * block_size; i++)
        q->tokens[i] = from->tokens[i];
    q->len = len;
    q->computed = blocks * block_size;
    for (int g = 0; g < num_groups; g++) {
        for (int j = 0; j < blocks; j++)
            q->blocks[g][j] = from->blocks[g][j];
        q->num_blocks[g] = blocks;
    }
}

static void patch_graphs(struct backend *be)
{
    fake_graphs_patch(be);
}

/* The whole comparison for one model: five requests, then three that share the prompts'
 * first blocks of the first ones. */
static void pieces_match_eager(const struct fixture_spec *spec, int block_size, enum dtype kv,
                               bool calc)
{
    struct sim_options eo = { .block_size = block_size, .kv_cache_dtype = kv,
                              .calculate_kv_scales = calc, .patch = fake_graphs_poison_alloc };
    struct sim_options po = { .block_size = block_size, .graph_sizes = decode_sizes,
                              .num_graph_sizes = 2, .piece_sizes = buckets,
                              .num_piece_sizes = (int)ARRAY_LEN(buckets),
                              .patch = patch_graphs, .kv_cache_dtype = kv,
                              .calculate_kv_scales = calc };
    struct sim e, p;
    struct sim_req qe[5], qp[5], se[3], sp[3];
    struct tally t = { 0 };
    int L = spec->layers;
    uint64_t rng = spec->seed;   /* the shapes; each sim's own rng draws the tokens */

    sim_create(&e, spec, &eo);
    sim_create(&p, spec, &po);
    /* three buckets (4 8 16), each in L + 1 pieces, beside the two decode graphs' four;
     * with --calculate-kv-scales, after the first step (whose K and V give the scales) */
    ck_assert_int_eq(fake_graphs.piece_captures, calc ? 0 : 3 * (L + 1));
    ck_assert_int_eq(fake_graphs.captures, calc ? 0 : 4);
    for (int i = 0; i < 5; i++) {
        int prompt = 16 + test_randint(&rng, 32), len = prompt + 2 + test_randint(&rng, 8);

        sim_req_init(&e, &qe[i], prompt, len, false);
        sim_req_init(&p, &qp[i], prompt, len, false);
        ck_assert_mem_eq(qe[i].tokens, qp[i].tokens, sizeof qe[i].tokens);
    }
    lockstep(&e, &p, qe, qp, 5, &t);
    ck_assert_int_eq(fake_graphs.piece_captures, 3 * (L + 1));
    for (int i = 0; i < 3; i++) {
        int len = qe[i].prompt_len + 6;

        sim_req_init(&e, &se[i], qe[i].prompt_len, MIN(len, MAX_LEN), false);
        sim_req_init(&p, &sp[i], qp[i].prompt_len, MIN(len, MAX_LEN), false);
        share_prefix(&se[i], &qe[i], block_size, e.num_groups, MIN(len, MAX_LEN));
        share_prefix(&sp[i], &qp[i], block_size, p.num_groups, MIN(len, MAX_LEN));
        t.prefix_hits += se[i].computed > 0;
    }
    lockstep(&e, &p, se, sp, 3, &t);
    /* the run covered what it claims */
    ck_assert_int_gt(t.piece_steps, 3);
    ck_assert_int_gt(t.padded, 0);
    ck_assert_int_gt(t.masked, 0);
    ck_assert_int_gt(t.eager_big, 0);
    ck_assert_int_gt(t.prefix_hits, 0);
    ck_assert_int_eq(fake_graphs.piece_replays, t.piece_steps * (L + 1));
    sim_destroy(&e);
    sim_destroy(&p);
}

static struct fixture_spec llama_spec(void)
{
    return (struct fixture_spec){ .arch = ARCH_LLAMA, .vocab = 96, .hidden = 64, .ffn = 96,
                                  .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 16,
                                  .dtype = DT_BF16, .seed = 1301 };
}

START_TEST(llama_mixed_steps_through_pieces_equal_the_eager_ones_bit_for_bit)
{
    struct fixture_spec spec = llama_spec();

    pieces_match_eager(&spec, 4, DT_F32, false);
}
END_TEST

/* Gemma 3's shape: sliding layers (window 6) and a full one, two KV-cache groups */
START_TEST(gemma3_sliding_window_groups_through_pieces_equal_the_eager_ones)
{
    static const int windows[4] = { 6, 6, 6, 0 };
    struct fixture_spec spec = { .arch = ARCH_GEMMA3, .vocab = 96, .hidden = 64, .ffn = 96,
                                 .layers = 4, .heads = 4, .kv_heads = 1, .head_dim = 16,
                                 .tied = true, .dtype = DT_BF16, .windows = windows,
                                 .query_pre_attn_scalar = 16, .rope_theta = 1000000.0,
                                 .rope_local_theta = 10000.0, .seed = 1302 };

    pieces_match_eager(&spec, 4, DT_F32, false);
}
END_TEST

START_TEST(qwen3_moe_through_pieces_equals_the_eager_one)
{
    struct fixture_spec spec = { .arch = ARCH_QWEN3_MOE, .vocab = 96, .hidden = 64, .ffn = 80,
                                 .layers = 3, .heads = 4, .kv_heads = 2, .head_dim = 16,
                                 .qk_norm = true, .dtype = DT_BF16, .experts = 16, .top_k = 4,
                                 .moe_ffn = 32, .dense_layers = 1u << 1,
                                 .rope_theta = 1000000.0, .seed = 1303 };

    pieces_match_eager(&spec, 8, DT_F32, false);
}
END_TEST

/* gpt-oss: sinks, o_proj biases, its MoE, sliding and full layers alternating */
START_TEST(gpt_oss_through_pieces_equals_the_eager_one)
{
    struct fixture_spec spec = fixture_gpt_oss_spec(1304);   /* with YaRN too */

    pieces_match_eager(&spec, 4, DT_F32, false);
}
END_TEST

/* --calculate-kv-scales with an fp8 cache: the pieces (a graph keeps the scales it was
 * captured with) wait for the first step's scales, then replay them */
START_TEST(fp8_cache_with_calculated_scales_captures_the_pieces_after_the_first_step)
{
    struct fixture_spec spec = llama_spec();

    spec.seed = 1305;
    pieces_match_eager(&spec, 4, DT_F8_E4M3, true);
}
END_TEST

/* Buckets above max_num_batched_tokens are dropped (the runner captures only the others),
 * duplicates too; a bucket must be positive; a step takes the smallest bucket that holds it,
 * none beyond the largest or beyond the batch's capacity. */
START_TEST(buckets_are_sorted_capped_and_chosen_smallest_first)
{
    struct fixture_spec spec = llama_spec();
    static const int big[] = { 8, MAX_BATCH_TOKENS + 1, MAX_BATCH_TOKENS, 8 }, bad[] = { 4, 0 };
    struct sim_options po = { .block_size = 4, .piece_sizes = big, .num_piece_sizes = 4,
                              .patch = patch_graphs };
    struct model_config c = { .num_layers = 2 };
    struct forward_ctx f = { .cfg = &c };
    struct bk_batch dev = { 0 };
    struct runner_pieces pc;
    struct sim p;

    sim_create(&p, &spec, &po);
    ck_assert_int_eq(fake_graphs.piece_captures, 2 * (spec.layers + 1));
    sim_destroy(&p);

    ck_assert_int_eq(pieces_init(&pc, bad, 2, 64, &f, &dev), -EINVAL);
    pieces_fini(&pc);
    ck_assert_int_eq(pieces_init(&pc, big, 4, MAX_BATCH_TOKENS, &f, &dev), 0);
    ck_assert_int_eq(pc.num, 2);
    ck_assert_int_eq(pc.sizes[0], 8);
    ck_assert_int_eq(pc.sizes[1], MAX_BATCH_TOKENS);
    ck_assert_int_eq(pieces_bucket(&pc, 0, 1024), -1);
    ck_assert_int_eq(pieces_bucket(&pc, 1, 1024), 0);
    ck_assert_int_eq(pieces_bucket(&pc, 8, 1024), 0);
    ck_assert_int_eq(pieces_bucket(&pc, 9, 1024), 1);
    ck_assert_int_eq(pieces_bucket(&pc, 9, MAX_BATCH_TOKENS - 1), -1);   /* the batch's room */
    ck_assert_int_eq(pieces_bucket(&pc, MAX_BATCH_TOKENS + 1, 1024), -1);
    pieces_fini(&pc);
    ck_assert_int_eq(pieces_init(&pc, NULL, 0, 64, &f, &dev), 0);
    ck_assert_int_eq(pieces_bucket(&pc, 1, 64), -1);
    pieces_fini(&pc);
}
END_TEST

Suite *pieces_suite(void)
{
    Suite *s = suite_create("pieces");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, fixture_quiet, fixture_loud);
    tcase_add_test(tc, llama_mixed_steps_through_pieces_equal_the_eager_ones_bit_for_bit);
    tcase_add_test(tc, gemma3_sliding_window_groups_through_pieces_equal_the_eager_ones);
    tcase_add_test(tc, qwen3_moe_through_pieces_equals_the_eager_one);
    tcase_add_test(tc, gpt_oss_through_pieces_equals_the_eager_one);
    tcase_add_test(tc, fp8_cache_with_calculated_scales_captures_the_pieces_after_the_first_step);
    tcase_add_test(tc, buckets_are_sorted_capped_and_chosen_smallest_first);
    suite_add_tcase(s, tc);
    return s;
}
