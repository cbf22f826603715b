/* grammar_build.c — building a compiled grammar: rules by name, alternatives as runs of
 * elements ending in GR_END, deduplicated byte sets; then the checks that make the
 * automaton safe to run: every referenced rule defined, no left recursion (which would
 * expand forever), a root. The GBNF parser (gbnf.c) is the only builder. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grammar/grammar_internal.h"
#include "engine/base/util.h"

struct grammar *gr__new(void)
{
    struct grammar *g = calloc(1, sizeof *g);

    if (!g)
        return NULL;
    atomic_init(&g->refs, 1);
    atomic_init(&g->repeat_masks, 0);
    g->root = -1;
    pthread_mutex_init(&g->lock, NULL);
    return g;
}

void gr__free(struct grammar *g)
{
    if (!g)
        return;
    gr__mask_cache_free(g);
    for (int i = 0; i < g->num_rules; i++) {
        free(g->rules[i].name);
        free(g->rules[i].alts);
    }
    free(g->rules);
    free(g->el);
    free(g->reps);
    free(g->marks);
    free(g->mark_of);
    free(g->sets);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

int gr__grow(void **p, int *cap, int need, size_t size)
{
    void *q;
    int c = *cap ? *cap : 16;

    if (need <= *cap)
        return 0;
    while (c < need)
        c *= 2;
    if (!(q = realloc(*p, (size_t)c * size)))
        return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

int gr__find_rule(const struct grammar *g, const char *name)
{
    for (int i = 0; i < g->num_rules; i++)
        if (g->rules[i].name && !strcmp(g->rules[i].name, name))
            return i;
    return -1;
}

int gr__rule(struct grammar *g, const char *name)
{
    struct gr_rule *r;
    int id;

    if (name && (id = gr__find_rule(g, name)) >= 0)
        return id;
    if (gr__grow((void **)&g->rules, &g->cap_rules, g->num_rules + 1,
             sizeof *g->rules))
        return -ENOMEM;
    r = &g->rules[g->num_rules];
    memset(r, 0, sizeof *r);
    if (name && !(r->name = strdup(name)))
        return -ENOMEM;
    return g->num_rules++;
}

int gr__add_alt(struct grammar *g, int rule, const struct gr_elem *elems, int n)
{
    struct gr_rule *r = &g->rules[rule];

    if (gr__grow((void **)&g->el, &g->cap_el, g->num_el + n + 1, sizeof *g->el) ||
        gr__grow((void **)&r->alts, &r->cap_alts, r->num_alts + 1, sizeof *r->alts))
        return -ENOMEM;
    r->alts[r->num_alts++] = g->num_el;
    if (n)
        memcpy(g->el + g->num_el, elems, (size_t)n * sizeof *elems);
    g->num_el += n;
    g->el[g->num_el++] = (struct gr_elem){ .kind = GR_END };
    r->defined = true;
    return 0;
}

int gr__add_set(struct grammar *g, const uint32_t set[8])
{
    for (int i = 0; i < g->num_sets; i++)
        if (!memcmp(g->sets[i], set, sizeof g->sets[i]))
            return i;
    if (gr__grow((void **)&g->sets, &g->cap_sets, g->num_sets + 1, sizeof *g->sets))
        return -ENOMEM;
    memcpy(g->sets[g->num_sets], set, sizeof g->sets[0]);
    return g->num_sets++;
}

int gr__add_rep(struct grammar *g, int unit, int min, int max)
{
    if (gr__grow((void **)&g->reps, &g->cap_reps, g->num_reps + 1, sizeof *g->reps))
        return -ENOMEM;
    g->reps[g->num_reps] = (struct gr_rep){ .unit = unit, .min = min, .max = max };
    return g->num_reps++;
}

int gr__rep_mark(struct grammar *g, int el, int rep, int done)
{
    if (gr__grow((void **)&g->marks, &g->cap_marks, g->num_marks + 1, sizeof *g->marks))
        return -ENOMEM;
    g->marks[g->num_marks++] = (struct gr_rep_mark){ .el = el, .rep = rep, .done = done };
    return 0;
}

static int range_set(struct grammar *g, int lo, int hi)
{
    uint32_t set[8] = { 0 };

    for (int b = lo; b <= hi; b++)
        set[b >> 5] |= 1u << (b & 31);
    return gr__add_set(g, set);
}

int gr__utf8_multibyte_rule(struct grammar *g)
{
    /* Well-formed UTF-8 only (Unicode table 3-7): no overlongs, surrogates or values past
     * U+10FFFF, so that every output decodes to the same text it was checked as. */
    static const int table[][4][2] = {
        { { 0xC2, 0xDF }, { 0x80, 0xBF } },
        { { 0xE0, 0xE0 }, { 0xA0, 0xBF }, { 0x80, 0xBF } },
        { { 0xE1, 0xEC }, { 0x80, 0xBF }, { 0x80, 0xBF } },
        { { 0xED, 0xED }, { 0x80, 0x9F }, { 0x80, 0xBF } },
        { { 0xEE, 0xEF }, { 0x80, 0xBF }, { 0x80, 0xBF } },
        { { 0xF0, 0xF0 }, { 0x90, 0xBF }, { 0x80, 0xBF }, { 0x80, 0xBF } },
        { { 0xF1, 0xF3 }, { 0x80, 0xBF }, { 0x80, 0xBF }, { 0x80, 0xBF } },
        { { 0xF4, 0xF4 }, { 0x80, 0x8F }, { 0x80, 0xBF }, { 0x80, 0xBF } },
    };
    int id = gr__find_rule(g, "__utf8_multibyte");

    if (id >= 0)
        return id;
    if ((id = gr__rule(g, "__utf8_multibyte")) < 0)
        return id;
    for (size_t a = 0; a < ARRAY_LEN(table); a++) {
        struct gr_elem e[4];
        int n = 0;

        for (; n < 4 && table[a][n][0]; n++) {
            int s = range_set(g, table[a][n][0], table[a][n][1]);
            if (s < 0)
                return s;
            e[n] = (struct gr_elem){ .kind = GR_SET, .arg = s };
        }
        if (gr__add_alt(g, id, e, n))
            return -ENOMEM;
    }
    return id;
}

/* ---- checks ---- */

static void compute_nullable(const struct grammar *g, bool *nullable)
{
    bool changed = true;

    while (changed) {
        changed = false;
        for (int r = 0; r < g->num_rules; r++) {
            if (nullable[r])
                continue;
            for (int a = 0; a < g->rules[r].num_alts && !nullable[r]; a++) {
                const struct gr_elem *e = g->el + g->rules[r].alts[a];
                while (e->kind == GR_RULE && nullable[e->arg])
                    e++;
                if (e->kind == GR_END)
                    nullable[r] = changed = true;
            }
        }
    }
}

/* Rules with at least one finite sentence (every element of an alternative productive). */
static void compute_productive(const struct grammar *g, bool *productive)
{
    bool changed = true;

    while (changed) {
        changed = false;
        for (int r = 0; r < g->num_rules; r++) {
            if (productive[r])
                continue;
            for (int a = 0; a < g->rules[r].num_alts && !productive[r]; a++) {
                const struct gr_elem *e = g->el + g->rules[r].alts[a];
                while (e->kind != GR_END && (e->kind != GR_RULE || productive[e->arg]))
                    e++;
                if (e->kind == GR_END)
                    productive[r] = changed = true;
            }
        }
    }
}

/* Depth-first search over "r may start with rule x" edges; state 1 = on the path. */
static int left_dfs(const struct grammar *g, int r, const bool *nullable, uint8_t *state, char *err)
{
    state[r] = 1;
    for (int a = 0; a < g->rules[r].num_alts; a++)
        for (const struct gr_elem *e = g->el + g->rules[r].alts[a]; e->kind == GR_RULE; e++) {
            if (state[e->arg] == 1) {
                errf(err, "grammar: rule '%s' is left-recursive (it can reach itself without "
                     "consuming a byte)", g->rules[e->arg].name ? g->rules[e->arg].name : "(group)");
                return -EINVAL;
            }
            if (state[e->arg] == 0 && left_dfs(g, e->arg, nullable, state, err))
                return -EINVAL;
            if (!nullable[e->arg])
                break;
        }
    state[r] = 2;
    return 0;
}

int gr__finish(struct grammar *g, const char *root, char *err)
{
    bool *nullable;
    uint8_t *state;
    int rc = 0;

    for (int r = 0; r < g->num_rules; r++)
        if (!g->rules[r].defined) {
            errf(err, "grammar: rule '%s' is used but not defined", g->rules[r].name);
            return -EINVAL;
        }
    if ((g->root = gr__find_rule(g, root)) < 0) {
        errf(err, "grammar: no rule '%s' (the start rule)", root);
        return -EINVAL;
    }
    if (g->num_marks) {
        /* by element, for the mask code's scan of a stack */
        if (!(g->mark_of = malloc((size_t)g->num_el * sizeof *g->mark_of)))
            return -ENOMEM;
        memset(g->mark_of, 0xff, (size_t)g->num_el * sizeof *g->mark_of);
        for (int i = 0; i < g->num_marks; i++)
            g->mark_of[g->marks[i].el] = i;
    }
    nullable = calloc((size_t)g->num_rules + 1, sizeof *nullable);
    state = calloc((size_t)g->num_rules + 1, sizeof *state);
    if (!nullable || !state) {
        free(nullable);
        free(state);
        return -ENOMEM;
    }
    compute_nullable(g, nullable);
    for (int r = 0; r < g->num_rules && !rc; r++)
        if (state[r] == 0)
            rc = left_dfs(g, r, nullable, state, err);
    /* nullable is reused: a root without a finite sentence would run to max_tokens */
    memset(nullable, 0, (size_t)g->num_rules * sizeof *nullable);
    compute_productive(g, nullable);
    if (!rc && !nullable[g->root]) {
        errf(err, "grammar: rule '%s' has no finite sentence (every alternative recurses forever)", root);
        rc = -EINVAL;
    }
    free(nullable);
    free(state);
    return rc;
}
