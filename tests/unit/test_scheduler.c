/* test_scheduler.c — the scheduler's rules on hand-built cases: chunked prefill beside a
 * running decode, decodes before prefills, the max_num_seqs cap, FCFS admission, preemption
 * of the newest under a tiny pool, abort in every state, every finish reason, sched_finish,
 * refusal at admission, and prefix-cache hits that run only the uncached suffix. Every
 * step is also checked by sched_check.c. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"     /* ERR_LEN */
#include "scheduler/scheduler.h"
#include "tests/unit/sched_check.h"

#define EOS 2
#define STOP_ID 1

static const int32_t eos_ids[1] = { EOS };

static struct sched_config config(int bs, int num_blocks, int max_seqs, int budget, int max_len)
{
    return (struct sched_config){ .block_size = bs, .num_blocks = num_blocks,
                                  .max_num_seqs = max_seqs, .max_num_batched_tokens = budget,
                                  .max_model_len = max_len, .num_kv_groups = 1,
                                  .eos_ids = eos_ids, .num_eos_ids = 1 };
}

/* A scheduler, its checker, and the requests the test created (live until freed). */
struct fixture {
    struct sched_config cfg;
    struct scheduler *s;
    struct sched_checker ck;
    struct sched_request *reqs[16];
    int num_reqs;
    struct sched_request **fin;
    int num_fin;
};

static void fx_init(struct fixture *f, struct sched_config c)
{
    memset(f, 0, sizeof *f);
    f->cfg = c;
    ck_assert_int_eq(sched_create(&f->s, &c, NULL), 0);
    checker_init(&f->ck, f->s, &c);
}

/* A request with prompt p[0, n), queued with priority prio. */
static struct sched_request *fx_add_tokens(struct fixture *f, const int32_t *p, int n,
                                           int max_tokens, int prio)
{
    struct sched_request *r = treq_new(f->num_reqs, p, n, max_tokens);

    r->priority = prio;
    ck_assert_int_eq(sched_add(f->s, r, NULL), 0);
    f->reqs[f->num_reqs++] = r;
    return r;
}

/* A request with a prompt of n tokens from seed, queued with priority prio. */
static struct sched_request *fx_add_prio(struct fixture *f, int n, int max_tokens, uint32_t seed,
                                         int prio)
{
    int32_t p[256];

    treq_tokens(p, n, seed, 1000);
    return fx_add_tokens(f, p, n, max_tokens, prio);
}

static struct sched_request *fx_add(struct fixture *f, int n, int max_tokens, uint32_t seed)
{
    return fx_add_prio(f, n, max_tokens, seed, 0);
}

static int fx_live(struct fixture *f, struct sched_request **live)
{
    int n = 0;

    for (int i = 0; i < f->num_reqs; i++)
        if (f->reqs[i]->held)
            live[n++] = f->reqs[i];
    return n;
}

/* Token each sampled row gets: tok >= 0 for every row, or (tok < 0) 1000 * (id + 1) plus the
 * output index, which no stop rule matches. */
static int32_t fx_token(const struct sched_request *r, int tok)
{
    return tok >= 0 ? tok : 1000 * ((int32_t)r->id + 1) + (r->num_tokens - r->num_prompt_tokens);
}

/* One step; returns the batch (valid until the next schedule), or NULL when idle. */
static struct step_batch *fx_step(struct fixture *f, int tok)
{
    struct sched_request *live[16];
    struct step_batch *b = sched_schedule(f->s);
    int32_t sampled[16];

    f->num_fin = 0;
    if (!b)
        return NULL;
    checker_step(&f->ck, b, live, fx_live(f, live));
    for (int k = 0; k < b->num_sample; k++)
        sampled[k] = fx_token(b->reqs[b->sample_req[k]], tok);
    ck_assert_int_eq(sched_update(f->s, b, sampled, &f->fin, &f->num_fin), 0);
    return b;
}

static void fx_fini(struct fixture *f)
{
    struct sched_request *live[16];

    checker_ownership(&f->ck, live, fx_live(f, live));
    sched_destroy(f->s);
    checker_fini(&f->ck);
    for (int i = 0; i < f->num_reqs; i++)
        treq_free(f->reqs[i]);
}

static int row_of(const struct step_batch *b, const struct sched_request *r)
{
    for (int i = 0; i < b->num_reqs; i++)
        if (b->reqs[i] == r)
            return i;
    return -1;
}

static int row_tokens(const struct step_batch *b, int i)
{
    return b->query_start_loc[i + 1] - b->query_start_loc[i];
}

START_TEST(chunked_prefill_splits_a_long_prompt_while_a_decode_runs_every_step)
{
    struct fixture f;
    struct sched_request *d, *l;
    const int want[4] = { 31, 31, 31, 7 };

    fx_init(&f, config(16, 64, 4, 32, 256));
    d = fx_add(&f, 5, 50, 1);
    ck_assert_int_eq(fx_step(&f, -1)->num_tokens, 5);
    l = fx_add(&f, 100, 10, 2);
    for (int k = 0; k < 4; k++) {
        struct step_batch *b = fx_step(&f, -1);

        ck_assert_int_eq(b->num_reqs, 2);
        ck_assert_ptr_eq(b->reqs[0], d);            /* the decode, first, every step */
        ck_assert_int_eq(row_tokens(b, 0), 1);
        ck_assert_ptr_eq(b->reqs[1], l);
        ck_assert_int_eq(row_tokens(b, 1), want[k]);
        ck_assert_int_eq(b->num_sample, k < 3 ? 1 : 2);   /* l samples on its last chunk */
        ck_assert_int_eq(l->num_tokens, k < 3 ? 100 : 101);
        ck_assert_int_eq(d->num_tokens, 5 + 2 + k);
    }
    ck_assert_int_eq(l->num_computed_tokens, 100);
    fx_fini(&f);
}
END_TEST

/* b has priority 0, so it runs before a (priority 5) in order; b's prefill chunk still comes
 * after a's decode and takes only what is left of the budget. */
START_TEST(decodes_go_before_a_prefill_that_is_earlier_in_order)
{
    struct fixture f;
    struct sched_request *a, *b;

    fx_init(&f, config(16, 64, 4, 32, 256));
    a = fx_add_prio(&f, 4, 20, 1, 5);
    fx_step(&f, -1);
    b = fx_add_prio(&f, 100, 5, 2, 0);
    for (int k = 0; k < 3; k++) {
        struct step_batch *bt = fx_step(&f, -1);

        ck_assert_ptr_eq(bt->reqs[0], a);
        ck_assert_int_eq(row_tokens(bt, 0), 1);
        ck_assert_ptr_eq(bt->reqs[1], b);
        ck_assert_int_eq(row_tokens(bt, 1), 31);
        ck_assert_int_eq(a->num_tokens, 4 + 2 + k);
    }
    fx_fini(&f);
}
END_TEST

START_TEST(max_num_seqs_caps_requests_per_step_in_fcfs_order)
{
    struct fixture f;
    struct step_batch *b;
    int order[5], nf = 0;

    fx_init(&f, config(16, 64, 2, 32, 256));
    for (int i = 0; i < 5; i++)
        fx_add(&f, 3, 3, i + 1);
    while ((b = fx_step(&f, -1))) {
        struct sched_stats st;

        ck_assert_int_le(b->num_reqs, 2);
        sched_get_stats(f.s, &st);
        ck_assert_int_le(st.num_running, 2);
        for (int k = 0; k < f.num_fin; k++)
            order[nf++] = (int)f.fin[k]->id;
    }
    ck_assert_int_eq(nf, 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(order[i], i);
        ck_assert_int_eq(f.reqs[i]->finish_reason, FINISH_LENGTH);
    }
    fx_fini(&f);
}
END_TEST

/* a holds blocks; b needs more than is free and waits; c would fit but must not overtake b. */
START_TEST(waiting_request_that_fits_does_not_overtake_the_head)
{
    struct fixture f;
    struct sched_request *a, *b, *c;

    fx_init(&f, config(4, 8, 4, 64, 64));
    a = fx_add(&f, 16, 8, 1);     /* 4 blocks now */
    fx_step(&f, -1);
    b = fx_add(&f, 20, 4, 2);     /* 5 blocks: only 4 free */
    c = fx_add(&f, 2, 2, 3);
    fx_step(&f, -1);
    ck_assert_int_eq(b->status, SCHED_WAITING);
    ck_assert_int_eq(c->status, SCHED_WAITING);
    while (fx_step(&f, -1))
        ;
    ck_assert_int_eq(a->finish_reason, FINISH_LENGTH);
    ck_assert_int_eq(b->finish_reason, FINISH_LENGTH);
    ck_assert_int_eq(c->finish_reason, FINISH_LENGTH);
    fx_fini(&f);
}
END_TEST

/* Blocks of 4, a pool of 6. a and b (prompt 8, 12 outputs: 5 blocks each at most) both run
 * until position 12 needs a fifth block for a: b, the newest, is preempted. */
static void preempt_setup(struct fixture *f, struct sched_request **a, struct sched_request **b)
{
    struct step_batch *bt;
    struct sched_stats st;

    fx_init(f, config(4, 6, 4, 32, 64));
    *a = fx_add(f, 8, 12, 1);
    *b = fx_add(f, 8, 12, 2);
    for (int k = 0; k < 5; k++) {
        bt = fx_step(f, -1);
        ck_assert_int_eq(bt->num_reqs, 2);
    }
    bt = fx_step(f, -1);
    ck_assert_int_eq(bt->num_reqs, 1);
    ck_assert_ptr_eq(bt->reqs[0], *a);
    ck_assert_int_eq((*b)->status, SCHED_PREEMPTED);
    ck_assert_int_eq((*b)->num_preemptions, 1);
    ck_assert_int_eq((*b)->num_computed_tokens, 0);
    ck_assert_int_eq((*b)->num_tokens, 8 + 5);
    sched_get_stats(f->s, &st);
    ck_assert_int_eq(st.num_preemptions, 1);
    ck_assert_int_eq(st.num_waiting, 1);
}

START_TEST(preemption_takes_the_newest_which_later_finishes_with_all_its_tokens)
{
    struct fixture f;
    struct sched_request *a, *b;
    int32_t want[20];

    preempt_setup(&f, &a, &b);
    memcpy(want, b->token_ids, 8 * sizeof *want);
    for (int k = 0; k < 12; k++)
        want[8 + k] = 1000 * 2 + k;
    while (fx_step(&f, -1))
        ;
    ck_assert_int_eq(a->finish_reason, FINISH_LENGTH);
    ck_assert_int_eq(a->num_preemptions, 0);
    ck_assert_int_eq(b->finish_reason, FINISH_LENGTH);
    ck_assert_int_eq(b->num_tokens, 20);
    ck_assert_mem_eq(b->token_ids, want, sizeof want);
    checker_pool_full(&f.ck);
    fx_fini(&f);
}
END_TEST

/* Blocks of 4, a pool of 5: a (prompt 8) takes the last free block at position 8; then b
 * (prompt 6), the newest, needs one at its position 8: b preempts itself, a is untouched. */
START_TEST(newest_request_short_of_a_block_preempts_itself_not_an_older_one)
{
    struct fixture f;
    struct sched_request *a, *b;
    struct step_batch *bt;

    fx_init(&f, config(4, 5, 4, 32, 64));
    a = fx_add(&f, 8, 12, 1);
    b = fx_add(&f, 6, 10, 2);
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(fx_step(&f, -1)->num_reqs, 2);
    bt = fx_step(&f, -1);
    ck_assert_int_eq(bt->num_reqs, 1);
    ck_assert_ptr_eq(bt->reqs[0], a);
    ck_assert_int_eq(b->status, SCHED_PREEMPTED);
    ck_assert_int_eq(a->status, SCHED_RUNNING);
    while (fx_step(&f, -1))
        ;
    ck_assert_int_eq(a->num_preemptions, 0);
    ck_assert_int_eq(b->num_preemptions, 1);
    ck_assert_int_eq(b->finish_reason, FINISH_LENGTH);
    ck_assert_int_eq(b->num_tokens, 16);
    fx_fini(&f);
}
END_TEST

/* Priorities put b (prio 0, a long prompt) before a (prio 5, decoding) in order. Blocks of 4,
 * a pool of 12, budget 8: at step 7 b's chunk needs an 11th block while a's decode is
 * already in the step; a, last in order, is preempted and must leave the batch. */
START_TEST(preempting_an_already_scheduled_decode_takes_it_out_of_the_batch)
{
    struct fixture f;
    struct sched_request *a, *b;
    struct step_batch *bt;
    int32_t want[24];

    fx_init(&f, config(4, 12, 4, 8, 64));
    a = fx_add_prio(&f, 4, 20, 1, 5);
    fx_step(&f, -1);
    b = fx_add_prio(&f, 40, 4, 2, 0);
    for (int k = 0; k < 5; k++)
        ck_assert_int_eq(fx_step(&f, -1)->num_reqs, 2);
    bt = fx_step(&f, -1);
    ck_assert_int_eq(bt->num_reqs, 1);
    ck_assert_ptr_eq(bt->reqs[0], b);
    ck_assert_int_eq(row_tokens(bt, 0), 5);
    ck_assert_int_eq(a->status, SCHED_PREEMPTED);
    ck_assert_int_eq(a->num_tokens, 4 + 6);
    memcpy(want, a->token_ids, 4 * sizeof *want);
    for (int k = 0; k < 20; k++)
        want[4 + k] = 1000 * 1 + k;
    while (fx_step(&f, -1))
        ;
    ck_assert_int_eq(b->num_preemptions, 0);
    ck_assert_int_eq(a->finish_reason, FINISH_LENGTH);
    ck_assert_mem_eq(a->token_ids, want, sizeof want);
    fx_fini(&f);
}
END_TEST

START_TEST(abort_in_each_state_frees_everything)
{
    struct fixture f;
    struct sched_request *a, *b, *w, *r;
    struct step_batch *bt;
    struct sched_stats st;

    /* waiting */
    fx_init(&f, config(4, 16, 4, 8, 64));
    w = fx_add(&f, 5, 3, 1);
    sched_abort(f.s, w);
    ck_assert_int_eq(w->status, SCHED_FINISHED);
    ck_assert_int_eq(w->finish_reason, FINISH_ABORT);
    ck_assert_ptr_null(fx_step(&f, -1));
    /* running, mid-prefill (20 tokens, budget 8) */
    r = fx_add(&f, 20, 3, 2);
    ck_assert_int_eq(fx_step(&f, -1)->num_sample, 0);
    ck_assert_int_eq(r->status, SCHED_RUNNING);
    sched_abort(f.s, r);
    ck_assert_int_eq(r->finish_reason, FINISH_ABORT);
    ck_assert_ptr_null(fx_step(&f, -1));
    checker_pool_full(&f.ck);
    /* an aborted request stays as it is */
    sched_abort(f.s, r);
    ck_assert_int_eq(r->finish_reason, FINISH_ABORT);
    sched_get_stats(f.s, &st);
    ck_assert_int_eq(st.num_running + st.num_waiting, 0);
    fx_fini(&f);

    /* preempted */
    preempt_setup(&f, &a, &b);
    sched_abort(f.s, b);
    ck_assert_int_eq(b->finish_reason, FINISH_ABORT);
    while ((bt = fx_step(&f, -1)))
        ck_assert_int_eq(row_of(bt, b), -1);
    ck_assert_int_eq(a->finish_reason, FINISH_LENGTH);
    checker_pool_full(&f.ck);
    fx_fini(&f);
}
END_TEST

/* Finish rules: one request, one sampled token per step from toks; it must finish at step
 * want_steps (1-based) with want_reason and no earlier. */
struct finish_case {
    const char *claim;
    int prompt, max_tokens, max_model_len, min_tokens;
    bool ignore_eos, stop_id;
    int32_t toks[5];
    int want_steps;
    enum finish_reason want_reason;
};

static const struct finish_case finish_cases[] = {
    { "EOS finishes with stop and keeps the EOS token", 3, 10, 64, 0, false, false,
      { 5, 6, EOS, 7, 8 }, 3, FINISH_STOP },
    { "a stop token id finishes with stop", 3, 10, 64, 0, false, true,
      { 5, STOP_ID, 7, 8, 9 }, 2, FINISH_STOP },
    { "max_tokens finishes with length after exactly that many", 3, 3, 64, 0, false, false,
      { 5, 6, 7, 8, 9 }, 3, FINISH_LENGTH },
    { "filling max_model_len finishes with length", 12, 4, 16, 0, false, false,
      { 5, 6, 7, 8, 9 }, 4, FINISH_LENGTH },
    { "min_tokens holds back EOS until the min_tokens-th output", 3, 10, 64, 3, false, false,
      { EOS, EOS, EOS, 5, 6 }, 3, FINISH_STOP },
    { "min_tokens holds back stop ids too", 3, 10, 64, 2, false, true,
      { STOP_ID, STOP_ID, STOP_ID, 5, 6 }, 2, FINISH_STOP },
    { "ignore_eos runs on to max_tokens", 3, 4, 64, 0, true, false,
      { EOS, EOS, EOS, EOS, EOS }, 4, FINISH_LENGTH },
    { "ignore_eos still stops on a stop id", 3, 10, 64, 0, true, true,
      { EOS, STOP_ID, EOS, 5, 6 }, 2, FINISH_STOP },
};

START_TEST(finish_case_ends_at_its_step_with_its_reason)
{
    const struct finish_case *fc = &finish_cases[_i];
    static const int32_t stop[2] = { 40, STOP_ID };
    struct fixture f;
    struct sched_request *r;
    int32_t p[16];
    int k;

    fx_init(&f, config(4, 16, 4, 32, fc->max_model_len));
    treq_tokens(p, fc->prompt, 1, 1000);
    r = treq_new(0, p, fc->prompt, fc->max_tokens);
    r->min_tokens = fc->min_tokens;
    r->ignore_eos = fc->ignore_eos;
    if (fc->stop_id) {
        r->stop_token_ids = stop;
        r->num_stop_token_ids = 2;
    }
    ck_assert_int_eq(sched_add(f.s, r, NULL), 0);
    f.reqs[f.num_reqs++] = r;
    for (k = 0; k < 5 && r->status != SCHED_FINISHED; k++) {
        ck_assert_ptr_nonnull(fx_step(&f, fc->toks[k]));
        ck_assert_int_eq(f.num_fin, r->status == SCHED_FINISHED);
    }
    ck_assert_msg(k == fc->want_steps && r->finish_reason == fc->want_reason,
                  "%s: finished after %d steps with reason %d", fc->claim, k, r->finish_reason);
    ck_assert_ptr_eq(f.fin[0], r);
    ck_assert_int_eq(r->num_tokens, fc->prompt + k);
    ck_assert_mem_eq(r->token_ids + fc->prompt, fc->toks, k * sizeof *fc->toks);
    ck_assert_ptr_null(fx_step(&f, 5));
    checker_pool_full(&f.ck);
    fx_fini(&f);
}
END_TEST

START_TEST(sched_finish_ends_a_request_at_once)
{
    struct fixture f;
    struct sched_request *r, *w;

    fx_init(&f, config(4, 16, 1, 32, 64));
    r = fx_add(&f, 6, 10, 1);
    w = fx_add(&f, 6, 10, 2);   /* waits: max_num_seqs 1 */
    fx_step(&f, 5);
    sched_finish(f.s, r, FINISH_STOP);
    ck_assert_int_eq(r->status, SCHED_FINISHED);
    ck_assert_int_eq(r->finish_reason, FINISH_STOP);
    sched_finish(f.s, r, FINISH_ERROR);   /* no longer held: nothing changes */
    ck_assert_int_eq(r->finish_reason, FINISH_STOP);
    sched_finish(f.s, w, FINISH_ERROR);   /* a waiting one too */
    ck_assert_int_eq(w->finish_reason, FINISH_ERROR);
    ck_assert_ptr_null(fx_step(&f, 5));
    checker_pool_full(&f.ck);
    ck_assert_str_eq(finish_reason_name(FINISH_STOP), "stop");
    ck_assert_str_eq(finish_reason_name(FINISH_LENGTH), "length");
    ck_assert_str_eq(finish_reason_name(FINISH_ABORT), "abort");
    ck_assert_str_eq(finish_reason_name(FINISH_ERROR), "error");
    ck_assert_ptr_null(finish_reason_name(FINISH_NONE));
    fx_fini(&f);
}
END_TEST

START_TEST(admission_refuses_what_can_never_fit_with_a_message)
{
    struct sched_config c = config(4, 8, 4, 16, 64);
    struct scheduler *s;
    int32_t p[64] = { 0 };
    char err[ERR_LEN];
    struct sched_request *r;

    ck_assert_int_eq(sched_create(&s, &c, err), 0);
    r = treq_new(7, p, 60, 5);                    /* 65 > max_model_len 64 */
    err[0] = 0;
    ck_assert_int_eq(sched_add(s, r, err), -E2BIG);
    ck_assert_ptr_nonnull(strstr(err, "max_model_len 64"));
    ck_assert_int_eq(r->held, false);
    treq_free(r);
    r = treq_new(8, p, 30, 5);                    /* 35 tokens: 9 blocks of 4 > 8 */
    ck_assert_int_eq(sched_add(s, r, err), -E2BIG);
    ck_assert_ptr_nonnull(strstr(err, "its pool has 8"));
    treq_free(r);
    r = treq_new(9, p, 4, 0);
    ck_assert_int_eq(sched_add(s, r, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "max_tokens"));
    r->max_tokens = 2;
    r->min_tokens = 3;
    ck_assert_int_eq(sched_add(s, r, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "min_tokens"));
    r->min_tokens = 0;
    r->num_prompt_tokens = r->num_tokens = 0;
    ck_assert_int_eq(sched_add(s, r, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "prompt"));
    r->num_prompt_tokens = r->num_tokens = 4;
    r->num_stop_token_ids = 2;
    ck_assert_int_eq(sched_add(s, r, err), -EINVAL);
    r->num_stop_token_ids = 0;
    ck_assert_int_eq(sched_add(s, r, err), 0);    /* 6 tokens, 2 blocks: fits */
    ck_assert_int_eq(sched_add(s, r, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "already"));
    sched_abort(s, r);
    sched_destroy(s);
    treq_free(r);
}
END_TEST

START_TEST(bad_config_is_refused_with_a_message)
{
    struct sched_config c = config(4, 8, 4, 16, 64);
    struct scheduler *s;
    char err[ERR_LEN];

    c.max_num_batched_tokens = 2;
    ck_assert_int_eq(sched_create(&s, &c, err), -EINVAL);
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(strstr(err, "max_num_batched_tokens 2"));
    c = config(4, 0, 4, 16, 64);
    ck_assert_int_eq(sched_create(&s, &c, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "num_blocks 0"));
    c = config(4, 8, 4, 16, 64);
    c.num_kv_groups = KV_MAX_GROUPS + 1;
    ck_assert_int_eq(sched_create(&s, &c, err), -EINVAL);
    c = config(4, 8, 4, 16, 64);
    c.num_kv_groups = 2;
    c.group_window[1] = -4;
    ck_assert_int_eq(sched_create(&s, &c, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "group_window[1] -4"));
}
END_TEST

/* Blocks of 4. a (10 tokens) fills blocks 0 and 1; b shares a's first 8 tokens and runs
 * only its 3 new ones; c's whole 8-token prompt is cached, but its last token must run. */
START_TEST(prefix_cache_hit_runs_only_the_uncached_suffix)
{
    struct sched_config cfg = config(4, 32, 4, 32, 64);
    struct fixture f;
    struct sched_request *a, *b, *c;
    struct step_batch *bt;
    struct sched_stats st;
    int32_t p[11];
    int i;

    cfg.enable_prefix_caching = true;
    fx_init(&f, cfg);
    a = fx_add(&f, 10, 4, 1);
    fx_step(&f, -1);
    sched_get_stats(f.s, &st);
    ck_assert_int_eq(st.prefix_queries, 10);
    ck_assert_int_eq(st.prefix_hits, 0);
    ck_assert_int_eq(a->num_cached_tokens, 0);

    treq_tokens(p, 11, 2, 1000);
    memcpy(p, a->token_ids, 8 * sizeof *p);
    b = fx_add_tokens(&f, p, 11, 4, 0);
    bt = fx_step(&f, -1);
    i = row_of(bt, b);
    ck_assert_int_eq(row_tokens(bt, i), 3);
    ck_assert_int_eq(bt->positions[bt->query_start_loc[i]], 8);
    ck_assert_int_eq(bt->seq_lens[i], 11);
    ck_assert_int_eq(b->num_cached_tokens, 8);
    ck_assert_int_eq(b->num_tokens, 12);   /* it sampled */
    for (int j = 0; j < 2; j++)
        ck_assert_int_eq(b->kv.block_table[0][j], a->kv.block_table[0][j]);
    sched_get_stats(f.s, &st);
    ck_assert_int_eq(st.prefix_queries, 10 + 11);
    ck_assert_int_eq(st.prefix_hits, 8);

    c = fx_add_tokens(&f, a->token_ids, 8, 4, 0);
    bt = fx_step(&f, -1);
    i = row_of(bt, c);
    ck_assert_int_eq(row_tokens(bt, i), 4);
    ck_assert_int_eq(bt->positions[bt->query_start_loc[i]], 4);
    ck_assert_int_eq(c->num_cached_tokens, 4);
    while (fx_step(&f, -1))
        ;
    checker_pool_full(&f.ck);
    fx_fini(&f);
}
END_TEST

Suite *scheduler_suite(void)
{
    Suite *s = suite_create("scheduler");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, chunked_prefill_splits_a_long_prompt_while_a_decode_runs_every_step);
    tcase_add_test(tc, decodes_go_before_a_prefill_that_is_earlier_in_order);
    tcase_add_test(tc, max_num_seqs_caps_requests_per_step_in_fcfs_order);
    tcase_add_test(tc, waiting_request_that_fits_does_not_overtake_the_head);
    tcase_add_test(tc, preemption_takes_the_newest_which_later_finishes_with_all_its_tokens);
    tcase_add_test(tc, newest_request_short_of_a_block_preempts_itself_not_an_older_one);
    tcase_add_test(tc, preempting_an_already_scheduled_decode_takes_it_out_of_the_batch);
    tcase_add_test(tc, abort_in_each_state_frees_everything);
    tcase_add_loop_test(tc, finish_case_ends_at_its_step_with_its_reason, 0,
                        (int)(sizeof finish_cases / sizeof finish_cases[0]));
    tcase_add_test(tc, sched_finish_ends_a_request_at_once);
    tcase_add_test(tc, admission_refuses_what_can_never_fit_with_a_message);
    tcase_add_test(tc, bad_config_is_refused_with_a_message);
    tcase_add_test(tc, prefix_cache_hit_runs_only_the_uncached_suffix);
    suite_add_tcase(s, tc);
    return s;
}
