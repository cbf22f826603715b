/* json_text.c — a member's raw value text and exact integers, read from a JSON body that
 * cJSON has already accepted (see json_text.h). Only the top level is walked; nested values
 * are skipped bracket by bracket, strings escape by escape. */
#include "server/json_text.h"

#include <errno.h>
#include <string.h>

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

/* p at the opening quote: returns the byte after the closing quote, or NULL. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

static const char *skip_value(const char *p, const char *end)
{
    int depth = 0;

    if (p < end && *p == '"')
        return skip_string(p, end);
    if (p < end && (*p == '{' || *p == '[')) {
        while (p < end) {
            if (*p == '"') {
                if (!(p = skip_string(p, end)))
                    return NULL;
                continue;
            }
            if (*p == '{' || *p == '[')
                depth++;
            else if ((*p == '}' || *p == ']') && --depth == 0)
                return p + 1;
            p++;
        }
        return NULL;
    }
    while (p < end && !strchr(",}] \t\r\n", *p))   /* number, true, false, null */
        p++;
    return p;
}

static int hex4(const char *p, const char *end)
{
    int v = 0;

    if (end - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        char c = p[i];

        v = v * 16 + (c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                      : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1000000);
    }
    return v < 0 ? -1 : v;
}

/* Whether the string s[0..end) (between the quotes) decodes to key. key is ASCII: a \u
 * escape above 0x7f can never match it. */
static int key_equals(const char *s, const char *end, const char *key)
{
    size_t i = 0;

    while (s < end) {
        int c = (unsigned char)*s++;

        if (c == '\\' && s < end) {
            c = *s++;
            switch (c) {
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u':
                c = hex4(s, end);
                s += 4;
                if (c < 0 || c > 0x7f)
                    return 0;
                break;
            default: break;   /* \" \\ \/ stand for themselves */
            }
        }
        if (key[i] == '\0' || (unsigned char)key[i] != c)
            return 0;
        i++;
    }
    return key[i] == '\0';
}

int json_text_member(const char *body, size_t len, const char *key, const char **val,
                     size_t *val_len)
{
    const char *end = body + len, *p = skip_ws(body, end);

    if (p >= end || *p != '{')
        return -EINVAL;
    p = skip_ws(p + 1, end);
    while (p < end && *p == '"') {
        const char *k = p + 1, *kend, *v, *after;

        if (!(p = skip_string(p, end)))
            return -EINVAL;
        kend = p - 1;                     /* the closing quote */
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            return -EINVAL;
        v = skip_ws(p + 1, end);
        if (!(after = skip_value(v, end)) || after == v)
            return -EINVAL;
        if (key_equals(k, kend, key)) {
            *val = v;
            *val_len = (size_t)(after - v);
            return 0;
        }
        p = skip_ws(after, end);
        if (p < end && *p == ',')
            p = skip_ws(p + 1, end);
    }
    return -ENOENT;
}

int json_text_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned)(s[i] - '0');

        if (d > 9)
            return -EINVAL;   /* a sign, a fraction or an exponent */
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}
