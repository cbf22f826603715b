/* rope.h — the rotary embedding's inverse frequencies for a model config, with the rope
 * scaling of config.json applied (default, linear, llama3), as Hugging Face computes them.
 * The runner uploads them once; the rope op turns pair (i, i + head_dim/2) by pos * inv_freq[i]. */
#ifndef OSPREY_ROPE_H
#define OSPREY_ROPE_H

#include "engine/model/model.h"   /* struct rope_scaling */

/* inv_freq[head_dim / 2] = theta^(-2i / head_dim), then scaled:
 *   linear: / factor
 *   longrope: / short_factor[i] (or long_factor[i] with use_long_factor), Phi-3's; the
 *           caller passes the rotary dims as head_dim and applies attention_factor
 *   llama3: HF's _compute_llama3_parameters — wavelengths longer than
 *           original_max_position_embeddings / low_freq_factor are divided by factor, shorter
 *           than original_max_position_embeddings / high_freq_factor kept, and those between
 *           interpolated smoothly.
 *   yarn: HF's _compute_yarn_parameters — a linear ramp over the dims between those turning
 *           beta_fast and beta_slow times within original_max_position_embeddings (whole dims
 *           when truncate) blends theta^(-2i/d) (below the ramp) into it / factor (above);
 *           the caller applies attention_factor to cos and sin.
 * Returns 0, or -EINVAL with a message for an odd head_dim or bad scaling parameters. */
int rope_inv_freq(float *inv_freq, int head_dim, double theta, const struct rope_scaling *s,
                  char *err);

#endif
