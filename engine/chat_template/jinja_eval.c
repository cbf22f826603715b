/* jinja_eval.c — walks the syntax tree: statements write to the render's output buffer,
 * expressions compute values (the operators themselves are jinja_ops.c): comparison
 * chains, and/or returning an operand, conditional expressions, calls of macros, filters
 * and tests. Scopes follow Jinja: a for-loop iteration and a macro call get their own,
 * `if` does not. Every step is charged against the render's limits. */
#include "engine/chat_template/jinja.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/base/util.h" /* ERR_LEN, MIN */

enum { JR_BREAK = 1, JR_CONTINUE = 2 };

struct jinja_scope {
    struct jinja_scope *parent;
    struct jinja_dict *vars;   /* NULL until something is set here */
};

static int eval(struct jinja_render *r, const struct jinja_node *n, struct jinja_scope *sc,
                struct jinja_value *out);
static int exec_body(struct jinja_render *r, const struct jinja_node *n, struct jinja_scope *sc);

struct jinja_value jinja__undef_fmt(struct jinja_render *r, const char *fmt, ...)
{
    char msg[ERR_LEN];
    va_list ap;
    int n;
    char *s;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    n = MIN(n, (int)sizeof msg - 1);
    if (n < 0 || !(s = jinja__alloc(r, (size_t)n + 1)))
        return jinja__undef(NULL);
    memcpy(s, msg, (size_t)n);
    return jinja__undef(s);
}

/* ---- scopes ---- */

static int scope_set(struct jinja_render *r, struct jinja_scope *sc, const char *name, size_t len,
                     struct jinja_value v)
{
    if (!sc->vars && !(sc->vars = jinja__dict_new(r, 4)))
        return -ENOMEM;
    return jinja__dict_set(r, sc->vars, jinja__str(name, len), v);
}

static void scope_clear(struct jinja_scope *sc)
{
    if (!sc->vars)
        return;
    sc->vars->len = 0;
    if (sc->vars->index_cap)
        memset(sc->vars->index, 0, sc->vars->index_cap * sizeof *sc->vars->index);
}

static struct jinja_value lookup(struct jinja_render *r, struct jinja_scope *sc, const char *name, size_t len)
{
    struct jinja_value v;

    for (; sc; sc = sc->parent)
        if (sc->vars && jinja__dict_get_str(sc->vars, name, len, &v))
            return v;
    if (jinja__global_find(name, len, &v))
        return v;
    return jinja__undef_fmt(r, "'%.*s' is undefined", (int)MIN(len, 100), name);
}

/* ---- calls ---- */

static int __attribute__((noinline)) eval_args(struct jinja_render *r, const struct jinja_node *n,
                                               struct jinja_scope *sc, struct jinja_args *a)
{
    int rc;

    a->npos = a->nkw = 0;
    for (const struct jinja_node *arg = n->b; arg; arg = arg->next) {
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

static int render_capture(struct jinja_render *r, const struct jinja_node *body,
                          struct jinja_scope *sc, struct jinja_value *out)
{
    struct buf buf = BUF_INIT, *saved = r->out;
    bool ok;
    int rc;

    r->out = &buf;
    rc = exec_body(r, body, sc);
    r->out = saved;
    if (rc < 0) {
        buf_fini(&buf);
        return rc;
    }
    *out = jinja__str_copy(r, buf.p ? buf.p : "", buf.len, &ok);
    buf_fini(&buf);
    return ok ? rc : -ENOMEM;
}

static int call_macro(struct jinja_render *r, const struct jinja_closure *c, const struct jinja_args *a,
                      struct jinja_value caller, struct jinja_value *out)
{
    const struct jinja_macro *m = c->macro;
    struct jinja_scope ms = { .parent = c->scope };
    bool given[JINJA_MAX_ARGS] = { 0 };
    const struct jinja_node *p;
    int i, rc;

    if (a->npos > m->nparams)
        return jinja__fail(r, "macro '%.*s' takes not more than %d argument(s)", (int)m->len,
                           m->name, m->nparams);
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
            return jinja__fail(r, "macro '%.*s' takes no keyword argument '%.*s'", (int)m->len, m->name,
                               (int)a->kw_len[k], a->kw_name[k]);
        if (given[i])
            return jinja__fail(r, "macro '%.*s' got multiple values for argument '%.*s'", (int)m->len,
                               m->name, (int)p->len, p->str);
        if ((rc = scope_set(r, &ms, p->str, p->len, a->kw[k])))
            return rc;
        given[i] = true;
    }
    for (i = 0, p = m->params; p; i++, p = p->next) {
        struct jinja_value v;

        if (given[i])
            continue;
        if (p->a)
            rc = eval(r, p->a, &ms, &v);
        else
            v = jinja__undef_fmt(r, "parameter '%.*s' was not provided", (int)p->len, p->str), rc = 0;
        if (rc || (rc = scope_set(r, &ms, p->str, p->len, v)))
            return rc;
    }
    if (caller.type == JV_MACRO && (rc = scope_set(r, &ms, "caller", 6, caller)))
        return rc;
    rc = render_capture(r, m->body, &ms, out);
    return rc > 0 ? 0 : rc;
}

int jinja__call(struct jinja_render *r, struct jinja_value callee, const struct jinja_args *a,
                struct jinja_value *out)
{
    switch (callee.type) {
    case JV_MACRO: return call_macro(r, callee.closure, a, jinja__undef(NULL), out);
    case JV_FUNC: return jinja__func_call(r, callee.func, a, out);
    case JV_UNDEF: return jinja__fail_undefined(r, callee);
    default: return jinja__fail(r, "'%s' object is not callable", jinja__type_name(callee));
    }
}

static int __attribute__((noinline)) eval_call(struct jinja_render *r, const struct jinja_node *n,
                                               struct jinja_scope *sc, struct jinja_value caller,
                                               struct jinja_value *out)
{
    struct jinja_args a;
    struct jinja_value callee;
    int rc;

    if ((rc = eval(r, n->a, sc, &callee)) || (rc = eval_args(r, n, sc, &a)))
        return rc;
    if (caller.type == JV_MACRO) {
        if (callee.type != JV_MACRO)
            return jinja__fail(r, "{%% call %%} needs a macro, not %s", jinja__type_name(callee));
        return call_macro(r, callee.closure, &a, caller, out);
    }
    return jinja__call(r, callee, &a, out);
}

static int __attribute__((noinline)) eval_filter(struct jinja_render *r, const struct jinja_node *n,
                                                 struct jinja_scope *sc, struct jinja_value *out)
{
    struct jinja_args a;
    struct jinja_value in;
    bool res;
    int rc;

    if ((rc = eval(r, n->a, sc, &in)) || (rc = eval_args(r, n, sc, &a)))
        return rc;
    if (n->kind == JN_FILTER)
        return jinja__filter_apply(r, n->id, in, &a, out);
    rc = jinja__test_apply(r, n->id, in, &a, &res);
    *out = jinja__bool(res);
    return rc;
}

/* ---- expressions ---- */

static int eval_items(struct jinja_render *r, const struct jinja_node *first, struct jinja_scope *sc,
                      struct jinja_list **out)
{
    size_t n = 0;
    struct jinja_list *l;
    int rc;

    for (const struct jinja_node *k = first; k; k = k->next)
        n++;
    if (!(l = jinja__list_new(r, n)))
        return -ENOMEM;
    for (const struct jinja_node *k = first; k; k = k->next)
        if ((rc = eval(r, k, sc, &l->items[l->len++])))
            return rc;
    *out = l;
    return 0;
}

static int eval_node(struct jinja_render *r, const struct jinja_node *n, struct jinja_scope *sc,
                     struct jinja_value *out)
{
    struct jinja_value a, b;
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
        return jinja__getattr(r, a, n->str, n->len, out);
    case JN_ITEM:
        if ((rc = eval(r, n->a, sc, &a)) || (rc = eval(r, n->b, sc, &b)))
            return rc;
        return jinja__getitem(r, a, b, out);
    case JN_SLICE: {
        struct jinja_value start = jinja__none(), stop = jinja__none(), step = jinja__none();

        if ((rc = eval(r, n->a, sc, &a)) || (n->b && (rc = eval(r, n->b, sc, &start))) ||
            (n->c && (rc = eval(r, n->c, sc, &stop))) || (n->d && (rc = eval(r, n->d, sc, &step))))
            return rc;
        return jinja__slice(r, a, start, stop, step, out);
    }
    case JN_CALL:
        return eval_call(r, n, sc, jinja__undef(NULL), out);
    case JN_FILTER: case JN_TEST:
        return eval_filter(r, n, sc, out);
    case JN_BINOP:
        if ((rc = eval(r, n->a, sc, &a)) || (rc = eval(r, n->b, sc, &b)))
            return rc;
        return jinja__arith(r, n->op, a, b, out);
    case JN_NEG: case JN_POS:
        if ((rc = eval(r, n->a, sc, &a)))
            return rc;
        if (a.type == JV_UNDEF)
            return jinja__fail_undefined(r, a);
        if (a.type == JV_FLOAT)
            *out = jinja__float(n->kind == JN_NEG ? -a.f : a.f);
        else if (a.type == JV_INT || a.type == JV_BOOL) {
            int64_t i = a.type == JV_INT ? a.i : a.b;

            if (n->kind == JN_NEG && i == INT64_MIN)
                return jinja__fail(r, "integer overflow");
            *out = jinja__int(n->kind == JN_NEG ? -i : i);
        } else {
            return jinja__fail(r, "bad operand type for unary %c: '%s'", n->kind == JN_NEG ? '-' : '+',
                               jinja__type_name(a));
        }
        return 0;
    case JN_NOT:
        if ((rc = eval(r, n->a, sc, &a)))
            return rc;
        *out = jinja__bool(!jinja__truthy(a));
        return 0;
    case JN_AND: case JN_OR:
        if ((rc = eval(r, n->a, sc, &a)))
            return rc;
        if (jinja__truthy(a) == (n->kind == JN_OR)) {
            *out = a;
            return 0;
        }
        return eval(r, n->b, sc, out);
    case JN_COMPARE:
        if ((rc = eval(r, n->a, sc, &a)))
            return rc;
        for (const struct jinja_node *op = n->b; op; op = op->next) {
            if ((rc = eval(r, op->a, sc, &b)) || (rc = jinja__compare(r, op->op, a, b, &res)))
                return rc;
            if (!res) {
                *out = jinja__bool(false);
                return 0;
            }
            a = b;
        }
        *out = jinja__bool(true);
        return 0;
    case JN_COND:
        if ((rc = eval(r, n->b, sc, &a)))
            return rc;
        if (jinja__truthy(a))
            return eval(r, n->a, sc, out);
        if (n->c)
            return eval(r, n->c, sc, out);
        *out = jinja__undef_fmt(r, "the inline if-expression on line %u evaluated to false and no else "
                                "section was defined.", (unsigned)n->line);
        return 0;
    case JN_LIST: case JN_TUPLE: {
        struct jinja_list *l;

        if ((rc = eval_items(r, n->a, sc, &l)))
            return rc;
        *out = jinja__list_val(l, n->kind == JN_TUPLE ? JV_F_TUPLE : 0);
        return 0;
    }
    case JN_DICT: {
        struct jinja_dict *d = jinja__dict_new(r, 0);

        if (!d)
            return -ENOMEM;
        for (const struct jinja_node *p = n->a; p; p = p->next)
            if ((rc = eval(r, p->a, sc, &a)) || (rc = eval(r, p->b, sc, &b)) ||
                (rc = jinja__dict_set(r, d, a, b)))
                return rc;
        out->type = JV_DICT;
        out->flags = 0;
        out->dict = d;
        return 0;
    }
    default:
        return jinja__fail(r, "cannot evaluate this expression");
    }
}

static int eval(struct jinja_render *r, const struct jinja_node *n, struct jinja_scope *sc,
                struct jinja_value *out)
{
    int rc;

    if (r->failed)
        return -EINVAL;
    r->line = n->line;
    if ((rc = jinja__charge(r, 1)))
        return rc;
    if (++r->depth > r->lim->max_depth) {
        r->depth--;
        return jinja__fail(r, "the template nests deeper than %d (recursive macro?)", r->lim->max_depth);
    }
    rc = eval_node(r, n, sc, out);
    r->depth--;
    return rc;
}

/* ---- statements ---- */

static int assign(struct jinja_render *r, const struct jinja_node *target, struct jinja_value v,
                  struct jinja_scope *sc)
{
    if (target->kind == JN_NAME)
        return scope_set(r, sc, target->str, target->len, v);
    if (target->kind == JN_NSREF) {
        struct jinja_value ns = lookup(r, sc, target->a->str, target->a->len);

        if (ns.type != JV_NS)
            return jinja__fail(r, "cannot assign attribute on non-namespace object");
        return jinja__dict_set(r, ns.dict, jinja__str(target->str, target->len), v);
    }
    {
        struct jinja_list *l;
        size_t want = 0;
        int rc;

        for (const struct jinja_node *k = target->a; k; k = k->next)
            want++;
        if ((rc = jinja__iterate(r, v, &l)))
            return rc;
        if (l->len != want)
            return l->len > want ? jinja__fail(r, "too many values to unpack (expected %zu)", want)
                                 : jinja__fail(r,
                                               "not enough values to unpack (expected %zu, got %zu)", want, l->len);
        want = 0;
        for (const struct jinja_node *k = target->a; k; k = k->next)
            if ((rc = scope_set(r, sc, k->str, k->len, l->items[want++])))
                return rc;
        return 0;
    }
}

static int count_iteration(struct jinja_render *r)
{
    if (++r->iterations > r->lim->max_loop_iterations)
        return jinja__fail(r, "the template ran more than %llu loop iterations",
                           (unsigned long long)r->lim->max_loop_iterations);
    return 0;
}

static int exec_for(struct jinja_render *r, const struct jinja_node *n, struct jinja_scope *sc)
{
    struct jinja_scope it = { .parent = sc };
    struct jinja_value seq, lv = { .type = JV_LOOP };
    struct jinja_list *items;
    struct jinja_loop *loop;
    int rc;

    if ((rc = eval(r, n->b, sc, &seq)) || (rc = jinja__iterate(r, seq, &items)))
        return rc;
    if (n->c) {
        /* for x in seq if cond: loop.index and loop.length count only what passes. */
        struct jinja_list *kept = jinja__list_new(r, items->len);

        if (!kept)
            return -ENOMEM;
        for (size_t i = 0; i < items->len; i++) {
            struct jinja_value ok;

            scope_clear(&it);
            if ((rc = count_iteration(r)) || (rc = assign(r, n->a, items->items[i], &it)) ||
                (rc = eval(r, n->c, &it, &ok)))
                return rc;
            if (jinja__truthy(ok))
                kept->items[kept->len++] = items->items[i];
        }
        items = kept;
    }
    if (!items->len) {
        struct jinja_scope es = { .parent = sc };

        return n->e ? exec_body(r, n->e, &es) : 0;
    }
    if (!(loop = jinja__alloc(r, sizeof *loop)))
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

static int write_value(struct jinja_render *r, struct jinja_value v)
{
    return jinja__write_str(r, r->out, v);
}

static struct jinja_value closure(struct jinja_render *r, const struct jinja_macro *m, struct jinja_scope *sc)
{
    struct jinja_value v = { .type = JV_MACRO };

    if (!(v.closure = jinja__alloc(r, sizeof *v.closure)))
        return jinja__none();
    v.closure->macro = m;
    v.closure->scope = sc;
    return v;
}

static int exec_stmt(struct jinja_render *r, const struct jinja_node *n, struct jinja_scope *sc)
{
    struct jinja_value v;
    int rc;

    switch (n->kind) {
    case JN_TEXT:
        return jinja__put(r, r->out, n->str, n->len);
    case JN_OUTPUT:
        if ((rc = eval(r, n->a, sc, &v)))
            return rc;
        return write_value(r, v);
    case JN_IF:
        for (;; n = n->c) {
            if ((rc = eval(r, n->a, sc, &v)))
                return rc;
            if (jinja__truthy(v))
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
        struct jinja_scope bs = { .parent = sc };

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
        struct jinja_scope bs = { .parent = sc };

        if ((rc = render_capture(r, n->b, &bs, &v)) < 0)
            return rc;
        r->block_input = v;
        if ((rc = eval(r, n->a, sc, &v)))
            return rc;
        return write_value(r, v);
    }
    case JN_WITH: {
        struct jinja_scope ws = { .parent = sc };

        for (const struct jinja_node *s = n->a; s; s = s->next)
            if ((rc = eval(r, s->b, sc, &v)) || (rc = assign(r, s->a, v, &ws)))
                return rc;
        return exec_body(r, n->b, &ws);
    }
    case JN_BREAK:
        return JR_BREAK;
    case JN_CONTINUE:
        return JR_CONTINUE;
    default:
        return jinja__fail(r, "cannot run this statement");
    }
}

static int exec_body(struct jinja_render *r, const struct jinja_node *n, struct jinja_scope *sc)
{
    int rc = 0;

    if (++r->depth > r->lim->max_depth) {
        r->depth--;
        return jinja__fail(r, "the template nests deeper than %d (recursive macro?)", r->lim->max_depth);
    }
    for (; n && !rc; n = n->next) {
        if (r->failed) {
            rc = -EINVAL;
            break;
        }
        r->line = n->line;
        if ((rc = jinja__charge(r, 1)))
            break;
        rc = exec_stmt(r, n, sc);
    }
    r->depth--;
    return rc;
}

int jinja_render(const struct jinja_template *t, const cJSON *vars, const struct jinja_limits *lim,
                 char **out, size_t *len, char *err, bool *raised)
{
    struct buf buf = BUF_INIT;
    struct jinja_render r = { .out = &buf, .lim = lim, .err = err, .line = 1 };
    struct jinja_scope root = { 0 };
    int rc = 0;

    *out = NULL;
    *len = 0;
    if (raised)
        *raised = false;
    arena_init_sized(&r.arena, JINJA_ARENA_BLOCK_BYTES, lim->max_memory_bytes);
    r.root = &root;
    for (const cJSON *v = vars ? vars->child : NULL; v && !rc; v = v->next) {
        struct jinja_value val;

        if (!(rc = jinja__from_json(&r, v, &val, 0)))
            rc = scope_set(&r, &root, v->string ? v->string : "", v->string ? strlen(v->string) : 0, val);
    }
    if (!rc)
        rc = exec_body(&r, t->body, &root);
    if (rc > 0 || (!rc && r.failed))
        rc = r.failed ? -EINVAL : 0;
    if (!rc && buf_reserve(&buf, 0))   /* nothing rendered is "", not NULL */
        rc = jinja__oom(&r);
    if (raised)
        *raised = r.raised;
    arena_fini(&r.arena);
    if (rc) {
        if (!r.failed)
            errf(err, "render failed (%d)", rc);
        buf_fini(&buf);
        return rc;
    }
    *out = buf.p;
    *len = buf.len;
    return 0;
}
