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

# --- cells ------------------------------------------------------------------------------------
# lmcell NAME SPEC-BODY: a cell on the trained LM; result metrics in $TMP/NAME.json
lmcell() {
    echo "{\"model\": \"$TMP/lm2.safetensors\", \"dataset\": \"$DS\", \"seq_len\": $T, \"threads\": 2, $2}" |
        "$BIN" cell >"$TMP/$1.jsonl" 2>"$TMP/$1.err"
    tail -1 "$TMP/$1.jsonl" | jq '.metrics // .' >"$TMP/$1.json"
}
echo "{\"recipe\": \"train\", \"dataset\": \"$DS\", \"preset\": \"tiny\", \"seed\": 3, \"epochs\": 2, \"batch\": 16,
       \"lr\": 0.005, \"seq_len\": $T, \"threads\": 2, \"out\": \"$TMP/c1.safetensors\"}" | "$BIN" cell >"$TMP/c1.jsonl" 2>"$TMP/c1.err"
tail -1 "$TMP/c1.jsonl" | jq .metrics >"$TMP/c1.json"
jqcheck "train cell creates an lm-tiny LM and trains it" '.task == "causal_lm" and .metric == "perplexity"
     and .perplexity < .baseline_perplexity and (.layers | length) == 2 and (.layers[0].M == 0)
     and .train.seq_len == 32 and .train.tokens_per_s > 0' "$TMP/c1.json"
lmcell abl '"recipe": "ablation", "component": "out_proj", "rate": 0.5, "granularity": "structured",
    "eval": {"max_tokens": 1000}'
jqcheck "ablation cell: the contract's LM metrics" '.task == "causal_lm" and .metric == "perplexity"
     and ((.perplexity - (.loss | exp)) | fabs) < 1e-6 and ((.bits_per_token - .loss / (2 | log)) | fabs) < 1e-6
     and ((.delta_perplexity - (.perplexity - .baseline_perplexity)) | fabs) < 1e-6
     and ((.baseline_perplexity - (.baseline_loss | exp)) | fabs) < 1e-6 and (.delta_accuracy | type) == "number"
     and .eval.n == 32 and .eval.tokens == 32 * 31 and .eval.seq_len == 32 and .tokens_per_s > 0
     and .latency_seq_len == 32 and (has("bits_per_byte") | not)' "$TMP/abl.json"
lmcell sens '"recipe": "sensitivity", "layer": 1, "components": ["dt"], "rate": 0.5, "granularity": "structured",
    "criterion": "taylor", "calibration": {"samples": 16}'
jqcheck "sensitivity cell (taylor on token windows)" '.task == "causal_lm" and .layers[1].R == 1' "$TMP/sens.json"
lmcell joint '"recipe": "joint", "config": {"in_proj": 0.5, "x_proj_bc": 0.25}, "granularity": "structured",
    "criterion": "wanda", "finetune": {"steps": 5}'
jqcheck "joint cell, fine-tuned: pruned perplexity too" '.layers[0].E == 32 and .layers[0].N == 6
     and (.pruned.perplexity | type) == "number" and (.pruned.delta_perplexity | type) == "number"' "$TMP/joint.json"
lmcell lite '"recipe": "lite", "lite": {"target": {"n_layers": 1, "d_state": 4, "d_conv": 2}}'
jqcheck "lite cell: n_layers, d_state, d_conv" '(.layers | length) == 1 and .layers[0].N == 4 and .layers[0].K == 2
     and .speedup > 0' "$TMP/lite.json"
lmcell rsst '"recipe": "rsst", "rsst": {"prune": [{"component": "out_proj", "rate": 0.5}], "rounds": 1,
    "finetune": {"steps": 5}}'
jqcheck "rsst cell" '.task == "causal_lm" and (.perplexity | type) == "number"' "$TMP/rsst.json"
lmcell bad '"recipe": "ablation", "component": "mlp", "rate": 0.5'
jqcheck "ablation of mlp on an HF-shaped LM: bad_spec naming the component" '.code == "bad_spec"
     and (.message | test("component: the model has no mlp"))' "$TMP/bad.json"
echo "{\"recipe\": \"ablation\", \"model\": \"$TMP/img.safetensors\", \"dataset\": \"$DS\", \"component\": \"out_proj\",
       \"rate\": 0.5}" | "$BIN" cell 2>/dev/null | tail -1 >"$TMP/imgtok.json"
jqcheck "an image model in a cell with a token dataset: bad_spec naming dataset" '.code == "bad_spec"
     and (.message | test("^dataset: the model is an image classifier"))' "$TMP/imgtok.json"

# --- components, prune, lite on LMs ------------------------------------------------------------
"$BIN" components --model "$TMP/lm2.safetensors" >"$TMP/comp.json"
jqcheck "components of an LM: mlp absent, embeddings / tied lm_head not prunable" '.task == "causal_lm"
     and ([.total[] | select(.component == "mlp")][0].present == false)
     and ([.other[] | select(.tensor == "backbone.embeddings.weight")][0].prunable == false)
     and ([.other[] | select(.tensor == "lm_head.weight")][0].reason | test("tied"))' "$TMP/comp.json"
echo '{"prune": [{"component": "in_proj", "granularity": "structured", "rate": 0.5, "criterion": "activation"},
       {"component": "layer", "granularity": "structured", "rate": 0.5}]}' >"$TMP/ps.json"
"$BIN" prune --model "$TMP/lm2.safetensors" --spec "$TMP/ps.json" --dataset "$DS" --seq-len $T --threads 2 \
    --latency-reps 2 --out "$TMP/pr/" >"$TMP/pr.json"
jqcheck "prune an LM (activation on windows, a layer dropped): perplexity reported" '(.layers_after | length) == 1
     and .layers_after[0].E == 32 and (.test.pruned.perplexity | type) == "number"' "$TMP/pr.json"
check "the pruned LM is an HF directory" test -s "$TMP/pr/config.json"
"$BIN" eval --model "$TMP/pr" --dataset "$DS" --seq-len $T --threads 2 >"$TMP/pre.json"
jqcheck "the shrunk LM reloads with the same loss" --slurpfile p "$TMP/pr.json" \
    '((.loss - $p[0].test.pruned.loss) | fabs) < 1e-6' "$TMP/pre.json"
echo '{"target": {"n_layers": 1, "d_state": 4, "expand": 1, "d_conv": 2}}' >"$TMP/ls.json"
"$BIN" lite --model "$TMP/lm2.safetensors" --spec "$TMP/ls.json" --dataset "$DS" --seq-len $T --threads 2 --quiet \
    --latency-reps 2 --out "$TMP/lite/" >"$TMP/lite_cli.json"
jqcheck "lite on an LM writes an HF config" '.num_hidden_layers == 1 and .state_size == 4 and .conv_kernel == 2
     and .expand == 1 and .architectures == ["MambaForCausalLM"]' "$TMP/lite/config.json"

finish
