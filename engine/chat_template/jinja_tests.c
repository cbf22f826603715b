/* jinja_tests.c — Jinja's tests (`x is defined`, `is string`, `is divisibleby 3` …) with
 * Python's notion of the types behind them (a bool is a number, a dict is a sequence,
 * Undefined is iterable), also used by select / reject / selectattr / rejectattr. */
#include "engine/chat_template/jinja.h"

#include <errno.h>
#include <math.h>

#include "engine/base/util.h" /* ARRAY_LEN */

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

int jinja__test_find(const char *name, size_t len)
{
    for (size_t i = 0; i < ARRAY_LEN(tests); i++)
        if (strlen(tests[i].name) == len && !memcmp(tests[i].name, name, len))
            return (int)i;
    return -1;
}

static int parity(struct jinja_render *r, struct jinja_value v, int64_t *out)
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
        return jinja__fail_undefined(r, v);
    return jinja__fail(r, "not all arguments converted during string formatting");
}

int jinja__test_apply(struct jinja_render *r, int id, struct jinja_value in,
                      const struct jinja_args *a, bool *out)
{
    const char *name;
    struct jinja_value arg = jinja__undef(NULL);
    int64_t p = 0;
    int rc = 0;

    *out = false;
    if (id < 0 || (size_t)id >= ARRAY_LEN(tests))
        return jinja__fail(r, "unknown test");
    name = tests[id].name;
    id = tests[id].id;
    if (id >= T_DIVISIBLEBY && id <= T_SAMEAS) {
        if (a->npos != 1 || a->nkw)
            return jinja__fail(r, "test '%s' takes one positional argument", name);
        arg = a->pos[0];
    }
    switch (id) {
    case T_DEFINED: *out = in.type != JV_UNDEF; break;
    case T_UNDEFINED: *out = in.type == JV_UNDEF; break;
    case T_NONE: *out = in.type == JV_NONE; break;
    case T_STRING: *out = in.type == JV_STR; break;
    case T_NUMBER: *out = jinja__is_num(in); break;
    case T_INTEGER: *out = in.type == JV_INT; break;
    case T_FLOAT: *out = in.type == JV_FLOAT; break;
    case T_BOOLEAN: *out = in.type == JV_BOOL; break;
    case T_MAPPING: *out = in.type == JV_DICT; break;
    case T_ITERABLE: *out = in.type == JV_STR || in.type == JV_LIST || in.type == JV_DICT ||
                            in.type == JV_UNDEF || in.type == JV_LOOP; break;
    case T_SEQUENCE: *out = in.type == JV_STR || in.type == JV_DICT || in.type == JV_UNDEF ||
                            (in.type == JV_LIST && !(in.flags & (JV_F_GEN | JV_F_VIEW))); break;
    case T_TRUE: *out = in.type == JV_BOOL && in.b; break;
    case T_FALSE: *out = in.type == JV_BOOL && !in.b; break;
    case T_CALLABLE: *out = in.type == JV_MACRO || in.type == JV_FUNC || in.type == JV_UNDEF ||
                            in.type == JV_LOOP; break;
    case T_LOWER: case T_UPPER: {
        /* str.islower() / isupper(): some cased character, none of the other case */
        struct jinja_value s, same, other;

        if ((rc = jinja__to_str(r, in, &s)) ||
            (rc = jinja__str_case(r, s, id == T_LOWER ? JCASE_LOWER : JCASE_UPPER, &same)) ||
            (rc = jinja__str_case(r, s, id == T_LOWER ? JCASE_UPPER : JCASE_LOWER, &other)))
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
        if (!jinja__is_num(in) || !jinja__is_num(arg))
            return jinja__fail(r, "divisibleby needs numbers");
        if (in.type == JV_FLOAT || arg.type == JV_FLOAT) {
            double x = in.type == JV_FLOAT ? in.f : (double)(in.type == JV_INT ? in.i : in.b);
            double y = arg.type == JV_FLOAT ? arg.f : (double)(arg.type == JV_INT ? arg.i : arg.b);

            if (y == 0)
                return jinja__fail(r, "float modulo");
            *out = fmod(x, y) == 0;
        } else {
            int64_t x = in.type == JV_INT ? in.i : in.b, y = arg.type == JV_INT ? arg.i : arg.b;

            if (y == 0)
                return jinja__fail(r, "integer division or modulo by zero");
            *out = y == -1 || x % y == 0;
        }
        break;
    case T_EQ: return jinja__eq(r, in, arg, out);
    case T_NE: rc = jinja__eq(r, in, arg, out); *out = !*out; break;
    case T_LT: return jinja__lt(r, in, arg, out);
    case T_GT: return jinja__lt(r, arg, in, out);
    case T_LE: case T_GE: {
        struct jinja_value x = id == T_LE ? in : arg, y = id == T_LE ? arg : in;

        if ((rc = jinja__lt(r, x, y, out)) || *out)
            return rc;
        return jinja__eq(r, x, y, out);
    }
    case T_IN: {
        struct jinja_list *l;

        if (arg.type == JV_STR) {
            if (in.type != JV_STR)
                return jinja__fail(r, "'in <string>' requires string as left operand, not %s",
                                   jinja__type_name(in));
            *out = !in.s.len || memmem(arg.s.p, arg.s.len, in.s.p, in.s.len);
            break;
        }
        if (arg.type == JV_DICT) {
            struct jinja_value dummy;

            *out = jinja__dict_get(arg.dict, in, &dummy);
            break;
        }
        if ((rc = jinja__iterate(r, arg, &l)))
            return rc;
        for (size_t i = 0; i < l->len && !*out; i++)
            if ((rc = jinja__charge(r, 1)) || (rc = jinja__eq(r, l->items[i], in, out)))
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
    case T_FILTER: *out = in.type == JV_STR && jinja__filter_find(in.s.p, in.s.len) >= 0; break;
    case T_TEST: *out = in.type == JV_STR && jinja__test_find(in.s.p, in.s.len) >= 0; break;
    }
    return rc;
}
