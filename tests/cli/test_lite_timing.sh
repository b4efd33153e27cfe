#!/usr/bin/env bash
# test_lite_timing.sh — `prunelab lite` and a lite cell take their speed-up the same way: both
# time source and lite model in pairs with measure_latency_pair (engine/measure.h) and report the
# median of the per-pair ratios, with the same latency_timing object (method, batch, warm-up;
# the pair count within the default range). Timings are noisy: only structure and consistency are
# asserted, never a speed. Needs PRUNELAB_BIN and jq.
set -u
NAME=test_lite_timing
. "$(dirname "$0")/lib.sh"
DS="synthetic:n=128,classes=4"
T=2

"$BIN" init --preset tiny --seed 7 --dataset "$DS" --out "$TMP/m.safetensors" 2>/dev/null
SPEC='{"target": {"expand": 1, "d_conv": 2, "d_state": 4, "mlp_ratio": 1, "n_layers": 1}}'
printf '%s' "$SPEC" >"$TMP/lite.json"

check "prunelab lite runs" bash -c "'$BIN' lite --model '$TMP/m.safetensors' --spec '$TMP/lite.json' --dataset '$DS' \
    --threads $T --quiet --out '$TMP/cli.safetensors' >'$TMP/cli.out' 2>'$TMP/cli.err'"
printf '{"recipe": "lite", "model": "%s", "dataset": "%s", "threads": %d, "lite": %s}' \
    "$TMP/m.safetensors" "$DS" "$T" "$SPEC" >"$TMP/cell.spec"
"$BIN" cell <"$TMP/cell.spec" >"$TMP/cell.jsonl" 2>"$TMP/cell.err"
tail -n 1 "$TMP/cell.jsonl" | jq '.metrics // {}' >"$TMP/cell.json" 2>/dev/null || echo '{}' >"$TMP/cell.json"

# the timing recipe: paired passes, median per-pair ratio, batch 64 after 2 warm-up pairs, 5..15 pairs
TIMING='(.method == "paired") and (.speedup == "median of per-pair ratios") and .batch == 64 and .warm == 2
    and .pairs >= 5 and .pairs <= 15'
jqcheck "cli lite: paired timing, median per-pair speed-up" "(.latency_timing | $TIMING) and .latency_batch == 64
    and .speedup > 0 and .source.latency_ms_per_batch > 0 and .lite.latency_ms_per_batch > 0" "$TMP/cli.out"
jqcheck "lite cell: paired timing, median per-pair speed-up" "(.latency_timing | $TIMING) and .latency_batch == 64
    and .speedup > 0 and .baseline_latency_ms_per_batch > 0 and .latency_ms_per_batch > 0" "$TMP/cell.json"
jqcheck "cli and cell: the same timing recipe (all but the pair count)" -n --slurpfile a "$TMP/cli.out" \
    --slurpfile b "$TMP/cell.json" '($a[0].latency_timing | del(.pairs)) == ($b[0].latency_timing | del(.pairs))'
# the same models: the lite checkpoint of the CLI has the cell's dims and parameter count
jqcheck "cli and cell: the same lite model dims and params" -n --slurpfile a "$TMP/cli.out" --slurpfile b "$TMP/cell.json" '
    $a[0].lite.params == $b[0].params and $a[0].source.params == $b[0].params_baseline
    and ([$a[0].lite.layers[] | {E, N, K, M}] == [$b[0].layers[] | {E, N, K, M}])'
# samples/s follow from the paired medians in both reports
jqcheck "cli: samples/s = batch / paired median" '
    ((.lite.samples_per_s - 1000 * 64 / .lite.latency_ms_per_batch) | fabs) < 1e-6 * .lite.samples_per_s
    and ((.source.samples_per_s - 1000 * 64 / .source.latency_ms_per_batch) | fabs) < 1e-6 * .source.samples_per_s' \
    "$TMP/cli.out"
jqcheck "cell: samples/s = batch / paired median" '
    ((.samples_per_s - 1000 * 64 / .latency_ms_per_batch) | fabs) < 1e-6 * .samples_per_s' "$TMP/cell.json"
finish
