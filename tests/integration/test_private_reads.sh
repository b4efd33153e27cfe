#!/usr/bin/env bash
# tests/integration/test_private_reads.sh — a daemon with `anonymous_reads = false` answers no
# read without a token: the job list, a model, the vocabulary and /metrics are 401 without one
# and 200 with one; /healthz stays open (it says nothing about anyone's work). Starts prunelabd
# on 127.0.0.1 port 0 and stops it by pid. Env: PRUNELABD_BIN. Needs curl, jq.
set -u
NAME=test_private_reads
BIN=${PRUNELABD_BIN:-./prunelabd}
. "$(dirname "$0")/lib.sh"
FAILS=0
PASSES=0
ok() { PASSES=$((PASSES + 1)); echo "ok   - $1"; }
bad() { FAILS=$((FAILS + 1)); echo "FAIL - $1"; }

DATA=$TMP/var
mkdir -p "$DATA"
printf 'anonymous_reads = false\n' >"$TMP/prunelabd.conf"
TOKEN=$("$BIN" user add alice --data-dir "$DATA" 2>/dev/null | grep -o 'plt_[0-9a-f]\{64\}' | head -1)
[ -n "$TOKEN" ] || { echo "FAIL - user add printed no token"; exit 1; }
"$BIN" --listen 127.0.0.1:0 --data-dir "$DATA" --workers 1 --config "$TMP/prunelabd.conf" \
    >"$TMP/stdout" 2>"$TMP/stderr" &
PID=$!
if ! wait_line "$TMP/stdout" '^prunelabd listening on http://127\.0\.0\.1:[0-9]*/$'; then
    echo "FAIL - daemon did not start: $(cat "$TMP/stderr")"
    exit 1
fi
PORT=$(sed -n 's|^prunelabd listening on http://127\.0\.0\.1:\([0-9]*\)/$|\1|p' "$TMP/stdout")
BASE=http://127.0.0.1:$PORT
code() { curl -s -o "$TMP/body" -w '%{http_code}' "$@"; }

for p in /api/v1/jobs /api/v1/models /api/v1/vocabulary /metrics; do
    c=$(code "$BASE$p")
    if [ "$c" = 401 ] && jq -e '.error.code == "unauthorized"' "$TMP/body" >/dev/null 2>&1; then
        ok "anonymous GET $p: 401"
    else
        bad "anonymous GET $p: $c $(head -c 200 "$TMP/body")"
    fi
    c=$(code -H "Authorization: Bearer $TOKEN" "$BASE$p")
    [ "$c" = 200 ] && ok "GET $p with a token: 200" || bad "GET $p with a token: $c"
done
grep -q '^prunelabd_up 1$' "$TMP/body" && ok "/metrics with a token has the counters" || bad "/metrics body"
c=$(code "$BASE/healthz")
[ "$c" = 200 ] && ok "anonymous /healthz: 200" || bad "anonymous /healthz: $c"
kill -0 "$PID" 2>/dev/null && ok "the daemon is alive" || bad "the daemon died: $(tail -5 "$TMP/stderr")"
echo "$NAME: $PASSES passed, $FAILS failed"
[ $FAILS -eq 0 ]
