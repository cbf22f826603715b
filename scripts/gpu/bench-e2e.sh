#!/bin/bash
# bench-e2e.sh — model-level figures on the GPU machine for docs/BENCHMARKS.md, plus the
# transformers oracle and the daemon on the cuda backend. Builds nothing: it runs the
# shipped build/osprey with the carried shared libraries. Full logs go under $OUT; the
# last lines are a short table. Figures are printed, never asserted.
#
#   OUT=/tmp/out scripts/gpu/bench-e2e.sh [quick]
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/osprey-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$PWD/.carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
B=build/osprey
M15=/tmp/bench-1.5b
M1B=/tmp/llama-3.2-1b
QUICK=${1:-}
summary="$OUT/summary.txt"
: > "$summary"

note() { echo "$*" | tee -a "$summary"; }
bench() {   # name, then osprey bench arguments
    local name=$1; shift
    $B bench --backend cuda "$@" > "$OUT/bench-$name.log" 2>&1
    local rc=$?
    note "$(printf '%-26s rc=%d  %s | %s | %s' "$name" $rc \
        "$(grep -m1 'output tokens/s' "$OUT/bench-$name.log")" \
        "$(grep -m1 'decode steps' "$OUT/bench-$name.log")" \
        "$(grep -m1 'TPOT' "$OUT/bench-$name.log")")"
}

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
note "device: $(tail -1 "$OUT/gpu.txt")"

t=$(date +%s.%N)
$B gen-model --config bench-1.5b --out $M15 > "$OUT/gen-1.5b.log" 2>&1
note "gen-model bench-1.5b: $(tail -1 "$OUT/gen-1.5b.log")"

# 1. decode at batch 1: one request, short prompt, long output
bench decode-b1 --model $M15 --num-prompts 1 --input-len 128 --output-len 1024 --temperature 0
bench decode-b1-eager --model $M15 --num-prompts 1 --input-len 128 --output-len 512 --temperature 0 --enforce-eager
bench decode-b1-unfused --model $M15 --num-prompts 1 --input-len 128 --output-len 512 --temperature 0 --no-fused-rope-cache

# 2. offline throughput
bench tput-256x128x128 --model $M15 --num-prompts 256 --input-len 128 --output-len 128
bench tput-64x128x128 --model $M15 --num-prompts 64 --input-len 128 --output-len 128

# 3. step time with graphs vs eager
if [ -z "$QUICK" ]; then
    for b in 8 64 256; do
        bench steps-b$b --model $M15 --num-prompts $b --input-len 128 --output-len 256 --temperature 0
        bench steps-b$b-eager --model $M15 --num-prompts $b --input-len 128 --output-len 256 --temperature 0 --enforce-eager
    done
fi

# 4. the nano-vllm workload on the llama-3.2-1b shape
if [ -z "$QUICK" ]; then
    $B gen-model --config llama-3.2-1b --out $M1B > "$OUT/gen-1b.log" 2>&1
    bench nano-vllm --model $M1B --num-prompts 256 --input-len 100 --input-len-max 1024 \
        --output-len 100 --output-len-max 1024 --max-model-len 2048
fi

# 5. cold start: process start to /health 200 with graphs captured
start=$(date +%s.%N)
$B serve --model $M15 --backend cuda --port 18000 --max-model-len 4096 > "$OUT/serve-1.5b.log" 2>&1 &
pid=$!
code=000
for i in $(seq 1 600); do
    code=$(curl -s -o /dev/null -w '%{http_code}' localhost:18000/health)
    [ "$code" = 200 ] && break
    sleep 0.05
done
ready=$(date +%s.%N)
note "cold start to /health $code: $(awk -v a="$start" -v b="$ready" 'BEGIN { printf "%.2f", b - a }') s"
grep -E "opened|runner_create|GPU memory|captured" "$OUT/serve-1.5b.log" | sed 's/^/    /' | tee -a "$summary"
curl -s localhost:18000/v1/completions -H 'Content-Type: application/json' \
    -d '{"prompt": "The osprey", "max_tokens": 16, "temperature": 0}' > "$OUT/serve-completion.json"
note "completion: $(head -c 300 "$OUT/serve-completion.json")"
if [ -x scripts/bench.sh ]; then
    scripts/bench.sh -u http://127.0.0.1:18000 -c 64 -n 256 -p 100 -o 128 -s 1 \
        > "$OUT/curl-bench.log" 2>&1
    note "curl bench (64 clients, streamed): $(grep -iE 'tokens/s' "$OUT/curl-bench.log" | head -2 | tr '\n' ' ')"
fi
kill -TERM $pid; wait $pid; note "serve exit status after SIGTERM: $?"

# 6. transformers as the oracle: greedy tokens, cuda and cpu
PYTHONUNBUFFERED=1 python3 scripts/oracle/hf_gpu_check.py $B tests/data/hf/* $M15 \
    > "$OUT/hf-oracle.log" 2>&1
oracle_rc=$?
note "hf oracle rc=$oracle_rc"
sed 's/^/    /' "$OUT/hf-oracle.log" | grep -vE "Warning|warn|^    $" | tail -20 | tee -a "$summary"

echo
echo "==== summary ===="
cat "$summary"
exit $oracle_rc
