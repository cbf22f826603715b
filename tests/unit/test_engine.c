/* test_engine.c — the engine loop on the CPU backend with a generated tiny model: many
 * concurrent requests each give exactly the tokens they give alone (greedy and seeded),
 * with prefix caching on and off and under preemption, and through the (fake) decode and
 * piecewise graphs as eagerly; abort, shutdown and the fault point
 * end requests cleanly and give every block back. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/model/gen_model.h"
#include "engine/model/model.h"
#include "tests/unit/fake_graphs.h"
#include "tests/unit/fixtures.h"

#define MAX_OUT 64

struct collect {
    pthread_mutex_t m;
    pthread_cond_t c;
    int32_t tokens[MAX_OUT];
    int n;
    int calls_after_final;       /* must stay 0 */
    bool done;
    enum finish_reason why;
    int num_output_tokens;       /* as reported by the final delivery */
};

static void collect_init(struct collect *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->m, NULL);
    pthread_cond_init(&c->c, NULL);
}

static void collect_fini(struct collect *c)
{
    pthread_mutex_destroy(&c->m);
    pthread_cond_destroy(&c->c);
}

static void collect_cb(void *user, const struct engine_output *o)
{
    struct collect *c = user;

    pthread_mutex_lock(&c->m);
    if (c->done)
        c->calls_after_final++;
    for (int i = 0; i < o->num_tokens && c->n < MAX_OUT; i++)
        c->tokens[c->n++] = o->token_ids[i];
    if (o->finished) {
        c->done = true;
        c->why = o->finish_reason;
        c->num_output_tokens = o->num_output_tokens;
        pthread_cond_signal(&c->c);
    }
    pthread_mutex_unlock(&c->m);
}

static void collect_wait(struct collect *c)
{
    pthread_mutex_lock(&c->m);
    while (!c->done)
        pthread_cond_wait(&c->c, &c->m);
    pthread_mutex_unlock(&c->m);
}

static char model_dir[FIXTURE_PATH];

static void model_setup(void)
{
    ck_assert_int_eq(fixture_tmpdir(model_dir), 0);
    ck_assert_int_eq(fixture_gen(model_dir, "tiny", 7), 0);
}

static void model_teardown(void)
{
    fixture_rmtree(model_dir);
}

/* Bytes of KV cache for `blocks` blocks of 16 tokens of the tiny preset (f32 on cpu). */
static size_t kv_bytes_for(int blocks)
{
    struct model m;
    char err[ERR_LEN];

    ck_assert_msg(model_open(&m, model_dir, err) == 0, "%s", err);
    size_t per_block = 2ull * m.cfg.num_layers * 16 * m.cfg.num_kv_heads * m.cfg.head_dim * sizeof(float);
    model_close(&m);
    return per_block * blocks;
}

/* start_engine with `tweak` changing the options last (NULL: none). */
static struct engine *start_engine_with(int kv_blocks, bool prefix_caching, int budget,
                                        void (*tweak)(struct engine_options *o))
{
    struct engine_options o;
    struct engine *e = NULL;
    char err[ERR_LEN] = "";

    engine_options_init(&o);
    o.model_dir = model_dir;
    o.backend = "cpu";
    o.num_threads = 2;
    o.kv_cache_bytes = kv_bytes_for(kv_blocks);
    o.max_num_seqs = 16;
    o.max_num_batched_tokens = budget;
    o.max_model_len = 256;
    o.enable_prefix_caching = prefix_caching;
    o.seed = 1;
    if (tweak)
        tweak(&o);
    ck_assert_msg(engine_create(&e, &o, err) == 0, "engine_create: %s", err);
    ck_assert_msg(engine_start(e, err) == 0, "engine_start: %s", err);
    return e;
}

static struct engine *start_engine(int kv_blocks, bool prefix_caching, int budget)
{
    return start_engine_with(kv_blocks, prefix_caching, budget, NULL);
}

struct job {
    int32_t prompt[96];
    int num_prompt;
    struct gen_params params;
    struct collect out;
    uint64_t id;
};

/* Prompts of 5..80 tokens (job 0: 60); every third job from 3 on starts with job 0's first
 * 40 tokens, so that the prefix cache has two full blocks to find. */
static void make_jobs(struct job *jobs, int n, unsigned seed, bool sampled)
{
    srand(seed);
    for (int j = 0; j < n; j++) {
        struct job *b = &jobs[j];
        memset(b, 0, sizeof *b);
        b->num_prompt = j == 0 ? 60 : 5 + rand() % 76;
        for (int i = 0; i < b->num_prompt; i++)
            b->prompt[i] = j % 3 == 0 && j > 0 && i < 40 ? jobs[0].prompt[i] : 3 + rand() % 200;
        gen_params_init(&b->params);
        b->params.max_tokens = 4 + rand() % 36;
        b->params.ignore_eos = true;
        b->params.temperature = sampled ? 0.9f : 0.0f;
        b->params.has_seed = sampled;
        b->params.seed = 1000 + j;
    }
}

static void submit(struct engine *e, struct job *b)
{
    struct engine_request_desc d = { .prompt = b->prompt, .num_prompt = b->num_prompt,
                                     .params = &b->params, .cb = collect_cb, .user = &b->out };
    char err[ERR_LEN] = "";

    collect_init(&b->out);
    ck_assert_msg(engine_submit(e, &d, &b->id, err) == 0, "submit: %s", err);
}

/* Each job alone on a fresh engine, then all at once on another: identical tokens. */
static void check_batch_equals_solo(int kv_blocks, bool prefix_caching, bool sampled,
                                    bool expect_preemption)
{
    enum { N = 24 };
    static struct job solo[N], batch[N];
    struct engine_stats st;
    struct engine *e;

    make_jobs(solo, N, 42, sampled);
    memcpy(batch, solo, sizeof solo);

    e = start_engine(64, prefix_caching, 64);
    for (int j = 0; j < N; j++) {
        submit(e, &solo[j]);
        collect_wait(&solo[j].out);
        ck_assert_int_eq(solo[j].out.n, solo[j].params.max_tokens);
        ck_assert_int_eq(solo[j].out.why, FINISH_LENGTH);
    }
    engine_destroy(e);

    e = start_engine(kv_blocks, prefix_caching, 64);
    for (int j = 0; j < N; j++)
        submit(e, &batch[j]);
    for (int j = 0; j < N; j++) {
        collect_wait(&batch[j].out);
        ck_assert_int_eq(batch[j].out.why, FINISH_LENGTH);
        ck_assert_int_eq(batch[j].out.n, solo[j].out.n);
        ck_assert_int_eq(batch[j].out.num_output_tokens, solo[j].out.n);
        for (int i = 0; i < solo[j].out.n; i++)
            ck_assert_msg(batch[j].out.tokens[i] == solo[j].out.tokens[i],
                          "job %d token %d: %d in the batch, %d alone", j, i,
                          batch[j].out.tokens[i], solo[j].out.tokens[i]);
    }
    engine_get_stats(e, &st);
    if (expect_preemption)
        ck_assert_msg(st.num_preemptions > 0, "the tiny cache should have forced preemption");
    if (prefix_caching)
        ck_assert_msg(st.prefix_hits > 0, "shared prefixes should hit the prefix cache");
    else
        ck_assert_int_eq(st.prefix_hits, 0);
    ck_assert_int_eq(st.num_running, 0);
    ck_assert_int_eq(st.num_waiting, 0);
    /* the engine thread's own share of the decode steps is counted (osprey bench prints it) */
    ck_assert_uint_gt(st.num_decode_steps, 0);
    ck_assert_msg(st.decode_host_s > 0 && st.decode_host_s < 60, "decode host %g s", st.decode_host_s);
    engine_destroy(e);
    for (int j = 0; j < N; j++) {
        ck_assert_int_eq(batch[j].out.calls_after_final, 0);
        collect_fini(&solo[j].out);
        collect_fini(&batch[j].out);
    }
}

START_TEST(concurrent_greedy_requests_match_solo_runs_with_prefix_cache)
{
    check_batch_equals_solo(256, true, false, false);
}
END_TEST

START_TEST(concurrent_greedy_requests_match_solo_runs_without_prefix_cache)
{
    check_batch_equals_solo(256, false, false, false);
}
END_TEST

START_TEST(concurrent_greedy_requests_match_solo_runs_under_preemption)
{
    check_batch_equals_solo(12, true, false, true);
}
END_TEST

START_TEST(seeded_sampling_gives_the_same_tokens_in_a_batch_and_under_preemption)
{
    check_batch_equals_solo(12, false, true, true);
}
END_TEST

static void patch_graphs(struct backend *be)
{
    fake_graphs_patch(be);
}

/* the fake graph backend (fake_graphs.c): decode graphs of 1 to 8, piecewise graphs of
 * 8 to 64 tokens */
static void with_fake_graphs(struct engine_options *o)
{
    static const int decode[] = { 1, 2, 4, 8 }, pieces[] = { 8, 16, 32, 64 };

    o->graph_sizes = decode;
    o->num_graph_sizes = 4;
    o->piece_sizes = pieces;
    o->num_piece_sizes = 4;
    o->patch_backend = patch_graphs;
}

/* The scheduler's own batches (chunked prefills, decodes, prefix-cache hits) through the
 * decode and piecewise graphs give the eager engine's greedy tokens. */
START_TEST(graphs_and_pieces_give_the_eager_engine_s_greedy_tokens)
{
    enum { N = 24 };
    static struct job eager[N], graphs[N];
    struct engine_stats st;
    struct engine *e;

    make_jobs(eager, N, 43, false);
    memcpy(graphs, eager, sizeof eager);
    e = start_engine(256, true, 64);
    for (int j = 0; j < N; j++)
        submit(e, &eager[j]);
    for (int j = 0; j < N; j++)
        collect_wait(&eager[j].out);
    engine_destroy(e);

    e = start_engine_with(256, true, 64, with_fake_graphs);
    ck_assert_int_eq(fake_graphs.piece_captures, 4 * (2 + 1));   /* the tiny preset: 2 layers */
    for (int j = 0; j < N; j++)
        submit(e, &graphs[j]);
    for (int j = 0; j < N; j++) {
        collect_wait(&graphs[j].out);
        ck_assert_int_eq(graphs[j].out.n, eager[j].out.n);
        ck_assert_mem_eq(graphs[j].out.tokens, eager[j].out.tokens,
                         sizeof(int32_t) * eager[j].out.n);
    }
    engine_get_stats(e, &st);
    ck_assert_msg(st.prefix_hits > 0, "shared prefixes should hit the prefix cache");
    ck_assert_int_gt(fake_graphs.piece_replays, 0);
    ck_assert_int_gt(fake_graphs.replays, 0);
    engine_destroy(e);
    for (int j = 0; j < N; j++) {
        collect_fini(&eager[j].out);
        collect_fini(&graphs[j].out);
    }
}
END_TEST

START_TEST(abort_ends_requests_and_frees_every_block)
{
    enum { N = 8 };
    static struct job jobs[N];
    struct engine_stats st;
    struct engine *e = start_engine(64, true, 64);

    make_jobs(jobs, N, 7, false);
    for (int j = 0; j < N; j++) {
        jobs[j].params.max_tokens = 150;   /* long enough to still run when aborted */
        submit(e, &jobs[j]);
    }
    for (int j = 0; j < N; j += 2)
        engine_abort(e, jobs[j].id);
    engine_abort(e, 999999);               /* unknown ids are ignored */
    for (int j = 0; j < N; j++) {
        collect_wait(&jobs[j].out);
        if (j % 2 == 0)
            ck_assert_int_eq(jobs[j].out.why, FINISH_ABORT);
        else
            ck_assert_int_eq(jobs[j].out.why, FINISH_LENGTH);
    }
    engine_get_stats(e, &st);
    ck_assert_int_eq(st.num_running, 0);
    ck_assert_int_eq(st.num_free_blocks, st.num_blocks);
    engine_destroy(e);
    for (int j = 0; j < N; j++)
        collect_fini(&jobs[j].out);
}
END_TEST

START_TEST(admission_refuses_what_can_never_fit)
{
    struct engine *e = start_engine(64, true, 64);
    struct job b;
    char err[ERR_LEN] = "";
    uint64_t id;

    make_jobs(&b, 1, 3, false);
    b.params.max_tokens = 250;   /* prompt + 250 > max_model_len 256 */
    collect_init(&b.out);
    struct engine_request_desc d = { .prompt = b.prompt, .num_prompt = b.num_prompt,
                                     .params = &b.params, .cb = collect_cb, .user = &b.out };
    ck_assert_int_eq(engine_submit(e, &d, &id, err), -E2BIG);
    ck_assert_msg(strstr(err, "maximum context length is 256"), "message: %s", err);
    b.prompt[0] = 1 << 20;       /* outside the vocabulary */
    b.params.max_tokens = 4;
    ck_assert_int_eq(engine_submit(e, &d, &id, err), -EINVAL);
    ck_assert_msg(strstr(err, "outside the vocabulary"), "message: %s", err);
    engine_destroy(e);
    collect_fini(&b.out);
}
END_TEST

START_TEST(shutdown_finishes_within_grace_then_refuses)
{
    enum { N = 4 };
    static struct job jobs[N];
    struct engine *e = start_engine(64, true, 64);
    char err[ERR_LEN];
    uint64_t id;

    make_jobs(jobs, N, 9, false);
    for (int j = 0; j < N; j++)
        submit(e, &jobs[j]);
    engine_shutdown(e, 30.0);   /* short jobs: all finish well inside the grace period */
    for (int j = 0; j < N; j++) {
        ck_assert(jobs[j].out.done);
        ck_assert_int_eq(jobs[j].out.why, FINISH_LENGTH);
    }
    struct engine_request_desc d = { .prompt = jobs[0].prompt, .num_prompt = jobs[0].num_prompt,
                                     .params = &jobs[0].params, .cb = collect_cb,
                                     .user = &jobs[0].out };
    ck_assert_int_eq(engine_submit(e, &d, &id, err), -ESHUTDOWN);
    engine_destroy(e);
    for (int j = 0; j < N; j++)
        collect_fini(&jobs[j].out);
}
END_TEST

START_TEST(shutdown_past_grace_aborts_what_is_left)
{
    struct engine *e = start_engine(64, true, 64);
    struct job b;

    make_jobs(&b, 1, 11, false);
    b.params.max_tokens = 150;
    submit(e, &b);
    engine_shutdown(e, 0.0);
    ck_assert(b.out.done);
    ck_assert_int_eq(b.out.why, FINISH_ABORT);
    engine_destroy(e);
    collect_fini(&b.out);
}
END_TEST

START_TEST(a_failed_step_fails_only_its_requests)
{
    static struct job first, later;
    struct engine_stats st;
    struct engine *e;

    setenv("OSPREY_FAULT_STEP", "2", 1);   /* the test-only fault point: step 2 fails */
    e = start_engine(64, true, 64);
    unsetenv("OSPREY_FAULT_STEP");
    make_jobs(&first, 1, 5, false);
    first.params.max_tokens = 8;
    submit(e, &first);
    collect_wait(&first.out);
    ck_assert_int_eq(first.out.why, FINISH_ERROR);
    make_jobs(&later, 1, 6, false);
    submit(e, &later);
    collect_wait(&later.out);
    ck_assert_int_eq(later.out.why, FINISH_LENGTH);
    engine_get_stats(e, &st);
    ck_assert(st.healthy);
    ck_assert_int_eq(st.num_free_blocks, st.num_blocks);
    engine_destroy(e);
    collect_fini(&first.out);
    collect_fini(&later.out);
}
END_TEST

START_TEST(a_device_error_kills_the_engine_and_refuses_new_work)
{
    static struct job b;
    struct engine_stats st;
    struct engine *e;
    char err[ERR_LEN];
    uint64_t id;

    setenv("OSPREY_FAULT_STEP", "1", 1);
    setenv("OSPREY_FAULT_STICKY", "1", 1);
    e = start_engine(64, true, 64);
    unsetenv("OSPREY_FAULT_STEP");
    unsetenv("OSPREY_FAULT_STICKY");
    make_jobs(&b, 1, 5, false);
    submit(e, &b);
    collect_wait(&b.out);
    ck_assert_int_eq(b.out.why, FINISH_ERROR);
    engine_get_stats(e, &st);
    ck_assert(!st.healthy);
    struct engine_request_desc d = { .prompt = b.prompt, .num_prompt = b.num_prompt,
                                     .params = &b.params, .cb = collect_cb, .user = &b.out };
    ck_assert_int_eq(engine_submit(e, &d, &id, err), -EIO);
    engine_destroy(e);
    collect_fini(&b.out);
}
END_TEST

Suite *engine_suite(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("engine");

    tcase_add_checked_fixture(tc, model_setup, model_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, concurrent_greedy_requests_match_solo_runs_with_prefix_cache);
    tcase_add_test(tc, concurrent_greedy_requests_match_solo_runs_without_prefix_cache);
    tcase_add_test(tc, concurrent_greedy_requests_match_solo_runs_under_preemption);
    tcase_add_test(tc, seeded_sampling_gives_the_same_tokens_in_a_batch_and_under_preemption);
    tcase_add_test(tc, graphs_and_pieces_give_the_eager_engine_s_greedy_tokens);
    tcase_add_test(tc, abort_ends_requests_and_frees_every_block);
    tcase_add_test(tc, admission_refuses_what_can_never_fit);
    tcase_add_test(tc, shutdown_finishes_within_grace_then_refuses);
    tcase_add_test(tc, shutdown_past_grace_aborts_what_is_left);
    tcase_add_test(tc, a_failed_step_fails_only_its_requests);
    tcase_add_test(tc, a_device_error_kills_the_engine_and_refuses_new_work);
    suite_add_tcase(s, tc);
    return s;
}
