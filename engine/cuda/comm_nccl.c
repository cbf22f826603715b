/* comm_nccl.c — the NCCL communicator (engine/comm.h): one ncclComm_t per rank made by
 * ncclCommInitAll for the devices of this process, collectives enqueued on the rank's
 * backend stream, so that they order with the layer loop's ops and a CUDA graph captures
 * them. NCCL reduces bf16 (the cuda backend's activations) natively.
 *
 * Never a hang: an all-reduce only enqueues, so a rank whose peer failed would wait on the
 * device for data that never comes. Each rank therefore ends a step in comm_wait, which
 * polls its stream and the group's shared abort flag instead of blocking; the first rank
 * to fail raises the flag and every rank, seeing it, calls ncclCommAbort on its own
 * communicator (from its own thread), which stops its NCCL kernels in flight. */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include <cuda_runtime.h>
#include <nccl.h>

#include "engine/base/log.h"
#include "engine/comm.h"

struct nccl_group {
    int aborted;               /* atomic: a rank failed; every rank aborts its comm */
    int refs;                  /* atomic: ranks not yet destroyed */
};

struct comm_nccl {
    struct comm base;
    ncclComm_t nc;
    cudaStream_t stream;
    int device;
    bool aborted;              /* ncclCommAbort freed nc: never touch it again */
    struct nccl_group *g;
};

static int nccl_type(enum dtype dt, ncclDataType_t *out)
{
    switch (dt) {
    case DT_F32: *out = ncclFloat32; return 0;
    case DT_BF16: *out = ncclBfloat16; return 0;
    case DT_F16: *out = ncclFloat16; return 0;
    default: return -EINVAL;
    }
}

/* The calling thread on the rank's device (it may come from another rank's work: the
 * engine thread stages every rank); a no-op when it already is, so that nothing but the
 * collective itself reaches a stream being captured. */
static bool bind(const struct comm_nccl *n)
{
    int cur = -1;

    return (cudaGetDevice(&cur) == cudaSuccess && cur == n->device) ||
           cudaSetDevice(n->device) == cudaSuccess;
}

static bool group_aborted(const struct nccl_group *g)
{
    return __atomic_load_n(&g->aborted, __ATOMIC_ACQUIRE) != 0;
}

/* This rank's half of an abort: its own communicator, on its own thread. */
static void abort_own(struct comm_nccl *n)
{
    if (n->aborted)
        return;
    (void)bind(n);
    (void)ncclCommAbort(n->nc);
    n->aborted = true;
}

static void nccl_abort(struct comm *c)
{
    struct comm_nccl *n = (struct comm_nccl *)c;

    __atomic_store_n(&n->g->aborted, 1, __ATOMIC_RELEASE);
    abort_own(n);
}

static int nccl_all_reduce(struct comm *c, void *buf, size_t count, enum dtype dt)
{
    struct comm_nccl *n = (struct comm_nccl *)c;
    ncclDataType_t t;
    ncclResult_t res;

    if (n->aborted || group_aborted(n->g)) {
        abort_own(n);
        return -ECANCELED;
    }
    if (nccl_type(dt, &t))
        return -EINVAL;
    if (!bind(n))
        return -EIO;
    if ((res = ncclAllReduce(buf, buf, count, t, ncclSum, n->nc, n->stream)) != ncclSuccess) {
        LOG(LL_ERR, "nccl", "rank %d: ncclAllReduce of %zu elements failed: %s", c->rank, count,
            ncclGetErrorString(res));
        return -EIO;
    }
    return 0;
}

/* Polls the stream: a spin of yields first (a decode step's tail is short), then short
 * sleeps. Returns as soon as the stream is done, the device failed, or the group aborted. */
static int nccl_wait(struct comm *c)
{
    struct comm_nccl *n = (struct comm_nccl *)c;
    struct timespec nap = { 0, 20000 };

    if (n->aborted)
        return -ECANCELED;
    if (!bind(n))
        return -EIO;
    for (long i = 0;; i++) {
        cudaError_t q = cudaStreamQuery(n->stream);
        ncclResult_t async = ncclSuccess;

        if (q != cudaSuccess && q != cudaErrorNotReady) {
            LOG(LL_ERR, "nccl", "rank %d (device %d): the step failed on the device: %s",
                c->rank, n->device, cudaGetErrorString(q));
            nccl_abort(c);
            return -EIO;
        }
        if (ncclCommGetAsyncError(n->nc, &async) != ncclSuccess ||
            (async != ncclSuccess && async != ncclInProgress)) {
            LOG(LL_ERR, "nccl", "rank %d (device %d): NCCL failed: %s", c->rank, n->device,
                ncclGetErrorString(async));
            nccl_abort(c);
            return -EIO;
        }
        if (q == cudaSuccess)
            return 0;
        if (group_aborted(n->g)) {
            abort_own(n);
            return -ECANCELED;
        }
        if (i < 2000)
            sched_yield();
        else
            nanosleep(&nap, NULL);
    }
}

static void nccl_destroy(struct comm *c)
{
    struct comm_nccl *n = (struct comm_nccl *)c;

    /* after a peer's failure a clean destroy could wait for that peer: abort instead */
    if (!n->aborted && group_aborted(n->g))
        abort_own(n);
    if (!n->aborted) {
        (void)bind(n);
        (void)ncclCommDestroy(n->nc);
    }
    if (__atomic_sub_fetch(&n->g->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(n->g);
    free(n);
}

static const struct comm_ops nccl_ops = { .name = "nccl", .capturable = true,
                                          .all_reduce = nccl_all_reduce, .wait = nccl_wait,
                                          .abort = nccl_abort, .destroy = nccl_destroy };

int comm_nccl_create(struct comm **ranks, int n, const int *devices, void *const *streams,
                     char *err)
{
    struct nccl_group *g;
    ncclComm_t *nc;
    ncclResult_t res;
    int prev = 0;

    if (n < 1) {
        errf(err, "comm_nccl: a group of %d ranks", n);
        return -EINVAL;
    }
    for (int r = 0; r < n; r++) {
        ranks[r] = NULL;
        for (int q = 0; q < r; q++)
            if (devices[q] == devices[r]) {
                errf(err, "comm_nccl: ranks %d and %d on the same device %d (NCCL needs one "
                     "device per rank)", q, r, devices[r]);
                return -EINVAL;
            }
    }
    nc = calloc(n, sizeof *nc);
    g = calloc(1, sizeof *g);
    if (!nc || !g) {
        free(nc);
        free(g);
        errf(err, "comm_nccl: out of memory");
        return -ENOMEM;
    }
    (void)cudaGetDevice(&prev);
    res = ncclCommInitAll(nc, n, devices);
    (void)cudaSetDevice(prev);   /* NCCL may leave another device current */
    if (res != ncclSuccess) {
        errf(err, "comm_nccl: ncclCommInitAll over %d devices failed: %s", n,
             ncclGetErrorString(res));
        free(nc);
        free(g);
        return -EIO;
    }
    g->refs = n;
    for (int r = 0; r < n; r++) {
        struct comm_nccl *c = calloc(1, sizeof *c);

        if (!c) {
            g->refs = r;       /* the ranks made so far; the last one destroyed frees g */
            for (int i = 0; i < r; i++)
                nccl_destroy(ranks[i]);
            for (int i = r; i < n; i++)
                (void)ncclCommDestroy(nc[i]);
            if (r == 0)
                free(g);
            free(nc);
            errf(err, "comm_nccl: out of memory");
            return -ENOMEM;
        }
        c->base = (struct comm){ &nccl_ops, r, n };
        c->nc = nc[r];
        c->stream = (cudaStream_t)streams[r];
        c->device = devices[r];
        c->g = g;
        ranks[r] = &c->base;
    }
    free(nc);
    return 0;
}
