/* jinja_filters_seq.c — the filters over sequences: join, first, last, length, list, items,
 * reverse, sort, unique, min, max, sum, dictsort, and the generators map, select, reject,
 * selectattr, rejectattr (Jinja 3.1 returns generators: truthy when empty, no len()).
 * jinja_filters.c holds the table that names them. */
#include "engine/chat_template/jinja.h"

#include <errno.h>
#include <stdlib.h>

#include "engine/base/util.h" /* ARRAY_LEN, MIN */

static int iter(struct jinja_render *r, struct jv in, struct jv_list **out)
{
    return jv_iterate(r, in, out);
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

int jinja_filter_dictsort(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv v[3], items;
    bool given[3];
    struct jv_list *l;
    int rc;

    JARGS_BIND("dictsort", "case_sensitive", "by", "reverse");
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

int jinja_filter_first(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    (void)a;
    return f_first_last(r, in, false, out);
}

int jinja_filter_last(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    (void)a;
    return f_first_last(r, in, true, out);
}

int jinja_filter_items(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
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

int jinja_filter_join(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv v[2];
    bool given[2];
    struct jv_list *l;
    struct buf b = BUF_INIT;
    int rc;

    JARGS_BIND("join", "d", "attribute");
    if ((rc = iter(r, in, &l)))
        return rc;
    if (given[0] && (rc = jv_to_str(r, v[0], &v[0])))
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
    if (!rc)
        return jbuf_to_str(r, &b, out);
    buf_fini(&b);
    return rc;
}

int jinja_filter_length(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
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

int jinja_filter_list(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
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

int jinja_filter_select(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    return filter_by_test(r, in, a, false, true, out);
}

int jinja_filter_reject(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    return filter_by_test(r, in, a, false, false, out);
}

int jinja_filter_selectattr(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    return filter_by_test(r, in, a, true, true, out);
}

int jinja_filter_rejectattr(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    return filter_by_test(r, in, a, true, false, out);
}

int jinja_filter_map(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
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

int jinja_filter_reverse(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
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

int jinja_filter_sort(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv v[3];
    bool given[3];
    struct jv_list *l, *res;
    int rc;

    JARGS_BIND("sort", "reverse", "case_sensitive", "attribute");
    if ((rc = iter(r, in, &l)) ||
        (rc = sort_items(r, l, given[2] ? v[2] : jv_undef(NULL), given[1] && jv_truthy(v[1]),
                         given[0] && jv_truthy(v[0]), &res)))
        return rc;
    *out = jv_list_val(res, 0);
    return 0;
}

int jinja_filter_unique(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv v[2];
    bool given[2];
    struct jv_list *l, *res;
    struct jv_dict *seen = jv_dict_new(r, 0);
    int rc;

    JARGS_BIND("unique", "case_sensitive", "attribute");
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

int jinja_filter_max(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    return min_max(r, in, a, true, out);
}

int jinja_filter_min(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    return min_max(r, in, a, false, out);
}

int jinja_filter_sum(struct jinja_render *r, struct jv in, const struct jcall_args *a, struct jv *out)
{
    struct jv v[2], acc;
    bool given[2];
    struct jv_list *l;
    int rc;

    JARGS_BIND("sum", "attribute", "start");
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

