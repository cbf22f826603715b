#!/bin/sh
# run.sh [--brief] [--merge] SECONDS BUILD_DIR [NAME...] — runs the libFuzzer harnesses
# BUILD_DIR/fuzz_<NAME> (all of them when no NAME is given) for SECONDS each, from the
# repository root, each on its committed corpus tests/fuzz/corpus/<NAME>/, and prints one line
# per harness: executions, time, crashes. tests/fuzz/<NAME>.dict, when present, is the
# harness's libFuzzer dictionary. Every committed input is replayed first (libFuzzer
# runs the whole corpus before it mutates). New inputs go to a scratch folder, never into the
# committed corpus: BUILD_DIR/scratch/<NAME> that persists between runs, or with --brief
# (make test) a fresh temporary one; --merge (make fuzz FUZZ_MERGE=1) then adds to the
# committed corpus the scratch inputs that reach new coverage. A crash, leak, UB report or
# timeout leaves its input in BUILD_DIR/crashes/<NAME>/ and makes the exit status 1.
set -u
cd "$(dirname "$0")/../.."

brief=0 merge=0
while [ $# -gt 0 ]; do
    case $1 in
    --brief) brief=1 ;;
    --merge) merge=1 ;;
    *) break ;;
    esac
    shift
done
if [ $# -lt 2 ]; then
    echo "usage: $0 [--brief] [--merge] SECONDS BUILD_DIR [NAME...]" >&2
    exit 2
fi
seconds=$1 build=$2
shift 2
names=$*
[ -n "$names" ] || names=$(cd "$build" && ls fuzz_* 2>/dev/null | grep -v '\.' | sed 's/^fuzz_//')
if [ -z "$names" ]; then
    echo "fuzz: no harnesses in $build (make fuzz-build)" >&2
    exit 1
fi

# The longest input each harness mutates to: whole files for the file parsers, shorter for
# text and templates (longer inputs only slow the search down).
max_len() {
    case $1 in
    safetensors|tokenizer) echo 65536 ;;
    model_config|jinja|chat_messages|config|openai_request) echo 16384 ;;
    *) echo 4096 ;;
    esac
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/osprey-fuzz.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
status=0
for name in $names; do
    bin=$build/fuzz_$name corpus=tests/fuzz/corpus/$name crashes=$build/crashes/$name/
    scratch=$build/scratch/$name
    [ $brief = 1 ] && scratch=$tmp/$name
    mkdir -p "$scratch" "$crashes" "$corpus"
    log=$build/fuzz_$name.log dict=
    [ -f tests/fuzz/$name.dict ] && dict=-dict=tests/fuzz/$name.dict
    start=$(date +%s)
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$name")" \
        $dict -print_final_stats=1 -artifact_prefix="$crashes" "$scratch" "$corpus" >"$log" 2>&1
    rc=$?
    took=$(($(date +%s) - start))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    [ -n "$runs" ] || runs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    files=$(ls "$corpus" | wc -l)
    if [ $rc = 0 ]; then
        printf 'fuzz %-14s %9s runs in %3d s, %3d corpus files, 0 crashes\n' "$name" "${runs:-0}" "$took" "$files"
    else
        status=1
        printf 'fuzz %-14s %9s runs in %3d s, %3d corpus files, CRASH (exit %d), input in %s, log %s:\n' \
            "$name" "${runs:-0}" "$took" "$files" "$rc" "$crashes" "$log"
        grep -E 'ERROR: |runtime error|SUMMARY|Test unit written|failed:' "$log" | head -n 8 | sed 's/^/    /'
    fi
    if [ $merge = 1 ] && [ $rc = 0 ]; then
        "$bin" -merge=1 -max_len="$(max_len "$name")" -timeout=10 -rss_limit_mb=2048 \
            "$corpus" "$scratch" >"$log.merge" 2>&1 &&
            echo "fuzz $name: corpus now $(ls "$corpus" | wc -l) files"
    fi
done
exit $status
