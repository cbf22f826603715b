/* regex.c — a regular expression as a GBNF expression: literals, escapes (\d \w \s and their
 * negations, \. \n \t \xHH …), classes with ranges and ^, `.` (any character but a newline),
 * groups ( ) and (?: ), alternation, * + ? {m} {m,} {m,n} (lazy forms match the same
 * strings), ^ at the start and $ at the end (the whole output is matched anyway).
 * Backreferences, lookaround, \b and the like are refused by name. Inside a JSON string
 * (a schema's "pattern") characters are written as JSON escapes them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grammar/grammar_internal.h"
#include "engine/base/util.h"

struct rx {
    const char *s, *p, *end;
    bool json;
    char *err;
    int rc;
};

/* A class: ASCII members as bits, plus single non-ASCII characters (UTF-8 bytes). */
struct rx_class {
    uint32_t bits[4];
    bool negated;
    uint32_t rlo[32], rhi[32];  /* non-ASCII code point ranges */
    int num_ranges;
};

static int rx_fail(struct rx *r, const char *what)
{
    if (!r->rc) {
        errf(r->err, "regex: %s at offset %d", what, (int)(r->p - r->s));
        r->rc = -EINVAL;
    }
    return r->rc;
}

static void cls_add(struct rx_class *c, int lo, int hi)
{
    for (int i = lo; i <= hi; i++)
        c->bits[i >> 5] |= 1u << (i & 31);
}

static bool cls_has(const struct rx_class *c, int i)
{
    return c->bits[i >> 5] >> (i & 31) & 1;
}

/* \d \w \s (and D W S negated: only as a whole class). Returns true when e was one. */
static bool shorthand(char e, struct rx_class *c, bool *neg)
{
    *neg = e == 'D' || e == 'W' || e == 'S';
    switch (e) {
    case 'd': case 'D':
        cls_add(c, '0', '9');
        return true;
    case 'w': case 'W':
        cls_add(c, 'a', 'z');
        cls_add(c, 'A', 'Z');
        cls_add(c, '0', '9');
        cls_add(c, '_', '_');
        return true;
    case 's': case 'S':
        cls_add(c, ' ', ' ');
        cls_add(c, '\t', '\r');
        return true;
    }
    return false;
}

static int hexv(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
           c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* One escaped literal after '\' as a byte, or -1 with the error set. */
static int escape_char(struct rx *r)
{
    char e;

    if (r->p >= r->end)
        return rx_fail(r, "a trailing backslash"), -1;
    e = *r->p++;
    switch (e) {
    case 'n': return '\n';
    case 't': return '\t';
    case 'r': return '\r';
    case 'f': return '\f';
    case 'v': return '\v';
    case 'x':
        if (r->end - r->p >= 2 && hexv(r->p[0]) >= 0 && hexv(r->p[1]) >= 0 && hexv(r->p[0]) < 8) {
            int v = hexv(r->p[0]) << 4 | hexv(r->p[1]);
            r->p += 2;
            return v;
        }
        return rx_fail(r, "\\x needs two hex digits below 80"), -1;
    case 'b': case 'B': case 'A': case 'z': case 'Z': case 'G':
        return rx_fail(r, "anchors other than ^ and $ (\\b, \\A, …) are not supported"), -1;
    case 'p': case 'P':
        return rx_fail(r, "Unicode properties (\\p) are not supported"), -1;
    }
    if (e >= '1' && e <= '9')
        return rx_fail(r, "backreferences are not supported"), -1;
    if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9'))
        return rx_fail(r, "unknown escape"), -1;
    if ((unsigned char)e >= 0x80)
        return rx_fail(r, "an escaped non-ASCII character"), -1;
    return (unsigned char)e;
}

/* Bytes of one UTF-8 character at r->p (advanced), into out (5 bytes); its length. */
static int utf8_char(struct rx *r, char *out)
{
    unsigned char c = (unsigned char)*r->p;
    int n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;

    if (r->end - r->p < n)
        n = (int)(r->end - r->p);
    memcpy(out, r->p, (size_t)n);
    out[n] = '\0';
    r->p += n;
    return n;
}

/* A literal byte as it appears in the output text. */
static void emit_byte(struct rx *r, struct gr_str *o, int c)
{
    char b = (char)c;

    if (r->json && (c == '"' || c == '\\')) {
        char t[2] = { '\\', b };
        gr__put_literal(o, t, 2);
    } else if (r->json && c < 0x20) {
        const char *esc = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" :
                          c == '\f' ? "\\f" : c == '\b' ? "\\b" : NULL;
        if (esc)
            gr__put_literal(o, esc, 2);
        else
            gr__printf(o, "\"\\\\u%04X\"", c);
    } else {
        gr__put_literal(o, &b, 1);
    }
}

/* One class of GBNF: the ASCII bits and the class's non-ASCII ranges. */
static void emit_set(struct gr_str *o, const uint32_t bits[4], const struct rx_class *c, bool negated)
{
    gr__puts(o, negated ? "[^" : "[");
    for (int k = 0; c && k < c->num_ranges; k++)
        gr__printf(o, "\\U%08X-\\U%08X", c->rlo[k], c->rhi[k]);
    for (int i = 0; i < 128; i++)
        if (bits[i >> 5] >> (i & 31) & 1) {
            int j = i;
            while (j + 1 < 128 && (bits[(j + 1) >> 5] >> ((j + 1) & 31) & 1))
                j++;
            gr__printf(o, j > i ? "\\x%02X-\\x%02X" : "\\x%02X", i, j);
            i = j;
        }
    gr__puts(o, "]");
}

static void emit_class(struct rx *r, struct gr_str *o, struct rx_class *c)
{
    uint32_t bits[4];
    bool any = false, alts = false;

    memcpy(bits, c->bits, sizeof bits);
    if (r->json && c->negated) {
        /* the escapes a JSON string needs are left out, the rest stands for itself */
        cls_add(c, 0, 0x1F);
        cls_add(c, '"', '"');
        cls_add(c, '\\', '\\');
        emit_set(o, c->bits, c, true);
        return;
    }
    if (c->negated) {
        emit_set(o, bits, c, true);
        return;
    }
    if (r->json) {
        for (int i = 0; i < 0x20; i++)
            bits[i >> 5] &= ~(1u << (i & 31));
        bits['"' >> 5] &= ~(1u << ('"' & 31));
        bits['\\' >> 5] &= ~(1u << ('\\' & 31));
    }
    gr__puts(o, "(");
    for (int w = 0; w < 4; w++)
        any |= bits[w] != 0;
    if (any || c->num_ranges) {
        emit_set(o, bits, c, false);
        alts = true;
    }
    for (int i = 0; r->json && i < 128; i++)
        if (cls_has(c, i) && (i < 0x20 || i == '"' || i == '\\')) {
            gr__puts(o, alts ? " | " : "");
            emit_byte(r, o, i);
            alts = true;
        }
    gr__puts(o, ")");
}

/* The code point of the UTF-8 character at r->p (advanced), or -1 with the error set. */
static int code_point(struct rx *r)
{
    unsigned char c = (unsigned char)*r->p;
    int n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    uint32_t cp;

    if (!n || r->end - r->p < n)
        return rx_fail(r, "invalid UTF-8"), -1;
    cp = c & (0x3F >> (n - 1));
    for (int i = 1; i < n; i++) {
        if (((unsigned char)r->p[i] & 0xC0) != 0x80)
            return rx_fail(r, "invalid UTF-8"), -1;
        cp = cp << 6 | ((unsigned char)r->p[i] & 0x3F);
    }
    if (cp < 0x80 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return rx_fail(r, "invalid UTF-8"), -1;
    r->p += n;
    return (int)cp;
}

static int parse_class(struct rx *r, struct rx_class *c)
{
    bool first = true;

    memset(c, 0, sizeof *c);
    r->p++;
    if (r->p < r->end && *r->p == '^') {
        c->negated = true;
        r->p++;
    }
    while (r->p < r->end && (*r->p != ']' || first)) {
        int lo, hi;
        bool neg;

        first = false;
        if (*r->p == '[' && r->end - r->p > 1 && r->p[1] == ':')
            return rx_fail(r, "POSIX classes ([:alpha:]) are not supported");
        if (*r->p == '\\' && r->end - r->p > 1) {
            struct rx_class sh = { 0 };
            if (shorthand(r->p[1], &sh, &neg)) {
                if (neg)
                    return rx_fail(r, "\\D, \\W or \\S inside a class is not supported");
                for (int w = 0; w < 4; w++)
                    c->bits[w] |= sh.bits[w];
                r->p += 2;
                continue;
            }
            r->p++;
            if ((lo = escape_char(r)) < 0)
                return r->rc;
        } else if ((unsigned char)*r->p >= 0x80) {
            if ((lo = code_point(r)) < 0)
                return r->rc;
        } else {
            lo = (unsigned char)*r->p++;
        }
        hi = lo;
        if (r->end - r->p > 1 && *r->p == '-' && r->p[1] != ']') {
            r->p++;
            if (*r->p == '\\') {
                r->p++;
                if ((hi = escape_char(r)) < 0)
                    return r->rc;
            } else if ((unsigned char)*r->p >= 0x80) {
                if ((hi = code_point(r)) < 0)
                    return r->rc;
            } else {
                hi = (unsigned char)*r->p++;
            }
            if (hi < lo)
                return rx_fail(r, "a range out of order");
        }
        if (lo < 0x80)
            cls_add(c, lo, hi < 0x80 ? hi : 0x7F);
        if (hi >= 0x80) {
            if (c->num_ranges == 32)
                return rx_fail(r, "more than 32 non-ASCII ranges in one class");
            c->rlo[c->num_ranges] = lo < 0x80 ? 0x80 : (uint32_t)lo;
            c->rhi[c->num_ranges++] = (uint32_t)hi;
        }
    }
    if (r->p >= r->end)
        return rx_fail(r, "an unterminated class");
    r->p++;
    if (!c->negated && !c->num_ranges && !(c->bits[0] | c->bits[1] | c->bits[2] | c->bits[3]))
        return rx_fail(r, "an empty class");
    return 0;
}

static int parse_alt(struct rx *r, struct gr_str *o, int depth);

/* One atom into o (a single GBNF item). Returns 0, or 1 when there is none here. */
static int parse_atom(struct rx *r, struct gr_str *o, int depth)
{
    struct rx_class c;
    char ch = *r->p;
    bool neg;

    if (ch == '(') {
        r->p++;
        if (r->p < r->end && *r->p == '?') {
            if (r->end - r->p > 1 && r->p[1] == ':')
                r->p += 2;
            else
                return rx_fail(r, "lookaround and named groups are not supported");
        }
        gr__puts(o, "(");
        if (parse_alt(r, o, depth + 1))
            return r->rc;
        if (r->p >= r->end || *r->p != ')')
            return rx_fail(r, "a missing ')'");
        r->p++;
        gr__puts(o, ")");
        return 0;
    }
    if (ch == '[') {
        if (parse_class(r, &c))
            return r->rc;
        emit_class(r, o, &c);
        return 0;
    }
    if (ch == '.') {
        r->p++;
        memset(&c, 0, sizeof c);
        c.negated = true;
        cls_add(&c, '\n', '\n');
        emit_class(r, o, &c);
        return 0;
    }
    if (ch == '\\') {
        int b;
        memset(&c, 0, sizeof c);
        if (r->end - r->p > 1 && shorthand(r->p[1], &c, &neg)) {
            r->p += 2;
            c.negated = neg;
            emit_class(r, o, &c);
            return 0;
        }
        r->p++;
        if ((b = escape_char(r)) < 0)
            return r->rc;
        emit_byte(r, o, b);
        return 0;
    }
    if (ch == '^' || ch == '$')
        return rx_fail(r, "^ and $ are only supported at the start and the end");
    if (ch == '*' || ch == '+' || ch == '?' || ch == '{')
        return rx_fail(r, "a quantifier with nothing to repeat");
    if ((unsigned char)ch >= 0x80) {
        char u[5];
        int n = utf8_char(r, u);
        if (r->json) {
            gr__put_literal(o, u, (size_t)n);
            return 0;
        }
        gr__put_literal(o, u, (size_t)n);
        return 0;
    }
    r->p++;
    emit_byte(r, o, (unsigned char)ch);
    return 0;
}

static int parse_count(struct rx *r, long *v)
{
    if (r->p >= r->end || *r->p < '0' || *r->p > '9')
        return rx_fail(r, "a bad {m,n}");
    /* digits by hand: the source has no terminating NUL for strtol */
    for (*v = 0; r->p < r->end && *r->p >= '0' && *r->p <= '9'; r->p++)
        if ((*v = *v * 10 + (*r->p - '0')) > GR_MAX_REPEAT)
            return rx_fail(r, "a repetition bound above 4096");
    return 0;
}

static int parse_concat(struct rx *r, struct gr_str *o, int depth)
{
    int n = 0;

    while (r->p < r->end && *r->p != '|' && *r->p != ')') {
        struct gr_str atom = { 0 };

        if (*r->p == '$' && r->p + 1 == r->end && depth == 0) {
            r->p++;
            break;
        }
        if (parse_atom(r, &atom, depth)) {
            free(atom.p);
            return r->rc;
        }
        if (n++)
            gr__puts(o, " ");
        gr__puts(o, "(");
        gr__putn(o, atom.p ? atom.p : "", atom.len);
        gr__puts(o, ")");
        free(atom.p);
        if (r->p < r->end && strchr("*+?{", *r->p)) {
            char q = *r->p++;
            if (q == '{') {
                long m, x;
                if (parse_count(r, &m))
                    return r->rc;
                x = m;
                if (r->p < r->end && *r->p == ',') {
                    r->p++;
                    x = -1;
                    if (r->p < r->end && *r->p != '}' && parse_count(r, &x))
                        return r->rc;
                }
                if (r->p >= r->end || *r->p != '}')
                    return rx_fail(r, "a bad {m,n}");
                r->p++;
                if (x >= 0 && x < m)
                    return rx_fail(r, "{m,n} with n < m");
                if (x < 0)
                    gr__printf(o, "{%ld,}", m);
                else
                    gr__printf(o, "{%ld,%ld}", m, x);
            } else {
                gr__putn(o, &q, 1);
            }
            if (r->p < r->end && (*r->p == '?' || *r->p == '+'))
                r->p++;               /* lazy/possessive: the same strings */
            if (r->p < r->end && strchr("*+?{", *r->p))
                return rx_fail(r, "a quantifier after a quantifier");
        }
    }
    if (n == 0)
        gr__puts(o, "\"\"");
    return 0;
}

static int parse_alt(struct rx *r, struct gr_str *o, int depth)
{
    if (depth > 64)
        return rx_fail(r, "groups nested too deep");
    for (;;) {
        if (parse_concat(r, o, depth))
            return r->rc;
        if (r->p < r->end && *r->p == '|') {
            r->p++;
            gr__puts(o, " | ");
            continue;
        }
        return 0;
    }
}

int gr__regex_expr(struct gr_str *out, const char *src, size_t len, bool json, char *err)
{
    struct rx r = { .s = src, .p = src, .end = src + len, .json = json, .err = err };

    if (r.p < r.end && *r.p == '^')
        r.p++;
    gr__puts(out, "(");
    if (parse_alt(&r, out, 0))
        return r.rc;
    if (r.p < r.end)
        return rx_fail(&r, "an unbalanced ')'");
    gr__puts(out, ")");
    if (out->oom) {
        errf(err, "regex: out of memory");
        return -ENOMEM;
    }
    return 0;
}

int gr__regex_to_gbnf(const char *src, size_t len, char **out, char *err)
{
    struct gr_str s = { 0 };
    int rc;

    gr__puts(&s, "root ::= ");
    if ((rc = gr__regex_expr(&s, src, len, false, err))) {
        free(s.p);
        return rc;
    }
    gr__puts(&s, "\n");
    if (s.oom) {
        free(s.p);
        errf(err, "regex: out of memory");
        return -ENOMEM;
    }
    *out = s.p;
    return 0;
}
