/* jinja_expr.c — expressions, by recursive descent with Jinja's precedence: condexpr < or <
 * and < not < comparisons (chained, in, not in) < + - < ~ < * / // % < ** (left to right,
 * as Jinja has it) < unary - + < postfix (.attr, [item], [a:b:c], calls) < filters and
 * tests. Filter and test names resolve here, so an unknown one fails at load time.
 * Statements are jinja_parser.c. */
#include "engine/chat_template/jinja.h"

#include <errno.h>

#include "engine/base/util.h" /* MIN */

static struct jinja_node *parse_or(struct jinja_parser *p);
static struct jinja_node *parse_unary(struct jinja_parser *p, bool with_filter);

/* ( args ) of a call, filter or test: positional then name=value. */
static int parse_call_args(struct jinja_parser *p, struct jinja_node *call)
{
    struct jinja_node **tail = &call->b;
    int npos = 0, nkw = 0;

    if (jinja__expect_op(p, OP_LPAREN, "'('"))
        return -EINVAL;
    while (!jinja__tok_op(jinja__cur(p), OP_RPAREN)) {
        struct jinja_node *arg;

        if (npos + nkw && jinja__expect_op(p, OP_COMMA, "',' or ')'"))
            return -EINVAL;
        if (jinja__tok_op(jinja__cur(p), OP_RPAREN))
            break;
        if (jinja__tok_op(jinja__cur(p), OP_MUL) || jinja__tok_op(jinja__cur(p), OP_POW))
            return jinja__parse_fail_at(p, jinja__cur(p), "*args and **kwargs in calls are not supported");
        if (jinja__cur(p)->type == JT_NAME && jinja__tok_op(jinja__peek(p, 1), OP_ASSIGN)) {
            if (!(arg = jinja__node(p, JN_KWARG, jinja__cur(p))))
                return -ENOMEM;
            arg->str = jinja__cur(p)->p;
            arg->len = jinja__cur(p)->len;
            jinja__advance(p);
            jinja__advance(p);
            if (!(arg->a = jinja__parse_expression(p, true)))
                return -EINVAL;
            nkw++;
        } else {
            if (nkw)
                return jinja__parse_fail_at(p, jinja__cur(p), "positional argument follows keyword argument");
            if (!(arg = jinja__parse_expression(p, true)))
                return -EINVAL;
            npos++;
        }
        if (npos > JINJA_MAX_ARGS || nkw > JINJA_MAX_ARGS)
            return jinja__parse_fail_at(p, jinja__cur(p), "more than %d arguments in one call",
                                        JINJA_MAX_ARGS);
        *tail = arg;
        tail = &arg->next;
    }
    jinja__advance(p);
    call->nargs = (uint16_t)(npos + nkw);
    return 0;
}

static struct jinja_node *parse_call(struct jinja_parser *p, struct jinja_node *callee)
{
    struct jinja_node *n = jinja__node(p, JN_CALL, jinja__cur(p));

    if (!n)
        return NULL;
    n->a = callee;
    return parse_call_args(p, n) ? NULL : n;
}

/* One subscript inside [ ]: an expression, or a slice start:stop:step. */
static struct jinja_node *parse_subscribed(struct jinja_parser *p)
{
    const struct jinja_token *at = jinja__cur(p);
    struct jinja_node *args[3] = { 0 }, *s;

    if (jinja__tok_op(jinja__cur(p), OP_COLON)) {
        jinja__advance(p);
    } else {
        if (!(args[0] = jinja__parse_expression(p, true)))
            return NULL;
        if (!jinja__tok_op(jinja__cur(p), OP_COLON))
            return args[0];
        jinja__advance(p);
    }
    if (!jinja__tok_op(jinja__cur(p), OP_COLON) && !jinja__tok_op(jinja__cur(p), OP_RBRACKET) &&
        !jinja__tok_op(jinja__cur(p), OP_COMMA))
        if (!(args[1] = jinja__parse_expression(p, true)))
            return NULL;
    if (jinja__tok_op(jinja__cur(p), OP_COLON)) {
        jinja__advance(p);
        if (!jinja__tok_op(jinja__cur(p), OP_RBRACKET) && !jinja__tok_op(jinja__cur(p), OP_COMMA))
            if (!(args[2] = jinja__parse_expression(p, true)))
                return NULL;
    }
    if (!(s = jinja__node(p, JN_SLICE, at)))
        return NULL;
    s->b = args[0];
    s->c = args[1];
    s->d = args[2];
    return s;
}

static struct jinja_node *parse_subscript(struct jinja_parser *p, struct jinja_node *obj)
{
    const struct jinja_token *at = jinja__cur(p);
    struct jinja_node *n, *arg = NULL, **tail = &arg;
    int count = 0;

    if (jinja__tok_op(at, OP_DOT)) {
        jinja__advance(p);
        if (jinja__cur(p)->type == JT_NAME) {
            if (!(n = jinja__node(p, JN_ATTR, at)))
                return NULL;
            n->a = obj;
            n->str = jinja__cur(p)->p;
            n->len = jinja__cur(p)->len;
            jinja__advance(p);
            return n;
        }
        if (jinja__cur(p)->type != JT_INT) {
            jinja__parse_fail_expected(p, "name or number");
            return NULL;
        }
        if (!(n = jinja__node(p, JN_ITEM, at)) || !(n->b = jinja__node(p, JN_CONST, jinja__cur(p))))
            return NULL;
        n->a = obj;
        n->b->val = jinja__int(jinja__cur(p)->i);
        jinja__advance(p);
        return n;
    }
    jinja__advance(p);   /* [ */
    while (!jinja__tok_op(jinja__cur(p), OP_RBRACKET)) {
        struct jinja_node *s;

        if (count && jinja__expect_op(p, OP_COMMA, "',' or ']'"))
            return NULL;
        if (jinja__tok_op(jinja__cur(p), OP_RBRACKET))
            break;
        if (!(s = parse_subscribed(p)))
            return NULL;
        *tail = s;
        tail = &s->next;
        count++;
    }
    jinja__advance(p);
    if (!count) {
        jinja__parse_fail_at(p, at, "expected an expression in [ ]");
        return NULL;
    }
    if (count == 1 && arg->kind == JN_SLICE) {
        arg->a = obj;
        return arg;
    }
    if (!(n = jinja__node(p, JN_ITEM, at)))
        return NULL;
    n->a = obj;
    if (count == 1) {
        n->b = arg;
    } else {
        if (!(n->b = jinja__node(p, JN_TUPLE, at)))
            return NULL;
        n->b->a = arg;
        for (struct jinja_node *k = arg; k; k = k->next)
            if (k->kind == JN_SLICE) {
                jinja__parse_fail_at(p, at, "slices inside a tuple subscript are not supported");
                return NULL;
            }
    }
    return n;
}

static struct jinja_node *parse_postfix(struct jinja_parser *p, struct jinja_node *n)
{
    while (n) {
        if (jinja__tok_op(jinja__cur(p), OP_DOT) || jinja__tok_op(jinja__cur(p), OP_LBRACKET))
            n = parse_subscript(p, n);
        else if (jinja__tok_op(jinja__cur(p), OP_LPAREN))
            n = parse_call(p, n);
        else
            break;
    }
    return n;
}

struct jinja_node *jinja__parse_filter(struct jinja_parser *p, struct jinja_node *n, bool start_inline)
{
    while (n && (jinja__tok_op(jinja__cur(p), OP_PIPE) || start_inline)) {
        const struct jinja_token *name;
        struct jinja_node *f;

        if (!start_inline)
            jinja__advance(p);
        start_inline = false;
        name = jinja__cur(p);
        if (name->type != JT_NAME) {
            jinja__parse_fail_expected(p, "a filter name");
            return NULL;
        }
        if (!(f = jinja__node(p, JN_FILTER, name)))
            return NULL;
        f->a = n;
        f->str = name->p;
        f->len = name->len;
        f->id = jinja__filter_find(name->p, name->len);
        if (f->id < 0) {
            jinja__parse_fail_at(p, name, "no filter named '%.*s'", (int)MIN(name->len, 60), name->p);
            return NULL;
        }
        jinja__advance(p);
        if (jinja__tok_op(jinja__cur(p), OP_LPAREN) && parse_call_args(p, f))
            return NULL;
        n = f;
    }
    return n;
}

static struct jinja_node *parse_primary(struct jinja_parser *p);

static struct jinja_node *parse_test(struct jinja_parser *p, struct jinja_node *n)
{
    const struct jinja_token *is = jinja__cur(p), *name;
    struct jinja_node *t;
    bool negated = false;

    jinja__advance(p);
    if (jinja__tok_name(jinja__cur(p), "not")) {
        jinja__advance(p);
        negated = true;
    }
    name = jinja__cur(p);
    if (name->type != JT_NAME) {
        jinja__parse_fail_expected(p, "a test name");
        return NULL;
    }
    if (!(t = jinja__node(p, JN_TEST, is)))
        return NULL;
    t->a = n;
    t->str = name->p;
    t->len = name->len;
    t->id = jinja__test_find(name->p, name->len);
    if (t->id < 0) {
        jinja__parse_fail_at(p, name, "no test named '%.*s'", (int)MIN(name->len, 60), name->p);
        return NULL;
    }
    jinja__advance(p);
    if (jinja__tok_op(jinja__cur(p), OP_LPAREN)) {
        if (parse_call_args(p, t))
            return NULL;
    } else if ((jinja__cur(p)->type == JT_NAME || jinja__cur(p)->type == JT_STRING ||
                jinja__cur(p)->type == JT_INT || jinja__cur(p)->type == JT_FLOAT ||
                jinja__tok_op(jinja__cur(p), OP_LBRACKET) || jinja__tok_op(jinja__cur(p), OP_LBRACE)) &&
               !jinja__tok_name(jinja__cur(p), "else") && !jinja__tok_name(jinja__cur(p), "or") &&
               !jinja__tok_name(jinja__cur(p), "and")) {
        /* x is divisibleby 3: one argument without parentheses */
        if (jinja__tok_name(jinja__cur(p), "is")) {
            jinja__parse_fail_at(p, jinja__cur(p), "You cannot chain multiple tests with is");
            return NULL;
        }
        if (!(t->b = parse_postfix(p, parse_primary(p))))
            return NULL;
        t->nargs = 1;
    }
    if (negated) {
        struct jinja_node *no = jinja__node(p, JN_NOT, is);

        if (!no)
            return NULL;
        no->a = t;
        t = no;
    }
    return t;
}

static struct jinja_node *parse_filter_expr(struct jinja_parser *p, struct jinja_node *n)
{
    while (n) {
        if (jinja__tok_op(jinja__cur(p), OP_PIPE))
            n = jinja__parse_filter(p, n, false);
        else if (jinja__tok_name(jinja__cur(p), "is"))
            n = parse_test(p, n);
        else if (jinja__tok_op(jinja__cur(p), OP_LPAREN))
            n = parse_call(p, n);
        else
            break;
    }
    return n;
}

static struct jinja_node *parse_list_or_dict(struct jinja_parser *p, bool dict)
{
    const struct jinja_token *at = jinja__cur(p);
    struct jinja_node *n = jinja__node(p, dict ? JN_DICT : JN_LIST, at), **tail;
    int close = dict ? OP_RBRACE : OP_RBRACKET;
    bool first = true;

    if (!n)
        return NULL;
    tail = &n->a;
    jinja__advance(p);
    while (!jinja__tok_op(jinja__cur(p), close)) {
        struct jinja_node *item;

        if (!first && jinja__expect_op(p, OP_COMMA, dict ? "',' or '}'" : "',' or ']'"))
            return NULL;
        first = false;
        if (jinja__tok_op(jinja__cur(p), close))
            break;
        if (dict) {
            if (!(item = jinja__node(p, JN_PAIR,
                                     jinja__cur(p))) || !(item->a = jinja__parse_expression(p, true)) ||
                jinja__expect_op(p, OP_COLON, "':'") || !(item->b = jinja__parse_expression(p, true)))
                return NULL;
        } else if (!(item = jinja__parse_expression(p, true))) {
            return NULL;
        }
        *tail = item;
        tail = &item->next;
    }
    jinja__advance(p);
    return n;
}

static struct jinja_node *parse_primary(struct jinja_parser *p)
{
    const struct jinja_token *t = jinja__cur(p);
    struct jinja_node *n;

    switch (t->type) {
    case JT_NAME:
        if (!(n = jinja__node(p, JN_CONST, t)))
            return NULL;
        if (jinja__tok_name(t, "true") || jinja__tok_name(t, "True"))
            n->val = jinja__bool(true);
        else if (jinja__tok_name(t, "false") || jinja__tok_name(t, "False"))
            n->val = jinja__bool(false);
        else if (jinja__tok_name(t, "none") || jinja__tok_name(t, "None"))
            n->val = jinja__none();
        else {
            n->kind = JN_NAME;
            n->str = t->p;
            n->len = t->len;
        }
        jinja__advance(p);
        return n;
    case JT_STRING: {
        size_t len = 0, k = p->i;
        char *s;

        /* Adjacent literals concatenate: "a" "b" is "ab". */
        for (; p->t[k].type == JT_STRING; k++)
            len += p->t[k].len;
        if (!(n = jinja__node(p, JN_CONST, t)) || !(s = arena_alloc(p->a, len + 1)))
            return NULL;
        len = 0;
        for (; jinja__cur(p)->type == JT_STRING; jinja__advance(p)) {
            memcpy(s + len, jinja__cur(p)->p, jinja__cur(p)->len);
            len += jinja__cur(p)->len;
        }
        n->val = jinja__str(s, len);
        return n;
    }
    case JT_INT: case JT_FLOAT:
        if (!(n = jinja__node(p, JN_CONST, t)))
            return NULL;
        n->val = t->type == JT_INT ? jinja__int(t->i) : jinja__float(t->f);
        jinja__advance(p);
        return n;
    case JT_OP:
        if (t->op == OP_LPAREN) {
            jinja__advance(p);
            if (!(n = jinja__parse_tuple(p, true, NULL, true)) || jinja__expect_op(p, OP_RPAREN, "')'"))
                return NULL;
            return n;
        }
        if (t->op == OP_LBRACKET || t->op == OP_LBRACE)
            return parse_list_or_dict(p, t->op == OP_LBRACE);
        /* fall through */
    default: {
        char got[96];

        jinja__describe_token(t, got, sizeof got);
        jinja__parse_fail_at(p, t, "unexpected %s", got);
        return NULL;
    }
    }
}

static struct jinja_node *parse_unary(struct jinja_parser *p, bool with_filter)
{
    const struct jinja_token *t = jinja__cur(p);
    struct jinja_node *n;

    if (jinja__parse_enter(p))
        return NULL;
    if (jinja__tok_op(t, OP_SUB) || jinja__tok_op(t, OP_ADD)) {
        jinja__advance(p);
        if ((n = jinja__node(p, jinja__tok_op(t, OP_SUB) ? JN_NEG : JN_POS, t)))
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

static struct jinja_node *binop(struct jinja_parser *p, const struct jinja_token *at, int op,
                                struct jinja_node *l, struct jinja_node *r)
{
    struct jinja_node *n;

    if (!l || !r || !(n = jinja__node(p, JN_BINOP, at)))
        return NULL;
    n->op = (uint8_t)op;
    n->a = l;
    n->b = r;
    return n;
}

static struct jinja_node *parse_pow(struct jinja_parser *p)
{
    struct jinja_node *n = parse_unary(p, true);

    while (n && jinja__tok_op(jinja__cur(p), OP_POW)) {
        const struct jinja_token *at = jinja__cur(p);

        jinja__advance(p);
        n = binop(p, at, OP_POW, n, parse_unary(p, true));
    }
    return n;
}

static struct jinja_node *parse_math2(struct jinja_parser *p)
{
    struct jinja_node *n = parse_pow(p);

    while (n && (jinja__tok_op(jinja__cur(p), OP_MUL) || jinja__tok_op(jinja__cur(p), OP_DIV) ||
                 jinja__tok_op(jinja__cur(p), OP_FLOORDIV) || jinja__tok_op(jinja__cur(p), OP_MOD))) {
        const struct jinja_token *at = jinja__cur(p);

        jinja__advance(p);
        n = binop(p, at, at->op, n, parse_pow(p));
    }
    return n;
}

static struct jinja_node *parse_concat(struct jinja_parser *p)
{
    struct jinja_node *n = parse_math2(p);

    while (n && jinja__tok_op(jinja__cur(p), OP_TILDE)) {
        const struct jinja_token *at = jinja__cur(p);

        jinja__advance(p);
        n = binop(p, at, OP_TILDE, n, parse_math2(p));
    }
    return n;
}

static struct jinja_node *parse_math1(struct jinja_parser *p)
{
    struct jinja_node *n = parse_concat(p);

    while (n && (jinja__tok_op(jinja__cur(p), OP_ADD) || jinja__tok_op(jinja__cur(p), OP_SUB))) {
        const struct jinja_token *at = jinja__cur(p);

        jinja__advance(p);
        n = binop(p, at, at->op, n, parse_concat(p));
    }
    return n;
}

static struct jinja_node *parse_compare(struct jinja_parser *p)
{
    const struct jinja_token *at = jinja__cur(p);
    struct jinja_node *left = parse_math1(p), *ops = NULL, **tail = &ops, *n;

    while (left) {
        const struct jinja_token *t = jinja__cur(p);
        int op;

        if (t->type == JT_OP && t->op >= OP_EQ && t->op <= OP_GE) {
            op = t->op;
            jinja__advance(p);
        } else if (jinja__tok_name(t, "in")) {
            op = OP_IN;
            jinja__advance(p);
        } else if (jinja__tok_name(t, "not") && jinja__tok_name(jinja__peek(p, 1), "in")) {
            op = OP_NOTIN;
            jinja__advance(p);
            jinja__advance(p);
        } else {
            break;
        }
        if (!(n = jinja__node(p, JN_CMP_OP, t)) || !(n->a = parse_math1(p)))
            return NULL;
        n->op = (uint8_t)op;
        *tail = n;
        tail = &n->next;
    }
    if (!left || !ops)
        return left;
    if (!(n = jinja__node(p, JN_COMPARE, at)))
        return NULL;
    n->a = left;
    n->b = ops;
    return n;
}

static struct jinja_node *parse_not(struct jinja_parser *p)
{
    const struct jinja_token *t = jinja__cur(p);
    struct jinja_node *n;

    if (!jinja__tok_name(t, "not"))
        return parse_compare(p);
    if (jinja__parse_enter(p))
        return NULL;
    jinja__advance(p);
    if ((n = jinja__node(p, JN_NOT, t)) && !(n->a = parse_not(p)))
        n = NULL;
    p->depth--;
    return n;
}

static struct jinja_node *parse_and(struct jinja_parser *p)
{
    struct jinja_node *n = parse_not(p);

    while (n && jinja__tok_name(jinja__cur(p), "and")) {
        const struct jinja_token *at = jinja__cur(p);
        struct jinja_node *r;

        jinja__advance(p);
        r = parse_not(p);
        n = binop(p, at, 0, n, r);
        if (n)
            n->kind = JN_AND;
    }
    return n;
}

static struct jinja_node *parse_or(struct jinja_parser *p)
{
    struct jinja_node *n = parse_and(p);

    while (n && jinja__tok_name(jinja__cur(p), "or")) {
        const struct jinja_token *at = jinja__cur(p);
        struct jinja_node *r;

        jinja__advance(p);
        r = parse_and(p);
        n = binop(p, at, 0, n, r);
        if (n)
            n->kind = JN_OR;
    }
    return n;
}

static struct jinja_node *parse_condexpr(struct jinja_parser *p)
{
    struct jinja_node *n = parse_or(p);

    while (n && jinja__tok_name(jinja__cur(p), "if")) {
        const struct jinja_token *at = jinja__cur(p);
        struct jinja_node *c = jinja__node(p, JN_COND, at);

        jinja__advance(p);
        if (!c || !(c->b = parse_or(p)))
            return NULL;
        c->a = n;
        if (jinja__tok_name(jinja__cur(p), "else")) {
            jinja__advance(p);
            if (jinja__parse_enter(p))
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

struct jinja_node *jinja__parse_expression(struct jinja_parser *p, bool with_condexpr)
{
    struct jinja_node *n;

    if (jinja__parse_enter(p))
        return NULL;
    n = with_condexpr ? parse_condexpr(p) : parse_or(p);
    p->depth--;
    return n;
}

/* Comma-separated expressions: one alone is itself, more (or a trailing comma) a tuple. */
struct jinja_node *jinja__parse_tuple(struct jinja_parser *p, bool with_condexpr, const char *end_name,
                                      bool explicit_parens)
{
    const struct jinja_token *at = jinja__cur(p);
    struct jinja_node *items = NULL, **tail = &items, *n;
    bool is_tuple = false;
    int count = 0;

    for (;;) {
        const struct jinja_token *t;

        if (count && jinja__expect_op(p, OP_COMMA, "','"))
            return NULL;
        t = jinja__cur(p);
        if (t->type == JT_VAR_END || t->type == JT_BLOCK_END || jinja__tok_op(t, OP_RPAREN) ||
            (end_name && jinja__tok_name(t, end_name)))
            break;
        if (!(n = jinja__parse_expression(p, with_condexpr)))
            return NULL;
        *tail = n;
        tail = &n->next;
        count++;
        if (!jinja__tok_op(jinja__cur(p), OP_COMMA))
            break;
        is_tuple = true;
    }
    if (!is_tuple) {
        if (count)
            return items;
        if (!explicit_parens) {
            jinja__parse_fail_expected(p, "an expression");
            return NULL;
        }
    }
    if (!(n = jinja__node(p, JN_TUPLE, at)))
        return NULL;
    n->a = items;
    return n;
}

/* A for / set / with target: a name, names separated by commas, or ns.attr (set only). */