/* test_tp.c — tensor parallelism on the CUDA backend (engine/runner_tp.c). On one GPU: TP = 2
 * with both ranks on device 0 (comm_cuda_local: shards, per-rank backends and worker
 * threads, KV heads split, all but NCCL) gives TP = 1's greedy tokens on every tiny preset
 * the CUDA backend runs, its logits within bf16 error of TP = 1's, each rank's KV cache half
 * of TP = 1's; a rank whose device op fails fails the step and the next one, and never hangs
 * its peer. Where the host has two GPUs: NCCL TP = 2 against TP = 1, and its graphs against
 * its eager steps, and the time of one layer's all-reduce inside a graph (printed); with one
 * GPU those cases print "skipped: needs 2 GPUs", which is no pass.
 * (NCCL with one rank, graphs and eager, is test_runner.c's.) */
#ifdef OSPREY_CUDA
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "engine/comm.h"
#include "engine/cuda/backend_cuda.h"   /* cuda_device_count */
#include "engine/model/gen_model.h"
#include "engine/model/model.h"
#include "engine/runner.h"
#include "engine/base/util.h"
#include "tests/gpu/gpu_test.h"

enum { NREQ = 3, MAXLEN = 80, BS = 16, STEPS = 10, NBLOCKS = NREQ * (MAXLEN / BS + 1) };

struct tp_req {
    int32_t tokens[MAXLEN];
    int len, computed;
};

/* Request r's block j: interleaved, so that no request's blocks are contiguous. */
static int32_t block_of(int r, int j)
{
    return j * NREQ + (NREQ - 1 - r);
}

/* The next step: each request's whole prompt first, then one token at a time. Every
 * KV-cache group takes the same block ids (each group has its own pool). */
static void build_step(struct step_batch *b, struct tp_req *reqs, int groups, int max_blocks)
{
    int t = 0;
    bool decode = true;

    b->num_reqs = b->num_sample = NREQ;
    b->num_kv_groups = groups;
    b->max_blocks_per_req = max_blocks;
    b->max_query_len = b->max_seq_len = 0;
    b->query_start_loc[0] = 0;
    for (int r = 0; r < NREQ; r++) {
        struct tp_req *q = &reqs[r];
        int n = q->len - q->computed;

        decode &= n == 1;
        for (int i = 0; i < n; i++, t++) {
            int pos = q->computed + i;

            b->input_ids[t] = q->tokens[pos];
            b->positions[t] = pos;
            for (int g = 0; g < groups; g++)
                b->slot_mapping[g][t] = (int64_t)block_of(r, pos / BS) * BS + pos % BS;
        }
        b->query_start_loc[r + 1] = t;
        b->seq_lens[r] = q->len;
        b->logits_indices[r] = t - 1;
        b->sample_req[r] = r;
        for (int g = 0; g < groups; g++)
            for (int j = 0; j < max_blocks; j++)
                b->block_table[g][r * max_blocks + j] = j * BS < q->len ? block_of(r, j)
                                                                        : KV_NO_BLOCK;
        b->max_query_len = MAX(b->max_query_len, n);
        b->max_seq_len = MAX(b->max_seq_len, q->len);
    }
    b->num_tokens = b->num_tokens_padded = t;
    b->num_reqs_padded = b->num_sample_padded = NREQ;
    b->decode_only = decode;
}

static int argmax(const float *x, int V)
{
    int best = 0;

    for (int i = 1; i < V; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* Whether token `got` is the reference row's argmax, or within a tie that bf16 cannot
 * resolve: the gap to the best logit at most twice the two rows' measured difference, and
 * never less than one bf16 step of the best (test_runner.c's rule). */
static bool same_or_near_tie(const float *ref, const float *other, int V, int got, bool *tie)
{
    int best = argmax(ref, V);
    float d = 0.0f;

    *tie = false;
    if (got == best)
        return true;
    if (got < 0 || got >= V)
        return false;
    for (int i = 0; i < V; i++)
        d = fmaxf(d, fabsf(ref[i] - other[i]));
    *tie = ref[best] - ref[got] <= fmaxf(2.0f * d, ldexpf(fabsf(ref[best]), -8));
    return *tie;
}

struct tp_tally {
    int presets, steps, tokens, ties, graph_steps;
    double max_diff;           /* max |logit TP = 2 - logit TP = 1| */
};

/* One preset: TP = 1 (eager, the reference) and TP = 2 on `devices` (eager: `te`; with
 * graphs where the comm allows: `tg`), STEPS steps teacher-forced by TP = 1's argmax. */
static void run_preset(struct gt *t, const char *preset, const int *devices,
                       struct tp_tally *tally)
{
    static const int graph_sizes[] = { 1, 2, 4, 8 };
    char dir[] = "/tmp/osprey-gpu-tp-XXXXXX", err[ERR_LEN] = "";
    struct gen_model_opts go = { .config = preset, .seed = 17 };
    struct runner_options o = { .block_size = BS, .num_blocks = NBLOCKS + 4,
                                .max_num_batched_tokens = 256, .max_num_seqs = 8,
                                .max_model_len = MAXLEN, .enforce_eager = true,
                                .graph_sizes = graph_sizes, .num_graph_sizes = 4,
                                .fused_rope_cache = true, .tensor_parallel_size = 1,
                                .backend_threads = 1 };
    struct runner_options o2 = o, og = o;
    struct backend_options bo = { 0 };
    struct runner *r1 = NULL, *re = NULL, *rg = NULL;
    struct runner_rank_info i1, i2[2];
    struct step_batch b = { 0 };
    struct tp_req reqs[NREQ];
    struct sample_result res[8];
    float *l1 = NULL, *l2 = NULL;
    bool opened = false;
    struct model m;
    int V = 0, rc;

    if (!gt_check(t, mkdtemp(dir) != NULL, "mkdtemp"))
        return;
    go.out_dir = dir;
    if (!gt_check(t, gen_model_write(&go, NULL, err) == 0, "gen-model %s: %s", preset, err) ||
        !gt_check(t, model_open(&m, dir, err) == 0, "model_open %s: %s", preset, err))
        goto out;
    opened = true;
    V = m.cfg.vocab_size;
    o2.tensor_parallel_size = og.tensor_parallel_size = 2;
    o2.tp_devices = og.tp_devices = devices;
    og.enforce_eager = false;
    if (!gt_check(t, runner_backend_options(&m.cfg, &og, &bo) == 0, "runner_backend_options") ||
        !gt_backends(t, &bo))
        goto out;
    /* a family the CUDA backend lacks an op for is refused before any rank exists */
    if ((rc = runner_create(&r1, t->gpu, &m, &o, err)) == -ENOTSUP) {
        gt_note(t, "%s refused on cuda: %s", preset, err);
        goto out;
    }
    if (!gt_check(t, rc == 0, "%s TP = 1: %s", preset, err) ||
        !gt_check(t, runner_create(&re, t->gpu, &m, &o2, err) == 0, "%s TP = 2 eager: %s",
                  preset, err) ||
        !gt_check(t, runner_create(&rg, t->gpu, &m, &og, err) == 0, "%s TP = 2 graphs: %s",
                  preset, err) ||
        !gt_check(t, batch_init(&b, 256, 8, m.cfg.num_kv_groups,
                                runner_max_blocks_per_req(r1)) == 0, "batch_init"))
        goto out;
    /* each rank holds its KV heads only: half the cache where the KV heads split */
    runner_rank_info(r1, 0, &i1);
    gt_check(t, runner_num_ranks(re) == 2 && runner_num_ranks(r1) == 1, "%s: ranks %d", preset,
             runner_num_ranks(re));
    for (int k = 0; k < 2; k++) {
        runner_rank_info(re, k, &i2[k]);
        gt_check(t, i2[k].device == devices[k], "%s rank %d on device %d, not %d", preset, k,
                 i2[k].device, devices[k]);
        gt_check(t, i2[k].kv_cache_bytes * (m.cfg.num_kv_heads >= 2 ? 2 : 1) ==
                 i1.kv_cache_bytes, "%s rank %d: KV cache %zu bytes, TP = 1 %zu", preset, k,
                 i2[k].kv_cache_bytes, i1.kv_cache_bytes);
    }
    l1 = malloc((size_t)8 * V * 4);
    l2 = malloc((size_t)8 * V * 4);
    if (!gt_check(t, l1 && l2, "out of host memory"))
        goto out;
    for (int r = 0; r < NREQ; r++) {
        reqs[r].len = 4 + 13 * r;
        reqs[r].computed = 0;
        for (int i = 0; i < reqs[r].len; i++)
            reqs[r].tokens[i] = gt_randint(&t->rng, V);
    }
    for (int s = 0; s < STEPS; s++) {
        bool decode;

        /* the three runners write the same slots of their own caches; rebuilt after each
         * pads it in place */
        build_step(&b, reqs, m.cfg.num_kv_groups, runner_max_blocks_per_req(r1));
        decode = b.decode_only;
        if (!gt_check(t, runner_logits(r1, &b, l1) == 0, "%s TP = 1 step %d", preset, s))
            goto out;
        build_step(&b, reqs, m.cfg.num_kv_groups, runner_max_blocks_per_req(r1));
        if (!gt_check(t, runner_logits(re, &b, l2) == 0, "%s TP = 2 step %d", preset, s))
            goto out;
        gt_compare(t, preset, l2, l1, (size_t)NREQ * V, 0.05, 0.05, 2e-3);
        for (size_t i = 0; i < (size_t)NREQ * V; i++)
            tally->max_diff = fmax(tally->max_diff, fabs((double)l2[i] - l1[i]));
        build_step(&b, reqs, m.cfg.num_kv_groups, runner_max_blocks_per_req(r1));
        tally->graph_steps += decode && runner_padded_size(rg, &b) != b.num_tokens;
        if (!gt_check(t, runner_execute(rg, &b, NULL, res) == 0, "%s TP = 2 execute step %d",
                      preset, s))
            goto out;
        for (int r = 0; r < NREQ; r++) {
            const float *x = l1 + (size_t)r * V;
            bool tie;

            gt_check(t, same_or_near_tie(x, l2 + (size_t)r * V, V, res[r].token, &tie),
                     "%s step %d req %d: TP = 2 picked %d, TP = 1's argmax %d", preset, s, r,
                     res[r].token, argmax(x, V));
            tally->ties += tie;
            tally->tokens++;
            reqs[r].computed = reqs[r].len;
            if (reqs[r].len < MAXLEN)
                reqs[r].tokens[reqs[r].len++] = argmax(x, V);
        }
        tally->steps++;
    }
    tally->presets++;
out:
    runner_destroy(rg);
    runner_destroy(re);
    runner_destroy(r1);
    gt_backends_free(t);
    batch_fini(&b);
    free(l1);
    free(l2);
    if (opened)
        model_close(&m);
    gt_remove(t, "%s", dir);
}

static void all_presets(struct gt *t, const int *devices, const char *what)
{
    struct tp_tally tally = { 0 };

    for (int i = 0; gen_model_preset_name(i); i++) {
        const char *p = gen_model_preset_name(i);

        if (!strncmp(p, "tiny", 4))
            run_preset(t, p, devices, &tally);
    }
    gt_check(t, tally.presets > 0, "no preset ran");
    gt_note(t, "%s: %d presets, %d steps (%d replayed), %d/%d tokens equal, %d near-ties, "
            "max |dlogit| %.3g", what, tally.presets, tally.steps, tally.graph_steps,
            tally.tokens - tally.ties, tally.tokens, tally.ties, tally.max_diff);
}

static void tp2_on_one_gpu_matches_tp1(struct gt *t)
{
    static const int same[2] = { 0, 0 };

    all_presets(t, same, "local comm, 2 ranks on device 0");
}

static void nccl_tp2_matches_tp1_and_graphs_match_eager(struct gt *t)
{
    static const int two[2] = { 0, 1 };

    if (cuda_device_count() < 2) {
        /* a check that passes, so that the table says what happened: no pass */
        gt_check(t, true, "skipped");
        gt_note(t, "skipped: needs 2 GPUs (%d here)", cuda_device_count());
        return;
    }
    all_presets(t, two, "NCCL, devices 0 and 1");
}

/* ---- a rank that fails ---- */

static struct backend_ops failing_ops;
static const struct backend_ops *real_ops;
static int matmuls;

/* rank 0's third product (layer 0's gate_up) fails as a device would; rank 1 by then heads
 * for the all-reduce after its down projection and must not wait there forever */
static int failing_matmul(struct backend *be, void *out, const void *x, const struct bk_weight *w,
                          const struct bk_weight *bias, int n)
{
    return ++matmuls == 3 ? -EIO : real_ops->matmul(be, out, x, w, bias, n);
}

static void a_failing_rank_fails_the_step_and_never_hangs_its_peer(struct gt *t)
{
    static const int same[2] = { 0, 0 };
    char dir[] = "/tmp/osprey-gpu-tp-XXXXXX", err[ERR_LEN] = "";
    struct gen_model_opts go = { .config = "tiny", .seed = 3 };
    struct runner_options o = { .block_size = BS, .num_blocks = NBLOCKS + 4,
                                .max_num_batched_tokens = 256, .max_num_seqs = 8,
                                .max_model_len = MAXLEN, .tensor_parallel_size = 2,
                                .backend_threads = 1, .tp_devices = same };
    struct backend_options bo = { 0 };
    struct runner *r = NULL;
    struct step_batch b = { 0 };
    struct tp_req reqs[NREQ];
    struct sample_result res[8];
    bool opened = false;
    struct model m;
    double t0;

    if (!gt_check(t, mkdtemp(dir) != NULL, "mkdtemp"))
        return;
    go.out_dir = dir;
    if (!gt_check(t, gen_model_write(&go, NULL, err) == 0, "gen-model: %s", err) ||
        !gt_check(t, model_open(&m, dir, err) == 0, "model_open: %s", err))
        goto out;
    opened = true;
    if (!gt_check(t, runner_backend_options(&m.cfg, &o, &bo) == 0, "runner_backend_options") ||
        !gt_backends(t, &bo) ||
        !gt_check(t, runner_create(&r, t->gpu, &m, &o, err) == 0, "TP = 2: %s", err) ||
        !gt_check(t, batch_init(&b, 256, 8, m.cfg.num_kv_groups,
                                runner_max_blocks_per_req(r)) == 0, "batch_init"))
        goto out;
    /* rank 0's backend is ours: its ops are swapped after the ranks exist */
    real_ops = t->gpu->ops;
    failing_ops = *t->gpu->ops;
    failing_ops.matmul = failing_matmul;
    t->gpu->ops = &failing_ops;
    matmuls = 0;
    for (int i = 0; i < NREQ; i++) {
        reqs[i].len = 5 + i;
        reqs[i].computed = 0;
        for (int j = 0; j < reqs[i].len; j++)
            reqs[i].tokens[j] = gt_randint(&t->rng, m.cfg.vocab_size);
    }
    alarm(60);                 /* a hang kills the run: seen as a failure, never as a pass */
    t0 = now_s();
    build_step(&b, reqs, m.cfg.num_kv_groups, runner_max_blocks_per_req(r));
    gt_check(t, runner_execute(r, &b, NULL, res) == -EIO, "the failing step did not fail");
    /* the group stays aborted: the next step fails at once too (the engine is dead) */
    build_step(&b, reqs, m.cfg.num_kv_groups, runner_max_blocks_per_req(r));
    gt_check(t, runner_execute(r, &b, NULL, res) == -EIO, "the step after did not fail");
    gt_check(t, matmuls >= 3, "the failing product never ran (%d)", matmuls);
    t->gpu->ops = real_ops;
    runner_destroy(r);         /* joins rank 1's worker: not stuck in the all-reduce */
    r = NULL;
    alarm(0);
    gt_note(t, "local comm: failed twice and torn down in %.2f s", now_s() - t0);
out:
    if (t->gpu && t->gpu->ops == &failing_ops)
        t->gpu->ops = real_ops;
    runner_destroy(r);
    gt_backends_free(t);
    batch_fini(&b);
    if (opened)
        model_close(&m);
    gt_remove(t, "%s", dir);
}

/* Refusals that need no second GPU: more ranks than devices, and ranks that neither all
 * share one device nor each have their own. */
static void tp_beyond_the_devices_is_refused_in_one_line(struct gt *t)
{
    static const int mixed[4] = { 0, 0, 1, 1 };
    char dir[] = "/tmp/osprey-gpu-tp-XXXXXX", err[ERR_LEN] = "";
    struct gen_model_opts go = { .config = "tiny", .seed = 3 };
    struct runner_options o = { .block_size = BS, .num_blocks = NBLOCKS + 4,
                                .max_num_batched_tokens = 256, .max_num_seqs = 8,
                                .max_model_len = MAXLEN, .tensor_parallel_size = 4,
                                .backend_threads = 1 };
    struct backend_options bo = { 0 };
    struct runner *r = NULL;
    bool opened = false;
    struct model m;
    int n = cuda_device_count(), rc;
    char want[96];

    if (!gt_check(t, mkdtemp(dir) != NULL, "mkdtemp"))
        return;
    go.out_dir = dir;
    if (!gt_check(t, gen_model_write(&go, NULL, err) == 0, "gen-model: %s", err) ||
        !gt_check(t, model_open(&m, dir, err) == 0, "model_open: %s", err))
        goto out;
    opened = true;
    if (!gt_check(t, runner_backend_options(&m.cfg, &o, &bo) == 0, "runner_backend_options") ||
        !gt_backends(t, &bo))
        goto out;
    if (n < 4) {
        rc = runner_create(&r, t->gpu, &m, &o, err);
        snprintf(want, sizeof want, "--tensor-parallel-size 4 needs 4 CUDA devices; this host "
                 "has %d", n);
        gt_check(t, rc == -ENODEV && !r && strstr(err, want), "TP = 4 on %d GPUs: %d %s", n,
                 rc, err);
    }
    if (n >= 2) {
        o.tp_devices = mixed;
        rc = runner_create(&r, t->gpu, &m, &o, err);
        gt_check(t, rc == -EINVAL && !r && strstr(err, "4 ranks on 2 devices"),
                 "ranks on devices 0, 0, 1, 1: %d %s", rc, err);
    }
    gt_note(t, "%d devices here", n);
out:
    runner_destroy(r);
    gt_backends_free(t);
    if (opened)
        model_close(&m);
    gt_remove(t, "%s", dir);
}

/* ---- the local communicator itself ---- */

enum { LR_RANKS = 3, LR_COUNT = 5003, LR_CALLS = 20 };

struct lr_rank {
    struct comm *c;
    cudaStream_t stream;
    uint16_t *buf;             /* device bf16 [LR_COUNT] */
    int calls, rc;
    bool fail_first;           /* this rank fails before its first call */
};

static void *lr_main(void *arg)
{
    struct lr_rank *k = arg;

    k->rc = 0;
    if (cudaSetDevice(0) != cudaSuccess) {
        k->rc = -EIO;
        comm_abort(k->c);
        return NULL;
    }
    if (k->fail_first) {
        comm_abort(k->c);
        k->rc = -EIO;
        return NULL;
    }
    for (int i = 0; i < k->calls && !k->rc; i++)
        k->rc = comm_all_reduce(k->c, k->buf, LR_COUNT - i, DT_BF16);
    if (!k->rc)
        k->rc = comm_wait(k->c);
    return NULL;
}

static void lr_run(struct lr_rank *k)
{
    pthread_t th[LR_RANKS];
    int started = 0;

    for (int r = 0; r < LR_RANKS; r++)
        if (pthread_create(&th[r], NULL, lr_main, &k[r]) == 0)
            started++;
        else
            comm_abort(k[r].c);
    for (int r = 0; r < started; r++)
        pthread_join(th[r], NULL);
}

/* Three ranks on device 0, each on its own thread and stream: every rank ends with the
 * same bits, the sum in rank order with one bf16 rounding per add (as the host computes
 * it here); 20 calls in a row of shrinking sizes (no rank overwrites a sum another still
 * reads); a rank that fails before its first call wakes the others. */
static void local_all_reduce_gives_every_rank_the_rank_order_sum(struct gt *t)
{
    struct lr_rank k[LR_RANKS] = { 0 };
    struct comm *c[LR_RANKS] = { NULL };
    void *streams[LR_RANKS];
    uint16_t *in[LR_RANKS] = { NULL }, *got = malloc(LR_COUNT * 2);
    float *want = malloc(LR_COUNT * sizeof *want);
    char err[ERR_LEN] = "";
    int bad = 0;

    if (!gt_check(t, got && want, "out of host memory"))
        goto out;
    for (int r = 0; r < LR_RANKS; r++) {
        if (!gt_check(t, (in[r] = malloc(LR_COUNT * 2)) != NULL, "out of host memory") ||
            !gt_check(t, cudaSetDevice(0) == cudaSuccess &&
                      cudaStreamCreateWithFlags(&k[r].stream, cudaStreamNonBlocking) == cudaSuccess &&
                      cudaMalloc((void **)&k[r].buf, LR_COUNT * 2) == cudaSuccess, "rank %d", r))
            goto out;
        for (int i = 0; i < LR_COUNT; i++)
            in[r][i] = f32_to_bf16(gt_randf(&t->rng, -4.0f, 4.0f));
        streams[r] = k[r].stream;
    }
    if (!gt_check(t, comm_cuda_local_create(c, LR_RANKS, 0, streams, err) == 0, "%s", err))
        goto out;
    for (int pass = 0; pass < 2; pass++) {
        int calls = pass ? LR_CALLS : 1;

        for (int r = 0; r < LR_RANKS; r++) {
            k[r].c = c[r];
            k[r].calls = calls;
            if (!gt_check(t, cudaMemcpy(k[r].buf, in[r], LR_COUNT * 2,
                                        cudaMemcpyHostToDevice) == cudaSuccess, "upload"))
                goto out;
        }
        /* the host's sum: rank order, a bf16 rounding after each add; then each later
         * call of count - call elements sums the ranks' equal buffers again */
        for (int i = 0; i < LR_COUNT; i++) {
            float s = bf16_to_f32(in[0][i]);

            for (int r = 1; r < LR_RANKS; r++)
                s = bf16_to_f32(f32_to_bf16(s + bf16_to_f32(in[r][i])));
            for (int call = 1; call < calls && i < LR_COUNT - call; call++) {
                float s3 = bf16_to_f32(f32_to_bf16(s + s));

                s = bf16_to_f32(f32_to_bf16(s3 + s));
            }
            want[i] = s;
        }
        lr_run(k);
        for (int r = 0; r < LR_RANKS; r++) {
            if (!gt_check(t, k[r].rc == 0, "pass %d rank %d: %d", pass, r, k[r].rc) ||
                !gt_check(t, cudaMemcpy(got, k[r].buf, LR_COUNT * 2,
                                        cudaMemcpyDeviceToHost) == cudaSuccess, "download"))
                goto out;
            for (int i = 0; i < LR_COUNT; i++)
                bad += bf16_to_f32(got[i]) != want[i];
        }
        gt_check(t, bad == 0, "pass %d: %d elements differ from the rank-order sum", pass, bad);
    }
    /* rank 1 fails before its first call: ranks 0 and 2 return -ECANCELED, never hang */
    for (int r = 0; r < LR_RANKS; r++) {
        k[r].calls = 3;
        k[r].fail_first = r == 1;
    }
    lr_run(k);
    gt_check(t, k[0].rc == -ECANCELED && k[1].rc == -EIO && k[2].rc == -ECANCELED,
             "after an abort: %d %d %d", k[0].rc, k[1].rc, k[2].rc);
    gt_note(t, "3 ranks on device 0: %d bf16, 1 and %d calls, bitwise the rank-order sum",
            LR_COUNT, LR_CALLS);
out:
    for (int r = 0; r < LR_RANKS; r++) {
        comm_destroy(c[r]);
        if (k[r].buf)
            cudaFree(k[r].buf);
        if (k[r].stream)
            cudaStreamDestroy(k[r].stream);
        free(in[r]);
    }
    free(got);
    free(want);
}

/* ---- the all-reduce of one layer inside a graph (a figure, never asserted) ---- */

enum { AR_COUNT = 4096, AR_PER_GRAPH = 64, AR_REPLAYS = 50 };   /* llama-3.1-8b's hidden, batch 1 */

struct ar_rank {
    struct comm *c;
    int device;
    cudaStream_t stream;
    void *buf;
    double us;                 /* per all-reduce, replayed */
    int rc;
};

/* One rank's thread: warm up eagerly, capture AR_PER_GRAPH all-reduces into one graph (its
 * peers capture theirs at the same time), replay it and time the replays. */
static void *ar_main(void *arg)
{
    struct ar_rank *k = arg;
    cudaGraph_t g = NULL;
    cudaGraphExec_t exec = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    float ms = 0.0f;

    k->rc = -EIO;
    if (cudaSetDevice(k->device) != cudaSuccess || cudaEventCreate(&e0) != cudaSuccess ||
        cudaEventCreate(&e1) != cudaSuccess)
        goto out;
    for (int i = 0; i < 8; i++)
        if (comm_all_reduce(k->c, k->buf, AR_COUNT, DT_BF16) || comm_wait(k->c))
            goto out;
    if (cudaStreamBeginCapture(k->stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess)
        goto out;
    for (int i = 0; i < AR_PER_GRAPH; i++)
        if (comm_all_reduce(k->c, k->buf, AR_COUNT, DT_BF16))
            break;
    if (cudaStreamEndCapture(k->stream, &g) != cudaSuccess ||
        cudaGraphInstantiate(&exec, g, 0) != cudaSuccess ||
        cudaGraphLaunch(exec, k->stream) != cudaSuccess ||
        comm_wait(k->c) || cudaEventRecord(e0, k->stream) != cudaSuccess)
        goto out;
    for (int r = 0; r < AR_REPLAYS; r++)
        if (cudaGraphLaunch(exec, k->stream) != cudaSuccess)
            goto out;
    if (cudaEventRecord(e1, k->stream) != cudaSuccess || comm_wait(k->c) ||
        cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess)
        goto out;
    k->us = ms * 1000.0 / (AR_REPLAYS * AR_PER_GRAPH);
    k->rc = 0;
out:
    if (k->rc)
        comm_abort(k->c);
    if (exec)
        cudaGraphExecDestroy(exec);
    if (g)
        cudaGraphDestroy(g);
    if (e0)
        cudaEventDestroy(e0);
    if (e1)
        cudaEventDestroy(e1);
    return NULL;
}

static void nccl_all_reduce_in_a_graph_latency(struct gt *t)
{
    static const int devices[2] = { 0, 1 };
    struct ar_rank k[2] = { 0 };
    struct comm *c[2] = { NULL, NULL };
    void *streams[2];
    pthread_t th[2];
    char err[ERR_LEN] = "";

    if (cuda_device_count() < 2) {
        gt_check(t, true, "skipped");
        gt_note(t, "skipped: needs 2 GPUs (%d here)", cuda_device_count());
        return;
    }
    for (int i = 0; i < 2; i++) {
        k[i].device = devices[i];
        if (!gt_check(t, cudaSetDevice(i) == cudaSuccess &&
                      cudaStreamCreateWithFlags(&k[i].stream, cudaStreamNonBlocking) == cudaSuccess &&
                      cudaMalloc(&k[i].buf, AR_COUNT * 2) == cudaSuccess &&
                      cudaMemset(k[i].buf, 0, AR_COUNT * 2) == cudaSuccess, "device %d", i))
            goto out;
        streams[i] = k[i].stream;
    }
    if (!gt_check(t, comm_nccl_create(c, 2, devices, streams, err) == 0, "nccl: %s", err))
        goto out;
    for (int i = 0; i < 2; i++) {
        k[i].c = c[i];
        k[i].rc = -EAGAIN;
    }
    /* both ranks or neither: a lone rank would capture and wait for a peer that never comes */
    if (!gt_check(t, pthread_create(&th[0], NULL, ar_main, &k[0]) == 0, "pthread_create"))
        goto out;
    if (!gt_check(t, pthread_create(&th[1], NULL, ar_main, &k[1]) == 0, "pthread_create")) {
        comm_abort(c[1]);
        pthread_join(th[0], NULL);
        goto out;
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    if (gt_check(t, k[0].rc == 0 && k[1].rc == 0, "the captured all-reduces failed"))
        gt_note(t, "2 GPUs, %d bf16 (one layer at batch 1), in a graph: %.2f / %.2f us each",
                AR_COUNT, k[0].us, k[1].us);
out:
    for (int i = 0; i < 2; i++) {
        comm_destroy(c[i]);
        cudaSetDevice(i);
        if (k[i].buf)
            cudaFree(k[i].buf);
        if (k[i].stream)
            cudaStreamDestroy(k[i].stream);
    }
    cudaSetDevice(0);
}

const struct gt_case gt_cases_tp[] = {
    { "tp2_on_one_gpu_matches_tp1", tp2_on_one_gpu_matches_tp1 },
    { "nccl_tp2_matches_tp1_and_graphs_match_eager", nccl_tp2_matches_tp1_and_graphs_match_eager },
    { "a_failing_rank_fails_the_step_and_never_hangs_its_peer",
      a_failing_rank_fails_the_step_and_never_hangs_its_peer },
    { "tp_beyond_the_devices_is_refused_in_one_line", tp_beyond_the_devices_is_refused_in_one_line },
    { "nccl_all_reduce_in_a_graph_latency", nccl_all_reduce_in_a_graph_latency },
    { "local_all_reduce_gives_every_rank_the_rank_order_sum",
      local_all_reduce_gives_every_rank_the_rank_order_sum },
    { NULL, NULL },
};
#endif
