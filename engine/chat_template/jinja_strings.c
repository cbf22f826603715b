/* jinja_strings.c — Python's str operations that templates, filters and methods share:
 * strip with or without chars, case mapping (upper, lower, capitalize, str.title and Jinja's
 * title filter), replace, split / rsplit / splitlines, startswith / endswith, the is*()
 * predicates, str.format and printf-style `str % args`. Code points as Python counts them. */
#include "engine/chat_template/jinja.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <utf8proc.h>

#include "engine/base/util.h" /* MIN */

/* ---- string helpers ---- */

static int put_cp(struct jinja_render *r, struct buf *b, int32_t cp)
{
    char tmp[4];

    if (cp >= 0xdc80 && cp <= 0xdcff) {   /* an undecodable byte goes back out as itself */
        tmp[0] = (char)(cp - 0xdc00);
        return jinja__put(r, b, tmp, 1);
    }
    return jinja__put(r, b, tmp, (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)tmp));
}

static bool in_chars(int32_t cp, struct jinja_value chars)
{
    int32_t c;

    if (chars.type != JV_STR)
        return jinja__py_isspace(cp);
    for (size_t i = 0; i < chars.s.len;) {
        i = jinja__u8_next(chars.s.p, chars.s.len, i, &c);
        if (c == cp)
            return true;
    }
    return false;
}

int jinja__str_strip(struct jinja_render *r, struct jinja_value s, struct jinja_value chars,
                     bool left, bool right, struct jinja_value *out)
{
    size_t b = 0, e = s.s.len;
    int32_t cp;

    if (chars.type != JV_STR && chars.type != JV_NONE && chars.type != JV_UNDEF)
        return jinja__fail(r, "strip arg must be None or str");
    while (left && b < e) {
        size_t next = jinja__u8_next(s.s.p, e, b, &cp);

        if (!in_chars(cp, chars))
            break;
        b = next;
    }
    while (right && e > b) {
        size_t i = e - 1;

        while (i > b && ((unsigned char)s.s.p[i] & 0xc0) == 0x80 && e - i < 4)
            i--;
        if (jinja__u8_next(s.s.p, e, i, &cp) != e)
            i = e - 1, cp = 0xdc00 + (unsigned char)s.s.p[e - 1];
        if (!in_chars(cp, chars))
            break;
        e = i;
    }
    *out = jinja__str(s.s.p + b, e - b);
    return jinja__charge(r, s.s.len / 64);
}

static bool is_cased(int32_t cp, int *kind /* 1 upper, 2 lower, 3 title */)
{
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU: *kind = 1; return true;
    case UTF8PROC_CATEGORY_LL: *kind = 2; return true;
    case UTF8PROC_CATEGORY_LT: *kind = 3; return true;
    default: *kind = 0; return false;
    }
}

static bool jinja_title_sep(int32_t cp)
{
    return cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || jinja__py_isspace(cp);
}

int jinja__str_case(struct jinja_render *r, struct jinja_value s, int mode, struct jinja_value *out)
{
    struct buf b = BUF_INIT;
    bool prev_cased = false, word_start = true;
    int rc = 0, kind;

    for (size_t i = 0, n = 0; i < s.s.len && !rc; n++) {
        int32_t cp, o;
        bool cased;

        i = jinja__u8_next(s.s.p, s.s.len, i, &cp);
        if (cp >= 0xdc80 && cp <= 0xdcff) {
            rc = put_cp(r, &b, cp);
            continue;
        }
        switch (mode) {
        case JCASE_UPPER: o = utf8proc_toupper(cp); break;
        case JCASE_LOWER: o = utf8proc_tolower(cp); break;
        case JCASE_CAPITALIZE: o = n == 0 ? utf8proc_totitle(cp) : utf8proc_tolower(cp); break;
        case JCASE_TITLE_PY:
            /* str.title(): a cased character after a cased one is lowered, else titled */
            cased = is_cased(cp, &kind);
            o = !cased ? cp : prev_cased ? utf8proc_tolower(cp) : utf8proc_totitle(cp);
            prev_cased = cased;
            break;
        default:
            /* Jinja's title filter: upper after - ( { [ < or whitespace, lower elsewhere */
            if (jinja_title_sep(cp)) {
                o = cp;
                word_start = true;
            } else {
                o = word_start ? utf8proc_toupper(cp) : utf8proc_tolower(cp);
                word_start = false;
            }
        }
        rc = put_cp(r, &b, o);
    }
    if (rc) {
        buf_fini(&b);
        return rc;
    }
    return jinja__buf_to_str(r, &b, out);
}

int jinja__str_replace(struct jinja_render *r, struct jinja_value s, struct jinja_value old,
                       struct jinja_value new_, int64_t count, struct jinja_value *out)
{
    struct buf b = BUF_INIT;
    size_t i = 0;
    int rc = 0;

    if (old.type != JV_STR || new_.type != JV_STR)
        return jinja__fail(r, "replace() arguments must be str");
    if (!old.s.len) {
        /* Python puts new before every character and at the end. */
        int32_t cp;

        while (!rc && count != 0) {
            rc = jinja__put(r, &b, new_.s.p, new_.s.len);
            if (count > 0)
                count--;
            if (i >= s.s.len)
                break;
            {
                size_t next = jinja__u8_next(s.s.p, s.s.len, i, &cp);

                if (!rc)
                    rc = jinja__put(r, &b, s.s.p + i, next - i);
                i = next;
            }
        }
    } else {
        while (!rc && count != 0) {
            const char *hit = memmem(s.s.p + i, s.s.len - i, old.s.p, old.s.len);

            if (!hit)
                break;
            rc = jinja__put(r, &b, s.s.p + i, (size_t)(hit - s.s.p) - i);
            if (!rc)
                rc = jinja__put(r, &b, new_.s.p, new_.s.len);
            i = (size_t)(hit - s.s.p) + old.s.len;
            if (count > 0)
                count--;
        }
    }
    if (!rc)
        rc = jinja__put(r, &b, s.s.p + i, s.s.len - i);
    if (!rc)
        rc = jinja__charge(r, s.s.len / 16);
    if (rc) {
        buf_fini(&b);
        return rc;
    }
    return jinja__buf_to_str(r, &b, out);
}

/* Line boundaries of str.splitlines: \n \r \r\n \v \f \x1c-\x1e \x85 \u2028 \u2029. */
static size_t line_break(const char *p, size_t len, size_t i, size_t *end)
{
    int32_t cp;
    size_t next = jinja__u8_next(p, len, i, &cp);

    if (cp == '\r' && next < len && p[next] == '\n')
        next++;
    else if (!(cp == '\n' || cp == '\r' || cp == '\v' || cp == '\f' || (cp >= 0x1c && cp <= 0x1e) ||
               cp == 0x85 || cp == 0x2028 || cp == 0x2029))
        return 0;
    *end = next;
    return 1;
}

int jinja__str_splitlines(struct jinja_render *r, struct jinja_value s, struct jinja_list **out)
{
    struct jinja_list *l = jinja__list_new(r, 0);
    size_t start = 0;
    int32_t cp;

    if (!l)
        return -ENOMEM;
    for (size_t i = 0; i < s.s.len;) {
        size_t end;

        if (line_break(s.s.p, s.s.len, i, &end)) {
            if (jinja__list_push(r, l, jinja__str(s.s.p + start, i - start)))
                return -ENOMEM;
            start = i = end;
        } else {
            i = jinja__u8_next(s.s.p, s.s.len, i, &cp);
        }
    }
    if (start < s.s.len && jinja__list_push(r, l, jinja__str(s.s.p + start, s.s.len - start)))
        return -ENOMEM;
    *out = l;
    return jinja__charge(r, s.s.len / 16);
}

/* str.split / str.rsplit. sep NONE: runs of whitespace, no empty strings. */
int jinja__str_split(struct jinja_render *r, struct jinja_value s, struct jinja_value sep,
                     int64_t maxsplit, bool from_right, struct jinja_value *out)
{
    struct jinja_list *l = jinja__list_new(r, 0);
    const char *p = s.s.p;
    size_t len = s.s.len;
    int rc = 0;

    if (!l)
        return -ENOMEM;
    if (sep.type == JV_STR && !sep.s.len)
        return jinja__fail(r, "empty separator");
    if (sep.type != JV_STR && sep.type != JV_NONE)
        return jinja__fail(r, "must be str or None, not %s", jinja__type_name(sep));
    if (sep.type == JV_STR && !from_right) {
        size_t i = 0;

        while (maxsplit != 0) {
            const char *hit = memmem(p + i, len - i, sep.s.p, sep.s.len);

            if (!hit)
                break;
            if ((rc = jinja__list_push(r, l, jinja__str(p + i, (size_t)(hit - p) - i))))
                return rc;
            i = (size_t)(hit - p) + sep.s.len;
            if (maxsplit > 0)
                maxsplit--;
        }
        rc = jinja__list_push(r, l, jinja__str(p + i, len - i));
    } else if (sep.type == JV_STR) {
        /* rsplit: cut from the right, then put the pieces back in order */
        size_t e = len;

        while (maxsplit != 0 && e >= sep.s.len) {
            size_t k = e - sep.s.len + 1, found = SIZE_MAX;

            while (k-- > 0)
                if (!memcmp(p + k, sep.s.p, sep.s.len)) {
                    found = k;
                    break;
                }
            if (found == SIZE_MAX)
                break;
            if ((rc = jinja__list_push(r, l, jinja__str(p + found + sep.s.len, e - found - sep.s.len))))
                return rc;
            e = found;
            if (maxsplit > 0)
                maxsplit--;
        }
        if (!(rc = jinja__list_push(r, l, jinja__str(p, e))))
            for (size_t a = 0, b = l->len - 1; a < b; a++, b--) {
                struct jinja_value t = l->items[a];

                l->items[a] = l->items[b];
                l->items[b] = t;
            }
    } else {
        /* whitespace runs; maxsplit counts splits from the chosen side */
        struct jinja_list *parts = jinja__list_new(r, 0);
        size_t i = 0;
        int32_t cp;

        if (!parts)
            return -ENOMEM;
        while (i < len) {
            size_t w0, w1;

            while (i < len) {   /* skip whitespace */
                size_t next = jinja__u8_next(p, len, i, &cp);

                if (!jinja__py_isspace(cp))
                    break;
                i = next;
            }
            if (i >= len)
                break;
            w0 = i;
            while (i < len) {
                size_t next = jinja__u8_next(p, len, i, &cp);

                if (jinja__py_isspace(cp))
                    break;
                i = next;
            }
            w1 = i;
            if ((rc = jinja__list_push(r, parts, jinja__str(p + w0, w1 - w0))))
                return rc;
        }
        if (maxsplit < 0 || (uint64_t)maxsplit >= parts->len) {
            l = parts;
        } else if (!from_right) {
            /* the first maxsplit words, then the rest of the string from the next word on,
             * its trailing whitespace kept ('a b c '.split(maxsplit=1) is ['a', 'b c ']) */
            for (int64_t k = 0; k < maxsplit; k++)
                if ((rc = jinja__list_push(r, l, parts->items[k])))
                    return rc;
            {
                const char *rest = parts->items[maxsplit].s.p;

                rc = jinja__list_push(r, l, jinja__str(rest, (size_t)(p + len - rest)));
            }
        } else {
            size_t first = parts->len - (size_t)maxsplit;
            const struct jinja_value last = parts->items[first - 1];

            if ((rc = jinja__list_push(r, l, jinja__str(p, (size_t)(last.s.p + last.s.len - p)))))
                return rc;
            for (size_t k = first; k < parts->len; k++)
                if ((rc = jinja__list_push(r, l, parts->items[k])))
                    return rc;
        }
    }
    if (rc)
        return rc;
    *out = jinja__list_val(l, 0);
    return jinja__charge(r, len / 16);
}

int jinja__str_affix(struct jinja_render *r, struct jinja_value s, struct jinja_value what,
                     bool end, bool *res)
{
    *res = false;
    if (what.type == JV_LIST && (what.flags & JV_F_TUPLE)) {
        for (size_t i = 0; i < what.list->len && !*res; i++) {
            int rc = jinja__str_affix(r, s, what.list->items[i], end, res);

            if (rc)
                return rc;
        }
        return 0;
    }
    if (what.type != JV_STR)
        return jinja__fail(r, "%s first arg must be str or a tuple of str, not %s",
                           end ? "endswith" : "startswith", jinja__type_name(what));
    *res = what.s.len <= s.s.len &&
           !memcmp(end ? s.s.p + s.s.len - what.s.len : s.s.p, what.s.p, what.s.len);
    return 0;
}

/* str.isdigit (what 'd'), isalpha ('a'), isalnum ('n'), isspace ('s'), isupper ('u'),
 * islower ('l'), as Python: false for an empty string. */
bool jinja__str_is(struct jinja_value s, char id)
{
    bool any_cased = false;
    int kind;

    if (!s.s.len)
        return false;
    for (size_t i = 0; i < s.s.len;) {
        int32_t cp;
        utf8proc_category_t c;

        i = jinja__u8_next(s.s.p, s.s.len, i, &cp);
        c = utf8proc_category(cp);
        switch (id) {
        case 'd':
            if (c != UTF8PROC_CATEGORY_ND && c != UTF8PROC_CATEGORY_NO)
                return false;
            break;
        case 'a':
            if (c < UTF8PROC_CATEGORY_LU || c > UTF8PROC_CATEGORY_LO)
                return false;
            break;
        case 'n':
            if ((c < UTF8PROC_CATEGORY_LU || c > UTF8PROC_CATEGORY_LO) &&
                (c < UTF8PROC_CATEGORY_ND || c > UTF8PROC_CATEGORY_NO))
                return false;
            break;
        case 's':
            if (!jinja__py_isspace(cp))
                return false;
            break;
        default:
            if (is_cased(cp, &kind)) {
                if ((id == 'u' && kind != 1) || (id == 'l' && kind != 2))
                    return false;
                any_cased = true;
            }
        }
    }
    return id == 'u' || id == 'l' ? any_cased : true;
}

/* ---- str.format: {} {0} {name}, with !s / !r; no format specs ---- */

int jinja__str_format(struct jinja_render *r, struct jinja_value fmt, const struct jinja_args *a,
                      struct jinja_value *out)
{
    struct buf b = BUF_INIT;
    const char *p = fmt.s.p;
    size_t len = fmt.s.len, i = 0;
    int auto_idx = 0, rc = 0;

    while (i < len && !rc) {
        char c = p[i];

        if ((c == '{' || c == '}') && i + 1 < len && p[i + 1] == c) {
            rc = jinja__putc(r, &b, c);
            i += 2;
        } else if (c == '}') {
            rc = jinja__fail(r, "Single '}' encountered in format string");
        } else if (c == '{') {
            size_t j = i + 1, name_end;
            char conv = 's';
            struct jinja_value v = jinja__undef(NULL);

            while (j < len && p[j] != '}' && p[j] != '!' && p[j] != ':')
                j++;
            name_end = j;
            if (j < len && p[j] == '!' && j + 2 < len) {
                conv = p[j + 1];
                j += 2;
            }
            if (j >= len || p[j] != '}') {
                rc = jinja__fail(r, "format string: only {}, {N}, {name} and !s / !r are supported");
                break;
            }
            if (name_end == i + 1) {
                if (auto_idx >= a->npos) {
                    rc = jinja__fail(r,
                                     "Replacement index %d out of range for positional args tuple", auto_idx);
                    break;
                }
                v = a->pos[auto_idx++];
            } else if (p[i + 1] >= '0' && p[i + 1] <= '9') {
                int idx = atoi(p + i + 1);

                if (idx >= a->npos) {
                    rc = jinja__fail(r, "Replacement index %d out of range for positional args tuple", idx);
                    break;
                }
                v = a->pos[idx];
            } else {
                int k;

                for (k = 0; k < a->nkw; k++)
                    if (a->kw_len[k] == name_end - i - 1 && !memcmp(a->kw_name[k], p + i + 1, a->kw_len[k]))
                        break;
                if (k == a->nkw) {
                    rc = jinja__fail(r, "format string: no argument named '%.*s'",
                                     (int)MIN(name_end - i - 1, 60), p + i + 1);
                    break;
                }
                v = a->kw[k];
            }
            rc = conv == 'r' ? jinja__write_repr(r, &b, v, 0) : jinja__write_str(r, &b, v);
            i = j + 1;
        } else {
            size_t j = i;

            while (j < len && p[j] != '{' && p[j] != '}')
                j++;
            rc = jinja__put(r, &b, p + i, j - i);
            i = j;
        }
    }
    if (rc) {
        buf_fini(&b);
        return rc;
    }
    return jinja__buf_to_str(r, &b, out);
}

/* ---- printf-style: str % args ---- */

int jinja__percent_format(struct jinja_render *r, struct jinja_value fmt, struct jinja_value args,
                          struct jinja_value *out)
{
    struct buf b = BUF_INIT;
    const struct jinja_value *argv = &args;
    size_t argc = 1, used = 0, i = 0;
    const char *p = fmt.s.p;
    int rc = 0;

    if (args.type == JV_LIST && (args.flags & JV_F_TUPLE)) {
        argv = args.list->items;
        argc = args.list->len;
    }
    while (i < fmt.s.len && !rc) {
        char spec[32], tmp[512], conv;
        size_t k = 0;
        struct jinja_value v;

        if (p[i] != '%') {
            const char *pct = memchr(p + i, '%', fmt.s.len - i);
            size_t j = pct ? (size_t)(pct - p) : fmt.s.len;

            rc = jinja__put(r, &b, p + i, j - i);
            i = j;
            continue;
        }
        i++;
        spec[k++] = '%';
        if (i < fmt.s.len && p[i] == '(') {
            const char *close = memchr(p + i, ')', fmt.s.len - i);

            if (!close || args.type != JV_DICT) {
                rc = jinja__fail(r, "format requires a mapping");
                break;
            }
            if (!jinja__dict_get(args.dict, jinja__str(p + i + 1, (size_t)(close - p) - i - 1), &v)) {
                rc = jinja__fail(r, "KeyError: '%.*s'", (int)MIN((size_t)(close - p) - i - 1, 60), p + i + 1);
                break;
            }
            i = (size_t)(close - p) + 1;
            argv = &v;
            argc = 1;
            used = 0;
        }
        while (i < fmt.s.len && k < 20 && strchr("-+ #0123456789.", p[i]))
            spec[k++] = p[i++];
        spec[k] = '\0';
        if (i >= fmt.s.len) {
            rc = jinja__fail(r, "incomplete format");
            break;
        }
        conv = p[i++];
        if (conv == '%') {
            rc = jinja__putc(r, &b, '%');
            continue;
        }
        if (used >= argc) {
            rc = jinja__fail(r, "not enough arguments for format string");
            break;
        }
        v = argv[used++];
        switch (conv) {
        case 's': case 'r': {
            struct buf s = BUF_INIT;

            rc = conv == 'r' ? jinja__write_repr(r, &s, v, 0) : jinja__write_str(r, &s, v);
            if (!rc) {
                /* width and precision, in bytes (exact for ASCII) */
                int width = 0, prec = -1;
                bool left = memchr(spec, '-', k) != NULL;
                const char *dot = memchr(spec, '.', k);
                size_t n = s.len;

                for (size_t q = 1; q < k && spec[q] != '.'; q++)
                    if (spec[q] >= '1' && spec[q] <= '9') {
                        width = atoi(spec + q);
                        break;
                    }
                if (dot)
                    prec = atoi(dot + 1);
                if (prec >= 0 && (size_t)prec < n)
                    n = (size_t)prec;
                for (int pad = width - (int)n; !left && pad > 0 && !rc; pad--)
                    rc = jinja__putc(r, &b, ' ');
                if (!rc)
                    rc = jinja__put(r, &b, s.p ? s.p : "", n);
                for (int pad = width - (int)n; left && pad > 0 && !rc; pad--)
                    rc = jinja__putc(r, &b, ' ');
            }
            buf_fini(&s);
            break;
        }
        case 'd': case 'i': case 'u': case 'x': case 'X': case 'o': case 'c':
        case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': {
            bool integral = strchr("diuxXoc", conv) != NULL;
            long long iv;
            double fv;
            char full[48];
            int n;

            if (!jinja__is_num(v)) {
                rc = jinja__fail(r, "%%%c format: a real number is required, not %s", conv,
                                 jinja__type_name(v));
                break;
            }
            fv = v.type == JV_FLOAT ? v.f : (double)(v.type == JV_INT ? v.i : v.b);
            iv = v.type == JV_FLOAT ? (fabs(v.f) < 9.2e18 ? (long long)v.f : 0) : v.type == JV_INT ? v.i : v.b;
            spec[k] = '\0';
            if (strspn(spec + 1, "-+ #0") < k - 1 && atoi(spec + 1 + strspn(spec + 1, "-+ #0")) > 200) {
                rc = jinja__fail(r, "format width over 200");
                break;
            }
            snprintf(full, sizeof full, "%s%s%c", spec, integral && conv != 'c' ? "ll" : "",
                     conv == 'u' ? 'd' : conv);
            if (conv == 'c')
                n = snprintf(tmp, sizeof tmp, "%c", (char)iv);
            else if (integral)
                n = snprintf(tmp, sizeof tmp, full, iv);
            else
                n = snprintf(tmp, sizeof tmp, full, fv);
            rc = n < 0 ? jinja__fail(r, "bad format") : jinja__put(r, &b, tmp, MIN((size_t)n,
                                                                                   sizeof tmp - 1));
            break;
        }
        default:
            rc = jinja__fail(r, "unsupported format character '%c'", conv);
        }
    }
    if (!rc && args.type != JV_DICT && used < argc)
        rc = jinja__fail(r, "not all arguments converted during string formatting");
    if (rc) {
        buf_fini(&b);
        return rc;
    }
    return jinja__buf_to_str(r, &b, out);
}

