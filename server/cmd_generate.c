/* cmd_generate.c — `osprey generate`: one completion offline, through the same engine the
 * daemon runs (scheduler, runner, sampler), printed as text or as token ids. The daemon's
 * integration tests compare their greedy output with this. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "engine/engine.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/base/buf.h"
#include "engine/base/util.h"
#include "server/cli.h"
#include "server/commands.h"
#include "server/engine_opts.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: osprey generate --model DIR (--prompt TEXT | --prompt-ids JSON) [options]\n\n"
        "Generates one completion offline and prints its text (or, with --ids, the generated\n"
        "token ids as a JSON array).\n\n"
        "  --prompt TEXT                    prompt text (tokenized with the model's tokenizer, BOS as it adds)\n"
        "  --prompt-ids JSON                prompt token ids, e.g. '[1, 15043, 3186]'\n"
        "  --max-tokens N                   tokens to generate (default 16)\n"
        "  --temperature T                  0 = greedy (default 0)\n"
        "  --top-p P --top-k K --min-p P    sampling filters (off by default)\n"
        "  --seed S                         sampling seed (default 0)\n"
        "  --ignore-eos                     keep going past the end-of-sequence token\n"
        "  --ids                            print the generated ids as JSON instead of the text\n\n"
        "Engine options, as `osprey serve` reads them (but --max-num-seqs defaults to 1 here:\n"
        "one request):\n");
    cli_print_engine_help(f);
}

struct result {
    pthread_mutex_t m;
    pthread_cond_t c;
    int32_t *ids;
    int num_ids, cap_ids;
    struct buf text;           /* what the engine delivered, NUL-terminated */
    bool done, oom;
    enum finish_reason why;
    char error[ERR_LEN];
};

static void output_cb(void *user, const struct engine_output *o)
{
    struct result *r = user;

    pthread_mutex_lock(&r->m);
    if (r->num_ids + o->num_tokens <= r->cap_ids) {
        memcpy(r->ids + r->num_ids, o->token_ids, o->num_tokens * sizeof *r->ids);
        r->num_ids += o->num_tokens;
    }
    if (o->text_len && buf_put(&r->text, o->text, o->text_len))
        r->oom = true;
    if (o->finished) {
        r->done = true;
        r->why = o->finish_reason;
        if (o->error)
            snprintf(r->error, sizeof r->error, "%s", o->error);
        pthread_cond_signal(&r->c);
    }
    pthread_mutex_unlock(&r->m);
}

int cmd_generate(int argc, char **argv)
{
    const char *prompt = NULL, *prompt_ids = NULL;
    struct osprey_config c;
    struct engine_options eo;
    struct gen_params p;
    struct tokenizer *tok = NULL;
    struct engine *e = NULL;
    struct result res = { .m = PTHREAD_MUTEX_INITIALIZER, .c = PTHREAD_COND_INITIALIZER };
    int32_t *ids = NULL;
    int num_ids = 0, rc = 1, max_tokens = 16, top_k = 0;
    float temperature = 0, top_p = 1, min_p = 0;
    uint64_t seed = 0, id;
    bool ignore_eos = false, print_ids = false;
    char err[ERR_LEN] = "";

    const struct cli_opt opts[] = {
        { "--prompt", CLI_STR, &prompt }, { "--prompt-ids", CLI_STR, &prompt_ids },
        { "--max-tokens", CLI_INT, &max_tokens }, { "--temperature", CLI_FLOAT, &temperature },
        { "--top-p", CLI_FLOAT, &top_p }, { "--top-k", CLI_INT, &top_k },
        { "--min-p", CLI_FLOAT, &min_p }, { "--seed", CLI_U64, &seed },
        { "--ignore-eos", CLI_BOOL, &ignore_eos }, { "--ids", CLI_BOOL, &print_ids },
    };
    config_init(&c);
    c.max_num_seqs = 1;              /* one request: no buffers or graphs for 256 (a flag may ask) */
    int prc = cli_parse("generate", argc, argv, opts, (int)ARRAY_LEN(opts), &c, usage);
    if (!prc && (!c.model || (!prompt == !prompt_ids))) {
        fprintf(stderr, "osprey generate: --model and one of --prompt / --prompt-ids are required (--help)\n");
        prc = 2;
    }
    if (!prc && config_validate(&c, err) != 0) {
        fprintf(stderr, "osprey generate: %s (--help)\n", err);
        prc = 2;
    }
    if (!prc && (max_tokens < 1 || temperature < 0 || top_p <= 0 || top_p > 1 || min_p < 0 || min_p > 1)) {
        fprintf(stderr, "osprey generate: --max-tokens must be >= 1, --temperature >= 0, "
                "--top-p in (0, 1], --min-p in [0, 1]\n");
        prc = 2;
    }
    if (prc) {
        config_fini(&c);
        return prc == 1 ? 0 : 2;
    }

    /* The tokenizer is needed for text in and out; with --prompt-ids --ids it is optional. */
    if (tokenizer_load(&tok, c.model, err) != 0) {
        if (prompt || !print_ids)
            goto out;
        tok = NULL;
        err[0] = '\0';
    }
    if (prompt) {
        if (tokenizer_encode(tok, prompt, strlen(prompt), true, &ids, &num_ids, err) != 0)
            goto out;
    } else if (cli_parse_ids(prompt_ids, &ids, &num_ids, err) != 0) {
        goto out;
    }

    engine_opts_from_config(&eo, &c, tok);
    if (engine_create(&e, &eo, err) != 0 || engine_start(e, err) != 0)
        goto out;

    gen_params_init(&p);
    p.max_tokens = max_tokens;
    p.temperature = temperature;
    p.top_p = top_p;
    p.top_k = top_k;
    p.min_p = min_p;
    p.has_seed = true;
    p.seed = seed;
    p.ignore_eos = ignore_eos;
    res.cap_ids = max_tokens;
    res.ids = malloc(max_tokens * sizeof *res.ids);
    if (!res.ids) {
        errf(err, "out of memory");
        goto out;
    }
    struct engine_request_desc d = { .prompt = ids, .num_prompt = num_ids, .params = &p,
                                     .cb = output_cb, .user = &res };
    if (engine_submit(e, &d, &id, err) != 0)
        goto out;
    pthread_mutex_lock(&res.m);
    while (!res.done)
        pthread_cond_wait(&res.c, &res.m);
    pthread_mutex_unlock(&res.m);
    if (res.why == FINISH_ERROR || res.why == FINISH_ABORT || res.oom) {
        errf(err, "generation failed: %s", res.error[0] ? res.error : "out of memory");
        goto out;
    }
    if (print_ids) {
        printf("[");
        for (int i = 0; i < res.num_ids; i++)
            printf("%s%d", i ? ", " : "", res.ids[i]);
        printf("]\n");
    } else if (res.text.len) {
        fwrite(res.text.p, 1, res.text.len, stdout);
    }
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "osprey generate: %s\n", err);
    engine_destroy(e);
    tokenizer_destroy(tok);
    free(ids);
    free(res.ids);
    buf_fini(&res.text);
    config_fini(&c);
    return rc;
}
