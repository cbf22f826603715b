/* json_out.c — JSON text into a growable, bounded buffer (see json_out.h). */
#include "server/json_out.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>   /* utf8proc_iterate */

void json_out_init(struct json_out *o, size_t limit)
{
    memset(o, 0, sizeof *o);
    o->limit = limit;
}

void json_out_fini(struct json_out *o)
{
    free(o->p);
    json_out_init(o, o->limit);
}

/* Room for n more bytes and the NUL; false (err set) when out of memory or past the limit. */
static bool reserve(struct json_out *o, size_t n)
{
    size_t cap;
    char *p;

    if (o->err)
        return false;
    if (n > SIZE_MAX - o->len - 1 || (o->limit && o->len + n > o->limit)) {
        o->err = -E2BIG;
        return false;
    }
    if (o->len + n + 1 <= o->cap)
        return true;
    cap = o->cap ? o->cap : 256;
    while (cap < o->len + n + 1)
        cap = cap <= SIZE_MAX / 2 ? cap * 2 : o->len + n + 1;
    if (!(p = realloc(o->p, cap))) {
        o->err = -ENOMEM;
        return false;
    }
    o->p = p;
    o->cap = cap;
    return true;
}

void json_out_raw(struct json_out *o, const char *s, size_t n)
{
    if (!reserve(o, n))
        return;
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

void json_out_lit(struct json_out *o, const char *s)
{
    json_out_raw(o, s, strlen(s));
}

/* Bytes s[0..n) takes escaped: the sizing pass of json_out_str_part, so that the buffer
 * grows (and meets its bound) by exactly what is written. */
static size_t escaped_len(const char *s, size_t n)
{
    size_t out = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 0x80) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                                  (utf8proc_ssize_t)(n - i), &cp);

            out += k > 0 ? (size_t)k : 3;    /* a whole character, or U+FFFD for the byte */
            i += k > 0 ? (size_t)k - 1 : 0;
        } else if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t') {
            out += 2;
        } else {
            out += c < 0x20 ? 6 : 1;
        }
    }
    return out;
}

void json_out_str_part(struct json_out *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char *p;

    if (!n || !reserve(o, escaped_len(s, n)))
        return;
    p = o->p + o->len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 0x80) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                                  (utf8proc_ssize_t)(n - i), &cp);

            if (k > 0) {
                memcpy(p, s + i, (size_t)k);
                p += k;
                i += (size_t)k - 1;
            } else {
                memcpy(p, "\xef\xbf\xbd", 3);
                p += 3;
            }
            continue;
        }
        switch (c) {
        case '"': *p++ = '\\'; *p++ = '"'; break;
        case '\\': *p++ = '\\'; *p++ = '\\'; break;
        case '\b': *p++ = '\\'; *p++ = 'b'; break;
        case '\f': *p++ = '\\'; *p++ = 'f'; break;
        case '\n': *p++ = '\\'; *p++ = 'n'; break;
        case '\r': *p++ = '\\'; *p++ = 'r'; break;
        case '\t': *p++ = '\\'; *p++ = 't'; break;
        default:
            if (c < 0x20) {
                memcpy(p, "\\u00", 4);
                p[4] = hex[c >> 4];
                p[5] = hex[c & 15];
                p += 6;
            } else {
                *p++ = (char)c;
            }
        }
    }
    *p = '\0';
    o->len = (size_t)(p - o->p);
}

void json_out_str(struct json_out *o, const char *s, size_t n)
{
    if (!s) {
        json_out_lit(o, "null");
        return;
    }
    json_out_raw(o, "\"", 1);
    json_out_str_part(o, s, n);
    json_out_raw(o, "\"", 1);
}

void json_out_int(struct json_out *o, long long v)
{
    char b[24];
    int n = snprintf(b, sizeof b, "%lld", v);

    json_out_raw(o, b, (size_t)n);
}

void json_out_num(struct json_out *o, double v)
{
    char b[32];
    double back;
    int n;

    if (isnan(v) || isinf(v)) {
        json_out_lit(o, "null");
        return;
    }
    if (v == floor(v) && v >= INT_MIN && v <= INT_MAX) {
        json_out_int(o, (long long)v);
        return;
    }
    n = snprintf(b, sizeof b, "%1.15g", v);
    if (sscanf(b, "%lg", &back) != 1 || back != v)
        n = snprintf(b, sizeof b, "%1.17g", v);
    json_out_raw(o, b, (size_t)n);
}

char *json_out_take(struct json_out *o, size_t *len, int *rc)
{
    char *p = o->p;

    if (rc)
        *rc = o->err;
    if (o->err || !p) {
        if (rc && !o->err)
            *rc = -ENOMEM;        /* nothing written: keep it an error, not an empty text */
        json_out_fini(o);
        *len = 0;
        return NULL;
    }
    *len = o->len;
    o->p = NULL;
    json_out_fini(o);
    return p;
}
