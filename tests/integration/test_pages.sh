#!/usr/bin/env bash
# tests/integration/test_pages.sh — a job's cells and results.json are pages, results.csv is
# streamed whole. The jobs are written straight into a fresh database (sqlite3), every cell
# finished (done, failed or cancelled, so no worker ever runs one): a 125-cell job whose results
# carry a sparsity report like the engine's, and a 3-cell job whose CSV is compared with the text
# the daemon wrote before the paging (a golden copy). Checks: default and maximum limits, page
# tokens covering every cell exactly once in idx order, the state filter across pages, 400
# naming the field for a bad limit, page_token, include or state, the job-level fields of
# results.json on every page, pages cut the sparsity report to its summaries while
# include=sparsity and GET .../cells/{idx} give it whole, 404 naming idx for a missing cell.
# Starts prunelabd on 127.0.0.1 port 0 and stops it by pid. Env: PRUNELABD_BIN. Needs curl, jq,
# sqlite3.
set -u
NAME=test_pages
BIN=${PRUNELABD_BIN:-./prunelabd}
. "$(dirname "$0")/lib.sh"
command -v sqlite3 >/dev/null || { echo "$NAME: sqlite3 is required (apt-get install sqlite3)"; exit 77; }

jqcheck() { # jqcheck DESCRIPTION FILE FILTER
    if jq -e "$3" "$2" >/dev/null 2>&1; then ok "$1"; else bad "$1 (body: $(head -c 300 "$2"))"; fi
}
# get PATH: status in $CODE, body in $TMP/body
get() { CODE=$(curl -s --path-as-is -o "$TMP/body" -w '%{http_code}' "$BASE$1"); }
expect400() { # expect400 PATH FIELD
    get "$1"
    if [ "$CODE" = 400 ] && jq -e ".error.code == \"bad_query\" and .error.field == \"$2\"" "$TMP/body" >/dev/null; then
        ok "GET $1: 400 naming $2"
    else
        bad "GET $1: $CODE $(head -c 300 "$TMP/body")"
    fi
}

# A sparsity report shaped like the engine's (engine/prune_unstructured.c), 2 layers.
report() {
    local b='{"params":4096,"zeros":1229,"nonzero":2867,"sparsity":0.300048828125}' i t
    printf '{"overall":{"params":26500,"zeros":1364,"nonzero":25136,"sparsity":0.0514716981}'
    printf ',"weights":{"params":24576,"zeros":1364,"nonzero":23212,"sparsity":0.0555013021},"tensors":{'
    printf '"patch_embed.weight":%s' "$b"
    for i in 0 1; do
        for t in mixer.in_proj.weight mixer.x_proj.weight mixer.out_proj.weight; do
            printf ',"backbone.layers.%d.%s":%s' $i $t "$b"
        done
    done
    printf '},"components":{"mlp":{"params":4096,"zeros":0,"nonzero":4096,"sparsity":0,"alias":"mlp"}}'
    printf ',"layers":[{"layer":0,"sparsity":0.05},{"layer":1,"sparsity":0.06}]}'
}
RESULT="{\"recipe\":\"ablation\",\"accuracy\":@ACC@,\"loss\":0.3391,\"baseline_accuracy\":0.8841,\"delta_accuracy\":-0.0044,\"params\":26500,\"params_nonzero\":25136,\"sparsity\":$(report),\"latency_ms_per_batch\":1.98,\"wall_s\":0.11}"

DATA=$TMP/var
mkdir -p "$DATA"
new_token alice >/dev/null || exit 1 # creates the database with its migrations
N=125
# cell i: done, but failed when i % 10 == 7 and cancelled when i % 10 == 9
sqlite3 "$DATA/prunelab.db" <<EOF || { bad "cannot write the test jobs"; exit 1; }
BEGIN;
INSERT INTO jobs (id, owner, type, spec, state, n_cells, n_done, n_failed, n_cancelled, baseline, created_ms,
                  started_ms, finished_ms)
VALUES (1, 'alice', 'ablation', '{"type":"ablation"}', 'failed', $N, $N - 24, 12, 12,
        '{"accuracy":0.8841,"loss":0.3262}', 1700000000000, 1700000000001, 1700000000002);
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $N - 1)
INSERT INTO cells (job_id, idx, spec, state, attempts, progress, result, error_code, error_message, created_ms,
                   started_ms, finished_ms)
SELECT 1, i, json_object('component', 'mlp', 'rate', (i % 10) / 10.0, 'seed', i / 10),
       CASE i % 10 WHEN 7 THEN 'failed' WHEN 9 THEN 'cancelled' ELSE 'done' END, 1, 1,
       CASE WHEN i % 10 IN (7, 9) THEN NULL ELSE replace('$RESULT', '@ACC@', printf('%.4f', 0.8 + i / 1000.0)) END,
       CASE i % 10 WHEN 7 THEN 'runtime' WHEN 9 THEN 'cancelled' END,
       CASE i % 10 WHEN 7 THEN 'engine said "no", then exited' END, 1700000000000, 1700000000001, 1700000000002
FROM n;
INSERT INTO jobs (id, owner, type, spec, state, n_cells, n_done, n_failed, baseline, created_ms)
VALUES (2, 'alice', 'joint', '{"type":"joint"}', 'failed', 3, 2, 1, NULL, 1700000000000);
INSERT INTO cells (job_id, idx, spec, state, result, error_code, created_ms) VALUES
 (2, 0, '{"config":{"mlp":0.3,"dt":0.5},"seed":1}', 'done', replace('$RESULT', '@ACC@', '0.123456789012'), NULL, 1),
 (2, 1, '{"components":["gate","mlp"],"layer":1,"rate":0.25}', 'done', '{"sparsity":0.5,"wall_s":2}', NULL, 1),
 (2, 2, '{"component":"a,\"b\"","rate":0.7}', 'failed', NULL, 'runtime', 1);
COMMIT;
EOF
start_daemon --data-dir "$DATA" --workers 1

# walk PATH KEY LIMIT: every page of PATH (limit LIMIT, "" = the default), KEY's items' idx
# concatenated into $TMP/walk, one per line; pages counted in $PAGES. 1 when a page fails.
walk() {
    local tok='' sep='?'
    case $1 in *\?*) sep='&' ;; esac
    : >"$TMP/walk"
    PAGES=0
    while :; do
        local q=$sep
        [ -n "$3" ] && q="${q}limit=$3&"
        [ -n "$tok" ] && q="${q}page_token=$tok"
        get "$1$q"
        [ "$CODE" = 200 ] || { bad "GET $1$q: $CODE $(head -c 300 "$TMP/body")"; return 1; }
        PAGES=$((PAGES + 1))
        jq -r ".$2[].idx" "$TMP/body" >>"$TMP/walk"
        tok=$(jq -r '.next_page_token // empty' "$TMP/body")
        [ -n "$tok" ] || return 0
        [ $PAGES -lt 500 ] || { bad "GET $1: more than 500 pages"; return 1; }
    done
}
seq_file() { seq 0 $((N - 1)) | awk "$1" >"$TMP/want"; }

# ------------------------------------------------------------------ cells pages
get "/api/v1/jobs/1/cells"
jqcheck "cells: the default page holds 50 cells with a next_page_token" "$TMP/body" \
    '.job == 1 and (.cells | length) == 50 and .cells[0].idx == 0 and .cells[49].idx == 49 and (.next_page_token | type) == "string"'
jqcheck "cells: a page cuts the sparsity report to overall and weights" "$TMP/body" \
    '.cells[0].result.sparsity | keys == ["overall", "weights"] and .overall.sparsity == 0.0514716981'
jqcheck "cells: the other result fields stay" "$TMP/body" '.cells[3].result.accuracy == 0.803 and .cells[0].result.recipe == "ablation"'
jqcheck "cells: failed cells carry their error" "$TMP/body" \
    '.cells[7].state == "failed" and .cells[7].result == null and .cells[7].error.code == "runtime"'
for lim in "" 1 7 50 124 125 1000; do
    if walk "/api/v1/jobs/1/cells" cells "$lim"; then
        seq_file '1'
        want_pages=$(( lim ? (N + lim - 1) / lim : (N + 49) / 50 ))
        if cmp -s "$TMP/walk" "$TMP/want" && [ $PAGES -eq $want_pages ]; then
            ok "cells, limit '${lim}': $PAGES pages cover every cell once, in order"
        else
            bad "cells, limit '${lim}': $PAGES pages (want $want_pages), idx $(tr '\n' ' ' <"$TMP/walk" | head -c 200)"
        fi
    fi
done
if walk "/api/v1/jobs/1/cells?state=failed" cells 4; then
    seq_file '$1 % 10 == 7'
    cmp -s "$TMP/walk" "$TMP/want" && [ $PAGES -eq 3 ] && ok "cells?state=failed pages through the failed cells" \
        || bad "cells?state=failed: $PAGES pages, idx $(tr '\n' ' ' <"$TMP/walk")"
fi
if walk "/api/v1/jobs/1/cells?state=done" cells 1000; then
    seq_file '$1 % 10 != 7 && $1 % 10 != 9'
    cmp -s "$TMP/walk" "$TMP/want" && ok "cells?state=done: the done cells" || bad "cells?state=done: $(wc -l <"$TMP/walk") cells"
fi
get "/api/v1/jobs/1/cells?state=cancelled&limit=1000"
jqcheck "cells?state=cancelled: only cancelled cells" "$TMP/body" \
    '(.cells | length) == 12 and all(.cells[]; .state == "cancelled") and .next_page_token == null'

for q in limit=0 limit=1001 limit=-1 limit=abc limit=5x; do expect400 "/api/v1/jobs/1/cells?$q" limit; done
for q in page_token=bogus page_token=n1 page_token=c page_token=czz; do expect400 "/api/v1/jobs/1/cells?$q" page_token; done
expect400 "/api/v1/jobs/1/cells?include=tensors" include
expect400 "/api/v1/jobs/1/cells?state=finished" state
get "/api/v1/jobs/99/cells"
[ "$CODE" = 404 ] && ok "cells of an unknown job: 404" || bad "cells of an unknown job: $CODE"

# ------------------------------------------------------------------ the whole report
get "/api/v1/jobs/1/cells?include=sparsity&limit=2"
jqcheck "cells?include=sparsity: the whole report" "$TMP/body" \
    '(.cells | length) == 2 and (.cells[0].result.sparsity | has("tensors") and has("components") and has("layers")) and
     (.cells[0].result.sparsity.tensors | length) == 7'
get "/api/v1/jobs/1/cells/4"
jqcheck "cells/4: one whole cell with its sparsity report" "$TMP/body" \
    '.idx == 4 and .state == "done" and .result.accuracy == 0.804 and (.result.sparsity.tensors | length) == 7 and
     (.result.sparsity.layers | length) == 2 and .spec.rate == 0.4'
get "/api/v1/jobs/1/cells/0"
jqcheck "cells/0: the first cell" "$TMP/body" '.idx == 0'
for p in 125 01 -1 x 99999999999; do
    get "/api/v1/jobs/1/cells/$p"
    if [ "$CODE" = 404 ] && jq -e '.error.code == "not_found" and .error.field == "idx"' "$TMP/body" >/dev/null; then
        ok "cells/$p: 404 naming idx"
    else
        bad "cells/$p: $CODE $(head -c 200 "$TMP/body")"
    fi
done
get "/api/v1/jobs/99/cells/0"
jqcheck "cells/0 of an unknown job: 404" "$TMP/body" '.error.code == "not_found" and .error.field != "idx"'

# ------------------------------------------------------------------ results.json pages
get "/api/v1/jobs/1/results.json?limit=10"
jqcheck "results.json: a page keeps the job-level fields" "$TMP/body" \
    '.job == 1 and .type == "ablation" and .baseline.accuracy == 0.8841 and (.rows | length) == 10 and
     .rows[0].sparsity == 0.0514716981 and .rows[3].accuracy == 0.803 and (.next_page_token | type) == "string"'
tok=$(jq -r .next_page_token "$TMP/body")
get "/api/v1/jobs/1/results.json?limit=10&page_token=$tok"
jqcheck "results.json: the next page has the job-level fields too" "$TMP/body" \
    '.job == 1 and .type == "ablation" and .baseline.loss == 0.3262 and .rows[0].idx == 10'
if walk "/api/v1/jobs/1/results.json" rows 33; then
    seq_file '1'
    cmp -s "$TMP/walk" "$TMP/want" && [ $PAGES -eq 4 ] && ok "results.json: 4 pages of 33 cover every row once" \
        || bad "results.json: $PAGES pages"
fi
if walk "/api/v1/jobs/1/results.json?state=failed" rows 5; then
    seq_file '$1 % 10 == 7'
    cmp -s "$TMP/walk" "$TMP/want" && ok "results.json?state=failed pages through the failed rows" || bad "results.json?state=failed"
fi
expect400 "/api/v1/jobs/1/results.json?limit=1001" limit
expect400 "/api/v1/jobs/1/results.json?page_token=o5" page_token
expect400 "/api/v1/jobs/1/results.json?state=x" state

# ------------------------------------------------------------------ results.csv, streamed
CODE=$(curl -s -o "$TMP/small.csv" -D "$TMP/headers" -w '%{http_code}' "$BASE/api/v1/jobs/2/results.csv")
# what the daemon answered before the paging, for the same job; since the causal LM columns
# (task, metric, perplexity, baseline_perplexity, delta_perplexity, bits_per_token, bits_per_byte,
# tokens_per_s) came in before error, these image rows have 8 more empty fields there
cat >"$TMP/golden.csv" <<'EOF'
idx,cell_id,state,component,components,layer,rate,seed,config,accuracy,loss,baseline_accuracy,delta_accuracy,delta_loss,sparsity,params,params_nonzero,params_baseline,flops_per_sample,baseline_flops_per_sample,latency_ms_per_batch,samples_per_s,speedup,wall_s,task,metric,perplexity,baseline_perplexity,delta_perplexity,bits_per_token,bits_per_byte,tokens_per_s,error
0,126,done,,,,,1,mlp=0.3;dt=0.5,0.123456789,0.3391,0.8841,-0.0044,,0.0514716981,26500,25136,,,,1.98,,,0.11,,,,,,,,,
1,127,done,,gate,1,0.25,,,,,,,,0.5,,,,,,,,,2,,,,,,,,,
2,128,failed,"a,""b""",,,0.7,,,,,,,,,,,,,,,,,,,,,,,,,,runtime
EOF
if [ "$CODE" = 200 ] && cmp -s "$TMP/small.csv" "$TMP/golden.csv"; then
    ok "results.csv of a small job: the same bytes as before"
else
    bad "results.csv of a small job: $CODE $(diff "$TMP/golden.csv" "$TMP/small.csv" | head -c 600)"
fi
grep -qi '^content-type: text/csv; charset=utf-8' "$TMP/headers" && ok "results.csv: text/csv" || bad "results.csv content type"
CODE=$(curl -s -o "$TMP/big.csv" -w '%{http_code}' "$BASE/api/v1/jobs/1/results.csv")
seq_file '1'
if [ "$CODE" = 200 ] && [ "$(head -1 "$TMP/big.csv")" = "$(head -1 "$TMP/golden.csv")" ] &&
    tail -n +2 "$TMP/big.csv" | cut -d, -f1 | cmp -s - "$TMP/want"; then
    ok "results.csv of $N cells (several stream pages): the header, then every cell once, in order"
else
    bad "results.csv of $N cells: $CODE, $(wc -l <"$TMP/big.csv") lines"
fi
# the CSV's rows are results.json's rows
walk "/api/v1/jobs/1/results.json" rows 1000 && jq -r '.rows[] | [.idx, .cell_id, .state, .accuracy, .error] | map(. // "") | join(",")' \
    "$TMP/body" >"$TMP/json_rows"
tail -n +2 "$TMP/big.csv" | awk -F, '{print $1 "," $2 "," $3 "," $10 "," $NF}' >"$TMP/csv_rows"
cmp -s "$TMP/json_rows" "$TMP/csv_rows" && ok "results.csv rows agree with results.json" \
    || bad "results.csv vs results.json: $(diff "$TMP/json_rows" "$TMP/csv_rows" | head -5)"
CODE=$(curl -s -o "$TMP/failed.csv" -w '%{http_code}' "$BASE/api/v1/jobs/1/results.csv?state=failed")
[ "$CODE" = 200 ] && [ "$(wc -l <"$TMP/failed.csv")" -eq 13 ] && ! tail -n +2 "$TMP/failed.csv" | grep -qv ',failed,' \
    && ok "results.csv?state=failed: the 12 failed rows" || bad "results.csv?state=failed: $CODE $(wc -l <"$TMP/failed.csv") lines"
get "/api/v1/jobs/1/results.csv?state=bogus"
[ "$CODE" = 400 ] && jq -e '.error.field == "state"' "$TMP/body" >/dev/null && ok "results.csv?state=bogus: 400 naming state" \
    || bad "results.csv?state=bogus: $CODE"
get "/api/v1/jobs/99/results.csv"
[ "$CODE" = 404 ] && ok "results.csv of an unknown job: 404" || bad "results.csv of an unknown job: $CODE"
# a client that reads a little and hangs up: the daemon goes on answering
curl -s -r 0-10 --max-time 5 "$BASE/api/v1/jobs/1/results.csv" 2>/dev/null | head -c 20 >/dev/null
get "/api/v1/jobs/1/cells?limit=1"
[ "$CODE" = 200 ] && kill -0 "$PID" 2>/dev/null && ok "the daemon is alive" || bad "the daemon died: $(tail -5 "$TMP/stderr")"

kill -TERM "$PID" 2>/dev/null
for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
echo "$NAME: $PASSES passed, $FAILS failed"
[ $FAILS -eq 0 ]
