/* rope.c — inverse frequencies of the rotary embedding with HF's rope scaling. Computed in
 * double and rounded once to f32 (HF computes them in f32; the two agree to an ulp). */
#include <errno.h>
#include <math.h>

#include "engine/rope.h"
#include "engine/base/util.h"

/* transformers' _compute_llama3_parameters, applied to one frequency. */
static double llama3_scale(double inv_freq, const struct rope_scaling *s)
{
    double old_len = s->original_max_position_embeddings;
    double low_wavelen = old_len / s->low_freq_factor;
    double high_wavelen = old_len / s->high_freq_factor;
    double wavelen = 2.0 * M_PI / inv_freq;
    double smooth;

    if (wavelen > low_wavelen)
        return inv_freq / s->factor;          /* low frequency: interpolated fully */
    if (wavelen < high_wavelen)
        return inv_freq;                      /* high frequency: untouched */
    smooth = (old_len / wavelen - s->low_freq_factor) / (s->high_freq_factor - s->low_freq_factor);
    return (1.0 - smooth) * inv_freq / s->factor + smooth * inv_freq;
}

int rope_inv_freq(float *inv_freq, int head_dim, double theta, const struct rope_scaling *s,
                  char *err)
{
    if (head_dim <= 0 || head_dim % 2 || !(theta > 0.0)) {
        errf(err, "rope: head_dim %d must be even and positive, rope_theta %g positive",
             head_dim, theta);
        return -EINVAL;
    }
    if (s->type != ROPE_DEFAULT && s->type != ROPE_LONGROPE && !(s->factor > 0.0)) {
        errf(err, "rope_scaling: factor %g must be positive", s->factor);
        return -EINVAL;
    }
    if (s->type == ROPE_LLAMA3 &&
        (s->original_max_position_embeddings <= 0 || !(s->low_freq_factor > 0.0) ||
         !(s->high_freq_factor > s->low_freq_factor))) {
        errf(err, "rope_scaling: llama3 needs original_max_position_embeddings > 0 (got %d) "
             "and 0 < low_freq_factor (%g) < high_freq_factor (%g)",
             s->original_max_position_embeddings, s->low_freq_factor, s->high_freq_factor);
        return -EINVAL;
    }
    if (s->type == ROPE_LONGROPE && s->num_factors != head_dim / 2) {
        errf(err, "rope_scaling: longrope has %d factors for %d rotary dims (want dims / 2)",
             s->num_factors, head_dim);
        return -EINVAL;
    }
    for (int i = 0; i < head_dim / 2; i++) {
        double f = 1.0 / pow(theta, (2.0 * i) / head_dim);

        if (s->type == ROPE_LONGROPE)
            f /= s->use_long_factor ? s->long_factor[i] : s->short_factor[i];
        else if (s->type == ROPE_LINEAR)
            f /= s->factor;
        else if (s->type == ROPE_LLAMA3)
            f = llama3_scale(f, s);
        inv_freq[i] = (float)f;
    }
    return 0;
}
