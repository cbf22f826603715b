/* runner.c — the model runner's step: pad → stage → graph replay or eager forward() →
 * sample → fetch. A step whose rows have masks (grammars, allowed_token_ids) is split in two
 * (runner_launch: stage and the forward; runner_finish: the masks handed over, sample,
 * fetch) so that the caller makes the masks while the device runs the forward. Graphs (CUDA)
 * are captured at creation (runner_graphs.c) for decode batches of the configured sizes
 * from an all-padding batch, each twice: the whole step, and the forward alone for split
 * steps; the host-dependent scalars of a graph batch (max_seq_len, max_query_len) are staged
 * as fixed bounds so that replaying it for any batch of that size is exact. Other steps up
 * to the largest piecewise bucket pad their tokens to a bucket and replay its pieces with
 * eager attention (runner_pieces.c). The weights, KV cache and activation buffers on the
 * backend are made in runner_create.c; the state all three share is runner_internal.h. */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/base/log.h"
#include "engine/runner_internal.h"

static_assert(MODEL_MAX_KV_GROUPS == KV_MAX_GROUPS,
              "the model's KV-cache groups (model.h) and the batch's (batch.h) must agree");

/* ---- a step ---- */

/* After the first step that ran: --calculate-kv-scales is done, the scales stay. */
static void kv_scales_done(struct runner *r)
{
    if (!r->fwd.calc_kv_scales)
        return;
    r->fwd.calc_kv_scales = false;
    for (int l = 0; l < r->m->cfg.num_layers; l++)
        LOG(LL_INFO, "runner", "layer %d: fp8 KV scales from the first prefill: k %.6g v %.6g", l,
            r->k_scale[l], r->v_scale[l]);
}

/* the forward alone: a split step's device part before the masks (and its graph) */
int runner_forward_body(void *arg)
{
    struct runner *r = arg;
    int rc = forward(&r->fwd, &r->dev);

    if (!rc)
        kv_scales_done(r);
    return rc;
}

static int sample_op(struct runner *r)
{
    return r->be->ops->sample(r->be, r->fwd.logits, r->m->cfg.vocab_size, &r->dev);
}

/* forward + sample: the whole of a step that runs on the device (and in a graph) */
int runner_step_body(void *arg)
{
    struct runner *r = arg;
    int rc = runner_forward_body(r);

    if (rc)
        return rc;
    /* a tensor-parallel rank but 0 has no logits (forward() runs the LM head on rank 0) */
    if (r->fwd.comm && r->fwd.comm->rank > 0)
        return 0;
    return sample_op(r);
}

void runner_watch_progress(struct runner *r, uint64_t *progress)
{
    if (r->tp)
        runner_watch_progress(runner_tp_rank(r->tp, 0), progress);
    r->fwd.progress = progress;
}

/* The captured size for a decode-only batch, 0 when it runs eagerly. */
static int graph_size(const struct runner *r, const struct step_batch *b)
{
    if (r->graphs_deferred || !b->decode_only || b->num_tokens <= 0)
        return 0;
    for (int i = 0; i < r->num_graphs; i++)
        if (r->graph_sizes[i] >= b->num_tokens)
            return r->graph_sizes[i] <= b->cap_tokens && r->graph_sizes[i] <= b->cap_reqs
                   ? r->graph_sizes[i] : 0;
    return 0;
}

int runner_padded_size(const struct runner *r, const struct step_batch *b)
{
    int size = r->tp ? graph_size(runner_tp_rank(r->tp, 0), b) : graph_size(r, b);
    return size ? size : b->num_tokens;
}

/* Pads b to `size`, checks it fits our buffers and stages it. A decode graph step (capture
 * or replay) stages fixed bounds for the scalars a graph bakes in. */
int runner_stage_batch(struct runner *r, struct step_batch *b, int size, enum stage_kind kind,
                       const struct sample_row *rows)
{
    struct step_batch sb;
    int rc = kind == STAGE_PIECES ? batch_pad_tokens(b, size) : batch_pad(b, size);

    if (rc)
        return rc;
    if (b->num_tokens_padded > r->cap_tokens || b->num_sample_padded > r->cap_sample ||
        b->num_kv_groups != r->m->cfg.num_kv_groups || b->max_blocks_per_req > r->max_blocks_per_req) {
        LOG(LL_ERR, "runner", "batch does not fit the runner: tokens %d/%d, sampled %d/%d, "
            "groups %d/%d, blocks per request %d/%d", b->num_tokens_padded, r->cap_tokens,
            b->num_sample_padded, r->cap_sample, b->num_kv_groups, r->m->cfg.num_kv_groups,
            b->max_blocks_per_req, r->max_blocks_per_req);
        return -EINVAL;
    }
    sb = *b;
    if (kind == STAGE_GRAPH) {
        sb.max_query_len = 1;
        sb.max_seq_len = r->opt.max_model_len;
    }
    return r->be->ops->stage(r->be, &sb, rows ? rows : r->greedy_rows, &r->dev);
}

int runner__graph_size(const struct runner *r, const struct step_batch *b)
{
    return graph_size(r, b);
}

/* The ranks' masks are final when they are staged: handed over at once. */
int runner__stage(struct runner *r, struct step_batch *b, int size, const struct sample_row *rows)
{
    int rc = size ? runner_stage_batch(r, b, size, STAGE_GRAPH, rows)
                  : runner_stage_batch(r, b, MAX(b->num_tokens, b->num_tokens_padded),
                                       STAGE_EAGER, rows);

    return rc ? rc : r->be->ops->stage_masks(r->be);
}

int runner__run(struct runner *r, int size, bool sample)
{
    if (size)
        return r->be->ops->graph_replay(r->be, size);
    return sample ? runner_step_body(r) : runner_forward_body(r);
}

int runner__fetch(struct runner *r, struct sample_result *results, int n)
{
    return r->be->ops->fetch_results(r->be, results, n);
}

int runner__download_logits(struct runner *r, float *logits, int rows)
{
    return r->be->ops->download(r->be, logits, r->fwd.logits,
                                (size_t)rows * r->m->cfg.vocab_size * sizeof(float));
}

/* Whether a row of the step has a mask: the step is then split around it. */
static bool has_masks(const struct sample_row *rows, int n)
{
    for (int i = 0; rows && i < n; i++)
        if (rows[i].allowed)
            return true;
    return false;
}

/* The piecewise bucket (index) of a step no decode graph covers, -1 when it runs eagerly. */
static int piece_bucket(const struct runner *r, const struct step_batch *b)
{
    return r->graphs_deferred ? -1 : pieces_bucket(&r->pieces, b->num_tokens, b->cap_tokens);
}

/* The forward of the staged step: the piecewise graphs of bucket `bucket`, or (-1) eagerly. */
static int run_forward(struct runner *r, const struct step_batch *b, int bucket)
{
    return bucket >= 0 ? pieces_run(&r->pieces, r->be, bucket, b->num_tokens)
                       : runner_forward_body(r);
}

/* The whole staged step (forward and sample) outside the decode graphs. */
static int run_step(struct runner *r, const struct step_batch *b, int bucket)
{
    int rc;

    if (bucket < 0)
        return runner_step_body(r);
    return (rc = run_forward(r, b, bucket)) ? rc : sample_op(r);
}

int runner_launch(struct runner *r, struct step_batch *b, const struct sample_row *rows)
{
    int size, bucket, rc;

    if (r->launched.active) {
        LOG(LL_ERR, "runner", "runner_launch: the step before was not finished");
        return -EINVAL;
    }
    r->launched.b = b;
    r->launched.rows = rows;
    r->launched.split = false;
    r->launched.active = true;
    /* tensor parallelism keeps the simple path: finish runs the whole step on the ranks */
    if (b->num_tokens <= 0 || r->tp)
        return 0;
    size = graph_size(r, b);
    bucket = size ? -1 : piece_bucket(r, b);
    r->launched.split = has_masks(rows, b->num_sample);
    if ((rc = size ? runner_stage_batch(r, b, size, STAGE_GRAPH, rows)
                   : bucket >= 0 ? runner_stage_batch(r, b, r->pieces.sizes[bucket], STAGE_PIECES, rows)
                                 : runner_stage_batch(r, b, b->num_tokens, STAGE_EAGER, rows)))
        goto fail;
    if (r->launched.split)
        rc = size ? r->be->ops->graph_replay(r->be, runner_forward_key(size))
                  : run_forward(r, b, bucket);
    else if (!(rc = r->be->ops->stage_masks(r->be)))   /* rows without masks: a no-op */
        rc = size ? r->be->ops->graph_replay(r->be, size) : run_step(r, b, bucket);
    if (!rc)
        return 0;
fail:
    r->launched.active = false;
    return rc;
}

int runner_finish(struct runner *r, struct sample_result *results)
{
    struct step_batch *b = r->launched.b;
    int rc;

    if (!r->launched.active) {
        LOG(LL_ERR, "runner", "runner_finish without runner_launch");
        return -EINVAL;
    }
    r->launched.active = false;
    if (b->num_tokens <= 0)
        return 0;
    if (r->tp)
        return runner_tp_execute(r->tp, b, r->launched.rows, results);
    if (r->launched.split &&
        ((rc = r->be->ops->stage_masks(r->be)) || (rc = sample_op(r))))
        return rc;
    if ((rc = r->be->ops->fetch_results(r->be, results, b->num_sample)))
        return rc;
    if (r->graphs_deferred && !r->fwd.calc_kv_scales) {   /* the scales are known now */
        char err[256] = "";

        r->graphs_deferred = false;
        if ((rc = runner_capture_graphs(r, err)))
            LOG(LL_ERR, "runner", "%s", err);
    }
    return rc;
}

int runner_execute(struct runner *r, struct step_batch *b, const struct sample_row *rows,
                   struct sample_result *results)
{
    int rc = runner_launch(r, b, rows);

    return rc ? rc : runner_finish(r, results);
}

bool runner_busy(struct runner *r)
{
    return !r->tp && r->be->ops->busy && r->be->ops->busy(r->be);
}

uint32_t *runner_mask_rows(struct runner *r)
{
    return r->be->ops->mask_rows(r->be);
}

int runner_logits(struct runner *r, struct step_batch *b, float *logits)
{
    int rc;

    if (r->tp)
        return runner_tp_logits(r->tp, b, logits);
    if ((rc = runner_stage_batch(r, b, MAX(b->num_tokens, b->num_tokens_padded), STAGE_EAGER, NULL)) ||
        (rc = runner_forward_body(r)))
        return rc;
    return r->be->ops->download(r->be, logits, r->fwd.logits,
                                (size_t)b->num_sample_padded * r->m->cfg.vocab_size * sizeof(float));
}
