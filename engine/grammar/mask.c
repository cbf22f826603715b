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

#define GR_WALK_KEEP_STATES 1024          /* scratch kept between walks (1 MiB) */

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

uint64_t gr__stacks_hash(const struct gr_stacks *t)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)(t->accept | t->overflow << 1);

    for (int i = 0; i <= t->n && t->n; i++) {
        h ^= (uint32_t)t->off[i];
        h *= 0x100000001b3ull;
    }
    for (int i = 0; i < t->len; i++) {
        h ^= (uint32_t)t->pos[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

bool gr__stacks_equal(const struct gr_stacks *a, const struct gr_stacks *b)
{
    return a->n == b->n && a->len == b->len && a->accept == b->accept && a->overflow == b->overflow &&
           (!a->n || !memcmp(a->off, b->off, ((size_t)a->n + 1) * sizeof *a->off)) &&
           (!a->len || !memcmp(a->pos, b->pos, (size_t)a->len * sizeof *a->pos));
}

void gr__walk_reset(struct gr_walk *w)
{
    for (int i = 0; i < w->num_states; i++)
        gr__stacks_free(&w->state[i]);
    w->num_states = 0;
    if (w->table)
        memset(w->table, 0xff, (size_t)w->table_cap * sizeof *w->table);
}

int gr__walk_intern(struct gr_walk *w, const struct gr_stacks *t)
{
    uint64_t h = gr__stacks_hash(t);
    int j, id;

    if (w->table_cap) {
        for (j = (int)(h & (uint64_t)(w->table_cap - 1)); w->table[j] >= 0; j = (j + 1) & (w->table_cap - 1))
            if (w->hash[w->table[j]] == h && gr__stacks_equal(&w->state[w->table[j]], t))
                return w->table[j];
    }
    if (w->num_states == GR_WALK_MAX_STATES)
        return -1;
    if (w->num_states == w->cap_states) {
        int c = w->cap_states ? w->cap_states * 2 : 64;
        struct gr_stacks *st = realloc(w->state, (size_t)c * sizeof *st);
        uint64_t *hs;
        int32_t *tr;
        if (!st)
            return -1;
        w->state = st;
        if (!(hs = realloc(w->hash, (size_t)c * sizeof *hs)))
            return -1;
        w->hash = hs;
        if (!(tr = realloc(w->trans, (size_t)c * 256 * sizeof *tr)))
            return -1;
        w->trans = tr;
        memset(w->state + w->cap_states, 0, (size_t)(c - w->cap_states) * sizeof *st);
        w->cap_states = c;
    }
    if ((w->num_states + 1) * 2 > w->table_cap) {
        int c = w->table_cap ? w->table_cap * 2 : 256;
        int32_t *tb = malloc((size_t)c * sizeof *tb);
        if (!tb)
            return -1;
        memset(tb, 0xff, (size_t)c * sizeof *tb);
        for (int i = 0; i < w->num_states; i++) {
            for (j = (int)(w->hash[i] & (uint64_t)(c - 1)); tb[j] >= 0; j = (j + 1) & (c - 1))
                ;
            tb[j] = i;
        }
        free(w->table);
        w->table = tb;
        w->table_cap = c;
    }
    id = w->num_states;
    if (gr__stacks_copy(&w->state[id], t))
        return -1;
    w->hash[id] = h;
    for (int b = 0; b < 256; b++)
        w->trans[(size_t)id * 256 + b] = GR_UNKNOWN;
    for (j = (int)(h & (uint64_t)(w->table_cap - 1)); w->table[j] >= 0; j = (j + 1) & (w->table_cap - 1))
        ;
    w->table[j] = id;
    w->num_states++;
    return id;
}

int gr__walk_next(const struct grammar *g, struct gr_walk *w, int sid, uint8_t b)
{
    int32_t *t = &w->trans[(size_t)sid * 256 + b];
    int id;

    if (*t != GR_UNKNOWN)
        return *t;
    if (gr__advance(g, &w->state[sid], b, &w->tmp, &w->sc)) {
        w->failed = true;
        return GR_DEAD;
    }
    if (w->tmp.n == 0 && !w->tmp.accept && !w->tmp.overflow)
        id = GR_DEAD;
    else if ((id = gr__walk_intern(w, &w->tmp)) < 0) {
        w->failed = true;
        return GR_DEAD;
    }
    w->trans[(size_t)sid * 256 + b] = id;   /* intern may have moved trans */
    return id;
}

static void visit(const struct grammar *g, struct gr_walk *w, int node, int sid, bool escaped)
{
    const struct grammar_vocab *v = g->vocab;
    const struct gv_node *nd = &v->node[node];
    const struct gr_stacks *s = &w->state[sid];
    bool live = s->n > 0, accept = s->accept, overflow = s->overflow;
    bool esc = !w->whole && (escaped || accept);

    for (int k = nd->tok_lo; k < nd->own_hi && !w->failed; k++) {
        if (live || accept) {
            if (push_id(&w->acc, &w->num_acc, &w->cap_acc, v->order[k]))
                w->failed = true;
        } else if (escaped && !w->whole) {
            if (push_id(&w->unc, &w->num_unc, &w->cap_unc, v->order[k]))
                w->failed = true;
        }
    }
    if (!live || overflow) {
        /* nothing inside the frames goes on: deeper tokens depend on the context (or, when
         * the automaton hit a bound, on the exact check) */
        if (esc || overflow)
            for (int k = nd->own_hi; k < nd->tok_hi && !w->failed; k++)
                if (push_id(&w->unc, &w->num_unc, &w->cap_unc, v->order[k]))
                    w->failed = true;
        return;
    }
    for (int c = node + 1; c < nd->end && !w->failed; c = v->node[c].end) {
        int next = gr__walk_next(g, w, sid, v->node[c].byte);

        if (next == GR_DEAD) {
            if (esc && !w->failed)      /* the frames refuse the byte, the context may not */
                for (int k = v->node[c].tok_lo; k < v->node[c].tok_hi && !w->failed; k++)
                    if (push_id(&w->unc, &w->num_unc, &w->cap_unc, v->order[k]))
                        w->failed = true;
            continue;
        }
        visit(g, w, c, next, esc);
    }
}

static void walk_shrink(struct gr_walk *w)
{
    gr__walk_reset(w);
    free(w->state);
    free(w->hash);
    free(w->trans);
    free(w->table);
    w->state = NULL;
    w->hash = NULL;
    w->trans = NULL;
    w->table = NULL;
    w->cap_states = w->table_cap = 0;
}

struct gr_walk *gr__walk_get(struct grammar *g)
{
    if (!g->walk)
        g->walk = calloc(1, sizeof *g->walk);
    return g->walk;
}

void gr__walk_trim(struct gr_walk *w)
{
    if (w->cap_states > GR_WALK_KEEP_STATES)
        walk_shrink(w);
}

static struct gr_mask *make_mask(struct grammar *g, struct gr_walk *w, const int32_t *s, int len,
                                 bool whole)
{
    const struct grammar_vocab *v = g->vocab;
    struct gr_mask *m = calloc(1, sizeof *m);
    int start;

    if (!m)
        goto fail;
    w->num_acc = w->num_unc = 0;
    w->whole = whole;
    w->failed = false;
    gr__walk_reset(w);
    /* the frames as a stack of their own: s is already expanded (its top a byte or set) */
    gr__stacks_clear(&w->tmp);
    if (gr__push_expanded(g, &w->tmp, &w->sc, s, len))
        goto fail;
    w->tmp.accept = false;
    if ((start = gr__walk_intern(w, &w->tmp)) < 0)
        goto fail;
    visit(g, w, 0, start, false);
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
    if (!gr__walk_get(g))
        goto out;
    if (g->cap_slots) {
        for (j = (int)(h & (uint64_t)(g->cap_slots - 1)); g->slots[j].mask; j = (j + 1) & (g->cap_slots - 1))
            if (g->slots[j].hash == h && !memcmp(g->slots[j].key, key, (size_t)n * sizeof *key)) {
                m = g->slots[j].mask;
                goto out;
            }
    }
    m = make_mask(g, g->walk, key + 1, frames, whole);
    gr__walk_trim(g->walk);
    if (!m)
        goto out;
    {
        size_t bytes = sizeof *m + (m->bits ? (size_t)g->vocab->words * 4 : 0) +
                       ((size_t)m->num_ids + m->num_uncertain) * 4;
        if (g->num_masks >= GR_MAX_MASKS || g->mask_bytes + bytes > GR_MASK_BYTES) {
            *owned = true;            /* past the bounds: used once, not kept */
            goto out;
        }
        g->mask_bytes += bytes;
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

    gr__repeat_free(g);
    for (int i = 0; i < g->cap_slots; i++)
        gr__mask_free(g->slots[i].mask);
    free(g->slots);
    g->slots = NULL;
    g->cap_slots = g->num_masks = 0;
    g->mask_bytes = 0;
    if (!w)
        return;
    walk_shrink(w);
    gr__stacks_free(&w->tmp);
    free(w->sc.buf);
    free(w->acc);
    free(w->unc);
    free(w);
    g->walk = NULL;
}
