/* jinja_output.c — values as text, byte for byte as Python writes them: str() (what
 * {{ x }} prints), repr() (lists and dicts print their items that way), float repr (the
 * shortest string that reads back), and json.dumps with transformers' tojson options
 * (ensure_ascii=False, indent, separators, sort_keys). Writes go to a bounded buffer. */
#include "engine/chat_template/jinja.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <utf8proc.h>

#include "engine/base/util.h" /* MIN */

/* ---- buffer ---- */

int jinja__put(struct jinja_render *r, struct buf *b, const char *p, size_t n)
{
    size_t max = r->lim->max_output_bytes;

    if (!n)
        return 0;
    if (n > max || b->len > max - n)
        return jinja__fail(r, "the rendered text is longer than %zu bytes", max);
    /* Room for n bytes and the NUL; a first buffer starts at 256 bytes, since a render's
     * text and most captures pass 64 at once. */
    if (b->cap - b->len <= n && buf_reserve(b, b->cap ? n : MAX(n, 255)))
        return jinja__oom(r);
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int jinja__putc(struct jinja_render *r, struct buf *b, char c)
{
    return jinja__put(r, b, &c, 1);
}

static int put_str(struct jinja_render *r, struct buf *b, const char *s)
{
    return jinja__put(r, b, s, strlen(s));
}

int jinja__buf_to_str(struct jinja_render *r, struct buf *b, struct jinja_value *out)
{
    bool ok;

    *out = jinja__str_copy(r, b->p ? b->p : "", b->len, &ok);
    buf_fini(b);
    return ok ? 0 : -ENOMEM;
}

/* ---- numbers ---- */

/* Python's repr of a float into buf (32 bytes at least); returns its length. */
static size_t py_float_repr(double f, char *buf)
{
    char tmp[40], digits[24];
    int nd = 0, exp, prec;
    size_t n = 0;
    const char *p;

    if (isnan(f))
        return (size_t)sprintf(buf, "nan");
    if (isinf(f))
        return (size_t)sprintf(buf, f > 0 ? "inf" : "-inf");
    if (f == 0)
        return (size_t)sprintf(buf, signbit(f) ? "-0.0" : "0.0");
    /* The shortest digit string that reads back to f, as Python's repr picks. */
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f)
            break;
    }
    p = tmp;
    if (*p == '-') {
        buf[n++] = '-';
        p++;
    }
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[nd++] = *p;
    exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    if (exp < -4 || exp >= 16) {
        buf[n++] = digits[0];
        if (nd > 1) {
            buf[n++] = '.';
            memcpy(buf + n, digits + 1, (size_t)nd - 1);
            n += (size_t)nd - 1;
        }
        n += (size_t)sprintf(buf + n, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    } else if (exp >= 0) {
        for (int i = 0; i <= exp; i++)
            buf[n++] = i < nd ? digits[i] : '0';
        buf[n++] = '.';
        if (nd > exp + 1) {
            memcpy(buf + n, digits + exp + 1, (size_t)(nd - exp - 1));
            n += (size_t)(nd - exp - 1);
        } else {
            buf[n++] = '0';
        }
    } else {
        buf[n++] = '0';
        buf[n++] = '.';
        for (int i = 0; i < -exp - 1; i++)
            buf[n++] = '0';
        memcpy(buf + n, digits, (size_t)nd);
        n += (size_t)nd;
    }
    buf[n] = '\0';
    return n;
}

static int put_int(struct jinja_render *r, struct buf *b, int64_t i)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRId64, i);

    return jinja__put(r, b, tmp, (size_t)n);
}

static int put_float(struct jinja_render *r, struct buf *b, double f)
{
    char tmp[40];
    size_t n = py_float_repr(f, tmp);

    return jinja__put(r, b, tmp, n);
}

/* ---- repr ---- */

static bool py_isprintable(int32_t cp)
{
    if (cp < 0x80)
        return cp >= 0x20 && cp < 0x7f;
    if (cp >= 0xdc80 && cp <= 0xdcff)
        return false;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO: case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
        return false;
    default:
        return true;
    }
}

static int repr_str(struct jinja_render *r, struct buf *b, const char *p, size_t len)
{
    bool sq = memchr(p, '\'', len) != NULL, dq = memchr(p, '"', len) != NULL;
    char quote = sq && !dq ? '"' : '\'';
    int rc = jinja__putc(r, b, quote);

    for (size_t i = 0, next; i < len && !rc; i = next) {
        int32_t cp;
        char tmp[12];

        next = jinja__u8_next(p, len, i, &cp);
        if (cp == quote || cp == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)cp;
            rc = jinja__put(r, b, tmp, 2);
        } else if (cp == '\n') {
            rc = jinja__put(r, b, "\\n", 2);
        } else if (cp == '\r') {
            rc = jinja__put(r, b, "\\r", 2);
        } else if (cp == '\t') {
            rc = jinja__put(r, b, "\\t", 2);
        } else if (py_isprintable(cp)) {
            rc = jinja__put(r, b, p + i, next - i);
        } else if (cp <= 0xff || (cp >= 0xdc80 && cp <= 0xdcff)) {
            rc = jinja__put(r, b, tmp, (size_t)sprintf(tmp, "\\x%02x", cp <= 0xff ? cp : cp - 0xdc00));
        } else if (cp <= 0xffff) {
            rc = jinja__put(r, b, tmp, (size_t)sprintf(tmp, "\\u%04x", cp));
        } else {
            rc = jinja__put(r, b, tmp, (size_t)sprintf(tmp, "\\U%08x", cp));
        }
    }
    return rc ? rc : jinja__putc(r, b, quote);
}

static int repr_dict(struct jinja_render *r, struct buf *b, const struct jinja_dict *d, int depth)
{
    int rc = jinja__putc(r, b, '{');

    for (size_t i = 0; i < d->len && !rc; i++) {
        if (i)
            rc = jinja__put(r, b, ", ", 2);
        if (!rc)
            rc = jinja__write_repr(r, b, d->keys[i], depth + 1);
        if (!rc)
            rc = jinja__put(r, b, ": ", 2);
        if (!rc)
            rc = jinja__write_repr(r, b, d->vals[i], depth + 1);
    }
    return rc ? rc : jinja__putc(r, b, '}');
}

int jinja__write_repr(struct jinja_render *r, struct buf *b, struct jinja_value v, int depth)
{
    int rc;

    if (depth > r->lim->max_depth)
        return jinja__fail(r, "value nested too deeply to print");
    if ((rc = jinja__charge(r, 1)))
        return rc;
    switch (v.type) {
    case JV_UNDEF:
        return put_str(r, b, "Undefined");
    case JV_STR:
        return repr_str(r, b, v.s.p, v.s.len);
    case JV_LIST: {
        bool tuple = v.flags & JV_F_TUPLE;

        if (v.flags & JV_F_GEN)
            return put_str(r, b, "<generator object>");
        if (v.flags & JV_F_VIEW) {
            struct jinja_value plain = jinja__list_val(v.list, 0);

            if ((rc = put_str(r, b, jinja__type_name(v))) || (rc = jinja__putc(r, b, '(')) ||
                (rc = jinja__write_repr(r, b, plain, depth + 1)))
                return rc;
            return jinja__putc(r, b, ')');
        }
        rc = jinja__putc(r, b, tuple ? '(' : '[');
        for (size_t i = 0; i < v.list->len && !rc; i++) {
            if (i)
                rc = jinja__put(r, b, ", ", 2);
            if (!rc)
                rc = jinja__write_repr(r, b, v.list->items[i], depth + 1);
        }
        if (!rc && tuple && v.list->len == 1)
            rc = jinja__putc(r, b, ',');
        return rc ? rc : jinja__putc(r, b, tuple ? ')' : ']');
    }
    case JV_DICT:
        return repr_dict(r, b, v.dict, depth);
    case JV_NS:
        if ((rc = put_str(r, b, "<Namespace ")) || (rc = repr_dict(r, b, v.dict, depth)))
            return rc;
        return jinja__putc(r, b, '>');
    default:
        return jinja__write_str(r, b, v);
    }
}

int jinja__write_str(struct jinja_render *r, struct buf *b, struct jinja_value v)
{
    char tmp[64];

    switch (v.type) {
    case JV_UNDEF: return 0;
    case JV_NONE: return jinja__put(r, b, "None", 4);
    case JV_BOOL: return v.b ? jinja__put(r, b, "True", 4) : jinja__put(r, b, "False", 5);
    case JV_INT: return put_int(r, b, v.i);
    case JV_FLOAT: return put_float(r, b, v.f);
    case JV_STR: return jinja__put(r, b, v.s.p, v.s.len);
    case JV_LIST: case JV_DICT: case JV_NS: return jinja__write_repr(r, b, v, 0);
    case JV_MACRO:
        snprintf(tmp, sizeof tmp, "<Macro '%.*s'>", (int)MIN(v.closure->macro->len, 40),
                 v.closure->macro->name);
        return put_str(r, b, tmp);
    case JV_LOOP:
        snprintf(tmp, sizeof tmp, "<LoopContext %zu/%zu>", v.loop->index0 + 1, v.loop->items->len);
        return put_str(r, b, tmp);
    default:
        return put_str(r, b, "<built-in method>");
    }
}

int jinja__to_str(struct jinja_render *r, struct jinja_value v, struct jinja_value *out)
{
    struct buf b = BUF_INIT;
    int rc;

    if (v.type == JV_STR) {
        *out = v;
        out->flags &= JV_F_SAFE;
        return 0;
    }
    if ((rc = jinja__write_str(r, &b, v))) {
        buf_fini(&b);
        return rc;
    }
    return jinja__buf_to_str(r, &b, out);
}

/* ---- json.dumps ---- */

static int json_str(struct jinja_render *r, struct buf *b, const char *p, size_t len, bool ascii)
{
    int rc = jinja__putc(r, b, '"');
    size_t run = 0;   /* start of bytes not yet written */

    for (size_t i = 0, next; i < len && !rc; i = next) {
        unsigned char c = (unsigned char)p[i];
        int32_t cp = c;
        char tmp[16];
        const char *esc = NULL;
        size_t n = 0;

        next = c < 0x80 ? i + 1 : jinja__u8_next(p, len, i, &cp);
        switch (cp) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (cp < 0x20 || (ascii && cp >= 0x7f)) {
                if (cp >= 0xdc80 && cp <= 0xdcff && !ascii)
                    continue;   /* a stray byte goes out as it came in */
                if (cp > 0xffff) {
                    int32_t v = cp - 0x10000;

                    n = (size_t)sprintf(tmp, "\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
                } else {
                    n = (size_t)sprintf(tmp, "\\u%04x", cp);
                }
                esc = tmp;
            }
        }
        if (!esc)
            continue;
        rc = jinja__put(r, b, p + run, i - run);
        if (!rc)
            rc = jinja__put(r, b, esc, n ? n : strlen(esc));
        run = next;
    }
    if (!rc)
        rc = jinja__put(r, b, p + run, len - run);
    return rc ? rc : jinja__putc(r, b, '"');
}

static int json_newline(struct jinja_render *r, struct buf *b, const struct jinja_json_opts *o, int level)
{
    int rc = jinja__putc(r, b, '\n');

    for (int i = 0; i < level && !rc; i++)
        rc = put_str(r, b, o->indent);
    return rc;
}

/* A dict key as json.dumps converts it. */
static int json_key(struct jinja_render *r, struct buf *b, struct jinja_value k,
                    const struct jinja_json_opts *o)
{
    struct buf tmp = BUF_INIT;
    int rc;

    switch (k.type) {
    case JV_STR:
        return json_str(r, b, k.s.p, k.s.len, o->ensure_ascii);
    case JV_NONE:
        return put_str(r, b, "\"null\"");
    case JV_BOOL:
        return put_str(r, b, k.b ? "\"true\"" : "\"false\"");
    case JV_INT: case JV_FLOAT:
        if (k.type == JV_FLOAT && (isnan(k.f) || isinf(k.f)))
            rc = put_str(r, &tmp, isnan(k.f) ? "NaN" : k.f > 0 ? "Infinity" : "-Infinity");
        else
            rc = jinja__write_str(r, &tmp, k);
        if (!rc)
            rc = json_str(r, b, tmp.p, tmp.len, false);
        buf_fini(&tmp);
        return rc;
    default:
        return jinja__fail(r, "keys must be str, int, float, bool or None, not %s", jinja__type_name(k));
    }
}

static int key_less(struct jinja_render *r, struct jinja_value a, struct jinja_value b, void *ctx, bool *out)
{
    (void)ctx;
    return jinja__lt(r, a, b, out);
}

static int json_dict(struct jinja_render *r, struct buf *b, const struct jinja_dict *d,
                     const struct jinja_json_opts *o, int level)
{
    const struct jinja_value *keys = d->keys;
    int rc;

    if (!d->len)
        return jinja__put(r, b, "{}", 2);
    if (o->sort_keys) {
        struct jinja_value *sorted = jinja__alloc(r, d->len * sizeof *sorted);

        if (!sorted)
            return -ENOMEM;
        memcpy(sorted, d->keys, d->len * sizeof *sorted);
        if ((rc = jinja__sort(r, sorted, d->len, key_less, NULL)))
            return rc;
        keys = sorted;
    }
    rc = jinja__putc(r, b, '{');
    for (size_t i = 0; i < d->len && !rc; i++) {
        struct jinja_value val = jinja__none();

        jinja__dict_get(d, keys[i], &val);
        if (i)
            rc = put_str(r, b, o->item_sep);
        if (!rc && o->indent)
            rc = json_newline(r, b, o, level + 1);
        if (!rc)
            rc = json_key(r, b, keys[i], o);
        if (!rc)
            rc = put_str(r, b, o->key_sep);
        if (!rc)
            rc = jinja__write_json(r, b, val, o, level + 1);
    }
    if (!rc && o->indent)
        rc = json_newline(r, b, o, level);
    return rc ? rc : jinja__putc(r, b, '}');
}

int jinja__write_json(struct jinja_render *r, struct buf *b, struct jinja_value v,
                      const struct jinja_json_opts *o, int level)
{
    int rc;

    if (level > r->lim->max_depth)
        return jinja__fail(r, "value nested too deeply for tojson");
    if ((rc = jinja__charge(r, 1)))
        return rc;
    switch (v.type) {
    case JV_NONE: return jinja__put(r, b, "null", 4);
    case JV_BOOL: return v.b ? jinja__put(r, b, "true", 4) : jinja__put(r, b, "false", 5);
    case JV_INT: return put_int(r, b, v.i);
    case JV_FLOAT:
        if (isnan(v.f))
            return put_str(r, b, "NaN");
        if (isinf(v.f))
            return put_str(r, b, v.f > 0 ? "Infinity" : "-Infinity");
        return put_float(r, b, v.f);
    case JV_STR: return json_str(r, b, v.s.p, v.s.len, o->ensure_ascii);
    case JV_DICT: return json_dict(r, b, v.dict, o, level);
    case JV_LIST:
        if (!(v.flags & (JV_F_GEN | JV_F_VIEW))) {
            if (!v.list->len)
                return jinja__put(r, b, "[]", 2);
            rc = jinja__putc(r, b, '[');
            for (size_t i = 0; i < v.list->len && !rc; i++) {
                if (i)
                    rc = put_str(r, b, o->item_sep);
                if (!rc && o->indent)
                    rc = json_newline(r, b, o, level + 1);
                if (!rc)
                    rc = jinja__write_json(r, b, v.list->items[i], o, level + 1);
            }
            if (!rc && o->indent)
                rc = json_newline(r, b, o, level);
            return rc ? rc : jinja__putc(r, b, ']');
        }
        return jinja__fail(r, "Object of type %s is not JSON serializable", jinja__type_name(v));
    default:
        return jinja__fail(r, "Object of type %s is not JSON serializable", jinja__type_name(v));
    }
}
