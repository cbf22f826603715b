/* jinja_expr.c — expressions, by recursive descent with Jinja's precedence: condexpr < or <
 * and < not < comparisons (chained, in, not in) < + - < ~ < * / // % < ** (left to right,
 * as Jinja has it) < unary - + < postfix (.attr, [item], [a:b:c], calls) < filters and
 * tests. Filter and test names resolve here, so an unknown one fails at load time.
 * Statements are jinja_parser.c. */
#include "engine/chat_template/jinja.h"

#include <errno.h>

#include "engine/base/util.h" /* MIN */

static struct jnode *parse_or(struct jparser *p);
static struct jnode *parse_unary(struct jparser *p, bool with_filter);

/* ( args ) of a call, filter or test: positional then name=value. */
static int parse_call_args(struct jparser *p, struct jnode *call)
{
    struct jnode **tail = &call->b;
    int npos = 0, nkw = 0;

    if (jp__expect_op(p, OP_LPAREN, "'('"))
        return -EINVAL;
    while (!jp_tok_op(jp_cur(p), OP_RPAREN)) {
        struct jnode *arg;

        if (npos + nkw && jp__expect_op(p, OP_COMMA, "',' or ')'"))
            return -EINVAL;
        if (jp_tok_op(jp_cur(p), OP_RPAREN))
            break;
        if (jp_tok_op(jp_cur(p), OP_MUL) || jp_tok_op(jp_cur(p), OP_POW))
            return jp__fail_at(p, jp_cur(p), "*args and **kwargs in calls are not supported");
        if (jp_cur(p)->type == JT_NAME && jp_tok_op(jp_peek(p, 1), OP_ASSIGN)) {
            if (!(arg = jp__node(p, JN_KWARG, jp_cur(p))))
                return -ENOMEM;
            arg->str = jp_cur(p)->p;
            arg->len = jp_cur(p)->len;
            jp_advance(p);
            jp_advance(p);
            if (!(arg->a = jp__expression(p, true)))
                return -EINVAL;
            nkw++;
        } else {
            if (nkw)
                return jp__fail_at(p, jp_cur(p), "positional argument follows keyword argument");
            if (!(arg = jp__expression(p, true)))
                return -EINVAL;
            npos++;
        }
        if (npos > JINJA_MAX_ARGS || nkw > JINJA_MAX_ARGS)
            return jp__fail_at(p, jp_cur(p), "more than %d arguments in one call", JINJA_MAX_ARGS);
        *tail = arg;
        tail = &arg->next;
    }
    jp_advance(p);
    call->nargs = (uint16_t)(npos + nkw);
    return 0;
}

static struct jnode *parse_call(struct jparser *p, struct jnode *callee)
{
    struct jnode *n = jp__node(p, JN_CALL, jp_cur(p));

    if (!n)
        return NULL;
    n->a = callee;
    return parse_call_args(p, n) ? NULL : n;
}

/* One subscript inside [ ]: an expression, or a slice start:stop:step. */
static struct jnode *parse_subscribed(struct jparser *p)
{
    const struct jtoken *at = jp_cur(p);
    struct jnode *args[3] = { 0 }, *s;

    if (jp_tok_op(jp_cur(p), OP_COLON)) {
        jp_advance(p);
    } else {
        if (!(args[0] = jp__expression(p, true)))
            return NULL;
        if (!jp_tok_op(jp_cur(p), OP_COLON))
            return args[0];
        jp_advance(p);
    }
    if (!jp_tok_op(jp_cur(p), OP_COLON) && !jp_tok_op(jp_cur(p), OP_RBRACKET) && !jp_tok_op(jp_cur(p), OP_COMMA))
        if (!(args[1] = jp__expression(p, true)))
            return NULL;
    if (jp_tok_op(jp_cur(p), OP_COLON)) {
        jp_advance(p);
        if (!jp_tok_op(jp_cur(p), OP_RBRACKET) && !jp_tok_op(jp_cur(p), OP_COMMA))
            if (!(args[2] = jp__expression(p, true)))
                return NULL;
    }
    if (!(s = jp__node(p, JN_SLICE, at)))
        return NULL;
    s->b = args[0];
    s->c = args[1];
    s->d = args[2];
    return s;
}

static struct jnode *parse_subscript(struct jparser *p, struct jnode *obj)
{
    const struct jtoken *at = jp_cur(p);
    struct jnode *n, *arg = NULL, **tail = &arg;
    int count = 0;

    if (jp_tok_op(at, OP_DOT)) {
        jp_advance(p);
        if (jp_cur(p)->type == JT_NAME) {
            if (!(n = jp__node(p, JN_ATTR, at)))
                return NULL;
            n->a = obj;
            n->str = jp_cur(p)->p;
            n->len = jp_cur(p)->len;
            jp_advance(p);
            return n;
        }
        if (jp_cur(p)->type != JT_INT) {
            jp__fail_expected(p, "name or number");
            return NULL;
        }
        if (!(n = jp__node(p, JN_ITEM, at)) || !(n->b = jp__node(p, JN_CONST, jp_cur(p))))
            return NULL;
        n->a = obj;
        n->b->val = jv_int(jp_cur(p)->i);
        jp_advance(p);
        return n;
    }
    jp_advance(p);   /* [ */
    while (!jp_tok_op(jp_cur(p), OP_RBRACKET)) {
        struct jnode *s;

        if (count && jp__expect_op(p, OP_COMMA, "',' or ']'"))
            return NULL;
        if (jp_tok_op(jp_cur(p), OP_RBRACKET))
            break;
        if (!(s = parse_subscribed(p)))
            return NULL;
        *tail = s;
        tail = &s->next;
        count++;
    }
    jp_advance(p);
    if (!count) {
        jp__fail_at(p, at, "expected an expression in [ ]");
        return NULL;
    }
    if (count == 1 && arg->kind == JN_SLICE) {
        arg->a = obj;
        return arg;
    }
    if (!(n = jp__node(p, JN_ITEM, at)))
        return NULL;
    n->a = obj;
    if (count == 1) {
        n->b = arg;
    } else {
        if (!(n->b = jp__node(p, JN_TUPLE, at)))
            return NULL;
        n->b->a = arg;
        for (struct jnode *k = arg; k; k = k->next)
            if (k->kind == JN_SLICE) {
                jp__fail_at(p, at, "slices inside a tuple subscript are not supported");
                return NULL;
            }
    }
    return n;
}

static struct jnode *parse_postfix(struct jparser *p, struct jnode *n)
{
    while (n) {
        if (jp_tok_op(jp_cur(p), OP_DOT) || jp_tok_op(jp_cur(p), OP_LBRACKET))
            n = parse_subscript(p, n);
        else if (jp_tok_op(jp_cur(p), OP_LPAREN))
            n = parse_call(p, n);
        else
            break;
    }
    return n;
}

struct jnode *jp__filter(struct jparser *p, struct jnode *n, bool start_inline)
{
    while (n && (jp_tok_op(jp_cur(p), OP_PIPE) || start_inline)) {
        const struct jtoken *name;
        struct jnode *f;

        if (!start_inline)
            jp_advance(p);
        start_inline = false;
        name = jp_cur(p);
        if (name->type != JT_NAME) {
            jp__fail_expected(p, "a filter name");
            return NULL;
        }
        if (!(f = jp__node(p, JN_FILTER, name)))
            return NULL;
        f->a = n;
        f->str = name->p;
        f->len = name->len;
        f->id = jinja_filter_find(name->p, name->len);
        if (f->id < 0) {
            jp__fail_at(p, name, "no filter named '%.*s'", (int)MIN(name->len, 60), name->p);
            return NULL;
        }
        jp_advance(p);
        if (jp_tok_op(jp_cur(p), OP_LPAREN) && parse_call_args(p, f))
            return NULL;
        n = f;
    }
    return n;
}

static struct jnode *parse_primary(struct jparser *p);

static struct jnode *parse_test(struct jparser *p, struct jnode *n)
{
    const struct jtoken *is = jp_cur(p), *name;
    struct jnode *t;
    bool negated = false;

    jp_advance(p);
    if (jp_tok_name(jp_cur(p), "not")) {
        jp_advance(p);
        negated = true;
    }
    name = jp_cur(p);
    if (name->type != JT_NAME) {
        jp__fail_expected(p, "a test name");
        return NULL;
    }
    if (!(t = jp__node(p, JN_TEST, is)))
        return NULL;
    t->a = n;
    t->str = name->p;
    t->len = name->len;
    t->id = jinja_test_find(name->p, name->len);
    if (t->id < 0) {
        jp__fail_at(p, name, "no test named '%.*s'", (int)MIN(name->len, 60), name->p);
        return NULL;
    }
    jp_advance(p);
    if (jp_tok_op(jp_cur(p), OP_LPAREN)) {
        if (parse_call_args(p, t))
            return NULL;
    } else if ((jp_cur(p)->type == JT_NAME || jp_cur(p)->type == JT_STRING || jp_cur(p)->type == JT_INT ||
                jp_cur(p)->type == JT_FLOAT || jp_tok_op(jp_cur(p), OP_LBRACKET) || jp_tok_op(jp_cur(p), OP_LBRACE)) &&
               !jp_tok_name(jp_cur(p), "else") && !jp_tok_name(jp_cur(p), "or") && !jp_tok_name(jp_cur(p), "and")) {
        /* x is divisibleby 3: one argument without parentheses */
        if (jp_tok_name(jp_cur(p), "is")) {
            jp__fail_at(p, jp_cur(p), "You cannot chain multiple tests with is");
            return NULL;
        }
        if (!(t->b = parse_postfix(p, parse_primary(p))))
            return NULL;
        t->nargs = 1;
    }
    if (negated) {
        struct jnode *no = jp__node(p, JN_NOT, is);

        if (!no)
            return NULL;
        no->a = t;
        t = no;
    }
    return t;
}

static struct jnode *parse_filter_expr(struct jparser *p, struct jnode *n)
{
    while (n) {
        if (jp_tok_op(jp_cur(p), OP_PIPE))
            n = jp__filter(p, n, false);
        else if (jp_tok_name(jp_cur(p), "is"))
            n = parse_test(p, n);
        else if (jp_tok_op(jp_cur(p), OP_LPAREN))
            n = parse_call(p, n);
        else
            break;
    }
    return n;
}

static struct jnode *parse_list_or_dict(struct jparser *p, bool dict)
{
    const struct jtoken *at = jp_cur(p);
    struct jnode *n = jp__node(p, dict ? JN_DICT : JN_LIST, at), **tail;
    int close = dict ? OP_RBRACE : OP_RBRACKET;
    bool first = true;

    if (!n)
        return NULL;
    tail = &n->a;
    jp_advance(p);
    while (!jp_tok_op(jp_cur(p), close)) {
        struct jnode *item;

        if (!first && jp__expect_op(p, OP_COMMA, dict ? "',' or '}'" : "',' or ']'"))
            return NULL;
        first = false;
        if (jp_tok_op(jp_cur(p), close))
            break;
        if (dict) {
            if (!(item = jp__node(p, JN_PAIR, jp_cur(p))) || !(item->a = jp__expression(p, true)) ||
                jp__expect_op(p, OP_COLON, "':'") || !(item->b = jp__expression(p, true)))
                return NULL;
        } else if (!(item = jp__expression(p, true))) {
            return NULL;
        }
        *tail = item;
        tail = &item->next;
    }
    jp_advance(p);
    return n;
}

static struct jnode *parse_primary(struct jparser *p)
{
    const struct jtoken *t = jp_cur(p);
    struct jnode *n;

    switch (t->type) {
    case JT_NAME:
        if (!(n = jp__node(p, JN_CONST, t)))
            return NULL;
        if (jp_tok_name(t, "true") || jp_tok_name(t, "True"))
            n->val = jv_bool(true);
        else if (jp_tok_name(t, "false") || jp_tok_name(t, "False"))
            n->val = jv_bool(false);
        else if (jp_tok_name(t, "none") || jp_tok_name(t, "None"))
            n->val = jv_none();
        else {
            n->kind = JN_NAME;
            n->str = t->p;
            n->len = t->len;
        }
        jp_advance(p);
        return n;
    case JT_STRING: {
        size_t len = 0, k = p->i;
        char *s;

        /* Adjacent literals concatenate: "a" "b" is "ab". */
        for (; p->t[k].type == JT_STRING; k++)
            len += p->t[k].len;
        if (!(n = jp__node(p, JN_CONST, t)) || !(s = arena_alloc(p->a, len + 1)))
            return NULL;
        len = 0;
        for (; jp_cur(p)->type == JT_STRING; jp_advance(p)) {
            memcpy(s + len, jp_cur(p)->p, jp_cur(p)->len);
            len += jp_cur(p)->len;
        }
        n->val = jv_str(s, len);
        return n;
    }
    case JT_INT: case JT_FLOAT:
        if (!(n = jp__node(p, JN_CONST, t)))
            return NULL;
        n->val = t->type == JT_INT ? jv_int(t->i) : jv_float(t->f);
        jp_advance(p);
        return n;
    case JT_OP:
        if (t->op == OP_LPAREN) {
            jp_advance(p);
            if (!(n = jp__tuple(p, true, NULL, true)) || jp__expect_op(p, OP_RPAREN, "')'"))
                return NULL;
            return n;
        }
        if (t->op == OP_LBRACKET || t->op == OP_LBRACE)
            return parse_list_or_dict(p, t->op == OP_LBRACE);
        /* fall through */
    default: {
        char got[96];

        jp__describe(t, got, sizeof got);
        jp__fail_at(p, t, "unexpected %s", got);
        return NULL;
    }
    }
}

static struct jnode *parse_unary(struct jparser *p, bool with_filter)
{
    const struct jtoken *t = jp_cur(p);
    struct jnode *n;

    if (jp__enter(p))
        return NULL;
    if (jp_tok_op(t, OP_SUB) || jp_tok_op(t, OP_ADD)) {
        jp_advance(p);
        if ((n = jp__node(p, jp_tok_op(t, OP_SUB) ? JN_NEG : JN_POS, t)))
            n->a = parse_unary(p, false);
        if (n && !n->a)
            n = NULL;
    } else {
        n = parse_primary(p);
    }
    n = parse_postfix(p, n);
    if (with_filter)
        n = parse_filter_expr(p, n);
    p->depth--;
    return n;
}

static struct jnode *binop(struct jparser *p, const struct jtoken *at, int op, struct jnode *l,
                           struct jnode *r)
{
    struct jnode *n;

    if (!l || !r || !(n = jp__node(p, JN_BINOP, at)))
        return NULL;
    n->op = (uint8_t)op;
    n->a = l;
    n->b = r;
    return n;
}

static struct jnode *parse_pow(struct jparser *p)
{
    struct jnode *n = parse_unary(p, true);

    while (n && jp_tok_op(jp_cur(p), OP_POW)) {
        const struct jtoken *at = jp_cur(p);

        jp_advance(p);
        n = binop(p, at, OP_POW, n, parse_unary(p, true));
    }
    return n;
}

static struct jnode *parse_math2(struct jparser *p)
{
    struct jnode *n = parse_pow(p);

    while (n && (jp_tok_op(jp_cur(p), OP_MUL) || jp_tok_op(jp_cur(p), OP_DIV) || jp_tok_op(jp_cur(p), OP_FLOORDIV) ||
                 jp_tok_op(jp_cur(p), OP_MOD))) {
        const struct jtoken *at = jp_cur(p);

        jp_advance(p);
        n = binop(p, at, at->op, n, parse_pow(p));
    }
    return n;
}

static struct jnode *parse_concat(struct jparser *p)
{
    struct jnode *n = parse_math2(p);

    while (n && jp_tok_op(jp_cur(p), OP_TILDE)) {
        const struct jtoken *at = jp_cur(p);

        jp_advance(p);
        n = binop(p, at, OP_TILDE, n, parse_math2(p));
    }
    return n;
}

static struct jnode *parse_math1(struct jparser *p)
{
    struct jnode *n = parse_concat(p);

    while (n && (jp_tok_op(jp_cur(p), OP_ADD) || jp_tok_op(jp_cur(p), OP_SUB))) {
        const struct jtoken *at = jp_cur(p);

        jp_advance(p);
        n = binop(p, at, at->op, n, parse_concat(p));
    }
    return n;
}

static struct jnode *parse_compare(struct jparser *p)
{
    const struct jtoken *at = jp_cur(p);
    struct jnode *left = parse_math1(p), *ops = NULL, **tail = &ops, *n;

    while (left) {
        const struct jtoken *t = jp_cur(p);
        int op;

        if (t->type == JT_OP && t->op >= OP_EQ && t->op <= OP_GE) {
            op = t->op;
            jp_advance(p);
        } else if (jp_tok_name(t, "in")) {
            op = OP_IN;
            jp_advance(p);
        } else if (jp_tok_name(t, "not") && jp_tok_name(jp_peek(p, 1), "in")) {
            op = OP_NOTIN;
            jp_advance(p);
            jp_advance(p);
        } else {
            break;
        }
        if (!(n = jp__node(p, JN_CMP_OP, t)) || !(n->a = parse_math1(p)))
            return NULL;
        n->op = (uint8_t)op;
        *tail = n;
        tail = &n->next;
    }
    if (!left || !ops)
        return left;
    if (!(n = jp__node(p, JN_COMPARE, at)))
        return NULL;
    n->a = left;
    n->b = ops;
    return n;
}

static struct jnode *parse_not(struct jparser *p)
{
    const struct jtoken *t = jp_cur(p);
    struct jnode *n;

    if (!jp_tok_name(t, "not"))
        return parse_compare(p);
    if (jp__enter(p))
        return NULL;
    jp_advance(p);
    if ((n = jp__node(p, JN_NOT, t)) && !(n->a = parse_not(p)))
        n = NULL;
    p->depth--;
    return n;
}

static struct jnode *parse_and(struct jparser *p)
{
    struct jnode *n = parse_not(p);

    while (n && jp_tok_name(jp_cur(p), "and")) {
        const struct jtoken *at = jp_cur(p);
        struct jnode *r;

        jp_advance(p);
        r = parse_not(p);
        n = binop(p, at, 0, n, r);
        if (n)
            n->kind = JN_AND;
    }
    return n;
}

static struct jnode *parse_or(struct jparser *p)
{
    struct jnode *n = parse_and(p);

    while (n && jp_tok_name(jp_cur(p), "or")) {
        const struct jtoken *at = jp_cur(p);
        struct jnode *r;

        jp_advance(p);
        r = parse_and(p);
        n = binop(p, at, 0, n, r);
        if (n)
            n->kind = JN_OR;
    }
    return n;
}

static struct jnode *parse_condexpr(struct jparser *p)
{
    struct jnode *n = parse_or(p);

    while (n && jp_tok_name(jp_cur(p), "if")) {
        const struct jtoken *at = jp_cur(p);
        struct jnode *c = jp__node(p, JN_COND, at);

        jp_advance(p);
        if (!c || !(c->b = parse_or(p)))
            return NULL;
        c->a = n;
        if (jp_tok_name(jp_cur(p), "else")) {
            jp_advance(p);
            if (jp__enter(p))
                return NULL;
            c->c = parse_condexpr(p);
            p->depth--;
            if (!c->c)
                return NULL;
        }
        n = c;
    }
    return n;
}

struct jnode *jp__expression(struct jparser *p, bool with_condexpr)
{
    struct jnode *n;

    if (jp__enter(p))
        return NULL;
    n = with_condexpr ? parse_condexpr(p) : parse_or(p);
    p->depth--;
    return n;
}

/* Comma-separated expressions: one alone is itself, more (or a trailing comma) a tuple. */
struct jnode *jp__tuple(struct jparser *p, bool with_condexpr, const char *end_name,
                                 bool explicit_parens)
{
    const struct jtoken *at = jp_cur(p);
    struct jnode *items = NULL, **tail = &items, *n;
    bool is_tuple = false;
    int count = 0;

    for (;;) {
        const struct jtoken *t;

        if (count && jp__expect_op(p, OP_COMMA, "','"))
            return NULL;
        t = jp_cur(p);
        if (t->type == JT_VAR_END || t->type == JT_BLOCK_END || jp_tok_op(t, OP_RPAREN) ||
            (end_name && jp_tok_name(t, end_name)))
            break;
        if (!(n = jp__expression(p, with_condexpr)))
            return NULL;
        *tail = n;
        tail = &n->next;
        count++;
        if (!jp_tok_op(jp_cur(p), OP_COMMA))
            break;
        is_tuple = true;
    }
    if (!is_tuple) {
        if (count)
            return items;
        if (!explicit_parens) {
            jp__fail_expected(p, "an expression");
            return NULL;
        }
    }
    if (!(n = jp__node(p, JN_TUPLE, at)))
        return NULL;
    n->a = items;
    return n;
}

/* A for / set / with target: a name, names separated by commas, or ns.attr (set only). */