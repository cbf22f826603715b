/* comm_group.c — the abortable barrier and reference count of comm_group.h. The barrier
 * counts generations so that a rank leaving one barrier cannot be caught by the next. */
#include <errno.h>

#include "engine/comm_group.h"

void comm_group_init(struct comm_group *g, int size)
{
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->size = size;
    g->waiting = g->refs = 0;
    g->generation = 0;
    g->aborted = false;
}

void comm_group_fini(struct comm_group *g)
{
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
}

int comm_group_barrier(struct comm_group *g)
{
    int rc = 0;

    pthread_mutex_lock(&g->lock);
    if (g->aborted) {
        rc = -ECANCELED;
    } else if (++g->waiting == g->size) {
        g->waiting = 0;
        g->generation++;
        pthread_cond_broadcast(&g->cond);
    } else {
        unsigned long gen = g->generation;

        while (gen == g->generation && !g->aborted)
            pthread_cond_wait(&g->cond, &g->lock);
        if (gen == g->generation)
            rc = -ECANCELED;
    }
    pthread_mutex_unlock(&g->lock);
    return rc;
}

void comm_group_abort(struct comm_group *g)
{
    pthread_mutex_lock(&g->lock);
    g->aborted = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

bool comm_group_aborted(struct comm_group *g)
{
    bool a;

    pthread_mutex_lock(&g->lock);
    a = g->aborted;
    pthread_mutex_unlock(&g->lock);
    return a;
}

void comm_group_ref(struct comm_group *g)
{
    pthread_mutex_lock(&g->lock);
    g->refs++;
    pthread_mutex_unlock(&g->lock);
}

bool comm_group_unref(struct comm_group *g)
{
    bool last;

    pthread_mutex_lock(&g->lock);
    last = --g->refs == 0;
    pthread_mutex_unlock(&g->lock);
    return last;
}
