#!/bin/bash
# tp-multi.sh — tensor parallelism on a host with several GPUs (issue 14), for the day such a
# machine is lent: the NCCL GPU cases (TP = 2 against TP = 1, graphs against eager, one
# layer's all-reduce inside a graph), the integration suites served with
# --tensor-parallel-size 2 on cuda, a rank whose step fails taking the daemon down (503,
# exit 1, no hang), and issue 14's benchmarks. Builds nothing: ship build/osprey,
# build/osprey-gpu-tests, build/osprey-tests and .carry/lib as for run-all.sh, then
#   OUT=/tmp/out scripts/gpu/tp-multi.sh [quick]
# Logs under $OUT, the short version in $OUT/summary.txt. Figures are printed, never
# asserted; exits non-zero when a correctness check failed. With fewer than 2 GPUs it prints
# "skipped: needs 2 GPUs" and exits 0 — which is no pass.
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/osprey-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$PWD/.carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
B=build/osprey
QUICK=${1:-}
summary="$OUT/summary.txt"
fail=0
: > "$summary"
note() { echo "$*" | tee -a "$summary"; }

n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
if [ "$n" -lt 2 ]; then
    note "skipped: needs 2 GPUs ($n here)"
    exit 0
fi
nvidia-smi --query-gpu=index,name,memory.total --format=csv > "$OUT/gpus.txt" 2>&1
nvidia-smi topo -m > "$OUT/topo.txt" 2>&1
note "devices: $n x $(sed -n 2p "$OUT/gpus.txt" | cut -d, -f2-)"

# 1. the GPU cases: every case of tests/gpu/test_tp.c and NCCL with one rank
for c in tp nccl failing_rank; do
    timeout 600 build/osprey-gpu-tests --only $c > "$OUT/gpu-$c.log" 2>&1 || fail=1
    note "gpu-tests --only $c: $(grep -E 'cases' "$OUT/gpu-$c.log")"
    grep -E '^[a-z0-9_]+ +(ok|FAIL)' "$OUT/gpu-$c.log" | tee -a "$summary"
done

# 2. the daemon's suites served by two GPUs (OSPREY_TEST_TP_SIZE adds the flag)
export OSPREY_BIN="$PWD/$B" OSPREY_TEST_TMP="$OUT/it-tmp" OSPREY_TEST_BACKEND=cuda OSPREY_TEST_TP_SIZE=2
mkdir -p "$OSPREY_TEST_TMP"
for s in serve_api serve_errors serve_lifecycle serve_grammar; do
    CK_RUN_SUITE=$s timeout 900 build/osprey-tests > "$OUT/it-tp2-$s.log" 2>&1 || fail=1
    note "$s at TP = 2: $(tail -1 "$OUT/it-tp2-$s.log")"
done
unset OSPREY_TEST_TP_SIZE OSPREY_TEST_BACKEND

# 3. a rank that fails: rank 1's third step fails as its device would, before its
#    collectives, leaving rank 0 inside an NCCL all-reduce; the daemon must answer 503 and
#    exit 1 by itself (systemd restarts it), within seconds
M=$OSPREY_TEST_TMP/tiny
$B gen-model --config tiny --out $M > "$OUT/gen-tiny.log" 2>&1
OSPREY_FAULT_TP_RANK=1 OSPREY_FAULT_TP_STEP=3 $B serve --model $M --backend cuda \
    --tensor-parallel-size 2 --port 18123 --kv-cache-memory 64MiB > "$OUT/fault.log" 2>&1 &
pid=$!
for i in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' localhost:18123/health)" = 200 ] && break
    sleep 0.2
done
curl -s -m 20 localhost:18123/v1/completions -H 'content-type: application/json' \
    -d '{"prompt":"device","max_tokens":20,"ignore_eos":true}' > "$OUT/fault-answer.json"
health=$(curl -s -m 5 -o /dev/null -w '%{http_code}' localhost:18123/health)
for i in $(seq 150); do kill -0 $pid 2>/dev/null || break; sleep 0.2; done
if kill -0 $pid 2>/dev/null; then
    note "rank fault: the daemon still runs 30 s later (a hang): FAIL"
    kill -9 $pid; fail=1
else
    wait $pid; rc=$?
    note "rank fault: /health $health, exit $rc (want 503 or none, and 1)"
    [ "$rc" = 1 ] || fail=1
fi

# 4. benchmarks: decode at batch 1 on the llama-3.1-8b shape, TP = 2 against TP = 1
bench() {   # name, then osprey bench arguments
    local name=$1; shift
    $B bench --backend cuda "$@" > "$OUT/bench-$name.log" 2>&1
    note "$(printf '%-22s rc=%d  %s | %s' "$name" $? \
        "$(grep -m1 'output tokens/s' "$OUT/bench-$name.log")" \
        "$(grep -m1 'TPOT' "$OUT/bench-$name.log")")"
}
M8=/tmp/llama-3.1-8b
$B gen-model --config llama-3.1-8b --out $M8 > "$OUT/gen-8b.log" 2>&1
bench 8b-tp1-b1 --model $M8 --num-prompts 1 --input-len 128 --output-len 512 --temperature 0
bench 8b-tp2-b1 --model $M8 --num-prompts 1 --input-len 128 --output-len 512 --temperature 0 \
    --tensor-parallel-size 2
bench 8b-tp2-b1-eager --model $M8 --num-prompts 1 --input-len 128 --output-len 256 \
    --temperature 0 --tensor-parallel-size 2 --enforce-eager
bench 8b-tp1-64x128 --model $M8 --num-prompts 64 --input-len 128 --output-len 128
bench 8b-tp2-64x128 --model $M8 --num-prompts 64 --input-len 128 --output-len 128 \
    --tensor-parallel-size 2
grep -h "tensor parallel rank" "$OUT"/bench-8b-tp2-b1.log | tee -a "$summary"
rm -rf $M8

# 5. the 70B shape at TP = 2, when the disk holds its 141 GB of random bf16 weights (osprey
#    has no --load-format dummy yet). Bandwidth floor: one GPU's half of the weights read once
#    per token at the H200's 4.8 TB/s.
if [ -z "$QUICK" ]; then
    free_gb=$(df -BG --output=avail /tmp | tail -1 | tr -dc 0-9)
    if [ "$free_gb" -ge 160 ]; then
        M70=/tmp/llama-70b
        mkdir -p $M70
        cat > $M70.json <<'EOF'
{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":8192,
 "intermediate_size":28672,"num_hidden_layers":80,"num_attention_heads":64,
 "num_key_value_heads":8,"head_dim":128,"vocab_size":128256,"max_position_embeddings":8192,
 "rope_theta":500000.0,"rms_norm_eps":1e-5,"tie_word_embeddings":false,"torch_dtype":"bfloat16",
 "bos_token_id":128000,"eos_token_id":128001}
EOF
        $B gen-model --config $M70.json --out $M70 > "$OUT/gen-70b.log" 2>&1
        bench 70b-tp2-b1 --model $M70 --num-prompts 1 --input-len 128 --output-len 256 \
            --temperature 0 --tensor-parallel-size 2 --max-model-len 4096
        bench 70b-tp2-64x256 --model $M70 --num-prompts 64 --input-len 128 --output-len 128 \
            --tensor-parallel-size 2 --max-model-len 4096
        note "70B floor at TP = 2: 70.6 GB per GPU / 4.8 TB/s = 14.7 ms per token (68 tokens/s)"
        rm -rf $M70 $M70.json
    else
        note "70B shape skipped: $free_gb GB free on /tmp, 160 needed (no --load-format dummy yet)"
    fi
fi
note "gpt-fast's tp.py: not run (no network on the device machine to fetch it)"
rm -rf "$OSPREY_TEST_TMP"
exit $fail
