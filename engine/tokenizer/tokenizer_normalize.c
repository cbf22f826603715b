/* tokenizer_normalize.c — tokenizer.json "normalizer": parsed into a flat list of steps
 * (Sequence is flattened) and applied to each piece of text between added tokens.
 * Unicode forms go through utf8proc; Replace uses tokenizer_pattern.c; Prepend, Strip,
 * Lowercase, StripAccents and ByteLevel are written out here. */
#include <errno.h>
#include <stdio.h>     /* snprintf */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "engine/tokenizer/tokenizer_internal.h"
#include "engine/base/util.h"

static int norm_parse(struct tokenizer *t, const cJSON *j, const char *where, const char *file,
                      char *err)
{
    const char *type = tk__json_type(j, where, file, err);
    struct tk_norm *n;
    char sub[256];
    int rc;

    if (!type)
        return -EINVAL;
    if (!strcmp(type, "Sequence"))
        return tk__json_each(t, j, "normalizers", where, file, err, norm_parse);
    if (t->n_norm == TK_MAX_STEPS) {
        errf(err, "%s: %s: more than %d normalizers", file, where, TK_MAX_STEPS);
        return -EINVAL;
    }
    n = &t->norm[t->n_norm];
    memset(n, 0, sizeof *n);
    if (!strcmp(type, "NFC")) n->kind = TN_NFC;
    else if (!strcmp(type, "NFD")) n->kind = TN_NFD;
    else if (!strcmp(type, "NFKC")) n->kind = TN_NFKC;
    else if (!strcmp(type, "NFKD")) n->kind = TN_NFKD;
    else if (!strcmp(type, "Lowercase")) n->kind = TN_LOWERCASE;
    else if (!strcmp(type, "StripAccents")) n->kind = TN_STRIP_ACCENTS;
    else if (!strcmp(type, "ByteLevel")) n->kind = TN_BYTE_LEVEL;
    else if (!strcmp(type, "Strip")) {
        n->kind = TN_STRIP;
        if ((rc = tk__json_bool(j, "strip_left", true, &n->left, where, file, err)) ||
            (rc = tk__json_bool(j, "strip_right", true, &n->right, where, file, err)))
            return rc;
    } else if (!strcmp(type, "Replace") || !strcmp(type, "Prepend")) {
        bool replace = type[0] == 'R';
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, replace ? "content" : "prepend");

        n->kind = replace ? TN_REPLACE : TN_PREPEND;
        if (!cJSON_IsString(c)) {
            errf(err, "%s: %s.%s: expected a string", file, where, replace ? "content" : "prepend");
            return -EINVAL;
        }
        if (replace) {
            snprintf(sub, sizeof sub, "%s.pattern", where);
            if ((rc = tk__pattern_parse(&n->pat, cJSON_GetObjectItemCaseSensitive(j, "pattern"),
                                        sub, file, err)))
                return rc;
        }
        t->n_norm++;   /* owns the pattern from here on, freed with the tokenizer */
        n->content_len = strlen(c->valuestring);
        n->content = strdup(c->valuestring);
        return n->content ? 0 : -ENOMEM;
    } else {
        errf(err, "%s: %s.type: normalizer \"%s\" is not supported (NFC, NFD, NFKC, NFKD, "
             "Lowercase, Strip, StripAccents, Replace, Prepend, ByteLevel, Sequence)",
             file, where, type);
        return -EINVAL;
    }
    t->n_norm++;
    return 0;
}

int tk__norm_parse(struct tokenizer *t, const cJSON *j, const char *file, char *err)
{
    if (!j || cJSON_IsNull(j))
        return 0;
    return norm_parse(t, j, "normalizer", file, err);
}

void tk__norm_free(struct tk_norm *n)
{
    tk__pattern_free(&n->pat);
    free(n->content);
    memset(n, 0, sizeof *n);
}

static bool all_ascii(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80)
            return false;
    return true;
}

static int unicode_form(const char *s, size_t len, int opts, struct buf *out)
{
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t n;
    int rc;

    if (all_ascii(s, len))   /* every form leaves ASCII alone */
        return buf_put(out, s, len);
    n = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &dst, opts);
    if (n < 0)
        return n == UTF8PROC_ERROR_NOMEM ? -ENOMEM : -EINVAL;
    rc = buf_put(out, dst, (size_t)n);
    free(dst);
    return rc;
}

/* Loops over the characters of s: cp is the code point at byte i, k its length. s is valid
 * UTF-8 (the encoder sanitizes its input). */
#define FOR_EACH_CHAR(s, len, i, cp, k) \
    for (size_t i = 0, k = 0; i < (len) && ((k = tk__utf8_decode((s) + i, (len) - i, &(cp))) > 0); i += k)

static int lowercase(const char *s, size_t len, struct buf *out)
{
    uint32_t cp;
    char u[4];

    FOR_EACH_CHAR(s, len, i, cp, k) {
        if (cp == 0x130) {   /* İ: Rust's char::to_lowercase gives i + combining dot above */
            if (buf_put(out, "i\xcc\x87", 3))
                return -ENOMEM;
            continue;
        }
        if (buf_put(out, u, tk__utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), u)))
            return -ENOMEM;
    }
    return 0;
}

static int strip(const char *s, size_t len, bool left, bool right, struct buf *out)
{
    size_t a = 0, b = len;
    uint32_t cp;
    int k;

    while (left && a < b && (k = tk__utf8_decode(s + a, b - a, &cp)) > 0 && tk__is_space(cp))
        a += k;
    while (right && b > a) {
        size_t c = b - 1;

        while (c > a && ((unsigned char)s[c] & 0xc0) == 0x80)
            c--;
        if (tk__utf8_decode(s + c, b - c, &cp) <= 0 || !tk__is_space(cp))
            break;
        b = c;
    }
    return buf_put(out, s + a, b - a);
}

static int strip_accents(const char *s, size_t len, struct buf *out)
{
    uint32_t cp;

    FOR_EACH_CHAR(s, len, i, cp, k) {
        utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);

        if (c == UTF8PROC_CATEGORY_MN || c == UTF8PROC_CATEGORY_MC || c == UTF8PROC_CATEGORY_ME)
            continue;
        if (buf_put(out, s + i, k))
            return -ENOMEM;
    }
    return 0;
}

static int byte_level(const struct tokenizer *t, const char *s, size_t len, struct buf *out)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)s[i];

        if (buf_put(out, t->byte_char[b], t->byte_char_len[b]))
            return -ENOMEM;
    }
    return 0;
}

static int apply(const struct tokenizer *t, const struct tk_norm *n, pcre2_match_data *md,
                 const char *s, size_t len, struct buf *out)
{
    switch (n->kind) {
    case TN_NFC:  return unicode_form(s, len, UTF8PROC_STABLE | UTF8PROC_COMPOSE, out);
    case TN_NFD:  return unicode_form(s, len, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, out);
    case TN_NFKC: return unicode_form(s, len, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out);
    case TN_NFKD: return unicode_form(s, len, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out);
    case TN_LOWERCASE: return lowercase(s, len, out);
    case TN_STRIP: return strip(s, len, n->left, n->right, out);
    case TN_STRIP_ACCENTS: return strip_accents(s, len, out);
    case TN_REPLACE: return tk__replace(&n->pat, md, s, len, n->content, n->content_len, out);
    case TN_PREPEND:
        if (len && buf_put(out, n->content, n->content_len))
            return -ENOMEM;
        return buf_put(out, s, len);
    case TN_BYTE_LEVEL: return byte_level(t, s, len, out);
    }
    return -EINVAL;
}

int tk__normalize(const struct tokenizer *t, pcre2_match_data *md, const char *s, size_t len,
                  struct buf *out, struct buf *tmp)
{
    out->len = 0;
    if (buf_put(out, s, len))
        return -ENOMEM;
    for (int i = 0; i < t->n_norm; i++) {
        struct buf swap;
        int rc;

        tmp->len = 0;
        if ((rc = apply(t, &t->norm[i], md, out->p, out->len, tmp)))
            return rc;
        swap = *out;
        *out = *tmp;
        *tmp = swap;
    }
    return 0;
}
