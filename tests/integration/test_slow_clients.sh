#!/usr/bin/env bash
# tests/integration/test_slow_clients.sh — slow clients cannot take prunelabd's connection slots.
# Starts prunelabd on 127.0.0.1 port 0 with small limits (max_connections 32, header_timeout 2 s,
# body_min_rate 1K) and opens bounded sets of slow connections with slowclient.py (one header
# line every 0.5 s, never finished) from 127.0.0.1, 127.0.0.2 and 127.0.0.3. Checks: /healthz
# keeps answering while they are held; the server closes every one of them (header deadline);
# 40 from one address never hold more than that address's share, and /healthz from that same
# address still gets through; a body trickling under body_min_rate is cut; the daemon's
# "http:" log lines stay few for a hundred refused or closed connections and report the
# suppressed count; two Content-Length headers that disagree get a JSON 400. The daemon is
# stopped by pid. Env: PRUNELABD_BIN. Needs curl, jq, python3.
set -u
NAME=test_slow_clients
BIN=${PRUNELABD_BIN:-./prunelabd}
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "$NAME: python3 is required (apt-get install python3)" >&2; exit 1; }
SLOW="$(cd "$(dirname "$0")" && pwd)/slowclient.py"

DATA=$TMP/var
# max_connections_per_ip = max_connections: the per-address share of connections still sending
# headers (half of it, 16) is what must hold here
cat >"$TMP/slow.conf" <<'EOF'
max_connections = 32
max_connections_per_ip = 32
header_timeout = 2
body_min_rate = 1K
connection_timeout = 60
EOF
start_daemon --config "$TMP/slow.conf" --data-dir "$DATA"

# probe N: N GETs of /healthz 0.3 s apart (extra curl args after N); prints how many were 200
probe() {
    local n=$1 good=0 c
    shift
    for _ in $(seq "$n"); do
        c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$BASE/healthz")
        [ "$c" = 200 ] && good=$((good + 1))
        sleep 0.3
    done
    echo "$good"
}

# ------------------------------------------------------------------ 45 slow, 3 addresses
python3 "$SLOW" --port "$PORT" --addrs 127.0.0.1,127.0.0.2,127.0.0.3 --count 45 --interval 0.5 \
    --duration 6 --sample-at 1 >"$TMP/slow1.json" 2>"$TMP/slow1.err" &
SP=$!
sleep 0.5
GOOD=$(probe 10)
wait "$SP"
[ "$GOOD" = 10 ] && ok "/healthz answered 10 of 10 probes while 45 slow connections were open" \
    || bad "/healthz answered $GOOD of 10 probes during the slow connections"
if jq -e '.opened == 45 and .closed_by_server == 45 and .open_at_end == 0' "$TMP/slow1.json" >/dev/null 2>&1; then
    ok "the server closed all 45 slow connections within 6 s (header_timeout 2 s)"
else
    bad "slow connections left open: $(cat "$TMP/slow1.json" "$TMP/slow1.err")"
fi
grep -q 'no complete request headers within header_timeout (2 s)' "$TMP/stderr" \
    && ok "the header deadline is logged" || bad "no header deadline line in the log"

# ------------------------------------------------------------------ 40 slow, one address
python3 "$SLOW" --port "$PORT" --addrs 127.0.0.2 --count 40 --interval 0.5 --duration 3 \
    --sample-at 1.5 >"$TMP/slow2.json" 2>"$TMP/slow2.err" &
SP=$!
sleep 0.5
GOOD2=$(probe 3 --interface 127.0.0.2)
GOOD1=$(probe 3)
wait "$SP"
HELD=$(jq -r '.open_at_sample' "$TMP/slow2.json" 2>/dev/null)
if [ -n "$HELD" ] && [ "$HELD" != null ] && [ "$HELD" -le 16 ]; then
    ok "40 slow connections from one address held $HELD slots of 32 (its share is 16)"
else
    bad "one address held ${HELD:-?} slots: $(cat "$TMP/slow2.json" "$TMP/slow2.err")"
fi
[ "$GOOD2" = 3 ] && ok "/healthz from that same address got through (3 of 3)" \
    || bad "/healthz from 127.0.0.2 answered $GOOD2 of 3"
[ "$GOOD1" = 3 ] && ok "/healthz from another address got through (3 of 3)" \
    || bad "/healthz from 127.0.0.1 answered $GOOD1 of 3"

# ------------------------------------------------------------------ slow body
python3 "$SLOW" --port "$PORT" --addrs 127.0.0.3 --count 2 --body --interval 0.5 --duration 6 \
    >"$TMP/slow3.json" 2>"$TMP/slow3.err"
if jq -e '.opened == 2 and .closed_by_server == 2' "$TMP/slow3.json" >/dev/null 2>&1 &&
    grep -q 'under body_min_rate' "$TMP/stderr"; then
    ok "bodies trickling at 12 bytes/s were cut (body_min_rate 1K after 2 s)"
else
    bad "slow bodies: $(cat "$TMP/slow3.json" "$TMP/slow3.err")"
fi

# ------------------------------------------------------------------ the log stays short
sleep 1.2 # the reaper reports what was suppressed once a second
LINES=$(grep -c '^prunelabd: http:' "$TMP/stderr")
if [ "$LINES" -le 40 ] && grep -q '^prunelabd: http: .*more' "$TMP/stderr"; then
    ok "$LINES http log lines for about 90 closed connections, with the suppressed counts"
else
    bad "http log lines: $LINES (want <= 40 and a suppressed count): $(grep '^prunelabd: http:' "$TMP/stderr" | head -5)"
fi

# ------------------------------------------------------------------ Content-Length
raw() { # raw REQUEST-TEXT: send it on one connection, print the answer (3 s at most)
    exec 3<>"/dev/tcp/127.0.0.1/$PORT"
    printf '%b' "$1" >&3
    timeout 3 cat <&3
    exec 3<&-
}
raw 'POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello12' >"$TMP/cl.txt"
if head -1 "$TMP/cl.txt" | grep -q '^HTTP/1.1 400' &&
    sed -n '/^\r$/,$p' "$TMP/cl.txt" | tail -n +2 |
        jq -e '.error.code == "bad_header" and .error.field == "Content-Length"' >/dev/null 2>&1; then
    ok "two different Content-Length headers: 400 bad_header naming Content-Length"
else
    bad "conflicting Content-Length: $(head -c 300 "$TMP/cl.txt")"
fi
# MHD answers a non-numeric Content-Length itself, before any callback (see request_prepare)
raw 'POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n' >"$TMP/cl2.txt"
head -1 "$TMP/cl2.txt" | grep -q '^HTTP/1.1 400' && ok "Content-Length: abc is a 400" \
    || bad "Content-Length: abc: $(head -c 200 "$TMP/cl2.txt")"

CODE=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$BASE/healthz")
[ "$CODE" = 200 ] && ok "/healthz still answers" || bad "/healthz at the end: $CODE"
kill -0 "$PID" 2>/dev/null && ok "the daemon is alive" || bad "the daemon died: $(tail -5 "$TMP/stderr")"
echo "$NAME: $PASSES passed, $FAILS failed"
[ $FAILS -eq 0 ]
