#!/bin/bash
# tests/integration/test_crash.sh — prunelabd's crash safety against a real daemon.
# Starts prunelabd on 127.0.0.1 port 0 with a temp data dir and a config file (max_attempts = 2),
# uploads a tiny model made by `prunelab init` and runs ablation cells that fine-tune for a few
# seconds, then checks: (a) kill -9 of the daemon while cells run, restart on the same data dir:
# the job is still there, rows done before the crash are unchanged, interrupted cells are
# requeued and finish, no cell process of the old daemon is left, PRAGMA integrity_check says ok;
# (b) kill -9 of a cell process: it is retried, and after max_attempts it fails with its error
# and stderr tail; (c) cancel of a running job: no cell process of that job after 5 seconds;
# and that deploy/prunelabd.conf.example is a valid --config file (/healthz 200).
# Env: PRUNELABD_BIN (default ./prunelabd), PRUNELAB_BIN (default ./prunelab), PRUNELAB_SRCDIR
# (default .), CRASH_FINETUNE_STEPS (default 200: fine-tune steps per cell), KEEP=1 keeps the
# temp dir. Needs curl and jq; the integrity check uses the sqlite3 CLI or python3.
NAME=test_crash
BIN=${PRUNELABD_BIN:-./prunelabd}
ENGINE=${PRUNELAB_BIN:-./prunelab}
SRCDIR=${PRUNELAB_SRCDIR:-.}
. "$(dirname "$0")/lib.sh"
OLD_CELLS=
it_cleanup_extra() { for p in $OLD_CELLS; do kill -KILL "$p" 2>/dev/null; done; }
FAILS=0
PASSES=0
ok() { PASSES=$((PASSES + 1)); echo "ok   - $1"; }
bad() { FAILS=$((FAILS + 1)); echo "FAIL - $1"; }
note() { echo "#    $1"; }
jqcheck() { # jqcheck DESCRIPTION FILE FILTER
    if jq -e "$3" "$2" >/dev/null 2>&1; then ok "$1"; else bad "$1 (body: $(head -c 400 "$2"))"; fi
}
# req METHOD PATH [curl args...]: status in $CODE, body in $TMP/body
req() {
    local m=$1 p=$2; shift 2
    CODE=$(curl -s --path-as-is -o "$TMP/body" -w '%{http_code}' -X "$m" "$@" "$BASE$p")
}
areq() { local m=$1 p=$2; shift 2; req "$m" "$p" "${AUTH[@]}" "$@"; }
finish() {
    echo "$NAME: $PASSES passed, $FAILS failed"
    [ $FAILS -eq 0 ]
    exit $?
}
# start_daemon TAG [flags...]: start prunelabd on port 0 (logs $TMP/TAG.out, $TMP/TAG.err); sets PID, BASE
start_daemon() {
    local tag=$1; shift
    "$BIN" "$@" --listen 127.0.0.1:0 >"$TMP/$tag.out" 2>"$TMP/$tag.err" &
    PID=$!
    if ! wait_line "$TMP/$tag.out" '^prunelabd listening on http://127\.0\.0\.1:[0-9]*/$'; then
        bad "daemon ($tag) did not start: $(tail -5 "$TMP/$tag.err")"
        finish
    fi
    BASE=http://127.0.0.1:$(sed -n 's|^prunelabd listening on http://127\.0\.0\.1:\([0-9]*\)/$|\1|p' "$TMP/$tag.out")
}
# the daemon's running engine cells (its direct children running `prunelab cell`)
cell_pids() { pgrep -P "$PID" -f ' cell$' 2>/dev/null | tr '\n' ' '; }
# job_get ID: the job into $TMP/job
job_get() { curl -s -o "$TMP/job" "$BASE/api/v1/jobs/$1"; }
# wait_for ID SECONDS JQ-FILTER: poll the job until the filter holds
wait_for() {
    local end=$((SECONDS + $2))
    while [ $SECONDS -lt $end ]; do
        kill -0 "$PID" 2>/dev/null || return 1
        job_get "$1"
        jq -e "$3" "$TMP/job" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}
# wait_cells ID SECONDS JQ-FILTER: poll the job's cells until the filter holds
wait_cells() {
    local end=$((SECONDS + $2))
    while [ $SECONDS -lt $end ]; do
        kill -0 "$PID" 2>/dev/null || return 1
        curl -s -o "$TMP/cells" "$BASE/api/v1/jobs/$1/cells"
        jq -e "$3" "$TMP/cells" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}
finished() { wait_for "$1" "$2" '.state == "done" or .state == "failed" or .state == "cancelled"'; }
gone_within() { # gone_within SECONDS PIDS...: all PIDS exited within SECONDS
    local end=$((SECONDS + $1)) p alive; shift
    while :; do
        alive=
        for p in "$@"; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
        [ -z "$alive" ] && return 0
        [ $SECONDS -ge $end ] && { LEFT=$alive; return 1; }
        sleep 0.2
    done
}
integrity() { # integrity DBFILE: prints the PRAGMA integrity_check answer
    if command -v sqlite3 >/dev/null; then
        sqlite3 "$1" 'PRAGMA integrity_check'
    elif command -v python3 >/dev/null; then
        python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("PRAGMA integrity_check").fetchone()[0])' "$1"
    else
        echo "(no sqlite3 CLI or python3)"
    fi
}

DATA=$TMP/var
mkdir -p "$DATA"
"$BIN" user add alice --data-dir "$DATA" >"$TMP/alice" 2>"$TMP/err" || { bad "user add: $(cat "$TMP/err")"; finish; }
ALICE=$(grep -o 'plt_[0-9a-f]\{64\}' "$TMP/alice" | head -1)
AUTH=(-H "Authorization: Bearer $ALICE")
# The engine runs through a wrapper that writes a line to stderr first, so a killed cell has a
# stderr tail to report; exec keeps the pid and makes the command line `ENGINE cell`.
ENGINE_ABS=$(cd "$(dirname "$ENGINE")" && pwd)/$(basename "$ENGINE")
printf '#!/bin/sh\necho "engine wrapper: starting $1" >&2\nexec "%s" "$@"\n' "$ENGINE_ABS" >"$TMP/engine.sh"
chmod +x "$TMP/engine.sh"
cat >"$TMP/prunelabd.conf" <<CONF
max_attempts = 2
grace_seconds = 2
lease_seconds = 5
engine_bin = $TMP/engine.sh
CONF
start_daemon run1 --config "$TMP/prunelabd.conf" --data-dir "$DATA" --workers 2
ok "daemon started with max_attempts = 2"
"$ENGINE" init --preset tiny --dataset synthetic:n=256,classes=4 --out "$TMP/tiny0.safetensors" >/dev/null 2>&1 ||
    bad "prunelab init failed"
areq PUT /api/v1/models/tiny0 --data-binary @"$TMP/tiny0.safetensors"
[ "$CODE" = 201 ] && ok "model uploaded" || { bad "model upload $CODE: $(head -c 300 "$TMP/body")"; finish; }

# A cell fine-tunes for FT steps after pruning, so it runs a few seconds.
FT=${CRASH_FINETUNE_STEPS:-200}
submit() { # submit JSON: job id in $JOB
    areq POST /api/v1/jobs -H 'Content-Type: application/json' --data-binary "$1"
    JOB=
    [ "$CODE" = 202 ] && JOB=$(jq -r .id "$TMP/body")
    [ -n "$JOB" ] || bad "submit ($CODE): $(head -c 300 "$TMP/body")"
}

# ------------------------------------------------------------------ (a) kill -9 the daemon
submit "{\"type\":\"ablation\",\"model\":\"tiny0\",\"components\":[\"linear_out\",\"mlp\"],\"rates\":[0.3,0.5,0.7],\"finetune\":{\"steps\":$FT,\"batch\":32},\"eval\":{\"max_samples\":64}}"
A=$JOB
if wait_for "$A" 40 '.counts.done >= 1 and .counts.running >= 1'; then
    ok "job $A: some cells done while others run"
else
    bad "job $A never had done and running cells: $(head -c 400 "$TMP/job")"
fi
curl -s -o "$TMP/before.json" "$BASE/api/v1/jobs/$A/results.json"
OLD_CELLS=$(cell_pids)
[ -n "$OLD_CELLS" ] && ok "cell processes running before the crash ($OLD_CELLS)" || bad "no cell process found"
{ kill -KILL "$PID"; wait "$PID"; } 2>/dev/null
PID=
jq '[.rows[] | select(.state == "done")] | sort_by(.cell_id)' "$TMP/before.json" >"$TMP/before_done.json"
NDONE=$(jq length "$TMP/before_done.json")
start_daemon run2 --config "$TMP/prunelabd.conf" --data-dir "$DATA" --workers 2
ok "daemon restarted on the same data dir"
grep -q 'recovered [1-9][0-9]* interrupted cell' "$TMP/run2.err" && ok "restart recovered the interrupted cells" ||
    bad "no recovery line: $(tail -5 "$TMP/run2.err")"
req GET "/api/v1/jobs/$A"
[ "$CODE" = 200 ] && ok "job $A is still there" || bad "job $A after restart: $CODE"
jqcheck "job has its 6 cells" "$TMP/body" '.cells == 6'
# shellcheck disable=SC2086
gone_within 10 $OLD_CELLS && ok "no cell process of the old daemon left" || bad "old cell processes left:$LEFT"
OLD_CELLS=
if finished "$A" 60 && jq -e '.state == "done"' "$TMP/job" >/dev/null; then ok "job $A finished after the restart"
else bad "job $A after restart: $(head -c 400 "$TMP/job")"; fi
jqcheck "all 6 cells done" "$TMP/job" '.counts.done == 6'
curl -s -o "$TMP/after.json" "$BASE/api/v1/jobs/$A/results.json"
jq --slurpfile b "$TMP/before_done.json" \
    '[.rows[] | select(.cell_id as $id | $b[0] | map(.cell_id) | index($id))] | sort_by(.cell_id)' \
    "$TMP/after.json" >"$TMP/after_done.json"
if [ "$NDONE" -ge 1 ] && cmp -s "$TMP/before_done.json" "$TMP/after_done.json"; then
    ok "the $NDONE rows done before the crash are unchanged"
else
    bad "rows done before the crash changed ($NDONE): $(diff "$TMP/before_done.json" "$TMP/after_done.json" | head -10)"
fi
curl -s -o "$TMP/cells" "$BASE/api/v1/jobs/$A/cells"
jqcheck "an interrupted cell ran again" "$TMP/cells" '[.cells[] | select(.attempts >= 2)] | length >= 1'
R=$(integrity "$DATA/prunelab.db")
[ "$R" = ok ] && ok "PRAGMA integrity_check: ok" || bad "integrity_check: $R"

# ------------------------------------------------------------------ (b) kill -9 a cell
submit "{\"type\":\"ablation\",\"model\":\"tiny0\",\"components\":[\"mlp\"],\"rates\":[0.5],\"finetune\":{\"steps\":$((FT * 20)),\"batch\":32}}"
B=$JOB
for attempt in 1 2; do
    P=
    if wait_cells "$B" 20 ".cells[0].state == \"running\" and .cells[0].attempts == $attempt"; then
        for _ in $(seq 50); do P=$(cell_pids); [ -n "$P" ] && break; sleep 0.1; done
    fi
    if [ -n "$P" ]; then
        sleep 0.5
        # shellcheck disable=SC2086
        kill -KILL $P
        ok "attempt $attempt: cell process killed ($P)"
    else
        bad "attempt $attempt: no running cell process: $(head -c 300 "$TMP/cells")"
    fi
    if [ $attempt = 1 ]; then
        wait_cells "$B" 20 '.cells[0].attempts == 2' && ok "killed cell is retried" ||
            bad "killed cell not retried: $(head -c 400 "$TMP/cells")"
    fi
done
if finished "$B" 20 && jq -e '.state == "failed"' "$TMP/job" >/dev/null; then ok "after max_attempts the job failed"
else bad "job $B: $(head -c 400 "$TMP/job")"; fi
curl -s -o "$TMP/cells" "$BASE/api/v1/jobs/$B/cells"
jqcheck "the cell failed after 2 attempts with an error" "$TMP/cells" \
    '.cells[0].state == "failed" and .cells[0].attempts == 2 and (.cells[0].error.message | length > 0)'
jqcheck "the failed cell carries its stderr tail" "$TMP/cells" '.cells[0].stderr_tail | test("engine wrapper: starting cell")'

# ------------------------------------------------------------------ (c) cancel
submit "{\"type\":\"ablation\",\"model\":\"tiny0\",\"components\":[\"linear_out\",\"mlp\"],\"rates\":[0.3,0.5],\"finetune\":{\"steps\":$((FT * 20)),\"batch\":32}}"
C=$JOB
P=
if wait_for "$C" 20 '.counts.running >= 1'; then
    for _ in $(seq 50); do P=$(cell_pids); [ -n "$P" ] && break; sleep 0.1; done
fi
[ -n "$P" ] && ok "job $C has running cell processes ($P)" || bad "job $C: no running cell process"
areq POST "/api/v1/jobs/$C/cancel"
[ "$CODE" = 200 ] && ok "cancel 200" || bad "cancel $CODE: $(head -c 300 "$TMP/body")"
# shellcheck disable=SC2086
gone_within 5 $P && ok "no cell process of the cancelled job after 5 s" || bad "cell processes left after cancel:$LEFT"
[ -z "$(cell_pids)" ] && ok "the daemon runs no cell" || bad "cells still running: $(cell_pids)"
finished "$C" 10 && jqcheck "cancelled job: nothing queued or running" "$TMP/job" \
    '.state == "cancelled" and .counts.queued == 0 and .counts.running == 0' || bad "job $C: $(head -c 300 "$TMP/job")"

kill -TERM "$PID"
wait "$PID"; rc=$?
PID=
[ $rc -eq 0 ] && ok "SIGTERM -> exit 0" || bad "exit status $rc after SIGTERM"
R=$(integrity "$DATA/prunelab.db")
[ "$R" = ok ] && ok "PRAGMA integrity_check after shutdown: ok" || bad "integrity_check: $R"

# ------------------------------------------------------------------ the example config
EX=$SRCDIR/deploy/prunelabd.conf.example
if [ -f "$EX" ]; then
    start_daemon example --config "$EX" --data-dir "$TMP/var2"
    req GET /healthz
    [ "$CODE" = 200 ] && ok "deploy/prunelabd.conf.example is a valid config (/healthz 200)" || bad "/healthz $CODE"
    kill -TERM "$PID"; wait "$PID"; PID=
else
    bad "$EX is missing"
fi
finish
