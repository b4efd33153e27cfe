#!/bin/bash
# bench/api_components.sh — what a burst of anonymous `GET /api/v1/models/{name}/components`
# costs on a large checkpoint: peak memory of the daemon and every process it spawned, wall
# time, statuses and engine runs.
#
# What it does:
#   1. makes a ~140 MB model (`prunelab init --d-model 768 --layers 6`, 35 M parameters) and
#      starts ./prunelabd on a free port with a temp data dir (workers 2, defaults otherwise);
#   2. PUTs the model (its `prunelab inspect` runs then, through the engine gate);
#   3. samples, every 20 ms, the summed RSS of the daemon and all its descendants
#      (ps -e -o pid,ppid,rss), while N (20) anonymous curls ask for the model's components at once;
#   4. prints a markdown row: requests, statuses, wall time, engine runs (the daemon's
#      "prunelab components" processes seen by the sampler), peak RSS of daemon + children,
#      the daemon's RSS before the burst; then a second burst, now served from the store.
#
# Usage: bench/api_components.sh   (from the top of the tree, after `make`)
# Env:   PRUNELABD_BIN (./prunelabd), PRUNELAB_BIN (./prunelab), N (20), KEEP=1 keeps the temp dir.
set -u
BIN=${PRUNELABD_BIN:-./prunelabd}
ENGINE=${PRUNELAB_BIN:-./prunelab}
N=${N:-20}
die() { echo "api_components.sh: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "PRUNELABD_BIN=$BIN is not an executable (run make)"
[ -x "$ENGINE" ] || die "PRUNELAB_BIN=$ENGINE is not an executable (run make)"
for tool in curl jq; do command -v $tool >/dev/null || die "$tool is required (apt-get install $tool)"; done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/prunelab-bench-comp.XXXXXX")
PID=
SAMPLER=
cleanup() {
    [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && sleep 0.5 && kill -KILL "$PID" 2>/dev/null
    if [ "${KEEP:-0}" = 1 ]; then echo "api_components.sh: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
DATA=$TMP/var
mkdir -p "$DATA"
"$ENGINE" init --d-model 768 --layers 6 --dataset synthetic:n=64,classes=4 --out "$TMP/big.safetensors" \
    >/dev/null 2>&1 || die "prunelab init failed"
SIZE=$(stat -c %s "$TMP/big.safetensors")
TOKEN=$("$BIN" user add bench --data-dir "$DATA" 2>/dev/null | grep -o 'plt_[0-9a-f]\{64\}')
"$BIN" --listen 127.0.0.1:0 --data-dir "$DATA" --workers 2 >"$TMP/stdout" 2>"$TMP/stderr" &
PID=$!
for _ in $(seq 100); do grep -q '^prunelabd listening' "$TMP/stdout" && break; sleep 0.1; done
PORT=$(sed -n 's|^prunelabd listening on http://127\.0\.0\.1:\([0-9]*\)/$|\1|p' "$TMP/stdout")
[ -n "$PORT" ] || die "the daemon did not start: $(cat "$TMP/stderr")"
BASE=http://127.0.0.1:$PORT
code=$(curl -s -o "$TMP/put" -w '%{http_code}' -X PUT -H "Authorization: Bearer $TOKEN" \
    --data-binary @"$TMP/big.safetensors" "$BASE/api/v1/models/big")
[ "$code" = 201 ] || die "PUT: $code $(head -c 300 "$TMP/put")"

# sampler: "peak_kib max_engines" of the daemon's process tree, until killed
sample() {
    local peak=0 engines=0
    trap 'echo "$peak $engines" >"$TMP/peak"; exit 0' TERM
    while :; do
        read -r kib n < <(ps -e -o pid=,ppid=,rss=,args= | awk -v root="$PID" '
            { pid[NR]=$1; ppid[NR]=$2; rss[NR]=$3; cmd[NR]=$0 }
            END { inset[root]=1; changed=1
                  while (changed) { changed=0
                      for (i=1;i<=NR;i++) if (!(pid[i] in inset) && (ppid[i] in inset)) { inset[pid[i]]=1; changed=1 } }
                  for (i=1;i<=NR;i++) if (pid[i] in inset) { t+=rss[i]; if (cmd[i] ~ / components --model /) e++ }
                  print t+0, e+0 }')
        [ "$kib" -gt "$peak" ] && peak=$kib
        [ "$n" -gt "$engines" ] && engines=$n
        sleep 0.02
    done
}
burst() { # burst LABEL
    local before t0 t1 pids=()
    before=$(awk '/^VmRSS/ {print $2}' /proc/$PID/status)
    sample & SAMPLER=$!
    sleep 0.2
    t0=$(date +%s.%N)
    for i in $(seq "$N"); do
        curl -s -o "$TMP/c$i" -w '%{http_code}\n' "$BASE/api/v1/models/big/components" >"$TMP/code$i" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    t1=$(date +%s.%N)
    sleep 0.1
    kill -TERM "$SAMPLER"; wait "$SAMPLER" 2>/dev/null; SAMPLER=
    read -r peak engines <"$TMP/peak"
    codes=$(cat "$TMP"/code* | sort | uniq -c | awk '{printf "%s%s x %s", (NR>1?", ":""), $1, $2}')
    printf '| %s | %d | %s | %.2f s | %d | %d MiB | %d MiB |\n' "$1" "$N" "$codes" "$(echo "$t1 - $t0" | bc)" \
        "$engines" $((peak / 1024)) $((before / 1024))
    rm -f "$TMP"/code*
}
echo "model: $((SIZE / 1000000)) MB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores, $(date -u '+%Y-%m-%d')"
echo
echo "| burst | requests | statuses | wall | engine runs seen | peak RSS, daemon + children | daemon RSS before |"
echo "|---|---|---|---|---|---|---|"
burst "first (table not yet recorded)"
burst "second (served from the store)"
