/* http_worker.c — the threads that run POST handlers, off libmicrohttpd's threads. A handler
 * may parse a megabyte of JSON and tokenize it (hundreds of milliseconds); run on an MHD
 * thread, it would stall every connection that thread serves, /health and /metrics
 * included. So once a POST's body is in, the connection is suspended and the request queued
 * here; a worker runs the handler with its answer captured (http_request.c's queue()), then
 * resumes the connection, and the MHD thread queues the captured answer or carries on with
 * the deferred or streamed one (http__offload_finish). GET routes answer on MHD's threads. */
#include "server/http_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/base/log.h"
#include "engine/base/util.h"

static void *worker_main(void *arg)
{
    struct http_server *s = arg;
    struct http_workers *w = &s->workers;

    pthread_mutex_lock(&w->lock);
    for (;;) {
        struct http_request *r;

        while (!w->head && !w->stop)
            pthread_cond_wait(&w->cond, &w->lock);
        if (!w->head)
            break;                   /* stopping, and nothing left */
        r = w->head;
        w->head = r->next_work;
        if (!w->head)
            w->tail = NULL;
        pthread_mutex_unlock(&w->lock);

        if (atomic_load(&s->stopping)) {
            http__respond_errorf(r, 503, "shutting_down", "The server is shutting down.");
        } else {
            r->state = REQ_HANDLING;
            r->route->handle(r, s->o.app);
            if (r->state == REQ_HANDLING) {
                LOG(LL_ERR, "http", "req %llu: the handler of %s gave no answer", r->id, r->path);
                http__respond_errorf(r, 500, "internal_error", "The server gave no answer.");
            }
        }
        /* Back to MHD: the access handler runs again and finishes what the handler began. */
        pthread_mutex_lock(&r->lock);
        r->offload_done = true;
        MHD_resume_connection(r->conn);
        pthread_mutex_unlock(&r->lock);

        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int http__workers_start(struct http_server *s, int n, char *err)
{
    struct http_workers *w = &s->workers;

    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->initialized = true;
    n = MIN(n, HTTP_MAX_WORKERS);
    for (w->num_threads = 0; w->num_threads < n; w->num_threads++) {
        if (pthread_create(&w->threads[w->num_threads], NULL, worker_main, s)) {
            errf(err, "cannot start HTTP worker thread %d of %d", w->num_threads + 1, n);
            return -EAGAIN;
        }
    }
    return 0;
}

void http__workers_stop(struct http_server *s)
{
    struct http_workers *w = &s->workers;

    if (!w->initialized)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    /* Each drains the queue first (answering 503 once the server stops), so every suspended
     * connection is resumed before MHD is asked to stop. */
    for (int i = 0; i < w->num_threads; i++)
        pthread_join(w->threads[i], NULL);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    w->initialized = false;
}

void http__offload(struct http_request *r)
{
    struct http_workers *w = &r->s->workers;

    r->state = REQ_OFFLOADED;
    r->capturing = true;
    MHD_suspend_connection(r->conn);
    pthread_mutex_lock(&w->lock);
    r->next_work = NULL;
    if (w->tail)
        w->tail->next_work = r;
    else
        w->head = r;
    w->tail = r;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

void http__offload_finish(struct http_request *r)
{
    http__queue_captured(r);
    if (r->state == REQ_DEFERRED)
        http__run_deferred(r);
}
