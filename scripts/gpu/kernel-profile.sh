#!/bin/bash
# kernel-profile.sh — where a step's GPU time goes: Nsight Compute times one window of
# kernel launches of `osprey bench` (eager, so every kernel is its own launch) and the
# durations are summed by kernel name. The GPU machine has ncu but no nsys.
#   kernel-profile.sh MODEL NAME SKIP COUNT -- BENCH_ARGS...   (writes $OUT/prof-NAME.txt)
set -u
model=$1 name=$2 skip=$3 count=$4; shift 5
OUT=${OUT:-/tmp/osprey-out}
export LD_LIBRARY_PATH="$PWD/.carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
/usr/local/cuda/bin/ncu --clock-control none --launch-skip "$skip" --launch-count "$count" \
    --metrics gpu__time_duration.sum --csv build/osprey bench --backend cuda --model "$model" \
    --enforce-eager "$@" > "$OUT/prof-$name.csv" 2> "$OUT/prof-$name.err"
python3 - "$OUT/prof-$name.csv" > "$OUT/prof-$name.txt" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head = rows[0]; k = head.index("Kernel Name"); v = head.index("Metric Value")
tot = collections.defaultdict(float); cnt = collections.Counter()
for r in rows[1:]:
    name = r[k].split("(")[0][:90]
    tot[name] += float(r[v].replace(",", "")) / 1e3; cnt[name] += 1
all_us = sum(tot.values())
print(f"{len(rows) - 1} kernels, {all_us:.1f} us in all")
for n, t in sorted(tot.items(), key=lambda x: -x[1]):
    print(f"{t:10.1f} us {100 * t / all_us:5.1f}%  x{cnt[n]:<4d} {n}")
PY
cat "$OUT/prof-$name.txt"
