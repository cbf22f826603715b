#!/bin/sh
# carry-libs.sh — copies into .carry/lib every shared library the built binaries load from
# /usr/lib/x86_64-linux-gnu except glibc's own: the Debian libraries (libmicrohttpd, libuv,
# libcjson, check, …) that a GPU machine without them needs. Ship .carry/lib with build/ and
# run with LD_LIBRARY_PATH=.carry/lib (scripts/gpu/run-all.sh sets it).
set -eu
cd "$(dirname "$0")/../.."
mkdir -p .carry/lib
for bin in build/osprey build/osprey-gpu-tests build/osprey-tests; do
    [ -x "$bin" ] && ldd "$bin"
done | awk '$3 ~ /^\/(usr\/)?lib\/x86_64-linux-gnu\// { print $3 }' | sort -u |
    grep -vE '/(libc|libm|libpthread|libdl|librt|ld-linux-x86-64|libgcc_s|libstdc\+\+)\.so' |
    while read -r lib; do
        cp -L "$lib" .carry/lib/
    done
ls .carry/lib
