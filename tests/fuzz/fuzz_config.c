/* fuzz_config.c — `osprey serve`'s configuration from all three sources (config/config.c,
 * config/options.c): the input up to its first NUL is the JSON file (config_parse_json),
 * the next part up to a NUL the environment (one NAME=value a line, config_load_env through
 * config_load), the rest the flags (one argv word a line). Words that name other files
 * (--config, OSPREY_CONFIG, --api-key-file) and --help are dropped; a JSON api_key_file is
 * pointed at a committed key file. Checked beyond "no crash": an accepted configuration
 * passes config_validate, every value lies in its option's range, lists are bounded and
 * sorted, strings carry no control bytes, and each option's text (options_format, "text a
 * flag would accept") reads back to the same value. */
#include "tests/fuzz/fuzz.h"

#include <math.h>

#include "config/config.h"
#include "config/options.h"

#define MAX_WORDS 256
#define KEY_FILE  "tests/fuzz/data/api_key"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    size_t len;

    fuzz_quiet();
    free(fuzz_read(KEY_FILE, &len));   /* fail early when run outside the repository root */
    return 0;
}

/* Splits s at newlines into words (s is modified), dropping those that start with a prefix
 * of `drop`. Returns the count; words[count] = NULL. */
static int split_lines(char *s, char **words, int first, const char *const *drop)
{
    int n = first;

    for (char *save = NULL, *w = strtok_r(s, "\n", &save); w && n < MAX_WORDS;
         w = strtok_r(NULL, "\n", &save)) {
        bool keep = true;

        for (const char *const *d = drop; *d; d++)
            keep &= strncmp(w, *d, strlen(*d)) != 0;
        if (keep)
            words[n++] = w;
    }
    words[n] = NULL;
    return n;
}

static const char *const env_drop[] = { "OSPREY_CONFIG=", "OSPREY_API_KEY_FILE=", NULL };
static const char *const flag_drop[] = { "--config", "--api-key-file", "--help", "-h", NULL };

#define CHECK(x) FUZZ_CHECK(x, "option %s", o->key)

static bool clean_string(const char *s)
{
    size_t n = strlen(s);

    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return n <= OPTIONS_STR_MAX;
}

/* The promises of options.h on one option's value. */
static void check_value(const struct config_option *o, const struct osprey_config *c)
{
    const void *f = (const char *)c + o->off;
    double v = 0;

    switch (o->type) {
    case OPT_INT:     v = *(const int *)f; break;
    case OPT_U64:     v = (double)*(const uint64_t *)f; break;
    case OPT_SIZE:    v = (double)*(const size_t *)f; break;
    case OPT_FLOAT:
    case OPT_SECONDS: v = *(const double *)f; CHECK(isfinite(v)); break;
    case OPT_STRING:
        CHECK(!*(char *const *)f || (**(char *const *)f && clean_string(*(char *const *)f)));
        return;
    case OPT_INT_LIST:
    case OPT_STR_LIST: {
        int n = *(const int *)((const char *)c + o->count_off);

        CHECK(n >= 0 && n <= OPTIONS_LIST_MAX && (n == 0) == (*(void *const *)f == NULL));
        for (int i = 0; i < n; i++) {
            if (o->type == OPT_INT_LIST) {
                int x = (*(int *const *)f)[i];

                CHECK(x >= o->min && x <= o->max && (i == 0 || x > (*(int *const *)f)[i - 1]));
            } else {
                const char *s = (*(char **const *)f)[i];

                CHECK(s[0] && s[0] != ' ' && s[strlen(s) - 1] != ' ' && !strchr(s, ',') && clean_string(s));
            }
        }
        return;
    }
    default:
        return;
    }
    CHECK(o->flags & OPT_MIN_OPEN ? v > o->min : v >= o->min);
    CHECK(v <= o->max);
    if (o->type == OPT_INT && o->allowed[0]) {
        bool in = false;

        for (size_t i = 0; i < ARRAY_LEN(o->allowed) && o->allowed[i]; i++)
            in |= o->allowed[i] == (int)v;
        CHECK(in);
    }
}

/* Whether option o holds the same value in c and d. */
static bool same_value(const struct config_option *o, const struct osprey_config *c,
                       const struct osprey_config *d)
{
    const char *a = (const char *)c + o->off, *b = (const char *)d + o->off;

    switch (o->type) {
    case OPT_INT:     return *(const int *)a == *(const int *)b;
    case OPT_U64:     return *(const uint64_t *)a == *(const uint64_t *)b;
    case OPT_SIZE:    return *(const size_t *)a == *(const size_t *)b;
    case OPT_FLOAT:
    case OPT_SECONDS: return *(const double *)a == *(const double *)b;
    case OPT_BOOL:    return *(const bool *)a == *(const bool *)b;
    case OPT_ENUM:    return *(const char *const *)a == *(const char *const *)b;
    case OPT_STRING: {
        const char *x = *(const char *const *)a, *y = *(const char *const *)b;
        return x == y || (x && y && !strcmp(x, y));
    }
    case OPT_INT_LIST:
    case OPT_STR_LIST: {
        int n = *(const int *)((const char *)c + o->count_off);

        if (n != *(const int *)((const char *)d + o->count_off))
            return false;
        for (int i = 0; i < n; i++)
            if (o->type == OPT_INT_LIST ? (*(int *const *)a)[i] != (*(int *const *)b)[i]
                                        : strcmp((*(char **const *)a)[i], (*(char **const *)b)[i]))
                return false;
        return true;
    }
    }
    return false;
}

/* options_format's text is one a flag accepts, and it reads back to the same value. */
static void check_round_trip(const struct config_option *o, const struct osprey_config *c,
                             struct osprey_config *d)
{
    static char text[1 << 21], again[1 << 21];
    char err[ERR_LEN];

    if (o->flags & OPT_SECRET)
        return;   /* masked on purpose */
    options_format(o, c, text, sizeof text);
    CHECK(strlen(text) < sizeof text - 1);
    FUZZ_CHECK(options_set(o, d, text, "fuzz", err) == 0, "%s: '%.80s' does not read back: %s",
               o->key, text, err);
    options_format(o, d, again, sizeof again);
    FUZZ_CHECK(same_value(o, c, d), "%s: '%.80s' reads back as another value ('%.80s')", o->key, text,
               again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct osprey_config c;
    const char *json, *rest, *env, *flags;
    size_t jlen, rlen, elen, flen;
    char *env_text, *flag_text, *envp[MAX_WORDS + 1], *argv[MAX_WORDS + 1], err[ERR_LEN];
    int argc, rc;

    fuzz_split(data, size, &json, &jlen, &rest, &rlen);
    config_init(&c);
    if (config_parse_json(&c, json, jlen, "fuzz.json", err) != 0) {
        FUZZ_CHECK(err[0], "a refused file has a message");
        config_fini(&c);
        return 0;
    }
    if (c.api_key_file) {
        free(c.api_key_file);
        c.api_key_file = strdup(KEY_FILE);
    }
    fuzz_split((const uint8_t *)(rest ? rest : ""), rest ? rlen : 0, &env, &elen, &flags, &flen);
    env_text = fuzz_strndup(env, elen);
    flag_text = fuzz_strndup(flags ? flags : "", flags ? flen : 0);
    split_lines(env_text, envp, 0, env_drop);
    argv[0] = "serve";
    argc = split_lines(flag_text, argv, 1, flag_drop);

    rc = config_load(&c, argc, argv, envp, err);
    FUZZ_CHECK(rc <= 0, "config_load returned %d (only --help gives 1)", rc);
    if (rc == 0) {
        FUZZ_CHECK(config_validate(&c, err) == 0, "accepted, then refused: %s", err);
        FUZZ_CHECK(c.model && c.host && c.served_model_name && c.max_num_batched_tokens >= c.max_num_seqs,
                   "an accepted config lacks what config_validate promises");
        struct osprey_config d;

        config_init(&d);
        for (int i = 0; i < options_count; i++) {
            check_value(&options_table[i], &c);
            check_round_trip(&options_table[i], &c, &d);
        }
        config_fini(&d);
    } else {
        FUZZ_CHECK(err[0], "a refused config has a message");
    }
    free(env_text);
    free(flag_text);
    config_fini(&c);
    return 0;
}
