/* cmd_bench.c — `osprey bench`: offline throughput on the engine (no HTTP). N random
 * prompts are submitted at once (ignore_eos, so every request makes exactly its output
 * length) and the run prints requests/s, output tokens/s and total tokens/s, plus TTFT and
 * time per output token percentiles and the mean decode step time. Figures are printed,
 * never asserted. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "engine/engine.h"
#include "engine/model/model.h"
#include "engine/base/rng.h"    /* rng_below: the prompts and lengths */
#include "engine/base/util.h"
#include "server/cli.h"
#include "server/commands.h"
#include "server/engine_opts.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: osprey bench --model DIR [options]\n\n"
        "Offline throughput: submits --num-prompts random prompts at once and waits for all.\n"
        "Lengths are fixed, or drawn uniformly from [--input-len, --input-len-max] and\n"
        "[--output-len, --output-len-max] when the maxima are given.\n\n"
        "  --num-prompts N                  requests (default 64)\n"
        "  --input-len N                    prompt tokens (default 128)\n"
        "  --input-len-max N                draw prompt lengths from [input-len, N]\n"
        "  --output-len N                   output tokens per request (default 128)\n"
        "  --output-len-max N               draw output lengths from [output-len, N]\n"
        "  --temperature T                  sampling temperature (default 1; 0 = greedy)\n"
        "  --seed S                         prompts and sampling seed (default 0)\n"
        "  --no-prefix-caching              the same as --no-enable-prefix-caching\n\n"
        "Engine options, as `osprey serve` reads them (--max-model-len 0: input + output\n"
        "maxima):\n");
    cli_print_engine_help(f);
}

struct bench_req {
    double arrival_s, first_s, last_s;
    int num_out;
};

struct bench {
    pthread_mutex_t m;
    pthread_cond_t c;
    int pending, failed;
};

struct ctx {
    struct bench *b;
    struct bench_req *r;
};

static void output_cb(void *user, const struct engine_output *o)
{
    struct ctx *c = user;

    c->r->num_out = o->num_output_tokens;
    c->r->arrival_s = o->arrival_s;
    c->r->first_s = o->first_token_s;
    if (o->num_tokens)
        c->r->last_s = o->now_s;
    if (o->finished) {
        pthread_mutex_lock(&c->b->m);
        c->b->pending--;
        if (o->finish_reason != FINISH_LENGTH)
            c->b->failed++;
        pthread_cond_signal(&c->b->c);
        pthread_mutex_unlock(&c->b->m);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *sorted, int n, double p)
{
    return n ? sorted[MIN(n - 1, (int)floor(p / 100.0 * n))] : 0;
}

int cmd_bench(int argc, char **argv)
{
    int num_prompts = 64, in_len = 128, in_max = 0, out_len = 128, out_max = 0;
    float temperature = 1.0f;
    uint64_t seed = 0, rng;
    bool no_prefix = false;
    struct bench b = { .m = PTHREAD_MUTEX_INITIALIZER, .c = PTHREAD_COND_INITIALIZER };
    struct osprey_config c;
    struct engine_options eo;
    struct engine_stats st0, st1;
    struct engine *e = NULL;
    struct bench_req *reqs = NULL;
    struct ctx *ctxs = NULL;
    int32_t *prompt = NULL;
    char err[ERR_LEN] = "";
    int rc = 1;

    const struct cli_opt opts[] = {
        { "--num-prompts", CLI_INT, &num_prompts }, { "--input-len", CLI_INT, &in_len },
        { "--input-len-max", CLI_INT, &in_max }, { "--output-len", CLI_INT, &out_len },
        { "--output-len-max", CLI_INT, &out_max }, { "--temperature", CLI_FLOAT, &temperature },
        { "--seed", CLI_U64, &seed }, { "--no-prefix-caching", CLI_BOOL, &no_prefix },
    };
    config_init(&c);
    int prc = cli_parse("bench", argc, argv, opts, (int)ARRAY_LEN(opts), &c, usage);
    if (!prc && no_prefix)
        c.enable_prefix_caching = false;
    if (!prc && config_validate(&c, err) != 0) {
        fprintf(stderr, "osprey bench: %s (--help)\n", err);
        prc = 2;
    }
    if (prc) {
        config_fini(&c);
        return prc == 1 ? 0 : 2;
    }
    if (in_max < in_len)
        in_max = in_len;
    if (out_max < out_len)
        out_max = out_len;
    if (num_prompts < 1 || in_len < 1 || out_len < 1 || temperature < 0) {
        fprintf(stderr, "osprey bench: --num-prompts, --input-len and --output-len must be >= 1, "
                "--temperature >= 0\n");
        config_fini(&c);
        return 2;
    }

    engine_opts_from_config(&eo, &c, NULL);
    if (!c.max_model_len)
        eo.max_model_len = in_max + out_max;
    eo.max_waiting = num_prompts + 1;
    eo.seed = seed + 1;
    double t_load = now_s();
    if (engine_create(&e, &eo, err) != 0 || engine_start(e, err) != 0)
        goto out;
    t_load = now_s() - t_load;
    int vocab = engine_model_config(e)->vocab_size;

    reqs = calloc(num_prompts, sizeof *reqs);
    ctxs = calloc(num_prompts, sizeof *ctxs);
    prompt = malloc(in_max * sizeof *prompt);
    if (!reqs || !ctxs || !prompt) {
        errf(err, "out of memory");
        goto out;
    }
    rng = seed;
    b.pending = num_prompts;
    engine_get_stats(e, &st0);
    double t0 = now_s();
    long total_in = 0, total_out_planned = 0;
    for (int i = 0; i < num_prompts; i++) {
        struct gen_params p;
        uint64_t id;
        int n = in_len + (int)rng_below(&rng, (uint64_t)(in_max - in_len + 1));

        gen_params_init(&p);
        p.max_tokens = out_len + (int)rng_below(&rng, (uint64_t)(out_max - out_len + 1));
        p.temperature = temperature;
        p.ignore_eos = true;
        p.has_seed = true;
        p.seed = seed + i;
        /* random ids away from the first few (often special) tokens */
        for (int k = 0; k < n; k++)
            prompt[k] = 10 + (int32_t)rng_below(&rng, (uint64_t)(vocab - 10));
        ctxs[i] = (struct ctx){ .b = &b, .r = &reqs[i] };
        struct engine_request_desc d = { .prompt = prompt, .num_prompt = n, .params = &p,
                                         .cb = output_cb, .user = &ctxs[i] };
        if (engine_submit(e, &d, &id, err) != 0) {
            pthread_mutex_lock(&b.m);
            b.pending -= num_prompts - i;
            pthread_mutex_unlock(&b.m);
            goto wait;
        }
        total_in += n;
        total_out_planned += p.max_tokens;
    }
wait:
    pthread_mutex_lock(&b.m);
    while (b.pending > 0)
        pthread_cond_wait(&b.c, &b.m);
    pthread_mutex_unlock(&b.m);
    double elapsed = now_s() - t0;
    engine_get_stats(e, &st1);
    if (err[0])
        goto out;

    long total_out = 0;
    double *ttft = malloc(num_prompts * sizeof *ttft), *tpot = malloc(num_prompts * sizeof *tpot);
    int n_tpot = 0;
    for (int i = 0; i < num_prompts; i++) {
        total_out += reqs[i].num_out;
        ttft[i] = reqs[i].first_s - reqs[i].arrival_s;
        if (reqs[i].num_out > 1)
            tpot[n_tpot++] = (reqs[i].last_s - reqs[i].first_s) / (reqs[i].num_out - 1);
    }
    qsort(ttft, num_prompts, sizeof *ttft, cmp_double);
    qsort(tpot, n_tpot, sizeof *tpot, cmp_double);
    uint64_t dsteps = st1.num_decode_steps - st0.num_decode_steps;
    double dsec = st1.decode_step_s - st0.decode_step_s;
    double dmask = st1.decode_mask_s - st0.decode_mask_s, dhost = st1.decode_host_s - st0.decode_host_s;

    printf("osprey bench: %s, %d prompts, input %d..%d, output %d..%d tokens, %s%s\n", c.model,
           num_prompts, in_len, in_max, out_len, out_max, c.enforce_eager ? "eager" : "graphs where captured",
           c.fused_rope_cache ? "" : ", unfused rope/cache");
    printf("engine start-up:   %.2f s\n", t_load);
    printf("elapsed:           %.3f s\n", elapsed);
    printf("requests/s:        %.2f\n", num_prompts / elapsed);
    printf("output tokens/s:   %.1f\n", total_out / elapsed);
    printf("total tokens/s:    %.1f\n", (total_in + total_out) / elapsed);
    printf("TTFT ms:           p50 %.1f  p90 %.1f  p99 %.1f\n", 1e3 * pct(ttft, num_prompts, 50),
           1e3 * pct(ttft, num_prompts, 90), 1e3 * pct(ttft, num_prompts, 99));
    printf("TPOT ms:           p50 %.2f  p90 %.2f  p99 %.2f\n", 1e3 * pct(tpot, n_tpot, 50),
           1e3 * pct(tpot, n_tpot, 90), 1e3 * pct(tpot, n_tpot, 99));
    printf("decode steps:      %llu, mean %.3f ms\n", (unsigned long long)dsteps,
           dsteps ? 1e3 * dsec / dsteps : 0.0);
    /* the engine thread's own work in those steps: the device idles through it (issue 13's
     * "host time per step", which async scheduling would hide) */
    printf("decode host:       mean %.3f ms a step, %.1f%% of the step\n",
           dsteps ? 1e3 * dhost / dsteps : 0.0,
           dsec + dmask + dhost > 0 ? 100.0 * dhost / (dsec + dmask + dhost) : 0.0);
    printf("steps:             %llu, preemptions %llu\n",
           (unsigned long long)(st1.num_steps - st0.num_steps),
           (unsigned long long)(st1.num_preemptions - st0.num_preemptions));
    free(ttft);
    free(tpot);
    if (b.failed || total_out != total_out_planned) {
        errf(err, "%d requests did not finish normally (%ld of %ld output tokens)", b.failed,
             total_out, total_out_planned);
        goto out;
    }
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "osprey bench: %s\n", err);
    engine_destroy(e);
    free(reqs);
    free(ctxs);
    free(prompt);
    config_fini(&c);
    return rc;
}
