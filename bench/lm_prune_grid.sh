#!/usr/bin/env bash
# bench/lm_prune_grid.sh — the notes' single-component ablation on a byte-level LM (bench/lm_brown.sh),
# as markdown tables: out_proj (linear_out), gate (linear_gate), in_proj (linear_in), conv1d,
# x_proj_bc (linear_B_C) x rates 0.3 0.5 0.7 0.9, unstructured, magnitude, layer-wise; validation
# bits per byte (and perplexity per byte) right after pruning and after a short fine-tune (FT_STEPS
# steps of FT_BATCH windows, masks fixed). The LM presets have no MLP (HF MambaForCausalLM has none),
# so the image grid's mlp row is absent here. Same pattern as bench/prune_grid.sh: every number comes
# from `prunelab prune` (its JSON report, raw files in $OUT).
# Evaluation is capped at the first MAX_TOKENS tokens of the validation split (in-order windows of
# SEQ_LEN), the dense baseline included, so the grid stays within minutes.
#
# Usage: bench/lm_prune_grid.sh [MODEL]   (default var/bench/lm_brown/lm-small.safetensors)
# Environment: MAX_TOKENS (131072), FT_STEPS (40), FT_BATCH (8), FT_LR (3e-4), SEQ_LEN (256), THREADS (2),
#              COMPS ("linear_out linear_gate linear_in conv1d linear_B_C"), RATES ("0.3 0.5 0.7 0.9"),
#              OUT (var/bench/lm_prune_grid)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-var/bench/lm_brown/lm-small.safetensors}
DS=text:var/datasets/brown/brown.txt
MAX_TOKENS=${MAX_TOKENS:-131072}
FT_STEPS=${FT_STEPS:-40}
FT_BATCH=${FT_BATCH:-8}
FT_LR=${FT_LR:-3e-4}
SEQ_LEN=${SEQ_LEN:-256}
THREADS=${THREADS:-2}
OUT=${OUT:-var/bench/lm_prune_grid}
BIN=${PRUNELAB_BIN:-./prunelab}
read -r -a comps <<<"${COMPS:-linear_out linear_gate linear_in conv1d linear_B_C}"
read -r -a rates <<<"${RATES:-0.3 0.5 0.7 0.9}"
mkdir -p "$OUT"
[ -f "$MODEL" ] || { echo "no model $MODEL (run bench/lm_brown.sh first)" >&2; exit 1; }
declare -A alias=([linear_out]=out_proj [linear_gate]=gate [linear_in]=in_proj [conv1d]=conv1d [linear_B_C]=x_proj_bc)

t0=$(date +%s)
base=$("$BIN" eval --model "$MODEL" --dataset "$DS" --seq-len "$SEQ_LEN" --max-tokens "$MAX_TOKENS" --batch 64 \
    --threads "$THREADS")
printf '%s\n' "$base" >"$OUT/base.json"
for c in "${comps[@]}"; do
    for r in "${rates[@]}"; do
        n="abl_${c}_${r}"
        printf '{"prune": [{"component": "%s", "rate": %s}], "finetune": {"steps": %s, "lr": %s}}\n' \
            "$c" "$r" "$FT_STEPS" "$FT_LR" >"$OUT/$n.spec.json"
        "$BIN" prune --model "$MODEL" --spec "$OUT/$n.spec.json" --dataset "$DS" --seq-len "$SEQ_LEN" \
            --max-tokens "$MAX_TOKENS" --batch 64 --finetune-batch "$FT_BATCH" --threads "$THREADS" --quiet \
            --no-eval-before --no-latency --out "$OUT/$n.safetensors" >"$OUT/$n.json"
    done
done
t1=$(date +%s)

printf 'model %s: %s params; val bits per byte %.3f, perplexity %.3f (first %s val tokens, seq %s)\n' "$MODEL" \
    "$(jq -r .params <<<"$base")" "$(jq -r .bits_per_byte <<<"$base")" "$(jq -r .perplexity <<<"$base")" \
    "$(jq -r .tokens <<<"$base")" "$SEQ_LEN"
printf 'fine-tune: %s steps of %s windows of %s bytes, lr %s; grid took %d s on %s threads\n\n' "$FT_STEPS" \
    "$FT_BATCH" "$SEQ_LEN" "$FT_LR" $((t1 - t0)) "$THREADS"
table() { # table TITLE JQ_FIELD FORMAT
    printf '%s\n\n| component |' "$1"
    for r in "${rates[@]}"; do printf ' %s |' "$r"; done
    printf '\n|---|'
    for _ in "${rates[@]}"; do printf -- '---|'; done
    printf '\n'
    for c in "${comps[@]}"; do
        printf '| %s (%s) |' "${alias[$c]:-$c}" "$c"
        for r in "${rates[@]}"; do
            # shellcheck disable=SC2059 # the cell format is the caller's
            printf " $3 / $3 |" "$(jq -r ".test.pruned.$2" "$OUT/abl_${c}_${r}.json")" \
                "$(jq -r ".test.finetuned.$2" "$OUT/abl_${c}_${r}.json")"
        done
        printf '\n'
    done
    printf '| mlp | absent in the LM |'
    for _ in "${rates[@]:1}"; do printf ' |'; done
    printf '\n\n'
}
table "Val bits per byte, pruned / fine-tuned (dense $(jq -r '.bits_per_byte * 1000 | round / 1000' <<<"$base"))" \
    bits_per_byte '%.3f'
table "Val perplexity per byte, pruned / fine-tuned (dense $(jq -r '.perplexity * 1000 | round / 1000' <<<"$base"))" \
    perplexity '%.3f'
