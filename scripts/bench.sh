#!/usr/bin/env bash
# bench.sh — load a running osprey (or any OpenAI-compatible server) with curl: C concurrent
# workers send N requests in all, each with a prompt of about P words and O output tokens,
# streamed or not, and print requests/s, output tokens/s, time to first token, inter-token
# latency, time per output token and end-to-end latency (p50/p90/p99), and the errors.
# Nothing but bash, curl and coreutils (+ awk, sed, sort): timestamps come from bash's
# $EPOCHREALTIME as each streamed line arrives, token counts from the answers' usage.
set -u

url=http://127.0.0.1:8000
concurrency=4
requests=32
prompt_words=64
output_tokens=64
stream=1
chat=0
model=""
key=${OSPREY_API_KEY:-}

usage() {
    cat <<EOF
usage: scripts/bench.sh [options]
  -u URL      server (default $url)
  -c N        concurrent clients (default $concurrency)
  -n N        requests in all (default $requests)
  -p N        prompt length in words, about one token each (default $prompt_words)
  -o N        output tokens per request, EOS ignored (default $output_tokens)
  -s 0|1      stream (default $stream): TTFT and inter-token latency need streaming
  -t          /v1/chat/completions instead of /v1/completions
  -m NAME     model (default: the first of /v1/models)
  -k KEY      API key (default: \$OSPREY_API_KEY)
EOF
}

while getopts "u:c:n:p:o:s:m:k:th" opt; do
    case $opt in
    u) url=$OPTARG ;;
    c) concurrency=$OPTARG ;;
    n) requests=$OPTARG ;;
    p) prompt_words=$OPTARG ;;
    o) output_tokens=$OPTARG ;;
    s) stream=$OPTARG ;;
    t) chat=1 ;;
    m) model=$OPTARG ;;
    k) key=$OPTARG ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done
for v in concurrency requests prompt_words output_tokens; do
    case ${!v} in
    '' | *[!0-9]* | 0) echo "bench.sh: -${v:0:1} needs a positive integer, got '${!v}'" >&2; exit 2 ;;
    esac
done
if [ -z "${EPOCHREALTIME:-}" ]; then
    echo "bench.sh: needs bash 5 (\$EPOCHREALTIME)" >&2
    exit 2
fi

auth=()
[ -n "$key" ] && auth=(-H "Authorization: Bearer $key")
if [ -z "$model" ]; then
    model=$(curl -sf "${auth[@]}" "$url/v1/models" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p' | head -1)
    if [ -z "$model" ]; then
        echo "bench.sh: no answer from $url/v1/models (is the server up? -k for a key)" >&2
        exit 1
    fi
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/osprey-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
words=(the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches)

# The JSON body of request i: a prompt that starts with its number, so that requests do not
# all share one cached prefix.
body() {
    local i=$1 text="Request $i:" w
    for ((w = 0; w < prompt_words; w++)); do
        text+=" ${words[(i + w) % ${#words[@]}]}"
    done
    local common="\"model\":\"$model\",\"max_tokens\":$output_tokens,\"ignore_eos\":true,\"temperature\":0"
    if [ "$stream" = 1 ]; then
        common+=",\"stream\":true,\"stream_options\":{\"include_usage\":true}"
    fi
    if [ "$chat" = 1 ]; then
        printf '{%s,"messages":[{"role":"user","content":"%s"}]}' "$common" "$text"
    else
        printf '{%s,"prompt":"%s"}' "$common" "$text"
    fi
}

endpoint=/v1/completions
[ "$chat" = 1 ] && endpoint=/v1/chat/completions

# One request: every line of the answer with its arrival time, then the status. Writes
# "status start end ttft completion_tokens" to results and the gaps between text chunks to
# itl (seconds).
one() {
    local i=$1 out=$tmp/r.$1 t0
    t0=$EPOCHREALTIME
    curl -sN "${auth[@]}" -H 'Content-Type: application/json' -d "$(body "$i")" \
         -w '\n__status__ %{http_code}\n' "$url$endpoint" 2>/dev/null |
        while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done > "$out"
    awk -v t0="$t0" -v itl="$tmp/itl.$i" '
        / __status__ / { status = $3 }
        /"(text|content)":"[^"]/ {                    # a chunk (or an answer) with text
            if (first == "") first = $1; else printf "%.6f\n", $1 - last > itl
            last = $1
        }
        /"completion_tokens":/ { s = $0; sub(/.*"completion_tokens":/, "", s); sub(/[^0-9].*/, "", s); tokens = s }
        { end = $1 }
        END {
            if (first == "") first = end
            printf "%s %s %s %.6f %d\n", (status == "" ? "000" : status), t0, end, first - t0, tokens
        }' "$out" >> "$tmp/results.$2"
    rm -f "$out"
}

worker() {
    local w=$1 i
    for ((i = w; i < requests; i += concurrency)); do
        one "$i" "$w"
    done
}

printf 'bench: %s %s model=%s concurrency=%d requests=%d prompt~%d words output=%d stream=%s\n' \
    "$url" "$endpoint" "$model" "$concurrency" "$requests" "$prompt_words" "$output_tokens" \
    "$([ "$stream" = 1 ] && echo on || echo off)"
start=$EPOCHREALTIME
for ((w = 0; w < concurrency; w++)); do
    worker "$w" &
done
wait
end=$EPOCHREALTIME

cat "$tmp"/results.* > "$tmp/all" 2>/dev/null
cat "$tmp"/itl.* > "$tmp/itl" 2>/dev/null || : > "$tmp/itl"

# p50/p90/p99 of a column of seconds, in milliseconds.
percentiles() {
    sort -g | awk '{ v[NR] = $1 * 1000 }
        END {
            if (NR == 0) { print "n/a"; exit }
            split("50 90 99", q, " ")
            for (k = 1; k <= 3; k++) {
                i = int(NR * q[k] / 100 + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR
                printf "p%s %.2f  ", q[k], v[i]
            }
            printf "(n=%d)\n", NR
        }'
}

awk -v wall="$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" '
    { n++ }
    $1 == 200 { ok++; tokens += $5 }
    $1 != 200 { err[$1]++ }
    END {
        printf "requests:        %d ok, %d errors in %.2f s", ok, n - ok, wall
        for (s in err) printf "  [HTTP %s x%d]", (s == "000" ? "none" : s), err[s]
        printf "\nrequests/s:      %.2f\n", ok / wall
        printf "output tokens/s: %.1f  (%d tokens)\n", tokens / wall, tokens
    }' "$tmp/all"
printf 'e2e ms:          %s\n' "$(awk '$1 == 200 { print $3 - $2 }' "$tmp/all" | percentiles)"
if [ "$stream" = 1 ]; then
    printf 'ttft ms:         %s\n' "$(awk '$1 == 200 { print $4 }' "$tmp/all" | percentiles)"
    printf 'itl ms:          %s\n' "$(percentiles < "$tmp/itl")"
    printf 'tpot ms:         %s\n' "$(awk '$1 == 200 && $5 > 1 { print ($3 - $2 - $4) / ($5 - 1) }' "$tmp/all" | percentiles)"
fi
awk '$1 != 200 { bad = 1 } END { exit bad }' "$tmp/all"
