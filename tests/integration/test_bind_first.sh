#!/usr/bin/env bash
# tests/integration/test_bind_first.sh — a daemon that cannot bind its port runs nothing: no
# recovery of interrupted cells, no cell started. A first daemon (fake engine: it records its
# start and sleeps) starts a train cell and is killed -9 mid-cell; a second daemon holds a port;
# the first data dir started on that port must fail with the bind error, leave the interrupted
# cell as it was and start no engine; started on a free port it then recovers the cell and runs
# it again. Daemons on 127.0.0.1, each stopped by pid. Env: PRUNELABD_BIN. Needs curl, jq.
set -u
NAME=test_bind_first
BIN=${PRUNELABD_BIN:-./prunelabd}
. "$(dirname "$0")/lib.sh"

DATA=$TMP/var
mkdir -p "$DATA" "$TMP/other"
cat >"$TMP/fake-engine" <<EOS
#!/bin/sh
echo "\$\$" >>"$TMP/started"
exec sleep 300
EOS
chmod +x "$TMP/fake-engine"
printf 'engine_bin = %s\nworkers = 1\nmax_attempts = 3\n' "$TMP/fake-engine" >"$TMP/prunelabd.conf"
TOKEN=$(new_token alice) || exit 1
OTHER=
it_cleanup_extra() {
    [ -n "$OTHER" ] && kill -KILL "$OTHER" 2>/dev/null
    [ -f "$TMP/started" ] && while read -r p; do kill -KILL "$p" 2>/dev/null; done <"$TMP/started"
}

start_daemon --data-dir "$DATA" --config "$TMP/prunelabd.conf"
CODE=$(curl -s -o "$TMP/body" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" --data-binary \
    '{"type":"train","name":"m1","dataset":"synthetic:n=64,classes=2","preset":"tiny"}' "$BASE/api/v1/jobs")
[ "$CODE" = 202 ] && ok "train job accepted" || bad "train job: $CODE $(head -c 300 "$TMP/body")"
JOB=$(jq -r .id "$TMP/body")
wait_line "$TMP/started" . && ok "the first daemon started the cell" || bad "no cell started"
kill -KILL "$PID"
wait "$PID" 2>/dev/null
PID=
while read -r p; do kill -KILL "$p" 2>/dev/null; done <"$TMP/started"
rm -f "$TMP/started"

# a second daemon holds a port
"$BIN" --listen 127.0.0.1:0 --data-dir "$TMP/other" >"$TMP/other.out" 2>"$TMP/other.err" &
OTHER=$!
wait_line "$TMP/other.out" '^prunelabd listening' || bad "the second daemon did not start: $(cat "$TMP/other.err")"
TAKEN=$(sed -n 's|^prunelabd listening on http://127\.0\.0\.1:\([0-9]*\)/$|\1|p' "$TMP/other.out")

timeout 30 "$BIN" --listen "127.0.0.1:$TAKEN" --data-dir "$DATA" --config "$TMP/prunelabd.conf" \
    >"$TMP/bind.out" 2>"$TMP/bind.err"
rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] && ok "a daemon on a taken port exits $rc" || bad "on a taken port: exit $rc"
grep -qi "127.0.0.1:$TAKEN" "$TMP/bind.err" && ok "its error names the address" ||
    bad "bind error: $(head -c 300 "$TMP/bind.err")"
grep -q "recovered" "$TMP/bind.err" && bad "it recovered cells before binding: $(grep recovered "$TMP/bind.err")" ||
    ok "it recovered nothing"
sleep 1
[ -f "$TMP/started" ] && bad "it started a cell ($(wc -l <"$TMP/started") engine run(s))" || ok "it started no cell"

# on a free port the same data dir recovers the interrupted cell and runs it again
start_daemon --data-dir "$DATA" --config "$TMP/prunelabd.conf"
wait_line "$TMP/stderr" "recovered 1 interrupted cell" && ok "started properly, it recovers the cell" ||
    bad "no recovery line: $(head -c 400 "$TMP/stderr")"
wait_line "$TMP/started" . && ok "and runs it again" || bad "the recovered cell did not start"
curl -s -o "$TMP/cells" "$BASE/api/v1/jobs/$JOB/cells"
jq -e '.cells[0].attempts == 2' "$TMP/cells" >/dev/null && ok "the cell is on its second attempt, not its third" ||
    bad "cell attempts: $(jq -c '.cells[0] | {state, attempts}' "$TMP/cells" 2>/dev/null)"
echo "$NAME: $PASSES passed, $FAILS failed"
[ $FAILS -eq 0 ]
