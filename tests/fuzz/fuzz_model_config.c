/* fuzz_model_config.c — model_config_parse on config.json and generation_config.json text:
 * the input up to its first NUL is config.json, the rest (when there is a NUL)
 * generation_config.json. An accepted config must hold what model.h promises
 * (num_kv_heads divides num_heads, layers within MODEL_MAX_LAYERS, …) and must group its
 * layers for the KV cache. */
#include "tests/fuzz/fuzz.h"

#include "engine/model/model.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct model_config cfg;
    const char *cj, *gj;
    size_t clen, glen;
    char err[ERR_LEN];
    int group_window[4], layer_group[MODEL_MAX_LAYERS];

    fuzz_split(data, size, &cj, &clen, &gj, &glen);
    if (model_config_parse(&cfg, cj, clen, gj, glen, "fuzz/config.json", err) != 0)
        return 0;
    if (cfg.num_layers <= 0 || cfg.num_layers > MODEL_MAX_LAYERS || cfg.num_heads <= 0 ||
        cfg.num_kv_heads <= 0 || cfg.num_heads % cfg.num_kv_heads || cfg.head_dim <= 0 ||
        cfg.vocab_size <= 0 || cfg.hidden_size <= 0 || cfg.num_eos_token_ids < 0 ||
        cfg.num_eos_token_ids > MODEL_MAX_EOS)
        abort();
    /* an FP8 block-wise config has a usable block size (engine/model/quant.c) */
    if (cfg.quant == QUANT_FP8_BLOCK &&
        (cfg.quant_block[0] < 1 || cfg.quant_block[1] < 1 || cfg.quant_block[0] > 65536 ||
         cfg.quant_block[1] > 65536))
        abort();
    /* yarn (gpt-oss) has what engine/rope.c divides by and takes logs of; experts top-k fit */
    if (cfg.rope_scaling.type == ROPE_YARN &&
        !(cfg.rope_scaling.factor > 0 && cfg.rope_scaling.original_max_position_embeddings > 0 &&
          cfg.rope_scaling.beta_fast > 0 && cfg.rope_scaling.beta_slow > 0 &&
          cfg.rope_scaling.attention_factor > 0))
        abort();
    if (cfg.num_experts && (cfg.num_experts_per_tok < 1 ||
                            cfg.num_experts_per_tok > cfg.num_experts))
        abort();
    model_kv_groups(&cfg, group_window, layer_group, 4);
    return 0;
}
