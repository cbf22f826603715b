/* responses.h — OpenAI's Responses API (POST /v1/responses), stateless: a request body is
 * translated into the chat request it means (instructions → system message, input items →
 * messages, function tools → chat tools) and then served by the chat machinery of
 * server/openai.c; the answer is rendered back as a response object, or as the typed event
 * stream (response.created … response.completed). */
#ifndef OSPREY_RESPONSES_H
#define OSPREY_RESPONSES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/base/buf.h"   /* struct buf */
#include "server/openai_parse.h"
#include "server/openai_render.h"

struct http_request;

/* The route handler (server/openai.c serves it; struct http_route); app is the struct api. */
void openai_responses(struct http_request *r, void *app);

/* Parses a Responses body into r (init'ed) as a chat request (r->kind OAI_CHAT,
 * r->responses set). 400 naming the Responses field for what is malformed, and for what a
 * stateless osprey cannot do (previous_response_id, store true, background); text.format
 * json_schema / json_object become chat's response_format; 404 for another model. */
int responses_parse(struct oai_request *r, const char *body, size_t len, const struct oai_config *c,
                    struct oai_error *e);

/* What a response says besides its output. */
struct resp_head {
    const char *id;            /* "resp_…" */
    int64_t created_at;        /* unix seconds */
    const char *model;
    const struct oai_request *req;   /* the parsed request (params, tools, the original body) */
};

/* The output of the one choice, whole or so far. */
struct resp_output {
    const char *text;          /* the message's text (content before any call) */
    size_t text_len;
    const struct tool_call *calls;   /* [num_calls] function_call items */
    int num_calls;
    const char *finish_reason; /* NULL: in progress; "length" makes the response incomplete */
    const char *reasoning;     /* gpt-oss's analysis: a reasoning item before the message */
    size_t reasoning_len;      /* (responses_render; a stream sends what it was given) 0: none */
};

/* The response object (status completed or incomplete; in_progress with out NULL), written
 * as text (server/json_out.c) into *json (malloc'd, *len bytes). max_bytes bounds it (0: no
 * bound). Returns 0, -E2BIG past max_bytes or -ENOMEM; *json is NULL on failure. */
int responses_render(const struct resp_head *h, const struct resp_output *out, const struct oai_usage *u,
                     size_t max_bytes, char **json, size_t *len);

/* The event stream. Each call renders the next events into *events (malloc'd array of
 * malloc'd JSON strings, *num of them, each of event_lens bytes): the caller sends and frees
 * them. The sequence numbers live in seq. */
struct resp_stream {
    int seq;                   /* the next event's sequence_number */
    char msg_id[40];           /* "msg_…" of the message item */
    char rs_id[40];            /* "rs_…" of the reasoning item */
    struct buf text;           /* all text sent so far (output_text.done repeats it) */
    struct buf reasoning;      /* all reasoning sent so far */
    bool defer;                /* the message item opens with its first text, not at once */
    bool rs_closed;            /* the reasoning item is done (the message began) */
    int msg_index, rs_index;   /* the items' output_index; -1 until they open */
    int next_index;            /* the next item's output_index */
};
/* Draws the items' ids. reasoning: the output may reason first (gpt-oss), so the message
 * item waits for its first text, and a reasoning item may come before it. */
void resp_stream_init(struct resp_stream *s, bool reasoning);
void resp_stream_fini(struct resp_stream *s);
/* response.created, response.in_progress, and unless deferred response.output_item.added
 * (the message) and response.content_part.added. */
int resp_stream_open(struct resp_stream *s, const struct resp_head *h, char ***events, size_t **lens,
                     int *num);
/* Reasoning text: the reasoning item's output_item.added the first time, then one
 * response.reasoning_text.delta (nothing when len is 0). */
int resp_stream_reasoning(struct resp_stream *s, const char *text, size_t len, char ***events,
                          size_t **lens, int *num);
/* One response.output_text.delta (nothing when len is 0); a deferred message opens first,
 * closing the reasoning item (reasoning_text.done, output_item.done). */
int resp_stream_delta(struct resp_stream *s, const char *text, size_t len, char ***events,
                      size_t **lens, int *num);
/* The end: the reasoning item's close if still open; output_text.done, content_part.done,
 * output_item.done for the message (a deferred one opened if there is text or no call), then
 * each call's output_item.added / function_call_arguments.delta / .done / output_item.done,
 * then response.completed (or response.incomplete when cut by max_output_tokens). */
int resp_stream_close(struct resp_stream *s, const struct resp_head *h, const struct resp_output *out,
                      const struct oai_usage *u, char ***events, size_t **lens, int *num);
void resp_events_free(char **events, size_t *lens, int num);

#endif
