#!/bin/sh
# run-tests.sh BUILD — runs every CPU test: first the fuzz harnesses briefly (build-fuzz/, made
# by `make fuzz-build`: every committed corpus replayed, then FUZZ_BRIEF_SECONDS of fuzzing
# each), then the Check runner (unit + integration suites), last so that its summary line
# ends the output. GPU tests say whether they ran. Any failure makes the exit status 1.
set -u
cd "$(dirname "$0")/.."
build=${1:-build}
export OSPREY_BIN="$PWD/$build/osprey"
export OSPREY_TEST_TMP="${TMPDIR:-/tmp}/osprey-tests.$$"
mkdir -p "$OSPREY_TEST_TMP"
trap 'rm -rf "$OSPREY_TEST_TMP"' EXIT
status=0
# the GPU checks run here only where there is a device; elsewhere they say "skipped"
if [ -x "$build/osprey-gpu-tests" ]; then
    echo "GPU tests ($build/osprey-gpu-tests):"
    "$build/osprey-gpu-tests" || exit 1
fi
tests/fuzz/run.sh --brief "${FUZZ_BRIEF_SECONDS:-3}" build-fuzz || status=1
"$build/osprey-tests" || status=1
exit $status
