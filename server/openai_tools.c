/* openai_tools.c — tool calling on /v1/chat/completions: the request's tools, tool_choice,
 * parallel_tool_calls and tool messages checked and shaped for Hugging Face templates, and
 * the output read back for calls with the model family's parser (server/tool_parser.c),
 * whole (a response) or as it streams (content goes out until a call may be starting).
 * tool_choice "required", a named function and strict tools hold the output to calls (or,
 * under "auto", to text that cannot start one, then calls) with a grammar composed from the
 * tools' schemas (server/tool_grammar.c). */
#include "server/openai_parse.h"
#include "server/openai_render.h"
#include "server/tool_grammar.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/finish_reason.h"

#define TOOL_NAME_MAX 64     /* OpenAI's limit on a function name */

/* OpenAI's rule for function names: letters, digits, '_' and '-', 1 to 64 of them. */
static bool good_name(const char *s)
{
    size_t n = strlen(s);

    if (!n || n > TOOL_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", s[i]))
            return false;
    return true;
}

static int check_tool(const cJSON *t, int i, struct oai_error *e)
{
    const cJSON *type = openai__field(t, "type"), *fn = openai__field(t, "function"), *name, *params, *strict, *desc;

    if (!cJSON_IsObject(t))
        return openai_error(e, 400, "invalid_type", "tools",
                            "Invalid type for 'tools[%d]': expected an object, but got %s instead.",
                            i, openai__json_type(t));
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "function"))
        return openai_error(e, 400, "invalid_value", "tools",
                            "Invalid 'tools[%d].type': only 'function' tools are supported.", i);
    if (!cJSON_IsObject(fn))
        return openai_error(e, 400, fn ? "invalid_type" : "missing_required_parameter", "tools",
                            "Invalid 'tools[%d].function': expected an object, but got %s instead.",
                            i, openai__json_type(fn));
    name = openai__field(fn, "name");
    if (!cJSON_IsString(name) || !good_name(name->valuestring))
        return openai_error(e, 400, "invalid_value", "tools",
                            "Invalid 'tools[%d].function.name': expected 1 to %d letters, digits, "
                            "'_' or '-'.", i, TOOL_NAME_MAX);
    if ((desc = openai__field(fn, "description")) && !cJSON_IsString(desc))
        return openai_error(e, 400, "invalid_type", "tools",
                            "Invalid type for 'tools[%d].function.description': expected a string, "
                            "but got %s instead.", i, openai__json_type(desc));
    if ((params = openai__field(fn, "parameters")) && !cJSON_IsObject(params))
        return openai_error(e, 400, "invalid_type", "tools",
                            "Invalid type for 'tools[%d].function.parameters': expected a JSON "
                            "schema object, but got %s instead.", i, openai__json_type(params));
    if ((strict = openai__field(fn, "strict")) && !cJSON_IsBool(strict))
        return openai_error(e, 400, "invalid_type", "tools",
                            "Invalid type for 'tools[%d].function.strict': expected a boolean, but "
                            "got %s instead.", i, openai__json_type(strict));
    for (const cJSON *o = t->child; o; o = o->next)
        if (strcmp(o->string, "type") && strcmp(o->string, "function"))
            return openai_error(e, 400, "unsupported_parameter", "tools",
                                "Unsupported parameter: 'tools[%d].%s' is not supported by osprey.",
                                i, o->string);
    return 0;
}

static bool has_tool(const cJSON *tools, const char *name)
{
    const cJSON *t;

    cJSON_ArrayForEach(t, tools) {
        const cJSON *n = openai__field(openai__field(t, "function"), "name");

        if (cJSON_IsString(n) && !strcmp(n->valuestring, name))
            return true;
    }
    return false;
}

static int parse_choice(struct oai_request *r, const cJSON *tc, struct oai_error *e)
{
    const cJSON *fn, *name;

    if (cJSON_IsString(tc)) {
        if (!strcmp(tc->valuestring, "none")) {
            r->tool_choice = OAI_TOOLS_NONE;
            return 0;
        }
        if (!strcmp(tc->valuestring, "auto")) {
            if (!r->tools)
                return openai_error(e, 400, "invalid_value", "tool_choice",
                                    "Invalid 'tool_choice': 'auto' needs 'tools'.");
            r->tool_choice = OAI_TOOLS_AUTO;
            return 0;
        }
        if (!strcmp(tc->valuestring, "required")) {
            if (!r->tools)
                return openai_error(e, 400, "invalid_value", "tool_choice",
                                    "Invalid 'tool_choice': 'required' needs 'tools'.");
            r->tool_choice = OAI_TOOLS_REQUIRED;
            return 0;
        }
        return openai_error(e, 400, "invalid_value", "tool_choice",
                            "Invalid 'tool_choice': expected 'none', 'auto', 'required' or "
                            "{\"type\": \"function\", \"function\": {\"name\": …}}, but got '%.64s'.",
                            tc->valuestring);
    }
    if (!cJSON_IsObject(tc))
        return openai_error(e, 400, "invalid_type", "tool_choice",
                            "Invalid type for 'tool_choice': expected a string or an object, but got "
                            "%s instead.", openai__json_type(tc));
    fn = openai__field(tc, "function");
    name = openai__field(fn, "name");
    if (!cJSON_IsString(openai__field(tc, "type")) || strcmp(openai__field(tc, "type")->valuestring, "function") ||
        !cJSON_IsString(name))
        return openai_error(e, 400, "invalid_value", "tool_choice",
                            "Invalid 'tool_choice': expected {\"type\": \"function\", \"function\": "
                            "{\"name\": …}}.");
    if (!r->tools || !has_tool(r->tools, name->valuestring))
        return openai_error(e, 400, "invalid_value", "tool_choice",
                            "Invalid 'tool_choice': the function '%.64s' is not among 'tools'.",
                            name->valuestring);
    r->tool_choice = OAI_TOOLS_NAMED;
    r->tool_name = name->valuestring;
    return 0;
}

static bool any_strict(const cJSON *tools)
{
    const cJSON *t;

    cJSON_ArrayForEach(t, tools)
        if (cJSON_IsTrue(openai__field(openai__field(t, "function"), "strict")))
            return true;
    return false;
}

/* tool_choice required or named: the output held to calls by a grammar, which then takes
 * the place response_format would (one constraint per request); auto with strict tools:
 * text or calls, the calls held to their schemas (text: true). */
static int hold_to_calls(struct oai_request *r, bool text, struct oai_error *e)
{
    char err[ERR_LEN] = "", *gbnf = NULL;
    int rc;

    if (r->has_grammar)
        return openai_error(e, 400, "invalid_value", "tool_choice",
                            "Invalid 'tool_choice': %s already constrains the output; '%s' cannot "
                            "constrain it too.", text ? "a strict tool" : "a required or named tool call",
                            r->grammar_param);
    rc = tool_grammar_build(r->tool_parser, r->tools, r->tool_choice == OAI_TOOLS_NAMED ? r->tool_name : NULL,
                            r->parallel_tool_calls && r->tool_choice != OAI_TOOLS_NAMED, text, &gbnf, err);
    if (rc == -EINVAL)
        return openai_error(e, 400, "invalid_value", "tools", "Invalid 'tools': %s.", err);
    if (rc || !(r->grammar_src = arena_strdup(&r->arena, gbnf))) {
        free(gbnf);
        return openai_error(e, 500, "internal_error", NULL, "out of memory");
    }
    free(gbnf);
    r->has_grammar = true;
    r->grammar_kind = GRAMMAR_GBNF;
    r->grammar_len = strlen(r->grammar_src);
    r->grammar_param = "tools";
    return 0;
}

int openai_parse_tool_list(struct oai_request *r, struct oai_error *e)
{
    const cJSON *tools = openai__field(r->root, "tools"), *t;
    int i = 0, rc;

    if (tools && !cJSON_IsArray(tools))
        return openai_error(e, 400, "invalid_type", "tools",
                            "Invalid type for 'tools': expected an array, but got %s instead.",
                            openai__json_type(tools));
    cJSON_ArrayForEach(t, tools)
        if ((rc = check_tool(t, i++, e)))
            return rc;
    r->tools = tools && tools->child ? tools : NULL;
    return 0;
}

/* gpt-oss's template reads an assistant turn's analysis from "thinking" and tests its
 * content as a string; OpenAI clients send back a call with content null and vLLM's
 * clients its analysis as "reasoning" (or "reasoning_content"). */
int openai_harmony_messages(struct oai_request *r, struct oai_error *e)
{
    cJSON *msg;

    cJSON_ArrayForEach(msg, (cJSON *)r->messages) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        const cJSON *why = cJSON_GetObjectItemCaseSensitive(msg, "reasoning");
        cJSON *t;

        if (!cJSON_IsString(role) || strcmp(role->valuestring, "assistant"))
            continue;
        if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(msg, "content")))
            cJSON_DeleteItemFromObjectCaseSensitive(msg, "content");
        /* a turn of reasoning alone (a Responses reasoning item) is an empty answer */
        if (!cJSON_GetObjectItemCaseSensitive(msg, "content") && !cJSON_GetObjectItemCaseSensitive(msg, "tool_calls") &&
            !cJSON_AddStringToObject(msg, "content", ""))
            return openai_error(e, 500, "internal_error", NULL, "out of memory");
        if (!cJSON_IsString(why))
            why = cJSON_GetObjectItemCaseSensitive(msg, "reasoning_content");
        if (!cJSON_IsString(why) || !why->valuestring[0] || cJSON_GetObjectItemCaseSensitive(msg, "thinking"))
            continue;
        if (!(t = cJSON_CreateString(why->valuestring)) || !cJSON_AddItemToObject(msg, "thinking", t)) {
            cJSON_Delete(t);
            return openai_error(e, 500, "internal_error", NULL, "out of memory");
        }
    }
    return 0;
}

int openai_parse_tools(struct oai_request *r, const struct oai_config *c, struct oai_error *e)
{
    const cJSON *tc = openai__field(r->root, "tool_choice");
    const cJSON *ptc = openai__field(r->root, "parallel_tool_calls");
    int rc;

    r->tool_choice = OAI_TOOLS_NONE;
    r->parallel_tool_calls = true;
    r->tool_parser = c->tool_parser;
    if ((rc = openai_parse_tool_list(r, e)))
        return rc;
    if (ptc && !cJSON_IsBool(ptc))
        return openai_error(e, 400, "invalid_type", "parallel_tool_calls",
                            "Invalid type for 'parallel_tool_calls': expected a boolean, but got %s "
                            "instead.", openai__json_type(ptc));
    r->parallel_tool_calls = !ptc || cJSON_IsTrue(ptc);
    /* OpenAI's default: "auto" when there are tools, "none" without. */
    if (r->tools)
        r->tool_choice = OAI_TOOLS_AUTO;
    if (tc && (rc = parse_choice(r, tc, e)))
        return rc;
    if (r->tool_choice != OAI_TOOLS_NONE && r->tool_parser == TOOL_PARSER_NONE)
        return openai_error(e, 400, "invalid_value", "tool_choice",
                            "Invalid 'tool_choice': '%s' needs a tool-call parser, and the model's "
                            "chat template shows no tool-call syntax osprey knows; start osprey with "
                            "--tool-call-parser (llama3_json, hermes, mistral or openai), or send "
                            "tool_choice 'none'.",
                            r->tool_choice == OAI_TOOLS_AUTO ? "auto"
                            : r->tool_choice == OAI_TOOLS_REQUIRED ? "required" : "function");
    /* gpt-oss: every answer is harmony (its channels are special tokens), so the text is
     * read with them kept, tools or not (server/harmony.c). */
    if (r->tool_parser == TOOL_PARSER_OPENAI) {
        /* a stream's chunks carry reasoning, content or calls, not the tokens they came from */
        if (r->stream && r->logprobs)
            return openai_error(e, 400, "unsupported_parameter", "logprobs",
                                "Unsupported parameter: 'logprobs' in a stream from a harmony model "
                                "(gpt-oss) is not supported by osprey.");
        r->params.skip_special_tokens = false;
        if ((rc = openai_harmony_messages(r, e)))
            return rc;
    }
    if (r->tool_parser == TOOL_PARSER_OPENAI &&
        (r->tool_choice == OAI_TOOLS_REQUIRED || r->tool_choice == OAI_TOOLS_NAMED ||
         (r->tool_choice == OAI_TOOLS_AUTO && any_strict(r->tools))))
        return openai_error(e, 400, "invalid_value", r->tool_choice == OAI_TOOLS_AUTO ? "tools" : "tool_choice",
                            "Invalid '%s': %s needs the output held to calls by a grammar, and "
                            "gpt-oss's calls are harmony messages (<|start|>, <|channel|>, "
                            "<|message|>, <|call|>: special tokens) that osprey's grammars cannot "
                            "write; send tool_choice 'auto' with non-strict tools.",
                            r->tool_choice == OAI_TOOLS_AUTO ? "tools" : "tool_choice",
                            r->tool_choice == OAI_TOOLS_AUTO ? "a strict tool"
                            : r->tool_choice == OAI_TOOLS_REQUIRED ? "tool_choice 'required'"
                            : "a named tool_choice");
    /* A strict tool's arguments must follow its schema: under "auto" the grammar lets the
     * model answer in text, or call (every tool then held to its schema). */
    if ((r->tool_choice == OAI_TOOLS_REQUIRED || r->tool_choice == OAI_TOOLS_NAMED ||
         (r->tool_choice == OAI_TOOLS_AUTO && any_strict(r->tools))) &&
        (rc = hold_to_calls(r, r->tool_choice == OAI_TOOLS_AUTO, e)))
        return rc;
    if (r->tool_choice != OAI_TOOLS_NONE) {
        if (r->stream && r->logprobs)
            return openai_error(e, 400, "unsupported_parameter", "logprobs",
                                "Unsupported parameter: 'logprobs' in a stream with tools "
                                "is not supported by osprey.");
        /* Mistral's [TOOL_CALLS] is a special token: the parser must see it. */
        if (tool_parser_needs_special_tokens(r->tool_parser))
            r->params.skip_special_tokens = false;
    }
    return 0;
}

int openai_tools_check_message(cJSON *msg, int i, struct oai_error *e)
{
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
    cJSON *calls = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls"), *call;
    int k = 0;

    if (cJSON_IsString(role) && !strcmp(role->valuestring, "tool")) {
        const cJSON *id = openai__field(msg, "tool_call_id");

        if (!cJSON_IsString(id))
            return openai_error(e, 400, id ? "invalid_type" : "missing_required_parameter", "messages",
                                "Invalid 'messages[%d].tool_call_id': a tool message needs the id "
                                "(a string) of the call it answers.", i);
    }
    if (!calls || cJSON_IsNull(calls))
        return 0;
    if (!cJSON_IsString(role) || strcmp(role->valuestring, "assistant"))
        return openai_error(e, 400, "invalid_value", "messages",
                            "Invalid 'messages[%d].tool_calls': only assistant messages make tool calls.", i);
    if (!cJSON_IsArray(calls))
        return openai_error(e, 400, "invalid_type", "messages",
                            "Invalid type for 'messages[%d].tool_calls': expected an array, but got %s "
                            "instead.", i, openai__json_type(calls));
    cJSON_ArrayForEach(call, calls) {
        cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function"), *args, *obj;
        const cJSON *id = openai__field(call, "id"), *type = openai__field(call, "type"), *name = openai__field(fn, "name");

        if (!cJSON_IsObject(call) || !cJSON_IsString(id) || !cJSON_IsObject(fn) ||
            (type && (!cJSON_IsString(type) || strcmp(type->valuestring, "function"))) ||
            !cJSON_IsString(name))
            return openai_error(e, 400, "invalid_value", "messages",
                                "Invalid 'messages[%d].tool_calls[%d]': expected {\"id\", \"type\": "
                                "\"function\", \"function\": {\"name\", \"arguments\"}}.", i, k);
        args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        if (cJSON_IsString(args)) {
            /* OpenAI sends arguments as JSON text; HF templates (Llama 3.x's tojson, Qwen's
             * items()) want the object, so it is decoded here, as vLLM does. */
            if (!(obj = cJSON_Parse(args->valuestring)) || !cJSON_IsObject(obj)) {
                cJSON_Delete(obj);
                return openai_error(e, 400, "invalid_value", "messages",
                                    "Invalid 'messages[%d].tool_calls[%d].function.arguments': not "
                                    "the JSON text of an object.", i, k);
            }
            if (!cJSON_ReplaceItemInObjectCaseSensitive(fn, "arguments", obj)) {
                cJSON_Delete(obj);
                return openai_error(e, 500, "internal_error", NULL, "out of memory");
            }
        } else if (args && !cJSON_IsObject(args)) {
            return openai_error(e, 400, "invalid_type", "messages",
                                "Invalid type for 'messages[%d].tool_calls[%d].function.arguments': "
                                "expected a string, but got %s instead.", i, k, openai__json_type(args));
        }
        k++;
    }
    return 0;
}

bool openai_tools_active(const struct oai_request *r)
{
    /* harmony's calls are read with the rest of its output (openai_harmony.c) */
    return r->kind == OAI_CHAT && r->tool_choice != OAI_TOOLS_NONE && r->tool_parser != TOOL_PARSER_NONE &&
           r->tool_parser != TOOL_PARSER_OPENAI;
}

int openai_tools_max_calls(const struct oai_request *r)
{
    return r->parallel_tool_calls ? 0 : 1;
}

int openai_tools_apply(const struct oai_request *r, struct oai_choice *oc, struct tool_parse *tp,
                       char **joined)
{
    size_t len = oc->prefix_len + oc->text_len;
    char *s = malloc(len + 1);

    *joined = NULL;
    memset(tp, 0, sizeof *tp);
    if (!s)
        return -ENOMEM;
    if (oc->prefix_len)
        memcpy(s, oc->prefix, oc->prefix_len);
    if (oc->text_len)
        memcpy(s + oc->prefix_len, oc->text, oc->text_len);
    s[len] = '\0';
    if (tool_parser_parse(r->tool_parser, s, len, openai_tools_max_calls(r), tp)) {
        free(s);
        return -ENOMEM;
    }
    *joined = s;
    oc->prefix = NULL;
    oc->prefix_len = 0;
    oc->text = s;
    oc->text_len = tp->content_len;
    oc->tool_calls = tp->calls;
    oc->num_tool_calls = tp->num_calls;
    if (tp->num_calls)
        oc->finish_reason = finish_reason_name(FINISH_TOOL_CALLS);
    return 0;
}

void tool_stream_init(struct tool_stream *ts)
{
    buf_init(&ts->text);
    ts->sent = 0;
}

void tool_stream_fini(struct tool_stream *ts)
{
    buf_fini(&ts->text);
    ts->sent = 0;
}

int tool_stream_feed(struct tool_stream *ts, enum tool_parser_kind k, const char *s, size_t n,
                     const char **out, size_t *out_len)
{
    struct buf *t = &ts->text;
    size_t ready;
    bool maybe;

    if (buf_put(t, s, n))
        return -ENOMEM;
    /* Only the unsent tail is read again: what went out holds no call's start (a marker is
     * held from its first byte), so a token costs its own bytes, not the whole output's.
     * Llama 3's syntax is decided by the first character: once content went out, all is. */
    if (k == TOOL_PARSER_LLAMA3_JSON)
        ready = ts->sent ? t->len : tool_parser_content_prefix(k, t->p, t->len, &maybe);
    else
        ready = ts->sent + tool_parser_content_prefix(k, t->p + ts->sent, t->len - ts->sent, &maybe);
    *out = t->p + ts->sent;
    *out_len = ready > ts->sent ? ready - ts->sent : 0;
    ts->sent += *out_len;
    return 0;
}

int tool_stream_finish(struct tool_stream *ts, const struct oai_request *r, struct tool_parse *tp,
                       const char **out, size_t *out_len)
{
    const struct buf *t = &ts->text;
    size_t end;

    if (tool_parser_parse(r->tool_parser, t->p ? t->p : "", t->len, openai_tools_max_calls(r), tp))
        return -ENOMEM;
    end = tp->num_calls ? tp->content_len : t->len;
    *out = t->p ? t->p + ts->sent : "";
    *out_len = end > ts->sent ? end - ts->sent : 0;
    ts->sent += *out_len;
    return 0;
}
