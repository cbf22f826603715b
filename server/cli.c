/* cli.c — table-driven flags for the offline subcommands (see cli.h). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"
#include "server/cli.h"

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
    case CLI_SIZE: {
        double x = strtod(v, &end), mul = 1;
        if (errno || end == v || !isfinite(x) || x < 0)
            return -1;
        if (*end) {
            static const struct { const char *s; double m; } units[] = {
                { "K", 1e3 }, { "KB", 1e3 }, { "KiB", 1024.0 }, { "M", 1e6 }, { "MB", 1e6 },
                { "MiB", 1048576.0 }, { "G", 1e9 }, { "GB", 1e9 }, { "GiB", 1073741824.0 },
            };
            size_t i;
            for (i = 0; i < ARRAY_LEN(units) && strcmp(end, units[i].s); i++)
                ;
            if (i == ARRAY_LEN(units))
                return -1;
            mul = units[i].m;
        }
        if (x * mul > 1e18)
            return -1;
        *(size_t *)o->dst = (size_t)(x * mul);
        return 0;
    }
    case CLI_BOOL:
        *(bool *)o->dst = true;
        return 0;
    }
    return -1;
}

int cli_parse(const char *cmd, int argc, char **argv, const struct cli_opt *opts, int num_opts,
              void (*usage)(FILE *f))
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
            fprintf(stderr, "osprey %s: unknown option '%s' (--help lists them)\n", cmd, arg);
            return 2;
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
                [CLI_U64] = "a non-negative integer", [CLI_FLOAT] = "a number",
                [CLI_SIZE] = "a size such as 512MiB", [CLI_BOOL] = "nothing",
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
