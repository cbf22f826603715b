/* openai_parse.c — request bodies → struct oai_request. Every field's type and range is
 * checked here, before anything reaches the engine, and a failure names the field the way
 * OpenAI does ("Invalid type for 'n': expected an integer, but got a string instead.").
 * null counts as absent; unknown fields are ignored (vLLM's choice, not OpenAI's). The body
 * itself must be UTF-8 without NUL characters, nested at most CJSON_NESTING_LIMIT deep, and
 * name each key once per object. */
#include "server/openai_parse.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "server/json_text.h"   /* seed: the exact digits */

#define INT_FIELD_MAX 1000000000LL   /* cap for "unbounded" integer fields */

int openai_error(struct oai_error *e, int status, const char *code, const char *param,
                 const char *fmt, ...)
{
    va_list ap;

    e->status = status;
    e->type = status >= 500 ? "server_error" : "invalid_request_error";
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return status >= 500 ? -EIO : -EINVAL;
}

void openai_request_init(struct oai_request *r)
{
    memset(r, 0, sizeof *r);
    arena_init(&r->arena);
    gen_params_init(&r->params);
    r->n = 1;
    r->add_generation_prompt = true;
}

void openai_request_fini(struct oai_request *r)
{
    cJSON_Delete(r->root);
    cJSON_Delete(r->resp_root);
    arena_fini(&r->arena);
    memset(r, 0, sizeof *r);
}

int openai__no_memory(struct oai_error *e)
{
    openai_error(e, 500, "internal_error", NULL, "out of memory");
    return -ENOMEM;
}

static const char *json_type_name(const cJSON *v)
{
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v) && !isfinite(v->valuedouble)) return "a number too large to represent";
    if (cJSON_IsNumber(v)) return v->valuedouble == floor(v->valuedouble) ? "an integer" : "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "null";
}

static int bad_type(struct oai_error *e, const char *key, const char *want, const cJSON *got)
{
    return openai_error(e, 400, "invalid_type", key,
                        "Invalid type for '%s': expected %s, but got %s instead.",
                        key, want, json_type_name(got));
}

static int bad_value(struct oai_error *e, const char *key, const char *fmt, double lo, double got)
{
    char want[64];

    snprintf(want, sizeof want, fmt, lo);
    return openai_error(e, 400, "invalid_value", key,
                        "Invalid '%s': expected a value %s, but got %.17g instead.", key, want, got);
}

const cJSON *openai__field(const cJSON *root, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);

    return v && !cJSON_IsNull(v) ? v : NULL;
}

const char *openai__json_type(const cJSON *v)
{
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "null";
}

/* Each get_* returns 1 when the field was given (and *out set), 0 when absent, or a
 * negative errno with e filled. */
static int get_bool(const cJSON *root, const char *key, bool *out, struct oai_error *e)
{
    const cJSON *v = openai__field(root, key);

    if (!v)
        return 0;
    if (!cJSON_IsBool(v))
        return bad_type(e, key, "a boolean", v);
    *out = cJSON_IsTrue(v);
    return 1;
}

/* A number beyond a double (1e999 parses as infinity): refused for what it is, not as a
 * type the client did send. */
static int too_large(struct oai_error *e, const char *key)
{
    return openai_error(e, 400, "invalid_value", key,
                        "Invalid '%s': the number is too large to represent.", key);
}

static bool is_integer(const cJSON *v)
{
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble);
}

/* An integer in [lo, hi]; a number with a fraction is a type error, as in OpenAI's API. */
static int get_int(const cJSON *root, const char *key, long long lo, long long hi, int *out,
                   struct oai_error *e)
{
    const cJSON *v = openai__field(root, key);

    if (!v)
        return 0;
    if (cJSON_IsNumber(v) && !isfinite(v->valuedouble))
        return too_large(e, key);
    if (!is_integer(v))
        return bad_type(e, key, "an integer", v);
    if (v->valuedouble < (double)lo)
        return bad_value(e, key, ">= %.0f", (double)lo, v->valuedouble);
    if (v->valuedouble > (double)hi)
        return bad_value(e, key, "<= %.0f", (double)hi, v->valuedouble);
    *out = (int)v->valuedouble;
    return 1;
}

/* A number in [lo, hi], or (lo, hi] when lo_open. */
static int get_num(const cJSON *root, const char *key, double lo, bool lo_open, double hi,
                   float *out, struct oai_error *e)
{
    const cJSON *v = openai__field(root, key);
    double d;

    if (!v)
        return 0;
    if (cJSON_IsNumber(v) && !isfinite(v->valuedouble))
        return too_large(e, key);
    if (!cJSON_IsNumber(v))
        return bad_type(e, key, "a number", v);
    d = v->valuedouble;
    if (lo_open ? d <= lo : d < lo)
        return bad_value(e, key, lo_open ? "> %g" : ">= %g", lo, d);
    if (d > hi)
        return bad_value(e, key, "<= %g", hi, d);
    *out = (float)d;
    return 1;
}

static int get_string(const cJSON *root, const char *key, const char **out, struct oai_error *e)
{
    const cJSON *v = openai__field(root, key);

    if (!v)
        return 0;
    if (!cJSON_IsString(v))
        return bad_type(e, key, "a string", v);
    *out = v->valuestring;
    return 1;
}

/* A field osprey cannot honour: refused unless absent or its harmless value. */
static int unsupported(const char *key, struct oai_error *e)
{
    return openai_error(e, 400, "unsupported_parameter", key,
                        "Unsupported parameter: '%s' is not supported by osprey.", key);
}

static int check_unsupported(const cJSON *root, enum oai_kind kind, struct oai_error *e)
{
    const cJSON *v;

    /* logit_bias: openai_parse_fields (openai_fields.c); response_format: openai_grammar.c. */
    if (kind == OAI_COMPLETION) {
        if ((v = openai__field(root, "suffix")) && !(cJSON_IsString(v) && !v->valuestring[0]))
            return unsupported("suffix", e);
        if ((v = openai__field(root, "best_of")) && !(is_integer(v) && v->valuedouble == 1))
            return unsupported("best_of", e);
    } else {
        /* tools and tool_choice: openai_parse_tools (openai_tools.c). */
        if ((v = openai__field(root, "functions")) && !(cJSON_IsArray(v) && !v->child))
            return unsupported("functions", e);
        if ((v = openai__field(root, "function_call")))
            return unsupported("function_call", e);
    }
    return 0;
}

/* What cJSON lets through and would change behind the client's back: bytes that are not
 * UTF-8 (JSON text is UTF-8, RFC 8259; the tokenizer would make them U+FFFD) and NUL, raw or
 * as \u0000 (cJSON's strings end there: "ab\u0000cd" would become "ab"). Also the nesting
 * depth, to name it rather than report cJSON's refusal as a syntax error. */
static int check_text(const char *body, size_t len, struct oai_error *e)
{
    bool in_string = false;
    int depth = 0;

    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)body[i];

        if (c >= 0x80) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)body + i, (utf8proc_ssize_t)(len - i), &cp);

            if (n <= 0)
                return openai_error(e, 400, "invalid_json", NULL,
                                    "The request body is not valid UTF-8 (at byte %zu).", i);
            i += (size_t)n;
            continue;
        }
        if (c == 0 || (in_string && c == '\\' && i + 5 < len && !memcmp(body + i, "\\u0000", 6)))
            return openai_error(e, 400, "invalid_value", NULL,
                                "The request body holds a NUL character (at byte %zu); osprey does not "
                                "accept NUL in strings.", i);
        if (c == '"') {
            in_string = !in_string;
        } else if (in_string && c == '\\') {
            i += 2;                   /* the escaped character, a quote or a backslash included */
            continue;
        } else if (!in_string && (c == '[' || c == '{') && ++depth > CJSON_NESTING_LIMIT) {
            return openai_error(e, 400, "invalid_json", NULL,
                                "The request body is nested deeper than %d levels (at byte %zu).",
                                CJSON_NESTING_LIMIT, i);
        } else if (!in_string && (c == ']' || c == '}')) {
            depth--;
        }
        i++;
    }
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every object of the tree names each key once: cJSON keeps both copies of a repeated key
 * and we would read the first, Python's json (vLLM, OpenAI) the last. Sorted names, so that
 * an object of many keys costs k log k. Depth is bounded by cJSON's nesting limit. */
static int check_keys(const cJSON *v, struct oai_error *e)
{
    const char *few[32], **names = few;
    const cJSON *c;
    int n = 0, rc = 0;

    if (cJSON_IsObject(v)) {
        cJSON_ArrayForEach(c, v)
            n++;
        if (n > (int)ARRAY_LEN(few) && !(names = malloc((size_t)n * sizeof *names)))
            return openai__no_memory(e);
        n = 0;
        cJSON_ArrayForEach(c, v)
            names[n++] = c->string ? c->string : "";
        qsort(names, (size_t)n, sizeof *names, by_name);
        for (int i = 1; i < n && !rc; i++)
            if (!strcmp(names[i - 1], names[i]))
                rc = openai_error(e, 400, "invalid_json", NULL,
                                  "The request body names the key '%.100s' twice in one object.", names[i]);
        if (names != few)
            free(names);
    }
    for (c = v->child; c && !rc; c = c->next)
        rc = check_keys(c, e);
    return rc;
}

static int parse_body(struct oai_request *r, enum oai_kind kind, const char *body, size_t len,
                      struct oai_error *e)
{
    const char *end = NULL;
    size_t blank = 0;
    int rc;

    r->kind = kind;
    while (blank < len && strchr(" \t\r\n", body[blank]) && body[blank])
        blank++;
    if (blank == len)
        return openai_error(e, 400, "invalid_json", NULL,
                            "The request body is empty: expected a JSON object (with a Content-Length header).");
    if ((rc = check_text(body, len, e)))
        return rc;
    r->root = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (r->root && end && (size_t)(end - body) < len) {
        /* cJSON stops after the value; only whitespace may follow. */
        for (; (size_t)(end - body) < len && strchr(" \t\r\n", *end) && *end; end++)
            ;
        if ((size_t)(end - body) < len) {
            cJSON_Delete(r->root);
            r->root = NULL;
        }
    }
    if (!r->root)
        return openai_error(e, 400, "invalid_json", NULL,
                            "We could not parse the JSON body of your request: invalid JSON at byte %zu.",
                            end && end >= body ? (size_t)(end - body) : 0);
    if (!cJSON_IsObject(r->root))
        return openai_error(e, 400, "invalid_json", NULL,
                            "The request body must be a JSON object, not %s.", json_type_name(r->root));
    return check_keys(r->root, e);
}

int openai_parse_body(struct oai_request *r, enum oai_kind kind, const char *body, size_t len,
                      struct oai_error *e)
{
    return parse_body(r, kind, body, len, e);
}

static int parse_model(struct oai_request *r, const struct oai_config *c, struct oai_error *e)
{
    int rc = get_string(r->root, "model", &r->model, e);

    if (rc < 0)
        return rc;
    if (r->model && c->served_model && !openai_model_served(c, r->model)) {
        int shown = (int)MIN(strlen(r->model), 200);

        while (shown > 0 && ((unsigned char)r->model[shown] & 0xc0) == 0x80)
            shown--;                          /* cut between characters, not inside one */
        return openai_error(e, 404, "model_not_found", "model",
                            "The model '%.*s' does not exist.", shown, r->model);
    }
    return 0;
}

/* Token ids in [0, vocab) into the arena. */
static int parse_ids(struct oai_request *r, const cJSON *arr, const char *key,
                     const struct oai_config *c, int32_t **ids, int *n, struct oai_error *e)
{
    int count = cJSON_GetArraySize(arr), i = 0;
    const cJSON *v;

    if (!(*ids = arena_calloc(&r->arena, count ? (size_t)count : 1, sizeof **ids)))
        return openai__no_memory(e);
    cJSON_ArrayForEach(v, arr) {
        if (cJSON_IsNumber(v) && !isfinite(v->valuedouble))
            return openai_error(e, 400, "invalid_value", key,
                                "Invalid '%s[%d]': the number is too large to represent.", key, i);
        if (!is_integer(v))
            return openai_error(e, 400, "invalid_type", key,
                                "Invalid type for '%s[%d]': expected a token id (an integer), but got %s instead.",
                                key, i, json_type_name(v));
        if (v->valuedouble < 0 || v->valuedouble >= c->vocab_size)
            return openai_error(e, 400, "invalid_value", key,
                                "Invalid '%s[%d]': token id %.17g is outside the vocabulary [0, %d).",
                                key, i, v->valuedouble, c->vocab_size);
        (*ids)[i++] = (int32_t)v->valuedouble;
    }
    *n = count;
    return 0;
}

/* prompt: a string, a list of strings, a list of token ids or a list of lists of ids. */
static int parse_prompt(struct oai_request *r, const struct oai_config *c, struct oai_error *e)
{
    const cJSON *p = openai__field(r->root, "prompt"), *v;
    int count, i = 0, rc;

    if (!p)
        return openai_error(e, 400, "missing_required_parameter", "prompt",
                            "Missing required parameter: 'prompt'.");
    if (cJSON_IsString(p)) {
        if (!(r->prompts = arena_calloc(&r->arena, 1, sizeof *r->prompts)))
            return openai__no_memory(e);
        r->prompts[0].text = p->valuestring;
        r->prompts[0].text_len = strlen(p->valuestring);
        r->num_prompts = 1;
        return 0;
    }
    if (!cJSON_IsArray(p))
        return bad_type(e, "prompt", "a string or an array", p);
    if (!(count = cJSON_GetArraySize(p)))
        return openai_error(e, 400, "invalid_value", "prompt", "Invalid 'prompt': empty array.");
    if (is_integer(p->child)) {                   /* one prompt of token ids */
        if (!(r->prompts = arena_calloc(&r->arena, 1, sizeof *r->prompts)))
            return openai__no_memory(e);
        r->num_prompts = 1;
        return parse_ids(r, p, "prompt", c, &r->prompts[0].ids, &r->prompts[0].num_ids, e);
    }
    if (!(r->prompts = arena_calloc(&r->arena, (size_t)count, sizeof *r->prompts)))
        return openai__no_memory(e);
    r->num_prompts = count;
    cJSON_ArrayForEach(v, p) {
        struct oai_prompt *q = &r->prompts[i];

        if (cJSON_IsString(v) && cJSON_IsString(p->child)) {
            q->text = v->valuestring;
            q->text_len = strlen(v->valuestring);
        } else if (cJSON_IsArray(v) && cJSON_IsArray(p->child)) {
            if ((rc = parse_ids(r, v, "prompt", c, &q->ids, &q->num_ids, e)))
                return rc;
            if (q->num_ids == 0)
                return openai_error(e, 400, "invalid_value", "prompt",
                                    "Invalid 'prompt[%d]': empty list of token ids.", i);
        } else {
            return openai_error(e, 400, "invalid_type", "prompt",
                                "Invalid type for 'prompt[%d]': expected %s like prompt[0], but got %s instead.",
                                i, cJSON_IsString(p->child) ? "a string" :
                                   cJSON_IsArray(p->child) ? "an array of token ids" : "a string or an array",
                                json_type_name(v));
        }
        i++;
    }
    return 0;
}

static int parse_stop(struct oai_request *r, const struct oai_config *c, struct oai_error *e)
{
    const cJSON *s = openai__field(r->root, "stop"), *v;
    int count, i = 0;

    if (!s)
        return 0;
    if (!cJSON_IsString(s) && !cJSON_IsArray(s))
        return bad_type(e, "stop", "a string or an array of strings", s);
    count = cJSON_IsString(s) ? 1 : cJSON_GetArraySize(s);
    if (count > c->max_stop_strings)
        return openai_error(e, 400, "invalid_value", "stop",
                            "Invalid 'stop': %d stop strings, at most %d are allowed.",
                            count, c->max_stop_strings);
    if (count && !(r->params.stop = arena_calloc(&r->arena, (size_t)count, sizeof(char *))))
        return openai__no_memory(e);
    for (v = cJSON_IsString(s) ? s : s->child; v && i < count; v = v->next, i++) {
        size_t n;

        if (!cJSON_IsString(v))
            return openai_error(e, 400, "invalid_type", "stop",
                                "Invalid type for 'stop[%d]': expected a string, but got %s instead.",
                                i, json_type_name(v));
        n = strlen(v->valuestring);
        if (n == 0 || n > (size_t)c->max_stop_length)
            return openai_error(e, 400, "invalid_value", "stop",
                                "Invalid 'stop[%d]': %zu bytes, a stop string has 1 to %d.",
                                i, n, c->max_stop_length);
        r->params.stop[i] = v->valuestring;
    }
    r->params.num_stop = count;
    return 0;
}

/* seed: any 64-bit integer, signed or not (-2^63 … 2^64-1), every bit kept; a negative one
 * is its two's complement, so -1 and 18446744073709551615 are the same seed (clients written
 * for vLLM send -1). cJSON holds numbers as doubles, which round above 2^53, so the digits are
 * read again from the body's text. */
static int parse_seed(struct oai_request *r, const char *body, size_t len, struct oai_error *e)
{
    const cJSON *v = openai__field(r->root, "seed");
    const char *text = NULL;
    size_t n = 0;
    bool neg;
    int rc;

    if (!v)
        return 0;
    if (cJSON_IsNumber(v) && !isfinite(v->valuedouble))
        return too_large(e, "seed");
    if (!is_integer(v))
        return bad_type(e, "seed", "an integer", v);
    if (json_text_member(body, len, "seed", &text, &n))
        return openai_error(e, 500, "internal_error", "seed", "Cannot find 'seed' in the body's text.");
    neg = n > 0 && text[0] == '-';
    rc = json_text_u64(text + neg, n - neg, &r->params.seed);
    if (rc == -EINVAL && fabs(v->valuedouble) <= 9007199254740992.0) {
        /* 5.0 or -1e3: a double holds every integer up to 2^53 exactly. */
        r->params.seed = (uint64_t)fabs(v->valuedouble);
        rc = 0;
    }
    if (!rc && neg && r->params.seed > (uint64_t)1 << 63)
        rc = -ERANGE;
    if (rc)
        return openai_error(e, 400, "invalid_value", "seed",
                            "Invalid 'seed': expected an integer from -9223372036854775808 (-2^63) "
                            "to 18446744073709551615 (2^64-1)%s, but got %.*s instead.",
                            rc == -EINVAL ? " written without fraction or exponent" : "",
                            (int)MIN(n, 64), text);
    if (neg)
        r->params.seed = (uint64_t)0 - r->params.seed;
    r->params.has_seed = true;
    return 0;
}

static int parse_stream(struct oai_request *r, struct oai_error *e)
{
    const cJSON *so = openai__field(r->root, "stream_options");
    int rc;

    if ((rc = get_bool(r->root, "stream", &r->stream, e)) < 0)
        return rc;
    if (!so)
        return 0;
    if (!cJSON_IsObject(so))
        return bad_type(e, "stream_options", "an object", so);
    if (!r->stream)
        return openai_error(e, 400, "invalid_value", "stream_options",
                            "Invalid 'stream_options': only allowed when 'stream' is true.");
    rc = get_bool(so, "include_usage", &r->include_usage, e);
    if (rc < 0)
        snprintf(e->param, sizeof e->param, "stream_options.include_usage");
    return rc < 0 ? rc : 0;
}

/* The fields completions and chat share. */
static int parse_common(struct oai_request *r, const char *body, size_t len, const struct oai_config *c,
                        struct oai_error *e)
{
    struct gen_params *p = &r->params;
    const cJSON *v;
    int rc, max_n = c->max_n > 0 ? c->max_n : 1;
    long long max_tokens = c->max_tokens_limit > 0 ? c->max_tokens_limit : INT_FIELD_MAX;

    if ((rc = parse_model(r, c, e)) || (rc = check_unsupported(r->root, r->kind, e)) ||
        (rc = openai_parse_grammar(r, e)))
        return rc;
    p->temperature = c->default_temperature >= 0 ? c->default_temperature : 1.0f;
    p->top_p = c->default_top_p > 0 ? c->default_top_p : 1.0f;
    p->top_k = c->default_top_k > 0 ? c->default_top_k : 0;
    /* max_completion_tokens, OpenAI's newer name, wins over max_tokens when both are given
     * (vLLM's order), on both routes: a client that sets both is not refused. */
    if ((rc = get_int(r->root, "max_completion_tokens", 1, max_tokens, &p->max_tokens, e)))
        r->max_tokens_set = true;
    if (rc < 0)
        return rc;
    if (!r->max_tokens_set && (rc = get_int(r->root, "max_tokens", 1, max_tokens, &p->max_tokens, e)))
        r->max_tokens_set = true;
    if (rc < 0 ||
        (rc = get_num(r->root, "temperature", 0, false, 2, &p->temperature, e)) < 0 ||
        (rc = get_num(r->root, "top_p", 0, true, 1, &p->top_p, e)) < 0 ||
        (rc = get_num(r->root, "min_p", 0, false, 1, &p->min_p, e)) < 0 ||
        (rc = get_num(r->root, "presence_penalty", -2, false, 2, &p->presence_penalty, e)) < 0 ||
        (rc = get_num(r->root, "frequency_penalty", -2, false, 2, &p->frequency_penalty, e)) < 0 ||
        (rc = get_num(r->root, "repetition_penalty", 0, true, 2, &p->repetition_penalty, e)) < 0 ||
        (rc = get_int(r->root, "top_k", -1, INT_FIELD_MAX, &p->top_k, e)) < 0 ||
        (rc = get_int(r->root, "n", 1, max_n, &r->n, e)) < 0 ||
        (rc = get_int(r->root, "min_tokens", 0, max_tokens, &p->min_tokens, e)) < 0 ||
        (rc = get_bool(r->root, "ignore_eos", &p->ignore_eos, e)) < 0 ||
        (rc = get_bool(r->root, "skip_special_tokens", &p->skip_special_tokens, e)) < 0 ||
        (rc = get_bool(r->root, "add_special_tokens", &r->add_special_tokens, e)) < 0 ||
        (rc = get_string(r->root, "user", &r->user, e)) < 0 ||
        (rc = parse_seed(r, body, len, e)) < 0 || (rc = parse_stop(r, c, e)) < 0 || (rc = parse_stream(r, e)) < 0)
        return rc;
    if (p->top_k < 0)
        p->top_k = 0;                             /* -1 is vLLM's "off" */
    if (r->max_tokens_set && p->min_tokens > p->max_tokens)
        return openai_error(e, 400, "invalid_value", "min_tokens",
                            "Invalid 'min_tokens': %d is more than max_tokens %d.",
                            p->min_tokens, p->max_tokens);
    if ((v = openai__field(r->root, "stop_token_ids"))) {
        if (!cJSON_IsArray(v))
            return bad_type(e, "stop_token_ids", "an array of token ids", v);
        if ((rc = parse_ids(r, v, "stop_token_ids", c, &p->stop_token_ids, &p->num_stop_token_ids, e)))
            return rc;
    }
    return openai_parse_fields(r, c, e);
}

static int check_choices(const struct oai_request *r, const struct oai_config *c, struct oai_error *e)
{
    if ((long long)r->num_prompts * r->n > c->max_n)
        return openai_error(e, 400, "invalid_value", "n",
                            "Invalid 'n': %d prompts times n = %d asks for %lld choices, at most %d are allowed.",
                            r->num_prompts, r->n, (long long)r->num_prompts * r->n, c->max_n);
    return 0;
}

int openai_parse_completion(struct oai_request *r, const char *body, size_t len,
                            const struct oai_config *c, struct oai_error *e)
{
    int rc, top = 0, max_top = MIN(SAMPLE_MAX_LOGPROBS, c->max_logprobs);   /* vLLM: --max-logprobs */

    r->add_special_tokens = true;
    if ((rc = parse_body(r, OAI_COMPLETION, body, len, e)) || (rc = parse_common(r, body, len, c, e)) ||
        (rc = parse_prompt(r, c, e)) || (rc = check_choices(r, c, e)))
        return rc;
    if ((rc = get_bool(r->root, "echo", &r->echo, e)) < 0 ||
        (rc = get_int(r->root, "logprobs", 0, max_top, &top, e)) < 0)
        return rc;
    if (rc) {
        r->logprobs = true;
        r->top_logprobs = top;
        r->params.logprobs = top;
        if (r->echo)
            return openai_error(e, 400, "unsupported_parameter", "echo",
                                "Unsupported parameter: 'echo' together with 'logprobs' (prompt "
                                "logprobs) is not supported by osprey.");
    }
    return 0;
}

/* content: a string, null, or a list of {type: "text", text} parts, joined here with "\n"
 * into one string (vLLM's "string" content format), which every chat template takes. */
static int normalize_content(struct oai_request *r, cJSON *msg, int i, struct oai_error *e)
{
    cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content"), *part, *s;
    size_t total = 0, at = 0;
    char *joined;

    if (!content || cJSON_IsString(content) || cJSON_IsNull(content))
        return 0;
    if (!cJSON_IsArray(content))
        return openai_error(e, 400, "invalid_type", "messages",
                            "Invalid type for 'messages[%d].content': expected a string or an array "
                            "of content parts, but got %s instead.", i, json_type_name(content));
    cJSON_ArrayForEach(part, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");

        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text"))
            return openai_error(e, 400, "invalid_value", "messages",
                                "Invalid 'messages[%d].content': only parts of type 'text' are supported.", i);
        if (!cJSON_IsString(text))
            return openai_error(e, 400, "invalid_type", "messages",
                                "Invalid type for 'messages[%d].content[].text': expected a string.", i);
        total += strlen(text->valuestring) + 1;
    }
    if (!(joined = arena_alloc(&r->arena, total + 1)))
        return openai__no_memory(e);
    cJSON_ArrayForEach(part, content) {
        const char *t = cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring;
        size_t n = strlen(t);

        if (at)
            joined[at++] = '\n';
        memcpy(joined + at, t, n);
        at += n;
    }
    joined[at] = '\0';
    if (!(s = cJSON_CreateString(joined)) || !cJSON_ReplaceItemInObjectCaseSensitive(msg, "content", s)) {
        cJSON_Delete(s);
        return openai__no_memory(e);
    }
    return 0;
}

static int parse_messages(struct oai_request *r, struct oai_error *e)
{
    cJSON *m = cJSON_GetObjectItemCaseSensitive(r->root, "messages"), *msg;
    const cJSON *kw;
    int i = 0, rc;

    if (!m || cJSON_IsNull(m))
        return openai_error(e, 400, "missing_required_parameter", "messages",
                            "Missing required parameter: 'messages'.");
    if (!cJSON_IsArray(m))
        return bad_type(e, "messages", "an array", m);
    if (!m->child)
        return openai_error(e, 400, "invalid_value", "messages",
                            "Invalid 'messages': empty array. Expected an array with minimum length 1.");
    cJSON_ArrayForEach(msg, m) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");

        if (!cJSON_IsObject(msg))
            return openai_error(e, 400, "invalid_type", "messages",
                                "Invalid type for 'messages[%d]': expected an object, but got %s instead.",
                                i, json_type_name(msg));
        if (!cJSON_IsString(role) || !role->valuestring[0])
            return openai_error(e, 400, "invalid_value", "messages",
                                "Invalid 'messages[%d].role': expected a non-empty string.", i);
        if ((rc = normalize_content(r, msg, i, e)) || (rc = openai_tools_check_message(msg, i, e)))
            return rc;
        i++;
    }
    r->messages = m;
    if ((kw = openai__field(r->root, "chat_template_kwargs")) && !cJSON_IsObject(kw))
        return bad_type(e, "chat_template_kwargs", "an object", kw);
    r->template_kwargs = kw;
    rc = get_bool(r->root, "add_generation_prompt", &r->add_generation_prompt, e);
    return rc < 0 ? rc : 0;
}

int openai_parse_chat(struct oai_request *r, const char *body, size_t len,
                      const struct oai_config *c, struct oai_error *e)
{
    int rc, max_top = MIN(SAMPLE_MAX_LOGPROBS, c->max_logprobs);
    bool top_set;

    r->add_special_tokens = false;    /* the template writes BOS itself */
    r->num_prompts = 1;
    if ((rc = parse_body(r, OAI_CHAT, body, len, e)) || (rc = parse_common(r, body, len, c, e)) ||
        (rc = parse_messages(r, e)) || (rc = check_choices(r, c, e)))
        return rc;
    r->num_prompts = 0;               /* the prompt comes from rendering the messages */
    if ((rc = get_bool(r->root, "logprobs", &r->logprobs, e)) < 0 ||
        (rc = get_int(r->root, "top_logprobs", 0, max_top, &r->top_logprobs, e)) < 0)
        return rc;
    top_set = rc == 1;
    if (top_set && !r->logprobs)
        return openai_error(e, 400, "invalid_value", "top_logprobs",
                            "Invalid 'top_logprobs': 'logprobs' must be true when 'top_logprobs' is given.");
    r->params.logprobs = r->logprobs ? r->top_logprobs : -1;
    if ((rc = openai_parse_chat_fields(r, e)))
        return rc;
    return openai_parse_tools(r, c, e);
}

int openai_parse_tokenize(struct oai_request *r, const char *body, size_t len,
                          const struct oai_config *c, struct oai_error *e)
{
    const cJSON *p;
    int rc;

    if ((rc = parse_body(r, OAI_TOKENIZE, body, len, e)) || (rc = parse_model(r, c, e)))
        return rc;
    if (openai__field(r->root, "messages")) {
        r->add_special_tokens = false;
        if ((rc = parse_messages(r, e)) || (rc = openai_parse_tool_list(r, e)) ||   /* as chat renders them */
            (c->tool_parser == TOOL_PARSER_OPENAI && (rc = openai_harmony_messages(r, e))))
            return rc;
    } else {
        r->add_special_tokens = true;
        if (!(p = openai__field(r->root, "prompt")))
            return openai_error(e, 400, "missing_required_parameter", "prompt",
                                "Missing required parameter: 'prompt' (or 'messages').");
        if (!cJSON_IsString(p))
            return bad_type(e, "prompt", "a string", p);
        if (!(r->prompts = arena_calloc(&r->arena, 1, sizeof *r->prompts)))
            return openai__no_memory(e);
        r->prompts[0].text = p->valuestring;
        r->prompts[0].text_len = strlen(p->valuestring);
        r->num_prompts = 1;
    }
    rc = get_bool(r->root, "add_special_tokens", &r->add_special_tokens, e);
    return rc < 0 ? rc : 0;
}

int openai_parse_detokenize(struct oai_request *r, const char *body, size_t len,
                            const struct oai_config *c, struct oai_error *e)
{
    const cJSON *t;
    int rc;

    if ((rc = parse_body(r, OAI_DETOKENIZE, body, len, e)) || (rc = parse_model(r, c, e)))
        return rc;
    if (!(t = openai__field(r->root, "tokens")))
        return openai_error(e, 400, "missing_required_parameter", "tokens",
                            "Missing required parameter: 'tokens'.");
    if (!cJSON_IsArray(t))
        return bad_type(e, "tokens", "an array of token ids", t);
    if (!(r->prompts = arena_calloc(&r->arena, 1, sizeof *r->prompts)))
        return openai__no_memory(e);
    r->num_prompts = 1;
    return parse_ids(r, t, "tokens", c, &r->prompts[0].ids, &r->prompts[0].num_ids, e);
}

int openai_fit_context(const struct oai_request *r, int num_prompt, const struct oai_config *c,
                       int *max_tokens, struct oai_error *e)
{
    /* A KV cache smaller than the context binds instead: a request that cannot fit it would
     * fail inside the engine, so it is refused here, saying which bound it met. */
    bool cache = c->max_cache_tokens > 0 && c->max_cache_tokens < c->max_model_len;
    int ctx = cache ? c->max_cache_tokens : c->max_model_len;
    int max_prompt = c->max_prompt_tokens > 0 ? MIN(c->max_prompt_tokens, ctx) : ctx;
    int room = ctx - num_prompt;
    const char *what = r->kind == OAI_CHAT ? "messages" : "prompt";
    const char *is = r->kind == OAI_CHAT ? "come to" : "is";
    char limit[200];

    if (cache)
        snprintf(limit, sizeof limit, "This server's KV cache holds %d tokens for one request (less "
                 "than the model's maximum context length, %d tokens).", ctx, c->max_model_len);
    else
        snprintf(limit, sizeof limit, "This model's maximum context length is %d tokens.", ctx);
    if (num_prompt == 0)
        return openai_error(e, 400, "invalid_value", what, "Invalid '%s': the prompt is empty (0 tokens).", what);
    if (num_prompt >= ctx)
        return openai_error(e, 400, "context_length_exceeded", what,
                            "%s However, your %s %s %d tokens, which leaves no room for the "
                            "completion. Please reduce the length of the %s.", limit, what, is,
                            num_prompt, what);
    if (num_prompt > max_prompt)
        return openai_error(e, 400, "context_length_exceeded", what,
                            "Your %s %s %d tokens; this server accepts at most %d prompt tokens.",
                            what, is, num_prompt, max_prompt);
    if (!r->max_tokens_set) {
        *max_tokens = r->kind == OAI_CHAT ? room : MIN(16, room);
        if (c->max_tokens_limit > 0)
            *max_tokens = MIN(*max_tokens, c->max_tokens_limit);
        if (r->params.min_tokens > *max_tokens)
            return openai_error(e, 400, "invalid_value", "min_tokens",
                                "Invalid 'min_tokens': %d is more than the %d tokens left for the completion.",
                                r->params.min_tokens, *max_tokens);
        return 0;
    }
    if (r->params.max_tokens > room)
        return openai_error(e, 400, "context_length_exceeded", "max_tokens",
                            "%s However, you requested %d tokens (%d in the %s, %d in the "
                            "completion). Please reduce the length of the %s or completion.", limit,
                            num_prompt + r->params.max_tokens, num_prompt, what, r->params.max_tokens,
                            what);
    *max_tokens = r->params.max_tokens;
    return 0;
}
