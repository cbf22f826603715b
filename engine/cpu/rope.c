/* rope.c — rotary position embedding of q and k in place, HF's rotate-half convention: the
 * pair (i, i + rotary_dim/2) turns by the angle position * inv_freq[i], computed in f32 as
 * HF does (f32 product, f32 cos/sin, both times mscale); dims from rotary_dim on pass
 * untouched (partial rotary). CPU reference; engine/rope.c builds inv_freq. */
#include <errno.h>
#include <math.h>

#include "engine/cpu/cpu_ops.h"

static void rope_heads(float *x, int heads, int head_dim, int rotary_dim, const float *cos_t,
                       const float *sin_t)
{
    int half = rotary_dim / 2;

    for (int h = 0; h < heads; h++) {
        float *v = x + (size_t)h * head_dim;

        for (int i = 0; i < half; i++) {
            float x0 = v[i], x1 = v[i + half];
            v[i] = x0 * cos_t[i] - x1 * sin_t[i];
            v[i + half] = x1 * cos_t[i] + x0 * sin_t[i];
        }
    }
}

/* q[n, rows `stride` apart, num_heads, head_dim] and k[n, …, num_kv_heads, head_dim]. */
int rope_cpu(float *q, float *k, const int32_t *positions, int n, const struct rope_params *p)
{
    enum { MAX_HALF = 512 };
    float cos_t[MAX_HALF], sin_t[MAX_HALF];
    int rd = p->rotary_dim ? p->rotary_dim : p->head_dim, half = rd / 2;
    float ms = p->mscale ? p->mscale : 1.0f;

    if (rd % 2 || rd > p->head_dim || half > MAX_HALF)
        return -EINVAL;
    for (int t = 0; t < n; t++) {
        for (int i = 0; i < half; i++) {
            float angle = (float)positions[t] * p->inv_freq[i];
            cos_t[i] = cosf(angle) * ms;
            sin_t[i] = sinf(angle) * ms;
        }
        rope_heads(q + (size_t)t * p->stride, p->num_heads, p->head_dim, rd, cos_t, sin_t);
        rope_heads(k + (size_t)t * p->stride, p->num_kv_heads, p->head_dim, rd, cos_t, sin_t);
    }
    return 0;
}
