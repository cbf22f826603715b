/* threadpool.c — persistent worker threads woken per run by a condition variable. A run
 * publishes (fn, arg, num_tasks) under the lock and bumps a generation number; every thread,
 * the caller included, then takes task indices from an atomic counter until none is left.
 * The caller waits for the last worker to check out before it returns, so nothing of a run
 * outlives threadpool_run(). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "engine/cpu/threadpool.h"

struct threadpool {
    int num_threads;           /* workers + the caller */
    pthread_t *workers;        /* [num_threads - 1] */
    int num_started;

    pthread_mutex_t mu;
    pthread_cond_t start_cv;   /* workers wait here for a new generation or stop */
    pthread_cond_t done_cv;    /* the caller waits here for active == 0 */
    unsigned long generation;  /* bumped once per run */
    bool stop;
    int active;                /* workers that have not finished the current run */

    /* the current run; written under mu before the generation bump */
    threadpool_fn fn;
    void *arg;
    int num_tasks;
    atomic_int next;           /* next task index to hand out */
};

struct worker_arg {
    struct threadpool *tp;
    int thread;
};

static void run_tasks(struct threadpool *tp, int thread)
{
    int task;

    while ((task = atomic_fetch_add(&tp->next, 1)) < tp->num_tasks)
        tp->fn(tp->arg, task, thread);
}

static void *worker_main(void *p)
{
    struct threadpool *tp = ((struct worker_arg *)p)->tp;
    int thread = ((struct worker_arg *)p)->thread;
    unsigned long seen = 0;

    free(p);
    pthread_mutex_lock(&tp->mu);
    for (;;) {
        while (tp->generation == seen && !tp->stop)
            pthread_cond_wait(&tp->start_cv, &tp->mu);
        if (tp->stop)
            break;
        seen = tp->generation;
        pthread_mutex_unlock(&tp->mu);
        run_tasks(tp, thread);
        pthread_mutex_lock(&tp->mu);
        if (--tp->active == 0)
            pthread_cond_signal(&tp->done_cv);
    }
    pthread_mutex_unlock(&tp->mu);
    return NULL;
}

int threadpool_create(struct threadpool **out, int num_threads)
{
    struct threadpool *tp;
    int rc = 0;

    *out = NULL;
    if (num_threads < 1)
        return -EINVAL;
    tp = calloc(1, sizeof *tp);
    if (!tp)
        return -ENOMEM;
    tp->num_threads = num_threads;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->start_cv, NULL);
    pthread_cond_init(&tp->done_cv, NULL);
    atomic_init(&tp->next, 0);
    tp->workers = calloc(num_threads, sizeof *tp->workers);
    if (!tp->workers) {
        threadpool_destroy(tp);
        return -ENOMEM;
    }
    for (int i = 1; i < num_threads; i++) {
        struct worker_arg *wa = malloc(sizeof *wa);

        if (!wa) {
            rc = -ENOMEM;
            break;
        }
        *wa = (struct worker_arg){ tp, i };
        rc = -pthread_create(&tp->workers[tp->num_started], NULL, worker_main, wa);
        if (rc) {
            free(wa);
            break;
        }
        tp->num_started++;
    }
    if (rc) {
        threadpool_destroy(tp);
        return rc;
    }
    *out = tp;
    return 0;
}

void threadpool_destroy(struct threadpool *tp)
{
    if (!tp)
        return;
    pthread_mutex_lock(&tp->mu);
    tp->stop = true;
    pthread_cond_broadcast(&tp->start_cv);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 0; i < tp->num_started; i++)
        pthread_join(tp->workers[i], NULL);
    pthread_cond_destroy(&tp->done_cv);
    pthread_cond_destroy(&tp->start_cv);
    pthread_mutex_destroy(&tp->mu);
    free(tp->workers);
    free(tp);
}

int threadpool_size(const struct threadpool *tp)
{
    return tp->num_threads;
}

void threadpool_run(struct threadpool *tp, int num_tasks, threadpool_fn fn, void *arg)
{
    if (num_tasks <= 0)
        return;
    if (tp->num_started == 0 || num_tasks == 1) {
        for (int i = 0; i < num_tasks; i++)
            fn(arg, i, 0);
        return;
    }
    pthread_mutex_lock(&tp->mu);
    tp->fn = fn;
    tp->arg = arg;
    tp->num_tasks = num_tasks;
    atomic_store(&tp->next, 0);
    tp->active = tp->num_started;
    tp->generation++;
    pthread_cond_broadcast(&tp->start_cv);
    pthread_mutex_unlock(&tp->mu);

    run_tasks(tp, 0);

    pthread_mutex_lock(&tp->mu);
    while (tp->active > 0)
        pthread_cond_wait(&tp->done_cv, &tp->mu);
    pthread_mutex_unlock(&tp->mu);
}
