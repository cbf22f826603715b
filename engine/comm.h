/* comm.h — the collectives of tensor parallelism: one struct comm per rank of a group of N
 * ranks that run the same step on their shards of the model. The layer loop calls
 * comm_all_reduce after each row-parallel product (o, down, the MoE block), so every rank
 * holds the full sum. Three implementations: cpu (comm_cpu.c, N threads of one process
 * summing through shared memory), nccl (engine/cuda/comm_nccl.c, one GPU per rank, on the
 * backend's stream, capturable in a CUDA graph) and cuda_local (engine/cuda/
 * comm_cuda_local.c, N ranks sharing one GPU, for tests; eager only). A collective is
 * entered by every rank of the group or by none; a rank that fails calls comm_abort so that
 * the others return -ECANCELED instead of waiting forever. Each rank's comm is used by one
 * thread at a time (its worker), comm_abort included. */
#ifndef OSPREY_COMM_H
#define OSPREY_COMM_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/base/util.h"   /* enum dtype */

struct comm;

struct comm_ops {
    const char *name;          /* "cpu", "nccl", "cuda_local" */
    bool capturable;           /* all_reduce may be captured inside a CUDA graph */
    /* In place: buf[count] of dtype = the sum of every rank's buf. Every rank gets the same
     * bits: cpu and cuda_local add the ranks' buffers in rank order; NCCL reduces each chunk
     * in an order of its own (the ring's), then hands every rank that one result. On a
     * device the call only enqueues the sum on the rank's stream. */
    int (*all_reduce)(struct comm *c, void *buf, size_t count, enum dtype dt);
    /* Waits until everything the rank enqueued (its step and its collectives) is done,
     * without ever blocking for good: returns 0, -ECANCELED once the group is aborted
     * (a peer failed: the wait stops), -EIO when the device failed (the group is then
     * aborted). NULL where collectives are synchronous (cpu). */
    int (*wait)(struct comm *c);
    /* Marks the group failed: every rank's next (or current) all_reduce or wait returns
     * -ECANCELED; a device rank also stops its own collectives in flight (ncclCommAbort). */
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

static inline int comm_wait(struct comm *c)
{
    return c->ops->wait ? c->ops->wait(c) : 0;
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
 * device (devices[i], all different), collectives on streams[i] (a cudaStream_t each: the
 * rank's backend stream, backend_cuda_stream). The ranks' comms share an abort flag: one
 * rank's failure stops every rank's wait. Returns 0, or -EINVAL / -ENOMEM / -EIO with
 * NCCL's message in err. */
int comm_nccl_create(struct comm **ranks, int n, const int *devices, void *const *streams,
                     char *err);

/* CUDA builds only (engine/cuda/comm_cuda_local.c): fills ranks[n] with a group of n ranks
 * that share one device, rank i enqueuing on streams[i]; bf16 and f32 sums of any count.
 * Rank 0 adds the ranks' buffers into its own in rank order (one rounding per add) and
 * copies the sum to every other rank, ordered with their streams by events and two host
 * barriers per call: not capturable (a graph's event wait would bind to whatever record
 * came last at replay time, not to this step's). For tests of the multi-rank path on one
 * GPU. Returns 0, or -EINVAL / -ENOMEM / -EIO with a message in err. */
int comm_cuda_local_create(struct comm **ranks, int n, int device, void *const *streams,
                           char *err);

#endif
