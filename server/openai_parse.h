/* openai_parse.h — OpenAI request bodies as C structs, parsed and validated
 * (openai_parse.c), the limits they are checked against, and the error object every
 * refusal carries. Nothing here knows about HTTP or the engine: server/openai.c ties the
 * parsed request to them, server/openai_render.h renders the answers. */
#ifndef OSPREY_OPENAI_PARSE_H
#define OSPREY_OPENAI_PARSE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/gen_params.h"   /* struct gen_params */
#include "engine/sampler.h"      /* struct sample_result */
#include "engine/base/util.h"      /* ERR_LEN */
#include "engine/base/arena.h"
#include "engine/grammar/grammar.h"   /* enum grammar_kind */
#include "server/tool_parser.h"  /* enum tool_parser_kind, struct tool_call */

enum oai_kind { OAI_COMPLETION, OAI_CHAT, OAI_TOKENIZE, OAI_DETOKENIZE };

/* tool_choice: NONE also when no tools are given; AUTO parses the output for calls;
 * REQUIRED (one call or more) and NAMED (a call of that function) hold the output to the
 * family's call syntax and the tools' schemas with a grammar (server/tool_grammar.c), then
 * parse it as AUTO does. */
enum oai_tool_choice { OAI_TOOLS_NONE, OAI_TOOLS_AUTO, OAI_TOOLS_REQUIRED, OAI_TOOLS_NAMED };

/* What a request may ask for: limits from the configuration and the model, defaults from
 * the model's generation_config.json. */
struct oai_config {
    const char *served_model;  /* borrowed; the first served name, what answers report */
    const char *const *served_names;   /* [num_served_names] borrowed: every name requests may
                                        * give (none: served_model only); others get 404 */
    int num_served_names;
    int max_model_len;         /* tokens; prompt + max_tokens must fit */
    int max_cache_tokens;      /* prompt + max_tokens the KV cache holds for one request, when
                                * less than max_model_len (it binds instead); 0: no less */
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

/* Helpers shared by the request parsers (openai_parse.c, openai_fields.c, openai_tools.c,
 * responses.c). openai__field: root[key], or NULL when absent or null. openai__json_type:
 * a value's JSON type for messages ("a string", "an object", …, "null").
 * openai__no_memory: fills e with the 500 for out of memory and returns -ENOMEM. */
const cJSON *openai__field(const cJSON *root, const char *key);
const char *openai__json_type(const cJSON *v);
int openai__no_memory(struct oai_error *e);

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
    const cJSON *reasoning_effort; /* gpt-oss: "low", "medium" or "high" for the template, or NULL */
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
    /* the output constrained by response_format, structured_outputs or guided_* */
    bool has_grammar;
    enum grammar_kind grammar_kind;
    const char *grammar_src;   /* arena: schema JSON text, regex, GBNF, or the choices' JSON array */
    size_t grammar_len;        /* bytes */
    const char *grammar_param; /* the field it came from (static), for errors */
    /* chat: tools (server/openai_tools.c) */
    const cJSON *tools;        /* the tools array as given (into root), for the template; or NULL */
    enum oai_tool_choice tool_choice;
    const char *tool_name;     /* NAMED: the function (into root) */
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
 * fields osprey cannot honour (suffix, best_of > 1, and vLLM's listed in openai_fields.c)
 * are refused. Chat reads tools (openai_tools.c). */
int openai_parse_completion(struct oai_request *r, const char *body, size_t len,
                            const struct oai_config *c, struct oai_error *e);
int openai_parse_chat(struct oai_request *r, const char *body, size_t len,
                      const struct oai_config *c, struct oai_error *e);
/* response_format, structured_outputs, guided_*: at most one, read into r->has_grammar and
 * the grammar_* fields (openai_grammar.c). Returns 0 or -EINVAL with e (400, the field
 * named). Called by the two parsers above. */
int openai_parse_grammar(struct oai_request *r, struct oai_error *e);

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

/* Whether requests may name this model (c's served names; NULL never). */
bool openai_model_served(const struct oai_config *c, const char *name);

/* ---- vLLM's extra fields (openai_fields.c) ---- */

/* Completions and chat, after the OpenAI fields: priority (400 unless c allows priority
 * scheduling, or 0), include_stop_str_in_output, and the refused ones, each named. */
int openai_parse_fields(struct oai_request *r, const struct oai_config *c, struct oai_error *e);
/* Chat, after the messages: echo (r->chat_echo), continue_final_message (400 with
 * add_generation_prompt true), documents. */
int openai_parse_chat_fields(struct oai_request *r, struct oai_error *e);

/* ---- tools (openai_tools.c; the output side is in openai_render.h) ---- */

/* Chat: tools, tool_choice and parallel_tool_calls into r (after parse_messages), with the
 * parser c names. 400 naming the field for a malformed tool, a tool_choice without tools,
 * an unknown function name, a choice other than none without a parser, strict tools under
 * "auto", or a grammar of calls that cannot be composed; "required" and a named function
 * set r's grammar (GBNF of the family's calls: server/tool_grammar.c). */
int openai_parse_tools(struct oai_request *r, const struct oai_config *c, struct oai_error *e);
/* Only the tools list, for the template (/tokenize of messages): r->tools. */
int openai_parse_tool_list(struct oai_request *r, struct oai_error *e);
/* Chat: one message's tool fields. An assistant message's tool_calls must be
 * {id, type "function", function {name, arguments}}; arguments (a JSON string, as OpenAI
 * sends it) become the object Hugging Face templates expect. A "tool" message needs a
 * string tool_call_id. msg is message i of the request. */
int openai_tools_check_message(cJSON *msg, int i, struct oai_error *e);
/* A harmony model (gpt-oss): each assistant message shaped for its template: content null
 * dropped (an empty string when nothing else is left), reasoning or reasoning_content as
 * "thinking" unless it has one. Chat and /tokenize of messages. 0 or 500 (memory). */
int openai_harmony_messages(struct oai_request *r, struct oai_error *e);
/* Whether the request's outputs are read for tool calls by tool_parser.c's parsers (not
 * harmony: openai_harmony_active). */
bool openai_tools_active(const struct oai_request *r);
/* The most calls an output may make: 1 under parallel_tool_calls false, else 0 (any). */
int openai_tools_max_calls(const struct oai_request *r);

#endif
