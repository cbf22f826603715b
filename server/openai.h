/* openai.h — the OpenAI-compatible API in C structs: request bodies parsed and validated
 * (openai_parse.c), responses, stream chunks and error objects rendered (openai_render.c).
 * Nothing here knows about HTTP or the engine; server/openai.c ties both to them. */
#ifndef OSPREY_OPENAI_H
#define OSPREY_OPENAI_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/gen_params.h"   /* struct gen_params */
#include "engine/sampler.h"      /* struct sample_result */
#include "engine/base/util.h"      /* ERR_LEN */
#include "engine/base/arena.h"
#include "server/tool_parser.h"  /* enum tool_parser_kind, struct tool_call */

enum oai_kind { OAI_COMPLETION, OAI_CHAT, OAI_TOKENIZE, OAI_DETOKENIZE };

/* tool_choice: NONE also when no tools are given; AUTO parses the output for calls.
 * ("required" and a named function need the output constrained: refused until the grammar
 * module is in, see openai_tools.c's tools_need_grammar.) */
enum oai_tool_choice { OAI_TOOLS_NONE, OAI_TOOLS_AUTO };

/* What a request may ask for: limits from the configuration and the model, defaults from
 * the model's generation_config.json. */
struct oai_config {
    const char *served_model;  /* borrowed; the first served name, what answers report */
    const char *const *served_names;   /* [num_served_names] borrowed: every name requests may
                                        * give (none: served_model only); others get 404 */
    int num_served_names;
    int max_model_len;         /* tokens; prompt + max_tokens must fit */
    int vocab_size;            /* token ids in prompts and stop_token_ids are below this */
    int max_prompt_tokens;     /* 0 = max_model_len */
    int max_tokens_limit;      /* largest max_tokens accepted; 0 = no cap but the context */
    int max_n;                 /* choices per request: n times the number of prompts */
    int max_stop_strings;
    int max_stop_length;       /* bytes per stop string */
    int max_logprobs;          /* top logprobs per token, completions and chat (vLLM: 20) */
    float default_temperature; /* < 0: 1 (OpenAI's default) */
    float default_top_p;       /* < 0: 1 */
    int default_top_k;         /* <= 0: off */
    enum tool_parser_kind tool_parser;  /* --tool-call-parser, or the template's; NONE: no "auto" */
    bool priority_scheduling;  /* --scheduling-policy priority: requests may set "priority" */
};

/* An error for the client, in OpenAI's shape {"error": {message, type, param, code}}. */
struct oai_error {
    int status;                /* HTTP status */
    const char *type;          /* "invalid_request_error", "server_error", … (static) */
    const char *code;          /* "invalid_type", "invalid_value", … (static) or NULL */
    char param[64];            /* the offending field; "" renders as null */
    char message[ERR_LEN];
};

/* Fills e; param may be NULL. Returns -EINVAL (status < 500) or -EIO, so that parsers can
 * `return openai_error(...)`. */
int openai_error(struct oai_error *e, int status, const char *code, const char *param,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

struct oai_prompt {
    const char *text;          /* a string prompt (arena, NUL-terminated); NULL for token ids */
    size_t text_len;           /* bytes */
    int32_t *ids;              /* [num_ids] (arena): given, or set once the text is tokenized */
    int num_ids;
};

/* One parsed request. Every pointer lives in `arena` or `root` and goes with
 * openai_request_fini(). */
struct oai_request {
    enum oai_kind kind;
    struct arena arena;
    cJSON *root;               /* the parsed body: messages point into it */
    const char *model;         /* NULL when absent (the served model) */
    struct oai_prompt *prompts;   /* [num_prompts]: completions' prompt list, /tokenize's text,
                                   * /detokenize's tokens; chat: none until rendered */
    int num_prompts;
    const cJSON *messages;     /* chat and /tokenize: text parts joined into one string each */
    const cJSON *template_kwargs;  /* chat_template_kwargs (an object) or NULL */
    bool add_generation_prompt;    /* chat: true unless the request says otherwise */
    bool add_special_tokens;   /* completions and /tokenize of a prompt: true; chat: false */
    struct gen_params params;  /* stop strings and stop ids in the arena */
    bool max_tokens_set;       /* max_tokens (or max_completion_tokens) was given */
    int n;                     /* choices per prompt */
    bool stream, include_usage;
    bool echo;                 /* completions: the prompt's text before each choice's */
    bool logprobs;             /* completions: logprobs given; chat: logprobs true */
    int top_logprobs;          /* completions: the logprobs value; chat: top_logprobs */
    const char *user;          /* NULL when absent */
    /* chat: tools (server/openai_tools.c) */
    const cJSON *tools;        /* the tools array as given (into root), for the template; or NULL */
    enum oai_tool_choice tool_choice;
    bool parallel_tool_calls;  /* false: only the first call the model makes is kept */
    enum tool_parser_kind tool_parser;   /* the parser "auto" reads the output with */
    bool continue_final_message;   /* chat: the prompt ends inside the last (assistant) message */
    const char *chat_echo;     /* chat echo: the last message's content, returned before the
                                * output (borrowed from root); NULL: nothing to echo */
    /* /v1/responses (server/responses.c): served as the chat request it translates to */
    bool responses;
    cJSON *resp_root;          /* the Responses body as sent (owned), for the response's echoes */
};

void openai_request_init(struct oai_request *r);
void openai_request_fini(struct oai_request *r);

/* Only the checks every body gets (UTF-8 without NUL, nesting, each key once, one JSON
 * object) into r->root, r->kind = kind. For routes with bodies of their own shape. */
int openai_parse_body(struct oai_request *r, enum oai_kind kind, const char *body, size_t len,
                      struct oai_error *e);
/* Parse a request body (len bytes, need not be NUL-terminated) into r (init'ed). Returns 0,
 * or a negative errno with e filled: 400 for malformed JSON, wrong types (param named) and
 * out-of-range values, 404 for another model. Unknown fields are ignored, as vLLM does;
 * fields osprey cannot honour (response_format other than text, suffix, best_of > 1, and
 * vLLM's listed in openai_fields.c) are refused. Chat reads tools (openai_tools.c). */
int openai_parse_completion(struct oai_request *r, const char *body, size_t len,
                            const struct oai_config *c, struct oai_error *e);
int openai_parse_chat(struct oai_request *r, const char *body, size_t len,
                      const struct oai_config *c, struct oai_error *e);
/* /tokenize: {"prompt": "…", "add_special_tokens"} (one prompt) or {"messages": […],
 * "add_generation_prompt", "add_special_tokens"}; /detokenize: {"tokens": [ids]}. */
int openai_parse_tokenize(struct oai_request *r, const char *body, size_t len,
                          const struct oai_config *c, struct oai_error *e);
int openai_parse_detokenize(struct oai_request *r, const char *body, size_t len,
                            const struct oai_config *c, struct oai_error *e);

/* Once a prompt of num_prompt tokens is known: checks it against max_prompt_tokens and the
 * context, and returns the max_tokens to use in *max_tokens (the request's, or the
 * default: 16 for completions, the rest of the context for chat, both capped by
 * max_tokens_limit). Returns 0 or -EINVAL with e (400, both lengths in the message). */
int openai_fit_context(const struct oai_request *r, int num_prompt, const struct oai_config *c,
                       int *max_tokens, struct oai_error *e);

/* ---- rendering (openai_render.c) ---- */

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
    const int32_t *ids;        /* [num_tokens] */
    const struct sample_result *samples;   /* [num_tokens], or NULL: no logprobs */
    int num_tokens;
    size_t text_offset;        /* completions logprobs: byte offset of the first token */
    const char *finish_reason; /* NULL: not finished (null in chunks) */
    bool role;                 /* chat chunk: delta carries role "assistant" */
    const struct tool_call *tool_calls;   /* chat: [num_tool_calls] message.tool_calls, or a
                                           * chunk's tool-call deltas (each whole) */
    int num_tool_calls;
    int tool_call_index;       /* chunk: the index of tool_calls[0] in the message */
    enum oai_tool_delta tool_delta;   /* chunk: which part of each call this delta carries */
};

/* Renders malloc'd, NUL-terminated JSON (*len bytes); NULL when out of memory.
 * logprobs: every choice reports logprobs (its samples); top_n: top logprobs per token. */
char *openai_render_response(const struct oai_head *h, const struct oai_choice *choices, int n,
                             const struct oai_usage *u, bool logprobs, int top_n,
                             const struct oai_vocab *v, size_t *len);
/* One stream chunk with one choice; usage_null adds "usage": null (include_usage). */
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

/* Whether requests may name this model (c's served names; NULL never). */
bool openai_model_served(const struct oai_config *c, const char *name);

/* ---- vLLM's extra fields (openai_fields.c) ---- */

/* Completions and chat, after the OpenAI fields: priority (400 unless c allows priority
 * scheduling, or 0), include_stop_str_in_output, and the refused ones, each named. */
int openai_parse_fields(struct oai_request *r, const struct oai_config *c, struct oai_error *e);
/* Chat, after the messages: echo (r->chat_echo), continue_final_message (400 with
 * add_generation_prompt true), documents. */
int openai_parse_chat_fields(struct oai_request *r, struct oai_error *e);

/* ---- tools (openai_tools.c) ---- */

/* Chat: tools, tool_choice and parallel_tool_calls into r (after parse_messages), with the
 * parser c names. 400 naming the field for a malformed tool, a tool_choice without tools,
 * an unknown function name, "auto" without a parser; "required", a named function and
 * strict tools need structured outputs (400 in this build). */
int openai_parse_tools(struct oai_request *r, const struct oai_config *c, struct oai_error *e);
/* Only the tools list, for the template (/tokenize of messages): r->tools. */
int openai_parse_tool_list(struct oai_request *r, struct oai_error *e);
/* Chat: one message's tool fields. An assistant message's tool_calls must be
 * {id, type "function", function {name, arguments}}; arguments (a JSON string, as OpenAI
 * sends it) become the object Hugging Face templates expect. A "tool" message needs a
 * string tool_call_id. msg is message i of the request. */
int openai_tools_check_message(cJSON *msg, int i, struct oai_error *e);

/* Whether the request's outputs are read for tool calls. */
bool openai_tools_active(const struct oai_request *r);
/* A finished choice (non-streamed): reads oc's prefix + text for calls. When it finds some,
 * oc->text becomes the content before them (*joined, malloc'd: free it after rendering),
 * oc->tool_calls the calls (in tp: tool_parse_fini it) and finish_reason "tool_calls".
 * Returns 0 or -ENOMEM. */
int openai_tools_apply(const struct oai_request *r, struct oai_choice *oc, struct tool_parse *tp,
                       char **joined);

/* A streamed choice's output so far, for tool calls: content goes out as soon as it
 * cannot start a call; from a call's first byte on it is held to the end. */
struct tool_stream {
    char *text;                /* everything so far (echo prefix, then output), malloc'd */
    size_t len, cap;           /* bytes */
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

#endif
