/* cli.c — table-driven flags for the offline subcommands, and the engine options they
 * share with serve through config/ (see cli.h). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"   /* config_set, config_is_bool, config_print_options */
#include "engine/base/util.h"
#include "server/cli.h"

const char *const cli_engine_keys[] = {
    "model", "backend", "kv_cache_memory", "gpu_memory_utilization", "block_size", "max_num_seqs",
    "max_num_batched_tokens", "max_model_len", "enable_prefix_caching", "cuda_graph_sizes",
    "piecewise_graph_sizes", "enforce_eager", "fused_rope_cache", "tensor_parallel_size", "threads", "kv_cache_dtype", "calculate_kv_scales",
    "quantization", "load_format",
};
const int cli_num_engine_keys = (int)ARRAY_LEN(cli_engine_keys);

void cli_print_engine_help(FILE *f)
{
    config_print_options(f, cli_engine_keys, cli_num_engine_keys);
}

static bool bool_word(const char *s)
{
    static const char *const words[] = { "true", "false", "yes", "no", "on", "off", "1", "0" };

    for (size_t i = 0; i < ARRAY_LEN(words); i++)
        if (!strcasecmp(s, words[i]))
            return true;
    return false;
}

/* The engine key a flag names ("--kv-cache-memory" → "kv_cache_memory"; "--no-enforce-eager"
 * → "enforce_eager" with *negated), or NULL. */
static const char *engine_key(const char *flag, size_t len, bool *negated)
{
    char key[64];

    *negated = false;
    if (len < 3 || len - 2 >= sizeof key || strncmp(flag, "--", 2))
        return NULL;
    for (size_t i = 2; i < len; i++)
        key[i - 2] = flag[i] == '-' ? '_' : flag[i] == '_' ? '\0' : flag[i];
    key[len - 2] = '\0';
    if (strlen(key) != len - 2)       /* serve's flags spell '_' as '-' only */
        return NULL;
    for (int pass = 0; pass < 2; pass++) {
        const char *k = pass ? key + 3 : key;

        if (pass && (strncmp(key, "no_", 3) || !config_is_bool(k)))
            break;
        for (int i = 0; i < cli_num_engine_keys; i++)
            if (!strcmp(cli_engine_keys[i], k)) {
                *negated = pass;
                return cli_engine_keys[i];
            }
    }
    return NULL;
}

static int parse_value(const struct cli_opt *o, const char *v)
{
    char *end;

    errno = 0;
    switch (o->type) {
    case CLI_STR:
        *(const char **)o->dst = v;
        return 0;
    case CLI_INT: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < 0 || x > INT32_MAX)
            return -1;
        *(int *)o->dst = (int)x;
        return 0;
    }
    case CLI_U64: {
        if (v[0] == '-')
            return -1;
        unsigned long long x = strtoull(v, &end, 0);
        if (errno || end == v || *end)
            return -1;
        *(uint64_t *)o->dst = x;
        return 0;
    }
    case CLI_FLOAT: {
        float x = strtof(v, &end);
        if (errno || end == v || *end || !isfinite(x))
            return -1;
        *(float *)o->dst = x;
        return 0;
    }
    case CLI_BOOL:
        *(bool *)o->dst = true;
        return 0;
    }
    return -1;
}

int cli_parse(const char *cmd, int argc, char **argv, const struct cli_opt *opts, int num_opts,
              struct osprey_config *engine, void (*usage)(FILE *f))
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        const struct cli_opt *o = NULL;

        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            usage(stdout);
            return 1;
        }
        for (int k = 0; k < num_opts && !o; k++)
            if (strlen(opts[k].name) == len && !strncmp(opts[k].name, arg, len))
                o = &opts[k];
        if (!o) {
            bool negated, is_bool;
            const char *key = engine ? engine_key(arg, len, &negated) : NULL, *v = eq ? eq + 1 : NULL;
            char flag[80], err[ERR_LEN];

            if (!key) {
                fprintf(stderr, "osprey %s: unknown option '%s' (--help lists them)\n", cmd, arg);
                return 2;
            }
            snprintf(flag, sizeof flag, "%.*s", (int)len, arg);
            is_bool = config_is_bool(key);
            if (negated && v) {
                fprintf(stderr, "osprey %s: %s takes no value\n", cmd, flag);
                return 2;
            }
            if (!v && is_bool && !negated && i + 1 < argc && bool_word(argv[i + 1]))
                v = argv[++i];       /* "--enforce-eager false", as serve reads it */
            if (!v && !is_bool) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "osprey %s: %s needs a value\n", cmd, flag);
                    return 2;
                }
                v = argv[++i];
            }
            if (config_set(engine, key, negated ? "false" : v ? v : "true", flag, err) != 0) {
                fprintf(stderr, "osprey %s: %s\n", cmd, err);
                return 2;
            }
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (o->type == CLI_BOOL && v) {
            fprintf(stderr, "osprey %s: %s takes no value\n", cmd, o->name);
            return 2;
        }
        if (o->type != CLI_BOOL && !v) {
            if (i + 1 >= argc) {
                fprintf(stderr, "osprey %s: %s needs a value\n", cmd, o->name);
                return 2;
            }
            v = argv[++i];
        }
        if (parse_value(o, v) != 0) {
            static const char *const what[] = {
                [CLI_STR] = "a string", [CLI_INT] = "a non-negative integer",
                [CLI_U64] = "a non-negative integer", [CLI_FLOAT] = "a number", [CLI_BOOL] = "nothing",
            };
            fprintf(stderr, "osprey %s: %s \"%s\": expected %s\n", cmd, o->name, v, what[o->type]);
            return 2;
        }
    }
    return 0;
}

int cli_parse_ids(const char *json, int32_t **ids, int *n, char *err)
{
    cJSON *a = cJSON_Parse(json), *it;
    int k = 0;

    *ids = NULL;
    *n = 0;
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) == 0) {
        errf(err, "expected a non-empty JSON array of token ids, got '%.40s'", json);
        cJSON_Delete(a);
        return -EINVAL;
    }
    *ids = malloc(cJSON_GetArraySize(a) * sizeof **ids);
    if (!*ids) {
        cJSON_Delete(a);
        errf(err, "out of memory");
        return -ENOMEM;
    }
    cJSON_ArrayForEach(it, a) {
        double d = it->valuedouble;
        if (!cJSON_IsNumber(it) || d != floor(d) || d < 0 || d > INT32_MAX) {
            errf(err, "token id %d is not a non-negative integer", k);
            free(*ids);
            *ids = NULL;
            cJSON_Delete(a);
            return -EINVAL;
        }
        (*ids)[k++] = (int32_t)d;
    }
    *n = k;
    cJSON_Delete(a);
    return 0;
}
