#!/usr/bin/env bash
# tests/integration/test_private_reads.sh — a daemon with `anonymous_reads = false` answers no
# read without a token: the job list, a model, the vocabulary and /metrics are 401 without one
# and 200 with one; /healthz stays open (it says nothing about anyone's work). Starts prunelabd
# on 127.0.0.1 port 0 and stops it by pid. Env: PRUNELABD_BIN. Needs curl, jq.
set -u
NAME=test_private_reads
BIN=${PRUNELABD_BIN:-./prunelabd}
. "$(dirname "$0")/lib.sh"

DATA=$TMP/var
mkdir -p "$DATA"
printf 'anonymous_reads = false\n' >"$TMP/prunelabd.conf"
TOKEN=$(new_token alice) || exit 1
start_daemon --data-dir "$DATA" --workers 1 --config "$TMP/prunelabd.conf"
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
