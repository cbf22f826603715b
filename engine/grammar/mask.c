/* mask.c — which tokens may follow a stack, by a walk of the vocabulary trie, cached per
 * grammar. The key of a cached mask is the stack's top GR_MASK_FRAMES positions: the walk
 * starts from those frames alone, so what it settles (bytes consumed inside them, or the
 * frames rejecting them) holds in every context; a token that pops out of the frames with
 * bytes left is "uncertain" and the matcher checks it against the whole stack. This is
 * XGrammar's split between context-independent and context-dependent tokens; in JSON the
 * uncertain ones are the few that close a string and go on (`",`), so a step costs an OR of
 * the cached bits plus a handful of short checks. Masks are made on the engine thread, the
 * cache is locked because the grammar is shared. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grammar/grammar_internal.h"

struct gr_walk {
    struct gr_stacks *level;   /* [cap_levels] stacks after each depth of the trie */
    int cap_levels;
    struct gr_scratch sc;
    int32_t *acc, *unc;        /* accepted and uncertain tokens of the walk */
    int num_acc, cap_acc, num_unc, cap_unc;
    bool whole;                /* the frames are the whole stack: leaving them is a reject */
    bool failed;
};

static int push_id(int32_t **p, int *n, int *cap, int32_t id)
{
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 256;
        int32_t *q = realloc(*p, (size_t)c * sizeof *q);
        if (!q)
            return -ENOMEM;
        *p = q;
        *cap = c;
    }
    (*p)[(*n)++] = id;
    return 0;
}

static int level(struct gr_walk *w, int d)
{
    if (d < w->cap_levels)
        return 0;
    int c = w->cap_levels * 2 > d + 16 ? w->cap_levels * 2 : d + 16;
    struct gr_stacks *q = realloc(w->level, (size_t)c * sizeof *q);
    if (!q)
        return -ENOMEM;
    memset(q + w->cap_levels, 0, (size_t)(c - w->cap_levels) * sizeof *q);
    w->level = q;
    w->cap_levels = c;
    return 0;
}

static void visit(const struct grammar *g, struct gr_walk *w, int node, int d, bool escaped)
{
    const struct grammar_vocab *v = g->vocab;
    const struct gv_node *nd = &v->node[node];
    struct gr_stacks *s = &w->level[d];
    bool live = s->n > 0;
    bool esc = !w->whole && (escaped || s->accept);

    for (int k = nd->tok_lo; k < nd->own_hi && !w->failed; k++) {
        if (live || s->accept) {
            if (push_id(&w->acc, &w->num_acc, &w->cap_acc, v->order[k]))
                w->failed = true;
        } else if (escaped && !w->whole) {
            if (push_id(&w->unc, &w->num_unc, &w->cap_unc, v->order[k]))
                w->failed = true;
        }
    }
    if (!live || s->overflow) {
        /* nothing inside the frames goes on: deeper tokens depend on the context (or, when
         * the automaton hit a bound, on the exact check) */
        if (esc || s->overflow)
            for (int k = nd->own_hi; k < nd->tok_hi && !w->failed; k++)
                if (push_id(&w->unc, &w->num_unc, &w->cap_unc, v->order[k]))
                    w->failed = true;
        return;
    }
    if (level(w, d + 1)) {
        w->failed = true;
        return;
    }
    for (int c = node + 1; c < nd->end && !w->failed; c = v->node[c].end) {
        struct gr_stacks *next = &w->level[d + 1];

        if (gr__advance(g, &w->level[d], v->node[c].byte, next, &w->sc)) {
            w->failed = true;
            return;
        }
        if (next->n == 0 && !next->accept && !esc && !next->overflow)
            continue;                 /* the whole subtree is rejected */
        visit(g, w, c, d + 1, esc);
    }
}

static struct gr_mask *make_mask(struct grammar *g, struct gr_walk *w, const int32_t *s, int len,
                                 bool whole)
{
    const struct grammar_vocab *v = g->vocab;
    struct gr_mask *m = calloc(1, sizeof *m);

    if (!m || level(w, v->max_len + 1))
        goto fail;
    w->num_acc = w->num_unc = 0;
    w->whole = whole;
    w->failed = false;
    gr__stacks_clear(&w->level[0]);
    {
        /* the frames as a stack of their own: s is already expanded (its top a byte/set) */
        struct gr_stacks *l0 = &w->level[0];
        if (gr__push_expanded(g, l0, &w->sc, s, len))
            goto fail;
        l0->accept = false;
    }
    visit(g, w, 0, 0, false);
    if (w->failed)
        goto fail;
    if (w->num_acc >= v->words) {
        if (!(m->bits = calloc((size_t)v->words, sizeof *m->bits)))
            goto fail;
        for (int i = 0; i < w->num_acc; i++)
            m->bits[w->acc[i] >> 5] |= 1u << (w->acc[i] & 31);
    } else if (w->num_acc) {
        if (!(m->ids = malloc((size_t)w->num_acc * sizeof *m->ids)))
            goto fail;
        memcpy(m->ids, w->acc, (size_t)w->num_acc * sizeof *m->ids);
        m->num_ids = w->num_acc;
    }
    if (w->num_unc) {
        if (!(m->uncertain = malloc((size_t)w->num_unc * sizeof *m->uncertain)))
            goto fail;
        memcpy(m->uncertain, w->unc, (size_t)w->num_unc * sizeof *m->uncertain);
        m->num_uncertain = w->num_unc;
    }
    return m;
fail:
    gr__mask_free(m);
    return NULL;
}

void gr__mask_free(struct gr_mask *m)
{
    if (!m)
        return;
    free(m->bits);
    free(m->ids);
    free(m->uncertain);
    free(m);
}

static uint64_t hash_key(const int32_t *key, int n)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (int i = 0; i < n; i++) {
        h ^= (uint32_t)key[i];
        h *= 0x100000001b3ull;
    }
    return h | 1;   /* 0 never names a slot */
}

static int cache_grow(struct grammar *g)
{
    int cap = g->cap_slots ? g->cap_slots * 2 : 64;
    struct gr_mask_slot *slots = calloc((size_t)cap, sizeof *slots);

    if (!slots)
        return -ENOMEM;
    for (int i = 0; i < g->cap_slots; i++) {
        struct gr_mask_slot *o = &g->slots[i];
        int j;

        if (!o->mask)
            continue;
        for (j = (int)(o->hash & (uint64_t)(cap - 1)); slots[j].mask; j = (j + 1) & (cap - 1))
            ;
        slots[j] = *o;
    }
    free(g->slots);
    g->slots = slots;
    g->cap_slots = cap;
    return 0;
}

struct gr_mask *gr__mask_for(struct grammar *g, const int32_t *s, int len, bool *owned)
{
    int32_t key[GR_MASK_FRAMES + 1];
    int frames = len < GR_MASK_FRAMES ? len : GR_MASK_FRAMES, n = frames + 1, j;
    bool whole = frames == len;
    uint64_t h;
    struct gr_mask *m = NULL;

    *owned = false;
    key[0] = whole ? -frames : frames;
    memcpy(key + 1, s + len - frames, (size_t)frames * sizeof *key);
    h = hash_key(key, n);
    pthread_mutex_lock(&g->lock);
    if (!g->walk && !(g->walk = calloc(1, sizeof *g->walk)))
        goto out;
    if (g->cap_slots) {
        for (j = (int)(h & (uint64_t)(g->cap_slots - 1)); g->slots[j].mask; j = (j + 1) & (g->cap_slots - 1))
            if (g->slots[j].hash == h && !memcmp(g->slots[j].key, key, (size_t)n * sizeof *key)) {
                m = g->slots[j].mask;
                goto out;
            }
    }
    if (!(m = make_mask(g, g->walk, key + 1, frames, whole)))
        goto out;
    if (g->num_masks >= GR_MAX_MASKS) {
        *owned = true;                /* past the bound: used once, not kept */
        goto out;
    }
    if ((g->num_masks + 1) * 2 > g->cap_slots && cache_grow(g)) {
        *owned = true;
        goto out;
    }
    for (j = (int)(h & (uint64_t)(g->cap_slots - 1)); g->slots[j].mask; j = (j + 1) & (g->cap_slots - 1))
        ;
    g->slots[j].hash = h;
    memcpy(g->slots[j].key, key, (size_t)n * sizeof *key);
    g->slots[j].mask = m;
    g->num_masks++;
out:
    pthread_mutex_unlock(&g->lock);
    return m;
}

void gr__mask_cache_free(struct grammar *g)
{
    struct gr_walk *w = g->walk;

    for (int i = 0; i < g->cap_slots; i++)
        gr__mask_free(g->slots[i].mask);
    free(g->slots);
    g->slots = NULL;
    g->cap_slots = g->num_masks = 0;
    if (!w)
        return;
    for (int i = 0; i < w->cap_levels; i++)
        gr__stacks_free(&w->level[i]);
    free(w->level);
    free(w->sc.buf);
    free(w->acc);
    free(w->unc);
    free(w);
    g->walk = NULL;
}
