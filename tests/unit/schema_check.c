/* schema_check.c — for the grammar and tool-call property tests: an independent JSON Schema
 * validator (written from the JSON Schema rules, sharing nothing with engine/grammar/) for
 * the subset the generator here writes, and a seeded generator of random schemas. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tests/unit/schema_check.h"

#include <check.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <string.h>


bool schema_check_re_match(const char *pattern, const char *s, size_t len)
{
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &code, &off, NULL);
    pcre2_match_data *md;
    int rc;

    ck_assert_msg(re, "pcre2 cannot compile %s", pattern);
    md = pcre2_match_data_create_from_pattern(re, NULL);
    rc = pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0;
}

static long utf8_chars(const char *s)
{
    long n = 0;

    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}


static bool valid_type(const cJSON *s, const char *type, const cJSON *v)
{
    const cJSON *x;

    if (!strcmp(type, "null"))
        return cJSON_IsNull(v);
    if (!strcmp(type, "boolean"))
        return cJSON_IsBool(v);
    if (!strcmp(type, "number")) {
        if (!cJSON_IsNumber(v))
            return false;
        if ((x = cJSON_GetObjectItem(s, "minimum")) && v->valuedouble < x->valuedouble)
            return false;
        if ((x = cJSON_GetObjectItem(s, "maximum")) && v->valuedouble > x->valuedouble)
            return false;
        return true;
    }
    if (!strcmp(type, "integer")) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
            return false;
        if ((x = cJSON_GetObjectItem(s, "minimum")) && v->valuedouble < x->valuedouble)
            return false;
        if ((x = cJSON_GetObjectItem(s, "maximum")) && v->valuedouble > x->valuedouble)
            return false;
        return true;
    }
    if (!strcmp(type, "string")) {
        if (!cJSON_IsString(v))
            return false;
        if ((x = cJSON_GetObjectItem(s, "minLength")) && utf8_chars(v->valuestring) < x->valueint)
            return false;
        if ((x = cJSON_GetObjectItem(s, "maxLength")) && utf8_chars(v->valuestring) > x->valueint)
            return false;
        if ((x = cJSON_GetObjectItem(s, "pattern")) && !schema_check_re_match(x->valuestring, v->valuestring, strlen(v->valuestring)))
            return false;
        if ((x = cJSON_GetObjectItem(s, "format")) && !strcmp(x->valuestring, "uuid") &&
            !schema_check_re_match("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
                      v->valuestring, strlen(v->valuestring)))
            return false;
        if ((x = cJSON_GetObjectItem(s, "format")) && !strcmp(x->valuestring, "date-time") &&
            !schema_check_re_match("^\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])T([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d"
                      "(\\.\\d+)?(Z|[+-]([01]\\d|2[0-3]):[0-5]\\d)$", v->valuestring, strlen(v->valuestring)))
            return false;
        return true;
    }
    if (!strcmp(type, "array")) {
        const cJSON *it, *items = cJSON_GetObjectItem(s, "items"), *pre = cJSON_GetObjectItem(s, "prefixItems");
        int n = cJSON_GetArraySize(v), i = 0;
        if (!cJSON_IsArray(v))
            return false;
        cJSON_ArrayForEach(it, v)
            if (i++ < cJSON_GetArraySize(pre) && !schema_check_valid(cJSON_GetArrayItem(pre, i - 1), it))
                return false;
        if ((x = cJSON_GetObjectItem(s, "minItems")) && n < x->valueint)
            return false;
        if ((x = cJSON_GetObjectItem(s, "maxItems")) && n > x->valueint)
            return false;
        i = 0;
        cJSON_ArrayForEach(it, v)
            if (i++ >= cJSON_GetArraySize(pre) && items && !schema_check_valid(items, it))
                return false;
        return true;
    }
    if (!strcmp(type, "object")) {
        const cJSON *props = cJSON_GetObjectItem(s, "properties"), *it;
        const cJSON *add = cJSON_GetObjectItem(s, "additionalProperties");
        if (!cJSON_IsObject(v))
            return false;
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(s, "required"))
            if (!cJSON_GetObjectItemCaseSensitive(v, it->valuestring))
                return false;
        cJSON_ArrayForEach(it, v) {
            const cJSON *ps = cJSON_GetObjectItemCaseSensitive(props, it->string);
            if (!ps && cJSON_IsFalse(add))
                return false;
            if (ps && !schema_check_valid(ps, it))
                return false;
        }
        return true;
    }
    return false;
}

bool schema_check_valid(const cJSON *s, const cJSON *v)
{
    const cJSON *x, *it;

    if ((x = cJSON_GetObjectItem(s, "const")))
        return cJSON_Compare(x, v, true);
    if ((x = cJSON_GetObjectItem(s, "enum"))) {
        cJSON_ArrayForEach(it, x)
            if (cJSON_Compare(it, v, true))
                return true;
        return false;
    }
    if ((x = cJSON_GetObjectItem(s, "anyOf"))) {
        cJSON_ArrayForEach(it, x)
            if (schema_check_valid(it, v))
                return true;
        return false;
    }
    x = cJSON_GetObjectItem(s, "type");
    return x && valid_type(s, x->valuestring, v);
}

/* ---- random schemas ---- */

static uint64_t rng_state;

void schema_check_seed(uint64_t seed)
{
    rng_state = seed;
}

int schema_check_rnd(int n)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (int)((rng_state >> 33) % (uint64_t)n);
}

cJSON *schema_check_gen(int depth)
{
    cJSON *s = cJSON_CreateObject();
    int kind = schema_check_rnd(depth >= 2 ? 8 : 11);

    switch (kind) {
    case 0:
        cJSON_AddStringToObject(s, "type", "integer");
        if (schema_check_rnd(2)) {
            int lo = schema_check_rnd(2000) - 1000;
            cJSON_AddNumberToObject(s, "minimum", lo);
            cJSON_AddNumberToObject(s, "maximum", lo + schema_check_rnd(3000));
        }
        break;
    case 1:
        cJSON_AddStringToObject(s, "type", "number");
        if (schema_check_rnd(2)) {
            int lo = schema_check_rnd(200) - 100;
            if (schema_check_rnd(3))
                cJSON_AddNumberToObject(s, "minimum", lo);
            if (schema_check_rnd(3))
                cJSON_AddNumberToObject(s, "maximum", lo + schema_check_rnd(50));
        }
        break;
    case 2:
        cJSON_AddStringToObject(s, "type", schema_check_rnd(2) ? "boolean" : "null");
        break;
    case 3: {
        int lo = schema_check_rnd(3);
        cJSON_AddStringToObject(s, "type", "string");
        cJSON_AddNumberToObject(s, "minLength", lo);
        cJSON_AddNumberToObject(s, "maxLength", lo + schema_check_rnd(6));
        break;
    }
    case 4: {
        static const char *const P[] = { "^[a-z]{1,5}$", "^\\d{3}-[A-Z]{2}$", "^(yes|no|maybe)!?$", "^x[0-9a-f]*y$" };
        static const char *const F[] = { "uuid", "date-time" };
        cJSON_AddStringToObject(s, "type", "string");
        if (schema_check_rnd(2))
            cJSON_AddStringToObject(s, "pattern", P[schema_check_rnd(4)]);
        else
            cJSON_AddStringToObject(s, "format", F[schema_check_rnd(2)]);
        break;
    }
    case 5: {
        cJSON *e = cJSON_AddArrayToObject(s, "enum");
        cJSON_AddItemToArray(e, cJSON_CreateString("red"));
        cJSON_AddItemToArray(e, cJSON_CreateNumber(schema_check_rnd(100)));
        if (schema_check_rnd(2))
            cJSON_AddItemToArray(e, cJSON_CreateNull());
        break;
    }
    case 6:
        cJSON_AddStringToObject(s, "const", schema_check_rnd(2) ? "fixed \"q\"" : "\xc3\xa9t\xc3\xa9");
        break;
    case 7: {
        cJSON *a = cJSON_AddArrayToObject(s, "anyOf"), *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "type", "boolean");
        cJSON_AddItemToArray(a, b);
        b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "type", "integer");
        cJSON_AddNumberToObject(b, "minimum", 0);
        cJSON_AddNumberToObject(b, "maximum", 9);
        cJSON_AddItemToArray(a, b);
        break;
    }
    case 8:
    case 9: {
        int n = 1 + schema_check_rnd(4), min;
        cJSON *props = cJSON_CreateObject(), *req = cJSON_CreateArray();
        cJSON_AddStringToObject(s, "type", "object");
        for (int i = 0; i < n; i++) {
            char name[16];
            snprintf(name, sizeof name, "%s%d", schema_check_rnd(2) ? "k" : "name_", i);
            cJSON_AddItemToObject(props, name, schema_check_gen(depth + 1));
            if (schema_check_rnd(2))
                cJSON_AddItemToArray(req, cJSON_CreateString(name));
        }
        cJSON_AddItemToObject(s, "properties", props);
        cJSON_AddItemToObject(s, "required", req);
        cJSON_AddBoolToObject(s, "additionalProperties", false);
        (void)min;
        break;
    }
    default: {
        int min = schema_check_rnd(2);
        cJSON_AddStringToObject(s, "type", "array");
        if (schema_check_rnd(3) == 0) {            /* a tuple of two */
            cJSON *pre = cJSON_AddArrayToObject(s, "prefixItems");
            cJSON_AddItemToArray(pre, schema_check_gen(depth + 1));
            cJSON_AddItemToArray(pre, schema_check_gen(depth + 1));
            cJSON_AddNumberToObject(s, "minItems", 2);
            cJSON_AddNumberToObject(s, "maxItems", 2);
            break;
        }
        cJSON_AddItemToObject(s, "items", schema_check_gen(depth + 1));
        cJSON_AddNumberToObject(s, "minItems", min);
        cJSON_AddNumberToObject(s, "maxItems", min + schema_check_rnd(3));
        break;
    }
    }
    return s;
}
