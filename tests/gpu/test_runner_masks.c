/* test_runner_masks.c — steps with masks (grammar rows) split by the runner on the CUDA
 * backend: runner_launch stages and starts the forward (the graph of the forward alone for a
 * decode batch), the masks are written into runner_mask_rows() (pinned) after it, and
 * runner_finish uploads them, samples and fetches (under tensor parallelism finish runs the
 * whole step, the masks already written: 2 ranks on device 0 here). A tiny model, three
 * requests (a decode batch of 3 replays the graph of 4: one padding row), greedy rows: row 0
 * free, rows 1 and 2 each under a mask of 12 random ids; every third step has no mask at all
 * (the whole-step graph). Each step runs on the cpu runner (logits), the eager cuda runner
 * (logits, then the same step split), the graph cuda runner and the eager TP = 2 runner
 * (split); the mask rows are poisoned (every id allowed) before each launch, so a sampler
 * that read them before finish would leave its mask. Every masked token must lie in its mask
 * and be the masked argmax of the eager logits (a near-tie aside, bounded as in
 * test_runner.c); the cpu's masked argmax the same. */
#ifdef OSPREY_CUDA
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"
#include "engine/model/gen_model.h"
#include "engine/model/model.h"
#include "engine/runner.h"
#include "tests/gpu/gpu_test.h"

enum { NREQ = 3, MAXLEN = 64, BS = 16, STEPS = 10, PER_REQ = MAXLEN / BS + 1,
       MASK_IDS = 12 };

struct req {
    int32_t tokens[MAXLEN];
    int len, computed;
};

/* Every request's next step: its whole prompt, then one token; request r holds blocks
 * r, r + NREQ, r + 2 NREQ ... */
static void build_step(struct step_batch *b, const struct req *reqs, int max_blocks)
{
    int t = 0;

    b->num_reqs = b->num_sample = NREQ;
    b->num_kv_groups = 1;
    b->max_blocks_per_req = max_blocks;
    b->max_query_len = b->max_seq_len = 0;
    b->query_start_loc[0] = 0;
    b->decode_only = true;
    for (int r = 0; r < NREQ; r++) {
        int n = reqs[r].len - reqs[r].computed;

        b->decode_only &= n == 1;
        for (int i = 0; i < n; i++, t++) {
            int pos = reqs[r].computed + i;
            b->input_ids[t] = reqs[r].tokens[pos];
            b->positions[t] = pos;
            b->slot_mapping[0][t] = (int64_t)(pos / BS * NREQ + r) * BS + pos % BS;
        }
        b->query_start_loc[r + 1] = t;
        b->seq_lens[r] = reqs[r].len;
        b->logits_indices[r] = t - 1;
        b->sample_req[r] = r;
        for (int j = 0; j < max_blocks; j++)
            b->block_table[0][r * max_blocks + j] = j * BS < reqs[r].len ? j * NREQ + r : KV_NO_BLOCK;
        b->max_query_len = MAX(b->max_query_len, n);
        b->max_seq_len = MAX(b->max_seq_len, reqs[r].len);
    }
    b->num_tokens = b->num_tokens_padded = t;
    b->num_reqs_padded = b->num_sample_padded = NREQ;
}

static bool allowed(const uint32_t *mask, int id)
{
    return !mask || (mask[id >> 5] >> (id & 31) & 1);
}

/* The largest logit the mask (NULL: none) allows, lowest id on ties. */
static int masked_argmax(const float *x, int V, const uint32_t *mask)
{
    int best = -1;

    for (int i = 0; i < V; i++)
        if (allowed(mask, i) && (best < 0 || x[i] > x[best]))
            best = i;
    return best;
}

/* tok must be allowed, and want (the masked argmax of x) or within tol of it. */
static void check_token(struct gt *t, const char *what, int step, int row, int tok, int want,
                        const float *x, int V, const uint32_t *mask, float tol, int *ties)
{
    if (!gt_check(t, tok >= 0 && tok < V && allowed(mask, tok),
                  "%s step %d row %d: token %d is outside its mask", what, step, row, tok) ||
        tok == want)
        return;
    (*ties)++;
    gt_check(t, x[want] - x[tok] <= tol, "%s step %d row %d: token %d, masked argmax %d, gap "
             "%.3g above %.3g", what, step, row, tok, want, x[want] - x[tok], tol);
}

/* The step split: the mask rows poisoned (all ids allowed), launch, the masks written,
 * finish. */
static bool split_step(struct gt *t, struct runner *r, struct step_batch *b,
                       struct sample_row *rows, const uint32_t *const *mask_of, int words,
                       struct sample_result *res)
{
    uint32_t *in_place = runner_mask_rows(r);

    for (int i = 0; i < NREQ + 1; i++)   /* + the padding row of a graph of 4 */
        memset(in_place + (size_t)i * words, 0xff, (size_t)words * 4);
    for (int i = 0; i < NREQ; i++)
        rows[i].allowed = mask_of[i] ? in_place + (size_t)i * words : NULL;
    if (!gt_check(t, runner_launch(r, b, rows) == 0, "runner_launch"))
        return false;
    for (int i = 0; i < NREQ; i++)
        if (mask_of[i])
            memcpy(in_place + (size_t)i * words, mask_of[i], (size_t)words * 4);
    return gt_check(t, runner_finish(r, res) == 0, "runner_finish");
}

static void split_steps_with_masks_equal_eager_logits_and_cpu(struct gt *t)
{
    static const int graph_sizes[] = { 1, 2, 4 }, one_gpu[2] = { 0, 0 };
    char dir[] = "/tmp/osprey-gpu-model-XXXXXX", err[ERR_LEN] = "";
    struct gen_model_opts go = { .config = "tiny", .seed = 13 };
    struct runner_options ro = { .block_size = BS, .num_blocks = NREQ * PER_REQ + 4,
                                 .max_num_batched_tokens = 256, .max_num_seqs = 4,
                                 .max_model_len = MAXLEN, .graph_sizes = graph_sizes,
                                 .num_graph_sizes = 3, .kv_cache_dtype = DT_F32,
                                 .tensor_parallel_size = 1, .backend_threads = 1 };
    struct runner_options eo = ro, to;
    struct backend_options bo = { 0 };
    struct runner *rc = NULL, *rl = NULL, *re = NULL, *rg = NULL, *rt = NULL;
    struct step_batch b = { 0 };
    struct req reqs[NREQ];
    struct sample_row rows[NREQ];
    struct sample_result res_e[4], res_g[4], res_t[4];
    uint32_t masks[NREQ][64];
    const uint32_t *mask_of[NREQ];         /* masks[r], or NULL for a free row */
    float *lc = NULL, *le = NULL;
    struct model m;
    int V, words, masked = 0, split_graph_steps = 0, ties = 0;

    eo.enforce_eager = true;
    to = eo;
    to.tensor_parallel_size = 2;
    to.tp_devices = one_gpu;
    if (!gt_gen_model(t, dir, &go, &m))
        return;
    V = m.cfg.vocab_size;
    words = (V + 31) / 32;
    if (!gt_check(t, words <= 64, "tiny's vocabulary %d is beyond the test's masks", V) ||
        !gt_check(t, runner_backend_options(&m.cfg, &ro, &bo) == 0, "runner_backend_options") ||
        !gt_backends(t, &bo) ||
        !gt_check(t, runner_create(&rc, t->cpu, &m, &eo, err) == 0, "cpu runner: %s", err) ||
        !gt_check(t, runner_create(&rl, t->gpu, &m, &eo, err) == 0, "cuda logits: %s", err) ||
        !gt_check(t, runner_create(&re, t->gpu, &m, &eo, err) == 0, "cuda eager: %s", err) ||
        !gt_check(t, runner_create(&rg, t->gpu, &m, &ro, err) == 0, "cuda graphs: %s", err) ||
        !gt_check(t, runner_create(&rt, t->gpu, &m, &to, err) == 0, "cuda TP = 2: %s", err) ||
        !gt_check(t, batch_init(&b, 256, 4, 1, runner_max_blocks_per_req(re)) == 0, "batch_init"))
        goto out;
    lc = malloc((size_t)4 * V * sizeof *lc);
    le = malloc((size_t)4 * V * sizeof *le);
    if (!gt_check(t, lc && le, "out of host memory"))
        goto out;
    for (int r = 0; r < NREQ; r++) {   /* prompts of 4, 11 and 18 random ids */
        reqs[r] = (struct req){ .len = 4 + 7 * r };
        for (int i = 0; i < reqs[r].len; i++)
            reqs[r].tokens[i] = gt_randint(&t->rng, V);
    }
    for (int s = 0; s < STEPS; s++) {
        int mb = runner_max_blocks_per_req(re);

        /* the same step for each runner, rebuilt after each pads it in place */
        build_step(&b, reqs, mb);
        if (!gt_check(t, runner_logits(rc, &b, lc) == 0, "cpu logits step %d", s))
            goto out;
        build_step(&b, reqs, mb);
        if (!gt_check(t, runner_logits(rl, &b, le) == 0, "cuda logits step %d", s))
            goto out;
        for (int r = 0; r < NREQ; r++) {
            rows[r] = (struct sample_row){ .top_p = 1.0f, .repetition_penalty = 1.0f,
                                           .num_logprobs = -1 };
            memset(masks[r], 0, sizeof masks[r]);
            mask_of[r] = r == 0 || s % 3 == 2 ? NULL : masks[r];
            if (!mask_of[r])
                continue;
            for (int k = 0; k < MASK_IDS; k++) {
                int id = gt_randint(&t->rng, V);
                masks[r][id >> 5] |= 1u << (id & 31);
            }
            masked++;
        }
        build_step(&b, reqs, mb);
        if (!split_step(t, re, &b, rows, mask_of, words, res_e))
            goto out;
        build_step(&b, reqs, mb);
        split_graph_steps += b.decode_only && s % 3 != 2 && runner_padded_size(rg, &b) == 4;
        if (!split_step(t, rg, &b, rows, mask_of, words, res_g))
            goto out;
        build_step(&b, reqs, mb);
        if (!split_step(t, rt, &b, rows, mask_of, words, res_t))
            goto out;
        for (int r = 0; r < NREQ; r++) {
            const uint32_t *mask = mask_of[r];
            const float *xe = le + (size_t)r * V, *xc = lc + (size_t)r * V;
            int want = masked_argmax(xe, V, mask);
            float err_row = 0.0f, tol;

            for (int i = 0; i < V; i++)
                err_row = fmaxf(err_row, fabsf(xe[i] - xc[i]));
            tol = fmaxf(2.0f * err_row, ldexpf(fabsf(xe[want]), -8));
            check_token(t, "eager split", s, r, res_e[r].token, want, xe, V, mask, tol, &ties);
            check_token(t, "graph split", s, r, res_g[r].token, want, xe, V, mask, tol, &ties);
            check_token(t, "TP = 2 split", s, r, res_t[r].token, want, xe, V, mask, tol, &ties);
            check_token(t, "cpu", s, r, masked_argmax(xc, V, mask), want, xe, V, mask, tol, &ties);
            reqs[r].computed = reqs[r].len;
            if (reqs[r].len < MAXLEN)
                reqs[r].tokens[reqs[r].len++] = want;
        }
    }
    gt_check(t, split_graph_steps > 0, "no decode step with masks replayed the padded graph of 4");
    gt_note(t, "%d steps, %d masked rows, %d split steps on the padded graph, %d near-ties",
            STEPS, masked, split_graph_steps, ties);
out:
    runner_destroy(rt);
    runner_destroy(rg);
    runner_destroy(re);
    runner_destroy(rl);
    runner_destroy(rc);
    gt_backends_free(t);
    batch_fini(&b);
    free(lc);
    free(le);
    model_close(&m);
    gt_remove(t, "%s", dir);
}

const struct gt_case gt_cases_runner_masks[] = {
    { "split_steps_with_masks_equal_eager_logits_and_cpu",
      split_steps_with_masks_equal_eager_logits_and_cpu },
    { NULL, NULL },
};
#endif
