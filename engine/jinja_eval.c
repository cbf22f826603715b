/* jinja_eval.c — walks the syntax tree: statements write to the render's output buffer,
 * expressions compute values with Python's semantics (arithmetic, comparison chains,
 * `in`, slicing, and/or returning an operand) and Jinja's (Undefined, the sandbox's
 * attribute and item lookup). Scopes follow Jinja: a for-loop iteration and a macro call
 * get their own, `if` does not. Every step is charged against the render's limits. */
#include "engine/jinja.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/util.h" /* ERR_LEN, MIN */

enum { JR_BREAK = 1, JR_CONTINUE = 2 };

struct jscope {
    struct jscope *parent;
    struct jv_dict *vars;   /* NULL until something is set here */
};

static int eval(struct jinja_render *r, const struct jnode *n, struct jscope *sc, struct jv *out);
static int exec_body(struct jinja_render *r, const struct jnode *n, struct jscope *sc);

struct jv jinja_undef(struct jinja_render *r, const char *fmt, ...)
{
    char msg[ERR_LEN];
    va_list ap;
    int n;
    char *s;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    n = MIN(n, (int)sizeof msg - 1);
    if (n < 0 || !(s = jr_alloc(r, (size_t)n + 1)))
        return jv_undef(NULL);
    memcpy(s, msg, (size_t)n);
    return jv_undef(s);
}

/* ---- scopes ---- */

static int scope_set(struct jinja_render *r, struct jscope *sc, const char *name, size_t len, struct jv v)
{
    if (!sc->vars && !(sc->vars = jv_dict_new(r, 4)))
        return -ENOMEM;
    return jv_dict_set(r, sc->vars, jv_str(name, len), v);
}

static void scope_clear(struct jscope *sc)
{
    if (!sc->vars)
        return;
    sc->vars->len = 0;
    if (sc->vars->index_cap)
        memset(sc->vars->index, 0, sc->vars->index_cap * sizeof *sc->vars->index);
}

static struct jv lookup(struct jinja_render *r, struct jscope *sc, const char *name, size_t len)
{
    struct jv v;

    for (; sc; sc = sc->parent)
        if (sc->vars && jv_dict_get_str(sc->vars, name, len, &v))
            return v;
    if (jinja_global_find(name, len, &v))
        return v;
    return jinja_undef(r, "'%.*s' is undefined", (int)MIN(len, 100), name);
}

/* ---- attribute and item access (the sandbox's getattr / getitem) ---- */

static const char *obj_desc(struct jv obj)
{
    return obj.type == JV_NONE ? "None" : jv_type_name(obj);
}

static int loop_attr(struct jinja_render *r, struct jv obj, const char *name, size_t len, struct jv *out)
{
    const struct jv_loop *l = obj.loop;
    int64_t i = (int64_t)l->index0, n = (int64_t)l->items->len;
#define IS(s) (len == sizeof(s) - 1 && !memcmp(name, s, len))

    if (IS("index")) *out = jv_int(i + 1);
    else if (IS("index0")) *out = jv_int(i);
    else if (IS("revindex")) *out = jv_int(n - i);
    else if (IS("revindex0")) *out = jv_int(n - i - 1);
    else if (IS("first")) *out = jv_bool(i == 0);
    else if (IS("last")) *out = jv_bool(i == n - 1);
    else if (IS("length")) *out = jv_int(n);
    else if (IS("depth")) *out = jv_int(1);
    else if (IS("depth0")) *out = jv_int(0);
    else if (IS("previtem"))
        *out = i > 0 ? l->items->items[i - 1] : jinja_undef(r, "there is no previous item");
    else if (IS("nextitem"))
        *out = i + 1 < n ? l->items->items[i + 1] : jinja_undef(r, "there is no next item");
    else {
        int status = 0;

        if (!jinja_method_find(r, obj, name, len, out, &status))
            *out = jinja_undef(r, "'LoopContext object' has no attribute '%.*s'", (int)MIN(len, 100), name);
        return status;
    }
#undef IS
    return 0;
}

int jinja_getattr(struct jinja_render *r, struct jv obj, const char *name, size_t len, struct jv *out)
{
    int status = 0;

    switch (obj.type) {
    case JV_UNDEF:
        return jr_undefined(r, obj);
    case JV_LOOP:
        return loop_attr(r, obj, name, len, out);
    case JV_NS:
        if (jv_dict_get_str(obj.dict, name, len, out))
            return 0;
        break;
    case JV_DICT:
        /* Python attributes first (items, get …), then the key, as Jinja's getattr does. */
        if (jinja_method_find(r, obj, name, len, out, &status))
            return status;
        if (jv_dict_get_str(obj.dict, name, len, out))
            return 0;
        break;
    default:
        if (jinja_method_find(r, obj, name, len, out, &status))
            return status;
    }
    *out = jinja_undef(r, "'%s object' has no attribute '%.*s'", obj_desc(obj), (int)MIN(len, 100), name);
    return 0;
}

/* Python's index for seq[i], or -1 when out of range. */
static int64_t index_of(int64_t i, size_t len)
{
    if (i < 0)
        i += (int64_t)len;
    return i >= 0 && (uint64_t)i < len ? i : -1;
}

int jinja_getitem(struct jinja_render *r, struct jv obj, struct jv key, struct jv *out)
{
    if (obj.type == JV_UNDEF)
        return jr_undefined(r, obj);
    if ((obj.type == JV_DICT) && jv_dict_get(obj.dict, key, out))
        return 0;
    if (obj.type == JV_LIST && !(obj.flags & JV_F_GEN) && (key.type == JV_INT || key.type == JV_BOOL)) {
        int64_t i = index_of(key.type == JV_INT ? key.i : key.b, obj.list->len);

        if (i >= 0) {
            *out = obj.list->items[i];
            return 0;
        }
    }
    if (obj.type == JV_STR && (key.type == JV_INT || key.type == JV_BOOL)) {
        int64_t want = key.type == JV_INT ? key.i : key.b;
        size_t n = u8_count(obj.s.p, obj.s.len);
        int64_t i = index_of(want, n);

        if (i >= 0) {
            int32_t cp;
            size_t off = 0, next;

            for (int64_t k = 0; k < i; k++)
                off = u8_next(obj.s.p, obj.s.len, off, &cp);
            next = u8_next(obj.s.p, obj.s.len, off, &cp);
            *out = jv_str(obj.s.p + off, next - off);
            return jr_charge(r, obj.s.len / 64);
        }
    }
    if (key.type == JV_STR)
        return jinja_getattr(r, obj, key.s.p, key.s.len, out);
    if (key.type == JV_INT)
        *out = jinja_undef(r, "'%s object' has no element %lld", obj_desc(obj), (long long)key.i);
    else
        *out = jinja_undef(r, "'%s object' has no element of type %s", obj_desc(obj), jv_type_name(key));
    return 0;
}

/* ---- slicing ---- */

static int slice_arg(struct jinja_render *r, const struct jnode *n, struct jscope *sc, bool *given,
                     int64_t *v)
{
    struct jv x;
    int rc;

    *given = false;
    if (!n)
        return 0;
    if ((rc = eval(r, n, sc, &x)))
        return rc;
    if (x.type == JV_NONE)
        return 0;
    if (x.type != JV_INT && x.type != JV_BOOL)
        return jr_fail(r, "slice indices must be integers or None, not %s", jv_type_name(x));
    *given = true;
    *v = x.type == JV_INT ? x.i : x.b;
    return 0;
}

/* Python's slice.indices: start, the count of items, and the step. */
static int slice_plan(struct jinja_render *r, const struct jnode *n, struct jscope *sc, size_t len,
                      int64_t *start, int64_t *count, int64_t *step)
{
    int64_t b = 0, e = 0, st = 1, lo, hi, l = (int64_t)len;
    bool hb, he, hs;
    int rc;

    if ((rc = slice_arg(r, n->b, sc, &hb, &b)) || (rc = slice_arg(r, n->c, sc, &he, &e)) ||
        (rc = slice_arg(r, n->d, sc, &hs, &st)))
        return rc;
    if (!hs)
        st = 1;
    if (st == 0)
        return jr_fail(r, "slice step cannot be zero");
    if (st == INT64_MIN)
        st = -INT64_MAX;
    lo = st > 0 ? 0 : -1;
    hi = st > 0 ? l : l - 1;
    if (!hb)
        b = st > 0 ? lo : hi;
    else if (b < 0)
        b = MAX(b + l, lo);
    else
        b = MIN(b, hi);
    if (!he)
        e = st > 0 ? hi : lo;
    else if (e < 0)
        e = MAX(e + l, lo);
    else
        e = MIN(e, hi);
    *start = b;
    *step = st;
    if (st > 0)
        *count = e > b ? (e - b - 1) / st + 1 : 0;
    else
        *count = b > e ? (b - e - 1) / -st + 1 : 0;
    return 0;
}

static int eval_slice(struct jinja_render *r, const struct jnode *n, struct jscope *sc, struct jv *out)
{
    struct jv obj;
    int64_t start, count, step;
    int rc;

    if ((rc = eval(r, n->a, sc, &obj)))
        return rc;
    if (obj.type == JV_UNDEF)
        return jr_undefined(r, obj);
    if (obj.type == JV_LIST && !(obj.flags & JV_F_GEN)) {
        struct jv_list *l;

        if ((rc = slice_plan(r, n, sc, obj.list->len, &start, &count, &step)) ||
            (rc = jr_charge(r, (uint64_t)count)))
            return rc;
        if (!(l = jv_list_new(r, (size_t)count)))
            return -ENOMEM;
        for (int64_t k = 0; k < count; k++)
            l->items[k] = obj.list->items[start + k * step];
        l->len = (size_t)count;
        *out = jv_list_val(l, obj.flags & JV_F_TUPLE);
        return 0;
    }
    if (obj.type == JV_STR) {
        size_t ncp = 0, *off;
        char *s;
        size_t len = 0;
        int32_t cp;

        if ((rc = jr_charge(r, obj.s.len)))
            return rc;
        /* Offsets of each code point, so that steps and negative indices are cheap. */
        if (!(off = jr_alloc(r, (obj.s.len + 1) * sizeof *off)))
            return -ENOMEM;
        for (size_t i = 0; i < obj.s.len; ncp++) {
            off[ncp] = i;
            i = u8_next(obj.s.p, obj.s.len, i, &cp);
        }
        off[ncp] = obj.s.len;
        if ((rc = slice_plan(r, n, sc, ncp, &start, &count, &step)))
            return rc;
        if (step == 1) {
            *out = count ? jv_str(obj.s.p + off[start], off[start + count] - off[start]) : jv_str("", 0);
            return 0;
        }
        if (!(s = jr_alloc(r, obj.s.len + 1)))
            return -ENOMEM;
        for (int64_t k = 0; k < count; k++) {
            int64_t i = start + k * step;

            memcpy(s + len, obj.s.p + off[i], off[i + 1] - off[i]);
            len += off[i + 1] - off[i];
        }
        *out = jv_str(s, len);
        return 0;
    }
    return jr_fail(r, "'%s' object is not subscriptable", jv_type_name(obj));
}

/* ---- operators ---- */

static int concat_str(struct jinja_render *r, struct jv a, struct jv b, struct jv *out)
{
    char *s;

    if (!b.s.len || !a.s.len) {
        *out = a.s.len ? a : b;
        out->flags = 0;
        return 0;
    }
    if (a.s.len + b.s.len > r->lim->max_memory_bytes)
        return jr_oom(r);
    if (!(s = jr_alloc(r, a.s.len + b.s.len + 1)))
        return -ENOMEM;
    memcpy(s, a.s.p, a.s.len);
    memcpy(s + a.s.len, b.s.p, b.s.len);
    *out = jv_str(s, a.s.len + b.s.len);
    return jr_charge(r, (a.s.len + b.s.len) / 64);
}

static int repeat(struct jinja_render *r, struct jv seq, int64_t times, struct jv *out)
{
    size_t unit = seq.type == JV_STR ? seq.s.len : seq.list->len * sizeof(struct jv);
    size_t n = times > 0 ? (size_t)times : 0;

    if (n && unit > r->lim->max_memory_bytes / n)
        return jr_oom(r);
    if (seq.type == JV_STR) {
        char *s = jr_alloc(r, unit * n + 1);

        if (!s)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++)
            memcpy(s + i * unit, seq.s.p, unit);
        *out = jv_str(s, unit * n);
    } else {
        struct jv_list *l = jv_list_new(r, seq.list->len * n);

        if (!l)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++)
            memcpy(l->items + i * seq.list->len, seq.list->items, unit);
        l->len = seq.list->len * n;
        *out = jv_list_val(l, seq.flags & JV_F_TUPLE);
    }
    return jr_charge(r, unit * n / 64);
}

static int int_pow(struct jinja_render *r, int64_t base, int64_t e, struct jv *out)
{
    int64_t acc = 1;

    while (e > 0) {
        if (e & 1 && __builtin_mul_overflow(acc, base, &acc))
            return jr_fail(r, "integer result of ** is too large");
        e >>= 1;
        if (e && __builtin_mul_overflow(base, base, &base))
            return jr_fail(r, "integer result of ** is too large");
    }
    *out = jv_int(acc);
    return 0;
}

static int num_arith(struct jinja_render *r, int op, struct jv a, struct jv b, struct jv *out)
{
    bool ints = a.type != JV_FLOAT && b.type != JV_FLOAT;
    int64_t x = a.type == JV_INT ? a.i : a.type == JV_BOOL ? a.b : 0;
    int64_t y = b.type == JV_INT ? b.i : b.type == JV_BOOL ? b.b : 0, z;
    double fx = a.type == JV_FLOAT ? a.f : (double)x, fy = b.type == JV_FLOAT ? b.f : (double)y;

    switch (op) {
    case OP_ADD:
        if (ints && !__builtin_add_overflow(x, y, &z)) { *out = jv_int(z); return 0; }
        break;
    case OP_SUB:
        if (ints && !__builtin_sub_overflow(x, y, &z)) { *out = jv_int(z); return 0; }
        break;
    case OP_MUL:
        if (ints && !__builtin_mul_overflow(x, y, &z)) { *out = jv_int(z); return 0; }
        break;
    case OP_DIV:
        if (fy == 0)
            return jr_fail(r, "division by zero");
        *out = jv_float(fx / fy);
        return 0;
    case OP_FLOORDIV:
    case OP_MOD:
        if (ints) {
            if (y == 0)
                return jr_fail(r, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1)
                return jr_fail(r, "integer overflow in // or %%");
            z = x % y;
            if (z && ((z < 0) != (y < 0)))
                *out = op == OP_MOD ? jv_int(z + y) : jv_int(x / y - 1);
            else
                *out = op == OP_MOD ? jv_int(z) : jv_int(x / y);
            return 0;
        }
        if (fy == 0)
            return jr_fail(r, op == OP_MOD ? "float modulo" : "float floor division by zero");
        {
            double m = fmod(fx, fy), d = (fx - m) / fy;

            if (m && ((fy < 0) != (m < 0))) {
                m += fy;
                d -= 1.0;
            }
            if (op == OP_MOD) {
                *out = jv_float(m ? m : copysign(0.0, fy));
            } else {
                double fd = floor(d);

                if (d - fd > 0.5)
                    fd += 1.0;
                *out = jv_float(d ? fd : copysign(0.0, fx / fy));
            }
        }
        return 0;
    case OP_POW:
        if (ints && y >= 0)
            return int_pow(r, x, y, out);
        if (fx == 0 && fy < 0)
            return jr_fail(r, "0.0 cannot be raised to a negative power");
        if (fx < 0 && fy != floor(fy))
            return jr_fail(r, "a negative number to a fractional power is complex");
        *out = jv_float(pow(fx, fy));
        return 0;
    }
    if (ints)
        return jr_fail(r, "integer overflow");
    *out = jv_float(op == OP_ADD ? fx + fy : op == OP_SUB ? fx - fy : fx * fy);
    return 0;
}

static int arith(struct jinja_render *r, int op, struct jv a, struct jv b, struct jv *out)
{
    static const char *const sym[] = { [OP_ADD] = "+", [OP_SUB] = "-", [OP_MUL] = "*", [OP_DIV] = "/",
                                       [OP_FLOORDIV] = "//", [OP_MOD] = "%", [OP_POW] = "**" };
    int rc;

    if (op == OP_TILDE) {
        if ((rc = jv_to_str(r, a, &a)) || (rc = jv_to_str(r, b, &b)))
            return rc;
        return concat_str(r, a, b, out);
    }
    if (a.type == JV_UNDEF)
        return jr_undefined(r, a);
    if (b.type == JV_UNDEF)
        return jr_undefined(r, b);
    if (jv_is_num(a) && jv_is_num(b))
        return num_arith(r, op, a, b, out);
    if (op == OP_ADD && a.type == JV_STR && b.type == JV_STR)
        return concat_str(r, a, b, out);
    if (op == OP_MOD && a.type == JV_STR)
        return jinja_percent_format(r, a, b, out);
    if (op == OP_MUL && (a.type == JV_STR || (a.type == JV_LIST && !(a.flags & JV_F_GEN))) &&
        (b.type == JV_INT || b.type == JV_BOOL))
        return repeat(r, a, b.type == JV_INT ? b.i : b.b, out);
    if (op == OP_MUL && (b.type == JV_STR || (b.type == JV_LIST && !(b.flags & JV_F_GEN))) &&
        (a.type == JV_INT || a.type == JV_BOOL))
        return repeat(r, b, a.type == JV_INT ? a.i : a.b, out);
    if (op == OP_ADD && a.type == JV_LIST && b.type == JV_LIST && !((a.flags | b.flags) & JV_F_GEN) &&
        (a.flags & JV_F_TUPLE) == (b.flags & JV_F_TUPLE)) {
        struct jv_list *l = jv_list_new(r, a.list->len + b.list->len);

        if (!l)
            return -ENOMEM;
        memcpy(l->items, a.list->items, a.list->len * sizeof *l->items);
        memcpy(l->items + a.list->len, b.list->items, b.list->len * sizeof *l->items);
        l->len = a.list->len + b.list->len;
        *out = jv_list_val(l, a.flags & JV_F_TUPLE);
        return jr_charge(r, l->len);
    }
    if (op == OP_ADD && a.type == JV_STR)
        return jr_fail(r, "can only concatenate str (not \"%s\") to str", jv_type_name(b));
    return jr_fail(r, "unsupported operand type(s) for %s: '%s' and '%s'", sym[op] ? sym[op] : "?",
                   jv_type_name(a), jv_type_name(b));
}

static int contains(struct jinja_render *r, struct jv seq, struct jv item, bool *res)
{
    *res = false;
    switch (seq.type) {
    case JV_UNDEF:
        return 0;
    case JV_STR:
        if (item.type != JV_STR)
            return jr_fail(r, "'in <string>' requires string as left operand, not %s", jv_type_name(item));
        *res = !item.s.len || memmem(seq.s.p, seq.s.len, item.s.p, item.s.len);
        return jr_charge(r, seq.s.len / 16);
    case JV_DICT:
        if (item.type == JV_LIST && !(item.flags & JV_F_TUPLE))
            return jr_fail(r, "unhashable type: '%s'", jv_type_name(item));
        *res = jv_dict_get(seq.dict, item, &item);
        return 0;
    case JV_LIST: {
        struct jv_list *l;
        int rc = jv_iterate(r, seq, &l);

        for (size_t i = 0; !rc && i < l->len && !*res; i++)
            if (!(rc = jr_charge(r, 1)))
                rc = jv_eq(r, l->items[i], item, res);
        return rc;
    }
    default:
        return jr_fail(r, "argument of type '%s' is not iterable", jv_type_name(seq));
    }
}

static int compare(struct jinja_render *r, int op, struct jv a, struct jv b, bool *res)
{
    bool lt, eq;
    int rc;

    switch (op) {
    case OP_EQ: return jv_eq(r, a, b, res);
    case OP_NE: rc = jv_eq(r, a, b, &eq); *res = !eq; return rc;
    case OP_LT: return jv_lt(r, a, b, res);
    case OP_GT: return jv_lt(r, b, a, res);
    case OP_LE: case OP_GE:
        if (op == OP_GE) {
            struct jv t = a;

            a = b;
            b = t;
        }
        if ((rc = jv_lt(r, a, b, &lt)) || lt) {
            *res = lt;
            return rc;
        }
        return jv_eq(r, a, b, res);
    case OP_IN: return contains(r, b, a, res);
    case OP_NOTIN: rc = contains(r, b, a, &eq); *res = !eq; return rc;
    }
    return jr_fail(r, "unknown comparison");
}

/* ---- calls ---- */

static int __attribute__((noinline)) eval_args(struct jinja_render *r, const struct jnode *n,
                                               struct jscope *sc, struct jcall_args *a)
{
    int rc;

    a->npos = a->nkw = 0;
    for (const struct jnode *arg = n->b; arg; arg = arg->next) {
        if (arg->kind == JN_KWARG) {
            a->kw_name[a->nkw] = arg->str;
            a->kw_len[a->nkw] = arg->len;
            if ((rc = eval(r, arg->a, sc, &a->kw[a->nkw++])))
                return rc;
        } else if ((rc = eval(r, arg, sc, &a->pos[a->npos++]))) {
            return rc;
        }
    }
    return 0;
}

static int render_capture(struct jinja_render *r, const struct jnode *body, struct jscope *sc, struct jv *out)
{
    struct jbuf buf = { .max = r->lim->max_output_bytes }, *saved = r->out;
    bool ok;
    int rc;

    r->out = &buf;
    rc = exec_body(r, body, sc);
    r->out = saved;
    if (rc < 0) {
        jbuf_fini(&buf);
        return rc;
    }
    *out = jv_str_copy(r, buf.p ? buf.p : "", buf.len, &ok);
    jbuf_fini(&buf);
    return ok ? rc : -ENOMEM;
}

static int call_macro(struct jinja_render *r, const struct jv_closure *c, const struct jcall_args *a,
                      struct jv caller, struct jv *out)
{
    const struct jinja_macro *m = c->macro;
    struct jscope ms = { .parent = c->scope };
    bool given[JINJA_MAX_ARGS] = { 0 };
    const struct jnode *p;
    int i, rc;

    if (a->npos > m->nparams)
        return jr_fail(r, "macro '%.*s' takes not more than %d argument(s)", (int)m->len, m->name, m->nparams);
    for (i = 0, p = m->params; i < a->npos; i++, p = p->next) {
        if ((rc = scope_set(r, &ms, p->str, p->len, a->pos[i])))
            return rc;
        given[i] = true;
    }
    for (int k = 0; k < a->nkw; k++) {
        for (i = 0, p = m->params; p; i++, p = p->next)
            if (p->len == a->kw_len[k] && !memcmp(p->str, a->kw_name[k], p->len))
                break;
        if (!p)
            return jr_fail(r, "macro '%.*s' takes no keyword argument '%.*s'", (int)m->len, m->name,
                           (int)a->kw_len[k], a->kw_name[k]);
        if (given[i])
            return jr_fail(r, "macro '%.*s' got multiple values for argument '%.*s'", (int)m->len,
                           m->name, (int)p->len, p->str);
        if ((rc = scope_set(r, &ms, p->str, p->len, a->kw[k])))
            return rc;
        given[i] = true;
    }
    for (i = 0, p = m->params; p; i++, p = p->next) {
        struct jv v;

        if (given[i])
            continue;
        if (p->a)
            rc = eval(r, p->a, &ms, &v);
        else
            v = jinja_undef(r, "parameter '%.*s' was not provided", (int)p->len, p->str), rc = 0;
        if (rc || (rc = scope_set(r, &ms, p->str, p->len, v)))
            return rc;
    }
    if (caller.type == JV_MACRO && (rc = scope_set(r, &ms, "caller", 6, caller)))
        return rc;
    rc = render_capture(r, m->body, &ms, out);
    return rc > 0 ? 0 : rc;
}

int jinja_call(struct jinja_render *r, struct jv callee, const struct jcall_args *a, struct jv *out)
{
    switch (callee.type) {
    case JV_MACRO: return call_macro(r, callee.closure, a, jv_undef(NULL), out);
    case JV_FUNC: return jinja_func_call(r, callee.func, a, out);
    case JV_UNDEF: return jr_undefined(r, callee);
    default: return jr_fail(r, "'%s' object is not callable", jv_type_name(callee));
    }
}

static int __attribute__((noinline)) eval_call(struct jinja_render *r, const struct jnode *n,
                                               struct jscope *sc, struct jv caller, struct jv *out)
{
    struct jcall_args a;
    struct jv callee;
    int rc;

    if ((rc = eval(r, n->a, sc, &callee)) || (rc = eval_args(r, n, sc, &a)))
        return rc;
    if (caller.type == JV_MACRO) {
        if (callee.type != JV_MACRO)
            return jr_fail(r, "{%% call %%} needs a macro, not %s", jv_type_name(callee));
        return call_macro(r, callee.closure, &a, caller, out);
    }
    return jinja_call(r, callee, &a, out);
}

static int __attribute__((noinline)) eval_filter(struct jinja_render *r, const struct jnode *n,
                                                 struct jscope *sc, struct jv *out)
{
    struct jcall_args a;
    struct jv in;
    bool res;
    int rc;

    if ((rc = eval(r, n->a, sc, &in)) || (rc = eval_args(r, n, sc, &a)))
        return rc;
    if (n->kind == JN_FILTER)
        return jinja_filter_apply(r, n->id, in, &a, out);
    rc = jinja_test_apply(r, n->id, in, &a, &res);
    *out = jv_bool(res);
    return rc;
}

/* ---- expressions ---- */

static int eval_items(struct jinja_render *r, const struct jnode *first, struct jscope *sc,
                      struct jv_list **out)
{
    size_t n = 0;
    struct jv_list *l;
    int rc;

    for (const struct jnode *k = first; k; k = k->next)
        n++;
    if (!(l = jv_list_new(r, n)))
        return -ENOMEM;
    for (const struct jnode *k = first; k; k = k->next)
        if ((rc = eval(r, k, sc, &l->items[l->len++])))
            return rc;
    *out = l;
    return 0;
}

static int eval_node(struct jinja_render *r, const struct jnode *n, struct jscope *sc, struct jv *out)
{
    struct jv a, b;
    bool res;
    int rc;

    switch (n->kind) {
    case JN_CONST:
        *out = n->val;
        return 0;
    case JN_NAME:
        *out = lookup(r, sc, n->str, n->len);
        return 0;
    case JN_BLOCK_INPUT:
        *out = r->block_input;
        return 0;
    case JN_ATTR:
        if ((rc = eval(r, n->a, sc, &a)))
            return rc;
        return jinja_getattr(r, a, n->str, n->len, out);
    case JN_ITEM:
        if ((rc = eval(r, n->a, sc, &a)) || (rc = eval(r, n->b, sc, &b)))
            return rc;
        return jinja_getitem(r, a, b, out);
    case JN_SLICE:
        return eval_slice(r, n, sc, out);
    case JN_CALL:
        return eval_call(r, n, sc, jv_undef(NULL), out);
    case JN_FILTER: case JN_TEST:
        return eval_filter(r, n, sc, out);
    case JN_BINOP:
        if ((rc = eval(r, n->a, sc, &a)) || (rc = eval(r, n->b, sc, &b)))
            return rc;
        return arith(r, n->op, a, b, out);
    case JN_NEG: case JN_POS:
        if ((rc = eval(r, n->a, sc, &a)))
            return rc;
        if (a.type == JV_UNDEF)
            return jr_undefined(r, a);
        if (a.type == JV_FLOAT)
            *out = jv_float(n->kind == JN_NEG ? -a.f : a.f);
        else if (a.type == JV_INT || a.type == JV_BOOL) {
            int64_t i = a.type == JV_INT ? a.i : a.b;

            if (n->kind == JN_NEG && i == INT64_MIN)
                return jr_fail(r, "integer overflow");
            *out = jv_int(n->kind == JN_NEG ? -i : i);
        } else {
            return jr_fail(r, "bad operand type for unary %c: '%s'", n->kind == JN_NEG ? '-' : '+',
                           jv_type_name(a));
        }
        return 0;
    case JN_NOT:
        if ((rc = eval(r, n->a, sc, &a)))
            return rc;
        *out = jv_bool(!jv_truthy(a));
        return 0;
    case JN_AND: case JN_OR:
        if ((rc = eval(r, n->a, sc, &a)))
            return rc;
        if (jv_truthy(a) == (n->kind == JN_OR)) {
            *out = a;
            return 0;
        }
        return eval(r, n->b, sc, out);
    case JN_COMPARE:
        if ((rc = eval(r, n->a, sc, &a)))
            return rc;
        for (const struct jnode *op = n->b; op; op = op->next) {
            if ((rc = eval(r, op->a, sc, &b)) || (rc = compare(r, op->op, a, b, &res)))
                return rc;
            if (!res) {
                *out = jv_bool(false);
                return 0;
            }
            a = b;
        }
        *out = jv_bool(true);
        return 0;
    case JN_COND:
        if ((rc = eval(r, n->b, sc, &a)))
            return rc;
        if (jv_truthy(a))
            return eval(r, n->a, sc, out);
        if (n->c)
            return eval(r, n->c, sc, out);
        *out = jinja_undef(r, "the inline if-expression on line %u evaluated to false and no else "
                           "section was defined.", (unsigned)n->line);
        return 0;
    case JN_LIST: case JN_TUPLE: {
        struct jv_list *l;

        if ((rc = eval_items(r, n->a, sc, &l)))
            return rc;
        *out = jv_list_val(l, n->kind == JN_TUPLE ? JV_F_TUPLE : 0);
        return 0;
    }
    case JN_DICT: {
        struct jv_dict *d = jv_dict_new(r, 0);

        if (!d)
            return -ENOMEM;
        for (const struct jnode *p = n->a; p; p = p->next)
            if ((rc = eval(r, p->a, sc, &a)) || (rc = eval(r, p->b, sc, &b)) ||
                (rc = jv_dict_set(r, d, a, b)))
                return rc;
        out->type = JV_DICT;
        out->flags = 0;
        out->dict = d;
        return 0;
    }
    default:
        return jr_fail(r, "cannot evaluate this expression");
    }
}

static int eval(struct jinja_render *r, const struct jnode *n, struct jscope *sc, struct jv *out)
{
    int rc;

    if (r->failed)
        return -EINVAL;
    r->line = n->line;
    if ((rc = jr_charge(r, 1)))
        return rc;
    if (++r->depth > r->lim->max_depth) {
        r->depth--;
        return jr_fail(r, "the template nests deeper than %d (recursive macro?)", r->lim->max_depth);
    }
    rc = eval_node(r, n, sc, out);
    r->depth--;
    return rc;
}

/* ---- statements ---- */

static int assign(struct jinja_render *r, const struct jnode *target, struct jv v, struct jscope *sc)
{
    if (target->kind == JN_NAME)
        return scope_set(r, sc, target->str, target->len, v);
    if (target->kind == JN_NSREF) {
        struct jv ns = lookup(r, sc, target->a->str, target->a->len);

        if (ns.type != JV_NS)
            return jr_fail(r, "cannot assign attribute on non-namespace object");
        return jv_dict_set(r, ns.dict, jv_str(target->str, target->len), v);
    }
    {
        struct jv_list *l;
        size_t want = 0;
        int rc;

        for (const struct jnode *k = target->a; k; k = k->next)
            want++;
        if ((rc = jv_iterate(r, v, &l)))
            return rc;
        if (l->len != want)
            return l->len > want ? jr_fail(r, "too many values to unpack (expected %zu)", want)
                                 : jr_fail(r, "not enough values to unpack (expected %zu, got %zu)", want, l->len);
        want = 0;
        for (const struct jnode *k = target->a; k; k = k->next)
            if ((rc = scope_set(r, sc, k->str, k->len, l->items[want++])))
                return rc;
        return 0;
    }
}

static int count_iteration(struct jinja_render *r)
{
    if (++r->iterations > r->lim->max_loop_iterations)
        return jr_fail(r, "the template ran more than %llu loop iterations",
                       (unsigned long long)r->lim->max_loop_iterations);
    return 0;
}

static int exec_for(struct jinja_render *r, const struct jnode *n, struct jscope *sc)
{
    struct jscope it = { .parent = sc };
    struct jv seq, lv = { .type = JV_LOOP };
    struct jv_list *items;
    struct jv_loop *loop;
    int rc;

    if ((rc = eval(r, n->b, sc, &seq)) || (rc = jv_iterate(r, seq, &items)))
        return rc;
    if (n->c) {
        /* for x in seq if cond: loop.index and loop.length count only what passes. */
        struct jv_list *kept = jv_list_new(r, items->len);

        if (!kept)
            return -ENOMEM;
        for (size_t i = 0; i < items->len; i++) {
            struct jv ok;

            scope_clear(&it);
            if ((rc = count_iteration(r)) || (rc = assign(r, n->a, items->items[i], &it)) ||
                (rc = eval(r, n->c, &it, &ok)))
                return rc;
            if (jv_truthy(ok))
                kept->items[kept->len++] = items->items[i];
        }
        items = kept;
    }
    if (!items->len) {
        struct jscope es = { .parent = sc };

        return n->e ? exec_body(r, n->e, &es) : 0;
    }
    if (!(loop = jr_alloc(r, sizeof *loop)))
        return -ENOMEM;
    loop->items = items;
    lv.loop = loop;
    for (size_t i = 0; i < items->len; i++) {
        scope_clear(&it);
        loop->index0 = i;
        if ((rc = count_iteration(r)) || (rc = assign(r, n->a, items->items[i], &it)) ||
            (rc = scope_set(r, &it, "loop", 4, lv)))
            return rc;
        rc = exec_body(r, n->d, &it);
        if (rc == JR_BREAK)
            break;
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int write_value(struct jinja_render *r, struct jv v)
{
    return jv_write_str(r, r->out, v);
}

static struct jv closure(struct jinja_render *r, const struct jinja_macro *m, struct jscope *sc)
{
    struct jv v = { .type = JV_MACRO };

    if (!(v.closure = jr_alloc(r, sizeof *v.closure)))
        return jv_none();
    v.closure->macro = m;
    v.closure->scope = sc;
    return v;
}

static int exec_stmt(struct jinja_render *r, const struct jnode *n, struct jscope *sc)
{
    struct jv v;
    int rc;

    switch (n->kind) {
    case JN_TEXT:
        return jbuf_put(r, r->out, n->str, n->len);
    case JN_OUTPUT:
        if ((rc = eval(r, n->a, sc, &v)))
            return rc;
        return write_value(r, v);
    case JN_IF:
        for (;; n = n->c) {
            if ((rc = eval(r, n->a, sc, &v)))
                return rc;
            if (jv_truthy(v))
                return exec_body(r, n->b, sc);
            if (!n->c)
                return exec_body(r, n->d, sc);
        }
    case JN_FOR:
        return exec_for(r, n, sc);
    case JN_SET:
        if ((rc = eval(r, n->b, sc, &v)))
            return rc;
        return assign(r, n->a, v, sc);
    case JN_SET_BLOCK: {
        struct jscope bs = { .parent = sc };

        if ((rc = render_capture(r, n->b, &bs, &v)) < 0)
            return rc;
        if (n->c) {
            r->block_input = v;
            if ((rc = eval(r, n->c, sc, &v)))
                return rc;
        }
        return assign(r, n->a, v, sc);
    }
    case JN_MACRO:
        v = closure(r, n->macro, sc);
        return v.type == JV_MACRO ? scope_set(r, sc, n->str, n->len, v) : -ENOMEM;
    case JN_CALL_BLOCK:
        v = closure(r, n->macro, sc);
        if (v.type != JV_MACRO || (rc = eval_call(r, n->a, sc, v, &v)))
            return v.type != JV_MACRO ? -ENOMEM : rc;
        return write_value(r, v);
    case JN_FILTER_BLOCK: {
        struct jscope bs = { .parent = sc };

        if ((rc = render_capture(r, n->b, &bs, &v)) < 0)
            return rc;
        r->block_input = v;
        if ((rc = eval(r, n->a, sc, &v)))
            return rc;
        return write_value(r, v);
    }
    case JN_WITH: {
        struct jscope ws = { .parent = sc };

        for (const struct jnode *s = n->a; s; s = s->next)
            if ((rc = eval(r, s->b, sc, &v)) || (rc = assign(r, s->a, v, &ws)))
                return rc;
        return exec_body(r, n->b, &ws);
    }
    case JN_BREAK:
        return JR_BREAK;
    case JN_CONTINUE:
        return JR_CONTINUE;
    default:
        return jr_fail(r, "cannot run this statement");
    }
}

static int exec_body(struct jinja_render *r, const struct jnode *n, struct jscope *sc)
{
    int rc = 0;

    if (++r->depth > r->lim->max_depth) {
        r->depth--;
        return jr_fail(r, "the template nests deeper than %d (recursive macro?)", r->lim->max_depth);
    }
    for (; n && !rc; n = n->next) {
        if (r->failed) {
            rc = -EINVAL;
            break;
        }
        r->line = n->line;
        if ((rc = jr_charge(r, 1)))
            break;
        rc = exec_stmt(r, n, sc);
    }
    r->depth--;
    return rc;
}

int jinja_render(const struct jinja_template *t, const cJSON *vars, const struct jinja_limits *lim,
                 char **out, size_t *len, char *err, bool *raised)
{
    struct jbuf buf = { .max = lim->max_output_bytes };
    struct jinja_render r = { .out = &buf, .lim = lim, .err = err, .line = 1 };
    struct jscope root = { 0 };
    int rc = 0;

    *out = NULL;
    *len = 0;
    if (raised)
        *raised = false;
    if (!(r.arena = jinja_arena_create(lim->max_memory_bytes))) {
        errf(err, "out of memory");
        return -ENOMEM;
    }
    r.root = &root;
    for (const cJSON *v = vars ? vars->child : NULL; v && !rc; v = v->next) {
        struct jv val;

        if (!(rc = jv_from_json(&r, v, &val, 0)))
            rc = scope_set(&r, &root, v->string ? v->string : "", v->string ? strlen(v->string) : 0, val);
    }
    if (!rc)
        rc = exec_body(&r, t->body, &root);
    if (rc > 0 || (!rc && r.failed))
        rc = r.failed ? -EINVAL : 0;
    if (!rc && !buf.p) {
        if ((buf.p = malloc(1)))
            buf.p[0] = '\0';
        else
            rc = jr_oom(&r);
    }
    if (raised)
        *raised = r.raised;
    jinja_arena_destroy(r.arena);
    if (rc) {
        if (!r.failed)
            errf(err, "render failed (%d)", rc);
        jbuf_fini(&buf);
        return rc;
    }
    *out = buf.p;
    *len = buf.len;
    return 0;
}
