#!/usr/bin/env bash
# test_cell.sh — end-to-end checks of `prunelab cell` (engine/cell.h, DESIGN.md section 6) on the
# synthetic dataset with the tiny preset:
#   - the protocol: every stdout line is JSON, progress lines (phase, fraction and overall in
#     [0, 1], overall never decreasing) come first, then exactly one result and exit 0;
#   - train: a cell creates and trains a model (the same weights as `prunelab init` + a train cell
#     from that checkpoint), writes it, reports a per-epoch series;
#   - ablation / sensitivity / joint: delta = accuracy - baseline, the pruned component's sparsity
#     matches the rate, untouched layers stay dense, a given baseline is used as is, structured
#     selections shrink the model (or are masked, with the realised model shrunk), fine-tuning keeps
#     the zeros, and the written model evaluates to the reported accuracy;
#   - rsst (per-round series) and lite (target dims) cells;
#   - bad specs give one error event with code bad_spec naming the field, exit 2;
#   - SIGTERM or SIGUSR2 during fine-tuning (even when the parent ignores it) ends the cell promptly
#     without an output model or temp file.
# Needs PRUNELAB_BIN (the built binary) and jq; PRUNELAB_SRCDIR is accepted for symmetry.
set -u

BIN=${PRUNELAB_BIN:-./prunelab}
if [ ! -x "$BIN" ]; then echo "test_cell: PRUNELAB_BIN=$BIN is not an executable" >&2; exit 1; fi
command -v jq >/dev/null || { echo "test_cell: jq is required (apt-get install jq)" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/prunelab-cell.XXXXXX")
KILLPID=
cleanup() {
    if [ -n "$KILLPID" ]; then kill "$KILLPID" 2>/dev/null; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
DS="synthetic:n=256,classes=4"
FAILS=0
PASSES=0

ok() { PASSES=$((PASSES + 1)); echo "ok   - $1"; }
bad() { FAILS=$((FAILS + 1)); echo "FAIL - $1"; }
jqcheck() { # jqcheck DESCRIPTION JQ-FILTER FILE (jq -e on the file)
    if jq -e "$2" "$3" >/dev/null 2>&1; then ok "$1"; else bad "$1 ($(head -c 400 "$3"))"; fi
}

# cell NAME SPEC: runs a cell; stdout in $TMP/NAME.jsonl, the result metrics in $TMP/NAME.json,
# exit status in $TMP/NAME.rc; checks the protocol when the cell should succeed.
cell() {
    local name=$1 spec=$2
    printf '%s' "$spec" >"$TMP/$name.spec"
    "$BIN" cell <"$TMP/$name.spec" >"$TMP/$name.jsonl" 2>"$TMP/$name.err"
    echo $? >"$TMP/$name.rc"
    tail -n 1 "$TMP/$name.jsonl" | jq '.metrics // {}' >"$TMP/$name.json" 2>/dev/null || echo '{}' >"$TMP/$name.json"
}

# protocol NAME: every line JSON; progress lines first, then exactly one result, exit 0.
protocol() {
    local name=$1 f="$TMP/$1.jsonl"
    if [ "$(cat "$TMP/$name.rc")" != 0 ]; then
        bad "$name: exit $(cat "$TMP/$name.rc"): $(tail -n 1 "$f") $(tail -n 3 "$TMP/$name.err")"
        return
    fi
    if ! jq -c . "$f" >/dev/null 2>&1; then bad "$name: a stdout line is not JSON"; return; fi
    if jq -s -e '
        (length >= 2)
        and ([.[] | select(.event == "result")] | length) == 1
        and (.[-1].event == "result")
        and all(.[:-1][]; .event == "progress" and (.phase | type) == "string"
                and .fraction >= 0 and .fraction <= 1 and .overall >= 0 and .overall <= 1)
        and ([.[:-1][] | .overall] as $o | [range(1; $o | length) | $o[.] >= $o[. - 1]] | all)
        and (.[-1].metrics | type) == "object"' "$f" >/dev/null; then
        ok "$name: JSON lines, progress then exactly one result, exit 0"
    else
        bad "$name: protocol ($(jq -c '{event, phase, fraction, overall}' "$f" | head -c 600))"
    fi
}

# refused NAME FIELD SPEC: one error event, code bad_spec, the message starts with FIELD, exit 2.
refused() {
    local name=$1 field=$2 spec=$3 f="$TMP/$1.jsonl"
    cell "$name" "$spec"
    local rc
    rc=$(cat "$TMP/$name.rc")
    if [ "$rc" = 2 ] && jq -c . "$f" >/dev/null 2>&1 && jq -s -e --arg fld "$field" '
        ([.[] | select(.event == "error")] | length) == 1 and (.[-1].event == "error")
        and .[-1].code == "bad_spec" and (.[-1].message | startswith($fld))
        and ([.[] | select(.event == "result")] | length) == 0' "$f" >/dev/null; then
        ok "bad spec refused: $name ($(jq -r 'select(.event == "error") | .message' "$f" | head -c 100))"
    else
        bad "bad spec $name: exit $rc, output $(head -c 400 "$f")"
    fi
}

if "$BIN" cell --help >"$TMP/help" 2>&1 && grep -q "usage: prunelab cell" "$TMP/help"; then
    ok "cell --help"
else
    bad "cell --help"
fi

# --- train ----------------------------------------------------------------------------------
cell train '{"recipe": "train", "dataset": "'"$DS"'", "preset": "tiny", "seed": 5, "epochs": 3, "batch": 32,
  "lr": 3e-3, "threads": 2, "out": "'"$TMP"'/m.safetensors"}'
protocol train
M="$TMP/m.safetensors"
if [ -s "$M" ]; then ok "train: the model is written"; else bad "train: no model at $M"; fi
jqcheck "train: accuracy above the untrained baseline, delta = accuracy - baseline" '
    .recipe == "train" and .accuracy > .baseline_accuracy and .baseline_source == "measured"
    and ((.delta_accuracy - (.accuracy - .baseline_accuracy)) | fabs) < 1e-9
    and ((.delta_loss - (.loss - .baseline_loss)) | fabs) < 1e-9' "$TMP/train.json"
jqcheck "train: 3 epochs of 8 steps, a series per epoch" '
    .train.steps == 24 and .train.epochs_done == 3 and (.series | length) == 3
    and ([.series[].epoch] == [1, 2, 3]) and (.series[2].train_loss < .series[0].train_loss)' "$TMP/train.json"
jqcheck "train: params, flops, latency, rss, kernel" '
    .params > 0 and .params_nonzero > 0 and .params == .params_baseline and .flops_per_sample > 0
    and .latency_ms_per_batch > 0 and .samples_per_s > 0 and .latency_batch == 64 and .peak_rss_kb > 0
    and .wall_s > 0 and (.blas_kernel | type) == "string" and .eval.split == "test" and .eval.n == 64
    and (.layers | length) == 2 and .out != null' "$TMP/train.json"
"$BIN" init --preset tiny --seed 5 --dataset "$DS" --out "$TMP/init.safetensors" 2>/dev/null
cell train2 '{"recipe": "train", "model": "'"$TMP"'/init.safetensors", "dataset": "'"$DS"'", "epochs": 3,
  "batch": 32, "lr": 3e-3, "threads": 2, "seed": 5, "out": "'"$TMP"'/m2.safetensors"}'
protocol train2
if jq -e -n --slurpfile a "$TMP/train.json" --slurpfile b "$TMP/train2.json" \
    '$a[0].loss == $b[0].loss and $a[0].baseline_loss == $b[0].baseline_loss' >/dev/null; then
    ok "train: a cell from 'prunelab init' with the same seed trains to the same loss"
else
    bad "train: created vs init checkpoint differ ($(jq -c .loss "$TMP/train.json") vs $(jq -c .loss "$TMP/train2.json"))"
fi

# --- ablation -------------------------------------------------------------------------------
cell abl '{"recipe": "ablation", "model": "'"$M"'", "dataset": "'"$DS"'", "component": "linear_out",
  "rate": 0.5, "threads": 2}'
protocol abl
jqcheck "ablation: delta = accuracy - baseline; out_proj sparsity 0.5; shapes kept" '
    .recipe == "ablation" and ((.delta_accuracy - (.accuracy - .baseline_accuracy)) | fabs) < 1e-9
    and ((.sparsity.components.out_proj.sparsity - 0.5) | fabs) < 0.01
    and .sparsity.components.mlp.sparsity == 0 and .params == .params_baseline
    and .params_nonzero < .params and .params_nonzero == .sparsity.overall.nonzero
    and (.entries | length) == 1 and .entries[0].component == "out_proj" and .out == null' "$TMP/abl.json"
jqcheck "ablation: latency timed in pairs with the baseline (both medians and the pair ratio reported)" '
    .latency_ms_per_batch > 0 and .baseline_latency_ms_per_batch > 0 and .speedup > 0
    and ((.samples_per_s - 1000 * .latency_batch / .latency_ms_per_batch) | fabs) < 1e-6 * .samples_per_s' "$TMP/abl.json"
if grep -q '"phase":"latency"' "$TMP/abl.jsonl" && ! grep -q '"phase":"baseline_latency"' "$TMP/abl.jsonl"; then
    ok "ablation: one latency phase (the baseline is timed inside it), no separate baseline_latency phase"
else
    bad "ablation: latency phases wrong: $(grep -o '"phase":"[a-z_]*latency"' "$TMP/abl.jsonl" | sort -u | tr '\n' ' ')"
fi
jqcheck "ablation: every reported number is finite (no NaN, nulls only where unknown)" '
    [.accuracy, .loss, .baseline_accuracy, .baseline_loss, .delta_accuracy, .delta_loss, .params,
     .params_nonzero, .flops_per_sample, .latency_ms_per_batch, .samples_per_s, .peak_rss_kb, .wall_s]
    | all(type == "number")' "$TMP/abl.json"
BASE_ACC=$(jq .baseline_accuracy "$TMP/abl.json")
cell ablg '{"recipe": "ablation", "model": "'"$M"'", "dataset": "'"$DS"'", "component": "mlp",
  "rate": 0.7, "scope": "global", "baseline": {"accuracy": 0.5, "loss": 2.0}, "eval": {"max_samples": 40},
  "threads": 2}'
protocol ablg
jqcheck "ablation: a given baseline is used as is; eval.max_samples limits the split" '
    .baseline_source == "given" and .baseline_accuracy == 0.5 and .baseline_loss == 2
    and ((.delta_accuracy - (.accuracy - 0.5)) | fabs) < 1e-9 and .eval.n == 40
    and ((.sparsity.components.mlp.sparsity - 0.7) | fabs) < 0.01' "$TMP/ablg.json"

# --- sensitivity ----------------------------------------------------------------------------
cell sens '{"recipe": "sensitivity", "model": "'"$M"'", "dataset": "'"$DS"'", "layer": 1,
  "components": ["mlp", "linear_gate"], "rate": 0.7, "threads": 2}'
protocol sens
jqcheck "sensitivity: only layer 1 is pruned, each component at 0.7" '
    .recipe == "sensitivity" and ((.sparsity.layers[1].components.mlp.sparsity - 0.7) | fabs) < 0.01
    and ((.sparsity.layers[1].components.gate.sparsity - 0.7) | fabs) < 0.01
    and .sparsity.layers[1].components.in_proj.sparsity == 0
    and .sparsity.layers[0].components.mlp.sparsity == 0 and .sparsity.layers[0].components.gate.sparsity == 0
    and ((.delta_accuracy - (.accuracy - .baseline_accuracy)) | fabs) < 1e-9
    and (.baseline_accuracy == '"$BASE_ACC"')' "$TMP/sens.json"

# --- joint ----------------------------------------------------------------------------------
cell joint '{"recipe": "joint", "model": "'"$M"'", "dataset": "'"$DS"'", "config": {"linear_out": 0.3,
  "mlp": 0.6}, "finetune": {"steps": 12, "lr": 1e-3, "batch": 32}, "threads": 2, "out": "'"$TMP"'/j.safetensors"}'
protocol joint
jqcheck "joint: both components at their rates after fine-tuning (masks fixed)" '
    .recipe == "joint" and ((.sparsity.components.out_proj.sparsity - 0.3) | fabs) < 0.01
    and ((.sparsity.components.mlp.sparsity - 0.6) | fabs) < 0.01 and .finetune.steps == 12
    and (.pruned.accuracy | type) == "number" and (.entries | length) == 2' "$TMP/joint.json"
"$BIN" eval --model "$TMP/j.safetensors" --dataset "$DS" --threads 2 >"$TMP/jeval.json" 2>/dev/null
if jq -e -n --slurpfile a "$TMP/joint.json" --slurpfile b "$TMP/jeval.json" \
    '$a[0].accuracy == $b[0].accuracy and (($a[0].loss - $b[0].loss) | fabs) < 1e-5
     and $a[0].params_nonzero == $b[0].nonzero_params' >/dev/null; then
    ok "joint: the written model evaluates to the reported accuracy, loss and non-zeros"
else
    bad "joint: written model differs ($(jq -c '{accuracy, loss}' "$TMP/jeval.json"))"
fi
cell jshrink '{"recipe": "joint", "model": "'"$M"'", "dataset": "'"$DS"'", "config": {"mlp": 0.5,
  "in_proj": 0.5, "conv1d": 0.5}, "granularity": "structured", "threads": 2}'
protocol jshrink
jqcheck "joint structured (shrink): E 64->32, M 64->32, K 4->2, fewer params and FLOPs" '
    ([.layers[] | [.E, .M, .K]] == [[32, 32, 2], [32, 32, 2]]) and .params < .params_baseline
    and .params == .params_realised and .flops_per_sample < .baseline_flops_per_sample
    and (.speedup | type) == "number"' "$TMP/jshrink.json"
cell jmask '{"recipe": "joint", "model": "'"$M"'", "dataset": "'"$DS"'", "config": {"mlp": 0.5},
  "granularity": "structured", "apply": "mask", "finetune": {"steps": 10}, "threads": 2}'
protocol jmask
jqcheck "joint structured (mask): full shape, zeros kept through fine-tuning, realised model shrunk" '
    .params == .params_baseline and .params_realised < .params and ([.layers[].M] == [32, 32])
    and .sparsity.components.mlp.sparsity == 0.5 and .finetune.steps == 10' "$TMP/jmask.json"

# --- rsst and lite --------------------------------------------------------------------------
cell rsst '{"recipe": "rsst", "model": "'"$M"'", "dataset": "'"$DS"'", "threads": 2,
  "rsst": {"prune": [{"component": "out_proj", "rate": 0.5}], "rsst": {"reg_steps": 10}, "rounds": 2},
  "finetune": {"steps": 8, "batch": 32}}'
protocol rsst
jqcheck "rsst: a series of 2 rounds; out_proj reaches 1 - 0.5^2 = 0.75" '
    .recipe == "rsst" and (.series | length) == 2 and ([.series[].round] == [1, 2])
    and ((.series[1].component_sparsity - 0.75) | fabs) < 0.01
    and ((.sparsity.components.out_proj.sparsity - 0.75) | fabs) < 0.01
    and ((.delta_accuracy - (.accuracy - .baseline_accuracy)) | fabs) < 1e-9' "$TMP/rsst.json"
cell lite '{"recipe": "lite", "model": "'"$M"'", "dataset": "'"$DS"'", "threads": 2, "out": "'"$TMP"'/lite.safetensors",
  "lite": {"target": {"expand": 1, "d_conv": 2, "d_state": 4, "mlp_ratio": 1, "n_layers": 1}},
  "finetune": {"steps": 10, "batch": 32}}'
protocol lite
jqcheck "lite: one block with the target dims, fewer params, fine-tuned" '
    .recipe == "lite" and (.layers | length) == 1 and .layers[0].E == 32 and .layers[0].K == 2
    and .layers[0].N == 4 and .layers[0].M == 32 and .params < .params_baseline
    and .finetune.steps == 10 and (.pruned.accuracy | type) == "number"' "$TMP/lite.json"
if [ -s "$TMP/lite.safetensors" ]; then ok "lite: the model is written"; else bad "lite: no model written"; fi

# --- bad specs ------------------------------------------------------------------------------
A='"recipe": "ablation", "dataset": "'"$DS"'"'
refused malformed "spec" '{"recipe": "ablation", "model": '
refused not-object "spec" '[1, 2]'
refused unknown-key "bogus" '{'"$A"', "model": "'"$M"'", "component": "mlp", "rate": 0.5, "bogus": 1}'
refused rate-one "rate" '{'"$A"', "model": "'"$M"'", "component": "mlp", "rate": 1.0}'
refused rate-negative "rate" '{'"$A"', "model": "'"$M"'", "component": "mlp", "rate": -0.1}'
refused rate-string "rate" '{'"$A"', "model": "'"$M"'", "component": "mlp", "rate": "nan"}'
refused unknown-component "component" '{'"$A"', "model": "'"$M"'", "component": "linear_q", "rate": 0.5}'
refused unknown-criterion "criterion" '{'"$A"', "model": "'"$M"'", "component": "mlp", "rate": 0.5, "criterion": "x"}'
refused unknown-recipe "recipe" '{"recipe": "grid", "model": "'"$M"'", "dataset": "'"$DS"'"}'
refused missing-model "model" '{'"$A"', "model": "'"$TMP"'/absent.safetensors", "component": "mlp", "rate": 0.5}'
refused directory-model "model" '{'"$A"', "model": "'"$TMP"'", "component": "mlp", "rate": 0.5}'
refused no-model "model" '{'"$A"', "component": "mlp", "rate": 0.5}'
refused unknown-dataset "dataset" '{"recipe": "ablation", "dataset": "imagenet", "model": "'"$M"'", "component": "mlp", "rate": 0.5}'
refused structured-D "component" '{'"$A"', "model": "'"$M"'", "component": "D", "rate": 0.5, "granularity": "structured"}'
refused train-no-out "out" '{"recipe": "train", "dataset": "'"$DS"'", "preset": "tiny"}'
refused joint-repeat "config.linear_out" '{"recipe": "joint", "dataset": "'"$DS"'", "model": "'"$M"'", "config": {"out_proj": 0.2, "linear_out": 0.3}}'
refused layer-range "layer" '{"recipe": "sensitivity", "dataset": "'"$DS"'", "model": "'"$M"'", "layer": 9, "components": "mlp", "rate": 0.5}'
refused finetune-key "finetune.epochs" '{'"$A"', "model": "'"$M"'", "component": "mlp", "rate": 0.5, "finetune": {"epochs": 2}}'
refused lite-target "lite.target.d_state" '{"recipe": "lite", "dataset": "'"$DS"'", "model": "'"$M"'", "lite": {"target": {"d_state": 64}}}'
refused rsst-key "rsst." '{"recipe": "rsst", "dataset": "'"$DS"'", "model": "'"$M"'", "rsst": {"prune": [{"component": "mlp", "rate": 0.5}], "round": 2}}'
printf 'not a model' >"$TMP/junk.safetensors"
cell junk '{'"$A"', "model": "'"$TMP"'/junk.safetensors", "component": "mlp", "rate": 0.5}'
if [ "$(cat "$TMP/junk.rc")" = 2 ] && jq -s -e '.[-1].event == "error" and .[-1].code == "bad_model"
        and (.[-1].message | startswith("model"))' "$TMP/junk.jsonl" >/dev/null; then
    ok "an unreadable checkpoint gives one bad_model error, exit 2"
else
    bad "junk model: exit $(cat "$TMP/junk.rc"), $(head -c 300 "$TMP/junk.jsonl")"
fi

# --- SIGTERM / SIGUSR2 mid-fine-tune ---------------------------------------------------------
# USR2 is what a Slurm batch script forwards before preemption (sbatch --signal=B:USR2@N). The
# parent leaves each signal ignored (inherited SIG_IGN, as under `trap '' USR2`): the cell must
# still end on it.
for SIG in TERM USR2; do
printf '%s' '{"recipe": "ablation", "model": "'"$M"'", "dataset": "'"$DS"'", "component": "mlp", "rate": 0.5,
  "finetune": {"steps": 1000000, "batch": 32}, "threads": 2, "out": "'"$TMP"'/killed.safetensors"}' >"$TMP/kill.spec"
: >"$TMP/kill.jsonl"
(trap '' "$SIG"; exec "$BIN" cell <"$TMP/kill.spec" >"$TMP/kill.jsonl" 2>"$TMP/kill.err") &
KILLPID=$!
seen=0
for _ in $(seq 1 300); do
    if grep -q '"phase":"finetune"' "$TMP/kill.jsonl" 2>/dev/null; then seen=1; break; fi
    sleep 0.1
done
if [ $seen = 1 ]; then
    sleep 0.3
    kill -"$SIG" "$KILLPID"
    gone=0
    for _ in $(seq 1 100); do
        if ! kill -0 "$KILLPID" 2>/dev/null; then gone=1; break; fi
        sleep 0.1
    done
    [ $gone = 1 ] || kill -KILL "$KILLPID" 2>/dev/null
    wait "$KILLPID" 2>/dev/null
    st=$?
    KILLPID=
    if [ $gone = 1 ] && [ "$st" != 0 ]; then ok "SIG$SIG mid-fine-tune: the cell ends (status $st)"; else bad "SIG$SIG: still running or exit 0 ($st)"; fi
    if [ ! -e "$TMP/killed.safetensors" ] && ! ls "$TMP"/killed.safetensors.tmp.* >/dev/null 2>&1; then
        ok "SIG$SIG: no output model, no temp file"
    else
        bad "SIG$SIG: left $(ls "$TMP" | grep killed)"
    fi
    if jq -c . "$TMP/kill.jsonl" >/dev/null 2>&1 && ! grep -q '"event":"result"' "$TMP/kill.jsonl"; then
        ok "SIG$SIG: the lines written before are JSON and no result was sent"
    else
        bad "SIG$SIG: output $(tail -n 2 "$TMP/kill.jsonl")"
    fi
else
    bad "SIG$SIG: never saw the finetune phase ($(tail -n 2 "$TMP/kill.jsonl"))"
fi
done

echo "test_cell: $PASSES passed, $FAILS failed"
[ "$FAILS" = 0 ]
