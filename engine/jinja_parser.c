/* jinja_parser.c — tokens to a syntax tree, by recursive descent with Jinja's grammar and
 * precedence (condexpr < or < and < not < compare < + - < ~ < * / // % < ** < unary <
 * postfix, filters and tests). Filter and test names resolve here, so an unknown one fails
 * at load time as in Jinja. Nesting is bounded, so no input can exhaust the stack.
 *
 * Node fields by kind (struct jnode in jinja.h):
 *   IF a=test b=body c=the elif (an IF) d=else body   FOR a=target b=iter c=filter
 *   d=body e=else body   SET a=target b=value   SET_BLOCK a=target b=body c=filter chain
 *   MACRO macro   CALL_BLOCK a=call macro=the caller   FILTER_BLOCK a=chain b=body
 *   WITH a=SET list b=body   ATTR a=object str=name   ITEM a=object b=key
 *   SLICE a=object b,c,d=start,stop,step   CALL a=callee b=args   FILTER/TEST a=operand
 *   b=args   BINOP/AND/OR a,b   NEG/POS/NOT a   COMPARE a=left b=CMP_OP list (each a=right)
 *   COND a=value b=test c=else   LIST/TUPLE a=items   DICT a=PAIR list (a=key b=value)
 *   KWARG str=name a=value   NSREF a=NAME str=attribute */
#include "engine/jinja.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/util.h" /* errf, ERR_LEN */

#define MAX_NESTING 100

struct parser {
    struct jinja_arena *a;
    const struct jtoken *t;
    size_t n, i;
    int depth;          /* open blocks + expression recursion */
    int loops;          /* for blocks around the statement being parsed */
    const char *block;  /* the innermost open block, for error messages */
    char *err;
    bool failed;
};

static const struct jtoken *cur(const struct parser *p) { return &p->t[p->i]; }
static const struct jtoken *peek(const struct parser *p, size_t k)
{
    return &p->t[MIN(p->i + k, p->n - 1)];
}
static void advance(struct parser *p)
{
    if (p->i + 1 < p->n)
        p->i++;
}

static bool tok_name(const struct jtoken *t, const char *name)
{
    return t->type == JT_NAME && t->len == strlen(name) && !memcmp(t->p, name, t->len);
}
static bool tok_op(const struct jtoken *t, int op) { return t->type == JT_OP && t->op == op; }

static void describe(const struct jtoken *t, char *buf, size_t n)
{
    static const char *const opname[] = {
        [OP_ADD] = "+", [OP_SUB] = "-", [OP_MUL] = "*", [OP_DIV] = "/", [OP_FLOORDIV] = "//",
        [OP_MOD] = "%", [OP_POW] = "**", [OP_TILDE] = "~", [OP_EQ] = "==", [OP_NE] = "!=",
        [OP_LT] = "<", [OP_LE] = "<=", [OP_GT] = ">", [OP_GE] = ">=", [OP_ASSIGN] = "=",
        [OP_LPAREN] = "(", [OP_RPAREN] = ")", [OP_LBRACKET] = "[", [OP_RBRACKET] = "]",
        [OP_LBRACE] = "{", [OP_RBRACE] = "}", [OP_COMMA] = ",", [OP_DOT] = ".", [OP_COLON] = ":",
        [OP_PIPE] = "|", [OP_SEMICOLON] = ";",
    };

    switch (t->type) {
    case JT_EOF: snprintf(buf, n, "end of template"); break;
    case JT_DATA: snprintf(buf, n, "template data"); break;
    case JT_VAR_BEGIN: snprintf(buf, n, "begin of print statement"); break;
    case JT_VAR_END: snprintf(buf, n, "end of print statement"); break;
    case JT_BLOCK_BEGIN: snprintf(buf, n, "begin of statement block"); break;
    case JT_BLOCK_END: snprintf(buf, n, "end of statement block"); break;
    case JT_NAME: snprintf(buf, n, "'%.*s'", (int)MIN(t->len, 60), t->p); break;
    case JT_STRING: snprintf(buf, n, "string"); break;
    case JT_INT: snprintf(buf, n, "integer"); break;
    case JT_FLOAT: snprintf(buf, n, "float"); break;
    default: snprintf(buf, n, "'%s'", t->op < ARRAY_LEN(opname) && opname[t->op] ? opname[t->op] : "?");
    }
}

static int fail_at(struct parser *p, const struct jtoken *t, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(struct parser *p, const struct jtoken *t, const char *fmt, ...)
{
    char msg[ERR_LEN];
    va_list ap;

    if (p->failed)
        return -EINVAL;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    errf(p->err, "line %u, column %u: %s", t->line, t->col, msg);
    p->failed = true;
    return -EINVAL;
}

static int fail_expected(struct parser *p, const char *what)
{
    char got[96];

    describe(cur(p), got, sizeof got);
    return fail_at(p, cur(p), "expected %s, got %s", what, got);
}

static struct jnode *node(struct parser *p, int kind, const struct jtoken *at)
{
    struct jnode *n = jinja_arena_alloc(p->a, sizeof *n);

    if (!n) {
        if (!p->failed)
            errf(p->err, "template too large to parse");
        p->failed = true;
        return NULL;
    }
    n->kind = (uint8_t)kind;
    n->line = at->line;
    return n;
}

static int expect_op(struct parser *p, int op, const char *what)
{
    if (!tok_op(cur(p), op))
        return fail_expected(p, what);
    advance(p);
    return 0;
}

static int expect_block_end(struct parser *p)
{
    if (cur(p)->type != JT_BLOCK_END)
        return fail_expected(p, "end of statement block");
    advance(p);
    return 0;
}

static int enter(struct parser *p)
{
    if (++p->depth > MAX_NESTING)
        return fail_at(p, cur(p), "template nested more than %d levels deep", MAX_NESTING);
    return 0;
}

/* ---- expressions ---- */

static struct jnode *parse_expression(struct parser *p, bool with_condexpr);
static struct jnode *parse_or(struct parser *p);
static struct jnode *parse_unary(struct parser *p, bool with_filter);
static struct jnode *parse_tuple(struct parser *p, bool with_condexpr, const char *end_name,
                                 bool explicit_parens);

/* ( args ) of a call, filter or test: positional then name=value. */
static int parse_call_args(struct parser *p, struct jnode *call)
{
    struct jnode **tail = &call->b;
    int npos = 0, nkw = 0;

    if (expect_op(p, OP_LPAREN, "'('"))
        return -EINVAL;
    while (!tok_op(cur(p), OP_RPAREN)) {
        struct jnode *arg;

        if (npos + nkw && expect_op(p, OP_COMMA, "',' or ')'"))
            return -EINVAL;
        if (tok_op(cur(p), OP_RPAREN))
            break;
        if (tok_op(cur(p), OP_MUL) || tok_op(cur(p), OP_POW))
            return fail_at(p, cur(p), "*args and **kwargs in calls are not supported");
        if (cur(p)->type == JT_NAME && tok_op(peek(p, 1), OP_ASSIGN)) {
            if (!(arg = node(p, JN_KWARG, cur(p))))
                return -ENOMEM;
            arg->str = cur(p)->p;
            arg->len = cur(p)->len;
            advance(p);
            advance(p);
            if (!(arg->a = parse_expression(p, true)))
                return -EINVAL;
            nkw++;
        } else {
            if (nkw)
                return fail_at(p, cur(p), "positional argument follows keyword argument");
            if (!(arg = parse_expression(p, true)))
                return -EINVAL;
            npos++;
        }
        if (npos > JINJA_MAX_ARGS || nkw > JINJA_MAX_ARGS)
            return fail_at(p, cur(p), "more than %d arguments in one call", JINJA_MAX_ARGS);
        *tail = arg;
        tail = &arg->next;
    }
    advance(p);
    call->nargs = (uint16_t)(npos + nkw);
    return 0;
}

static struct jnode *parse_call(struct parser *p, struct jnode *callee)
{
    struct jnode *n = node(p, JN_CALL, cur(p));

    if (!n)
        return NULL;
    n->a = callee;
    return parse_call_args(p, n) ? NULL : n;
}

/* One subscript inside [ ]: an expression, or a slice start:stop:step. */
static struct jnode *parse_subscribed(struct parser *p)
{
    const struct jtoken *at = cur(p);
    struct jnode *args[3] = { 0 }, *s;

    if (tok_op(cur(p), OP_COLON)) {
        advance(p);
    } else {
        if (!(args[0] = parse_expression(p, true)))
            return NULL;
        if (!tok_op(cur(p), OP_COLON))
            return args[0];
        advance(p);
    }
    if (!tok_op(cur(p), OP_COLON) && !tok_op(cur(p), OP_RBRACKET) && !tok_op(cur(p), OP_COMMA))
        if (!(args[1] = parse_expression(p, true)))
            return NULL;
    if (tok_op(cur(p), OP_COLON)) {
        advance(p);
        if (!tok_op(cur(p), OP_RBRACKET) && !tok_op(cur(p), OP_COMMA))
            if (!(args[2] = parse_expression(p, true)))
                return NULL;
    }
    if (!(s = node(p, JN_SLICE, at)))
        return NULL;
    s->b = args[0];
    s->c = args[1];
    s->d = args[2];
    return s;
}

static struct jnode *parse_subscript(struct parser *p, struct jnode *obj)
{
    const struct jtoken *at = cur(p);
    struct jnode *n, *arg = NULL, **tail = &arg;
    int count = 0;

    if (tok_op(at, OP_DOT)) {
        advance(p);
        if (cur(p)->type == JT_NAME) {
            if (!(n = node(p, JN_ATTR, at)))
                return NULL;
            n->a = obj;
            n->str = cur(p)->p;
            n->len = cur(p)->len;
            advance(p);
            return n;
        }
        if (cur(p)->type != JT_INT) {
            fail_expected(p, "name or number");
            return NULL;
        }
        if (!(n = node(p, JN_ITEM, at)) || !(n->b = node(p, JN_CONST, cur(p))))
            return NULL;
        n->a = obj;
        n->b->val = jv_int(cur(p)->i);
        advance(p);
        return n;
    }
    advance(p);   /* [ */
    while (!tok_op(cur(p), OP_RBRACKET)) {
        struct jnode *s;

        if (count && expect_op(p, OP_COMMA, "',' or ']'"))
            return NULL;
        if (tok_op(cur(p), OP_RBRACKET))
            break;
        if (!(s = parse_subscribed(p)))
            return NULL;
        *tail = s;
        tail = &s->next;
        count++;
    }
    advance(p);
    if (!count) {
        fail_at(p, at, "expected an expression in [ ]");
        return NULL;
    }
    if (count == 1 && arg->kind == JN_SLICE) {
        arg->a = obj;
        return arg;
    }
    if (!(n = node(p, JN_ITEM, at)))
        return NULL;
    n->a = obj;
    if (count == 1) {
        n->b = arg;
    } else {
        if (!(n->b = node(p, JN_TUPLE, at)))
            return NULL;
        n->b->a = arg;
        for (struct jnode *k = arg; k; k = k->next)
            if (k->kind == JN_SLICE) {
                fail_at(p, at, "slices inside a tuple subscript are not supported");
                return NULL;
            }
    }
    return n;
}

static struct jnode *parse_postfix(struct parser *p, struct jnode *n)
{
    while (n) {
        if (tok_op(cur(p), OP_DOT) || tok_op(cur(p), OP_LBRACKET))
            n = parse_subscript(p, n);
        else if (tok_op(cur(p), OP_LPAREN))
            n = parse_call(p, n);
        else
            break;
    }
    return n;
}

static struct jnode *parse_filter(struct parser *p, struct jnode *n, bool start_inline)
{
    while (n && (tok_op(cur(p), OP_PIPE) || start_inline)) {
        const struct jtoken *name;
        struct jnode *f;

        if (!start_inline)
            advance(p);
        start_inline = false;
        name = cur(p);
        if (name->type != JT_NAME) {
            fail_expected(p, "a filter name");
            return NULL;
        }
        if (!(f = node(p, JN_FILTER, name)))
            return NULL;
        f->a = n;
        f->str = name->p;
        f->len = name->len;
        f->id = jinja_filter_find(name->p, name->len);
        if (f->id < 0) {
            fail_at(p, name, "no filter named '%.*s'", (int)MIN(name->len, 60), name->p);
            return NULL;
        }
        advance(p);
        if (tok_op(cur(p), OP_LPAREN) && parse_call_args(p, f))
            return NULL;
        n = f;
    }
    return n;
}

static struct jnode *parse_primary(struct parser *p);

static struct jnode *parse_test(struct parser *p, struct jnode *n)
{
    const struct jtoken *is = cur(p), *name;
    struct jnode *t;
    bool negated = false;

    advance(p);
    if (tok_name(cur(p), "not")) {
        advance(p);
        negated = true;
    }
    name = cur(p);
    if (name->type != JT_NAME) {
        fail_expected(p, "a test name");
        return NULL;
    }
    if (!(t = node(p, JN_TEST, is)))
        return NULL;
    t->a = n;
    t->str = name->p;
    t->len = name->len;
    t->id = jinja_test_find(name->p, name->len);
    if (t->id < 0) {
        fail_at(p, name, "no test named '%.*s'", (int)MIN(name->len, 60), name->p);
        return NULL;
    }
    advance(p);
    if (tok_op(cur(p), OP_LPAREN)) {
        if (parse_call_args(p, t))
            return NULL;
    } else if ((cur(p)->type == JT_NAME || cur(p)->type == JT_STRING || cur(p)->type == JT_INT ||
                cur(p)->type == JT_FLOAT || tok_op(cur(p), OP_LBRACKET) || tok_op(cur(p), OP_LBRACE)) &&
               !tok_name(cur(p), "else") && !tok_name(cur(p), "or") && !tok_name(cur(p), "and")) {
        /* x is divisibleby 3: one argument without parentheses */
        if (tok_name(cur(p), "is")) {
            fail_at(p, cur(p), "You cannot chain multiple tests with is");
            return NULL;
        }
        if (!(t->b = parse_postfix(p, parse_primary(p))))
            return NULL;
        t->nargs = 1;
    }
    if (negated) {
        struct jnode *no = node(p, JN_NOT, is);

        if (!no)
            return NULL;
        no->a = t;
        t = no;
    }
    return t;
}

static struct jnode *parse_filter_expr(struct parser *p, struct jnode *n)
{
    while (n) {
        if (tok_op(cur(p), OP_PIPE))
            n = parse_filter(p, n, false);
        else if (tok_name(cur(p), "is"))
            n = parse_test(p, n);
        else if (tok_op(cur(p), OP_LPAREN))
            n = parse_call(p, n);
        else
            break;
    }
    return n;
}

static struct jnode *parse_list_or_dict(struct parser *p, bool dict)
{
    const struct jtoken *at = cur(p);
    struct jnode *n = node(p, dict ? JN_DICT : JN_LIST, at), **tail;
    int close = dict ? OP_RBRACE : OP_RBRACKET;
    bool first = true;

    if (!n)
        return NULL;
    tail = &n->a;
    advance(p);
    while (!tok_op(cur(p), close)) {
        struct jnode *item;

        if (!first && expect_op(p, OP_COMMA, dict ? "',' or '}'" : "',' or ']'"))
            return NULL;
        first = false;
        if (tok_op(cur(p), close))
            break;
        if (dict) {
            if (!(item = node(p, JN_PAIR, cur(p))) || !(item->a = parse_expression(p, true)) ||
                expect_op(p, OP_COLON, "':'") || !(item->b = parse_expression(p, true)))
                return NULL;
        } else if (!(item = parse_expression(p, true))) {
            return NULL;
        }
        *tail = item;
        tail = &item->next;
    }
    advance(p);
    return n;
}

static struct jnode *parse_primary(struct parser *p)
{
    const struct jtoken *t = cur(p);
    struct jnode *n;

    switch (t->type) {
    case JT_NAME:
        if (!(n = node(p, JN_CONST, t)))
            return NULL;
        if (tok_name(t, "true") || tok_name(t, "True"))
            n->val = jv_bool(true);
        else if (tok_name(t, "false") || tok_name(t, "False"))
            n->val = jv_bool(false);
        else if (tok_name(t, "none") || tok_name(t, "None"))
            n->val = jv_none();
        else {
            n->kind = JN_NAME;
            n->str = t->p;
            n->len = t->len;
        }
        advance(p);
        return n;
    case JT_STRING: {
        size_t len = 0, k = p->i;
        char *s;

        /* Adjacent literals concatenate: "a" "b" is "ab". */
        for (; p->t[k].type == JT_STRING; k++)
            len += p->t[k].len;
        if (!(n = node(p, JN_CONST, t)) || !(s = jinja_arena_alloc(p->a, len + 1)))
            return NULL;
        len = 0;
        for (; cur(p)->type == JT_STRING; advance(p)) {
            memcpy(s + len, cur(p)->p, cur(p)->len);
            len += cur(p)->len;
        }
        n->val = jv_str(s, len);
        return n;
    }
    case JT_INT: case JT_FLOAT:
        if (!(n = node(p, JN_CONST, t)))
            return NULL;
        n->val = t->type == JT_INT ? jv_int(t->i) : jv_float(t->f);
        advance(p);
        return n;
    case JT_OP:
        if (t->op == OP_LPAREN) {
            advance(p);
            if (!(n = parse_tuple(p, true, NULL, true)) || expect_op(p, OP_RPAREN, "')'"))
                return NULL;
            return n;
        }
        if (t->op == OP_LBRACKET || t->op == OP_LBRACE)
            return parse_list_or_dict(p, t->op == OP_LBRACE);
        /* fall through */
    default: {
        char got[96];

        describe(t, got, sizeof got);
        fail_at(p, t, "unexpected %s", got);
        return NULL;
    }
    }
}

static struct jnode *parse_unary(struct parser *p, bool with_filter)
{
    const struct jtoken *t = cur(p);
    struct jnode *n;

    if (enter(p))
        return NULL;
    if (tok_op(t, OP_SUB) || tok_op(t, OP_ADD)) {
        advance(p);
        if ((n = node(p, tok_op(t, OP_SUB) ? JN_NEG : JN_POS, t)))
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

static struct jnode *binop(struct parser *p, const struct jtoken *at, int op, struct jnode *l,
                           struct jnode *r)
{
    struct jnode *n;

    if (!l || !r || !(n = node(p, JN_BINOP, at)))
        return NULL;
    n->op = (uint8_t)op;
    n->a = l;
    n->b = r;
    return n;
}

static struct jnode *parse_pow(struct parser *p)
{
    struct jnode *n = parse_unary(p, true);

    while (n && tok_op(cur(p), OP_POW)) {
        const struct jtoken *at = cur(p);

        advance(p);
        n = binop(p, at, OP_POW, n, parse_unary(p, true));
    }
    return n;
}

static struct jnode *parse_math2(struct parser *p)
{
    struct jnode *n = parse_pow(p);

    while (n && (tok_op(cur(p), OP_MUL) || tok_op(cur(p), OP_DIV) || tok_op(cur(p), OP_FLOORDIV) ||
                 tok_op(cur(p), OP_MOD))) {
        const struct jtoken *at = cur(p);

        advance(p);
        n = binop(p, at, at->op, n, parse_pow(p));
    }
    return n;
}

static struct jnode *parse_concat(struct parser *p)
{
    struct jnode *n = parse_math2(p);

    while (n && tok_op(cur(p), OP_TILDE)) {
        const struct jtoken *at = cur(p);

        advance(p);
        n = binop(p, at, OP_TILDE, n, parse_math2(p));
    }
    return n;
}

static struct jnode *parse_math1(struct parser *p)
{
    struct jnode *n = parse_concat(p);

    while (n && (tok_op(cur(p), OP_ADD) || tok_op(cur(p), OP_SUB))) {
        const struct jtoken *at = cur(p);

        advance(p);
        n = binop(p, at, at->op, n, parse_concat(p));
    }
    return n;
}

static struct jnode *parse_compare(struct parser *p)
{
    const struct jtoken *at = cur(p);
    struct jnode *left = parse_math1(p), *ops = NULL, **tail = &ops, *n;

    while (left) {
        const struct jtoken *t = cur(p);
        int op;

        if (t->type == JT_OP && t->op >= OP_EQ && t->op <= OP_GE) {
            op = t->op;
            advance(p);
        } else if (tok_name(t, "in")) {
            op = OP_IN;
            advance(p);
        } else if (tok_name(t, "not") && tok_name(peek(p, 1), "in")) {
            op = OP_NOTIN;
            advance(p);
            advance(p);
        } else {
            break;
        }
        if (!(n = node(p, JN_CMP_OP, t)) || !(n->a = parse_math1(p)))
            return NULL;
        n->op = (uint8_t)op;
        *tail = n;
        tail = &n->next;
    }
    if (!left || !ops)
        return left;
    if (!(n = node(p, JN_COMPARE, at)))
        return NULL;
    n->a = left;
    n->b = ops;
    return n;
}

static struct jnode *parse_not(struct parser *p)
{
    const struct jtoken *t = cur(p);
    struct jnode *n;

    if (!tok_name(t, "not"))
        return parse_compare(p);
    if (enter(p))
        return NULL;
    advance(p);
    if ((n = node(p, JN_NOT, t)) && !(n->a = parse_not(p)))
        n = NULL;
    p->depth--;
    return n;
}

static struct jnode *parse_and(struct parser *p)
{
    struct jnode *n = parse_not(p);

    while (n && tok_name(cur(p), "and")) {
        const struct jtoken *at = cur(p);
        struct jnode *r;

        advance(p);
        r = parse_not(p);
        n = binop(p, at, 0, n, r);
        if (n)
            n->kind = JN_AND;
    }
    return n;
}

static struct jnode *parse_or(struct parser *p)
{
    struct jnode *n = parse_and(p);

    while (n && tok_name(cur(p), "or")) {
        const struct jtoken *at = cur(p);
        struct jnode *r;

        advance(p);
        r = parse_and(p);
        n = binop(p, at, 0, n, r);
        if (n)
            n->kind = JN_OR;
    }
    return n;
}

static struct jnode *parse_condexpr(struct parser *p)
{
    struct jnode *n = parse_or(p);

    while (n && tok_name(cur(p), "if")) {
        const struct jtoken *at = cur(p);
        struct jnode *c = node(p, JN_COND, at);

        advance(p);
        if (!c || !(c->b = parse_or(p)))
            return NULL;
        c->a = n;
        if (tok_name(cur(p), "else")) {
            advance(p);
            if (enter(p))
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

static struct jnode *parse_expression(struct parser *p, bool with_condexpr)
{
    struct jnode *n;

    if (enter(p))
        return NULL;
    n = with_condexpr ? parse_condexpr(p) : parse_or(p);
    p->depth--;
    return n;
}

/* Comma-separated expressions: one alone is itself, more (or a trailing comma) a tuple. */
static struct jnode *parse_tuple(struct parser *p, bool with_condexpr, const char *end_name,
                                 bool explicit_parens)
{
    const struct jtoken *at = cur(p);
    struct jnode *items = NULL, **tail = &items, *n;
    bool is_tuple = false;
    int count = 0;

    for (;;) {
        const struct jtoken *t;

        if (count && expect_op(p, OP_COMMA, "','"))
            return NULL;
        t = cur(p);
        if (t->type == JT_VAR_END || t->type == JT_BLOCK_END || tok_op(t, OP_RPAREN) ||
            (end_name && tok_name(t, end_name)))
            break;
        if (!(n = parse_expression(p, with_condexpr)))
            return NULL;
        *tail = n;
        tail = &n->next;
        count++;
        if (!tok_op(cur(p), OP_COMMA))
            break;
        is_tuple = true;
    }
    if (!is_tuple) {
        if (count)
            return items;
        if (!explicit_parens) {
            fail_expected(p, "an expression");
            return NULL;
        }
    }
    if (!(n = node(p, JN_TUPLE, at)))
        return NULL;
    n->a = items;
    return n;
}

/* A for / set / with target: a name, names separated by commas, or ns.attr (set only). */
static struct jnode *parse_assign_target(struct parser *p, bool allow_nsref)
{
    const struct jtoken *at = cur(p);
    struct jnode *items = NULL, **tail = &items, *n;
    int count = 0;
    bool parens = tok_op(at, OP_LPAREN);

    if (parens)
        advance(p);
    for (;;) {
        const struct jtoken *t = cur(p);

        if (t->type != JT_NAME) {
            fail_expected(p, "a name to assign to");
            return NULL;
        }
        if (!(n = node(p, JN_NAME, t)))
            return NULL;
        n->str = t->p;
        n->len = t->len;
        advance(p);
        if (allow_nsref && !count && tok_op(cur(p), OP_DOT) && !parens) {
            struct jnode *ref = node(p, JN_NSREF, t);

            advance(p);
            if (!ref || cur(p)->type != JT_NAME) {
                fail_expected(p, "an attribute name");
                return NULL;
            }
            ref->a = n;
            ref->str = cur(p)->p;
            ref->len = cur(p)->len;
            advance(p);
            return ref;
        }
        *tail = n;
        tail = &n->next;
        count++;
        if (!tok_op(cur(p), OP_COMMA))
            break;
        advance(p);
        if (parens && tok_op(cur(p), OP_RPAREN))
            break;
    }
    if (parens && expect_op(p, OP_RPAREN, "')'"))
        return NULL;
    if (count == 1 && !parens)
        return items;
    if (!(n = node(p, JN_TUPLE, at)))
        return NULL;
    n->a = items;
    return n;
}

/* ---- statements ---- */

static struct jnode *parse_body(struct parser *p, const char *const *ends, const char *block);

static bool at_name_in(const struct parser *p, const char *const *names)
{
    for (; names && *names; names++)
        if (tok_name(cur(p), *names))
            return true;
    return false;
}

/* Ends a block's body: consumes "{% name", which parse_body left. */
static int end_tag(struct parser *p, const char *name)
{
    if (!tok_name(cur(p), name))
        return fail_expected(p, name);
    advance(p);
    return expect_block_end(p);
}

static struct jnode *parse_if(struct parser *p, const struct jtoken *at)
{
    static const char *const ends[] = { "elif", "else", "endif", NULL };
    static const char *const end_only[] = { "endif", NULL };
    struct jnode *n = node(p, JN_IF, at), *tail = n;

    if (!n || !(n->a = parse_tuple(p, false, NULL, false)) || expect_block_end(p))
        return NULL;
    if (!(n->b = parse_body(p, ends, "if")) && p->failed)
        return NULL;
    while (tok_name(cur(p), "elif")) {
        struct jnode *e = node(p, JN_IF, cur(p));

        advance(p);
        if (!e || !(e->a = parse_tuple(p, false, NULL, false)) || expect_block_end(p))
            return NULL;
        if (!(e->b = parse_body(p, ends, "if")) && p->failed)
            return NULL;
        tail->c = e;
        tail = e;
    }
    if (tok_name(cur(p), "else")) {
        advance(p);
        if (expect_block_end(p))
            return NULL;
        if (!(tail->d = parse_body(p, end_only, "if")) && p->failed)
            return NULL;
    }
    return end_tag(p, "endif") ? NULL : n;
}

static struct jnode *parse_for(struct parser *p, const struct jtoken *at)
{
    static const char *const ends[] = { "endfor", "else", NULL };
    static const char *const end_only[] = { "endfor", NULL };
    struct jnode *n = node(p, JN_FOR, at);

    if (!n || !(n->a = parse_assign_target(p, false)))
        return NULL;
    if (!tok_name(cur(p), "in")) {
        fail_expected(p, "'in'");
        return NULL;
    }
    advance(p);
    if (!(n->b = parse_tuple(p, false, "recursive", false)))
        return NULL;
    if (tok_name(cur(p), "if")) {
        advance(p);
        if (!(n->c = parse_expression(p, true)))
            return NULL;
    }
    if (tok_name(cur(p), "recursive")) {
        fail_at(p, cur(p), "recursive for loops are not supported");
        return NULL;
    }
    if (expect_block_end(p))
        return NULL;
    p->loops++;
    n->d = parse_body(p, ends, "for");
    p->loops--;
    if (p->failed)
        return NULL;
    if (tok_name(cur(p), "else")) {
        advance(p);
        if (expect_block_end(p))
            return NULL;
        if (!(n->e = parse_body(p, end_only, "for")) && p->failed)
            return NULL;
    }
    return end_tag(p, "endfor") ? NULL : n;
}

/* The filters of {% set x | f %} and {% filter f %}: a chain over JN_BLOCK_INPUT. */
static struct jnode *parse_block_filters(struct parser *p, bool start_inline)
{
    struct jnode *in = node(p, JN_BLOCK_INPUT, cur(p));

    return in ? parse_filter(p, in, start_inline) : NULL;
}

static struct jnode *parse_set(struct parser *p, const struct jtoken *at)
{
    static const char *const ends[] = { "endset", NULL };
    struct jnode *n = node(p, JN_SET, at);

    if (!n || !(n->a = parse_assign_target(p, true)))
        return NULL;
    if (tok_op(cur(p), OP_ASSIGN)) {
        advance(p);
        if (!(n->b = parse_tuple(p, true, NULL, false)) || expect_block_end(p))
            return NULL;
        return n;
    }
    n->kind = JN_SET_BLOCK;
    if (tok_op(cur(p), OP_PIPE) && !(n->c = parse_block_filters(p, false)))
        return NULL;
    if (expect_block_end(p))
        return NULL;
    if (!(n->b = parse_body(p, ends, "set")) && p->failed)
        return NULL;
    return end_tag(p, "endset") ? NULL : n;
}

/* ( name, name=default, … ) of a macro or a caller. */
static int parse_params(struct parser *p, struct jinja_macro *m)
{
    struct jnode **tail = (struct jnode **)&m->params;
    bool defaults = false;

    if (expect_op(p, OP_LPAREN, "'('"))
        return -EINVAL;
    while (!tok_op(cur(p), OP_RPAREN)) {
        struct jnode *n;

        if (m->nparams && expect_op(p, OP_COMMA, "',' or ')'"))
            return -EINVAL;
        if (tok_op(cur(p), OP_RPAREN))
            break;
        if (cur(p)->type != JT_NAME)
            return fail_expected(p, "a parameter name");
        if (!(n = node(p, JN_NAME, cur(p))))
            return -ENOMEM;
        n->str = cur(p)->p;
        n->len = cur(p)->len;
        advance(p);
        if (tok_op(cur(p), OP_ASSIGN)) {
            advance(p);
            if (!(n->a = parse_expression(p, true)))
                return -EINVAL;
            defaults = true;
        } else if (defaults) {
            return fail_at(p, cur(p), "non-default argument follows default argument");
        }
        if (++m->nparams > JINJA_MAX_ARGS)
            return fail_at(p, cur(p), "more than %d macro parameters", JINJA_MAX_ARGS);
        *tail = n;
        tail = &n->next;
    }
    advance(p);
    return 0;
}

static struct jnode *parse_macro(struct parser *p, const struct jtoken *at)
{
    static const char *const ends[] = { "endmacro", NULL };
    struct jnode *n = node(p, JN_MACRO, at);
    struct jinja_macro *m = jinja_arena_alloc(p->a, sizeof *m);
    int loops = p->loops;

    if (!n || !m)
        return NULL;
    if (cur(p)->type != JT_NAME) {
        fail_expected(p, "a macro name");
        return NULL;
    }
    m->name = cur(p)->p;
    m->len = cur(p)->len;
    advance(p);
    if (parse_params(p, m) || expect_block_end(p))
        return NULL;
    p->loops = 0;
    m->body = parse_body(p, ends, "macro");
    p->loops = loops;
    if (p->failed || end_tag(p, "endmacro"))
        return NULL;
    n->str = m->name;
    n->len = m->len;
    n->macro = m;
    return n;
}

static struct jnode *parse_call_block(struct parser *p, const struct jtoken *at)
{
    static const char *const ends[] = { "endcall", NULL };
    struct jnode *n = node(p, JN_CALL_BLOCK, at);
    struct jinja_macro *m = jinja_arena_alloc(p->a, sizeof *m);
    int loops = p->loops;

    if (!n || !m)
        return NULL;
    m->name = "caller";
    m->len = 6;
    if (tok_op(cur(p), OP_LPAREN) && parse_params(p, m))
        return NULL;
    if (!(n->a = parse_expression(p, true)))
        return NULL;
    if (n->a->kind != JN_CALL) {
        fail_at(p, at, "expected a call after 'call'");
        return NULL;
    }
    if (expect_block_end(p))
        return NULL;
    p->loops = 0;
    m->body = parse_body(p, ends, "call");
    p->loops = loops;
    if (p->failed || end_tag(p, "endcall"))
        return NULL;
    n->macro = m;
    return n;
}

static struct jnode *parse_with(struct parser *p, const struct jtoken *at)
{
    static const char *const ends[] = { "endwith", NULL };
    struct jnode *n = node(p, JN_WITH, at), **tail;

    if (!n)
        return NULL;
    tail = &n->a;
    while (cur(p)->type != JT_BLOCK_END) {
        struct jnode *s;

        if (n->a && expect_op(p, OP_COMMA, "','"))
            return NULL;
        if (!(s = node(p, JN_SET, cur(p))) || !(s->a = parse_assign_target(p, false)) ||
            expect_op(p, OP_ASSIGN, "'='") || !(s->b = parse_expression(p, true)))
            return NULL;
        *tail = s;
        tail = &s->next;
    }
    advance(p);
    if (!(n->b = parse_body(p, ends, "with")) && p->failed)
        return NULL;
    return end_tag(p, "endwith") ? NULL : n;
}

static struct jnode *parse_statement(struct parser *p)
{
    const struct jtoken *at = cur(p);
    struct jnode *n = NULL;

    if (at->type != JT_NAME) {
        fail_expected(p, "a tag name");
        return NULL;
    }
    if (enter(p))
        return NULL;
    advance(p);
    if (tok_name(at, "if")) {
        n = parse_if(p, at);
    } else if (tok_name(at, "for")) {
        n = parse_for(p, at);
    } else if (tok_name(at, "set")) {
        n = parse_set(p, at);
    } else if (tok_name(at, "macro")) {
        n = parse_macro(p, at);
    } else if (tok_name(at, "call")) {
        n = parse_call_block(p, at);
    } else if (tok_name(at, "with")) {
        n = parse_with(p, at);
    } else if (tok_name(at, "filter")) {
        static const char *const ends[] = { "endfilter", NULL };

        if ((n = node(p, JN_FILTER_BLOCK, at)) && (n->a = parse_block_filters(p, true)) &&
            !expect_block_end(p)) {
            n->b = parse_body(p, ends, "filter");
            if (p->failed || end_tag(p, "endfilter"))
                n = NULL;
        } else {
            n = NULL;
        }
    } else if (tok_name(at, "generation")) {
        /* transformers' AssistantTracker: the body renders as it is, in its own scope. */
        static const char *const ends[] = { "endgeneration", NULL };

        if ((n = node(p, JN_WITH, at)) && !expect_block_end(p)) {
            n->b = parse_body(p, ends, "generation");
            if (p->failed || end_tag(p, "endgeneration"))
                n = NULL;
        } else {
            n = NULL;
        }
    } else if (tok_name(at, "break") || tok_name(at, "continue")) {
        if (!p->loops)
            fail_at(p, at, "'%.*s' outside a for loop", (int)at->len, at->p);
        else if ((n = node(p, tok_name(at, "break") ? JN_BREAK : JN_CONTINUE, at)) && expect_block_end(p))
            n = NULL;
    } else if (p->block) {
        fail_at(p, at, "unexpected tag '%.*s' inside '%s'", (int)MIN(at->len, 60), at->p, p->block);
    } else {
        fail_at(p, at, "unknown tag '%.*s'", (int)MIN(at->len, 60), at->p);
    }
    p->depth--;
    return n;
}

/* Statements up to "{% <one of ends>" (left at the name) or the end of the template. */
static struct jnode *parse_body(struct parser *p, const char *const *ends, const char *block)
{
    struct jnode *head = NULL, **tail = &head, *n;
    const char *outer = p->block;

    p->block = block;
    for (;;) {
        const struct jtoken *t = cur(p);

        if (t->type == JT_EOF) {
            if (ends) {
                const char *const *e = ends;

                while (e[1] && strncmp(*e, "end", 3))
                    e++;
                fail_at(p, t, "unexpected end of template: '%s' is missing (the innermost open "
                        "block is '%s')", *e, block);
                return NULL;
            }
            break;
        }
        if (t->type == JT_DATA) {
            if (!(n = node(p, JN_TEXT, t)))
                return NULL;
            n->str = t->p;
            n->len = t->len;
            advance(p);
        } else if (t->type == JT_VAR_BEGIN) {
            advance(p);
            if (!(n = node(p, JN_OUTPUT, t)) || !(n->a = parse_tuple(p, true, NULL, false)))
                return NULL;
            if (cur(p)->type != JT_VAR_END) {
                fail_expected(p, "end of print statement");
                return NULL;
            }
            advance(p);
        } else if (t->type == JT_BLOCK_BEGIN) {
            advance(p);
            if (at_name_in(p, ends))
                break;
            if (!(n = parse_statement(p)))
                return NULL;
        } else {
            char got[96];

            describe(t, got, sizeof got);
            fail_at(p, t, "unexpected %s", got);
            return NULL;
        }
        *tail = n;
        tail = &n->next;
    }
    p->block = outer;
    return head;
}

int jinja_parse(struct jinja_template **out, const char *src, size_t len, char *err)
{
    struct jinja_template *t = calloc(1, sizeof *t);
    struct parser p = { .err = err };
    struct jtoken *toks;
    size_t n;
    int rc;

    *out = NULL;
    if (!t)
        return -ENOMEM;
    /* The tree, tokens and source copy take a small multiple of the source. */
    if (!(t->arena = jinja_arena_create(64 * len + (1u << 20)))) {
        free(t);
        return -ENOMEM;
    }
    if ((rc = jinja_lex(t->arena, src, len, &toks, &n, err)))
        goto fail;
    p.a = t->arena;
    p.t = toks;
    p.n = n;
    t->body = parse_body(&p, NULL, NULL);
    if (p.failed) {
        rc = -EINVAL;
        goto fail;
    }
    *out = t;
    return 0;
fail:
    if (rc == -ENOMEM)
        errf(err, "template too large to parse (%zu bytes)", len);
    jinja_template_destroy(t);
    return rc;
}

void jinja_template_destroy(struct jinja_template *t)
{
    if (!t)
        return;
    jinja_arena_destroy(t->arena);
    free(t);
}
