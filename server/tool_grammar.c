/* tool_grammar.c — tool calls as a grammar. One JSON Schema describes a call: anyOf, per
 * tool, a $ref to $defs/call<i> = {"name": {"const": <name>}, <arguments key>: <the tool's
 * parameters>}; the JSON-Schema front end turns it into GBNF, whose root becomes the rule
 * "tool-call", and the family's markers go around it. Each tool's $refs ("#/$defs/x") are
 * rewritten to point into the composed document (through object keys only, which is what
 * the front end's pointers walk), so recursive and shared definitions keep working. */
#include "server/tool_grammar.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* The family's markers around "tool-call". */
static const char *root_rule(enum tool_parser_kind k, bool parallel)
{
    switch (k) {
    case TOOL_PARSER_HERMES:
        return parallel ? "root ::= hermes-call ( \"\\n\" hermes-call )*\n"
                          "hermes-call ::= \"<tool_call>\\n\" tool-call \"\\n</tool_call>\"\n"
                        : "root ::= \"<tool_call>\\n\" tool-call \"\\n</tool_call>\"\n";
    case TOOL_PARSER_LLAMA3_JSON:
        return parallel ? "root ::= tool-call ( \"; \" tool-call )*\n" : "root ::= tool-call\n";
    case TOOL_PARSER_MISTRAL:
        return parallel ? "root ::= \"[TOOL_CALLS][\" tool-call ( \",\" ws tool-call )* \"]\"\n"
                        : "root ::= \"[TOOL_CALLS][\" tool-call \"]\"\n";
    default:
        return NULL;
    }
}

int tool_grammar_build(enum tool_parser_kind k, const cJSON *tools, const char *only_name,
                       bool parallel, char **gbnf, char *err)
{
    const char *args_key = k == TOOL_PARSER_LLAMA3_JSON ? "parameters" : "arguments";
    const char *root = root_rule(k, parallel);
    cJSON *doc = cJSON_CreateObject(), *any, *defs;
    const cJSON *t;
    char *text = NULL, *body = NULL, *at, *out;
    int rc = -ENOMEM, n = 0;
    size_t len;

    *gbnf = NULL;
    if (!root) {
        cJSON_Delete(doc);
        errf(err, "tool calls: no tool-call syntax (--tool-call-parser) to hold the output to");
        return -EINVAL;
    }
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
    if (!(text = cJSON_PrintUnformatted(doc)))
        goto out;
    if ((rc = grammar_to_gbnf(GRAMMAR_JSON_SCHEMA, text, strlen(text), &body, err))) {
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
    len = strlen(root) + strlen(body) + 16;
    if (!(out = malloc(len)))
        goto out_nomem;
    snprintf(out, len, "%s%.*stool-call%s", root, (int)(at - body), body, at + 4);
    *gbnf = out;
    rc = 0;
    goto out;
out_nomem:
    rc = -ENOMEM;
out:
    if (rc == -ENOMEM)
        errf(err, "tool calls: out of memory");
    cJSON_Delete(doc);
    free(text);
    free(body);
    return rc;
}
