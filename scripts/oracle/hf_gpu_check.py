#!/usr/bin/env python3
"""hf_gpu_check.py — transformers as the outside oracle on the GPU machine.

For each model folder given, transformers loads it on the GPU (eager attention) and
generates greedily from a fixed prompt; `osprey generate --backend cuda` (and, for small
models, `--backend cpu`) must produce the same tokens.

Tiny models (at most --exact-max-params parameters: the tests/data/hf folders) run in
float32 in transformers, an exact reference: osprey's cpu backend (f32) must give identical
tokens, no allowance. Everywhere else (osprey's cuda backend, bf16; larger models, whose
reference runs in bf16) a differing token is a near-tie, not a failure, only when
transformers' gap between its best and second-best logit at the first differing step is
below what bf16 can resolve on that row: 2^-7 of the row's largest |logit| (a bf16 value
carries 8 significant bits; two bf16 evaluations of the same logit may each be half a
step off in their inputs' rounding, hence two halves of 2^-7 relative). The line says how
many tokens agreed before it.

    python3 scripts/oracle/hf_gpu_check.py [--cpu-max-params N] [--exact-max-params N] \
        OSPREY_BIN MODEL_DIR...

Prints one line per model and backend and a total, and exits non-zero on a real mismatch.
"""
import json
import os
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM

NEW_TOKENS = 24
BF16_TIE = 2.0 ** -7   # of the row's largest |logit|: what bf16 cannot resolve (see above)


def hf_greedy(model_dir, prompt, dtype):
    # an f32 reference must be f32 throughout: no TF32 products (off by default; said here)
    torch.backends.cuda.matmul.allow_tf32 = False
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype,
                                                 attn_implementation="eager").cuda().eval()
    ids = torch.tensor([prompt], device="cuda")
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                             do_sample=False, eos_token_id=None, pad_token_id=0)
        full = model(out[:, :-1]).logits[0].float()
    greedy = out[0, len(prompt):].tolist()
    gaps, bounds = [], []
    for i in range(NEW_TOKENS):
        row = full[len(prompt) - 1 + i]
        top = torch.topk(row, 2).values
        gaps.append(float(top[0] - top[1]))
        bounds.append(BF16_TIE * float(row.abs().max()))
    del model
    torch.cuda.empty_cache()
    return greedy, gaps, bounds


def num_params(model_dir):
    """Parameters in the safetensors headers, without loading a tensor."""
    import glob
    import struct
    n = 0
    for path in glob.glob(os.path.join(model_dir, "*.safetensors")):
        with open(path, "rb") as f:
            header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        for name, t in header.items():
            if name != "__metadata__":
                count = 1
                for dim in t["shape"]:
                    count *= dim
                n += count
    return n


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
    cpu_max, exact_max = 200_000_000, 10_000_000
    while args and args[0] in ("--cpu-max-params", "--exact-max-params"):
        if args[0] == "--cpu-max-params":
            cpu_max = int(args[1])
        else:
            exact_max = int(args[1])
        args = args[2:]
    binary, dirs = args[0], args[1:]
    failures = identical = ties = 0
    for d in dirs:
        with open(os.path.join(d, "config.json")) as f:
            vocab = json.load(f)["vocab_size"]
        g = torch.Generator().manual_seed(7)
        prompt = torch.randint(3, vocab, (16,), generator=g).tolist()
        params = num_params(d)
        tiny = params <= exact_max
        ref, gaps, bounds = hf_greedy(d, prompt, torch.float32 if tiny else torch.bfloat16)
        backends = ["cuda"] + (["cpu"] if params <= cpu_max else [])
        for be in backends:
            ours = osprey_greedy(binary, d, prompt, be)
            same = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), None)
            name = os.path.basename(d.rstrip("/"))
            ref_kind = "transformers f32" if tiny else "transformers bf16"
            # the f32 reference of a tiny model and osprey's f32 cpu backend: no allowance
            exact = tiny and be == "cpu"
            if same is None and len(ours) == len(ref):
                identical += 1
                print(f"{name:18s} {be:4s} identical: {NEW_TOKENS}/{NEW_TOKENS} greedy tokens "
                      f"(vs {ref_kind})")
            elif same is not None and not exact and gaps[same] < bounds[same]:
                ties += 1
                print(f"{name:18s} {be:4s} near-tie: {same}/{NEW_TOKENS} tokens identical before "
                      f"it, then {ref_kind}'s top-2 gap {gaps[same]:.4g} < bf16 bound "
                      f"{bounds[same]:.4g}")
            else:
                failures += 1
                print(f"{name:18s} {be:4s} MISMATCH at token {same} ({same} identical before): "
                      f"osprey {ours} {ref_kind} {ref} (gap "
                      f"{gaps[same] if same is not None else 'n/a'}, bf16 bound "
                      f"{bounds[same] if same is not None else 'n/a'}"
                      f"{', exact match required' if exact else ''})")
    print(f"total: {identical} identical, {ties} near-ties, {failures} mismatches")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
