/* test_sched_random.c — a randomized driver for the scheduler with fixed seeds: random
 * arrivals (many sharing prompt prefixes), max_tokens, min_tokens, ignore_eos, stop ids,
 * aborts and stop strings at random times, fake sampled tokens with occasional EOS, and a
 * pool small enough to force preemption; for one KV group, for full + window groups, and
 * with priorities. Every step goes through sched_check.c's checker (budgets, layout, slots,
 * ownership and ref counts, a shadow cache proving each request reads only its own keys).
 * The test keeps its own copy of every request's tokens and its own finish rules. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"        /* MIN */
#include "scheduler/scheduler.h"
#include "tests/unit/sched_check.h"

#define EOS 2
#define STOP_ID 1
#define NUM_BASES 4

struct rng {
    uint64_t s;
};

static uint32_t rng_below(struct rng *g, uint32_t n)
{
    g->s = g->s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)((g->s >> 33) % n);
}

static bool rng_per_mille(struct rng *g, uint32_t p)
{
    return rng_below(g, 1000) < p;
}

/* The test's record of one request. */
struct track {
    struct sched_request *r;
    int32_t *want;            /* prompt, then every token delivered to it */
    int num_want;
    bool has_stop_id;
    bool done;
    bool aborted;
};

struct run_params {
    int block_size, num_blocks, max_num_seqs, budget, max_model_len;
    int num_groups, window[KV_MAX_GROUPS];
    int group_blocks[KV_MAX_GROUPS];   /* group g's own pool; 0 = num_blocks */
    bool prefix_caching, priorities;
    int num_requests;
    int arrival_per_mille;
};

struct run {
    const struct run_params *p;
    struct sched_config cfg;
    struct scheduler *s;
    struct sched_checker ck;
    struct rng g;
    struct track *t;           /* [num_requests] */
    int num_added;
    struct track **live;       /* [num_requests] held by the scheduler */
    int num_live;
    int32_t *bases[NUM_BASES]; /* shared prompt prefixes */
    int num_by_reason[FINISH_ERROR + 1];
    int num_preempted_finished;   /* finished normally after at least one preemption */
};

static const int32_t eos_ids[1] = { EOS };
static const int32_t stop_ids[1] = { STOP_ID };

/* The finish rules, restated: stop tokens once min_tokens outputs exist, then the limits. */
static enum finish_reason expected_finish(const struct run *x, const struct track *t)
{
    const struct sched_request *r = t->r;
    int32_t tok = t->want[t->num_want - 1];
    int out = t->num_want - r->num_prompt_tokens;

    if (out >= r->min_tokens &&
        ((!r->ignore_eos && tok == EOS) || (t->has_stop_id && tok == STOP_ID)))
        return FINISH_STOP;
    if (out >= r->max_tokens || t->num_want >= x->cfg.max_model_len)
        return FINISH_LENGTH;
    return FINISH_NONE;
}

static void live_remove(struct run *x, struct track *t)
{
    for (int i = 0; i < x->num_live; i++) {
        if (x->live[i] == t) {
            x->live[i] = x->live[--x->num_live];
            return;
        }
    }
    ck_abort_msg("request %llu not live", (unsigned long long)t->r->id);
}

/* The engine's side of a finished request: check every token is there, then free it. */
static void retire(struct run *x, struct track *t)
{
    CHECK_EQ(t->r->status, SCHED_FINISHED);
    CHECK_EQ(t->r->num_tokens, t->num_want);
    CHECK(!memcmp(t->r->token_ids, t->want, t->num_want * sizeof *t->want),
          "request %llu lost or changed a token", (unsigned long long)t->r->id);
    x->num_by_reason[t->r->finish_reason]++;
    x->num_preempted_finished += t->r->num_preemptions > 0 && t->r->finish_reason != FINISH_ABORT;
    t->done = true;
    live_remove(x, t);
    treq_free(t->r);
    t->r = NULL;
}

static void add_request(struct run *x)
{
    const struct run_params *p = x->p;
    struct track *t = &x->t[x->num_added];
    int mml = p->max_model_len, len = 1 + rng_below(&x->g, mml - 1);
    int max_tokens = 1 + rng_below(&x->g, MIN(40, mml - len));
    struct sched_request *r;
    int32_t *prompt = malloc(len * sizeof *prompt);

    ck_assert_ptr_nonnull(prompt);
    treq_tokens(prompt, len, (uint32_t)x->g.s, 500);
    if (rng_per_mille(&x->g, 600)) {   /* a shared prefix of random length */
        int share = rng_below(&x->g, len + 1);

        memcpy(prompt, x->bases[rng_below(&x->g, NUM_BASES)], share * sizeof *prompt);
    }
    r = treq_new(x->num_added, prompt, len, max_tokens);
    free(prompt);
    if (rng_per_mille(&x->g, 150))
        r->min_tokens = rng_below(&x->g, max_tokens + 1);
    r->ignore_eos = rng_per_mille(&x->g, 100);
    t->has_stop_id = rng_per_mille(&x->g, 300);
    if (t->has_stop_id) {
        r->stop_token_ids = stop_ids;
        r->num_stop_token_ids = 1;
    }
    if (p->priorities)
        r->priority = rng_below(&x->g, 3);
    t->r = r;
    t->want = malloc((len + max_tokens) * sizeof *t->want);
    ck_assert_ptr_nonnull(t->want);
    memcpy(t->want, r->token_ids, len * sizeof *t->want);
    t->num_want = len;
    CHECK_EQ(sched_add(x->s, r, NULL), 0);
    x->live[x->num_live++] = t;
    x->num_added++;
}

/* Now and then a request that can never fit: refused, nothing else disturbed. */
static void add_oversized(struct run *x)
{
    int32_t p[8] = { 5, 6, 7, 8, 9, 10, 11, 12 };
    struct sched_request *r = treq_new(999999, p, 8, x->cfg.max_model_len - 7);

    CHECK_EQ(sched_add(x->s, r, NULL), -E2BIG);
    treq_free(r);
}

/* Between steps: abort any live request, or end a running one as a stop string would. */
static void disturb(struct run *x)
{
    struct track *t;

    if (x->num_live == 0)
        return;
    t = x->live[rng_below(&x->g, x->num_live)];
    if (rng_per_mille(&x->g, 700)) {
        sched_abort(x->s, t->r);
        CHECK_EQ(t->r->finish_reason, FINISH_ABORT);
        t->aborted = true;
        retire(x, t);
    } else if (t->r->status == SCHED_RUNNING && t->num_want > t->r->num_prompt_tokens) {
        sched_finish(x->s, t->r, FINISH_STOP);
        CHECK_EQ(t->r->finish_reason, FINISH_STOP);
        retire(x, t);
    }
}

/* The running request first in (priority, arrival) order, or NULL: it may never be preempted. */
static struct sched_request *first_running(const struct run *x)
{
    struct sched_request *first = NULL;

    for (int i = 0; i < x->num_live; i++) {
        struct sched_request *r = x->live[i]->r;

        if (r->status == SCHED_RUNNING && (!first || r->priority < first->priority ||
                                           (r->priority == first->priority && r->id < first->id)))
            first = r;
    }
    return first;
}

/* One engine step; false when the scheduler had nothing to run. */
static bool step(struct run *x)
{
    struct sched_request *held[512], **fin, *first = first_running(x);
    int first_preemptions = first ? first->num_preemptions : 0;
    struct step_batch *b = sched_schedule(x->s);
    int32_t sampled[512];
    int nf, num_stopping = 0;

    if (first)
        CHECK(first->num_preemptions == first_preemptions && first->status == SCHED_RUNNING,
              "req %llu, first in order, was preempted", (unsigned long long)first->id);
    if (!b) {
        CHECK_EQ(x->num_live, 0);
        return false;
    }
    for (int i = 0; i < x->num_live; i++)
        held[i] = x->live[i]->r;
    checker_step(&x->ck, b, held, x->num_live);
    for (int k = 0; k < b->num_sample; k++) {
        struct track *t = &x->t[b->reqs[b->sample_req[k]]->id];
        uint32_t roll = rng_below(&x->g, 1000);

        sampled[k] = roll < 40 ? EOS : roll < 60 ? STOP_ID : 3 + (int32_t)rng_below(&x->g, 500);
        t->want[t->num_want++] = sampled[k];
        num_stopping += expected_finish(x, t) != FINISH_NONE;
    }
    CHECK_EQ(sched_update(x->s, b, sampled, &fin, &nf), 0);
    CHECK_EQ(nf, num_stopping);
    for (int k = 0; k < nf; k++) {
        struct track *t = &x->t[fin[k]->id];

        CHECK_EQ(fin[k]->finish_reason, expected_finish(x, t));
        retire(x, t);
    }
    /* Nobody lost a token, preempted or not. */
    for (int i = 0; i < x->num_live; i++) {
        struct track *t = x->live[i];

        CHECK_EQ(t->r->num_tokens, t->num_want);
        CHECK_EQ(t->r->token_ids[t->num_want - 1], t->want[t->num_want - 1]);
    }
    return true;
}

static void run_random(const struct run_params *p, uint32_t seed)
{
    struct run x = { .p = p, .g = { .s = seed * 0x2545f4914f6cdd1dull + 7 } };
    struct sched_stats st;
    int steps = 0;

    x.cfg = (struct sched_config){ .block_size = p->block_size, .num_blocks = p->num_blocks,
                                   .max_num_seqs = p->max_num_seqs,
                                   .max_num_batched_tokens = p->budget,
                                   .max_model_len = p->max_model_len,
                                   .enable_prefix_caching = p->prefix_caching,
                                   .num_kv_groups = p->num_groups,
                                   .eos_ids = eos_ids, .num_eos_ids = 1 };
    memcpy(x.cfg.group_window, p->window, sizeof x.cfg.group_window);
    memcpy(x.cfg.group_num_blocks, p->group_blocks, sizeof x.cfg.group_num_blocks);
    ck_assert_int_eq(sched_create(&x.s, &x.cfg, NULL), 0);
    checker_init(&x.ck, x.s, &x.cfg);
    ck_assert_ptr_nonnull(x.t = calloc(p->num_requests, sizeof *x.t));
    ck_assert_ptr_nonnull(x.live = calloc(p->num_requests, sizeof *x.live));
    for (int i = 0; i < NUM_BASES; i++) {
        ck_assert_ptr_nonnull(x.bases[i] = malloc(p->max_model_len * sizeof(int32_t)));
        treq_tokens(x.bases[i], p->max_model_len, seed * 31 + i, 500);
    }

    while (x.num_added < p->num_requests || x.num_live > 0) {
        while (x.num_added < p->num_requests && rng_per_mille(&x.g, p->arrival_per_mille))
            add_request(&x);
        if (rng_per_mille(&x.g, 5))
            add_oversized(&x);
        if (rng_per_mille(&x.g, 30))
            disturb(&x);
        step(&x);
        ck_assert_int_lt(++steps, 100000);
    }

    checker_pool_full(&x.ck);
    sched_get_stats(x.s, &st);
    ck_assert_int_eq(st.num_running + st.num_waiting, 0);
    ck_assert_int_eq(st.num_kv_groups, p->num_groups);
    for (int g = 0; g < p->num_groups; g++) {
        int nb = p->group_blocks[g] ? p->group_blocks[g] : p->num_blocks;

        ck_assert_int_eq(st.group_blocks[g], nb);
        ck_assert_int_eq(st.group_free_blocks[g], nb);
    }
    ck_assert_msg(st.num_preemptions > 0, "the pool never ran short: no preemption tested");
    if (p->prefix_caching)
        ck_assert_msg(st.prefix_hits > 0, "no prefix-cache hit");
    for (int w = FINISH_STOP; w <= FINISH_ABORT; w++)
        ck_assert_msg(x.num_by_reason[w] > 0, "no request finished with reason %d", w);
    ck_assert_msg(x.num_preempted_finished > 0, "no preempted request finished");
    for (int i = 0; i < p->num_requests; i++) {
        ck_assert(x.t[i].done);
        free(x.t[i].want);
    }
    for (int i = 0; i < NUM_BASES; i++)
        free(x.bases[i]);
    free(x.t);
    free(x.live);
    checker_fini(&x.ck);
    sched_destroy(x.s);
}

/* One full-attention group, blocks of 4, room for about three long requests. */
static const struct run_params one_group = {
    .block_size = 4, .num_blocks = 40, .max_num_seqs = 8, .budget = 24, .max_model_len = 96,
    .num_groups = 1, .prefix_caching = true, .num_requests = 1000, .arrival_per_mille = 250,
};

/* Full attention + a window of 10 (not a multiple of the block); the window group's own
 * pool is the smaller (a request holds at most 10 of its blocks), short enough to preempt. */
static const struct run_params full_and_window = {
    .block_size = 4, .num_blocks = 56, .max_num_seqs = 8, .budget = 24, .max_model_len = 96,
    .num_groups = 2, .window = { 0, 10 }, .group_blocks = { 0, 24 }, .prefix_caching = true, .num_requests = 1000,
    .arrival_per_mille = 250,
};

/* Three groups (windows 7 and 16 around a full one), each its own pool size, priorities, no
 * prefix caching, larger blocks and budget. */
static const struct run_params priorities = {
    .block_size = 16, .num_blocks = 24, .max_num_seqs = 16, .budget = 64, .max_model_len = 128,
    .num_groups = 3, .window = { 7, 0, 16 }, .group_blocks = { 12, 24, 16 }, .priorities = true, .num_requests = 800,
    .arrival_per_mille = 300,
};

START_TEST(random_one_group_keeps_every_invariant)
{
    run_random(&one_group, 1 + _i);
}
END_TEST

START_TEST(random_full_and_window_groups_keep_every_invariant)
{
    run_random(&full_and_window, 100 + _i);
}
END_TEST

START_TEST(random_priorities_three_groups_keep_every_invariant)
{
    run_random(&priorities, 200 + _i);
}
END_TEST

Suite *sched_random_suite(void)
{
    Suite *s = suite_create("sched_random");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, random_one_group_keeps_every_invariant, 0, 3);
    tcase_add_loop_test(tc, random_full_and_window_groups_keep_every_invariant, 0, 3);
    tcase_add_loop_test(tc, random_priorities_three_groups_keep_every_invariant, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}
