/* comm_cuda_local.c — a communicator for N ranks that share one GPU (engine/comm.h), each
 * on its own thread and stream: what lets one GPU run the whole multi-rank cuda path
 * (shards, per-rank backends, threads, KV shards) except NCCL itself. Used only when the
 * runner is told to put several ranks on one device (runner_options.tp_devices).
 *
 * One all-reduce: each rank records `ready[rank]` on its stream after its buffer is
 * written and publishes the pointer; barrier 1; rank 0's stream waits for every ready
 * event, adds rank 1's buffer to its own, then rank 2's, ... (rank order, one bf16 or f32
 * rounding per add: cuBLAS, f32 arithmetic), copies the sum into every other rank's
 * buffer and records `done`; barrier 2; every other rank's stream waits for `done`. So
 * every rank holds the same bits, and no stream reads a buffer another still writes: rank
 * r's stream enqueues nothing between ready[r] and its wait for done, and the next call's
 * ready[r] comes after that wait. The barriers are host-side and abortable, as comm_cpu's.
 *
 * Not capturable: inside a graph, a wait for another stream's event is an external-event
 * node that binds at replay time to whatever record came last, not to this step's; the
 * runner keeps these ranks eager. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "engine/comm.h"
#include "engine/comm_group.h"
#include "kernels/cuda_check.h"

struct local_group {
    struct comm_group sync;
    int device;
    cublasHandle_t blas;       /* on streams[0]: rank 0 does the sums */
    char *one;                 /* device: bf16 1.0 at 0, f32 1.0 at 4 */
    void **bufs;               /* [size] this call's buffers */
    cudaStream_t *streams;     /* [size] borrowed: the ranks' backend streams */
    cudaEvent_t *ready;        /* [size] */
    cudaEvent_t done;
    int rc;                    /* rank 0's result of this call, for every rank */
};

struct comm_local {
    struct comm base;
    struct local_group *g;
};

static void local_abort(struct comm *c)
{
    struct local_group *g = ((struct comm_local *)c)->g;

    comm_group_abort(&g->sync);
}

/* Rank 0's part, on its stream: the sum into its buffer, then copied to every rank's. */
static int sum_and_scatter(struct local_group *g, size_t count, enum dtype dt)
{
    cudaStream_t s = g->streams[0];
    cudaDataType_t t = dt == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    size_t bytes = count * dtype_size(dt);
    float one = 1.0f;

    for (int r = 1; r < g->sync.size; r++)
        if (!CUDA_OK(cudaStreamWaitEvent(s, g->ready[r], 0)))
            return -EIO;
    /* sum += buf[r] as a product of k = 1 (buf[r] times a device 1.0, beta 1): one f32
     * add and one rounding to t per rank, on every cuBLAS that has bf16 GEMMs */
    for (int r = 1; r < g->sync.size; r++)
        if (!CUDA_OK(cublasGemmEx(g->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)count, 1, 1, &one,
                                  g->bufs[r], t, (int)count, dt == DT_BF16 ? g->one : g->one + 4,
                                  t, 1, &one, g->bufs[0], t, (int)count, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT)))
            return -EIO;
    for (int r = 1; r < g->sync.size; r++)
        if (!CUDA_OK(cudaMemcpyAsync(g->bufs[r], g->bufs[0], bytes, cudaMemcpyDeviceToDevice, s)))
            return -EIO;
    return CUDA_OK(cudaEventRecord(g->done, s)) ? 0 : -EIO;
}

static int local_all_reduce(struct comm *c, void *buf, size_t count, enum dtype dt)
{
    struct local_group *g = ((struct comm_local *)c)->g;
    int rc;

    /* checked on every rank alike, so that no rank waits for one that refused */
    if ((dt != DT_BF16 && dt != DT_F32) || count > (size_t)INT32_MAX)
        return -EINVAL;
    if (g->sync.size == 1 || count == 0)
        return 0;
    if (!CUDA_OK(cudaSetDevice(g->device)) ||
        !CUDA_OK(cudaEventRecord(g->ready[c->rank], g->streams[c->rank]))) {
        local_abort(c);
        return -EIO;
    }
    g->bufs[c->rank] = buf;
    if ((rc = comm_group_barrier(&g->sync)))
        return rc;
    if (c->rank == 0)
        g->rc = sum_and_scatter(g, count, dt);
    if ((rc = comm_group_barrier(&g->sync)))
        return rc;
    if ((rc = g->rc))
        return rc;             /* every rank reports rank 0's device error */
    if (c->rank > 0 && !CUDA_OK(cudaStreamWaitEvent(g->streams[c->rank], g->done, 0))) {
        local_abort(c);
        return -EIO;
    }
    return 0;
}

/* Polls the rank's stream so that a peer's failure (abort) ends the wait. */
static int local_wait(struct comm *c)
{
    struct local_group *g = ((struct comm_local *)c)->g;
    struct timespec nap = { 0, 20000 };

    if (!CUDA_OK(cudaSetDevice(g->device)))
        return -EIO;
    for (long i = 0;; i++) {
        cudaError_t q = cudaStreamQuery(g->streams[c->rank]);

        if (q == cudaSuccess)
            return 0;
        if (q != cudaErrorNotReady) {
            CUDA_OK(q);
            local_abort(c);
            return -EIO;
        }
        if (comm_group_aborted(&g->sync))
            return -ECANCELED;
        if (i < 2000)
            sched_yield();
        else
            nanosleep(&nap, NULL);
    }
}

static void group_free(struct local_group *g)
{
    if (g->ready)
        for (int r = 0; r < g->sync.size; r++)
            if (g->ready[r])
                cudaEventDestroy(g->ready[r]);
    if (g->done)
        cudaEventDestroy(g->done);
    if (g->blas)
        cublasDestroy(g->blas);
    cudaFree(g->one);
    comm_group_fini(&g->sync);
    free(g->ready);
    free(g->streams);
    free(g->bufs);
    free(g);
}

static void local_destroy(struct comm *c)
{
    struct local_group *g = ((struct comm_local *)c)->g;
    if (comm_group_unref(&g->sync)) {
        (void)cudaSetDevice(g->device);
        group_free(g);
    }
    free(c);
}

static const struct comm_ops local_ops = { .name = "cuda_local", .capturable = false,
                                           .all_reduce = local_all_reduce, .wait = local_wait,
                                           .abort = local_abort, .destroy = local_destroy };

int comm_cuda_local_create(struct comm **ranks, int n, int device, void *const *streams,
                           char *err)
{
    static const unsigned char ones[8] = { 0x80, 0x3f, 0, 0, 0, 0, 0x80, 0x3f };  /* LE */
    struct local_group *g;
    int prev = 0;

    if (n < 1) {
        errf(err, "comm_cuda_local: a group of %d ranks", n);
        return -EINVAL;
    }
    memset(ranks, 0, n * sizeof *ranks);
    if (!(g = calloc(1, sizeof *g)))
        goto oom;
    comm_group_init(&g->sync, n);
    g->device = device;
    if (!(g->bufs = calloc(n, sizeof *g->bufs)) || !(g->streams = calloc(n, sizeof *g->streams)) ||
        !(g->ready = calloc(n, sizeof *g->ready)))
        goto oom;
    for (int r = 0; r < n; r++)
        g->streams[r] = (cudaStream_t)streams[r];
    (void)cudaGetDevice(&prev);
    if (!CUDA_OK(cudaSetDevice(device)) ||
        !CUDA_OK(cudaEventCreateWithFlags(&g->done, cudaEventDisableTiming)) ||
        !CUDA_OK(cublasCreate(&g->blas)) || !CUDA_OK(cublasSetStream(g->blas, g->streams[0])) ||
        !CUDA_OK(cudaMalloc((void **)&g->one, 8)) ||
        !CUDA_OK(cudaMemcpy(g->one, ones, sizeof ones, cudaMemcpyHostToDevice))) {
        (void)cudaSetDevice(prev);
        group_free(g);
        errf(err, "comm_cuda_local: cannot create the events or the cuBLAS handle on device %d",
             device);
        return -EIO;
    }
    for (int r = 0; r < n; r++)
        if (!CUDA_OK(cudaEventCreateWithFlags(&g->ready[r], cudaEventDisableTiming))) {
            (void)cudaSetDevice(prev);
            group_free(g);
            errf(err, "comm_cuda_local: cannot create the events on device %d", device);
            return -EIO;
        }
    (void)cudaSetDevice(prev);
    for (int r = 0; r < n; r++) {
        struct comm_local *c = calloc(1, sizeof *c);

        if (!c) {
            for (int i = 0; i < r; i++)
                free(ranks[i]);
            memset(ranks, 0, n * sizeof *ranks);
            group_free(g);
            goto oom_msg;
        }
        c->base = (struct comm){ &local_ops, r, n };
        c->g = g;
        comm_group_ref(&g->sync);
        ranks[r] = &c->base;
    }
    return 0;
oom:
    if (g) {
        comm_group_fini(&g->sync);
        free(g->bufs);
        free(g->streams);
        free(g->ready);
        free(g);
    }
oom_msg:
    errf(err, "comm_cuda_local: out of memory");
    return -ENOMEM;
}
