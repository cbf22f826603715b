/* output.h — a request's output text: incremental detokenization plus stop strings. Text
 * that could still turn into a stop string is held back, so a streaming client never sees
 * text that a later token would have cut; when a stop string appears, the text ends right
 * before it. Runs on the engine thread, one per request. */
#ifndef OSPREY_OUTPUT_H
#define OSPREY_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/base/buf.h"             /* struct buf */
#include "engine/tokenizer/tokenizer.h"   /* struct detok */

struct out_text {
    const struct tokenizer *tok;   /* borrowed; NULL: no text at all */
    struct detok detok;
    struct buf text;               /* all text so far (complete UTF-8), NUL-terminated */
    size_t sent;                   /* bytes of text already handed out */
    char *const *stop;             /* borrowed: the request's stop strings */
    int num_stop;
    size_t holdback;               /* longest stop string - 1: bytes kept back while running */
    bool stopped;                  /* a stop string matched; text ends before it */
    bool include_stop;             /* set after init: text ends after the stop string instead */
    size_t token_start;            /* after a push: byte offset in text where that token's
                                    * text starts (see out_text_push) */
    int num_held;                  /* tokens pushed since the detokenizer last gave text */
};

void out_text_init(struct out_text *o, const struct tokenizer *tok, bool skip_special,
                   char *const *stop, int num_stop);
void out_text_fini(struct out_text *o);

/* Adds one token's text. Sets o->stopped when a stop string now appears (then the text is
 * cut before the earliest one). Sets o->token_start to the byte offset in the whole text
 * where this token's text starts: the text's length before the token, or the cut when a
 * stop string ends earlier. So a token without text of its own (a skipped special token)
 * points where the next text goes, and the tokens of a character split over several (a
 * partial UTF-8 sequence, a byte-fallback run: the detokenizer emits them together) share
 * the offset where that character starts; a whole token that came out together with such
 * a run points at its own bytes at the end. An offset never points inside a character.
 * Returns 0 or -ENOMEM. */
int out_text_push(struct out_text *o, int32_t token);

/* The text that may be sent now: everything new when `final` (or stopped), else all but the
 * held-back tail, cut at a UTF-8 boundary. Marks it sent; the pointer stays valid until the
 * next push. */
void out_text_take(struct out_text *o, bool final, const char **text, size_t *len);

#endif
