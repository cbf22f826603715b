/* http_internal.h — what server/http.c (the daemon, its checks and its watcher) and
 * server/http_request.c (a request: references, answers, deferred and streamed output),
 * server/http_head.c (the head's framing) and server/http_conn.c (connections, the watcher)
 * share: the structs behind the opaque handles of server/http.h. Not for other modules. */
#ifndef OSPREY_HTTP_INTERNAL_H
#define OSPREY_HTTP_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/base/buf.h"   /* struct buf: the body */
#include "server/http.h"

#define STREAM_BLOCK      (16 * 1024)
#define MAX_EXTRA_HEADERS 6
#define MAX_ORIGINS       16

#define HTTP_MAX_WORKERS  16

enum req_state { REQ_RECEIVING, REQ_OFFLOADED, REQ_HANDLING, REQ_DEFERRED, REQ_STREAMING, REQ_ANSWERED };

/* One TCP connection (MHD's socket context): what the watcher needs. */
struct http_conn {
    struct http_conn *prev, *next;
    int fd;
    double deadline_s;               /* the request must be in by then; 0 = no deadline */
    bool idle;                       /* between two requests: the next one's clock not started */
    uint64_t idle_bytes;             /* idle: bytes received on the socket when it began */
    bool cut;                        /* shut down by the watcher */
    struct http_request *req;        /* the request in progress, or NULL */
};

struct http_header {
    char name[32];
    char *value;                     /* malloc'd: a preflight's allowed headers run long */
};

struct http_request {
    struct http_server *s;
    struct MHD_Connection *conn;
    struct http_conn *hc;            /* NULL when the connection could not be tracked */
    unsigned long long id;
    const struct http_route *route;
    char method[8];
    char path[256];                  /* the URL's path, cut at 255 bytes (no route is longer) */
    size_t url_len;                  /* the whole path's length, bytes */
    bool http11;                     /* HTTP/1.1: may be sent a 1xx (http_conn.c's probe) */
    double start_s;
    struct buf body;                 /* the body so far, NUL-terminated */
    bool too_large;                  /* the body passed max_body_bytes: dropped, 413 at the end */
    const char *cors_origin;         /* value of Access-Control-Allow-Origin, or NULL */
    enum req_state state;            /* HTTP threads only */
    int status;                      /* of the response queued; 0 = none yet */
    struct http_header headers[MAX_EXTRA_HEADERS];
    int num_headers;
    const struct http_job_ops *ops;  /* deferred or streamed answers */
    void *job;
    /* A POST handler on a worker (http_worker.c): its answer is kept here until the MHD
     * thread queues it, since MHD takes answers from its own threads only. The connection
     * owns it (not the request's references: a stream's response holds one on r itself):
     * handed to MHD by http__queue_captured, or dropped by http__drop_captured when MHD
     * ends the connection before its access handler runs again. */
    bool capturing;
    struct MHD_Response *captured;
    int captured_status;
    struct http_request *next_work;  /* the workers' queue, under its lock */

    pthread_mutex_t lock;            /* everything below */
    bool parked;                     /* the connection is suspended, waiting for http_wake */
    bool woken;                      /* a wake came while not parked: do not sleep */
    bool closed;                     /* ops->closed was called (or is not needed) */
    bool streaming;                  /* a stream's head is queued: no 1xx may follow */
    bool probed;                     /* the watcher sent its 100 Continue (http_conn.c) */
    bool client_gone;                /* the watcher saw the client leave: 499, not our answer */
    bool offload_done;               /* a worker ran the handler and resumed the connection */
    int refs;
    int prompt_tokens, completion_tokens;
};

/* The worker threads of http_worker.c and their queue of requests. */
struct http_workers {
    pthread_t threads[HTTP_MAX_WORKERS];
    int num_threads;
    pthread_mutex_t lock;            /* the queue and stop */
    pthread_cond_t cond;
    struct http_request *head, *tail;
    bool stop, initialized;
};

struct http_server {
    struct MHD_Daemon *d;
    struct http_options o;           /* strings borrowed from the caller */
    char origins[MAX_ORIGINS][256];
    int num_origins;
    bool any_origin;
    int port;
    atomic_bool draining, stopping;
    atomic_ullong next_id;
    atomic_int active;               /* requests begun, not yet completed */

    pthread_mutex_t conns_lock;      /* conns and every http_conn's fields */
    struct http_conn *conns;
    pthread_t watcher;
    pthread_cond_t watcher_cond;
    bool watcher_stop;               /* under conns_lock */
    struct http_workers workers;
};

/* What the request head says about its own framing (server/http_head.c). */
struct http_head {
    size_t bytes;                    /* names, values and their ": " and CRLF */
    int num_content_length, num_transfer_encoding;
    bool folded;                     /* the headers do not tile the head: obs-fold, or bytes MHD skipped */
    bool bad_content_length;         /* a Content-Length that is not 1*DIGIT */
    char bad_name[48];               /* the first header name that is not a token, cut; "" if none */
    char bad_transfer_encoding[48];  /* a Transfer-Encoding other than "chunked", cut; "" if none */
};

/* Whether s is a token of RFC 9110 (a header name: no blanks, no separators, not empty). */
bool http__is_token(const char *s);
/* Reads the head of conn's request (method and version as MHD passed them on the first call,
 * pointers into the head) into h. Returns 0, or -EPROTO when its framing could be read two
 * ways: the connection must answer 400 and close before any body byte is parsed. */
int http__head_check(struct MHD_Connection *conn, const char *method, const char *version,
                     struct http_head *h);
/* The first problem of h in words, for the error message. */
void http__head_describe(const struct http_head *h, const char *version, char *out, size_t cap);

/* MHD_OPTION_NOTIFY_CONNECTION: tracks connections for the watcher (server/http_conn.c). */
void http__connection_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                         enum MHD_ConnectionNotificationCode code);
/* A request on hc completed: its next one's deadline starts with its first byte, as the
 * watcher sees it come. Under conns_lock. */
void http__conn_idle(struct http_server *s, struct http_conn *hc);
/* The watcher thread: request deadlines, clients that left while their request sleeps. */
void *http__watcher_main(void *arg);

/* The workers (server/http_worker.c): started with the server, stopped before MHD is (they
 * resume every connection they hold). */
int http__workers_start(struct http_server *s, int n, char *err);
void http__workers_stop(struct http_server *s);
/* On the MHD thread, body in: suspends the connection and queues r for a worker. */
void http__offload(struct http_request *r);
/* On the MHD thread, the access handler called again after a worker's resume: queues the
 * captured answer, or carries on with a deferred one. */
void http__offload_finish(struct http_request *r);
/* Queues the answer a worker's handler captured, if any (MHD thread). */
void http__queue_captured(struct http_request *r);
/* Destroys a captured answer never queued (the connection ended first; MHD thread). A
 * stream's response drops its reference on r: r must hold another (the connection's). */
void http__drop_captured(struct http_request *r);

/* An error answer in OpenAI's shape, the message formatted. Handler threads. */
void http__respond_errorf(struct http_request *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A deferred request: runs the job's resume until it answers or sleeps until a wake. */
void http__run_deferred(struct http_request *r);

#endif
