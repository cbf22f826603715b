/* bench_grammar_batch.c — what grammar masks cost a decode step at batch B (issue 12's
 * target: at most 5% at batch 64 with every request under a schema of its own), printed,
 * never asserted. One engine, the same random prompts, three batches of B requests that
 * each decode --steps tokens:
 *   free  no grammar (ignore_eos: every request makes all its tokens);
 *   cold  B distinct JSON Schemas generated here, compiled just before the batch, so every
 *         mask is made on first use (the trie walks);
 *   warm  the same B grammars again with new seeds: most masks come from the grammars'
 *         caches, as for an application that sends the same schemas again.
 * For each: the step period (between two deliveries of the batch's tokens, over the steps
 * where all B requests run), the runner's part of it (engine stats: runner_launch and
 * runner_finish: staging, forward, mask upload, sampling with the mask applied, the wait
 * for the device), the masks the engine thread made between launch and finish (while the
 * device ran the forward, on cuda), the part of those made in steps whose forward was still
 * running when they were done (wholly hidden behind it), and the rest of the period (the
 * automata advanced after the step, deliveries). Then the cold and warm batches' tokens are
 * replayed through fresh matchers, as the engine thread runs them, to time the masks alone.
 *   make build/bench-grammar-batch
 *   build/bench-grammar-batch --model DIR [--batch 64] [--steps 64] [engine options]
 *   build/bench-grammar-batch --gen PRESET|config.json [--tokenizer DIR] --model DIR ...
 *     (writes the random-weight model to DIR first, as `osprey gen-model` would) */
#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "engine/base/rng.h"
#include "engine/base/util.h"
#include "engine/engine.h"
#include "engine/grammar/grammar.h"
#include "engine/model/gen_model.h"
#include "engine/model/model.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/cli.h"
#include "server/engine_opts.h"

enum { WARMUP_STEPS = 3 };   /* left out of the figures: the first replays, the first masks */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: bench-grammar-batch --model DIR [options]\n\n"
        "Decode steps at batch --batch without grammars, then with a different generated JSON\n"
        "Schema per request (cold: masks made on first use; warm: the same grammars again),\n"
        "and what the masks add to the step.\n\n"
        "  --batch N          requests per batch (default 64)\n"
        "  --steps N          output tokens per request (default 64)\n"
        "  --input-len N      prompt tokens (default 32)\n"
        "  --seed S           prompts, schemas and sampling seed (default 1)\n"
        "  --repeat N         rounds of free, cold and warm batches; medians printed (default 3)\n"
        "  --grammar-threads N  threads filling a step's masks (engine_options; default 0: auto)\n"
        "  --open-strings     strings without minLength/maxLength (default: bounded)\n"
        "  --gen CONFIG       first write a random-weight model of this preset or config.json\n"
        "                     into --model (as osprey gen-model)\n"
        "  --tokenizer DIR    with --gen: copy this tokenizer (default: a generated BPE)\n\n"
        "Engine options, as `osprey serve` reads them:\n");
    cli_print_engine_help(f);
}

/* ---- the schemas: objects of 10 to 14 required members of mixed kinds ---- */

static const char *const WORDS[] = {
    "alpha", "bravo", "cargo", "delta", "ember", "fable", "gamma", "harbor", "iris", "jolt",
    "kite", "lumen", "maple", "nadir", "onyx", "prism", "quartz", "raven", "sable", "tundra",
};

struct sbuf {
    char *p;
    size_t len, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            abort();
        if (b->p && b->len + (size_t)n < b->cap)
            break;
        b->cap = (b->cap + (size_t)n + 1) * 2;
        if (!(b->p = realloc(b->p, b->cap)))
            abort();   /* a benchmark: out of memory ends it */
    }
    b->len += (size_t)n;
}

static const char *word(uint64_t *rng)
{
    return WORDS[rng_below(rng, ARRAY_LEN(WORDS))];
}

/* One member's schema. With bounded strings (the default) every member is reached: a
 * random-weight model rarely closes an unbounded string, and the bounds are long enough
 * that the batch runs --steps tokens before any output is complete; each character of a
 * bounded string is a grammar position of its own, so nearly every step of a request meets
 * a mask not made before (the costly case). With open strings (--open-strings) the model
 * stays in the first string member, one position whose mask is made once: the cheap case,
 * a model writing free text into a JSON field. */
static void member(struct sbuf *b, uint64_t *rng, int depth, bool open)
{
    switch (rng_below(rng, depth ? 5 : 7)) {
    case 0: case 1: {
        int lo = 16 + (int)rng_below(rng, 24), hi = lo + 8 + (int)rng_below(rng, 24);
        if (open)
            sb_printf(b, "{\"type\":\"string\"}");
        else
            sb_printf(b, "{\"type\":\"string\",\"minLength\":%d,\"maxLength\":%d}", lo, hi);
        break;
    }
    case 2: {
        int n = 2 + (int)rng_below(rng, 4);
        sb_printf(b, "{\"enum\":[");
        for (int i = 0; i < n; i++)
            sb_printf(b, "%s\"%s-%d\"", i ? "," : "", word(rng), (int)rng_below(rng, 100));
        sb_printf(b, "]}");
        break;
    }
    case 3: {
        long lo = -(long)rng_below(rng, 1000);
        sb_printf(b, "{\"type\":\"integer\",\"minimum\":%ld,\"maximum\":%ld}", lo, lo + 10 + (long)rng_below(rng, 1000000));
        break;
    }
    case 4:
        sb_printf(b, rng_below(rng, 2) ? "{\"type\":\"boolean\"}" : "{\"type\":\"number\"}");
        break;
    case 5:
        if (open)
            sb_printf(b, "{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"minItems\":2,\"maxItems\":4}");
        else
            sb_printf(b, "{\"type\":\"array\",\"items\":{\"type\":\"string\",\"minLength\":8,\"maxLength\":%d},"
                      "\"minItems\":2,\"maxItems\":4}", 12 + (int)rng_below(rng, 12));
        break;
    default: {
        int n = 2 + (int)rng_below(rng, 2);
        sb_printf(b, "{\"type\":\"object\",\"properties\":{");
        for (int i = 0; i < n; i++) {
            sb_printf(b, "%s\"%s\":", i ? "," : "", WORDS[i]);
            member(b, rng, depth + 1, open);
        }
        sb_printf(b, "},\"required\":[");
        for (int i = 0; i < n; i++)
            sb_printf(b, "%s\"%s\"", i ? "," : "", WORDS[i]);
        sb_printf(b, "],\"additionalProperties\":false}");
    }
    }
}

/* Schema k: distinct from every other (its member names carry k). Malloc'd. */
static char *make_schema(uint64_t seed, int k, bool open)
{
    uint64_t rng = rng_at(seed, (uint64_t)k + 1);
    int n = 10 + (int)rng_below(&rng, 5);
    struct sbuf b = { 0 };

    sb_printf(&b, "{\"type\":\"object\",\"properties\":{");
    for (int i = 0; i < n; i++) {
        sb_printf(&b, "%s\"%s_%d\":", i ? "," : "", WORDS[(k + i) % ARRAY_LEN(WORDS)], k);
        member(&b, &rng, 0, open);
    }
    sb_printf(&b, "},\"required\":[");
    for (int i = 0; i < n; i++)
        sb_printf(&b, "%s\"%s_%d\"", i ? "," : "", WORDS[(k + i) % ARRAY_LEN(WORDS)], k);
    sb_printf(&b, "],\"additionalProperties\":false}");
    return b.p;
}

/* ---- one batch ---- */

struct req {
    double *t;             /* [steps] when each token was delivered */
    int32_t *tok;          /* [steps] the tokens */
    int num_out;
    enum finish_reason finish;
    const char *error;
};

struct batch {
    pthread_mutex_t m;
    pthread_cond_t c;
    int pending;
    int steps;
};

struct ctx {
    struct batch *b;
    struct req *r;
};

static void output_cb(void *user, const struct engine_output *o)
{
    struct ctx *c = user;
    struct req *r = c->r;

    for (int i = 0; i < o->num_tokens && r->num_out < c->b->steps; i++) {
        r->t[r->num_out] = o->now_s;
        r->tok[r->num_out++] = o->token_ids[i];
    }
    if (o->finished) {
        pthread_mutex_lock(&c->b->m);
        r->finish = o->finish_reason;
        r->error = o->error ? "failed" : NULL;
        c->b->pending--;
        pthread_cond_signal(&c->b->c);
        pthread_mutex_unlock(&c->b->m);
    }
}

struct figures {
    double period_mean, period_p50;    /* s per step, over the steps where all requests ran */
    double runner;                     /* s per decode step, runner launch + finish (engine stats) */
    double masks;                      /* s per decode step, masks made between launch and finish */
    double hidden;                     /* s per decode step, of masks: in steps whose forward was
                                        * still running when they were done */
    int steps_measured;                /* steps in the period figures */
    int ended_early;                   /* requests whose grammar completed before --steps */
    int failed;
};

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Runs B requests of prompts[i] (input_len ids each) under grammars[i] (or none) and fills
 * f; reqs[i] keep their tokens. Returns 0 or -1 with a message. */
static int run_batch(struct engine *e, int B, int steps, int input_len, const int32_t *prompts,
                     struct grammar **grammars, uint64_t seed, struct req *reqs, struct figures *f,
                     char *err)
{
    struct batch b = { .m = PTHREAD_MUTEX_INITIALIZER, .c = PTHREAD_COND_INITIALIZER,
                       .pending = B, .steps = steps };
    struct ctx *ctxs = calloc((size_t)B, sizeof *ctxs);
    double *end = calloc((size_t)steps, sizeof *end), *period = calloc((size_t)steps, sizeof *period);
    struct engine_stats s0, s1;
    int min_out = steps, submitted = 0, rc = -1;

    memset(f, 0, sizeof *f);
    if (!ctxs || !end || !period) {
        errf(err, "out of memory");
        goto out;
    }
    engine_get_stats(e, &s0);
    for (int i = 0; i < B; i++) {
        struct gen_params p;
        uint64_t id;

        reqs[i].num_out = 0;
        reqs[i].error = NULL;
        gen_params_init(&p);
        p.max_tokens = steps;
        p.temperature = 1.0f;
        p.has_seed = true;
        p.seed = seed + (uint64_t)i;
        p.grammar = grammars ? grammars[i] : NULL;
        p.ignore_eos = !grammars;   /* a grammar allows EOS only where its output may end */
        ctxs[i] = (struct ctx){ .b = &b, .r = &reqs[i] };
        struct engine_request_desc d = { .prompt = prompts + (size_t)i * input_len,
                                         .num_prompt = input_len, .params = &p,
                                         .cb = output_cb, .user = &ctxs[i] };
        if (engine_submit(e, &d, &id, err) != 0)
            break;
        submitted++;
    }
    pthread_mutex_lock(&b.m);
    b.pending -= B - submitted;
    while (b.pending > 0)
        pthread_cond_wait(&b.c, &b.m);
    pthread_mutex_unlock(&b.m);
    engine_get_stats(e, &s1);
    if (submitted < B)
        goto out;

    /* Step k ends when its last delivery is made (one token per request per step). */
    for (int i = 0; i < B; i++) {
        if (reqs[i].finish == FINISH_ERROR || reqs[i].error)
            f->failed++;
        else if (reqs[i].num_out < steps)
            f->ended_early++;
        min_out = MIN(min_out, reqs[i].num_out);
        for (int k = 0; k < reqs[i].num_out; k++)
            end[k] = MAX(end[k], reqs[i].t[k]);
    }
    for (int k = WARMUP_STEPS; k + 1 < min_out; k++) {
        period[f->steps_measured] = end[k + 1] - end[k];
        f->period_mean += period[f->steps_measured++];
    }
    if (f->steps_measured) {
        f->period_mean /= f->steps_measured;
        qsort(period, (size_t)f->steps_measured, sizeof *period, cmp_d);
        f->period_p50 = period[f->steps_measured / 2];
    }
    if (s1.num_decode_steps > s0.num_decode_steps) {
        double n = (double)(s1.num_decode_steps - s0.num_decode_steps);

        f->runner = (s1.decode_step_s - s0.decode_step_s) / n;
        f->masks = (s1.decode_mask_s - s0.decode_mask_s) / n;
        f->hidden = (s1.decode_mask_hidden_s - s0.decode_mask_hidden_s) / n;
    }
    rc = 0;
out:
    free(ctxs);
    free(end);
    free(period);
    return rc;
}

/* ---- the masks alone: the batch's tokens again, through fresh matchers ---- */

struct replay {
    double fill, accept;   /* s per step, summed over the batch's rows, over measured steps */
};

/* As the engine thread does for each row of a step: clear the row, fill the grammar's mask,
 * then (after the step) advance the automaton over the sampled token. */
static int replay_batch(struct grammar **g, const struct req *reqs, int B, int steps,
                        uint32_t *mask, int words, struct replay *out, char *err)
{
    struct grammar_matcher **m = calloc((size_t)B, sizeof *m);
    int measured = 0, rc = -1;

    memset(out, 0, sizeof *out);
    if (!m) {
        errf(err, "out of memory");
        return -1;
    }
    for (int i = 0; i < B; i++)
        if (grammar_matcher_create(&m[i], g[i])) {
            errf(err, "matcher: out of memory");
            goto out;
        }
    for (int k = 0; k < steps; k++) {
        double fill = 0, accept = 0;
        int rows = 0;
        for (int i = 0; i < B; i++) {
            if (k >= reqs[i].num_out)
                continue;
            double t0 = now_s();
            memset(mask, 0, (size_t)words * sizeof *mask);
            if (grammar_matcher_fill_mask(m[i], mask)) {
                errf(err, "fill_mask failed on request %d", i);
                goto out;
            }
            double t1 = now_s();
            int32_t t = reqs[i].tok[k];
            /* EOS (no bytes) ends the output: the engine does not advance over it */
            if (grammar_matcher_accept_token(m[i], t) && !grammar_matcher_is_accepting(m[i])) {
                errf(err, "request %d: token %d at %d does not fit its grammar", i, t, k);
                goto out;
            }
            accept += now_s() - t1;
            fill += t1 - t0;
            rows++;
        }
        if (k >= WARMUP_STEPS && rows == B) {
            out->fill += fill;
            out->accept += accept;
            measured++;
        }
    }
    if (measured) {
        out->fill /= measured;
        out->accept /= measured;
    }
    rc = 0;
out:
    for (int i = 0; i < B; i++)
        grammar_matcher_destroy(m[i]);
    free(m);
    return rc;
}

static int compile_all(struct grammar **g, char *const *schemas, int B,
                       const struct grammar_vocab *v, double *secs, char *err)
{
    double t0 = now_s();

    for (int i = 0; i < B; i++)
        if (grammar_compile(&g[i], GRAMMAR_JSON_SCHEMA, schemas[i], strlen(schemas[i]), v, err))
            return -1;
    *secs = now_s() - t0;
    return 0;
}

/* The median of rounds' figures of one kind (k: 0 free, 1 cold, 2 warm), field by field. */
static void median_of(const struct figures *fig, int rounds, int k, struct figures *out)
{
    double v[5][64];
    int n = MIN(rounds, 64);

    *out = fig[k];
    for (int r = 0; r < n; r++) {
        v[0][r] = fig[3 * r + k].period_mean;
        v[1][r] = fig[3 * r + k].period_p50;
        v[2][r] = fig[3 * r + k].runner;
        v[3][r] = fig[3 * r + k].masks;
        v[4][r] = fig[3 * r + k].hidden;
        out->ended_early = MAX(out->ended_early, fig[3 * r + k].ended_early);
        out->failed = MAX(out->failed, fig[3 * r + k].failed);
    }
    for (int j = 0; j < 5; j++)
        qsort(v[j], (size_t)n, sizeof(double), cmp_d);
    out->period_mean = v[0][n / 2];
    out->period_p50 = v[1][n / 2];
    out->runner = v[2][n / 2];
    out->masks = v[3][n / 2];
    out->hidden = v[4][n / 2];
}

static void print_row(const char *name, const struct figures *f, const struct figures *free_run)
{
    printf("%-5s %9.3f %9.3f %10.3f %9.3f %9.3f %10.3f %+9.1f%% %+9.1f%%   %d/%d/%d\n", name,
           1e3 * f->period_mean, 1e3 * f->period_p50, 1e3 * f->runner, 1e3 * f->masks,
           1e3 * f->hidden, 1e3 * (f->period_mean - f->runner - f->masks),
           free_run ? 100.0 * (f->period_mean / free_run->period_mean - 1.0) : 0.0,
           free_run ? 100.0 * (f->period_p50 / free_run->period_p50 - 1.0) : 0.0,
           f->steps_measured, f->ended_early, f->failed);
}

int main(int argc, char **argv)
{
    int B = 64, steps = 64, input_len = 32, repeat = 3, grammar_threads = 0, words;
    uint64_t seed = 1, rng;
    const char *gen = NULL, *gen_tok = NULL;
    bool open_strings = false;
    struct osprey_config c;
    struct engine_options eo;
    struct engine *e = NULL;
    struct tokenizer *tok = NULL;
    struct grammar_vocab *vocab = NULL;
    struct grammar **cold = NULL, **fresh = NULL;
    struct req *free_reqs = NULL, *cold_reqs = NULL, *warm_reqs = NULL;
    char **schemas = NULL;
    int32_t *prompts = NULL;
    uint32_t *mask = NULL;
    struct figures ff, fc, fw;
    struct replay rc_, rw;
    char err[ERR_LEN] = "";
    int rc = 1;

    const struct cli_opt opts[] = {
        { "--batch", CLI_INT, &B }, { "--steps", CLI_INT, &steps },
        { "--input-len", CLI_INT, &input_len }, { "--seed", CLI_U64, &seed },
        { "--repeat", CLI_INT, &repeat }, { "--grammar-threads", CLI_INT, &grammar_threads },
        { "--open-strings", CLI_BOOL, &open_strings }, { "--gen", CLI_STR, &gen },
        { "--tokenizer", CLI_STR, &gen_tok },
    };
    setvbuf(stdout, NULL, _IOLBF, 0);   /* a run cut short by a timeout keeps what it printed */
    config_init(&c);
    int prc = cli_parse("bench-grammar-batch", argc, argv, opts, (int)ARRAY_LEN(opts), &c, usage);
    if (!prc && (B < 1 || steps <= WARMUP_STEPS + 2 || input_len < 1 || repeat < 1 || repeat > 64)) {
        fprintf(stderr, "bench-grammar-batch: --batch >= 1, --steps >= %d, --input-len >= 1, "
                "--repeat 1..64\n",
                WARMUP_STEPS + 3);
        prc = 2;
    }
    if (!prc && config_validate(&c, err) != 0) {
        fprintf(stderr, "bench-grammar-batch: %s (--help)\n", err);
        prc = 2;
    }
    if (prc) {
        config_fini(&c);
        return prc == 1 ? 0 : 2;
    }
    if (gen) {
        struct gen_model_opts go = { .config = gen, .out_dir = c.model, .seed = seed,
                                     .tokenizer_dir = gen_tok };
        struct gen_model_stats gs;
        if (gen_model_write(&go, &gs, err))
            goto out;
        printf("gen-model %s -> %s: %.2f GB of weights in %.1f s\n", gen, c.model,
               gs.weight_bytes / 1e9, gs.seconds);
    }

    /* the tokenizer: the engine's detokenizer and the grammars' vocabulary */
    double t0 = now_s();
    if (tokenizer_load(&tok, c.model, err) || grammar_vocab_create(&vocab, tok, err))
        goto out;
    double t_vocab = now_s() - t0;
    engine_opts_from_config(&eo, &c, tok);
    if (!c.max_model_len)
        eo.max_model_len = input_len + steps + 16;
    eo.max_waiting = B + 1;
    eo.grammar_threads = grammar_threads;
    eo.seed = seed;
    t0 = now_s();
    if (engine_create(&e, &eo, err) || engine_start(e, err))
        goto out;
    double t_load = now_s() - t0;
    int model_vocab = engine_model_config(e)->vocab_size;
    words = (MAX(model_vocab, grammar_vocab_size(vocab)) + 31) / 32;

    schemas = calloc((size_t)B, sizeof *schemas);
    cold = calloc((size_t)B, sizeof *cold);
    fresh = calloc((size_t)B, sizeof *fresh);
    prompts = malloc((size_t)B * input_len * sizeof *prompts);
    mask = malloc((size_t)words * sizeof *mask);
    free_reqs = calloc((size_t)B, sizeof *free_reqs);
    cold_reqs = calloc((size_t)B, sizeof *cold_reqs);
    warm_reqs = calloc((size_t)B, sizeof *warm_reqs);
    if (!schemas || !cold || !fresh || !prompts || !mask || !free_reqs || !cold_reqs || !warm_reqs) {
        errf(err, "out of memory");
        goto out;
    }
    struct req *all[] = { free_reqs, cold_reqs, warm_reqs };
    for (size_t a = 0; a < ARRAY_LEN(all); a++)
        for (int i = 0; i < B; i++)
            if (!(all[a][i].t = calloc((size_t)steps, sizeof(double))) ||
                !(all[a][i].tok = calloc((size_t)steps, sizeof(int32_t)))) {
                errf(err, "out of memory");
                goto out;
            }
    rng = seed;
    for (int i = 0; i < B * input_len; i++)   /* away from the first (often special) ids */
        prompts[i] = 10 + (int32_t)rng_below(&rng, (uint64_t)(MIN(model_vocab, 100000) - 10));
    size_t schema_bytes = 0;
    for (int i = 0; i < B; i++) {
        schemas[i] = make_schema(seed, i, open_strings);
        schema_bytes += strlen(schemas[i]);
    }

    printf("bench-grammar-batch: %s, backend %s, batch %d, %d output tokens, prompts of %d, "
           "grammar threads %d (0: auto), %s strings\n", c.model, c.backend ? c.backend : "auto", B,
           steps, input_len, grammar_threads, open_strings ? "open" : "bounded");
    printf("vocabulary %d ids (mask %d bytes a row, %.2f MB a step); trie %.0f ms; engine start %.1f s\n",
           model_vocab, words * 4, (double)words * 4 * B / 1e6, 1e3 * t_vocab, t_load);

    /* A free batch first warms the engine (graph replays, allocator). Then --repeat rounds
     * of free, cold (grammars compiled anew: empty mask caches) and warm (the same grammars,
     * new seeds), interleaved so that a machine busy with something else for a while
     * weighs on the three alike; each figure is the median of its rounds. */
    double t_compile = 0;
    struct figures *fig = calloc((size_t)repeat * 3, sizeof *fig);
    if (!fig || run_batch(e, B, steps, input_len, prompts, NULL, seed + 1000, free_reqs, &ff, err))
        goto out;
    for (int r = 0; r < repeat; r++) {
        uint64_t s = seed + 1000 * (uint64_t)(r + 2);
        for (int i = 0; cold && i < B; i++) {
            grammar_unref(cold[i]);
            cold[i] = NULL;
        }
        if (compile_all(cold, schemas, B, vocab, &t_compile, err) ||
            run_batch(e, B, steps, input_len, prompts, NULL, s, free_reqs, &fig[3 * r], err) ||
            run_batch(e, B, steps, input_len, prompts, cold, s + 100, cold_reqs, &fig[3 * r + 1], err) ||
            run_batch(e, B, steps, input_len, prompts, cold, s + 200, warm_reqs, &fig[3 * r + 2], err)) {
            free(fig);
            goto out;
        }
    }
    printf("%d schemas (%zu bytes of JSON in all) compiled in %.1f ms\n", B, schema_bytes, 1e3 * t_compile);
    median_of(fig, repeat, 0, &ff);
    median_of(fig, repeat, 1, &fc);
    median_of(fig, repeat, 2, &fw);
    free(fig);

    printf("\nmedians of %d rounds\n", repeat);
    printf("run   step mean  step p50  runner/step masks/step hidden/step rest/step  vs free (mean, p50)  steps/early/failed\n");
    printf("      (ms)       (ms)      (ms)        (ms)      (ms)       (ms)\n");
    print_row("free", &ff, NULL);
    print_row("cold", &fc, &ff);
    print_row("warm", &fw, &ff);
    printf("runner/step: engine stats (runner_launch + runner_finish: staging, forward, mask upload,\n"
           "sampling, the wait for the device) over all decode steps; masks/step: the engine thread\n"
           "making masks between launch and finish (while the forward runs, on cuda); hidden/step: of\n"
           "those, the masks of steps whose forward still ran when they were done (wholly hidden; 0 on\n"
           "cpu, whose launch runs the forward); rest: automata after the step, deliveries.\n");

    /* the masks alone: cold replays the cold batch on newly compiled grammars (empty caches);
     * warm replays the warm batch on the grammars that ran both batches */
    if (compile_all(fresh, schemas, B, vocab, &t_compile, err) ||
        replay_batch(fresh, cold_reqs, B, steps, mask, words, &rc_, err) ||
        replay_batch(cold, warm_reqs, B, steps, mask, words, &rw, err))
        goto out;
    printf("\nmasks alone, replayed on this thread (a step's %d rows):\n", B);
    printf("  cold: fill %.3f ms/step (%.1f%% of the free step), advance %.3f ms/step\n",
           1e3 * rc_.fill, 100.0 * rc_.fill / ff.period_mean, 1e3 * rc_.accept);
    printf("  warm: fill %.3f ms/step (%.1f%% of the free step), advance %.3f ms/step\n",
           1e3 * rw.fill, 100.0 * rw.fill / ff.period_mean, 1e3 * rw.accept);
    printf("  runner with masks - without: %.3f ms/step (cold batch), %.3f ms/step (warm batch)\n",
           1e3 * (fc.runner - ff.runner), 1e3 * (fw.runner - ff.runner));
    int nm = 0, nr = 0, ne = 0;
    for (int i = 0; i < B; i++) {
        int m, r, el;
        grammar_stats(cold[i], &m, &r, &el);
        nm += m;
        nr += r;
        ne += el;
    }
    printf("  grammars: %d rules, %d elements, %d masks cached after both batches\n", nr, ne, nm);
    {
        int nt;
        size_t tb;
        grammar_vocab_stats(vocab, &nt, &tb);
        printf("  repetition tables shared by the grammars: %d, %.2f MB\n", nt, tb / 1e6);
    }
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "bench-grammar-batch: %s\n", err);
    engine_destroy(e);
    for (int i = 0; schemas && i < B; i++) {
        free(schemas[i]);
        if (cold)
            grammar_unref(cold[i]);
        if (fresh)
            grammar_unref(fresh[i]);
    }
    struct req *lists[] = { free_reqs, cold_reqs, warm_reqs };
    for (size_t a = 0; a < ARRAY_LEN(lists); a++)
        for (int i = 0; lists[a] && i < B; i++) {
            free(lists[a][i].t);
            free(lists[a][i].tok);
        }
    free(free_reqs);
    free(cold_reqs);
    free(warm_reqs);
    free(schemas);
    free(cold);
    free(fresh);
    free(prompts);
    free(mask);
    grammar_vocab_destroy(vocab);
    tokenizer_destroy(tok);
    config_fini(&c);
    return rc;
}
