/* comm_nccl.c — the NCCL communicator (engine/comm.h): one ncclComm_t per rank made by
 * ncclCommInitAll for the devices of this process, collectives enqueued on the rank's
 * backend stream, so that they order with the layer loop's ops and a CUDA graph captures
 * them. NCCL reduces bf16 (the cuda backend's activations) natively. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include <cuda_runtime.h>
#include <nccl.h>

#include "engine/comm.h"

struct comm_nccl {
    struct comm base;
    ncclComm_t nc;
    cudaStream_t stream;
    bool aborted;              /* ncclCommAbort freed nc: never touch it again */
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

static int nccl_all_reduce(struct comm *c, void *buf, size_t count, enum dtype dt)
{
    struct comm_nccl *n = (struct comm_nccl *)c;
    ncclDataType_t t;

    if (n->aborted)
        return -ECANCELED;
    if (nccl_type(dt, &t))
        return -EINVAL;
    return ncclAllReduce(buf, buf, count, t, ncclSum, n->nc, n->stream) == ncclSuccess ? 0 : -EIO;
}

static void nccl_abort(struct comm *c)
{
    struct comm_nccl *n = (struct comm_nccl *)c;

    if (!n->aborted)
        (void)ncclCommAbort(n->nc);
    n->aborted = true;
}

static void nccl_destroy(struct comm *c)
{
    struct comm_nccl *n = (struct comm_nccl *)c;

    if (!n->aborted)
        (void)ncclCommDestroy(n->nc);
    free(n);
}

static const struct comm_ops nccl_ops = { "nccl", nccl_all_reduce, nccl_abort, nccl_destroy };

int comm_nccl_create(struct comm **ranks, int n, const int *devices, void *const *streams,
                     char *err)
{
    ncclComm_t *nc;
    ncclResult_t res;

    if (n < 1) {
        errf(err, "comm_nccl: a group of %d ranks", n);
        return -EINVAL;
    }
    for (int r = 0; r < n; r++)
        ranks[r] = NULL;
    if (!(nc = calloc(n, sizeof *nc))) {
        errf(err, "comm_nccl: out of memory");
        return -ENOMEM;
    }
    if ((res = ncclCommInitAll(nc, n, devices)) != ncclSuccess) {
        errf(err, "comm_nccl: ncclCommInitAll over %d devices failed: %s", n,
             ncclGetErrorString(res));
        free(nc);
        return -EIO;
    }
    for (int r = 0; r < n; r++) {
        struct comm_nccl *c = calloc(1, sizeof *c);

        if (!c) {
            for (int i = 0; i < r; i++)
                nccl_destroy(ranks[i]);
            for (int i = r; i < n; i++)
                (void)ncclCommDestroy(nc[i]);
            free(nc);
            errf(err, "comm_nccl: out of memory");
            return -ENOMEM;
        }
        c->base = (struct comm){ &nccl_ops, r, n };
        c->nc = nc[r];
        c->stream = (cudaStream_t)streams[r];
        ranks[r] = &c->base;
    }
    free(nc);
    return 0;
}
