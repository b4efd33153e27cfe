#!/usr/bin/env bash
# tests/integration/test_lm_jobs.sh — causal LM jobs run through prunelabd to completion: a train
# job makes an lm-tiny model on synthetic-lm (seq_len 32, a few steps), then an ablation (2
# components x 2 rates), a sensitivity (all layers, one component), a joint, an rsst and a lite
# job on that model, and an ablation on a tokens:DIR dataset an admin registered (train.bin /
# val.bin written here). Checks the LM contract's metric keys in the cells, results.json and
# results.csv (task causal_lm, metric perplexity, perplexity = exp(loss), delta_perplexity =
# perplexity - baseline_perplexity), the job-level baseline (perplexity and loss, measured once
# and handed to the later cells), rsst's per-round perplexity series, and that the memory estimate
# of an LM cell (read from a refusal under a tiny max_cell_memory) is within reason of the peak
# RSS the cell measured.
# Starts prunelabd on 127.0.0.1 port 0 (twice, on one data dir) and stops it by pid.
# Env: PRUNELABD_BIN, PRUNELAB_BIN. Needs curl, jq.
set -u
NAME=test_lm_jobs
BIN=${PRUNELABD_BIN:-./prunelabd}
ENGINE=${PRUNELAB_BIN:-./prunelab}
IT_TERM_FIRST=1
. "$(dirname "$0")/lib.sh"

finish() {
    echo "$NAME: $PASSES passed, $FAILS failed"
    [ $FAILS -eq 0 ]
    exit $?
}
# req METHOD PATH [curl args]: status in $CODE, body in $TMP/body
req() {
    local m=$1 p=$2
    shift 2
    CODE=$(curl -s -o "$TMP/body" -w '%{http_code}' -X "$m" "$@" "$BASE$p")
}
jqcheck() { # jqcheck DESCRIPTION [jq options] FILTER (on $TMP/body)
    local d=$1
    shift
    if jq -e "$@" "$TMP/body" >/dev/null 2>&1; then ok "$d"; else bad "$d ($CODE: $(head -c 600 "$TMP/body"))"; fi
}
# submit DESCRIPTION JSON: POST as alice; the job id in $JOB (empty on failure)
submit() {
    req POST /api/v1/jobs "${A[@]}" -H 'Content-Type: application/json' --data-binary "$2"
    JOB=
    if [ "$CODE" = 202 ]; then
        JOB=$(jq -r .id "$TMP/body")
        ok "$1: 202 ($(jq -r .cells "$TMP/body") cells)"
    else
        bad "$1: $CODE $(head -c 400 "$TMP/body")"
    fi
}
# wait_done ID SECONDS: long-poll until the job is finished; ok when it is done
wait_done() {
    local end=$((SECONDS + $2)) v=0 state=
    while [ $SECONDS -lt $end ]; do
        kill -0 "$PID" 2>/dev/null || { bad "job $1: the daemon died: $(tail -5 "$TMP/stderr")"; return 1; }
        curl -s -o "$TMP/job" "$BASE/api/v1/jobs/$1?wait=5&since=$v"
        state=$(jq -r .state "$TMP/job" 2>/dev/null)
        v=$(jq -r '.version // 0' "$TMP/job" 2>/dev/null)
        case "$state" in done | failed | cancelled) break ;; esac
    done
    if [ "$state" = done ]; then
        ok "job $1 ($(jq -r .type "$TMP/job")) done"
        return 0
    fi
    curl -s "$BASE/api/v1/jobs/$1/cells" >"$TMP/cells.err.json"
    bad "job $1 ended '$state': $(head -c 400 "$TMP/job") cells: $(jq -c '[.cells[] | .error]' "$TMP/cells.err.json" 2>/dev/null | head -c 600)"
    return 1
}
# The contract's LM metrics of a cell's result (jq, on .)
LMKEYS='.task == "causal_lm" and .metric == "perplexity"
    and (.loss | type) == "number" and ((.perplexity - (.loss | exp)) | fabs) < 1e-6 * .perplexity
    and ((.baseline_perplexity - (.baseline_loss | exp)) | fabs) < 1e-6 * .baseline_perplexity
    and ((.delta_perplexity - (.perplexity - .baseline_perplexity)) | fabs) < 1e-6 * .perplexity
    and ((.delta_loss - (.loss - .baseline_loss)) | fabs) < 1e-9
    and ((.bits_per_token - .loss / (2 | log)) | fabs) < 1e-6
    and (.accuracy | type) == "number" and (.baseline_accuracy | type) == "number"
    and (.delta_accuracy | type) == "number" and .tokens_per_s > 0
    and .eval.seq_len == 32 and .eval.n >= 1 and .eval.tokens == .eval.n * 31
    and (has("bits_per_byte") | not) and .peak_rss_kb > 0'
# ... and of a results.json row (the columns results.csv has)
ROWKEYS='.task == "causal_lm" and .metric == "perplexity" and .state == "done"
    and ((.perplexity - (.loss | exp)) | fabs) < 1e-6 * .perplexity
    and ((.delta_perplexity - (.perplexity - .baseline_perplexity)) | fabs) < 1e-6 * .perplexity
    and ((.bits_per_token - .loss / (2 | log)) | fabs) < 1e-6 and .bits_per_byte == null
    and (.delta_loss | type) == "number" and (.accuracy | type) == "number" and .tokens_per_s > 0'

DATA=$TMP/var
mkdir -p "$DATA" "$TMP/corpus"
ALICE=$(new_token alice) || exit 1
ROOT=$(new_token root --admin) || exit 1
A=(-H "Authorization: Bearer $ALICE")
R=(-H "Authorization: Bearer $ROOT")
# a token corpus outside the data dir: nanoGPT uint16 ids < 64, a repeating pattern
perl -e 'print pack("v*", map { ($_ * 7 + int($_ / 5)) % 64 } 0 .. 4095)' >"$TMP/corpus/train.bin"
perl -e 'print pack("v*", map { ($_ * 7 + int($_ / 5)) % 64 } 0 .. 1023)' >"$TMP/corpus/val.bin"
echo 'threads_per_cell = 1' >"$TMP/conf"

start_daemon --data-dir "$DATA" --workers 2 --config "$TMP/conf"

DS='synthetic-lm:n=8192,vocab=64,seed=3'
EVAL='"seq_len":32,"eval":{"max_tokens":512}'
# ------------------------------------------------------------------ train
submit "train job: lm-tiny on synthetic-lm" \
    "{\"type\":\"train\",\"name\":\"lm0\",\"dataset\":\"$DS\",\"preset\":\"tiny\",\"epochs\":1,\"batch\":16,\"max_steps\":30,\"lr\":0.01,$EVAL}"
TRAIN=$JOB
[ -n "$TRAIN" ] && wait_done "$TRAIN" 120 || finish
req GET /api/v1/models/lm0
jqcheck "the train job registered an LM: task causal_lm, vocab 64, tied, its dataset" \
    ".task == \"causal_lm\" and .vocab == 64 and .tied == true and .dataset == \"$DS\" and .info.config.d_model == 32 and .info.config.n_layers == 2"
req GET "/api/v1/jobs/$TRAIN/results.json"
jqcheck "train result: LM metrics, trained below the init's perplexity" \
    ".metric == \"perplexity\" and (.rows[0] | .task == \"causal_lm\" and .perplexity < .baseline_perplexity and .perplexity > 1)"

# ------------------------------------------------------------------ the pruning jobs
M="\"model\":\"lm0\",\"dataset\":\"$DS\",$EVAL"
submit "ablation 2 components x 2 rates" "{\"type\":\"ablation\",$M,\"components\":[\"in_proj\",\"out_proj\"],\"rates\":[0.25,0.75]}"
ABL=$JOB
submit "sensitivity: all layers, one component" "{\"type\":\"sensitivity\",$M,\"layers\":\"all\",\"components\":[\"out_proj\"],\"rate\":0.5}"
SENS=$JOB
submit "joint" "{\"type\":\"joint\",$M,\"configs\":[{\"in_proj\":0.5,\"x_proj_bc\":0.25}],\"granularity\":\"structured\"}"
JOINT=$JOB
submit "rsst (2 rounds)" "{\"type\":\"rsst\",$M,\"spec\":{\"prune\":[{\"component\":\"out_proj\",\"rate\":0.5}],\"rounds\":2,\"rsst\":{\"reg_steps\":20},\"finetune\":{\"steps\":4}}}"
RSST=$JOB
submit "lite" "{\"type\":\"lite\",$M,\"spec\":{\"target\":{\"n_layers\":1,\"d_state\":4}}}"
LITE=$JOB
for id in $ABL $SENS $JOINT $RSST $LITE; do wait_done "$id" 180; done

# ------------------------------------------------------------------ results
req GET "/api/v1/jobs/$ABL/results.json"
cp "$TMP/body" "$TMP/abl.json"
jqcheck "ablation results.json: metric perplexity, 4 rows with the contract's LM metrics" \
    ".metric == \"perplexity\" and (.rows | length) == 4 and all(.rows[]; $ROWKEYS)"
jqcheck "ablation rows: component x rate in grid order" \
    '[.rows[] | [.component, .rate]] == [["in_proj",0.25],["in_proj",0.75],["out_proj",0.25],["out_proj",0.75]]'
jqcheck "ablation: pruning 75% of in_proj is worse than 25% (delta_perplexity)" \
    '.rows[1].delta_perplexity > .rows[0].delta_perplexity'
jqcheck "ablation: every row has one baseline perplexity" '[.rows[].baseline_perplexity] | unique | length == 1'
jqcheck "the job baseline carries the LM's perplexity and loss (= the rows' baseline)" \
    '(.baseline.perplexity | type) == "number" and ((.baseline.perplexity - (.baseline.loss | exp)) | fabs) < 1e-6 * .baseline.perplexity
     and ((.baseline.perplexity - .rows[0].baseline_perplexity) | fabs) < 1e-6 * .baseline.perplexity'
req GET "/api/v1/jobs/$ABL/cells"
cp "$TMP/body" "$TMP/ablcells.json"
jqcheck "ablation cells: result metrics of the contract, seq_len 32 in their spec" \
    ".cells | length == 4 and all(.[]; (.result | $LMKEYS) and .spec.seq_len == 32)"
# 2 workers: the first two cells start before any baseline exists; the later ones are given it
jqcheck "at most two cells measured the baseline, the others were given it (the same numbers)" \
    '([.cells[].result.baseline_source] | sort) as $s | ($s | map(select(. == "given")) | length) >= 2
     and ($s | map(select(. == "measured")) | length) <= 2 and ([.cells[].result.baseline_loss] | unique | length) == 1'
jqcheck "results.json rows = the cells' results (perplexity, delta_perplexity, tokens_per_s)" \
    --slurpfile r "$TMP/abl.json" '[.cells[].result | [.perplexity, .delta_perplexity, .tokens_per_s]]
     == [$r[0].rows[] | [.perplexity, .delta_perplexity, .tokens_per_s]]'
req GET "/api/v1/jobs/$ABL/results.csv"
H=$(head -1 "$TMP/body")
col() { echo "$H" | tr , '\n' | grep -nx "$1" | cut -d: -f1; }
csv_ok=1
[ -n "$(col perplexity)" ] && [ -n "$(col task)" ] || { csv_ok=0; bad "results.csv header: $H"; }
for i in 0 1 2 3; do
    [ $csv_ok = 1 ] || break
    ROW=$(sed -n "$((i + 2))p" "$TMP/body")
    for k in perplexity delta_perplexity baseline_perplexity loss tokens_per_s; do
        c=$(col $k)
        v=$(echo "$ROW" | cut -d, -f"$c")
        jq -e --argjson v "${v:-null}" ".rows[$i].$k as \$w | (\$v - \$w | fabs) <= 1e-6 * (\$w | fabs) + 1e-9" \
            "$TMP/abl.json" >/dev/null 2>&1 || { csv_ok=0; bad "results.csv row $i $k: '$v'"; }
    done
    [ "$(echo "$ROW" | cut -d, -f"$(col task)")" = causal_lm ] && [ "$(echo "$ROW" | cut -d, -f"$(col metric)")" = perplexity ] ||
        { csv_ok=0; bad "results.csv row $i task/metric: $ROW"; }
done
[ $csv_ok = 1 ] && ok "results.csv: task, metric, perplexity, deltas and tokens_per_s of every row = results.json"

req GET "/api/v1/jobs/$SENS/results.json"
jqcheck "sensitivity: one row per layer (2), LM metrics" \
    ".metric == \"perplexity\" and ([.rows[].layer] == [0,1]) and all(.rows[]; $ROWKEYS)"
req GET "/api/v1/jobs/$JOINT/results.json"
jqcheck "joint: LM metrics, a config of two components" \
    ".metric == \"perplexity\" and (.rows | length) == 1 and (.rows[0] | $ROWKEYS)"
req GET "/api/v1/jobs/$RSST/cells"
jqcheck "rsst cell: LM metrics and a perplexity per round in its series" \
    "(.cells[0].result | $LMKEYS) and (.cells[0].result.series | length) == 2
     and all(.cells[0].result.series[]; (.finetuned.perplexity - (.finetuned.loss | exp) | fabs) < 1e-6 * .finetuned.perplexity and .pruned.perplexity > 1)"
req GET "/api/v1/jobs/$RSST/results.json"
jqcheck "rsst results.json: metric perplexity" ".metric == \"perplexity\" and (.rows[0] | $ROWKEYS)"
req GET "/api/v1/jobs/$LITE/results.json"
jqcheck "lite: a 1-layer model, LM metrics" \
    ".metric == \"perplexity\" and (.rows[0] | $ROWKEYS) and (.rows[0].params < .rows[0].params_baseline)"

# ------------------------------------------------------------------ a dataset an admin registers
req POST /api/v1/datasets "${R[@]}" --data-binary "{\"name\":\"tokens:pattern\",\"path\":\"$TMP/corpus\"}"
[ "$CODE" = 201 ] && ok "an admin registers tokens:pattern (201)" || bad "register: $CODE $(head -c 300 "$TMP/body")"
submit "an ablation on the registered dataset" \
    "{\"type\":\"ablation\",\"model\":\"lm0\",\"dataset\":\"tokens:pattern\",$EVAL,\"components\":[\"dt\"],\"rates\":[0.5]}"
REG=$JOB
wait_done "$REG" 120
req GET "/api/v1/jobs/$REG/cells"
jqcheck "the registered dataset's cell: LM metrics on its 1024 val ids (32 windows of 32, capped at 16 by max_tokens 512)" \
    "(.cells[0].result | $LMKEYS) and .cells[0].result.eval.n == 16 and .cells[0].spec.dataset == \"tokens:pattern\""
kill -0 "$PID" 2>/dev/null && ok "the daemon is still up" || bad "the daemon died: $(tail -5 "$TMP/stderr")"

# ------------------------------------------------------------------ memory estimate vs peak RSS
# A cell whose memory is its fine-tuning activations (batch 256 windows of 32 tokens) runs; its
# estimate is then read from the refusal of the same job under the smallest max_cell_memory.
BIG="{\"type\":\"ablation\",$M,\"components\":[\"in_proj\"],\"rates\":[0.25],\"finetune\":{\"steps\":2,\"batch\":256}}"
submit "an ablation fine-tuned at batch 256" "$BIG"
MEM=$JOB
wait_done "$MEM" 120
req GET "/api/v1/jobs/$MEM/cells"
PEAK_KB=$(jq '.cells[0].result.peak_rss_kb // 0' "$TMP/body")
kill -TERM "$PID" 2>/dev/null
wait "$PID" 2>/dev/null
printf 'threads_per_cell = 1\nmax_cell_memory = 64M\n' >"$TMP/conf"
start_daemon --data-dir "$DATA" --workers 2 --config "$TMP/conf"
req POST "/api/v1/jobs?dry_run=1" "${A[@]}" --data-binary "$BIG"
EST_MIB=$(jq -r '.error.message // ""' "$TMP/body" | sed -n 's/.*would need about \([0-9]*\) MiB.*/\1/p')
echo "#    LM cell at finetune batch 256 x seq_len 32: estimate ${EST_MIB:-?} MiB, measured peak RSS $((PEAK_KB / 1024)) MiB"
if [ "$CODE" = 400 ] && [ -n "$EST_MIB" ] && [ "$PEAK_KB" -gt 0 ] &&
    [ $((EST_MIB * 1024)) -ge "$PEAK_KB" ] && [ $((EST_MIB * 1024)) -le $((PEAK_KB * 3 + 64 * 1024)) ]; then
    ok "the LM cell's memory estimate ($EST_MIB MiB) covers its peak RSS and is at most 3 x it + 64 MiB"
else
    bad "memory estimate $EST_MIB MiB vs peak RSS $PEAK_KB KiB ($CODE $(head -c 300 "$TMP/body"))"
fi
kill -0 "$PID" 2>/dev/null && ok "the second daemon is up" || bad "the second daemon died: $(tail -5 "$TMP/stderr")"
finish
