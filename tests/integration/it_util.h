/* it_util.h — what the integration suites share on top of the daemon and the HTTP client:
 * JSON requests and answers, Server-Sent Event streams taken apart, /metrics values. */
#ifndef OSPREY_TEST_IT_UTIL_H
#define OSPREY_TEST_IT_UTIL_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "tests/integration/daemon.h"
#include "tests/integration/http_client.h"

/* daemon_start, failing the test when it does not come up. */
void it_up(struct daemon *d, const char *const *extra);
/* The clean stop every test ends with: SIGTERM, and the exit status must be 0 (the log is
 * printed when it is not). */
void it_down(struct daemon *d);

/* POSTs body (JSON) to path; returns the parsed answer (NULL when not JSON) and its status.
 * headers as hc_request's (may be NULL). */
cJSON *it_post(const struct daemon *d, const char *path, const char *body, int *status);
cJSON *it_post_h(const struct daemon *d, const char *path, const char *headers, const char *body,
                 int *status);

/* A stream taken apart: every data event's JSON (in order), whether [DONE] ended it, and
 * each choice's text joined (completions' text or chat's delta.content). */
struct it_stream {
    int status;
    cJSON *events;           /* array of the chunk objects */
    bool done;               /* "data: [DONE]" was the last event */
    bool clean;              /* every event was "data: <json or [DONE]>\n\n" */
    char *text[16];          /* per choice index; NULL when the choice never appeared */
    char *finish[16];        /* per choice: the finish_reason of its last chunk */
};
int it_stream(const struct daemon *d, const char *path, const char *body, struct it_stream *s);
/* Takes apart a response already read (its body is overwritten). 0 when the status is 200. */
int it_stream_parse(struct hc_response *r, struct it_stream *s);
void it_stream_fini(struct it_stream *s);

/* Non-streamed answer helpers: choice i's text (completions) or message content (chat). */
const char *it_choice_text(const cJSON *resp, int i);
const char *it_choice_finish(const cJSON *resp, int i);
cJSON *it_message(const cJSON *resp, int i);           /* chat: choice i's message, or NULL */
const char *it_str(const cJSON *o, const char *key);  /* o[key] when a string, else NULL */
int it_usage(const cJSON *resp, const char *field);   /* usage.<field>, -1 when absent */

/* Sends method path (headers and body as hc_request's) and fails the test unless the answer
 * has this status and an OpenAI error object of the right type, with this param (NULL: the
 * param must be null) and code (NULL: any). Returns the message (valid until the next call
 * on this thread). */
const char *it_fails(const struct daemon *d, const char *method, const char *path, const char *headers,
                     const char *body, int status, const char *param, const char *code);

/* A /metrics sample's value ("osprey_requests_running", or with labels
 * "osprey_requests_finished_total{finish_reason=\"abort\"}"); NaN when absent. */
double it_metric(const struct daemon *d, const char *sample);
/* Polls /metrics until sample == want or timeout_s; returns whether it got there. */
bool it_wait_metric(const struct daemon *d, const char *sample, double want, double timeout_s);
/* Fails the test unless /metrics comes to 0 running, 0 waiting and an empty KV cache (every
 * block free) within 10 s each. */
void it_assert_idle(const struct daemon *d);

/* Runs cmd through sh, its stdout and stderr into *out (malloc'd, NUL-terminated); returns
 * its exit status (128 when it did not exit). For the offline commands and refused starts. */
int it_run(const char *cmd, char **out);

#endif
