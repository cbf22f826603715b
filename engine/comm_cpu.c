/* comm_cpu.c — the cpu communicator: N threads of one process, an all-reduce through
 * memory they share. Each rank publishes its buffer; each then sums one slice of the
 * elements over every rank (in rank order, so that all ranks get the same bits) into a
 * shared f32 scratch; each copies the whole sum back. Two barriers per call: one before the
 * sums (every buffer is ready) and one after them (the scratch is whole); the next call's
 * first barrier keeps a fast rank from overwriting the scratch another still reads. The
 * barrier is our own so that comm_abort wakes a rank waiting for a peer that failed. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine/comm.h"

struct group {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int size, waiting, refs;
    unsigned long generation;
    bool aborted;
    void **bufs;               /* [size] each rank's buffer of this call */
    float *sum;                /* [cap] */
    size_t cap;
};

struct comm_cpu {
    struct comm base;
    struct group *g;
};

/* Returns 0 when every rank arrived, -ECANCELED once the group is aborted. */
static int barrier(struct group *g)
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

static int cpu_all_reduce(struct comm *c, void *buf, size_t count, enum dtype dt)
{
    struct group *g = ((struct comm_cpu *)c)->g;
    size_t per, lo, hi;
    int rc;

    if (dt != DT_F32 || count > g->cap) {
        /* checked on every rank alike, so that no rank waits for one that refused */
        return -EINVAL;
    }
    if (g->size == 1)
        return 0;
    g->bufs[c->rank] = buf;
    if ((rc = barrier(g)))
        return rc;
    per = (count + g->size - 1) / g->size;
    lo = MIN(count, per * c->rank);
    hi = MIN(count, lo + per);
    for (size_t i = lo; i < hi; i++) {
        float s = 0.0f;

        for (int r = 0; r < g->size; r++)
            s += ((const float *)g->bufs[r])[i];
        g->sum[i] = s;
    }
    if ((rc = barrier(g)))
        return rc;
    memcpy(buf, g->sum, count * sizeof(float));
    return 0;
}

static void cpu_abort(struct comm *c)
{
    struct group *g = ((struct comm_cpu *)c)->g;

    pthread_mutex_lock(&g->lock);
    g->aborted = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static void group_unref(struct group *g)
{
    bool last;

    pthread_mutex_lock(&g->lock);
    last = --g->refs == 0;
    pthread_mutex_unlock(&g->lock);
    if (!last)
        return;
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
    free(g->bufs);
    free(g->sum);
    free(g);
}

static void cpu_destroy(struct comm *c)
{
    group_unref(((struct comm_cpu *)c)->g);
    free(c);
}

static const struct comm_ops cpu_ops = { .name = "cpu", .all_reduce = cpu_all_reduce,
                                         .abort = cpu_abort, .destroy = cpu_destroy };

int comm_cpu_create(struct comm **ranks, int n, size_t max_count, char *err)
{
    struct group *g;

    if (n < 1) {
        errf(err, "comm_cpu: a group of %d ranks", n);
        return -EINVAL;
    }
    memset(ranks, 0, n * sizeof *ranks);
    if (!(g = calloc(1, sizeof *g)) || !(g->bufs = calloc(n, sizeof *g->bufs)) ||
        !(g->sum = malloc(MAX(max_count, 1) * sizeof *g->sum))) {
        if (g)
            free(g->bufs);
        free(g);
        errf(err, "comm_cpu: out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->size = n;
    g->cap = max_count;
    for (int r = 0; r < n; r++) {
        struct comm_cpu *c = calloc(1, sizeof *c);

        if (!c) {
            for (int i = 0; i < r; i++)
                cpu_destroy(ranks[i]);
            if (r == 0)
                group_unref((g->refs = 1, g));
            errf(err, "comm_cpu: out of memory");
            return -ENOMEM;
        }
        c->base = (struct comm){ &cpu_ops, r, n };
        c->g = g;
        g->refs++;
        ranks[r] = &c->base;
    }
    return 0;
}
