#!/bin/sh
# check-includes.sh — the one-way dependency rule of docs/ARCHITECTURE.md, checked.
# Every project header a source file sees, directly or through other headers, must
# belong to a part that the file's own part may depend on (the table below). make test
# runs this; it prints each offending chain and exits 1, or prints one line and exits 0.
set -eu
cd "$(dirname "$0")/.."

# part             parts it may see (itself always included)
RULES='
base
config             base
scheduler          base
kernels            base
model              base
tokenizer          base
chat_template      base
grammar            base tokenizer
engine             base model tokenizer chat_template grammar scheduler kernels cpu cuda
cpu                base model scheduler engine
cuda               base model scheduler kernels engine
server             base model tokenizer chat_template grammar engine config
'

# The part of a path: engine/ has a part per folder, and its top files form "engine".
files=$(git ls-files 'engine/*' 'kernels/*' 'scheduler/*' 'config/*' 'server/*' |
        grep -E '\.(c|h|cu|cuh)$')

# shellcheck disable=SC2086
awk -v rules="$RULES" '
function part(p) {
    if (p ~ /^engine\/(base|model|tokenizer|chat_template|grammar|cpu|cuda)\//) {
        split(p, a, "/"); return a[2]
    }
    split(p, a, "/"); return a[1]
}
# Depth-first walk of what file f sees; chain is how we got there.
function walk(f, from_part, chain,    n, i, t, bad) {
    if ((from_part SUBSEP f) in seen) return
    seen[from_part SUBSEP f] = 1
    n = nedges[f]
    for (i = 1; i <= n; i++) {
        t = edge[f, i]
        if (!((from_part SUBSEP part(t)) in allowed) && !((from_part SUBSEP t) in told)) {
            told[from_part SUBSEP t] = 1   # one line per part and header it may not see
            printf "check-includes: %s -> %s: part %s may not see %s\n",
                   chain, t, from_part, part(t)
            failed = 1
        }
        walk(t, from_part, chain " -> " t)
    }
}
BEGIN {
    nr = split(rules, lines, "\n")
    for (i = 1; i <= nr; i++) {
        nw = split(lines[i], w, /[ \t]+/)
        if (nw == 0 || w[1] == "") continue
        allowed[w[1] SUBSEP w[1]] = 1
        for (j = 2; j <= nw; j++) allowed[w[1] SUBSEP w[j]] = 1
        known[w[1]] = 1
    }
}
FNR == 1 { files[++nfiles] = FILENAME; if (!(part(FILENAME) in known)) {
    printf "check-includes: %s is in no part of the table\n", FILENAME; failed = 1 } }
/^[ \t]*#[ \t]*include[ \t]*"/ {
    match($0, /"[^"]+"/)
    inc = substr($0, RSTART + 1, RLENGTH - 2)
    edge[FILENAME, ++nedges[FILENAME]] = inc
}
END {
    for (k = 1; k <= nfiles; k++) {
        delete seen
        walk(files[k], part(files[k]), files[k])
    }
    if (failed) exit 1
    printf "check-includes: %d files, every include follows the one-way rule\n", nfiles
}' $files
