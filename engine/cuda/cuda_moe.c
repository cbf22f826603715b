/* cuda_moe.c — the CUDA backend's mixture-of-experts op (backend_ops.moe): the router's
 * logits by cuBLAS (f32 out), then kernels/moe.cu's routing (with gpt-oss's router bias),
 * grouping by expert and grouped GEMMs (with gpt-oss's expert biases and clamped SwiGLU in
 * their epilogues; per-pair GEMVs instead for steps of up to 4 tokens), Qwen2-MoE's shared expert through the dense products and activation, and the
 * per-token sum. Capturable: nothing here allocates or waits for the device; the scratch
 * (cuda__moe_work_bytes) belongs to the runner. Expert weights are bf16 only: an fp8
 * checkpoint's experts are refused here (the dense fp8 products do not cover them). */
#include <errno.h>
#include <string.h>

#include "engine/base/log.h"
#include "engine/base/util.h"
#include "engine/cuda/cuda_internal.h"

/* The scratch: logits f32 [n, E] | y bf16 [n k, hidden] | shared gate_up bf16 [n, 2 sf] |
 * shared act bf16 [n, sf] | shared y bf16 [n, hidden] | shared gate f32 [n] | the experts'
 * kernels' own (moe_experts_cuda_work_bytes); each part 256-byte aligned. */
struct moe_scratch {
    float *logits;
    bf16 *y, *sh_gate_up, *sh_act, *sh_y;
    float *sh_gate;
    void *kernels;
};

static size_t round256(size_t b)
{
    return (b + 255) & ~(size_t)255;
}

static struct cuda_moe_params kernel_params(int n, const struct moe_params *p)
{
    return (struct cuda_moe_params){ .num_tokens = n, .num_experts = p->num_experts,
                                     .top_k = p->top_k, .hidden = p->hidden, .ffn = p->ffn,
                                     .renormalize = p->renormalize, .tile = CUDA_MOE_TILE_AUTO,
                                     .act = p->act == MOE_ACT_SWIGLU_OAI ? CUDA_MOE_ACT_SWIGLU_OAI
                                                                         : CUDA_MOE_ACT_SILU,
                                     .swiglu_alpha = p->swiglu_alpha,
                                     .swiglu_limit = p->swiglu_limit };
}

/* Lays the scratch out from base (NULL: only sizes it); returns its bytes. */
static size_t carve(void *base, int n, const struct moe_params *p, struct moe_scratch *s)
{
    struct cuda_moe_params kp = kernel_params(n, p);
    size_t N = (size_t)n, sf = (size_t)p->shared_ffn, H = (size_t)p->hidden;
    size_t sizes[7] = { N * p->num_experts * 4, N * p->top_k * H * 2, N * 2 * sf * 2,
                        N * sf * 2, sf ? N * H * 2 : 0, sf ? N * 4 : 0,
                        moe_experts_cuda_work_bytes(&kp) };
    void *parts[7];
    size_t off = 0;

    for (int i = 0; i < 7; i++) {
        parts[i] = base ? (char *)base + off : NULL;
        off += round256(sizes[i]);
    }
    if (s)
        *s = (struct moe_scratch){ parts[0], parts[1], parts[2], parts[3], parts[4], parts[5],
                                   parts[6] };
    return off;
}

size_t cuda__moe_work_bytes(int n, const struct moe_params *p)
{
    return n > 0 ? carve(NULL, n, p, NULL) : 0;
}

/* A weight of the expected shape in bf16; an fp8 one is -ENOTSUP (refused, said once). */
static int check_weight(const struct bk_weight *w, int rows, int cols, const char *what)
{
    static bool warned;

    if (!w || !w->data)
        return -EINVAL;
    if (w->dtype != DT_BF16) {
        if (!warned)
            LOG(LL_ERR, "cuda", "moe: %s is %s; the CUDA backend's experts are bf16 only",
                what, dtype_name(w->dtype));
        warned = true;
        return -ENOTSUP;
    }
    return w->rows == rows && w->cols == cols ? 0 : -EINVAL;
}

/* A bias of len elements in bf16, whatever its [rows, cols] (a 1-D tensor uploads as [len, 1]). */
static int check_vector(const struct bk_weight *w, int len, const char *what)
{
    int rc = w ? check_weight(w, w->rows, w->cols, what) : -EINVAL;

    return rc ? rc : w->rows * w->cols == len ? 0 : -EINVAL;
}

static int check_weights(const struct moe_weights *w, const struct moe_params *p)
{
    int E = p->num_experts, H = p->hidden, F = p->ffn, SF = p->shared_ffn, rc;

    if (w->oai_published)   /* the cpu backend's layout: weights.c hands this one [gate; up] */
        return -EINVAL;
    if ((rc = check_weight(w->router, E, H, "the router")))
        return rc;
    for (int e = 0; e < E; e++)
        if ((rc = check_weight(&w->gate_up[e], 2 * F, H, "an expert's gate_up")) ||
            (rc = check_weight(&w->down[e], H, F, "an expert's down")))
            return rc;
    /* gpt-oss's biases: all of them or none */
    if (w->router_bias && (rc = check_vector(w->router_bias, E, "the router's bias")))
        return rc;
    if ((w->gate_up_bias == NULL) != (w->down_bias == NULL))
        return -EINVAL;
    for (int e = 0; w->gate_up_bias && e < E; e++)
        if ((rc = check_vector(&w->gate_up_bias[e], 2 * F, "an expert's gate_up bias")) ||
            (rc = check_vector(&w->down_bias[e], H, "an expert's down bias")))
            return rc;
    if (SF && ((rc = check_weight(w->shared_gate_up, 2 * SF, H, "the shared expert's gate_up")) ||
               (rc = check_weight(w->shared_down, H, SF, "the shared expert's down")) ||
               (rc = check_weight(w->shared_gate, 1, H, "the shared expert's gate"))))
        return rc;
    return 0;
}

int cuda__moe(struct backend *be, void *out, const void *x, const struct moe_weights *w, int n,
              const struct moe_params *p)
{
    struct backend_cuda *cu = cuda__of(be);
    struct cuda_moe_params kp = kernel_params(n, p);
    struct cuda_moe_experts ex;
    struct moe_scratch s;
    bool shared = p->shared_ffn > 0;
    int rc;

    if ((rc = cuda__enter(cu)))   /* -EIO when dead; binds this thread to the device */
        return rc;
    if (n < 0 || !p->work || p->num_experts < 1 || p->num_experts > CUDA_MOE_MAX_EXPERTS ||
        p->top_k < 1 || p->top_k > CUDA_MOE_MAX_TOP_K || p->top_k > p->num_experts ||
        p->hidden <= 0 || p->ffn <= 0 || p->shared_ffn < 0 ||
        (p->act != MOE_ACT_SILU && p->act != MOE_ACT_SWIGLU_OAI))
        return -EINVAL;
    if ((rc = check_weights(w, p)))
        return rc;
    if (n == 0)
        return 0;
    carve(p->work, n, p, &s);
    memset(&ex, 0, sizeof ex);
    for (int e = 0; e < p->num_experts; e++) {
        ex.gate_up[e] = w->gate_up[e].data;
        ex.down[e] = w->down[e].data;
        ex.gate_up_bias[e] = w->gate_up_bias ? w->gate_up_bias[e].data : NULL;
        ex.down_bias[e] = w->down_bias ? w->down_bias[e].data : NULL;
    }
    ex.router_bias = w->router_bias ? w->router_bias->data : NULL;
    if ((rc = cuda__gemm(cu, s.logits, CUDA_R_32F, x, w->router, NULL, n)) ||
        (rc = cuda__status(cu, moe_experts_cuda(s.y, x, s.logits, &kp, &ex, s.kernels, cu->stream))))
        return rc;
    if (shared &&
        ((rc = cuda__gemm(cu, s.sh_gate_up, CUDA_R_16BF, x, w->shared_gate_up, NULL, n)) ||
         (rc = cuda__status(cu, silu_mul_cuda(s.sh_act, s.sh_gate_up, n, p->shared_ffn, cu->stream))) ||
         (rc = cuda__gemm(cu, s.sh_y, CUDA_R_16BF, s.sh_act, w->shared_down, NULL, n)) ||
         (rc = cuda__gemm(cu, s.sh_gate, CUDA_R_32F, x, w->shared_gate, NULL, n))))
        return rc;
    return cuda__status(cu, moe_combine_cuda(out, s.y, n, p->top_k, p->hidden,
                                             shared ? s.sh_y : NULL, shared ? s.sh_gate : NULL,
                                             cu->stream));
}
