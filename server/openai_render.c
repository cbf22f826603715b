/* openai_render.c — responses, stream chunks and error objects in OpenAI's JSON shapes,
 * fields in the order OpenAI's documentation shows them. Runs on the HTTP threads (never on
 * the engine thread): the engine only hands over token ids, text and logprobs.
 * Everything is written as text into one bounded buffer (server/json_out.c): a response
 * with logprobs holds (1 + top_logprobs) entries per token of every choice, and a cJSON
 * tree of those cost several times the text (16 choices x 2000 tokens x 21 entries: a
 * 46.5 MB body took 436 MiB). */
#include "server/openai_render.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>   /* utf8proc_iterate */

#include "server/json_out.h"

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
    struct json_out o;
    cJSON *item;
    char *text;
    size_t n;

    json_out_init(&o, 0);
    json_out_str(&o, s ? s : "", len);
    if (!(text = json_out_take(&o, &n, NULL)))
        return NULL;
    item = cJSON_CreateRaw(text);
    free(text);
    return item;
}

#define LIT(o, s) json_out_raw((o), (s), sizeof(s) - 1)

static void str0(struct json_out *o, const char *s)
{
    json_out_str(o, s, s ? strlen(s) : 0);
}

static void head(struct json_out *o, const struct oai_head *h, bool chunk)
{
    LIT(o, "{\"id\":");
    str0(o, h->id);
    LIT(o, ",\"object\":");
    str0(o, h->kind == OAI_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion");
    LIT(o, ",\"created\":");
    json_out_int(o, h->created);
    LIT(o, ",\"model\":");
    str0(o, h->model);
    if (h->system_fingerprint) {
        LIT(o, ",\"system_fingerprint\":");
        str0(o, h->system_fingerprint);
    }
}

static void usage(struct json_out *o, const struct oai_usage *u)
{
    LIT(o, "{\"prompt_tokens\":");
    json_out_int(o, u->prompt_tokens);
    LIT(o, ",\"completion_tokens\":");
    json_out_int(o, u->completion_tokens);
    LIT(o, ",\"total_tokens\":");
    json_out_int(o, (long long)u->prompt_tokens + u->completion_tokens);
    LIT(o, ",\"prompt_tokens_details\":{\"cached_tokens\":");
    json_out_int(o, u->cached_tokens);
    /* as OpenAI's: the reasoning's share of completion_tokens (gpt-oss's analysis) */
    LIT(o, "},\"completion_tokens_details\":{\"reasoning_tokens\":");
    json_out_int(o, u->reasoning_tokens);
    LIT(o, "}}");
}

/* A token's text (malloc'd, *len bytes); NULL (o's error set) when out of memory. */
static char *piece(struct json_out *o, const struct oai_vocab *v, int32_t id, size_t *len)
{
    char *p = v->piece(v->ctx, id, len);

    if (!p && !o->err)
        o->err = -ENOMEM;
    return p;
}

/* Chat: {token, logprob, bytes}, then an empty top_logprobs list to fill when with_top
 * (left open: the caller closes it). token is the text as JSON can carry it (U+FFFD for a
 * byte that is part of a character), bytes the token's raw bytes, as OpenAI gives them. */
static void chat_entry(struct json_out *o, const struct oai_vocab *v, int32_t id, float logprob,
                       bool with_top)
{
    size_t len = 0;
    char *p = piece(o, v, id, &len);

    if (!p)
        return;
    LIT(o, "{\"token\":");
    json_out_str(o, p, len);
    LIT(o, ",\"logprob\":");
    json_out_num(o, logprob);
    LIT(o, ",\"bytes\":[");
    for (size_t i = 0; i < len; i++) {
        if (i)
            LIT(o, ",");
        json_out_int(o, (unsigned char)p[i]);
    }
    LIT(o, "]");
    free(p);
    if (with_top)
        LIT(o, ",\"top_logprobs\":[");
    else
        LIT(o, "}");
}

/* Chat: {"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}. */
static void chat_logprobs(struct json_out *o, const struct oai_choice *c, int top_n,
                          const struct oai_vocab *v)
{
    LIT(o, "{\"content\":[");
    for (int i = 0; i < c->num_tokens && !o->err; i++) {
        const struct sample_result *s = &c->samples[i];

        if (i)
            LIT(o, ",");
        chat_entry(o, v, c->ids[i], s->logprob, true);
        for (int j = 0; j < MIN(top_n, s->num_top); j++) {
            if (j)
                LIT(o, ",");
            chat_entry(o, v, s->top_ids[j], s->top_logprobs[j], false);
        }
        LIT(o, "]}");
    }
    LIT(o, "]}");
}

/* One completions top_logprobs dict: the top_n tokens, then the chosen one when it is not
 * among them (vLLM reports both); tokens whose keys read the same keep their first entry.
 * Keys are compared as rendered, so two byte pieces that both render as U+FFFD count as
 * one, as a JSON reader would see them. */
static void completion_top_dict(struct json_out *o, const struct sample_result *s, int top_n,
                                const char *chosen, size_t chosen_len, const struct oai_vocab *v)
{
    struct json_out keys[SAMPLE_MAX_LOGPROBS + 1];
    int n = 0, want = MIN(top_n, s->num_top);

    LIT(o, "{");
    for (int j = 0; j <= want && !o->err; j++) {
        size_t len = 0;
        char *p = j < want ? piece(o, v, s->top_ids[j], &len) : NULL;
        bool seen = false;

        if (j < want && !p)
            break;
        json_out_init(&keys[n], 0);
        if (j < want)
            json_out_str(&keys[n], p, len);
        else
            json_out_str(&keys[n], chosen, chosen_len);
        free(p);
        if (keys[n].err) {
            o->err = keys[n].err;
            json_out_fini(&keys[n]);
            break;
        }
        for (int k = 0; k < n && !seen; k++)
            seen = keys[k].len == keys[n].len && !memcmp(keys[k].p, keys[n].p, keys[n].len);
        if (seen) {
            json_out_fini(&keys[n]);
            continue;
        }
        if (n)
            LIT(o, ",");
        json_out_raw(o, keys[n].p, keys[n].len);
        LIT(o, ":");
        json_out_num(o, j < want ? s->top_logprobs[j] : s->logprob);
        n++;
    }
    for (int k = 0; k < n; k++)
        json_out_fini(&keys[k]);
    LIT(o, "}");
}

/* Completions: {tokens, token_logprobs, top_logprobs, text_offset}: four lists, so the
 * tokens are walked four times (their pieces decoded twice). text_offset counts bytes of
 * the choice's text ("text", the echoed prompt included) where each token's text starts. */
static void completion_logprobs(struct json_out *o, const struct oai_choice *c, int top_n,
                                const struct oai_vocab *v)
{
    LIT(o, "{\"tokens\":[");
    for (int i = 0; i < c->num_tokens && !o->err; i++) {
        size_t len = 0;
        char *p = piece(o, v, c->ids[i], &len);

        if (i)
            LIT(o, ",");
        json_out_str(o, p, len);
        free(p);
    }
    LIT(o, "],\"token_logprobs\":[");
    for (int i = 0; i < c->num_tokens; i++) {
        if (i)
            LIT(o, ",");
        json_out_num(o, c->samples[i].logprob);
    }
    LIT(o, "],\"top_logprobs\":[");
    for (int i = 0; i < c->num_tokens && !o->err; i++) {
        size_t len = 0;
        char *p = piece(o, v, c->ids[i], &len);

        if (i)
            LIT(o, ",");
        if (p)
            completion_top_dict(o, &c->samples[i], top_n, p, len, v);
        free(p);
    }
    LIT(o, "],\"text_offset\":[");
    for (int i = 0; i < c->num_tokens; i++) {
        size_t off = c->offsets ? MIN(c->offsets[i], c->offset_end) : c->offset_end;

        if (i)
            LIT(o, ",");
        json_out_int(o, (long long)(c->offset_base + off));
    }
    LIT(o, "]}");
}

/* message.tool_calls [{id, type, function: {name, arguments}}]; in a chunk each entry
 * also carries its index in the message, and is the whole call, its head (arguments "") or
 * only {index, function: {arguments}}, as c->tool_delta says. */
static void tool_calls(struct json_out *o, const struct oai_choice *c, bool chunk)
{
    bool whole = !chunk || c->tool_delta != OAI_TOOL_DELTA_ARGUMENTS;

    LIT(o, "[");
    for (int i = 0; i < c->num_tool_calls; i++) {
        const struct tool_call *t = &c->tool_calls[i];
        const char *args = chunk && c->tool_delta == OAI_TOOL_DELTA_HEAD ? "" : t->arguments;

        json_out_lit(o, i ? ",{" : "{");
        if (chunk) {
            LIT(o, "\"index\":");
            json_out_int(o, c->tool_call_index + i);
            LIT(o, ",");
        }
        if (whole) {
            LIT(o, "\"id\":");
            str0(o, t->id);
            LIT(o, ",\"type\":\"function\",");
        }
        LIT(o, "\"function\":{");
        if (whole) {
            LIT(o, "\"name\":");
            str0(o, t->name);
            LIT(o, ",");
        }
        LIT(o, "\"arguments\":");
        str0(o, args ? args : "");
        LIT(o, "}}");
    }
    LIT(o, "]");
}

/* A choice of a response (chunk false) or of a chunk. */
static void choice(struct json_out *o, enum oai_kind kind, const struct oai_choice *c, bool chunk,
                   bool logprobs, int top_n, const struct oai_vocab *v)
{
    if (kind == OAI_COMPLETION) {
        LIT(o, "{\"text\":\"");
        /* The echoed prompt and the text as one string; both are whole UTF-8. */
        json_out_str_part(o, c->prefix, c->prefix_len);
        json_out_str_part(o, c->text, c->text_len);
        LIT(o, "\",\"index\":");
        json_out_int(o, c->index);
    } else {
        LIT(o, "{\"index\":");
        json_out_int(o, c->index);
        json_out_lit(o, chunk ? ",\"delta\":{" : ",\"message\":{");
        if (!chunk || c->role)
            LIT(o, "\"role\":\"assistant\"");
        if (!chunk || c->role || c->text_len || c->prefix_len) {
            if (!chunk || c->role)
                LIT(o, ",");
            LIT(o, "\"content\":");
            if (c->num_tool_calls && !c->text_len && !c->prefix_len) {
                LIT(o, "null");
            } else {
                /* chat echo: the last message's content, then the output, as one string */
                LIT(o, "\"");
                json_out_str_part(o, c->prefix, c->prefix_len);
                json_out_str_part(o, c->text, c->text_len);
                LIT(o, "\"");
            }
        }
        if (c->reasoning_len) {
            /* vLLM's field, and the one it had until 2026 that many clients still read */
            if (!chunk || c->role || c->text_len || c->prefix_len)
                LIT(o, ",");
            LIT(o, "\"reasoning\":\"");
            json_out_str_part(o, c->reasoning, c->reasoning_len);
            LIT(o, "\",\"reasoning_content\":\"");
            json_out_str_part(o, c->reasoning, c->reasoning_len);
            LIT(o, "\"");
        }
        if (c->num_tool_calls) {
            if (!chunk || c->role || c->text_len || c->prefix_len || c->reasoning_len)
                LIT(o, ",");
            LIT(o, "\"tool_calls\":");
            tool_calls(o, c, chunk);
        }
        LIT(o, "}");
    }
    LIT(o, ",\"logprobs\":");
    if (!logprobs || !c->samples)
        LIT(o, "null");
    else if (kind == OAI_CHAT)
        chat_logprobs(o, c, top_n, v);
    else
        completion_logprobs(o, c, top_n, v);
    LIT(o, ",\"finish_reason\":");
    str0(o, c->finish_reason);
    LIT(o, "}");
}

int openai_render_response(const struct oai_head *h, const struct oai_choice *choices, int n,
                           const struct oai_usage *u, bool logprobs, int top_n,
                           const struct oai_vocab *v, size_t max_bytes, char **out, size_t *len)
{
    struct json_out o;
    int rc;

    json_out_init(&o, max_bytes);
    head(&o, h, false);
    LIT(&o, ",\"choices\":[");
    for (int i = 0; i < n && !o.err; i++) {
        if (i)
            LIT(&o, ",");
        choice(&o, h->kind, &choices[i], false, logprobs, top_n, v);
    }
    LIT(&o, "],\"usage\":");
    usage(&o, u);
    LIT(&o, "}");
    *out = json_out_take(&o, len, &rc);
    return rc;
}

char *openai_render_chunk(const struct oai_head *h, const struct oai_choice *c, bool logprobs,
                          int top_n, bool usage_null, const struct oai_vocab *v, size_t *len)
{
    struct json_out o;

    json_out_init(&o, 0);
    head(&o, h, true);
    LIT(&o, ",\"choices\":[");
    choice(&o, h->kind, c, true, logprobs, top_n, v);
    LIT(&o, "]");
    if (usage_null)
        LIT(&o, ",\"usage\":null");
    LIT(&o, "}");
    return json_out_take(&o, len, NULL);
}

char *openai_render_usage_chunk(const struct oai_head *h, const struct oai_usage *u, size_t *len)
{
    struct json_out o;

    json_out_init(&o, 0);
    head(&o, h, true);
    LIT(&o, ",\"choices\":[],\"usage\":");
    usage(&o, u);
    LIT(&o, "}");
    return json_out_take(&o, len, NULL);
}

char *openai_render_error(const struct oai_error *e, size_t *len)
{
    struct json_out o;

    json_out_init(&o, 0);
    /* The message through json_out_str: one cut at ERR_LEN, or one naming a path a client
     * sent, may end inside a character or hold bytes that are not UTF-8. */
    LIT(&o, "{\"error\":{\"message\":");
    str0(&o, e->message);
    LIT(&o, ",\"type\":");
    str0(&o, e->type ? e->type : "server_error");
    LIT(&o, ",\"param\":");
    str0(&o, e->param[0] ? e->param : NULL);
    LIT(&o, ",\"code\":");
    str0(&o, e->code);
    LIT(&o, "}}");
    return json_out_take(&o, len, NULL);
}
