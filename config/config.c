/* config.c — `osprey serve`'s configuration from its three sources (a JSON file, OSPREY_*
 * variables, flags) over the defaults, then the checks across options, --help, the README's
 * Markdown table and the startup dump. What an option is and how its value parses lives in
 * the table of options.c; this file only finds the option a source names and hands it text. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/options.h"  /* options_table, options_set ... */
#include "engine/base/log.h"      /* LOG: unknown OSPREY_* variables */
#include "engine/base/util.h"     /* errf, ASSERT, read_file_bounded */

#define CONFIG_FILE_MAX  (1 << 20)  /* bytes of a JSON config file */
#define KEY_FILE_MAX     4096       /* bytes of an --api-key-file */
#define OPTIONS_MAX      128        /* room for options_count in the per-file "seen" marks */
#define HELP_COLUMN      35         /* --help: where the descriptions start */
#define HELP_WIDTH       100        /* --help: longest line */

void config_init(struct osprey_config *c)
{
    memset(c, 0, sizeof *c);
    for (int i = 0; i < options_count; i++) {
        int rc = options_set(&options_table[i], c, options_table[i].def, "default", NULL);
        /* The defaults are ours and tested; only memory can make one fail, and then the
         * string or list stays NULL (config_validate names a missing host). */
        ASSERT(rc == 0 || rc == -ENOMEM);
    }
}

void config_fini(struct osprey_config *c)
{
    for (int i = 0; i < options_count; i++)
        options_free(&options_table[i], c);
}

/* ---- the JSON file ---- */

static const char *json_kind(const cJSON *v)
{
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v))   return "a boolean";
    if (cJSON_IsNull(v))   return "null";
    if (cJSON_IsArray(v))  return "an array";
    return "an object";
}

static const char *json_expected(const struct config_option *o)
{
    switch (o->type) {
    case OPT_INT:
    case OPT_U64:      return "an integer";
    case OPT_SIZE:     return "a size (a number of bytes or a string such as \"2GiB\")";
    case OPT_FLOAT:    return "a number";
    case OPT_SECONDS:  return "seconds (a number or a string such as \"500ms\")";
    case OPT_BOOL:     return "true or false";
    case OPT_STRING:
    case OPT_ENUM:     return "a string";
    case OPT_INT_LIST: return "an array of integers (or a string \"1,2,4\")";
    case OPT_STR_LIST: return "an array of strings (or a comma-separated string)";
    }
    return "?";
}

/* An array's elements joined by commas, the text a flag would give; NULL with err set when
 * an element has the wrong kind. */
static char *json_join(const struct config_option *o, const cJSON *arr, const char *src, char *err)
{
    bool ints = o->type == OPT_INT_LIST;
    size_t cap = 1, used = 0;
    const cJSON *v;
    char *out, num[32];

    cJSON_ArrayForEach(v, arr) {
        if (ints ? !cJSON_IsNumber(v) : !cJSON_IsString(v)) {
            errf(err, "%s: expected %s, got an array holding %s", src, json_expected(o), json_kind(v));
            return NULL;
        }
        if (ints && (v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 1e9)) {
            errf(err, "%s: %g is not an integer in range", src, v->valuedouble);
            return NULL;
        }
        if (!ints && strchr(v->valuestring, ',')) {
            char q[64];
            errf(err, "%s: %s contains a comma", src, options_quote(v->valuestring, q, sizeof q));
            return NULL;
        }
        cap += (ints ? sizeof num : strlen(v->valuestring)) + 1;
    }
    if (!(out = malloc(cap))) {
        errf(err, "%s: out of memory", src);
        return NULL;
    }
    out[0] = '\0';
    cJSON_ArrayForEach(v, arr) {
        const char *s = ints ? (snprintf(num, sizeof num, "%.0f", v->valuedouble), num) : v->valuestring;
        used += (size_t)snprintf(out + used, cap - used, "%s%s", used ? "," : "", s);
    }
    return out;
}

/* One key's value: checked for kind, turned into flag text, then set like a flag. */
static int json_apply(const struct config_option *o, struct osprey_config *c, const cJSON *v,
                      const char *src, char *err)
{
    char num[512];  /* "%.0f" of the largest double is 309 digits */
    char *joined = NULL;
    const char *text = NULL;
    bool is_int = o->type == OPT_INT || o->type == OPT_U64;
    int rc;

    if (cJSON_IsNumber(v) && (is_int || o->type == OPT_SIZE || o->type == OPT_FLOAT || o->type == OPT_SECONDS)) {
        double d = v->valuedouble;
        if (is_int && d != floor(d)) {
            errf(err, "%s: %g is not an integer", src, d);
            return -EINVAL;
        }
        snprintf(num, sizeof num, d == floor(d) ? "%.0f" : "%.17g", d);
        text = num;
    } else if (cJSON_IsString(v) && o->type != OPT_INT && o->type != OPT_U64 && o->type != OPT_FLOAT
               && o->type != OPT_BOOL) {
        text = v->valuestring;
    } else if (cJSON_IsBool(v) && o->type == OPT_BOOL) {
        text = cJSON_IsTrue(v) ? "true" : "false";
    } else if (cJSON_IsArray(v) && (o->type == OPT_INT_LIST || o->type == OPT_STR_LIST)) {
        if (!(text = joined = json_join(o, v, src, err)))
            return -EINVAL;
    } else {
        errf(err, "%s: expected %s, got %s", src, json_expected(o), json_kind(v));
        return -EINVAL;
    }
    rc = options_set(o, c, text, src, err);
    free(joined);
    return rc;
}

int config_parse_json(struct osprey_config *c, const char *json, size_t len, const char *path,
                      char *err)
{
    unsigned char seen[OPTIONS_MAX] = { 0 };
    const char *end = NULL;
    char *copy = NULL;
    cJSON *root = NULL, *v;
    int rc = -EINVAL;

    ASSERT(options_count <= OPTIONS_MAX);
    if (len > CONFIG_FILE_MAX) {
        errf(err, "%s: larger than %d bytes", path, CONFIG_FILE_MAX);
        return -EFBIG;
    }
    /* A NUL-terminated copy: the fuzzer hands us bytes that end where they end. */
    if (!(copy = malloc(len + 1))) {
        errf(err, "%s: out of memory", path);
        return -ENOMEM;
    }
    memcpy(copy, json, len);
    copy[len] = '\0';
    root = cJSON_ParseWithLengthOpts(copy, len, &end, false);
    if (!root) {
        int line = 1, col = 1;
        for (const char *p = copy; end && p < end && p < copy + len; p++, col++)
            if (*p == '\n') {
                line++;
                col = 0;
            }
        errf(err, "%s: not valid JSON (line %d, column %d)", path, line, col);
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        errf(err, "%s: expected a JSON object of options, got %s", path, json_kind(root));
        goto out;
    }
    cJSON_ArrayForEach(v, root) {
        const struct config_option *o = options_find(v->string);
        char src[ERR_LEN], q[64];

        if (!o || (o->flags & OPT_NO_JSON)) {
            const struct config_option *near = o ? NULL : options_suggest(v->string);
            if (o)
                errf(err, "%s: %s: not allowed in a config file (give it as a flag)", path, o->key);
            else if (near && !(near->flags & OPT_NO_JSON))
                errf(err, "%s: unknown key %s (did you mean \"%s\"?)", path,
                     options_quote(v->string, q, sizeof q), near->key);
            else
                errf(err, "%s: unknown key %s", path, options_quote(v->string, q, sizeof q));
            rc = -EINVAL;
            goto out;
        }
        if (seen[o - options_table]++) {
            errf(err, "%s: %s: given twice", path, o->key);
            rc = -EINVAL;
            goto out;
        }
        snprintf(src, sizeof src, "%s: %s", path, o->key);
        if ((rc = json_apply(o, c, v, src, err)) != 0)
            goto out;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    free(copy);
    return rc;
}

int config_load_file(struct osprey_config *c, const char *path, char *err)
{
    char *json;
    size_t len;
    int rc = read_file_bounded(path, CONFIG_FILE_MAX, &json, &len, err);

    if (rc != 0)
        return rc;
    rc = config_parse_json(c, json, len, path, err);
    free(json);
    return rc;
}

/* ---- the environment ---- */

/* The value of NAME in envp, or NULL. */
static const char *env_get(char **envp, const char *name)
{
    size_t n = strlen(name);

    for (char **e = envp; e && *e; e++)
        if (!strncmp(*e, name, n) && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

int config_load_env(struct osprey_config *c, char **envp, char *err)
{
    for (char **e = envp; e && *e; e++) {
        const char *eq = strchr(*e, '='), *name = *e + 7;
        const struct config_option *o = NULL;
        char key[OPTIONS_KEY_MAX + 1] = "", env[OPTIONS_KEY_MAX + 8];
        size_t len;
        int rc;

        if (!eq || strncmp(*e, "OSPREY_", 7))
            continue;
        len = (size_t)(eq - name);
        if (len > 0 && len <= OPTIONS_KEY_MAX) {
            bool upper = true;
            for (size_t i = 0; i < len; i++) {
                upper &= !(name[i] >= 'a' && name[i] <= 'z');
                key[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
            }
            key[len] = '\0';
            o = upper ? options_find(key) : NULL;
        }
        if (!o) {
            /* Not an error: OSPREY_ is a plain prefix that other tools (and our test runner's
             * OSPREY_TEST_LOG) use too. */
            const struct config_option *near = len <= OPTIONS_KEY_MAX ? options_suggest(key) : NULL;
            char q[64], hint[OPTIONS_KEY_MAX + 32] = "";
            if (near) {
                options_env_name(near, env);
                snprintf(hint, sizeof hint, " (did you mean %s?)", env);
            }
            LOG(LL_WARN, "config", "environment variable %s is not an osprey option; ignored%s",
                options_quote(*e, q, sizeof q), hint);
            continue;
        }
        options_env_name(o, env);
        if ((rc = options_set(o, c, eq + 1, env, err)) != 0)
            return rc;
    }
    return 0;
}

/* ---- flags ---- */

struct flag_value {
    const struct config_option *o;
    const char *value;   /* borrowed: argv, or a static "true"/"false" */
};

/* Splits argv into (option, text) pairs without parsing values, so that the file and the
 * environment can be applied first and the flags last. */
static int flags_split(int argc, char **argv, struct flag_value *out, int *n, char *err)
{
    *n = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *name = a + 2, *eq;
        const struct config_option *o = NULL;
        char key[OPTIONS_KEY_MAX + 1], flag[OPTIONS_KEY_MAX + 8], q[64];
        bool negated = false, underscore = false;
        size_t len;

        if (strncmp(a, "--", 2) || !a[2]) {
            errf(err, a[0] == '-' ? "unknown flag %s (see --help)" : "unexpected argument %s (see --help)",
                 options_quote(a, q, sizeof q));
            return -EINVAL;
        }
        eq = strchr(name, '=');
        len = eq ? (size_t)(eq - name) : strlen(name);
        if (len <= OPTIONS_KEY_MAX) {
            for (size_t j = 0; j < len; j++) {
                underscore |= name[j] == '_';
                key[j] = name[j] == '-' ? '_' : name[j];
            }
            key[len] = '\0';
            o = underscore ? NULL : options_find(key);
            if (!o && !underscore && !strncmp(key, "no_", 3) && (o = options_find(key + 3))) {
                negated = true;
                if (o->type != OPT_BOOL)
                    o = NULL;
            }
        }
        if (!o) {
            const struct config_option *near = len <= OPTIONS_KEY_MAX ? options_suggest(key) : NULL;
            char shown[OPTIONS_KEY_MAX + 8];
            snprintf(shown, sizeof shown, "--%.*s", (int)MIN(len, OPTIONS_KEY_MAX), name);
            if (near) {
                options_flag_name(near, flag);
                errf(err, "unknown flag %s (did you mean %s?)", options_quote(shown, q, sizeof q), flag);
            } else {
                errf(err, "unknown flag %s (see --help)", options_quote(shown, q, sizeof q));
            }
            return -EINVAL;
        }
        options_flag_name(o, flag);
        if (negated) {
            if (eq) {
                errf(err, "--no-%s takes no value", flag + 2);
                return -EINVAL;
            }
            out[*n].value = "false";
        } else if (eq) {
            out[*n].value = eq + 1;
        } else if (o->type == OPT_BOOL) {
            /* A bare boolean flag means true; a boolean word right after it is its value. */
            bool b;
            if (i + 1 < argc && argv[i + 1][0] != '-' && options_parse_bool(argv[i + 1], &b) == 0)
                out[*n].value = argv[++i];
            else
                out[*n].value = "true";
        } else {
            if (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2)) {
                errf(err, "%s: needs a value", flag);
                return -EINVAL;
            }
            out[*n].value = argv[++i];
        }
        out[(*n)++].o = o;
    }
    return 0;
}

/* ---- one option, for the offline commands ---- */

int config_set(struct osprey_config *c, const char *key, const char *text, const char *src, char *err)
{
    const struct config_option *o = options_find(key);

    if (!o) {
        errf(err, "%s: no such option", src);
        return -ENOENT;
    }
    return options_set(o, c, text, src, err);
}

bool config_is_bool(const char *key)
{
    const struct config_option *o = options_find(key);

    return o && o->type == OPT_BOOL;
}

/* ---- all sources ---- */

/* What only makes sense once every source is in: the key read from --api-key-file, and the
 * served name that defaults to the model folder's basename. */
static int config_resolve(struct osprey_config *c, char *err)
{
    if (c->api_key_file) {
        char *key, why[ERR_LEN];
        size_t len;
        int rc;

        if (c->api_key) {
            errf(err, "--api-key and --api-key-file are both set; keep one");
            return -EINVAL;
        }
        if ((rc = read_file_bounded(c->api_key_file, KEY_FILE_MAX, &key, &len, why)) != 0) {
            errf(err, "--api-key-file: %s", why);
            return rc;
        }
        while (len && (key[len - 1] == '\n' || key[len - 1] == '\r'))
            key[--len] = '\0';
        if (len == 0 || strlen(key) != len) {
            errf(err, "--api-key-file: %s: %s", c->api_key_file, len ? "holds a NUL byte" : "is empty");
            free(key);
            return -EINVAL;
        }
        rc = options_set(options_find("api_key"), c, key, "--api-key-file", err);
        /* The key's bytes leave no copy behind in freed memory. */
        memset(key, 0, len);
        free(key);
        if (rc != 0)
            return rc;
    }
    if (!c->served_model_name && c->model) {
        const char *m = c->model, *base;
        size_t len = strlen(m), blen;

        while (len > 1 && m[len - 1] == '/')
            len--;
        for (base = m + len; base > m && base[-1] != '/'; base--)
            ;
        blen = (size_t)(m + len - base);
        if (blen == 0) {  /* "/" alone */
            base = m;
            blen = len;
        }
        if (!(c->served_model_name = strndup(base, blen))) {
            errf(err, "--served-model-name: out of memory");
            return -ENOMEM;
        }
    }
    return 0;
}

int config_load(struct osprey_config *c, int argc, char **argv, char **envp, char *err)
{
    struct flag_value *flags;
    const char *file = NULL;
    int n = 0, rc;

    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            config_print_help(stdout);
            return 1;
        }
    if (!(flags = calloc((size_t)MAX(argc, 1), sizeof *flags))) {
        errf(err, "out of memory");
        return -ENOMEM;
    }
    if ((rc = flags_split(argc, argv, flags, &n, err)) != 0)
        goto out;
    for (int i = 0; i < n; i++)
        if (!strcmp(flags[i].o->key, "config"))
            file = flags[i].value;
    if (!file)
        file = env_get(envp, "OSPREY_CONFIG");
    if (file && *file && (rc = config_load_file(c, file, err)) != 0)
        goto out;
    if ((rc = config_load_env(c, envp, err)) != 0)
        goto out;
    for (int i = 0; i < n; i++) {
        char flag[OPTIONS_KEY_MAX + 8];
        options_flag_name(flags[i].o, flag);
        if ((rc = options_set(flags[i].o, c, flags[i].value, flag, err)) != 0)
            goto out;
    }
    if ((rc = config_resolve(c, err)) != 0)
        goto out;
    rc = config_validate(c, err);
out:
    free(flags);
    return rc;
}

int config_validate(const struct osprey_config *c, char *err)
{
    if (!c->model) {
        errf(err, "--model is required: the Hugging Face model folder to serve");
        return -EINVAL;
    }
    if (!c->host) {
        errf(err, "--host is empty: give an address to listen on, such as 127.0.0.1");
        return -EINVAL;
    }
    /* Every running request decodes one token per step, so the step budget must hold them. */
    if (c->max_num_batched_tokens < c->max_num_seqs) {
        errf(err, "--max-num-batched-tokens %d is less than --max-num-seqs %d", c->max_num_batched_tokens,
             c->max_num_seqs);
        return -EINVAL;
    }
    if (c->max_model_len && c->max_prompt_tokens > c->max_model_len) {
        errf(err, "--max-prompt-tokens %d is more than --max-model-len %d", c->max_prompt_tokens,
             c->max_model_len);
        return -EINVAL;
    }
    if (c->max_model_len && c->max_tokens_limit > c->max_model_len) {
        errf(err, "--max-tokens-limit %d is more than --max-model-len %d", c->max_tokens_limit,
             c->max_model_len);
        return -EINVAL;
    }
    if (c->log_prompts && (!c->log_level || strcmp(c->log_level, "debug"))) {
        errf(err, "--log-prompts needs --log-level debug (prompts are never logged otherwise)");
        return -EINVAL;
    }
    for (int i = 0; i < c->num_cors_origins && c->num_cors_origins > 1; i++)
        if (!strcmp(c->cors_origins[i], "*")) {
            errf(err, "--cors-origins: \"*\" allows every origin and must be alone");
            return -EINVAL;
        }
    return 0;
}

/* ---- help, Markdown, dump ---- */

static const char help_intro[] =
    "usage: osprey serve --model PATH [options]\n"
    "\n"
    "Serves a Hugging Face model folder over an OpenAI-compatible HTTP API.\n"
    "\n"
    "Each option can also be set in the JSON file named by --config (key: the flag's name in\n"
    "snake_case, e.g. \"max_num_seqs\") or in the environment (OSPREY_ and the key in upper case,\n"
    "e.g. OSPREY_MAX_NUM_SEQS). Flags win over the environment, which wins over the file.\n"
    "Flags take \"--flag value\" or \"--flag=value\"; a boolean flag alone means true and\n"
    "--no-FLAG false. Sizes are bytes or take K, KB, KiB, M, MB, MiB, G, GB, GiB, T, TB, TiB\n"
    "(KB is 1000 bytes; K and KiB are 1024). Durations are seconds or take ms, s, m, h.\n";

/* "--block-size N", "--backend auto|cpu|cuda", "--enforce-eager [BOOL]" */
static void flag_usage(const struct config_option *o, char *buf, size_t n)
{
    size_t used;

    options_flag_name(o, buf);
    used = strlen(buf);
    if (o->type == OPT_BOOL) {
        snprintf(buf + used, n - used, " [BOOL]");
    } else if (o->type == OPT_ENUM) {
        for (size_t i = 0; i < ARRAY_LEN(o->choices) && o->choices[i] && used < n; i++)
            used += (size_t)snprintf(buf + used, n - used, "%c%s", i ? '|' : ' ', o->choices[i]);
    } else {
        snprintf(buf + used, n - used, " %s", o->arg);
    }
}

/* Prints text from column `indent` (the cursor is there), wrapping at word boundaries so no
 * line passes HELP_WIDTH; continuation lines start with spaces, never with "--". */
static void help_wrap(FILE *f, const char *text, int indent)
{
    int col = indent;

    while (*text) {
        size_t word = strcspn(text, " ");
        if (col > indent && col + 1 + (int)word > HELP_WIDTH) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        }
        if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fwrite(text, 1, word, f);
        col += (int)word;
        text += word;
        text += strspn(text, " ");
    }
    fputc('\n', f);
}

static void help_line(FILE *f, const struct config_option *o)
{
    char usage[128], text[512];

    flag_usage(o, usage, sizeof usage);
    if (strlen(usage) > HELP_COLUMN - 3)
        fprintf(f, "  %s\n%*s", usage, HELP_COLUMN, "");
    else
        fprintf(f, "  %-*s", HELP_COLUMN - 2, usage);
    snprintf(text, sizeof text, *o->def ? "%s (default: %s)" : "%s", o->help, o->def);
    help_wrap(f, text, HELP_COLUMN);
}

void config_print_help(FILE *f)
{
    fputs(help_intro, f);
    for (int i = 0; i < options_count; i++) {
        if (options_table[i].section)
            fprintf(f, "\n%s:\n", options_table[i].section);
        help_line(f, &options_table[i]);
    }
}

void config_print_options(FILE *f, const char *const *keys, int n)
{
    for (int i = 0; i < n; i++) {
        const struct config_option *o = options_find(keys[i]);

        if (o)
            help_line(f, o);
    }
}

/* A table cell: '|' would end it (even inside `code`), and '*' could start emphasis
 * outside code (inside, the backslash would show). */
static void md_cell(FILE *f, const char *s, bool code)
{
    for (; *s; s++) {
        if (*s == '|' || (*s == '*' && !code))
            fputc('\\', f);
        fputc(*s, f);
    }
}

void config_print_markdown(FILE *f)
{
    for (int i = 0; i < options_count; i++) {
        const struct config_option *o = &options_table[i];
        char usage[128], env[OPTIONS_KEY_MAX + 8], type[128];

        if (o->section)
            fprintf(f, "%s### %s\n\n| Flag | Environment | JSON key | Type | Default | Meaning |\n"
                    "|---|---|---|---|---|---|\n", i ? "\n" : "", o->section);
        flag_usage(o, usage, sizeof usage);
        options_env_name(o, env);
        options_describe_type(o, type, sizeof type);
        fputs("| `", f);
        md_cell(f, usage, true);
        fprintf(f, "` | `%s` | ", env);
        if (o->flags & OPT_NO_JSON)
            fputs("—", f);
        else
            fprintf(f, "`%s`", o->key);
        fputs(" | ", f);
        md_cell(f, type, false);
        fputs(*o->def ? " | `" : " | —", f);
        if (*o->def)
            fprintf(f, "%s`", o->def);
        fputs(" | ", f);
        md_cell(f, o->help, false);
        fputs(" |\n", f);
    }
}

void config_dump(const struct osprey_config *c, FILE *f)
{
    char value[OPTIONS_STR_MAX + 64];

    for (int i = 0; i < options_count; i++) {
        options_format(&options_table[i], c, value, sizeof value);
        fprintf(f, "%s = %s\n", options_table[i].key, *value ? value : "(none)");
    }
}
