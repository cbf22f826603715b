/* tokenizer_pattern.c — the {"String": …} / {"Regex": …} patterns of Split pre-tokenizers
 * and Replace normalizers and decoders. Regexes are PCRE2 with UTF and UCP (so \s, \p{L},
 * \w are Unicode-aware, as in the Oniguruma engine Hugging Face uses), JIT-compiled when
 * the JIT is available. The compiled code is shared read-only; match data is the caller's. */
#include <errno.h>
#include <stdio.h>     /* snprintf */
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer/tokenizer_internal.h"
#include "engine/base/util.h"

/* Unicode White_Space, which is what \s means to Oniguruma (Hugging Face's engine). PCRE2's
 * \s also takes U+180E, a format character since Unicode 6.3, which would split
 * differently; so \s is spelled out. */
#define WHITE_SPACE "\\t-\\r\\x20\\x85\\xa0\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

/* Copies the pattern with \s replaced by WHITE_SPACE (in a class, or as a class of its
 * own) and, outside classes, \S by its complement. Other escapes and POSIX [:names:] are
 * copied as they are. */
static int rewrite_spaces(const char *src, size_t len, struct buf *out)
{
    bool in_class = false;

    for (size_t i = 0; i < len; i++) {
        const char *put = NULL;
        size_t n = 1;

        if (src[i] == '\\' && i + 1 < len) {
            n = 2;
            if (src[i + 1] == 's')
                put = in_class ? WHITE_SPACE : "[" WHITE_SPACE "]";
            else if (src[i + 1] == 'S' && !in_class)
                put = "[^" WHITE_SPACE "]";
        } else if (!in_class && src[i] == '[') {
            /* [ opens a class; a ] right after [ or [^ is a member, not its end. */
            in_class = true;
            if (i + n < len && src[i + n] == '^')
                n++;
            if (i + n < len && src[i + n] == ']')
                n++;
        } else if (in_class && src[i] == '[' && i + 1 < len && src[i + 1] == ':') {
            const char *end = memmem(src + i + 2, len - i - 2, ":]", 2);

            if (end)
                n = (size_t)(end - (src + i)) + 2;
        } else if (in_class && src[i] == ']')
            in_class = false;
        if (put ? buf_put(out, put, strlen(put)) : buf_put(out, src + i, n))
            return -ENOMEM;
        i += n - 1;
    }
    return 0;
}

int tk__regex_compile(pcre2_code **re, const char *src, size_t len, const char *where,
                      const char *file, char *err)
{
    struct buf pat = { 0 };
    int code;
    PCRE2_SIZE at;
    PCRE2_UCHAR msg[160];

    *re = NULL;
    if (rewrite_spaces(src, len, &pat)) {
        errf(err, "%s: %s: out of memory", file, where);
        return -ENOMEM;
    }
    *re = pcre2_compile((PCRE2_SPTR)(pat.p ? pat.p : ""), pat.len, PCRE2_UTF | PCRE2_UCP, &code,
                        &at, NULL);
    buf_fini(&pat);
    if (!*re) {
        pcre2_get_error_message(code, msg, sizeof msg);
        errf(err, "%s: %s: bad regex (%s)", file, where, (char *)msg);
        return -EINVAL;
    }
    /* No JIT on this CPU or build is fine: pcre2_match interprets. */
    (void)pcre2_jit_compile(*re, PCRE2_JIT_COMPLETE);
    return 0;
}

int tk__pattern_parse(struct tk_pattern *p, const cJSON *j, const char *where, const char *file,
                      char *err)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "String");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "Regex");

    memset(p, 0, sizeof *p);
    if (cJSON_IsString(s)) {
        p->lit_len = strlen(s->valuestring);
        p->lit = strdup(s->valuestring);
        if (!p->lit)
            return -ENOMEM;
        return 0;
    }
    if (cJSON_IsString(r)) {
        char what[256];

        snprintf(what, sizeof what, "%s.Regex", where);
        return tk__regex_compile(&p->re, r->valuestring, strlen(r->valuestring), what, file, err);
    }
    errf(err, "%s: %s: expected {\"String\": …} or {\"Regex\": …}", file, where);
    return -EINVAL;
}

void tk__pattern_free(struct tk_pattern *p)
{
    pcre2_code_free(p->re);
    free(p->lit);
    memset(p, 0, sizeof *p);
}

static int regex_at(const struct tk_pattern *p, pcre2_match_data *md, const char *s, size_t len,
                    size_t pos, uint32_t opts, size_t *ms, size_t *me)
{
    int rc = pcre2_match(p->re, (PCRE2_SPTR)s, len, pos, opts | PCRE2_NO_UTF_CHECK, md, NULL);
    PCRE2_SIZE *ov;

    /* The JIT runs on a small machine stack; a pathological subject may need more. */
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(p->re, (PCRE2_SPTR)s, len, pos, opts | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                         md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (rc < 0)
        return -EIO;
    ov = pcre2_get_ovector_pointer(md);
    *ms = ov[0];
    *me = ov[1];
    if (*ms > len || *me > len || *me < *ms)   /* \K can move the start past the end */
        return -EIO;
    return 1;
}

int tk__match_next(struct tk_match_iter *it, size_t *ms, size_t *me)
{
    const struct tk_pattern *p = it->p;
    int rc;

    if (it->pos > it->len)
        return 0;
    if (!p->re) {
        const char *hit;

        if (p->lit_len == 0)
            return 0;
        hit = memmem(it->s + it->pos, it->len - it->pos, p->lit, p->lit_len);
        if (!hit)
            return 0;
        *ms = (size_t)(hit - it->s);
        *me = *ms + p->lit_len;
        it->pos = *me;
        return 1;
    }
    if (it->last_empty) {
        /* After an empty match, look for a non-empty one at the same place, then move on
         * by one character (the pcre2demo loop). */
        it->last_empty = false;
        rc = regex_at(p, it->md, it->s, it->len, it->pos, PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED,
                      ms, me);
        if (rc == 0) {
            if (it->pos >= it->len)
                return 0;
            do
                it->pos++;
            while (it->pos < it->len && ((unsigned char)it->s[it->pos] & 0xc0) == 0x80);
            rc = regex_at(p, it->md, it->s, it->len, it->pos, 0, ms, me);
        }
    } else
        rc = regex_at(p, it->md, it->s, it->len, it->pos, 0, ms, me);
    if (rc <= 0)
        return rc;
    it->pos = *me;
    it->last_empty = *ms == *me;
    return 1;
}

void tk__match_init(struct tk_match_iter *it, const struct tk_pattern *p, pcre2_match_data *md,
                    const char *s, size_t len)
{
    it->p = p;
    it->md = md;
    it->s = s;
    it->len = len;
    it->pos = 0;
    it->last_empty = false;
}

int tk__replace(const struct tk_pattern *p, pcre2_match_data *md, const char *s, size_t len,
                const char *with, size_t with_len, struct buf *out)
{
    struct tk_match_iter it;
    size_t ms, me, last = 0;
    int rc;

    tk__match_init(&it, p, md, s, len);
    while ((rc = tk__match_next(&it, &ms, &me)) > 0) {
        if (buf_put(out, s + last, ms - last) || buf_put(out, with, with_len))
            return -ENOMEM;
        last = me;
    }
    if (rc < 0)
        return rc;
    return buf_put(out, s + last, len - last);
}
