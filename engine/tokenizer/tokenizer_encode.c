/* tokenizer_encode.c — text to ids, in Hugging Face's order: split the text on added
 * tokens (leftmost longest; lstrip/rstrip/single_word), normalize each piece between them,
 * split again on added tokens marked normalized, pre-tokenize, run BPE on each pre-token,
 * then let the post-processor add special tokens. Also the added-token matchers and the
 * post-processor (TemplateProcessing, Bert/Roberta, ByteLevel, Sequence) parsed at load. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer/tokenizer_internal.h"
#include "engine/base/util.h"

int tk__ids_push(int32_t **ids, int *n, int *cap, int32_t id)
{
    if (tk__grow((void **)ids, cap, *n, sizeof **ids))
        return -ENOMEM;
    (*ids)[(*n)++] = id;
    return 0;
}

static void scratch_free(struct tk_scratch *sc)
{
    pcre2_match_data_free(sc->md);
    buf_fini(&sc->norm);
    buf_fini(&sc->tmp);
    tk__pieces_free(&sc->pieces);
    tk__pieces_free(&sc->pieces_tmp);
    tk__spans_free(&sc->spans);
    tk__bpe_work_free(&sc->bpe);
    free(sc->raw_segs.v);
    free(sc->norm_segs.v);
    free(sc->ids);
    memset(sc, 0, sizeof *sc);
}

/* --- added tokens ---------------------------------------------------------------------- */

static const char *added_text(const struct tk_added *a, bool norm, size_t *len)
{
    *len = norm ? a->norm_len : a->len;
    return norm ? a->norm : a->content;
}

/* Adds the text of added token k to the trie. */
static int trie_add(struct tk_matcher *m, const char *s, size_t len, int k)
{
    int32_t parent = -1, cur = -1;

    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t prev = -1;

        cur = parent < 0 ? m->root[b] : m->node[parent].child;
        while (cur >= 0 && m->node[cur].byte != b) {
            prev = cur;
            cur = m->node[cur].sibling;
        }
        if (cur < 0) {
            if (TK_GROW(m->node, m->cap, m->n))
                return -ENOMEM;
            cur = m->n++;
            m->node[cur] = (struct tk_trie_node){ -1, -1, -1, b };
            if (prev >= 0)
                m->node[prev].sibling = cur;
            else if (parent >= 0)
                m->node[parent].child = cur;
            else
                m->root[b] = cur;
        }
        parent = cur;
    }
    m->node[cur].added = k;   /* a repeated text: the later entry, as a map would keep */
    m->n_tokens++;
    return 0;
}

static int matcher_build(struct tokenizer *t, struct tk_matcher *m, bool norm)
{
    for (int b = 0; b < 256; b++)
        m->root[b] = -1;
    for (int i = 0; i < t->n_added; i++) {
        size_t len;
        const char *s = added_text(&t->added[i], norm, &len);

        if (t->added[i].normalized == norm && len > 0 && trie_add(m, s, len, i))
            return -ENOMEM;
    }
    return 0;
}

int tk__added_prepare(struct tokenizer *t, const char *file, char *err)
{
    struct tk_scratch sc = { 0 };
    int rc = 0;

    sc.md = pcre2_match_data_create(32, NULL);
    if (!sc.md)
        return -ENOMEM;
    /* A normalized token is matched in normalized text, so it is matched in its own
     * normalized form (Hugging Face's normalized_cache). */
    for (int i = 0; i < t->n_added && !rc; i++) {
        struct tk_added *a = &t->added[i];

        if (!a->normalized)
            continue;
        rc = tk__normalize(t, sc.md, a->content, a->len, &sc.norm, &sc.tmp);
        if (!rc) {
            a->norm = malloc(sc.norm.len + 1);
            if (!a->norm)
                rc = -ENOMEM;
            else {
                memcpy(a->norm, sc.norm.p, sc.norm.len);
                a->norm[sc.norm.len] = '\0';
                a->norm_len = sc.norm.len;
            }
        }
    }
    if (rc)
        errf(err, "%s: added_tokens: the normalizer failed on a normalized token", file);
    if (!rc)
        rc = matcher_build(t, &t->raw_match, false);
    if (!rc)
        rc = matcher_build(t, &t->norm_match, true);
    scratch_free(&sc);
    return rc;
}

static int segs_push(struct tk_segs *sg, size_t a, size_t b, int32_t id)
{
    if (TK_GROW(sg->v, sg->cap, sg->n))
        return -ENOMEM;
    sg->v[sg->n++] = (struct tk_seg){ a, b, id };
    return 0;
}

/* The leftmost, then longest, added token at or after pos; -1 for none. */
static int next_added(const struct tk_matcher *m, const char *s, size_t len, size_t pos, size_t *at)
{
    if (m->n_tokens == 0)
        return -1;
    for (size_t i = pos; i < len; i++) {
        int32_t node = m->root[(unsigned char)s[i]];
        int found = -1;

        for (size_t k = i + 1; node >= 0; k++) {
            if (m->node[node].added >= 0)
                found = m->node[node].added;
            if (k == len)
                break;
            for (node = m->node[node].child; node >= 0 && m->node[node].byte != (uint8_t)s[k];)
                node = m->node[node].sibling;
        }
        if (found >= 0) {
            *at = i;
            return found;
        }
    }
    return -1;
}

/* Start of the character that ends at s[end]; s[0..end) is valid UTF-8 and end > 0. */
static size_t char_start(const char *s, size_t end)
{
    while (end > 0 && ((unsigned char)s[--end] & 0xc0) == 0x80)
        ;
    return end;
}

static uint32_t char_before(const char *s, size_t end)
{
    size_t i = char_start(s, end);
    uint32_t cp = 0;

    tk__utf8_decode(s + i, end - i, &cp);
    return cp;
}

/* Where the run of whitespace that ends at s[end] begins. */
static size_t space_run_before(const char *s, size_t end)
{
    while (end > 0 && tk__is_space(char_before(s, end)))
        end = char_start(s, end);
    return end;
}

/* Splits s into text and added-token segments (AddedVocabulary::find_matches). */
static int split_added(const struct tokenizer *t, const struct tk_matcher *m, bool norm,
                       const char *s, size_t len, struct tk_segs *out)
{
    size_t start_offset = 0, pos = 0, ms;
    int k;

    out->n = 0;
    while ((k = next_added(m, s, len, pos, &ms)) >= 0) {
        const struct tk_added *a = &t->added[k];
        size_t tl, start = ms, stop;
        uint32_t cp;
        int n;

        added_text(a, norm, &tl);
        stop = pos = ms + tl;
        if (a->single_word) {
            bool word_before = start > 0 && tk__is_word(char_before(s, start));
            bool word_after = stop < len && tk__utf8_decode(s + stop, len - stop, &cp) > 0 &&
                              tk__is_word(cp);

            if (word_before || word_after)
                continue;
        }
        if (a->lstrip)   /* the whitespace before it, unless an earlier token took it */
            start = space_run_before(s, start);
        if (a->rstrip)
            while (stop < len && (n = tk__utf8_decode(s + stop, len - stop, &cp)) > 0 &&
                   tk__is_space(cp))
                stop += n;
        /* A token inside the spaces an earlier rstrip took starts where that one ended. */
        start = MAX(start, start_offset);
        stop = MAX(stop, start);
        if (start_offset < start && segs_push(out, start_offset, start, -1))
            return -ENOMEM;
        if (segs_push(out, start, stop, a->id))
            return -ENOMEM;
        start_offset = stop;
    }
    if (start_offset < len && segs_push(out, start_offset, len, -1))
        return -ENOMEM;
    return 0;
}

/* --- the pipeline ---------------------------------------------------------------------- */

/* Pre-tokenizes and BPE-encodes one normalized piece. */
static int encode_piece(const struct tokenizer *t, struct tk_scratch *sc, const char *s,
                        size_t len, bool at0)
{
    int rc = tk__pretokenize(t, sc, s, len, at0);

    for (int i = 0; !rc && i < sc->pieces.n; i++)
        rc = tk__bpe_encode(t, &sc->bpe, sc->pieces.buf.p + sc->pieces.v[i].off,
                            sc->pieces.v[i].len, &sc->ids, &sc->n_ids, &sc->cap_ids);
    return rc;
}

/* Normalizes one piece of input text, splits it on normalized added tokens, encodes. */
static int encode_text(const struct tokenizer *t, struct tk_scratch *sc, const char *s,
                       size_t len, bool at0)
{
    struct tk_segs *sg = &sc->norm_segs;
    int rc;

    if ((rc = tk__normalize(t, sc->md, s, len, &sc->norm, &sc->tmp)))
        return rc;
    if (t->norm_match.n_tokens == 0)
        return encode_piece(t, sc, sc->norm.p, sc->norm.len, at0);
    if ((rc = split_added(t, &t->norm_match, true, sc->norm.p, sc->norm.len, sg)))
        return rc;
    for (int i = 0; i < sg->n && !rc; i++) {
        const struct tk_seg *g = &sg->v[i];

        if (g->id >= 0)
            rc = tk__ids_push(&sc->ids, &sc->n_ids, &sc->cap_ids, g->id);
        else
            rc = encode_piece(t, sc, sc->norm.p + g->a, g->b - g->a, at0 && g->a == 0);
    }
    return rc;
}

static int post_process(const struct tokenizer *t, struct tk_scratch *sc)
{
    for (int s = 0; s < t->n_post; s++) {
        const struct tk_post *p = &t->post[s];
        int32_t *out = NULL;
        int n = 0, cap = 0;

        for (int i = 0; i < p->n_items; i++) {
            const int32_t *src = p->items[i].seq ? sc->ids : p->items[i].ids;
            int count = p->items[i].seq ? sc->n_ids : p->items[i].n_ids;

            for (int k = 0; k < count; k++)
                if (tk__ids_push(&out, &n, &cap, src[k])) {
                    free(out);
                    return -ENOMEM;
                }
        }
        free(sc->ids);
        sc->ids = out;
        sc->n_ids = n;
        sc->cap_ids = cap;
    }
    return 0;
}

int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, bool add_special,
                     int32_t **ids, int *n, char *err)
{
    struct tk_scratch sc = { 0 };
    struct buf clean = { 0 };
    int rc = -ENOMEM;

    *ids = NULL;
    *n = 0;
    if (len > INT_MAX / 8) {
        errf(err, "tokenize: text of %zu bytes is too long", len);
        return -E2BIG;
    }
    if (tk__utf8_valid_prefix(text, len) != len) {
        if (tk__utf8_lossy(text, len, &clean))
            goto out;
        text = clean.p;
        len = clean.len;
    }
    if (!(sc.md = pcre2_match_data_create(32, NULL)))
        goto out;
    if ((rc = split_added(t, &t->raw_match, false, text, len, &sc.raw_segs)))
        goto out;
    for (int i = 0; i < sc.raw_segs.n && !rc; i++) {
        const struct tk_seg *g = &sc.raw_segs.v[i];

        if (g->id >= 0)
            rc = tk__ids_push(&sc.ids, &sc.n_ids, &sc.cap_ids, g->id);
        else
            rc = encode_text(t, &sc, text + g->a, g->b - g->a, g->a == 0);
    }
    if (!rc && add_special)
        rc = post_process(t, &sc);
    if (!rc) {
        *ids = sc.ids;
        *n = sc.n_ids;
        sc.ids = NULL;
    }
out:
    if (rc == -ENOMEM)
        errf(err, "tokenize: out of memory");
    else if (rc)
        errf(err, "tokenize: a pattern failed to match (PCRE2 error; input too complex?)");
    buf_fini(&clean);
    scratch_free(&sc);
    return rc;
}

/* --- post-processor -------------------------------------------------------------------- */

static int post_add(struct tokenizer *t, const char *where, const char *file, char *err,
                    struct tk_post **out)
{
    if (t->n_post == TK_MAX_STEPS) {
        errf(err, "%s: %s: more than %d post-processors", file, where, TK_MAX_STEPS);
        return -EINVAL;
    }
    *out = &t->post[t->n_post++];
    memset(*out, 0, sizeof **out);
    return 0;
}

static int item_add(struct tk_post *p, bool seq, const int32_t *ids, int n_ids)
{
    void *items = realloc(p->items, (p->n_items + 1) * sizeof *p->items);

    if (!items)
        return -ENOMEM;
    p->items = items;
    p->items[p->n_items].seq = seq;
    p->items[p->n_items].n_ids = 0;
    p->items[p->n_items].ids = NULL;
    if (n_ids) {
        p->items[p->n_items].ids = malloc(n_ids * sizeof *ids);
        if (!p->items[p->n_items].ids)
            return -ENOMEM;
        memcpy(p->items[p->n_items].ids, ids, n_ids * sizeof *ids);
        p->items[p->n_items].n_ids = n_ids;
    }
    p->n_items++;
    return 0;
}

/* A special token of a TemplateProcessing: its ids from special_tokens[name].ids. */
static int template_special(const struct tokenizer *t, struct tk_post *p, const cJSON *special,
                            const char *name, const char *where, const char *file, char *err)
{
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(special, name);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(tok, "ids"), *e;
    int32_t v[16];
    int n = 0;

    if (!cJSON_IsArray(ids)) {
        errf(err, "%s: %s: special token \"%.64s\" has no ids in special_tokens", file, where, name);
        return -EINVAL;
    }
    cJSON_ArrayForEach(e, ids) {
        if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0 && e->valuedouble < TK_MAX_ID) ||
            n == (int)ARRAY_LEN(v)) {
            errf(err, "%s: %s: special_tokens[\"%.64s\"].ids: expected up to %d ids", file, where,
                 name, (int)ARRAY_LEN(v));
            return -EINVAL;
        }
        if (!tokenizer_id_to_token(t, e->valueint)) {   /* the encoder only emits real ids */
            errf(err, "%s: %s: special_tokens[\"%.64s\"].ids: %d is not in the vocabulary", file,
                 where, name, e->valueint);
            return -EINVAL;
        }
        v[n++] = e->valueint;
    }
    return item_add(p, false, v, n);
}

static int template_parse(struct tokenizer *t, const cJSON *j, const char *where, const char *file,
                          char *err)
{
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single");
    const cJSON *special = cJSON_GetObjectItemCaseSensitive(j, "special_tokens"), *e;
    struct tk_post *p;
    int rc, i = 0;

    if ((rc = post_add(t, where, file, err, &p)))
        return rc;
    if (!cJSON_IsArray(single)) {
        errf(err, "%s: %s.single: expected an array", file, where);
        return -EINVAL;
    }
    cJSON_ArrayForEach(e, single) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
        const cJSON *sq = cJSON_GetObjectItemCaseSensitive(e, "Sequence");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(st ? st : sq, "id");
        char sub[256];

        snprintf(sub, sizeof sub, "%s.single[%d]", where, i++);
        if (!cJSON_IsString(id)) {
            errf(err, "%s: %s: expected {\"SpecialToken\": {\"id\": …}} or {\"Sequence\": {\"id\": \"A\"}}",
                 file, sub);
            return -EINVAL;
        } else if (sq) {
            if (strcmp(id->valuestring, "A")) {
                errf(err, "%s: %s.Sequence.id: \"%.16s\" is not A", file, sub, id->valuestring);
                return -EINVAL;
            }
            rc = item_add(p, true, NULL, 0);
        } else
            rc = template_special(t, p, special, id->valuestring, sub, file, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* RobertaProcessing / BertProcessing: cls, the sequence, sep; each given as [token, id]. */
static int cls_sep_parse(struct tokenizer *t, const cJSON *j, const char *where, const char *file,
                         char *err)
{
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(j, "cls");
    const cJSON *sep = cJSON_GetObjectItemCaseSensitive(j, "sep");
    struct tk_post *p;
    int32_t c, s;
    int rc;

    if (cJSON_GetArraySize(cls) != 2 || !cJSON_IsNumber(cls->child->next) ||
        cJSON_GetArraySize(sep) != 2 || !cJSON_IsNumber(sep->child->next) ||
        !(cls->child->next->valuedouble >= 0 && cls->child->next->valuedouble < TK_MAX_ID) ||
        !(sep->child->next->valuedouble >= 0 && sep->child->next->valuedouble < TK_MAX_ID)) {
        errf(err, "%s: %s: cls and sep must be [token, id]", file, where);
        return -EINVAL;
    }
    c = cls->child->next->valueint;
    s = sep->child->next->valueint;
    if (!tokenizer_id_to_token(t, c) || !tokenizer_id_to_token(t, s)) {
        errf(err, "%s: %s: cls id %d or sep id %d is not in the vocabulary", file, where, c, s);
        return -EINVAL;
    }
    if ((rc = post_add(t, where, file, err, &p)) || (rc = item_add(p, false, &c, 1)) ||
        (rc = item_add(p, true, NULL, 0)) || (rc = item_add(p, false, &s, 1)))
        return rc;
    return 0;
}

static int post_parse(struct tokenizer *t, const cJSON *j, const char *where, const char *file,
                      char *err)
{
    const char *type = tk__json_type(j, where, file, err);

    if (!type)
        return -EINVAL;
    if (!strcmp(type, "Sequence"))
        return tk__json_each(t, j, "processors", where, file, err, post_parse);
    if (!strcmp(type, "ByteLevel"))
        return 0;   /* only moves offsets */
    if (!strcmp(type, "TemplateProcessing"))
        return template_parse(t, j, where, file, err);
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing"))
        return cls_sep_parse(t, j, where, file, err);
    errf(err, "%s: %s.type: post-processor \"%s\" is not supported (TemplateProcessing, "
         "ByteLevel, RobertaProcessing, BertProcessing, Sequence)", file, where, type);
    return -EINVAL;
}

int tk__post_parse(struct tokenizer *t, const cJSON *j, const char *file, char *err)
{
    if (!j || cJSON_IsNull(j))
        return 0;
    return post_parse(t, j, "post_processor", file, err);
}

void tk__post_free(struct tk_post *p)
{
    for (int i = 0; i < p->n_items; i++)
        free(p->items[i].ids);
    free(p->items);
    memset(p, 0, sizeof *p);
}

/* tokenizer_config.json's add_bos_token / add_eos_token: [bos] $A [eos]. */
int tk__post_override(struct tokenizer *t, bool add_bos, bool add_eos)
{
    struct tk_post *p;
    int rc;

    for (int i = 0; i < t->n_post; i++)
        tk__post_free(&t->post[i]);
    t->n_post = 0;
    if (post_add(t, "", "", NULL, &p))
        return -EINVAL;
    if ((add_bos && t->bos_id >= 0 && (rc = item_add(p, false, &t->bos_id, 1))) ||
        (rc = item_add(p, true, NULL, 0)) ||
        (add_eos && t->eos_id >= 0 && (rc = item_add(p, false, &t->eos_id, 1))))
        return rc;
    return 0;
}
