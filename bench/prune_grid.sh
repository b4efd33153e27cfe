#!/usr/bin/env bash
# bench/prune_grid.sh — the notes' pruning experiments on a trained model, as markdown tables.
#
#   1. single-component ablation: linear_out, mlp, linear_gate, linear_in, conv1d, linear_B_C
#      x rates 0.3 0.5 0.7 0.9 (unstructured, magnitude, layer-wise), accuracy change right after
#      pruning and after a short fine-tune (FT_STEPS steps, masks fixed);
#   2. per-layer sensitivity: each layer alone, each component at 0.7, same two numbers;
#   3. structured reductions alone (physically shrunk): expand 2->1, d_state 16->8, d_conv 4->2,
#      70% of MLP neurons, one block removed; inference speed-up and accuracy change;
#   4. stage 2, the notes' hybrid spec (bench/specs/stage2_hybrid.json).
# Every number comes from `prunelab prune` (its JSON report) and `prunelab eval` (samples/s of the
# realised model, median of EVALS runs, batch 64). Raw JSON goes to $OUT.
#
# Usage: bench/prune_grid.sh [MODEL] [SECTIONS]   e.g. bench/prune_grid.sh var/models/fm-small.safetensors "3 4 1 2"
# (sections run in the order given)
# Environment: FT_STEPS (default 300), FT_LR (5e-4), THREADS (2), EVALS (3), OUT (var/bench/prune_grid)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-var/models/fm-small.safetensors}
SECTIONS=${2:-"1 2 3 4"}
DS=fashion-mnist
FT_STEPS=${FT_STEPS:-300}
FT_LR=${FT_LR:-5e-4}
THREADS=${THREADS:-2}
EVALS=${EVALS:-3}
OUT=${OUT:-var/bench/prune_grid}
BIN=${PRUNELAB_BIN:-./prunelab}
mkdir -p "$OUT"
[ -f "$MODEL" ] || { echo "no model $MODEL (run ./deploy/quickstart.sh first)" >&2; exit 1; }

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
speed() { # samples/s of a model file, median of EVALS evals at batch 64
    for _ in $(seq "$EVALS"); do
        "$BIN" eval --model "$1" --dataset "$DS" --batch 64 --threads "$THREADS" | jq -r .samples_per_s
    done | median
}
# run_prune NAME SPEC_JSON -> writes $OUT/NAME.json (report) and $OUT/NAME.safetensors
run_prune() {
    printf '%s\n' "$2" >"$OUT/$1.spec.json"
    "$BIN" prune --model "$MODEL" --spec "$OUT/$1.spec.json" --dataset "$DS" --threads "$THREADS" --quiet --no-eval-before \
        --out "$OUT/$1.safetensors" >"$OUT/$1.json"
}
pts() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%+.1f", 100 * (a - b)}'; }
ft() { printf ', "finetune": {"steps": %s, "lr": %s}' "$FT_STEPS" "$FT_LR"; }

base_json=$("$BIN" eval --model "$MODEL" --dataset "$DS" --batch 64 --threads "$THREADS")
base_acc=$(jq -r .accuracy <<<"$base_json")
base_speed=$(speed "$MODEL")
printf 'model %s: test accuracy %.2f%%, %s params, %.0f samples/s (batch 64, %s threads, kernel %s)\n' \
    "$MODEL" "$(awk -v a="$base_acc" 'BEGIN{print 100*a}')" "$(jq -r .params <<<"$base_json")" "$base_speed" \
    "$THREADS" "$(jq -r .blas_kernel <<<"$base_json")"
printf 'fine-tune: %s steps, lr %s, batch 64; accuracy change in points (pruned / fine-tuned)\n\n' "$FT_STEPS" "$FT_LR"

comps=(linear_out mlp linear_gate linear_in conv1d linear_B_C)
rates=(0.3 0.5 0.7 0.9)

section1() {
    printf '### 1. Single-component ablation (unstructured, magnitude, layer-wise)\n\n'
    printf '| component |'; for r in "${rates[@]}"; do printf ' %s |' "$r"; done; printf '\n|---|'
    for _ in "${rates[@]}"; do printf -- '---|'; done; printf '\n'
    for c in "${comps[@]}"; do
        printf '| %s |' "$c"
        for r in "${rates[@]}"; do
            n="abl_${c}_${r}"
            run_prune "$n" "{\"prune\": [{\"component\": \"$c\", \"rate\": $r}]$(ft)}"
            printf ' %s / %s |' "$(pts "$(jq -r .test.pruned.accuracy "$OUT/$n.json")" "$base_acc")" \
                "$(pts "$(jq -r .test.finetuned.accuracy "$OUT/$n.json")" "$base_acc")"
        done
        printf '\n'
    done
    printf '\n'
}

section2() {
    nl=$(jq '.layers | length' <<<"$("$BIN" inspect "$MODEL")")
    printf '### 2. Per-layer sensitivity at 0.7 (unstructured, magnitude)\n\n'
    printf '| layer |'; for c in "${comps[@]}"; do printf ' %s |' "$c"; done; printf '\n|---|'
    for _ in "${comps[@]}"; do printf -- '---|'; done; printf '\n'
    for ((l = 0; l < nl; l++)); do
        printf '| %d |' "$l"
        for c in "${comps[@]}"; do
            n="sens_${l}_${c}"
            run_prune "$n" "{\"prune\": [{\"component\": \"$c\", \"rate\": 0.7, \"layers\": [$l]}]$(ft)}"
            printf ' %s / %s |' "$(pts "$(jq -r .test.pruned.accuracy "$OUT/$n.json")" "$base_acc")" \
                "$(pts "$(jq -r .test.finetuned.accuracy "$OUT/$n.json")" "$base_acc")"
        done
        printf '\n'
    done
    printf '\n'
}

section3() {
    printf '### 3. Structured reductions alone (physically shrunk)\n\n'
    printf '| reduction | spec | params | speed-up | notes expect | accuracy (pruned / fine-tuned) |\n|---|---|---|---|---|---|\n'
    while IFS='|' read -r name comp rate expect; do
        n="struct_${name// /_}"
        run_prune "$n" "{\"prune\": [{\"component\": \"$comp\", \"granularity\": \"structured\", \"rate\": $rate}]$(ft)}"
        s=$(speed "$OUT/$n.safetensors")
        printf '| %s | %s structured %s | %s | %.2fx | %s | %s / %s |\n' "$name" "$comp" "$rate" \
            "$(jq -r .params_after "$OUT/$n.json")" "$(awk -v a="$s" -v b="$base_speed" 'BEGIN{print a/b}')" "$expect" \
            "$(pts "$(jq -r .test.pruned.accuracy "$OUT/$n.json")" "$base_acc")" \
            "$(pts "$(jq -r .test.finetuned.accuracy "$OUT/$n.json")" "$base_acc")"
    done <<'ROWS'
expand 2->1|in_proj|0.5|expand 1.5: -25% params, 1-3% drop
d_state 16->8|x_proj_bc|0.5|3-5% drop (risky)
d_conv 4->2|conv1d|0.5|~-5% FLOPs, <0.5% drop
MLP 70% neurons|mlp|0.7|~-40% FLOPs, <1% drop
one block removed|layer|0.25|(24 -> 16 layers in stage 3)
ROWS
    printf '\n'
}

section4() {
    printf '### 4. Stage 2: the notes hybrid spec\n\n'
    spec=$(jq -c --argjson steps "$FT_STEPS" --argjson lr "$FT_LR" '.finetune = {steps: $steps, lr: $lr}' \
        bench/specs/stage2_hybrid.json)
    run_prune stage2 "$spec"
    s=$(speed "$OUT/stage2.safetensors")
    printf '| spec | params | FLOPs/sample | speed-up | accuracy (pruned / fine-tuned) |\n|---|---|---|---|---|\n'
    printf '| %s | %s -> %s | %.3g -> %.3g | %.2fx | %s / %s |\n\n' "$(jq -c .prune bench/specs/stage2_hybrid.json | sed 's/|/\\|/g')" \
        "$(jq -r .params_before "$OUT/stage2.json")" "$(jq -r .params_after "$OUT/stage2.json")" \
        "$(jq -r .flops_per_sample_before "$OUT/stage2.json")" "$(jq -r .flops_per_sample_after "$OUT/stage2.json")" \
        "$(awk -v a="$s" -v b="$base_speed" 'BEGIN{print a/b}')" \
        "$(pts "$(jq -r .test.pruned.accuracy "$OUT/stage2.json")" "$base_acc")" \
        "$(pts "$(jq -r .test.finetuned.accuracy "$OUT/stage2.json")" "$base_acc")"
}

for sec in $SECTIONS; do "section$sec"; done
