/* output.c — incremental text of a request with stop strings (see output.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/output.h"

void out_text_init(struct out_text *o, const struct tokenizer *tok, bool skip_special,
                   char *const *stop, int num_stop)
{
    memset(o, 0, sizeof *o);
    o->tok = tok;
    o->stop = stop;
    o->num_stop = num_stop;
    for (int i = 0; i < num_stop; i++) {
        size_t n = strlen(stop[i]);
        if (n > 0 && n - 1 > o->holdback)
            o->holdback = n - 1;
    }
    if (tok)
        detok_init(&o->detok, skip_special);
}

void out_text_fini(struct out_text *o)
{
    if (o->tok)
        detok_fini(&o->detok);
    buf_fini(&o->text);
    memset(o, 0, sizeof *o);
}

static int append(struct out_text *o, const char *s, size_t n)
{
    return buf_put(&o->text, s, n);
}

/* Whether s[0..len) is whole UTF-8 characters: lead bytes with their continuations. A
 * loose check (overlong forms pass): the detokenizer only hands out well-formed text, and
 * this only tells whole tokens from parts of characters. */
static bool utf8_whole(const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;

        if (k == 0 || i + k > len)
            return false;
        for (size_t j = 1; j < k; j++)
            if (((unsigned char)s[i + j] & 0xc0) != 0x80)
                return false;
        i += k;
    }
    return true;
}

/* Cuts the text before the earliest stop string that ends in the new text. A stop string
 * can begin in old text, so the search starts holdback bytes before the new part. */
static void find_stop(struct out_text *o, size_t old_len)
{
    size_t from = old_len > o->holdback ? old_len - o->holdback : 0;
    size_t best = (size_t)-1, best_len = 0;

    for (int i = 0; i < o->num_stop; i++) {
        size_t n = strlen(o->stop[i]);
        if (n == 0 || o->text.len - from < n)
            continue;
        const char *p = memmem(o->text.p + from, o->text.len - from, o->stop[i], n);
        if (p && (size_t)(p - o->text.p) < best) {
            best = (size_t)(p - o->text.p);
            best_len = n;
        }
    }
    if (best == (size_t)-1)
        return;
    if (o->include_stop)      /* include_stop_str_in_output: the text ends after it */
        best += best_len;
    o->text.len = best;
    o->text.p[best] = '\0';
    if (o->sent > best)   /* cannot happen: held-back text covers any stop prefix */
        o->sent = best;
    o->stopped = true;
}

/* Where a token starts whose text came out together with earlier tokens' (they waited for
 * it: a byte that began a character, a byte-fallback run). When the text ends with the
 * token's own bytes and they are whole UTF-8, it starts there; otherwise (it completed a
 * character) it shares the start of what came out. */
static size_t own_start(const struct out_text *o, int32_t token, const char *delta, size_t n,
                        size_t old_len)
{
    char *own = NULL;
    size_t len = 0, start = old_len;

    if (tokenizer_token_bytes(o->tok, token, &own, &len) == 0 && len > 0 && len <= n &&
        !memcmp(delta + n - len, own, len) && utf8_whole(own, len))
        start = old_len + n - len;
    free(own);
    return start;
}

int out_text_push(struct out_text *o, int32_t token)
{
    char *delta = NULL;
    size_t n = 0, old_len = o->text.len;
    int rc;

    o->token_start = old_len;
    if (!o->tok || o->stopped)
        return 0;
    rc = detok_push(o->tok, &o->detok, token, &delta, &n);
    if (rc == 0 && delta && n)
        rc = append(o, delta, n);
    if (rc == 0 && delta && n && o->num_held)
        o->token_start = own_start(o, token, delta, n, old_len);
    o->num_held = delta && n ? 0 : o->num_held + 1;
    free(delta);
    if (rc == 0 && o->num_stop && o->text.len > old_len)
        find_stop(o, old_len);
    if (o->token_start > o->text.len)
        o->token_start = o->text.len;      /* the stop string began before this token's text */
    return rc;
}

void out_text_take(struct out_text *o, bool final, const char **text, size_t *len)
{
    size_t end = o->text.len;

    if (final && !o->stopped && o->tok) {
        /* bytes the detokenizer was still holding (an unfinished sequence at the end) */
        char *rest = NULL;
        size_t n = 0, old_len = o->text.len;
        if (detok_flush(o->tok, &o->detok, &rest, &n) == 0 && rest && n &&
            append(o, rest, n) == 0 && o->num_stop)
            find_stop(o, old_len);
        free(rest);
        end = o->text.len;
    }
    if (!final && !o->stopped) {
        end = o->text.len > o->sent + o->holdback ? o->text.len - o->holdback : o->sent;
        while (end > o->sent && ((unsigned char)o->text.p[end] & 0xC0) == 0x80)
            end--;   /* never split a UTF-8 sequence */
    }
    *text = o->text.p ? o->text.p + o->sent : "";
    *len = end - o->sent;
    o->sent = end;
}
