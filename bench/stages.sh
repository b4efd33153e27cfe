#!/usr/bin/env bash
# bench/stages.sh — the notes' RSST stages 1 and 3 on a trained model (stage 2 is section 4 of
# bench/prune_grid.sh).
#   stage 1: unstructured 0.7 on out_proj, mlp and gate: plain magnitude pruning + 1500 fine-tune
#            steps (bench/specs/stage1_plain.json) against RSST, 600 regularisation steps with
#            lambda(t) = (t/T)^2 then 900 fine-tune steps (bench/specs/stage1_rsst.json): the same
#            training budget.
#   stage 3: lite models (expand 1, d_conv 2, d_state 8, mlp_ratio 1; 3 and 2 of 4 blocks), two
#            epochs of fine-tuning (bench/specs/stage3_lite_L*.json); speed-up measured by
#            `prunelab lite` (median latency of a batch of 64, source and lite in one run).
# Usage: bench/stages.sh [MODEL] [STAGES]     (defaults: var/models/fm-small.safetensors "1 3")
# Environment: THREADS (2), OUT (var/bench/stages)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-var/models/fm-small.safetensors}
STAGES=${2:-"1 3"}
THREADS=${THREADS:-2}
OUT=${OUT:-var/bench/stages}
BIN=${PRUNELAB_BIN:-./prunelab}
DS=fashion-mnist
mkdir -p "$OUT"
[ -f "$MODEL" ] || { echo "no model $MODEL (run ./deploy/quickstart.sh first)" >&2; exit 1; }
base=$("$BIN" eval --model "$MODEL" --dataset "$DS" --threads "$THREADS" | jq -r .accuracy)
pct() { awk -v a="$1" 'BEGIN {printf "%.2f", 100 * a}'; }
pts() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%+.2f", 100 * (a - b)}'; }
printf 'model %s: test accuracy %s%%\n\n' "$MODEL" "$(pct "$base")"

if [[ " $STAGES " == *" 1 "* ]]; then
    "$BIN" prune --model "$MODEL" --spec bench/specs/stage1_plain.json --dataset "$DS" --threads "$THREADS" \
        --quiet --out "$OUT/stage1_plain.safetensors" >"$OUT/stage1_plain.json"
    "$BIN" rsst --model "$MODEL" --spec bench/specs/stage1_rsst.json --dataset "$DS" --threads "$THREADS" \
        --quiet --out "$OUT/stage1_rsst.safetensors" >"$OUT/stage1_rsst.json"
    p="$OUT/stage1_plain.json" r="$OUT/stage1_rsst.json"
    printf '### Stage 1: unstructured 0.7 on out_proj, mlp, gate (same training budget)\n\n'
    printf '| method | test accuracy | change (points) | non-zero params | overall sparsity |\n|---|---|---|---|---|\n'
    printf '| magnitude + 1500 fine-tune steps | %s%% | %s | %s | %.3f |\n' "$(pct "$(jq -r .test.finetuned.accuracy "$p")")" \
        "$(pts "$(jq -r .test.finetuned.accuracy "$p")" "$base")" "$(jq -r .nonzero_after "$p")" \
        "$(jq -r .sparsity.overall.sparsity "$p")"
    printf '| RSST (600 steps, lambda (t/T)^2) + 900 fine-tune steps | %s%% | %s | %s | %.3f |\n' \
        "$(pct "$(jq -r .final.accuracy "$r")")" "$(pts "$(jq -r .final.accuracy "$r")" "$base")" \
        "$(jq -r .nonzero_after "$r")" "$(jq -r '.series[-1].sparsity' "$r")"
    printf '\nRSST: norm of the targeted weights %.3f -> %.3f during regularisation (other weights %.3f -> %.3f); accuracy right after removal %s%% (magnitude alone: %s%%).\n\n' \
        "$(jq -r '.series[0].target_norm_before' "$r")" "$(jq -r '.series[0].target_norm_after' "$r")" \
        "$(jq -r '.series[0].other_norm_before' "$r")" "$(jq -r '.series[0].other_norm_after' "$r")" \
        "$(pct "$(jq -r '.series[0].pruned.accuracy' "$r")")" "$(pct "$(jq -r .test.pruned.accuracy "$p")")"
fi

if [[ " $STAGES " == *" 3 "* ]]; then
    printf '### Stage 3: lite models (expand 1, d_conv 2, d_state 8, mlp_ratio 1), 2 epochs of fine-tuning\n\n'
    printf '| blocks | kept (original index) | params | FLOPs/sample | speed-up | accuracy after transfer | after fine-tune | change (points) |\n|---|---|---|---|---|---|---|---|\n'
    for L in 3 2; do
        r="$OUT/stage3_L$L.json"
        "$BIN" lite --model "$MODEL" --spec "bench/specs/stage3_lite_L$L.json" --dataset "$DS" --threads "$THREADS" \
            --quiet --out "$OUT/stage3_L$L.safetensors" >"$r"
        printf '| %s of %s | %s | %s | %.3g | %.2fx | %s%% | %s%% | %s |\n' "$L" "$(jq -r .source.n_layers "$r")" \
            "$(jq -c '[.lite.layers[].index]' "$r")" "$(jq -r .lite.params "$r")" "$(jq -r .lite.flops_per_sample "$r")" \
            "$(jq -r .speedup "$r")" "$(pct "$(jq -r .transfer.test.accuracy "$r")")" \
            "$(pct "$(jq -r .finetune.test.accuracy "$r")")" "$(pts "$(jq -r .finetune.test.accuracy "$r")" "$base")"
    done
    printf '\n'
fi
