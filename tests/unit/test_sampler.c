/* test_sampler.c — the CPU reference sampler against hand-computed expectations: greedy
 * ties, penalties, banned ids, logprobs from the raw logits, top_k/top_p/min_p cuts, seeding,
 * and the exponential race's frequencies against the softmax probabilities. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "engine/gen_params.h"   /* gen_params_init */
#include "engine/sampler.h"

static float scratch[2 * 4096];

static struct sample_row row_init(void)
{
    return (struct sample_row){ .temperature = 1.0f, .top_p = 1.0f, .repetition_penalty = 1.0f,
                                .seed = 42, .num_logprobs = -1 };
}

static int32_t sample(const float *logits, int vocab, const struct sample_row *row)
{
    struct sample_result res;

    ck_assert_int_eq(sampler_sample_row(logits, vocab, row, &res, scratch), 0);
    ck_assert(res.token >= 0 && res.token < vocab);
    return res.token;
}

/* Logits whose softmax is p. */
static void logits_of(float *l, const double *p, int n)
{
    for (int i = 0; i < n; i++)
        l[i] = (float)log(p[i]);
}

/* Draws with counters 0 .. n-1 and counts the tokens. */
static void draw_counts(const float *logits, int vocab, struct sample_row row, int n, int *counts)
{
    for (int i = 0; i < vocab; i++)
        counts[i] = 0;
    for (int i = 0; i < n; i++) {
        row.counter = (uint32_t)i;
        counts[sample(logits, vocab, &row)]++;
    }
}

START_TEST(gen_params_init_sets_the_documented_defaults)
{
    struct gen_params p;

    gen_params_init(&p);
    ck_assert_int_eq(p.max_tokens, 16);
    ck_assert_float_eq(p.temperature, 1.0f);
    ck_assert_float_eq(p.top_p, 1.0f);
    ck_assert_int_eq(p.top_k, 0);
    ck_assert_float_eq(p.min_p, 0.0f);
    ck_assert_float_eq(p.repetition_penalty, 1.0f);
    ck_assert_float_eq(p.presence_penalty, 0.0f);
    ck_assert_float_eq(p.frequency_penalty, 0.0f);
    ck_assert_int_eq(p.logprobs, -1);
    ck_assert(p.skip_special_tokens);
    ck_assert(!p.has_seed && !p.ignore_eos);
    ck_assert_int_eq(p.num_stop, 0);
    ck_assert_int_eq(p.num_stop_token_ids, 0);
}
END_TEST

START_TEST(greedy_takes_the_lowest_id_among_tied_maxima)
{
    float l[] = { 1.0f, 3.0f, 3.0f, 2.0f };
    struct sample_row row = row_init();

    row.temperature = 0.0f;
    ck_assert_int_eq(sample(l, 4, &row), 1);
    row.temperature = SAMPLE_GREEDY_EPS / 2;   /* below the threshold: still greedy */
    for (uint32_t c = 0; c < 50; c++) {
        row.counter = c;
        ck_assert_int_eq(sample(l, 4, &row), 1);
    }
}
END_TEST

START_TEST(banned_ids_are_never_chosen)
{
    float l[] = { 5.0f, 1.0f, 4.0f };
    int32_t banned[] = { 0, 77, -3 };          /* out-of-range ids are ignored */
    struct sample_row row = row_init();
    int counts[3];

    row.banned = banned;
    row.num_banned = 3;
    row.temperature = 0.0f;
    ck_assert_int_eq(sample(l, 3, &row), 2);
    row.temperature = 1.0f;
    draw_counts(l, 3, row, 2000, counts);
    ck_assert_int_eq(counts[0], 0);
    ck_assert_int_gt(counts[1], 0);
    ck_assert_int_gt(counts[2], counts[1]);
}
END_TEST

START_TEST(allowed_token_ids_are_the_only_ids_drawn)
{
    static const float logits[8] = { 5, 4, 3, 2, 1, 0, -1, -2 };
    static const int32_t allowed[] = { 6, 2, 7 };
    struct sample_row row = row_init();
    int counts[8];
    struct sample_result res;

    row.allowed_ids = allowed;
    row.num_allowed_ids = 3;
    draw_counts(logits, 8, row, 2000, counts);
    for (int i = 0; i < 8; i++)
        ck_assert_msg((i == 2 || i == 6 || i == 7) == (counts[i] > 0), "token %d drawn %d times", i, counts[i]);
    /* among the allowed, the softmax still rules: e^3 : e^-1 : e^-2 */
    ck_assert_int_gt(counts[2], counts[6]);
    row.temperature = 0;
    ck_assert_int_eq(sample(logits, 8, &row), 2);
    /* logprobs stay those of the raw logits */
    row.num_logprobs = 1;
    ck_assert_int_eq(sampler_sample_row(logits, 8, &row, &res, scratch), 0);
    ck_assert_int_eq(res.top_ids[0], 0);
    ck_assert_float_lt(res.logprob, res.top_logprobs[0]);
}
END_TEST

START_TEST(logit_bias_adds_to_the_logits_before_the_penalties)
{
    static const float logits[4] = { 2, 1, 0, 0.5f };
    static const int32_t ids[] = { 2, 0 };
    static const float bias[] = { 100, -100 };
    static const int32_t out[] = { 1 };
    struct sample_row row = row_init();
    int counts[4];

    row.bias_ids = ids;
    row.bias = bias;
    row.num_bias = 2;
    row.temperature = 0;
    ck_assert_int_eq(sample(logits, 4, &row), 2);          /* +100 wins */
    draw_counts(logits, 4, (row.temperature = 1, row), 500, counts);
    ck_assert_int_eq(counts[2], 500);
    /* -100 alone on the best token: the next one wins */
    row.num_bias = 1;
    row.bias_ids = ids + 1;
    row.bias = bias + 1;
    row.temperature = 0;
    ck_assert_int_eq(sample(logits, 4, &row), 1);
    /* vLLM's order: bias, then the repetition penalty (divides the biased logit) */
    row.bias_ids = out;
    row.bias = (const float[]){ 3.0f };       /* logit 1 + 3 = 4, then / 4 = 1 < 2 */
    row.repetition_penalty = 4.0f;
    row.output = out;
    row.num_output = 1;
    ck_assert_int_eq(sample(logits, 4, &row), 0);
}
END_TEST

START_TEST(everything_banned_still_returns_a_token_in_range)
{
    float l[] = { 1.0f, 2.0f };
    int32_t banned[] = { 0, 1 };
    struct sample_row row = row_init();

    row.banned = banned;
    row.num_banned = 2;
    sample(l, 2, &row);
    row.temperature = 0.0f;
    sample(l, 2, &row);
}
END_TEST

START_TEST(repetition_penalty_divides_positive_and_multiplies_negative_logits)
{
    struct sample_row row = row_init();
    int32_t prompt[] = { 0 }, output[] = { 1, 1 }, repeated[] = { 0, 0, 0 };

    row.temperature = 0.0f;
    row.repetition_penalty = 2.0f;
    row.prompt = prompt;
    row.num_prompt = 1;
    /* 2 → 1 falls below 1.5: token 2 */
    float a[] = { 2.0f, 0.0f, 1.5f, 0.5f };
    ck_assert_int_eq(sample(a, 4, &row), 2);
    /* -1 → -2 falls below -1.5: token 1 (output tokens count too: make 1 unpenalized) */
    float b[] = { -1.0f, -1.5f, -3.0f };
    ck_assert_int_eq(sample(b, 3, &row), 1);
    row.output = output;
    row.num_output = 2;
    /* now 1 is penalized too: -1.5 → -3 ties token 2 at -3; token 0 at -2 wins */
    ck_assert_int_eq(sample(b, 3, &row), 0);
    /* each distinct token once: 2 → 1 (> 0.9), not 2 / 8 */
    float c[] = { 2.0f, 0.9f };
    row.prompt = repeated;
    row.num_prompt = 3;
    row.num_output = 0;
    ck_assert_int_eq(sample(c, 2, &row), 0);
}
END_TEST

START_TEST(frequency_penalty_counts_occurrences_and_presence_counts_once)
{
    struct sample_row row = row_init();
    int32_t output[] = { 0, 2, 0 };
    float l[] = { 3.0f, 2.5f, 1.0f };

    row.temperature = 0.0f;
    row.output = output;
    row.num_output = 3;
    row.frequency_penalty = 0.3f;   /* 3 - 2 * 0.3 = 2.4 < 2.5 */
    ck_assert_int_eq(sample(l, 3, &row), 1);
    row.frequency_penalty = 0.2f;   /* 3 - 0.4 = 2.6 > 2.5 */
    ck_assert_int_eq(sample(l, 3, &row), 0);
    row.frequency_penalty = 0.0f;
    float m[] = { 3.0f, 2.3f, 1.0f };
    row.presence_penalty = 0.6f;    /* once: 2.4 > 2.3 (twice would give 1.8) */
    ck_assert_int_eq(sample(m, 3, &row), 0);
    row.presence_penalty = 0.8f;    /* 2.2 < 2.3 */
    ck_assert_int_eq(sample(m, 3, &row), 1);
    /* a negative presence penalty raises a token: 1 + 1.5 = 2.5 > 2.3 */
    float n[] = { 0.0f, 2.3f, 1.0f };
    row.presence_penalty = -1.5f;
    ck_assert_int_eq(sample(n, 3, &row), 2);
}
END_TEST

START_TEST(logprobs_come_from_the_raw_logits_in_descending_order)
{
    float l[] = { 1.0f, 3.0f, 3.0f, 0.0f, 2.0f };
    int32_t banned[] = { 1 };
    struct sample_row row = row_init();
    struct sample_result res;
    double lse = log(exp(1.0) + 2 * exp(3.0) + 1.0 + exp(2.0));

    row.temperature = 0.0f;
    row.banned = banned;
    row.num_banned = 1;
    row.repetition_penalty = 3.0f;
    row.prompt = (int32_t[]){ 2 };
    row.num_prompt = 1;
    row.num_logprobs = 3;
    /* penalized: 2 → 1, 1 banned: token 4 (2.0) wins; logprobs ignore all of that */
    ck_assert_int_eq(sampler_sample_row(l, 5, &row, &res, scratch), 0);
    ck_assert_int_eq(res.token, 4);
    ck_assert_double_eq_tol(res.logprob, 2.0 - lse, 1e-6);
    ck_assert_int_eq(res.num_top, 3);
    ck_assert_int_eq(res.top_ids[0], 1);
    ck_assert_int_eq(res.top_ids[1], 2);
    ck_assert_int_eq(res.top_ids[2], 4);
    ck_assert_double_eq_tol(res.top_logprobs[0], 3.0 - lse, 1e-6);
    ck_assert_double_eq_tol(res.top_logprobs[1], 3.0 - lse, 1e-6);
    ck_assert_double_eq_tol(res.top_logprobs[2], 2.0 - lse, 1e-6);
    row.num_logprobs = 0;
    ck_assert_int_eq(sampler_sample_row(l, 5, &row, &res, scratch), 0);
    ck_assert_int_eq(res.num_top, 0);
    ck_assert_double_eq_tol(res.logprob, 2.0 - lse, 1e-6);
    row.num_logprobs = 40;          /* clamped to SAMPLE_MAX_LOGPROBS, here the vocab */
    ck_assert_int_eq(sampler_sample_row(l, 5, &row, &res, scratch), 0);
    ck_assert_int_eq(res.num_top, 5);
    ck_assert_int_eq(res.top_ids[4], 3);
}
END_TEST

START_TEST(the_same_seed_and_counter_give_the_same_token)
{
    float l[64];
    struct sample_row row = row_init();
    int differ = 0;

    for (int i = 0; i < 64; i++)
        l[i] = (float)((i * 37) % 11) * 0.3f;
    for (uint32_t c = 0; c < 200; c++) {
        int32_t a, b;

        row.seed = 1234;
        row.counter = c;
        a = sample(l, 64, &row);
        ck_assert_int_eq(sample(l, 64, &row), a);
        row.seed = 999;
        b = sample(l, 64, &row);
        differ += a != b;
    }
    ck_assert_int_gt(differ, 100);   /* another seed is another stream */
}
END_TEST

/* Pearson chi-square of counts against probabilities p over n draws. */
static double chi_square(const int *counts, const double *p, int k, int n)
{
    double x2 = 0.0;

    for (int i = 0; i < k; i++)
        x2 += (counts[i] - n * p[i]) * (counts[i] - n * p[i]) / (n * p[i]);
    return x2;
}

START_TEST(draws_over_counters_follow_the_softmax)
{
    float l[8];
    double p[8], z = 0.0;
    int counts[8], n = 8000;
    struct sample_row row = row_init();

    for (int i = 0; i < 8; i++) {
        l[i] = 0.4f * i - 1.0f;
        z += exp(l[i]);
    }
    for (int i = 0; i < 8; i++)
        p[i] = exp(l[i]) / z;
    draw_counts(l, 8, row, n, counts);
    /* 7 degrees of freedom: the 99.99% quantile is about 29; a loose bound */
    ck_assert_double_lt(chi_square(counts, p, 8, n), 40.0);
}
END_TEST

START_TEST(a_three_token_distribution_is_sampled_at_its_frequencies)
{
    double p[3] = { 0.2, 0.3, 0.5 }, q[3], z = 0.0;
    float l[3];
    int counts[3], n = 20000;
    struct sample_row row = row_init();

    logits_of(l, p, 3);
    draw_counts(l, 3, row, n, counts);
    for (int i = 0; i < 3; i++)
        ck_assert_double_eq_tol((double)counts[i] / n, p[i], 0.015);
    /* temperature 2: p^(1/2), renormalized */
    row.temperature = 2.0f;
    for (int i = 0; i < 3; i++)
        z += q[i] = sqrt(p[i]);
    draw_counts(l, 3, row, n, counts);
    for (int i = 0; i < 3; i++)
        ck_assert_double_eq_tol((double)counts[i] / n, q[i] / z, 0.015);
}
END_TEST

START_TEST(top_k_keeps_the_k_largest_and_all_tied_with_the_kth)
{
    float a[] = { 1.0f, 2.0f, 3.0f, 4.0f }, b[] = { 1.0f, 3.0f, 3.0f, 4.0f, 0.5f };
    struct sample_row row = row_init();
    int counts[5], n = 4000;

    row.top_k = 2;
    draw_counts(a, 4, row, n, counts);
    ck_assert_int_eq(counts[0] + counts[1], 0);
    /* e^3 : e^4 renormalized: 0.269 : 0.731 */
    ck_assert_double_eq_tol((double)counts[2] / n, 1.0 / (1.0 + exp(1.0)), 0.03);
    draw_counts(b, 5, row, n, counts);
    ck_assert_int_eq(counts[0] + counts[4], 0);
    ck_assert_int_gt(counts[1], 0);
    ck_assert_int_gt(counts[2], 0);
    row.top_k = 10;                  /* more than the vocabulary: off */
    draw_counts(a, 4, row, n, counts);
    ck_assert_int_gt(counts[0], 0);
}
END_TEST

START_TEST(top_p_keeps_the_smallest_prefix_that_reaches_it_crossing_token_included)
{
    double p[] = { 0.5, 0.3, 0.15, 0.05 };
    float l[4];
    struct sample_row row = row_init();
    int counts[4], n = 6000;

    logits_of(l, p, 4);
    row.top_p = 0.75f;               /* 0.5 < 0.75 <= 0.8: tokens 0 and 1 */
    draw_counts(l, 4, row, n, counts);
    ck_assert_int_eq(counts[2] + counts[3], 0);
    ck_assert_double_eq_tol((double)counts[0] / n, 0.5 / 0.8, 0.03);
    row.top_p = 0.85f;               /* crosses at 0.95: token 2 is in */
    draw_counts(l, 4, row, n, counts);
    ck_assert_int_eq(counts[3], 0);
    ck_assert_int_gt(counts[2], 0);
    row.top_p = 0.2f;                /* the first token alone crosses */
    draw_counts(l, 4, row, 200, counts);
    ck_assert_int_eq(counts[0], 200);
}
END_TEST

START_TEST(top_p_among_tied_tokens_keeps_the_lowest_ids)
{
    float l[] = { 0.0f, 0.0f, 0.0f, 0.0f };   /* four tokens of 0.25 */
    struct sample_row row = row_init();
    int counts[4];

    row.top_p = 0.4f;                          /* crossing at the second token */
    draw_counts(l, 4, row, 2000, counts);
    ck_assert_int_gt(counts[0], 0);
    ck_assert_int_gt(counts[1], 0);
    ck_assert_int_eq(counts[2] + counts[3], 0);
}
END_TEST

START_TEST(top_p_is_taken_over_what_min_p_and_top_k_kept)
{
    double p[] = { 0.4, 0.3, 0.2, 0.1 };
    float l[4];
    struct sample_row row = row_init();
    int counts[4];

    logits_of(l, p, 4);
    /* top_k 2 leaves 0.4 : 0.3 = 0.571 : 0.429; top_p 0.5 then keeps token 0 alone */
    row.top_k = 2;
    row.top_p = 0.5f;
    draw_counts(l, 4, row, 300, counts);
    ck_assert_int_eq(counts[0], 300);
    /* top_p 0.6 crosses at the second kept token: both */
    row.top_p = 0.6f;
    draw_counts(l, 4, row, 2000, counts);
    ck_assert_int_gt(counts[1], 0);
    ck_assert_int_eq(counts[2] + counts[3], 0);
}
END_TEST

START_TEST(min_p_drops_tokens_below_a_fraction_of_the_top_probability)
{
    double p[] = { 0.5, 0.3, 0.15, 0.05 };
    float l[4];
    struct sample_row row = row_init();
    int counts[4], n = 6000;

    logits_of(l, p, 4);
    row.min_p = 0.2f;                /* threshold 0.1: token 3 out */
    draw_counts(l, 4, row, n, counts);
    ck_assert_int_eq(counts[3], 0);
    ck_assert_double_eq_tol((double)counts[2] / n, 0.15 / 0.95, 0.03);
    row.min_p = 0.7f;                /* threshold 0.35: token 0 alone */
    draw_counts(l, 4, row, 300, counts);
    ck_assert_int_eq(counts[0], 300);
}
END_TEST

START_TEST(a_large_vocabulary_with_top_p_samples_only_the_nucleus)
{
    enum { V = 4096 };
    float l[V];
    struct sample_row row = row_init();
    int counts[V];

    /* logits fall off linearly: the nucleus of 0.5 is a prefix of low ids */
    for (int i = 0; i < V; i++)
        l[i] = -0.01f * i;
    row.top_p = 0.5f;
    draw_counts(l, V, row, 500, counts);
    /* mass of ids < m is (1 - e^-0.01m) / (1 - e^-40.96) ≈ 0.5 at m = 69.3 */
    for (int i = 70; i < V; i++)
        ck_assert_int_eq(counts[i], 0);
    ck_assert_int_gt(counts[69] + counts[68] + counts[67], 0);
}
END_TEST

Suite *sampler_suite(void)
{
    Suite *s = suite_create("sampler");
    TCase *tc = tcase_create("sampler");

    tcase_add_test(tc, gen_params_init_sets_the_documented_defaults);
    tcase_add_test(tc, greedy_takes_the_lowest_id_among_tied_maxima);
    tcase_add_test(tc, banned_ids_are_never_chosen);
    tcase_add_test(tc, everything_banned_still_returns_a_token_in_range);
    tcase_add_test(tc, allowed_token_ids_are_the_only_ids_drawn);
    tcase_add_test(tc, logit_bias_adds_to_the_logits_before_the_penalties);
    tcase_add_test(tc, repetition_penalty_divides_positive_and_multiplies_negative_logits);
    tcase_add_test(tc, frequency_penalty_counts_occurrences_and_presence_counts_once);
    tcase_add_test(tc, logprobs_come_from_the_raw_logits_in_descending_order);
    tcase_add_test(tc, the_same_seed_and_counter_give_the_same_token);
    tcase_add_test(tc, draws_over_counters_follow_the_softmax);
    tcase_add_test(tc, a_three_token_distribution_is_sampled_at_its_frequencies);
    tcase_add_test(tc, top_k_keeps_the_k_largest_and_all_tied_with_the_kth);
    tcase_add_test(tc, top_p_keeps_the_smallest_prefix_that_reaches_it_crossing_token_included);
    tcase_add_test(tc, top_p_among_tied_tokens_keeps_the_lowest_ids);
    tcase_add_test(tc, top_p_is_taken_over_what_min_p_and_top_k_kept);
    tcase_add_test(tc, min_p_drops_tokens_below_a_fraction_of_the_top_probability);
    tcase_add_test(tc, a_large_vocabulary_with_top_p_samples_only_the_nucleus);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}
