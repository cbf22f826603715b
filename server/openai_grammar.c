/* openai_grammar.c — the request fields that constrain the output to a grammar, read into
 * the request (the compiling happens in openai.c, against the served tokenizer):
 * OpenAI's response_format ({"type": "text" | "json_object" | "json_schema",
 * "json_schema": {"name", "schema", "strict", "description"}}), vLLM's structured_outputs
 * ({"json" | "regex" | "choice" | "grammar" | "json_object"}) and its older guided_json,
 * guided_regex, guided_choice, guided_grammar. At most one of them; a sub-field we do not
 * honour (whitespace patterns, structural tags, backends) is refused by name. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/openai_parse.h"

static const cJSON *given(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

    return v && !cJSON_IsNull(v) ? v : NULL;
}

static int bad(struct oai_error *e, const char *param, const char *why)
{
    return openai_error(e, 400, "invalid_value", param, "Invalid '%s': %s.", param, why);
}

/* Keeps v's source: a string as it is, anything else as compact JSON text. */
static int keep(struct oai_request *r, const cJSON *v, enum grammar_kind kind, const char *param,
                struct oai_error *e)
{
    char *text = cJSON_IsString(v) ? NULL : cJSON_PrintUnformatted(v);
    const char *src = cJSON_IsString(v) ? v->valuestring : text;

    if (r->has_grammar) {
        free(text);
        return openai_error(e, 400, "invalid_value", param,
                            "Invalid '%s': the output is already constrained by '%s'; give only one of "
                            "response_format, structured_outputs and guided_*.", param, r->grammar_param);
    }
    if (!src || !(r->grammar_src = arena_strdup(&r->arena, src))) {
        free(text);
        return openai_error(e, 500, "internal_error", NULL, "out of memory");
    }
    free(text);
    r->has_grammar = true;
    r->grammar_kind = kind;
    r->grammar_len = strlen(r->grammar_src);
    r->grammar_param = param;
    return 0;
}

static int check_choice(const cJSON *v, const char *param, struct oai_error *e)
{
    const cJSON *it;

    if (!cJSON_IsArray(v) || !v->child)
        return bad(e, param, "expected a non-empty array of strings");
    cJSON_ArrayForEach(it, v)
        if (!cJSON_IsString(it))
            return bad(e, param, "expected a non-empty array of strings");
    return 0;
}

static int response_format(struct oai_request *r, const cJSON *v, struct oai_error *e)
{
    const cJSON *type = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "type") : NULL;
    const cJSON *js, *schema, *k;

    if (!cJSON_IsString(type))
        return bad(e, "response_format", "expected an object with a string 'type'");
    if (!strcmp(type->valuestring, "text"))
        return 0;
    if (!strcmp(type->valuestring, "json_object"))
        return keep(r, type, GRAMMAR_JSON_OBJECT, "response_format", e);
    if (strcmp(type->valuestring, "json_schema"))
        return openai_error(e, 400, "invalid_value", "response_format.type",
                            "Invalid 'response_format.type': '%.64s' is not one of 'text', 'json_object', "
                            "'json_schema'.", type->valuestring);
    js = cJSON_GetObjectItemCaseSensitive(v, "json_schema");
    if (!cJSON_IsObject(js))
        return bad(e, "response_format.json_schema", "expected an object with 'name' and 'schema'");
    cJSON_ArrayForEach(k, js)
        if (strcmp(k->string, "name") && strcmp(k->string, "schema") && strcmp(k->string, "strict") &&
            strcmp(k->string, "description"))
            return openai_error(e, 400, "unsupported_parameter", "response_format.json_schema",
                                "Unsupported parameter: 'response_format.json_schema.%.64s' is not supported "
                                "by osprey.", k->string);
    if ((k = given(js, "strict")) && !cJSON_IsBool(k))
        return bad(e, "response_format.json_schema.strict", "expected a boolean");
    if ((k = given(js, "name")) && !cJSON_IsString(k))
        return bad(e, "response_format.json_schema.name", "expected a string");
    schema = given(js, "schema");
    if (!schema)
        return bad(e, "response_format.json_schema.schema", "a JSON Schema object is required");
    if (!cJSON_IsObject(schema) && !cJSON_IsBool(schema))
        return bad(e, "response_format.json_schema.schema", "expected a JSON Schema object");
    return keep(r, schema, GRAMMAR_JSON_SCHEMA, "response_format.json_schema.schema", e);
}

static int structured_outputs(struct oai_request *r, const cJSON *v, struct oai_error *e)
{
    const cJSON *k;
    int rc;

    if (!cJSON_IsObject(v))
        return bad(e, "structured_outputs", "expected an object");
    cJSON_ArrayForEach(k, v) {
        static const struct { const char *key, *param; } P[] = {
            { "json", "structured_outputs.json" }, { "regex", "structured_outputs.regex" },
            { "choice", "structured_outputs.choice" }, { "grammar", "structured_outputs.grammar" },
            { "json_object", "structured_outputs.json_object" },
        };
        size_t i = 0;

        if (cJSON_IsNull(k) || (cJSON_IsFalse(k) && strcmp(k->string, "json_object")))
            continue;                   /* vLLM's defaults: off */
        while (i < sizeof P / sizeof P[0] && strcmp(P[i].key, k->string))
            i++;
        if (i == sizeof P / sizeof P[0])
            return openai_error(e, 400, "unsupported_parameter", "structured_outputs",
                                "Unsupported parameter: 'structured_outputs.%.64s' is not supported by osprey.",
                                k->string);
        switch (i) {
        case 0:
            if (!cJSON_IsObject(k) && !cJSON_IsString(k))
                return bad(e, P[i].param, "expected a JSON Schema (an object or its text)");
            rc = keep(r, k, GRAMMAR_JSON_SCHEMA, P[i].param, e);
            break;
        case 1:
        case 3:
            if (!cJSON_IsString(k))
                return bad(e, P[i].param, "expected a string");
            rc = keep(r, k, i == 1 ? GRAMMAR_REGEX : GRAMMAR_GBNF, P[i].param, e);
            break;
        case 2:
            if ((rc = check_choice(k, P[i].param, e)) == 0)
                rc = keep(r, k, GRAMMAR_CHOICE, P[i].param, e);
            break;
        default:
            if (!cJSON_IsBool(k))
                return bad(e, P[i].param, "expected a boolean");
            rc = cJSON_IsTrue(k) ? keep(r, k, GRAMMAR_JSON_OBJECT, P[i].param, e) : 0;
        }
        if (rc)
            return rc;
    }
    return 0;
}

int openai_parse_grammar(struct oai_request *r, struct oai_error *e)
{
    static const char *const REFUSED[] = { "guided_whitespace_pattern", "guided_decoding_backend" };
    const cJSON *v;
    int rc;

    for (size_t i = 0; i < sizeof REFUSED / sizeof REFUSED[0]; i++)
        if (given(r->root, REFUSED[i]))
            return openai_error(e, 400, "unsupported_parameter", REFUSED[i],
                                "Unsupported parameter: '%s' is not supported by osprey.", REFUSED[i]);
    if ((v = given(r->root, "response_format")) && (rc = response_format(r, v, e)))
        return rc;
    if ((v = given(r->root, "structured_outputs")) && (rc = structured_outputs(r, v, e)))
        return rc;
    if ((v = given(r->root, "guided_json"))) {
        if (!cJSON_IsObject(v) && !cJSON_IsString(v))
            return bad(e, "guided_json", "expected a JSON Schema (an object or its text)");
        if ((rc = keep(r, v, GRAMMAR_JSON_SCHEMA, "guided_json", e)))
            return rc;
    }
    if ((v = given(r->root, "guided_regex"))) {
        if (!cJSON_IsString(v))
            return bad(e, "guided_regex", "expected a string");
        if ((rc = keep(r, v, GRAMMAR_REGEX, "guided_regex", e)))
            return rc;
    }
    if ((v = given(r->root, "guided_choice"))) {
        if ((rc = check_choice(v, "guided_choice", e)) || (rc = keep(r, v, GRAMMAR_CHOICE, "guided_choice", e)))
            return rc;
    }
    if ((v = given(r->root, "guided_grammar"))) {
        if (!cJSON_IsString(v))
            return bad(e, "guided_grammar", "expected a string");
        if ((rc = keep(r, v, GRAMMAR_GBNF, "guided_grammar", e)))
            return rc;
    }
    return 0;
}
