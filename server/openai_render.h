/* openai_render.h — responses, stream chunks and error objects in OpenAI's JSON shapes
 * (openai_render.c), from plain C structs: token ids, text and logprobs. Nothing here
 * knows about HTTP or the engine. */
#ifndef OSPREY_OPENAI_RENDER_H
#define OSPREY_OPENAI_RENDER_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/base/buf.h"        /* struct buf */
#include "engine/sampler.h"         /* struct sample_result */
#include "server/harmony.h"         /* struct harmony_stream */
#include "server/openai_parse.h"    /* enum oai_kind, struct oai_error */

struct tokenizer;

/* Text of one token for logprobs: malloc'd and NUL-terminated, *len bytes; NULL when out of
 * memory. */
struct oai_vocab {
    char *(*piece)(void *ctx, int32_t id, size_t *len);
    void *ctx;
};

/* Fields every response and chunk of one request share. */
struct oai_head {
    enum oai_kind kind;        /* OAI_COMPLETION or OAI_CHAT */
    const char *id;            /* "cmpl-…" / "chatcmpl-…" */
    int64_t created;           /* unix seconds */
    const char *model;
    const char *system_fingerprint;   /* NULL: omitted */
};

struct oai_usage {
    int prompt_tokens, completion_tokens, cached_tokens;
    int reasoning_tokens;      /* of completion_tokens: gpt-oss's analysis (0 for others) */
};

/* A streamed call goes out as OpenAI sends it: its head (index, id, type, name, arguments
 * "") in one delta, then its arguments. */
enum oai_tool_delta { OAI_TOOL_DELTA_WHOLE, OAI_TOOL_DELTA_HEAD, OAI_TOOL_DELTA_ARGUMENTS };

/* One choice's output, whole (a response) or since the previous chunk (a stream). */
struct oai_choice {
    int index;
    const char *prefix;        /* completions with echo: the prompt's text first; else NULL */
    size_t prefix_len;
    const char *text;          /* UTF-8; may be NULL when text_len is 0 */
    size_t text_len;
    const char *reasoning;     /* chat: the model's reasoning (gpt-oss's analysis channel), */
    size_t reasoning_len;      /* as vLLM's "reasoning" (and "reasoning_content"); 0: none */
    const int32_t *ids;        /* [num_tokens] */
    const struct sample_result *samples;   /* [num_tokens], or NULL: no logprobs */
    const size_t *offsets;     /* [num_tokens] with samples (completions): bytes into the
                                * generated text where each token's text starts */
    int num_tokens;
    size_t offset_base;        /* completions text_offset = offset_base + min(offsets[i],
                                * offset_end): the echoed prompt's length, and */
    size_t offset_end;         /* the generated text's length up to the end of this answer */
    const char *finish_reason; /* NULL: not finished (null in chunks) */
    bool role;                 /* chat chunk: delta carries role "assistant" */
    const struct tool_call *tool_calls;   /* chat: [num_tool_calls] message.tool_calls, or a
                                           * chunk's tool-call deltas (each whole) */
    int num_tool_calls;
    int tool_call_index;       /* chunk: the index of tool_calls[0] in the message */
    enum oai_tool_delta tool_delta;   /* chunk: which part of each call this delta carries */
};

/* Renders a whole response into *out (malloc'd, NUL-terminated, *len bytes), written
 * straight as text, never as a tree. logprobs: every choice reports logprobs (its samples);
 * top_n: top logprobs per token. max_bytes bounds the body (0: no bound). Returns 0,
 * -E2BIG when the body would pass max_bytes, or -ENOMEM; *out is NULL on failure. */
int openai_render_response(const struct oai_head *h, const struct oai_choice *choices, int n,
                           const struct oai_usage *u, bool logprobs, int top_n,
                           const struct oai_vocab *v, size_t max_bytes, char **out, size_t *len);
/* Each of these renders malloc'd, NUL-terminated JSON (*len bytes); NULL when out of memory.
 * One stream chunk with one choice; usage_null adds "usage": null (include_usage). */
char *openai_render_chunk(const struct oai_head *h, const struct oai_choice *c, bool logprobs,
                          int top_n, bool usage_null, const struct oai_vocab *v, size_t *len);
/* The include_usage chunk: empty choices and the usage. */
char *openai_render_usage_chunk(const struct oai_head *h, const struct oai_usage *u, size_t *len);
char *openai_render_error(const struct oai_error *e, size_t *len);
/* A JSON string item of s[0..len), NUL bytes included (as \u0000, where a plain cJSON
 * string would stop): generated text may hold any character. JSON text is UTF-8, so a byte
 * that does not start a well-formed character becomes U+FFFD. NULL when out of memory. */
cJSON *openai_json_string(const char *s, size_t len);
/* Bytes of s[0..len) that are well-formed UTF-8 from the start (len when all of it is). */
size_t openai_utf8_prefix(const char *s, size_t len);

/* ---- tool calls in the output (openai_tools.c) ---- */

/* A finished choice (non-streamed): reads oc's prefix + text for calls. When it finds some,
 * oc->text becomes the content before them (*joined, malloc'd: free it after rendering),
 * oc->tool_calls the calls (in tp: tool_parse_fini it) and finish_reason "tool_calls".
 * Returns 0 or -ENOMEM. */
int openai_tools_apply(const struct oai_request *r, struct oai_choice *oc, struct tool_parse *tp,
                       char **joined);

/* A streamed choice's output so far, for tool calls: content goes out as soon as it
 * cannot start a call; from a call's first byte on it is held to the end. */
struct tool_stream {
    struct buf text;           /* everything so far (echo prefix, then output) */
    size_t sent;               /* bytes of text already sent as content */
};
void tool_stream_init(struct tool_stream *ts);
void tool_stream_fini(struct tool_stream *ts);
/* Appends s[0..n); *out and *out_len: the content that may go now (into ts->text, valid until
 * the next call). Returns 0 or -ENOMEM. */
int tool_stream_feed(struct tool_stream *ts, enum tool_parser_kind k, const char *s, size_t n,
                     const char **out, size_t *out_len);
/* The output is complete: parses it (tp: tool_parse_fini it); *out and *out_len: the content
 * not yet sent (before the calls, or all the rest when there are none). 0 or -ENOMEM. */
int tool_stream_finish(struct tool_stream *ts, const struct oai_request *r, struct tool_parse *tp,
                       const char **out, size_t *out_len);

/* ---- gpt-oss's harmony output (openai_harmony.c) ---- */

/* Whether the request's outputs are harmony (a chat request, the parser "openai"): read
 * into reasoning, content and calls by server/harmony.c, tools or not. */
bool openai_harmony_active(const struct oai_request *r);
/* A stream of one choice's output, reading calls when the request has tools; with tok
 * (NULL: the text alone), a marker is one only where a special token wrote it. Feed it
 * each delivery's tokens (openai_harmony_feed). */
void openai_harmony_init(const struct oai_request *r, const struct tokenizer *tok, struct harmony_stream *hs);
/* One delivery: its tokens (ids and text offsets, as struct sse_pending holds them), then
 * its text. 0 or -ENOMEM. */
int openai_harmony_feed(struct harmony_stream *hs, const char *text, size_t len, const int32_t *ids,
                        const size_t *offsets, int num_tokens, bool finished, struct harmony_delta *d);
/* A finished choice (non-streamed): oc's text becomes the final content, oc->reasoning the
 * analysis, oc->tool_calls the calls, finish_reason "tool_calls" when there are some (all
 * pointing into hs: harmony_stream_fini it after rendering). The echoed prefix stays
 * content, before the output's. Returns 0 or -ENOMEM. */
int openai_harmony_apply(const struct oai_request *r, const struct tokenizer *tok, struct oai_choice *oc,
                         struct harmony_stream *hs);

#endif
