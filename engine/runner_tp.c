/* runner_tp.c — N ranks running one step together (runner_tp.h). A worker thread per rank
 * but rank 0, woken by a job counter; a rank whose forward fails aborts the communicator
 * so that no peer waits for it forever, and the step returns that rank's error. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/log.h"
#include "engine/runner_tp.h"
#include "engine/tp_shard.h"
#include "engine/weights.h"

struct tp_rank {
    struct runner_tp *t;
    int rank;
    struct tp_shard shard;
    struct backend *be;          /* rank 0: borrowed; the others: owned */
    struct runner *r;
    pthread_t thread;
    bool started;
    int rc;                      /* of the last job */
};

struct runner_tp {
    int n;
    struct tp_rank *ranks;       /* [n] */
    struct comm **comm;          /* [n] */
    pthread_mutex_t lock;
    pthread_cond_t go, done;
    unsigned long job;           /* bumped for every step the workers run */
    int pending;                 /* workers still running the current job */
    bool quit;
};

static int rank_forward(struct tp_rank *k)
{
    int rc = runner__forward(k->r);

    if (rc)
        comm_abort(k->t->comm[k->rank]);
    return rc;
}

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
        k->rc = rank_forward(k);
        pthread_mutex_lock(&t->lock);
        if (--t->pending == 0)
            pthread_cond_signal(&t->done);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

/* Stages b on every rank (on this thread: staging pads b in place), then runs forward on
 * all of them at once. Returns the first real error (a peer's -ECANCELED is only its echo). */
static int run_step(struct runner_tp *t, struct step_batch *b, const struct sample_row *rows)
{
    int rc = 0;

    for (int i = 0; i < t->n; i++)
        if ((rc = runner__stage(t->ranks[i].r, b, rows)))
            return rc;
    pthread_mutex_lock(&t->lock);
    t->pending = t->n - 1;
    t->job++;
    pthread_cond_broadcast(&t->go);
    pthread_mutex_unlock(&t->lock);
    t->ranks[0].rc = rank_forward(&t->ranks[0]);
    pthread_mutex_lock(&t->lock);
    while (t->pending > 0)
        pthread_cond_wait(&t->done, &t->lock);
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < t->n; i++)
        if (t->ranks[i].rc && (!rc || rc == -ECANCELED))
            rc = t->ranks[i].rc;
    return rc == -ECANCELED ? -EIO : rc;
}

int runner_tp_execute(struct runner_tp *t, struct step_batch *b, const struct sample_row *rows,
                      struct sample_result *results)
{
    int rc = run_step(t, b, rows);

    return rc ? rc : runner__sample_fetch(t->ranks[0].r, results, b->num_sample);
}

int runner_tp_logits(struct runner_tp *t, struct step_batch *b, float *logits)
{
    int rc = run_step(t, b, NULL);

    return rc ? rc : runner__download_logits(t->ranks[0].r, logits, b->num_sample_padded);
}

struct runner *runner_tp_rank(struct runner_tp *t, int rank)
{
    return t->ranks[rank].r;
}

/* The communicator of the ranks' backend kind: shared memory for cpu, NCCL for cuda (on
 * each rank's stream). */
static int make_comm(struct runner_tp *t, const struct runner_options *o, int hidden, char *err)
{
    size_t rows = (size_t)MAX(o->max_num_batched_tokens, o->max_num_seqs);

    if (!strcmp(t->ranks[0].be->ops->name, "cpu"))
        return comm_cpu_create(t->comm, t->n, rows * hidden, err);
    /* NCCL (engine/cuda/comm_nccl.c) runs one rank so far; driving several GPUs needs a
     * multi-GPU machine to test it on */
    errf(err, "--tensor-parallel-size %d: the %s backend runs one rank only in this build; "
         "use --backend cpu or --tensor-parallel-size 1", t->n, t->ranks[0].be->ops->name);
    return -ENOTSUP;
}

static int create_rank(struct runner_tp *t, int i, struct backend *be0, const struct model *m,
                       const struct runner_options *o, char *err)
{
    struct tp_rank *k = &t->ranks[i];
    struct runner_options ro = *o;
    struct backend_options bo = { .num_threads = o->backend_threads, .device = i };
    const struct model_config *c = &k->shard.m.cfg;
    int rc;

    if ((rc = tp_shard_create(&k->shard, m, i, t->n, err)))
        return rc;
    if (i == 0) {
        k->be = be0;
    } else if ((rc = runner_backend_options(&m->cfg, o, &bo)) ||
               (rc = backend_create(&k->be, be0->ops->name, &bo, err))) {
        return rc;
    }
    ro.tensor_parallel_size = 1;
    ro.comm = t->comm[i];
    ro.enforce_eager = true;     /* graphs of several ranks are not captured yet */
    if ((rc = runner_create(&k->r, k->be, &k->shard.m, &ro, err)))
        return rc;
    LOG(LL_INFO, "runner", "tensor parallel rank %d of %d on %s: %d heads, %d KV heads, "
        "intermediate %d; weights %.1f MiB, KV cache %.1f MiB", i, t->n, k->be->ops->name,
        c->num_heads, c->num_kv_heads, c->intermediate_size,
        weights_bytes(c, dtype_size(k->be->ops->act_dtype)) / 1048576.0,
        runner_kv_block_bytes(c, k->be, o->kv_cache_dtype, o->block_size) *
        (double)o->num_blocks / 1048576.0);
    return 0;
}

int runner_tp_create(struct runner_tp **out, struct backend *be, const struct model *m,
                     const struct runner_options *o, char *err)
{
    struct runner_tp *t;
    int n = o->tensor_parallel_size, rc;

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
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->go, NULL);
    pthread_cond_init(&t->done, NULL);
    for (int i = 0; i < n; i++) {
        t->ranks[i].t = t;
        t->ranks[i].rank = i;
    }
    t->ranks[0].be = be;
    if ((rc = make_comm(t, o, m->cfg.hidden_size, err)))
        goto fail;
    for (int i = 0; i < n; i++)
        if ((rc = create_rank(t, i, be, m, o, err)))
            goto fail;
    for (int i = 1; i < n; i++) {
        if (pthread_create(&t->ranks[i].thread, NULL, worker_main, &t->ranks[i])) {
            errf(err, "runner: cannot start the worker thread of tensor parallel rank %d", i);
            rc = -EAGAIN;
            goto fail;
        }
        t->ranks[i].started = true;
    }
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
    for (int i = 0; i < t->n; i++) {
        struct tp_rank *k = &t->ranks[i];

        if (k->started)
            pthread_join(k->thread, NULL);
        runner_destroy(k->r);
        if (i > 0 && k->be)
            backend_destroy(k->be);
        tp_shard_free(&k->shard);
        comm_destroy(t->comm[i]);
    }
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->go);
    pthread_cond_destroy(&t->done);
    free(t->comm);
    free(t->ranks);
    free(t);
}
