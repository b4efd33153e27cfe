#!/usr/bin/env bash
# test_recipe_agree.sh — `prunelab prune` and `prunelab rsst` run the recipe a cell runs
# (prune_run, rsst_run, the fine-tuning schedule, measure_eval, measure_latency_into): for the
# same model, spec and seed, the CLI report and the cell's metrics agree on every deterministic
# number (params, nonzero, realised params and dims, accuracy and loss after pruning and after
# fine-tuning) and take their speed-up with the same timing recipe. A structured selection
# applied as masks is timed through its shrunk twin in both. Timings are noisy: only their
# structure is asserted. Needs PRUNELAB_BIN and jq.
set -u
NAME=test_recipe_agree
. "$(dirname "$0")/lib.sh"
DS="synthetic:n=128,classes=4"
T=2

"$BIN" init --preset tiny --seed 7 --dataset "$DS" --out "$TMP/m.safetensors" 2>/dev/null
M="$TMP/m.safetensors"

cell() { # cell NAME JSON -> $TMP/NAME.json (the result's metrics, {} when none)
    printf '%s' "$2" | "$BIN" cell >"$TMP/$1.jsonl" 2>"$TMP/$1.err"
    tail -n 1 "$TMP/$1.jsonl" | jq '.metrics // {}' >"$TMP/$1.json" 2>/dev/null || echo '{}' >"$TMP/$1.json"
}
TIMING='(.method == "paired") and (.speedup == "median of per-pair ratios") and .batch == 64 and .warm == 2'
close() { echo "((($1) - ($2)) | fabs) <= 1e-9 + 1e-6 * (($2) | fabs)"; }

# ---- prune: a structured selection applied as masks, then fine-tuning with the masks fixed
ENTRY='{"component": "mlp", "granularity": "structured", "rate": 0.5, "apply": "mask"}'
printf '{"prune": [%s], "finetune": {"steps": 6, "lr": 0.002}, "seed": 3}' "$ENTRY" >"$TMP/prune.json"
check "prunelab prune runs" bash -c "'$BIN' prune --model '$M' --spec '$TMP/prune.json' --dataset '$DS' \
    --threads $T --quiet --finetune-batch 32 --out '$TMP/p.safetensors' >'$TMP/cli_p.out' 2>'$TMP/cli_p.err'"
cell abl '{"recipe": "ablation", "model": "'"$M"'", "dataset": "'"$DS"'", "threads": '$T', "seed": 3,
  "component": "mlp", "granularity": "structured", "rate": 0.5, "apply": "mask",
  "finetune": {"steps": 6, "lr": 0.002, "batch": 32}}'
jqcheck "prune: the cell ran" '.recipe == "ablation"' "$TMP/abl.json"
jqcheck "prune cli and cell: same params, nonzero, realised params and dims" -n --slurpfile a "$TMP/cli_p.out" \
    --slurpfile b "$TMP/abl.json" '$a[0] as $c | $b[0] as $k |
    $c.params_after == $k.params and $c.nonzero_after == $k.params_nonzero
    and $c.params_realised == $k.params_realised and $c.params_realised < $c.params_after
    and $c.params_before == $k.params_baseline and $c.layers_after == $k.layers'
jqcheck "prune cli and cell: same accuracy and loss after pruning and after fine-tuning" -n \
    --slurpfile a "$TMP/cli_p.out" --slurpfile b "$TMP/abl.json" '$a[0].test as $c | $b[0] as $k |
    '"$(close '$c.pruned.accuracy' '$k.pruned.accuracy')"' and '"$(close '$c.pruned.loss' '$k.pruned.loss')"'
    and '"$(close '$c.finetuned.accuracy' '$k.accuracy')"' and '"$(close '$c.finetuned.loss' '$k.loss')"'
    and '"$(close '$c.before.accuracy' '$k.baseline_accuracy')"
jqcheck "prune cli and cell: same entries report" -n --slurpfile a "$TMP/cli_p.out" --slurpfile b "$TMP/abl.json" \
    '$a[0].entries == $b[0].entries'
jqcheck "prune cli: paired timing under a cell's names" "(.latency_timing | $TIMING) and .latency_batch == 64
    and .speedup > 0 and .latency_ms_per_batch > 0 and .baseline_latency_ms_per_batch > 0
    and ((.samples_per_s - 1000 * 64 / .latency_ms_per_batch) | fabs) < 1e-6 * .samples_per_s" "$TMP/cli_p.out"
jqcheck "prune cli and cell: the same timing recipe (all but the pair count)" -n --slurpfile a "$TMP/cli_p.out" \
    --slurpfile b "$TMP/abl.json" '($a[0].latency_timing | del(.pairs)) == ($b[0].latency_timing | del(.pairs))'
check "prune --no-latency: no timing in the report" bash -c "'$BIN' prune --model '$M' --spec '$TMP/prune.json' \
    --dataset '$DS' --threads $T --quiet --no-latency --out '$TMP/p2.safetensors' | jq -e 'has(\"speedup\") | not' >/dev/null"

# ---- rsst: two rounds on out_proj
RS='{"prune": [{"component": "out_proj", "rate": 0.5}], "rsst": {"reg_steps": 6}, "rounds": 2,
  "finetune": {"steps": 4, "lr": 0.001}, "batch": 32, "seed": 5}'
printf '%s' "$RS" >"$TMP/rsst.json"
check "prunelab rsst runs" bash -c "'$BIN' rsst --model '$M' --spec '$TMP/rsst.json' --dataset '$DS' \
    --threads $T --quiet --out '$TMP/r.safetensors' >'$TMP/cli_r.out' 2>'$TMP/cli_r.err'"
cell rsst '{"recipe": "rsst", "model": "'"$M"'", "dataset": "'"$DS"'", "threads": '$T', "rsst": '"$RS"'}'
jqcheck "rsst: the cell ran" '.recipe == "rsst"' "$TMP/rsst.json"
jqcheck "rsst cli and cell: the same series, params and dims" -n --slurpfile a "$TMP/cli_r.out" \
    --slurpfile b "$TMP/rsst.json" '$a[0] as $c | $b[0] as $k |
    ([$c.series[] | {round, sparsity, params, nonzero, pruned, finetuned}] == [$k.series[] | {round, sparsity, params, nonzero, pruned, finetuned}])
    and (($c.series | length) == 2) and $c.layers_after == $k.layers
    and '"$(close '$c.series[-1].finetuned.accuracy' '$k.accuracy')"
jqcheck "rsst cli: paired timing under a cell's names" "(.latency_timing | $TIMING) and .speedup > 0
    and .latency_ms_per_batch > 0 and .baseline_latency_ms_per_batch > 0" "$TMP/cli_r.out"
finish
