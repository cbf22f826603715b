/* rope.c — inverse frequencies of the rotary embedding with HF's rope scaling (linear,
 * llama3, longrope, yarn). Computed in double and rounded once to f32 (HF computes them in
 * f32; the two agree to an ulp). */
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

/* transformers' find_correction_dim: the (fractional) dim index whose frequency turns `rot`
 * times over the original context. */
static double yarn_dim(double rot, int dim, double theta, int original_len)
{
    return dim * log(original_len / (rot * 2.0 * M_PI)) / (2.0 * log(theta));
}

/* transformers' _compute_yarn_parameters for one frequency index i of dim / 2: a ramp from 0
 * (dims below `low`: high frequencies, kept) to 1 (above `high`: interpolated by factor). */
static double yarn_scale(double inv_freq, int i, int dim, double theta, const struct rope_scaling *s)
{
    double low = yarn_dim(s->beta_fast, dim, theta, s->original_max_position_embeddings);
    double high = yarn_dim(s->beta_slow, dim, theta, s->original_max_position_embeddings);
    double ramp, keep;

    if (s->truncate) {
        low = floor(low);
        high = ceil(high);
    }
    low = MAX(low, 0.0);
    high = MIN(high, dim - 1.0);
    if (low == high)
        high += 0.001;   /* as transformers: no division by zero */
    ramp = MIN(MAX((i - low) / (high - low), 0.0), 1.0);
    keep = 1.0 - ramp;
    return inv_freq / s->factor * (1.0 - keep) + inv_freq * keep;
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
    if (s->type == ROPE_YARN &&
        (s->original_max_position_embeddings <= 0 || !(s->beta_fast > 0.0) ||
         !(s->beta_slow > 0.0))) {
        errf(err, "rope_scaling: yarn needs original_max_position_embeddings > 0 (got %d), "
             "beta_fast (%g) and beta_slow (%g) > 0", s->original_max_position_embeddings,
             s->beta_fast, s->beta_slow);
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
        else if (s->type == ROPE_YARN)
            f = yarn_scale(f, i, head_dim, theta, s);
        inv_freq[i] = (float)f;
    }
    return 0;
}
