/* openai_render.c — responses, stream chunks and error objects in OpenAI's JSON shapes,
 * fields in the order OpenAI's documentation shows them. Runs on the HTTP threads (never on
 * the engine thread): the engine only hands over token ids, text and logprobs.
 * Every builder returns NULL when out of memory; a container owns its children from the
 * moment they are added, so one cJSON_Delete of the top object cleans up any failure. */
#include "server/openai.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>   /* utf8proc_iterate */

/* Appends item to an array (key NULL) or an object; deletes it when it cannot. */
static bool add(cJSON *obj, const char *key, cJSON *item)
{
    if (!item)
        return false;
    if (!obj || !(key ? cJSON_AddItemToObject(obj, key, item) : cJSON_AddItemToArray(obj, item))) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

size_t openai_utf8_prefix(const char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t n;

        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        n = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
        if (n <= 0)
            break;
        i += (size_t)n;
    }
    return i;
}

cJSON *openai_json_string(const char *s, size_t len)
{
    /* 6 bytes out per byte in at most: "\u001f", or U+FFFD (3) for a stray byte. */
    char *out = len <= (SIZE_MAX - 3) / 6 ? malloc(6 * len + 3) : NULL, *p = out;
    cJSON *item;

    if (!out)
        return NULL;
    *p++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 0x80) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                                  (utf8proc_ssize_t)(len - i), &cp);

            if (n > 0) {
                memcpy(p, s + i, (size_t)n);
                p += n;
                i += (size_t)n - 1;
            } else {
                memcpy(p, "\xef\xbf\xbd", 3);
                p += 3;
            }
            continue;
        }
        switch (c) {
        case '"': *p++ = '\\'; *p++ = '"'; break;
        case '\\': *p++ = '\\'; *p++ = '\\'; break;
        case '\b': *p++ = '\\'; *p++ = 'b'; break;
        case '\f': *p++ = '\\'; *p++ = 'f'; break;
        case '\n': *p++ = '\\'; *p++ = 'n'; break;
        case '\r': *p++ = '\\'; *p++ = 'r'; break;
        case '\t': *p++ = '\\'; *p++ = 't'; break;
        default:
            if (c < 0x20)
                p += sprintf(p, "\\u%04x", c);
            else
                *p++ = (char)c;
        }
    }
    *p++ = '"';
    *p = '\0';
    item = cJSON_CreateRaw(out);
    free(out);
    return item;
}

/* The prefix followed by the text (echo), without a copy when there is none. */
static cJSON *choice_text(const struct oai_choice *c)
{
    char *tmp;
    cJSON *item;

    if (!c->prefix_len)
        return openai_json_string(c->text, c->text_len);
    if (!(tmp = malloc(c->prefix_len + c->text_len + 1)))
        return NULL;
    memcpy(tmp, c->prefix, c->prefix_len);
    if (c->text_len)
        memcpy(tmp + c->prefix_len, c->text, c->text_len);
    item = openai_json_string(tmp, c->prefix_len + c->text_len);
    free(tmp);
    return item;
}

static cJSON *string_or_null(const char *s)
{
    return s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

/* Renders and frees obj; NULL when obj is NULL or printing fails. */
static char *print(cJSON *obj, bool ok, size_t *len)
{
    char *s = ok && obj ? cJSON_PrintUnformatted(obj) : NULL;

    cJSON_Delete(obj);
    *len = s ? strlen(s) : 0;
    return s;
}

static cJSON *head_object(const struct oai_head *h, bool chunk)
{
    cJSON *o = cJSON_CreateObject();
    const char *object = h->kind == OAI_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                             : "text_completion";
    bool ok = add(o, "id", cJSON_CreateString(h->id)) &&
              add(o, "object", cJSON_CreateString(object)) &&
              add(o, "created", cJSON_CreateNumber((double)h->created)) &&
              add(o, "model", cJSON_CreateString(h->model));

    if (ok && h->system_fingerprint)
        ok = add(o, "system_fingerprint", cJSON_CreateString(h->system_fingerprint));
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *usage_object(const struct oai_usage *u)
{
    cJSON *o = cJSON_CreateObject(), *d;
    bool ok = add(o, "prompt_tokens", cJSON_CreateNumber(u->prompt_tokens)) &&
              add(o, "completion_tokens", cJSON_CreateNumber(u->completion_tokens)) &&
              add(o, "total_tokens", cJSON_CreateNumber((double)u->prompt_tokens + u->completion_tokens)) &&
              (d = cJSON_AddObjectToObject(o, "prompt_tokens_details")) &&
              add(d, "cached_tokens", cJSON_CreateNumber(u->cached_tokens));

    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *byte_array(const char *s, size_t len)
{
    cJSON *a = cJSON_CreateArray();

    for (size_t i = 0; a && i < len; i++)
        if (!add(a, NULL, cJSON_CreateNumber((unsigned char)s[i]))) {
            cJSON_Delete(a);
            return NULL;
        }
    return a;
}

/* Chat: {token, logprob, bytes}, and an empty top_logprobs list when with_top. */
static cJSON *chat_logprob_entry(const struct oai_vocab *v, int32_t id, float logprob, bool with_top)
{
    size_t len = 0;
    char *piece = v->piece(v->ctx, id, &len);
    cJSON *o = cJSON_CreateObject();
    bool ok = piece && add(o, "token", openai_json_string(piece, len)) &&
              add(o, "logprob", cJSON_CreateNumber(logprob)) &&
              add(o, "bytes", byte_array(piece, len)) &&
              (!with_top || cJSON_AddArrayToObject(o, "top_logprobs"));

    free(piece);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Chat: {"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}. */
static cJSON *chat_logprobs(const struct oai_choice *c, int top_n, const struct oai_vocab *v)
{
    cJSON *o = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(o, "content");
    bool ok = content != NULL;

    for (int i = 0; ok && i < c->num_tokens; i++) {
        const struct sample_result *s = &c->samples[i];
        cJSON *entry = chat_logprob_entry(v, c->ids[i], s->logprob, true);
        cJSON *top = cJSON_GetObjectItemCaseSensitive(entry, "top_logprobs");

        ok = add(content, NULL, entry);
        for (int j = 0; ok && j < MIN(top_n, s->num_top); j++)
            ok = add(top, NULL, chat_logprob_entry(v, s->top_ids[j], s->top_logprobs[j], false));
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* One completions top_logprobs dict: the top_n tokens, then the chosen one when it is not
 * among them (vLLM reports both); tokens with the same text keep their first entry. */
static cJSON *completion_top_dict(const struct sample_result *s, int top_n, const char *chosen,
                                  const struct oai_vocab *v)
{
    cJSON *d = cJSON_CreateObject();
    bool ok = d != NULL;

    for (int j = 0; ok && j < MIN(top_n, s->num_top); j++) {
        size_t n;
        char *piece = v->piece(v->ctx, s->top_ids[j], &n);

        ok = piece != NULL;
        if (ok && !cJSON_GetObjectItemCaseSensitive(d, piece))
            ok = add(d, piece, cJSON_CreateNumber(s->top_logprobs[j]));
        free(piece);
    }
    if (ok && !cJSON_GetObjectItemCaseSensitive(d, chosen))
        ok = add(d, chosen, cJSON_CreateNumber(s->logprob));
    if (!ok) {
        cJSON_Delete(d);
        return NULL;
    }
    return d;
}

/* Completions: {tokens, token_logprobs, top_logprobs, text_offset (bytes into the text)}. */
static cJSON *completion_logprobs(const struct oai_choice *c, int top_n, const struct oai_vocab *v)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *tokens = cJSON_AddArrayToObject(o, "tokens");
    cJSON *lps = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(o, "top_logprobs");
    cJSON *offsets = cJSON_AddArrayToObject(o, "text_offset");
    size_t off = c->text_offset;
    bool ok = tokens && lps && tops && offsets;

    for (int i = 0; ok && i < c->num_tokens; i++) {
        size_t len = 0;
        char *piece = v->piece(v->ctx, c->ids[i], &len);

        ok = piece && add(tokens, NULL, openai_json_string(piece, len)) &&
             add(lps, NULL, cJSON_CreateNumber(c->samples[i].logprob)) &&
             add(tops, NULL, completion_top_dict(&c->samples[i], top_n, piece, v)) &&
             add(offsets, NULL, cJSON_CreateNumber((double)off));
        off += len;
        free(piece);
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *logprobs_or_null(enum oai_kind kind, const struct oai_choice *c, bool logprobs,
                               int top_n, const struct oai_vocab *v)
{
    if (!logprobs || !c->samples)
        return cJSON_CreateNull();
    return kind == OAI_CHAT ? chat_logprobs(c, top_n, v) : completion_logprobs(c, top_n, v);
}

/* message.tool_calls [{id, type, function: {name, arguments}}]; in a chunk each entry
 * also carries its index in the message, and is the whole call, its head (arguments "") or
 * only {index, function: {arguments}}, as c->tool_delta says. */
static cJSON *tool_calls_array(const struct oai_choice *c, bool chunk)
{
    cJSON *a = cJSON_CreateArray();
    bool ok = a != NULL;

    for (int i = 0; ok && i < c->num_tool_calls; i++) {
        const struct tool_call *t = &c->tool_calls[i];
        cJSON *o = cJSON_CreateObject(), *fn;

        bool head = !chunk || c->tool_delta != OAI_TOOL_DELTA_ARGUMENTS;
        const char *args = chunk && c->tool_delta == OAI_TOOL_DELTA_HEAD ? "" : t->arguments;

        ok = add(a, NULL, o) && (!chunk || add(o, "index", cJSON_CreateNumber(c->tool_call_index + i))) &&
             (!head || (add(o, "id", cJSON_CreateString(t->id)) && add(o, "type", cJSON_CreateString("function")))) &&
             (fn = cJSON_AddObjectToObject(o, "function")) &&
             (!head || add(fn, "name", cJSON_CreateString(t->name))) &&
             add(fn, "arguments", openai_json_string(args, strlen(args)));
    }
    if (!ok) {
        cJSON_Delete(a);
        return NULL;
    }
    return a;
}

/* A choice of a response (chunk false) or of a chunk. */
static cJSON *choice_object(enum oai_kind kind, const struct oai_choice *c, bool chunk,
                            bool logprobs, int top_n, const struct oai_vocab *v)
{
    cJSON *o = cJSON_CreateObject(), *m = NULL;
    bool ok;

    if (kind == OAI_COMPLETION) {
        ok = add(o, "text", choice_text(c)) && add(o, "index", cJSON_CreateNumber(c->index));
    } else {
        ok = add(o, "index", cJSON_CreateNumber(c->index)) &&
             (m = cJSON_AddObjectToObject(o, chunk ? "delta" : "message"));
        if (ok && (!chunk || c->role))
            ok = add(m, "role", cJSON_CreateString("assistant"));
        if (ok && (!chunk || c->role || c->text_len || c->prefix_len))
            ok = add(m, "content", c->num_tool_calls && !c->text_len && !c->prefix_len
                                       ? cJSON_CreateNull() : choice_text(c));
        if (ok && c->num_tool_calls)
            ok = add(m, "tool_calls", tool_calls_array(c, chunk));
    }
    ok = ok && add(o, "logprobs", logprobs_or_null(kind, c, logprobs, top_n, v)) &&
         add(o, "finish_reason", string_or_null(c->finish_reason));
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

char *openai_render_response(const struct oai_head *h, const struct oai_choice *choices, int n,
                             const struct oai_usage *u, bool logprobs, int top_n,
                             const struct oai_vocab *v, size_t *len)
{
    cJSON *o = head_object(h, false), *list = cJSON_AddArrayToObject(o, "choices");
    bool ok = list != NULL;

    for (int i = 0; ok && i < n; i++)
        ok = add(list, NULL, choice_object(h->kind, &choices[i], false, logprobs, top_n, v));
    ok = ok && add(o, "usage", usage_object(u));
    return print(o, ok, len);
}

char *openai_render_chunk(const struct oai_head *h, const struct oai_choice *c, bool logprobs,
                          int top_n, bool usage_null, const struct oai_vocab *v, size_t *len)
{
    cJSON *o = head_object(h, true), *list = cJSON_AddArrayToObject(o, "choices");
    bool ok = add(list, NULL, choice_object(h->kind, c, true, logprobs, top_n, v));

    if (ok && usage_null)
        ok = add(o, "usage", cJSON_CreateNull());
    return print(o, ok, len);
}

char *openai_render_usage_chunk(const struct oai_head *h, const struct oai_usage *u, size_t *len)
{
    cJSON *o = head_object(h, true);
    bool ok = cJSON_AddArrayToObject(o, "choices") && add(o, "usage", usage_object(u));

    return print(o, ok, len);
}

char *openai_render_error(const struct oai_error *e, size_t *len)
{
    cJSON *o = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(o, "error");
    /* Through openai_json_string: a message cut at ERR_LEN, or one naming a path a client
     * sent, may end inside a character or hold bytes that are not UTF-8. */
    bool ok = err && add(err, "message", openai_json_string(e->message, strlen(e->message))) &&
              add(err, "type", cJSON_CreateString(e->type ? e->type : "server_error")) &&
              add(err, "param", string_or_null(e->param[0] ? e->param : NULL)) &&
              add(err, "code", string_or_null(e->code));

    return print(o, ok, len);
}
