/* jinja_methods.c — the Python a chat template may call: the globals transformers and
 * Jinja provide (range, namespace, dict, raise_exception, strftime_now), the str methods
 * templates use (strip, split, startswith, replace, format …), dict.get/items/keys/values,
 * loop.cycle, and the sandbox's refusal of methods that mutate (append, update …). The
 * string work itself is jinja_strings.c. */
#include "engine/chat_template/jinja.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <utf8proc.h>

#include "engine/base/util.h" /* errf, ERR_LEN, MIN */

enum jinja_builtin {
    B_RANGE, B_NAMESPACE, B_DICT, B_RAISE, B_STRFTIME,
    M_STRIP, M_LSTRIP, M_RSTRIP, M_SPLIT, M_RSPLIT, M_SPLITLINES, M_STARTSWITH, M_ENDSWITH,
    M_UPPER, M_LOWER, M_TITLE, M_CAPITALIZE, M_REPLACE, M_FORMAT, M_JOIN, M_FIND, M_RFIND,
    M_COUNT, M_ISDIGIT, M_ISALPHA, M_ISALNUM, M_ISSPACE, M_ISUPPER, M_ISLOWER,
    M_REMOVEPREFIX, M_REMOVESUFFIX,
    M_GET, M_ITEMS, M_KEYS, M_VALUES,
    M_LIST_INDEX, M_LIST_COUNT,
    M_CYCLE,
};

static const struct { const char *name; } globals[] = {   /* in enum jinja_builtin order */
    { "range" }, { "namespace" }, { "dict" }, { "raise_exception" }, { "strftime_now" },
};

/* Methods by the type they belong to; id < 0 marks one the sandbox refuses. */
static const struct { uint8_t type; const char *name; int id; } methods[] = {
    { JV_STR, "strip", M_STRIP }, { JV_STR, "lstrip", M_LSTRIP }, { JV_STR, "rstrip", M_RSTRIP },
    { JV_STR, "split", M_SPLIT }, { JV_STR, "rsplit", M_RSPLIT }, { JV_STR, "splitlines", M_SPLITLINES },
    { JV_STR, "startswith", M_STARTSWITH }, { JV_STR, "endswith", M_ENDSWITH },
    { JV_STR, "upper", M_UPPER }, { JV_STR, "lower", M_LOWER }, { JV_STR, "title", M_TITLE },
    { JV_STR, "capitalize", M_CAPITALIZE }, { JV_STR, "replace", M_REPLACE },
    { JV_STR, "format", M_FORMAT }, { JV_STR, "join", M_JOIN }, { JV_STR, "find", M_FIND },
    { JV_STR, "rfind", M_RFIND }, { JV_STR, "count", M_COUNT }, { JV_STR, "isdigit", M_ISDIGIT },
    { JV_STR, "isalpha", M_ISALPHA }, { JV_STR, "isalnum", M_ISALNUM }, { JV_STR, "isspace", M_ISSPACE },
    { JV_STR, "isupper", M_ISUPPER }, { JV_STR, "islower", M_ISLOWER },
    { JV_STR, "removeprefix", M_REMOVEPREFIX }, { JV_STR, "removesuffix", M_REMOVESUFFIX },
    { JV_DICT, "get", M_GET }, { JV_DICT, "items", M_ITEMS }, { JV_DICT, "keys", M_KEYS },
    { JV_DICT, "values", M_VALUES },
    { JV_DICT, "pop", -1 }, { JV_DICT, "popitem", -1 }, { JV_DICT, "setdefault", -1 },
    { JV_DICT, "update", -1 }, { JV_DICT, "clear", -1 },
    { JV_LIST, "index", M_LIST_INDEX }, { JV_LIST, "count", M_LIST_COUNT },
    { JV_LIST, "append", -1 }, { JV_LIST, "extend", -1 }, { JV_LIST, "insert", -1 },
    { JV_LIST, "pop", -1 }, { JV_LIST, "remove", -1 }, { JV_LIST, "reverse", -1 },
    { JV_LIST, "sort", -1 }, { JV_LIST, "clear", -1 },
    { JV_LOOP, "cycle", M_CYCLE },
};

static bool name_is(const char *name, size_t len, const char *s)
{
    return len == strlen(s) && !memcmp(name, s, len);
}

static struct jinja_value make_func(struct jinja_render *r, int id, struct jinja_value self, int *status)
{
    struct jinja_value v = { .type = JV_FUNC };

    if (!(v.func = jinja__alloc(r, sizeof *v.func))) {
        *status = -ENOMEM;
        return jinja__none();
    }
    v.func->id = id;
    v.func->self = self;
    return v;
}

bool jinja__global_find(const char *name, size_t len, struct jinja_value *out)
{
    /* Globals never change: one static function object each serves every render. */
    static struct jinja_func funcs[] = { { .id = B_RANGE }, { .id = B_NAMESPACE }, { .id = B_DICT },
                                      { .id = B_RAISE }, { .id = B_STRFTIME } };

    for (size_t i = 0; i < ARRAY_LEN(globals); i++)
        if (name_is(name, len, globals[i].name)) {
            out->type = JV_FUNC;
            out->flags = 0;
            out->func = &funcs[i];
            return true;
        }
    return false;
}

bool jinja__method_find(struct jinja_render *r, struct jinja_value self, const char *name, size_t len,
                        struct jinja_value *out, int *status)
{
    uint8_t type = self.type == JV_NS ? JV_DICT : self.type;

    *status = 0;
    if (self.type == JV_LIST && (self.flags & (JV_F_GEN | JV_F_VIEW)))
        return false;
    for (size_t i = 0; i < ARRAY_LEN(methods); i++) {
        if (methods[i].type != type || !name_is(name, len, methods[i].name))
            continue;
        if (methods[i].id < 0)
            *out = jinja__undef_fmt(r, "access to attribute '%.*s' of '%s' object is unsafe.", (int)len, name,
                                    jinja__type_name(self));
        else
            *out = make_func(r, methods[i].id, self, status);
        return true;
    }
    if (len >= 2 && name[0] == '_' && name[1] == '_') {
        *out = jinja__undef_fmt(r, "access to attribute '%.*s' of '%s' object is unsafe.", (int)MIN(len, 100),
                                name, jinja__type_name(self));
        return true;
    }
    return false;
}

/* ---- calls ---- */

static int to_index(struct jinja_render *r, struct jinja_value v, int64_t *out, const char *what)
{
    if (v.type == JV_INT || v.type == JV_BOOL) {
        *out = v.type == JV_INT ? v.i : v.b;
        return 0;
    }
    return jinja__fail(r, "%s: '%s' object cannot be interpreted as an integer", what, jinja__type_name(v));
}

static int call_range(struct jinja_render *r, const struct jinja_args *a, struct jinja_value *out)
{
    int64_t v[3] = { 0, 0, 1 }, n;
    struct jinja_list *l;
    int rc;

    if (a->nkw || a->npos < 1 || a->npos > 3)
        return jinja__fail(r, "range expected 1 to 3 integer arguments");
    for (int i = 0; i < a->npos; i++)
        if ((rc = to_index(r, a->pos[i], &v[a->npos == 1 ? 1 : i], "range")))
            return rc;
    if (!v[2])
        return jinja__fail(r, "range() arg 3 must not be zero");
    if (v[2] > 0)
        n = v[1] > v[0] ? (int64_t)(((uint64_t)v[1] - (uint64_t)v[0] - 1) / (uint64_t)v[2]) + 1 : 0;
    else
        n = v[0] > v[1] ? (int64_t)(((uint64_t)v[0] - (uint64_t)v[1] - 1) / ((uint64_t)(-(v[2] + 1)) + 1)) + 1 : 0;
    if (n > 100000)
        return jinja__fail(r, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    if (!(l = jinja__list_new(r, (size_t)n)))
        return -ENOMEM;
    for (int64_t i = 0; i < n; i++)
        l->items[i] = jinja__int(v[0] + i * v[2]);
    l->len = (size_t)n;
    *out = jinja__list_val(l, 0);
    return jinja__charge(r, (uint64_t)n);
}

static int call_dict(struct jinja_render *r, const struct jinja_args *a, bool ns, struct jinja_value *out)
{
    struct jinja_dict *d = jinja__dict_new(r, 0);
    int rc;

    if (!d)
        return -ENOMEM;
    if (a->npos > 1)
        return jinja__fail(r, "%s expected at most 1 positional argument", ns ? "namespace" : "dict");
    if (a->npos == 1) {
        struct jinja_value src = a->pos[0];

        if (src.type != JV_DICT && src.type != JV_NS)
            return jinja__fail(r, "%s() positional argument must be a mapping", ns ? "namespace" : "dict");
        for (size_t i = 0; i < src.dict->len; i++)
            if ((rc = jinja__dict_set(r, d, src.dict->keys[i], src.dict->vals[i])))
                return rc;
    }
    for (int k = 0; k < a->nkw; k++)
        if ((rc = jinja__dict_set(r, d, jinja__str(a->kw_name[k], a->kw_len[k]), a->kw[k])))
            return rc;
    out->type = ns ? JV_NS : JV_DICT;
    out->flags = 0;
    out->dict = d;
    return 0;
}

static int call_raise(struct jinja_render *r, const struct jinja_args *a)
{
    struct jinja_value msg = a->npos ? a->pos[0] : jinja__str("", 0);
    int rc;

    if ((rc = jinja__to_str(r, msg, &msg)))
        return rc;
    if (!r->failed) {
        /* The template's own words reach the user as they are, without a line prefix. */
        errf(r->err, "%.*s", (int)MIN(msg.s.len, ERR_LEN - 1), msg.s.p);
        r->failed = true;
        r->raised = true;
    }
    return -EINVAL;
}

static int call_strftime(struct jinja_render *r, const struct jinja_args *a, struct jinja_value *out)
{
    char fmt[256], tmp[512];
    time_t now = time(NULL);
    struct tm tm;
    size_t n;
    bool ok;

    if (a->npos != 1 || a->pos[0].type != JV_STR || a->pos[0].s.len >= sizeof fmt)
        return jinja__fail(r, "strftime_now takes one format string (under %zu bytes)", sizeof fmt);
    memcpy(fmt, a->pos[0].s.p, a->pos[0].s.len);
    fmt[a->pos[0].s.len] = '\0';
    localtime_r(&now, &tm);
    n = strftime(tmp, sizeof tmp, fmt, &tm);
    *out = jinja__str_copy(r, tmp, n, &ok);
    return ok ? 0 : -ENOMEM;
}

static int list_of(struct jinja_render *r, const struct jinja_dict *d, int what, struct jinja_value *out)
{
    struct jinja_list *l = jinja__list_new(r, d->len);

    if (!l)
        return -ENOMEM;
    for (size_t i = 0; i < d->len; i++) {
        if (what == M_ITEMS) {
            struct jinja_list *pair = jinja__list_new(r, 2);

            if (!pair)
                return -ENOMEM;
            pair->items[0] = d->keys[i];
            pair->items[1] = d->vals[i];
            pair->len = 2;
            l->items[i] = jinja__list_val(pair, JV_F_TUPLE);
        } else {
            l->items[i] = what == M_KEYS ? d->keys[i] : d->vals[i];
        }
    }
    l->len = d->len;
    *out = jinja__list_val(l, what == M_ITEMS ? JV_F_ITEMS : what == M_KEYS ? JV_F_KEYS : JV_F_VALUES);
    return jinja__charge(r, d->len);
}

static int call_str_method(struct jinja_render *r, int id, struct jinja_value s, const struct jinja_args *a,
                           struct jinja_value *out)
{
    static const char *const strip_p[] = { "chars" }, *const split_p[] = { "sep", "maxsplit" },
                             *const affix_p[] = { "prefix" }, *const repl_p[] = { "old", "new", "count" },
                             *const one_p[] = { "x" };
    struct jinja_value v[3];
    bool given[3], res;
    int rc;

    switch (id) {
    case M_STRIP: case M_LSTRIP: case M_RSTRIP:
        if ((rc = jinja__bind_args(r, "strip", a, strip_p, 1, v, given)))
            return rc;
        return jinja__str_strip(r, s, given[0] ? v[0] : jinja__none(), id != M_RSTRIP, id != M_LSTRIP, out);
    case M_SPLIT: case M_RSPLIT: {
        int64_t maxsplit = -1;

        if ((rc = jinja__bind_args(r, "split", a, split_p, 2, v, given)))
            return rc;
        if (given[1] && (rc = to_index(r, v[1], &maxsplit, "split")))
            return rc;
        return jinja__str_split(r, s, given[0] ? v[0] : jinja__none(), maxsplit, id == M_RSPLIT, out);
    }
    case M_SPLITLINES: {
        struct jinja_list *l;

        if ((rc = jinja__str_splitlines(r, s, &l)))
            return rc;
        *out = jinja__list_val(l, 0);
        return 0;
    }
    case M_STARTSWITH: case M_ENDSWITH:
        if ((rc = jinja__bind_args(r, id == M_STARTSWITH ? "startswith" : "endswith", a, affix_p, 1,
                                   v, given)))
            return rc;
        if (!given[0])
            return jinja__fail(r, "startswith/endswith takes at least 1 argument");
        rc = jinja__str_affix(r, s, v[0], id == M_ENDSWITH, &res);
        *out = jinja__bool(res);
        return rc;
    case M_UPPER: return jinja__str_case(r, s, JCASE_UPPER, out);
    case M_LOWER: return jinja__str_case(r, s, JCASE_LOWER, out);
    case M_TITLE: return jinja__str_case(r, s, JCASE_TITLE_PY, out);
    case M_CAPITALIZE: return jinja__str_case(r, s, JCASE_CAPITALIZE, out);
    case M_REPLACE: {
        int64_t count = -1;

        if ((rc = jinja__bind_args(r, "replace", a, repl_p, 3, v, given)))
            return rc;
        if (!given[0] || !given[1])
            return jinja__fail(r, "replace expected at least 2 arguments");
        if (given[2] && (rc = to_index(r, v[2], &count, "replace")))
            return rc;
        return jinja__str_replace(r, s, v[0], v[1], count, out);
    }
    case M_FORMAT:
        return jinja__str_format(r, s, a, out);
    case M_JOIN: {
        struct jinja_list *l;
        struct buf b = BUF_INIT;

        if ((rc = jinja__bind_args(r, "join", a, one_p, 1, v, given)))
            return rc;
        if ((rc = jinja__iterate(r, given[0] ? v[0] : jinja__none(), &l)))
            return rc;
        for (size_t i = 0; i < l->len && !rc; i++) {
            if (l->items[i].type != JV_STR)
                rc = jinja__fail(r, "sequence item %zu: expected str instance, %s found", i,
                                 jinja__type_name(l->items[i]));
            else if (!(rc = i ? jinja__put(r, &b, s.s.p, s.s.len) : 0))
                rc = jinja__put(r, &b, l->items[i].s.p, l->items[i].s.len);
        }
        if (rc) {
            buf_fini(&b);
            return rc;
        }
        return jinja__buf_to_str(r, &b, out);
    }
    case M_FIND: case M_RFIND: case M_COUNT: {
        const char *hit = NULL;
        int64_t count = 0;

        if ((rc = jinja__bind_args(r, "find", a, one_p, 1, v, given)))
            return rc;
        if (!given[0] || v[0].type != JV_STR)
            return jinja__fail(r, "must be str, not %s", jinja__type_name(v[0]));
        if (id == M_COUNT) {
            if (!v[0].s.len) {
                *out = jinja__int((int64_t)jinja__u8_count(s.s.p, s.s.len) + 1);
                return 0;
            }
            for (size_t i = 0; (hit = memmem(s.s.p + i, s.s.len - i, v[0].s.p, v[0].s.len)); count++)
                i = (size_t)(hit - s.s.p) + v[0].s.len;
            *out = jinja__int(count);
            return jinja__charge(r, s.s.len / 16);
        }
        if (id == M_FIND) {
            hit = memmem(s.s.p, s.s.len, v[0].s.p, v[0].s.len);
        } else {
            for (size_t i = s.s.len - MIN(v[0].s.len, s.s.len) + 1; i-- > 0 && v[0].s.len <= s.s.len;)
                if (!memcmp(s.s.p + i, v[0].s.p, v[0].s.len)) {
                    hit = s.s.p + i;
                    break;
                }
        }
        *out = jinja__int(hit ? (int64_t)jinja__u8_count(s.s.p, (size_t)(hit - s.s.p)) : -1);
        return jinja__charge(r, s.s.len / 16);
    }
    case M_ISDIGIT: case M_ISALPHA: case M_ISALNUM: case M_ISSPACE: case M_ISUPPER: case M_ISLOWER:
        *out = jinja__bool(jinja__str_is(s, "dansul"[id - M_ISDIGIT]));
        return 0;
    case M_REMOVEPREFIX: case M_REMOVESUFFIX:
        if ((rc = jinja__bind_args(r, "removeprefix", a, one_p, 1, v, given)))
            return rc;
        if (!given[0] || v[0].type != JV_STR)
            return jinja__fail(r, "removeprefix/removesuffix takes one str argument");
        rc = jinja__str_affix(r, s, v[0], id == M_REMOVESUFFIX, &res);
        *out = !res ? s : jinja__str(s.s.p + (id == M_REMOVEPREFIX ? v[0].s.len : 0), s.s.len - v[0].s.len);
        return rc;
    }
    return jinja__fail(r, "unknown str method");
}

int jinja__func_call(struct jinja_render *r, const struct jinja_func *f, const struct jinja_args *a,
                     struct jinja_value *out)
{
    static const char *const get_p[] = { "key", "default" }, *const one_p[] = { "x" };
    struct jinja_value self = f->self, v[2];
    bool given[2];
    int rc;

    switch (f->id) {
    case B_RANGE: return call_range(r, a, out);
    case B_NAMESPACE: return call_dict(r, a, true, out);
    case B_DICT: return call_dict(r, a, false, out);
    case B_RAISE: return call_raise(r, a);
    case B_STRFTIME: return call_strftime(r, a, out);
    case M_GET:
        if ((rc = jinja__bind_args(r, "get", a, get_p, 2, v, given)))
            return rc;
        if (!given[0])
            return jinja__fail(r, "get expected at least 1 argument, got 0");
        if (!jinja__dict_get(self.dict, v[0], out))
            *out = given[1] ? v[1] : jinja__none();
        return 0;
    case M_ITEMS: case M_KEYS: case M_VALUES:
        if (a->npos || a->nkw)
            return jinja__fail(r, "items(), keys() and values() take no arguments");
        return list_of(r, self.dict, f->id, out);
    case M_LIST_INDEX: case M_LIST_COUNT: {
        int64_t count = 0;

        if ((rc = jinja__bind_args(r, "index", a, one_p, 1, v, given)))
            return rc;
        for (size_t i = 0; i < self.list->len; i++) {
            bool eq;

            if ((rc = jinja__charge(r, 1)) || (rc = jinja__eq(r, self.list->items[i], v[0], &eq)))
                return rc;
            if (eq && f->id == M_LIST_INDEX) {
                *out = jinja__int((int64_t)i);
                return 0;
            }
            count += eq;
        }
        if (f->id == M_LIST_INDEX)
            return jinja__fail(r, "list.index(x): x not in list");
        *out = jinja__int(count);
        return 0;
    }
    case M_CYCLE:
        if (!a->npos)
            return jinja__fail(r, "no items for cycling given");
        *out = a->pos[self.loop->index0 % (size_t)a->npos];
        return 0;
    default:
        if (self.type == JV_STR)
            return call_str_method(r, f->id, self, a, out);
        return jinja__fail(r, "cannot call this builtin");
    }
}

int jinja__bind_args(struct jinja_render *r, const char *fname, const struct jinja_args *a,
                     const char *const *names, int n, struct jinja_value *vals, bool *given)
{
    for (int i = 0; i < n; i++) {
        vals[i] = jinja__undef(NULL);
        given[i] = false;
    }
    if (a->npos > n)
        return jinja__fail(r, "%s() takes at most %d argument(s) (%d given)", fname, n, a->npos);
    for (int i = 0; i < a->npos; i++) {
        vals[i] = a->pos[i];
        given[i] = true;
    }
    for (int k = 0; k < a->nkw; k++) {
        int i;

        for (i = 0; i < n; i++)
            if (name_is(a->kw_name[k], a->kw_len[k], names[i]))
                break;
        if (i == n)
            return jinja__fail(r, "%s() got an unexpected keyword argument '%.*s'", fname,
                               (int)MIN(a->kw_len[k], 60), a->kw_name[k]);
        if (given[i])
            return jinja__fail(r, "%s() got multiple values for argument '%s'", fname, names[i]);
        vals[i] = a->kw[k];
        given[i] = true;
    }
    return 0;
}
