/* jinja_filters.c — Jinja's filters as chat templates use them, with Jinja 3.1's semantics
 * (default() only replaces Undefined unless told otherwise, title capitalises after - ( { [ <
 * and spaces) and transformers' tojson (json.dumps with ensure_ascii=False, indent,
 * separators, sort_keys). The table here names every filter; the parser resolves names to
 * its indices, so an unknown filter fails when the template loads. Filters over sequences
 * are jinja_filters_seq.c, tests (`is defined` …) jinja_tests.c. */
#include "engine/chat_template/jinja.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/base/util.h" /* ARRAY_LEN, MIN */

static int str_of(struct jinja_render *r, struct jinja_value in, struct jinja_value *out)
{
    return jinja__to_str(r, in, out);
}

/* ---- filters ---- */

typedef int filter_fn(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                      struct jinja_value *out);

static int f_abs(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                 struct jinja_value *out)
{
    (void)a;
    if (in.type == JV_INT || in.type == JV_BOOL) {
        int64_t i = in.type == JV_INT ? in.i : in.b;

        if (i == INT64_MIN)
            return jinja__fail(r, "integer overflow");
        *out = jinja__int(i < 0 ? -i : i);
        return 0;
    }
    if (in.type == JV_FLOAT) {
        *out = jinja__float(fabs(in.f));
        return 0;
    }
    if (in.type == JV_UNDEF)
        return jinja__fail_undefined(r, in);
    return jinja__fail(r, "bad operand type for abs(): '%s'", jinja__type_name(in));
}

static int f_attr(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                  struct jinja_value *out)
{
    struct jinja_value v[1];
    bool given[1];
    int rc, status;

    JINJA_BIND_ARGS("attr", "name");
    if (v[0].type != JV_STR)
        return jinja__fail(r, "attribute name must be a string");
    if (in.type == JV_DICT) {
        /* getattr, not the item: a dict key is no attribute */
        if (!jinja__method_find(r, in, v[0].s.p, v[0].s.len, out, &status))
            *out = jinja__undef_fmt(r, "'dict object' has no attribute '%.*s'", (int)MIN(v[0].s.len, 60), v[0].s.p);
        return status;
    }
    return jinja__getattr(r, in, v[0].s.p, v[0].s.len, out);
}

static int case_filter(struct jinja_render *r, struct jinja_value in, int mode, struct jinja_value *out)
{
    int rc = str_of(r, in, &in);

    return rc ? rc : jinja__str_case(r, in, mode, out);
}

static int f_capitalize(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                        struct jinja_value *out)
{
    (void)a;
    return case_filter(r, in, JCASE_CAPITALIZE, out);
}

static int f_lower(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                   struct jinja_value *out)
{
    (void)a;
    return case_filter(r, in, JCASE_LOWER, out);
}

static int f_upper(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                   struct jinja_value *out)
{
    (void)a;
    return case_filter(r, in, JCASE_UPPER, out);
}

static int f_title(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                   struct jinja_value *out)
{
    (void)a;
    return case_filter(r, in, JCASE_TITLE_JINJA, out);
}

static int f_default(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                     struct jinja_value *out)
{
    struct jinja_value v[2];
    bool given[2];
    int rc;

    JINJA_BIND_ARGS("default", "default_value", "boolean");
    if (in.type == JV_UNDEF || (given[1] && jinja__truthy(v[1]) && !jinja__truthy(in)))
        *out = given[0] ? v[0] : jinja__str("", 0);
    else
        *out = in;
    return 0;
}

static int f_escape(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                    struct jinja_value *out)
{
    struct buf b = BUF_INIT;
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
        case '&': rc = jinja__put(r, &b, "&amp;", 5); break;
        case '<': rc = jinja__put(r, &b, "&lt;", 4); break;
        case '>': rc = jinja__put(r, &b, "&gt;", 4); break;
        case '"': rc = jinja__put(r, &b, "&#34;", 5); break;
        case '\'': rc = jinja__put(r, &b, "&#39;", 5); break;
        default: rc = jinja__putc(r, &b, in.s.p[i]);
        }
    }
    if (rc || (rc = jinja__buf_to_str(r, &b, out))) {
        buf_fini(&b);
        return rc;
    }
    out->flags |= JV_F_SAFE;
    return 0;
}

static int f_safe(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                  struct jinja_value *out)
{
    int rc = str_of(r, in, out);

    (void)a;
    out->flags |= JV_F_SAFE;
    return rc;
}

/* Python's float() of a str: strip, then a decimal number, inf or nan. */
static bool parse_float(struct jinja_value s, double *out)
{
    char buf[128], *end;
    struct jinja_value t = s;
    size_t b = 0, e = t.s.len;

    while (b < e && jinja__py_isspace((unsigned char)t.s.p[b]))
        b++;
    while (e > b && jinja__py_isspace((unsigned char)t.s.p[e - 1]))
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

static int f_float(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                   struct jinja_value *out)
{
    struct jinja_value v[1];
    bool given[1];
    double d;
    int rc;

    JINJA_BIND_ARGS("float", "default");
    if (jinja__is_num(in))
        *out = jinja__float(in.type == JV_FLOAT ? in.f : in.type == JV_INT ? (double)in.i : in.b);
    else if (in.type == JV_STR && parse_float(in, &d))
        *out = jinja__float(d);
    else
        *out = given[0] ? v[0] : jinja__float(0.0);
    return 0;
}

static int f_int(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                 struct jinja_value *out)
{
    struct jinja_value v[2];
    bool given[2];
    double d;
    int rc;

    JINJA_BIND_ARGS("int", "default", "base");
    *out = given[0] ? v[0] : jinja__int(0);
    if (in.type == JV_INT || in.type == JV_BOOL) {
        *out = jinja__int(in.type == JV_INT ? in.i : in.b);
    } else if (in.type == JV_FLOAT) {
        if (isfinite(in.f) && fabs(in.f) < 9.2e18)
            *out = jinja__int((int64_t)in.f);
    } else if (in.type == JV_STR) {
        char buf[80], *end;
        size_t b = 0, e = in.s.len, n = 0;
        int base = 10;

        if (given[1] && (v[1].type != JV_INT || v[1].i < 2 || v[1].i > 36))
            return jinja__fail(r, "int() base must be >= 2 and <= 36");
        if (given[1])
            base = (int)v[1].i;
        while (b < e && jinja__py_isspace((unsigned char)in.s.p[b]))
            b++;
        while (e > b && jinja__py_isspace((unsigned char)in.s.p[e - 1]))
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
            if (*end == '\0' && !errno && !jinja__py_isspace((unsigned char)buf[0]))
                *out = jinja__int(x);
            else if (parse_float(in, &d) && isfinite(d) && fabs(d) < 9.2e18)
                *out = jinja__int((int64_t)d);
        }
    }
    return 0;
}

static int f_indent(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                    struct jinja_value *out)
{
    struct jinja_value v[3], ind;
    bool given[3];
    struct jinja_list *lines;
    struct buf b = BUF_INIT;
    int rc;

    JINJA_BIND_ARGS("indent", "width", "first", "blank");
    if ((rc = str_of(r, in, &in)))
        return rc;
    if (given[0] && v[0].type == JV_STR) {
        ind = v[0];
    } else {
        int64_t w = given[0] ? (v[0].type == JV_INT ? v[0].i : v[0].type == JV_BOOL ? v[0].b : -1) : 4;
        char *sp;

        if (w < 0 || w > 4096)
            return jinja__fail(r, "indent width must be an int between 0 and 4096 or a string");
        if (!(sp = jinja__alloc(r, (size_t)w + 1)))
            return -ENOMEM;
        memset(sp, ' ', (size_t)w);
        ind = jinja__str(sp, (size_t)w);
    }
    /* s += "\n", then splitlines: the quirk that drops one trailing newline */
    {
        char *s = jinja__alloc(r, in.s.len + 2);

        if (!s)
            return -ENOMEM;
        memcpy(s, in.s.p, in.s.len);
        s[in.s.len] = '\n';
        in = jinja__str(s, in.s.len + 1);
    }
    if ((rc = jinja__str_splitlines(r, in, &lines)))
        return rc;
    for (size_t i = 0; i < lines->len && !rc; i++) {
        struct jinja_value line = lines->items[i];
        bool pad = given[2] && jinja__truthy(v[2]) ? (i > 0) : (i > 0 && line.s.len);

        if (i)
            rc = jinja__putc(r, &b, '\n');
        if (!rc && pad)
            rc = jinja__put(r, &b, ind.s.p, ind.s.len);
        if (!rc)
            rc = jinja__put(r, &b, line.s.p, line.s.len);
    }
    if (!rc && given[1] && jinja__truthy(v[1])) {
        struct buf c = BUF_INIT;

        if (!(rc = jinja__put(r, &c, ind.s.p, ind.s.len)))
            rc = jinja__put(r, &c, b.p ? b.p : "", b.len);
        buf_fini(&b);
        b = c;
    }
    if (!rc)
        return jinja__buf_to_str(r, &b, out);
    buf_fini(&b);
    return rc;
}

static int f_replace(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                     struct jinja_value *out)
{
    struct jinja_value v[3];
    bool given[3];
    int64_t count = -1;
    int rc;

    JINJA_BIND_ARGS("replace", "old", "new", "count");
    if (!given[0] || !given[1])
        return jinja__fail(r, "replace() needs old and new");
    if ((rc = str_of(r, in, &in)) || (rc = str_of(r, v[0], &v[0])) || (rc = str_of(r, v[1], &v[1])))
        return rc;
    if (given[2] && v[2].type != JV_NONE) {
        if (v[2].type != JV_INT)
            return jinja__fail(r, "replace() count must be an integer");
        count = v[2].i;
    }
    return jinja__str_replace(r, in, v[0], v[1], count, out);
}

static int f_round(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                   struct jinja_value *out)
{
    struct jinja_value v[2];
    bool given[2];
    int64_t prec = 0;
    double x, m, y;
    const char *method = "common";
    int rc;

    JINJA_BIND_ARGS("round", "precision", "method");
    if (given[0] && (v[0].type != JV_INT || v[0].i < -300 || v[0].i > 300))
        return jinja__fail(r, "round() precision must be an integer");
    prec = given[0] ? v[0].i : 0;
    if (given[1]) {
        if (v[1].type != JV_STR || (memcmp(v[1].s.p, "common", MIN(v[1].s.len, 7)) &&
                                    memcmp(v[1].s.p, "ceil", MIN(v[1].s.len, 5)) &&
                                    memcmp(v[1].s.p, "floor", MIN(v[1].s.len, 6))))
            return jinja__fail(r, "method must be common, ceil or floor");
        method = v[1].s.p;
    }
    if (!jinja__is_num(in))
        return jinja__fail(r, "type %s doesn't define __round__ method", jinja__type_name(in));
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
        *out = jinja__int((int64_t)y);
    else
        *out = jinja__float(y);
    return 0;
}

static int f_string(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                    struct jinja_value *out)
{
    (void)a;
    return str_of(r, in, out);
}

static int f_tojson(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                    struct jinja_value *out)
{
    struct jinja_value v[4];
    bool given[4];
    struct jinja_json_opts o = { .item_sep = ", ", .key_sep = ": " };
    struct buf b = BUF_INIT;
    char spaces[65];
    int rc;

    JINJA_BIND_ARGS("tojson", "ensure_ascii", "indent", "separators", "sort_keys");
    o.ensure_ascii = given[0] && jinja__truthy(v[0]);
    o.sort_keys = given[3] && jinja__truthy(v[3]);
    if (given[1] && v[1].type != JV_NONE) {
        if (v[1].type == JV_STR) {
            bool ok2;
            struct jinja_value c = jinja__str_copy(r, v[1].s.p, v[1].s.len, &ok2);   /* NUL-terminated */

            if (!ok2)
                return -ENOMEM;
            o.indent = c.s.p;
        } else if (v[1].type == JV_INT || v[1].type == JV_BOOL) {
            int64_t w = v[1].type == JV_INT ? v[1].i : v[1].b;

            if (w > 64)
                return jinja__fail(r, "tojson indent over 64");
            w = w < 0 ? 0 : w;
            memset(spaces, ' ', (size_t)w);
            spaces[w] = '\0';
            o.indent = spaces;
        } else {
            return jinja__fail(r, "tojson indent must be an int or a string");
        }
        o.item_sep = ",";
    }
    if (given[2] && v[2].type != JV_NONE) {
        struct jinja_list *l;
        bool ok2, ok3;

        if (v[2].type != JV_LIST || (v[2].flags & JV_F_GEN) || (l = v[2].list)->len != 2 ||
            l->items[0].type != JV_STR || l->items[1].type != JV_STR)
            return jinja__fail(r, "tojson separators must be a pair of strings");
        o.item_sep = jinja__str_copy(r, l->items[0].s.p, l->items[0].s.len, &ok2).s.p;
        o.key_sep = jinja__str_copy(r, l->items[1].s.p, l->items[1].s.len, &ok3).s.p;
        if (!ok2 || !ok3)
            return -ENOMEM;
    }
    if ((rc = jinja__write_json(r, &b, in, &o, 0))) {
        buf_fini(&b);
        return rc;
    }
    return jinja__buf_to_str(r, &b, out);
}

static int f_trim(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                  struct jinja_value *out)
{
    struct jinja_value v[1];
    bool given[1];
    int rc;

    JINJA_BIND_ARGS("trim", "chars");
    if ((rc = str_of(r, in, &in)))
        return rc;
    return jinja__str_strip(r, in, given[0] ? v[0] : jinja__none(), true, true, out);
}

static int f_format(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                    struct jinja_value *out)
{
    struct jinja_list *l;
    int rc;

    if ((rc = str_of(r, in, &in)))
        return rc;
    if (a->nkw) {
        struct jinja_dict *d = jinja__dict_new(r, 0);

        if (!d)
            return -ENOMEM;
        if (a->npos)
            return jinja__fail(r, "can't handle positional and keyword arguments at the same time");
        for (int k = 0; k < a->nkw; k++)
            if ((rc = jinja__dict_set(r, d, jinja__str(a->kw_name[k], a->kw_len[k]), a->kw[k])))
                return rc;
        return jinja__percent_format(r, in, (struct jinja_value){ .type = JV_DICT, .dict = d }, out);
    }
    if (!(l = jinja__list_new(r, (size_t)a->npos)))
        return -ENOMEM;
    for (int i = 0; i < a->npos; i++)
        l->items[l->len++] = a->pos[i];
    return jinja__percent_format(r, in, jinja__list_val(l, JV_F_TUPLE), out);
}

static int f_wordcount(struct jinja_render *r, struct jinja_value in, const struct jinja_args *a,
                       struct jinja_value *out)
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

        i = jinja__u8_next(in.s.p, in.s.len, i, &cp);
        w = cp == '_' || (cp < 0x80 ? ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') || (cp >= '0' && cp <= '9')
                                    : !jinja__py_isspace(cp));
        n += w && !inword;
        inword = w;
    }
    *out = jinja__int(n);
    return 0;
}

static const struct { const char *name; filter_fn *fn; } filters[] = {
    { "abs", f_abs }, { "attr", f_attr }, { "capitalize", f_capitalize }, { "count", jinja__filter_length },
    { "d", f_default }, { "default", f_default }, { "dictsort", jinja__filter_dictsort }, { "e", f_escape },
    { "escape", f_escape }, { "first", jinja__filter_first }, { "float", f_float }, { "format", f_format },
    { "indent", f_indent }, { "int", f_int }, { "items", jinja__filter_items },
    { "join", jinja__filter_join }, { "last", jinja__filter_last }, { "length", jinja__filter_length },
    { "list", jinja__filter_list }, { "lower", f_lower }, { "map", jinja__filter_map },
    { "max", jinja__filter_max }, { "min", jinja__filter_min }, { "reject", jinja__filter_reject },
    { "rejectattr", jinja__filter_rejectattr }, { "replace", f_replace },
    { "reverse", jinja__filter_reverse }, { "round", f_round }, { "safe", f_safe },
    { "select", jinja__filter_select }, { "selectattr", jinja__filter_selectattr },
    { "sort", jinja__filter_sort }, { "string", f_string }, { "sum", jinja__filter_sum },
    { "title", f_title }, { "tojson", f_tojson }, { "trim", f_trim }, { "unique", jinja__filter_unique },
    { "upper", f_upper }, { "wordcount", f_wordcount },
};

int jinja__filter_find(const char *name, size_t len)
{
    for (size_t i = 0; i < ARRAY_LEN(filters); i++)
        if (strlen(filters[i].name) == len && !memcmp(filters[i].name, name, len))
            return (int)i;
    return -1;
}

int jinja__filter_apply(struct jinja_render *r, int id, struct jinja_value in,
                        const struct jinja_args *a, struct jinja_value *out)
{
    if (id < 0 || (size_t)id >= ARRAY_LEN(filters))
        return jinja__fail(r, "unknown filter");
    return filters[id].fn(r, in, a, out);
}
