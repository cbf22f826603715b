/* jinja_lexer.c — template source to tokens, as Jinja's lexer does it with transformers'
 * settings: newlines normalised to \n and one trailing newline dropped, text between tags
 * as DATA, {{ }} {% %} {# #} with - and + whitespace control, trim_blocks (the newline
 * after a block or comment tag goes) and lstrip_blocks (spaces before a block or comment
 * tag on its own line go), {% raw %}, and expression tokens inside tags. Linear in the
 * source; every token and text lives in the template arena. */
#include "engine/chat_template/jinja.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/base/util.h" /* errf */

struct lexer {
    struct arena *a;
    const char *s;           /* normalised source, NUL-terminated */
    size_t len, pos;
    struct jinja_token *toks;
    size_t n, cap;
    size_t at_off;           /* line bookkeeping: offset reached, its line, its line's start */
    uint32_t at_line;
    size_t at_line_start;
    char *err;
};

static void where(struct lexer *lx, size_t off, uint32_t *line, uint32_t *col)
{
    if (off < lx->at_off) {
        lx->at_off = 0;
        lx->at_line = 1;
        lx->at_line_start = 0;
    }
    for (; lx->at_off < off && lx->at_off < lx->len; lx->at_off++)
        if (lx->s[lx->at_off] == '\n') {
            lx->at_line++;
            lx->at_line_start = lx->at_off + 1;
        }
    *line = lx->at_line;
    *col = (uint32_t)(off - lx->at_line_start + 1);
}

static int lex_fail(struct lexer *lx, size_t off, const char *msg, char c)
{
    uint32_t line, col;

    where(lx, off, &line, &col);
    if (c)
        errf(lx->err, "line %u, column %u: %s '%c'", line, col, msg, c);
    else
        errf(lx->err, "line %u, column %u: %s", line, col, msg);
    return -EINVAL;
}

static struct jinja_token *emit(struct lexer *lx, int type, size_t off)
{
    struct jinja_token *t;

    if (lx->n == lx->cap) {
        size_t cap = lx->cap ? lx->cap * 2 : 256;
        struct jinja_token *toks = arena_alloc(lx->a, cap * sizeof *toks);

        if (!toks)
            return NULL;
        if (lx->n)
            memcpy(toks, lx->toks, lx->n * sizeof *toks);
        lx->toks = toks;
        lx->cap = cap;
    }
    t = &lx->toks[lx->n++];
    memset(t, 0, sizeof *t);
    t->type = (uint8_t)type;
    where(lx, off, &t->line, &t->col);
    return t;
}

/* Python's \s at s[i], as a length in bytes (0 when not whitespace). */
static size_t space_at(const char *s, size_t len, size_t i)
{
    int32_t cp;
    size_t next = jinja__u8_next(s, len, i, &cp);

    return jinja__py_isspace(cp) ? next - i : 0;
}

static size_t skip_space(const char *s, size_t len, size_t i)
{
    size_t n;

    while (i < len && (n = space_at(s, len, i)))
        i += n;
    return i;
}

/* Length of the text once Python's rstrip() has run on it. */
static size_t rstrip_len(const char *s, size_t len)
{
    size_t end = len;

    while (end > 0) {
        size_t i = end - 1;

        while (i > 0 && ((unsigned char)s[i] & 0xc0) == 0x80 && end - i < 4)
            i--;
        if (space_at(s, end, i) != end - i)
            break;
        end = i;
    }
    return end;
}

static int emit_data(struct lexer *lx, size_t off, size_t len)
{
    struct jinja_token *t;

    if (!len)
        return 0;
    if (!(t = emit(lx, JT_DATA, off)))
        return -ENOMEM;
    t->p = lx->s + off;
    t->len = len;
    return 0;
}

/* Whitespace control for the text [start, end) before a tag: '-' strips all trailing
 * whitespace; otherwise, for a block or comment tag, lstrip_blocks strips spaces between
 * the line's start and the tag. Returns the text's new end. */
static size_t strip_before(const struct lexer *lx, size_t start, size_t end, char sign, bool variable,
                           bool line_starting)
{
    const char *t = lx->s + start;
    size_t n = end - start, l_pos = 0;

    if (sign == '-')
        return start + rstrip_len(t, n);
    if (sign == '+' || variable)
        return end;
    for (size_t i = n; i > 0; i--)
        if (t[i - 1] == '\n') {
            l_pos = i;
            break;
        }
    if ((l_pos > 0 || line_starting) && l_pos < n && skip_space(t, n, l_pos) == n)
        return start + l_pos;
    return end;
}

/* After a block or comment end: '-' eats whitespace, '+' nothing, plain one newline. */
static size_t after_end(const struct lexer *lx, size_t pos, char sign)
{
    if (sign == '-')
        return skip_space(lx->s, lx->len, pos);
    if (sign == '+')
        return pos;
    return pos < lx->len && lx->s[pos] == '\n' ? pos + 1 : pos;
}

/* {% raw %} … {% endraw %}: the text between, as data. pos is just after "{%". */
static int lex_raw(struct lexer *lx, size_t tag, size_t *pos)
{
    bool line_starting;

    size_t p = *pos, i;
    const char *s = lx->s;

    if (p < lx->len && (s[p] == '-' || s[p] == '+'))
        p++;
    p = skip_space(s, lx->len, p) + 3;    /* "raw" */
    p = skip_space(s, lx->len, p);
    if (s[p] == '-')
        p = skip_space(s, lx->len, p + 3);
    else
        p += 2;
    line_starting = s[p - 1] == '\n';
    for (i = p; i + 1 < lx->len; i++) {
        size_t q = i + 2, end;
        char sign = 0, esign = 0;

        if (s[i] != '{' || s[i + 1] != '%')
            continue;
        if (s[q] == '-' || s[q] == '+')
            sign = s[q++];
        q = skip_space(s, lx->len, q);
        if (strncmp(s + q, "endraw", 6))
            continue;
        q = skip_space(s, lx->len, q + 6);
        if ((s[q] == '-' || s[q] == '+') && s[q + 1] == '%' && s[q + 2] == '}')
            esign = s[q++];
        if (s[q] != '%' || s[q + 1] != '}')
            continue;
        end = strip_before(lx, p, i, sign, false, line_starting);
        if (emit_data(lx, p, end - p))
            return -ENOMEM;
        *pos = after_end(lx, q + 2, esign);
        return 0;
    }
    return lex_fail(lx, tag, "missing end of raw directive", 0);
}

static bool is_raw_begin(const struct lexer *lx, size_t p)
{
    const char *s = lx->s;

    if (s[p] == '-' || s[p] == '+')
        p++;
    p = skip_space(s, lx->len, p);
    if (strncmp(s + p, "raw", 3))
        return false;
    p = skip_space(s, lx->len, p + 3);
    return (s[p] == '-' && s[p + 1] == '%' && s[p + 2] == '}') || (s[p] == '%' && s[p + 1] == '}');
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A quoted string at pos, unescaped as Python's unicode-escape codec does. */
static int lex_string(struct lexer *lx, size_t *pos)
{
    const char *s = lx->s;
    char q = s[*pos], *o;
    size_t start = *pos, i = start + 1, n = 0;
    struct jinja_token *t;

    while (i < lx->len && s[i] != q)
        i += s[i] == '\\' && i + 1 < lx->len ? 2 : 1;
    if (i >= lx->len)
        return lex_fail(lx, start, "unexpected char", q);
    /* Unescaping at most doubles the text: a backslash and a 4-byte character (5 bytes)
     * become a backslash and "U0001f600" (10 bytes). */
    if (!(t = emit(lx, JT_STRING, start)) || !(o = arena_alloc(lx->a, 2 * (i - start) + 16)))
        return -ENOMEM;
    for (size_t k = start + 1; k < i;) {
        char c = s[k];
        int digits = 0, len = 0;
        uint32_t v = 0;

        if (c != '\\') {
            o[n++] = c;
            k++;
            continue;
        }
        c = s[k + 1];
        k += 2;
        switch (c) {
        case '\n': break;
        case '\\': o[n++] = '\\'; break;
        case '\'': o[n++] = '\''; break;
        case '"': o[n++] = '"'; break;
        case 'a': o[n++] = '\a'; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'n': o[n++] = '\n'; break;
        case 'r': o[n++] = '\r'; break;
        case 't': o[n++] = '\t'; break;
        case 'v': o[n++] = '\v'; break;
        case 'x': len = 2; break;
        case 'u': len = 4; break;
        case 'U': len = 8; break;
        case 'N': return lex_fail(lx, k - 2, "named unicode escapes (\\N{...}) are not supported", 0);
        default:
            if (c >= '0' && c <= '7') {
                v = (uint32_t)(c - '0');
                for (digits = 1; digits < 3 && s[k] >= '0' && s[k] <= '7'; digits++, k++)
                    v = v * 8 + (uint32_t)(s[k] - '0');
                n += put_utf8(o + n, v);
            } else if ((unsigned char)c >= 0x80) {
                /* backslashreplace turned the character into \xe9 (or \u, \U) first, and
                 * the backslash before it escapes that backslash: "\" + "xe9" remain. */
                int32_t cp;

                k = jinja__u8_next(s, i, k - 1, &cp);
                n += (size_t)sprintf(o + n, cp <= 0xff ? "\\x%02x" : cp <= 0xffff ? "\\u%04x" : "\\U%08x",
                                     (unsigned)cp);
            } else {
                o[n++] = '\\';
                o[n++] = c;
            }
        }
        if (len) {
            for (int d = 0; d < len; d++) {
                int h = k + (size_t)d < i ? hexval(s[k + (size_t)d]) : -1;

                if (h < 0)
                    return lex_fail(lx, k - 2, "truncated \\x, \\u or \\U escape in a string", 0);
                v = v * 16 + (uint32_t)h;
            }
            if (v > 0x10ffff || (v >= 0xd800 && v < 0xe000))
                return lex_fail(lx, k - 2, "escape outside the Unicode range in a string", 0);
            k += (size_t)len;
            n += put_utf8(o + n, v);
        }
    }
    o[n] = '\0';
    t->p = o;
    t->len = n;
    *pos = i + 1;
    return 0;
}

static bool isdig(char c) { return c >= '0' && c <= '9'; }
static bool isname0(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }

/* Digits with single underscores between them: (\d+_)*\d+. Returns the end, or start. */
static size_t digits_end(const char *s, size_t i)
{
    size_t end = i;

    while (isdig(s[i])) {
        while (isdig(s[i]))
            i++;
        end = i;
        if (s[i] == '_' && isdig(s[i + 1]))
            i++;
    }
    return end;
}

static int lex_number(struct lexer *lx, size_t *pos)
{
    const char *s = lx->s;
    size_t start = *pos, i = digits_end(s, start), end = start;
    char buf[64];
    size_t n = 0;
    struct jinja_token *t;
    bool is_float = false;

    /* float: (\d+_)*\d+ ( (\.(\d+_)*\d+)? e[+-]?(\d+_)*\d+ | \.(\d+_)*\d+ ), not after a dot */
    if (!(start > 0 && s[start - 1] == '.')) {
        size_t j = i, frac = 0;

        if (s[j] == '.' && isdig(s[j + 1])) {
            frac = digits_end(s, j + 1);
            j = frac;
        }
        if ((s[j] == 'e' || s[j] == 'E')) {
            size_t k = j + 1, e;

            if (s[k] == '+' || s[k] == '-')
                k++;
            e = digits_end(s, k);
            if (e > k) {
                end = e;
                is_float = true;
            }
        }
        if (!is_float && frac) {
            end = frac;
            is_float = true;
        }
    }
    if (is_float) {
        for (size_t k = start; k < end && n < sizeof buf - 1; k++)
            if (s[k] != '_')
                buf[n++] = s[k];
        buf[n] = '\0';
        if (!(t = emit(lx, JT_FLOAT, start)))
            return -ENOMEM;
        t->f = strtod(buf, NULL);
        *pos = end;
        return 0;
    }
    {
        int base = 10;
        uint64_t v = 0;
        size_t k = start;

        if (s[k] == '0' && (s[k + 1] == 'x' || s[k + 1] == 'X' || s[k + 1] == 'o' || s[k + 1] == 'O' ||
                            s[k + 1] == 'b' || s[k + 1] == 'B')) {
            char b = (char)(s[k + 1] | 0x20);

            base = b == 'x' ? 16 : b == 'o' ? 8 : 2;
            k += 2;
        } else if (s[k] == '0') {
            /* 0(_?0)*: a decimal zero; "07" lexes as 0 and then 7, as in Jinja */
            k++;
            while ((s[k] == '0') || (s[k] == '_' && s[k + 1] == '0'))
                k++;
            if (!(t = emit(lx, JT_INT, start)))
                return -ENOMEM;
            *pos = k;
            return 0;
        }
        for (size_t nd = 0;; nd++) {
            int d = s[k] == '_' && nd ? hexval(s[k + 1]) : hexval(s[k]);

            if (d < 0 || d >= base)
                break;
            if (s[k] == '_')
                k++;
            if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base || v * (uint64_t)base + (uint64_t)d > INT64_MAX)
                return lex_fail(lx, start, "integer literal too large", 0);
            v = v * (uint64_t)base + (uint64_t)d;
            k++;
        }
        if (k == start + 2 && base != 10)
            return lex_fail(lx, start, "malformed integer literal", 0);
        if (!(t = emit(lx, JT_INT, start)))
            return -ENOMEM;
        t->i = (int64_t)v;
        *pos = k;
        return 0;
    }
}

static const struct { char text[3]; uint8_t op; } ops[] = {
    { "//", OP_FLOORDIV }, { "**", OP_POW }, { "==", OP_EQ }, { "!=", OP_NE }, { "<=", OP_LE },
    { ">=", OP_GE }, { "+", OP_ADD }, { "-", OP_SUB }, { "/", OP_DIV }, { "*", OP_MUL },
    { "%", OP_MOD }, { "~", OP_TILDE }, { "[", OP_LBRACKET }, { "]", OP_RBRACKET },
    { "(", OP_LPAREN }, { ")", OP_RPAREN }, { "{", OP_LBRACE }, { "}", OP_RBRACE },
    { "<", OP_LT }, { ">", OP_GT }, { "=", OP_ASSIGN }, { ".", OP_DOT }, { ":", OP_COLON },
    { "|", OP_PIPE }, { ",", OP_COMMA }, { ";", OP_SEMICOLON },
};

/* The inside of {{ }} or {% %}, up to and including its end. */
static int lex_tag(struct lexer *lx, size_t begin, bool block, size_t *pos, bool *line_starting)
{
    const char *s = lx->s;
    size_t p = *pos;
    char stack[128];     /* closers expected for open ( [ { */
    int depth = 0, rc;

    for (;;) {
        p = skip_space(s, lx->len, p);
        if (p >= lx->len)
            return lex_fail(lx, begin, block ? "unexpected end of template: '%}' missing"
                                             : "unexpected end of template: '}}' missing", 0);
        if (!depth) {
            char sign = 0;
            size_t q = p;

            if ((s[q] == '-' || (block && s[q] == '+')) && s[q + 1] == (block ? '%' : '}') && s[q + 2] == '}')
                sign = s[q++];
            if (s[q] == (block ? '%' : '}') && s[q + 1] == '}') {
                if (!emit(lx, block ? JT_BLOCK_END : JT_VAR_END, p))
                    return -ENOMEM;
                q += 2;
                if (block)
                    q = after_end(lx, q, sign);
                else if (sign == '-')
                    q = skip_space(s, lx->len, q);
                *line_starting = s[q - 1] == '\n';
                *pos = q;
                return 0;
            }
        }
        if (isdig(s[p])) {
            if ((rc = lex_number(lx, &p)))
                return rc;
        } else if (isname0(s[p])) {
            size_t start = p;
            struct jinja_token *t;

            while (isname0(s[p]) || isdig(s[p]))
                p++;
            if (!(t = emit(lx, JT_NAME, start)))
                return -ENOMEM;
            t->p = s + start;
            t->len = p - start;
        } else if (s[p] == '\'' || s[p] == '"') {
            if ((rc = lex_string(lx, &p)))
                return rc;
        } else {
            size_t k;
            struct jinja_token *t;

            for (k = 0; k < ARRAY_LEN(ops); k++)
                if (!strncmp(s + p, ops[k].text, strlen(ops[k].text)))
                    break;
            if (k == ARRAY_LEN(ops))
                return lex_fail(lx, p, "unexpected char", s[p]);
            switch (ops[k].op) {
            case OP_LPAREN: case OP_LBRACKET: case OP_LBRACE:
                if (depth == (int)sizeof stack)
                    return lex_fail(lx, p, "brackets nested too deeply", 0);
                stack[depth++] = ops[k].op == OP_LPAREN ? ')' : ops[k].op == OP_LBRACKET ? ']' : '}';
                break;
            case OP_RPAREN: case OP_RBRACKET: case OP_RBRACE:
                if (!depth || stack[depth - 1] != s[p])
                    return lex_fail(lx, p, "unexpected", s[p]);
                depth--;
                break;
            }
            if (!(t = emit(lx, JT_OP, p)))
                return -ENOMEM;
            t->op = ops[k].op;
            p += strlen(ops[k].text);
        }
    }
}

int jinja__lex(struct arena *a, const char *src, size_t len, struct jinja_token **out, size_t *n,
               char *err)
{
    struct lexer lx = { .a = a, .at_line = 1, .err = err };
    char *s = arena_alloc(a, len + 4);   /* NUL padding lets lookahead run past the end */
    size_t m = 0, pos = 0;
    bool line_starting = true;
    int rc;

    if (!s)
        return -ENOMEM;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[m++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n')
                i++;
        } else {
            s[m++] = src[i];
        }
    }
    if (m && s[m - 1] == '\n')   /* keep_trailing_newline=False */
        m--;
    s[m] = '\0';
    lx.s = s;
    lx.len = m;
    while (pos < m) {
        const char *hit = NULL;
        size_t tag, text_end, p;
        char kind, sign = 0;

        for (const char *q = s + pos; (q = memchr(q, '{', (size_t)(s + m - q))); q++)
            if (q[1] == '{' || q[1] == '%' || q[1] == '#') {
                hit = q;
                break;
            }
        if (!hit) {
            if ((rc = emit_data(&lx, pos, m - pos)))
                return rc;
            break;
        }
        tag = (size_t)(hit - s);
        kind = hit[1];
        p = tag + 2;
        if (s[p] == '-' || s[p] == '+')
            sign = s[p];
        text_end = strip_before(&lx, pos, tag, sign, kind == '{', line_starting);
        if ((rc = emit_data(&lx, pos, text_end - pos)))
            return rc;
        if (kind == '%' && is_raw_begin(&lx, p)) {
            if ((rc = lex_raw(&lx, tag, &p)))
                return rc;
            pos = p;
            line_starting = s[pos - 1] == '\n';
            continue;
        }
        if (sign)
            p++;
        if (kind == '#') {
            size_t q;
            char esign = 0;

            for (q = p; q + 1 < m; q++)
                if (s[q] == '#' && s[q + 1] == '}')
                    break;
            if (q + 1 >= m)
                return lex_fail(&lx, tag, "missing end of comment tag", 0);
            if (q > p && (s[q - 1] == '-' || s[q - 1] == '+'))
                esign = s[q - 1];
            pos = after_end(&lx, q + 2, esign);
            line_starting = s[pos - 1] == '\n';
            continue;
        }
        if (!emit(&lx, kind == '%' ? JT_BLOCK_BEGIN : JT_VAR_BEGIN, tag))
            return -ENOMEM;
        if ((rc = lex_tag(&lx, tag, kind == '%', &p, &line_starting)))
            return rc;
        pos = p;
    }
    if (!emit(&lx, JT_EOF, m))
        return -ENOMEM;
    *out = lx.toks;
    *n = lx.n;
    return 0;
}
