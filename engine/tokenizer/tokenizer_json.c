/* tokenizer_json.c — the JSON readers every tokenizer.json component parser shares
 * (normalizers, pre-tokenizers, the model, post-processors, decoders): a component's "type",
 * optional booleans and one-character fields, and Sequence lists. Each error names the
 * file and the field's path (where.key) and says what was expected. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine/base/util.h"   /* errf */
#include "engine/tokenizer/tokenizer_internal.h"

const char *tk__json_type(const cJSON *j, const char *where, const char *file, char *err)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");

    if (!cJSON_IsObject(j)) {
        errf(err, "%s: %s: expected an object", file, where);
        return NULL;
    }
    if (!cJSON_IsString(type)) {
        errf(err, "%s: %s.type: expected a string", file, where);
        return NULL;
    }
    return type->valuestring;
}

int tk__json_bool(const cJSON *obj, const char *key, bool dflt, bool *out, const char *where,
                  const char *file, char *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

    *out = dflt;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsBool(v)) {
        errf(err, "%s: %s.%s: expected true or false", file, where, key);
        return -EINVAL;
    }
    *out = cJSON_IsTrue(v);
    return 0;
}

/* A field holding exactly one character (Metaspace replacement, Strip content). */
int tk__json_char(const cJSON *obj, const char *key, const char *dflt, char rep[5], int *rep_len,
                  const char *where, const char *file, char *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    const char *s = dflt;
    uint32_t cp;
    int n;

    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v)) {
            errf(err, "%s: %s.%s: expected a one-character string", file, where, key);
            return -EINVAL;
        }
        s = v->valuestring;
    }
    n = tk__utf8_decode(s, strlen(s), &cp);
    if (n == 0 || s[n] != '\0') {
        errf(err, "%s: %s.%s: \"%.16s\" is not one character", file, where, key, s);
        return -EINVAL;
    }
    memcpy(rep, s, n);
    rep[n] = '\0';
    *rep_len = n;
    return 0;
}

int tk__json_each(struct tokenizer *t, const cJSON *obj, const char *key, const char *where,
                  const char *file, char *err,
                  int (*parse)(struct tokenizer *t, const cJSON *j, const char *where,
                               const char *file, char *err))
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(obj, key), *e;
    char sub[256];
    int i = 0, rc;

    if (!cJSON_IsArray(list)) {
        errf(err, "%s: %s.%s: expected an array", file, where, key);
        return -EINVAL;
    }
    cJSON_ArrayForEach(e, list) {
        snprintf(sub, sizeof sub, "%s.%s[%d]", where, key, i++);
        if ((rc = parse(t, e, sub, file, err)))
            return rc;
    }
    return 0;
}
