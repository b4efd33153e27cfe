#!/bin/bash
# bench/api_pages.sh — the daemon's peak memory while anonymous clients read a 10,000-cell job:
# its cells, its results.json and its results.csv.
#
# Needs curl, jq, sqlite3 (Debian packages). Nothing runs a cell: every cell of the job is
# written straight into a fresh database (done, with a result shaped like the engine's: the
# metrics, per-layer dims and a sparsity report of 4 layers, ~8 KB per cell; one cell in ten
# failed with an error instead), so the daemon starts with no runnable cell and only serves reads.
#
# What it does, for each binary given (so an old and a new tree meet the same data):
#   for each scenario (cells page, results.json page, results.csv; QUERY below) and each of REPS
#   repetitions: starts the daemon on a free port on a copy of that database, waits until it
#   answers /healthz, reads VmHWM from /proc/PID/status (the idle peak), fires PAR (16) parallel
#   anonymous curls of the scenario's URL, waits for them by pid, reads VmHWM again (the peak of
#   the burst), checks every curl got a 200 and notes the bytes of one answer, stops the daemon
#   by pid. A fresh daemon per repetition: VmHWM never falls, so each burst is measured alone.
#   Prints a markdown table of medians: idle peak, burst peak, bytes per answer, wall time of
#   the burst.
#
# Usage: bench/api_pages.sh [PRUNELABD...]   (default ./prunelabd)
#   e.g. bench/api_pages.sh /tmp/pl_old/prunelabd ./prunelabd
# Env:   CELLS (10000), PAR (16), REPS (3), PATHS (the request paths, space-separated: a cells
#        page, the same with limit=1000, a results.json page, the same with limit=1000,
#        results.csv), PRUNELAB_SQL_DIR (./sql), KEEP=1 keeps the temp dir.
# Careful with a tree that builds the whole job per request: on 10,000 such cells one request
# of /cells peaks near 1 GB, so PAR=16 there needs ~15 GB (run it with CELLS=1000 or PAR=1).
set -u
CELLS=${CELLS:-10000}
PAR=${PAR:-16}
REPS=${REPS:-3}
PATHS=${PATHS:-/api/v1/jobs/1/cells /api/v1/jobs/1/cells?limit=1000 /api/v1/jobs/1/results.json \
/api/v1/jobs/1/results.json?limit=1000 /api/v1/jobs/1/results.csv}
export PRUNELAB_SQL_DIR=${PRUNELAB_SQL_DIR:-$PWD/sql}
[ $# -gt 0 ] || set -- ./prunelabd
die() { echo "api_pages.sh: $*" >&2; exit 1; }
for tool in curl jq sqlite3; do command -v $tool >/dev/null || die "$tool is required (apt-get install $tool)"; done
for b in "$@"; do [ -x "$b" ] || die "$b is not an executable (run make)"; done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/prunelab-api-pages.XXXXXX")
PID=
cleanup() {
    [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null
    [ -n "${KEEP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT

# A sparsity report shaped like engine/prune_unstructured.c's prune_sparsity_json, L layers.
sparsity_report() {
    local L=$1 i t sep='' b='{"params":4096,"zeros":1229,"nonzero":2867,"sparsity":0.300048828125}'
    printf '{"overall":{"params":26500,"zeros":1364,"nonzero":25136,"sparsity":0.0514716981}'
    printf ',"weights":{"params":24576,"zeros":1364,"nonzero":23212,"sparsity":0.0555013021},"tensors":{'
    for t in patch_embed.weight patch_embed.bias pos_embed; do printf '%s"%s":%s' "$sep" $t "$b"; sep=,; done
    for i in $(seq 0 $((L - 1))); do
        for t in norm.weight mixer.in_proj.weight mixer.conv1d.weight mixer.conv1d.bias mixer.x_proj.weight \
                 mixer.dt_proj.weight mixer.dt_proj.bias mixer.A_log mixer.D mixer.out_proj.weight norm2.weight \
                 mlp.fc1.weight mlp.fc1.bias mlp.fc2.weight mlp.fc2.bias; do
            printf ',"backbone.layers.%d.%s":%s' "$i" $t "$b"
        done
    done
    printf ',"backbone.norm_f.weight":%s,"head.weight":%s,"head.bias":%s},"components":{' "$b" "$b" "$b"
    sep=''
    for t in out_proj:linear_out mlp:mlp gate:linear_gate in_proj:linear_in conv1d:conv1d x_proj_bc:linear_B_C \
             dt:linear_delta A_log:A D:D layer:layer; do
        printf '%s"%s":{"params":4096,"zeros":1229,"nonzero":2867,"sparsity":0.300048828125,"alias":"%s"}' \
            "$sep" "${t%%:*}" "${t#*:}"
        sep=,
    done
    printf '},"layers":['
    sep=''
    for i in $(seq 0 $((L - 1))); do
        printf '%s{"layer":%d,"params":6144,"zeros":341,"nonzero":5803,"sparsity":0.0555013021}' "$sep" "$i"
        sep=,
    done
    printf ']}'
}
layers_dims() {
    local i sep=''
    printf '['
    for i in 0 1 2 3; do
        printf '%s{"layer":%d,"d_inner":64,"d_state":16,"dt_rank":2,"d_conv":4,"mlp":128}' "$sep" $i
        sep=,
    done
    printf ']'
}
RESULT="{\"recipe\":\"ablation\",\"accuracy\":@ACC@,\"loss\":0.3391,\"baseline_accuracy\":0.8841,\
\"baseline_loss\":0.3262,\"baseline_source\":\"given\",\"delta_accuracy\":-0.0044,\"delta_loss\":0.0129,\
\"eval\":{\"split\":\"test\",\"n\":10000},\"params\":26500,\"params_nonzero\":25136,\"params_realised\":26500,\
\"params_baseline\":26500,\"params_baseline_nonzero\":26500,\"sparsity\":$(sparsity_report 4),\
\"flops_per_sample\":932096,\"baseline_flops_per_sample\":932096,\"layers\":$(layers_dims),\
\"entries\":[{\"component\":\"mlp\",\"rate\":0.3,\"granularity\":\"structured\",\"removed\":38}],\
\"pruned\":{\"accuracy\":0.71,\"loss\":0.52,\"delta_accuracy\":-0.17,\"delta_loss\":0.19},\
\"finetune\":{\"steps\":200,\"lr\":0.001,\"batch\":64,\"train_loss\":0.36,\"train_acc\":0.87,\"seconds\":1.2},\
\"latency_batch\":64,\"latency_ms_per_batch\":1.98,\"samples_per_s\":32287.2,\"baseline_latency_ms_per_batch\":2.55,\
\"baseline_samples_per_s\":25098.0,\"speedup\":1.29,\"out\":null,\"seed\":1,\"peak_rss_kb\":21000,\"wall_s\":0.11,\
\"blas_kernel\":\"Haswell\",\"threads\":1}"

mkdir -p "$TMP/seed"
"$1" user add bench --data-dir "$TMP/seed" >/dev/null 2>&1 || die "$1 user add failed (database not created)"
sqlite3 "$TMP/seed/prunelab.db" <<EOF || die "cannot write the job"
BEGIN;
INSERT INTO jobs (id, owner, type, spec, state, n_cells, n_done, n_failed, baseline, created_ms, started_ms,
                  finished_ms)
VALUES (1, 'bench', 'ablation', '{"type":"ablation"}', 'failed', $CELLS, $CELLS - ($CELLS + 2) / 10,
        ($CELLS + 2) / 10, '{"accuracy":0.8841,"loss":0.3262}', 1700000000000, 1700000000001, 1700000000002);
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $CELLS - 1)
INSERT INTO cells (job_id, idx, spec, state, attempts, progress, phase, result, error_code, error_message,
                   created_ms, started_ms, finished_ms)
SELECT 1, i, json_object('recipe', 'ablation', 'model', 'fm-small', 'dataset', 'synthetic', 'component',
                         'mlp', 'rate', (i % 10) / 10.0, 'seed', i / 10, 'granularity', 'structured'),
       CASE i % 10 WHEN 7 THEN 'failed' ELSE 'done' END, 1, 1, 'latency',
       CASE i % 10 WHEN 7 THEN NULL ELSE replace('$RESULT', '@ACC@', printf('%.4f', 0.8 + (i % 100) / 1000.0)) END,
       CASE i % 10 WHEN 7 THEN 'runtime' END, CASE i % 10 WHEN 7 THEN 'evaluation: out of memory' END,
       1700000000000, 1700000000001, 1700000000002
FROM n;
COMMIT;
EOF
DB_MB=$(du -m "$TMP/seed/prunelab.db" | cut -f1)
CELL_B=$(sqlite3 "$TMP/seed/prunelab.db" "SELECT length(result), length(json_extract(result, '\$.sparsity')) FROM cells WHERE idx = 0")

hwm_kb() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# run BIN PATH: one repetition; prints "idle_kb burst_kb bytes seconds"
run() {
    local bin=$1 path=$2 i
    rm -rf "$TMP/data"
    cp -r "$TMP/seed" "$TMP/data"
    "$bin" --listen 127.0.0.1:0 --data-dir "$TMP/data" --workers 1 >"$TMP/stdout" 2>"$TMP/stderr" &
    PID=$!
    for _ in $(seq 100); do grep -q '^prunelabd listening' "$TMP/stdout" && break; sleep 0.1; done
    local port
    port=$(sed -n 's|^prunelabd listening on http://127\.0\.0\.1:\([0-9]*\)/$|\1|p' "$TMP/stdout")
    [ -n "$port" ] || die "$bin did not start: $(tail -3 "$TMP/stderr")"
    curl -s -o /dev/null "http://127.0.0.1:$port/healthz"
    local idle t0 t1 pids=()
    idle=$(hwm_kb $PID)
    t0=$(date +%s.%N)
    for i in $(seq $PAR); do
        curl -s -o "$TMP/out.$i" -w '%{http_code}\n' --max-time 300 "http://127.0.0.1:$port$path" >"$TMP/code.$i" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    t1=$(date +%s.%N)
    local burst
    burst=$(hwm_kb $PID)
    for i in $(seq $PAR); do [ "$(cat "$TMP/code.$i")" = 200 ] || die "$bin $path: HTTP $(cat "$TMP/code.$i")"; done
    local bytes
    bytes=$(stat -c %s "$TMP/out.1")
    kill -TERM $PID
    for _ in $(seq 100); do kill -0 $PID 2>/dev/null || break; sleep 0.1; done
    kill -KILL $PID 2>/dev/null
    wait $PID 2>/dev/null
    PID=
    echo "$idle $burst $bytes $(echo "$t1 - $t0" | bc -l)"
}

echo "job: $CELLS cells ($DB_MB MB database; a done cell's result $(echo $CELL_B | cut -d'|' -f1) bytes, its"\
     "sparsity report $(echo $CELL_B | cut -d'|' -f2)); $PAR parallel anonymous requests per burst, median of $REPS"
echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores"
echo
echo "| binary | request | daemon VmHWM idle (MiB) | VmHWM after the burst (MiB) | bytes per answer | burst wall (s) |"
echo "|---|---|---|---|---|---|"
for bin in "$@"; do
    for path in $PATHS; do
        : >"$TMP/runs"
        for _ in $(seq $REPS); do run "$bin" "$path" >>"$TMP/runs"; done
        idle=$(cut -d' ' -f1 "$TMP/runs" | median)
        burst=$(cut -d' ' -f2 "$TMP/runs" | median)
        bytes=$(cut -d' ' -f3 "$TMP/runs" | median)
        secs=$(cut -d' ' -f4 "$TMP/runs" | median)
        printf '| %s | `%s` | %.0f | **%.0f** | %s | %.2f |\n' "$bin" "${path#/api/v1/jobs/1/}" \
            "$(echo "$idle / 1024" | bc -l)" "$(echo "$burst / 1024" | bc -l)" "$bytes" "$secs"
    done
done
