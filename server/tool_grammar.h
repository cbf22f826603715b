/* tool_grammar.h — the grammar that holds a model's output to tool calls in its family's
 * syntax (tool_parser.h), with each call's arguments held to its tool's JSON Schema: what
 * tool_choice "required", a named function and strict tools are enforced with. Composed as
 * GBNF text from the JSON-Schema front end (engine/grammar), never a second compiler. */
#ifndef OSPREY_TOOL_GRAMMAR_H
#define OSPREY_TOOL_GRAMMAR_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "server/tool_parser.h"

/* GBNF (root rule "root") for one or more calls (one when !parallel) of the tools in tools
 * (the request's array of {"type": "function", "function": {"name", "parameters"}}), or only
 * of the one named only_name when it is not NULL. The syntax is k's: Hermes
 * <tool_call>\n{"name", "arguments"}\n</tool_call>, Llama 3 {"name", "parameters"} ("; "
 * between several), Mistral [TOOL_CALLS][{"name", "arguments"}, …]. With text (tool_choice
 * auto and strict tools), the output may instead be text, or for Hermes and Mistral text and
 * then calls, but never text the parser would read as a call: text never contains the
 * family's marker, and for Llama 3 never starts with a blank, '{' or '<'. Returns 0 with
 * *gbnf malloc'd, -EINVAL with a message in err (ERR_LEN bytes) naming the tool whose
 * parameters cannot be compiled ("tools[2].function.parameters: json_schema: …"), -ENOMEM. */
int tool_grammar_build(enum tool_parser_kind k, const cJSON *tools, const char *only_name,
                       bool parallel, bool text, char **gbnf, char *err);

#endif
