#!/bin/bash
# run-all.sh — every GPU check and benchmark in one call on the GPU machine; builds nothing.
# Ship build/osprey, build/osprey-gpu-tests, build/osprey-tests and .carry/lib (the Debian
# libraries the machine lacks: scripts/gpu/carry-libs.sh fills it), then:
#   OUT=/tmp/out scripts/gpu/run-all.sh [quick]
# Logs go under $OUT; $OUT/summary.txt is the short version. Exits non-zero when a
# correctness check failed; benchmark figures are printed, never asserted.
set -u
cd "$(dirname "$0")/../.."
export OUT=${OUT:-/tmp/osprey-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$PWD/.carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fail=0

echo "== kernels against the CPU backend, graphs against eager"
build/osprey-gpu-tests > "$OUT/gpu-tests.log" 2>&1 || fail=1
grep -E "FAIL|cases" "$OUT/gpu-tests.log"

echo "== kernel benchmarks, and PyTorch's SDPA on the prefill shapes"
build/osprey-gpu-tests --bench > "$OUT/kernel-bench.log" 2>&1
python3 scripts/gpu/sdpa_bench.py > "$OUT/sdpa.log" 2>&1
cat "$OUT/kernel-bench.log" "$OUT/sdpa.log"

echo "== the daemon's integration suites on the cuda backend"
export OSPREY_BIN="$PWD/build/osprey" OSPREY_TEST_TMP="$OUT/it-tmp" OSPREY_TEST_BACKEND=cuda
mkdir -p "$OSPREY_TEST_TMP"
for s in serve_api serve_errors serve_lifecycle; do
    CK_RUN_SUITE=$s build/osprey-tests > "$OUT/it-cuda-$s.log" 2>&1 || fail=1
    echo "$s: $(tail -1 "$OUT/it-cuda-$s.log")"
done
unset OSPREY_TEST_BACKEND
rm -rf "$OSPREY_TEST_TMP"

echo "== model benchmarks, cold start, curl, transformers oracle"
scripts/gpu/bench-e2e.sh ${1:-} > "$OUT/bench-e2e.log" 2>&1 || fail=1
sed -n '/==== summary ====/,$p' "$OUT/bench-e2e.log"

echo "== tensor parallelism over NCCL (needs 2 GPUs; prints skipped otherwise, which is no pass)"
OUT="$OUT/tp" scripts/gpu/tp-multi.sh ${1:-} > "$OUT/tp-multi.log" 2>&1 || fail=1
cat "$OUT/tp/summary.txt" 2>/dev/null
# the device tool brings back a few files only: every log in one archive
(cd "$OUT" && tar czf /tmp/osprey-logs.tar.gz --exclude summary.txt . &&
    find . -type f ! -name summary.txt -delete && mv /tmp/osprey-logs.tar.gz logs.tar.gz)
exit $fail
