/* responses.c — /v1/responses as a chat request (see responses.h): the translation of the
 * body, the response object and the typed stream events, in the shapes of OpenAI's API
 * reference. Stateless: nothing is stored, so what needs a stored response is refused. */
#include "server/responses.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "server/json_out.h"

/* Adds a copy of src[key] to dst when present. */
static bool copy(cJSON *dst, const cJSON *src, const char *key, const char *as)
{
    const cJSON *v = openai__field(src, key);
    cJSON *c;

    if (!v)
        return true;
    if (!(c = cJSON_Duplicate(v, true)) || !cJSON_AddItemToObject(dst, as ? as : key, c)) {
        cJSON_Delete(c);
        return false;
    }
    return true;
}

/* What a stateless osprey cannot do, each named. */
static int check_refused(const cJSON *root, struct oai_error *e)
{
    const cJSON *v;

    if (openai__field(root, "previous_response_id"))
        return openai_error(e, 400, "unsupported_parameter", "previous_response_id",
                            "Unsupported parameter: 'previous_response_id': osprey keeps no responses "
                            "(send the whole conversation as 'input').");
    if ((v = openai__field(root, "store")) && !cJSON_IsFalse(v))
        return openai_error(e, 400, "unsupported_parameter", "store",
                            "Unsupported parameter: 'store' %s: osprey keeps no responses.",
                            cJSON_IsTrue(v) ? "true" : "must be a boolean and");
    if ((v = openai__field(root, "background")) && !cJSON_IsFalse(v))
        return openai_error(e, 400, "unsupported_parameter", "background",
                            "Unsupported parameter: 'background' responses are not supported by osprey.");
    if (openai__field(root, "conversation"))
        return openai_error(e, 400, "unsupported_parameter", "conversation",
                            "Unsupported parameter: 'conversation': osprey keeps no conversations.");
    if ((v = openai__field(root, "text"))) {
        if (!cJSON_IsObject(v))
            return openai_error(e, 400, "invalid_type", "text",
                                "Invalid type for 'text': expected an object, but got %s instead.", openai__json_type(v));
        if (openai__field(v, "verbosity"))
            return openai_error(e, 400, "unsupported_parameter", "text.verbosity",
                                "Unsupported parameter: 'text.verbosity' is not supported by osprey.");
    }
    static const char *const refused[] = { "include", "top_logprobs", "max_tool_calls",
                                           "prompt", "truncation" };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        v = openai__field(root, refused[i]);
        if (!v || (cJSON_IsArray(v) && !v->child) ||
            (!strcmp(refused[i], "truncation") && cJSON_IsString(v) && !strcmp(v->valuestring, "disabled")))
            continue;
        return openai_error(e, 400, "unsupported_parameter", refused[i],
                            "Unsupported parameter: '%s' is not supported by osprey.", refused[i]);
    }
    return 0;
}

/* A message's content: a string, or parts of type input_text/output_text, as chat's
 * {type: text} parts. */
static int content_of(const cJSON *item, int i, cJSON **out, struct oai_error *e)
{
    const cJSON *c = openai__field(item, "content"), *part;
    cJSON *parts;

    if (cJSON_IsString(c)) {
        *out = cJSON_CreateString(c->valuestring);
        return *out ? 0 : openai__no_memory(e);
    }
    if (!cJSON_IsArray(c))
        return openai_error(e, 400, "invalid_type", "input",
                            "Invalid type for 'input[%d].content': expected a string or an array of "
                            "content parts, but got %s instead.", i, openai__json_type(c));
    if (!(parts = cJSON_CreateArray()))
        return openai__no_memory(e);
    cJSON_ArrayForEach(part, c) {
        const cJSON *type = openai__field(part, "type"), *text = openai__field(part, "text");
        cJSON *p;

        if (!cJSON_IsString(type) || (strcmp(type->valuestring, "input_text") &&
                                      strcmp(type->valuestring, "output_text") &&
                                      strcmp(type->valuestring, "text")) || !cJSON_IsString(text)) {
            cJSON_Delete(parts);
            return openai_error(e, 400, "invalid_value", "input",
                                "Invalid 'input[%d].content': only input_text and output_text parts "
                                "(with their text) are supported.", i);
        }
        if (!(p = cJSON_CreateObject()) || !cJSON_AddItemToArray(parts, p) ||
            !cJSON_AddStringToObject(p, "type", "text") || !cJSON_AddStringToObject(p, "text", text->valuestring)) {
            cJSON_Delete(parts);
            return openai__no_memory(e);
        }
    }
    *out = parts;
    return 0;
}

/* The text of a reasoning item: its reasoning_text parts, else its summary's, joined. */
static char *reasoning_text(const cJSON *item)
{
    const char *keys[] = { "content", "summary" };
    struct buf b = BUF_INIT;

    for (int k = 0; k < 2 && !b.len; k++) {
        const cJSON *part;

        cJSON_ArrayForEach(part, openai__field(item, keys[k])) {
            const cJSON *t = openai__field(part, "text");

            if (cJSON_IsString(t) && buf_put(&b, t->valuestring, strlen(t->valuestring))) {
                buf_fini(&b);
                return NULL;
            }
        }
    }
    return b.p ? b.p : strdup("");
}

/* An assistant message that holds only reasoning so far (a reasoning item's), which the
 * message or calls that follow it complete. */
static bool reasoning_only(const cJSON *m)
{
    const cJSON *role = openai__field(m, "role");

    return cJSON_IsString(role) && !strcmp(role->valuestring, "assistant") &&
           cJSON_GetObjectItemCaseSensitive(m, "reasoning") &&
           cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(m, "content")) &&
           !cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
}

/* One input item as chat messages appended to msgs: a message, a function_call (merged
 * into the assistant message of the calls before it) or a function_call_output. A
 * reasoning item (a previous output's, sent back) is, for a harmony model (gpt-oss), an
 * assistant message's reasoning that the message or calls after it complete; other models
 * have nothing to do with it, and it is left out. */
static int add_item(cJSON *msgs, const cJSON *item, int i, bool harmony, struct oai_error *e)
{
    const cJSON *type = openai__field(item, "type"), *role = openai__field(item, "role");
    const char *t = cJSON_IsString(type) ? type->valuestring : "message";
    cJSON *m = NULL, *content = NULL;
    int rc;

    if (!cJSON_IsObject(item))
        return openai_error(e, 400, "invalid_type", "input",
                            "Invalid type for 'input[%d]': expected an object, but got %s instead.", i, openai__json_type(item));
    if (!strcmp(t, "message")) {
        const char *r = cJSON_IsString(role) ? role->valuestring : "";

        if (strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "system") && strcmp(r, "developer"))
            return openai_error(e, 400, "invalid_value", "input",
                                "Invalid 'input[%d].role': expected user, assistant, system or developer.", i);
        if ((rc = content_of(item, i, &content, e)))
            return rc;
        m = cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1);
        if (!strcmp(r, "assistant") && reasoning_only(m)) {
            if (!cJSON_ReplaceItemInObjectCaseSensitive(m, "content", content)) {
                cJSON_Delete(content);
                return openai__no_memory(e);
            }
            return 0;
        }
        if (!(m = cJSON_CreateObject()) ||
            !cJSON_AddStringToObject(m, "role", strcmp(r, "developer") ? r : "system") ||
            !cJSON_AddItemToObject(m, "content", content))
            goto nomem_content;
    } else if (!strcmp(t, "function_call")) {
        const cJSON *id = openai__field(item, "call_id"), *name = openai__field(item, "name"), *args = openai__field(item, "arguments");
        cJSON *last = cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1), *calls, *call, *fn;

        if (!cJSON_IsString(id) || !cJSON_IsString(name) || !cJSON_IsString(args))
            return openai_error(e, 400, "invalid_value", "input",
                                "Invalid 'input[%d]': a function_call needs call_id, name and arguments (strings).", i);
        calls = cJSON_GetObjectItemCaseSensitive(last, "tool_calls");
        if (reasoning_only(last) && !(calls = cJSON_AddArrayToObject(last, "tool_calls")))
            return openai__no_memory(e);
        if (!calls || !cJSON_IsArray(calls)) {
            if (!(m = cJSON_CreateObject()) || !cJSON_AddStringToObject(m, "role", "assistant") ||
                !cJSON_AddNullToObject(m, "content") || !(calls = cJSON_AddArrayToObject(m, "tool_calls")))
                goto nomem;
        }
        if (!(call = cJSON_CreateObject()) || !cJSON_AddItemToArray(calls, call) ||
            !cJSON_AddStringToObject(call, "id", id->valuestring) ||
            !cJSON_AddStringToObject(call, "type", "function") ||
            !(fn = cJSON_AddObjectToObject(call, "function")) ||
            !cJSON_AddStringToObject(fn, "name", name->valuestring) ||
            !cJSON_AddStringToObject(fn, "arguments", args->valuestring))
            goto nomem;
        if (!m)
            return 0;
    } else if (!strcmp(t, "function_call_output")) {
        const cJSON *id = openai__field(item, "call_id"), *out = openai__field(item, "output");

        if (!cJSON_IsString(id) || !cJSON_IsString(out))
            return openai_error(e, 400, "invalid_value", "input",
                                "Invalid 'input[%d]': a function_call_output needs call_id and output (strings).", i);
        if (!(m = cJSON_CreateObject()) || !cJSON_AddStringToObject(m, "role", "tool") ||
            !cJSON_AddStringToObject(m, "tool_call_id", id->valuestring) ||
            !cJSON_AddStringToObject(m, "content", out->valuestring))
            goto nomem;
    } else if (!strcmp(t, "reasoning")) {
        char *text;

        if (!harmony)
            return 0;
        if (!(text = reasoning_text(item)))
            return openai__no_memory(e);
        if (!(m = cJSON_CreateObject()) || !cJSON_AddStringToObject(m, "role", "assistant") ||
            !cJSON_AddNullToObject(m, "content") || !cJSON_AddStringToObject(m, "reasoning", text)) {
            free(text);
            goto nomem;
        }
        free(text);
    } else {
        return openai_error(e, 400, "unsupported_parameter", "input",
                            "Unsupported input item 'input[%d]' of type '%.40s': osprey takes message, "
                            "function_call, function_call_output and reasoning items.", i, t);
    }
    if (!cJSON_AddItemToArray(msgs, m))
        goto nomem;
    return 0;
nomem_content:
    if (!m || !cJSON_GetObjectItemCaseSensitive(m, "content"))
        cJSON_Delete(content);
nomem:
    cJSON_Delete(m);
    return openai__no_memory(e);
}

/* Responses' flat function tools as chat's {type, function: {…}}. */
static int tools_of(const cJSON *root, cJSON *chat, struct oai_error *e)
{
    const cJSON *tools = openai__field(root, "tools"), *t;
    cJSON *out;
    int i = 0;

    if (!tools)
        return 0;
    if (!cJSON_IsArray(tools))
        return openai_error(e, 400, "invalid_type", "tools",
                            "Invalid type for 'tools': expected an array, but got %s instead.", openai__json_type(tools));
    if (!(out = cJSON_AddArrayToObject(chat, "tools")))
        return openai__no_memory(e);
    cJSON_ArrayForEach(t, tools) {
        const cJSON *type = openai__field(t, "type");
        cJSON *c, *fn;

        if (!cJSON_IsString(type) || strcmp(type->valuestring, "function"))
            return openai_error(e, 400, "unsupported_parameter", "tools",
                                "Invalid 'tools[%d].type': osprey runs function tools only, not '%.40s'.",
                                i, cJSON_IsString(type) ? type->valuestring : "?");
        if (!(c = cJSON_CreateObject()) || !cJSON_AddItemToArray(out, c) ||
            !cJSON_AddStringToObject(c, "type", "function") || !(fn = cJSON_AddObjectToObject(c, "function")) ||
            !copy(fn, t, "name", NULL) || !copy(fn, t, "description", NULL) ||
            !copy(fn, t, "parameters", NULL) || !copy(fn, t, "strict", NULL))
            return openai__no_memory(e);
        i++;
    }
    return 0;
}

/* reasoning: {"effort"} becomes chat's reasoning_effort (which only a harmony model takes);
 * a summary osprey cannot write. */
static int reasoning_of(const cJSON *root, cJSON *chat, struct oai_error *e)
{
    const cJSON *r = openai__field(root, "reasoning"), *k;

    if (!r)
        return 0;
    if (!cJSON_IsObject(r))
        return openai_error(e, 400, "invalid_type", "reasoning",
                            "Invalid type for 'reasoning': expected an object, but got %s instead.",
                            openai__json_type(r));
    for (k = r->child; k; k = k->next)
        if (strcmp(k->string, "effort") && !cJSON_IsNull(k))
            return openai_error(e, 400, "unsupported_parameter", "reasoning",
                                "Unsupported parameter: 'reasoning.%s' is not supported by osprey.", k->string);
    return copy(chat, r, "effort", "reasoning_effort") ? 0 : openai__no_memory(e);
}

static int tool_choice_of(const cJSON *root, cJSON *chat, struct oai_error *e)
{
    const cJSON *tc = openai__field(root, "tool_choice"), *name;
    cJSON *o, *fn;

    if (!tc || cJSON_IsString(tc))
        return copy(chat, root, "tool_choice", NULL) ? 0 : openai__no_memory(e);
    name = openai__field(tc, "name");
    if (!cJSON_IsObject(tc) || !cJSON_IsString(openai__field(tc, "type")) ||
        strcmp(openai__field(tc, "type")->valuestring, "function") || !cJSON_IsString(name))
        return openai_error(e, 400, "invalid_value", "tool_choice",
                            "Invalid 'tool_choice': expected none, auto, required or {\"type\": \"function\", \"name\": …}.");
    if (!(o = cJSON_AddObjectToObject(chat, "tool_choice")) || !cJSON_AddStringToObject(o, "type", "function") ||
        !(fn = cJSON_AddObjectToObject(o, "function")) || !cJSON_AddStringToObject(fn, "name", name->valuestring))
        return openai__no_memory(e);
    return 0;
}

/* text.format, flat in the Responses API ({type, name, schema, strict, description}), as
 * chat's response_format ({type, json_schema: {name, schema, strict, description}}). The
 * checks chat makes again are made here first, so that errors name text.format. */
static int format_of(const cJSON *root, cJSON *chat, struct oai_error *e)
{
    static const char *const KEYS[] = { "type", "name", "schema", "strict", "description" };
    const cJSON *fmt = openai__field(openai__field(root, "text"), "format"), *type = openai__field(fmt, "type"), *k;
    cJSON *rf, *js;

    if (!fmt)
        return 0;
    if (!cJSON_IsObject(fmt) || !cJSON_IsString(type))
        return openai_error(e, 400, "invalid_type", "text.format",
                            "Invalid 'text.format': expected an object with a string 'type'.");
    if (!strcmp(type->valuestring, "text"))
        return 0;
    if (!strcmp(type->valuestring, "json_object")) {
        if (!(rf = cJSON_AddObjectToObject(chat, "response_format")) ||
            !cJSON_AddStringToObject(rf, "type", "json_object"))
            return openai__no_memory(e);
        return 0;
    }
    if (strcmp(type->valuestring, "json_schema"))
        return openai_error(e, 400, "invalid_value", "text.format.type",
                            "Invalid 'text.format.type': '%.64s' is not one of 'text', 'json_object', "
                            "'json_schema'.", type->valuestring);
    cJSON_ArrayForEach(k, fmt) {
        size_t i = 0;

        while (i < sizeof KEYS / sizeof *KEYS && strcmp(KEYS[i], k->string))
            i++;
        if (i == sizeof KEYS / sizeof *KEYS)
            return openai_error(e, 400, "unsupported_parameter", "text.format",
                                "Unsupported parameter: 'text.format.%.64s' is not supported by osprey.",
                                k->string);
    }
    if (!cJSON_IsString(openai__field(fmt, "name")))
        return openai_error(e, 400, openai__field(fmt, "name") ? "invalid_type" : "missing_required_parameter",
                            "text.format.name", "Invalid 'text.format.name': a json_schema format needs "
                            "a name (a string).");
    if (!cJSON_IsObject(openai__field(fmt, "schema")) && !cJSON_IsBool(openai__field(fmt, "schema")))
        return openai_error(e, 400, openai__field(fmt, "schema") ? "invalid_type" : "missing_required_parameter",
                            "text.format.schema", "Invalid 'text.format.schema': expected a JSON Schema "
                            "object.");
    if ((k = openai__field(fmt, "strict")) && !cJSON_IsBool(k))
        return openai_error(e, 400, "invalid_type", "text.format.strict",
                            "Invalid type for 'text.format.strict': expected a boolean, but got %s "
                            "instead.", openai__json_type(k));
    if ((k = openai__field(fmt, "description")) && !cJSON_IsString(k))
        return openai_error(e, 400, "invalid_type", "text.format.description",
                            "Invalid type for 'text.format.description': expected a string, but got "
                            "%s instead.", openai__json_type(k));
    if (!(rf = cJSON_AddObjectToObject(chat, "response_format")) ||
        !cJSON_AddStringToObject(rf, "type", "json_schema") ||
        !(js = cJSON_AddObjectToObject(rf, "json_schema")) || !copy(js, fmt, "name", NULL) ||
        !copy(js, fmt, "schema", NULL) || !copy(js, fmt, "strict", NULL) ||
        !copy(js, fmt, "description", NULL))
        return openai__no_memory(e);
    return 0;
}

static int translate(const cJSON *root, cJSON *chat, bool harmony, struct oai_error *e)
{
    const cJSON *input = openai__field(root, "input"), *ins = openai__field(root, "instructions"), *mot = openai__field(root, "max_output_tokens"), *it;
    cJSON *msgs = cJSON_AddArrayToObject(chat, "messages"), *m;
    int rc, i = 0;

    if (!msgs)
        return openai__no_memory(e);
    if (ins && !cJSON_IsString(ins))
        return openai_error(e, 400, "invalid_type", "instructions",
                            "Invalid type for 'instructions': expected a string, but got %s instead.", openai__json_type(ins));
    if (ins && (!(m = cJSON_CreateObject()) || !cJSON_AddItemToArray(msgs, m) ||
                !cJSON_AddStringToObject(m, "role", "system") || !cJSON_AddStringToObject(m, "content", ins->valuestring)))
        return openai__no_memory(e);
    if (!input)
        return openai_error(e, 400, "missing_required_parameter", "input", "Missing required parameter: 'input'.");
    if (cJSON_IsString(input)) {
        if (!(m = cJSON_CreateObject()) || !cJSON_AddItemToArray(msgs, m) ||
            !cJSON_AddStringToObject(m, "role", "user") || !cJSON_AddStringToObject(m, "content", input->valuestring))
            return openai__no_memory(e);
    } else if (cJSON_IsArray(input) && input->child) {
        int before = cJSON_GetArraySize(msgs);

        cJSON_ArrayForEach(it, input)
            if ((rc = add_item(msgs, it, i++, harmony, e)))
                return rc;
        if (cJSON_GetArraySize(msgs) == before)
            return openai_error(e, 400, "invalid_value", "input",
                                "Invalid 'input': no message, function_call or function_call_output among "
                                "its items (reasoning items are left out for this model).");
    } else {
        return openai_error(e, 400, cJSON_IsArray(input) ? "invalid_value" : "invalid_type", "input",
                            "Invalid 'input': expected a string or a non-empty array of items, but got %s.",
                            openai__json_type(input));
    }
    if (mot && (!cJSON_IsNumber(mot) || !isfinite(mot->valuedouble) || mot->valuedouble != floor(mot->valuedouble)))
        return openai_error(e, 400, "invalid_type", "max_output_tokens",
                            "Invalid type for 'max_output_tokens': expected an integer, but got %s instead.",
                            openai__json_type(mot));
    if (mot && mot->valuedouble < 1)
        return openai_error(e, 400, "invalid_value", "max_output_tokens",
                            "Invalid 'max_output_tokens': expected a value >= 1, but got %.17g instead.",
                            mot->valuedouble);
    if (!copy(chat, root, "model", NULL) || !copy(chat, root, "max_output_tokens", "max_completion_tokens") ||
        !copy(chat, root, "temperature", NULL) || !copy(chat, root, "top_p", NULL) ||
        !copy(chat, root, "stream", NULL) || !copy(chat, root, "parallel_tool_calls", NULL) ||
        !copy(chat, root, "user", NULL))
        return openai__no_memory(e);
    if ((rc = tools_of(root, chat, e)) || (rc = tool_choice_of(root, chat, e)) ||
        (rc = format_of(root, chat, e)) || (rc = reasoning_of(root, chat, e)))
        return rc;
    return 0;
}

int responses_parse(struct oai_request *r, const char *body, size_t len, const struct oai_config *c,
                    struct oai_error *e)
{
    cJSON *chat = NULL;
    char *text = NULL;
    int rc;

    /* The body passes chat's own checks of a body (UTF-8, NUL, depth, repeated keys, JSON,
     * an object) so that its errors read the same; it is kept for the response's echoes. */
    if ((rc = openai_parse_body(r, OAI_CHAT, body, len, e)))
        return rc;
    r->resp_root = r->root;
    r->root = NULL;
    if ((rc = check_refused(r->resp_root, e)))
        return rc;
    if (!(chat = cJSON_CreateObject()))
        return openai__no_memory(e);
    if (!(rc = translate(r->resp_root, chat, c->tool_parser == TOOL_PARSER_OPENAI, e))) {
        if (!(text = cJSON_PrintUnformatted(chat)))
            rc = openai__no_memory(e);
        else
            rc = openai_parse_chat(r, text, strlen(text), c, e);
        /* a schema the grammar refuses is named by the field this request sent */
        if (r->has_grammar && !strncmp(r->grammar_param, "response_format", 15))
            r->grammar_param = "text.format.schema";
        if (rc && !strcmp(e->param, "reasoning_effort"))
            snprintf(e->param, sizeof e->param, "reasoning.effort");
    }
    r->responses = true;
    cJSON_Delete(chat);
    free(text);
    return rc;
}

/* ---- rendering ---- */

static void rand_hex(char *out, size_t n_bytes)
{
    unsigned char rnd[24];

    if (n_bytes > sizeof rnd)
        n_bytes = sizeof rnd;
    if (getrandom(rnd, n_bytes, GRND_NONBLOCK) != (ssize_t)n_bytes)
        memset(rnd, 0x5a, n_bytes);   /* ids need not be secret; the response id stays unique */
    for (size_t i = 0; i < n_bytes; i++)
        sprintf(out + 2 * i, "%02x", rnd[i]);
}

/* ---- rendering: written as text through json_out, like server/openai_render.c ---- */

#define LIT(o, s) json_out_raw((o), (s), sizeof(s) - 1)

static void str0(struct json_out *o, const char *s)
{
    json_out_str(o, s, s ? strlen(s) : 0);
}

/* A value of the request body as sent (tools, metadata, …): cJSON prints it. */
static void raw_value(struct json_out *o, const cJSON *v)
{
    char *t = cJSON_PrintUnformatted(v);

    if (!t) {
        if (!o->err)
            o->err = -ENOMEM;
        return;
    }
    json_out_lit(o, t);
    free(t);
}

/* ,"key": the body's value of key when present, else fallback (raw JSON text). */
static void echo_field(struct json_out *o, const cJSON *root, const char *key, const char *fallback)
{
    const cJSON *v = openai__field(root, key);

    LIT(o, ",");
    str0(o, key);
    LIT(o, ":");
    if (v)
        raw_value(o, v);
    else
        json_out_lit(o, fallback);
}

static void text_part(struct json_out *o, const char *text, size_t len)
{
    LIT(o, "{\"type\":\"output_text\",\"text\":");
    json_out_str(o, text ? text : "", len);
    LIT(o, ",\"annotations\":[]}");
}

static void message_item(struct json_out *o, const char *id, const char *status, const char *text,
                         size_t len, bool with_part)
{
    LIT(o, "{\"id\":");
    str0(o, id);
    LIT(o, ",\"type\":\"message\",\"status\":");
    str0(o, status);
    LIT(o, ",\"role\":\"assistant\",\"content\":[");
    if (with_part)
        text_part(o, text, len);
    LIT(o, "]}");
}

static void call_item(struct json_out *o, const struct tool_call *t, const char *id, const char *status,
                      bool with_args)
{
    LIT(o, "{\"id\":");
    str0(o, id);
    LIT(o, ",\"type\":\"function_call\",\"status\":");
    str0(o, status);
    LIT(o, ",\"call_id\":");
    str0(o, t->id);
    LIT(o, ",\"name\":");
    str0(o, t->name);
    LIT(o, ",\"arguments\":");
    str0(o, with_args ? t->arguments : "");
    LIT(o, "}");
}

/* gpt-oss's analysis as OpenAI's reasoning item: its text as one reasoning_text part. */
static void reasoning_item(struct json_out *o, const char *id, const char *status, const char *text,
                           size_t len, bool with_part)
{
    LIT(o, "{\"id\":");
    str0(o, id);
    LIT(o, ",\"type\":\"reasoning\",\"summary\":[],\"content\":[");
    if (with_part) {
        LIT(o, "{\"type\":\"reasoning_text\",\"text\":");
        json_out_str(o, text ? text : "", len);
        LIT(o, "}");
    }
    LIT(o, "],\"status\":");
    str0(o, status);
    LIT(o, "}");
}

static void usage_object(struct json_out *o, const struct oai_usage *u)
{
    LIT(o, "{\"input_tokens\":");
    json_out_int(o, u->prompt_tokens);
    LIT(o, ",\"input_tokens_details\":{\"cached_tokens\":");
    json_out_int(o, u->cached_tokens);
    LIT(o, "},\"output_tokens\":");
    json_out_int(o, u->completion_tokens);
    LIT(o, ",\"output_tokens_details\":{\"reasoning_tokens\":");
    json_out_int(o, u->reasoning_tokens);
    LIT(o, "},\"total_tokens\":");
    json_out_int(o, (long long)u->prompt_tokens + u->completion_tokens);
    LIT(o, "}");
}

/* The response object; out NULL: in progress, no output yet. msg_id names the message item,
 * which the output holds when there is text or no call, or always with always_msg (a
 * stream's final object: the stream opened the message). The reasoning item (rs_id), when
 * there is reasoning, comes first, as OpenAI's does. */
static void response_object(struct json_out *o, const struct resp_head *h, const struct resp_output *out,
                            const struct oai_usage *u, const char *msg_id, const char *rs_id, bool always_msg)
{
    const struct oai_request *q = h->req;
    const cJSON *root = q->resp_root;
    bool incomplete = out && out->finish_reason && !strcmp(out->finish_reason, "length");
    bool first = true;

    LIT(o, "{\"id\":");
    str0(o, h->id);
    LIT(o, ",\"object\":\"response\",\"created_at\":");
    json_out_int(o, h->created_at);
    LIT(o, ",\"status\":");
    str0(o, !out ? "in_progress" : incomplete ? "incomplete" : "completed");
    LIT(o, ",\"error\":null,\"incomplete_details\":");
    if (incomplete)
        LIT(o, "{\"reason\":\"max_output_tokens\"}");
    else
        LIT(o, "null");
    echo_field(o, root, "instructions", "null");
    echo_field(o, root, "max_output_tokens", "null");
    LIT(o, ",\"model\":");
    str0(o, h->model);
    LIT(o, ",\"output\":[");
    if (out && out->reasoning_len) {
        reasoning_item(o, rs_id, "completed", out->reasoning, out->reasoning_len, true);
        first = false;
    }
    if (out) {
        if (out->text_len || !out->num_calls) {
            if (!first)
                LIT(o, ",");
            message_item(o, msg_id, incomplete ? "incomplete" : "completed", out->text, out->text_len, true);
            first = false;
        } else if (always_msg) {
            if (!first)
                LIT(o, ",");
            message_item(o, msg_id, "completed", out->text, out->text_len, true);
            first = false;
        }
        for (int i = 0; i < out->num_calls; i++) {
            char id[40] = "fc_";

            rand_hex(id + 3, 16);
            if (!first)
                LIT(o, ",");
            first = false;
            call_item(o, &out->calls[i], id, "completed", true);
        }
    }
    LIT(o, "],\"parallel_tool_calls\":");
    json_out_lit(o, q->parallel_tool_calls ? "true" : "false");
    /* floats shown as the decimal the client meant (0.6, not 0.600000023841858) */
    LIT(o, ",\"temperature\":");
    json_out_num(o, round(q->params.temperature * 1e6) / 1e6);
    LIT(o, ",\"top_p\":");
    json_out_num(o, round(q->params.top_p * 1e6) / 1e6);
    echo_field(o, root, "tool_choice", q->tools ? "\"auto\"" : "\"none\"");
    echo_field(o, root, "tools", "[]");
    echo_field(o, root, "text", "{\"format\":{\"type\":\"text\"}}");
    LIT(o, ",\"truncation\":\"disabled\",\"store\":false,"
           "\"previous_response_id\":null");
    echo_field(o, root, "metadata", "{}");
    LIT(o, ",\"usage\":");
    if (out && u)
        usage_object(o, u);
    else
        LIT(o, "null");
    LIT(o, "}");
}

int responses_render(const struct resp_head *h, const struct resp_output *out, const struct oai_usage *u,
                     size_t max_bytes, char **json, size_t *len)
{
    struct json_out o;
    char msg_id[40] = "msg_", rs_id[40] = "rs_";
    int rc;

    rand_hex(msg_id + 4, 16);
    rand_hex(rs_id + 3, 16);
    json_out_init(&o, max_bytes);
    response_object(&o, h, out, u, msg_id, rs_id, false);
    *json = json_out_take(&o, len, &rc);
    return rc;
}

void resp_stream_init(struct resp_stream *s, bool reasoning)
{
    memset(s, 0, sizeof *s);
    snprintf(s->msg_id, sizeof s->msg_id, "msg_");
    rand_hex(s->msg_id + 4, 16);
    snprintf(s->rs_id, sizeof s->rs_id, "rs_");
    rand_hex(s->rs_id + 3, 16);
    s->defer = reasoning;
    s->msg_index = s->rs_index = -1;
}

void resp_stream_fini(struct resp_stream *s)
{
    buf_fini(&s->text);
    buf_fini(&s->reasoning);
    memset(s, 0, sizeof *s);
}

void resp_events_free(char **events, size_t *lens, int num)
{
    for (int i = 0; i < num; i++)
        free(events[i]);
    free(events);
    free(lens);
}

/* A growing list of rendered events. */
struct evlist {
    char **ev;
    size_t *lens;
    int n, cap;
    bool failed;
};

/* An event: {"type": type, then the body's fields (ev_begin … ev_end), then
 * "sequence_number"}, as OpenAI orders them. */
static void ev_begin(struct json_out *o, const char *type)
{
    json_out_init(o, 0);
    LIT(o, "{\"type\":");
    str0(o, type);
}

static void ev_end(struct evlist *l, struct resp_stream *s, struct json_out *o)
{
    char *json;
    size_t len;

    LIT(o, ",\"sequence_number\":");
    json_out_int(o, s->seq++);
    LIT(o, "}");
    json = json_out_take(o, &len, NULL);
    if (l->failed || !json) {
        free(json);
        l->failed = true;
        return;
    }
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 8;
        char **ev = realloc(l->ev, (size_t)cap * sizeof *ev);
        size_t *lens = ev ? realloc(l->lens, (size_t)cap * sizeof *lens) : NULL;

        if (ev)
            l->ev = ev;
        if (lens)
            l->lens = lens;
        if (!ev || !lens) {
            free(json);
            l->failed = true;
            return;
        }
        l->cap = cap;
    }
    l->ev[l->n] = json;
    l->lens[l->n++] = len;
}

static int finish_list(struct evlist *l, char ***events, size_t **lens, int *num)
{
    if (l->failed) {
        resp_events_free(l->ev, l->lens, l->n);
        *events = NULL;
        *lens = NULL;
        *num = 0;
        return -ENOMEM;
    }
    *events = l->ev;
    *lens = l->lens;
    *num = l->n;
    return 0;
}

/* ,"item_id","output_index","content_index" of the message's text part. */
static void output_index(struct json_out *o, int i)
{
    LIT(o, ",\"output_index\":");
    json_out_int(o, i);
}

/* item_id, output_index, content_index of the message's text, or of the reasoning's. */
static void part_ref(struct json_out *o, const struct resp_stream *s, bool reasoning)
{
    LIT(o, ",\"item_id\":");
    str0(o, reasoning ? s->rs_id : s->msg_id);
    output_index(o, reasoning ? s->rs_index : s->msg_index);
    LIT(o, ",\"content_index\":0");
}

/* The message item opens: output_item.added and content_part.added. */
static void open_message(struct evlist *l, struct resp_stream *s)
{
    struct json_out o;

    s->msg_index = s->next_index++;
    ev_begin(&o, "response.output_item.added");
    output_index(&o, s->msg_index);
    LIT(&o, ",\"item\":");
    message_item(&o, s->msg_id, "in_progress", NULL, 0, false);
    ev_end(l, s, &o);
    ev_begin(&o, "response.content_part.added");
    part_ref(&o, s, false);
    LIT(&o, ",\"part\":");
    text_part(&o, "", 0);
    ev_end(l, s, &o);
}

/* The reasoning item closes, once the message or the end comes: reasoning_text.done and
 * output_item.done with the whole text. */
static void close_reasoning(struct evlist *l, struct resp_stream *s)
{
    struct json_out o;

    if (s->rs_index < 0 || s->rs_closed)
        return;
    s->rs_closed = true;
    ev_begin(&o, "response.reasoning_text.done");
    part_ref(&o, s, true);
    LIT(&o, ",\"text\":");
    json_out_str(&o, s->reasoning.p ? s->reasoning.p : "", s->reasoning.len);
    ev_end(l, s, &o);
    ev_begin(&o, "response.output_item.done");
    output_index(&o, s->rs_index);
    LIT(&o, ",\"item\":");
    reasoning_item(&o, s->rs_id, "completed", s->reasoning.p, s->reasoning.len, true);
    ev_end(l, s, &o);
}

int resp_stream_open(struct resp_stream *s, const struct resp_head *h, char ***events, size_t **lens,
                     int *num)
{
    struct evlist l = { 0 };
    struct json_out o;

    ev_begin(&o, "response.created");
    LIT(&o, ",\"response\":");
    response_object(&o, h, NULL, NULL, s->msg_id, NULL, false);
    ev_end(&l, s, &o);
    ev_begin(&o, "response.in_progress");
    LIT(&o, ",\"response\":");
    response_object(&o, h, NULL, NULL, s->msg_id, NULL, false);
    ev_end(&l, s, &o);
    if (!s->defer)
        open_message(&l, s);
    return finish_list(&l, events, lens, num);
}

int resp_stream_reasoning(struct resp_stream *s, const char *text, size_t len, char ***events,
                          size_t **lens, int *num)
{
    struct evlist l = { 0 };
    struct json_out o;

    if (len && !s->rs_closed) {
        if (buf_put(&s->reasoning, text, len))
            return -ENOMEM;
        if (s->rs_index < 0) {
            s->rs_index = s->next_index++;
            ev_begin(&o, "response.output_item.added");
            output_index(&o, s->rs_index);
            LIT(&o, ",\"item\":");
            reasoning_item(&o, s->rs_id, "in_progress", NULL, 0, false);
            ev_end(&l, s, &o);
        }
        ev_begin(&o, "response.reasoning_text.delta");
        part_ref(&o, s, true);
        LIT(&o, ",\"delta\":");
        json_out_str(&o, text, len);
        ev_end(&l, s, &o);
    }
    return finish_list(&l, events, lens, num);
}

int resp_stream_delta(struct resp_stream *s, const char *text, size_t len, char ***events,
                      size_t **lens, int *num)
{
    struct evlist l = { 0 };
    struct json_out o;

    if (len) {
        if (buf_put(&s->text, text, len))
            return -ENOMEM;
        if (s->msg_index < 0) {
            close_reasoning(&l, s);
            open_message(&l, s);
        }
        ev_begin(&o, "response.output_text.delta");
        part_ref(&o, s, false);
        LIT(&o, ",\"delta\":");
        json_out_str(&o, text, len);
        LIT(&o, ",\"logprobs\":[]");
        ev_end(&l, s, &o);
    }
    return finish_list(&l, events, lens, num);
}

int resp_stream_close(struct resp_stream *s, const struct resp_head *h, const struct resp_output *out,
                      const struct oai_usage *u, char ***events, size_t **lens, int *num)
{
    struct evlist l = { 0 };
    struct json_out o;
    bool incomplete = out->finish_reason && !strcmp(out->finish_reason, "length");
    struct resp_output whole = *out;

    close_reasoning(&l, s);
    /* a deferred message opens only for text, or when there is nothing else to say */
    if (s->msg_index < 0 && (!out->num_calls || s->text.len))
        open_message(&l, s);
    if (s->msg_index >= 0) {
        ev_begin(&o, "response.output_text.done");
        part_ref(&o, s, false);
        LIT(&o, ",\"text\":");
        json_out_str(&o, s->text.p ? s->text.p : "", s->text.len);
        LIT(&o, ",\"logprobs\":[]");
        ev_end(&l, s, &o);
        ev_begin(&o, "response.content_part.done");
        part_ref(&o, s, false);
        LIT(&o, ",\"part\":");
        text_part(&o, s->text.p, s->text.len);
        ev_end(&l, s, &o);
        ev_begin(&o, "response.output_item.done");
        output_index(&o, s->msg_index);
        LIT(&o, ",\"item\":");
        message_item(&o, s->msg_id, incomplete ? "incomplete" : "completed", s->text.p, s->text.len, true);
        ev_end(&l, s, &o);
    }
    for (int i = 0; i < out->num_calls; i++) {
        const struct tool_call *t = &out->calls[i];
        char id[40] = "fc_";
        int at = s->next_index++;

        rand_hex(id + 3, 16);
        ev_begin(&o, "response.output_item.added");
        output_index(&o, at);
        LIT(&o, ",\"item\":");
        call_item(&o, t, id, "in_progress", false);
        ev_end(&l, s, &o);
        ev_begin(&o, "response.function_call_arguments.delta");
        LIT(&o, ",\"item_id\":");
        str0(&o, id);
        output_index(&o, at);
        LIT(&o, ",\"delta\":");
        str0(&o, t->arguments);
        ev_end(&l, s, &o);
        ev_begin(&o, "response.function_call_arguments.done");
        LIT(&o, ",\"item_id\":");
        str0(&o, id);
        output_index(&o, at);
        LIT(&o, ",\"arguments\":");
        str0(&o, t->arguments);
        ev_end(&l, s, &o);
        ev_begin(&o, "response.output_item.done");
        output_index(&o, at);
        LIT(&o, ",\"item\":");
        call_item(&o, t, id, "completed", true);
        ev_end(&l, s, &o);
    }
    /* The final object carries the items the stream sent: the message when it opened. */
    whole.text = s->text.p;
    whole.text_len = s->text.len;
    whole.reasoning = s->reasoning.p;
    whole.reasoning_len = s->reasoning.len;
    ev_begin(&o, incomplete ? "response.incomplete" : "response.completed");
    LIT(&o, ",\"response\":");
    response_object(&o, h, &whole, u, s->msg_id, s->rs_id, s->msg_index >= 0);
    ev_end(&l, s, &o);
    return finish_list(&l, events, lens, num);
}
