/* rmsnorm.c — RMSNorm of hidden rows (with the residual add fused in) and of each head of
 * q and k (Qwen3's q/k norm), CPU reference. HF's LlamaRMSNorm: x * rsqrt(mean(x²) + eps),
 * then times the weight; the mean is taken in double here. */
#include <math.h>

#include "engine/cpu/cpu_ops.h"

/* out[dim] = in * rsqrt(mean(in²) + eps) * w */
static void rmsnorm_row(float *out, const float *in, const struct bk_weight *w, int dim,
                        float eps)
{
    double ss = 0.0;
    float r;

    for (int i = 0; i < dim; i++)
        ss += (double)in[i] * in[i];
    r = (float)(1.0 / sqrt(ss / dim + eps));
    for (int i = 0; i < dim; i++)
        out[i] = in[i] * r * weight_at(w, i);
}

/* residual == NULL: out = rmsnorm(x) * w. Else residual += x, out = rmsnorm(residual) * w.
 * out may alias x. The width is the weight's element count. */
int rmsnorm_cpu(float *out, float *residual, const float *x, const struct bk_weight *w, int n,
                float eps)
{
    int dim = w->rows * w->cols;

    for (int t = 0; t < n; t++) {
        const float *in = x + (size_t)t * dim;

        if (residual) {
            float *res = residual + (size_t)t * dim;
            for (int i = 0; i < dim; i++)
                res[i] += in[i];
            in = res;
        }
        rmsnorm_row(out + (size_t)t * dim, in, w, dim, eps);
    }
    return 0;
}

/* In place: each of `heads` head_dim vectors of each row of x (rows `stride` apart). */
int head_rmsnorm_cpu(float *x, int stride, int heads, int head_dim, const struct bk_weight *w,
                     int n, float eps)
{
    for (int t = 0; t < n; t++)
        for (int h = 0; h < heads; h++) {
            float *v = x + (size_t)t * stride + (size_t)h * head_dim;
            rmsnorm_row(v, v, w, head_dim, eps);
        }
    return 0;
}
