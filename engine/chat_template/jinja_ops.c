/* jinja_ops.c — Python's operators on template values: arithmetic with Python's integer and
 * float rules (floor division, modulo signs, ** on ints), string and list concatenation and
 * repetition, comparison and `in`; item and attribute access as Jinja's sandbox does them
 * (methods first on dicts, Undefined for what is missing); and slicing in code points. */
#include "engine/chat_template/jinja.h"

#include <errno.h>
#include <math.h>

#include "engine/base/util.h" /* MIN, MAX */

/* ---- attribute and item access (the sandbox's getattr / getitem) ---- */

static const char *obj_desc(struct jinja_value obj)
{
    return obj.type == JV_NONE ? "None" : jinja__type_name(obj);
}

static int loop_attr(struct jinja_render *r, struct jinja_value obj, const char *name, size_t len,
                     struct jinja_value *out)
{
    const struct jinja_loop *l = obj.loop;
    int64_t i = (int64_t)l->index0, n = (int64_t)l->items->len;
#define IS(s) (len == sizeof(s) - 1 && !memcmp(name, s, len))

    if (IS("index")) *out = jinja__int(i + 1);
    else if (IS("index0")) *out = jinja__int(i);
    else if (IS("revindex")) *out = jinja__int(n - i);
    else if (IS("revindex0")) *out = jinja__int(n - i - 1);
    else if (IS("first")) *out = jinja__bool(i == 0);
    else if (IS("last")) *out = jinja__bool(i == n - 1);
    else if (IS("length")) *out = jinja__int(n);
    else if (IS("depth")) *out = jinja__int(1);
    else if (IS("depth0")) *out = jinja__int(0);
    else if (IS("previtem"))
        *out = i > 0 ? l->items->items[i - 1] : jinja__undef_fmt(r, "there is no previous item");
    else if (IS("nextitem"))
        *out = i + 1 < n ? l->items->items[i + 1] : jinja__undef_fmt(r, "there is no next item");
    else {
        int status = 0;

        if (!jinja__method_find(r, obj, name, len, out, &status))
            *out = jinja__undef_fmt(r, "'LoopContext object' has no attribute '%.*s'", (int)MIN(len, 100), name);
        return status;
    }
#undef IS
    return 0;
}

int jinja__getattr(struct jinja_render *r, struct jinja_value obj, const char *name, size_t len,
                   struct jinja_value *out)
{
    int status = 0;

    switch (obj.type) {
    case JV_UNDEF:
        return jinja__fail_undefined(r, obj);
    case JV_LOOP:
        return loop_attr(r, obj, name, len, out);
    case JV_NS:
        if (jinja__dict_get_str(obj.dict, name, len, out))
            return 0;
        break;
    case JV_DICT:
        /* Python attributes first (items, get …), then the key, as Jinja's getattr does. */
        if (jinja__method_find(r, obj, name, len, out, &status))
            return status;
        if (jinja__dict_get_str(obj.dict, name, len, out))
            return 0;
        break;
    default:
        if (jinja__method_find(r, obj, name, len, out, &status))
            return status;
    }
    *out = jinja__undef_fmt(r, "'%s object' has no attribute '%.*s'", obj_desc(obj), (int)MIN(len, 100), name);
    return 0;
}

/* Python's index for seq[i], or -1 when out of range. */
static int64_t index_of(int64_t i, size_t len)
{
    if (i < 0)
        i += (int64_t)len;
    return i >= 0 && (uint64_t)i < len ? i : -1;
}

int jinja__getitem(struct jinja_render *r, struct jinja_value obj, struct jinja_value key,
                   struct jinja_value *out)
{
    if (obj.type == JV_UNDEF)
        return jinja__fail_undefined(r, obj);
    if ((obj.type == JV_DICT) && jinja__dict_get(obj.dict, key, out))
        return 0;
    if (obj.type == JV_LIST && !(obj.flags & (JV_F_GEN | JV_F_VIEW)) && (key.type == JV_INT || key.type == JV_BOOL)) {
        int64_t i = index_of(key.type == JV_INT ? key.i : key.b, obj.list->len);

        if (i >= 0) {
            *out = obj.list->items[i];
            return 0;
        }
    }
    if (obj.type == JV_STR && (key.type == JV_INT || key.type == JV_BOOL)) {
        int64_t want = key.type == JV_INT ? key.i : key.b;
        size_t n = jinja__u8_count(obj.s.p, obj.s.len);
        int64_t i = index_of(want, n);

        if (i >= 0) {
            int32_t cp;
            size_t off = 0, next;

            for (int64_t k = 0; k < i; k++)
                off = jinja__u8_next(obj.s.p, obj.s.len, off, &cp);
            next = jinja__u8_next(obj.s.p, obj.s.len, off, &cp);
            *out = jinja__str(obj.s.p + off, next - off);
            return jinja__charge(r, obj.s.len / 64);
        }
    }
    if (key.type == JV_STR)
        return jinja__getattr(r, obj, key.s.p, key.s.len, out);
    if (key.type == JV_INT)
        *out = jinja__undef_fmt(r, "'%s object' has no element %lld", obj_desc(obj), (long long)key.i);
    else
        *out = jinja__undef_fmt(r, "'%s object' has no element of type %s", obj_desc(obj), jinja__type_name(key));
    return 0;
}

/* ---- slicing ---- */

static int slice_index(struct jinja_render *r, struct jinja_value x, bool *given, int64_t *v)
{
    *given = false;
    if (x.type == JV_NONE)
        return 0;
    if (x.type != JV_INT && x.type != JV_BOOL)
        return jinja__fail(r, "slice indices must be integers or None, not %s", jinja__type_name(x));
    *given = true;
    *v = x.type == JV_INT ? x.i : x.b;
    return 0;
}

/* Python's slice.indices: start, the count of items, and the step. */
static int slice_plan(struct jinja_render *r, struct jinja_value start_v, struct jinja_value stop_v,
                      struct jinja_value step_v, size_t len,
                      int64_t *start, int64_t *count, int64_t *step)
{
    int64_t b = 0, e = 0, st = 1, lo, hi, l = (int64_t)len;
    bool hb, he, hs;
    int rc;

    if ((rc = slice_index(r, start_v, &hb, &b)) || (rc = slice_index(r, stop_v, &he, &e)) ||
        (rc = slice_index(r, step_v, &hs, &st)))
        return rc;
    if (!hs)
        st = 1;
    if (st == 0)
        return jinja__fail(r, "slice step cannot be zero");
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

int jinja__slice(struct jinja_render *r, struct jinja_value obj, struct jinja_value start_v,
                 struct jinja_value stop_v, struct jinja_value step_v, struct jinja_value *out)
{
    int64_t start, count, step;
    int rc;

    if (obj.type == JV_UNDEF)
        return jinja__fail_undefined(r, obj);
    if (obj.type == JV_LIST && !(obj.flags & (JV_F_GEN | JV_F_VIEW))) {
        struct jinja_list *l;

        if ((rc = slice_plan(r, start_v, stop_v, step_v, obj.list->len, &start, &count, &step)) ||
            (rc = jinja__charge(r, (uint64_t)count)))
            return rc;
        if (!(l = jinja__list_new(r, (size_t)count)))
            return -ENOMEM;
        for (int64_t k = 0; k < count; k++)
            l->items[k] = obj.list->items[start + k * step];
        l->len = (size_t)count;
        *out = jinja__list_val(l, obj.flags & JV_F_TUPLE);
        return 0;
    }
    if (obj.type == JV_STR) {
        size_t ncp = 0, *off, len = 0;
        int32_t cp;
        char *s;

        if ((rc = jinja__charge(r, obj.s.len)))
            return rc;
        /* Offsets of each code point, so that steps and negative indices are cheap. */
        if (!(off = jinja__alloc(r, (obj.s.len + 1) * sizeof *off)))
            return -ENOMEM;
        for (size_t i = 0; i < obj.s.len; ncp++) {
            off[ncp] = i;
            i = jinja__u8_next(obj.s.p, obj.s.len, i, &cp);
        }
        off[ncp] = obj.s.len;
        if ((rc = slice_plan(r, start_v, stop_v, step_v, ncp, &start, &count, &step)))
            return rc;
        if (step == 1) {
            *out = count ? jinja__str(obj.s.p + off[start], off[start + count] - off[start]) : jinja__str("", 0);
            return 0;
        }
        if (!(s = jinja__alloc(r, obj.s.len + 1)))
            return -ENOMEM;
        for (int64_t k = 0; k < count; k++) {
            int64_t i = start + k * step;

            memcpy(s + len, obj.s.p + off[i], off[i + 1] - off[i]);
            len += off[i + 1] - off[i];
        }
        *out = jinja__str(s, len);
        return 0;
    }
    return jinja__fail(r, "'%s' object is not subscriptable", jinja__type_name(obj));
}

/* ---- operators ---- */

static int concat_str(struct jinja_render *r, struct jinja_value a, struct jinja_value b,
                      struct jinja_value *out)
{
    char *s;

    if (!b.s.len || !a.s.len) {
        *out = a.s.len ? a : b;
        out->flags = 0;
        return 0;
    }
    if (a.s.len + b.s.len > r->lim->max_memory_bytes)
        return jinja__oom(r);
    if (!(s = jinja__alloc(r, a.s.len + b.s.len + 1)))
        return -ENOMEM;
    memcpy(s, a.s.p, a.s.len);
    memcpy(s + a.s.len, b.s.p, b.s.len);
    *out = jinja__str(s, a.s.len + b.s.len);
    return jinja__charge(r, (a.s.len + b.s.len) / 64);
}

static int repeat(struct jinja_render *r, struct jinja_value seq, int64_t times, struct jinja_value *out)
{
    size_t unit = seq.type == JV_STR ? seq.s.len : seq.list->len * sizeof(struct jinja_value);
    size_t n = times > 0 ? (size_t)times : 0;

    if (n && unit > r->lim->max_memory_bytes / n)
        return jinja__oom(r);
    if (seq.type == JV_STR) {
        char *s = jinja__alloc(r, unit * n + 1);

        if (!s)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++)
            memcpy(s + i * unit, seq.s.p, unit);
        *out = jinja__str(s, unit * n);
    } else {
        struct jinja_list *l = jinja__list_new(r, seq.list->len * n);

        if (!l)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++)
            memcpy(l->items + i * seq.list->len, seq.list->items, unit);
        l->len = seq.list->len * n;
        *out = jinja__list_val(l, seq.flags & JV_F_TUPLE);
    }
    return jinja__charge(r, unit * n / 64);
}

static int int_pow(struct jinja_render *r, int64_t base, int64_t e, struct jinja_value *out)
{
    int64_t acc = 1;

    while (e > 0) {
        if (e & 1 && __builtin_mul_overflow(acc, base, &acc))
            return jinja__fail(r, "integer result of ** is too large");
        e >>= 1;
        if (e && __builtin_mul_overflow(base, base, &base))
            return jinja__fail(r, "integer result of ** is too large");
    }
    *out = jinja__int(acc);
    return 0;
}

static int num_arith(struct jinja_render *r, int op, struct jinja_value a, struct jinja_value b,
                     struct jinja_value *out)
{
    bool ints = a.type != JV_FLOAT && b.type != JV_FLOAT;
    int64_t x = a.type == JV_INT ? a.i : a.type == JV_BOOL ? a.b : 0;
    int64_t y = b.type == JV_INT ? b.i : b.type == JV_BOOL ? b.b : 0, z;
    double fx = a.type == JV_FLOAT ? a.f : (double)x, fy = b.type == JV_FLOAT ? b.f : (double)y;

    switch (op) {
    case OP_ADD:
        if (ints && !__builtin_add_overflow(x, y, &z)) { *out = jinja__int(z); return 0; }
        break;
    case OP_SUB:
        if (ints && !__builtin_sub_overflow(x, y, &z)) { *out = jinja__int(z); return 0; }
        break;
    case OP_MUL:
        if (ints && !__builtin_mul_overflow(x, y, &z)) { *out = jinja__int(z); return 0; }
        break;
    case OP_DIV:
        if (fy == 0)
            return jinja__fail(r, "division by zero");
        *out = jinja__float(fx / fy);
        return 0;
    case OP_FLOORDIV:
    case OP_MOD:
        if (ints) {
            if (y == 0)
                return jinja__fail(r, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1)
                return jinja__fail(r, "integer overflow in // or %%");
            z = x % y;
            if (z && ((z < 0) != (y < 0)))
                *out = op == OP_MOD ? jinja__int(z + y) : jinja__int(x / y - 1);
            else
                *out = op == OP_MOD ? jinja__int(z) : jinja__int(x / y);
            return 0;
        }
        if (fy == 0)
            return jinja__fail(r, op == OP_MOD ? "float modulo" : "float floor division by zero");
        {
            double m = fmod(fx, fy), d = (fx - m) / fy;

            if (m && ((fy < 0) != (m < 0))) {
                m += fy;
                d -= 1.0;
            }
            if (op == OP_MOD) {
                *out = jinja__float(m ? m : copysign(0.0, fy));
            } else {
                double fd = floor(d);

                if (d - fd > 0.5)
                    fd += 1.0;
                *out = jinja__float(d ? fd : copysign(0.0, fx / fy));
            }
        }
        return 0;
    case OP_POW:
        if (ints && y >= 0)
            return int_pow(r, x, y, out);
        if (fx == 0 && fy < 0)
            return jinja__fail(r, "0.0 cannot be raised to a negative power");
        if (fx < 0 && fy != floor(fy))
            return jinja__fail(r, "a negative number to a fractional power is complex");
        *out = jinja__float(pow(fx, fy));
        return 0;
    }
    if (ints)
        return jinja__fail(r, "integer overflow");
    *out = jinja__float(op == OP_ADD ? fx + fy : op == OP_SUB ? fx - fy : fx * fy);
    return 0;
}

int jinja__arith(struct jinja_render *r, int op, struct jinja_value a, struct jinja_value b,
                 struct jinja_value *out)
{
    static const char *const sym[] = { [OP_ADD] = "+", [OP_SUB] = "-", [OP_MUL] = "*", [OP_DIV] = "/",
                                       [OP_FLOORDIV] = "//", [OP_MOD] = "%", [OP_POW] = "**" };
    int rc;

    if (op == OP_TILDE) {
        if ((rc = jinja__to_str(r, a, &a)) || (rc = jinja__to_str(r, b, &b)))
            return rc;
        return concat_str(r, a, b, out);
    }
    if (a.type == JV_UNDEF)
        return jinja__fail_undefined(r, a);
    if (b.type == JV_UNDEF)
        return jinja__fail_undefined(r, b);
    if (jinja__is_num(a) && jinja__is_num(b))
        return num_arith(r, op, a, b, out);
    if (op == OP_ADD && a.type == JV_STR && b.type == JV_STR)
        return concat_str(r, a, b, out);
    if (op == OP_MOD && a.type == JV_STR)
        return jinja__percent_format(r, a, b, out);
    if (op == OP_MUL && (a.type == JV_STR || (a.type == JV_LIST && !(a.flags & (JV_F_GEN | JV_F_VIEW)))) &&
        (b.type == JV_INT || b.type == JV_BOOL))
        return repeat(r, a, b.type == JV_INT ? b.i : b.b, out);
    if (op == OP_MUL && (b.type == JV_STR || (b.type == JV_LIST && !(b.flags & (JV_F_GEN | JV_F_VIEW)))) &&
        (a.type == JV_INT || a.type == JV_BOOL))
        return repeat(r, b, a.type == JV_INT ? a.i : a.b, out);
    if (op == OP_ADD && a.type == JV_LIST && b.type == JV_LIST && !((a.flags | b.flags) & (JV_F_GEN | JV_F_VIEW)) &&
        (a.flags & JV_F_TUPLE) == (b.flags & JV_F_TUPLE)) {
        struct jinja_list *l = jinja__list_new(r, a.list->len + b.list->len);

        if (!l)
            return -ENOMEM;
        memcpy(l->items, a.list->items, a.list->len * sizeof *l->items);
        memcpy(l->items + a.list->len, b.list->items, b.list->len * sizeof *l->items);
        l->len = a.list->len + b.list->len;
        *out = jinja__list_val(l, a.flags & JV_F_TUPLE);
        return jinja__charge(r, l->len);
    }
    if (op == OP_ADD && a.type == JV_STR)
        return jinja__fail(r, "can only concatenate str (not \"%s\") to str", jinja__type_name(b));
    return jinja__fail(r, "unsupported operand type(s) for %s: '%s' and '%s'", sym[op] ? sym[op] : "?",
                       jinja__type_name(a), jinja__type_name(b));
}

static int contains(struct jinja_render *r, struct jinja_value seq, struct jinja_value item, bool *res)
{
    *res = false;
    switch (seq.type) {
    case JV_UNDEF:
        return 0;
    case JV_STR:
        if (item.type != JV_STR)
            return jinja__fail(r, "'in <string>' requires string as left operand, not %s",
                               jinja__type_name(item));
        *res = !item.s.len || memmem(seq.s.p, seq.s.len, item.s.p, item.s.len);
        return jinja__charge(r, seq.s.len / 16);
    case JV_DICT:
        if (item.type == JV_LIST && !(item.flags & JV_F_TUPLE))
            return jinja__fail(r, "unhashable type: '%s'", jinja__type_name(item));
        *res = jinja__dict_get(seq.dict, item, &item);
        return 0;
    case JV_LIST: {
        struct jinja_list *l;
        int rc = jinja__iterate(r, seq, &l);

        for (size_t i = 0; !rc && i < l->len && !*res; i++)
            if (!(rc = jinja__charge(r, 1)))
                rc = jinja__eq(r, l->items[i], item, res);
        return rc;
    }
    default:
        return jinja__fail(r, "argument of type '%s' is not iterable", jinja__type_name(seq));
    }
}

int jinja__compare(struct jinja_render *r, int op, struct jinja_value a, struct jinja_value b, bool *res)
{
    bool lt, eq;
    int rc;

    switch (op) {
    case OP_EQ: return jinja__eq(r, a, b, res);
    case OP_NE: rc = jinja__eq(r, a, b, &eq); *res = !eq; return rc;
    case OP_LT: return jinja__lt(r, a, b, res);
    case OP_GT: return jinja__lt(r, b, a, res);
    case OP_LE: case OP_GE:
        if (op == OP_GE) {
            struct jinja_value t = a;

            a = b;
            b = t;
        }
        if ((rc = jinja__lt(r, a, b, &lt)) || lt) {
            *res = lt;
            return rc;
        }
        return jinja__eq(r, a, b, res);
    case OP_IN: return contains(r, b, a, res);
    case OP_NOTIN: rc = contains(r, b, a, &eq); *res = !eq; return rc;
    }
    return jinja__fail(r, "unknown comparison");
}

