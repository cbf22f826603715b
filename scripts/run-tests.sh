#!/bin/sh
# run-tests.sh BUILD [SAN_BUILD] — runs every CPU test: first the fuzz harnesses briefly
# (build-fuzz/, made by `make fuzz-build`: every committed corpus replayed, then
# FUZZ_BRIEF_SECONDS of fuzzing each), then, given SAN_BUILD (a SANITIZE=1 build), the Check
# runner built with ASan + UBSan against the sanitized daemon, then BUILD's Check runner (unit +
# integration + stress suites), last so that its summary line ends the output. GPU tests say
# whether they ran. Any failure makes the exit status 1.
set -u
cd "$(dirname "$0")/.."
build=${1:-build}
san=${2:-}
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
# For a sanitized runner (SAN_BUILD, or BUILD itself under make test SANITIZE=1; other builds
# ignore these). Every report is fatal: ASan's and LSan's end the process, and so do UBSan's
# (built with -fno-sanitize-recover). ASan's quarantine of freed memory (256 MiB by default)
# would hide the daemon's real RSS from the overload test's bound; 8 MiB still catches use
# after free.
export ASAN_OPTIONS="${ASAN_OPTIONS:-quarantine_size_mb=8:detect_leaks=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
if [ -n "$san" ]; then
    echo "The suites built with ASan + UBSan ($san/osprey-tests):"
    OSPREY_BIN="$PWD/$san/osprey" "$san/osprey-tests" || status=1
    echo "The suites ($build/osprey-tests):"
fi
OSPREY_BIN="$PWD/$build/osprey" "$build/osprey-tests" || status=1
exit $status
