#!/bin/sh
# cell_memory.sh — the daemon's memory estimate of a train cell (server/cell_memory.c) against the
# measured peak RSS (/usr/bin/time -f %M) and VmPeak (address space, sampled from /proc) of the
# same cell run by `prunelab cell`. Run from the build tree after `make`:
#   bench/cell_memory.sh [RUNS]          (default 3 runs per spec; medians printed)
# Specs: synthetic 16x16 (small, base, base batch 256) and fashion-mnist when installed.
set -eu
RUNS=${1:-3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cc -O1 -I"$SRC/spec" -I"$SRC/server" -o "$TMP/estimate" "$SRC/bench/cell_memory/estimate.c" \
    "$SRC/server/cell_memory.c" "$SRC/spec/libplspec.a" -ljansson -lm
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '| cell | estimate MiB | peak RSS MiB | RSS / estimate | VmPeak MiB |\n|---|---|---|---|---|\n'
for spec in \
    '{"recipe":"train","dataset":"synthetic","preset":"small","epochs":1,"threads":1}' \
    '{"recipe":"train","dataset":"synthetic","preset":"base","epochs":1,"threads":1}' \
    '{"recipe":"train","dataset":"synthetic","preset":"base","batch":256,"epochs":1,"threads":1}' \
    '{"recipe":"train","dataset":"fashion-mnist","preset":"small","max_steps":20,"threads":1}'; do
    full=$(printf '%s' "$spec" | sed "s#}\$#,\"out\":\"$TMP/m.safetensors\"}#")
    est=$("$TMP/estimate" "$full")
    : > "$TMP/rss"; : > "$TMP/vm"
    ok=1
    for i in $(seq "$RUNS"); do
        rm -f "$TMP/m.safetensors"
        printf '%s' "$full" > "$TMP/spec.json"
        /usr/bin/time -f %M -o "$TMP/t" "$SRC/prunelab" cell < "$TMP/spec.json" > "$TMP/out" 2>/dev/null &
        tp=$!
        vm=0
        while kill -0 "$tp" 2>/dev/null; do
            p=$(pgrep -P "$tp" | head -1 || true)
            [ -n "$p" ] && v=$(awk '/VmPeak/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0) &&
                [ "${v:-0}" -gt "$vm" ] && vm=$v
            sleep 0.05
        done
        wait "$tp" || ok=0
        grep -q '"event":"result"' "$TMP/out" || ok=0
        cat "$TMP/t" >> "$TMP/rss"
        echo "$vm" >> "$TMP/vm"
    done
    [ "$ok" = 1 ] || { echo "skipped (cell failed): $spec" >&2; continue; }
    rss=$(median < "$TMP/rss"); vmp=$(median < "$TMP/vm")
    awk -v s="$spec" -v e="$est" -v r="$rss" -v v="$vmp" \
        'BEGIN {printf "| `%s` | %.0f | %.0f | %.2f | %.0f |\n", s, e/1024, r/1024, r/e, v/1024}'
done
