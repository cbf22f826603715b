/* tokenizer_pretok.c — tokenizer.json "pre_tokenizer" as a flat list of steps (Sequence is
 * flattened), each splitting every piece into smaller ones the way Hugging Face's
 * NormalizedString::split does: find the matches, fold them per the split behavior, drop
 * empty pieces. Split, ByteLevel (and its 256-character alphabet), Metaspace, Digits,
 * Whitespace, WhitespaceSplit, Punctuation, BertPreTokenizer. */
#include <errno.h>
#include <stdio.h>     /* snprintf */
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer/tokenizer_internal.h"
#include "engine/base/util.h"

/* The GPT-2 pre-tokenization regex ByteLevel applies when use_regex is true. */
static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char WHITESPACE_REGEX[] = "\\w+|[^\\w\\s]+";

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the other 68 bytes for
 * U+0100 onwards, in byte order. */
void tk__byte_level_init(struct tokenizer *t)
{
    int next = 256;

    for (int i = 0; i < (int)ARRAY_LEN(t->char_byte); i++)
        t->char_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        int cp = printable ? b : next++;

        t->byte_char_len[b] = (uint8_t)tk__utf8_encode((uint32_t)cp, t->byte_char[b]);
        t->char_byte[cp] = (int16_t)b;
    }
}

static int behavior_parse(const cJSON *j, const char *dflt, enum tk_split_behavior *out,
                          const char *where, const char *file, char *err)
{
    static const char *names[] = { "Removed", "Isolated", "MergedWithPrevious",
                                   "MergedWithNext", "Contiguous" };
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "behavior");
    const char *s = dflt;

    if (b && !cJSON_IsNull(b)) {
        if (!cJSON_IsString(b)) {
            errf(err, "%s: %s.behavior: expected a string", file, where);
            return -EINVAL;
        }
        s = b->valuestring;
    }
    for (int i = 0; i < (int)ARRAY_LEN(names); i++)
        if (!strcmp(s, names[i])) {
            *out = (enum tk_split_behavior)i;
            return 0;
        }
    errf(err, "%s: %s.behavior: unknown split behavior \"%s\"", file, where, s);
    return -EINVAL;
}

static int metaspace_parse(struct tk_pretok *p, const cJSON *j, const char *where,
                           const char *file, char *err)
{
    const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(j, "prepend_scheme");
    bool add_prefix_space;
    int rc;

    if ((rc = tk__json_char(j, "replacement", "\xe2\x96\x81", p->rep, &p->rep_len, where, file, err)) ||
        (rc = tk__json_bool(j, "split", true, &p->split, where, file, err)) ||
        (rc = tk__json_bool(j, "add_prefix_space", true, &add_prefix_space, where, file, err)))
        return rc;
    p->prepend = TK_PREPEND_ALWAYS;
    if (cJSON_IsString(scheme)) {
        if (!strcmp(scheme->valuestring, "first")) p->prepend = TK_PREPEND_FIRST;
        else if (!strcmp(scheme->valuestring, "never")) p->prepend = TK_PREPEND_NEVER;
        else if (strcmp(scheme->valuestring, "always")) {
            errf(err, "%s: %s.prepend_scheme: \"%s\" is not first, never or always", file, where,
                 scheme->valuestring);
            return -EINVAL;
        }
    } else if (scheme && !cJSON_IsNull(scheme)) {
        errf(err, "%s: %s.prepend_scheme: expected a string", file, where);
        return -EINVAL;
    }
    if (!add_prefix_space)   /* the older spelling of prepend_scheme "never" */
        p->prepend = TK_PREPEND_NEVER;
    return 0;
}

static int pretok_parse(struct tokenizer *t, const cJSON *j, const char *where, const char *file,
                        char *err)
{
    const char *type = tk__json_type(j, where, file, err);
    struct tk_pretok *p;
    char sub[256];
    int rc = 0;

    if (!type)
        return -EINVAL;
    if (!strcmp(type, "Sequence"))
        return tk__json_each(t, j, "pretokenizers", where, file, err, pretok_parse);
    /* BertPreTokenizer is WhitespaceSplit then Punctuation: two steps. */
    if (t->n_pretok + 2 > TK_MAX_STEPS) {
        errf(err, "%s: %s: more than %d pre-tokenizers", file, where, TK_MAX_STEPS);
        return -EINVAL;
    }
    p = &t->pretok[t->n_pretok];
    memset(p, 0, sizeof *p);
    if (!strcmp(type, "Split")) {
        p->kind = TP_SPLIT;
        snprintf(sub, sizeof sub, "%s.pattern", where);
        if ((rc = tk__pattern_parse(&p->pat, cJSON_GetObjectItemCaseSensitive(j, "pattern"), sub,
                                    file, err)))
            return rc;
        t->n_pretok++;   /* owns the pattern now */
        if ((rc = behavior_parse(j, "Isolated", &p->behavior, where, file, err)) ||
            (rc = tk__json_bool(j, "invert", false, &p->invert, where, file, err)))
            return rc;
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        p->kind = TP_BYTE_LEVEL;
        if ((rc = tk__json_bool(j, "add_prefix_space", true, &p->add_prefix_space, where, file, err)) ||
            (rc = tk__json_bool(j, "use_regex", true, &p->use_regex, where, file, err)))
            return rc;
        if (p->use_regex)
            rc = tk__regex_compile(&p->pat.re, GPT2_REGEX, sizeof GPT2_REGEX - 1, where, file, err);
    } else if (!strcmp(type, "Metaspace")) {
        p->kind = TP_METASPACE;
        rc = metaspace_parse(p, j, where, file, err);
    } else if (!strcmp(type, "Digits")) {
        p->kind = TP_DIGITS;
        rc = tk__json_bool(j, "individual_digits", false, &p->individual_digits, where, file, err);
    } else if (!strcmp(type, "Whitespace")) {
        p->kind = TP_WHITESPACE;
        rc = tk__regex_compile(&p->pat.re, WHITESPACE_REGEX, sizeof WHITESPACE_REGEX - 1, where,
                               file, err);
    } else if (!strcmp(type, "WhitespaceSplit")) {
        p->kind = TP_WHITESPACE_SPLIT;
    } else if (!strcmp(type, "Punctuation")) {
        p->kind = TP_PUNCTUATION;
        rc = behavior_parse(j, "Isolated", &p->behavior, where, file, err);
    } else if (!strcmp(type, "BertPreTokenizer")) {
        p->kind = TP_WHITESPACE_SPLIT;
        p[1] = (struct tk_pretok){ .kind = TP_PUNCTUATION, .behavior = TS_ISOLATED };
        t->n_pretok++;
    } else {
        errf(err, "%s: %s.type: pre-tokenizer \"%s\" is not supported (Split, ByteLevel, "
             "Metaspace, Digits, Whitespace, WhitespaceSplit, Punctuation, BertPreTokenizer, "
             "Sequence)", file, where, type);
        return -EINVAL;
    }
    t->n_pretok++;
    return rc;
}

int tk__pretok_parse(struct tokenizer *t, const cJSON *j, const char *file, char *err)
{
    if (!j || cJSON_IsNull(j))
        return 0;
    return pretok_parse(t, j, "pre_tokenizer", file, err);
}

void tk__pretok_free(struct tk_pretok *p)
{
    tk__pattern_free(&p->pat);
    memset(p, 0, sizeof *p);
}

/* --- spans: a piece cut into ranges, each a match of the pattern or not --------------- */

static int spans_push(struct tk_spans *sp, size_t a, size_t b, bool m)
{
    if (TK_GROW(sp->v, sp->cap, sp->n))
        return -ENOMEM;
    sp->v[sp->n++] = (struct tk_span){ a, b, m };
    return 0;
}

void tk__spans_free(struct tk_spans *sp)
{
    free(sp->v);
    memset(sp, 0, sizeof *sp);
}

/* Hugging Face's Pattern::find_matches for a regex or literal. */
static int spans_pattern(const struct tk_pattern *p, pcre2_match_data *md, const char *s,
                         size_t len, struct tk_spans *sp)
{
    struct tk_match_iter it;
    size_t prev = 0, ms, me;
    int rc;

    sp->n = 0;
    tk__match_init(&it, p, md, s, len);
    while ((rc = tk__match_next(&it, &ms, &me)) > 0) {
        if ((prev != ms && spans_push(sp, prev, ms, false)) || spans_push(sp, ms, me, true))
            return -ENOMEM;
        prev = me;
    }
    if (rc < 0)
        return rc;
    if (prev != len && spans_push(sp, prev, len, false))
        return -ENOMEM;
    return 0;
}

/* find_matches for a character predicate: every matching character is its own match. */
static int spans_chars(bool (*pred)(uint32_t cp, const void *arg), const void *arg,
                       const char *s, size_t len, struct tk_spans *sp)
{
    size_t i = 0, last = 0;
    uint32_t cp;
    int k;

    sp->n = 0;
    while (i < len && (k = tk__utf8_decode(s + i, len - i, &cp)) > 0) {
        if (pred(cp, arg)) {
            if ((last < i && spans_push(sp, last, i, false)) || spans_push(sp, i, i + k, true))
                return -ENOMEM;
            last = i + k;
        }
        i += k;
    }
    if (last < len && spans_push(sp, last, len, false))
        return -ENOMEM;
    return 0;
}

/* Folds the spans per behavior (NormalizedString::split); afterwards match[] means
 * "remove". Works in place: the write index never passes the read index. */
static void spans_fold(struct tk_spans *sp, enum tk_split_behavior b)
{
    struct tk_span *v = sp->v;
    bool prev = false;
    int w = 0;

    switch (b) {
    case TS_ISOLATED:
        for (int i = 0; i < sp->n; i++)
            v[i].match = false;
        return;
    case TS_REMOVED:
        return;
    case TS_CONTIGUOUS:
    case TS_MERGED_PREV:
        for (int i = 0; i < sp->n; i++) {
            struct tk_span x = v[i];
            bool join = b == TS_CONTIGUOUS ? x.match == prev : (x.match && !prev);

            if (join && w > 0)
                v[w - 1].end = x.end;
            else
                v[w++] = (struct tk_span){ x.start, x.end, false };
            prev = x.match;
        }
        sp->n = w;
        return;
    case TS_MERGED_NEXT:
        w = sp->n;
        for (int i = sp->n - 1; i >= 0; i--) {
            struct tk_span x = v[i];

            if (x.match && !prev && w < sp->n)
                v[w].start = x.start;
            else
                v[--w] = (struct tk_span){ x.start, x.end, false };
            prev = x.match;
        }
        memmove(v, v + w, (sp->n - w) * sizeof *v);
        sp->n -= w;
        return;
    }
}

/* Adds the kept, non-empty spans of s to out. */
static int spans_emit(const struct tk_spans *sp, const char *s, bool at0, struct tk_pieces *out)
{
    for (int i = 0; i < sp->n; i++) {
        const struct tk_span *x = &sp->v[i];

        if (!x->match && x->end > x->start &&
            tk__pieces_add(out, s + x->start, x->end - x->start, at0 && x->start == 0))
            return -ENOMEM;
    }
    return 0;
}

static bool is_numeric_cb(uint32_t cp, const void *arg) { (void)arg; return tk__is_numeric(cp); }
static bool is_space_cb(uint32_t cp, const void *arg) { (void)arg; return tk__is_space(cp); }
static bool is_punct_cb(uint32_t cp, const void *arg) { (void)arg; return tk__is_punct(cp); }
static bool is_char_cb(uint32_t cp, const void *arg) { return cp == *(const uint32_t *)arg; }

/* ByteLevel: optional leading space, the GPT-2 split, then bytes → alphabet characters. */
static int byte_level(const struct tokenizer *t, const struct tk_pretok *p, struct tk_scratch *sc,
                      const char *s, size_t len, bool at0, struct tk_pieces *out)
{
    struct buf *b = &sc->tmp;
    struct tk_spans *sp = &sc->spans;
    int rc;

    b->len = 0;
    if (p->add_prefix_space && (len == 0 || s[0] != ' ') && buf_put(b, " ", 1))
        return -ENOMEM;
    if (buf_put(b, s, len))
        return -ENOMEM;
    sp->n = 0;
    if (p->use_regex) {
        if ((rc = spans_pattern(&p->pat, sc->md, b->p, b->len, sp)))
            return rc;
    } else if (spans_push(sp, 0, b->len, false))
        return -ENOMEM;
    for (int i = 0; i < sp->n; i++) {
        const struct tk_span *x = &sp->v[i];
        size_t off = out->buf.len;

        if (x->end == x->start)
            continue;
        for (size_t k = x->start; k < x->end; k++) {
            unsigned char c = (unsigned char)b->p[k];

            if (buf_put(&out->buf, t->byte_char[c], t->byte_char_len[c]))
                return -ENOMEM;
        }
        if (tk__pieces_add_ref(out, off, out->buf.len - off, at0 && x->start == 0))
            return -ENOMEM;
    }
    return 0;
}

/* Metaspace: spaces become the replacement, which is prepended per scheme; then split
 * before each replacement character. */
static int metaspace(const struct tk_pretok *p, struct tk_scratch *sc, const char *s, size_t len,
                     bool at0, struct tk_pieces *out)
{
    struct buf *b = &sc->tmp;
    uint32_t rep;
    bool starts;
    int rc;

    b->len = 0;
    if (buf_reserve(b, 0))
        return -ENOMEM;
    for (size_t i = 0; i < len; i++)
        if (s[i] == ' ' ? buf_put(b, p->rep, p->rep_len) : buf_put(b, s + i, 1))
            return -ENOMEM;
    starts = b->len >= (size_t)p->rep_len && !memcmp(b->p, p->rep, p->rep_len);
    if (!starts && (p->prepend == TK_PREPEND_ALWAYS || (p->prepend == TK_PREPEND_FIRST && at0))) {
        if (buf_reserve(b, p->rep_len))
            return -ENOMEM;
        memmove(b->p + p->rep_len, b->p, b->len + 1);
        memcpy(b->p, p->rep, p->rep_len);
        b->len += p->rep_len;
    }
    if (!p->split)
        return b->len ? tk__pieces_add(out, b->p, b->len, at0) : 0;
    tk__utf8_decode(p->rep, p->rep_len, &rep);
    if ((rc = spans_chars(is_char_cb, &rep, b->p, b->len, &sc->spans)))
        return rc;
    spans_fold(&sc->spans, TS_MERGED_NEXT);
    return spans_emit(&sc->spans, b->p, at0, out);
}

static int step(const struct tokenizer *t, const struct tk_pretok *p, struct tk_scratch *sc,
                const char *s, size_t len, bool at0, struct tk_pieces *out)
{
    struct tk_spans *sp = &sc->spans;
    enum tk_split_behavior behavior = TS_REMOVED;
    int rc = 0;

    switch (p->kind) {
    case TP_BYTE_LEVEL:
        return byte_level(t, p, sc, s, len, at0, out);
    case TP_METASPACE:
        return metaspace(p, sc, s, len, at0, out);
    case TP_SPLIT:
        rc = spans_pattern(&p->pat, sc->md, s, len, sp);
        if (!rc && p->invert)
            for (int i = 0; i < sp->n; i++)
                sp->v[i].match = !sp->v[i].match;
        behavior = p->behavior;
        break;
    case TP_WHITESPACE:
        rc = spans_pattern(&p->pat, sc->md, s, len, sp);
        for (int i = 0; !rc && i < sp->n; i++)
            sp->v[i].match = !sp->v[i].match;
        break;
    case TP_DIGITS:
        rc = spans_chars(is_numeric_cb, NULL, s, len, sp);
        behavior = p->individual_digits ? TS_ISOLATED : TS_CONTIGUOUS;
        break;
    case TP_WHITESPACE_SPLIT:
        rc = spans_chars(is_space_cb, NULL, s, len, sp);
        break;
    case TP_PUNCTUATION:
        rc = spans_chars(is_punct_cb, NULL, s, len, sp);
        behavior = p->behavior;
        break;
    }
    if (rc)
        return rc;
    spans_fold(sp, behavior);
    return spans_emit(sp, s, at0, out);
}

int tk__pretokenize(const struct tokenizer *t, struct tk_scratch *sc, const char *s, size_t len,
                    bool at0)
{
    struct tk_pieces *in = &sc->pieces, *out = &sc->pieces_tmp;

    tk__pieces_clear(in);
    if (len && tk__pieces_add(in, s, len, at0))
        return -ENOMEM;
    for (int i = 0; i < t->n_pretok; i++) {
        struct tk_pieces swap;

        tk__pieces_clear(out);
        for (int k = 0; k < in->n; k++) {
            const struct tk_piece *x = &in->v[k];
            int rc = step(t, &t->pretok[i], sc, in->buf.p + x->off, x->len, x->at0, out);

            if (rc)
                return rc;
        }
        swap = *in;
        *in = *out;
        *out = swap;
    }
    return 0;
}
