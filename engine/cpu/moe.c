/* moe.c — a mixture-of-experts block, CPU reference (Mixtral, Qwen2-MoE, Qwen3-MoE, gpt-oss
 * as transformers computes them): router logits (+ gpt-oss's bias) → softmax in f32 → the
 * top-k experts of each row (their weights renormalized to sum 1 when asked: gpt-oss's
 * softmax over its top-k logits) → for each expert in index order, its rows gathered, its
 * gated MLP (SwiGLU, or gpt-oss's clamped one with biases) run on them with the threaded
 * matmul (gpt-oss's experts read as published, input-major: matmul_t.c), and the weighted
 * result added back to each row; then Qwen2-MoE's shared expert on
 * every row, times sigmoid(x · shared_gate). The loop over experts is the reference a grouped
 * GEMM on the GPU is checked against. */
#include <errno.h>
#include <math.h>

#include "engine/cpu/cpu_ops.h"

/* Work layout (moe_cpu_work_bytes): logits [n, E] | ids [n, k] | weights [n, k] | rows [n] |
 * row weights [n] | xs [n, hidden] | gate_up [n, 2 ffn] | act [n, ffn] | ys [n, hidden] */
struct moe_work {
    float *logits;
    int32_t *ids;
    float *w;
    int32_t *rows;
    float *row_w;
    float *xs, *gu, *act, *ys;
};

static struct moe_work split(void *work, int n, const struct moe_params *p)
{
    float *f = work;
    struct moe_work w;

    w.logits = f;              f += (size_t)n * p->num_experts;
    w.ids = (int32_t *)f;      f += (size_t)n * p->top_k;
    w.w = f;                   f += (size_t)n * p->top_k;
    w.rows = (int32_t *)f;     f += n;
    w.row_w = f;               f += n;
    w.xs = f;                  f += (size_t)n * p->hidden;
    w.gu = f;                  f += (size_t)n * 2 * MAX(p->ffn, p->shared_ffn);
    w.act = f;                 f += (size_t)n * MAX(p->ffn, p->shared_ffn);
    w.ys = f;
    return w;
}

/* The scratch of up to n rows: the router's logits, the k ids and weights per row, and one
 * expert's gathered rows, gate_up, activation and output (the larger of the experts' and the
 * shared expert's ffn). */
size_t moe_cpu_work_bytes(int n, const struct moe_params *p)
{
    int f = MAX(p->ffn, p->shared_ffn);

    return (size_t)n * (p->num_experts + 2 * p->top_k + 2 * p->hidden + 3 * f + 2) * 4;
}

/* Softmax of one row of logits, then its k largest (the lower id first among equals), in
 * descending order, renormalized when asked. */
static void route_row(const float *logits, int E, int k, bool renormalize, int32_t *ids, float *w)
{
    float m = -INFINITY, sum = 0.0f, p[4096];

    for (int e = 0; e < E; e++)
        m = MAX(m, logits[e]);
    for (int e = 0; e < E; e++)
        sum += p[e] = expf(logits[e] - m);
    for (int e = 0; e < E; e++)
        p[e] /= sum;
    for (int j = 0; j < k; j++) {
        int best = -1;

        for (int e = 0; e < E; e++) {
            bool taken = false;
            for (int i = 0; i < j; i++)
                taken |= ids[i] == e;
            if (!taken && (best < 0 || p[e] > p[best]))
                best = e;
        }
        ids[j] = best;
        w[j] = p[best];
    }
    if (renormalize) {
        float s = 0.0f;
        for (int j = 0; j < k; j++)
            s += w[j];
        for (int j = 0; j < k; j++)
            w[j] /= s;
    }
}

/* out += sigmoid(x · gate) * shared_mlp(x) over all n rows (Qwen2-MoE's shared expert). */
static int shared_expert(struct threadpool *tp, float *out, const float *x,
                         const struct moe_weights *mw, int n, const struct moe_params *p,
                         struct moe_work *w)
{
    int H = p->hidden, rc;

    if ((rc = matmul_cpu(tp, w->gu, x, mw->shared_gate_up, NULL, n)) ||
        (rc = silu_mul_cpu(w->act, w->gu, n, p->shared_ffn)) ||
        (rc = matmul_cpu(tp, w->ys, w->act, mw->shared_down, NULL, n)) ||
        (rc = matmul_cpu(tp, w->row_w, x, mw->shared_gate, NULL, n)))
        return rc;
    for (int t = 0; t < n; t++) {
        float g = 1.0f / (1.0f + expf(-w->row_w[t]));

        for (int d = 0; d < H; d++)
            out[(size_t)t * H + d] += g * w->ys[(size_t)t * H + d];
    }
    return 0;
}

/* Expert e's gated MLP of the m rows gathered in w->xs, into w->ys: its weights as the other
 * families publish them (matmul_cpu), or gpt-oss's as published (matmul_t_cpu, which hands
 * the activation [gate; up] rows the same way). */
static int expert_mlp(struct threadpool *tp, struct moe_work *w, const struct moe_weights *mw,
                      int e, int m, const struct moe_params *p)
{
    const struct bk_weight *gu_b = mw->gate_up_bias ? &mw->gate_up_bias[e] : NULL;
    const struct bk_weight *dn_b = mw->down_bias ? &mw->down_bias[e] : NULL;
    int rc;

    if ((rc = mw->oai_published ? matmul_t_cpu(tp, w->gu, w->xs, &mw->gate_up[e], gu_b, m, true)
                                : matmul_cpu(tp, w->gu, w->xs, &mw->gate_up[e], gu_b, m)) ||
        (rc = p->act == MOE_ACT_SWIGLU_OAI
              ? swiglu_oai_mul_cpu(w->act, w->gu, m, p->ffn, p->swiglu_alpha, p->swiglu_limit)
              : silu_mul_cpu(w->act, w->gu, m, p->ffn)))
        return rc;
    return mw->oai_published ? matmul_t_cpu(tp, w->ys, w->act, &mw->down[e], dn_b, m, false)
                             : matmul_cpu(tp, w->ys, w->act, &mw->down[e], dn_b, m);
}

/* The experts' shapes: [2 ffn, hidden] and [hidden, ffn], or transposed as gpt-oss publishes
 * them. A wrong one is -EINVAL, not a read out of bounds. */
static bool experts_fit(const struct moe_weights *mw, const struct moe_params *p)
{
    int H = p->hidden, F = p->ffn;

    for (int e = 0; e < p->num_experts; e++) {
        const struct bk_weight *gu = &mw->gate_up[e], *dn = &mw->down[e];
        bool ok = mw->oai_published
                  ? gu->rows == H && gu->cols == 2 * F && dn->rows == F && dn->cols == H
                  : gu->rows == 2 * F && gu->cols == H && dn->rows == H && dn->cols == F;

        if (!ok)
            return false;
    }
    return true;
}

int moe_cpu(struct threadpool *tp, float *out, const float *x, const struct moe_weights *mw,
            int n, const struct moe_params *p)
{
    struct moe_work w = split(p->work, n, p);
    const struct bk_weight *router = mw->router;
    int E = p->num_experts, k = p->top_k, H = p->hidden, rc;

    if (E < 1 || E > 4096 || k < 1 || k > E || router->rows != E || router->cols != H)
        return -EINVAL;
    if ((mw->gate_up_bias == NULL) != (mw->down_bias == NULL) ||
        (p->act != MOE_ACT_SILU && p->act != MOE_ACT_SWIGLU_OAI) || !experts_fit(mw, p))
        return -EINVAL;
    if ((rc = matmul_cpu(tp, w.logits, x, router, mw->router_bias, n)))
        return rc;
    for (int t = 0; t < n; t++)
        route_row(w.logits + (size_t)t * E, E, k, p->renormalize, w.ids + (size_t)t * k,
                  w.w + (size_t)t * k);
    memset(out, 0, (size_t)n * H * sizeof *out);
    for (int e = 0; e < E; e++) {
        int m = 0;

        for (int t = 0; t < n; t++)
            for (int j = 0; j < k; j++)
                if (w.ids[(size_t)t * k + j] == e) {
                    w.rows[m] = t;
                    w.row_w[m++] = w.w[(size_t)t * k + j];
                }
        if (m == 0)
            continue;
        for (int i = 0; i < m; i++)
            memcpy(w.xs + (size_t)i * H, x + (size_t)w.rows[i] * H, (size_t)H * sizeof *x);
        if ((rc = expert_mlp(tp, &w, mw, e, m, p)))
            return rc;
        for (int i = 0; i < m; i++) {
            float *o = out + (size_t)w.rows[i] * H;
            const float *y = w.ys + (size_t)i * H;

            for (int d = 0; d < H; d++)
                o[d] += w.row_w[i] * y[d];
        }
    }
    if (p->shared_ffn && (!mw->shared_gate_up || !mw->shared_down || !mw->shared_gate))
        return -EINVAL;
    return p->shared_ffn ? shared_expert(tp, out, x, mw, n, p, &w) : 0;
}
