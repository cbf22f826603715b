/* tokenizer_decode.c — ids to text: tokenizer.json "decoder" parsed into a flat list of
 * steps, each mapping a list of token strings to a new list (Hugging Face's decode_chain),
 * then joined. Also detok_*, the incremental decoder for streaming, which decodes a short
 * window of ids and emits only the text that later ids can no longer change. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer/tokenizer_internal.h"
#include "engine/base/util.h"

static int dec_parse(struct tokenizer *t, const cJSON *j, const char *where, const char *file,
                     char *err)
{
    const char *type = tk__json_type(j, where, file, err);
    struct tk_dec *d;
    char sub[256];
    int rc = 0;

    if (!type)
        return -EINVAL;
    if (!strcmp(type, "Sequence"))
        return tk__json_each(t, j, "decoders", where, file, err, dec_parse);
    if (t->n_dec == TK_MAX_STEPS) {
        errf(err, "%s: %s: more than %d decoders", file, where, TK_MAX_STEPS);
        return -EINVAL;
    }
    d = &t->dec[t->n_dec];
    memset(d, 0, sizeof *d);
    if (!strcmp(type, "ByteLevel")) d->kind = TD_BYTE_LEVEL;
    else if (!strcmp(type, "ByteFallback")) d->kind = TD_BYTE_FALLBACK;
    else if (!strcmp(type, "Fuse")) d->kind = TD_FUSE;
    else if (!strcmp(type, "Metaspace")) {
        const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(j, "prepend_scheme");
        bool add_prefix_space;

        d->kind = TD_METASPACE;
        if ((rc = tk__json_char(j, "replacement", "\xe2\x96\x81", d->rep, &d->rep_len, where, file, err)) ||
            (rc = tk__json_bool(j, "add_prefix_space", true, &add_prefix_space, where, file, err)))
            return rc;
        d->prepend = add_prefix_space ? TK_PREPEND_ALWAYS : TK_PREPEND_NEVER;
        if (cJSON_IsString(scheme))
            d->prepend = !strcmp(scheme->valuestring, "never") ? TK_PREPEND_NEVER :
                         !strcmp(scheme->valuestring, "first") ? TK_PREPEND_FIRST : TK_PREPEND_ALWAYS;
    } else if (!strcmp(type, "Strip")) {
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(j, "start");
        const cJSON *stop = cJSON_GetObjectItemCaseSensitive(j, "stop");

        d->kind = TD_STRIP;
        if ((rc = tk__json_char(j, "content", " ", d->rep, &d->rep_len, where, file, err)))
            return rc;
        if (!cJSON_IsNumber(start) || !cJSON_IsNumber(stop) || !(start->valuedouble >= 0) ||
            !(stop->valuedouble >= 0) || start->valuedouble > 1e6 || stop->valuedouble > 1e6) {
            errf(err, "%s: %s: start and stop must be counts of characters", file, where);
            return -EINVAL;
        }
        d->start = start->valueint;
        d->stop = stop->valueint;
    } else if (!strcmp(type, "Replace")) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "content");

        d->kind = TD_REPLACE;
        if (!cJSON_IsString(c)) {
            errf(err, "%s: %s.content: expected a string", file, where);
            return -EINVAL;
        }
        snprintf(sub, sizeof sub, "%s.pattern", where);
        if ((rc = tk__pattern_parse(&d->pat, cJSON_GetObjectItemCaseSensitive(j, "pattern"), sub,
                                    file, err)))
            return rc;
        t->n_dec++;   /* owns the pattern now */
        d->content_len = strlen(c->valuestring);
        d->content = strdup(c->valuestring);
        return d->content ? 0 : -ENOMEM;
    } else {
        errf(err, "%s: %s.type: decoder \"%s\" is not supported (ByteLevel, Metaspace, Replace, "
             "ByteFallback, Fuse, Strip, Sequence)", file, where, type);
        return -EINVAL;
    }
    t->n_dec++;
    return 0;
}

/* detok decodes a window that starts at a later token than the full decode does. That
 * gives the same text whenever each step acts on single tokens, or on the joined text in a
 * way that does not reach across the window's start or depend on what comes after. */
static bool stream_safe(const struct tokenizer *t)
{
    bool joined = false;

    for (int i = 0; i < t->n_dec; i++) {
        const struct tk_dec *d = &t->dec[i];

        if (d->kind == TD_FUSE || d->kind == TD_BYTE_LEVEL)
            joined = true;
        else if (joined && ((d->kind == TD_STRIP && d->stop > 0) || d->kind == TD_BYTE_FALLBACK ||
                            (d->kind == TD_REPLACE && (d->pat.re || d->pat.lit_len > 1))))
            return false;
    }
    return true;
}

int tk__dec_parse(struct tokenizer *t, const cJSON *j, const char *file, char *err)
{
    int rc = 0;

    t->has_decoder = j && !cJSON_IsNull(j);
    if (t->has_decoder)
        rc = dec_parse(t, j, "decoder", file, err);
    t->stream_safe = stream_safe(t);
    for (int i = 0; i < t->n_dec; i++) {
        t->dec_byte_fallback |= t->dec[i].kind == TD_BYTE_FALLBACK;
        t->dec_regex |= t->dec[i].pat.re != NULL;
    }
    return rc;
}

void tk__dec_free(struct tk_dec *d)
{
    tk__pattern_free(&d->pat);
    free(d->content);
    memset(d, 0, sizeof *d);
}

/* --- decoding -------------------------------------------------------------------------- */

/* The token of an id for decoding, or NULL when decode leaves it out. */
static const char *token_of(const struct tokenizer *t, int32_t id, bool skip_special, size_t *len)
{
    const char *s;

    if (id < 0 || id >= t->vocab_size || (skip_special && t->special[id]))
        return NULL;
    if (t->added_of[id] >= 0) {
        *len = t->added[t->added_of[id]].len;
        return t->added[t->added_of[id]].content;
    }
    s = t->tok[id];
    *len = s ? t->tok_len[id] : 0;
    return s;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
           c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* "<0xAB>" → 0xab, or -1 (ByteFallback's test: six bytes, hex digits in either case). */
static int byte_token(const char *s, size_t len)
{
    int hi, lo;

    if (len != 6 || memcmp(s, "<0x", 3) || s[5] != '>')
        return -1;
    hi = hex_digit(s[3]);
    lo = hex_digit(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi << 4 | lo;
}

#define PIECE(list, i) ((list)->buf.p + (list)->v[i].off)
#define PIECE_LEN(list, i) ((list)->v[i].len)

/* Appends s to out's buffer as a new piece. */
static int piece_put(struct tk_pieces *out, const char *s, size_t n)
{
    return tk__pieces_add(out, s, n, false);
}

/* raw: bytes as they are, even when they are not UTF-8 (tokenizer_token_bytes). */
static int byte_fallback(const struct tk_pieces *in, struct tk_pieces *out, struct buf *bytes,
                         bool raw)
{
    bytes->len = 0;
    for (int i = 0; i <= in->n; i++) {
        int b = i < in->n ? byte_token(PIECE(in, i), PIECE_LEN(in, i)) : -1;

        if (b >= 0) {
            char c = (char)b;

            if (buf_put(bytes, &c, 1))
                return -ENOMEM;
            continue;
        }
        if (bytes->len) {
            /* A run of byte tokens that is not valid UTF-8 becomes one U+FFFD per byte. */
            if (raw || tk__utf8_valid_prefix(bytes->p, bytes->len) == bytes->len) {
                if (piece_put(out, bytes->p, bytes->len))
                    return -ENOMEM;
            } else
                for (size_t k = 0; k < bytes->len; k++)
                    if (piece_put(out, "\xef\xbf\xbd", 3))
                        return -ENOMEM;
            bytes->len = 0;
        }
        if (i < in->n && piece_put(out, PIECE(in, i), PIECE_LEN(in, i)))
            return -ENOMEM;
    }
    return 0;
}

/* ByteLevel: every token back to bytes (a token with a character outside the alphabet
 * stays as it is), all joined, then decoded as lossy UTF-8. */
static int byte_level(const struct tokenizer *t, const struct tk_pieces *in, struct tk_pieces *out,
                      struct buf *bytes, bool raw)
{
    size_t off;

    bytes->len = 0;
    for (int i = 0; i < in->n; i++) {
        const char *s = PIECE(in, i);
        size_t len = PIECE_LEN(in, i), start = bytes->len, k = 0;
        uint32_t cp;
        int n;

        while (k < len && (n = tk__utf8_decode(s + k, len - k, &cp)) > 0 &&
               cp < ARRAY_LEN(t->char_byte) && t->char_byte[cp] >= 0) {
            char c = (char)t->char_byte[cp];

            if (buf_put(bytes, &c, 1))
                return -ENOMEM;
            k += n;
        }
        if (k < len) {
            bytes->len = start;
            if (buf_put(bytes, s, len))
                return -ENOMEM;
        }
    }
    off = out->buf.len;
    if (raw ? buf_put(&out->buf, bytes->p ? bytes->p : "", bytes->len)
            : tk__utf8_lossy(bytes->p, bytes->len, &out->buf))
        return -ENOMEM;
    return tk__pieces_add_ref(out, off, out->buf.len - off, false);
}

static int strip(const struct tk_dec *d, const char *s, size_t len, struct tk_pieces *out)
{
    size_t a = 0, b = len, r = (size_t)d->rep_len;

    for (int i = 0; i < d->start && b - a >= r && !memcmp(s + a, d->rep, r); i++)
        a += r;
    for (int i = 0; i < d->stop && b - a >= r && !memcmp(s + b - r, d->rep, r); i++)
        b -= r;
    return piece_put(out, s + a, b - a);
}

static int metaspace(const struct tk_dec *d, int index, const char *s, size_t len,
                     struct tk_pieces *out)
{
    size_t off = out->buf.len, r = (size_t)d->rep_len;
    bool drop = index == 0 && d->prepend != TK_PREPEND_NEVER;

    for (size_t i = 0; i < len;) {
        if (len - i >= r && !memcmp(s + i, d->rep, r)) {
            if (!drop && buf_put(&out->buf, " ", 1))
                return -ENOMEM;
            i += r;
        } else {
            if (buf_put(&out->buf, s + i, 1))
                return -ENOMEM;
            i++;
        }
    }
    return tk__pieces_add_ref(out, off, out->buf.len - off, false);
}

static int step(const struct tokenizer *t, const struct tk_dec *d, pcre2_match_data *md,
                const struct tk_pieces *in, struct tk_pieces *out, struct buf *tmp, bool raw)
{
    int rc = 0;

    switch (d->kind) {
    case TD_BYTE_LEVEL:
        return byte_level(t, in, out, tmp, raw);
    case TD_BYTE_FALLBACK:
        return byte_fallback(in, out, tmp, raw);
    case TD_FUSE:
        tmp->len = 0;
        for (int i = 0; i < in->n; i++)
            if (buf_put(tmp, PIECE(in, i), PIECE_LEN(in, i)))
                return -ENOMEM;
        return piece_put(out, tmp->p ? tmp->p : "", tmp->len);
    case TD_STRIP:
        for (int i = 0; i < in->n && !rc; i++)
            rc = strip(d, PIECE(in, i), PIECE_LEN(in, i), out);
        return rc;
    case TD_METASPACE:
        for (int i = 0; i < in->n && !rc; i++)
            rc = metaspace(d, i, PIECE(in, i), PIECE_LEN(in, i), out);
        return rc;
    case TD_REPLACE:
        for (int i = 0; i < in->n && !rc; i++) {
            size_t off = out->buf.len;

            rc = tk__replace(&d->pat, md, PIECE(in, i), PIECE_LEN(in, i), d->content, d->content_len,
                             &out->buf);
            if (!rc)
                rc = tk__pieces_add_ref(out, off, out->buf.len - off, false);
        }
        return rc;
    }
    return -EINVAL;
}

/* Decodes ids into out (replacing its contents); raw: bytes that are not UTF-8 stay. */
static int decode(const struct tokenizer *t, const int32_t *ids, int n, bool skip_special, bool raw,
                  struct buf *out)
{
    struct tk_pieces a = { 0 }, b = { 0 };
    struct buf tmp = { 0 };
    pcre2_match_data *md = NULL;
    int rc = -ENOMEM;

    out->len = 0;
    if (buf_reserve(out, 0))
        return -ENOMEM;
    out->p[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *s = token_of(t, ids[i], skip_special, &len);

        if (s && piece_put(&a, s, len))
            goto out;
    }
    if (t->has_decoder && t->dec_regex && !(md = pcre2_match_data_create(32, NULL)))
        goto out;
    for (int i = 0; t->has_decoder && i < t->n_dec; i++) {
        struct tk_pieces swap;

        tk__pieces_clear(&b);
        if ((rc = step(t, &t->dec[i], md, &a, &b, &tmp, raw)))
            goto out;
        swap = a;
        a = b;
        b = swap;
    }
    rc = -ENOMEM;
    for (int i = 0; i < a.n; i++)
        if ((i > 0 && !t->has_decoder && buf_put(out, " ", 1)) ||
            buf_put(out, PIECE(&a, i), PIECE_LEN(&a, i)))
            goto out;
    rc = 0;
out:
    pcre2_match_data_free(md);
    tk__pieces_free(&a);
    tk__pieces_free(&b);
    buf_fini(&tmp);
    return rc;
}

int tokenizer_decode(const struct tokenizer *t, const int32_t *ids, int n, bool skip_special,
                     char **text, size_t *len, char *err)
{
    struct buf out = { 0 };
    int rc = decode(t, ids, n, skip_special, false, &out);

    *text = NULL;
    *len = 0;
    if (rc) {
        errf(err, "detokenize: %s", rc == -ENOMEM ? "out of memory" : "a pattern failed to match");
        buf_fini(&out);
        return rc;
    }
    *text = out.p;
    *len = out.len;
    return 0;
}

int tokenizer_token_bytes(const struct tokenizer *t, int32_t id, char **bytes, size_t *len)
{
    struct buf out = { 0 };
    int rc = decode(t, &id, 1, false, true, &out);

    if (rc) {
        /* A Replace pattern may refuse bytes that are not UTF-8: the lossy text, then. */
        buf_fini(&out);
        rc = decode(t, &id, 1, false, false, &out);
    }
    *bytes = rc ? NULL : out.p;
    *len = rc ? 0 : out.len;
    if (rc)
        buf_fini(&out);
    return rc;
}

/* --- streaming ------------------------------------------------------------------------- */

void detok_init(struct detok *d, bool skip_special)
{
    memset(d, 0, sizeof *d);
    d->skip_special = skip_special;
}

void detok_fini(struct detok *d)
{
    free(d->ids);
    free(d->prefix);
    memset(d, 0, sizeof *d);
}

static bool ends_unfinished(const struct buf *b)
{
    return b->len >= 3 && !memcmp(b->p + b->len - 3, "\xef\xbf\xbd", 3);
}

/* Emits the part of the window's text past the prefix, then makes the window's ids the
 * context (or, where windows are not safe, keeps every id). */
static int emit(const struct tokenizer *t, struct detok *d, struct buf *text, char **delta,
                size_t *len)
{
    int rc;

    if (text->len <= d->prefix_len || memcmp(text->p, d->prefix ? d->prefix : "", d->prefix_len))
        return 0;
    *len = text->len - d->prefix_len;
    if (!(*delta = malloc(*len + 1)))
        return -ENOMEM;
    memcpy(*delta, text->p + d->prefix_len, *len);
    (*delta)[*len] = '\0';
    free(d->prefix);
    d->prefix = NULL;
    d->prefix_len = 0;
    if (t->stream_safe) {
        memmove(d->ids, d->ids + d->read, (d->n - d->read) * sizeof *d->ids);
        d->n -= d->read;
        if ((rc = decode(t, d->ids, d->n, d->skip_special, false, text))) {
            free(*delta);
            *delta = NULL;
            *len = 0;
            d->n = d->read = 0;   /* the emitted ids are dropped with their context */
            return rc;
        }
    }
    d->read = d->n;
    d->prefix = text->p;
    d->prefix_len = text->len;
    memset(text, 0, sizeof *text);
    return 0;
}

int detok_push(const struct tokenizer *t, struct detok *d, int32_t id, char **delta, size_t *len)
{
    struct buf text = { 0 };
    const char *tok;
    size_t tok_len;
    int rc;

    *delta = NULL;
    *len = 0;
    tok = token_of(t, id, d->skip_special, &tok_len);
    if (!tok)
        return 0;   /* adds nothing to the text */
    if (tk__ids_push(&d->ids, &d->n, &d->cap, id))
        return -ENOMEM;
    /* ByteFallback decides a run of byte tokens only once it ends. */
    if (t->dec_byte_fallback && byte_token(tok, tok_len) >= 0)
        return 0;
    if ((rc = decode(t, d->ids, d->n, d->skip_special, false, &text)) == 0 && !ends_unfinished(&text))
        rc = emit(t, d, &text, delta, len);
    buf_fini(&text);
    return rc;
}

int detok_flush(const struct tokenizer *t, struct detok *d, char **delta, size_t *len)
{
    struct buf text = { 0 };
    bool skip = d->skip_special;
    int rc;

    *delta = NULL;
    *len = 0;
    if ((rc = decode(t, d->ids, d->n, d->skip_special, false, &text)) == 0)
        rc = emit(t, d, &text, delta, len);
    buf_fini(&text);
    detok_fini(d);
    detok_init(d, skip);
    return rc;
}

/* --- one token's bytes (grammar-constrained decoding) ------------------------------------ */

/* One decoder step on one token in the middle of a text: ByteLevel and ByteFallback give raw
 * bytes (no lossy UTF-8 here: a token may hold part of a character), Metaspace's
 * replacement is a space (the first-token rule does not apply), Replace is applied; Fuse
 * and Strip act on the whole text and change nothing here. */
static int token_step(const struct tokenizer *t, const struct tk_dec *d, pcre2_match_data *md,
                      const struct buf *in, struct buf *out)
{
    uint32_t cp;
    int n, b;

    out->len = 0;
    switch (d->kind) {
    case TD_BYTE_LEVEL:
        for (size_t k = 0; k < in->len; k += (size_t)n) {
            char c;
            n = tk__utf8_decode(in->p + k, in->len - k, &cp);
            if (n <= 0 || cp >= ARRAY_LEN(t->char_byte) || t->char_byte[cp] < 0)
                return buf_put(out, in->p, in->len) ? -ENOMEM : 0;   /* left as it is */
            c = (char)t->char_byte[cp];
            if (buf_put(out, &c, 1))
                return -ENOMEM;
        }
        return 0;
    case TD_BYTE_FALLBACK:
        if ((b = byte_token(in->p, in->len)) >= 0) {
            char c = (char)b;
            return buf_put(out, &c, 1) ? -ENOMEM : 0;
        }
        break;
    case TD_METASPACE:
        for (size_t i = 0; i < in->len;) {
            size_t r = (size_t)d->rep_len;
            bool rep = in->len - i >= r && !memcmp(in->p + i, d->rep, r);
            if (buf_put(out, rep ? " " : in->p + i, 1))
                return -ENOMEM;
            i += rep ? r : 1;
        }
        return 0;
    case TD_REPLACE:
        return tk__replace(&d->pat, md, in->p, in->len, d->content, d->content_len, out);
    case TD_FUSE:
    case TD_STRIP:
        break;
    }
    return buf_put(out, in->p, in->len) ? -ENOMEM : 0;
}

int tokenizer_piece_bytes(const struct tokenizer *t, int32_t id, char **bytes, size_t *len)
{
    struct buf a = { 0 }, b = { 0 };
    pcre2_match_data *md = NULL;
    size_t n = 0;
    const char *s = token_of(t, id, true, &n);
    int rc = -ENOMEM;

    *bytes = NULL;
    *len = 0;
    if (!s)
        return -ENOENT;
    if (buf_put(&a, s, n))
        goto out;
    if (t->added_of[id] < 0 && t->has_decoder) {
        if (t->dec_regex && !(md = pcre2_match_data_create(32, NULL)))
            goto out;
        for (int i = 0; i < t->n_dec; i++) {
            struct buf swap;
            if ((rc = token_step(t, &t->dec[i], md, &a, &b)))
                goto out;
            swap = a;
            a = b;
            b = swap;
        }
    }
    *bytes = a.p ? a.p : strdup("");
    *len = a.len;
    a.p = NULL;
    rc = *bytes ? 0 : -ENOMEM;
out:
    pcre2_match_data_free(md);
    buf_fini(&a);
    buf_fini(&b);
    return rc;
}
