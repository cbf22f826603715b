/* gen_model_presets.c — the presets of `osprey gen-model`: each a family's shape (tiny ones
 * for tests, published ones for benchmarks and --load-format dummy), written out as a
 * config.json by gen_model_config.c. */
#include <stdio.h>
#include <string.h>

#include "engine/model/gen_model.h"
#include "engine/model/gen_model_internal.h"

static const struct preset presets[] = {
    /* name            arch          vocab   hid   ffn    L   H   KV  D    max_pos theta eps  tied
     *                                                                     llama3 window mixed pattern
     *                                                                     linear experts top_k moe_ffn */
    { "tiny",          ARCH_LLAMA,   512,    64,   128,   2,  4,  2,  16,  2048,   5e5, 1e-5, false,
                                                                           0,     0,     false, 0, 0, 0, 0, 0 },
    { "tiny-qwen2",    ARCH_QWEN2,   512,    64,   128,   2,  4,  2,  16,  2048,   1e6, 1e-6, true,
                                                                           0,     0,     false, 0, 0, 0, 0, 0 },
    { "tiny-qwen3",    ARCH_QWEN3,   512,    64,   128,   2,  4,  2,  32,  2048,   1e6, 1e-6, true,
                                                                           0,     0,     false, 0, 0, 0, 0, 0 },
    { "tiny-mistral",  ARCH_MISTRAL, 512,    64,   128,   2,  4,  2,  16,  2048,   1e6, 1e-5, false,
                                                                           0,     32,    false, 0, 0, 0, 0, 0 },
    /* transformers' LlamaForCausalLM ignores layer_types; osprey honours them. */
    { "tiny-mixed",    ARCH_LLAMA,   512,    64,   128,   4,  4,  2,  16,  2048,   5e5, 1e-5, false,
                                                                           0,     32,    true,  0, 0, 0, 0, 0 },
    { "llama-3.2-1b",  ARCH_LLAMA,   128256, 2048, 8192,  16, 32, 8,  64,  131072, 5e5, 1e-5, true,
                                                                           32,    0,     false, 0, 0, 0, 0, 0 },
    { "bench-1.5b",    ARCH_LLAMA,   128256, 2048, 8192,  16, 32, 8,  64,  8192,   5e5, 1e-5, false,
                                                                           0,     0,     false, 0, 0, 0, 0, 0 },
    { "llama-3.1-8b",  ARCH_LLAMA,   128256, 4096, 14336, 32, 32, 8,  128, 131072, 5e5, 1e-5, false,
                                                                           8,     0,     false, 0, 0, 0, 0, 0 },
    /* 140 GB of bf16: a shape for --no-weights and --load-format dummy (fp8 fits one H200) */
    { "llama-3.1-70b", ARCH_LLAMA,   128256, 8192, 28672, 80, 64, 8,  128, 131072, 5e5, 1e-5, false,
                                                                           8,     0,     false, 0, 0, 0, 0, 0 },
    /* Gemma: window and pattern (Gemma 2 alternates from a sliding layer 0; Gemma 3 has 5
     * local layers to 1 global), soft-caps 50/30 on Gemma 2, Gemma 3's local RoPE base 1e4. */
    { "tiny-gemma2",   ARCH_GEMMA2,  512,    64,   128,   4,  4,  2,  16,  8192,   1e4, 1e-6, true,
                                                                           0,     32,    false, 2, 0, 0, 0, 0 },
    { "tiny-gemma3",   ARCH_GEMMA3,  512,    64,   128,   6,  4,  1,  32,  32768,  1e6, 1e-6, true,
                                                                           0,     32,    false, 6, 0, 0, 0, 0 },
    { "gemma-3-4b",    ARCH_GEMMA3,  262208, 2560, 10240, 34, 8,  4,  256, 131072, 1e6, 1e-6, true,
                                                                           0,     1024,  false, 6,
                                                                           8.0,   0, 0, 0 },
    /* MoE: experts, top-k, expert ffn. Mixtral's experts are intermediate_size wide; Qwen3-MoE
     * renormalizes its top 8 (norm_topk_prob) and has moe_intermediate_size. */
    { "tiny-mixtral",  ARCH_MIXTRAL, 512,    64,   128,   2,  4,  2,  16,  32768,  1e6, 1e-5, false,
                                                                           0,     0,     false, 0,
                                                                           0,     8, 2, 128 },
    { "tiny-qwen3-moe", ARCH_QWEN3_MOE, 512, 64,   128,   2,  4,  2,  32,  40960,  1e6, 1e-6, false,
                                                                           0,     0,     false, 0,
                                                                           0,     16, 4, 32 },
    { "tiny-qwen2-moe", ARCH_QWEN2_MOE, 512, 64,   96,    2,  4,  2,  16,  8192,   1e6, 1e-6, false,
                                                                           0,     0,     false, 0,
                                                                           0,     8, 2, 24 },
    { "mixtral-8x7b",  ARCH_MIXTRAL, 32000,  4096, 14336, 32, 32, 8,  128, 32768,  1e6, 1e-5, false,
                                                                           0,     0,     false, 0,
                                                                           0,     8, 2, 14336 },
    { "qwen3-30b-a3b", ARCH_QWEN3_MOE, 151936, 2048, 6144, 48, 32, 4, 128, 40960,  1e6, 1e-6, false,
                                                                           0,     0,     false, 0,
                                                                           0,     128, 8, 768 },
    /* Phi-3: fused projections, Phi-4-mini's partial rotary factor 0.75 and LongRoPE over
     * an original 4096 positions (gen_model_config.c's phi3_config writes them) */
    { "tiny-phi3",     ARCH_PHI3,    512,    64,   128,   2,  4,  2,  16,  131072, 1e4, 1e-5, false,
                                                                           0,     0,     false, 0,
                                                                           0,     0, 0, 0 },
    /* gpt-oss: layers alternate sliding (from layer 0) and full, YaRN factor 32 over an
     * original max_pos / 32, biases, sinks, experts fused input-major as published in bf16
     * (gen_model_config.c's gpt_oss_config writes its keys) */
    { "tiny-gpt-oss",  ARCH_GPT_OSS, 512,    64,   64,    4,  4,  2,  16,  4096,   1.5e5, 1e-5, false,
                                                                           0,     32,    false, 0,
                                                                           0,     4, 2, 64 },
    /* gpt-oss-20b's shape in bf16 (41 GB), and a CPU benchmark's scaled-down one (0.63 GB:
     * docs/BENCHMARKS.md) with its heads, window, experts and top-k */
    { "gpt-oss-20b",   ARCH_GPT_OSS, 201088, 2880, 2880,  24, 64, 8,  64,  131072, 1.5e5, 1e-5, false,
                                                                           0,     128,   false, 0,
                                                                           0,     32, 4, 2880 },
    { "bench-gpt-oss", ARCH_GPT_OSS, 4096,   720,  720,   6,  16, 4,  64,  131072, 1.5e5, 1e-5, false,
                                                                           0,     128,   false, 0,
                                                                           0,     32, 4, 720 },
};

const char *gen_model_preset_name(int i)
{
    return i >= 0 && i < (int)ARRAY_LEN(presets) ? presets[i].name : NULL;
}

const struct preset *gen_preset_find(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(presets); i++)
        if (!strcmp(name, presets[i].name))
            return &presets[i];
    return NULL;
}

void gen_preset_list(char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0; i < ARRAY_LEN(presets); i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? ", " : "", presets[i].name);
}
