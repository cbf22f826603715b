/* runner.c — the model runner: weights, KV cache and activation buffers on the backend, and
 * one step's life: pad → stage → graph replay or eager forward() → sample → fetch. A step
 * whose rows have masks (grammars, allowed_token_ids) is split in two (runner_launch: stage
 * and the forward; runner_finish: the masks handed over, sample, fetch) so that the caller
 * makes the masks while the device runs the forward. Graphs (CUDA) are captured at creation
 * for decode batches of the configured sizes from an all-padding batch, each twice: the
 * whole step, and the forward alone for split steps; the host-dependent scalars of a graph
 * batch (max_seq_len, max_query_len) are staged as fixed bounds so that replaying it for any
 * batch of that size is exact. Other steps up to the largest piecewise bucket pad their
 * tokens to a bucket and replay its pieces with eager attention (runner_pieces.c). */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/forward.h"
#include "engine/base/log.h"
#include "engine/rope.h"
#include "engine/runner.h"
#include "engine/runner_pieces.h"
#include "engine/runner_tp.h"
#include "engine/weights.h"

static_assert(MODEL_MAX_KV_GROUPS == KV_MAX_GROUPS,
              "the model's KV-cache groups (model.h) and the batch's (batch.h) must agree");

struct runner {
    struct backend *be;              /* borrowed */
    const struct model *m;           /* borrowed */
    struct runner_options opt;       /* graph_sizes points at our sorted copy */
    int *graph_sizes;                /* [num_graphs] captured sizes, ascending */
    int num_graphs;
    int cap_tokens, cap_sample;      /* rows of the activation and logits buffers */
    int max_blocks_per_req;

    struct weights w;
    void **k_cache, **v_cache;       /* [num_layers] device */
    float *k_scale, *v_scale;        /* [num_layers] host, fp8 cache only */
    float *inv_freq;                 /* [head_dim / 2] device */
    float *inv_freq_local;           /* [head_dim / 2] device: Gemma 3's sliding layers, or NULL */
    struct forward_ctx fwd;          /* the buffers below, lent to forward() */
    struct bk_batch dev;             /* the staged batch; graphs replay against it */
    struct step_batch pad_batch;     /* all-padding decode batch for graph capture */
    struct sample_row *greedy_rows;  /* [cap_sample] rows used when the caller gives none */
    struct runner_pieces pieces;     /* piecewise graphs of mixed and prefill steps (none on
                                      * a rank of a tensor-parallel group: eager there) */
    size_t graph_bytes;              /* device memory the graphs took, measured */
    bool graphs_deferred;            /* --calculate-kv-scales: a graph bakes the fp8 KV scales
                                      * into its kernels' arguments, so the graphs are
                                      * captured after the first step measured them */
    bool forward_graphs;             /* the forward alone is captured too (not on a rank of
                                      * a tensor-parallel group: runner_tp runs whole steps) */
    struct runner_tp *tp;            /* tensor parallelism: the ranks run every step; the
                                      * fields above are then unused */
    /* the step between runner_launch and runner_finish */
    struct {
        bool active;
        struct step_batch *b;        /* borrowed from the caller until runner_finish */
        const struct sample_row *rows;
        bool split;                  /* launched the forward alone: finish samples */
    } launched;
};

int runner_backend_options(const struct model_config *cfg, const struct runner_options *o,
                           struct backend_options *bo)
{
    int largest = 0;

    if (cfg->num_layers < 1 || cfg->num_layers > MODEL_MAX_LAYERS || o->block_size < 1 ||
        cfg->num_kv_groups < 1 || cfg->num_kv_groups > KV_MAX_GROUPS)
        return -EINVAL;
    for (int i = 0; i < o->num_graph_sizes; i++)
        largest = MAX(largest, o->graph_sizes[i]);
    bo->max_tokens = MAX(o->max_num_batched_tokens, largest);
    bo->max_reqs = MAX(o->max_num_seqs, largest);
    bo->max_blocks_per_req = (o->max_model_len + o->block_size - 1) / o->block_size;
    bo->num_kv_groups = cfg->num_kv_groups;
    bo->vocab_size = cfg->vocab_size;
    return 0;
}

enum dtype runner_kv_dtype(const struct backend *be, enum dtype kv_cache_dtype)
{
    return kv_cache_dtype == DT_F32 ? be->ops->act_dtype : kv_cache_dtype;
}

size_t runner_kv_block_bytes(const struct model_config *cfg, const struct backend *be,
                             enum dtype kv_cache_dtype, int block_size)
{
    return (size_t)cfg->num_layers * 2 * block_size * cfg->num_kv_heads * cfg->head_dim *
           dtype_size(runner_kv_dtype(be, kv_cache_dtype));
}

static int capture_graphs(struct runner *r, char *err);
static size_t kv_cache_bytes(const struct runner *r);

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
static int forward_body(void *arg)
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
static int step_body(void *arg)
{
    struct runner *r = arg;
    int rc = forward_body(r);

    if (rc)
        return rc;
    /* a tensor-parallel rank but 0 has no logits (forward() runs the LM head on rank 0) */
    if (r->fwd.comm && r->fwd.comm->rank > 0)
        return 0;
    return sample_op(r);
}

/* The graph key of the forward alone at decode size `size` (backend_ops.graph_capture). */
static int forward_graph(int size)
{
    return -size;
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

/* How a step's batch is padded and staged. */
enum stage_kind {
    STAGE_EAGER,        /* to itself (or as the caller padded it) */
    STAGE_GRAPH,        /* a decode graph: padding requests, fixed bounds for its scalars */
    STAGE_PIECES,       /* piecewise graphs: padding tokens only, the real scalars (the
                         * eager attention reads them) */
};

/* Pads b to `size`, checks it fits our buffers and stages it. A decode graph step (capture
 * or replay) stages fixed bounds for the scalars a graph bakes in. */
static int stage(struct runner *r, struct step_batch *b, int size, enum stage_kind kind,
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
    int rc = size ? stage(r, b, size, STAGE_GRAPH, rows)
                  : stage(r, b, MAX(b->num_tokens, b->num_tokens_padded), STAGE_EAGER, rows);

    return rc ? rc : r->be->ops->stage_masks(r->be);
}

int runner__run(struct runner *r, int size, bool sample)
{
    if (size)
        return r->be->ops->graph_replay(r->be, size);
    return sample ? step_body(r) : forward_body(r);
}

int runner__fetch(struct runner *r, struct sample_result *results, int n)
{
    return r->be->ops->fetch_results(r->be, results, n);
}

int runner__capture_graphs(struct runner *r, char *err)
{
    return r->num_graphs || r->pieces.num ? capture_graphs(r, err) : 0;
}

int runner__num_graphs(const struct runner *r)
{
    return r->graphs_deferred ? 0 : r->num_graphs;
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
    return bucket >= 0 ? pieces_run(&r->pieces, r->be, bucket, b->num_tokens) : forward_body(r);
}

/* The whole staged step (forward and sample) outside the decode graphs. */
static int run_step(struct runner *r, const struct step_batch *b, int bucket)
{
    int rc;

    if (bucket < 0)
        return step_body(r);
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
    if ((rc = size ? stage(r, b, size, STAGE_GRAPH, rows)
                   : bucket >= 0 ? stage(r, b, r->pieces.sizes[bucket], STAGE_PIECES, rows)
                                 : stage(r, b, b->num_tokens, STAGE_EAGER, rows)))
        goto fail;
    if (r->launched.split)
        rc = size ? r->be->ops->graph_replay(r->be, forward_graph(size))
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
        if ((rc = capture_graphs(r, err)))
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
    if ((rc = stage(r, b, MAX(b->num_tokens, b->num_tokens_padded), STAGE_EAGER, NULL)) ||
        (rc = forward_body(r)))
        return rc;
    return r->be->ops->download(r->be, logits, r->fwd.logits,
                                (size_t)b->num_sample_padded * r->m->cfg.vocab_size * sizeof(float));
}

/* ---- creation ---- */

/* Blocks of group g's layers: its own pool's size, else num_blocks. */
static int group_blocks(const struct runner_options *o, int g)
{
    return o->group_num_blocks[g] > 0 ? o->group_num_blocks[g] : o->num_blocks;
}

static int check_config(const struct model_config *c, const struct runner_options *o, char *err)
{
    if (c->num_layers < 1 || c->num_layers > MODEL_MAX_LAYERS || c->hidden_size < 1 ||
        c->intermediate_size < 1 || c->vocab_size < 1 || c->num_heads < 1 ||
        c->num_kv_heads < 1 || c->num_heads % c->num_kv_heads || c->head_dim < 2 ||
        c->head_dim % 2) {
        errf(err, "runner: unsupported model shape (layers %d, hidden %d, heads %d/%d, "
             "head_dim %d)", c->num_layers, c->hidden_size, c->num_heads, c->num_kv_heads,
             c->head_dim);
        return -EINVAL;
    }
    /* model_config_parse fills the groups; a config built by hand must call model_kv_groups */
    if (c->num_kv_groups < 1 || c->num_kv_groups > KV_MAX_GROUPS) {
        errf(err, "runner: the model config has %d KV-cache groups (1 to %d; model_kv_groups "
             "fills them)", c->num_kv_groups, KV_MAX_GROUPS);
        return -EINVAL;
    }
    for (int l = 0; l < c->num_layers; l++)
        if (c->layer_kv_group[l] < 0 || c->layer_kv_group[l] >= c->num_kv_groups) {
            errf(err, "runner: layer %d is in KV-cache group %d of %d", l, c->layer_kv_group[l],
                 c->num_kv_groups);
            return -EINVAL;
        }
    if (o->block_size < 1 || o->num_blocks < 1 || o->max_num_batched_tokens < 1 ||
        o->max_num_seqs < 1 || o->max_model_len < 1 || o->num_graph_sizes < 0 ||
        o->num_piece_sizes < 0) {
        errf(err, "runner: block_size %d, num_blocks %d, max_num_batched_tokens %d, "
             "max_num_seqs %d and max_model_len %d must be positive", o->block_size,
             o->num_blocks, o->max_num_batched_tokens, o->max_num_seqs, o->max_model_len);
        return -EINVAL;
    }
    for (int g = 0; g < KV_MAX_GROUPS; g++)
        if (o->group_num_blocks[g] < 0) {
            errf(err, "runner: group_num_blocks[%d] %d is negative", g, o->group_num_blocks[g]);
            return -EINVAL;
        }
    for (int i = 0; i < o->num_graph_sizes; i++)
        if (o->graph_sizes[i] < 1 || o->graph_sizes[i] >= PIECES_KEY_BASE) {
            errf(err, "runner: graph size %d must be 1 to %d", o->graph_sizes[i],
                 PIECES_KEY_BASE - 1);
            return -EINVAL;
        }
    for (int g = 0; g < c->num_kv_groups; g++)
        if ((double)group_blocks(o, g) * o->block_size * c->num_kv_heads * c->head_dim > 1e15) {
            errf(err, "runner: KV cache of %d blocks of %d tokens (group %d) is too large",
                 group_blocks(o, g), o->block_size, g);
            return -EINVAL;
        }
    return 0;
}

/* A zeroed device buffer of n elements of `size` bytes. */
static void *dev_buf(struct runner *r, size_t n, size_t size, char *err)
{
    return r->be->ops->alloc(r->be, n * size, err);
}

/* Bytes of every layer's K and V cache, each sized for its group's blocks. */
static size_t kv_cache_bytes(const struct runner *r)
{
    const struct model_config *c = &r->m->cfg;
    size_t layer_block = runner_kv_block_bytes(c, r->be, r->opt.kv_cache_dtype, r->opt.block_size) /
                         c->num_layers, bytes = 0;

    for (int l = 0; l < c->num_layers; l++)
        bytes += layer_block * group_blocks(&r->opt, c->layer_kv_group[l]);
    return bytes;
}

/* The attention output starts as zeros: a piecewise step's padding tokens belong to no
 * request, so attention never writes their rows, and the o_proj piece reads whatever is
 * there. Rows once written hold a finite output of an earlier step; a fresh device buffer
 * could hold any bits, NaN among them, and a NaN row would reach a MoE router's top-k. */
static int zero_attn(struct runner *r, size_t bytes, char *err)
{
    void *zeros = calloc(1, bytes);
    int rc;

    if (!zeros) {
        errf(err, "runner: out of host memory (%zu MiB of zeros)", bytes >> 20);
        return -ENOMEM;
    }
    if ((rc = r->be->ops->upload(r->be, r->fwd.attn, zeros, bytes)))
        errf(err, "runner: zeroing the attention buffer failed");
    free(zeros);
    return rc;
}

static int alloc_buffers(struct runner *r, char *err)
{
    const struct model_config *c = &r->m->cfg;
    struct forward_ctx *f = &r->fwd;
    size_t e = dtype_size(r->be->ops->act_dtype), T = r->cap_tokens, S = r->cap_sample;
    size_t kv_e = dtype_size(runner_kv_dtype(r->be, r->opt.kv_cache_dtype));
    size_t block = (size_t)r->opt.block_size * c->num_kv_heads * c->head_dim;

    r->k_cache = calloc(c->num_layers, sizeof *r->k_cache);
    r->v_cache = calloc(c->num_layers, sizeof *r->v_cache);
    if (!r->k_cache || !r->v_cache) {
        errf(err, "runner: out of memory");
        return -ENOMEM;
    }
    /* a layer holds its own group's blocks: a window group's few blocks cost little */
    for (int l = 0; l < c->num_layers; l++) {
        size_t cache = block * group_blocks(&r->opt, c->layer_kv_group[l]);

        if (!(r->k_cache[l] = dev_buf(r, cache, kv_e, err)) ||
            !(r->v_cache[l] = dev_buf(r, cache, kv_e, err)))
            return -ENOMEM;
    }
    if (!(f->residual = dev_buf(r, T * c->hidden_size, e, err)) ||
        !(f->x = dev_buf(r, T * c->hidden_size, e, err)) ||
        !(f->xn = dev_buf(r, T * c->hidden_size, e, err)) ||
        !(f->qkv = dev_buf(r, T * (c->num_heads + 2 * c->num_kv_heads) * c->head_dim, e, err)) ||
        !(f->attn = dev_buf(r, T * c->num_heads * c->head_dim, e, err)) ||
        !(f->gate_up = dev_buf(r, T * 2 * c->intermediate_size, e, err)) ||
        !(f->act = dev_buf(r, T * c->intermediate_size, e, err)) ||
        !(f->sel_residual = dev_buf(r, S * c->hidden_size, e, err)) ||
        !(f->sel_x = dev_buf(r, S * c->hidden_size, e, err)) ||
        !(f->logits = dev_buf(r, S * c->vocab_size, sizeof(float), err)) ||
        !(r->inv_freq = dev_buf(r, c->head_dim / 2, sizeof(float), err)) ||
        (c->rope_local_theta > 0 &&
         !(r->inv_freq_local = dev_buf(r, c->head_dim / 2, sizeof(float), err))))
        return -ENOMEM;
    if (c->num_experts) {
        struct moe_params mp = { c->num_experts, c->num_experts_per_tok, c->hidden_size,
                                 c->moe_intermediate_size, c->shared_expert_intermediate_size,
                                 c->norm_topk_prob, NULL, c->moe_act, 0.0f, 0.0f };

        if (!(f->moe_work = dev_buf(r, moe_work_bytes(r->be, (int)T, &mp), 1, err)))
            return -ENOMEM;
    }
    return zero_attn(r, T * c->num_heads * c->head_dim * e, err);
}

/* The global inverse frequencies (rope_theta, scaled) and, for Gemma 3, the local ones of
 * sliding layers (rope_local_base_freq, never scaled, as transformers' local rotary). */
static int upload_inv_freq(struct runner *r, char *err)
{
    const struct model_config *c = &r->m->cfg;
    const struct rope_scaling none = { .type = ROPE_DEFAULT };
    int rd = c->rotary_dim ? c->rotary_dim : c->head_dim;
    size_t bytes = rd / 2 * sizeof(float);
    float *host = malloc(bytes);
    struct rope_scaling *rs = malloc(sizeof *rs);
    int rc = host && rs ? 0 : -ENOMEM;

    if (!rc) {
        *rs = c->rope_scaling;
        /* longrope: the long factors once the engine serves contexts beyond the original
         * window, for every position (vLLM's choice; transformers switches per forward pass
         * by the sequence's length), else the short ones */
        rs->use_long_factor = rs->type == ROPE_LONGROPE &&
                              r->opt.max_model_len > rs->original_max_position_embeddings;
        if (rs->use_long_factor)
            LOG(LL_INFO, "runner", "longrope: max_model_len %d > original_max_position_embeddings "
                "%d: the long factors for every position", r->opt.max_model_len,
                rs->original_max_position_embeddings);
        rc = rope_inv_freq(host, rd, c->rope_theta, rs, err);
    }
    if (!rc)
        rc = r->be->ops->upload(r->be, r->inv_freq, host, bytes);
    if (!rc && r->inv_freq_local &&
        !(rc = rope_inv_freq(host, rd, c->rope_local_theta, &none, err)))
        rc = r->be->ops->upload(r->be, r->inv_freq_local, host, bytes);
    free(host);
    free(rs);
    return rc;
}

/* A model whose family needs an op the backend lacks is refused here, in one line, rather
 * than run without it. */
static int check_ops(const struct model_config *c, const struct backend *be, char *err)
{
    const struct backend_ops *op = be->ops;
    const char *what = NULL, *name = NULL;

    if (c->mlp_act == MLP_GELU_TANH && !op->gelu_tanh_mul)
        what = "GeGLU (tanh GELU)", name = "gelu_tanh_mul";
    else if (c->scale_embeddings && !op->scale)
        what = "the embedding scale", name = "scale";
    else if (c->final_softcap > 0 && !op->softcap)
        what = "final logit soft-capping", name = "softcap";
    else if (c->num_experts && !op->moe)
        what = "the mixture-of-experts block", name = "moe";
    else if (!op->rope_ext && c->rotary_dim && c->rotary_dim != c->head_dim)
        what = "the partial rotary embedding (partial_rotary_factor)", name = "partial rope";
    else if (!op->rope_ext && (c->rope_scaling.type == ROPE_LONGROPE ||
                               c->rope_scaling.type == ROPE_YARN) &&
             c->rope_scaling.attention_factor != 1.0)
        what = c->rope_scaling.type == ROPE_YARN ? "yarn's attention_factor"
                                                 : "longrope's attention_factor",
        name = "scaled rope";
    else if (c->attn_sinks && !op->attn_sinks)
        what = "attention with sinks", name = "attention-sinks";
    else if (c->moe_act == MOE_ACT_SWIGLU_OAI && !op->moe_oai)
        what = "the MoE block with router and expert biases and the clamped SwiGLU",
        name = "gpt-oss moe";
    if (!what)
        return 0;
    errf(err, "%s: %s runs on the CPU backend only in this build (the %s backend has no %s op)",
         c->arch_name, what, op->name, name);
    return -ENOTSUP;
}

/* HF multiplies the embeddings by sqrt(hidden_size) as a tensor of the model's dtype. */
static float embed_scale(const struct model_config *c)
{
    float s = (float)sqrt((double)c->hidden_size);

    if (!c->scale_embeddings)
        return 0.0f;
    if (c->dtype == DT_BF16)
        return bf16_to_f32(f32_to_bf16(s));
    if (c->dtype == DT_F16)
        return f16_to_f32(f32_to_f16(s));
    return s;
}

/* The fp8 cache's per-layer scales: the checkpoint's self_attn.k_scale / v_scale, else 1.0
 * (vLLM's default when a checkpoint has none). */
static int kv_scales(struct runner *r, char *err)
{
    const struct model *m = r->m;

    r->k_scale = calloc(m->cfg.num_layers, sizeof *r->k_scale);
    r->v_scale = calloc(m->cfg.num_layers, sizeof *r->v_scale);
    if (!r->k_scale || !r->v_scale) {
        errf(err, "runner: out of memory");
        return -ENOMEM;
    }
    for (int l = 0; l < m->cfg.num_layers; l++) {
        const struct layer_tensors *lt = &m->layers[l];

        r->k_scale[l] = lt->k_scale.data ? model_scale_at(&lt->k_scale, 0) : 1.0f;
        r->v_scale[l] = lt->v_scale.data ? model_scale_at(&lt->v_scale, 0) : 1.0f;
    }
    return 0;
}

/* The piecewise graphs' buckets, for the start-up log: "16 32 64". */
static void bucket_list(const struct runner_pieces *pc, char *out, size_t cap)
{
    size_t len = 0;

    out[0] = '\0';
    for (int i = 0; i < pc->num && len < cap; i++)
        len += snprintf(out + len, cap - len, "%s%d", i ? " " : "", pc->sizes[i]);
}

/* The piecewise graphs of every bucket, each captured from an all-padding batch of that many
 * tokens that belong to no request. */
static int capture_pieces(struct runner *r, char *err)
{
    struct step_batch *d = &r->pad_batch;
    int rc;

    for (int i = 0; i < r->pieces.num; i++) {
        d->num_reqs = d->num_tokens = d->num_sample = 0;
        d->max_query_len = d->max_seq_len = 0;
        d->decode_only = false;
        d->query_start_loc[0] = 0;
        if ((rc = stage(r, d, r->pieces.sizes[i], STAGE_PIECES, NULL)) ||
            (rc = pieces_capture(&r->pieces, r->be, i))) {
            errf(err, "runner: capturing the piecewise graphs of %d tokens failed (%s)",
                 r->pieces.sizes[i], strerror(-rc));
            return rc;
        }
    }
    return 0;
}

/* One decode graph per size, each captured from an all-padding decode batch of that size;
 * then the piecewise graphs of mixed and prefill steps per token-count bucket. */
static int capture_graphs(struct runner *r, char *err)
{
    struct step_batch *d = &r->pad_batch;
    int largest = r->num_graphs ? r->graph_sizes[r->num_graphs - 1] : 0, rc;
    int largest_bucket = r->pieces.num ? r->pieces.sizes[r->pieces.num - 1] : 0;
    size_t free0 = 0, free1 = 0, total = 0;
    char buckets[PIECES_MAX_BUCKETS * 10];
    bool measured;

    if (r->fwd.calc_kv_scales) {
        r->graphs_deferred = true;
        LOG(LL_INFO, "runner", "--calculate-kv-scales: the graphs wait for the scales of the "
            "first prefill (a graph keeps the scales it was captured with)");
        return 0;
    }
    measured = r->be->ops->mem_info && !r->be->ops->mem_info(r->be, &free0, &total);
    if (!d->cap_tokens &&
        (rc = batch_init(d, MAX(largest, largest_bucket), MAX(largest, 1), r->m->cfg.num_kv_groups,
                         r->max_blocks_per_req)))
        return rc;
    /* with a communicator, one eager step of the largest padding batch first: the
     * collectives' first use (where NCCL may connect to its peers) stays out of a capture */
    if (r->fwd.comm) {
        d->num_reqs = d->num_tokens = d->num_sample = 0;
        d->decode_only = largest > 0;
        d->query_start_loc[0] = 0;
        if ((rc = largest ? stage(r, d, largest, STAGE_GRAPH, NULL)
                          : stage(r, d, largest_bucket, STAGE_PIECES, NULL)) ||
            (rc = forward(&r->fwd, &r->dev)) ||
            (rc = comm_wait(r->fwd.comm))) {
            errf(err, "runner: the warm-up step before the graphs failed (%s)", strerror(-rc));
            return rc;
        }
    }
    for (int i = 0; i < r->num_graphs; i++) {
        int size = r->graph_sizes[i];

        d->num_reqs = d->num_tokens = d->num_sample = 0;
        d->decode_only = true;
        d->query_start_loc[0] = 0;
        if ((rc = stage(r, d, size, STAGE_GRAPH, NULL)) ||
            (rc = r->be->ops->graph_capture(r->be, size, step_body, r)) ||
            (r->forward_graphs &&
             (rc = r->be->ops->graph_capture(r->be, forward_graph(size), forward_body, r)))) {
            errf(err, "runner: capturing the graph of decode batch size %d failed (%s)", size,
                 strerror(-rc));
            return rc;
        }
    }
    if ((rc = capture_pieces(r, err)))
        return rc;
    if (measured && !r->be->ops->mem_info(r->be, &free1, &total))
        r->graph_bytes = free0 > free1 ? free0 - free1 : 0;
    if (r->num_graphs)
        LOG(LL_INFO, "runner", "captured %d graphs%s, decode batches of 1 to %d",
            r->num_graphs, r->forward_graphs ? " and their forwards alone (steps with masks)" : "",
            largest);
    bucket_list(&r->pieces, buckets, sizeof buckets);
    if (r->pieces.num)
        LOG(LL_INFO, "runner", "captured %d piecewise graphs (%d pieces for each of %d buckets) "
            "for mixed and prefill steps of up to %d tokens: %s", r->pieces.num *
            (r->m->cfg.num_layers + 1), r->m->cfg.num_layers + 1, r->pieces.num, largest_bucket,
            buckets);
    LOG(LL_INFO, "runner", "the graphs took %.1f MiB", r->graph_bytes / 1048576.0);
    return 0;
}

int runner_create(struct runner **out, struct backend *be, const struct model *m,
                  const struct runner_options *o, char *err)
{
    const struct model_config *c = &m->cfg;
    bool graphs = be->ops->graph_capture && be->ops->graph_replay && !o->enforce_eager;
    struct runner *r;
    int rc;

    *out = NULL;
    if ((rc = check_config(c, o, err)) || (rc = check_ops(c, be, err)))
        return rc;
    if (!(r = calloc(1, sizeof *r))) {
        errf(err, "runner: out of memory");
        return -ENOMEM;
    }
    r->be = be;
    r->m = m;
    r->opt = *o;
    r->max_blocks_per_req = (o->max_model_len + o->block_size - 1) / o->block_size;
    if (o->tensor_parallel_size > 1) {
        if ((rc = runner_tp_create(&r->tp, be, m, o, err)))
            goto fail;
        *out = r;
        return 0;
    }
    /* graphs only where the backend has them; sizes sorted, duplicates dropped */
    if (graphs && o->num_graph_sizes) {
        if (!(r->graph_sizes = malloc(o->num_graph_sizes * sizeof *r->graph_sizes))) {
            rc = -ENOMEM;
            goto fail;
        }
        memcpy(r->graph_sizes, o->graph_sizes, o->num_graph_sizes * sizeof *r->graph_sizes);
        r->num_graphs = graph_sizes_sort(r->graph_sizes, o->num_graph_sizes, INT32_MAX);
    }
    r->opt.graph_sizes = r->graph_sizes;
    r->opt.num_graph_sizes = r->num_graphs;
    r->cap_tokens = MAX(o->max_num_batched_tokens, r->num_graphs ? r->graph_sizes[r->num_graphs - 1] : 0);
    r->cap_sample = MAX(o->max_num_seqs, r->num_graphs ? r->graph_sizes[r->num_graphs - 1] : 0);
    r->greedy_rows = calloc(r->cap_sample, sizeof *r->greedy_rows);
    if (!r->greedy_rows) {
        rc = -ENOMEM;
        goto fail;
    }
    for (int i = 0; i < r->cap_sample; i++)
        r->greedy_rows[i] = (struct sample_row){ .top_p = 1.0f, .repetition_penalty = 1.0f,
                                                 .num_logprobs = -1 };
    double t0 = now_s(), t_weights, t_buffers;
    if ((rc = weights_upload(&r->w, be, m, o->quantize_fp8, err)))
        goto fail;
    t_weights = now_s();
    if ((rc = alloc_buffers(r, err)) || (rc = upload_inv_freq(r, err)))
        goto fail;
    if (runner_kv_dtype(be, o->kv_cache_dtype) == DT_F8_E4M3 && (rc = kv_scales(r, err)))
        goto fail;
    if (o->calculate_kv_scales && (!r->k_scale || !be->ops->absmax)) {
        errf(err, "runner: --calculate-kv-scales needs --kv-cache-dtype fp8 on a backend that "
             "can measure K and V (the absmax op: cpu and cuda)");
        rc = -EINVAL;
        goto fail;
    }
    t_buffers = now_s();
    r->fwd.be = be;
    r->fwd.cfg = c;
    r->fwd.w = &r->w;
    r->fwd.layer_group = c->layer_kv_group;
    r->fwd.k_cache = r->k_cache;
    r->fwd.v_cache = r->v_cache;
    r->fwd.cache = (struct cache_layout){ o->num_blocks, o->block_size, c->num_kv_heads,
                                          c->head_dim, runner_kv_dtype(be, o->kv_cache_dtype),
                                          1.0f, 1.0f };
    for (int g = 0; g < c->num_kv_groups; g++)
        r->fwd.group_blocks[g] = group_blocks(o, g);
    r->fwd.k_scale = r->k_scale;
    r->fwd.v_scale = r->v_scale;
    r->fwd.calc_kv_scales = o->calculate_kv_scales;
    r->fwd.inv_freq = r->inv_freq;
    r->fwd.inv_freq_local = r->inv_freq_local;
    r->fwd.embed_scale = embed_scale(c);
    r->fwd.rope_mscale = c->rope_scaling.type == ROPE_LONGROPE || c->rope_scaling.type == ROPE_YARN
                         ? (float)c->rope_scaling.attention_factor : 1.0f;
    r->fwd.fused_rope_cache = o->fused_rope_cache;
    r->fwd.comm = o->comm;
    r->forward_graphs = !(o->comm && o->comm->size > 1);
    /* piecewise graphs: not on a rank of a group of several, whose steps stay eager but for
     * the decode graphs (runner_tp.c runs one graph or one forward a step) */
    if (graphs && r->forward_graphs &&
        (rc = pieces_init(&r->pieces, o->piece_sizes, o->num_piece_sizes,
                          o->max_num_batched_tokens, &r->fwd, &r->dev))) {
        if (rc == -EINVAL)
            errf(err, "runner: piecewise graph sizes must be positive");
        goto fail;
    }
    /* a rank of a group of several captures later, together with its peers (runner_tp.c):
     * a graph's collectives need every rank capturing at once, in the same order */
    if ((r->num_graphs || r->pieces.num) && !(o->comm && o->comm->size > 1) &&
        (rc = capture_graphs(r, err)))
        goto fail;
    LOG(LL_INFO, "runner", "%s on %s: %d layers, KV blocks of %d tokens (%zu MiB, %s), %d KV "
        "groups; weights %.2f s, KV cache and buffers %.2f s, %d decode graphs and %d "
        "piecewise buckets %.2f s", c->arch_name,
        be->ops->name, c->num_layers, o->block_size, kv_cache_bytes(r) >> 20,
        dtype_name(runner_kv_dtype(be, o->kv_cache_dtype)), r->m->cfg.num_kv_groups,
        t_weights - t0, t_buffers - t_weights, r->num_graphs, r->pieces.num, now_s() - t_buffers);
    *out = r;
    return 0;
fail:
    if (rc == -ENOMEM && err && !err[0])
        errf(err, "runner: out of memory");
    runner_destroy(r);
    return rc;
}

void runner_destroy(struct runner *r)
{
    struct backend *be;
    void *bufs[16];
    int n = 0;

    if (!r)
        return;
    be = r->be;
    runner_tp_destroy(r->tp);
    for (int l = 0; l < r->m->cfg.num_layers; l++) {
        if (r->k_cache && r->k_cache[l])
            be->ops->free(be, r->k_cache[l]);
        if (r->v_cache && r->v_cache[l])
            be->ops->free(be, r->v_cache[l]);
    }
    free(r->k_cache);
    free(r->v_cache);
    free(r->k_scale);
    free(r->v_scale);
    bufs[n++] = r->fwd.residual;
    bufs[n++] = r->fwd.x;
    bufs[n++] = r->fwd.xn;
    bufs[n++] = r->fwd.qkv;
    bufs[n++] = r->fwd.attn;
    bufs[n++] = r->fwd.gate_up;
    bufs[n++] = r->fwd.act;
    bufs[n++] = r->fwd.sel_residual;
    bufs[n++] = r->fwd.sel_x;
    bufs[n++] = r->fwd.logits;
    bufs[n++] = r->inv_freq;
    bufs[n++] = r->inv_freq_local;
    bufs[n++] = r->fwd.moe_work;
    for (int i = 0; i < n; i++)
        if (bufs[i])
            be->ops->free(be, bufs[i]);
    weights_free(&r->w, be);
    batch_fini(&r->pad_batch);
    pieces_fini(&r->pieces);
    free(r->greedy_rows);
    free(r->graph_sizes);
    free(r);
}

void runner_kv_scales(const struct runner *r, int layer, float *k_scale, float *v_scale)
{
    bool ok;

    if (r->tp) {
        runner_kv_scales(runner_tp_rank(r->tp, 0), layer, k_scale, v_scale);
        return;
    }
    ok = r->k_scale && layer >= 0 && layer < r->m->cfg.num_layers;

    *k_scale = ok ? r->k_scale[layer] : 1.0f;
    *v_scale = ok ? r->v_scale[layer] : 1.0f;
}

uint64_t runner_piece_steps(const struct runner *r)
{
    return r->tp ? 0 : r->pieces.steps;
}

int runner_max_blocks_per_req(const struct runner *r)
{
    return r->max_blocks_per_req;
}

int runner_layer_cache(const struct runner *r, int layer, void **k_cache, void **v_cache)
{
    if (r->tp)
        return -ENOTSUP;   /* each rank holds its KV heads only */
    if (layer < 0 || layer >= r->m->cfg.num_layers)
        return -EINVAL;
    *k_cache = r->k_cache[layer];
    *v_cache = r->v_cache[layer];
    return 0;
}

int runner_num_ranks(const struct runner *r)
{
    return r->tp ? runner_tp_size(r->tp) : 1;
}

void runner_rank_info(const struct runner *r, int rank, struct runner_rank_info *out)
{
    if (r->tp) {
        runner_tp_rank_info(r->tp, rank, out);
        return;
    }
    memset(out, 0, sizeof *out);
    out->kv_cache_bytes = kv_cache_bytes(r);
    out->weights_bytes = weights_bytes(&r->m->cfg, dtype_size(r->be->ops->act_dtype),
                                      r->m->cfg.quant != QUANT_NONE || r->opt.quantize_fp8);
    out->graph_bytes = r->graph_bytes;
}
