/* grammar.c — compiling: a front end turns its source into GBNF text, gbnf.c builds the
 * rules, the result is bound to a vocabulary. Also references, the small front ends (any
 * JSON object, a choice list) and the string helpers the front ends share. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grammar/grammar_internal.h"
#include "engine/base/buf.h"    /* gr__putn grows through buf_put */
#include "engine/base/util.h"

/* ---- strings ---- */

/* gr_str is struct buf (engine/base/buf.h) with a sticky out-of-memory flag, so that the
 * builders can append without checking each call: the growth is buf's. */
void gr__putn(struct gr_str *s, const char *t, size_t n)
{
    struct buf b = { s->p, s->len, s->cap };

    if (s->oom)
        return;
    if (buf_put(&b, t, n)) {
        s->oom = true;
        return;
    }
    s->p = b.p;
    s->len = b.len;
    s->cap = b.cap;
}

void gr__puts(struct gr_str *s, const char *t)
{
    gr__putn(s, t, strlen(t));
}

void gr__printf(struct gr_str *s, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf) {
        s->oom = true;   /* only short pieces are printed */
        return;
    }
    gr__putn(s, buf, (size_t)n);
}

void gr__put_literal(struct gr_str *s, const char *t, size_t n)
{
    gr__putn(s, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c == '"' || c == '\\')
            gr__printf(s, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            gr__printf(s, "\\x%02X", c);
        else
            gr__putn(s, (const char *)&c, 1);
    }
    gr__putn(s, "\"", 1);
}

/* ---- small front ends ---- */

/* Whitespace between JSON tokens is bounded (a space, or a newline and up to 20 spaces of
 * indent), so that a model cannot spend its whole budget on blanks. A number's exponent has
 * at most two digits: 18 digits and e99 stay within a double, where e504 would parse as
 * infinity (cJSON prints that back as null, and a tool call's argument changed). */
#define JSON_COMMON \
    "ws ::= ( \" \" | \"\\n\" \" \"{0,20} )?\n" \
    "json-value ::= json-object | json-array | json-string | json-number | \"true\" | \"false\" | \"null\"\n" \
    "json-object ::= \"{\" ws ( json-string ws \":\" ws json-value ws ( \",\" ws json-string ws \":\" ws json-value ws )* )? \"}\"\n" \
    "json-array ::= \"[\" ws ( json-value ws ( \",\" ws json-value ws )* )? \"]\"\n" \
    "json-string ::= \"\\\"\" json-char* \"\\\"\"\n" \
    "json-char ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" json-u )\n" \
    "json-hex ::= [0-9a-fA-F]\n" \
    "json-u ::= [1-9a-cA-Ce-fE-F] json-hex{3} | [dD] [0-7] json-hex{2} | \"0\" [1-9a-fA-F] json-hex{2} | \"00\" [1-9a-fA-F] json-hex | \"000\" [1-9a-fA-F]\n" \
    "json-int ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,17} )\n" \
    "json-number ::= json-int ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,2} )?\n"

const char *gr__json_common(void)
{
    return JSON_COMMON;
}

int gr__json_object_gbnf(char **out, char *err)
{
    struct gr_str s = { 0 };

    gr__puts(&s, "root ::= json-object\n" JSON_COMMON);
    if (s.oom) {
        free(s.p);
        errf(err, "grammar: out of memory");
        return -ENOMEM;
    }
    *out = s.p;
    return 0;
}

int gr__choice_to_gbnf(const char *src, size_t len, char **out, char *err)
{
    cJSON *a = cJSON_ParseWithLength(src, len), *it;
    struct gr_str s = { 0 };
    int n = 0;

    if (!cJSON_IsArray(a)) {
        cJSON_Delete(a);
        errf(err, "choice: expected a JSON array of strings");
        return -EINVAL;
    }
    gr__puts(&s, "root ::= ");
    cJSON_ArrayForEach(it, a) {
        if (!cJSON_IsString(it)) {
            errf(err, "choice: item %d is not a string", n);
            cJSON_Delete(a);
            free(s.p);
            return -EINVAL;
        }
        if (n++)
            gr__puts(&s, " | ");
        gr__put_literal(&s, it->valuestring, strlen(it->valuestring));
    }
    cJSON_Delete(a);
    if (n == 0) {
        free(s.p);
        errf(err, "choice: the list is empty");
        return -EINVAL;
    }
    gr__puts(&s, "\n");
    if (s.oom) {
        free(s.p);
        errf(err, "grammar: out of memory");
        return -ENOMEM;
    }
    *out = s.p;
    return 0;
}

/* ---- compiling ---- */

int grammar_to_gbnf(enum grammar_kind kind, const char *src, size_t len, char **gbnf, char *err)
{
    *gbnf = NULL;
    switch (kind) {
    case GRAMMAR_GBNF:
        if (!(*gbnf = malloc(len + 1))) {
            errf(err, "grammar: out of memory");
            return -ENOMEM;
        }
        memcpy(*gbnf, src, len);
        (*gbnf)[len] = '\0';
        return 0;
    case GRAMMAR_JSON_SCHEMA:
        return gr__json_schema_to_gbnf(src, len, gbnf, err);
    case GRAMMAR_JSON_OBJECT:
        return gr__json_object_gbnf(gbnf, err);
    case GRAMMAR_REGEX:
        return gr__regex_to_gbnf(src, len, gbnf, err);
    case GRAMMAR_CHOICE:
        return gr__choice_to_gbnf(src, len, gbnf, err);
    }
    errf(err, "grammar: unknown kind %d", (int)kind);
    return -EINVAL;
}

int grammar_compile(struct grammar **out, enum grammar_kind kind, const char *src, size_t len,
                    const struct grammar_vocab *v, char *err)
{
    struct grammar *g;
    char *text = NULL;
    int rc;

    *out = NULL;
    if ((rc = grammar_to_gbnf(kind, src, len, &text, err)))
        return rc;
    if (!(g = gr__new())) {
        free(text);
        errf(err, "grammar: out of memory");
        return -ENOMEM;
    }
    g->vocab = v;
    rc = gr__parse_gbnf(g, text, strlen(text), err);
    free(text);
    if (!rc) {
        /* A start that already overflows the automaton's bounds could never be used. */
        struct grammar_matcher *m;
        if ((rc = grammar_matcher_create(&m, g)) == 0) {
            if (gr__matcher_overflowed(m)) {
                errf(err, "grammar: more than %d alternatives or %d nested rules are open at the "
                     "start", GR_MAX_STACKS, GR_MAX_STACK);
                rc = -EINVAL;
            }
            grammar_matcher_destroy(m);
        } else {
            errf(err, "grammar: out of memory");
        }
    }
    if (rc) {
        gr__free(g);
        return rc;
    }
    *out = g;
    return 0;
}

struct grammar *grammar_ref(struct grammar *g)
{
    atomic_fetch_add(&g->refs, 1);
    return g;
}

void grammar_unref(struct grammar *g)
{
    if (g && atomic_fetch_sub(&g->refs, 1) == 1)
        gr__free(g);
}

int grammar_mask_words(const struct grammar *g)
{
    return g->vocab ? g->vocab->words : 0;
}

void grammar_stats(const struct grammar *g, int *num_masks, int *num_rules, int *num_elems)
{
    *num_masks = g->num_masks;
    *num_rules = g->num_rules;
    *num_elems = g->num_el;
}
