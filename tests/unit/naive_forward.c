/* naive_forward.c — the tests' independent reference forward, in the llama2.c style: one
 * sequence, one token at a time, contiguous K/V arrays, no paging or slots, every sum in
 * double. It reads the model's tensors directly (struct model), so nothing of engine/ is
 * shared with what it checks but the fixture's tensors. */
#include <math.h>
#include <stdlib.h>

#include "tests/unit/random_model.h"
#include "tests/unit/naive_forward.h"

static double tv(const struct tensor_ref *t, size_t i)
{
    return fixture_tensor_at(t, i);
}

/* out[rows] = w[rows, cols] · x (+ bias) */
static void ref_linear(double *out, const struct tensor_ref *w, const struct tensor_ref *bias,
                       const double *x, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        double s = bias && bias->data ? tv(bias, r) : 0.0;
        for (int c = 0; c < cols; c++)
            s += tv(w, (size_t)r * cols + c) * x[c];
        out[r] = s;
    }
}

/* LlamaRMSNorm: x / rms(x) * w; GemmaRMSNorm (plus_one): x / rms(x) * (1 + w) */
static void ref_norm(double *out, const double *x, const struct tensor_ref *w, int n, double eps,
                     bool plus_one)
{
    double ss = 0.0, r;

    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    r = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++)
        out[i] = x[i] * r * (plus_one + tv(w, i));
}

/* HF's inverse frequencies, default / linear / llama3 / longrope, in double, over the rotary
 * dims; local: Gemma 3's sliding layers, rope_local_base_freq and no scaling. */
static void ref_inv_freq(const struct model_config *c, double *inv, bool local)
{
    const struct rope_scaling *s = &c->rope_scaling;
    int rd = c->rotary_dim ? c->rotary_dim : c->head_dim;

    for (int i = 0; i < rd / 2; i++) {
        double f = pow(local ? c->rope_local_theta : c->rope_theta, -2.0 * i / rd);

        if (s->type == ROPE_LONGROPE)
            f /= s->use_long_factor ? s->long_factor[i] : s->short_factor[i];

        if (local) {
            inv[i] = f;
            continue;
        }
        if (s->type == ROPE_LINEAR) {
            f /= s->factor;
        } else if (s->type == ROPE_YARN) {
            /* YaRN: the dim index at which a frequency turns `rot` times within the original
             * context is log_theta(omp / (2 pi rot)) * rd / 2; below beta_fast's index the
             * frequency stays, above beta_slow's it is divided by factor, linear between */
            double omp = s->original_max_position_embeddings;
            double lo = rd / 2.0 * log(omp / (2 * M_PI * s->beta_fast)) / log(c->rope_theta);
            double hi = rd / 2.0 * log(omp / (2 * M_PI * s->beta_slow)) / log(c->rope_theta);
            double t;

            if (s->truncate) {
                lo = floor(lo);
                hi = ceil(hi);
            }
            lo = lo < 0 ? 0 : lo;
            hi = hi > rd - 1 ? rd - 1 : hi;
            t = hi == lo ? (i - lo) / 0.001 : (i - lo) / (hi - lo);
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            f = (1 - t) * f + t * f / s->factor;
        } else if (s->type == ROPE_LLAMA3) {
            double old = s->original_max_position_embeddings, wavelen = 2 * M_PI / f;
            if (wavelen > old / s->low_freq_factor) {
                f /= s->factor;
            } else if (wavelen >= old / s->high_freq_factor) {
                double sm = (old / wavelen - s->low_freq_factor) /
                            (s->high_freq_factor - s->low_freq_factor);
                f = (1 - sm) * f / s->factor + sm * f;
            }
        }
        inv[i] = f;
    }
}

/* rotate_half over the first rd dims: pair (i, i + rd/2) turns by pos * inv[i], cos and sin
 * times ms (longrope's attention_factor); the dims from rd on pass through. */
static void ref_rope(double *v, int pos, const double *inv, int rd, double ms)
{
    for (int i = 0; i < rd / 2; i++) {
        double a = pos * inv[i], x0 = v[i], x1 = v[i + rd / 2];
        v[i] = (x0 * cos(a) - x1 * sin(a)) * ms;
        v[i + rd / 2] = (x1 * cos(a) + x0 * sin(a)) * ms;
    }
}

/* Rows [r0, r0 + rows) of a 2-D tensor (a part of a fused projection) as a tensor of its own. */
static struct tensor_ref rows_of(const struct tensor_ref *t, int r0, int rows)
{
    struct tensor_ref s = *t;
    size_t es = t->dtype == DT_F32 ? 4 : 2;

    s.data = (const char *)t->data + (size_t)r0 * t->shape[1] * es;
    s.shape[0] = rows;
    return s;
}

/* sqrt(hidden) as a tensor of the model's dtype, as Gemma multiplies its embeddings: rounded
 * to nearest-even at bf16's 8 bits or f16's 11 bits of mantissa. */
static double ref_embed_scale(const struct model_config *c)
{
    double s = sqrt(c->hidden_size);
    int bits = c->dtype == DT_BF16 ? 8 : c->dtype == DT_F16 ? 11 : 24, e;
    double m = frexp(s, &e);

    return ldexp(nearbyint(ldexp(m, bits)), e - bits);
}

/* PyTorch's gelu(approximate="tanh") */
static double ref_gelu_tanh(double x)
{
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

/* out[h] = gpt-oss's MLP of xn, as transformers' GptOssMLP computes it, reading the experts
 * as published (input-major, gate and up interleaved): the biased router's top_k logits,
 * softmaxed; each chosen expert's gate_up = xn · gate_up_t + bias, gate (even columns)
 * clamped above at limit, up (odd) to ±limit, (up + 1) gate sigmoid(alpha gate), then
 * · down_t + bias, weighted. */
static void ref_moe_oai(double *out, const struct model_config *c, const struct layer_tensors *lt,
                        const double *xn)
{
    int E = c->num_experts, h = c->hidden_size, F = c->moe_intermediate_size, k = c->num_experts_per_tok;
    double *lg = malloc(sizeof(double) * E), *a = malloc(sizeof(double) * F), z = 0;
    int *top = malloc(sizeof(int) * k);

    ref_linear(lg, &lt->router, &lt->router_bias, xn, E, h);
    for (int j = 0; j < k; j++) {   /* top-k logits, the lower index first among equals */
        int best = -1;
        for (int e = 0; e < E; e++) {
            bool used = false;
            for (int i = 0; i < j; i++)
                used |= top[i] == e;
            if (!used && (best < 0 || lg[e] > lg[best]))
                best = e;
        }
        top[j] = best;
    }
    for (int j = 0; j < k; j++)
        z += exp(lg[top[j]] - lg[top[0]]);
    for (int i = 0; i < h; i++)
        out[i] = 0;
    for (int j = 0; j < k; j++) {
        const struct expert_tensors *x = &lt->experts[top[j]];
        double w = exp(lg[top[j]] - lg[top[0]]) / z, L = c->swiglu_limit;

        for (int i = 0; i < F; i++) {
            double g = tv(&x->gate_up_bias, 2 * i), u = tv(&x->gate_up_bias, 2 * i + 1);
            for (int d = 0; d < h; d++) {
                g += xn[d] * tv(&x->gate_up_t, (size_t)d * 2 * F + 2 * i);
                u += xn[d] * tv(&x->gate_up_t, (size_t)d * 2 * F + 2 * i + 1);
            }
            g = g > L ? L : g;
            u = u > L ? L : u < -L ? -L : u;
            a[i] = (u + 1) * g / (1 + exp(-c->swiglu_alpha * g));
        }
        for (int d = 0; d < h; d++) {
            double y = tv(&x->down_bias, d);
            for (int i = 0; i < F; i++)
                y += a[i] * tv(&x->down_t, (size_t)i * h + d);
            out[d] += w * y;
        }
    }
    free(lg); free(a); free(top);
}

/* out[h] = the MoE block of xn, as transformers' MixtralSparseMoeBlock,
 * Qwen2MoeSparseMoeBlock and Qwen3MoeSparseMoeBlock compute it: softmax of the router's
 * logits, the top_k largest probabilities (renormalized when norm_topk_prob), the weighted
 * sum of those experts' SwiGLU MLPs; Qwen2-MoE adds its shared expert's MLP times
 * sigmoid(shared_expert_gate · xn). */
static void ref_moe(double *out, const struct model_config *c, const struct layer_tensors *lt,
                    const double *xn)
{
    int E = c->num_experts, h = c->hidden_size, F = c->moe_intermediate_size;
    double *p = malloc(sizeof(double) * E), *g = malloc(sizeof(double) * F);
    double *u = malloc(sizeof(double) * F), *y = malloc(sizeof(double) * h), mx = -INFINITY, z = 0;
    bool *chosen = calloc(E, sizeof *chosen);
    int *top = malloc(sizeof(int) * c->num_experts_per_tok);
    double sum = 0;

    ref_linear(p, &lt->router, NULL, xn, E, h);
    for (int e = 0; e < E; e++)
        mx = MAX(mx, p[e]);
    for (int e = 0; e < E; e++)
        z += p[e] = exp(p[e] - mx);
    for (int e = 0; e < E; e++)
        p[e] /= z;
    for (int j = 0; j < c->num_experts_per_tok; j++) {
        int best = -1;
        for (int e = 0; e < E; e++)
            if (!chosen[e] && (best < 0 || p[e] > p[best]))
                best = e;
        chosen[best] = true;
        top[j] = best;
        sum += p[best];
    }
    for (int i = 0; i < h; i++)
        out[i] = 0;
    for (int j = 0; j < c->num_experts_per_tok; j++) {
        const struct expert_tensors *x = &lt->experts[top[j]];
        double w = c->norm_topk_prob ? p[top[j]] / sum : p[top[j]];

        ref_linear(g, &x->gate, NULL, xn, F, h);
        ref_linear(u, &x->up, NULL, xn, F, h);
        for (int i = 0; i < F; i++)
            g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
        ref_linear(y, &x->down, NULL, g, h, F);
        for (int i = 0; i < h; i++)
            out[i] += w * y[i];
    }
    if (c->shared_expert_intermediate_size) {
        int S = c->shared_expert_intermediate_size;
        double *sg = malloc(sizeof(double) * S), *su = malloc(sizeof(double) * S), gate;

        ref_linear(sg, &lt->shared.gate, NULL, xn, S, h);
        ref_linear(su, &lt->shared.up, NULL, xn, S, h);
        for (int i = 0; i < S; i++)
            sg[i] = sg[i] / (1.0 + exp(-sg[i])) * su[i];
        ref_linear(y, &lt->shared.down, NULL, sg, h, S);
        ref_linear(&gate, &lt->shared_gate, NULL, xn, 1, h);
        gate = 1.0 / (1.0 + exp(-gate));
        for (int i = 0; i < h; i++)
            out[i] += gate * y[i];
        free(sg);
        free(su);
    }
    free(p); free(g); free(u); free(y); free(chosen); free(top);
}

void naive_forward(const struct model *m, const int32_t *tokens, int len, double *logits)
{
    const struct model_config *c = &m->cfg;
    int h = c->hidden_size, H = c->num_heads, KV = c->num_kv_heads, D = c->head_dim;
    int F = c->intermediate_size, V = c->vocab_size, L = c->num_layers, group = H / KV;
    double eps = c->rms_norm_eps;
    double *kc = malloc(sizeof(double) * L * len * KV * D), *vc = malloc(sizeof(double) * L * len * KV * D);
    double *x = malloc(sizeof(double) * h), *xn = malloc(sizeof(double) * h);
    double *tmp = malloc(sizeof(double) * h), *q = malloc(sizeof(double) * H * D);
    double *att = malloc(sizeof(double) * H * D), *g = malloc(sizeof(double) * F);
    double *u = malloc(sizeof(double) * F), *sc = malloc(sizeof(double) * len);
    double *inv_global = malloc(sizeof(double) * D / 2), *inv_local = malloc(sizeof(double) * D / 2);
    bool p1 = c->norm_plus_one;
    double emb = c->scale_embeddings ? ref_embed_scale(c) : 1.0;
    double scale = 1.0 / sqrt(c->query_pre_attn_scalar > 0 ? c->query_pre_attn_scalar : D);
    int rd = c->rotary_dim ? c->rotary_dim : D;
    double ms = c->rope_scaling.type == ROPE_LONGROPE || c->rope_scaling.type == ROPE_YARN
                ? c->rope_scaling.attention_factor : 1.0;

    ref_inv_freq(c, inv_global, false);
    if (c->rope_local_theta > 0)
        ref_inv_freq(c, inv_local, true);
    for (int pos = 0; pos < len; pos++) {
        for (int i = 0; i < h; i++)
            x[i] = tv(&m->embed, (size_t)tokens[pos] * h + i) * emb;
        for (int l = 0; l < L; l++) {
            const struct layer_tensors *lt = &m->layers[l];
            double *k = kc + ((size_t)l * len + pos) * KV * D, *v = vc + ((size_t)l * len + pos) * KV * D;
            int w = c->layer_window[l], lo = w ? MAX(0, pos - w + 1) : 0;
            const double *inv = w && c->rope_local_theta > 0 ? inv_local : inv_global;

            struct tensor_ref wq = lt->q, wk = lt->k, wv = lt->v, wg = lt->gate, wu = lt->up;

            if (lt->qkv.data) {      /* Phi-3: fused as published */
                wq = rows_of(&lt->qkv, 0, H * D);
                wk = rows_of(&lt->qkv, H * D, KV * D);
                wv = rows_of(&lt->qkv, (H + KV) * D, KV * D);
            }
            if (lt->gate_up.data) {
                wg = rows_of(&lt->gate_up, 0, F);
                wu = rows_of(&lt->gate_up, F, F);
            }
            ref_norm(xn, x, &lt->input_norm, h, eps, p1);
            ref_linear(q, &wq, &lt->q_bias, xn, H * D, h);
            ref_linear(k, &wk, &lt->k_bias, xn, KV * D, h);
            ref_linear(v, &wv, &lt->v_bias, xn, KV * D, h);
            for (int hd = 0; hd < H; hd++) {
                if (c->qk_norm)
                    ref_norm(q + hd * D, q + hd * D, &lt->q_norm, D, eps, p1);
                ref_rope(q + hd * D, pos, inv, rd, ms);
            }
            for (int hd = 0; hd < KV; hd++) {
                if (c->qk_norm)
                    ref_norm(k + hd * D, k + hd * D, &lt->k_norm, D, eps, p1);
                ref_rope(k + hd * D, pos, inv, rd, ms);
            }
            for (int hd = 0; hd < H; hd++) {
                const double *qh = q + hd * D;
                int kvh = hd / group;
                /* gpt-oss's sink: one more logit, in the max and the denominator only */
                double sink = lt->sinks.data ? tv(&lt->sinks, hd) : -INFINITY;
                double mx = sink, z = 0.0;

                for (int t = lo; t <= pos; t++) {
                    const double *kt = kc + ((size_t)l * len + t) * KV * D + kvh * D;
                    double d = 0.0;
                    for (int j = 0; j < D; j++)
                        d += qh[j] * kt[j];
                    sc[t] = d * scale;
                    if (c->attn_softcap > 0)
                        sc[t] = c->attn_softcap * tanh(sc[t] / c->attn_softcap);
                    mx = MAX(mx, sc[t]);
                }
                if (lt->sinks.data)
                    z = exp(sink - mx);
                for (int j = 0; j < D; j++)
                    att[hd * D + j] = 0.0;
                for (int t = lo; t <= pos; t++) {
                    const double *vt = vc + ((size_t)l * len + t) * KV * D + kvh * D;
                    double e = exp(sc[t] - mx);
                    z += e;
                    for (int j = 0; j < D; j++)
                        att[hd * D + j] += e * vt[j];
                }
                for (int j = 0; j < D; j++)
                    att[hd * D + j] /= z;
            }
            ref_linear(tmp, &lt->o, &lt->o_bias, att, h, H * D);
            if (c->sandwich_norms)   /* Gemma: the attention's output is normalized first */
                ref_norm(tmp, tmp, &lt->post_norm, h, eps, p1);
            for (int i = 0; i < h; i++)
                x[i] += tmp[i];
            ref_norm(xn, x, c->sandwich_norms ? &lt->pre_ff_norm : &lt->post_norm, h, eps, p1);
            if (lt->experts && c->moe_act == MOE_ACT_SWIGLU_OAI) {
                ref_moe_oai(tmp, c, lt, xn);
            } else if (lt->experts) {
                ref_moe(tmp, c, lt, xn);
            } else {
                ref_linear(g, &wg, NULL, xn, F, h);
                ref_linear(u, &wu, NULL, xn, F, h);
                for (int i = 0; i < F; i++)
                    g[i] = (c->mlp_act == MLP_GELU_TANH ? ref_gelu_tanh(g[i])
                                                        : g[i] / (1.0 + exp(-g[i]))) * u[i];
                ref_linear(tmp, &lt->down, NULL, g, h, F);
            }
            if (c->sandwich_norms)
                ref_norm(tmp, tmp, &lt->post_ff_norm, h, eps, p1);
            for (int i = 0; i < h; i++)
                x[i] += tmp[i];
        }
        ref_norm(xn, x, &m->final_norm, h, eps, p1);
        ref_linear(logits + (size_t)pos * V, &m->lm_head, NULL, xn, V, h);
        for (int i = 0; c->final_softcap > 0 && i < V; i++)
            logits[(size_t)pos * V + i] = c->final_softcap * tanh(logits[(size_t)pos * V + i] /
                                                                  c->final_softcap);
    }
    free(kc); free(vc); free(x); free(xn); free(tmp); free(q);
    free(att); free(g); free(u); free(sc); free(inv_global); free(inv_local);
}
