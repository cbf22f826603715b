/* comm_cpu.c — the cpu communicator: N threads of one process, an all-reduce through
 * memory they share. Each rank publishes its buffer; each then sums one slice of the
 * elements over every rank (in rank order, so that all ranks get the same bits) into a
 * shared f32 scratch; each copies the whole sum back. Two barriers per call: one before the
 * sums (every buffer is ready) and one after them (the scratch is whole); the next call's
 * first barrier keeps a fast rank from overwriting the scratch another still reads. The
 * barrier (comm_group.h) is abortable so that comm_abort wakes a rank waiting for a peer
 * that failed. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine/comm.h"
#include "engine/comm_group.h"

struct group {
    struct comm_group sync;
    void **bufs;               /* [size] each rank's buffer of this call */
    float *sum;                /* [cap] */
    size_t cap;
};

struct comm_cpu {
    struct comm base;
    struct group *g;
};

static int cpu_all_reduce(struct comm *c, void *buf, size_t count, enum dtype dt)
{
    struct group *g = ((struct comm_cpu *)c)->g;
    size_t per, lo, hi;
    int rc;

    if (dt != DT_F32 || count > g->cap) {
        /* checked on every rank alike, so that no rank waits for one that refused */
        return -EINVAL;
    }
    if (g->sync.size == 1)
        return 0;
    g->bufs[c->rank] = buf;
    if ((rc = comm_group_barrier(&g->sync)))
        return rc;
    per = (count + g->sync.size - 1) / g->sync.size;
    lo = MIN(count, per * c->rank);
    hi = MIN(count, lo + per);
    for (size_t i = lo; i < hi; i++) {
        float s = 0.0f;

        for (int r = 0; r < g->sync.size; r++)
            s += ((const float *)g->bufs[r])[i];
        g->sum[i] = s;
    }
    if ((rc = comm_group_barrier(&g->sync)))
        return rc;
    memcpy(buf, g->sum, count * sizeof(float));
    return 0;
}

static void cpu_abort(struct comm *c)
{
    struct group *g = ((struct comm_cpu *)c)->g;

    comm_group_abort(&g->sync);
}

static void group_unref(struct group *g)
{
    if (!comm_group_unref(&g->sync))
        return;
    comm_group_fini(&g->sync);
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
    comm_group_init(&g->sync, n);
    g->cap = max_count;
    for (int r = 0; r < n; r++) {
        struct comm_cpu *c = calloc(1, sizeof *c);

        if (!c) {
            for (int i = 0; i < r; i++)
                cpu_destroy(ranks[i]);
            if (r == 0)
                group_unref((comm_group_ref(&g->sync), g));
            errf(err, "comm_cpu: out of memory");
            return -ENOMEM;
        }
        c->base = (struct comm){ &cpu_ops, r, n };
        c->g = g;
        comm_group_ref(&g->sync);
        ranks[r] = &c->base;
    }
    return 0;
}
