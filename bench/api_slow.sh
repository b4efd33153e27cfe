#!/bin/bash
# bench/api_slow.sh — /healthz under a slow-header attack, at the default connection limits.
#
# What it does, for each prunelabd binary given (default ./prunelabd):
#   1. starts it on 127.0.0.1, a free port, a temp data dir, no config file (so the defaults:
#      max_connections 256 and the per-address and header settings of that build);
#   2. starts tests/integration/slowclient.py: CONNS (300) connections spread over 127.0.0.1,
#      127.0.0.2 and 127.0.0.3, each sending one header line every 2 s and never finishing;
#      a connection the server closes is reopened 0.5 s later, so the attack keeps pressing for
#      the whole run;
#   3. after 2 s, probes GET /healthz from 127.0.0.1 (an attacking address) RATE (10) times a
#      second for DURATION (30) seconds, each with a 2 s timeout, and prints one markdown row:
#      probes, answered 200 within 1 s (%), p50 / p99 latency of all probes (a failed or
#      timed-out probe counts as 2 s), the slow connections the client saw closed by the
#      server, and the daemon's "http:" log lines during the run.
# Before/after: build the parent commit's prunelabd (e.g. `git stash` or a temp worktree,
# `make prunelabd`, copy it aside) and pass both: bench/api_slow.sh /tmp/prunelabd.old ./prunelabd
#
# Usage: bench/api_slow.sh [PRUNELABD...]   (from the top of the tree, after `make`)
# Env:   CONNS (300), DURATION (30), RATE (10), KEEP=1 keeps the temp directories.
# Needs python3 and curl.
set -u
CONNS=${CONNS:-300}
DURATION=${DURATION:-30}
RATE=${RATE:-10}
SRC=$(cd "$(dirname "$0")/.." && pwd)
SLOW=$SRC/tests/integration/slowclient.py
[ $# -gt 0 ] || set -- ./prunelabd

echo "| binary | probes | 200 within 1 s | p50 | p99 | slow conns closed by server | http log lines |"
echo "|---|---|---|---|---|---|---|"
for BIN in "$@"; do
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/prunelab-api-slow.XXXXXX")
    : >"$TMP/stdout"
    PRUNELAB_SQL_DIR=${PRUNELAB_SQL_DIR:-$SRC/sql} "$BIN" --listen 127.0.0.1:0 --data-dir "$TMP/var" \
        >"$TMP/stdout" 2>"$TMP/stderr" &
    PID=$!
    PORT=
    for _ in $(seq 100); do
        PORT=$(sed -n 's|^prunelabd listening on http://127\.0\.0\.1:\([0-9]*\)/$|\1|p' "$TMP/stdout")
        [ -n "$PORT" ] && break
        sleep 0.1
    done
    if [ -z "$PORT" ]; then
        echo "api_slow: $BIN did not start: $(head -c 300 "$TMP/stderr")" >&2
        kill "$PID" 2>/dev/null
        wait "$PID" 2>/dev/null
        continue
    fi
    python3 "$SLOW" --port "$PORT" --addrs 127.0.0.1,127.0.0.2,127.0.0.3 --count "$CONNS" \
        --interval 2 --duration $((DURATION + 4)) --reconnect --reconnect-delay 0.5 \
        >"$TMP/slow.json" 2>"$TMP/slow.err" &
    SP=$!
    sleep 2
    L0=$(grep -c '^prunelabd: http:' "$TMP/stderr")
    python3 - "$PORT" "$DURATION" "$RATE" >"$TMP/probe.txt" <<'EOF'
import http.client, sys, time
port, duration, rate = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
lat, good = [], 0
t0 = time.monotonic()
n = 0
while time.monotonic() - t0 < duration:
    start = time.monotonic()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", "/healthz")
        r = c.getresponse()
        r.read()
        c.close()
        dt = time.monotonic() - start
        ok = r.status == 200
    except Exception:
        dt, ok = 2.0, False
    lat.append(dt if ok else max(dt, 2.0))
    good += ok and dt <= 1.0
    n += 1
    nxt = t0 + n / rate
    time.sleep(max(0.0, nxt - time.monotonic()))
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(len(lat), "%.1f" % (100.0 * good / len(lat)), "%.1f ms" % (1e3 * q(0.5)), "%.1f ms" % (1e3 * q(0.99)))
EOF
    L1=$(grep -c '^prunelabd: http:' "$TMP/stderr")
    wait "$SP"
    read -r N GOOD P50 P50U P99 P99U <"$TMP/probe.txt"
    CLOSED=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["closed_by_server"])' "$TMP/slow.json" 2>/dev/null)
    echo "| $BIN | $N | $GOOD % | $P50 $P50U | $P99 $P99U | ${CLOSED:-?} | $((L1 - L0)) |"
    kill "$PID" 2>/dev/null
    wait "$PID" 2>/dev/null
    [ -n "${KEEP:-}" ] && echo "api_slow: kept $TMP" >&2 || rm -rf "$TMP"
done
