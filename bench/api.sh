#!/bin/bash
# bench/api.sh — request rate and latency of `GET /api/v1/jobs` while cells run, and the
# scheduling overhead per cell (claim -> the engine's first progress line stored).
#
# Installs: wrk (Debian package, `apt-get install -y wrk`) when it is missing; needs curl, jq,
# sqlite3 (all Debian packages).
#
# What it does:
#   1. starts ./prunelabd on a free port with a temp data dir and a temp config file:
#      workers 2, lease_seconds 30, max_connections 1024, max_connections_per_ip 0 (no per-IP
#      limit: the default of 128 per address would be enough for 64 connections, but the
#      benchmark should not measure the limiter), everything else at its default (anonymous
#      reads on, one access-log line per request to the daemon's stderr, here a file);
#   2. creates a user, makes a tiny model (`prunelab init --preset tiny --dataset synthetic...`)
#      and PUTs it;
#   3. adds a trigger to the temp database that records, for every cell attempt, the daemon's
#      own timestamp of the first progress write (lease_expires_ms - lease, set by the same
#      UPDATE) next to the claim time (cells.started_ms). The scheduler writes the first
#      progress line of a cell at once (a new phase is never throttled), so
#      first_ms - started_ms = claim -> spawn -> engine start -> first progress line read and
#      stored. The trigger adds one INSERT to that write transaction and nothing else;
#   4. submits N_SMALL small jobs (one-cell ablations, eval on 32 samples) so the list has
#      content, then an ablation grid with fine-tune steps large enough that both workers stay
#      busy past the measurement;
#   5. waits until 2 cells run, then `wrk -t2 -c64 -d30s --latency URL/api/v1/jobs`, sampling
#      /metrics prunelabd_cells_running once a second during the run;
#   6. once the grid is finished, the same wrk run with no cell running (the service alone);
#   7. prints a markdown table: requests/s, p50/p90/p99 latency, errors, cells running during
#      the run (min / mean of the samples), cells finished during the run, the daemon's own
#      time per request from its access log (request in -> response queued), and the median /
#      p90 / max scheduling overhead over the cells claimed in the whole run.
#
# Usage: bench/api.sh            (from the top of the tree, after `make`)
# Env:   PRUNELABD_BIN (./prunelabd), PRUNELAB_BIN (./prunelab), DURATION (30s), CONNS (64),
#        THREADS (2), N_SMALL (50), FT_STEPS (fine-tune steps per grid cell, 1500),
#        KEEP=1 keeps the temp directory (daemon log, database).
set -u
BIN=${PRUNELABD_BIN:-./prunelabd}
ENGINE=${PRUNELAB_BIN:-./prunelab}
DURATION=${DURATION:-30s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
N_SMALL=${N_SMALL:-50}
FT_STEPS=${FT_STEPS:-1500}
LEASE_S=30

die() { echo "api.sh: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "PRUNELABD_BIN=$BIN is not an executable (run make)"
[ -x "$ENGINE" ] || die "PRUNELAB_BIN=$ENGINE is not an executable (run make)"
if ! command -v wrk >/dev/null; then
    echo "api.sh: installing wrk (apt-get install -y wrk)" >&2
    apt-get install -y wrk >/dev/null 2>&1 || die "wrk is missing and apt-get install wrk failed"
fi
for tool in curl jq sqlite3; do
    command -v $tool >/dev/null || die "$tool is required (apt-get install $tool)"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/prunelab-bench-api.XXXXXX")
PID=
SAMPLER=
cleanup() {
    [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "api.sh: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
DATA=$TMP/var
mkdir -p "$DATA"

cat >"$TMP/prunelabd.conf" <<EOF
# bench/api.sh: temp settings for the benchmark
workers = 2
lease_seconds = $LEASE_S
max_connections = 1024
max_connections_per_ip = 0
EOF

TOKEN=$("$BIN" user add bench --admin --data-dir "$DATA" 2>"$TMP/err" | grep -o 'plt_[0-9a-f]\{64\}' | head -1)
[ -n "$TOKEN" ] || die "user add failed: $(cat "$TMP/err")"
AUTH=(-H "Authorization: Bearer $TOKEN")

"$BIN" --listen 127.0.0.1:0 --data-dir "$DATA" --config "$TMP/prunelabd.conf" >"$TMP/stdout" 2>"$TMP/stderr" &
PID=$!
for _ in $(seq 100); do grep -q '^prunelabd listening on' "$TMP/stdout" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's|^prunelabd listening on http://127\.0\.0\.1:\([0-9]*\)/$|\1|p' "$TMP/stdout")
[ -n "$PORT" ] || die "daemon did not start: $(cat "$TMP/stderr")"
BASE=http://127.0.0.1:$PORT

# First progress write per cell attempt, in the daemon's clock (see the header).
sqlite3 -cmd '.timeout 5000' "$DATA/prunelab.db" "
CREATE TABLE IF NOT EXISTS bench_first_progress (cell_id INTEGER, attempt INTEGER, phase TEXT,
    started_ms INTEGER, first_ms INTEGER);
CREATE TRIGGER IF NOT EXISTS bench_first_progress_t AFTER UPDATE OF phase ON cells
WHEN OLD.phase IS NULL AND NEW.phase IS NOT NULL AND NEW.state = 'running'
BEGIN
    INSERT INTO bench_first_progress VALUES (NEW.id, NEW.attempts, NEW.phase, NEW.started_ms,
                                             NEW.lease_expires_ms - $((LEASE_S * 1000)));
END;" || die "could not add the trigger"

"$ENGINE" init --preset tiny --dataset synthetic:n=512,classes=4 --out "$TMP/tiny.safetensors" >/dev/null 2>&1 ||
    die "prunelab init failed"
code=$(curl -s -o "$TMP/body" -w '%{http_code}' -X PUT "${AUTH[@]}" --data-binary @"$TMP/tiny.safetensors" \
    "$BASE/api/v1/models/tiny")
[ "$code" = 201 ] || die "PUT model: $code $(cat "$TMP/body")"

post() {
    local code
    code=$(curl -s -o "$TMP/body" -w '%{http_code}' -X POST "${AUTH[@]}" -H 'Content-Type: application/json' \
        --data-binary "$1" "$BASE/api/v1/jobs")
    [ "$code" = 202 ] || die "POST job: $code $(cat "$TMP/body")"
}
COMPS=(linear_out mlp linear_gate linear_in conv1d linear_B_C)
for i in $(seq "$N_SMALL"); do
    c=${COMPS[$((i % 6))]}
    post "{\"type\":\"ablation\",\"model\":\"tiny\",\"components\":[\"$c\"],\"rates\":[0.5],\"eval\":{\"max_samples\":32}}"
done
# The grid that keeps both workers busy: 6 components x 4 rates, fine-tuned.
post "{\"type\":\"ablation\",\"model\":\"tiny\",\"components\":[\"linear_out\",\"mlp\",\"linear_gate\",\"linear_in\",\"conv1d\",\"linear_B_C\"],\"rates\":[0.3,0.5,0.7,0.9],\"finetune\":{\"steps\":$FT_STEPS,\"batch\":32},\"eval\":{\"max_samples\":256}}"
GRID=$(jq -r .id "$TMP/body")

metric() { curl -s "$BASE/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
# Wait for the small jobs to drain and the grid to occupy both workers.
for _ in $(seq 600); do
    st=$(curl -s "$BASE/api/v1/jobs/$GRID" | jq -r '.counts.running')
    [ "$st" = 2 ] && break
    sleep 0.2
done
[ "$st" = 2 ] || die "the grid never ran 2 cells at once"

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
DONE0=$(metric 'prunelabd_cells_done')
L0=$(wc -l <"$TMP/stderr")
( while :; do metric prunelabd_cells_running; sleep 1; done ) >"$TMP/running" &
SAMPLER=$!
wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$BASE/api/v1/jobs" >"$TMP/wrk" 2>&1
kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null; SAMPLER=
L1=$(wc -l <"$TMP/stderr")
DONE1=$(metric 'prunelabd_cells_done')
GRIDJSON=$(curl -s "$BASE/api/v1/jobs/$GRID")
kill -0 "$PID" 2>/dev/null || die "the daemon died: $(tail -5 "$TMP/stderr")"

# Let the grid finish so the overhead covers all its cells (bounded wait).
for _ in $(seq 1500); do
    s=$(curl -s "$BASE/api/v1/jobs/$GRID" | jq -r .state)
    case "$s" in done | failed | cancelled) break ;; esac
    sleep 0.2
done
GRIDSTATE=$s

# The same run with no cell running (grid finished): the service's own capacity on this machine.
IDLE_RUNNING=$(metric prunelabd_cells_running)
IDLE_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
L2=$(wc -l <"$TMP/stderr")
wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$BASE/api/v1/jobs" >"$TMP/wrk_idle" 2>&1
L3=$(wc -l <"$TMP/stderr")

# wrk latency to ms
to_ms() { awk '{ v = $1; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) }
                 else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } printf "%.2f", v }'; }
# wrk_row FILE: "requests/s | requests | p50 | p90 | p99 | errors"
wrk_row() {
    local rps n p50 p90 p99 errs
    rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$1")
    n=$(awk '/requests in/ { print $1 }' "$1")
    p50=$(awk '$1 == "50%" { print $2 }' "$1" | to_ms)
    p90=$(awk '$1 == "90%" { print $2 }' "$1" | to_ms)
    p99=$(awk '$1 == "99%" { print $2 }' "$1" | to_ms)
    errs=$(awk '/Socket errors|Non-2xx/ { printf "%s; ", $0 }' "$1")
    echo "$rps | $n | $p50 ms | $p90 ms | $p99 ms | ${errs:-none}"
}
# srv_time FROM TO: median / p99 of the daemon's own request time (access log lines FROM..TO)
srv_time() {
    sed -n "$(($1 + 1)),$2p" "$TMP/stderr" | awk '$3 == "GET" && $4 == "/api/v1/jobs" && $5 == 200 { print $6 }' |
        sort -n | awk '{ a[NR] = $1 } END { if (NR) printf "%.2f / %.2f ms", a[int(0.5 * (NR - 1)) + 1], a[int(0.99 * (NR - 1)) + 1] }'
}
RUN_MIN=$(sort -n "$TMP/running" | head -1)
RUN_MEAN=$(awk '{ s += $1; n++ } END { if (n) printf "%.2f", s / n }' "$TMP/running")
NSAMP=$(wc -l <"$TMP/running")

sqlite3 "$DATA/prunelab.db" "SELECT first_ms - started_ms FROM bench_first_progress ORDER BY 1" >"$TMP/overhead"
OVN=$(wc -l <"$TMP/overhead")
q() { awk -v p="$1" '{ a[NR] = $1 } END { if (NR) { i = int(p * (NR - 1) + 0.5) + 1; print a[i] } }' "$TMP/overhead"; }
OV50=$(q 0.5); OV90=$(q 0.9); OVMAX=$(q 1.0); OVMIN=$(q 0.0)
FIRSTPH=$(sqlite3 "$DATA/prunelab.db" "SELECT phase || ' ' || count(*) FROM bench_first_progress GROUP BY phase" | paste -sd, -)

echo
echo "prunelabd $BASE, workers 2, $(nproc) cores, load before the run $LOAD, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "\`wrk -t$THREADS -c$CONNS -d$DURATION --latency $BASE/api/v1/jobs\` (anonymous read, default page of 50 jobs, $((N_SMALL + 1)) jobs stored)"
echo
echo "| condition | requests/s | requests | p50 | p90 | p99 | errors | daemon's own time per request (median / p99) | cells running (min / mean of per-second samples) | cells finished during the run |"
echo "|---|---|---|---|---|---|---|---|---|---|"
echo "| 2 cells running (load before: $LOAD) | $(wrk_row "$TMP/wrk") | $(srv_time "$L0" "$L1") | $RUN_MIN / $RUN_MEAN ($NSAMP samples) | $((DONE1 - DONE0)) |"
echo "| no cell running, after the grid (load before: $IDLE_LOAD) | $(wrk_row "$TMP/wrk_idle") | $(srv_time "$L2" "$L3") | $IDLE_RUNNING | — |"
echo
echo "Scheduling overhead, claim -> first progress line stored, over $OVN cell attempts (first phases: $FIRSTPH):"
echo
echo "| median | p90 | min | max |"
echo "|---|---|---|---|"
echo "| $OV50 ms | $OV90 ms | $OVMIN ms | $OVMAX ms |"
echo
echo "grid job during the run: $(echo "$GRIDJSON" | jq -c '.counts'); at the end: $GRIDSTATE"
