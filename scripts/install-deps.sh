#!/bin/sh
# install-deps.sh — installs what building and testing osprey needs, Debian packages only,
# and the npm test tools of tests/ (package-lock.json pins them). Quiet when all is present.
set -eu
cd "$(dirname "$0")/.."

PKGS="build-essential pkg-config curl libmicrohttpd-dev libcjson-dev libuv1-dev check libsubunit-dev
      libpcre2-dev libutf8proc-dev libxxhash-dev libsystemd-dev nodejs npm valgrind
      clang-14 libfuzzer-14-dev nginx libnginx-mod-http-js systemd"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    # node and npm may come from elsewhere than Debian; do not ask apt for them then.
    if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
        missing=$(echo "$missing" | tr ' ' '\n' | grep -vx -e nodejs -e npm | tr '\n' ' ')
    fi
fi
if [ -n "$(echo "$missing" | tr -d ' ')" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install-deps: missing Debian packages:$missing (run as root, or: sudo apt-get install$missing)" >&2
        exit 1
    fi
    echo "install-deps: installing$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

# npm test tools (the openai client, the reference tokenizers): only when the lock changed.
if [ -f tests/package-lock.json ]; then
    stamp=tests/node_modules/.osprey-lock
    if ! cmp -s tests/package-lock.json "$stamp" 2>/dev/null; then
        echo "install-deps: npm ci in tests/"
        (cd tests && npm ci --no-audit --no-fund --loglevel=error)
        cp tests/package-lock.json "$stamp"
    fi
fi
