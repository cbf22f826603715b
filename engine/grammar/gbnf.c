/* gbnf.c — the GBNF text parser (llama.cpp's notation): `name ::= alternatives`, one rule per
 * line (a line may go on after `|`, `::=` or inside parentheses), "literals" with \n \t \r
 * \\ \" \xHH \uHHHH \UHHHHHHHH escapes, [classes] with ranges and ^, `.` for any character,
 * ( groups ), postfix * + ? {m} {m,} {m,n}, # comments. Characters are UTF-8; a class over
 * ASCII is one byte set, other ranges become alternatives of byte-range sequences (negated
 * classes take what lies between them). Every front
 * end (JSON Schema, regex, choice) produces GBNF text and comes through here. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grammar/grammar_internal.h"
#include "engine/base/util.h"

struct parser {
    struct grammar *g;
    const char *s, *end, *p;
    char *err;
    int rc;
};

struct seq {
    struct gr_elem *e;
    int n, cap;
};

static int fail(struct parser *ps, const char *what)
{
    int line = 1, col = 1;

    for (const char *q = ps->s; q < ps->p && q < ps->end; q++, col++)
        if (*q == '\n') {
            line++;
            col = 0;
        }
    if (!ps->rc) {
        errf(ps->err, "grammar: %s at line %d column %d", what, line, col);
        ps->rc = -EINVAL;
    }
    return ps->rc;
}

static int oom(struct parser *ps)
{
    if (!ps->rc) {
        errf(ps->err, "grammar: out of memory");
        ps->rc = -ENOMEM;
    }
    return ps->rc;
}

static int seq_push(struct parser *ps, struct seq *q, struct gr_elem e)
{
    if (q->n == q->cap) {
        int c = q->cap ? q->cap * 2 : 16;
        struct gr_elem *x = realloc(q->e, (size_t)c * sizeof *x);
        if (!x)
            return oom(ps);
        q->e = x;
        q->cap = c;
    }
    q->e[q->n++] = e;
    return 0;
}

static void skip_space(struct parser *ps, bool newlines)
{
    while (ps->p < ps->end) {
        char c = *ps->p;
        if (c == ' ' || c == '\t' || (newlines && (c == '\n' || c == '\r')))
            ps->p++;
        else if (c == '#')
            while (ps->p < ps->end && *ps->p != '\n')
                ps->p++;
        else
            break;
    }
}

static bool is_name(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static int hex_value(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
           c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* One character of a literal or class (escapes decoded) as a code point; raw UTF-8 bytes
 * are decoded too. Returns 0 or fails. */
static int read_char(struct parser *ps, uint32_t *cp)
{
    unsigned char c;

    if (ps->p >= ps->end)
        return fail(ps, "unexpected end of the grammar");
    c = (unsigned char)*ps->p++;
    if (c == '\\') {
        int digits = 0;
        if (ps->p >= ps->end)
            return fail(ps, "unfinished escape");
        c = (unsigned char)*ps->p++;
        switch (c) {
        case 'n': *cp = '\n'; return 0;
        case 'r': *cp = '\r'; return 0;
        case 't': *cp = '\t'; return 0;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default: *cp = c; return 0;   /* \\ \" \] \[ \- and the like stand for themselves */
        }
        *cp = 0;
        for (int i = 0; i < digits; i++) {
            int h = ps->p < ps->end ? hex_value(*ps->p) : -1;
            if (h < 0)
                return fail(ps, "bad hexadecimal escape");
            *cp = *cp << 4 | (uint32_t)h;
            ps->p++;
        }
        if (*cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF))
            return fail(ps, "escape outside Unicode scalar values");
        return 0;
    }
    if (c < 0x80) {
        *cp = c;
        return 0;
    }
    {
        int n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
        if (!n || ps->end - ps->p < n - 1) {
            ps->p--;
            return fail(ps, "invalid UTF-8");
        }
        *cp = c & (0x3F >> (n - 1));
        for (int i = 1; i < n; i++)
            *cp = *cp << 6 | ((unsigned char)*ps->p++ & 0x3F);
        if (*cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF))
            return fail(ps, "invalid UTF-8");
    }
    return 0;
}

static int parse_alternatives(struct parser *ps, int rule, int nesting);

/* An anonymous rule whose one alternative is elems[n]. */
static int wrap(struct parser *ps, const struct gr_elem *elems, int n, struct gr_elem *out)
{
    int r = gr__rule(ps->g, NULL);

    if (r < 0 || gr__add_alt(ps->g, r, elems, n))
        return oom(ps);
    *out = (struct gr_elem){ .kind = GR_RULE, .arg = r };
    return 0;
}

static int parse_literal(struct parser *ps, struct seq *q)
{
    ps->p++;   /* the opening quote */
    while (ps->p < ps->end && *ps->p != '"') {
        uint32_t cp;
        char buf[4];
        int n;

        if (*ps->p == '\n')
            return fail(ps, "unterminated string literal");
        if (read_char(ps, &cp))
            return ps->rc;
        n = utf8_encode(cp, buf);
        for (int i = 0; i < n; i++)
            if (seq_push(ps, q, (struct gr_elem){ .kind = GR_BYTE, .arg = (uint8_t)buf[i] }))
                return ps->rc;
    }
    if (ps->p >= ps->end)
        return fail(ps, "unterminated string literal");
    ps->p++;
    return 0;
}

/* ---- non-ASCII members of a class: code point ranges as UTF-8 byte-range sequences ---- */

struct cp_range {
    uint32_t lo, hi;
};

static int by_lo(const void *a, const void *b)
{
    const struct cp_range *x = a, *y = b;
    return (x->lo > y->lo) - (x->lo < y->lo);
}

/* Appends to rule r one alternative per run of byte ranges that spells exactly the code
 * points [lo, hi] (all >= 0x80), as RE2 and Go's regexp do: split where the UTF-8 length
 * changes and around the surrogates, then until every byte after the first covers either
 * one value or a whole continuation range. */
static int utf8_range_alts(struct parser *ps, int r, uint32_t lo, uint32_t hi)
{
    static const uint32_t len_max[] = { 0x7FF, 0xFFFF };
    char a[4], b[4];
    int n;

    if (lo > hi)
        return 0;
    for (int i = 0; i < 2; i++)
        if (lo <= len_max[i] && hi > len_max[i])
            return utf8_range_alts(ps, r, lo, len_max[i]) || utf8_range_alts(ps, r, len_max[i] + 1, hi)
                   ? ps->rc : 0;
    if (lo <= 0xDFFF && hi >= 0xD800)
        return utf8_range_alts(ps, r, lo, 0xD7FF) || utf8_range_alts(ps, r, 0xE000, hi) ? ps->rc : 0;
    for (int i = 1; i < 4; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) == (hi & ~m))
            continue;
        if (lo & m)
            return utf8_range_alts(ps, r, lo, lo | m) || utf8_range_alts(ps, r, (lo | m) + 1, hi) ? ps->rc : 0;
        if ((hi & m) != m)
            return utf8_range_alts(ps, r, lo, (hi & ~m) - 1) || utf8_range_alts(ps, r, hi & ~m, hi) ? ps->rc : 0;
    }
    n = utf8_encode(lo, a);
    utf8_encode(hi, b);
    {
        struct gr_elem e[4];
        for (int k = 0; k < n; k++) {
            uint32_t set[8] = { 0 };
            int sid;
            for (int x = (uint8_t)a[k]; x <= (uint8_t)b[k]; x++)
                set[x >> 5] |= 1u << (x & 31);
            if ((sid = gr__add_set(ps->g, set)) < 0)
                return oom(ps);
            e[k] = (struct gr_elem){ .kind = GR_SET, .arg = sid };
        }
        if (gr__add_alt(ps->g, r, e, n))
            return oom(ps);
    }
    return 0;
}

/* A class or `.` as one element: a byte set, or a rule when it holds more than ASCII. */
static int parse_class(struct parser *ps, struct gr_elem *out, bool dot)
{
    uint32_t set[8] = { 0 };
    struct cp_range multi[64];
    int num_multi = 0, s;
    bool negated = dot;

    if (!dot) {
        ps->p++;
        if (ps->p < ps->end && *ps->p == '^') {
            negated = true;
            ps->p++;
        }
        while (ps->p < ps->end && *ps->p != ']') {
            uint32_t lo, hi;
            if (read_char(ps, &lo))
                return ps->rc;
            hi = lo;
            if (ps->p + 1 < ps->end && *ps->p == '-' && ps->p[1] != ']') {
                ps->p++;
                if (read_char(ps, &hi))
                    return ps->rc;
            }
            if (hi < lo)
                return fail(ps, "character range out of order");
            for (uint32_t c = lo; c <= hi && c < 0x80; c++)
                set[c >> 5] |= 1u << (c & 31);
            if (hi >= 0x80) {
                if (num_multi == (int)ARRAY_LEN(multi))
                    return fail(ps, "more than 64 non-ASCII ranges in one class");
                multi[num_multi++] = (struct cp_range){ lo < 0x80 ? 0x80 : lo, hi };
            }
        }
        if (ps->p >= ps->end)
            return fail(ps, "unterminated character class");
        ps->p++;
    } else {
        ps->p++;
    }
    if (negated) {
        for (int w = 0; w < 4; w++)
            set[w] = ~set[w];
        for (int w = 4; w < 8; w++)
            set[w] = 0;
    }
    if ((s = gr__add_set(ps->g, set)) < 0)
        return oom(ps);
    *out = (struct gr_elem){ .kind = GR_SET, .arg = s };
    if (!negated && !num_multi)
        return 0;
    {
        int r = gr__rule(ps->g, NULL), u;
        struct gr_elem e = *out;

        if (r < 0 || gr__add_alt(ps->g, r, &e, 1))
            return oom(ps);
        if (negated && !num_multi) {
            if ((u = gr__utf8_multibyte_rule(ps->g)) < 0)
                return oom(ps);
            e = (struct gr_elem){ .kind = GR_RULE, .arg = u };
            if (gr__add_alt(ps->g, r, &e, 1))
                return oom(ps);
        } else {
            /* merged, sorted ranges; a negated class takes what lies between them */
            uint32_t next = 0x80;
            int m = 0;
            qsort(multi, (size_t)num_multi, sizeof *multi, by_lo);
            for (int i = 0; i < num_multi; i++) {
                if (m && multi[i].lo <= multi[m - 1].hi + 1) {
                    if (multi[i].hi > multi[m - 1].hi)
                        multi[m - 1].hi = multi[i].hi;
                } else {
                    multi[m++] = multi[i];
                }
            }
            for (int i = 0; i < m; i++) {
                if (negated ? (multi[i].lo > next && utf8_range_alts(ps, r, next, multi[i].lo - 1))
                            : utf8_range_alts(ps, r, multi[i].lo, multi[i].hi))
                    return ps->rc;
                next = multi[i].hi + 1;
            }
            if (negated && next <= 0x10FFFF && utf8_range_alts(ps, r, next, 0x10FFFF))
                return ps->rc;
        }
        *out = (struct gr_elem){ .kind = GR_RULE, .arg = r };
    }
    return 0;
}

static int parse_count(struct parser *ps, long *v)
{
    skip_space(ps, false);
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
        return fail(ps, "expected a number in {m,n}");
    for (*v = 0; ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9'; ps->p++)
        if ((*v = *v * 10 + (*ps->p - '0')) > GR_MAX_REPEAT)
            return fail(ps, "repetition bound above 4096");
    skip_space(ps, false);
    return 0;
}

/* x{min,max} as U_0 where U_k ::= unit U_(k+1) [| ε when k >= min], U_max ::= ε, and for an
 * unbounded max U_min ::= unit U_min | ε. The unit is x, wrapped in a rule of its own when it
 * is a byte or a set, so that every unit in progress sits on a return frame: the U_(k+1)
 * reference in U_k's first alternative, recorded with gr__rep_mark as "k+1 units done once
 * this one ends". */
static int repeat_chain(struct parser *ps, struct seq *q, struct gr_elem x, long min, long max)
{
    long last = max < 0 ? min : max;
    int unit = x.arg, rep, next = -1;

    if (x.kind != GR_RULE) {
        if ((unit = gr__rule(ps->g, NULL)) < 0 || gr__add_alt(ps->g, unit, &x, 1))
            return oom(ps);
    }
    if ((rep = gr__add_rep(ps->g, unit, (int)min, (int)max)) < 0)
        return oom(ps);
    for (long k = last; k >= 0; k--) {
        int r = gr__rule(ps->g, NULL);
        struct gr_elem two[2] = { { .kind = GR_RULE, .arg = unit }, { .kind = GR_RULE, .arg = r } };

        if (r < 0)
            return oom(ps);
        if (k < last || max < 0) {
            if (k < last)
                two[1].arg = next;
            if (gr__add_alt(ps->g, r, two, 2) ||
                gr__rep_mark(ps->g, ps->g->rules[r].alts[0] + 1, rep, (int)(k < last ? k + 1 : k)))
                return oom(ps);
        }
        if (k >= min && gr__add_alt(ps->g, r, NULL, 0))
            return oom(ps);
        next = r;
    }
    return seq_push(ps, q, (struct gr_elem){ .kind = GR_RULE, .arg = next });
}

/* x{min,max} (max < 0: unbounded) appended to q, x one element. x? and a fixed count are
 * plain sequences. A range or an unbounded repetition is a chain of rules U_k, "k units
 * done" (repeat_chain): the same units and sentences, but the frame a unit returns to names
 * the count, so masks inside it can come from per-unit token tables (repeat.c) shared by
 * every grammar, instead of a trie walk per count (and per grammar). */
static int repeat(struct parser *ps, struct seq *q, struct gr_elem x, long min, long max)
{
    struct gr_elem tail = { .kind = GR_END };

    if (max < 0 || (max >= 2 && max > min))
        return repeat_chain(ps, q, x, min, max);
    for (long i = 0; i < min; i++)
        if (seq_push(ps, q, x))
            return ps->rc;
    if (max == min)
        return 0;
    /* O1 ::= x | ε ; Ok ::= x O(k-1) | ε */
    for (long k = 1; k <= max - min; k++) {
        int r = gr__rule(ps->g, NULL);
        struct gr_elem two[2] = { x, tail };
        if (r < 0 || gr__add_alt(ps->g, r, two, k == 1 ? 1 : 2) || gr__add_alt(ps->g, r, NULL, 0))
            return oom(ps);
        tail = (struct gr_elem){ .kind = GR_RULE, .arg = r };
    }
    return seq_push(ps, q, tail);
}

static int parse_sequence(struct parser *ps, struct seq *q, int nesting)
{
    for (;;) {
        struct seq item = { 0 };
        struct gr_elem x;
        char c;

        skip_space(ps, nesting > 0);
        if (ps->p >= ps->end)
            return 0;
        c = *ps->p;
        if (c == '"') {
            if (parse_literal(ps, &item))
                goto bad;
        } else if (c == '[' || c == '.') {
            if (parse_class(ps, &x, c == '.') || seq_push(ps, &item, x))
                goto bad;
        } else if (c == '(') {
            int r = gr__rule(ps->g, NULL);
            if (r < 0) {
                oom(ps);
                goto bad;
            }
            ps->p++;
            if (parse_alternatives(ps, r, nesting + 1))
                goto bad;
            skip_space(ps, true);
            if (ps->p >= ps->end || *ps->p != ')') {
                fail(ps, "expected ')'");
                goto bad;
            }
            ps->p++;
            if (seq_push(ps, &item, (struct gr_elem){ .kind = GR_RULE, .arg = r }))
                goto bad;
        } else if (is_name(c)) {
            const char *n0 = ps->p;
            char name[128];
            int r;
            while (ps->p < ps->end && is_name(*ps->p))
                ps->p++;
            if (ps->p - n0 >= (long)sizeof name) {
                fail(ps, "rule name too long");
                goto bad;
            }
            memcpy(name, n0, (size_t)(ps->p - n0));
            name[ps->p - n0] = '\0';
            skip_space(ps, false);
            if (ps->end - ps->p >= 3 && !memcmp(ps->p, "::=", 3)) {
                ps->p = n0;           /* the next rule starts here */
                return fail(ps, "expected a new line before the next rule");
            }
            if ((r = gr__rule(ps->g, name)) < 0) {
                oom(ps);
                goto bad;
            }
            if (seq_push(ps, &item, (struct gr_elem){ .kind = GR_RULE, .arg = r }))
                goto bad;
        } else {
            return 0;                 /* '|', ')', a newline: the caller decides */
        }
        /* postfix */
        skip_space(ps, false);
        if (ps->p < ps->end && strchr("*+?{", *ps->p)) {
            long min = 0, max = -1;
            char op = *ps->p++;

            if (item.n == 0) {
                fail(ps, "repetition of nothing");
                goto bad;
            }
            if (item.n > 1) {
                if (wrap(ps, item.e, item.n, &x))
                    goto bad;
            } else {
                x = item.e[0];
            }
            if (op == '+')
                min = 1;
            else if (op == '?')
                max = 1;
            else if (op == '{') {
                if (parse_count(ps, &min))
                    goto bad;
                max = min;
                if (ps->p < ps->end && *ps->p == ',') {
                    ps->p++;
                    skip_space(ps, false);
                    max = -1;
                    if (ps->p < ps->end && *ps->p != '}' && parse_count(ps, &max))
                        goto bad;
                }
                if (ps->p >= ps->end || *ps->p != '}') {
                    fail(ps, "expected '}'");
                    goto bad;
                }
                ps->p++;
                if (max >= 0 && max < min) {
                    fail(ps, "{m,n} with n < m");
                    goto bad;
                }
            }
            if (repeat(ps, q, x, min, max))
                goto bad;
        } else {
            for (int i = 0; i < item.n; i++)
                if (seq_push(ps, q, item.e[i]))
                    goto bad;
        }
        free(item.e);
        continue;
bad:
        free(item.e);
        return ps->rc ? ps->rc : fail(ps, "syntax error");
    }
}

static int parse_alternatives(struct parser *ps, int rule, int nesting)
{
    struct seq q = { 0 };

    for (;;) {
        q.n = 0;
        if (parse_sequence(ps, &q, nesting))
            break;
        if (gr__add_alt(ps->g, rule, q.e, q.n)) {
            oom(ps);
            break;
        }
        skip_space(ps, nesting > 0);
        if (ps->p < ps->end && *ps->p == '|') {
            ps->p++;
            skip_space(ps, true);
            continue;
        }
        break;
    }
    free(q.e);
    return ps->rc;
}

int gr__parse_gbnf(struct grammar *g, const char *src, size_t len, char *err)
{
    struct parser ps = { .g = g, .s = src, .end = src + len, .p = src, .err = err };

    for (;;) {
        const char *n0;
        char name[128];
        int r;

        skip_space(&ps, true);
        if (ps.p >= ps.end)
            break;
        n0 = ps.p;
        while (ps.p < ps.end && is_name(*ps.p))
            ps.p++;
        if (ps.p == n0)
            return fail(&ps, "expected a rule name");
        if (ps.p - n0 >= (long)sizeof name)
            return fail(&ps, "rule name too long");
        memcpy(name, n0, (size_t)(ps.p - n0));
        name[ps.p - n0] = '\0';
        skip_space(&ps, false);
        if (ps.end - ps.p < 3 || memcmp(ps.p, "::=", 3))
            return fail(&ps, "expected '::='");
        ps.p += 3;
        if ((r = gr__rule(g, name)) < 0)
            return oom(&ps);
        if (g->rules[r].defined) {
            ps.p = n0;
            return fail(&ps, "a rule defined twice");
        }
        skip_space(&ps, true);
        if (parse_alternatives(&ps, r, 0))
            return ps.rc;
        skip_space(&ps, false);
        if (ps.p < ps.end && *ps.p != '\n' && *ps.p != '\r')
            return fail(&ps, *ps.p == ')' ? "unbalanced ')'" : "unexpected character");
    }
    return gr__finish(g, "root", err);
}
