/* json_schema.c — a JSON Schema as GBNF text. Supported: type (one or a list), object with
 * properties (in their order; required ones always, optional ones may be left out),
 * required, additionalProperties (no extra properties are generated; a schema without
 * properties but with additionalProperties: S gives a map of S); string with enum, const,
 * pattern, minLength, maxLength, format date-time|date|time|uuid|email (beside a pattern,
 * any format: the pattern rules, as in zod's output); integer with
 * minimum, maximum, exclusiveMinimum, exclusiveMaximum (exact digit ranges); number, with
 * integer minimum and maximum;
 * boolean; null; array with items, minItems, maxItems, or prefixItems (tuples: exactly their
 * items); anyOf, oneOf (as anyOf: the branches
 * are not checked for overlap), allOf of one schema, $ref into the document ($defs,
 * definitions, any JSON pointer, recursion included). Annotations (title, description,
 * examples, default, …) are ignored; any other keyword is refused with its name and path.
 * Whitespace between tokens is bounded (json-common's ws). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grammar/grammar_internal.h"
#include "engine/base/util.h"

#define JS_MAX_RULES 20000
#define JS_INT_MAX 999999999999999999LL   /* 18 digits: json-int's bound */

struct js_memo {
    const cJSON *schema;
    int id;
};

struct js {
    cJSON *doc;
    struct gr_str out;
    int next;                 /* rules named s0, s1, … */
    struct js_memo *memo;     /* $ref targets already named */
    int num_memo, cap_memo;
    char *err;
    int rc;
};

static int js_fail(struct js *j, const char *path, const char *fmt, const char *arg)
{
    if (!j->rc) {
        char msg[ERR_LEN / 2];
        snprintf(msg, sizeof msg, fmt, arg);
        errf(j->err, "json_schema: %s (at %s)", msg, path[0] ? path : "/");
        j->rc = -EINVAL;
    }
    return j->rc;
}

static const char *const KNOWN[] = {
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "enum", "const", "pattern", "minLength", "maxLength", "format", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "anyOf", "oneOf", "allOf", "$ref", "$defs",
    "definitions", "title", "description", "$schema", "$id", "default", "examples", "$comment",
    "deprecated", "readOnly", "writeOnly", "uniqueItems", "strict", "name", "prefixItems",
    "discriminator",   /* OpenAPI's hint on a oneOf (Pydantic writes it): validity is the oneOf's */
};

static int check_keywords(struct js *j, const cJSON *s, const char *path)
{
    const cJSON *k;

    cJSON_ArrayForEach(k, s) {
        bool ok = false;
        for (size_t i = 0; i < ARRAY_LEN(KNOWN) && !ok; i++)
            ok = !strcmp(k->string, KNOWN[i]);
        if (!ok)
            return js_fail(j, path, "keyword '%s' is not supported", k->string);
        if (!strcmp(k->string, "uniqueItems") && cJSON_IsTrue(k))
            return js_fail(j, path, "keyword '%s' is not supported (only false)", k->string);
    }
    return 0;
}

static int schema_rule(struct js *j, const cJSON *s, const char *path);

/* A JSON value as a GBNF literal of its compact text. */
static int put_json_literal(struct js *j, struct gr_str *o, const cJSON *v, const char *path)
{
    char *t = cJSON_PrintUnformatted(v);

    if (!t)
        return js_fail(j, path, "%s", "out of memory");
    gr__put_literal(o, t, strlen(t));
    free(t);
    return 0;
}

static bool get_count(const cJSON *s, const char *key, long *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(s, key);

    if (!x)
        return false;
    *v = cJSON_IsNumber(x) && x->valuedouble >= 0 && x->valuedouble <= GR_MAX_REPEAT &&
         x->valuedouble == (double)(long)x->valuedouble ? (long)x->valuedouble : -1;
    return true;
}

/* ---- integers in a range: digit patterns ---- */

static void digits_same_len(struct gr_str *o, const char *lo, const char *hi, int n)
{
    bool lo0 = true, hi9 = true;

    if (n == 0)
        return;
    for (int i = 1; i < n; i++) {
        lo0 &= lo[i] == '0';
        hi9 &= hi[i] == '9';
    }
    if (lo[0] == hi[0]) {
        gr__printf(o, "\"%c\" ", lo[0]);
        if (n > 1) {
            gr__puts(o, "(");
            digits_same_len(o, lo + 1, hi + 1, n - 1);
            gr__puts(o, ")");
        }
        return;
    }
    if (lo0 && hi9) {
        gr__printf(o, "[%c-%c]", lo[0], hi[0]);
        if (n > 1)
            gr__printf(o, " [0-9]{%d}", n - 1);
        return;
    }
    {
        char nines[20], zeros[20];
        int a = lo[0] + 1, b = hi[0] - 1;

        memset(nines, '9', sizeof nines);
        memset(zeros, '0', sizeof zeros);
        gr__printf(o, "(\"%c\" (", lo[0]);
        digits_same_len(o, lo + 1, nines, n - 1);
        gr__puts(o, ")");
        if (a <= b) {
            gr__printf(o, " | [%c-%c]", a, b);
            if (n > 1)
                gr__printf(o, " [0-9]{%d}", n - 1);
        }
        gr__printf(o, " | \"%c\" (", hi[0]);
        digits_same_len(o, zeros, hi + 1, n - 1);
        gr__puts(o, "))");
    }
}

/* 0 <= a <= b: alternatives of same-length digit ranges, each in parentheses. */
static void digits_range(struct gr_str *o, long long a, long long b, bool *first)
{
    long long p = 1;

    for (int d = 1; d <= 18 && a <= b; d++, p *= 10) {
        long long lo = d == 1 ? 0 : p, hi = p * 10 - 1;
        char ls[24], hs[24];

        if (b < lo || a > hi)
            continue;
        snprintf(ls, sizeof ls, "%lld", a > lo ? a : lo);
        snprintf(hs, sizeof hs, "%lld", b < hi ? b : hi);
        gr__puts(o, *first ? "(" : " | (");
        digits_same_len(o, ls, hs, d);
        gr__puts(o, ")");
        *first = false;
    }
}

static int int_bound(struct js *j, const cJSON *s, const char *key, int adjust, long long *v,
                     const char *path)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(s, key);

    if (!x)
        return 0;
    /* the range first: converting a double beyond long long's range is undefined */
    if (!cJSON_IsNumber(x) || !(x->valuedouble <= (double)JS_INT_MAX &&
                                x->valuedouble >= -(double)JS_INT_MAX) ||
        x->valuedouble != (double)(long long)x->valuedouble)
        return js_fail(j, path, "'%s' must be an integer of at most 18 digits", key);
    *v = (long long)x->valuedouble + adjust;
    return 1;
}

static int integer_body(struct js *j, struct gr_str *o, const cJSON *s, const char *path)
{
    long long lo = -JS_INT_MAX, hi = JS_INT_MAX, v;
    bool any = false, first = true;
    int rc;

    if ((rc = int_bound(j, s, "minimum", 0, &v, path)) < 0)
        return rc;
    if (rc && (any = true) && v > lo)
        lo = v;
    if ((rc = int_bound(j, s, "exclusiveMinimum", 1, &v, path)) < 0)
        return rc;
    if (rc && (any = true) && v > lo)
        lo = v;
    if ((rc = int_bound(j, s, "maximum", 0, &v, path)) < 0)
        return rc;
    if (rc && (any = true) && v < hi)
        hi = v;
    if ((rc = int_bound(j, s, "exclusiveMaximum", -1, &v, path)) < 0)
        return rc;
    if (rc && (any = true) && v < hi)
        hi = v;
    if (!any) {
        gr__puts(o, "json-int");
        return 0;
    }
    if (lo > hi)
        return js_fail(j, path, "%s", "no integer lies between minimum and maximum");
    gr__puts(o, "(");
    if (lo < 0) {
        gr__puts(o, "\"-\" (");
        digits_range(o, hi < -1 ? -hi : 1, -lo, &first);
        gr__puts(o, ")");
        first = false;
    }
    if (hi >= 0)
        digits_range(o, lo > 0 ? lo : 0, hi, &first);
    gr__puts(o, ")");
    return 0;
}

/* A number in [lo, hi] (integer bounds, inclusive; has_lo/has_hi false: up to 18 digits),
 * written without an exponent: an integer part in a digit range and any fraction, or the
 * bound itself with a zero fraction. Negative numbers are the same over their magnitude. */
static void magnitude(struct gr_str *o, long long p, long long q, bool bounded)
{
    bool first = true;

    /* |x| in [p, q]: integer part in [p, q - 1] with any fraction, or q with a zero one */
    gr__puts(o, "(");
    if (!bounded || p <= q - 1) {
        gr__puts(o, "(");
        digits_range(o, p, bounded ? q - 1 : JS_INT_MAX, &first);
        gr__puts(o, ") ( \".\" [0-9]{1,16} )?");
    }
    if (bounded)
        gr__printf(o, "%s\"%lld\" ( \".\" \"0\"{1,16} )?", !bounded || p <= q - 1 ? " | " : "", q);
    gr__puts(o, ")");
}

static int number_body(struct js *j, struct gr_str *o, const cJSON *s, const char *path)
{
    long long lo = -JS_INT_MAX, hi = JS_INT_MAX;
    int has_lo, has_hi;

    if (cJSON_GetObjectItemCaseSensitive(s, "exclusiveMinimum") ||
        cJSON_GetObjectItemCaseSensitive(s, "exclusiveMaximum"))
        return js_fail(j, path, "%s", "exclusiveMinimum/exclusiveMaximum on a number is not supported "
                       "(minimum/maximum are, and both on an integer)");
    if ((has_lo = int_bound(j, s, "minimum", 0, &lo, path)) < 0 ||
        (has_hi = int_bound(j, s, "maximum", 0, &hi, path)) < 0)
        return j->rc;
    if (!has_lo && !has_hi) {
        gr__puts(o, "json-number");
        return 0;
    }
    if (lo > hi)
        return js_fail(j, path, "%s", "no number lies between minimum and maximum");
    gr__puts(o, "(");
    if (hi >= 0)      /* x in [max(lo, 0), hi] */
        magnitude(o, lo > 0 ? lo : 0, hi, has_hi);
    if (lo < 0) {     /* x in [lo, min(hi, 0)]: |x| in [max(-hi, 0), -lo] */
        gr__puts(o, hi >= 0 ? " | \"-\" " : "\"-\" ");
        magnitude(o, hi < 0 ? -hi : 0, -lo, has_lo);
    }
    gr__puts(o, ")");
    return 0;
}

/* ---- strings ---- */

static int string_body(struct js *j, struct gr_str *o, const cJSON *s, const char *path)
{
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(s, "pattern");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(s, "format");
    long min = 0, max = -1;
    bool has_min = get_count(s, "minLength", &min), has_max = get_count(s, "maxLength", &max);

    if ((has_min && min < 0) || (has_max && max < 0))
        return js_fail(j, path, "%s", "minLength and maxLength must be integers from 0 to 4096");
    if (!has_max)
        max = -1;
    if (has_max && max < min)
        return js_fail(j, path, "%s", "maxLength is below minLength");
    if ((pat || fmt) && (has_min || has_max))
        return js_fail(j, path, "%s", "minLength/maxLength together with pattern or format is not supported");
    if (fmt && !cJSON_IsString(fmt))
        return js_fail(j, path, "%s", "format must be a string");
    gr__puts(o, "\"\\\"\" ");
    /* With both, the pattern is what must hold: format only annotates unless a validator
     * opts in (JSON Schema 2019-09 on; optional in draft 7), and generators that write
     * both (zod: format "uuid" with its own stricter pattern) mean the pattern. */
    if (pat) {
        char err[ERR_LEN];
        if (!cJSON_IsString(pat))
            return js_fail(j, path, "%s", "pattern must be a string");
        if (gr__regex_expr(o, pat->valuestring, strlen(pat->valuestring), true, err))
            return js_fail(j, path, "pattern: %.100s", err);
    } else if (fmt) {
        static const struct { const char *name, *gbnf; } F[] = {
            { "date", "js-date" }, { "time", "js-time" }, { "date-time", "js-date \"T\" js-time" },
            { "uuid", "js-hex{8} \"-\" js-hex{4} \"-\" js-hex{4} \"-\" js-hex{4} \"-\" js-hex{12}" },
            { "email", "[a-zA-Z0-9._%+-]{1,64} \"@\" [a-zA-Z0-9-]{1,63} ( \".\" [a-zA-Z0-9-]{1,63} ){1,4}" },
        };
        size_t i = 0;
        while (i < ARRAY_LEN(F) && strcmp(F[i].name, fmt->valuestring))
            i++;
        if (i == ARRAY_LEN(F))
            return js_fail(j, path, "format '%s' is not supported", fmt->valuestring);
        gr__puts(o, F[i].gbnf);
    } else if (max < 0) {
        gr__printf(o, "json-char{%ld,}", min);
    } else {
        gr__printf(o, "json-char{%ld,%ld}", min, max);
    }
    gr__puts(o, " \"\\\"\"");
    return 0;
}

/* ---- arrays and objects ---- */

/* A tuple (prefixItems): exactly its items, in order, and nothing after them — valid
 * whatever "items" says of the rest — so minItems..maxItems must allow that count. */
static int tuple_body(struct js *j, struct gr_str *o, const cJSON *s, long min, long max,
                      const char *path)
{
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(s, "prefixItems"), *it;
    char sub[256];
    int n = 0;

    if (!cJSON_IsArray(pre) || !pre->child)
        return js_fail(j, path, "%s", "prefixItems must be a non-empty array of schemas");
    n = cJSON_GetArraySize(pre);
    if (n < min || (max >= 0 && n > max))
        return js_fail(j, path, "%s", "minItems/maxItems that exclude the prefixItems count are not supported");
    gr__puts(o, "\"[\" ws");
    n = 0;
    cJSON_ArrayForEach(it, pre) {
        int id;
        snprintf(sub, sizeof sub, "%s/prefixItems/%d", path, n);
        if ((id = schema_rule(j, it, sub)) < 0)
            return id;
        gr__printf(o, "%s s%d ws", n++ ? " \",\" ws" : "", id);
    }
    gr__puts(o, " \"]\"");
    return 0;
}

static int array_body(struct js *j, struct gr_str *o, const cJSON *s, const char *path)
{
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
    long min = 0, max = -1;
    bool has_min = get_count(s, "minItems", &min), has_max = get_count(s, "maxItems", &max);
    char sub[256];
    int item;

    if ((has_min && min < 0) || (has_max && max < 0))
        return js_fail(j, path, "%s", "minItems and maxItems must be integers from 0 to 4096");
    if (!has_max)
        max = -1;
    if (has_max && max < min)
        return js_fail(j, path, "%s", "maxItems is below minItems");
    if (items && cJSON_IsArray(items))
        return js_fail(j, path, "%s", "items as an array (draft 4 tuples) is not supported; prefixItems is");
    if (cJSON_GetObjectItemCaseSensitive(s, "prefixItems"))
        return tuple_body(j, o, s, min, max, path);
    snprintf(sub, sizeof sub, "%s/items", path);
    if (items) {
        if ((item = schema_rule(j, items, sub)) < 0)
            return item;
    } else {
        item = -1;
    }
    if (max == 0) {
        gr__puts(o, "\"[\" ws \"]\"");
        return 0;
    }
    {
        char it[32];
        snprintf(it, sizeof it, item < 0 ? "json-value" : "s%d", item);
        gr__printf(o, "\"[\" ws %s( %s ws ( \",\" ws %s ws )", min == 0 ? "(" : "", it, it);
        if (max < 0)
            gr__printf(o, "{%ld,}", min > 0 ? min - 1 : 0);
        else
            gr__printf(o, "{%ld,%ld}", min > 0 ? min - 1 : 0, max - 1);
        gr__printf(o, " )%s \"]\"", min == 0 ? ")?" : "");
    }
    return 0;
}

static bool in_required(const cJSON *req, const char *name)
{
    const cJSON *r;

    cJSON_ArrayForEach(r, req)
        if (cJSON_IsString(r) && !strcmp(r->valuestring, name))
            return true;
    return false;
}

static int object_body(struct js *j, struct gr_str *o, const cJSON *s, const char *path)
{
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    const cJSON *p, *r;
    const cJSON *all[2];
    int n = 0, kv[512], first_required = -1, t0;
    bool optional[512];
    char sub[256];

    if (props && !cJSON_IsObject(props))
        return js_fail(j, path, "%s", "properties must be an object");
    if (req && !cJSON_IsArray(req))
        return js_fail(j, path, "%s", "required must be an array of strings");
    cJSON_ArrayForEach(r, req) {
        if (!cJSON_IsString(r))
            return js_fail(j, path, "%s", "required must be an array of strings");
        if (!cJSON_GetObjectItemCaseSensitive(props, r->valuestring) && add && cJSON_IsFalse(add))
            return js_fail(j, path, "required property '%s' is not in properties and "
                           "additionalProperties is false", r->valuestring);
    }
    if (!props && !req) {
        if (add && cJSON_IsObject(add) && add->child) {
            int v;
            snprintf(sub, sizeof sub, "%s/additionalProperties", path);
            if ((v = schema_rule(j, add, sub)) < 0)
                return v;
            gr__printf(o, "\"{\" ws ( json-string ws \":\" ws s%d ws ( \",\" ws json-string ws "
                       "\":\" ws s%d ws )* )? \"}\"", v, v);
        } else if (add && cJSON_IsFalse(add)) {
            gr__puts(o, "\"{\" ws \"}\"");
        } else {
            gr__puts(o, "json-object");
        }
        return 0;
    }
    /* one rule per member: "name" ws ":" ws value ws; properties first, then required names
     * that properties lacks (any value) */
    all[0] = props;
    all[1] = req;
    for (int pass = 0; pass < 2; pass++) {
        cJSON_ArrayForEach(p, all[pass]) {
            const char *name = pass ? p->valuestring : p->string;
            cJSON *key;
            char *t;
            int v = -1, id;
            bool dup = false;

            if (pass && cJSON_GetObjectItemCaseSensitive(props, name))
                continue;
            for (const cJSON *q = pass ? req->child : NULL; q != p && q && !dup; q = q->next)
                dup = !strcmp(q->valuestring, name);
            if (dup)
                continue;
            if (n == (int)ARRAY_LEN(kv))
                return js_fail(j, path, "%s", "more than 512 properties");
            snprintf(sub, sizeof sub, "%s/properties/%.200s", path, name);
            if (!pass && (v = schema_rule(j, p, sub)) < 0)
                return v;
            if (!(key = cJSON_CreateString(name)) || !(t = cJSON_PrintUnformatted(key))) {
                cJSON_Delete(key);
                return js_fail(j, path, "%s", "out of memory");
            }
            cJSON_Delete(key);
            id = j->next++;
            gr__printf(&j->out, "s%d ::= ", id);
            gr__put_literal(&j->out, t, strlen(t));
            free(t);
            if (v < 0)
                gr__puts(&j->out, " ws \":\" ws json-value ws\n");
            else
                gr__printf(&j->out, " ws \":\" ws s%d ws\n", v);
            kv[n] = id;
            optional[n] = !in_required(req, name);
            if (!optional[n] && first_required < 0)
                first_required = n;
            n++;
        }
    }
    /* t_i: the members after i, each preceded by a comma: t_i ::= "," ws kv_i t_(i+1), or
     * also t_(i+1) when member i is optional; t_n ::= "". The object starts with any member
     * up to the first required one. */
    t0 = j->next;
    j->next += n + 1;
    for (int i = 0; i < n; i++) {
        gr__printf(&j->out, "s%d ::= \",\" ws s%d s%d", t0 + i, kv[i], t0 + i + 1);
        if (optional[i])
            gr__printf(&j->out, " | s%d", t0 + i + 1);
        gr__puts(&j->out, "\n");
    }
    gr__printf(&j->out, "s%d ::= \"\"\n", t0 + n);
    gr__puts(o, "\"{\" ws ( ");
    for (int i = 0; i < n && (first_required < 0 || i <= first_required); i++)
        gr__printf(o, "%ss%d s%d", i ? " | " : "", kv[i], t0 + i + 1);
    if (n == 0)
        gr__puts(o, "\"\"");
    gr__printf(o, " )%s \"}\"", first_required < 0 && n > 0 ? "?" : "");
    return 0;
}

/* ---- one schema ---- */

/* A JSON pointer "#/a/b" into the document. */
static const cJSON *resolve(struct js *j, const char *ref)
{
    const cJSON *at = j->doc;
    char key[256];

    if (ref[0] != '#')
        return NULL;
    ref++;
    while (*ref == '/') {
        size_t n = 0;
        ref++;
        while (*ref && *ref != '/' && n + 1 < sizeof key) {
            if (ref[0] == '~' && ref[1] == '1') {
                key[n++] = '/';
                ref += 2;
            } else if (ref[0] == '~' && ref[1] == '0') {
                key[n++] = '~';
                ref += 2;
            } else {
                key[n++] = *ref++;
            }
        }
        key[n] = '\0';
        if (!(at = cJSON_GetObjectItemCaseSensitive(at, key)))
            return NULL;
    }
    return *ref ? NULL : at;
}

static int type_body(struct js *j, struct gr_str *o, const cJSON *s, const char *type, const char *path)
{
    if (!strcmp(type, "null"))
        gr__puts(o, "\"null\"");
    else if (!strcmp(type, "boolean"))
        gr__puts(o, "( \"true\" | \"false\" )");
    else if (!strcmp(type, "integer"))
        return integer_body(j, o, s, path);
    else if (!strcmp(type, "number"))
        return number_body(j, o, s, path);
    else if (!strcmp(type, "string"))
        return string_body(j, o, s, path);
    else if (!strcmp(type, "array"))
        return array_body(j, o, s, path);
    else if (!strcmp(type, "object"))
        return object_body(j, o, s, path);
    else
        return js_fail(j, path, "type '%s' is not supported", type);
    return 0;
}

/* The kind a schema without "type" has, from its keywords; NULL: any value. */
static const char *implied_type(const cJSON *s)
{
    if (cJSON_GetObjectItemCaseSensitive(s, "properties") || cJSON_GetObjectItemCaseSensitive(s, "required") ||
        cJSON_GetObjectItemCaseSensitive(s, "additionalProperties"))
        return "object";
    if (cJSON_GetObjectItemCaseSensitive(s, "items") || cJSON_GetObjectItemCaseSensitive(s, "minItems") ||
        cJSON_GetObjectItemCaseSensitive(s, "prefixItems") ||
        cJSON_GetObjectItemCaseSensitive(s, "maxItems"))
        return "array";
    if (cJSON_GetObjectItemCaseSensitive(s, "pattern") || cJSON_GetObjectItemCaseSensitive(s, "format") ||
        cJSON_GetObjectItemCaseSensitive(s, "minLength") || cJSON_GetObjectItemCaseSensitive(s, "maxLength"))
        return "string";
    if (cJSON_GetObjectItemCaseSensitive(s, "minimum") || cJSON_GetObjectItemCaseSensitive(s, "maximum") ||
        cJSON_GetObjectItemCaseSensitive(s, "exclusiveMinimum") ||
        cJSON_GetObjectItemCaseSensitive(s, "exclusiveMaximum"))
        return "integer";
    return NULL;
}

static int schema_body(struct js *j, struct gr_str *o, const cJSON *s, const char *path)
{
    const cJSON *v, *type, *any;
    char sub[256];
    int n = 0;

    if (cJSON_IsTrue(s))
        return gr__puts(o, "json-value"), 0;
    if (!cJSON_IsObject(s))
        return js_fail(j, path, "%s", "a schema must be an object or true");
    if (check_keywords(j, s, path))
        return j->rc;
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "$ref"))) {
        const cJSON *t;
        int id;
        if (!cJSON_IsString(v) || !(t = resolve(j, v->valuestring)))
            return js_fail(j, path, "$ref '%s' does not point into this document",
                           cJSON_IsString(v) ? v->valuestring : "?");
        if ((id = schema_rule(j, t, v->valuestring)) < 0)
            return id;
        gr__printf(o, "s%d", id);
        return 0;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "const")))
        return put_json_literal(j, o, v, path);
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "enum"))) {
        const cJSON *e;
        if (!cJSON_IsArray(v) || !v->child)
            return js_fail(j, path, "%s", "enum must be a non-empty array");
        gr__puts(o, "(");
        cJSON_ArrayForEach(e, v) {
            gr__puts(o, n++ ? " | " : "");
            if (put_json_literal(j, o, e, path))
                return j->rc;
        }
        gr__puts(o, ")");
        return 0;
    }
    if ((any = cJSON_GetObjectItemCaseSensitive(s, "anyOf")) ||
        (any = cJSON_GetObjectItemCaseSensitive(s, "oneOf")) ||
        (any = cJSON_GetObjectItemCaseSensitive(s, "allOf"))) {
        const cJSON *e;
        bool all = !strcmp(any->string, "allOf");
        if (!cJSON_IsArray(any) || !any->child)
            return js_fail(j, path, "'%s' must be a non-empty array", any->string);
        if (all && any->child->next)
            return js_fail(j, path, "%s", "allOf with more than one schema is not supported");
        gr__puts(o, "(");
        cJSON_ArrayForEach(e, any) {
            int id;
            snprintf(sub, sizeof sub, "%s/%s/%d", path, any->string, n);
            if ((id = schema_rule(j, e, sub)) < 0)
                return id;
            gr__printf(o, "%ss%d", n++ ? " | " : "", id);
        }
        gr__puts(o, ")");
        return 0;
    }
    type = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (!type) {
        const char *t = implied_type(s);
        if (!t)
            return gr__puts(o, "json-value"), 0;
        return type_body(j, o, s, t, path);
    }
    if (cJSON_IsString(type))
        return type_body(j, o, s, type->valuestring, path);
    if (!cJSON_IsArray(type) || !type->child)
        return js_fail(j, path, "%s", "type must be a string or a non-empty array of strings");
    gr__puts(o, "(");
    cJSON_ArrayForEach(v, type) {
        if (!cJSON_IsString(v))
            return js_fail(j, path, "%s", "type must be a string or a non-empty array of strings");
        gr__puts(o, n++ ? " | " : "");
        gr__puts(o, "(");
        if (type_body(j, o, s, v->valuestring, path))
            return j->rc;
        gr__puts(o, ")");
    }
    gr__puts(o, ")");
    return 0;
}

/* Writes the rule s<id> for schema s (once per schema object: $ref targets and recursion
 * share it). Returns the id, or a negative errno. */
static int schema_rule(struct js *j, const cJSON *s, const char *path)
{
    struct gr_str body = { 0 };
    int id;

    for (int i = 0; i < j->num_memo; i++)
        if (j->memo[i].schema == s)
            return j->memo[i].id;
    if (j->next > JS_MAX_RULES)
        return js_fail(j, path, "%s", "the schema is too large");
    if (j->num_memo == j->cap_memo) {
        int c = j->cap_memo ? j->cap_memo * 2 : 64;
        struct js_memo *m = realloc(j->memo, (size_t)c * sizeof *m);
        if (!m)
            return js_fail(j, path, "%s", "out of memory");
        j->memo = m;
        j->cap_memo = c;
    }
    id = j->next++;
    j->memo[j->num_memo++] = (struct js_memo){ s, id };
    if (schema_body(j, &body, s, path)) {
        free(body.p);
        return j->rc;
    }
    gr__printf(&j->out, "s%d ::= ", id);
    gr__putn(&j->out, body.p ? body.p : "", body.len);
    gr__puts(&j->out, "\n");
    j->out.oom |= body.oom;
    free(body.p);
    return id;
}

int gr__json_schema_to_gbnf(const char *src, size_t len, char **out, char *err)
{
    struct js j = { .err = err };
    int root;

    *out = NULL;
    if (!(j.doc = cJSON_ParseWithLength(src, len))) {
        errf(err, "json_schema: the schema is not valid JSON");
        return -EINVAL;
    }
    root = schema_rule(&j, j.doc, "");
    if (root >= 0) {
        gr__printf(&j.out, "root ::= s%d\n", root);
        gr__puts(&j.out, gr__json_common());
        gr__puts(&j.out, "js-hex ::= [0-9a-fA-F]\n"
                 "js-date ::= [0-9]{4} \"-\" ( \"0\" [1-9] | \"1\" [0-2] ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"3\" [01] )\n"
                 "js-time ::= ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{1,6} )? "
                 "( \"Z\" | [+-] ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )\n");
    }
    cJSON_Delete(j.doc);
    free(j.memo);
    if (root < 0) {
        free(j.out.p);
        return j.rc ? j.rc : root;
    }
    if (j.out.oom) {
        free(j.out.p);
        errf(err, "json_schema: out of memory");
        return -ENOMEM;
    }
    *out = j.out.p;
    return 0;
}
