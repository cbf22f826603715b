#!/usr/bin/env python3
"""hf_models.py — the outside oracle: tiny random-weight models built with Hugging Face
transformers, saved with save_pretrained, and what transformers computes for them.

For each model it writes OUT/<name>/ with config.json, generation_config.json and
model.safetensors exactly as save_pretrained writes them, plus
  expected.json  prompt ids, the greedy continuation, the shape of the logits
  logits.f32     little-endian float32 logits [len(prompt) + len(greedy) - 1, vocab]
                 of one forward pass over prompt + greedy tokens (teacher forcing)

osprey's CPU tests (tests/unit/test_hf_oracle.c) load these folders and must give the same
greedy tokens and the same logits within float32 tolerance. Run on a machine with torch and
transformers (the GPU machine has both; no network is needed):

    python3 scripts/oracle/hf_models.py tests/data/hf [NAME ...]

(with names, only those models are rebuilt; each keeps its seed).

Seeds are fixed; the command and the transformers version are recorded in expected.json.
"""
import json
import os
import struct
import sys

import torch
import transformers
from transformers import (AutoModelForCausalLM, Gemma2Config, Gemma3TextConfig, GptOssConfig,
                          LlamaConfig, MistralConfig, MixtralConfig, Phi3Config, Qwen2Config,
                          Qwen2MoeConfig, Qwen3Config, Qwen3MoeConfig)

VOCAB = 384
PROMPT_LEN = 21
NEW_TOKENS = 12


def common(**kw):
    base = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=None)
    base.update(kw)
    # transformers 5 takes rope settings as one rope_parameters object (and writes config.json
    # that way); older versions take rope_theta + rope_scaling.
    theta = base.pop("rope_theta", 10000.0)
    scaling = base.pop("rope_scaling", None)
    if v5():
        rp = {"rope_type": "default", "rope_theta": theta}
        if scaling:
            rp.update(scaling)
        base["rope_parameters"] = rp
    else:
        base["rope_theta"] = theta
        if scaling:
            base["rope_scaling"] = scaling
    return base


def v5():
    return int(transformers.__version__.split(".")[0]) >= 5


def gemma3_rope(base, global_theta, local_theta, linear_factor):
    """Gemma 3's two RoPEs: transformers 5 takes them per layer type in rope_parameters,
    older versions as rope_theta + rope_scaling (global layers) and rope_local_base_freq."""
    base.pop("rope_theta", None)
    base.pop("rope_scaling", None)
    base.pop("rope_parameters", None)
    if v5():
        base["rope_parameters"] = {
            "full_attention": {"rope_type": "linear", "factor": linear_factor,
                               "rope_theta": global_theta},
            "sliding_attention": {"rope_type": "default", "rope_theta": local_theta},
        }
    else:
        base["rope_theta"] = global_theta
        base["rope_scaling"] = {"rope_type": "linear", "factor": linear_factor}
        base["rope_local_base_freq"] = local_theta
    return base


def configs():
    return {
        # Llama 3.x shape: GQA 4:2, llama3 rope scaling with a small original context so the
        # scaling changes low frequencies at short positions, tied embeddings, head_dim 32
        # while hidden / heads = 16.
        "llama3-tied": LlamaConfig(**common(
            head_dim=32, tie_word_embeddings=True, rope_theta=500000.0,
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 32})),
        # Llama 2 shape: no GQA, untied, default rope.
        "llama2": LlamaConfig(**common(num_key_value_heads=4, num_hidden_layers=3,
                                       tie_word_embeddings=False, rope_theta=10000.0)),
        # Qwen2: q/k/v biases.
        "qwen2": Qwen2Config(**common(tie_word_embeddings=False, rope_theta=1000000.0)),
        # Qwen3: q/k RMSNorm, head_dim independent of hidden / heads.
        "qwen3": Qwen3Config(**common(head_dim=24, tie_word_embeddings=True,
                                      rope_theta=1000000.0)),
        # Mistral: every layer slides over a window shorter than the prompt.
        "mistral-window": MistralConfig(**common(sliding_window=8, tie_word_embeddings=False,
                                                 rope_theta=10000.0, head_dim=16)),
        # Qwen3 with layer 0 full attention and layer 1 sliding: two KV-cache groups.
        "qwen3-mixed": Qwen3Config(**common(head_dim=16, use_sliding_window=True,
                                            sliding_window=8, max_window_layers=1,
                                            tie_word_embeddings=False,
                                            rope_theta=1000000.0)),
        # Gemma 2: layers alternate sliding (window 8, shorter than the prompt) and full
        # from a sliding layer 0 (the config's default layer_types); query_pre_attn_scalar
        # != head_dim; soft-caps small enough to bend these weights' logits (the published
        # 50 and 30 would barely touch them); GeGLU, (1 + w) and sandwich norms, scaled
        # embeddings, tied LM head.
        "gemma2": Gemma2Config(**common(
            num_hidden_layers=4, head_dim=16, query_pre_attn_scalar=24, sliding_window=8,
            attn_logit_softcapping=1.0, final_logit_softcapping=2.0,
            hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
            rms_norm_eps=1e-6, rope_theta=10000.0)),
        # Gemma 3: three local layers (window 8, RoPE base 10000) to one global (base 1e6
        # with linear scaling 4, as gemma-3-4b's 8), q/k norm, no soft-caps.
        "gemma3": Gemma3TextConfig(**gemma3_rope(common(
            num_hidden_layers=4, head_dim=16, query_pre_attn_scalar=16, sliding_window=8,
            layer_types=["sliding_attention"] * 3 + ["full_attention"],
            hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
            rms_norm_eps=1e-6), 1000000.0, 10000.0, 4.0)),
        # Mixtral: 4 experts, top 2 (always renormalized), experts as wide as intermediate_size.
        "mixtral": MixtralConfig(**common(num_local_experts=4, num_experts_per_tok=2,
                                          sliding_window=None, tie_word_embeddings=False,
                                          rope_theta=1000000.0)),
        # Qwen3-MoE: 8 experts of 32, top 3 without renormalization, q/k norm, layer 1 dense
        # (mlp_only_layers) with intermediate_size 96.
        "qwen3-moe": Qwen3MoeConfig(**common(num_hidden_layers=3, head_dim=16, num_experts=8,
                                             num_experts_per_tok=3, moe_intermediate_size=32,
                                             norm_topk_prob=False, decoder_sparse_step=1,
                                             mlp_only_layers=[1], tie_word_embeddings=False,
                                             rope_theta=1000000.0)),
        # Qwen2-MoE: q/k/v biases, 8 experts of 24, top 2 unnormalized, a shared expert of 80
        # behind its sigmoid gate.
        "qwen2-moe": Qwen2MoeConfig(**common(num_experts=8, num_experts_per_tok=2,
                                             moe_intermediate_size=24,
                                             shared_expert_intermediate_size=80,
                                             norm_topk_prob=False, decoder_sparse_step=1,
                                             mlp_only_layers=[], tie_word_embeddings=False,
                                             rope_theta=1000000.0)),
        # Phi-3: fused qkv_proj / gate_up_proj, partial rotary 0.75 (12 of 16 dims turn) and
        # LongRoPE over an original 128 positions of 512 (attention factor sqrt(1 + ln 4 /
        # ln 128)); the prompt stays within 128, so transformers uses the short factors, as
        # osprey does for max_model_len <= 128 (test_hf_oracle.c's rig).
        "phi3": Phi3Config(**common(
            max_position_embeddings=512, original_max_position_embeddings=128,
            partial_rotary_factor=0.75, sliding_window=None, tie_word_embeddings=False,
            rope_theta=10000.0, rope_scaling={
                ("rope_type" if v5() else "type"): "longrope",
                "short_factor": [1.0, 1.1, 1.3, 1.6, 2.0, 2.5],
                "long_factor": [2.0, 3.0, 5.0, 8.0, 13.0, 21.0],
                **({"original_max_position_embeddings": 128} if v5() else {})})),
        # gpt-oss: layers alternate sliding (window 8, shorter than the prompt) and full from
        # a sliding layer 0 (GptOssConfig's default layer_types); 4 experts of 64, top 2, with
        # the biased router and the clamped SwiGLU (limit 7, which build() makes bite by
        # scaling the experts up); q/k/v/o biases; attention sinks (zero-initialized by
        # transformers 5: build() randomizes them); YaRN factor 4 over an original 1024 of
        # 4096 positions (max_position_embeddings = factor * original, so that transformers
        # versions that derive the factor from their ratio agree), truncate false: its ramp
        # crosses frequencies 2 and 3 of the 8.
        "gpt-oss": GptOssConfig(**common(
            num_hidden_layers=4, head_dim=16, intermediate_size=64, num_local_experts=4,
            num_experts_per_tok=2, sliding_window=8, max_position_embeddings=4096,
            swiglu_limit=7.0, attention_bias=True, tie_word_embeddings=False,
            rope_theta=150000.0, rope_scaling={
                "rope_type": "yarn", "factor": 4.0, "beta_fast": 32.0, "beta_slow": 1.0,
                "original_max_position_embeddings": 1024, "truncate": False})),
    }


def build(name, cfg, out_root, seed):
    torch.manual_seed(seed)
    # eager attention: the plain masked softmax, sliding window included
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    # Norm weights start at 1 and biases at 0; give them random values so that a loader
    # that ignored them (or swapped q_norm with k_norm) would fail.
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif pname.endswith(".sinks"):
                # gpt-oss: of the size of the attention logits, so that one ignored (or a
                # sink put in the numerator) moves every row of the softmax
                p.copy_(1.5 * torch.randn_like(p))
            elif pname.endswith("experts.gate_up_proj"):
                # gpt-oss: large enough that the SwiGLU's clamp at 7 bites on some entries
                p.copy_(0.6 * torch.randn_like(p))
            elif pname.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.08 * torch.randn_like(p))
    out = os.path.join(out_root, name)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)

    g = torch.Generator().manual_seed(seed + 1)
    prompt = torch.randint(3, VOCAB, (1, PROMPT_LEN), generator=g)
    with torch.no_grad():
        gen = model.generate(prompt, max_new_tokens=NEW_TOKENS, do_sample=False,
                             min_new_tokens=NEW_TOKENS, eos_token_id=None, pad_token_id=0)
        greedy = gen[0, PROMPT_LEN:].tolist()
        full = gen[:, :-1]
        logits = model(full).logits[0].float().contiguous()
    # Greedy must be argmax of the teacher-forced logits (same computation path): check.
    am = logits[PROMPT_LEN - 1:].argmax(-1).tolist()
    if am != greedy:
        print(f"warning: {name}: generate() and argmax of the full forward differ", file=sys.stderr)
    with open(os.path.join(out, "logits.f32"), "wb") as f:
        f.write(struct.pack("<%df" % logits.numel(), *logits.flatten().tolist()))
    exp = {
        "command": "python3 scripts/oracle/hf_models.py " + out_root,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "seed": seed,
        "prompt_ids": prompt[0].tolist(),
        "greedy_ids": greedy,
        "logits_shape": list(logits.shape),
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(exp, f, indent=1)
    print(f"{name}: {sum(p.numel() for p in model.parameters())} params, greedy {greedy}")


def main():
    out_root = sys.argv[1] if len(sys.argv) > 1 else "tests/data/hf"
    only = set(sys.argv[2:])   # optional: build just these names (seeds stay the same)
    for i, (name, cfg) in enumerate(configs().items()):
        if not only or name in only:
            build(name, cfg, out_root, 1000 + i)


if __name__ == "__main__":
    main()
