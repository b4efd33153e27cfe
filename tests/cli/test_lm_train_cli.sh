#!/usr/bin/env bash
# test_lm_train_cli.sh — causal LMs through train, eval and bench (and, further down, cells and
# pruning): lm-tiny on synthetic-lm learns (val loss falls below log V), eval's perplexity /
# bits agree with its loss, --max-tokens caps the windows, bench reports tokens/s, and an image
# model with a token dataset, an LM with an image dataset or a too-large data vocabulary are
# refused with a message. Needs PRUNELAB_BIN and jq; each step runs in a few seconds.
set -u

NAME=test_lm_train_cli
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/lib.sh"
DS="synthetic-lm:n=16000,vocab=32,seed=2"
T=32

check "init an lm-tiny model" "$BIN" init --task lm --preset lm-tiny --dataset "$DS" --seed 3 \
    --out "$TMP/lm.safetensors"
"$BIN" eval --model "$TMP/lm.safetensors" --dataset "$DS" --seq-len $T --threads 2 >"$TMP/e0.json"
jqcheck "eval: task, loss near log V, perplexity = exp(loss), bits = loss / ln 2" \
    '.task == "causal_lm" and (.loss - (32 | log) | fabs) < 0.3 and ((.perplexity - (.loss | exp)) | fabs) < 1e-6
     and ((.bits_per_token - .loss / (2 | log)) | fabs) < 1e-6 and .seq_len == 32 and .n == 125
     and .tokens == 125 * 31 and .tokens_per_s > 0 and (has("bits_per_byte") | not)' "$TMP/e0.json"
"$BIN" eval --model "$TMP/lm.safetensors" --dataset "$DS" --seq-len $T --max-tokens 100 --threads 2 >"$TMP/e1.json"
jqcheck "eval --max-tokens 100: ceil(100 / 32) windows" '.n == 4 and .tokens == 4 * 31' "$TMP/e1.json"

"$BIN" train --model "$TMP/lm.safetensors" --dataset "$DS" --seq-len $T --batch 16 --epochs 3 --lr 5e-3 \
    --threads 2 --no-checkpoint --report-every 0.05 --out "$TMP/lm2.safetensors" 2>"$TMP/train.err"
check "train writes the model" test -s "$TMP/lm2.safetensors"
check "train: an epoch is tokens / (B * T) steps" grep -q "500 windows of 32 tokens: an epoch is 31 steps" "$TMP/train.err"
check "train: progress lines in tokens/s" grep -q "tokens/s" "$TMP/train.err"
"$BIN" eval --model "$TMP/lm2.safetensors" --dataset "$DS" --seq-len $T --threads 2 >"$TMP/e2.json"
jqcheck "trained: val loss below log V - 1, accuracy up" --slurpfile e0 "$TMP/e0.json" \
    '.loss < (32 | log) - 1 and .accuracy > $e0[0].accuracy + 0.2' "$TMP/e2.json"

"$BIN" bench --task lm --preset tiny --vocab 64 --batch 4 --seq-len 32 --threads 2 --steps 2 --warmup-steps 1 \
    --json >"$TMP/b.json"
jqcheck "bench --task lm: tokens/s" '.task == "causal_lm" and .seq_len == 32 and .infer_tokens_per_s > 0
     and .train_tokens_per_s > 0' "$TMP/b.json"
"$BIN" bench --model "$TMP/lm2.safetensors" --against "$TMP/lm.safetensors" --batch 4 --seq-len 32 --threads 2 \
    --steps 2 --warmup-steps 1 --json >"$TMP/b2.json"
jqcheck "bench an LM model --against: speed-up" '.task == "causal_lm" and .speedup > 0' "$TMP/b2.json"

check "init an image model" "$BIN" init --preset tiny --dataset synthetic:n=64 --out "$TMP/img.safetensors"
must_fail "an image model with a token dataset" "image classifier but dataset synthetic-lm.* is a token dataset" \
    "$BIN" eval --model "$TMP/img.safetensors" --dataset "$DS" --seq-len $T
must_fail "an LM with an image dataset" "causal LM .* is an image dataset" \
    "$BIN" train --model "$TMP/lm.safetensors" --dataset synthetic:n=64 --out "$TMP/x"
must_fail "data vocabulary above the model's" "vocabulary 100 but the model's vocabulary is 32" \
    "$BIN" eval --model "$TMP/lm.safetensors" --dataset "synthetic-lm:n=4000,vocab=100" --seq-len $T
must_fail "a split shorter than one window" "fewer than one window of seq_len 4096" \
    "$BIN" eval --model "$TMP/lm.safetensors" --dataset "$DS" --seq-len 4096

finish
