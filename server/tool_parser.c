/* tool_parser.c — the three JSON tool-call syntaxes of tool_parser.h (harmony's is
 * server/harmony.c, which adds its calls through tool_parse_add_call), read with cJSON. Each
 * parser finds where calls start (its opening marker, or for Llama 3.x a JSON object as the
 * whole output), decodes every call's JSON and rewrites its arguments as compact JSON text.
 * A malformed call leaves the output as plain content, as vLLM's parsers do. */
#include "server/tool_parser.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "engine/base/util.h"   /* ARRAY_LEN, MIN */

static const char HERMES_OPEN[] = "<tool_call>", HERMES_CLOSE[] = "</tool_call>";
static const char MISTRAL_OPEN[] = "[TOOL_CALLS]";
static const char PYTHON_TAG[] = "<|python_tag|>";
static const char HARMONY_CHANNEL[] = "<|channel|>";

static const struct { const char *name; enum tool_parser_kind kind; } names[] = {
    { "none", TOOL_PARSER_NONE },
    { "llama3_json", TOOL_PARSER_LLAMA3_JSON }, { "llama3", TOOL_PARSER_LLAMA3_JSON },
    { "llama4_json", TOOL_PARSER_LLAMA3_JSON },
    { "hermes", TOOL_PARSER_HERMES }, { "qwen3", TOOL_PARSER_HERMES }, { "qwen25", TOOL_PARSER_HERMES },
    { "mistral", TOOL_PARSER_MISTRAL },
    { "openai", TOOL_PARSER_OPENAI }, { "harmony", TOOL_PARSER_OPENAI },
};

int tool_parser_from_name(const char *name, enum tool_parser_kind *out)
{
    for (size_t i = 0; name && i < ARRAY_LEN(names); i++)
        if (!strcmp(name, names[i].name)) {
            *out = names[i].kind;
            return 0;
        }
    return -EINVAL;
}

const char *tool_parser_name(enum tool_parser_kind k)
{
    switch (k) {
    case TOOL_PARSER_LLAMA3_JSON: return "llama3_json";
    case TOOL_PARSER_HERMES: return "hermes";
    case TOOL_PARSER_MISTRAL: return "mistral";
    case TOOL_PARSER_OPENAI: return "openai";
    default: return "none";
    }
}

enum tool_parser_kind tool_parser_for_template(const char *source)
{
    if (!source)
        return TOOL_PARSER_NONE;
    /* gpt-oss: every assistant turn goes through a channel, calls or not */
    if (strstr(source, HARMONY_CHANNEL))
        return TOOL_PARSER_OPENAI;
    if (strstr(source, HERMES_OPEN))
        return TOOL_PARSER_HERMES;
    if (strstr(source, MISTRAL_OPEN))
        return TOOL_PARSER_MISTRAL;
    /* Llama 3.1/3.2/3.3 write calls as {"name": …, "parameters": …} and know ipython. */
    if (strstr(source, PYTHON_TAG) || (strstr(source, "\"parameters\"") && strstr(source, "ipython")))
        return TOOL_PARSER_LLAMA3_JSON;
    return TOOL_PARSER_NONE;
}

bool tool_parser_needs_special_tokens(enum tool_parser_kind k)
{
    return k == TOOL_PARSER_MISTRAL || k == TOOL_PARSER_OPENAI;
}

void tool_parse_fini(struct tool_parse *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->num_calls; i++) {
        free(p->calls[i].id);
        free(p->calls[i].name);
        free(p->calls[i].arguments);
    }
    free(p->calls);
    memset(p, 0, sizeof *p);
}

/* A fresh call id: random where the kernel gives entropy, else a process-wide counter (ids
 * must differ within a conversation, not be secret). Mistral's templates insist on 9
 * letters and digits. */
static char *new_id(enum tool_parser_kind k)
{
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    static _Atomic uint64_t counter;
    unsigned char rnd[16];
    char buf[64];
    int n;

    if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd) {
        uint64_t c = atomic_fetch_add(&counter, 1) + 1;

        memset(rnd, 0, sizeof rnd);
        memcpy(rnd, &c, sizeof c);
    }
    if (k == TOOL_PARSER_MISTRAL) {
        for (n = 0; n < 9; n++)
            buf[n] = alnum[rnd[n] % (sizeof alnum - 1)];
        buf[n] = '\0';
    } else {
        n = snprintf(buf, sizeof buf, "chatcmpl-tool-");
        for (size_t i = 0; i < sizeof rnd; i++)
            n += snprintf(buf + n, sizeof buf - (size_t)n, "%02x", rnd[i]);
    }
    return strdup(buf);
}

/* Appends a call to name with args (an object, or NULL/null: "{}"); 1 or -ENOMEM. */
static int push_call(struct tool_parse *p, enum tool_parser_kind k, const char *name, const cJSON *args)
{
    struct tool_call *calls, *c;

    if (!(calls = realloc(p->calls, (size_t)(p->num_calls + 1) * sizeof *calls)))
        return -ENOMEM;
    p->calls = calls;
    c = &calls[p->num_calls];
    memset(c, 0, sizeof *c);
    p->num_calls++;
    c->id = new_id(k);
    c->name = strdup(name);
    c->arguments = cJSON_IsObject(args) ? cJSON_PrintUnformatted(args) : strdup("{}");
    return c->id && c->name && c->arguments ? 1 : -ENOMEM;
}

/* Appends the call that obj describes: a string "name" and an object of arguments under
 * args_key (or the other accepted key). Returns 1 when added, 0 when obj is not a call,
 * -ENOMEM. */
static int add_call(struct tool_parse *p, enum tool_parser_kind k, const cJSON *obj,
                    const char *args_key, const char *alt_key)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(obj, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(obj, args_key);

    if (!args)
        args = cJSON_GetObjectItemCaseSensitive(obj, alt_key);
    if (!cJSON_IsObject(obj) || !cJSON_IsString(name) || !name->valuestring[0] ||
        (args && !cJSON_IsNull(args) && !cJSON_IsObject(args)))
        return 0;
    return push_call(p, k, name->valuestring, args);
}

static size_t skip_space(const char *s, size_t at, size_t len)
{
    while (at < len && strchr(" \t\r\n", s[at]) && s[at])
        at++;
    return at;
}

/* Where needle first occurs in s[from..len), or len. */
static size_t find(const char *s, size_t from, size_t len, const char *needle)
{
    size_t n = strlen(needle);

    for (size_t i = from; i + n <= len; i++)
        if (!memcmp(s + i, needle, n))
            return i;
    return len;
}

/* One JSON value from s[at..len), *end set past it; NULL when none parses. */
static cJSON *parse_json(const char *s, size_t at, size_t len, size_t *end)
{
    const char *stop = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(s + at, len - at, &stop, false);

    *end = v && stop ? (size_t)(stop - s) : at;
    return v;
}

/* Hermes: <tool_call> JSON </tool_call>, repeated; the last may lack its closing tag (the
 * output ended at a stop token or max_tokens). Text after the last call is dropped. */
static int parse_hermes(const char *s, size_t len, struct tool_parse *p)
{
    size_t at = find(s, 0, len, HERMES_OPEN);

    p->content_len = at;
    while (at < len) {
        size_t body = at + strlen(HERMES_OPEN), close = find(s, body, len, HERMES_CLOSE), end;
        cJSON *v = parse_json(s, body, close, &end);
        int rc;

        if (!v || skip_space(s, end, close) != close) {
            cJSON_Delete(v);
            return 0;
        }
        rc = add_call(p, TOOL_PARSER_HERMES, v, "arguments", "parameters");
        cJSON_Delete(v);
        if (rc <= 0)
            return rc;
        at = close == len ? len : find(s, close + strlen(HERMES_CLOSE), len, HERMES_OPEN);
    }
    return 1;
}

/* Llama 3.x: the whole output (after blanks and an optional <|python_tag|>) is one call
 * object, or several separated by ';'. */
static int parse_llama3(const char *s, size_t len, struct tool_parse *p)
{
    size_t at = skip_space(s, 0, len);

    if (len - at >= strlen(PYTHON_TAG) && !memcmp(s + at, PYTHON_TAG, strlen(PYTHON_TAG)))
        at = skip_space(s, at + strlen(PYTHON_TAG), len);
    if (at >= len || s[at] != '{')
        return 0;
    p->content_len = 0;
    while (at < len) {
        size_t end;
        cJSON *v = parse_json(s, at, len, &end);
        int rc;

        if (!v)
            return 0;
        rc = add_call(p, TOOL_PARSER_LLAMA3_JSON, v, "parameters", "arguments");
        cJSON_Delete(v);
        if (rc <= 0)
            return rc;
        at = skip_space(s, end, len);
        if (at < len && s[at] == ';')
            at = skip_space(s, at + 1, len);
        else if (at < len)
            return 0;
    }
    return 1;
}

/* Mistral: [TOOL_CALLS] then a JSON array of call objects (or one object). What follows
 * the JSON is dropped: the parser keeps special tokens in the text, so the end-of-sequence
 * token's text (</s>) may follow. */
static int parse_mistral(const char *s, size_t len, struct tool_parse *p)
{
    size_t at = find(s, 0, len, MISTRAL_OPEN), end;
    cJSON *v, *item;
    int rc = 1;

    p->content_len = at;
    if (at == len)
        return 0;
    at = skip_space(s, at + strlen(MISTRAL_OPEN), len);
    if (!(v = parse_json(s, at, len, &end)))
        return 0;
    if (cJSON_IsArray(v) && v->child) {
        cJSON_ArrayForEach(item, v)
            if ((rc = add_call(p, TOOL_PARSER_MISTRAL, item, "arguments", "parameters")) <= 0)
                break;
    } else {
        rc = add_call(p, TOOL_PARSER_MISTRAL, v, "arguments", "parameters");
    }
    cJSON_Delete(v);
    return rc;
}

int tool_parse_add_call(struct tool_parse *p, enum tool_parser_kind k, const char *name,
                        const char *args, size_t len)
{
    size_t end = 0;
    cJSON *v = name[0] ? parse_json(args, 0, len, &end) : NULL;
    int rc = 0;

    if (cJSON_IsObject(v) && skip_space(args, end, len) == len)
        rc = push_call(p, k, name, v);
    cJSON_Delete(v);
    return rc;
}

int tool_parser_parse(enum tool_parser_kind k, const char *text, size_t len, int max_calls,
                      struct tool_parse *out)
{
    int rc = 0;

    memset(out, 0, sizeof *out);
    switch (k) {
    case TOOL_PARSER_HERMES: rc = parse_hermes(text, len, out); break;
    case TOOL_PARSER_LLAMA3_JSON: rc = parse_llama3(text, len, out); break;
    case TOOL_PARSER_MISTRAL: rc = parse_mistral(text, len, out); break;
    default: break;
    }
    if (rc <= 0 || !out->num_calls) {
        tool_parse_fini(out);
        out->content_len = len;
        return rc < 0 ? rc : 0;
    }
    while (max_calls > 0 && out->num_calls > max_calls) {
        struct tool_call *c = &out->calls[--out->num_calls];

        free(c->id);
        free(c->name);
        free(c->arguments);
    }
    return 0;
}

/* Bytes at the end of s[0..len) that begin marker without completing it. */
static size_t partial_marker(const char *s, size_t len, const char *marker)
{
    size_t m = strlen(marker);

    for (size_t n = MIN(len, m - 1); n > 0; n--)
        if (!memcmp(s + len - n, marker, n))
            return n;
    return 0;
}

size_t tool_parser_content_prefix(enum tool_parser_kind k, const char *text, size_t len,
                                  bool *maybe_call)
{
    const char *marker = k == TOOL_PARSER_HERMES ? HERMES_OPEN : MISTRAL_OPEN;
    size_t at, tag = strlen(PYTHON_TAG);

    *maybe_call = false;
    switch (k) {
    case TOOL_PARSER_HERMES:
    case TOOL_PARSER_MISTRAL:
        if ((at = find(text, 0, len, marker)) < len) {
            *maybe_call = true;
            return at;
        }
        at = partial_marker(text, len, marker);
        *maybe_call = at > 0;
        return len - at;
    case TOOL_PARSER_LLAMA3_JSON:
        /* The first character that is not blank decides: '{' or the tag starts a call;
         * until it comes, blanks are held back. */
        at = skip_space(text, 0, len);
        if (at == len || text[at] == '{' ||
            !memcmp(text + at, PYTHON_TAG, MIN(len - at, tag))) {
            *maybe_call = at < len;
            return 0;
        }
        return len;
    default:
        return len;
    }
}
