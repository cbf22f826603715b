#!/usr/bin/env python3
"""hf_gpu_check.py — transformers as the outside oracle on the GPU machine.

For each model folder given, transformers loads it (bf16 on the GPU, eager attention) and
generates greedily from a fixed prompt; `osprey generate --backend cuda` (and, for small
models, `--backend cpu`) must produce the same tokens. Where the two differ, the script
reports transformers' gap between its best and second-best logit at the first differing
step: a gap below bf16's resolution is a near-tie, where any two correct bf16
implementations may part ways; anything else is a failure.

    python3 scripts/oracle/hf_gpu_check.py [--cpu-max-params N] OSPREY_BIN MODEL_DIR...

Prints one line per model and backend, and exits non-zero on a real mismatch.
"""
import json
import os
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM

NEW_TOKENS = 24
TIE_GAP = 0.06   # logits of magnitude ~10 in bf16 are ~0.03-0.06 apart at most


def hf_greedy(model_dir, prompt):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16,
                                                 attn_implementation="eager").cuda().eval()
    ids = torch.tensor([prompt], device="cuda")
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                             do_sample=False, eos_token_id=None, pad_token_id=0)
        full = model(out[:, :-1]).logits[0].float()
    greedy = out[0, len(prompt):].tolist()
    gaps = []
    for i in range(NEW_TOKENS):
        top = torch.topk(full[len(prompt) - 1 + i], 2).values
        gaps.append(float(top[0] - top[1]))
    params = sum(p.numel() for p in model.parameters())
    del model
    torch.cuda.empty_cache()
    return greedy, gaps, params


def osprey_greedy(binary, model_dir, prompt, backend):
    cmd = [binary, "generate", "--model", model_dir, "--backend", backend, "--prompt-ids",
           json.dumps(prompt), "--max-tokens", str(NEW_TOKENS), "--ignore-eos", "--ids",
           "--max-model-len", "256"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
    return json.loads(r.stdout)


def main():
    args = sys.argv[1:]
    cpu_max = 200_000_000
    if args and args[0] == "--cpu-max-params":
        cpu_max = int(args[1])
        args = args[2:]
    binary, dirs = args[0], args[1:]
    failures = 0
    for d in dirs:
        with open(os.path.join(d, "config.json")) as f:
            vocab = json.load(f)["vocab_size"]
        g = torch.Generator().manual_seed(7)
        prompt = torch.randint(3, vocab, (16,), generator=g).tolist()
        ref, gaps, params = hf_greedy(d, prompt)
        backends = ["cuda"] + (["cpu"] if params <= cpu_max else [])
        for be in backends:
            ours = osprey_greedy(binary, d, prompt, be)
            same = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), None)
            name = os.path.basename(d.rstrip("/"))
            if same is None and len(ours) == len(ref):
                print(f"{name:18s} {be:4s} identical: {NEW_TOKENS}/{NEW_TOKENS} greedy tokens")
            elif same is not None and gaps[same] < TIE_GAP:
                print(f"{name:18s} {be:4s} near-tie: first {same} tokens identical, then "
                      f"transformers' top-2 gap was {gaps[same]:.4f} (< {TIE_GAP})")
            else:
                failures += 1
                print(f"{name:18s} {be:4s} MISMATCH at token {same}: osprey {ours} "
                      f"transformers {ref} (gap {gaps[same] if same is not None else 'n/a'})")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
