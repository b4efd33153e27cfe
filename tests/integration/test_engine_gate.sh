#!/usr/bin/env bash
# tests/integration/test_engine_gate.sh — engine work on request paths is recorded and bounded.
# Starts prunelabd (127.0.0.1, port 0, workers 1) whose engine_bin is a wrapper that logs each
# run of the real engine (and whether it ran niced) and then runs it. Checks: 16 parallel
# anonymous GET /models/{name}/components answer 200 with the same table and cost one engine run;
# later requests cost none; a new checkpoint file (another identity) makes the table anew once;
# the engine ran `cell_nice` steps below the daemon; an upload still runs inspect; deleting the
# model deletes its table. Env: PRUNELABD_BIN, PRUNELAB_BIN. Needs curl, jq.
set -u
NAME=test_engine_gate
BIN=${PRUNELABD_BIN:-./prunelabd}
ENGINE=${PRUNELAB_BIN:-./prunelab}
. "$(dirname "$0")/lib.sh"
finish() {
    echo "$NAME: $PASSES passed, $FAILS failed"
    [ $FAILS -eq 0 ]
    exit $?
}

DATA=$TMP/var
mkdir -p "$DATA"
ENGINE_ABS=$(cd "$(dirname "$ENGINE")" && pwd)/$(basename "$ENGINE")
LOG=$TMP/engine.log
cat >"$TMP/engine.sh" <<SH
#!/bin/sh
# logs "<subcommand> nice=<niceness>" per run, then runs the engine
echo "\$1 nice=\$(nice)" >>"$LOG"
exec "$ENGINE_ABS" "\$@"
SH
chmod +x "$TMP/engine.sh"
printf 'engine_bin = %s\ncell_nice = 7\n' "$TMP/engine.sh" >"$TMP/prunelabd.conf"
TOKEN=$(new_token alice) || exit 1
AUTH=(-H "Authorization: Bearer $TOKEN")

start_daemon --data-dir "$DATA" --workers 1 --config "$TMP/prunelabd.conf"
runs() { grep -c "^$1 " "$LOG" 2>/dev/null || true; }

"$ENGINE" init --preset tiny --seed 3 --dataset "synthetic:n=64,classes=4" --out "$TMP/m.safetensors" 2>/dev/null
code=$(curl -s -o "$TMP/put" -w '%{http_code}' -X PUT "${AUTH[@]}" --data-binary @"$TMP/m.safetensors" \
    "$BASE/api/v1/models/m1")
[ "$code" = 201 ] && ok "upload 201" || bad "upload answered $code: $(head -c 300 "$TMP/put")"
[ "$(runs inspect)" = 1 ] && ok "the upload ran inspect once" || bad "inspect runs: $(runs inspect)"

# 16 parallel anonymous requests before any table exists
CURLS=()
for i in $(seq 16); do
    curl -s -m 60 -o "$TMP/c$i" -w '%{http_code}\n' "$BASE/api/v1/models/m1/components" >"$TMP/code$i" &
    CURLS+=($!)
done
wait "${CURLS[@]}"
n200=$(cat "$TMP"/code* | grep -c '^200$')
[ "$n200" = 16 ] && ok "16 parallel requests: all 200" || bad "16 parallel requests: $n200 answered 200 ($(sort "$TMP"/code* | uniq -c | tr '\n' ' '))"
same=1
for i in $(seq 2 16); do cmp -s "$TMP/c1" "$TMP/c$i" || same=0; done
[ $same = 1 ] && ok "every answer is the same table" || bad "answers differ"
jq -e '.model == "m1" and (.total | map(select(.component == "out_proj")) | length == 1)' "$TMP/c1" >/dev/null &&
    ok "the table names the model and lists out_proj" || bad "table: $(head -c 300 "$TMP/c1")"
[ "$(runs components)" = 1 ] && ok "16 requests cost one engine run" || bad "components runs: $(runs components)"
grep -q "^components nice=7$" "$LOG" && ok "the engine ran 7 steps below the daemon" ||
    bad "niceness: $(grep components "$LOG" | head -1)"

for i in 1 2 3; do curl -s -o /dev/null "$BASE/api/v1/models/m1/components"; done
[ "$(runs components)" = 1 ] && ok "later requests are served from the store" || bad "components runs: $(runs components)"

# the checkpoint file replaced (same name, another identity): the table is made anew, once
cp "$DATA/models/m1.safetensors" "$TMP/copy" && mv "$TMP/copy" "$DATA/models/m1.safetensors"
curl -s -o "$TMP/c_new" "$BASE/api/v1/models/m1/components"
curl -s -o /dev/null "$BASE/api/v1/models/m1/components"
[ "$(runs components)" = 2 ] && ok "a new file is read once more" || bad "components runs: $(runs components)"
cmp -s "$TMP/c1" "$TMP/c_new" && ok "the same checkpoint gives the same table" || bad "table changed"

code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/api/v1/models/nosuch/components")
[ "$code" = 404 ] && ok "unknown model 404, no engine run" || bad "unknown model answered $code"
[ "$(runs components)" = 2 ] || bad "an unknown model ran the engine"

code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "${AUTH[@]}" "$BASE/api/v1/models/m1")
[ "$code" = 200 ] && ok "delete 200" || bad "delete answered $code"
curl -s -o /dev/null -X PUT "${AUTH[@]}" --data-binary @"$TMP/m.safetensors" "$BASE/api/v1/models/m1"
curl -s -o /dev/null "$BASE/api/v1/models/m1/components"
[ "$(runs components)" = 3 ] && ok "a re-uploaded model gets its own table" || bad "components runs: $(runs components)"
kill -0 "$PID" 2>/dev/null && ok "the daemon is alive" || bad "the daemon died: $(tail -5 "$TMP/stderr")"
finish
