/* http.h — the daemon's HTTP side over libmicrohttpd: a pool of epoll threads and of workers
 * for POST handlers, routing by exact path, heads that frame their body two ways refused,
 * API key and CORS checks, body limits, slow-client deadlines, one access-log line per
 * request, and answers that wait for the engine: a deferred response (the connection
 * suspended until the engine wakes it) or a stream read from the application.
 * It knows nothing of the engine: server/openai.c plugs its jobs in through struct
 * http_job_ops. */
#ifndef OSPREY_HTTP_H
#define OSPREY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>   /* ssize_t */

struct http_server;
struct http_request;
struct metrics;
struct oai_error;

/* A route's handler: runs once the whole body is in, on an HTTP thread for GET routes and
 * on an HTTP worker for POST routes (parsing and tokenizing never hold up /health). It
 * answers with http_respond() / http_respond_error(), or hands over with http_defer() /
 * http_stream(). */
typedef void (*http_handler)(struct http_request *r, void *app);

enum http_access {
    HTTP_NEEDS_KEY,          /* the API key, when one is set */
    HTTP_PUBLIC,             /* never (/health) */
    HTTP_METRICS_ACCESS,     /* the key only when metrics_require_key */
};

struct http_route {
    const char *path;        /* matched exactly; ending in "*": any longer path with that prefix */
    const char *method;      /* "GET" (HEAD is answered too) or "POST" */
    enum http_access access;
    http_handler handle;
};

struct http_options {
    const char *host;        /* address to listen on (numeric or a name), e.g. "127.0.0.1" */
    int port;                /* 0: an ephemeral port (http_server_port tells which) */
    int num_threads;         /* MHD worker threads, >= 1 */
    int max_connections;
    int max_connections_per_client;  /* from one address; more are closed at once; 0 = no cap */
    size_t max_body_bytes;   /* larger bodies: 413 (at once when Content-Length says so) */
    size_t max_header_bytes; /* larger request heads (line and headers): 431; 0 = 32 KiB */
    double request_timeout_s;   /* headers and body must be in within this; 0 = no limit */
    int idle_timeout_s;      /* a connection silent this long is closed; 0 = never */
    const char *api_key;     /* NULL or "": no key needed */
    bool metrics_require_key;
    char *const *cors_origins;  /* [num_cors_origins] allowed origins, "*" for any; none: no CORS */
    int num_cors_origins;
    const struct http_route *routes;   /* borrowed for the server's life */
    int num_routes;
    void *app;               /* passed to handlers */
    struct metrics *metrics; /* responses counted by status; may be NULL */
};

/* Binds and starts the threads. Returns 0, or a negative errno with a message in err. */
int http_server_start(struct http_server **out, const struct http_options *o, char *err);
/* The port listened on (the chosen one with port 0). */
int http_server_port(const struct http_server *s);
/* From now on every new request is answered 503 (the requests already in go on). */
void http_server_drain(struct http_server *s);
/* Requests received and not yet completed (their response not fully sent). */
int http_server_active(struct http_server *s);
/* Ends every request still open (streams are cut), closes every connection, joins the
 * threads and frees s. NULL-safe. */
void http_server_stop(struct http_server *s);

/* ---- a request, inside a handler ---- */

const char *http_request_body(const struct http_request *r, size_t *len);   /* NUL-terminated */
const char *http_request_path(const struct http_request *r);
const char *http_request_header(const struct http_request *r, const char *name);  /* or NULL */
unsigned long long http_request_id(const struct http_request *r);
/* Token counts for the access-log line (any thread). */
void http_request_tokens(struct http_request *r, int prompt_tokens, int completion_tokens);

/* Adds a header (copied) to the response still to come (Retry-After, …). */
void http_add_header(struct http_request *r, const char *name, const char *value);
/* Answers status with body (malloc'd, taken over; NULL for none). Handler thread only. */
void http_respond(struct http_request *r, int status, const char *content_type, char *body,
                  size_t len);
/* Answers with the error object of e and its status. */
void http_respond_error(struct http_request *r, const struct oai_error *e);

/* ---- answers that wait for the engine ---- */

#define HTTP_STREAM_END   (-1)   /* read: the stream is complete */
#define HTTP_STREAM_ERROR (-2)   /* read: cut the stream (the client sees it unfinished) */

struct http_job_ops {
    /* Deferred: on an HTTP thread after http_wake(); answers (http_respond…) or returns to
     * wait for the next wake. */
    void (*resume)(void *job, struct http_request *r);
    /* Stream: fills buf (max bytes) on an HTTP thread; returns the bytes, 0 when nothing is
     * ready (the connection then sleeps until http_wake()), HTTP_STREAM_END or _ERROR. */
    ssize_t (*read)(void *job, char *buf, size_t max);
    /* The connection is done (answer sent, client gone, server stopping) or the client went
     * away while the job waited: stop the work. Any thread, at most once. */
    void (*closed)(void *job);
    /* The last reference went: free the job. */
    void (*free)(void *job);
};

/* Ties job to the request without answering yet: from now on ops->closed and ops->free
 * run as described, whatever the answer (an error answered right after a partial submit
 * still leaves the job alive for the engine's callbacks). Handler thread only. */
void http_attach(struct http_request *r, const struct http_job_ops *ops, void *job);
/* Hands the request to job: the connection sleeps until http_wake(), then ops->resume
 * runs. Handler thread only. */
void http_defer(struct http_request *r, const struct http_job_ops *ops, void *job);
/* Answers 200 with a text/event-stream read through ops->read. Handler thread only. */
void http_stream(struct http_request *r, const struct http_job_ops *ops, void *job);
/* New output or the job is done: wakes the sleeping connection. Any thread. */
void http_wake(struct http_request *r);
/* References: the connection holds one until it is done; a job holds one per piece of
 * work that may still call http_wake(). Any thread. */
void http_ref(struct http_request *r);
void http_unref(struct http_request *r);

#endif
