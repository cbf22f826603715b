/* matcher.c — the pushdown automaton: a state is a set of rule stacks (positions of the
 * next element in each active rule, bottom first), expanded so that every top is a byte or
 * a byte set; a byte advances the stacks whose top matches it. An empty stack means the
 * root rule is complete. A rule reference that ends its alternative pushes no return
 * position (a tail call), so right recursion — how repetition is compiled — does not grow
 * the stacks. The engine thread runs one grammar_matcher per constrained request. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grammar/grammar_internal.h"

struct grammar_matcher {
    struct grammar *g;         /* a reference */
    struct gr_stacks cur, a, b;
    struct gr_scratch sc;
    /* The last mask and the state it was made for. A mask depends on the state alone, and
     * inside a string without bounds a token leads back to the same state: the next mask is
     * then a copy, not a fresh OR of the cached bits plus the checks of every token that
     * leaves the cached frames (up to a thousand: `",`, `"}` … at 128k ids). */
    struct gr_stacks last;
    uint32_t *last_mask;       /* [vocab words], or NULL */
    bool last_valid;
    struct gr_stacks q;        /* repeat.c's scratch */
    uint8_t *covered;          /* [cap_covered] stacks of cur whose mask repeat.c made */
    int cap_covered;
};

void gr__stacks_clear(struct gr_stacks *s)
{
    s->n = 0;
    s->len = 0;
    s->accept = false;
    s->overflow = false;
}

void gr__stacks_free(struct gr_stacks *s)
{
    free(s->off);
    free(s->pos);
    memset(s, 0, sizeof *s);
}

static int reserve(int32_t **p, int *cap, int need)
{
    int c = *cap ? *cap : 64;
    int32_t *q;

    if (need <= *cap)
        return 0;
    while (c < need)
        c *= 2;
    if (!(q = realloc(*p, (size_t)c * sizeof *q)))
        return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

int gr__stacks_copy(struct gr_stacks *dst, const struct gr_stacks *src)
{
    if (reserve(&dst->off, &dst->cap_n, src->n + 1) || reserve(&dst->pos, &dst->cap, src->len + 1))
        return -ENOMEM;
    memcpy(dst->off, src->off, ((size_t)src->n + 1) * sizeof *dst->off);
    if (src->len)
        memcpy(dst->pos, src->pos, (size_t)src->len * sizeof *dst->pos);
    dst->n = src->n;
    dst->len = src->len;
    dst->accept = src->accept;
    dst->overflow = src->overflow;
    return 0;
}

int gr__stacks_add(struct gr_stacks *out, const int32_t *s, int len)
{
    for (int i = 0; i < out->n; i++) {
        int lo = out->off[i], n = out->off[i + 1] - lo;
        if (n == len && out->pos[lo + n - 1] == s[len - 1] &&
            !memcmp(out->pos + lo, s, (size_t)len * sizeof *s))
            return 0;
    }
    if (out->n >= GR_MAX_STACKS || len > GR_MAX_STACK) {
        out->overflow = true;
        return 0;
    }
    if (reserve(&out->off, &out->cap_n, out->n + 2) || reserve(&out->pos, &out->cap, out->len + len))
        return -ENOMEM;
    if (out->n == 0)
        out->off[0] = 0;
    memcpy(out->pos + out->len, s, (size_t)len * sizeof *s);
    out->len += len;
    out->off[++out->n] = out->len;
    return 0;
}

/* Expands the stack held in sc->buf[base, base + len). */
static int expand(const struct grammar *g, struct gr_stacks *out, struct gr_scratch *sc, int base,
                  int len, int depth)
{
    if (depth > 4 * GR_MAX_STACK) {
        out->overflow = true;
        return 0;
    }
    for (;;) {
        int32_t top;
        const struct gr_elem *e;

        if (len == 0) {
            out->accept = true;
            return 0;
        }
        top = sc->buf[base + len - 1];
        e = &g->el[top];
        if (e->kind == GR_END) {
            len--;
            continue;
        }
        if (e->kind != GR_RULE)
            return gr__stacks_add(out, sc->buf + base, len);
        {
            const struct gr_rule *r = &g->rules[e->arg];
            int keep = len, nb = base + len;

            if (g->el[top + 1].kind == GR_END)
                keep = len - 1;               /* tail call: nothing to return to */
            else
                sc->buf[base + len - 1] = top + 1;
            if (reserve(&sc->buf, &sc->cap, nb + (keep + 1) * r->num_alts + 1))
                return -ENOMEM;
            for (int a = 0; a < r->num_alts; a++) {
                int rc;

                memmove(sc->buf + nb, sc->buf + base, (size_t)keep * sizeof *sc->buf);
                sc->buf[nb + keep] = r->alts[a];
                sc->len = nb + keep + 1;
                if ((rc = expand(g, out, sc, nb, keep + 1, depth + 1)))
                    return rc;
                if (reserve(&sc->buf, &sc->cap, nb + keep + 2))
                    return -ENOMEM;
            }
            sc->len = nb;
            return 0;
        }
    }
}

int gr__push_expanded(const struct grammar *g, struct gr_stacks *out, struct gr_scratch *sc,
                      const int32_t *s, int len)
{
    int base = sc->len;
    int rc;

    if (reserve(&sc->buf, &sc->cap, base + len + 1))
        return -ENOMEM;
    if (len)
        memcpy(sc->buf + base, s, (size_t)len * sizeof *s);
    sc->len = base + len;
    rc = expand(g, out, sc, base, len, 0);
    sc->len = base;
    return rc;
}

static bool elem_matches(const struct grammar *g, int32_t pos, uint8_t b)
{
    const struct gr_elem *e = &g->el[pos];

    if (e->kind == GR_BYTE)
        return e->arg == b;
    return e->kind == GR_SET && (g->sets[e->arg][b >> 5] >> (b & 31) & 1);
}

int gr__advance(const struct grammar *g, const struct gr_stacks *in, uint8_t b,
                struct gr_stacks *out, struct gr_scratch *sc)
{
    gr__stacks_clear(out);
    for (int i = 0; i < in->n; i++) {
        int lo = in->off[i], len = in->off[i + 1] - lo, base = sc->len, rc;

        if (!elem_matches(g, in->pos[lo + len - 1], b))
            continue;
        if (reserve(&sc->buf, &sc->cap, base + len + 1))
            return -ENOMEM;
        memcpy(sc->buf + base, in->pos + lo, (size_t)len * sizeof *sc->buf);
        sc->buf[base + len - 1]++;
        sc->len = base + len;
        rc = expand(g, out, sc, base, len, 0);
        sc->len = base;
        if (rc)
            return rc;
    }
    out->overflow |= in->overflow;
    return 0;
}

bool gr__accepts_from(const struct grammar *g, const int32_t *s, int len, const char *bytes,
                      size_t n, struct gr_stacks *a, struct gr_stacks *b, struct gr_scratch *sc)
{
    struct gr_stacks *x = a, *y = b, *t;

    gr__stacks_clear(x);
    if (gr__stacks_add(x, s, len))
        return false;
    for (size_t i = 0; i < n; i++) {
        /* as accept_bytes: the last byte may end the sentence */
        if (gr__advance(g, x, (uint8_t)bytes[i], y, sc) || y->overflow ||
            (y->n == 0 && !(y->accept && i + 1 == n)))
            return false;
        t = x;
        x = y;
        y = t;
    }
    return true;
}

/* ---- the public matcher ---- */

int grammar_matcher_create(struct grammar_matcher **out, struct grammar *g)
{
    struct grammar_matcher *m = calloc(1, sizeof *m);
    int32_t start = -1;
    int rc;

    *out = NULL;
    if (!m)
        return -ENOMEM;
    m->g = grammar_ref(g);
    /* The start: one alternative-less frame per alternative of the root rule. */
    for (int a = 0; a < g->rules[g->root].num_alts; a++) {
        start = g->rules[g->root].alts[a];
        if ((rc = gr__push_expanded(g, &m->cur, &m->sc, &start, 1))) {
            grammar_matcher_destroy(m);
            return rc;
        }
    }
    *out = m;
    return 0;
}

void grammar_matcher_destroy(struct grammar_matcher *m)
{
    if (!m)
        return;
    gr__stacks_free(&m->cur);
    gr__stacks_free(&m->a);
    gr__stacks_free(&m->b);
    gr__stacks_free(&m->last);
    gr__stacks_free(&m->q);
    free(m->covered);
    free(m->last_mask);
    free(m->sc.buf);
    grammar_unref(m->g);
    free(m);
}

int grammar_matcher_accept_bytes(struct grammar_matcher *m, const char *bytes, size_t n)
{
    struct gr_stacks *x = &m->cur, *y = &m->a, *spare = &m->b, *t;
    int rc;

    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if ((rc = gr__advance(m->g, x, (uint8_t)bytes[i], y, &m->sc)))
            return rc;
        if (y->overflow)
            return -E2BIG;
        if (y->n == 0 && !(y->accept && i + 1 == n))
            return -EINVAL;
        /* keep cur intact until the whole run is accepted */
        t = x == &m->cur ? spare : x;
        x = y;
        y = t;
    }
    /* x holds the result: swap it into cur */
    {
        struct gr_stacks tmp = m->cur;
        m->cur = *x;
        *x = tmp;
    }
    return 0;
}

int grammar_matcher_accept_token(struct grammar_matcher *m, int32_t id)
{
    const struct grammar_vocab *v = m->g->vocab;

    if (!v || id < 0 || id >= v->vocab_size || !v->usable[id])
        return -EINVAL;
    return grammar_matcher_accept_bytes(m, v->bytes + v->off[id], v->off[id + 1] - v->off[id]);
}

bool gr__matcher_overflowed(const struct grammar_matcher *m)
{
    return m->cur.overflow;
}

bool grammar_matcher_is_accepting(const struct grammar_matcher *m)
{
    return m->cur.accept;
}

bool grammar_matcher_is_done(const struct grammar_matcher *m)
{
    return m->cur.accept && m->cur.n == 0;
}

static bool same_stacks(const struct gr_stacks *a, const struct gr_stacks *b)
{
    return a->n == b->n && a->len == b->len && a->accept == b->accept && a->overflow == b->overflow &&
           !memcmp(a->off, b->off, ((size_t)a->n + 1) * sizeof *a->off) &&
           (!a->len || !memcmp(a->pos, b->pos, (size_t)a->len * sizeof *a->pos));
}

static int fill_mask(struct grammar_matcher *m, uint32_t *mask);

int grammar_matcher_fill_mask(struct grammar_matcher *m, uint32_t *mask)
{
    const struct grammar_vocab *v = m->g->vocab;
    size_t bytes;
    int rc;

    if (!v)
        return -EINVAL;
    bytes = (size_t)v->words * sizeof *mask;
    if (m->last_valid && m->cur.off && same_stacks(&m->cur, &m->last)) {
        memcpy(mask, m->last_mask, bytes);
        return 0;
    }
    m->last_valid = false;
    if ((rc = fill_mask(m, mask)))
        return rc;
    /* kept for the next call; without memory for it, the next call just fills again */
    if (!m->last_mask)
        m->last_mask = malloc(bytes);
    if (m->last_mask && m->cur.off && gr__stacks_copy(&m->last, &m->cur) == 0) {
        memcpy(m->last_mask, mask, bytes);
        m->last_valid = true;
    }
    return 0;
}

static int fill_mask(struct grammar_matcher *m, uint32_t *mask)
{
    struct grammar *g = m->g;
    const struct grammar_vocab *v = g->vocab;

    int rc;

    memset(mask, 0, (size_t)v->words * sizeof *mask);
    if (m->cur.n > m->cap_covered) {
        uint8_t *c = realloc(m->covered, (size_t)m->cur.n);
        if (!c)
            return -ENOMEM;
        m->covered = c;
        m->cap_covered = m->cur.n;
    }
    if (m->cur.n)
        memset(m->covered, 0, (size_t)m->cur.n);
    /* stacks inside a range repetition first: a table lookup instead of a walk per count */
    if ((rc = gr__repeat_fill(g, &m->cur, m->covered, mask, &m->q, &m->a, &m->b, &m->sc)))
        return rc;
    for (int i = 0; i < m->cur.n; i++) {
        const int32_t *s = m->cur.pos + m->cur.off[i];
        int len = m->cur.off[i + 1] - m->cur.off[i];
        bool owned = false;
        struct gr_mask *mk;

        if (m->covered[i] == 1)
            continue;
        mk = gr__mask_for(g, s, len, &owned);

        if (!mk)
            return -ENOMEM;
        if (mk->bits)
            for (int w = 0; w < v->words; w++)
                mask[w] |= mk->bits[w];
        for (int k = 0; k < mk->num_ids; k++)
            mask[mk->ids[k] >> 5] |= 1u << (mk->ids[k] & 31);
        for (int k = 0; k < mk->num_uncertain; k++) {
            int32_t id = mk->uncertain[k];

            if (mask[id >> 5] >> (id & 31) & 1)
                continue;
            if (gr__accepts_from(g, s, len, v->bytes + v->off[id], v->off[id + 1] - v->off[id],
                                 &m->a, &m->b, &m->sc))
                mask[id >> 5] |= 1u << (id & 31);
        }
        if (owned)
            gr__mask_free(mk);
    }
    return 0;
}
