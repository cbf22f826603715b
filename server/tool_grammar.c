/* tool_grammar.c — tool calls as a grammar. One JSON Schema describes a call: anyOf, per
 * tool, a $ref to $defs/call<i> = {"name": {"const": <name>}, <arguments key>: <the tool's
 * parameters>}; the JSON-Schema front end turns it into GBNF, whose root becomes the rule
 * "tool-call", and the family's markers go around it. Each tool's $refs ("#/$defs/x") are
 * rewritten to point into the composed document (through object keys only, which is what
 * the front end's pointers walk), so recursive and shared definitions keep working. */
#include "server/tool_grammar.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/buf.h"
#include "engine/base/util.h"
#include "engine/grammar/grammar.h"

/* Values under these keys are data, not schemas: a "$ref" in them is left alone. */
static bool is_data(const char *key)
{
    return key && (!strcmp(key, "const") || !strcmp(key, "enum") || !strcmp(key, "default") ||
                   !strcmp(key, "examples"));
}

/* Rewrites every local "$ref" ("#…") under v to start with prefix. Returns 0 or -ENOMEM. */
static int rebase_refs(cJSON *v, const char *prefix)
{
    cJSON *c;

    cJSON_ArrayForEach(c, v) {
        if (is_data(c->string))
            continue;
        if (c->string && !strcmp(c->string, "$ref") && cJSON_IsString(c) && c->valuestring[0] == '#') {
            size_t n = strlen(prefix) + strlen(c->valuestring);
            char *s = malloc(n + 1);

            if (!s)
                return -ENOMEM;
            snprintf(s, n + 1, "%s%s", prefix, c->valuestring + 1);
            if (!cJSON_SetValuestring(c, s)) {
                free(s);
                return -ENOMEM;
            }
            free(s);
        } else if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && rebase_refs(c, prefix)) {
            return -ENOMEM;
        }
    }
    return 0;
}

/* The schema of one call of function fn, $defs/call<i> of the composed document. */
static cJSON *call_schema(const cJSON *fn, const char *args_key, int i)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
    cJSON *s = cJSON_CreateObject(), *props, *n, *args, *req;
    char prefix[96];

    /* A function without parameters takes an empty object, as OpenAI reads it. */
    args = params && !cJSON_IsNull(params) ? cJSON_Duplicate(params, true)
                                           : cJSON_Parse("{\"type\":\"object\",\"properties\":{},"
                                                         "\"additionalProperties\":false}");
    snprintf(prefix, sizeof prefix, "#/$defs/call%d/properties/%s", i, args_key);
    if (!s || !args || rebase_refs(args, prefix) ||
        !cJSON_AddStringToObject(s, "type", "object") ||
        !(props = cJSON_AddObjectToObject(s, "properties")) ||
        !(n = cJSON_AddObjectToObject(props, "name")) ||
        !cJSON_AddStringToObject(n, "const", name->valuestring) ||
        !cJSON_AddItemToObject(props, args_key, args)) {
        cJSON_Delete(args);
        cJSON_Delete(s);
        return NULL;
    }
    if (!(req = cJSON_AddArrayToObject(s, "required")) ||
        !cJSON_AddItemToArray(req, cJSON_CreateString("name")) ||
        !cJSON_AddItemToArray(req, cJSON_CreateString(args_key)) ||
        !cJSON_AddFalseToObject(s, "additionalProperties")) {
        cJSON_Delete(s);
        return NULL;
    }
    return s;
}

/* Which tool's parameters the front end refuses, for a message that names it. */
static void blame(const cJSON *tools, const char *only_name, char *err)
{
    const cJSON *t;
    int i = 0;

    cJSON_ArrayForEach(t, tools) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
        char sub[ERR_LEN] = "", *text, *gbnf = NULL;

        if (params && !(only_name && strcmp(name->valuestring, only_name)) &&
            (text = cJSON_PrintUnformatted(params))) {
            int rc = grammar_to_gbnf(GRAMMAR_JSON_SCHEMA, text, strlen(text), &gbnf, sub);

            free(text);
            free(gbnf);
            if (rc == -EINVAL) {
                errf(err, "tools[%d].function.parameters: %s", i, sub);
                return;
            }
        }
        i++;
    }
}

/* printf onto o; *oom set when memory runs out (the pieces are short). */
static void putf(struct buf *o, bool *oom, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void putf(struct buf *o, bool *oom, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp || buf_put(o, tmp, (size_t)n))
        *oom = true;
}

/* Rule `name`: any text (valid UTF-8) in which marker never occurs; marker's first character
 * must occur in it only there ('<' in "<tool_call>", '[' in "[TOOL_CALLS]"). A run of that
 * character (the marker may be starting) is followed by partial markers each with another
 * run, then by a character that breaks the marker; or the text ends inside one. Characters
 * are written \xNN, so none needs escaping in a class. */
static void no_marker_rule(struct buf *o, bool *oom, const char *name, const char *marker)
{
    size_t n = strlen(marker);
    unsigned char c = (unsigned char)marker[0];

    putf(o, oom, "%s ::= ( [^\\x%02X] | %s-run %s-brk )* ( %s-run %s-pfx? )?\n", name, c, name, name, name, name);
    putf(o, oom, "%s-run ::= \"\\x%02X\"+ ( %s-pfx \"\\x%02X\"+ )*\n", name, c, name, c);
    /* a partial marker after its first character: marker[1..j], 1 <= j <= n - 2 */
    putf(o, oom, "%s-pfx ::=", name);
    for (size_t j = 1; j + 1 < n; j++) {
        putf(o, oom, "%s \"", j > 1 ? " |" : "");
        for (size_t i = 1; i <= j; i++)
            putf(o, oom, "\\x%02X", (unsigned char)marker[i]);
        putf(o, oom, "\"");
    }
    /* marker[1..j] (0 <= j <= n - 2), then neither marker[j + 1] nor the first character */
    putf(o, oom, "\n%s-brk ::=", name);
    for (size_t j = 0; j + 1 < n; j++) {
        putf(o, oom, "%s \"", j ? " |" : "");
        for (size_t i = 1; i <= j; i++)
            putf(o, oom, "\\x%02X", (unsigned char)marker[i]);
        putf(o, oom, "\" [^\\x%02X\\x%02X]", (unsigned char)marker[j + 1], c);
    }
    putf(o, oom, "\n");
}

/* The family's markers around "tool-call" (rule "calls"), and with text allowed (tool_choice
 * auto with strict tools) the root: text that cannot start a call, then calls or nothing. */
static int root_rules(struct buf *o, enum tool_parser_kind k, bool parallel, bool text)
{
    bool oom = false;

    switch (k) {
    case TOOL_PARSER_HERMES:
        putf(o, &oom, "%s", parallel ? "calls ::= hermes-call ( \"\\n\" hermes-call )*\n"
                                         "hermes-call ::= \"<tool_call>\\n\" tool-call \"\\n</tool_call>\"\n"
                                       : "calls ::= \"<tool_call>\\n\" tool-call \"\\n</tool_call>\"\n");
        if (text)   /* the parser reads calls from the first <tool_call> on */
            no_marker_rule(o, &oom, "content", "<tool_call>");
        putf(o, &oom, "%s", text ? "root ::= content calls?\n" : "root ::= calls\n");
        break;
    case TOOL_PARSER_LLAMA3_JSON:
        putf(o, &oom, "%s", parallel ? "calls ::= tool-call ( \"; \" tool-call )*\n" : "calls ::= tool-call\n");
        /* the parser takes the whole output as calls when its first non-blank is '{' (or the
         * <|python_tag|> text): text must start with something else */
        putf(o, &oom, "%s", text ? "root ::= calls | ( [^{<\\x20\\t\\r\\n] .* )?\n" : "root ::= calls\n");
        break;
    case TOOL_PARSER_MISTRAL:
        putf(o, &oom, "%s", parallel ? "calls ::= \"[TOOL_CALLS][\" tool-call ( \",\" ws tool-call )* \"]\"\n"
                                     : "calls ::= \"[TOOL_CALLS][\" tool-call \"]\"\n");
        if (text)
            no_marker_rule(o, &oom, "content", "[TOOL_CALLS]");
        putf(o, &oom, "%s", text ? "root ::= content calls?\n" : "root ::= calls\n");
        break;
    default:
        return -EINVAL;
    }
    return oom ? -ENOMEM : 0;
}

int tool_grammar_build(enum tool_parser_kind k, const cJSON *tools, const char *only_name,
                       bool parallel, bool text, char **gbnf, char *err)
{
    const char *args_key = k == TOOL_PARSER_LLAMA3_JSON ? "parameters" : "arguments";
    cJSON *doc = cJSON_CreateObject(), *any, *defs;
    struct buf out = BUF_INIT;
    const cJSON *t;
    char *json = NULL, *body = NULL, *at;
    int rc = -ENOMEM, n = 0;

    *gbnf = NULL;
    if ((rc = root_rules(&out, k, parallel, text))) {
        if (rc == -EINVAL)
            errf(err, "tool calls: no tool-call syntax (--tool-call-parser) to hold the output to");
        goto out;
    }
    rc = -ENOMEM;
    if (!doc || !(any = cJSON_AddArrayToObject(doc, "anyOf")) || !(defs = cJSON_AddObjectToObject(doc, "$defs")))
        goto out;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        cJSON *c, *ref;
        char key[32], path[48];

        if (!cJSON_IsString(name) || (only_name && strcmp(name->valuestring, only_name)))
            continue;
        snprintf(key, sizeof key, "call%d", n);
        snprintf(path, sizeof path, "#/$defs/%s", key);
        if (!(c = call_schema(fn, args_key, n)) || !cJSON_AddItemToObject(defs, key, c)) {
            cJSON_Delete(c);
            goto out;
        }
        if (!(ref = cJSON_CreateObject()) || !cJSON_AddStringToObject(ref, "$ref", path) ||
            !cJSON_AddItemToArray(any, ref)) {
            cJSON_Delete(ref);
            goto out;
        }
        n++;
    }
    if (!n) {
        errf(err, "tool calls: no function named '%.64s' among the tools", only_name ? only_name : "");
        rc = -EINVAL;
        goto out;
    }
    if (!(json = cJSON_PrintUnformatted(doc)))
        goto out;
    if ((rc = grammar_to_gbnf(GRAMMAR_JSON_SCHEMA, json, strlen(json), &body, err))) {
        if (rc == -EINVAL)
            blame(tools, only_name, err);
        goto out;
    }
    /* The front end's root ("root ::= sN", a line of its own) becomes the call's rule. */
    at = !strncmp(body, "root ::= ", 9) ? body : strstr(body, "\nroot ::= ");
    if (!at) {
        errf(err, "tool calls: the schema's grammar has no root rule");
        rc = -EINVAL;
        goto out;
    }
    at += *at == '\n';
    rc = -ENOMEM;
    if (buf_put(&out, body, (size_t)(at - body)) || buf_put(&out, "tool-call", 9) ||
        buf_put(&out, at + 4, strlen(at + 4)))
        goto out;
    if (!(*gbnf = buf_take(&out, NULL)))
        goto out;
    rc = 0;
out:
    if (rc == -ENOMEM)
        errf(err, "tool calls: out of memory");
    buf_fini(&out);
    cJSON_Delete(doc);
    free(json);
    free(body);
    return rc;
}
