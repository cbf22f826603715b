/* vocab.c — a tokenizer's vocabulary as the grammar sees it: each token's bytes (as it
 * would appear inside a text) and a trie of them in preorder, built once per tokenizer by
 * sorting the tokens, so that every subtree holds a contiguous run of the sorted tokens and
 * a mask walk can settle a whole subtree at once. Special tokens are never usable. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grammar/grammar_internal.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/base/buf.h"    /* vocab_put grows the bytes through buf_put */
#include "engine/base/util.h"

static const struct grammar_vocab *sort_vocab;   /* qsort has no context argument */

static int by_bytes(const void *pa, const void *pb)
{
    const struct grammar_vocab *v = sort_vocab;
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    size_t la = v->off[a + 1] - v->off[a], lb = v->off[b + 1] - v->off[b];
    int c = memcmp(v->bytes + v->off[a], v->bytes + v->off[b], la < lb ? la : lb);

    if (c)
        return c;
    if (la != lb)
        return la < lb ? -1 : 1;
    return a < b ? -1 : a > b;
}

static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER;

/* Builds order[] and the trie from off/bytes/usable. */
static int build_trie(struct grammar_vocab *v)
{
    int32_t path[1024 + 1];   /* node at each depth of the current token */
    int depth = 0, cap;
    const char *prev = NULL;
    size_t prev_len = 0;

    v->num_usable = 0;
    if (!(v->order = malloc(((size_t)v->vocab_size + 1) * sizeof *v->order)))
        return -ENOMEM;
    for (int i = 0; i < v->vocab_size; i++)
        if (v->usable[i])
            v->order[v->num_usable++] = i;
    pthread_mutex_lock(&sort_lock);
    sort_vocab = v;
    qsort(v->order, (size_t)v->num_usable, sizeof *v->order, by_bytes);
    pthread_mutex_unlock(&sort_lock);

    cap = 1024;
    if (!(v->node = malloc((size_t)cap * sizeof *v->node)))
        return -ENOMEM;
    v->node[0] = (struct gv_node){ .tok_lo = 0, .own_hi = 0 };
    v->num_nodes = 1;
    path[0] = 0;
    for (int k = 0; k < v->num_usable; k++) {
        int32_t id = v->order[k];
        const char *s = v->bytes + v->off[id];
        size_t len = v->off[id + 1] - v->off[id], lcp = 0;

        while (prev && lcp < len && lcp < prev_len && s[lcp] == prev[lcp])
            lcp++;
        /* close the nodes below the common prefix */
        for (; depth > (int)lcp; depth--) {
            v->node[path[depth]].end = v->num_nodes;
            v->node[path[depth]].tok_hi = k;
        }
        for (; depth < (int)len; depth++) {
            struct gv_node *n;
            if (v->num_nodes == cap) {
                struct gv_node *q = realloc(v->node, (size_t)cap * 2 * sizeof *q);
                if (!q)
                    return -ENOMEM;
                v->node = q;
                cap *= 2;
            }
            n = &v->node[v->num_nodes];
            *n = (struct gv_node){ .byte = (uint8_t)s[depth], .tok_lo = k, .own_hi = k };
            path[depth + 1] = v->num_nodes++;
        }
        if (v->node[path[depth]].own_hi == k)
            v->node[path[depth]].own_hi = k + 1;
        prev = s;
        prev_len = len;
    }
    for (; depth >= 0; depth--) {
        v->node[path[depth]].end = v->num_nodes;
        v->node[path[depth]].tok_hi = v->num_usable;
    }
    return 0;
}

static int vocab_new(struct grammar_vocab **out, int n, char *err)
{
    struct grammar_vocab *v = calloc(1, sizeof *v);

    *out = v;
    if (v)
        pthread_mutex_init(&v->runs_lock, NULL);
    if (!v || !(v->off = calloc((size_t)n + 1, sizeof *v->off)) ||
        !(v->usable = calloc((size_t)n + 1, sizeof *v->usable))) {
        errf(err, "grammar: out of memory for a vocabulary of %d tokens", n);
        return -ENOMEM;
    }
    v->vocab_size = n;
    v->words = (n + 31) / 32;
    return 0;
}

/* Adds token id's bytes (in order of ids). Tokens longer than the trie's depth bound stay
 * unusable: no tokenizer we load has one. */
static int vocab_put(struct grammar_vocab *v, int id, const char *s, size_t len, size_t *cap)
{
    size_t at = v->off[id];

    if (s && len > 0 && len <= 1024) {
        struct buf b = { v->bytes, at, *cap };   /* v->bytes grows as a struct buf */

        if (buf_put(&b, s, len))
            return -ENOMEM;
        v->bytes = b.p;
        *cap = b.cap;
        v->usable[id] = true;
        v->max_len = (int)len > v->max_len ? (int)len : v->max_len;
        at += len;
    }
    v->off[id + 1] = (uint32_t)at;
    return 0;
}

int grammar_vocab_create_from(struct grammar_vocab **out, const char *const *tokens,
                              const size_t *lens, int num_tokens, char *err)
{
    struct grammar_vocab *v;
    size_t cap = 0;

    *out = NULL;
    if (vocab_new(&v, num_tokens, err))
        goto fail;
    for (int i = 0; i < num_tokens; i++)
        if (vocab_put(v, i, tokens[i], tokens[i] ? lens[i] : 0, &cap))
            goto oom;
    if (build_trie(v))
        goto oom;
    *out = v;
    return 0;
oom:
    errf(err, "grammar: out of memory for the vocabulary");
fail:
    grammar_vocab_destroy(v);
    return -ENOMEM;
}

int grammar_vocab_create(struct grammar_vocab **out, const struct tokenizer *tok, char *err)
{
    struct grammar_vocab *v;
    int n = tokenizer_vocab_size(tok);
    size_t cap = 0;

    *out = NULL;
    if (vocab_new(&v, n, err))
        goto fail;
    for (int i = 0; i < n; i++) {
        char *b = NULL;
        size_t len = 0;
        int rc = tokenizer_is_special(tok, i) ? -ENOENT : tokenizer_piece_bytes(tok, i, &b, &len);

        if (rc == -ENOMEM || (rc == 0 && vocab_put(v, i, b, len, &cap)) ||
            (rc != 0 && vocab_put(v, i, NULL, 0, &cap))) {
            free(b);
            goto oom;
        }
        free(b);
    }
    if (build_trie(v))
        goto oom;
    *out = v;
    return 0;
oom:
    errf(err, "grammar: out of memory for the vocabulary");
fail:
    grammar_vocab_destroy(v);
    return -ENOMEM;
}

void grammar_vocab_destroy(struct grammar_vocab *v)
{
    if (!v)
        return;
    gr__repeat_vocab_free(v);
    pthread_mutex_destroy(&v->runs_lock);
    free(v->off);
    free(v->bytes);
    free(v->usable);
    free(v->node);
    free(v->order);
    free(v);
}

int grammar_vocab_size(const struct grammar_vocab *v)
{
    return v->vocab_size;
}
