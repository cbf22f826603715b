/* test_sampling.c — the GPU sampler against the CPU sampler (engine/sampler.c) through the
 * same vtable on identical logits: greedy equals the argmax (lowest id on ties); seeded
 * sampling draws the same token for the same seed and counter (mismatches counted, only
 * near-ties may differ); the sets of tokens drawn under top_k / top_p / min_p over many
 * counters equal the kept sets computed here by hand (ties at the cut included);
 * penalties and bans move the argmax where the arithmetic says; logprobs and the top 20
 * equal the CPU's; the frequency counts' scratch is left clean; logit_bias and
 * allowed_token_ids (as the engine's mask, alone or ANDed with a grammar's) draw what the
 * CPU reference draws with its own bias and id-list passes. */
#ifdef OSPREY_CUDA
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"
#include "engine/sampler.h"
#include "tests/gpu/gpu_test.h"

#define MAX_ROWS 4096

static bool backends(struct gt *t, int rows, int vocab)
{
    /* blocks for an 8k context per row: the staging bound on penalty lists follows them */
    struct backend_options o = { .max_tokens = rows, .max_reqs = rows, .max_blocks_per_req = 512,
                                 .num_kv_groups = 1, .vocab_size = vocab };
    return gt_backends(t, &o);
}

/* Samples rows[n] of logits[n, vocab] on both backends. */
static bool sample_both(struct gt *t, const float *logits, int n, int vocab,
                        const struct sample_row *rows, struct sample_result *cpu,
                        struct sample_result *gpu)
{
    struct step_batch b;
    struct bk_batch bc, bg;
    struct dbuf l = { 0 };
    bool ok = false;

    if (!gt_check(t, batch_init(&b, n, n, 1, 1) == 0, "batch_init"))
        return false;
    b.num_reqs = b.num_reqs_padded = n;
    b.num_tokens = b.num_tokens_padded = n;
    b.num_sample = b.num_sample_padded = n;
    b.decode_only = true;
    b.max_query_len = b.max_seq_len = 1;
    for (int i = 0; i < n; i++) {
        b.query_start_loc[i + 1] = i + 1;
        b.seq_lens[i] = 1;
        b.logits_indices[i] = i;
        b.block_table[0][i] = 0;
        b.slot_mapping[0][i] = KV_PADDING_SLOT;
    }
    if (dbuf_create(t, &l, (size_t)n * vocab, true) && dbuf_set(t, &l, logits) &&
        gt_stage(t, &b, rows, &bc, &bg) &&
        gt_check(t, t->cpu->ops->sample(t->cpu, l.cpu, vocab, &bc) == 0, "cpu sample") &&
        gt_check(t, t->gpu->ops->sample(t->gpu, l.gpu, vocab, &bg) == 0, "cuda sample") &&
        gt_check(t, t->cpu->ops->fetch_results(t->cpu, cpu, n) == 0, "cpu fetch_results") &&
        gt_check(t, t->gpu->ops->fetch_results(t->gpu, gpu, n) == 0, "cuda fetch_results"))
        ok = true;
    dbuf_free(t, &l);
    batch_fini(&b);
    return ok;
}

static struct sample_row greedy(void)
{
    return (struct sample_row){ .top_p = 1.0f, .repetition_penalty = 1.0f, .num_logprobs = -1 };
}

/* Logits like a model's: a few strong candidates over a long tail. */
static void model_like(struct gt *t, float *l, int vocab)
{
    for (int i = 0; i < vocab; i++) {
        float u = gt_randf(&t->rng, 0.0f, 1.0f);
        l[i] = -4.0f + 6.0f * u * u * u * u + gt_randf(&t->rng, -1.0f, 1.0f);
    }
    for (int k = 0; k < 8; k++)
        l[gt_randint(&t->rng, vocab)] += gt_randf(&t->rng, 4.0f, 10.0f);
}

static int argmax_lowest(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

static void greedy_equals_argmax_of_cpu_logits(struct gt *t)
{
    enum { N = 64, V = 128256 };
    float *l = malloc((size_t)N * V * 4);
    struct sample_row rows[N];
    struct sample_result rc[N], rg[N];
    int bad = 0;

    if (!gt_check(t, l != NULL, "out of host memory") || !backends(t, N, V))
        goto out;
    for (int r = 0; r < N; r++) {
        float *x = l + (size_t)r * V;
        model_like(t, x, V);
        rows[r] = greedy();
        if (r % 4 == 1) {   /* a tie for the maximum: the lower id wins */
            int a = gt_randint(&t->rng, V), b = gt_randint(&t->rng, V);
            x[a] = x[b] = 40.0f;
        }
        if (r % 8 == 3)     /* one row of equal logits */
            for (int i = 0; i < V; i++)
                x[i] = 1.5f;
        if (r % 16 == 5)
            for (int i = 0; i < V; i++)
                x[i] = -INFINITY;
        rows[r].temperature = r % 2 ? 0.0f : 1e-6f;   /* both below SAMPLE_GREEDY_EPS */
    }
    if (!sample_both(t, l, N, V, rows, rc, rg))
        goto out;
    for (int r = 0; r < N; r++) {
        int want = argmax_lowest(l + (size_t)r * V, V);
        bad += rg[r].token != want;
        gt_check(t, rg[r].token == want && rc[r].token == want,
                 "row %d: argmax %d, cuda %d, cpu %d", r, want, rg[r].token, rc[r].token);
    }
    gt_note(t, "64 rows of vocab 128256, ties, flat and all -inf rows; %d wrong", bad);
out:
    free(l);
}

/* Parameter sets drawn per row: temperature, top_k, top_p, min_p, penalties, bans. */
static void random_row(struct gt *t, struct sample_row *r, int i, int vocab, int32_t *hist)
{
    static const float temps[] = { 0.3f, 0.7f, 1.0f, 1.5f };
    static const int ks[] = { 0, 0, 1, 5, 50, 1000 };
    static const float ps[] = { 1.0f, 1.0f, 0.95f, 0.8f, 0.5f, 0.1f };
    static const float mps[] = { 0.0f, 0.0f, 0.02f, 0.2f };

    *r = greedy();
    r->temperature = temps[gt_randint(&t->rng, ARRAY_LEN(temps))];
    r->top_k = ks[gt_randint(&t->rng, ARRAY_LEN(ks))];
    r->top_p = ps[gt_randint(&t->rng, ARRAY_LEN(ps))];
    r->min_p = mps[gt_randint(&t->rng, ARRAY_LEN(mps))];
    r->seed = gt_rand_u64(&t->rng);
    r->counter = (uint32_t)gt_randint(&t->rng, 1000);
    r->num_logprobs = i % 3 == 0 ? 5 : -1;
    if (i % 4 == 1) {
        /* histories with repeats: 64 prompt, 32 output tokens among 100 ids, 3 bans */
        for (int j = 0; j < 99; j++)
            hist[j] = gt_randint(&t->rng, 100) * (vocab / 100);
        r->prompt = hist;
        r->num_prompt = 64;
        r->output = hist + 64;
        r->num_output = 32;
        r->banned = hist + 96;
        r->num_banned = 3;
        r->repetition_penalty = 1.3f;
        r->frequency_penalty = 0.4f;
        r->presence_penalty = 0.25f;
    }
}

static void seeded_sampling_equals_cpu(struct gt *t)
{
    enum { N = 1024, V = 32000 };
    float *l = malloc((size_t)N * V * 4);
    int32_t *hist = malloc((size_t)N * 100 * 4);
    struct sample_row *rows = calloc(N, sizeof *rows);
    struct sample_result *rc = calloc(N, sizeof *rc), *rg = calloc(N, sizeof *rg);
    int mismatch = 0, lp_bad = 0;

    if (!gt_check(t, l && hist && rows && rc && rg, "out of host memory") || !backends(t, N, V))
        goto out;
    for (int r = 0; r < N; r++) {
        model_like(t, l + (size_t)r * V, V);
        random_row(t, &rows[r], r, V, hist + (size_t)r * 100);
    }
    if (!sample_both(t, l, N, V, rows, rc, rg))
        goto out;
    for (int r = 0; r < N; r++) {
        mismatch += rc[r].token != rg[r].token;
        if (rows[r].num_logprobs >= 0) {
            bool same = fabsf(rc[r].logprob - rg[r].logprob) <= 1e-4f && rc[r].num_top == rg[r].num_top;
            for (int j = 0; same && j < rc[r].num_top; j++)
                same = rc[r].top_ids[j] == rg[r].top_ids[j] &&
                       fabsf(rc[r].top_logprobs[j] - rg[r].top_logprobs[j]) <= 1e-4f;
            lp_bad += !same;
        }
    }
    /* only draws that land within float rounding of each other may differ */
    gt_check(t, mismatch <= N / 200, "%d of %d seeded draws differ from the cpu", mismatch, N);
    gt_check(t, lp_bad == 0, "%d rows' logprobs differ from the cpu", lp_bad);
    gt_note(t, "%d rows, vocab %d, random temp/top_k/top_p/min_p/penalties: %d differ", N, V, mismatch);
out:
    free(l);
    free(hist);
    free(rows);
    free(rc);
    free(rg);
}

/* Draws `draws` tokens from one row of logits with counters 0.. and checks that the set
 * drawn equals want[] (on both backends) and that every draw matches the CPU's. */
static void kept_set(struct gt *t, const char *what, const float *row, int vocab,
                     struct sample_row p, const bool *want, int draws)
{
    float *l = malloc((size_t)draws * vocab * 4);
    struct sample_row *rows = calloc(draws, sizeof *rows);
    struct sample_result *rc = calloc(draws, sizeof *rc), *rg = calloc(draws, sizeof *rg);
    bool seen[256] = { 0 };
    int mismatch = 0;

    if (!gt_check(t, l && rows && rc && rg && vocab <= 256, "out of host memory"))
        goto out;
    for (int d = 0; d < draws; d++) {
        memcpy(l + (size_t)d * vocab, row, vocab * 4);
        rows[d] = p;
        rows[d].counter = (uint32_t)d;
    }
    if (!sample_both(t, l, draws, vocab, rows, rc, rg))
        goto out;
    for (int d = 0; d < draws; d++) {
        mismatch += rc[d].token != rg[d].token;
        if (rg[d].token >= 0 && rg[d].token < vocab)
            seen[rg[d].token] = true;
    }
    gt_check(t, mismatch == 0, "%s: %d of %d draws differ from the cpu", what, mismatch, draws);
    for (int i = 0; i < vocab; i++)
        if (!gt_check(t, seen[i] == want[i], "%s: token %d %s but is %s", what, i,
                      seen[i] ? "was drawn" : "was never drawn", want[i] ? "kept" : "masked"))
            break;
out:
    free(l);
    free(rows);
    free(rc);
    free(rg);
}

static void sampled_tokens_cover_exactly_the_kept_set(struct gt *t)
{
    enum { V = 64, DRAWS = 3000 };
    float row[V];
    bool want[V];
    struct sample_row p;
    double mass[V], total = 0.0, cum = 0.0;

    if (!backends(t, DRAWS, V))
        return;
    for (int i = 0; i < V; i++)
        row[i] = -0.1f * i;   /* p_i ∝ e^{-0.1 i}: distinct, descending */

    p = greedy();
    p.temperature = 1.0f;
    p.seed = 42;
    p.top_k = 3;
    for (int i = 0; i < V; i++)
        want[i] = i < 3;
    kept_set(t, "top_k 3", row, V, p, want, DRAWS);

    p.top_k = 0;
    p.min_p = 0.5f;   /* e^{-0.1 i} >= 0.5 ⇔ i <= 6 */
    for (int i = 0; i < V; i++)
        want[i] = i <= 6;
    kept_set(t, "min_p 0.5", row, V, p, want, DRAWS);

    p.min_p = 0.0f;
    p.top_p = 0.5f;   /* the smallest prefix holding half the mass, by hand in double */
    for (int i = 0; i < V; i++)
        total += mass[i] = exp(-0.1 * i);
    for (int i = 0; i < V; i++) {
        want[i] = cum < 0.5 * total;
        cum += mass[i];
    }
    kept_set(t, "top_p 0.5", row, V, p, want, DRAWS);

    /* ties at the k-th: everything equal to it stays */
    for (int i = 0; i < V; i++)
        row[i] = i == 0 ? 5.0f : i <= 3 ? 4.0f : 3.0f - 0.01f * i;
    p = greedy();
    p.temperature = 1.0f;
    p.seed = 7;
    p.top_k = 2;
    for (int i = 0; i < V; i++)
        want[i] = i <= 3;
    kept_set(t, "top_k 2 with a three-way tie at the 2nd", row, V, p, want, DRAWS);

    /* ties at the top_p cut: p ∝ [e², e, e, e]; target 0.6 of 15.54 = 9.33 needs e² and
     * one e: the lowest id of the tie */
    for (int i = 0; i < V; i++)
        row[i] = i == 0 ? 2.0f : i <= 3 ? 1.0f : -INFINITY;
    p.top_k = 0;
    p.top_p = 0.6f;
    for (int i = 0; i < V; i++)
        want[i] = i <= 1;
    kept_set(t, "top_p 0.6 cutting a three-way tie", row, V, p, want, DRAWS);
    gt_note(t, "vocab 64, %d draws each: top_k, min_p, top_p, ties at both cuts", DRAWS);
}

static void penalties_and_bans_move_the_argmax(struct gt *t)
{
    enum { V = 1000, N = 7 };
    float *l = malloc((size_t)N * V * 4);
    static const int32_t prompt[3] = { 5, 5, 7 }, output[4] = { 9, 9, 11, 9 }, out9[1] = { 9 };
    static const int32_t p20[1] = { 20 }, ban_13_5[2] = { 13, 5 }, ban_9_13_5[3] = { 9, 13, 5 };
    static const int32_t ban_5_7_9_13[4] = { 5, 7, 9, 13 }, ban_13_11[2] = { 13, 11 };
    static const int32_t ban_all[5] = { 5, 7, 9, 11, 13 };
    struct sample_row rows[N];
    struct sample_result rc[N], rg[N];
    /* logits: 5: 3.0, 13: 2.95, 9: 2.9, 7: 2.8, 11: 2.7, 20: -0.5, every other id -1 */
    const int want[N] = {
        13,   /* repetition 1.2 over {5, 7, 9, 11}: 5 → 2.5, 9 → 2.42; 13 untouched */
        9,    /* bans 13 and 5 */
        7,    /* frequency 0.1 and presence 0.5 over {9 x3, 11}: 9 → 2.1, 11 → 2.1; bans 5, 13 */
        7,    /* bans 9, 13, 5 */
        11,   /* bans 5, 7, 9, 13 */
        5,    /* repetition 4 over {5, 7} + {9}: 5 → 0.75, 9 → 0.725, 7 → 0.7; bans 13, 11 */
        0,    /* repetition 4 on 20 (negative: times 4, -2.0), every positive banned: the
               * lowest id of the -1 tail */
    };

    if (!gt_check(t, l != NULL, "out of host memory") || !backends(t, N, V))
        goto out;
    for (int r = 0; r < N; r++) {
        float *x = l + (size_t)r * V;
        for (int i = 0; i < V; i++)
            x[i] = -1.0f;
        x[5] = 3.0f, x[13] = 2.95f, x[9] = 2.9f, x[7] = 2.8f, x[11] = 2.7f, x[20] = -0.5f;
        rows[r] = greedy();
        rows[r].prompt = prompt, rows[r].num_prompt = 3;
        rows[r].output = output, rows[r].num_output = 4;
    }
    rows[0].repetition_penalty = 1.2f;
    rows[1].banned = ban_13_5, rows[1].num_banned = 2;
    rows[2].frequency_penalty = 0.1f, rows[2].presence_penalty = 0.5f;
    rows[2].banned = ban_13_5, rows[2].num_banned = 2;
    rows[3].banned = ban_9_13_5, rows[3].num_banned = 3;
    rows[4].banned = ban_5_7_9_13, rows[4].num_banned = 4;
    rows[5].repetition_penalty = 4.0f;
    rows[5].output = out9, rows[5].num_output = 1;
    rows[5].banned = ban_13_11, rows[5].num_banned = 2;
    rows[6].repetition_penalty = 4.0f;
    rows[6].prompt = p20, rows[6].num_prompt = 1;
    rows[6].num_output = 0;
    rows[6].banned = ban_all, rows[6].num_banned = 5;

    if (!sample_both(t, l, N, V, rows, rc, rg))
        goto out;
    for (int r = 0; r < N; r++)
        gt_check(t, rg[r].token == want[r] && rc[r].token == want[r],
                 "row %d: expected %d, cuda %d, cpu %d", r, want[r], rg[r].token, rc[r].token);
    gt_note(t, "repetition (both signs), frequency, presence, bans: hand-computed winners");
out:
    free(l);
}

static void long_histories_and_counts_scratch_stay_consistent(struct gt *t)
{
    enum { N = 16, V = 128256, P = 4096, O = 2048 };
    float *l = malloc((size_t)N * V * 4);
    int32_t *hist = malloc((size_t)(P + O) * 4);
    struct sample_row rows[N];
    struct sample_result rc[N], rg[N], rg2[N];
    int diff = 0;

    if (!gt_check(t, l && hist, "out of host memory") || !backends(t, N, V))
        goto out;
    for (int j = 0; j < P + O; j++)
        hist[j] = gt_randint(&t->rng, 3000);   /* many repeats */
    for (int r = 0; r < N; r++) {
        model_like(t, l + (size_t)r * V, V);
        for (int j = 0; j < 3000; j += 7)
            l[(size_t)r * V + j] += 9.0f;       /* make the penalized ids matter */
        rows[r] = greedy();
        rows[r].temperature = r % 2 ? 0.0f : 0.8f;
        rows[r].seed = 1000 + r;
        rows[r].prompt = hist, rows[r].num_prompt = P;
        rows[r].output = hist + P, rows[r].num_output = O;
        rows[r].repetition_penalty = 1.1f + 0.05f * r;
        rows[r].frequency_penalty = 0.02f * r;
        rows[r].presence_penalty = 0.1f;
        rows[r].num_logprobs = 20;
    }
    if (!sample_both(t, l, N, V, rows, rc, rg) || !sample_both(t, l, N, V, rows, rc, rg2))
        goto out;
    for (int r = 0; r < N; r++) {
        diff += rc[r].token != rg[r].token;
        gt_check(t, rg[r].token == rg2[r].token, "row %d: %d then %d: the counts scratch was "
                 "not left clean", r, rg[r].token, rg2[r].token);
        gt_check(t, rg[r].num_top == 20 && rc[r].num_top == 20 &&
                    !memcmp(rg[r].top_ids, rc[r].top_ids, sizeof rc[r].top_ids),
                 "row %d: top 20 ids differ", r);
    }
    gt_check(t, diff == 0, "%d of %d rows differ from the cpu", diff, N);
    gt_note(t, "4096 prompt + 2048 output tokens with repeats, vocab 128256, sampled twice");
out:
    free(l);
    free(hist);
}

static void logprobs_and_top20_match_cpu(struct gt *t)
{
    enum { N = 8, V = 128256 };
    float *l = malloc((size_t)N * V * 4);
    struct sample_row rows[N];
    struct sample_result rc[N], rg[N];

    if (!gt_check(t, l != NULL, "out of host memory") || !backends(t, N, V))
        goto out;
    for (int r = 0; r < N; r++) {
        float *x = l + (size_t)r * V;
        model_like(t, x, V);
        if (r % 2)   /* ties across the 20th place: the lower ids make the cut */
            for (int k = 0; k < 30; k++)
                x[(k * 4099 + r) % V] = 25.0f - (k < 15 ? 0.0f : 1.0f);
        rows[r] = greedy();
        rows[r].num_logprobs = r == 0 ? 0 : 20;
    }
    if (!sample_both(t, l, N, V, rows, rc, rg))
        goto out;
    for (int r = 0; r < N; r++) {
        gt_check(t, fabsf(rc[r].logprob - rg[r].logprob) <= 1e-5f, "row %d: logprob %g vs cpu %g",
                 r, rg[r].logprob, rc[r].logprob);
        gt_check(t, rc[r].num_top == rg[r].num_top, "row %d: %d top entries vs cpu %d", r,
                 rg[r].num_top, rc[r].num_top);
        for (int j = 0; j < rc[r].num_top; j++)
            if (!gt_check(t, rc[r].top_ids[j] == rg[r].top_ids[j] &&
                             fabsf(rc[r].top_logprobs[j] - rg[r].top_logprobs[j]) <= 1e-5f,
                          "row %d top %d: id %d (%g) vs cpu %d (%g)", r, j, rg[r].top_ids[j],
                          rg[r].top_logprobs[j], rc[r].top_ids[j], rc[r].top_logprobs[j]))
                break;
    }
    gt_note(t, "vocab 128256, 0 and 20 logprobs, ties across the 20th place");
out:
    free(l);
}

/* Grammar masks (sample_row.allowed): rows with a few allowed tokens among model-like
 * logits, one allowed token, a mask that allows the argmax and one that does not, rows
 * without a mask between them, a vocab that ends inside a mask word; greedy and seeded (some
 * with top_k or top_p). A row with a mask alone is read through it in place (no copy). */
static void grammar_masks_leave_out_what_the_cpu_leaves_out(struct gt *t)
{
    enum { N = 48, V = 50021 };
    const int W = (V + 31) / 32;
    float *l = malloc((size_t)N * V * 4);
    uint32_t *masks = calloc((size_t)N * W, 4);
    struct sample_row rows[N];
    struct sample_result rc[N], rg[N];
    int mismatch = 0, outside = 0;

    if (!gt_check(t, l && masks, "out of host memory") || !backends(t, N, V))
        goto out;
    for (int r = 0; r < N; r++) {
        uint32_t *m = masks + (size_t)r * W;
        float *x = l + (size_t)r * V;
        int allowed = r % 4 == 0 ? 1 : r % 4 == 1 ? 7 : 300;

        model_like(t, x, V);
        rows[r] = greedy();
        if (r % 3 == 2) {
            rows[r].temperature = 1.0f;
            rows[r].seed = gt_rand_u64(&t->rng);
            rows[r].counter = (uint32_t)r;
            /* the thresholds' passes read the row through its mask too */
            if (r % 9 == 2)
                rows[r].top_k = 5;
            else if (r % 9 == 5)
                rows[r].top_p = 0.8f;
        }
        if (r % 6 == 5)
            continue;                  /* no mask: everything allowed */
        for (int k = 0; k < allowed; k++) {
            int id = k == 0 && r % 8 == 1 ? argmax_lowest(x, V) : gt_randint(&t->rng, V);
            m[id >> 5] |= 1u << (id & 31);
        }
        if (r % 8 == 3)
            m[(V - 1) >> 5] |= 1u << ((V - 1) & 31);   /* the last id, in a partial word */
        rows[r].allowed = m;
    }
    if (!sample_both(t, l, N, V, rows, rc, rg))
        goto out;
    for (int r = 0; r < N; r++) {
        const uint32_t *m = rows[r].allowed;
        int tok = rg[r].token;

        outside += m && !(m[tok >> 5] >> (tok & 31) & 1);
        mismatch += rg[r].token != rc[r].token;
        if (rows[r].temperature == 0.0f)
            gt_check(t, rg[r].token == rc[r].token, "row %d (greedy): cuda %d, cpu %d", r, rg[r].token,
                     rc[r].token);
    }
    gt_check(t, outside == 0, "%d rows drew a token their mask leaves out", outside);
    gt_check(t, mismatch <= 1, "%d of %d rows differ from the cpu", mismatch, N);
    gt_note(t, "%d rows, vocab %d, masks of 1/7/300 tokens and none: %d differ", N, V, mismatch);
out:
    free(l);
    free(masks);
}

/* logit_bias (staged with the token lists) and allowed_token_ids (a mask, as engine.c builds
 * it) against the CPU reference sampler given the id list itself: biases that move the
 * argmax, repeated bias ids, biases under the repetition penalty, allowed lists with and
 * without a grammar mask to intersect; greedy rows must match exactly, seeded ones but for a
 * near-tie. The CPU backend given the GPU's rows (the mask) must match the reference too. */
static void logit_bias_and_allowed_ids_equal_cpu(struct gt *t)
{
    enum { N = 96, V = 32003, NB = 6, NA = 40 };
    const int W = (V + 31) / 32;
    float *l = malloc((size_t)N * V * 4), *scratch = malloc((size_t)2 * V * 4);
    uint32_t *masks = calloc((size_t)N * W, 4), *grammar = calloc((size_t)W, 4);
    int32_t *ids = malloc((size_t)N * (NB + NA + 48) * 4);
    float *bias = malloc((size_t)N * NB * 4);
    struct sample_row *ref = calloc(N, sizeof *ref), *rows = calloc(N, sizeof *rows);
    struct sample_result *rr = calloc(N, sizeof *rr), *rc = calloc(N, sizeof *rc), *rg = calloc(N, sizeof *rg);
    int mismatch = 0, cpu_bad = 0, outside = 0;

    if (!gt_check(t, l && scratch && masks && grammar && ids && bias && ref && rows && rr && rc && rg,
                  "out of host memory") || !backends(t, N, V))
        goto out;
    for (int k = 0; k < W * 32 / 3; k++)           /* a grammar allowing about a third */
        grammar[k * 3 / 32] |= 1u << (k * 3 % 32);
    for (int r = 0; r < N; r++) {
        float *x = l + (size_t)r * V;
        int32_t *bid = ids + (size_t)r * (NB + NA + 48), *aid = bid + NB, *hist = aid + NA;
        int top = 0;

        model_like(t, x, V);
        top = argmax_lowest(x, V);
        ref[r] = greedy();
        if (r % 2) {
            ref[r].temperature = r % 4 == 1 ? 0.8f : 1.3f;
            ref[r].top_p = r % 8 == 3 ? 0.9f : 1.0f;
            ref[r].seed = gt_rand_u64(&t->rng);
            ref[r].counter = (uint32_t)r;
        }
        for (int k = 0; k < NB; k++) {             /* a bias list: down the argmax, up others */
            bid[k] = k == 0 ? top : k == NB - 1 ? bid[1] : gt_randint(&t->rng, V);   /* one id twice */
            bias[r * NB + k] = k == 0 ? -100.0f : gt_randf(&t->rng, -5.0f, 12.0f);
        }
        if (r % 3 != 2) {
            ref[r].bias_ids = bid;
            ref[r].bias = bias + r * NB;
            ref[r].num_bias = NB;
        }
        if (r % 5 == 1) {                          /* the repetition penalty over biased ids */
            for (int k = 0; k < 48; k++)
                hist[k] = k < 4 ? bid[k % NB] : gt_randint(&t->rng, V);
            ref[r].prompt = hist;
            ref[r].num_prompt = 32;
            ref[r].output = hist + 32;
            ref[r].num_output = 16;
            ref[r].repetition_penalty = 1.4f;
            ref[r].frequency_penalty = 0.3f;
        }
        rows[r] = ref[r];
        {
            uint32_t *mrow = masks + (size_t)r * W;
            bool has_ids = r % 4 >= 2, has_grammar = r % 6 == 3 || r % 6 == 4;

            if (has_ids) {                         /* allowed_token_ids, biased ids among them */
                for (int k = 0; k < NA; k++)
                    aid[k] = k < 3 ? bid[k] : gt_randint(&t->rng, V);
                ref[r].allowed_ids = aid;
                ref[r].num_allowed_ids = NA;
                sampler_ids_to_mask(aid, NA, mrow, W);   /* as engine.c builds the row's mask */
            } else {
                memset(mrow, 0xff, (size_t)W * 4);
            }
            if (has_grammar) {                     /* a grammar: the reference sees it as such */
                ref[r].allowed = grammar;
                for (int w = 0; w < W; w++)
                    mrow[w] &= grammar[w];
            }
            rows[r].allowed = has_ids || has_grammar ? mrow : NULL;
            rows[r].allowed_ids = NULL;
            rows[r].num_allowed_ids = 0;
        }
    }
    for (int r = 0; r < N; r++)
        sampler_sample_row(l + (size_t)r * V, V, &ref[r], &rr[r], scratch);
    if (!sample_both(t, l, N, V, rows, rc, rg))
        goto out;
    for (int r = 0; r < N; r++) {
        const uint32_t *m = rows[r].allowed;
        int tok = rg[r].token;

        cpu_bad += rc[r].token != rr[r].token;
        mismatch += rg[r].token != rr[r].token;
        outside += m && !(m[tok >> 5] >> (tok & 31) & 1);
        if (ref[r].temperature == 0.0f)
            gt_check(t, rg[r].token == rr[r].token, "row %d (greedy): cuda %d, cpu %d", r, rg[r].token,
                     rr[r].token);
    }
    gt_check(t, cpu_bad == 0, "%d rows: the cpu backend with the mask differs from the id list", cpu_bad);
    gt_check(t, outside == 0, "%d rows drew a token outside allowed_token_ids", outside);
    gt_check(t, mismatch <= 1, "%d of %d rows differ from the cpu", mismatch, N);
    gt_note(t, "%d rows, vocab %d, bias lists of %d, allowed lists of %d: %d differ", N, V, NB, NA, mismatch);
out:
    free(l);
    free(scratch);
    free(masks);
    free(grammar);
    free(ids);
    free(bias);
    free(ref);
    free(rows);
    free(rr);
    free(rc);
    free(rg);
}

const struct gt_case gt_cases_sampling[] = {
    { "sampling_grammar_masks_leave_out_what_the_cpu_leaves_out", grammar_masks_leave_out_what_the_cpu_leaves_out },
    { "sampling_greedy_equals_argmax_of_cpu_logits", greedy_equals_argmax_of_cpu_logits },
    { "sampling_logit_bias_and_allowed_ids_equal_cpu", logit_bias_and_allowed_ids_equal_cpu },
    { "sampling_seeded_draws_equal_cpu", seeded_sampling_equals_cpu },
    { "sampling_draws_cover_exactly_the_kept_set", sampled_tokens_cover_exactly_the_kept_set },
    { "sampling_penalties_and_bans_move_the_argmax", penalties_and_bans_move_the_argmax },
    { "sampling_long_histories_and_clean_counts", long_histories_and_counts_scratch_stay_consistent },
    { "sampling_logprobs_and_top20_match_cpu", logprobs_and_top20_match_cpu },
    { NULL, NULL },
};
#endif
