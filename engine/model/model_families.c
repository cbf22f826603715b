/* model_families.c — the config.json sections of model families beyond the Llama shape:
 * Gemma 2/3 (norms, soft-caps, query_pre_attn_scalar, the local RoPE base), mixture of experts
 * (Mixtral, Qwen2-MoE, Qwen3-MoE) and Phi-3's rotary (partial_rotary_factor, LongRoPE).
 * model.c calls them while it parses; defaults follow transformers' config classes. */
#include "engine/model/model_internal.h"

/* partial_rotary_factor (Phi-3 family, e.g. Phi-4-mini's 0.75): RoPE turns the first
 * head_dim × factor dims of each head (rotate-half within them) and passes the rest. */
int model__parse_rotary_dim(struct cfg_parse *p, const cJSON *root, struct model_config *cfg)
{
    double f = 1.0;
    int rc;

    if ((rc = get_pos(p, root, "partial_rotary_factor", "partial_rotary_factor", false, false, &f)))
        return rc;
    if (f > 1.0)
        return bad(p, "partial_rotary_factor", "%s", "must be in (0, 1]");
    if (f < 1.0 && cfg->arch != ARCH_PHI3)
        return bad(p, "partial_rotary_factor", "%s", "below 1 is supported for Phi-3 only");
    cfg->rotary_dim = (int)(cfg->head_dim * f);   /* transformers: int(head_dim * factor) */
    if (cfg->rotary_dim < 2 || cfg->rotary_dim % 2) {
        errf(p->err, "%s: partial_rotary_factor: %g of head_dim %d gives %d rotary dims; RoPE "
             "needs an even number", p->path, f, cfg->head_dim, cfg->rotary_dim);
        return -EINVAL;
    }
    return 0;
}

/* One longrope factor list: rotary_dim / 2 positive numbers. */
static int longrope_factors(struct cfg_parse *p, const cJSON *rs, const char *key,
                            const char *field, int want, float *out)
{
    const cJSON *a = member(rs, key), *e;
    char f[96];
    int n = 0;

    snprintf(f, sizeof f, "%s.%s", field, key);
    if (!cJSON_IsArray(a))
        return bad(p, f, "%s", a ? "expected a list of numbers" : "missing");
    cJSON_ArrayForEach(e, a) {
        if (!cJSON_IsNumber(e) || !(e->valuedouble > 0) || !isfinite(e->valuedouble))
            return bad(p, f, "%s", "expected positive numbers");
        if (n < ROPE_MAX_FACTORS)
            out[n] = (float)e->valuedouble;
        n++;
    }
    if (n != want) {
        errf(p->err, "%s: %s: %d numbers, expected %d (rotary dims / 2)", p->path, f, n, want);
        return -EINVAL;
    }
    return 0;
}

/* Phi-3's longrope ("su" in older configs): short and long factors; attention_factor if
 * given (else derived from max_position_embeddings / original_max_position_embeddings once
 * both are known, in finish_longrope); original_max_position_embeddings may sit here
 * (transformers 5) or at the top level (Phi3Config). */
int model__parse_longrope(struct cfg_parse *p, const cJSON *rs, const char *field,
                          struct model_config *cfg)
{
    struct rope_scaling *r = &cfg->rope_scaling;
    int half = cfg->rotary_dim / 2, rc, omp = 0;
    char f[96];

    if (half > ROPE_MAX_FACTORS)
        return bad(p, field, "%s", "longrope with more than 512 rotary dims is not supported");
    r->num_factors = half;
    snprintf(f, sizeof f, "%s.original_max_position_embeddings", field);
    if ((rc = longrope_factors(p, rs, "short_factor", field, half, r->short_factor)) ||
        (rc = longrope_factors(p, rs, "long_factor", field, half, r->long_factor)) ||
        (rc = get_int(p, rs, "original_max_position_embeddings", f, false, 1, INT32_MAX, &omp)))
        return rc;
    r->original_max_position_embeddings = omp;
    snprintf(f, sizeof f, "%s.attention_factor", field);
    return get_pos(p, rs, "attention_factor", f, false, false, &r->attention_factor);
}

/* transformers' _compute_longrope_parameters: factor = max_position_embeddings /
 * original_max_position_embeddings, attention_factor = sqrt(1 + ln factor / ln original)
 * when factor > 1 (else 1), unless the config gives it. */
int model__finish_longrope(struct cfg_parse *p, const cJSON *root, struct model_config *cfg)
{
    struct rope_scaling *r = &cfg->rope_scaling;
    int omp = r->original_max_position_embeddings, rc;

    if (!omp) {
        omp = 4096;   /* Phi3Config's default */
        if ((rc = get_int(p, root, "original_max_position_embeddings",
                          "original_max_position_embeddings", false, 1, INT32_MAX, &omp)))
            return rc;
    }
    r->original_max_position_embeddings = omp;
    r->factor = (double)cfg->max_position_embeddings / omp;
    if (r->attention_factor == 0)
        r->attention_factor = r->factor > 1.0 ? sqrt(1.0 + log(r->factor) / log((double)omp)) : 1.0;
    return 0;
}

/* Mixtral, Qwen2-MoE and Qwen3-MoE: experts, top-k, the expert ffn, which layers are MoE
 * (Qwen: those not in mlp_only_layers whose index + 1 is a multiple of decoder_sparse_step),
 * Qwen2-MoE's shared expert. Defaults are MixtralConfig's, Qwen2MoeConfig's, Qwen3MoeConfig's. */
int model__parse_moe(struct cfg_parse *p, const cJSON *root, struct model_config *cfg)
{
    bool mixtral = cfg->arch == ARCH_MIXTRAL;
    /* Mixtral says num_local_experts; the Qwen MoE configs said num_experts until
     * transformers 5, which writes num_local_experts for them too: take whichever is there. */
    const char *ne = mixtral || member(root, "num_local_experts") ? "num_local_experts" : "num_experts";
    const cJSON *only = member(root, "mlp_only_layers");
    int step = 1, rc;

    bool q2 = cfg->arch == ARCH_QWEN2_MOE;

    cfg->num_experts = mixtral ? 8 : q2 ? 60 : 128;
    cfg->num_experts_per_tok = mixtral ? 2 : q2 ? 4 : 8;
    cfg->moe_intermediate_size = mixtral ? cfg->intermediate_size : q2 ? 1408 : 768;
    cfg->shared_expert_intermediate_size = q2 ? 5632 : 0;
    cfg->norm_topk_prob = mixtral;   /* Mixtral renormalizes always, without a key */
    if ((rc = get_int(p, root, ne, ne, false, 1, 4096, &cfg->num_experts)) ||
        (rc = get_int(p, root, "num_experts_per_tok", "num_experts_per_tok", false, 1, 4096,
                      &cfg->num_experts_per_tok)) ||
        (!mixtral && (rc = get_int(p, root, "moe_intermediate_size", "moe_intermediate_size",
                                   false, 1, MAX_DIM, &cfg->moe_intermediate_size))) ||
        (!mixtral && (rc = get_bool(p, root, "norm_topk_prob", &cfg->norm_topk_prob))) ||
        (!mixtral && (rc = get_int(p, root, "decoder_sparse_step", "decoder_sparse_step", false,
                                   1, MODEL_MAX_LAYERS, &step))))
        return rc;
    if (cfg->num_experts_per_tok > cfg->num_experts) {
        errf(p->err, "%s: num_experts_per_tok: %d is more than the %d experts", p->path,
             cfg->num_experts_per_tok, cfg->num_experts);
        return -EINVAL;
    }
    for (int l = 0; l < cfg->num_layers; l++)
        cfg->layer_moe[l] = (l + 1) % step == 0;
    if (only && (mixtral || !cJSON_IsArray(only)))
        return bad(p, "mlp_only_layers", "%s", mixtral ? "not a Mixtral key"
                                                       : "expected a list of layer indices");
    for (const cJSON *e = only ? only->child : NULL; e; e = e->next) {
        if (!is_int(e) || e->valuedouble < 0 || e->valuedouble >= cfg->num_layers) {
            errf(p->err, "%s: mlp_only_layers: expected layer indices in [0, %d)", p->path,
                 cfg->num_layers);
            return -EINVAL;
        }
        cfg->layer_moe[(int)e->valuedouble] = false;
    }
    if (!q2 && member(root, "shared_expert_intermediate_size"))
        return bad(p, "shared_expert_intermediate_size", "%s",
                   "a shared expert is Qwen2-MoE's (Qwen2MoeForCausalLM), not this architecture's");
    if (q2)
        return get_int(p, root, "shared_expert_intermediate_size", "shared_expert_intermediate_size",
                       false, 1, MAX_DIM, &cfg->shared_expert_intermediate_size);
    return 0;
}

/* A soft-cap: absent keeps the family's default, null or 0 turns it off. */
static int get_softcap(struct cfg_parse *p, const cJSON *root, const char *key, double *v)
{
    if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(root, key))) {
        *v = 0;
        return 0;
    }
    return get_pos(p, root, key, key, false, true, v);
}

/* Gemma's choices (transformers' Gemma2Config / Gemma3TextConfig defaults): (1 + w) norms,
 * sandwich norms, scaled embeddings, query_pre_attn_scalar, soft-caps (Gemma 2 by default),
 * the local RoPE base of Gemma 3's sliding layers. */
int model__parse_gemma(struct cfg_parse *p, const cJSON *root, struct model_config *cfg)
{
    bool bidirectional = false;
    int rc;

    if ((rc = get_bool(p, root, "use_bidirectional_attention", &bidirectional)))
        return rc;
    if (bidirectional)
        return bad(p, "use_bidirectional_attention", "%s",
                   "true is not supported (osprey serves causal language models)");
    cfg->norm_plus_one = cfg->sandwich_norms = cfg->scale_embeddings = true;
    cfg->query_pre_attn_scalar = 256;
    cfg->attn_softcap = cfg->arch == ARCH_GEMMA2 ? 50.0 : 0.0;
    cfg->final_softcap = cfg->arch == ARCH_GEMMA2 ? 30.0 : 0.0;
    cfg->rope_local_theta = cfg->arch == ARCH_GEMMA3 ? 10000.0 : 0.0;
    if ((rc = get_pos(p, root, "query_pre_attn_scalar", "query_pre_attn_scalar", false, false,
                      &cfg->query_pre_attn_scalar)) ||
        (rc = get_softcap(p, root, "attn_logit_softcapping", &cfg->attn_softcap)) ||
        (rc = get_softcap(p, root, "final_logit_softcapping", &cfg->final_softcap)))
        return rc;
    if (cfg->arch == ARCH_GEMMA3)
        return get_pos(p, root, "rope_local_base_freq", "rope_local_base_freq", false, false,
                       &cfg->rope_local_theta);
    return 0;
}
