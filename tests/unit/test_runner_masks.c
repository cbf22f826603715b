/* test_runner_masks.c — a step whose rows have masks, split by the runner into launch
 * (stage, the forward) and finish (the masks handed to the sampler, sample, fetch), with
 * the masks written into the runner's own mask rows between the two, as the engine does
 * (engine/engine.c run_step). Three twins of one random model run the same steps of
 * greedy and seeded rows, masked and free, over the CPU backend:
 *   ref     runner_logits, then the CPU reference sampler with the masks (the step as it
 *           was before the split: masks known before the forward);
 *   given   runner_execute with masks of the test's own memory, final at launch;
 *   split   runner_launch, the masks written into runner_mask_rows() (poisoned before),
 *           runner_finish; with the fake graph backend (fake_graphs.c), so that decode
 *           steps replay the graph of the forward alone.
 * Every result must be bit-identical to ref, and every masked row's token allowed. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/runner.h"
#include "engine/sampler.h"
#include "tests/unit/fake_graphs.h"
#include "tests/unit/fixtures.h"   /* fixture_quiet, fixture_loud */
#include "tests/unit/forward_sim.h"

enum { NREQ = 5, VOCAB = 96, WORDS = (VOCAB + 31) / 32 };

static struct fixture_spec spec_of(uint64_t seed)
{
    return (struct fixture_spec){ .arch = ARCH_LLAMA, .vocab = VOCAB, .hidden = 64, .ffn = 96,
                                  .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 16,
                                  .dtype = DT_BF16, .seed = seed };
}

static void patch_graphs(struct backend *be)
{
    fake_graphs_patch(be);
}

/* The step's rows: odd rows seeded at temperature 0.8, even rows greedy; a mask on rows
 * where (step + i) % 3 != 0, none on any row of every fourth step (a whole-step launch).
 * A mask allows about a quarter of the ids, and always at least one. */
static int make_rows(struct sample_row *rows, uint32_t masks[][WORDS], int n, int step,
                     uint64_t *rng)
{
    int masked = 0;

    for (int i = 0; i < n; i++) {
        rows[i] = (struct sample_row){ .temperature = i % 2 ? 0.8f : 0.0f, .top_p = 1.0f,
                                       .repetition_penalty = 1.0f, .num_logprobs = 2,
                                       .seed = 1000 + (uint64_t)i, .counter = (uint32_t)step };
        memset(masks[i], 0, sizeof masks[i]);
        if (step % 4 == 3 || (step + i) % 3 == 0)
            continue;
        for (int t = 0; t < VOCAB; t++)
            if (test_rand(rng) < 0.25)
                masks[i][t >> 5] |= 1u << (t & 31);
        masks[i][0] |= 1u << (step % 32);
        rows[i].allowed = masks[i];
        masked++;
    }
    return masked;
}

/* The old step: logits, then the reference sampler with the masks. */
static void ref_step(struct sim *s, const struct sample_row *rows, struct sample_result *res)
{
    int n = s->b.num_sample;
    float *logits = malloc(sizeof(float) * MAX_SEQS * VOCAB);
    float scratch[2 * VOCAB];

    ck_assert_ptr_nonnull(logits);
    ck_assert_int_eq(runner_logits(s->r, &s->b, logits), 0);
    for (int i = 0; i < n; i++)
        sampler_sample_row(logits + (size_t)i * VOCAB, VOCAB, &rows[i], &res[i], scratch);
    free(logits);
}

/* launch; the masks written into the runner's rows (poisoned to allow everything until
 * then); finish. */
static void split_step(struct sim *s, struct sample_row *rows, uint32_t masks[][WORDS],
                       struct sample_result *res)
{
    uint32_t *in_place = runner_mask_rows(s->r);
    int n = s->b.num_sample;

    ck_assert_ptr_nonnull(in_place);
    for (int i = 0; i < n; i++)
        if (rows[i].allowed) {
            rows[i].allowed = in_place + (size_t)i * WORDS;
            memset(in_place + (size_t)i * WORDS, 0xff, WORDS * sizeof(uint32_t));
        }
    ck_assert_int_eq(runner_launch(s->r, &s->b, rows), 0);
    for (int i = 0; i < n; i++)
        if (rows[i].allowed)
            memcpy(in_place + (size_t)i * WORDS, masks[i], WORDS * sizeof(uint32_t));
    ck_assert_int_eq(runner_finish(s->r, res), 0);
}

static void assert_same(const struct sample_result *a, const struct sample_result *b, int n,
                        int step, const char *what)
{
    for (int i = 0; i < n; i++) {
        ck_assert_msg(a[i].token == b[i].token && a[i].logprob == b[i].logprob &&
                      a[i].num_top == b[i].num_top,
                      "step %d row %d, %s: token %d (logprob %.9g) where the reference has %d "
                      "(%.9g)", step, i, what, b[i].token, b[i].logprob, a[i].token, a[i].logprob);
        for (int k = 0; k < a[i].num_top; k++)
            ck_assert(a[i].top_ids[k] == b[i].top_ids[k] &&
                      a[i].top_logprobs[k] == b[i].top_logprobs[k]);
    }
}

/* Runs `twins` sims in lockstep over greedy requests; twin 0 is the reference, twin 1
 * runs runner_execute with the test's masks, twin 2 (if any) launch/finish in place. When
 * tp, twin 0 is given-masks too (a tensor-parallel runner's logits are its own). Returns
 * the masked rows run. */
static int run_twins(struct sim *twins, int num_twins, bool tp)
{
    struct sim_req reqs[3][NREQ];
    struct sample_row rows[MAX_SEQS];
    uint32_t masks[MAX_SEQS][WORDS];
    struct sample_result res[3][MAX_SEQS];
    uint64_t rng = 77;
    int masked_rows = 0;

    for (int t = 0; t < num_twins; t++)
        for (int i = 0; i < NREQ; i++)
            sim_req_init(&twins[t], &reqs[t][i], 3 + 2 * i, 3 + 2 * i + 8, false);
    for (int step = 0; !sim_all_done(reqs[0], NREQ, true); step++) {
        int k = sim_pick(&twins[0], reqs[0], NREQ, step, true), n;

        for (int t = 1; t < num_twins; t++)
            ck_assert_int_eq(sim_pick(&twins[t], reqs[t], NREQ, step, true), k);
        if (k == 0)
            continue;
        for (int t = 0; t < num_twins; t++)
            sim_build(&twins[t], k);
        n = twins[0].b.num_sample;
        masked_rows += make_rows(rows, masks, n, step, &rng);
        if (tp)
            ck_assert_int_eq(runner_execute(twins[0].r, &twins[0].b, rows, res[0]), 0);
        else
            ref_step(&twins[0], rows, res[0]);
        ck_assert_int_eq(runner_execute(twins[1].r, &twins[1].b, rows, res[1]), 0);
        assert_same(res[0], res[1], n, step, "masks given at launch");
        if (num_twins > 2) {
            struct sim *g = &twins[2];

            g->padded_replays += runner_padded_size(g->r, &g->b) > g->b.num_tokens;
            split_step(&twins[2], rows, masks, res[2]);
            assert_same(res[0], res[2], n, step, "masks written between launch and finish");
        }
        for (int i = 0; i < n; i++) {
            int tok = res[0][i].token;

            if (rows[i].allowed)
                ck_assert_msg(masks[i][tok >> 5] >> (tok & 31) & 1,
                              "step %d row %d: token %d is outside its mask", step, i, tok);
            for (int t = 0; t < num_twins; t++) {
                struct sim *s = &twins[t];
                struct sim_req *q = s->reqs[s->b.sample_req[i]];

                q->tokens[q->computed + s->n_new[s->b.sample_req[i]]] = tok;
                q->generated++;
            }
        }
        for (int t = 0; t < num_twins; t++)
            for (int i = 0; i < k; i++)
                twins[t].reqs[i]->computed += twins[t].n_new[i];
    }
    return masked_rows;
}

START_TEST(masks_written_between_launch_and_finish_give_the_tokens_of_the_old_step)
{
    struct fixture_spec spec = spec_of(211);
    int sizes[] = { 1, 2, 4, 8 };
    struct sim_options eager = { .block_size = 4 };
    struct sim_options graphs = { .block_size = 4, .graph_sizes = sizes, .num_graph_sizes = 4,
                                  .patch = patch_graphs };
    struct sim twins[3];

    sim_create(&twins[0], &spec, &eager);
    sim_create(&twins[1], &spec, &eager);
    sim_create(&twins[2], &spec, &graphs);
    ck_assert_int_gt(run_twins(twins, 3, false), 10);
    /* the split decode steps replayed the forward alone, the others the whole step */
    ck_assert_int_gt(fake_graphs.forward_replays, 0);
    ck_assert_int_gt(fake_graphs.replays, fake_graphs.forward_replays);
    ck_assert_int_gt(twins[2].padded_replays, 0);   /* padding rows sampled unmasked */
    for (int t = 0; t < 3; t++)
        sim_destroy(&twins[t]);
}
END_TEST

/* An eager sim whose built step is the whole prompt (prompt_len tokens) of one request. */
static void one_prompt(struct sim *s, struct sim_req *q, uint64_t seed, int prompt_len)
{
    struct fixture_spec spec = spec_of(seed);
    struct sim_options so = { .block_size = 4 };

    sim_create(s, &spec, &so);
    sim_req_init(s, q, prompt_len, prompt_len + 1, false);
    s->reqs[0] = q;
    s->n_new[0] = prompt_len;
    sim_build(s, 1);
}

START_TEST(masks_written_after_launch_reach_the_sampler)
{
    struct sim s;
    struct sim_req q;
    struct sample_row rows[2];
    struct sample_result res[2];
    uint32_t *in_place;
    int want[2] = { 5, 70 };

    one_prompt(&s, &q, 223, 6);
    ck_assert_int_eq(s.b.num_sample, 1);
    /* row 0, greedy, may only draw want[0]; written after the launch over a row that
     * allowed only want[1]: a sampler reading the row before finish would draw want[1] */
    in_place = runner_mask_rows(s.r);
    memset(in_place, 0, WORDS * sizeof(uint32_t));
    in_place[want[1] >> 5] = 1u << (want[1] & 31);
    rows[0] = (struct sample_row){ .top_p = 1.0f, .repetition_penalty = 1.0f,
                                   .num_logprobs = -1, .allowed = in_place };
    ck_assert_int_eq(runner_launch(s.r, &s.b, rows), 0);
    memset(in_place, 0, WORDS * sizeof(uint32_t));
    in_place[want[0] >> 5] = 1u << (want[0] & 31);
    ck_assert_int_eq(runner_finish(s.r, res), 0);
    ck_assert_int_eq(res[0].token, want[0]);
    sim_destroy(&s);
}
END_TEST

START_TEST(launch_and_finish_refuse_to_be_called_out_of_order)
{
    struct sim s;
    struct sim_req q;
    struct sample_result res[1];

    one_prompt(&s, &q, 227, 5);
    ck_assert_int_eq(runner_finish(s.r, res), -EINVAL);
    ck_assert_int_eq(runner_launch(s.r, &s.b, NULL), 0);
    ck_assert_int_eq(runner_launch(s.r, &s.b, NULL), -EINVAL);
    ck_assert_int_eq(runner_finish(s.r, res), 0);
    ck_assert_int_eq(runner_finish(s.r, res), -EINVAL);
    sim_destroy(&s);
}
END_TEST

/* Tensor parallelism keeps the simple path (finish runs the whole step): masks written
 * between launch and finish still reach rank 0's sampler. */
START_TEST(tensor_parallel_runners_take_the_masks_written_before_finish)
{
    struct fixture_spec spec = spec_of(229);
    struct sim_options so = { .block_size = 4, .tensor_parallel_size = 2 };
    struct sim twins[3];

    for (int t = 0; t < 3; t++)
        sim_create(&twins[t], &spec, &so);
    ck_assert_int_gt(run_twins(twins, 3, true), 10);
    for (int t = 0; t < 3; t++)
        sim_destroy(&twins[t]);
}
END_TEST

Suite *runner_masks_suite(void)
{
    Suite *s = suite_create("runner_masks");
    TCase *tc = tcase_create("runner_masks");

    tcase_add_unchecked_fixture(tc, fixture_quiet, fixture_loud);
    tcase_add_test(tc, masks_written_between_launch_and_finish_give_the_tokens_of_the_old_step);
    tcase_add_test(tc, masks_written_after_launch_reach_the_sampler);
    tcase_add_test(tc, launch_and_finish_refuse_to_be_called_out_of_order);
    tcase_add_test(tc, tensor_parallel_runners_take_the_masks_written_before_finish);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}
