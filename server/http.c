/* http.c — libmicrohttpd underneath the daemon. A request goes RECEIVING (headers in: route,
 * method, CORS, key and size checks, any of which may answer at once) → for a POST,
 * OFFLOADED (connection suspended while an HTTP worker runs the handler, http_worker.c) →
 * HANDLING (body in: the route's handler) → answered, DEFERRED (connection suspended until
 * the engine wakes it) or STREAMING (a chunked response whose reader suspends while nothing
 * is ready).
 * A watcher thread (http_conn.c) closes connections that send too slowly and notices clients
 * that went away while their connection sleeps (MHD does not poll a suspended socket); the
 * head's framing is checked by http_head.c before any body byte is read.
 * Lifetimes: a request is freed when its last reference goes — the connection's (dropped
 * when MHD reports it completed), the stream response's, and those its job holds; the
 * request's own side (answers, deferred and streamed output) is server/http_request.c.
 * An answer a worker made waits in r->captured, owned by the connection until the access
 * handler queues it; completed_cb drops one that never was (see there): a stream's response
 * holds a reference on r, so no reference count could ever free that pair. */
#include "server/http_internal.h"

#include <errno.h>
#include <netdb.h>
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

#define MAX_ALLOW_HEADERS_BYTES 4096  /* a preflight's list of headers; a browser sends ~300 */
#define MAX_QUERY_ARGS  100          /* no route reads the query; more is an attack on MHD's pool */

/* *con_cls of a request whose query had more than MAX_QUERY_ARGS arguments (uri_cb). */
static char many_args_mark;

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

/* Whether v is a list of header names (RFC 9110 5.6.1: tokens, commas, blanks), as a
 * preflight's Access-Control-Request-Headers must be. */
static bool is_name_list(const char *v)
{
    char name[64];

    for (;;) {
        size_t n;

        v += strspn(v, " \t");
        n = strcspn(v, ", \t");
        if (n == 0 || n >= sizeof name)
            return false;
        memcpy(name, v, n);
        name[n] = '\0';
        if (!http__is_token(name))
            return false;
        v += n + strspn(v + n, " \t");
        if (!*v)
            return true;
        if (*v++ != ',')
            return false;
    }
}

static bool key_needed(const struct http_server *s, const struct http_route *rt)
{
    if (!s->o.api_key || !s->o.api_key[0] || rt->access == HTTP_PUBLIC)
        return false;
    return rt->access == HTTP_NEEDS_KEY || s->o.metrics_require_key;
}

static enum MHD_Result arg_bytes_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    size_t *bytes = cls;

    (void)kind;
    *bytes += strlen(key) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

/* The head's size against max_header_bytes (431), and a framing that two parties could read
 * two ways (400: server/http_head.c). Both answer at once; the framing error also closes the
 * connection, since where the next request starts is unknown. Returns whether it answered. */
static bool refuse_head(struct http_request *r, const char *method, const char *version)
{
    struct http_server *s = r->s;
    struct http_head h;
    char why[160];
    int bad = http__head_check(r->conn, method, version, &h);
    size_t bytes = h.bytes + strlen(r->method) + r->url_len + 12;

    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, arg_bytes_cb, &bytes);
    if (bytes > s->o.max_header_bytes) {
        http__respond_errorf(r, 431, "request_header_fields_too_large",
                             "Request headers of %zu bytes are larger than the limit of %zu bytes.",
                             bytes, s->o.max_header_bytes);
        return true;
    }
    if (bad) {
        http__head_describe(&h, version, why, sizeof why);
        LOG(LL_INFO, "http", "req %llu: refused, its framing is ambiguous: %s", r->id, why);
        http_add_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
        http__respond_errorf(r, 400, "invalid_request",
                             "The request head is malformed: %s.", why);
        return true;
    }
    return false;
}

/* Everything decided from the headers alone. Answers at once (MHD then skips the body)
 * or leaves the request RECEIVING. */
static void begin(struct http_request *r, const char *method, const char *version)
{
    struct http_server *s = r->s;
    const char *cl = http_request_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);

    if (refuse_head(r, method, version))
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
            /* The headers the page asks to send, as vLLM allows them: the official clients
             * send their own (X-Stainless-*), and a list of ours would fail their preflight. */
            const char *asked = http_request_header(r, "Access-Control-Request-Headers");

            if (asked && asked[0] && (strlen(asked) > MAX_ALLOW_HEADERS_BYTES || !is_name_list(asked))) {
                http__respond_errorf(r, 400, "invalid_request",
                                     "Access-Control-Request-Headers is not a list of header names "
                                     "(at most %d bytes).", MAX_ALLOW_HEADERS_BYTES);
                return;
            }
            http_add_header(r, "Access-Control-Allow-Methods", allow_of(r->route));
            http_add_header(r, "Access-Control-Allow-Headers",
                            asked && asked[0] ? asked : "Authorization, Content-Type");
            http_add_header(r, "Vary", "Access-Control-Request-Headers");
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

    if (r->too_large || n > max - r->body.len || buf_put(&r->body, data, n))
        r->too_large = true;
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
    if (!strcmp(r->route->method, "POST")) {
        http__offload(r);        /* parsing and tokenizing: off MHD's threads */
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
                                        const char *url, const char *method, const char *version)
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
    r->http11 = !strcmp(version, MHD_HTTP_VERSION_1_1);
    pthread_mutex_init(&r->lock, NULL);
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    r->hc = ci ? ci->socket_context : NULL;
    if (r->hc) {
        pthread_mutex_lock(&s->conns_lock);
        r->hc->req = r;
        /* A head that came in whole between two passes of the watcher: its body's deadline. */
        if (r->hc->idle && s->o.request_timeout_s > 0)
            r->hc->deadline_s = now_s() + s->o.request_timeout_s;
        r->hc->idle = false;
        pthread_mutex_unlock(&s->conns_lock);
    }
    atomic_fetch_add(&s->active, 1);
    return r;
}

/* Called by MHD with the raw URL, before it parses the query. libmicrohttpd 0.9.75 records
 * every query argument in the connection's memory pool, and when the pool runs out (a couple
 * of thousand arguments, 11 KB of URL) it queues a 431 that its own state machine then
 * drops: the connection hangs, unanswered, until the request timeout. So a query of more
 * than MAX_QUERY_ARGS arguments is cut here, in MHD's own buffer (bit yikes: the URL is
 * MHD's, writable, and parsed right after this returns, as 0.9.75's connection.c does), and
 * the request is answered 414 once its head is in. The returned mark becomes *con_cls. */
static void *uri_cb(void *cls, const char *uri, struct MHD_Connection *conn)
{
    char *query = uri ? strchr(uri, '?') : NULL;
    size_t args = 1;

    (void)cls;
    (void)conn;
    if (!query)
        return NULL;
    for (const char *p = query + 1; *p; p++)
        args += *p == '&';
    if (args <= MAX_QUERY_ARGS)
        return NULL;
    query[1] = '\0';
    return &many_args_mark;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    struct http_server *s = cls;
    struct http_request *r = *con_cls;
    bool offloaded;

    if (!r || r == (void *)&many_args_mark) {
        bool many_args = r != NULL;

        if (!(r = request_new(s, conn, url, method, version)))
            return MHD_NO;
        *con_cls = r;
        if (many_args)
            http__respond_errorf(r, 414, "uri_too_long",
                                 "The URL has more than %d query arguments; no route reads any.",
                                 MAX_QUERY_ARGS);
        else
            begin(r, method, version);
        /* An answer MHD refused leaves nothing to send: close rather than spin. */
        return r->state == REQ_ANSWERED && !r->status ? MHD_NO : MHD_YES;
    }
    pthread_mutex_lock(&r->lock);
    offloaded = r->offload_done;
    r->offload_done = false;
    pthread_mutex_unlock(&r->lock);
    if (offloaded) {
        http__offload_finish(r);
        return MHD_YES;
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
    bool notify, gone;
    int status, prompt, completion;

    (void)conn;
    *con_cls = NULL;
    if (!r || r == (void *)&many_args_mark)   /* MHD refused the head itself */
        return;
    if (r->hc) {
        pthread_mutex_lock(&s->conns_lock);
        r->hc->req = NULL;
        http__conn_idle(s, r->hc);
        pthread_mutex_unlock(&s->conns_lock);
    }
    pthread_mutex_lock(&r->lock);
    notify = r->ops && !r->closed;
    r->closed = true;
    prompt = r->prompt_tokens;
    completion = r->completion_tokens;
    /* 499 (nginx's): the client left before it had an answer — none was queued, or the
     * watcher saw it go while the answer was being made (the job's "aborted" 503 then went
     * nowhere), or it reset the connection while sending. A stream's 200 was sent: it stays
     * 200, and its line says how it ended. */
    gone = !r->streaming && (r->client_gone || toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT ||
                             toe == MHD_REQUEST_TERMINATED_READ_ERROR);
    status = r->status && !gone ? r->status : 499;
    pthread_mutex_unlock(&r->lock);
    if (notify)
        r->ops->closed(r->job);
    /* A worker's answer the access handler never queued. On resume MHD reads the socket
     * before it calls the handler again, and a client that left meanwhile (a reset, or a
     * close: a worker's connection is suspended, so the watcher does not look at it) ends
     * the connection here instead. Nobody else would ever queue or free it, and a stream's
     * response and r keep each other alive: the answer is the connection's, dropped with it.
     * No worker still writes it: a suspended connection never completes, and the worker is
     * done with r once it has resumed it. */
    http__drop_captured(r);
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
        /* Slow clients (slowloris) from one address hold no more than this: the others'
         * connections are refused at accept, answered by nothing but a close. */
        { MHD_OPTION_PER_IP_CONNECTION_LIMIT, MAX(o->max_connections_per_client, 0), NULL },
        { MHD_OPTION_CONNECTION_TIMEOUT, MAX(o->idle_timeout_s, 0), NULL },
        /* The pool holds the head (and MHD's record of each header) and the read buffer:
         * room for a head at the limit, so that we answer it, not MHD's bare 431. */
        { MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)(2 * s->o.max_header_bytes + 16 * 1024), NULL },
        { MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed_cb, s },
        { MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)http__connection_cb, s },
        { MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)uri_cb, s },
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
    if (http__workers_start(s, MAX(o->num_threads, 1), err)) {
        s->watcher_stop = true;  /* not started yet: nothing to join */
        http_server_stop(s);
        return -EAGAIN;
    }
    if (pthread_create(&s->watcher, NULL, http__watcher_main, s)) {
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
    http__workers_stop(s);
    if (s->d)
        MHD_stop_daemon(s->d);
    pthread_cond_destroy(&s->watcher_cond);
    pthread_mutex_destroy(&s->conns_lock);
    free(s);
}
