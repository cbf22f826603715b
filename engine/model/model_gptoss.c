/* model_gptoss.c — the config.json section of gpt-oss (GptOssForCausalLM, model_type gpt_oss)
 * and its YaRN rope scaling: experts and top-k (num_local_experts, num_experts_per_tok or the
 * original release's experts_per_token), the clamped SwiGLU (swiglu_limit, swiglu_alpha),
 * attention sinks. Defaults follow transformers' GptOssConfig; the windows (sliding_window
 * 128, alternating layer_types) are model.c's parse_windows. */
#include "engine/model/model_internal.h"

/* gpt-oss's MoE block, which every layer has: a biased router whose top-k logits are
 * softmaxed (the same weights as a softmax over all experts renormalized over the top k),
 * experts of intermediate_size with biases and the clamped SwiGLU. */
int model__parse_gpt_oss(struct cfg_parse *p, const cJSON *root, struct model_config *cfg)
{
    int k_old = 0, rc;

    cfg->num_experts = 128;
    cfg->num_experts_per_tok = 4;
    cfg->swiglu_alpha = 1.702;
    cfg->swiglu_limit = 7.0;
    if ((rc = get_int(p, root, "num_local_experts", "num_local_experts", false, 1, 4096,
                      &cfg->num_experts)) ||
        (rc = get_int(p, root, "experts_per_token", "experts_per_token", false, 1, 4096, &k_old)) ||
        (rc = get_int(p, root, "num_experts_per_tok", "num_experts_per_tok", false, 1, 4096,
                      &cfg->num_experts_per_tok)) ||
        (rc = get_pos(p, root, "swiglu_limit", "swiglu_limit", false, false, &cfg->swiglu_limit)) ||
        (rc = get_pos(p, root, "swiglu_alpha", "swiglu_alpha", false, false, &cfg->swiglu_alpha)))
        return rc;
    /* the original release writes both keys; either alone is the top-k */
    if (k_old && !member(root, "num_experts_per_tok"))
        cfg->num_experts_per_tok = k_old;
    if (k_old && k_old != cfg->num_experts_per_tok) {
        errf(p->err, "%s: experts_per_token: %d disagrees with num_experts_per_tok %d", p->path,
             k_old, cfg->num_experts_per_tok);
        return -EINVAL;
    }
    if (cfg->num_experts_per_tok > cfg->num_experts) {
        errf(p->err, "%s: num_experts_per_tok: %d is more than the %d experts", p->path,
             cfg->num_experts_per_tok, cfg->num_experts);
        return -EINVAL;
    }
    /* GptOssConfig's rope_parameters when config.json has none; parse_rope overrides them */
    cfg->rope_scaling = (struct rope_scaling){ .type = ROPE_YARN, .factor = 32.0,
                                               .beta_fast = 32.0, .beta_slow = 1.0,
                                               .truncate = false,
                                               .original_max_position_embeddings = 4096,
                                               .attention_factor = 0.1 * log(32.0) + 1.0 };
    cfg->moe_intermediate_size = cfg->intermediate_size;
    cfg->norm_topk_prob = true;
    cfg->moe_act = MOE_ACT_SWIGLU_OAI;
    cfg->attn_sinks = true;
    for (int l = 0; l < cfg->num_layers; l++)
        cfg->layer_moe[l] = true;
    return 0;
}

/* rope_scaling / rope_parameters of rope_type "yarn" (transformers' _compute_yarn_parameters):
 * factor, beta_fast (32), beta_slow (1), original_max_position_embeddings (else
 * max_position_embeddings), truncate (true), attention_factor (else 0.1 ln(factor) + 1 for a
 * factor above 1). DeepSeek's mscale / mscale_all_dim are refused rather than ignored. */
int model__parse_yarn(struct cfg_parse *p, const cJSON *rs, const char *field,
                      struct model_config *cfg)
{
    struct rope_scaling *r = &cfg->rope_scaling;
    int omp = cfg->max_position_embeddings, rc;
    char f[96];

    r->beta_fast = 32.0;
    r->beta_slow = 1.0;
    r->truncate = true;
    r->attention_factor = 0.0;
    snprintf(f, sizeof f, "%s.factor", field);
    if ((rc = get_pos(p, rs, "factor", f, true, false, &r->factor)))
        return rc;
    snprintf(f, sizeof f, "%s.beta_fast", field);
    if ((rc = get_pos(p, rs, "beta_fast", f, false, false, &r->beta_fast)))
        return rc;
    snprintf(f, sizeof f, "%s.beta_slow", field);
    if ((rc = get_pos(p, rs, "beta_slow", f, false, false, &r->beta_slow)))
        return rc;
    snprintf(f, sizeof f, "%s.original_max_position_embeddings", field);
    if ((rc = get_int(p, rs, "original_max_position_embeddings", f, false, 1, INT32_MAX, &omp)))
        return rc;
    snprintf(f, sizeof f, "%s.truncate", field);
    if (member(rs, "truncate") && !cJSON_IsBool(member(rs, "truncate")))
        return bad(p, f, "expected true or false, got %s", json_type(member(rs, "truncate")));
    if (member(rs, "truncate"))
        r->truncate = cJSON_IsTrue(member(rs, "truncate"));
    snprintf(f, sizeof f, "%s.attention_factor", field);
    if ((rc = get_pos(p, rs, "attention_factor", f, false, false, &r->attention_factor)))
        return rc;
    if (member(rs, "mscale") || member(rs, "mscale_all_dim")) {
        snprintf(f, sizeof f, "%s.mscale", field);
        return bad(p, f, "%s", "mscale / mscale_all_dim (DeepSeek's yarn) are not supported");
    }
    if (!omp) {
        snprintf(f, sizeof f, "%s.original_max_position_embeddings", field);
        return bad(p, f, "%s", "missing, and so is max_position_embeddings");
    }
    r->original_max_position_embeddings = omp;
    if (r->attention_factor == 0.0)
        r->attention_factor = r->factor > 1.0 ? 0.1 * log(r->factor) + 1.0 : 1.0;
    return 0;
}
