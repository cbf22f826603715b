/* jinja_filters_seq.c — the filters over sequences: join, first, last, length, list, items,
 * reverse, sort, unique, min, max, sum, dictsort, and the generators map, select, reject,
 * selectattr, rejectattr (Jinja 3.1 returns generators: truthy when empty, no len()).
 * jinja_filters.c holds the table that names them. */
#include "engine/chat_template/jinja.h"

#include <errno.h>
#include <stdlib.h>

#include "engine/base/util.h" /* ARRAY_LEN, MIN */

static int iter(struct jinja_render *r, struct jinja_value in, struct jinja_list **out)
{
    return jinja__iterate(r, in, out);
}

static struct jinja_value gen(struct jinja_list *l)
{
    return jinja__list_val(l, JV_F_GEN);
}

/* Jinja's make_attrgetter: "a.b.0" walks item lookups; missing gives Undefined. */
static int attr_get(struct jinja_render *r, struct jinja_value item, struct jinja_value attr,
                    struct jinja_value *out)
{
    const char *p, *end;
    int rc;

    if (attr.type == JV_INT)
        return jinja__getitem(r, item, attr, out);
    if (attr.type != JV_STR)
        return jinja__fail(r, "attribute must be a string or an integer, not %s", jinja__type_name(attr));
    p = attr.s.p;
    end = p + attr.s.len;
    for (;;) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t n = dot ? (size_t)(dot - p) : (size_t)(end - p);
        struct jinja_value key = jinja__str(p, n);
        bool digits = n > 0;

        for (size_t i = 0; i < n; i++)
            digits = digits && p[i] >= '0' && p[i] <= '9';
        if (digits && n < 18)
            key = jinja__int(strtoll(p, NULL, 10));
        if ((rc = jinja__getitem(r, item, key, &item)))
            return rc;
        if (!dot)
            break;
        p = dot + 1;
    }
    *out = item;
    return 0;
}

/* Python's lower() on strings, for the case-insensitive sort, unique, min and max. */
static int fold(struct jinja_render *r, struct jinja_value v, bool case_sensitive, struct jinja_value *out)
{
    if (v.type == JV_STR && !case_sensitive)
        return jinja__str_case(r, v, JCASE_LOWER, out);
    *out = v;
    return 0;
}

struct keyed { struct jinja_value key, item; };

static int keyed_less(struct jinja_render *r, struct jinja_value a, struct jinja_value b, void *ctx,
                      bool *out)
{
    (void)ctx;
    return jinja__lt(r, a.list->items[0], b.list->items[0], out);
}

/* Sorts items by key(item) = fold(attribute of item); stable, as sorted(). */
static int sort_items(struct jinja_render *r, struct jinja_list *in, struct jinja_value attribute,
                      bool case_sensitive, bool reverse, struct jinja_list **out)
{
    struct jinja_list *pairs = jinja__list_new(r, in->len), *res;
    int rc;

    if (!pairs || !(res = jinja__list_new(r, in->len)))
        return -ENOMEM;
    for (size_t i = 0; i < in->len; i++) {
        struct jinja_list *p = jinja__list_new(r, 2);
        struct jinja_value k = in->items[i];

        if (!p)
            return -ENOMEM;
        if ((attribute.type != JV_UNDEF && attribute.type != JV_NONE && (rc = attr_get(r, k,
                                                                                       attribute, &k))) ||
            (rc = fold(r, k, case_sensitive, &k)))
            return rc;
        p->items[0] = k;
        p->items[1] = in->items[i];
        p->len = 2;
        /* reverse=True keeps equal items in order, as sorted(reverse=True) does */
        pairs->items[reverse ? in->len - 1 - i : i] = jinja__list_val(p, JV_F_TUPLE);
    }
    pairs->len = in->len;
    if ((rc = jinja__sort(r, pairs->items, pairs->len, keyed_less, NULL)))
        return rc;
    for (size_t i = 0; i < in->len; i++)
        res->items[i] = pairs->items[reverse ? in->len - 1 - i : i].list->items[1];
    res->len = in->len;
    *out = res;
    return 0;
}

int jinja__filter_dictsort(struct jinja_render *r, struct jinja_value in,
                           const struct jinja_args *a, struct jinja_value *out)
{
    struct jinja_value v[3], items;
    bool given[3];
    struct jinja_list *l;
    int rc;

    JINJA_BIND_ARGS("dictsort", "case_sensitive", "by", "reverse");
    if (in.type != JV_DICT)
        return in.type == JV_UNDEF ? jinja__fail_undefined(r, in) : jinja__fail(r,
                                                                                "dictsort needs a mapping");
    {
        struct jinja_args none = { 0 };
        struct jinja_value fn;
        int status;

        jinja__method_find(r, in, "items", 5, &fn, &status);
        if (status || (rc = jinja__call(r, fn, &none, &items)))
            return status ? status : rc;
    }
    if (given[1] && (v[1].type != JV_STR || (!(v[1].s.len == 3 && !memcmp(v[1].s.p, "key", 3)) &&
                                             !(v[1].s.len == 5 && !memcmp(v[1].s.p, "value", 5)))))
        return jinja__fail(r, "You can only sort by either \"key\" or \"value\"");
    if ((rc = sort_items(r, items.list, jinja__int(given[1] && v[1].s.len == 5 ? 1 : 0),
                         given[0] && jinja__truthy(v[0]), given[2] && jinja__truthy(v[2]), &l)))
        return rc;
    *out = jinja__list_val(l, 0);
    return 0;
}

static int f_first_last(struct jinja_render *r, struct jinja_value in, bool last, struct jinja_value *out)
{
    struct jinja_list *l;
    int rc;

    if (last && in.type == JV_LIST && (in.flags & JV_F_GEN))
        return jinja__fail(r, "'generator' object is not reversible");
    if ((rc = iter(r, in, &l)))
        return rc;
    if (!l->len)
        *out = jinja__undef_fmt(r, "No %s item, sequence was empty.", last ? "last" : "first");
    else
        *out = l->items[last ? l->len - 1 : 0];
    return 0;
}

int jinja__filter_first(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                        struct jinja_value *out)
{
    (void)a;
    return f_first_last(r, in, false, out);
}

int jinja__filter_last(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                       struct jinja_value *out)
{
    (void)a;
    return f_first_last(r, in, true, out);
}

int jinja__filter_items(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                        struct jinja_value *out)
{
    struct jinja_args none = { 0 };
    struct jinja_value fn;
    int status, rc;

    (void)a;
    if (in.type == JV_UNDEF) {
        struct jinja_list *l = jinja__list_new(r, 0);

        *out = l ? gen(l) : jinja__none();
        return l ? 0 : -ENOMEM;
    }
    if (in.type != JV_DICT)
        return jinja__fail(r, "Can only get item pairs from a mapping.");
    jinja__method_find(r, in, "items", 5, &fn, &status);
    if (status || (rc = jinja__call(r, fn, &none, out)))
        return status ? status : rc;
    out->flags = JV_F_GEN;
    return 0;
}

int jinja__filter_join(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                       struct jinja_value *out)
{
    struct jinja_value v[2];
    bool given[2];
    struct jinja_list *l;
    struct buf b = BUF_INIT;
    int rc;

    JINJA_BIND_ARGS("join", "d", "attribute");
    if ((rc = iter(r, in, &l)))
        return rc;
    if (given[0] && (rc = jinja__to_str(r, v[0], &v[0])))
        return rc;
    for (size_t i = 0; i < l->len && !rc; i++) {
        struct jinja_value item = l->items[i];

        if (i && given[0])
            rc = jinja__put(r, &b, v[0].s.p, v[0].s.len);
        if (!rc && given[1] && v[1].type != JV_NONE)
            rc = attr_get(r, item, v[1], &item);
        if (!rc)
            rc = jinja__write_str(r, &b, item);
    }
    if (!rc)
        return jinja__buf_to_str(r, &b, out);
    buf_fini(&b);
    return rc;
}

int jinja__filter_length(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                         struct jinja_value *out)
{
    (void)a;
    switch (in.type) {
    case JV_UNDEF: *out = jinja__int(0); return 0;
    case JV_STR: *out = jinja__int((int64_t)jinja__u8_count(in.s.p,
                                                            in.s.len)); return jinja__charge(r,
                                                                                             in.s.len / 64);
    case JV_DICT: case JV_NS:
        if (in.type == JV_NS)
            break;
        *out = jinja__int((int64_t)in.dict->len);
        return 0;
    case JV_LIST:
        if (in.flags & JV_F_GEN)
            break;
        *out = jinja__int((int64_t)in.list->len);
        return 0;
    case JV_LOOP: *out = jinja__int((int64_t)in.loop->items->len); return 0;
    default: break;
    }
    return jinja__fail(r, "object of type '%s' has no len()", jinja__type_name(in));
}

int jinja__filter_list(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                       struct jinja_value *out)
{
    struct jinja_list *l, *copy;
    int rc;

    (void)a;
    if ((rc = iter(r, in, &l)))
        return rc;
    if (!(copy = jinja__list_new(r, l->len)))
        return -ENOMEM;
    memcpy(copy->items, l->items, l->len * sizeof *l->items);
    copy->len = l->len;
    *out = jinja__list_val(copy, 0);
    return jinja__charge(r, l->len);
}

/* select / reject / selectattr / rejectattr: keep items whose test result is `keep`. */
static int filter_by_test(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                          bool attr, bool keep, struct jinja_value *out)
{
    struct jinja_list *l, *res;
    struct jinja_args targs = { 0 };
    int test = -1, first = attr ? 1 : 0, rc;
    struct jinja_value attribute = attr && a->npos > 0 ? a->pos[0] : jinja__undef(NULL);

    if (attr && a->npos < 1)
        return jinja__fail(r, "selectattr/rejectattr need an attribute name");
    if (a->nkw)
        return jinja__fail(r, "select filters take no keyword arguments");
    if (a->npos > first) {
        struct jinja_value name = a->pos[first];

        if (name.type != JV_STR || (test = jinja__test_find(name.s.p, name.s.len)) < 0)
            return jinja__fail(r, "No test named %s.",
                               name.type == JV_STR ? "given" : "that is not a string");
        for (int i = first + 1; i < a->npos; i++)
            targs.pos[targs.npos++] = a->pos[i];
    }
    if ((rc = iter(r, in, &l)))
        return rc;
    if (!(res = jinja__list_new(r, l->len)))
        return -ENOMEM;
    for (size_t i = 0; i < l->len; i++) {
        struct jinja_value item = l->items[i];
        bool ok;

        if ((rc = jinja__charge(r, 1)) || (attr && (rc = attr_get(r, item, attribute, &item))))
            return rc;
        if (test >= 0) {
            if ((rc = jinja__test_apply(r, test, item, &targs, &ok)))
                return rc;
        } else {
            ok = jinja__truthy(item);
        }
        if (ok == keep)
            res->items[res->len++] = l->items[i];
    }
    *out = gen(res);
    return 0;
}

int jinja__filter_select(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                         struct jinja_value *out)
{
    return filter_by_test(r, in, a, false, true, out);
}

int jinja__filter_reject(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                         struct jinja_value *out)
{
    return filter_by_test(r, in, a, false, false, out);
}

int jinja__filter_selectattr(struct jinja_render *r, struct jinja_value in,
                             const struct jinja_args *a, struct jinja_value *out)
{
    return filter_by_test(r, in, a, true, true, out);
}

int jinja__filter_rejectattr(struct jinja_render *r, struct jinja_value in,
                             const struct jinja_args *a, struct jinja_value *out)
{
    return filter_by_test(r, in, a, true, false, out);
}

int jinja__filter_map(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                      struct jinja_value *out)
{
    struct jinja_list *l, *res;
    struct jinja_args fargs = { 0 };
    struct jinja_value attribute = jinja__undef(NULL), dflt = jinja__undef(NULL);
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
            return jinja__fail(r, "Unexpected keyword argument '%.*s'", (int)MIN(a->kw_len[k], 60),
                               a->kw_name[k]);
    }
    if (!by_attr) {
        if (!a->npos)
            return jinja__fail(r, "map requires a filter argument");
        if (a->pos[0].type != JV_STR || (filter = jinja__filter_find(a->pos[0].s.p, a->pos[0].s.len)) < 0)
            return jinja__fail(r, "No filter named %s.",
                               a->pos[0].type == JV_STR ? "given" : "that is not a string");
        for (int i = 1; i < a->npos; i++)
            fargs.pos[fargs.npos++] = a->pos[i];
    }
    if ((rc = iter(r, in, &l)))
        return rc;
    if (!(res = jinja__list_new(r, l->len)))
        return -ENOMEM;
    for (size_t i = 0; i < l->len; i++) {
        struct jinja_value v;

        if ((rc = jinja__charge(r, 1)))
            return rc;
        if (by_attr) {
            if ((rc = attr_get(r, l->items[i], attribute, &v)))
                return rc;
            if (v.type == JV_UNDEF && dflt.type != JV_UNDEF)
                v = dflt;
        } else if ((rc = jinja__filter_apply(r, filter, l->items[i], &fargs, &v))) {
            return rc;
        }
        res->items[res->len++] = v;
    }
    *out = gen(res);
    return 0;
}

int jinja__filter_reverse(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                          struct jinja_value *out)
{
    struct jinja_list *l, *res;
    int rc;

    (void)a;
    if (in.type == JV_STR) {
        char *s = jinja__alloc(r, in.s.len + 1);
        size_t o = in.s.len;
        int32_t cp;

        if (!s)
            return -ENOMEM;
        for (size_t i = 0, next; i < in.s.len; i = next) {
            next = jinja__u8_next(in.s.p, in.s.len, i, &cp);
            o -= next - i;
            memcpy(s + o, in.s.p + i, next - i);
        }
        *out = jinja__str(s, in.s.len);
        return jinja__charge(r, in.s.len / 16);
    }
    if ((rc = iter(r, in, &l)))
        return rc;
    if (!(res = jinja__list_new(r, l->len)))
        return -ENOMEM;
    for (size_t i = 0; i < l->len; i++)
        res->items[i] = l->items[l->len - 1 - i];
    res->len = l->len;
    *out = gen(res);   /* reversed() is an iterator: no len(), always true */
    return jinja__charge(r, l->len);
}

int jinja__filter_sort(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                       struct jinja_value *out)
{
    struct jinja_value v[3];
    bool given[3];
    struct jinja_list *l, *res;
    int rc;

    JINJA_BIND_ARGS("sort", "reverse", "case_sensitive", "attribute");
    if ((rc = iter(r, in, &l)) ||
        (rc = sort_items(r, l, given[2] ? v[2] : jinja__undef(NULL), given[1] && jinja__truthy(v[1]),
                         given[0] && jinja__truthy(v[0]), &res)))
        return rc;
    *out = jinja__list_val(res, 0);
    return 0;
}

int jinja__filter_unique(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                         struct jinja_value *out)
{
    struct jinja_value v[2];
    bool given[2];
    struct jinja_list *l, *res;
    struct jinja_dict *seen = jinja__dict_new(r, 0);
    int rc;

    JINJA_BIND_ARGS("unique", "case_sensitive", "attribute");
    if (!seen)
        return -ENOMEM;
    if ((rc = iter(r, in, &l)))
        return rc;
    if (!(res = jinja__list_new(r, l->len)))
        return -ENOMEM;
    for (size_t i = 0; i < l->len; i++) {
        struct jinja_value key = l->items[i], dummy;

        if ((given[1] && v[1].type != JV_NONE && (rc = attr_get(r, key, v[1], &key))) ||
            (rc = fold(r, key, given[0] && jinja__truthy(v[0]), &key)))
            return rc;
        if (jinja__dict_get(seen, key, &dummy))
            continue;
        if ((rc = jinja__dict_set(r, seen, key, jinja__none())))
            return rc;
        res->items[res->len++] = l->items[i];
    }
    *out = gen(res);
    return 0;
}

static int min_max(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                   bool max, struct jinja_value *out)
{
    static const char *const names[] = { "case_sensitive", "attribute" };
    struct jinja_value v[2], best_key = jinja__none();
    bool given[2];
    struct jinja_list *l;
    int rc;

    if ((rc = jinja__bind_args(r, max ? "max" : "min", a, names, 2, v, given)) || (rc = iter(r, in, &l)))
        return rc;
    if (!l->len) {
        *out = jinja__undef_fmt(r, "No aggregated item, sequence was empty.");
        return 0;
    }
    /* Python's min() and max(): the first of equal items wins. */
    for (size_t i = 0; i < l->len; i++) {
        struct jinja_value key = l->items[i];
        bool better = i == 0;

        if ((given[1] && v[1].type != JV_NONE && (rc = attr_get(r, key, v[1], &key))) ||
            (rc = fold(r, key, given[0] && jinja__truthy(v[0]), &key)))
            return rc;
        if (i && (rc = max ? jinja__lt(r, best_key, key, &better) : jinja__lt(r, key, best_key, &better)))
            return rc;
        if (better) {
            best_key = key;
            *out = l->items[i];
        }
    }
    return 0;
}

int jinja__filter_max(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                      struct jinja_value *out)
{
    return min_max(r, in, a, true, out);
}

int jinja__filter_min(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                      struct jinja_value *out)
{
    return min_max(r, in, a, false, out);
}

int jinja__filter_sum(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                      struct jinja_value *out)
{
    struct jinja_value v[2], acc;
    bool given[2];
    struct jinja_list *l;
    int rc;

    JINJA_BIND_ARGS("sum", "attribute", "start");
    acc = given[1] ? v[1] : jinja__int(0);
    if ((rc = iter(r, in, &l)))
        return rc;
    for (size_t i = 0; i < l->len; i++) {
        struct jinja_value item = l->items[i];

        if (given[0] && v[0].type != JV_NONE && (rc = attr_get(r, item, v[0], &item)))
            return rc;
        if (!jinja__is_num(acc) || !jinja__is_num(item))
            return jinja__fail(r, "unsupported operand type(s) for +: '%s' and '%s'", jinja__type_name(acc),
                               jinja__type_name(item));
        if (acc.type != JV_FLOAT && item.type != JV_FLOAT) {
            int64_t s;

            if (__builtin_add_overflow(acc.type == JV_INT ? acc.i : acc.b,
                                       item.type == JV_INT ? item.i : item.b, &s))
                return jinja__fail(r, "integer overflow");
            acc = jinja__int(s);
        } else {
            double x = acc.type == JV_FLOAT ? acc.f : (double)(acc.type == JV_INT ? acc.i : acc.b);
            double y = item.type == JV_FLOAT ? item.f : (double)(item.type == JV_INT ? item.i : item.b);

            acc = jinja__float(x + y);
        }
    }
    *out = acc;
    return 0;
}

