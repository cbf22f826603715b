/* http.c — libmicrohttpd underneath the daemon. A request goes RECEIVING (headers in: route,
 * method, CORS, key and size checks, any of which may answer at once) → HANDLING (body in:
 * the route's handler) → answered, DEFERRED (connection suspended until the engine wakes
 * it) or STREAMING (a chunked response whose reader suspends while nothing is ready).
 * A watcher thread closes connections that send too slowly and notices clients that went
 * away while their connection sleeps (MHD does not poll a suspended socket).
 * Lifetimes: a request is freed when its last reference goes — the connection's (dropped
 * when MHD reports it completed), the stream response's, and those its job holds; the
 * request's own side (answers, deferred and streamed output) is server/http_request.c. */
#include "server/http_internal.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "engine/base/log.h"
#include "engine/base/util.h"
#include "server/auth.h"
#include "server/metrics.h"

#define WATCH_PERIOD_MS 100

/* ---- the checks made once the headers are in ---- */

/* The Access-Control-Allow-Origin value for this request's Origin, or NULL. */
static const char *cors_origin(struct http_server *s, const char *origin)
{
    if (!origin || (!s->any_origin && !s->num_origins))
        return NULL;
    if (s->any_origin)
        return "*";
    for (int i = 0; i < s->num_origins; i++)
        if (!strcmp(s->origins[i], origin))
            return s->origins[i];
    return NULL;
}

/* An exact path first; else a route whose path ends in '*' takes every longer path with
 * its prefix (the model route: model ids hold slashes, "org/name"). */
static const struct http_route *find_route(const struct http_server *s, const char *path)
{
    for (int i = 0; i < s->o.num_routes; i++)
        if (!strcmp(s->o.routes[i].path, path))
            return &s->o.routes[i];
    for (int i = 0; i < s->o.num_routes; i++) {
        const char *rp = s->o.routes[i].path;
        size_t n = strlen(rp);

        if (n && rp[n - 1] == '*' && strlen(path) > n - 1 && !strncmp(rp, path, n - 1))
            return &s->o.routes[i];
    }
    return NULL;
}

static const char *allow_of(const struct http_route *rt)
{
    return !strcmp(rt->method, "GET") ? "GET, HEAD, OPTIONS" : "POST, OPTIONS";
}

static bool method_matches(const struct http_route *rt, const char *method)
{
    return !strcmp(rt->method, method) || (!strcmp(rt->method, "GET") && !strcmp(method, "HEAD"));
}

static bool key_needed(const struct http_server *s, const struct http_route *rt)
{
    if (!s->o.api_key || !s->o.api_key[0] || rt->access == HTTP_PUBLIC)
        return false;
    return rt->access == HTTP_NEEDS_KEY || s->o.metrics_require_key;
}

/* What the request head says about itself: its size and how the body is framed. */
struct head_stats {
    size_t bytes;                    /* names, values and their ": " and CRLF */
    int num_content_length, num_transfer_encoding;
};

static enum MHD_Result head_stats_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    struct head_stats *h = cls;

    (void)kind;
    h->bytes += strlen(key) + (value ? strlen(value) : 0) + 4;
    h->num_content_length += !strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH);
    h->num_transfer_encoding += !strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    return MHD_YES;
}

/* The head's size against max_header_bytes (431), and a framing that two parties could read
 * two ways (400, RFC 9112 6.3: more than one Content-Length, or one with Transfer-Encoding —
 * request smuggling). Both answer at once; the framing error also closes the connection,
 * since where the next request starts is unknown. Returns whether it answered. */
static bool refuse_head(struct http_request *r)
{
    struct http_server *s = r->s;
    struct head_stats h = { .bytes = strlen(r->method) + r->url_len + 12 };

    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, head_stats_cb, &h);
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, head_stats_cb, &h);
    if (h.bytes > s->o.max_header_bytes) {
        http__respond_errorf(r, 431, "request_header_fields_too_large",
                             "Request headers of %zu bytes are larger than the limit of %zu bytes.",
                             h.bytes, s->o.max_header_bytes);
        return true;
    }
    if (h.num_content_length > 1 || (h.num_content_length && h.num_transfer_encoding)) {
        http_add_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
        http__respond_errorf(r, 400, "invalid_request",
                             "The request's body length is ambiguous: %s.", h.num_content_length > 1
                                 ? "more than one Content-Length header"
                                 : "both Content-Length and Transfer-Encoding");
        return true;
    }
    return false;
}

/* Everything decided from the headers alone. Answers at once (MHD then skips the body)
 * or leaves the request RECEIVING. */
static void begin(struct http_request *r)
{
    struct http_server *s = r->s;
    const char *cl = http_request_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);

    if (refuse_head(r))
        return;
    r->cors_origin = cors_origin(s, http_request_header(r, "Origin"));
    r->route = find_route(s, r->path);
    if (!strcmp(r->method, "OPTIONS")) {
        /* A CORS preflight (or a plain OPTIONS): what the route allows, no key needed. */
        if (!r->route) {
            http__respond_errorf(r, 404, "not_found", "Not found: %s", r->path);
            return;
        }
        http_add_header(r, "Allow", allow_of(r->route));
        if (r->cors_origin) {
            http_add_header(r, "Access-Control-Allow-Methods", allow_of(r->route));
            http_add_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
            http_add_header(r, "Access-Control-Max-Age", "600");
        }
        http_respond(r, 204, NULL, NULL, 0);
        return;
    }
    if (!r->route) {
        http__respond_errorf(r, 404, "not_found", "Not found: %s", r->path);
        return;
    }
    if (!method_matches(r->route, r->method)) {
        http_add_header(r, "Allow", allow_of(r->route));
        http__respond_errorf(r, 405, "method_not_allowed", "Method %s is not allowed on %s (allowed: %s).",
                             r->method, r->path, allow_of(r->route));
        return;
    }
    if (atomic_load(&s->draining)) {
        http__respond_errorf(r, 503, "shutting_down", "The server is shutting down.");
        return;
    }
    if (key_needed(s, r->route) &&
        !auth_check(http_request_header(r, MHD_HTTP_HEADER_AUTHORIZATION), s->o.api_key)) {
        http_add_header(r, "WWW-Authenticate", "Bearer");
        http__respond_errorf(r, 401, "invalid_api_key",
                             http_request_header(r, MHD_HTTP_HEADER_AUTHORIZATION)
                                 ? "Incorrect API key provided."
                                 : "Missing API key: send the header 'Authorization: Bearer <key>'.");
        return;
    }
    if (cl && strtoull(cl, NULL, 10) > s->o.max_body_bytes) {
        http__respond_errorf(r, 413, "request_too_large",
                             "Request body of %s bytes is larger than the limit of %zu bytes.",
                             cl, s->o.max_body_bytes);
        return;
    }
}

/* Appends a piece of the body; past the limit the rest is dropped and 413 answered at the
 * end (a chunked upload has no Content-Length to refuse it up front). */
static void receive(struct http_request *r, const char *data, size_t n)
{
    size_t max = r->s->o.max_body_bytes;

    if (r->too_large || n > max - r->body_len) {
        r->too_large = true;
        return;
    }
    if (r->body_len + n + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 1024;
        char *b;

        while (cap < r->body_len + n + 1)
            cap *= 2;
        if (!(b = realloc(r->body, cap))) {
            r->too_large = true;
            return;
        }
        r->body = b;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
}

/* The body is in: no more deadline, run the handler. */
static void dispatch(struct http_request *r)
{
    struct http_server *s = r->s;

    if (r->hc) {
        pthread_mutex_lock(&s->conns_lock);
        r->hc->deadline_s = 0;
        pthread_mutex_unlock(&s->conns_lock);
    }
    if (r->too_large) {
        http__respond_errorf(r, 413, "request_too_large",
                             "Request body is larger than the limit of %zu bytes.", s->o.max_body_bytes);
        return;
    }
    r->state = REQ_HANDLING;
    r->route->handle(r, s->o.app);
    if (r->state == REQ_HANDLING) {
        LOG(LL_ERR, "http", "req %llu: the handler of %s gave no answer", r->id, r->path);
        http__respond_errorf(r, 500, "internal_error", "The server gave no answer.");
    }
    if (r->state == REQ_DEFERRED)
        http__run_deferred(r);
}

static struct http_request *request_new(struct http_server *s, struct MHD_Connection *conn,
                                        const char *url, const char *method)
{
    struct http_request *r = calloc(1, sizeof *r);
    const union MHD_ConnectionInfo *ci;

    if (!r)
        return NULL;
    r->s = s;
    r->conn = conn;
    r->id = atomic_fetch_add(&s->next_id, 1) + 1;
    r->start_s = now_s();
    r->refs = 1;                 /* the connection's */
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->path, sizeof r->path, "%s", url);
    r->url_len = strlen(url);
    pthread_mutex_init(&r->lock, NULL);
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    r->hc = ci ? ci->socket_context : NULL;
    if (r->hc) {
        pthread_mutex_lock(&s->conns_lock);
        r->hc->req = r;
        pthread_mutex_unlock(&s->conns_lock);
    }
    atomic_fetch_add(&s->active, 1);
    return r;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    struct http_server *s = cls;
    struct http_request *r = *con_cls;

    (void)version;
    if (!r) {
        if (!(r = request_new(s, conn, url, method)))
            return MHD_NO;
        *con_cls = r;
        begin(r);
        /* An answer MHD refused leaves nothing to send: close rather than spin. */
        return r->state == REQ_ANSWERED && !r->status ? MHD_NO : MHD_YES;
    }
    switch (r->state) {
    case REQ_RECEIVING:
        if (*upload_size) {
            receive(r, upload, *upload_size);
            *upload_size = 0;
            return MHD_YES;
        }
        dispatch(r);
        return MHD_YES;
    case REQ_DEFERRED:
        r->ops->resume(r->job, r);       /* woken by http_wake */
        http__run_deferred(r);
        return MHD_YES;
    default:
        return r->status ? MHD_YES : MHD_NO;
    }
}

/* The response was sent, or the connection failed: the access-log line, the status count,
 * and the job told to stop whatever is left. */
static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *s = cls;
    struct http_request *r = *con_cls;
    bool notify;
    int status, prompt, completion;

    (void)conn;
    if (!r)
        return;
    *con_cls = NULL;
    /* 499 (nginx's): the client closed the connection before an answer was queued. */
    status = r->status ? r->status : 499;
    if (r->hc) {
        pthread_mutex_lock(&s->conns_lock);
        r->hc->req = NULL;
        /* A next request on this keep-alive connection: idle time, then its own deadline. */
        if (s->o.request_timeout_s > 0)
            r->hc->deadline_s = now_s() + s->o.idle_timeout_s + s->o.request_timeout_s;
        pthread_mutex_unlock(&s->conns_lock);
    }
    pthread_mutex_lock(&r->lock);
    notify = r->ops && !r->closed;
    r->closed = true;
    prompt = r->prompt_tokens;
    completion = r->completion_tokens;
    pthread_mutex_unlock(&r->lock);
    if (notify)
        r->ops->closed(r->job);
    /* Health checks and scrapes come every few seconds: only API calls log at INFO. */
    LOG(r->route && r->route->access != HTTP_NEEDS_KEY ? LL_DEBUG : LL_INFO, "http",
        "req %llu %s %s %d prompt_tokens=%d completion_tokens=%d %.1fms%s", r->id,
        r->method, r->path, status, prompt, completion, 1e3 * (now_s() - r->start_s),
        toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" :
        toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT ? " (client closed)" :
        toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? " (timed out)" :
        toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? " (shutdown)" : " (connection error)");
    if (s->o.metrics)
        metrics_http_status(s->o.metrics, status);
    atomic_fetch_sub(&s->active, 1);
    http_unref(r);
}

static void connection_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct http_server *s = cls;
    struct http_conn *hc;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

        if (!ci || !(hc = calloc(1, sizeof *hc)))
            return;              /* untracked: no deadline, no disconnect watch */
        hc->fd = ci->connect_fd;
        hc->deadline_s = s->o.request_timeout_s > 0 ? now_s() + s->o.request_timeout_s : 0;
        pthread_mutex_lock(&s->conns_lock);
        hc->next = s->conns;
        if (s->conns)
            s->conns->prev = hc;
        s->conns = hc;
        pthread_mutex_unlock(&s->conns_lock);
        *socket_context = hc;
        return;
    }
    /* Closed: MHD calls this before it closes the socket, so the watcher (which looks at fd
     * only under conns_lock) never touches a descriptor that was reused. */
    if (!(hc = *socket_context))
        return;
    pthread_mutex_lock(&s->conns_lock);
    if (hc->prev)
        hc->prev->next = hc->next;
    else
        s->conns = hc->next;
    if (hc->next)
        hc->next->prev = hc->prev;
    pthread_mutex_unlock(&s->conns_lock);
    free(hc);
    *socket_context = NULL;
}

/* ---- the watcher ---- */

/* Whether the peer closed or reset the connection (pipelined bytes are not a close). */
static bool client_gone(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };
    char c;

    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP))
        return true;
    return (p.revents & POLLIN) && recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static void *watcher_main(void *arg)
{
    struct http_server *s = arg;

    pthread_mutex_lock(&s->conns_lock);
    while (!s->watcher_stop) {
        struct http_request *gone[64];
        int num_gone = 0;
        double now = now_s();
        struct timespec ts;

        for (struct http_conn *hc = s->conns; hc; hc = hc->next) {
            struct http_request *r = hc->req;

            if (hc->deadline_s > 0 && now > hc->deadline_s && !hc->cut) {
                /* MHD sees the shut socket fail and closes the connection itself. */
                LOG(LL_INFO, "http", "closing a connection that sent its request too slowly "
                    "(request-timeout %.0fs)", s->o.request_timeout_s);
                shutdown(hc->fd, SHUT_RDWR);
                hc->cut = true;
            }
            if (!r || num_gone == (int)ARRAY_LEN(gone))
                continue;
            pthread_mutex_lock(&r->lock);
            if (r->parked && !r->closed && r->ops && client_gone(hc->fd)) {
                r->closed = true;
                r->refs++;
                gone[num_gone++] = r;
            }
            pthread_mutex_unlock(&r->lock);
        }
        pthread_mutex_unlock(&s->conns_lock);
        /* Outside every lock: closed() calls into the engine. */
        for (int i = 0; i < num_gone; i++) {
            LOG(LL_INFO, "http", "req %llu: client went away while waiting; aborting", gone[i]->id);
            gone[i]->ops->closed(gone[i]->job);
            http_unref(gone[i]);
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += WATCH_PERIOD_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&s->conns_lock);
        if (!s->watcher_stop)
            pthread_cond_timedwait(&s->watcher_cond, &s->conns_lock, &ts);
    }
    pthread_mutex_unlock(&s->conns_lock);
    return NULL;
}

/* ---- the server ---- */

static void mhd_log_cb(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;

    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    LOG(LL_INFO, "mhd", "%s", msg);   /* mostly clients hanging up; real failures we report */
}

static int copy_origins(struct http_server *s, char *const *list, int n, char *err)
{
    for (int i = 0; i < n; i++) {
        if (!strcmp(list[i], "*")) {
            s->any_origin = true;
            continue;
        }
        if (s->num_origins == MAX_ORIGINS || strlen(list[i]) >= sizeof s->origins[0]) {
            errf(err, "cors-origins: at most %d origins of %zu bytes each", MAX_ORIGINS,
                 sizeof s->origins[0] - 1);
            return -EINVAL;
        }
        snprintf(s->origins[s->num_origins++], sizeof s->origins[0], "%s", list[i]);
    }
    return 0;
}

static int resolve(const char *host, int port, struct sockaddr_storage *ss, char *err)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE }, *res = NULL;
    char service[16];
    int rc;

    snprintf(service, sizeof service, "%d", port);
    if ((rc = getaddrinfo(host && host[0] ? host : NULL, service, &hints, &res)) || !res) {
        errf(err, "host '%s': %s", host ? host : "", gai_strerror(rc));
        return -EINVAL;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

int http_server_start(struct http_server **out, const struct http_options *o, char *err)
{
    struct http_server *s = calloc(1, sizeof *s);
    struct sockaddr_storage ss;
    const union MHD_DaemonInfo *di;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;

    *out = NULL;
    if (!s) {
        errf(err, "out of memory");
        return -ENOMEM;
    }
    s->o = *o;
    if (!s->o.max_header_bytes)
        s->o.max_header_bytes = 32 * 1024;
    pthread_mutex_init(&s->conns_lock, NULL);
    pthread_cond_init(&s->watcher_cond, NULL);
    if (copy_origins(s, o->cors_origins, o->num_cors_origins, err) || resolve(o->host, o->port, &ss, err)) {
        http_server_stop(s);
        return -EINVAL;
    }
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem opts[] = {
        /* The logger goes first so that MHD's own start-up messages go through it too. */
        { MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log_cb, s },
        { MHD_OPTION_SOCK_ADDR, 0, &ss },
        { MHD_OPTION_CONNECTION_LIMIT, MAX(o->max_connections, 1), NULL },
        { MHD_OPTION_CONNECTION_TIMEOUT, MAX(o->idle_timeout_s, 0), NULL },
        /* The pool holds the head (and MHD's record of each header) and the read buffer:
         * room for a head at the limit, so that we answer it, not MHD's bare 431. */
        { MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)(2 * s->o.max_header_bytes + 16 * 1024), NULL },
        { MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed_cb, s },
        { MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)connection_cb, s },
        /* Last, and only for more than one thread: MHD warns about a pool of one. */
        { o->num_threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, o->num_threads, NULL },
        { MHD_OPTION_END, 0, NULL },
    };

    s->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, access_cb, s,
                            MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!s->d) {
        errf(err, "cannot listen on %s:%d (in use, or not an address of this machine?)",
             o->host ? o->host : "*", o->port);
        http_server_stop(s);
        return -EADDRINUSE;
    }
    di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di && di->port ? di->port : o->port;
    if (pthread_create(&s->watcher, NULL, watcher_main, s)) {
        errf(err, "cannot start the connection watcher thread");
        s->watcher_stop = true;  /* nothing to join */
        http_server_stop(s);
        return -EAGAIN;
    }
    *out = s;
    return 0;
}

int http_server_port(const struct http_server *s)
{
    return s->port;
}

void http_server_drain(struct http_server *s)
{
    atomic_store(&s->draining, true);
}

int http_server_active(struct http_server *s)
{
    return atomic_load(&s->active);
}

void http_server_stop(struct http_server *s)
{
    bool join;

    if (!s)
        return;
    atomic_store(&s->draining, true);
    atomic_store(&s->stopping, true);
    /* MHD refuses to stop with suspended connections: resume every parked one. Nothing
     * parks again once `stopping` is set (park() reads it under the request's lock). */
    pthread_mutex_lock(&s->conns_lock);
    for (struct http_conn *hc = s->conns; hc; hc = hc->next)
        if (hc->req)
            http_wake(hc->req);
    join = !s->watcher_stop;
    s->watcher_stop = true;
    pthread_cond_signal(&s->watcher_cond);
    pthread_mutex_unlock(&s->conns_lock);
    if (join && s->d)
        pthread_join(s->watcher, NULL);
    if (s->d)
        MHD_stop_daemon(s->d);
    pthread_cond_destroy(&s->watcher_cond);
    pthread_mutex_destroy(&s->conns_lock);
    free(s);
}
