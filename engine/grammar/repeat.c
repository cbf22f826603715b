/* repeat.c — masks inside a repetition (x{m,n}: a JSON string with minLength/maxLength, a
 * regex's {m,n}; also x* and x+) without a trie walk per count. gbnf.c compiles these as a
 * chain of count rules, so the frame a unit returns to names the count k of units done once
 * the current one ends; the automaton inside a unit is the same at every k. A mask there is
 *   {tokens that stay inside the repetition, starting at most n - k more units}
 *   ∪ {tokens that end the current unit and j more (m - k <= j <= n - k), then leave it
 *      with bytes that what follows the repetition takes}.
 * Both sets come from a table made once per (unit, state inside the current unit) by one
 * walk of the vocabulary trie that counts units instead of stopping at n, and shared by
 * every grammar of the vocabulary (the unit's rules in canonical form are its key: the same
 * JSON string in 64 schemas makes one table, not 64). The first set is a prefix of the
 * tokens sorted by the units they start (cumulative bitmaps for small counts), the second
 * the tokens whose walk leaves the repetition at a unit boundary, with the count and the
 * split point; those are checked against what follows once per context (in JSON, the
 * string's closing `"` and the few bytes after it) and kept. So a mask at any count costs
 * an OR of one bitmap plus a pass over a few hundred ids, where the walk cost a millisecond
 * at 128k ids (cf. XGrammar's adaptive masks; here the count is abstracted instead).
 *
 * The split is exact only when a unit boundary is unambiguous (no unit is a proper prefix
 * of another: the units' automaton never accepts and goes on) and what follows cannot begin
 * with a byte that may begin a unit; where either fails the masks come from mask.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grammar/grammar_internal.h"

#define GR_RUN_DENSE 16          /* counts 0..15 get cumulative bitmaps in a dense table: with
                                    more room only the few tokens of 17+ units are left out,
                                    and those are listed by id (16 x 16 KB at 128k ids) */
#define GR_UNIT_MAX_QSETS 256    /* states inside one unit that get tables */
#define GR_MAX_AFTERS 4096       /* contexts kept per grammar */
#define GR_SHARED_RUN_BYTES (64u << 20)   /* tables kept per vocabulary */
#define GR_REPEAT_MAX_STACKS 64  /* past this many stacks (an ambiguous grammar), grouping them
                                    costs more than it saves: mask.c does it all */

struct gr_exit {
    int32_t id;
    uint16_t j;                  /* units ended after the current one, before leaving */
    uint16_t off;                /* bytes of the token inside the repetition */
};

/* The table of one state inside a unit (immutable once made). */
struct gr_run {
    bool usable;                 /* false: masks from mask.c */
    int dense;                   /* counts 0..dense-1 have bitmaps in cum; 0: none */
    uint32_t *cum;               /* [dense][words]: tokens staying inside, count <= c */
    int32_t *ids;                /* [num_ids] the rest of them, by count */
    uint16_t *cnt;               /* [num_ids] units each starts after the current one */
    int num_ids;
    struct gr_exit *exits;       /* [num_exits] tokens leaving at a boundary, by exit byte */
    int32_t by_byte[257];        /* exits[by_byte[b], by_byte[b + 1]) leave with byte b */
    int num_exits;
};

struct gr_qset {
    uint64_t hash;
    struct gr_stacks set;        /* the frames above the count frame, per stack */
    const struct gr_run *run;    /* borrowed from the vocabulary's tables; NULL: none (bounds) */
};

/* A table in the vocabulary's cache, by the canonical form of its unit and state. */
struct gr_shared {
    uint64_t hash;
    int32_t *key;                /* [key_len] see canon_key */
    int key_len;
    struct gr_run *run;          /* owned */
};

struct gr_shared_runs {
    struct gr_shared *e;
    int n, cap;
    size_t bytes;
};

struct gr_unit {
    int32_t rule;
    uint32_t first[8];           /* bytes that may begin a unit */
    bool nullable;               /* a unit may be empty: no tables */
    struct gr_qset *q;
    int num_q, cap_q;
};

/* The exits of one table that one context takes (immutable once made). */
struct gr_after {
    const struct gr_run *run;
    uint64_t hash;
    int32_t *ctx;                /* [ctx_len] the frames below the count frame */
    int ctx_len;
    bool usable;                 /* false: the context may begin with a unit's byte */
    int32_t *ids;                /* [n] */
    uint16_t *j;                 /* [n] */
    int n;
};

struct gr_units {
    struct gr_unit *unit;
    int num_unit, cap_unit;
    struct gr_after **after;
    int num_after, cap_after;
};

static void set_bits_of_tops(const struct grammar *g, const struct gr_stacks *s, uint32_t out[8])
{
    memset(out, 0, 8 * sizeof *out);
    for (int i = 0; i < s->n; i++) {
        const struct gr_elem *e = &g->el[s->pos[s->off[i + 1] - 1]];
        if (e->kind == GR_BYTE)
            out[e->arg >> 5] |= 1u << (e->arg & 31);
        else if (e->kind == GR_SET)
            for (int w = 0; w < 8; w++)
                out[w] |= g->sets[e->arg][w];
    }
}

/* The frames of one unit's start: every alternative of its rule, expanded. */
static int unit_start(const struct grammar *g, int rule, struct gr_stacks *out, struct gr_scratch *sc)
{
    gr__stacks_clear(out);
    for (int a = 0; a < g->rules[rule].num_alts; a++) {
        int32_t start = g->rules[rule].alts[a];
        int rc = gr__push_expanded(g, out, sc, &start, 1);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- making a table: one walk of the trie that counts units ---- */

struct run_build {
    struct grammar *g;
    struct gr_walk *w;
    int s0;                      /* the walk state of a unit's start */
    int32_t *full;               /* [num_full] tokens staying inside */
    uint16_t *full_cnt;
    int num_full, cap_full, cap_full_cnt;
    struct gr_exit *ex;
    int num_ex, cap_ex;
    bool bad;                    /* not a clean split: no table */
};

static void add_full(struct run_build *rb, int32_t id, int cnt)
{
    if (gr__grow((void **)&rb->full, &rb->cap_full, rb->num_full + 1, sizeof *rb->full) ||
        gr__grow((void **)&rb->full_cnt, &rb->cap_full_cnt, rb->num_full + 1, sizeof *rb->full_cnt)) {
        rb->w->failed = true;
        return;
    }
    rb->full_cnt[rb->num_full] = (uint16_t)cnt;
    rb->full[rb->num_full++] = id;
}

/* Visits trie node `node` (depth bytes deep) in walk state sid, cnt units begun after the
 * current one. A state that has ended a unit (accept, no stack left) is a boundary: the
 * next byte begins a unit (from s0) or, when no unit takes it, leaves the repetition. */
static void run_visit(struct run_build *rb, int node, int sid, int cnt, int depth)
{
    const struct grammar_vocab *v = rb->g->vocab;
    const struct gv_node *nd = &v->node[node];
    const struct gr_stacks *s = &rb->w->state[sid];
    bool boundary = s->accept;

    if (s->overflow || (s->accept && s->n > 0) || cnt > UINT16_MAX || depth > UINT16_MAX) {
        rb->bad = true;          /* a unit may end and go on: the boundary is ambiguous */
        return;
    }
    for (int k = nd->tok_lo; k < nd->own_hi && !rb->w->failed; k++)
        add_full(rb, v->order[k], cnt);
    for (int c = node + 1; c < nd->end && !rb->bad && !rb->w->failed; c = v->node[c].end) {
        uint8_t b = v->node[c].byte;
        int next = gr__walk_next(rb->g, rb->w, boundary ? rb->s0 : sid, b);

        if (next != GR_DEAD) {
            run_visit(rb, c, next, boundary ? cnt + 1 : cnt, depth + 1);
            continue;
        }
        if (!boundary)
            continue;            /* dies inside a unit: refused wherever the count is */
        for (int k = v->node[c].tok_lo; k < v->node[c].tok_hi; k++) {
            if (gr__grow((void **)&rb->ex, &rb->cap_ex, rb->num_ex + 1, sizeof *rb->ex)) {
                rb->w->failed = true;
                return;
            }
            rb->ex[rb->num_ex++] = (struct gr_exit){ v->order[k], (uint16_t)cnt, (uint16_t)depth };
        }
    }
}

static void run_free(struct gr_run *r)
{
    if (!r)
        return;
    free(r->cum);
    free(r->ids);
    free(r->cnt);
    free(r->exits);
    free(r);
}

static size_t run_bytes(const struct gr_run *r, int words)
{
    return sizeof *r + (size_t)r->dense * (size_t)words * 4 + (size_t)r->num_ids * 6 +
           (size_t)r->num_exits * sizeof *r->exits;
}

/* Sorts the walk's results into r: tokens staying inside by count, exits by byte. */
static int run_finish(struct gr_run *r, struct run_build *rb, const struct grammar_vocab *v)
{
    int max_cnt = 0, *start;
    int32_t at[257] = { 0 };

    for (int i = 0; i < rb->num_full; i++)
        max_cnt = rb->full_cnt[i] > max_cnt ? rb->full_cnt[i] : max_cnt;
    /* bitmaps pay when the ids would cost more to apply than the words of a bitmap */
    r->dense = rb->num_full > 2 * v->words ? (max_cnt + 1 < GR_RUN_DENSE ? max_cnt + 1 : GR_RUN_DENSE) : 0;
    if (r->dense && !(r->cum = calloc((size_t)r->dense * (size_t)v->words, sizeof *r->cum)))
        return -ENOMEM;
    if (!(start = calloc((size_t)max_cnt + 2, sizeof *start)))
        return -ENOMEM;
    for (int i = 0; i < rb->num_full; i++) {
        int c = rb->full_cnt[i];
        if (c < r->dense)
            r->cum[(size_t)c * v->words + (rb->full[i] >> 5)] |= 1u << (rb->full[i] & 31);
        else
            start[c + 1]++;
    }
    for (int c = 1; c < r->dense; c++)
        for (int w = 0; w < v->words; w++)
            r->cum[(size_t)c * v->words + w] |= r->cum[(size_t)(c - 1) * v->words + w];
    for (int c = 0; c <= max_cnt; c++)
        start[c + 1] += start[c];
    r->num_ids = start[max_cnt + 1];
    if (r->num_ids && (!(r->ids = malloc((size_t)r->num_ids * sizeof *r->ids)) ||
                       !(r->cnt = malloc((size_t)r->num_ids * sizeof *r->cnt)))) {
        free(start);
        return -ENOMEM;
    }
    for (int i = 0; i < rb->num_full; i++) {
        int c = rb->full_cnt[i];
        if (c >= r->dense) {
            r->ids[start[c]] = rb->full[i];
            r->cnt[start[c]++] = (uint16_t)c;
        }
    }
    free(start);
    /* exits by the byte that leaves: a context looks only at the bytes it may begin with */
    r->num_exits = rb->num_ex;
    if (rb->num_ex && !(r->exits = malloc((size_t)rb->num_ex * sizeof *r->exits)))
        return -ENOMEM;
    for (int i = 0; i < rb->num_ex; i++)
        at[(uint8_t)v->bytes[v->off[rb->ex[i].id] + rb->ex[i].off] + 1]++;
    for (int b = 0; b < 256; b++)
        at[b + 1] += at[b];
    memcpy(r->by_byte, at, sizeof at);
    for (int i = 0; i < rb->num_ex; i++)
        r->exits[at[(uint8_t)v->bytes[v->off[rb->ex[i].id] + rb->ex[i].off]]++] = rb->ex[i];
    return 0;
}

/* The table of the state q (frames above the count frame) of a unit of rule `rule`; NULL
 * without memory. Under g->lock. */
static struct gr_run *run_make(struct grammar *g, int rule, const struct gr_stacks *q)
{
    struct gr_run *r = calloc(1, sizeof *r);
    struct run_build rb = { .g = g };
    int start;

    if (!r || !(rb.w = gr__walk_get(g)))
        goto fail;
    gr__walk_reset(rb.w);
    rb.w->failed = false;
    if ((start = gr__walk_intern(rb.w, q)) < 0 || unit_start(g, rule, &rb.w->tmp, &rb.w->sc) ||
        (rb.s0 = gr__walk_intern(rb.w, &rb.w->tmp)) < 0)
        goto fail;
    run_visit(&rb, 0, start, 0, 0);
    gr__walk_trim(rb.w);
    if (rb.w->failed)
        goto fail;
    if (!rb.bad) {
        if (run_finish(r, &rb, g->vocab))
            goto fail;
        r->usable = true;
    }
    free(rb.full);
    free(rb.full_cnt);
    free(rb.ex);
    return r;
fail:
    if (rb.w)
        gr__walk_trim(rb.w);
    free(rb.full);
    free(rb.full_cnt);
    free(rb.ex);
    run_free(r);
    return NULL;
}

/* ---- lookups, under g->lock ---- */

static struct gr_units *units_of(struct grammar *g)
{
    if (!g->units)
        g->units = calloc(1, sizeof *g->units);
    return g->units;
}

static struct gr_unit *unit_find(struct grammar *g, int rule, struct gr_scratch *sc, struct gr_stacks *tmp)
{
    struct gr_units *us = units_of(g);
    struct gr_unit *u;

    if (!us)
        return NULL;
    for (int i = 0; i < us->num_unit; i++)
        if (us->unit[i].rule == rule)
            return &us->unit[i];
    if (gr__grow((void **)&us->unit, &us->cap_unit, us->num_unit + 1, sizeof *us->unit))
        return NULL;
    u = &us->unit[us->num_unit];
    memset(u, 0, sizeof *u);
    u->rule = rule;
    if (unit_start(g, rule, tmp, sc))
        return NULL;
    u->nullable = tmp->accept || tmp->overflow;
    set_bits_of_tops(g, tmp, u->first);
    us->num_unit++;
    return u;
}

/* ---- tables shared by the grammars of a vocabulary ---- */

struct keybuf {
    int32_t *p;
    int n, cap;
    int32_t *canon;              /* [num_rules] canonical number of a rule, -1: none yet */
    int32_t *queue;              /* [num_rules] rules by canonical number */
    int num;
    bool oom;
};

static void put(struct keybuf *k, int32_t x)
{
    if (k->n == k->cap && gr__grow((void **)&k->p, &k->cap, k->n + 1, sizeof *k->p)) {
        k->oom = true;
        return;
    }
    k->p[k->n++] = x;
}

static int32_t canon_rule(struct keybuf *k, int rule)
{
    if (k->canon[rule] < 0) {
        k->canon[rule] = k->num;
        k->queue[k->num++] = rule;
    }
    return k->canon[rule];
}

/* The rule of every element, for canon_key (made once per grammar). */
static int el_rules(struct grammar *g)
{
    if (g->el_rule)
        return 0;
    if (!(g->el_rule = malloc(((size_t)g->num_el + 1) * sizeof *g->el_rule)))
        return -ENOMEM;
    for (int r = 0; r < g->num_rules; r++)
        for (int a = 0; a < g->rules[r].num_alts; a++)
            for (int e = g->rules[r].alts[a];; e++) {
                g->el_rule[e] = r;
                if (g->el[e].kind == GR_END)
                    break;
            }
    return 0;
}

/* A table depends on the unit's rules and the state q, not on where they sit in the
 * grammar: the key is q's frames as (rule, alternative, offset) and every rule they reach,
 * numbered in the order met, so that the same JSON string in 64 schemas (their rule ids
 * differ) meets one table. Returns 0 or -ENOMEM; k->p[k->n] is the key. */
static int canon_key(struct grammar *g, int unit, const struct gr_stacks *q, struct keybuf *k)
{
    if (el_rules(g) || !(k->canon = malloc((size_t)g->num_rules * sizeof *k->canon)) ||
        !(k->queue = malloc((size_t)g->num_rules * sizeof *k->queue)))
        return -ENOMEM;
    memset(k->canon, 0xff, (size_t)g->num_rules * sizeof *k->canon);
    canon_rule(k, unit);
    put(k, q->n);
    for (int i = 0; i < q->n; i++) {
        put(k, q->off[i + 1] - q->off[i]);
        for (int f = q->off[i]; f < q->off[i + 1]; f++) {
            int32_t pos = q->pos[f], r = g->el_rule[pos];
            const struct gr_rule *rule = &g->rules[r];
            int a = rule->num_alts - 1;

            while (a > 0 && rule->alts[a] > pos)
                a--;
            put(k, canon_rule(k, r));
            put(k, a);
            put(k, pos - rule->alts[a]);
        }
    }
    for (int i = 0; i < k->num; i++) {
        const struct gr_rule *rule = &g->rules[k->queue[i]];

        put(k, -1);
        put(k, rule->num_alts);
        for (int a = 0; a < rule->num_alts; a++)
            for (const struct gr_elem *e = g->el + rule->alts[a];; e++) {
                put(k, e->kind);
                if (e->kind == GR_END)
                    break;
                if (e->kind == GR_BYTE)
                    put(k, e->arg);
                else if (e->kind == GR_RULE)
                    put(k, canon_rule(k, e->arg));
                else
                    for (int w = 0; w < 8; w++)
                        put(k, (int32_t)g->sets[e->arg][w]);
            }
    }
    return k->oom ? -ENOMEM : 0;
}

static uint64_t hash_ints(uint64_t h, const int32_t *p, int n)
{
    for (int i = 0; i < n; i++) {
        h ^= (uint32_t)p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Under v->runs_lock: the shared table of key k, or NULL. */
static struct gr_run *shared_find(const struct grammar_vocab *v, const struct keybuf *k, uint64_t h)
{
    const struct gr_shared_runs *sr = v->runs;

    for (int i = 0; sr && i < sr->n; i++)
        if (sr->e[i].hash == h && sr->e[i].key_len == k->n &&
            !memcmp(sr->e[i].key, k->p, (size_t)k->n * sizeof *k->p))
            return sr->e[i].run;
    return NULL;
}

/* The shared table of key k, made here (outside the vocabulary's lock: a walk takes a
 * millisecond or more, and other grammars' masks go on meanwhile) when no grammar has made
 * it yet. NULL without memory or past the cache's bound. Under g->lock. */
static struct gr_run *shared_run(struct grammar *g, int unit, const struct gr_stacks *q, struct keybuf *k)
{
    struct grammar_vocab *v = (struct grammar_vocab *)g->vocab;   /* its runs cache only */
    uint64_t h = hash_ints(0xcbf29ce484222325ull, k->p, k->n);
    struct gr_run *r, *made;
    struct gr_shared_runs *sr;
    bool full;

    pthread_mutex_lock(&v->runs_lock);
    r = shared_find(v, k, h);
    full = v->runs && v->runs->bytes >= GR_SHARED_RUN_BYTES;
    pthread_mutex_unlock(&v->runs_lock);
    if (r || full)
        return r;
    if (!(made = run_make(g, unit, q)))
        return NULL;
    pthread_mutex_lock(&v->runs_lock);
    if ((r = shared_find(v, k, h))) {           /* another grammar made it meanwhile */
        pthread_mutex_unlock(&v->runs_lock);
        run_free(made);
        return r;
    }
    if (!v->runs)
        v->runs = calloc(1, sizeof *v->runs);
    sr = v->runs;
    if (!sr || gr__grow((void **)&sr->e, &sr->cap, sr->n + 1, sizeof *sr->e)) {
        pthread_mutex_unlock(&v->runs_lock);
        run_free(made);
        return NULL;
    }
    sr->e[sr->n++] = (struct gr_shared){ .hash = h, .key = k->p, .key_len = k->n, .run = made };
    k->p = NULL;                                  /* the cache keeps the key */
    sr->bytes += run_bytes(made, v->words) + (size_t)k->n * sizeof *k->p;
    pthread_mutex_unlock(&v->runs_lock);
    return made;
}

void gr__repeat_vocab_free(struct grammar_vocab *v)
{
    struct gr_shared_runs *sr = v->runs;

    if (!sr)
        return;
    for (int i = 0; i < sr->n; i++) {
        free(sr->e[i].key);
        run_free(sr->e[i].run);
    }
    free(sr->e);
    free(sr);
    v->runs = NULL;
}

void grammar_vocab_stats(const struct grammar_vocab *v, int *num_tables, size_t *bytes)
{
    struct grammar_vocab *mv = (struct grammar_vocab *)v;   /* its lock only */

    pthread_mutex_lock(&mv->runs_lock);
    *num_tables = v->runs ? v->runs->n : 0;
    *bytes = v->runs ? v->runs->bytes : 0;
    pthread_mutex_unlock(&mv->runs_lock);
}

/* The table for state q of unit u, found on first use; NULL when none can be had. */
static const struct gr_run *run_for(struct grammar *g, struct gr_unit *u, const struct gr_stacks *q)
{
    uint64_t h = gr__stacks_hash(q);
    struct keybuf k = { 0 };
    struct gr_qset *e;
    int rc;

    for (int i = 0; i < u->num_q; i++)
        if (u->q[i].hash == h && gr__stacks_equal(&u->q[i].set, q))
            return u->q[i].run && u->q[i].run->usable ? u->q[i].run : NULL;
    if (u->num_q >= GR_UNIT_MAX_QSETS || gr__grow((void **)&u->q, &u->cap_q, u->num_q + 1, sizeof *u->q))
        return NULL;
    e = &u->q[u->num_q];
    memset(e, 0, sizeof *e);
    /* without a table (no memory, or the vocabulary's cache is full) the state is
     * remembered as such: its masks come from mask.c */
    rc = canon_key(g, u->rule, q, &k);
    if (!rc)
        e->run = shared_run(g, u->rule, q, &k);
    free(k.p);
    free(k.canon);
    free(k.queue);
    if (rc || gr__stacks_copy(&e->set, q)) {
        gr__stacks_free(&e->set);    /* not remembered: tried again later */
        return NULL;
    }
    e->hash = h;
    g->mask_bytes += sizeof *e + ((size_t)q->n + 1 + (size_t)q->len) * 4;
    u->num_q++;
    return e->run && e->run->usable ? e->run : NULL;
}

static void after_free(struct gr_after *a)
{
    if (!a)
        return;
    free(a->ctx);
    free(a->ids);
    free(a->j);
    free(a);
}

/* Which exits of r the context ctx[len] (the frames below the count frame) takes. */
static struct gr_after *after_make(struct grammar *g, const struct gr_unit *u, const struct gr_run *r,
                                   const int32_t *ctx, int len, uint64_t h, struct gr_stacks *e,
                                   struct gr_stacks *a, struct gr_stacks *b, struct gr_scratch *sc)
{
    const struct grammar_vocab *v = g->vocab;
    struct gr_after *af = calloc(1, sizeof *af);
    uint32_t first[8];
    int cap = 0, cap_j = 0;

    if (!af || !(af->ctx = malloc(((size_t)len + 1) * sizeof *af->ctx)))
        goto fail;
    memcpy(af->ctx, ctx, (size_t)len * sizeof *ctx);
    af->ctx_len = len;
    af->run = r;
    af->hash = h;
    gr__stacks_clear(e);
    if (gr__push_expanded(g, e, sc, ctx, len))
        goto fail;
    if (e->overflow)
        return af;               /* usable stays false */
    set_bits_of_tops(g, e, first);
    for (int w = 0; w < 8; w++)
        if (first[w] & u->first[w])
            return af;           /* it could leave at an earlier boundary too */
    for (int byte = 0; byte < 256; byte++) {
        if (!(first[byte >> 5] >> (byte & 31) & 1))
            continue;
        for (int x = r->by_byte[byte]; x < r->by_byte[byte + 1]; x++) {
            const struct gr_exit *ex = &r->exits[x];
            const char *t = v->bytes + v->off[ex->id] + ex->off;
            size_t n = v->off[ex->id + 1] - v->off[ex->id] - ex->off;
            bool ok = false;

            for (int i = 0; i < e->n && !ok; i++)
                ok = gr__accepts_from(g, e->pos + e->off[i], e->off[i + 1] - e->off[i], t, n, a, b, sc);
            if (!ok)
                continue;
            if (gr__grow((void **)&af->ids, &cap, af->n + 1, sizeof *af->ids) ||
                gr__grow((void **)&af->j, &cap_j, af->n + 1, sizeof *af->j))
                goto fail;
            af->ids[af->n] = ex->id;
            af->j[af->n++] = ex->j;
        }
    }
    af->usable = true;
    return af;
fail:
    after_free(af);
    return NULL;
}

static const struct gr_after *after_for(struct grammar *g, const struct gr_unit *u, const struct gr_run *r,
                                        const int32_t *ctx, int len, struct gr_stacks *e,
                                        struct gr_stacks *a, struct gr_stacks *b, struct gr_scratch *sc)
{
    struct gr_units *us = g->units;
    uint64_t h = hash_ints(0xcbf29ce484222325ull ^ (uint64_t)(uintptr_t)r, ctx, len);
    struct gr_after *af;

    for (int i = 0; i < us->num_after; i++) {
        af = us->after[i];
        if (af->hash == h && af->run == r && af->ctx_len == len &&
            !memcmp(af->ctx, ctx, (size_t)len * sizeof *ctx))
            return af;
    }
    if (us->num_after >= GR_MAX_AFTERS ||
        gr__grow((void **)&us->after, &us->cap_after, us->num_after + 1, sizeof *us->after) ||
        !(af = after_make(g, u, r, ctx, len, h, e, a, b, sc)))
        return NULL;
    us->after[us->num_after++] = af;
    g->mask_bytes += sizeof *af + (size_t)len * 4 + (size_t)af->n * 6;
    return af;
}

/* ---- masks ---- */

/* The topmost frame of stack s[len] that is a count frame, or -1. */
static int count_frame(const struct grammar *g, const int32_t *s, int len)
{
    for (int f = len - 2; f >= 0; f--)
        if (g->mark_of[s[f]] >= 0)
            return f;
    return -1;
}

/* ORs the mask of the state inside unit at count `done` into mask. */
static void apply(const struct grammar *g, const struct gr_run *r, const struct gr_after *af,
                  int done, uint32_t *mask, const struct gr_rep *rep)
{
    int words = g->vocab->words;
    long room = rep->max < 0 ? (long)UINT16_MAX : (long)rep->max - done;   /* units after this one */
    long need = rep->min > done ? (long)rep->min - done : 0;

    if (r->dense) {
        const uint32_t *c = r->cum + (size_t)(room < r->dense - 1 ? room : r->dense - 1) * words;
        for (int w = 0; w < words; w++)
            mask[w] |= c[w];
    }
    for (int i = 0; i < r->num_ids && r->cnt[i] <= room; i++)
        mask[r->ids[i] >> 5] |= 1u << (r->ids[i] & 31);
    for (int i = 0; i < af->n; i++)
        if (af->j[i] >= need && af->j[i] <= room)
            mask[af->ids[i] >> 5] |= 1u << (af->ids[i] & 31);
}

int gr__repeat_fill(struct grammar *g, const struct gr_stacks *cur, uint8_t *covered,
                    uint32_t *mask, struct gr_stacks *q, struct gr_stacks *a, struct gr_stacks *b,
                    struct gr_scratch *sc)
{
    if (!g->mark_of || g->plain_masks || !g->vocab || cur->n > GR_REPEAT_MAX_STACKS)
        return 0;
    for (int i = 0; i < cur->n; i++) {
        const int32_t *s = cur->pos + cur->off[i];
        int len = cur->off[i + 1] - cur->off[i], d;
        const struct gr_rep_mark *mk;
        struct gr_unit *u;
        const struct gr_run *r = NULL;
        const struct gr_after *af = NULL;

        if (covered[i] || (d = count_frame(g, s, len)) < 0)
            continue;
        /* the state inside the unit: every stack below the same frames, their tops */
        gr__stacks_clear(q);
        for (int j = i; j < cur->n; j++) {
            const int32_t *t = cur->pos + cur->off[j];
            int tlen = cur->off[j + 1] - cur->off[j];

            if (covered[j] || tlen <= d + 1 || memcmp(t, s, ((size_t)d + 1) * sizeof *s) ||
                count_frame(g, t, tlen) != d)
                continue;
            if (gr__stacks_add(q, t + d + 1, tlen - d - 1))
                return -ENOMEM;
            covered[j] = 2;      /* in this group; 1 once its mask is made */
        }
        mk = &g->marks[g->mark_of[s[d]]];
        pthread_mutex_lock(&g->lock);
        u = units_of(g) ? unit_find(g, g->reps[mk->rep].unit, sc, a) : NULL;
        if (u && !u->nullable && !q->overflow && (r = run_for(g, u, q)))
            af = after_for(g, u, r, s, d, q, a, b, sc);   /* q is free again */
        pthread_mutex_unlock(&g->lock);
        if (af && !af->usable)
            af = NULL;
        if (af) {
            apply(g, r, af, mk->done, mask, &g->reps[mk->rep]);
            atomic_fetch_add_explicit(&g->repeat_masks, 1, memory_order_relaxed);
        }
        for (int j = i; j < cur->n; j++)
            if (covered[j] == 2)
                covered[j] = af ? 1 : 3;
    }
    return 0;
}

void gr__repeat_free(struct grammar *g)
{
    struct gr_units *us = g->units;

    free(g->el_rule);
    g->el_rule = NULL;
    if (!us)
        return;
    for (int i = 0; i < us->num_unit; i++) {
        for (int k = 0; k < us->unit[i].num_q; k++) {
            gr__stacks_free(&us->unit[i].q[k].set);
        }
        free(us->unit[i].q);
    }
    free(us->unit);
    for (int i = 0; i < us->num_after; i++)
        after_free(us->after[i]);
    free(us->after);
    free(us);
    g->units = NULL;
}
