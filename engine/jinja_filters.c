/* jinja_filters.c — Jinja's filters and tests as chat templates use them, with Jinja 3.1's
 * semantics (map/select/selectattr/unique give generators, sort and unique ignore case by
 * default, default() only replaces Undefined unless told otherwise) and transformers'
 * tojson (json.dumps with ensure_ascii=False, indent, separators, sort_keys). The parser
 * resolves names to table indices; unknown names fail when the template loads. */
#include "engine/jinja.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/util.h" /* ARRAY_LEN, MIN */

/* Binds a filter's arguments after its input; names[] lists the parameters. */
#define BIND(fname, ...)                                                                     \
    do {                                                                                     \
        static const char *const names_[] = { __VA_ARGS__ };                                 \
        if ((rc = jargs_bind(r, fname, a, names_, (int)ARRAY_LEN(names_), v, given)))        \
            return rc;                                                                       \
    } while (0)

static int iter(struct jinja_render *r, struct jv in, struct jv_list **out)
{
    return jv_iterate(r, in, out);
}

static int str_of(struct jinja_render *r, struct jv in, struct jv *out)
{
    return jv_to_str(r, in, out);
}

static struct jv gen(struct jv_list *l)
{
    return jv_list_val(l, JV_F_GEN);
}

/* Jinja's make_attrgetter: "a.b.0" walks item lookups; missing gives Undefined. */
static int attr_get(struct jinja_render *r, struct jv item, struct jv attr, struct jv *out)
{
    const char *p, *end;
    int rc;

    if (attr.type == JV_INT)
        return jinja_getitem(r, item, attr, out);
    if (attr.type != JV_STR)
        return jr_fail(r, "attribute must be a string or an integer, not %s", jv_type_name(attr));
    p = attr.s.p;
    end = p + attr.s.len;
    for (;;) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t n = dot ? (size_t)(dot - p) : (size_t)(end - p);
        struct jv key = jv_str(p, n);
        bool digits = n > 0;

        for (size_t i = 0; i < n; i++)
            digits = digits && p[i] >= '0' && p[i] <= '9';
        if (digits && n < 18)
            key = jv_int(strtoll(p, NULL, 10));
        if ((rc = jinja_getitem(r, item, key, &item)))
            return rc;
        if (!dot)
            break;
        p = dot + 1;
    }
    *out = item;
    return 0;
}

/* Python's lower() on strings, for the case-insensitive sort, unique, min and max. */
static int fold(struct jinja_render *r, struct jv v, bool case_sensitive, struct jv *out)
{
    if (v.type == JV_STR && !case_sensitive)
        return jstr_case(r, v, JCASE_LOWER, out);
    *out = v;
    return 0;
}

/* ---- sorting by a key ---- */

struct keyed { struct jv key, item; };

static int keyed_less(struct jinja_render *r, struct jv a, struct jv b, void *ctx, bool *out)
{
    (void)ctx;
    return jv_lt(r, a.list->items[0], b.list->items[0], out);
}

/* Sorts items by key(item) = fold(attribute of item); stable, as sorted(). */
static int sort_items(struct jinja_render *r, struct jv_list *in, struct jv attribute, bool case_sensitive,
                      bool reverse, struct jv_list **out)
{
    struct jv_list *pairs = jv_list_new(r, in->len), *res;
    int rc;

    if (!pairs || !(res = jv_list_new(r, in->len)))
        return -ENOMEM;
    for (size_t i = 0; i < in->len; i++) {
        struct jv_list *p = jv_list_new(r, 2);
        struct jv k = in->items[i];

        if (!p)
            return -ENOMEM;
        if ((attribute.type != JV_UNDEF && attribute.type != JV_NONE && (rc = attr_get(r, k, attribute, &k))) ||
            (rc = fold(r, k, case_sensitive, &k)))
            return rc;
        p->items[0] = k;
        p->items[1] = in->items[i];
        p->len = 2;
        /* reverse=True keeps equal items in order, as sorted(reverse=True) does */
        pairs->items[reverse ? in->len - 1 - i : i] = jv_list_val(p, JV_F_TUPLE);
    }
    pairs->len = in->len;
    if ((rc = jv_sort(r, pairs->items, pairs->len, keyed_less, NULL)))
        return rc;
    for (size_t i = 0; i < in->len; i++)
        res->items[i] = pairs->items[reverse ? in->len - 1 - i : i].list->items[1];
    res->len = in->len;
    *out = res;
    return 0;
}

/* ---- filters ---- */

typedef int filter_fn(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out);

static int f_abs(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    (void)a;
    if (in.type == JV_INT || in.type == JV_BOOL) {
        int64_t i = in.type == JV_INT ? in.i : in.b;

        if (i == INT64_MIN)
            return jr_fail(r, "integer overflow");
        *out = jv_int(i < 0 ? -i : i);
        return 0;
    }
    if (in.type == JV_FLOAT) {
        *out = jv_float(fabs(in.f));
        return 0;
    }
    if (in.type == JV_UNDEF)
        return jr_undefined(r, in);
    return jr_fail(r, "bad operand type for abs(): '%s'", jv_type_name(in));
}

static int f_attr(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv v[1];
    bool given[1];
    int rc, status;

    BIND("attr", "name");
    if (v[0].type != JV_STR)
        return jr_fail(r, "attribute name must be a string");
    if (in.type == JV_DICT) {
        /* getattr, not the item: a dict key is no attribute */
        if (!jinja_method_find(r, in, v[0].s.p, v[0].s.len, out, &status))
            *out = jinja_undef(r, "'dict object' has no attribute '%.*s'", (int)MIN(v[0].s.len, 60), v[0].s.p);
        return status;
    }
    return jinja_getattr(r, in, v[0].s.p, v[0].s.len, out);
}

static int f_capitalize(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    int rc = str_of(r, in, &in);

    (void)a;
    return rc ? rc : jstr_case(r, in, JCASE_CAPITALIZE, out);
}

static int f_lower(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    int rc = str_of(r, in, &in);

    (void)a;
    return rc ? rc : jstr_case(r, in, JCASE_LOWER, out);
}

static int f_upper(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    int rc = str_of(r, in, &in);

    (void)a;
    return rc ? rc : jstr_case(r, in, JCASE_UPPER, out);
}

static int f_title(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    int rc = str_of(r, in, &in);

    (void)a;
    return rc ? rc : jstr_case(r, in, JCASE_TITLE_JINJA, out);
}

static int f_default(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv v[2];
    bool given[2];
    int rc;

    BIND("default", "default_value", "boolean");
    if (in.type == JV_UNDEF || (given[1] && jv_truthy(v[1]) && !jv_truthy(in)))
        *out = given[0] ? v[0] : jv_str("", 0);
    else
        *out = in;
    return 0;
}

static int f_dictsort(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv v[3], items;
    bool given[3];
    struct jv_list *l;
    int rc;

    BIND("dictsort", "case_sensitive", "by", "reverse");
    if (in.type != JV_DICT)
        return in.type == JV_UNDEF ? jr_undefined(r, in) : jr_fail(r, "dictsort needs a mapping");
    {
        struct jcall_args none = { 0 };
        struct jv fn;
        int status;

        jinja_method_find(r, in, "items", 5, &fn, &status);
        if (status || (rc = jinja_call(r, fn, &none, &items)))
            return status ? status : rc;
    }
    if (given[1] && (v[1].type != JV_STR || (!(v[1].s.len == 3 && !memcmp(v[1].s.p, "key", 3)) &&
                                             !(v[1].s.len == 5 && !memcmp(v[1].s.p, "value", 5)))))
        return jr_fail(r, "You can only sort by either \"key\" or \"value\"");
    if ((rc = sort_items(r, items.list, jv_int(given[1] && v[1].s.len == 5 ? 1 : 0),
                         given[0] && jv_truthy(v[0]), given[2] && jv_truthy(v[2]), &l)))
        return rc;
    *out = jv_list_val(l, 0);
    return 0;
}

static int f_escape(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jbuf b = { .max = r->lim->max_output_bytes };
    bool ok;
    int rc = 0;

    (void)a;
    if (in.type == JV_STR && (in.flags & JV_F_SAFE)) {
        *out = in;
        return 0;
    }
    if ((rc = str_of(r, in, &in)))
        return rc;
    for (size_t i = 0; i < in.s.len && !rc; i++) {
        switch (in.s.p[i]) {
        case '&': rc = jbuf_put(r, &b, "&amp;", 5); break;
        case '<': rc = jbuf_put(r, &b, "&lt;", 4); break;
        case '>': rc = jbuf_put(r, &b, "&gt;", 4); break;
        case '"': rc = jbuf_put(r, &b, "&#34;", 5); break;
        case '\'': rc = jbuf_put(r, &b, "&#39;", 5); break;
        default: rc = jbuf_putc(r, &b, in.s.p[i]);
        }
    }
    if (!rc)
        *out = jv_str_copy(r, b.p ? b.p : "", b.len, &ok), rc = ok ? 0 : -ENOMEM;
    jbuf_fini(&b);
    out->flags |= JV_F_SAFE;
    return rc;
}

static int f_safe(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    int rc = str_of(r, in, out);

    (void)a;
    out->flags |= JV_F_SAFE;
    return rc;
}

static int f_first_last(struct jinja_render *r, struct jv in, bool last, struct jv *out)
{
    struct jv_list *l;
    int rc;

    if (last && in.type == JV_LIST && (in.flags & JV_F_GEN))
        return jr_fail(r, "'generator' object is not reversible");
    if ((rc = iter(r, in, &l)))
        return rc;
    if (!l->len)
        *out = jinja_undef(r, "No %s item, sequence was empty.", last ? "last" : "first");
    else
        *out = l->items[last ? l->len - 1 : 0];
    return 0;
}

static int f_first(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    (void)a;
    return f_first_last(r, in, false, out);
}

static int f_last(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    (void)a;
    return f_first_last(r, in, true, out);
}

/* Python's float() of a str: strip, then a decimal number, inf or nan. */
static bool parse_float(struct jv s, double *out)
{
    char buf[128], *end;
    struct jv t = s;
    size_t b = 0, e = t.s.len;

    while (b < e && py_isspace((unsigned char)t.s.p[b]))
        b++;
    while (e > b && py_isspace((unsigned char)t.s.p[e - 1]))
        e--;
    if (e == b || e - b >= sizeof buf)
        return false;
    memcpy(buf, t.s.p + b, e - b);
    buf[e - b] = '\0';
    if (strchr(buf, 'x') || strchr(buf, 'X') || strchr(buf, '_'))
        return false;
    *out = strtod(buf, &end);
    return *end == '\0';
}

static int f_float(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv v[1];
    bool given[1];
    double d;
    int rc;

    BIND("float", "default");
    if (jv_is_num(in))
        *out = jv_float(in.type == JV_FLOAT ? in.f : in.type == JV_INT ? (double)in.i : in.b);
    else if (in.type == JV_STR && parse_float(in, &d))
        *out = jv_float(d);
    else
        *out = given[0] ? v[0] : jv_float(0.0);
    return 0;
}

static int f_int(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv v[2];
    bool given[2];
    double d;
    int rc;

    BIND("int", "default", "base");
    *out = given[0] ? v[0] : jv_int(0);
    if (in.type == JV_INT || in.type == JV_BOOL) {
        *out = jv_int(in.type == JV_INT ? in.i : in.b);
    } else if (in.type == JV_FLOAT) {
        if (isfinite(in.f) && fabs(in.f) < 9.2e18)
            *out = jv_int((int64_t)in.f);
    } else if (in.type == JV_STR) {
        char buf[80], *end;
        size_t b = 0, e = in.s.len, n = 0;
        int base = 10;

        if (given[1] && (v[1].type != JV_INT || v[1].i < 2 || v[1].i > 36))
            return jr_fail(r, "int() base must be >= 2 and <= 36");
        if (given[1])
            base = (int)v[1].i;
        while (b < e && py_isspace((unsigned char)in.s.p[b]))
            b++;
        while (e > b && py_isspace((unsigned char)in.s.p[e - 1]))
            e--;
        /* Python drops a single underscore between two digits: int("1_000") is 1000 */
        for (size_t i = b; i < e && n < sizeof buf - 1; i++)
            if (in.s.p[i] != '_' || !(i > b && i + 1 < e && isalnum((unsigned char)in.s.p[i - 1]) &&
                                      isalnum((unsigned char)in.s.p[i + 1])))
                buf[n++] = in.s.p[i];
        buf[n] = '\0';
        if (n && e - b < sizeof buf - 1) {
            long long x;

            errno = 0;
            x = strtoll(buf, &end, base);
            if (*end == '\0' && !errno && !py_isspace((unsigned char)buf[0]))
                *out = jv_int(x);
            else if (parse_float(in, &d) && isfinite(d) && fabs(d) < 9.2e18)
                *out = jv_int((int64_t)d);
        }
    }
    return 0;
}

static int f_indent(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv v[3], ind;
    bool given[3];
    struct jv_list *lines;
    struct jbuf b = { .max = r->lim->max_output_bytes };
    int rc;

    BIND("indent", "width", "first", "blank");
    if ((rc = str_of(r, in, &in)))
        return rc;
    if (given[0] && v[0].type == JV_STR) {
        ind = v[0];
    } else {
        int64_t w = given[0] ? (v[0].type == JV_INT ? v[0].i : v[0].type == JV_BOOL ? v[0].b : -1) : 4;
        char *sp;

        if (w < 0 || w > 4096)
            return jr_fail(r, "indent width must be an int between 0 and 4096 or a string");
        if (!(sp = jr_alloc(r, (size_t)w + 1)))
            return -ENOMEM;
        memset(sp, ' ', (size_t)w);
        ind = jv_str(sp, (size_t)w);
    }
    /* s += "\n", then splitlines: the quirk that drops one trailing newline */
    {
        char *s = jr_alloc(r, in.s.len + 2);

        if (!s)
            return -ENOMEM;
        memcpy(s, in.s.p, in.s.len);
        s[in.s.len] = '\n';
        in = jv_str(s, in.s.len + 1);
    }
    if ((rc = jstr_splitlines(r, in, &lines)))
        return rc;
    for (size_t i = 0; i < lines->len && !rc; i++) {
        struct jv line = lines->items[i];
        bool pad = given[2] && jv_truthy(v[2]) ? (i > 0) : (i > 0 && line.s.len);

        if (i)
            rc = jbuf_putc(r, &b, '\n');
        if (!rc && pad)
            rc = jbuf_put(r, &b, ind.s.p, ind.s.len);
        if (!rc)
            rc = jbuf_put(r, &b, line.s.p, line.s.len);
    }
    if (!rc && given[1] && jv_truthy(v[1])) {
        struct jbuf c = { .max = r->lim->max_output_bytes };

        if (!(rc = jbuf_put(r, &c, ind.s.p, ind.s.len)))
            rc = jbuf_put(r, &c, b.p ? b.p : "", b.len);
        jbuf_fini(&b);
        b = c;
    }
    if (!rc) {
        bool ok;

        *out = jv_str_copy(r, b.p ? b.p : "", b.len, &ok);
        rc = ok ? 0 : -ENOMEM;
    }
    jbuf_fini(&b);
    return rc;
}

static int f_items(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jcall_args none = { 0 };
    struct jv fn;
    int status, rc;

    (void)a;
    if (in.type == JV_UNDEF) {
        struct jv_list *l = jv_list_new(r, 0);

        *out = l ? gen(l) : jv_none();
        return l ? 0 : -ENOMEM;
    }
    if (in.type != JV_DICT)
        return jr_fail(r, "Can only get item pairs from a mapping.");
    jinja_method_find(r, in, "items", 5, &fn, &status);
    if (status || (rc = jinja_call(r, fn, &none, out)))
        return status ? status : rc;
    out->flags = JV_F_GEN;
    return 0;
}

static int f_join(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv v[2];
    bool given[2], ok;
    struct jv_list *l;
    struct jbuf b = { .max = r->lim->max_output_bytes };
    int rc;

    BIND("join", "d", "attribute");
    if ((rc = iter(r, in, &l)))
        return rc;
    if (given[0] && (rc = str_of(r, v[0], &v[0])))
        return rc;
    for (size_t i = 0; i < l->len && !rc; i++) {
        struct jv item = l->items[i];

        if (i && given[0])
            rc = jbuf_put(r, &b, v[0].s.p, v[0].s.len);
        if (!rc && given[1] && v[1].type != JV_NONE)
            rc = attr_get(r, item, v[1], &item);
        if (!rc)
            rc = jv_write_str(r, &b, item);
    }
    if (!rc) {
        *out = jv_str_copy(r, b.p ? b.p : "", b.len, &ok);
        rc = ok ? 0 : -ENOMEM;
    }
    jbuf_fini(&b);
    return rc;
}

static int f_length(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    (void)a;
    switch (in.type) {
    case JV_UNDEF: *out = jv_int(0); return 0;
    case JV_STR: *out = jv_int((int64_t)u8_count(in.s.p, in.s.len)); return jr_charge(r, in.s.len / 64);
    case JV_DICT: case JV_NS:
        if (in.type == JV_NS)
            break;
        *out = jv_int((int64_t)in.dict->len);
        return 0;
    case JV_LIST:
        if (in.flags & JV_F_GEN)
            break;
        *out = jv_int((int64_t)in.list->len);
        return 0;
    case JV_LOOP: *out = jv_int((int64_t)in.loop->items->len); return 0;
    default: break;
    }
    return jr_fail(r, "object of type '%s' has no len()", jv_type_name(in));
}

static int f_list(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv_list *l, *copy;
    int rc;

    (void)a;
    if ((rc = iter(r, in, &l)))
        return rc;
    if (!(copy = jv_list_new(r, l->len)))
        return -ENOMEM;
    memcpy(copy->items, l->items, l->len * sizeof *l->items);
    copy->len = l->len;
    *out = jv_list_val(copy, 0);
    return jr_charge(r, l->len);
}

/* select / reject / selectattr / rejectattr: keep items whose test result is `keep`. */
static int filter_by_test(struct jinja_render *r, struct jv in, const struct jcall_args *a, bool attr,
                          bool keep, struct jv *out)
{
    struct jv_list *l, *res;
    struct jcall_args targs = { 0 };
    int test = -1, first = attr ? 1 : 0, rc;
    struct jv attribute = attr && a->npos > 0 ? a->pos[0] : jv_undef(NULL);

    if (attr && a->npos < 1)
        return jr_fail(r, "selectattr/rejectattr need an attribute name");
    if (a->nkw)
        return jr_fail(r, "select filters take no keyword arguments");
    if (a->npos > first) {
        struct jv name = a->pos[first];

        if (name.type != JV_STR || (test = jinja_test_find(name.s.p, name.s.len)) < 0)
            return jr_fail(r, "No test named %s.", name.type == JV_STR ? "given" : "that is not a string");
        for (int i = first + 1; i < a->npos; i++)
            targs.pos[targs.npos++] = a->pos[i];
    }
    if ((rc = iter(r, in, &l)))
        return rc;
    if (!(res = jv_list_new(r, l->len)))
        return -ENOMEM;
    for (size_t i = 0; i < l->len; i++) {
        struct jv item = l->items[i];
        bool ok;

        if ((rc = jr_charge(r, 1)) || (attr && (rc = attr_get(r, item, attribute, &item))))
            return rc;
        if (test >= 0) {
            if ((rc = jinja_test_apply(r, test, item, &targs, &ok)))
                return rc;
        } else {
            ok = jv_truthy(item);
        }
        if (ok == keep)
            res->items[res->len++] = l->items[i];
    }
    *out = gen(res);
    return 0;
}

static int f_select(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    return filter_by_test(r, in, a, false, true, out);
}

static int f_reject(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    return filter_by_test(r, in, a, false, false, out);
}

static int f_selectattr(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    return filter_by_test(r, in, a, true, true, out);
}

static int f_rejectattr(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    return filter_by_test(r, in, a, true, false, out);
}

static int f_map(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv_list *l, *res;
    struct jcall_args fargs = { 0 };
    struct jv attribute = jv_undef(NULL), dflt = jv_undef(NULL);
    bool by_attr = false;
    int filter = -1, rc;

    for (int k = 0; k < a->nkw; k++) {
        if (a->kw_len[k] == 9 && !memcmp(a->kw_name[k], "attribute", 9))
            attribute = a->kw[k], by_attr = true;
        else if (a->kw_len[k] == 7 && !memcmp(a->kw_name[k], "default", 7))
            dflt = a->kw[k];
        else if (!by_attr && a->npos)
            fargs.kw_name[fargs.nkw] = a->kw_name[k], fargs.kw_len[fargs.nkw] = a->kw_len[k],
            fargs.kw[fargs.nkw++] = a->kw[k];
        else
            return jr_fail(r, "Unexpected keyword argument '%.*s'", (int)MIN(a->kw_len[k], 60), a->kw_name[k]);
    }
    if (!by_attr) {
        if (!a->npos)
            return jr_fail(r, "map requires a filter argument");
        if (a->pos[0].type != JV_STR || (filter = jinja_filter_find(a->pos[0].s.p, a->pos[0].s.len)) < 0)
            return jr_fail(r, "No filter named %s.", a->pos[0].type == JV_STR ? "given" : "that is not a string");
        for (int i = 1; i < a->npos; i++)
            fargs.pos[fargs.npos++] = a->pos[i];
    }
    if ((rc = iter(r, in, &l)))
        return rc;
    if (!(res = jv_list_new(r, l->len)))
        return -ENOMEM;
    for (size_t i = 0; i < l->len; i++) {
        struct jv v;

        if ((rc = jr_charge(r, 1)))
            return rc;
        if (by_attr) {
            if ((rc = attr_get(r, l->items[i], attribute, &v)))
                return rc;
            if (v.type == JV_UNDEF && dflt.type != JV_UNDEF)
                v = dflt;
        } else if ((rc = jinja_filter_apply(r, filter, l->items[i], &fargs, &v))) {
            return rc;
        }
        res->items[res->len++] = v;
    }
    *out = gen(res);
    return 0;
}

static int f_replace(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv v[3];
    bool given[3];
    int64_t count = -1;
    int rc;

    BIND("replace", "old", "new", "count");
    if (!given[0] || !given[1])
        return jr_fail(r, "replace() needs old and new");
    if ((rc = str_of(r, in, &in)) || (rc = str_of(r, v[0], &v[0])) || (rc = str_of(r, v[1], &v[1])))
        return rc;
    if (given[2] && v[2].type != JV_NONE) {
        if (v[2].type != JV_INT)
            return jr_fail(r, "replace() count must be an integer");
        count = v[2].i;
    }
    return jstr_replace(r, in, v[0], v[1], count, out);
}

static int f_reverse(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv_list *l, *res;
    int rc;

    (void)a;
    if (in.type == JV_STR) {
        char *s = jr_alloc(r, in.s.len + 1);
        size_t o = in.s.len;
        int32_t cp;

        if (!s)
            return -ENOMEM;
        for (size_t i = 0, next; i < in.s.len; i = next) {
            next = u8_next(in.s.p, in.s.len, i, &cp);
            o -= next - i;
            memcpy(s + o, in.s.p + i, next - i);
        }
        *out = jv_str(s, in.s.len);
        return jr_charge(r, in.s.len / 16);
    }
    if ((rc = iter(r, in, &l)))
        return rc;
    if (!(res = jv_list_new(r, l->len)))
        return -ENOMEM;
    for (size_t i = 0; i < l->len; i++)
        res->items[i] = l->items[l->len - 1 - i];
    res->len = l->len;
    *out = gen(res);   /* reversed() is an iterator: no len(), always true */
    return jr_charge(r, l->len);
}

static int f_round(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv v[2];
    bool given[2];
    int64_t prec = 0;
    double x, m, y;
    const char *method = "common";
    int rc;

    BIND("round", "precision", "method");
    if (given[0] && (v[0].type != JV_INT || v[0].i < -300 || v[0].i > 300))
        return jr_fail(r, "round() precision must be an integer");
    prec = given[0] ? v[0].i : 0;
    if (given[1]) {
        if (v[1].type != JV_STR || (memcmp(v[1].s.p, "common", MIN(v[1].s.len, 7)) &&
                                    memcmp(v[1].s.p, "ceil", MIN(v[1].s.len, 5)) &&
                                    memcmp(v[1].s.p, "floor", MIN(v[1].s.len, 6))))
            return jr_fail(r, "method must be common, ceil or floor");
        method = v[1].s.p;
    }
    if (!jv_is_num(in))
        return jr_fail(r, "type %s doesn't define __round__ method", jv_type_name(in));
    x = in.type == JV_FLOAT ? in.f : in.type == JV_INT ? (double)in.i : in.b;
    m = pow(10.0, (double)prec);
    if (method[0] == 'c' && method[1] == 'e') {
        y = ceil(x * m) / m;
    } else if (method[0] == 'f') {
        y = floor(x * m) / m;
    } else if (prec >= 0 && prec <= 30 && isfinite(x)) {
        /* Python's round(): the exact binary value rounded, ties to even. printf does
         * exactly that (2.675 is 2.67499999… and rounds down). */
        char buf[400];

        snprintf(buf, sizeof buf, "%.*f", (int)prec, x);
        y = strtod(buf, NULL);
    } else {
        y = nearbyint(x * m) / m;
    }
    if (in.type != JV_FLOAT && method[0] == 'c' && method[1] == 'o')
        *out = jv_int((int64_t)y);
    else
        *out = jv_float(y);
    return 0;
}

static int f_sort(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv v[3];
    bool given[3];
    struct jv_list *l, *res;
    int rc;

    BIND("sort", "reverse", "case_sensitive", "attribute");
    if ((rc = iter(r, in, &l)) ||
        (rc = sort_items(r, l, given[2] ? v[2] : jv_undef(NULL), given[1] && jv_truthy(v[1]),
                         given[0] && jv_truthy(v[0]), &res)))
        return rc;
    *out = jv_list_val(res, 0);
    return 0;
}

static int f_unique(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv v[2];
    bool given[2];
    struct jv_list *l, *res;
    struct jv_dict *seen = jv_dict_new(r, 0);
    int rc;

    BIND("unique", "case_sensitive", "attribute");
    if (!seen)
        return -ENOMEM;
    if ((rc = iter(r, in, &l)))
        return rc;
    if (!(res = jv_list_new(r, l->len)))
        return -ENOMEM;
    for (size_t i = 0; i < l->len; i++) {
        struct jv key = l->items[i], dummy;

        if ((given[1] && v[1].type != JV_NONE && (rc = attr_get(r, key, v[1], &key))) ||
            (rc = fold(r, key, given[0] && jv_truthy(v[0]), &key)))
            return rc;
        if (jv_dict_get(seen, key, &dummy))
            continue;
        if ((rc = jv_dict_set(r, seen, key, jv_none())))
            return rc;
        res->items[res->len++] = l->items[i];
    }
    *out = gen(res);
    return 0;
}

static int min_max(struct jinja_render *r, struct jv in, const struct jcall_args *a, bool max, struct jv *out)
{
    static const char *const names[] = { "case_sensitive", "attribute" };
    struct jv v[2], best_key = jv_none();
    bool given[2];
    struct jv_list *l;
    int rc;

    if ((rc = jargs_bind(r, max ? "max" : "min", a, names, 2, v, given)) || (rc = iter(r, in, &l)))
        return rc;
    if (!l->len) {
        *out = jinja_undef(r, "No aggregated item, sequence was empty.");
        return 0;
    }
    /* Python's min() and max(): the first of equal items wins. */
    for (size_t i = 0; i < l->len; i++) {
        struct jv key = l->items[i];
        bool better = i == 0;

        if ((given[1] && v[1].type != JV_NONE && (rc = attr_get(r, key, v[1], &key))) ||
            (rc = fold(r, key, given[0] && jv_truthy(v[0]), &key)))
            return rc;
        if (i && (rc = max ? jv_lt(r, best_key, key, &better) : jv_lt(r, key, best_key, &better)))
            return rc;
        if (better) {
            best_key = key;
            *out = l->items[i];
        }
    }
    return 0;
}

static int f_max(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    return min_max(r, in, a, true, out);
}

static int f_min(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    return min_max(r, in, a, false, out);
}

static int f_string(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    (void)a;
    return str_of(r, in, out);
}

static int f_sum(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv v[2], acc;
    bool given[2];
    struct jv_list *l;
    int rc;

    BIND("sum", "attribute", "start");
    acc = given[1] ? v[1] : jv_int(0);
    if ((rc = iter(r, in, &l)))
        return rc;
    for (size_t i = 0; i < l->len; i++) {
        struct jv item = l->items[i];

        if (given[0] && v[0].type != JV_NONE && (rc = attr_get(r, item, v[0], &item)))
            return rc;
        if (!jv_is_num(acc) || !jv_is_num(item))
            return jr_fail(r, "unsupported operand type(s) for +: '%s' and '%s'", jv_type_name(acc),
                           jv_type_name(item));
        if (acc.type != JV_FLOAT && item.type != JV_FLOAT) {
            int64_t s;

            if (__builtin_add_overflow(acc.type == JV_INT ? acc.i : acc.b, item.type == JV_INT ? item.i : item.b, &s))
                return jr_fail(r, "integer overflow");
            acc = jv_int(s);
        } else {
            double x = acc.type == JV_FLOAT ? acc.f : (double)(acc.type == JV_INT ? acc.i : acc.b);
            double y = item.type == JV_FLOAT ? item.f : (double)(item.type == JV_INT ? item.i : item.b);

            acc = jv_float(x + y);
        }
    }
    *out = acc;
    return 0;
}

static int f_tojson(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv v[4];
    bool given[4], ok;
    struct jv_json_opts o = { .item_sep = ", ", .key_sep = ": " };
    struct jbuf b = { .max = r->lim->max_output_bytes };
    char spaces[65];
    int rc;

    BIND("tojson", "ensure_ascii", "indent", "separators", "sort_keys");
    o.ensure_ascii = given[0] && jv_truthy(v[0]);
    o.sort_keys = given[3] && jv_truthy(v[3]);
    if (given[1] && v[1].type != JV_NONE) {
        if (v[1].type == JV_STR) {
            bool ok2;
            struct jv c = jv_str_copy(r, v[1].s.p, v[1].s.len, &ok2);   /* NUL-terminated */

            if (!ok2)
                return -ENOMEM;
            o.indent = c.s.p;
        } else if (v[1].type == JV_INT || v[1].type == JV_BOOL) {
            int64_t w = v[1].type == JV_INT ? v[1].i : v[1].b;

            if (w > 64)
                return jr_fail(r, "tojson indent over 64");
            w = w < 0 ? 0 : w;
            memset(spaces, ' ', (size_t)w);
            spaces[w] = '\0';
            o.indent = spaces;
        } else {
            return jr_fail(r, "tojson indent must be an int or a string");
        }
        o.item_sep = ",";
    }
    if (given[2] && v[2].type != JV_NONE) {
        struct jv_list *l;
        bool ok2, ok3;

        if (v[2].type != JV_LIST || (v[2].flags & JV_F_GEN) || (l = v[2].list)->len != 2 ||
            l->items[0].type != JV_STR || l->items[1].type != JV_STR)
            return jr_fail(r, "tojson separators must be a pair of strings");
        o.item_sep = jv_str_copy(r, l->items[0].s.p, l->items[0].s.len, &ok2).s.p;
        o.key_sep = jv_str_copy(r, l->items[1].s.p, l->items[1].s.len, &ok3).s.p;
        if (!ok2 || !ok3)
            return -ENOMEM;
    }
    if ((rc = jv_write_json(r, &b, in, &o, 0))) {
        jbuf_fini(&b);
        return rc;
    }
    *out = jv_str_copy(r, b.p ? b.p : "", b.len, &ok);
    jbuf_fini(&b);
    return ok ? 0 : -ENOMEM;
}

static int f_trim(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv v[1];
    bool given[1];
    int rc;

    BIND("trim", "chars");
    if ((rc = str_of(r, in, &in)))
        return rc;
    return jstr_strip(r, in, given[0] ? v[0] : jv_none(), true, true, out);
}

static int f_format(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv_list *l;
    int rc;

    if ((rc = str_of(r, in, &in)))
        return rc;
    if (a->nkw) {
        struct jv_dict *d = jv_dict_new(r, 0);

        if (!d)
            return -ENOMEM;
        if (a->npos)
            return jr_fail(r, "can't handle positional and keyword arguments at the same time");
        for (int k = 0; k < a->nkw; k++)
            if ((rc = jv_dict_set(r, d, jv_str(a->kw_name[k], a->kw_len[k]), a->kw[k])))
                return rc;
        return jinja_percent_format(r, in, (struct jv){ .type = JV_DICT, .dict = d }, out);
    }
    if (!(l = jv_list_new(r, (size_t)a->npos)))
        return -ENOMEM;
    for (int i = 0; i < a->npos; i++)
        l->items[l->len++] = a->pos[i];
    return jinja_percent_format(r, in, jv_list_val(l, JV_F_TUPLE), out);
}

static int f_wordcount(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    int64_t n = 0;
    bool inword = false;
    int32_t cp;
    int rc;

    (void)a;
    if ((rc = str_of(r, in, &in)))
        return rc;
    /* \w+ runs, roughly: letters, digits and underscore */
    for (size_t i = 0; i < in.s.len;) {
        bool w;

        i = u8_next(in.s.p, in.s.len, i, &cp);
        w = cp == '_' || (cp < 0x80 ? ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') || (cp >= '0' && cp <= '9')
                                    : !py_isspace(cp));
        n += w && !inword;
        inword = w;
    }
    *out = jv_int(n);
    return 0;
}

static const struct { const char *name; filter_fn *fn; } filters[] = {
    { "abs", f_abs }, { "attr", f_attr }, { "capitalize", f_capitalize }, { "count", f_length },
    { "d", f_default }, { "default", f_default }, { "dictsort", f_dictsort }, { "e", f_escape },
    { "escape", f_escape }, { "first", f_first }, { "float", f_float }, { "format", f_format },
    { "indent", f_indent }, { "int", f_int }, { "items", f_items }, { "join", f_join },
    { "last", f_last }, { "length", f_length }, { "list", f_list }, { "lower", f_lower },
    { "map", f_map }, { "max", f_max }, { "min", f_min }, { "reject", f_reject },
    { "rejectattr", f_rejectattr }, { "replace", f_replace }, { "reverse", f_reverse },
    { "round", f_round }, { "safe", f_safe }, { "select", f_select }, { "selectattr", f_selectattr },
    { "sort", f_sort }, { "string", f_string }, { "sum", f_sum }, { "title", f_title },
    { "tojson", f_tojson }, { "trim", f_trim }, { "unique", f_unique }, { "upper", f_upper },
    { "wordcount", f_wordcount },
};

int jinja_filter_find(const char *name, size_t len)
{
    for (size_t i = 0; i < ARRAY_LEN(filters); i++)
        if (strlen(filters[i].name) == len && !memcmp(filters[i].name, name, len))
            return (int)i;
    return -1;
}

int jinja_filter_apply(struct jinja_render *r, int id, struct jv in, const struct jcall_args *a, struct jv *out)
{
    if (id < 0 || (size_t)id >= ARRAY_LEN(filters))
        return jr_fail(r, "unknown filter");
    return filters[id].fn(r, in, a, out);
}

/* ---- tests ---- */

enum {
    T_DEFINED, T_UNDEFINED, T_NONE, T_STRING, T_NUMBER, T_INTEGER, T_FLOAT, T_BOOLEAN, T_MAPPING,
    T_ITERABLE, T_SEQUENCE, T_TRUE, T_FALSE, T_CALLABLE, T_LOWER, T_UPPER, T_ODD, T_EVEN,
    T_DIVISIBLEBY, T_EQ, T_NE, T_LT, T_LE, T_GT, T_GE, T_IN, T_SAMEAS, T_ESCAPED, T_FILTER, T_TEST,
};

static const struct { const char *name; int id; } tests[] = {
    { "defined", T_DEFINED }, { "undefined", T_UNDEFINED }, { "none", T_NONE }, { "string", T_STRING },
    { "number", T_NUMBER }, { "integer", T_INTEGER }, { "float", T_FLOAT }, { "boolean", T_BOOLEAN },
    { "mapping", T_MAPPING }, { "iterable", T_ITERABLE }, { "sequence", T_SEQUENCE }, { "true", T_TRUE },
    { "false", T_FALSE }, { "callable", T_CALLABLE }, { "lower", T_LOWER }, { "upper", T_UPPER },
    { "odd", T_ODD }, { "even", T_EVEN }, { "divisibleby", T_DIVISIBLEBY },
    { "eq", T_EQ }, { "equalto", T_EQ }, { "==", T_EQ }, { "ne", T_NE }, { "!=", T_NE },
    { "lt", T_LT }, { "lessthan", T_LT }, { "<", T_LT }, { "le", T_LE }, { "<=", T_LE },
    { "gt", T_GT }, { "greaterthan", T_GT }, { ">", T_GT }, { "ge", T_GE }, { ">=", T_GE },
    { "in", T_IN }, { "sameas", T_SAMEAS }, { "escaped", T_ESCAPED }, { "filter", T_FILTER },
    { "test", T_TEST },
};

int jinja_test_find(const char *name, size_t len)
{
    for (size_t i = 0; i < ARRAY_LEN(tests); i++)
        if (strlen(tests[i].name) == len && !memcmp(tests[i].name, name, len))
            return (int)i;
    return -1;
}

static int parity(struct jinja_render *r, struct jv v, int64_t *out)
{
    if (v.type == JV_INT || v.type == JV_BOOL) {
        int64_t i = v.type == JV_INT ? v.i : v.b;

        *out = ((i % 2) + 2) % 2;
        return 0;
    }
    if (v.type == JV_FLOAT) {
        double m = fmod(v.f, 2.0);

        *out = m == 0 ? 0 : (m == 1 || m == -1) ? 1 : 2;
        return 0;
    }
    if (v.type == JV_UNDEF)
        return jr_undefined(r, v);
    return jr_fail(r, "not all arguments converted during string formatting");
}

int jinja_test_apply(struct jinja_render *r, int id, struct jv in, const struct jcall_args *a, bool *out)
{
    const char *name;
    struct jv arg = jv_undef(NULL);
    int64_t p = 0;
    int rc = 0;

    *out = false;
    if (id < 0 || (size_t)id >= ARRAY_LEN(tests))
        return jr_fail(r, "unknown test");
    name = tests[id].name;
    id = tests[id].id;
    if (id >= T_DIVISIBLEBY && id <= T_SAMEAS) {
        if (a->npos != 1 || a->nkw)
            return jr_fail(r, "test '%s' takes one positional argument", name);
        arg = a->pos[0];
    }
    switch (id) {
    case T_DEFINED: *out = in.type != JV_UNDEF; break;
    case T_UNDEFINED: *out = in.type == JV_UNDEF; break;
    case T_NONE: *out = in.type == JV_NONE; break;
    case T_STRING: *out = in.type == JV_STR; break;
    case T_NUMBER: *out = jv_is_num(in); break;
    case T_INTEGER: *out = in.type == JV_INT; break;
    case T_FLOAT: *out = in.type == JV_FLOAT; break;
    case T_BOOLEAN: *out = in.type == JV_BOOL; break;
    case T_MAPPING: *out = in.type == JV_DICT; break;
    case T_ITERABLE: *out = in.type == JV_STR || in.type == JV_LIST || in.type == JV_DICT ||
                            in.type == JV_UNDEF || in.type == JV_LOOP; break;
    case T_SEQUENCE: *out = in.type == JV_STR || in.type == JV_DICT || in.type == JV_UNDEF ||
                            (in.type == JV_LIST && !(in.flags & JV_F_GEN)); break;
    case T_TRUE: *out = in.type == JV_BOOL && in.b; break;
    case T_FALSE: *out = in.type == JV_BOOL && !in.b; break;
    case T_CALLABLE: *out = in.type == JV_MACRO || in.type == JV_FUNC || in.type == JV_UNDEF ||
                            in.type == JV_LOOP; break;
    case T_LOWER: case T_UPPER: {
        /* str.islower() / isupper(): some cased character, none of the other case */
        struct jv s, same, other;

        if ((rc = jv_to_str(r, in, &s)) ||
            (rc = jstr_case(r, s, id == T_LOWER ? JCASE_LOWER : JCASE_UPPER, &same)) ||
            (rc = jstr_case(r, s, id == T_LOWER ? JCASE_UPPER : JCASE_LOWER, &other)))
            return rc;
        *out = same.s.len == s.s.len && !memcmp(same.s.p, s.s.p, s.s.len) &&
               !(other.s.len == s.s.len && !memcmp(other.s.p, s.s.p, s.s.len));
        break;
    }
    case T_ODD: case T_EVEN:
        if ((rc = parity(r, in, &p)))
            return rc;
        *out = id == T_ODD ? p == 1 : p == 0;
        break;
    case T_DIVISIBLEBY:
        if (!jv_is_num(in) || !jv_is_num(arg))
            return jr_fail(r, "divisibleby needs numbers");
        if (in.type == JV_FLOAT || arg.type == JV_FLOAT) {
            double x = in.type == JV_FLOAT ? in.f : (double)(in.type == JV_INT ? in.i : in.b);
            double y = arg.type == JV_FLOAT ? arg.f : (double)(arg.type == JV_INT ? arg.i : arg.b);

            if (y == 0)
                return jr_fail(r, "float modulo");
            *out = fmod(x, y) == 0;
        } else {
            int64_t x = in.type == JV_INT ? in.i : in.b, y = arg.type == JV_INT ? arg.i : arg.b;

            if (y == 0)
                return jr_fail(r, "integer division or modulo by zero");
            *out = y == -1 || x % y == 0;
        }
        break;
    case T_EQ: return jv_eq(r, in, arg, out);
    case T_NE: rc = jv_eq(r, in, arg, out); *out = !*out; break;
    case T_LT: return jv_lt(r, in, arg, out);
    case T_GT: return jv_lt(r, arg, in, out);
    case T_LE: case T_GE: {
        struct jv x = id == T_LE ? in : arg, y = id == T_LE ? arg : in;

        if ((rc = jv_lt(r, x, y, out)) || *out)
            return rc;
        return jv_eq(r, x, y, out);
    }
    case T_IN: {
        struct jv_list *l;

        if (arg.type == JV_STR) {
            if (in.type != JV_STR)
                return jr_fail(r, "'in <string>' requires string as left operand, not %s", jv_type_name(in));
            *out = !in.s.len || memmem(arg.s.p, arg.s.len, in.s.p, in.s.len);
            break;
        }
        if (arg.type == JV_DICT) {
            struct jv dummy;

            *out = jv_dict_get(arg.dict, in, &dummy);
            break;
        }
        if ((rc = jv_iterate(r, arg, &l)))
            return rc;
        for (size_t i = 0; i < l->len && !*out; i++)
            if ((rc = jr_charge(r, 1)) || (rc = jv_eq(r, l->items[i], in, out)))
                return rc;
        break;
    }
    case T_SAMEAS:
        if (in.type != arg.type)
            *out = false;
        else if (in.type == JV_NONE || in.type == JV_UNDEF)
            *out = in.type == JV_NONE;
        else if (in.type == JV_BOOL)
            *out = in.b == arg.b;
        else if (in.type == JV_INT)
            *out = in.i == arg.i && in.i >= -5 && in.i <= 256;   /* CPython's small ints */
        else if (in.type == JV_STR)
            *out = in.s.p == arg.s.p && in.s.len == arg.s.len;
        else
            *out = in.list == arg.list;
        break;
    case T_ESCAPED: *out = in.type == JV_STR && (in.flags & JV_F_SAFE); break;
    case T_FILTER: *out = in.type == JV_STR && jinja_filter_find(in.s.p, in.s.len) >= 0; break;
    case T_TEST: *out = in.type == JV_STR && jinja_test_find(in.s.p, in.s.len) >= 0; break;
    }
    return rc;
}
