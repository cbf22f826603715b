/* tokenizer_bpe.c — the BPE model: loading "model" (vocab, merges and options) into two
 * hash maps (token string → id, id pair → rank and merged id), and encoding one pre-token:
 * characters to ids (with byte fallback or unk), then merges lowest rank first, leftmost
 * first among equal ranks, through a min-heap over a linked list of symbols: O(n log n)
 * for a word of n characters, as Hugging Face's Word::merge_all does. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/log.h"
#include "engine/tokenizer/tokenizer_internal.h"
#include "engine/base/util.h"

/* --- string → id ---------------------------------------------------------------------- */

static uint32_t table_mask(size_t n)
{
    size_t size = 16;

    while (size < 2 * n)
        size *= 2;
    return (uint32_t)(size - 1);
}

static int strmap_build(struct tk_strmap *m, const char *const *tok, const uint32_t *tok_len, int n)
{
    int count = 0;

    for (int id = 0; id < n; id++)
        count += tok[id] != NULL;
    m->mask = table_mask((size_t)count);
    m->slot = malloc(((size_t)m->mask + 1) * sizeof *m->slot);
    if (!m->slot)
        return -ENOMEM;
    memset(m->slot, 0xff, ((size_t)m->mask + 1) * sizeof *m->slot);
    for (int id = 0; id < n; id++) {
        uint32_t h;

        if (!tok[id])
            continue;
        h = (uint32_t)tk__hash(tok[id], tok_len[id]) & m->mask;
        while (m->slot[h] >= 0)
            h = (h + 1) & m->mask;
        m->slot[h] = id;
    }
    return 0;
}

int32_t tk__strmap_get(const struct tk_strmap *m, const char *const *tok, const uint32_t *tok_len,
                       const char *s, size_t n)
{
    uint32_t h;

    if (!m->slot)
        return -1;
    h = (uint32_t)tk__hash(s, n) & m->mask;
    for (int32_t id; (id = m->slot[h]) >= 0; h = (h + 1) & m->mask)
        if (tok_len[id] == n && !memcmp(tok[id], s, n))
            return id;
    return -1;
}

void tk__strmap_free(struct tk_strmap *m)
{
    free(m->slot);
    memset(m, 0, sizeof *m);
}

/* --- (id, id) → (rank, merged id) ------------------------------------------------------- */

static uint64_t pair_key(int32_t a, int32_t b)
{
    return (uint64_t)(a + 1) << 32 | (uint32_t)(b + 1);
}

static uint32_t pair_slot(uint64_t key, uint32_t mask)
{
    key *= 0x9e3779b97f4a7c15ull;   /* Fibonacci hashing: the high bits are well mixed */
    return (uint32_t)(key >> 32) & mask;
}

/* Returns the rank, or -1 with no merge for the pair. */
static int64_t merge_get(const struct tk_mergemap *m, int32_t a, int32_t b, int32_t *merged)
{
    uint64_t key = pair_key(a, b);

    if (!m->key)
        return -1;
    for (uint32_t h = pair_slot(key, m->mask); m->key[h]; h = (h + 1) & m->mask)
        if (m->key[h] == key) {
            *merged = (int32_t)m->merged[h];
            return m->rank[h];
        }
    return -1;
}

/* A later duplicate of a pair replaces the earlier one, as a Rust HashMap collect does. */
static void merge_put(struct tk_mergemap *m, int32_t a, int32_t b, uint32_t rank, int32_t merged)
{
    uint64_t key = pair_key(a, b);
    uint32_t h = pair_slot(key, m->mask);

    while (m->key[h] && m->key[h] != key)
        h = (h + 1) & m->mask;
    m->key[h] = key;
    m->rank[h] = rank;
    m->merged[h] = (uint32_t)merged;
}

void tk__mergemap_free(struct tk_mergemap *m)
{
    free(m->key);
    free(m->rank);
    free(m->merged);
    memset(m, 0, sizeof *m);
}

/* --- loading --------------------------------------------------------------------------- */

static int load_vocab(struct tokenizer *t, const cJSON *vocab, const char *file, char *err)
{
    const cJSON *e;
    int max_id = -1;

    if (!cJSON_IsObject(vocab)) {
        errf(err, "%s: model.vocab: expected an object of token → id", file);
        return -EINVAL;
    }
    cJSON_ArrayForEach(e, vocab) {
        double v = e->valuedouble;

        if (!cJSON_IsNumber(e) || !(v >= 0 && v < TK_MAX_ID) || v != (double)(int)v) {
            errf(err, "%s: model.vocab[\"%.64s\"]: id must be an integer in [0, %d)", file,
                 e->string, TK_MAX_ID);
            return -EINVAL;
        }
        if (tk__utf8_valid_prefix(e->string, strlen(e->string)) != strlen(e->string)) {
            errf(err, "%s: model.vocab: token with id %d is not valid UTF-8", file, (int)v);
            return -EINVAL;
        }
        max_id = MAX(max_id, (int)v);
    }
    t->vocab_size = max_id + 1;
    t->tok = calloc(MAX(t->vocab_size, 1), sizeof *t->tok);
    t->tok_len = calloc(MAX(t->vocab_size, 1), sizeof *t->tok_len);
    if (!t->tok || !t->tok_len)
        return -ENOMEM;
    cJSON_ArrayForEach(e, vocab) {
        size_t n = strlen(e->string);
        int id = e->valueint;

        if (!(t->tok[id] = arena_strndup(&t->strings, e->string, n)))
            return -ENOMEM;
        t->tok_len[id] = (uint32_t)n;
    }
    return strmap_build(&t->vocab, t->tok, t->tok_len, t->vocab_size);
}

static int32_t vocab_get(const struct tokenizer *t, const char *s, size_t n)
{
    return tk__strmap_get(&t->vocab, t->tok, t->tok_len, s, n);
}

/* One merge: "a b" (one space) or ["a", "b"]. */
static int merge_strings(const cJSON *e, const char **a, size_t *alen, const char **b, size_t *blen)
{
    if (cJSON_IsString(e)) {
        const char *s = e->valuestring, *sp = strchr(s, ' ');

        if (!sp || strchr(sp + 1, ' '))
            return -EINVAL;
        *a = s;
        *alen = (size_t)(sp - s);
        *b = sp + 1;
        *blen = strlen(sp + 1);
        return 0;
    }
    if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
        cJSON_IsString(e->child->next)) {
        *a = e->child->valuestring;
        *alen = strlen(*a);
        *b = e->child->next->valuestring;
        *blen = strlen(*b);
        return 0;
    }
    return -EINVAL;
}

static int load_merges(struct tokenizer *t, const cJSON *merges, const char *file, char *err)
{
    struct tk_mergemap *m = &t->merges;
    size_t prefix = t->cont_prefix ? strlen(t->cont_prefix) : 0;
    struct buf joined = { 0 };
    const cJSON *e;
    int n = 0, rank = 0, rc = -EINVAL;

    if (!merges || cJSON_IsNull(merges))
        return 0;
    if (!cJSON_IsArray(merges)) {
        errf(err, "%s: model.merges: expected an array", file);
        return -EINVAL;
    }
    n = cJSON_GetArraySize(merges);
    m->mask = table_mask((size_t)n);
    m->key = calloc((size_t)m->mask + 1, sizeof *m->key);
    m->rank = malloc(((size_t)m->mask + 1) * sizeof *m->rank);
    m->merged = malloc(((size_t)m->mask + 1) * sizeof *m->merged);
    if (!m->key || !m->rank || !m->merged)
        return -ENOMEM;
    cJSON_ArrayForEach(e, merges) {
        const char *a, *b;
        size_t alen, blen;
        int32_t ia, ib, im;

        if (merge_strings(e, &a, &alen, &b, &blen)) {
            errf(err, "%s: model.merges[%d]: expected \"a b\" or [\"a\", \"b\"]", file, rank);
            goto out;
        }
        ia = vocab_get(t, a, alen);
        ib = vocab_get(t, b, blen);
        joined.len = 0;
        if (buf_put(&joined, a, alen) ||
            buf_put(&joined, b + MIN(prefix, blen), blen - MIN(prefix, blen))) {
            rc = -ENOMEM;
            goto out;
        }
        im = vocab_get(t, joined.p, joined.len);
        if (ia < 0 || ib < 0 || im < 0) {
            errf(err, "%s: model.merges[%d]: token \"%.*s\" is not in the vocabulary", file, rank,
                 (int)MIN(ia < 0 ? alen : ib < 0 ? blen : joined.len, 64),
                 ia < 0 ? a : ib < 0 ? b : joined.p);
            goto out;
        }
        merge_put(m, ia, ib, (uint32_t)rank++, im);
    }
    rc = 0;
out:
    buf_fini(&joined);
    return rc;
}

static int opt_string(const cJSON *model, const char *key, char **out, const char *file, char *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, key);

    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v)) {
        errf(err, "%s: model.%s: expected a string or null", file, key);
        return -EINVAL;
    }
    if (!v->valuestring[0])   /* "" behaves as no prefix / suffix at all */
        return 0;
    *out = strdup(v->valuestring);
    return *out ? 0 : -ENOMEM;
}

int tk__bpe_load(struct tokenizer *t, const cJSON *model, const char *file, char *err)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    char *unk = NULL, name[8];
    int rc;

    if (!cJSON_IsObject(model)) {
        errf(err, "%s: model: expected an object", file);
        return -EINVAL;
    }
    if (type && !cJSON_IsString(type)) {
        errf(err, "%s: model.type: expected a string", file);
        return -EINVAL;
    }
    if (type && strcmp(type->valuestring, "BPE")) {
        errf(err, "%s: model.type: \"%.64s\" is not supported (only BPE)", file, type->valuestring);
        return -EINVAL;
    }
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        LOG(LL_WARN, "tok", "%s: model.dropout %g ignored: encoding is deterministic", file,
            dropout->valuedouble);
    if ((rc = tk__json_bool(model, "byte_fallback", false, &t->byte_fallback, "model", file, err)) ||
        (rc = tk__json_bool(model, "fuse_unk", false, &t->fuse_unk, "model", file, err)) ||
        (rc = tk__json_bool(model, "ignore_merges", false, &t->ignore_merges, "model", file, err)) ||
        (rc = opt_string(model, "continuing_subword_prefix", &t->cont_prefix, file, err)) ||
        (rc = opt_string(model, "end_of_word_suffix", &t->end_suffix, file, err)) ||
        (rc = opt_string(model, "unk_token", &unk, file, err)) ||
        (rc = load_vocab(t, cJSON_GetObjectItemCaseSensitive(model, "vocab"), file, err)) ||
        (rc = load_merges(t, cJSON_GetObjectItemCaseSensitive(model, "merges"), file, err)))
        goto out;
    t->unk_id = unk ? vocab_get(t, unk, strlen(unk)) : -1;
    if (unk && t->unk_id < 0)
        LOG(LL_WARN, "tok", "%s: model.unk_token \"%.64s\" is not in the vocabulary", file, unk);
    for (int b = 0; b < 256; b++) {
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = vocab_get(t, name, 6);
    }
out:
    free(unk);
    return rc;
}

/* --- encoding one pre-token ------------------------------------------------------------ */

struct tk_merge_entry {
    uint32_t rank, pos;       /* the pair starts at symbol pos */
    int32_t merged;
};

static bool entry_less(const struct tk_merge_entry *x, const struct tk_merge_entry *y)
{
    return x->rank != y->rank ? x->rank < y->rank : x->pos < y->pos;
}

static int heap_push(struct tk_bpe_work *w, struct tk_merge_entry e)
{
    int i;

    if (TK_GROW(w->heap, w->heap_cap, w->heap_n))
        return -ENOMEM;
    for (i = w->heap_n++; i > 0 && entry_less(&e, &w->heap[(i - 1) / 2]); i = (i - 1) / 2)
        w->heap[i] = w->heap[(i - 1) / 2];
    w->heap[i] = e;
    return 0;
}

static struct tk_merge_entry heap_pop(struct tk_bpe_work *w)
{
    struct tk_merge_entry top = w->heap[0], last = w->heap[--w->heap_n];
    int i = 0;

    for (;;) {
        int c = 2 * i + 1;

        if (c >= w->heap_n)
            break;
        if (c + 1 < w->heap_n && entry_less(&w->heap[c + 1], &w->heap[c]))
            c++;
        if (!entry_less(&w->heap[c], &last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (w->heap_n)
        w->heap[i] = last;
    return top;
}

static int sym_push(struct tk_bpe_work *w, int32_t id)
{
    if (TK_GROW(w->sym, w->cap, w->n))
        return -ENOMEM;
    w->sym[w->n++].id = id;
    return 0;
}

void tk__bpe_work_free(struct tk_bpe_work *w)
{
    free(w->sym);
    free(w->heap);
    buf_fini(&w->chr);
    memset(w, 0, sizeof *w);
}

/* The characters of w as symbols (BPE::merge_word before merge_all). */
static int initial_symbols(const struct tokenizer *t, struct tk_bpe_work *wk, const char *w,
                           size_t len)
{
    int32_t unk = -1;     /* pending unk symbol, fused across characters when fuse_unk */
    size_t i = 0;
    uint32_t cp;
    int k;

    wk->n = 0;
    while (i < len && (k = tk__utf8_decode(w + i, len - i, &cp)) > 0) {
        const char *s = w + i;
        size_t n = (size_t)k;
        int32_t id;

        if ((i > 0 && t->cont_prefix) || (i + k == len && t->end_suffix)) {
            wk->chr.len = 0;
            if ((i > 0 && t->cont_prefix && buf_put(&wk->chr, t->cont_prefix, strlen(t->cont_prefix))) ||
                buf_put(&wk->chr, w + i, k) ||
                (i + k == len && t->end_suffix && buf_put(&wk->chr, t->end_suffix, strlen(t->end_suffix))))
                return -ENOMEM;
            s = wk->chr.p;
            n = wk->chr.len;
        }
        i += k;
        if ((id = vocab_get(t, s, n)) >= 0) {
            if (unk >= 0 && sym_push(wk, unk))
                return -ENOMEM;
            unk = -1;
            if (sym_push(wk, id))
                return -ENOMEM;
            continue;
        }
        if (t->byte_fallback) {
            size_t b = 0;

            while (b < n && t->byte_id[(unsigned char)s[b]] >= 0)
                b++;
            if (b == n) {
                for (b = 0; b < n; b++)
                    if (sym_push(wk, t->byte_id[(unsigned char)s[b]]))
                        return -ENOMEM;
                continue;
            }
        }
        if (t->unk_id < 0)
            continue;   /* no unk token: the character is dropped, as Hugging Face does */
        if (unk >= 0 && !t->fuse_unk && sym_push(wk, unk))
            return -ENOMEM;
        unk = t->unk_id;
    }
    if (unk >= 0 && sym_push(wk, unk))
        return -ENOMEM;
    return 0;
}

/* The merge of symbols i and its right neighbour onto the heap, if the pair merges. */
static int push_pair(const struct tokenizer *t, struct tk_bpe_work *wk, int i)
{
    int right = wk->sym[i].next;
    int32_t merged;
    int64_t rank;

    if (right < 0 || (rank = merge_get(&t->merges, wk->sym[i].id, wk->sym[right].id, &merged)) < 0)
        return 0;
    return heap_push(wk, (struct tk_merge_entry){ (uint32_t)rank, (uint32_t)i, merged });
}

int tk__bpe_encode(const struct tokenizer *t, struct tk_bpe_work *wk, const char *w, size_t len,
                   int32_t **ids, int *n, int *cap)
{
    struct tk_sym *sym;
    int32_t merged;
    int rc;

    if (len == 0)
        return 0;
    if (t->ignore_merges) {
        int32_t id = vocab_get(t, w, len);

        if (id >= 0)
            return tk__ids_push(ids, n, cap, id);
    }
    if ((rc = initial_symbols(t, wk, w, len)))
        return rc;
    sym = wk->sym;
    for (int i = 0; i < wk->n; i++) {
        sym[i].prev = i - 1;
        sym[i].next = i + 1 < wk->n ? i + 1 : -1;
    }
    wk->heap_n = 0;
    for (int i = 0; i < wk->n; i++)
        if (push_pair(t, wk, i))
            return -ENOMEM;
    while (wk->heap_n) {
        struct tk_merge_entry top = heap_pop(wk);
        int pos = (int)top.pos, right = sym[pos].next;

        /* Skip stale entries: the left symbol was merged away (id -1), is now last, or the
         * pair changed so that it no longer merges into the same token. */
        if (sym[pos].id < 0 || right < 0 ||
            merge_get(&t->merges, sym[pos].id, sym[right].id, &merged) < 0 || merged != top.merged)
            continue;
        sym[pos].id = top.merged;
        sym[right].id = -1;
        sym[pos].next = sym[right].next;
        if (sym[right].next >= 0)
            sym[sym[right].next].prev = pos;
        if ((sym[pos].prev >= 0 && push_pair(t, wk, sym[pos].prev)) || push_pair(t, wk, pos))
            return -ENOMEM;
    }
    for (int i = 0; i >= 0 && i < wk->n; i = sym[i].next)
        if (tk__ids_push(ids, n, cap, sym[i].id))
            return -ENOMEM;
    return 0;
}
