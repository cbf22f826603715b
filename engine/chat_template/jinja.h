/* jinja.h — the Jinja subset that Hugging Face chat templates use, as transformers runs
 * them (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols). This is
 * the module's API for chat_template.c (jinja_parse, jinja_render, jinja_template_destroy)
 * plus what its files share, all named jinja__: values and the per-render accounting
 * (jinja_value.c), tokens (jinja_lexer.c), the syntax tree (jinja_parser.c), the evaluator
 * (jinja_eval.c), filters and tests (jinja_filters.c), Python methods and globals
 * (jinja_methods.c), text output (jinja_output.c). */
#ifndef OSPREY_JINJA_H
#define OSPREY_JINJA_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/base/arena.h"
#include "engine/base/buf.h"

/* ---- limits (one render; each overrun is an error naming the limit) ---- */

struct jinja_limits {
    size_t max_output_bytes;       /* rendered text */
    size_t max_memory_bytes;       /* values built while rendering (the arena) */
    uint64_t max_loop_iterations;  /* for-loop iterations, summed over the render */
    uint64_t max_work;             /* evaluation steps + elements touched, summed */
    int max_depth;                 /* nested evaluation frames (macro recursion included) */
};

/* Everything a parse or a render allocates comes from one arena (engine/base/arena.h),
 * freed at once; a render's is bounded by max_memory_bytes. */
#define JINJA_ARENA_BLOCK_BYTES (64u << 10)

/* ---- values ---- */

enum jinja_value_type {
    JV_UNDEF,  /* Jinja's Undefined: prints "", is falsy, iterates empty */
    JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR,
    JV_LIST,   /* list, tuple (JV_F_TUPLE) or generator (JV_F_GEN) */
    JV_DICT,
    JV_NS,     /* namespace(): a dict whose attributes `set` may assign */
    JV_MACRO, JV_FUNC, JV_LOOP,
};

#define JV_F_TUPLE 1u  /* list printed as (a, b) and not equal to a list */
#define JV_F_GEN   2u  /* a generator (map, select …): always truthy, no len(), no [] */
#define JV_F_SAFE  4u  /* Markup: escape() leaves it as it is */
/* dict.items() / keys() / values(): a list that prints as dict_items([…]) and has no [] */
#define JV_F_ITEMS  8u
#define JV_F_KEYS   16u
#define JV_F_VALUES 32u
#define JV_F_VIEW   (JV_F_ITEMS | JV_F_KEYS | JV_F_VALUES)

struct jinja_value {
    uint8_t type;   /* enum jinja_value_type */
    uint8_t flags;  /* JV_F_* */
    union {
        bool b;
        int64_t i;
        double f;
        struct { const char *p; size_t len; } s;  /* STR bytes (UTF-8, not NUL-terminated);
                                                     UNDEF: error text, p may be NULL */
        struct jinja_list *list;
        struct jinja_dict *dict;                  /* DICT and NS */
        struct jinja_closure *closure;            /* MACRO */
        struct jinja_func *func;
        struct jinja_loop *loop;
    };
};

struct jinja_list {
    size_t len, cap;
    struct jinja_value *items;   /* [len] */
    bool consumed;      /* a generator already iterated once */
};

struct jinja_dict {
    size_t len, cap;
    struct jinja_value *keys, *vals;  /* [len], insertion order */
    uint32_t *index;         /* open addressing over entries + 1, built past 8 entries */
    size_t index_cap;        /* slots, a power of two, 0 when no index */
};

/* A callable that is not a macro: a global (range …), a bound method ('a'.strip), loop.cycle. */
struct jinja_func {
    int id;          /* enum jinja_builtin (jinja_methods.c) */
    struct jinja_value self;  /* the bound object; NONE for globals */
};

/* A macro with the scope its body sees: the template's top level, or for a {% call %}
 * block's caller() the scope at the call. */
struct jinja_closure {
    const struct jinja_macro *macro;
    struct jinja_scope *scope;
};

struct jinja_loop {
    struct jinja_list *items;  /* what the loop runs over, already filtered */
    size_t index0;
};

static inline struct jinja_value jinja__undef(const char *hint)
{
    struct jinja_value v = { .type = JV_UNDEF };
    v.s.p = hint;
    v.s.len = hint ? strlen(hint) : 0;
    return v;
}
static inline struct jinja_value jinja__none(void) { return (struct jinja_value){ .type = JV_NONE }; }
static inline struct jinja_value jinja__bool(bool b)
{
    return (struct jinja_value){ .type = JV_BOOL, .b = b };
}
static inline struct jinja_value jinja__int(int64_t i)
{
    return (struct jinja_value){ .type = JV_INT, .i = i };
}
static inline struct jinja_value jinja__float(double f)
{
    return (struct jinja_value){ .type = JV_FLOAT, .f = f };
}
static inline struct jinja_value jinja__str(const char *p, size_t len)
{
    struct jinja_value v = { .type = JV_STR };
    v.s.p = p;
    v.s.len = len;
    return v;
}
static inline bool jinja__is_num(struct jinja_value v)
{
    return v.type == JV_INT || v.type == JV_FLOAT || v.type == JV_BOOL;
}

/* ---- the render state every evaluator file shares ---- */

struct jinja_render {
    struct arena arena;                 /* every value of the render; lim->max_memory_bytes */
    struct buf *out;                   /* where output goes now (a capture or the result) */
    const struct jinja_limits *lim;
    uint64_t work, iterations;
    int depth;
    uint32_t line;                      /* template line being evaluated, for errors */
    char *err;                          /* ERR_LEN bytes */
    bool failed;
    bool raised;                        /* the error came from raise_exception() */
    struct jinja_value block_input;     /* what a {% filter %} or {% set %} block rendered */
    struct jinja_scope *root;           /* the template's top level: the render variables */
};

/* Records the first error (prefixed with the template line) and returns -EINVAL. */
int jinja__fail(struct jinja_render *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int jinja__oom(struct jinja_render *r);     /* the memory limit: -ENOMEM */
/* Fails with an Undefined's message ("'x' is undefined"), as Jinja does on misuse. */
int jinja__fail_undefined(struct jinja_render *r, struct jinja_value v);
/* Charges n units of work; fails past the work limit. */
int jinja__charge(struct jinja_render *r, uint64_t n);
void *jinja__alloc(struct jinja_render *r, size_t n);  /* arena alloc that records the error */

/* jinja_value.c */
const char *jinja__type_name(struct jinja_value v);          /* Python's: 'str', 'dict' … */
bool jinja__truthy(struct jinja_value v);
int jinja__eq(struct jinja_render *r, struct jinja_value a, struct jinja_value b, bool *out);
int jinja__lt(struct jinja_render *r, struct jinja_value a, struct jinja_value b,
              bool *out);  /* Python '<' */
struct jinja_list *jinja__list_new(struct jinja_render *r, size_t cap);
int jinja__list_push(struct jinja_render *r, struct jinja_list *l, struct jinja_value v);
struct jinja_value jinja__list_val(struct jinja_list *l, uint8_t flags);
struct jinja_dict *jinja__dict_new(struct jinja_render *r, size_t cap);
int jinja__dict_set(struct jinja_render *r, struct jinja_dict *d, struct jinja_value key,
                    struct jinja_value val);
bool jinja__dict_get(const struct jinja_dict *d, struct jinja_value key, struct jinja_value *out);
bool jinja__dict_get_str(const struct jinja_dict *d, const char *name, size_t len, struct jinja_value *out);
struct jinja_value jinja__str_copy(struct jinja_render *r, const char *p, size_t len, bool *ok);
int jinja__from_json(struct jinja_render *r, const cJSON *j, struct jinja_value *out, int depth);
/* The items a for loop or a filter walks: list items, dict keys, string characters.
 * Undefined gives none; anything else is an error. */
int jinja__iterate(struct jinja_render *r, struct jinja_value v, struct jinja_list **out);
/* Stable sort (Python's sorted); less may fail, and then the sort stops with its error. */
int jinja__sort(struct jinja_render *r, struct jinja_value *items, size_t n,
                int (*less)(struct jinja_render *r, struct jinja_value a, struct jinja_value b,
                            void *ctx, bool *out),
                void *ctx);

/* jinja_output.c: Python's str() and repr(), json.dumps */
int jinja__write_str(struct jinja_render *r, struct buf *b, struct jinja_value v);
int jinja__write_repr(struct jinja_render *r, struct buf *b, struct jinja_value v, int depth);
int jinja__to_str(struct jinja_render *r, struct jinja_value v,
                  struct jinja_value *out);  /* str(v) as a STR value */
struct jinja_json_opts {
    const char *indent;        /* NULL: one line */
    const char *item_sep, *key_sep;
    bool sort_keys, ensure_ascii;
};
int jinja__write_json(struct jinja_render *r, struct buf *b, struct jinja_value v,
                      const struct jinja_json_opts *o, int level);
int jinja__put(struct jinja_render *r, struct buf *b, const char *p, size_t n);
int jinja__putc(struct jinja_render *r, struct buf *b, char c);
/* Copies the buffer into the arena as a STR value and frees the buffer. */
int jinja__buf_to_str(struct jinja_render *r, struct buf *b, struct jinja_value *out);

/* UTF-8 helpers (jinja_value.c): code points as Python counts them; a byte that is
 * not valid UTF-8 counts as one code point of its own. */
size_t jinja__u8_next(const char *p, size_t len, size_t i, int32_t *cp);  /* returns the next offset */
size_t jinja__u8_count(const char *p, size_t len);
bool jinja__py_isspace(int32_t cp);

/* ---- tokens ---- */

enum jinja_token_type {
    JT_EOF, JT_DATA, JT_VAR_BEGIN, JT_VAR_END, JT_BLOCK_BEGIN, JT_BLOCK_END,
    JT_NAME, JT_STRING, JT_INT, JT_FLOAT, JT_OP,
};

enum jinja_op {
    OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_TILDE,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_ASSIGN,
    OP_LPAREN, OP_RPAREN, OP_LBRACKET, OP_RBRACKET, OP_LBRACE, OP_RBRACE,
    OP_COMMA, OP_DOT, OP_COLON, OP_PIPE, OP_SEMICOLON,
    OP_IN, OP_NOTIN,  /* comparison operators built by the parser */
};

struct jinja_token {
    uint8_t type;   /* enum jinja_token_type */
    uint8_t op;     /* enum jinja_op for JT_OP */
    uint32_t line, col;
    const char *p;  /* DATA, NAME, STRING (unescaped): bytes in the template arena */
    size_t len;
    int64_t i;      /* JT_INT */
    double f;       /* JT_FLOAT */
};

/* Splits the template into tokens, applying whitespace control (- and +), trim_blocks,
 * lstrip_blocks and Jinja's newline normalisation. Tokens and texts live in a. */
int jinja__lex(struct arena *a, const char *src, size_t len, struct jinja_token **out, size_t *n,
               char *err);

/* ---- the syntax tree ---- */

enum jinja_node_kind {
    /* statements: a body is a list linked through next */
    JN_TEXT, JN_OUTPUT, JN_IF, JN_FOR, JN_SET, JN_SET_BLOCK, JN_MACRO, JN_CALL_BLOCK,
    JN_FILTER_BLOCK, JN_BREAK, JN_CONTINUE, JN_WITH,
    /* expressions */
    JN_CONST, JN_NAME, JN_ATTR, JN_ITEM, JN_SLICE, JN_CALL, JN_FILTER, JN_TEST, JN_BINOP,
    JN_NEG, JN_POS, JN_NOT, JN_AND, JN_OR, JN_COMPARE, JN_CMP_OP, JN_COND, JN_LIST,
    JN_TUPLE, JN_DICT, JN_PAIR, JN_KWARG, JN_NSREF, JN_BLOCK_INPUT,
};

/* One node; what a..e mean depends on the kind (jinja_parser.c lists them). */
struct jinja_node {
    uint8_t kind;            /* enum jinja_node_kind */
    uint8_t op;              /* BINOP / CMP_OP: enum jinja_op */
    uint16_t nargs;          /* CALL / FILTER / TEST: positional + keyword arguments */
    uint32_t line;
    int id;                  /* FILTER / TEST: index into the filter or test table */
    struct jinja_node *a, *b, *c, *d, *e;
    struct jinja_node *next; /* the next statement, argument, item or comparison */
    const char *str;         /* TEXT text, NAME / ATTR / KWARG / MACRO / FILTER / TEST name */
    size_t len;
    struct jinja_value val;  /* CONST */
    const struct jinja_macro *macro;  /* MACRO, CALL_BLOCK (its caller) */
};

struct jinja_macro {
    const char *name;
    size_t len;
    const struct jinja_node *params;  /* NAME nodes; a param's default expression is its a */
    const struct jinja_node *body;
    int nparams;
};

#define JINJA_MAX_ARGS 16

struct jinja_template {
    struct arena arena;          /* owns the tree, the tokens and the normalised source */
    const struct jinja_node *body;
};

/* The parser's state, shared by jinja_parser.c (statements) and jinja_expr.c. */
#define JINJA_MAX_NESTING 100
struct jinja_parser {
    struct arena *a;
    const struct jinja_token *t;
    size_t n, i;
    int depth;          /* open blocks + expression recursion */
    int loops;          /* for blocks around the statement being parsed */
    const char *block;  /* the innermost open block, for error messages */
    char *err;
    bool failed;
};

static inline const struct jinja_token *jinja__cur(const struct jinja_parser *p) { return &p->t[p->i]; }
static inline const struct jinja_token *jinja__peek(const struct jinja_parser *p, size_t k)
{
    return &p->t[p->i + k < p->n ? p->i + k : p->n - 1];
}
static inline void jinja__advance(struct jinja_parser *p)
{
    if (p->i + 1 < p->n)
        p->i++;
}

static inline bool jinja__tok_name(const struct jinja_token *t, const char *name)
{
    return t->type == JT_NAME && t->len == strlen(name) && !memcmp(t->p, name, t->len);
}
static inline bool jinja__tok_op(const struct jinja_token *t,
                                 int op) { return t->type == JT_OP && t->op == op; }

void jinja__describe_token(const struct jinja_token *t, char *buf, size_t n);
int jinja__parse_fail_at(struct jinja_parser *p, const struct jinja_token *t, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int jinja__parse_fail_expected(struct jinja_parser *p, const char *what);
struct jinja_node *jinja__node(struct jinja_parser *p, int kind, const struct jinja_token *at);
int jinja__expect_op(struct jinja_parser *p, int op, const char *what);
int jinja__parse_enter(struct jinja_parser *p);   /* one nesting level deeper; fails past JINJA_MAX_NESTING */
struct jinja_node *jinja__parse_expression(struct jinja_parser *p, bool with_condexpr);
/* a, b, … as a tuple, or one expression alone; stops before end_name (a NAME) if given */
struct jinja_node *jinja__parse_tuple(struct jinja_parser *p, bool with_condexpr,
                                      const char *end_name, bool explicit_parens);
/* | f(args) | g …, or with start_inline a first filter without its | */
struct jinja_node *jinja__parse_filter(struct jinja_parser *p, struct jinja_node *n, bool start_inline);

/* Parses src; on failure err says "line L, column C: …". */
int jinja_parse(struct jinja_template **out, const char *src, size_t len, char *err);
void jinja_template_destroy(struct jinja_template *t);

/* Renders t with the members of vars (a cJSON object) as top-level variables.
 * Output malloc'd, NUL-terminated; *len excludes the NUL. raised is set when the error
 * came from the template's raise_exception(). Read-only on t. */
int jinja_render(const struct jinja_template *t, const cJSON *vars, const struct jinja_limits *lim,
                 char **out, size_t *len, char *err, bool *raised);

/* ---- evaluator pieces shared across files ---- */

struct jinja_args {
    int npos, nkw;
    struct jinja_value pos[JINJA_MAX_ARGS];
    const char *kw_name[JINJA_MAX_ARGS];
    size_t kw_len[JINJA_MAX_ARGS];
    struct jinja_value kw[JINJA_MAX_ARGS];
};

/* Binds args to parameter names (Python rules); given[i] says whether names[i] was passed. */
int jinja__bind_args(struct jinja_render *r, const char *fname, const struct jinja_args *a,
                     const char *const *names, int n, struct jinja_value *vals, bool *given);
/* In a filter with `a`, `v[]`, `given[]` and `rc` in scope: binds the parameters named,
 * or returns the error. JINJA_BIND_ARGS("indent", "width", "first", "blank"); */
#define JINJA_BIND_ARGS(fname, ...)                                                          \
    do {                                                                                     \
        static const char *const names_[] = { __VA_ARGS__ };                                 \
        if ((rc = jinja__bind_args(r, fname, a, names_, (int)(sizeof names_ / sizeof *names_), v, given))) \
            return rc;                                                                       \
    } while (0)

/* jinja_filters.c and jinja_tests.c: tables resolved at parse time, applied at render time */
int jinja__filter_find(const char *name, size_t len);  /* index, or -1 */
int jinja__test_find(const char *name, size_t len);
int jinja__filter_apply(struct jinja_render *r, int id, struct jinja_value in, const struct jinja_args *a,
                        struct jinja_value *out);
int jinja__test_apply(struct jinja_render *r, int id, struct jinja_value in, const struct jinja_args *a,
                      bool *out);

/* jinja_ops.c: attribute and item access as Jinja's sandbox does them */
int jinja__getattr(struct jinja_render *r, struct jinja_value obj, const char *name, size_t len,
                   struct jinja_value *out);
int jinja__getitem(struct jinja_render *r, struct jinja_value obj, struct jinja_value key,
                   struct jinja_value *out);
/* jinja_filters_seq.c: the filters over sequences, named by jinja_filters.c's table. */
#define JINJA_FILTER(name) \
    int jinja__filter_##name(struct jinja_render *r, struct jinja_value in, \
                             const struct jinja_args *a, struct jinja_value *out)
JINJA_FILTER(dictsort); JINJA_FILTER(first); JINJA_FILTER(last); JINJA_FILTER(items); JINJA_FILTER(join);
JINJA_FILTER(length); JINJA_FILTER(list); JINJA_FILTER(select); JINJA_FILTER(reject);
JINJA_FILTER(selectattr); JINJA_FILTER(rejectattr); JINJA_FILTER(map); JINJA_FILTER(reverse);
JINJA_FILTER(sort); JINJA_FILTER(unique); JINJA_FILTER(max); JINJA_FILTER(min); JINJA_FILTER(sum);

/* jinja_ops.c: Python's operators (enum jinja_op) and seq[start:stop:step] (NONE for a
 * missing bound). */
int jinja__arith(struct jinja_render *r, int op, struct jinja_value a, struct jinja_value b,
                 struct jinja_value *out);
int jinja__compare(struct jinja_render *r, int op, struct jinja_value a, struct jinja_value b, bool *res);
int jinja__slice(struct jinja_render *r, struct jinja_value obj, struct jinja_value start,
                 struct jinja_value stop, struct jinja_value step, struct jinja_value *out);
/* Calls a macro or a builtin with evaluated arguments (jinja_eval.c). */
int jinja__call(struct jinja_render *r, struct jinja_value callee, const struct jinja_args *a,
                struct jinja_value *out);
/* An Undefined whose use fails with the printf-style message. */
struct jinja_value jinja__undef_fmt(struct jinja_render *r, const char *fmt,
                                    ...) __attribute__((format(printf, 2, 3)));

/* jinja_methods.c: globals (range, namespace, dict, raise_exception, strftime_now),
 * methods of str, dict and list, loop.cycle */
bool jinja__global_find(const char *name, size_t len, struct jinja_value *out);
bool jinja__method_find(struct jinja_render *r, struct jinja_value self, const char *name, size_t len,
                        struct jinja_value *out, int *status);
int jinja__func_call(struct jinja_render *r, const struct jinja_func *f, const struct jinja_args *a,
                     struct jinja_value *out);
/* Python's str % args, for the % operator and the format filter (jinja_strings.c). */
int jinja__percent_format(struct jinja_render *r, struct jinja_value fmt, struct jinja_value args,
                          struct jinja_value *out);

/* jinja_strings.c: Python's str operations, shared by filters and methods. */
int jinja__str_strip(struct jinja_render *r, struct jinja_value s, struct jinja_value chars,
                     bool left, bool right, struct jinja_value *out);
int jinja__str_case(struct jinja_render *r, struct jinja_value s, int mode,
                    struct jinja_value *out);  /* JCASE_* */
enum { JCASE_UPPER, JCASE_LOWER, JCASE_CAPITALIZE, JCASE_TITLE_PY, JCASE_TITLE_JINJA };
int jinja__str_replace(struct jinja_render *r, struct jinja_value s, struct jinja_value old,
                       struct jinja_value new_, int64_t count, struct jinja_value *out);
int jinja__str_splitlines(struct jinja_render *r, struct jinja_value s, struct jinja_list **out);
/* str.split / str.rsplit; sep NONE splits on whitespace runs; maxsplit < 0: no limit. */
int jinja__str_split(struct jinja_render *r, struct jinja_value s, struct jinja_value sep,
                     int64_t maxsplit, bool from_right, struct jinja_value *out);
int jinja__str_affix(struct jinja_render *r, struct jinja_value s, struct jinja_value what,
                     bool end, bool *res);  /* endswith */
bool jinja__str_is(struct jinja_value s, char what);
int jinja__str_format(struct jinja_render *r, struct jinja_value fmt, const struct jinja_args *a,
                      struct jinja_value *out);

#endif
