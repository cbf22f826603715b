/* tool_parser.h — a model's own tool-call syntax, read back from its output text: Llama 3.x
 * JSON ({"name", "parameters"}, after an optional <|python_tag|>), Hermes/Qwen
 * (<tool_call>{"name", "arguments"}</tool_call>, any number, after optional text) and
 * Mistral ([TOOL_CALLS][{"name", "arguments"}, …]); gpt-oss's harmony messages are read by
 * server/harmony.c under the "openai" parser. vLLM's --tool-call-parser names pick one. Pure functions over text: server/openai_tools.c runs them on a whole output and,
 * while streaming, asks how much of the text so far cannot start a tool call. */
#ifndef OSPREY_TOOL_PARSER_H
#define OSPREY_TOOL_PARSER_H

#include <stdbool.h>
#include <stddef.h>

enum tool_parser_kind {
    TOOL_PARSER_NONE,          /* no parser: tool_choice "auto" is refused */
    TOOL_PARSER_LLAMA3_JSON,   /* vLLM's "llama3_json" */
    TOOL_PARSER_HERMES,        /* vLLM's "hermes" (Qwen2.5, Qwen3, Hermes 2/3) */
    TOOL_PARSER_MISTRAL,       /* vLLM's "mistral" */
    TOOL_PARSER_OPENAI,        /* vLLM's "openai": gpt-oss's harmony (server/harmony.c) */
};

/* One parsed call; every string malloc'd and NUL-terminated. */
struct tool_call {
    char *id;                  /* "chatcmpl-tool-<32 hex>"; Mistral: 9 letters and digits */
    char *name;
    char *arguments;           /* a JSON object's text ("{}" when the model gave none) */
};

struct tool_parse {
    size_t content_len;        /* the output's text before the first call: text[0..content_len) */
    struct tool_call *calls;   /* [num_calls], malloc'd */
    int num_calls;             /* 0: no call; the whole text is content (content_len = len) */
};

/* "llama3_json" (also "llama3", "llama4_json"), "hermes" (also "qwen3", "qwen25"),
 * "mistral", "openai" (also "harmony"), "none"; -EINVAL for any other name. */
int tool_parser_from_name(const char *name, enum tool_parser_kind *out);
const char *tool_parser_name(enum tool_parser_kind k);
/* The parser a chat template's own tool syntax asks for, from the markers its source
 * writes (<tool_call>, [TOOL_CALLS], <|python_tag|> or Llama's "parameters" JSON, harmony's
 * <|channel|>);
 * TOOL_PARSER_NONE when the template shows none. source may be NULL. */
enum tool_parser_kind tool_parser_for_template(const char *source);
/* Whether the parser needs the special tokens kept in the text (Mistral's [TOOL_CALLS],
 * harmony's markers). */
bool tool_parser_needs_special_tokens(enum tool_parser_kind k);

/* Reads text[0..len). A call whose JSON does not parse, lacks a string "name", or has
 * arguments that are not an object makes the whole text content (as vLLM does: no call
 * rather than a wrong one). max_calls > 0 keeps only the first max_calls calls
 * (parallel_tool_calls false: 1). Returns 0 (out filled; tool_parse_fini frees it) or
 * -ENOMEM. */
int tool_parser_parse(enum tool_parser_kind k, const char *text, size_t len, int max_calls,
                      struct tool_parse *out);
void tool_parse_fini(struct tool_parse *p);   /* NULL-safe; leaves p empty */
/* Appends a call to name whose arguments are args[0..len): 1 when added, 0 when they are
 * not one JSON object (blanks around it allowed), -ENOMEM. For parsers of other files
 * (server/harmony.c): one way to make a call, with its id. */
int tool_parse_add_call(struct tool_parse *p, enum tool_parser_kind k, const char *name,
                        const char *args, size_t len);

/* Streaming: how many leading bytes of text[0..len) (the output so far) are content for
 * sure, whatever follows: text before a call's opening marker, less any tail that could
 * still grow into one. *maybe_call is set when a call has started or may be starting. */
size_t tool_parser_content_prefix(enum tool_parser_kind k, const char *text, size_t len,
                                  bool *maybe_call);

#endif
