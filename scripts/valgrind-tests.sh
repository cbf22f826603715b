#!/bin/sh
# valgrind-tests.sh [SUITE...] — the integration suites (default: serve_api serve_errors
# serve_lifecycle openai_client) with every daemon they start running under valgrind memcheck
# (tests/integration/daemon.c reads OSPREY_TEST_WRAPPER). A report of any kind — an invalid
# read or write, a use of uninitialised memory, a leak definitely, indirectly or possibly
# lost — fails the test whose daemon printed it. Needs `make build/osprey build/osprey-tests`
# (not SANITIZE=1: ASan and valgrind exclude each other). Takes about ten minutes on 2 cores.
set -u
cd "$(dirname "$0")/.."
suites=${*:-serve_api serve_errors serve_lifecycle openai_client}
export OSPREY_BIN="$PWD/build/osprey"
export OSPREY_TEST_TMP="${TMPDIR:-/tmp}/osprey-valgrind.$$"
export OSPREY_TEST_WRAPPER="valgrind -q --leak-check=full --show-leak-kinds=definite,indirect,possible \
--errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99"
export CK_TIMEOUT_MULTIPLIER=10      # valgrind runs the daemon 20 to 50 times slower
mkdir -p "$OSPREY_TEST_TMP"
trap 'rm -rf "$OSPREY_TEST_TMP"' EXIT
status=0
for suite in $suites; do
    start=$(date +%s)
    CK_RUN_SUITE=$suite build/osprey-tests || status=1
    echo "$suite under valgrind: $(($(date +%s) - start)) s"
done
exit $status
