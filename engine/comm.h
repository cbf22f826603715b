/* comm.h — the collectives of tensor parallelism: one struct comm per rank of a group of N
 * ranks that run the same step on their shards of the model. The layer loop calls
 * comm_all_reduce after each row-parallel product (o and down), so every rank holds the
 * full sum. Two implementations: cpu (comm_cpu.c, N threads of one process summing through
 * shared memory) and nccl (engine/cuda/comm_nccl.c, on the backend's stream, capturable in
 * a CUDA graph). A collective is entered by every rank of the group or by none; a rank that
 * fails calls comm_abort so that the others return -ECANCELED instead of waiting forever. */
#ifndef OSPREY_COMM_H
#define OSPREY_COMM_H

#include <stddef.h>

#include "engine/base/util.h"   /* enum dtype */

struct comm;

struct comm_ops {
    const char *name;          /* "cpu", "nccl" */
    /* In place: buf[count] of dtype = the sum of every rank's buf. Every rank gets the same
     * bits (the ranks' buffers are added in rank order). */
    int (*all_reduce)(struct comm *c, void *buf, size_t count, enum dtype dt);
    void (*abort)(struct comm *c);
    void (*destroy)(struct comm *c);
};

struct comm {
    const struct comm_ops *ops;
    int rank, size;
};

static inline int comm_all_reduce(struct comm *c, void *buf, size_t count, enum dtype dt)
{
    return c->ops->all_reduce(c, buf, count, dt);
}

static inline void comm_abort(struct comm *c)
{
    c->ops->abort(c);
}

/* Destroys one rank's view; the group's shared state goes with the last one. NULL is fine. */
static inline void comm_destroy(struct comm *c)
{
    if (c)
        c->ops->destroy(c);
}

/* Fills ranks[n] with the cpu group of n ranks (n >= 1), each to be used by one thread, for
 * f32 all-reduces of up to max_count elements (the scratch is allocated here, never in a
 * step). Returns 0, or -EINVAL / -ENOMEM with a message in err. */
int comm_cpu_create(struct comm **ranks, int n, size_t max_count, char *err);

/* CUDA builds only (engine/cuda/comm_nccl.c): fills ranks[n] with one NCCL communicator per
 * device (devices[i]), collectives on streams[i] (a cudaStream_t each: the rank's backend
 * stream, backend_cuda_stream). Returns 0, or -EINVAL / -ENOMEM / -EIO with NCCL's message
 * in err. */
int comm_nccl_create(struct comm **ranks, int n, const int *devices, void *const *streams,
                     char *err);

#endif
