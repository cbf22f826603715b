/* jinja_parser.c — tokens to a syntax tree: the statements (if, for, set, macro, call,
 * filter, with, generation, break, continue) and the template around them, by recursive
 * descent; expressions are jinja_expr.c. Nesting is bounded, so no input can exhaust the
 * stack.
 *
 * Node fields by kind (struct jinja_node in jinja.h):
 *   IF a=test b=body c=the elif (an IF) d=else body   FOR a=target b=iter c=filter
 *   d=body e=else body   SET a=target b=value   SET_BLOCK a=target b=body c=filter chain
 *   MACRO macro   CALL_BLOCK a=call macro=the caller   FILTER_BLOCK a=chain b=body
 *   WITH a=SET list b=body   ATTR a=object str=name   ITEM a=object b=key
 *   SLICE a=object b,c,d=start,stop,step   CALL a=callee b=args   FILTER/TEST a=operand
 *   b=args   BINOP/AND/OR a,b   NEG/POS/NOT a   COMPARE a=left b=CMP_OP list (each a=right)
 *   COND a=value b=test c=else   LIST/TUPLE a=items   DICT a=PAIR list (a=key b=value)
 *   KWARG str=name a=value   NSREF a=NAME str=attribute */
#include "engine/chat_template/jinja.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/base/util.h" /* errf, ERR_LEN */

void jinja__describe_token(const struct jinja_token *t, char *buf, size_t n)
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

int jinja__parse_fail_at(struct jinja_parser *p, const struct jinja_token *t, const char *fmt, ...)
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

int jinja__parse_fail_expected(struct jinja_parser *p, const char *what)
{
    char got[96];

    jinja__describe_token(jinja__cur(p), got, sizeof got);
    return jinja__parse_fail_at(p, jinja__cur(p), "expected %s, got %s", what, got);
}

struct jinja_node *jinja__node(struct jinja_parser *p, int kind, const struct jinja_token *at)
{
    struct jinja_node *n = arena_alloc(p->a, sizeof *n);

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

int jinja__expect_op(struct jinja_parser *p, int op, const char *what)
{
    if (!jinja__tok_op(jinja__cur(p), op))
        return jinja__parse_fail_expected(p, what);
    jinja__advance(p);
    return 0;
}

static int expect_block_end(struct jinja_parser *p)
{
    if (jinja__cur(p)->type != JT_BLOCK_END)
        return jinja__parse_fail_expected(p, "end of statement block");
    jinja__advance(p);
    return 0;
}

int jinja__parse_enter(struct jinja_parser *p)
{
    if (++p->depth > JINJA_MAX_NESTING)
        return jinja__parse_fail_at(p, jinja__cur(p), "template nested more than %d levels deep",
                                    JINJA_MAX_NESTING);
    return 0;
}
static struct jinja_node *parse_assign_target(struct jinja_parser *p, bool allow_nsref)
{
    const struct jinja_token *at = jinja__cur(p);
    struct jinja_node *items = NULL, **tail = &items, *n;
    int count = 0;
    bool parens = jinja__tok_op(at, OP_LPAREN);

    if (parens)
        jinja__advance(p);
    for (;;) {
        const struct jinja_token *t = jinja__cur(p);

        if (t->type != JT_NAME) {
            jinja__parse_fail_expected(p, "a name to assign to");
            return NULL;
        }
        if (!(n = jinja__node(p, JN_NAME, t)))
            return NULL;
        n->str = t->p;
        n->len = t->len;
        jinja__advance(p);
        if (allow_nsref && !count && jinja__tok_op(jinja__cur(p), OP_DOT) && !parens) {
            struct jinja_node *ref = jinja__node(p, JN_NSREF, t);

            jinja__advance(p);
            if (!ref || jinja__cur(p)->type != JT_NAME) {
                jinja__parse_fail_expected(p, "an attribute name");
                return NULL;
            }
            ref->a = n;
            ref->str = jinja__cur(p)->p;
            ref->len = jinja__cur(p)->len;
            jinja__advance(p);
            return ref;
        }
        *tail = n;
        tail = &n->next;
        count++;
        if (!jinja__tok_op(jinja__cur(p), OP_COMMA))
            break;
        jinja__advance(p);
        if (parens && jinja__tok_op(jinja__cur(p), OP_RPAREN))
            break;
    }
    if (parens && jinja__expect_op(p, OP_RPAREN, "')'"))
        return NULL;
    if (count == 1 && !parens)
        return items;
    if (!(n = jinja__node(p, JN_TUPLE, at)))
        return NULL;
    n->a = items;
    return n;
}

/* ---- statements ---- */

static struct jinja_node *parse_body(struct jinja_parser *p, const char *const *ends, const char *block);

static bool at_name_in(const struct jinja_parser *p, const char *const *names)
{
    for (; names && *names; names++)
        if (jinja__tok_name(jinja__cur(p), *names))
            return true;
    return false;
}

/* Ends a block's body: consumes "{% name", which parse_body left. */
static int end_tag(struct jinja_parser *p, const char *name)
{
    if (!jinja__tok_name(jinja__cur(p), name))
        return jinja__parse_fail_expected(p, name);
    jinja__advance(p);
    return expect_block_end(p);
}

static struct jinja_node *parse_if(struct jinja_parser *p, const struct jinja_token *at)
{
    static const char *const ends[] = { "elif", "else", "endif", NULL };
    static const char *const end_only[] = { "endif", NULL };
    struct jinja_node *n = jinja__node(p, JN_IF, at), *tail = n;

    if (!n || !(n->a = jinja__parse_tuple(p, false, NULL, false)) || expect_block_end(p))
        return NULL;
    if (!(n->b = parse_body(p, ends, "if")) && p->failed)
        return NULL;
    while (jinja__tok_name(jinja__cur(p), "elif")) {
        struct jinja_node *e = jinja__node(p, JN_IF, jinja__cur(p));

        jinja__advance(p);
        if (!e || !(e->a = jinja__parse_tuple(p, false, NULL, false)) || expect_block_end(p))
            return NULL;
        if (!(e->b = parse_body(p, ends, "if")) && p->failed)
            return NULL;
        tail->c = e;
        tail = e;
    }
    if (jinja__tok_name(jinja__cur(p), "else")) {
        jinja__advance(p);
        if (expect_block_end(p))
            return NULL;
        if (!(tail->d = parse_body(p, end_only, "if")) && p->failed)
            return NULL;
    }
    return end_tag(p, "endif") ? NULL : n;
}

static struct jinja_node *parse_for(struct jinja_parser *p, const struct jinja_token *at)
{
    static const char *const ends[] = { "endfor", "else", NULL };
    static const char *const end_only[] = { "endfor", NULL };
    struct jinja_node *n = jinja__node(p, JN_FOR, at);

    if (!n || !(n->a = parse_assign_target(p, false)))
        return NULL;
    if (!jinja__tok_name(jinja__cur(p), "in")) {
        jinja__parse_fail_expected(p, "'in'");
        return NULL;
    }
    jinja__advance(p);
    if (!(n->b = jinja__parse_tuple(p, false, "recursive", false)))
        return NULL;
    if (jinja__tok_name(jinja__cur(p), "if")) {
        jinja__advance(p);
        if (!(n->c = jinja__parse_expression(p, true)))
            return NULL;
    }
    if (jinja__tok_name(jinja__cur(p), "recursive")) {
        jinja__parse_fail_at(p, jinja__cur(p), "recursive for loops are not supported");
        return NULL;
    }
    if (expect_block_end(p))
        return NULL;
    p->loops++;
    n->d = parse_body(p, ends, "for");
    p->loops--;
    if (p->failed)
        return NULL;
    if (jinja__tok_name(jinja__cur(p), "else")) {
        jinja__advance(p);
        if (expect_block_end(p))
            return NULL;
        if (!(n->e = parse_body(p, end_only, "for")) && p->failed)
            return NULL;
    }
    return end_tag(p, "endfor") ? NULL : n;
}

/* The filters of {% set x | f %} and {% filter f %}: a chain over JN_BLOCK_INPUT. */
static struct jinja_node *parse_block_filters(struct jinja_parser *p, bool start_inline)
{
    struct jinja_node *in = jinja__node(p, JN_BLOCK_INPUT, jinja__cur(p));

    return in ? jinja__parse_filter(p, in, start_inline) : NULL;
}

static struct jinja_node *parse_set(struct jinja_parser *p, const struct jinja_token *at)
{
    static const char *const ends[] = { "endset", NULL };
    struct jinja_node *n = jinja__node(p, JN_SET, at);

    if (!n || !(n->a = parse_assign_target(p, true)))
        return NULL;
    if (jinja__tok_op(jinja__cur(p), OP_ASSIGN)) {
        jinja__advance(p);
        if (!(n->b = jinja__parse_tuple(p, true, NULL, false)) || expect_block_end(p))
            return NULL;
        return n;
    }
    n->kind = JN_SET_BLOCK;
    if (jinja__tok_op(jinja__cur(p), OP_PIPE) && !(n->c = parse_block_filters(p, false)))
        return NULL;
    if (expect_block_end(p))
        return NULL;
    if (!(n->b = parse_body(p, ends, "set")) && p->failed)
        return NULL;
    return end_tag(p, "endset") ? NULL : n;
}

/* ( name, name=default, … ) of a macro or a caller. */
static int parse_params(struct jinja_parser *p, struct jinja_macro *m)
{
    struct jinja_node **tail = (struct jinja_node **)&m->params;
    bool defaults = false;

    if (jinja__expect_op(p, OP_LPAREN, "'('"))
        return -EINVAL;
    while (!jinja__tok_op(jinja__cur(p), OP_RPAREN)) {
        struct jinja_node *n;

        if (m->nparams && jinja__expect_op(p, OP_COMMA, "',' or ')'"))
            return -EINVAL;
        if (jinja__tok_op(jinja__cur(p), OP_RPAREN))
            break;
        if (jinja__cur(p)->type != JT_NAME)
            return jinja__parse_fail_expected(p, "a parameter name");
        if (!(n = jinja__node(p, JN_NAME, jinja__cur(p))))
            return -ENOMEM;
        n->str = jinja__cur(p)->p;
        n->len = jinja__cur(p)->len;
        jinja__advance(p);
        if (jinja__tok_op(jinja__cur(p), OP_ASSIGN)) {
            jinja__advance(p);
            if (!(n->a = jinja__parse_expression(p, true)))
                return -EINVAL;
            defaults = true;
        } else if (defaults) {
            return jinja__parse_fail_at(p, jinja__cur(p), "non-default argument follows default argument");
        }
        if (++m->nparams > JINJA_MAX_ARGS)
            return jinja__parse_fail_at(p, jinja__cur(p), "more than %d macro parameters", JINJA_MAX_ARGS);
        *tail = n;
        tail = &n->next;
    }
    jinja__advance(p);
    return 0;
}

static struct jinja_node *parse_macro(struct jinja_parser *p, const struct jinja_token *at)
{
    static const char *const ends[] = { "endmacro", NULL };
    struct jinja_node *n = jinja__node(p, JN_MACRO, at);
    struct jinja_macro *m = arena_alloc(p->a, sizeof *m);
    int loops = p->loops;

    if (!n || !m)
        return NULL;
    if (jinja__cur(p)->type != JT_NAME) {
        jinja__parse_fail_expected(p, "a macro name");
        return NULL;
    }
    m->name = jinja__cur(p)->p;
    m->len = jinja__cur(p)->len;
    jinja__advance(p);
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

static struct jinja_node *parse_call_block(struct jinja_parser *p, const struct jinja_token *at)
{
    static const char *const ends[] = { "endcall", NULL };
    struct jinja_node *n = jinja__node(p, JN_CALL_BLOCK, at);
    struct jinja_macro *m = arena_alloc(p->a, sizeof *m);
    int loops = p->loops;

    if (!n || !m)
        return NULL;
    m->name = "caller";
    m->len = 6;
    if (jinja__tok_op(jinja__cur(p), OP_LPAREN) && parse_params(p, m))
        return NULL;
    if (!(n->a = jinja__parse_expression(p, true)))
        return NULL;
    if (n->a->kind != JN_CALL) {
        jinja__parse_fail_at(p, at, "expected a call after 'call'");
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

static struct jinja_node *parse_with(struct jinja_parser *p, const struct jinja_token *at)
{
    static const char *const ends[] = { "endwith", NULL };
    struct jinja_node *n = jinja__node(p, JN_WITH, at), **tail;

    if (!n)
        return NULL;
    tail = &n->a;
    while (jinja__cur(p)->type != JT_BLOCK_END) {
        struct jinja_node *s;

        if (n->a && jinja__expect_op(p, OP_COMMA, "','"))
            return NULL;
        if (!(s = jinja__node(p, JN_SET, jinja__cur(p))) || !(s->a = parse_assign_target(p, false)) ||
            jinja__expect_op(p, OP_ASSIGN, "'='") || !(s->b = jinja__parse_expression(p, true)))
            return NULL;
        *tail = s;
        tail = &s->next;
    }
    jinja__advance(p);
    if (!(n->b = parse_body(p, ends, "with")) && p->failed)
        return NULL;
    return end_tag(p, "endwith") ? NULL : n;
}

static struct jinja_node *parse_statement(struct jinja_parser *p)
{
    const struct jinja_token *at = jinja__cur(p);
    struct jinja_node *n = NULL;

    if (at->type != JT_NAME) {
        jinja__parse_fail_expected(p, "a tag name");
        return NULL;
    }
    if (jinja__parse_enter(p))
        return NULL;
    jinja__advance(p);
    if (jinja__tok_name(at, "if")) {
        n = parse_if(p, at);
    } else if (jinja__tok_name(at, "for")) {
        n = parse_for(p, at);
    } else if (jinja__tok_name(at, "set")) {
        n = parse_set(p, at);
    } else if (jinja__tok_name(at, "macro")) {
        n = parse_macro(p, at);
    } else if (jinja__tok_name(at, "call")) {
        n = parse_call_block(p, at);
    } else if (jinja__tok_name(at, "with")) {
        n = parse_with(p, at);
    } else if (jinja__tok_name(at, "filter")) {
        static const char *const ends[] = { "endfilter", NULL };

        if ((n = jinja__node(p, JN_FILTER_BLOCK, at)) && (n->a = parse_block_filters(p, true)) &&
            !expect_block_end(p)) {
            n->b = parse_body(p, ends, "filter");
            if (p->failed || end_tag(p, "endfilter"))
                n = NULL;
        } else {
            n = NULL;
        }
    } else if (jinja__tok_name(at, "generation")) {
        /* transformers' AssistantTracker: the body renders as it is, in its own scope. */
        static const char *const ends[] = { "endgeneration", NULL };

        if ((n = jinja__node(p, JN_WITH, at)) && !expect_block_end(p)) {
            n->b = parse_body(p, ends, "generation");
            if (p->failed || end_tag(p, "endgeneration"))
                n = NULL;
        } else {
            n = NULL;
        }
    } else if (jinja__tok_name(at, "break") || jinja__tok_name(at, "continue")) {
        if (!p->loops)
            jinja__parse_fail_at(p, at, "'%.*s' outside a for loop", (int)at->len, at->p);
        else if ((n = jinja__node(p, jinja__tok_name(at, "break") ? JN_BREAK : JN_CONTINUE,
                                  at)) && expect_block_end(p))
            n = NULL;
    } else if (p->block) {
        jinja__parse_fail_at(p, at, "unexpected tag '%.*s' inside '%s'", (int)MIN(at->len, 60),
                             at->p, p->block);
    } else {
        jinja__parse_fail_at(p, at, "unknown tag '%.*s'", (int)MIN(at->len, 60), at->p);
    }
    p->depth--;
    return n;
}

/* Statements up to "{% <one of ends>" (left at the name) or the end of the template. */
static struct jinja_node *parse_body(struct jinja_parser *p, const char *const *ends, const char *block)
{
    struct jinja_node *head = NULL, **tail = &head, *n;
    const char *outer = p->block;

    p->block = block;
    for (;;) {
        const struct jinja_token *t = jinja__cur(p);

        if (t->type == JT_EOF) {
            if (ends) {
                const char *const *e = ends;

                while (e[1] && strncmp(*e, "end", 3))
                    e++;
                jinja__parse_fail_at(p, t, "unexpected end of template: '%s' is missing (the innermost open "
                        "block is '%s')", *e, block);
                return NULL;
            }
            break;
        }
        if (t->type == JT_DATA) {
            if (!(n = jinja__node(p, JN_TEXT, t)))
                return NULL;
            n->str = t->p;
            n->len = t->len;
            jinja__advance(p);
        } else if (t->type == JT_VAR_BEGIN) {
            jinja__advance(p);
            if (!(n = jinja__node(p, JN_OUTPUT, t)) || !(n->a = jinja__parse_tuple(p, true, NULL, false)))
                return NULL;
            if (jinja__cur(p)->type != JT_VAR_END) {
                jinja__parse_fail_expected(p, "end of print statement");
                return NULL;
            }
            jinja__advance(p);
        } else if (t->type == JT_BLOCK_BEGIN) {
            jinja__advance(p);
            if (at_name_in(p, ends))
                break;
            if (!(n = parse_statement(p)))
                return NULL;
        } else {
            char got[96];

            jinja__describe_token(t, got, sizeof got);
            jinja__parse_fail_at(p, t, "unexpected %s", got);
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
    struct jinja_parser p = { .err = err };
    struct jinja_token *toks;
    size_t n;
    int rc;

    *out = NULL;
    if (!t)
        return -ENOMEM;
    /* The tree, tokens and source copy take a small multiple of the source. */
    arena_init_sized(&t->arena, JINJA_ARENA_BLOCK_BYTES, 64 * len + (1u << 20));
    if ((rc = jinja__lex(&t->arena, src, len, &toks, &n, err)))
        goto fail;
    p.a = &t->arena;
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
    arena_fini(&t->arena);
    free(t);
}
