/* http_request.c — one HTTP request seen from its handler and its job: references (the
 * connection's, a stream response's, the job's), accessors, immediate answers, and answers
 * that wait for the engine — a deferred response whose connection sleeps (MHD-suspended)
 * until http_wake(), or a chunked stream whose reader sleeps while nothing is ready. */
#include "server/http_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/log.h"
#include "server/openai_render.h"   /* struct oai_error, openai_render_error */

static const char json_type[] = "application/json";

/* ---- references ---- */

void http_ref(struct http_request *r)
{
    pthread_mutex_lock(&r->lock);
    r->refs++;
    pthread_mutex_unlock(&r->lock);
}

void http_unref(struct http_request *r)
{
    int left;

    pthread_mutex_lock(&r->lock);
    left = --r->refs;
    pthread_mutex_unlock(&r->lock);
    if (left > 0)
        return;
    if (r->ops && r->ops->free)
        r->ops->free(r->job);
    pthread_mutex_destroy(&r->lock);
    for (int i = 0; i < r->num_headers; i++)
        free(r->headers[i].value);
    buf_fini(&r->body);
    free(r);
}

/* ---- accessors ---- */

const char *http_request_body(const struct http_request *r, size_t *len)
{
    *len = r->body.len;
    return r->body.p ? r->body.p : "";
}

const char *http_request_path(const struct http_request *r)
{
    return r->path;
}

const char *http_request_header(const struct http_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

unsigned long long http_request_id(const struct http_request *r)
{
    return r->id;
}

void http_request_tokens(struct http_request *r, int prompt_tokens, int completion_tokens)
{
    pthread_mutex_lock(&r->lock);
    r->prompt_tokens = prompt_tokens;
    r->completion_tokens = completion_tokens;
    pthread_mutex_unlock(&r->lock);
}

void http_add_header(struct http_request *r, const char *name, const char *value)
{
    struct http_header *h;

    if (r->num_headers == MAX_EXTRA_HEADERS)
        return;
    h = &r->headers[r->num_headers];
    if (!(h->value = strdup(value))) {
        LOG(LL_ERR, "http", "req %llu: out of memory for the header %s", r->id, name);
        return;
    }
    snprintf(h->name, sizeof h->name, "%s", name);
    r->num_headers++;
}

/* ---- responses ---- */

/* Adds the extra and CORS headers, queues, and drops our reference to resp. */
static void queue(struct http_request *r, int status, struct MHD_Response *resp)
{
    if (!resp) {
        LOG(LL_ERR, "http", "req %llu: out of memory for a response", r->id);
        r->state = REQ_ANSWERED;
        return;
    }
    for (int i = 0; i < r->num_headers; i++)
        MHD_add_response_header(resp, r->headers[i].name, r->headers[i].value);
    if (r->cors_origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->cors_origin);
        if (strcmp(r->cors_origin, "*"))
            MHD_add_response_header(resp, "Vary", "Origin");
    }
    if (r->capturing) {
        /* On a worker: the MHD thread queues it (http__queue_captured). */
        if (r->captured)
            MHD_destroy_response(r->captured);
        r->captured = resp;
        r->captured_status = status;
    } else {
        if (MHD_queue_response(r->conn, (unsigned)status, resp) == MHD_YES)
            r->status = status;
        else
            LOG(LL_WARN, "http", "req %llu: MHD refused the %d response", r->id, status);
        MHD_destroy_response(resp);
    }
    if (r->state != REQ_STREAMING)
        r->state = REQ_ANSWERED;
}

void http__queue_captured(struct http_request *r)
{
    struct MHD_Response *resp = r->captured;

    r->capturing = false;
    r->captured = NULL;
    if (!resp)
        return;
    if (MHD_queue_response(r->conn, (unsigned)r->captured_status, resp) == MHD_YES)
        r->status = r->captured_status;
    else
        LOG(LL_WARN, "http", "req %llu: MHD refused the %d response", r->id, r->captured_status);
    MHD_destroy_response(resp);
}

void http__drop_captured(struct http_request *r)
{
    struct MHD_Response *resp = r->captured;

    r->capturing = false;
    r->captured = NULL;
    if (resp)
        MHD_destroy_response(resp);  /* a stream's: reader_free_cb drops its reference */
}

void http_respond(struct http_request *r, int status, const char *content_type, char *body,
                  size_t len)
{
    struct MHD_Response *resp;

    if (!body)
        len = 0;
    resp = MHD_create_response_from_buffer(len, body ? body : (char *)"",
                                           body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp)
        free(body);
    else if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    queue(r, status, resp);
}

void http_respond_error(struct http_request *r, const struct oai_error *e)
{
    size_t len = 0;
    char *body = openai_render_error(e, &len);

    http_respond(r, e->status, json_type, body, len);
}

void http__respond_errorf(struct http_request *r, int status, const char *code, const char *fmt, ...)
{
    struct oai_error e;
    va_list ap;

    openai_error(&e, status, code, NULL, "%s", "");
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    http_respond_error(r, &e);
}

/* ---- deferred answers and streams ---- */

void http_attach(struct http_request *r, const struct http_job_ops *ops, void *job)
{
    r->ops = ops;
    r->job = job;
}

void http_defer(struct http_request *r, const struct http_job_ops *ops, void *job)
{
    r->ops = ops;
    r->job = job;
    r->state = REQ_DEFERRED;
}

void http_wake(struct http_request *r)
{
    pthread_mutex_lock(&r->lock);
    if (r->parked) {
        /* Parked means MHD holds the connection suspended and cannot close it: safe. */
        r->parked = false;
        MHD_resume_connection(r->conn);
    } else {
        r->woken = true;
    }
    pthread_mutex_unlock(&r->lock);
}

/* Suspends the connection unless a wake already came (then returns false: go on). Called
 * from the access handler or the content reader, the only places MHD allows it. */
static bool park(struct http_request *r)
{
    bool parked = false;

    pthread_mutex_lock(&r->lock);
    if (r->woken)
        r->woken = false;
    else if (!atomic_load(&r->s->stopping)) {
        r->parked = parked = true;
        MHD_suspend_connection(r->conn);
    }
    pthread_mutex_unlock(&r->lock);
    return parked;
}

void http__run_deferred(struct http_request *r)
{
    while (r->state == REQ_DEFERRED) {
        if (atomic_load(&r->s->stopping)) {
            http__respond_errorf(r, 503, "shutting_down", "The server is shutting down.");
            return;
        }
        if (park(r))
            return;
        r->ops->resume(r->job, r);
    }
}

static ssize_t reader_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct http_request *r = cls;

    (void)pos;
    for (;;) {
        ssize_t n;

        if (atomic_load(&r->s->stopping))
            return MHD_CONTENT_READER_END_WITH_ERROR;
        n = r->ops->read(r->job, buf, max);
        if (n > 0)
            return n;
        if (n == HTTP_STREAM_END)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (n < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (park(r))
            return 0;            /* MHD calls again once http_wake resumes the connection */
    }
}

static void reader_free_cb(void *cls)
{
    http_unref(cls);
}

void http_stream(struct http_request *r, const struct http_job_ops *ops, void *job)
{
    struct MHD_Response *resp;

    r->ops = ops;
    r->job = job;
    r->state = REQ_STREAMING;
    pthread_mutex_lock(&r->lock);
    r->streaming = true;
    pthread_mutex_unlock(&r->lock);
    http_ref(r);                 /* the response's, dropped by reader_free_cb */
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, reader_cb, r,
                                             reader_free_cb);
    if (!resp) {
        http_unref(r);
        r->state = REQ_DEFERRED; /* let the error answer go through */
        http__respond_errorf(r, 500, "internal_error", "out of memory");
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    queue(r, 200, resp);
}
