/* runner_tp.c — N ranks running one step together (runner_tp.h). A worker thread per rank
 * but rank 0, woken by a job counter; every job (creating the rank's runner, capturing its
 * graphs, running a step) runs on all ranks at once, rank 0 on the calling thread. A rank
 * whose job fails aborts the communicator so that no peer waits for it forever, and the
 * job returns that rank's error.
 *
 * Devices: on cuda, rank i runs on device i (or runner_options.tp_devices[i]) over NCCL;
 * ranks that all share one device run over comm_cuda_local instead (tests on one GPU).
 * Every entry point of the cuda backend binds its own device (cuda__enter), so the engine
 * thread may stage every rank and run rank 0. NCCL ranks capture their graphs together,
 * each on its own thread, in the same order (a graph's all-reduces need every peer
 * capturing at once); a step ends with every rank waiting for its own stream through
 * comm_wait, which polls, so that a rank whose GPU failed stops its peers instead of
 * leaving them blocked on a collective that never completes. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/log.h"
#include "engine/runner_tp.h"
#include "engine/tp_shard.h"
#ifdef OSPREY_CUDA
#include "engine/cuda/backend_cuda.h"   /* cuda_device_count, backend_cuda_stream, _graphs_free */
#endif

struct tp_rank {
    struct runner_tp *t;
    int rank;
    int device;                  /* cuda: the rank's device; cpu: 0 */
    struct tp_shard shard;
    struct backend *be;          /* rank 0: borrowed; the others: owned */
    struct runner *r;
    pthread_t thread;
    bool started;
    int rc;                      /* of the last job */
    char err[ERR_LEN];           /* of the last job */
};

struct runner_tp {
    int n;
    struct tp_rank *ranks;       /* [n] */
    struct comm **comm;          /* [n] */
    const struct model *m;       /* borrowed */
    struct runner_options ro;    /* every rank's options but comm */
    bool cuda, local;            /* cuda ranks; sharing one device (comm_cuda_local) */
    bool graphs;                 /* the ranks replay graphs (captured by the group) */
    pthread_mutex_t lock;
    pthread_cond_t go, done;
    unsigned long job;           /* bumped for every job the workers run */
    int pending;                 /* workers still running the current job */
    bool quit;
    int (*fn)(struct tp_rank *k);   /* the current job */
    int size;                    /* the step's graph size, 0 = eager */
    bool sample;                 /* rank 0 samples in the step */
    unsigned long steps;         /* run so far */
    bool failed;                 /* a step failed: the communicator is aborted for good */
    int fault_rank;              /* test-only (OSPREY_FAULT_TP_RANK, _STEP): this rank's job of */
    unsigned long fault_step;    /* step fault_step fails as a device would; -1 / 0 = never */
};

static void *worker_main(void *arg)
{
    struct tp_rank *k = arg;
    struct runner_tp *t = k->t;
    unsigned long seen = 0;

    pthread_mutex_lock(&t->lock);
    for (;;) {
        while (t->job == seen && !t->quit)
            pthread_cond_wait(&t->go, &t->lock);
        if (t->quit)
            break;
        seen = t->job;
        pthread_mutex_unlock(&t->lock);
        k->rc = t->fn(k);
        pthread_mutex_lock(&t->lock);
        if (--t->pending == 0)
            pthread_cond_signal(&t->done);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

/* Runs fn on every rank at once (rank 0 here) and waits for all. Returns 0 or the first
 * real error (a peer's -ECANCELED is only the echo of another rank's failure); *failed is
 * that rank. */
static int run_job(struct runner_tp *t, int (*fn)(struct tp_rank *k), int *failed)
{
    int rc = 0;

    pthread_mutex_lock(&t->lock);
    t->fn = fn;
    t->pending = t->n - 1;
    t->job++;
    pthread_cond_broadcast(&t->go);
    pthread_mutex_unlock(&t->lock);
    t->ranks[0].rc = fn(&t->ranks[0]);
    pthread_mutex_lock(&t->lock);
    while (t->pending > 0)
        pthread_cond_wait(&t->done, &t->lock);
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < t->n; i++)
        if (t->ranks[i].rc && (!rc || rc == -ECANCELED)) {
            rc = t->ranks[i].rc;
            if (failed)
                *failed = i;
        }
    return rc == -ECANCELED ? -EIO : rc;
}

/* ---- jobs ---- */

static int job_step(struct tp_rank *k)
{
    struct comm *c = k->t->comm[k->rank];
    /* the test fault point: the rank fails before its first collective, so that its peers
     * are left waiting in theirs (on the device, for NCCL) and must be stopped */
    bool fault = k->rank == k->t->fault_rank && k->t->steps == k->t->fault_step;
    int rc = fault ? -EIO : runner__run(k->r, k->t->size, k->rank == 0 && k->t->sample);

    if (!rc)
        rc = comm_wait(c);
    if (rc && rc != -ECANCELED)
        comm_abort(c);
    return rc;
}

static int job_create(struct tp_rank *k)
{
    struct runner_options ro = k->t->ro;

    k->err[0] = '\0';
    ro.comm = k->t->comm[k->rank];
    return runner_create(&k->r, k->be, &k->shard.m, &ro, k->err);
}

static int job_capture(struct tp_rank *k)
{
    int rc;

    k->err[0] = '\0';
    if ((rc = runner__capture_graphs(k->r, k->err)))
        comm_abort(k->t->comm[k->rank]);
    return rc;
}

/* ---- a step ---- */

/* Stages b on every rank (on this thread: staging pads b in place; rank 0 alone gets the
 * sampling rows), then runs the step on all of them at once. */
static int run_step(struct runner_tp *t, struct step_batch *b, const struct sample_row *rows,
                    bool sample)
{
    int size = sample && t->graphs ? runner__graph_size(t->ranks[0].r, b) : 0, rc;

    /* after a failed step the group is aborted: NCCL freed what its graphs' collectives
     * use, so nothing may run (or replay) on it again */
    if (t->failed)
        return -EIO;
    for (int i = 0; i < t->n; i++)
        if ((rc = runner__stage(t->ranks[i].r, b, size, i == 0 ? rows : NULL)))
            return rc;
    t->size = size;
    t->sample = sample;
    t->steps++;
    if ((rc = run_job(t, job_step, NULL)))
        t->failed = true;
    return rc;
}

int runner_tp_execute(struct runner_tp *t, struct step_batch *b, const struct sample_row *rows,
                      struct sample_result *results)
{
    int rc = run_step(t, b, rows, true);

    return rc ? rc : runner__fetch(t->ranks[0].r, results, b->num_sample);
}

int runner_tp_logits(struct runner_tp *t, struct step_batch *b, float *logits)
{
    int rc = run_step(t, b, NULL, false);

    return rc ? rc : runner__download_logits(t->ranks[0].r, logits, b->num_sample_padded);
}

struct runner *runner_tp_rank(struct runner_tp *t, int rank)
{
    return t->ranks[rank].r;
}

int runner_tp_size(const struct runner_tp *t)
{
    return t->n;
}

void runner_tp_rank_info(const struct runner_tp *t, int rank, struct runner_rank_info *out)
{
    const struct tp_rank *k = &t->ranks[rank];

    runner_rank_info(k->r, 0, out);
    out->device = k->device;
}

/* ---- creation ---- */

/* Test-only: TEST_OSPREY_TP_DEVICES="0,0" puts the daemon's ranks where a test wants them
 * (every rank on the one GPU of a test machine). Not an OSPREY_ name: the daemon reads
 * those as options and warns of unknown ones. Returns false when unset or malformed. */
static bool test_devices(int n, int *devices)
{
    const char *s = getenv("TEST_OSPREY_TP_DEVICES");
    char *end;

    for (int i = 0; s && i < n; i++) {
        devices[i] = (int)strtol(s, &end, 10);
        if (end == s || (*end != ',' && *end != '\0') || (i < n - 1 && *end != ','))
            return false;
        s = end + 1;
    }
    return s != NULL;
}

/* Each rank's device, checked against the host: all different (NCCL) or all one (the
 * local communicator); never more than the devices there are. */
static int pick_devices(struct runner_tp *t, const struct runner_options *o, char *err)
{
    int count = 0, distinct = 0, *test = calloc(t->n, sizeof *test);
    const int *want = o->tp_devices;
    bool placed;

    if (!test) {
        errf(err, "runner: out of memory");
        return -ENOMEM;
    }
    if (t->cuda && !want && test_devices(t->n, test)) {
        LOG(LL_WARN, "runner", "TEST_OSPREY_TP_DEVICES (test-only) places the ranks");
        want = test;
    }
    placed = want != NULL;
    for (int i = 0; i < t->n; i++)
        t->ranks[i].device = t->cuda ? (want ? want[i] : i) : 0;
    free(test);
    if (!t->cuda)
        return 0;
#ifdef OSPREY_CUDA
    count = cuda_device_count();
#endif
    if (!placed && count < t->n) {
        errf(err, "--tensor-parallel-size %d needs %d CUDA devices; this host has %d "
             "(CUDA_VISIBLE_DEVICES may hide some)", t->n, t->n, count);
        return -ENODEV;
    }
    for (int i = 0; i < t->n; i++) {
        bool seen = false;

        if (t->ranks[i].device < 0 || t->ranks[i].device >= count) {
            errf(err, "tensor parallel rank %d: CUDA device %d does not exist (%d found)", i,
                 t->ranks[i].device, count);
            return -ENODEV;
        }
        for (int j = 0; j < i; j++)
            seen |= t->ranks[j].device == t->ranks[i].device;
        distinct += !seen;
    }
    t->local = distinct == 1;
    if (distinct != 1 && distinct != t->n) {
        errf(err, "tensor parallelism: %d ranks on %d devices; the ranks must each have their "
             "own device (NCCL) or all share one", t->n, distinct);
        return -EINVAL;
    }
    return 0;
}

/* The communicator of the ranks' backend kind: shared memory for cpu; for cuda NCCL, or
 * the local one when the ranks share a device (each on its rank's backend stream). */
static int make_comm(struct runner_tp *t, const struct runner_options *o, int hidden, char *err)
{
    size_t rows = (size_t)MAX(o->max_num_batched_tokens, o->max_num_seqs);

    if (!t->cuda)
        return comm_cpu_create(t->comm, t->n, rows * hidden, err);
#ifdef OSPREY_CUDA
    {
        void **streams = calloc(t->n, sizeof *streams);
        int *devices = calloc(t->n, sizeof *devices), rc;

        if (!streams || !devices) {
            free(streams);
            free(devices);
            errf(err, "runner: out of memory");
            return -ENOMEM;
        }
        for (int i = 0; i < t->n; i++) {
            streams[i] = backend_cuda_stream(t->ranks[i].be);
            devices[i] = t->ranks[i].device;
        }
        rc = t->local ? comm_cuda_local_create(t->comm, t->n, devices[0], streams, err)
                      : comm_nccl_create(t->comm, t->n, devices, streams, err);
        free(streams);
        free(devices);
        return rc;
    }
#else
    errf(err, "--tensor-parallel-size %d: the %s backend has no communicator in this build",
         t->n, t->ranks[0].be->ops->name);
    return -ENOTSUP;
#endif
}

/* The rank's shard and (but for rank 0, whose backend is the caller's) its backend. */
static int shard_rank(struct runner_tp *t, int i, struct backend *be0, const struct model *m,
                      const struct runner_options *o, char *err)
{
    struct tp_rank *k = &t->ranks[i];
    struct backend_options bo = { .num_threads = o->backend_threads, .device = k->device };
    int rc;

    if ((rc = tp_shard_create(&k->shard, m, i, t->n, err)))
        return rc;
    if (i == 0) {
        k->be = be0;
        return 0;
    }
    if ((rc = runner_backend_options(&m->cfg, o, &bo)) ||
        (rc = backend_create(&k->be, be0->ops->name, &bo, err)))
        return rc;
    return 0;
}

static int capture(struct runner_tp *t, char *err)
{
    double t0 = now_s();
    int rc, failed = 0;

    if ((rc = run_job(t, job_capture, &failed))) {
        errf(err, "tensor parallel rank %d: %s", failed,
             t->ranks[failed].err[0] ? t->ranks[failed].err : strerror(-rc));
        return rc;
    }
    LOG(LL_INFO, "runner", "tensor parallel: %d ranks captured %d graphs each, together, in "
        "%.2f s", t->n, runner__num_graphs(t->ranks[0].r), now_s() - t0);
    return 0;
}

static void log_rank(const struct runner_tp *t, int i)
{
    const struct tp_rank *k = &t->ranks[i];
    const struct model_config *c = &k->shard.m.cfg;
    struct runner_rank_info info;
    char where[64];

    runner_tp_rank_info(t, i, &info);
    if (t->cuda)
        snprintf(where, sizeof where, "cuda device %d (%s)", k->device,
                 t->comm[i]->ops->name);
    else
        snprintf(where, sizeof where, "%s", k->be->ops->name);
    LOG(LL_INFO, "runner", "tensor parallel rank %d of %d on %s: %d heads, %d KV heads, "
        "intermediate %d%s; weights %.1f MiB, KV cache %.1f MiB, graphs %.1f MiB (%d)", i, t->n,
        where, c->num_heads, c->num_kv_heads, c->intermediate_size,
        c->num_experts ? ", experts' intermediate split too" : "",
        info.weights_bytes / 1048576.0, info.kv_cache_bytes / 1048576.0,
        info.graph_bytes / 1048576.0, runner__num_graphs(k->r));
}

int runner_tp_create(struct runner_tp **out, struct backend *be, const struct model *m,
                     const struct runner_options *o, char *err)
{
    struct runner_tp *t;
    int n = o->tensor_parallel_size, rc, failed = 0;

    *out = NULL;
    if ((rc = tp_shard_check(&m->cfg, n, err)))
        return rc;
    if (!(t = calloc(1, sizeof *t)) || !(t->ranks = calloc(n, sizeof *t->ranks)) ||
        !(t->comm = calloc(n, sizeof *t->comm))) {
        if (t)
            free(t->ranks);
        free(t);
        errf(err, "runner: out of memory");
        return -ENOMEM;
    }
    t->n = n;
    t->m = m;
    t->cuda = !strcmp(be->ops->name, "cuda");
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->go, NULL);
    pthread_cond_init(&t->done, NULL);
    for (int i = 0; i < n; i++) {
        t->ranks[i].t = t;
        t->ranks[i].rank = i;
    }
    t->ranks[0].be = be;
    t->fault_rank = getenv("OSPREY_FAULT_TP_RANK") ? atoi(getenv("OSPREY_FAULT_TP_RANK")) : -1;
    t->fault_step = getenv("OSPREY_FAULT_TP_STEP") ? strtoul(getenv("OSPREY_FAULT_TP_STEP"), NULL, 10) : 0;
    if (t->fault_rank >= 0 && t->fault_step)
        LOG(LL_WARN, "runner", "test fault point armed: tensor parallel rank %d fails step %lu",
            t->fault_rank, t->fault_step);
    if ((rc = pick_devices(t, o, err)))
        goto fail;
    for (int i = 0; i < n; i++)
        if ((rc = shard_rank(t, i, be, m, o, err)))
            goto fail;
    if ((rc = make_comm(t, o, m->cfg.hidden_size, err)))
        goto fail;
    for (int i = 1; i < n; i++) {
        if (pthread_create(&t->ranks[i].thread, NULL, worker_main, &t->ranks[i])) {
            errf(err, "runner: cannot start the worker thread of tensor parallel rank %d", i);
            rc = -EAGAIN;
            goto fail;
        }
        t->ranks[i].started = true;
    }
    /* the ranks' runners, built at once (each uploads its own shard); graphs only where the
     * communicator can sit inside one */
    t->ro = *o;
    t->ro.tensor_parallel_size = 1;
    t->ro.tp_devices = NULL;
    t->ro.enforce_eager = o->enforce_eager || !t->comm[0]->ops->capturable ||
                          !be->ops->graph_capture;
    if (t->local && !o->enforce_eager)
        LOG(LL_INFO, "runner", "tensor parallel: %d ranks share CUDA device %d and run eagerly "
            "(the local all-reduce cannot sit inside a graph)", n, t->ranks[0].device);
    if ((rc = run_job(t, job_create, &failed))) {
        errf(err, "tensor parallel rank %d: %s", failed,
             t->ranks[failed].err[0] ? t->ranks[failed].err : strerror(-rc));
        goto fail;
    }
    t->graphs = runner__num_graphs(t->ranks[0].r) > 0;
    if (t->graphs && (rc = capture(t, err)))
        goto fail;
    for (int i = 0; i < n; i++)
        log_rank(t, i);
    *out = t;
    return 0;
fail:
    runner_tp_destroy(t);
    return rc;
}

void runner_tp_destroy(struct runner_tp *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->quit = true;
    pthread_cond_broadcast(&t->go);
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < t->n; i++)
        if (t->ranks[i].started)
            pthread_join(t->ranks[i].thread, NULL);
    /* graphs and runners (their device memory) first, then the communicators, then the
     * backends whose streams the communicators borrowed */
#ifdef OSPREY_CUDA
    for (int i = 0; i < t->n; i++)
        if (t->cuda && t->ranks[i].be)
            backend_cuda_graphs_free(t->ranks[i].be);
#endif
    for (int i = 0; i < t->n; i++)
        runner_destroy(t->ranks[i].r);
    for (int i = 0; i < t->n; i++)
        comm_destroy(t->comm[i]);
    for (int i = 0; i < t->n; i++) {
        if (i > 0 && t->ranks[i].be)
            backend_destroy(t->ranks[i].be);
        tp_shard_free(&t->ranks[i].shard);
    }
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->go);
    pthread_cond_destroy(&t->done);
    free(t->comm);
    free(t->ranks);
    free(t);
}
