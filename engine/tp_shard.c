/* tp_shard.c — a rank's slices of a model's tensors (tp_shard.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tp_shard.h"

/* Whether some layer has a dense MLP (intermediate_size): all of them but a MoE model's
 * sparse layers. */
static bool has_dense_layer(const struct model_config *c)
{
    for (int l = 0; l < c->num_layers; l++)
        if (!c->num_experts || !c->layer_moe[l])
            return true;
    return false;
}

int tp_shard_check(const struct model_config *c, int n, char *err)
{
    int H = c->num_heads, KV = c->num_kv_heads;

    if (n < 1) {
        errf(err, "--tensor-parallel-size %d must be at least 1", n);
        return -EINVAL;
    }
    if (n == 1)
        return 0;
    if (model_fp8_weights(c)) {
        errf(err, "--tensor-parallel-size %d: the checkpoint's fp8 weights (quantization_config) "
             "are not sharded yet; use --tensor-parallel-size 1", n);
        return -EINVAL;
    }
    if (H % n) {
        errf(err, "--tensor-parallel-size %d does not divide the model's %d attention heads", n, H);
        return -EINVAL;
    }
    if (KV >= n ? KV % n : n % KV) {
        errf(err, "--tensor-parallel-size %d and the model's %d KV heads: one must divide the "
             "other (KV heads are split, or replicated when they are fewer than the ranks)",
             n, KV);
        return -EINVAL;
    }
    if (has_dense_layer(c) && c->intermediate_size % n) {
        errf(err, "--tensor-parallel-size %d does not divide the model's intermediate_size %d",
             n, c->intermediate_size);
        return -EINVAL;
    }
    /* MoE: every expert is split by its intermediate size (each rank holds a slice of every
     * expert, the router replicated), not spread over the ranks (expert parallelism) */
    if (c->num_experts && c->moe_intermediate_size % n) {
        errf(err, "--tensor-parallel-size %d does not divide the model's moe_intermediate_size "
             "%d (each expert is split by it)", n, c->moe_intermediate_size);
        return -EINVAL;
    }
    if (c->num_experts && c->shared_expert_intermediate_size % n) {
        errf(err, "--tensor-parallel-size %d does not divide the model's "
             "shared_expert_intermediate_size %d", n, c->shared_expert_intermediate_size);
        return -EINVAL;
    }
    return 0;
}

/* Rows [r0, r0 + rows) of t (a matrix, or a vector when 1-D): a view, no copy. */
static struct tensor_ref rows_of(const struct tensor_ref *t, int64_t r0, int64_t rows)
{
    struct tensor_ref s = *t;
    size_t row = t->ndim > 1 ? (size_t)t->shape[1] * dtype_size(t->dtype) : dtype_size(t->dtype);

    if (!t->data)
        return s;
    s.data = (const char *)t->data + (size_t)r0 * row;
    s.shape[0] = rows;
    s.nbytes = (size_t)rows * row;
    return s;
}

/* Columns [c0, c0 + cols) of the matrix t, copied (a strided slice). */
static int cols_of(struct tp_shard *s, struct tensor_ref *out, const struct tensor_ref *t,
                   int64_t c0, int64_t cols, char *err)
{
    size_t e = dtype_size(t->dtype), rows = (size_t)t->shape[0], width = (size_t)cols * e;
    char *p;

    if (t->ndim != 2 || c0 + cols > t->shape[1]) {
        errf(err, "tensor parallelism: %s is not a matrix with %lld columns", t->name,
             (long long)(c0 + cols));
        return -EINVAL;
    }
    if (!(p = malloc(rows * width))) {
        errf(err, "tensor parallelism: out of memory for a slice of %s", t->name);
        return -ENOMEM;
    }
    for (size_t r = 0; r < rows; r++)
        memcpy(p + r * width, (const char *)t->data + (r * t->shape[1] + c0) * e, width);
    s->copies[s->num_copies++] = p;
    *out = *t;
    out->data = p;
    out->shape[1] = cols;
    out->nbytes = rows * width;
    return 0;
}

void tp_shard_config(const struct model_config *c, int n, struct model_config *out)
{
    *out = *c;
    out->num_heads = c->num_heads / n;
    out->num_kv_heads = c->num_kv_heads >= n ? c->num_kv_heads / n : 1;
    out->intermediate_size = c->intermediate_size / n;
    out->moe_intermediate_size = c->moe_intermediate_size / n;
    out->shared_expert_intermediate_size = c->shared_expert_intermediate_size / n;
}

/* A zero vector in place of a bias that rank 0 alone adds (see tp_shard_create): the moe
 * op takes every expert's biases or none. One buffer of the shard serves every layer. */
static int zero_bias(struct tp_shard *s, struct tensor_ref *out, const struct tensor_ref *t,
                     char *err)
{
    if (!t->data)
        return 0;
    if (!s->zeros) {
        if (!(s->zeros = calloc((size_t)s->m.cfg.hidden_size, sizeof(float)))) {
            errf(err, "tensor parallelism: out of memory");
            return -ENOMEM;
        }
    }
    if (t->ndim != 1 || t->shape[0] > s->m.cfg.hidden_size) {
        errf(err, "tensor parallelism: %s is not a bias of the hidden size", t->name);
        return -EINVAL;
    }
    *out = *t;
    out->data = s->zeros;
    return 0;
}

/* A gpt-oss expert as published, input-major with gate and up interleaved (gate_up_t
 * [hidden, 2 ffn], column 2i gate i, 2i + 1 up i): the rank's ffn slice [r f, (r + 1) f) is
 * the contiguous columns [2 r f, 2 (r + 1) f) of gate_up_t (copied) and of its bias (a view),
 * and rows [r f, (r + 1) f) of down_t (a view). down's bias is rank 0's alone: the ranks'
 * partial sums are all-reduced, so a bias on each would be added n times. */
static int shard_oai_expert(struct tp_shard *s, struct expert_tensors *y,
                            const struct expert_tensors *x, int rank, int f, char *err)
{
    int rc;

    y->gate_up_bias = rows_of(&x->gate_up_bias, 2 * (int64_t)rank * f, 2 * (int64_t)f);
    y->down_t = rows_of(&x->down_t, (int64_t)rank * f, f);
    if ((rc = cols_of(s, &y->gate_up_t, &x->gate_up_t, 2 * (int64_t)rank * f, 2 * (int64_t)f,
                      err)))
        return rc;
    y->down_bias = x->down_bias;
    return rank == 0 ? 0 : zero_bias(s, &y->down_bias, &x->down_bias, err);
}

/* A MoE layer's share: every expert's gate and up rows [r0, r0 + f) (views) and down
 * columns (copied), the shared expert's likewise; router and shared gate replicated. */
static int shard_experts(struct tp_shard *s, struct layer_tensors *b, const struct layer_tensors *a,
                         int rank, char *err)
{
    const struct model_config *c = &s->m.cfg;    /* already the rank's sizes */
    int E = c->num_experts, f = c->moe_intermediate_size, sf = c->shared_expert_intermediate_size;
    int rc;

    if (!(b->experts = calloc(E, sizeof *b->experts))) {
        errf(err, "tensor parallelism: out of memory");
        return -ENOMEM;
    }
    for (int e = 0; e < E; e++) {
        const struct expert_tensors *x = &a->experts[e];
        struct expert_tensors *y = &b->experts[e];

        if (x->gate_up_t.data) {
            if ((rc = shard_oai_expert(s, y, x, rank, f, err)))
                return rc;
            continue;
        }
        y->gate = rows_of(&x->gate, (int64_t)rank * f, f);
        y->up = rows_of(&x->up, (int64_t)rank * f, f);
        if ((rc = cols_of(s, &y->down, &x->down, (int64_t)rank * f, f, err)))
            return rc;
    }
    if (!a->shared.down.data)
        return 0;
    b->shared.gate = rows_of(&a->shared.gate, (int64_t)rank * sf, sf);
    b->shared.up = rows_of(&a->shared.up, (int64_t)rank * sf, sf);
    return cols_of(s, &b->shared.down, &a->shared.down, (int64_t)rank * sf, sf, err);
}

/* Fused q/k/v and gate/up as published (Phi-3) become the rank's separate row views of
 * them: its q rows, its KV heads' k and v rows, its gate and up rows. */
static void shard_fused(struct layer_tensors *b, const struct layer_tensors *a,
                        const struct model_config *c, int rank, int n)
{
    int H = c->num_heads, KV = c->num_kv_heads, D = c->head_dim, ffn = c->intermediate_size;
    int h = H / n, kv = KV >= n ? KV / n : 1, kv0 = rank * KV / n, f = ffn / n;

    if (a->qkv.data) {
        b->q = rows_of(&a->qkv, (int64_t)rank * h * D, (int64_t)h * D);
        b->k = rows_of(&a->qkv, (int64_t)(H + kv0) * D, (int64_t)kv * D);
        b->v = rows_of(&a->qkv, (int64_t)(H + KV + kv0) * D, (int64_t)kv * D);
        memset(&b->qkv, 0, sizeof b->qkv);
    }
    if (a->gate_up.data) {
        b->gate = rows_of(&a->gate_up, (int64_t)rank * f, f);
        b->up = rows_of(&a->gate_up, (int64_t)ffn + (int64_t)rank * f, f);
        memset(&b->gate_up, 0, sizeof b->gate_up);
    }
}

int tp_shard_create(struct tp_shard *s, const struct model *m, int rank, int n, char *err)
{
    const struct model_config *c = &m->cfg;
    int H = c->num_heads, KV = c->num_kv_heads, D = c->head_dim, ffn = c->intermediate_size;
    int h = H / n, kv = KV >= n ? KV / n : 1, kv0 = rank * KV / n, rc;
    /* column slices copied: o and down of every layer, every expert's down and the shared one */
    size_t cap = (size_t)c->num_layers * (3 + (size_t)c->num_experts);

    memset(s, 0, sizeof *s);
    if ((rc = tp_shard_check(c, n, err)))
        return rc;
    s->m = *m;
    tp_shard_config(c, n, &s->m.cfg);
    s->m.layers = calloc(c->num_layers, sizeof *s->m.layers);
    s->copies = calloc(cap, sizeof *s->copies);
    if (!s->m.layers || !s->copies) {
        tp_shard_free(s);
        errf(err, "tensor parallelism: out of memory");
        return -ENOMEM;
    }
    for (int l = 0; l < c->num_layers; l++) {
        const struct layer_tensors *a = &m->layers[l];
        struct layer_tensors *b = &s->m.layers[l];

        *b = *a;
        b->experts = NULL;     /* the shard's own array, below: tp_shard_free frees it */
        b->q = rows_of(&a->q, (int64_t)rank * h * D, (int64_t)h * D);
        b->k = rows_of(&a->k, (int64_t)kv0 * D, (int64_t)kv * D);
        b->v = rows_of(&a->v, (int64_t)kv0 * D, (int64_t)kv * D);
        b->sinks = rows_of(&a->sinks, (int64_t)rank * h, h);   /* gpt-oss: one a head */
        /* gpt-oss's o_proj bias: rank 0's alone (o is row-parallel, its outputs summed) */
        if (rank > 0)
            memset(&b->o_bias, 0, sizeof b->o_bias);
        b->q_bias = rows_of(&a->q_bias, (int64_t)rank * h * D, (int64_t)h * D);
        b->k_bias = rows_of(&a->k_bias, (int64_t)kv0 * D, (int64_t)kv * D);
        b->v_bias = rows_of(&a->v_bias, (int64_t)kv0 * D, (int64_t)kv * D);
        b->gate = rows_of(&a->gate, (int64_t)rank * (ffn / n), ffn / n);
        b->up = rows_of(&a->up, (int64_t)rank * (ffn / n), ffn / n);
        shard_fused(b, a, c, rank, n);
        if ((rc = cols_of(s, &b->o, &a->o, (int64_t)rank * h * D, (int64_t)h * D, err)) ||
            (a->down.data &&
             (rc = cols_of(s, &b->down, &a->down, (int64_t)rank * (ffn / n), ffn / n, err))) ||
            (a->experts && (rc = shard_experts(s, b, a, rank, err)))) {
            tp_shard_free(s);
            return rc;
        }
    }
    return 0;
}

void tp_shard_free(struct tp_shard *s)
{
    for (int l = 0; s->m.layers && l < s->m.cfg.num_layers; l++)
        free(s->m.layers[l].experts);
    for (int i = 0; i < s->num_copies; i++)
        free(s->copies[i]);
    free(s->zeros);
    free(s->copies);
    free(s->m.layers);
    memset(s, 0, sizeof *s);
}
