/* tp_shard.c — a rank's slices of a model's tensors (tp_shard.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tp_shard.h"

int tp_shard_check(const struct model_config *c, int n, char *err)
{
    int H = c->num_heads, KV = c->num_kv_heads;

    if (n < 1) {
        errf(err, "--tensor-parallel-size %d must be at least 1", n);
        return -EINVAL;
    }
    if (n == 1)
        return 0;
    if (c->num_experts) {
        errf(err, "--tensor-parallel-size %d: %s is a mixture-of-experts model and its experts "
             "are not sharded yet; use --tensor-parallel-size 1", n, c->arch_name);
        return -EINVAL;
    }
    if (c->quant != QUANT_NONE) {
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
    if (c->intermediate_size % n) {
        errf(err, "--tensor-parallel-size %d does not divide the model's intermediate_size %d",
             n, c->intermediate_size);
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

int tp_shard_create(struct tp_shard *s, const struct model *m, int rank, int n, char *err)
{
    const struct model_config *c = &m->cfg;
    int H = c->num_heads, KV = c->num_kv_heads, D = c->head_dim, ffn = c->intermediate_size;
    int h = H / n, kv = KV >= n ? KV / n : 1, kv0 = rank * KV / n, rc;

    memset(s, 0, sizeof *s);
    if ((rc = tp_shard_check(c, n, err)))
        return rc;
    s->m = *m;
    s->m.cfg.num_heads = h;
    s->m.cfg.num_kv_heads = kv;
    s->m.cfg.intermediate_size = ffn / n;
    s->m.layers = calloc(c->num_layers, sizeof *s->m.layers);
    s->copies = calloc(2 * (size_t)c->num_layers, sizeof *s->copies);
    if (!s->m.layers || !s->copies) {
        tp_shard_free(s);
        errf(err, "tensor parallelism: out of memory");
        return -ENOMEM;
    }
    for (int l = 0; l < c->num_layers; l++) {
        const struct layer_tensors *a = &m->layers[l];
        struct layer_tensors *b = &s->m.layers[l];

        if (a->qkv.data || a->gate_up.data) {
            tp_shard_free(s);
            errf(err, "--tensor-parallel-size %d: %s publishes fused qkv / gate_up tensors, "
                 "which are not sharded yet; use --tensor-parallel-size 1", n, c->arch_name);
            return -EINVAL;
        }
        *b = *a;
        b->q = rows_of(&a->q, (int64_t)rank * h * D, (int64_t)h * D);
        b->k = rows_of(&a->k, (int64_t)kv0 * D, (int64_t)kv * D);
        b->v = rows_of(&a->v, (int64_t)kv0 * D, (int64_t)kv * D);
        b->q_bias = rows_of(&a->q_bias, (int64_t)rank * h * D, (int64_t)h * D);
        b->k_bias = rows_of(&a->k_bias, (int64_t)kv0 * D, (int64_t)kv * D);
        b->v_bias = rows_of(&a->v_bias, (int64_t)kv0 * D, (int64_t)kv * D);
        b->gate = rows_of(&a->gate, (int64_t)rank * (ffn / n), ffn / n);
        b->up = rows_of(&a->up, (int64_t)rank * (ffn / n), ffn / n);
        if ((rc = cols_of(s, &b->o, &a->o, (int64_t)rank * h * D, (int64_t)h * D, err)) ||
            (rc = cols_of(s, &b->down, &a->down, (int64_t)rank * (ffn / n), ffn / n, err))) {
            tp_shard_free(s);
            return rc;
        }
    }
    return 0;
}

void tp_shard_free(struct tp_shard *s)
{
    for (int i = 0; i < s->num_copies; i++)
        free(s->copies[i]);
    free(s->copies);
    free(s->m.layers);
    memset(s, 0, sizeof *s);
}
