#!/bin/sh
# run-tests.sh BUILD — runs every CPU test. GPU tests say whether they ran; the Check runner
# (unit + integration suites) goes last so that its summary line ends the output.
set -u
cd "$(dirname "$0")/.."
build=${1:-build}
export OSPREY_BIN="$PWD/$build/osprey"
export OSPREY_TEST_TMP="${TMPDIR:-/tmp}/osprey-tests.$$"
mkdir -p "$OSPREY_TEST_TMP"
trap 'rm -rf "$OSPREY_TEST_TMP"' EXIT
# the GPU checks run here only where there is a device; elsewhere they say "skipped"
if [ -x "$build/osprey-gpu-tests" ]; then
    echo "GPU tests ($build/osprey-gpu-tests):"
    "$build/osprey-gpu-tests" || exit 1
fi
"$build/osprey-tests"
