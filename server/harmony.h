/* harmony.h — gpt-oss's "harmony" output read back into reasoning, content and tool calls.
 * The model writes messages: <|channel|>analysis<|message|>…<|end|> (its reasoning), then
 * <|start|>assistant<|channel|>final<|message|>…<|return|> (the answer), or a call:
 * <|start|>assistant<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{…}<|call|>.
 * One incremental reader serves a whole output and a stream alike (a whole output is one
 * feed), so a stream cut anywhere yields what the whole output does. It reads text (the
 * special tokens kept in it), as osprey's other tool-call parsers do (server/tool_parser.c),
 * and, once told the token ids (harmony_stream_use_ids, harmony_stream_tokens), takes a
 * marker's spelling for structure only where the marker's own token (gpt-oss's special
 * token, by its id) wrote it: the same characters from ordinary tokens (a model quoting the
 * format) are text, as vLLM's reader of ids has them. The ids also count the reasoning's
 * tokens (usage's reasoning_tokens). */
#ifndef OSPREY_HARMONY_H
#define OSPREY_HARMONY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/base/buf.h"
#include "server/tool_parser.h"

/* Where a message's body goes: the analysis channel (and messages to built-in tools) is
 * reasoning, final and commentary are content, a message to functions.NAME is a call. */
enum harmony_route { HARMONY_REASONING, HARMONY_CONTENT, HARMONY_CALL };

/* The markers' texts (<|start|>, <|channel|>, …), each one special token of gpt-oss's. */
#define HARMONY_NUM_MARKERS 8
extern const char *const harmony_markers[HARMONY_NUM_MARKERS];

struct harmony_stream {
    struct buf text;           /* the output so far */
    size_t at;                 /* text[0..at) is decided */
    size_t msg;                /* where the current message began (its <|start|>, if any) */
    int state;                 /* harmony.c's enum hstate */
    enum harmony_route route;  /* the current message's */
    char name[72];             /* a call's function name */
    bool calls;                /* tools are on: read calls (else their bodies are content) */
    int max_calls;             /* > 0: keep the first max_calls calls */
    bool started[2];           /* a message of that part began: the next one opens with "\n" */
    struct buf reasoning, content;      /* all of it so far */
    size_t reasoning_sent, content_sent, calls_sent;
    struct tool_parse parse;   /* every call so far (content_len unused) */
    bool by_ids;               /* harmony_stream_use_ids: else every spelling is a marker */
    int32_t marker_ids[HARMONY_NUM_MARKERS];   /* harmony_markers[i]'s token, -1: none */
    struct buf marks;          /* size_t[]: offsets in text where a marker's token's text starts */
    struct buf toks;           /* size_t[]: every token's offset in text, in order */
    size_t tok_next;           /* toks[0..tok_next) are counted (or passed) */
    int reasoning_tokens;      /* tokens whose text starts in a reasoning body */
};

/* What one feed adds: text since the previous feed and the calls completed by it. The
 * pointers live until the next feed. */
struct harmony_delta {
    const char *reasoning, *content;
    size_t reasoning_len, content_len;
    const struct tool_call *calls;   /* [num_calls], the message's calls first..first+num */
    int first_call, num_calls;
};

void harmony_stream_init(struct harmony_stream *hs, bool calls, int max_calls);
void harmony_stream_fini(struct harmony_stream *hs);   /* NULL-safe */
/* Reads markers by ids from now on (call it before the first feed): ids[i] is the token of
 * harmony_markers[i] (-1: the vocabulary has none: that spelling is never a marker). */
void harmony_stream_use_ids(struct harmony_stream *hs, const int32_t ids[HARMONY_NUM_MARKERS]);
/* The tokens of the text fed next (or already fed): ids[i]'s text starts at offsets[i]
 * bytes into the whole output (the engine's text_offsets, non-decreasing). A token must
 * come no later than the feed that holds its text's first byte (the engine delivers a
 * token with or before its text). Without use_ids, only the reasoning count uses them.
 * 0 or -ENOMEM. */
int harmony_stream_tokens(struct harmony_stream *hs, const int32_t *ids, const size_t *offsets, int n);
/* Appends s[0..n) and reads as far as it can be sure of; finished: the output is complete
 * (a truncated message is then read as it stands: an unclosed header as content, an
 * unclosed body in its channel, an unclosed call as a call if its arguments are a whole
 * JSON object). Text that is not harmony (no header where one must start, a header that
 * never reaches <|message|>) is content from there on. 0 or -ENOMEM. */
int harmony_stream_feed(struct harmony_stream *hs, const char *s, size_t n, bool finished,
                        struct harmony_delta *d);

#endif
