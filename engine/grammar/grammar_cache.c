/* grammar_cache.c — compiled grammars by (kind, source text), shared by the HTTP threads so
 * that a schema sent with every request compiles once and keeps its mask cache warm. A
 * small list in least-recently-used order under one lock; compiling happens outside the
 * lock (two threads may compile the same source at once; the second result is dropped). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grammar/grammar_internal.h"
#include "engine/base/util.h"

struct gc_entry {
    enum grammar_kind kind;
    char *src;
    size_t len;
    struct grammar *g;          /* the cache's reference */
};

struct grammar_cache {
    pthread_mutex_t lock;
    const struct grammar_vocab *vocab;   /* borrowed */
    struct gc_entry *e;         /* [num], most recently used last */
    int num, max;
};

int grammar_cache_create(struct grammar_cache **out, const struct grammar_vocab *v, int max_entries)
{
    struct grammar_cache *c = calloc(1, sizeof *c);

    *out = NULL;
    if (!c || !(c->e = calloc((size_t)(max_entries > 0 ? max_entries : 1), sizeof *c->e))) {
        free(c);
        return -ENOMEM;
    }
    pthread_mutex_init(&c->lock, NULL);
    c->vocab = v;
    c->max = max_entries > 0 ? max_entries : 1;
    *out = c;
    return 0;
}

void grammar_cache_destroy(struct grammar_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->num; i++) {
        free(c->e[i].src);
        grammar_unref(c->e[i].g);
    }
    free(c->e);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* Under the lock: the entry's grammar with a new reference, moved to the back; NULL if none. */
static struct grammar *lookup(struct grammar_cache *c, enum grammar_kind kind, const char *src, size_t len)
{
    for (int i = 0; i < c->num; i++) {
        struct gc_entry e = c->e[i];
        if (e.kind != kind || e.len != len || memcmp(e.src, src, len))
            continue;
        memmove(c->e + i, c->e + i + 1, (size_t)(c->num - i - 1) * sizeof *c->e);
        c->e[c->num - 1] = e;
        return grammar_ref(e.g);
    }
    return NULL;
}

int grammar_cache_get(struct grammar_cache *c, enum grammar_kind kind, const char *src, size_t len,
                      struct grammar **out, char *err)
{
    struct grammar *g, *old = NULL;
    char *copy = NULL;
    int rc;

    pthread_mutex_lock(&c->lock);
    g = lookup(c, kind, src, len);
    pthread_mutex_unlock(&c->lock);
    if ((*out = g))
        return 0;
    if ((rc = grammar_compile(&g, kind, src, len, c->vocab, err)))
        return rc;
    if (!(copy = malloc(len + 1))) {
        *out = g;                     /* served, just not cached */
        return 0;
    }
    memcpy(copy, src, len);
    copy[len] = '\0';
    pthread_mutex_lock(&c->lock);
    if ((*out = lookup(c, kind, src, len))) {
        pthread_mutex_unlock(&c->lock);
        free(copy);
        grammar_unref(g);             /* another thread compiled it first */
        return 0;
    }
    if (c->num == c->max) {
        free(c->e[0].src);
        old = c->e[0].g;
        memmove(c->e, c->e + 1, (size_t)(c->num - 1) * sizeof *c->e);
        c->num--;
    }
    c->e[c->num++] = (struct gc_entry){ kind, copy, len, grammar_ref(g) };
    pthread_mutex_unlock(&c->lock);
    grammar_unref(old);
    *out = g;
    return 0;
}
