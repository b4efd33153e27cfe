#!/usr/bin/env bash
# test_prune_cli.sh — end-to-end checks of `prunelab components` and `prunelab prune` on the
# synthetic dataset, tiny preset: the components table (aliases, flags, shares that add up);
# unstructured pruning with exact per-layer counts and a sparsity report that agrees with the
# parameter counts; --masks-out then eval / train --masks keep the zeros (and training without
# the mask does not); structured pruning applied as a mask and by shrinking evaluate to the same
# accuracy and loss, the shrunk checkpoint is smaller and prunes again; fine-tuning keeps pruned
# weights at zero; bad specs and mismatched masks are refused with a message naming the problem.
# Needs PRUNELAB_BIN (the built binary) and jq; PRUNELAB_SRCDIR is accepted for symmetry.
set -u

NAME=test_prune_cli
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/lib.sh"
DS="synthetic:n=256,classes=4"
T=2

for c in components prune; do
    if "$BIN" "$c" --help >"$TMP/help" 2>&1 && grep -q "usage: prunelab $c" "$TMP/help"; then
        ok "$c --help"
    else
        bad "$c --help"
    fi
done

# --- a small trained model ------------------------------------------------------------------
"$BIN" init --preset tiny --seed 5 --dataset "$DS" --out "$TMP/m0.safetensors" 2>/dev/null
check "train a tiny model" "$BIN" train --model "$TMP/m0.safetensors" --dataset "$DS" --epochs 3 --batch 32 \
    --lr 3e-3 --threads "$T" --quiet --no-checkpoint --out "$TMP/m.safetensors"
M="$TMP/m.safetensors"

# --- components -----------------------------------------------------------------------------
"$BIN" components --model "$M" >"$TMP/comp.json"
jqcheck "components: every component with its alias, in total" '[.total[] | "\(.component)=\(.alias)"] ==
    ["out_proj=linear_out","mlp=mlp","gate=linear_gate","in_proj=linear_in","conv1d=conv1d",
     "x_proj_bc=linear_B_C","dt=linear_delta","A_log=A","D=D","layer=layer"]' "$TMP/comp.json"
jqcheck "components: only A_log and D are not recommended" \
    '[.total[] | select(.not_recommended) | .component] == ["A_log","D"]' "$TMP/comp.json"
jqcheck "components: the nine components add up to the blocks, blocks + rest to the model" \
    '([.total[] | select(.component != "layer") | .params] | add) == .layer_params
     and .layer_params + .other_params == .params and .params > 0' "$TMP/comp.json"
jqcheck "components: shares are params / model params" \
    '. as $r | all(.total[]; (.share - .params / $r.params | fabs) < 1e-5)' "$TMP/comp.json"
jqcheck "components: per layer, units and tensors (tiny: d 32, E 64, N 8, K 4, M 64)" \
    '(.layers | length) == 2 and (.layers[0].components | map({(.component): .units}) | add) ==
     {"out_proj":32,"mlp":64,"gate":64,"in_proj":64,"conv1d":4,"x_proj_bc":8,"dt":2,"A_log":0,"D":0,"layer":1}
     and (.layers[0].components[] | select(.component == "gate") | .tensors[0].rows) == [64,128]' "$TMP/comp.json"
must_fail "components: missing model file" "cannot load model" "$BIN" components --model "$TMP/none.safetensors"

# --- unstructured ---------------------------------------------------------------------------
cat >"$TMP/u.json" <<'EOF'
{"prune": [{"component": "linear_out", "rate": 0.7},
           {"component": "mlp", "rate": 0.5, "scope": "global"},
           {"component": "linear_gate", "rate": 0.35, "layers": [1]}]}
EOF
if "$BIN" prune --model "$M" --spec "$TMP/u.json" --out "$TMP/u.safetensors" --masks-out "$TMP/k.safetensors" \
    --dataset "$DS" --threads "$T" >"$TMP/u.out.json"; then
    ok "prune unstructured with --masks-out"
else
    bad "prune unstructured with --masks-out"
fi
jqcheck "linear_out 0.7: round(0.7 * 2048) = 1434 zeros in each layer" \
    '[.entries[] | select(.component == "out_proj") | .layers[] | .zeros_after] == [1434, 1434]' "$TMP/u.out.json"
jqcheck "gate 0.35 on layer 1 only: round(0.35 * 2048) = 717 zeros there, none in layer 0" \
    '(.entries[] | select(.component == "gate") | .layers) == [{"layer":1,"weights":2048,"zeros_before":0,"zeros_after":717}]
     and .sparsity.layers[0].components.gate.zeros == 0' "$TMP/u.out.json"
jqcheck "mlp global 0.5: exactly half of all fc1/fc2 weights" \
    '(.entries[] | select(.component == "mlp") | .zeros == 4096 and .weights == 8192)
     and .sparsity.components.mlp.zeros == 4096' "$TMP/u.out.json"
jqcheck "sparsity agrees with the parameter counts" \
    '.sparsity.overall.zeros == .params_after - .nonzero_after and .params_after == .params_before
     and .sparsity.overall.zeros >= 1434 * 2 + 717 + 4096' "$TMP/u.out.json"
jqcheck "report has test accuracy before and after" \
    '.test.before.accuracy > 0.5 and (.test.pruned.accuracy | type) == "number"' "$TMP/u.out.json"
NZ=$(jq '.nonzero_after' "$TMP/u.out.json")

"$BIN" eval --model "$TMP/u.safetensors" --dataset "$DS" --threads "$T" >"$TMP/e1.json"
"$BIN" eval --model "$M" --dataset "$DS" --threads "$T" --masks "$TMP/k.safetensors" >"$TMP/e2.json"
jqcheck "eval --masks on the unpruned model equals the pruned checkpoint" --slurpfile a "$TMP/e1.json" \
    '.accuracy == $a[0].accuracy and ((.loss - $a[0].loss) | fabs) < 1e-6 and .nonzero_params == $a[0].nonzero_params' \
    "$TMP/e2.json"
jqcheck "pruned checkpoint has the reported non-zero count" ".nonzero_params == $NZ" "$TMP/e1.json"

TR=(--dataset "$DS" --epochs 1 --batch 32 --lr 3e-3 --threads "$T" --quiet --no-checkpoint)
check "train --masks" "$BIN" train --model "$TMP/u.safetensors" "${TR[@]}" --masks "$TMP/k.safetensors" --out "$TMP/t1.safetensors"
check "train without masks" "$BIN" train --model "$TMP/u.safetensors" "${TR[@]}" --out "$TMP/t2.safetensors"
"$BIN" eval --model "$TMP/t1.safetensors" --dataset "$DS" --threads "$T" >"$TMP/e3.json"
"$BIN" eval --model "$TMP/t2.safetensors" --dataset "$DS" --threads "$T" >"$TMP/e4.json"
jqcheck "training with --masks keeps the pruned weights at zero" ".nonzero_params == $NZ" "$TMP/e3.json"
jqcheck "training without the mask revives them (the check above can fail)" ".nonzero_params > $NZ" "$TMP/e4.json"

# --- structured: mask vs shrink -------------------------------------------------------------
spec_s() { # spec_s APPLY
    cat <<EOF
{"prune": [{"component": "linear_out", "granularity": "structured", "rate": 0.5, "apply": "$1"},
           {"component": "mlp", "granularity": "structured", "rate": 0.7, "apply": "$1"},
           {"component": "linear_gate", "rate": 0.6},
           {"component": "linear_in", "granularity": "structured", "rate": 0.25, "apply": "$1"},
           {"component": "conv1d", "granularity": "structured", "rate": 0.5, "apply": "$1"},
           {"component": "linear_B_C", "granularity": "structured", "rate": 0.5, "apply": "$1", "criterion": "l2"}]}
EOF
}
spec_s mask >"$TMP/sm.json"
spec_s shrink >"$TMP/ss.json"
"$BIN" prune --model "$M" --spec "$TMP/sm.json" --out "$TMP/sm.safetensors" --dataset "$DS" --threads "$T" >"$TMP/sm.out.json"
"$BIN" prune --model "$M" --spec "$TMP/ss.json" --out "$TMP/ss.safetensors" --dataset "$DS" --threads "$T" >"$TMP/ss.out.json"
jqcheck "mask keeps shapes" '.params_after == .params_before and .nonzero_after < .params_before' "$TMP/sm.out.json"
jqcheck "shrink: E 64->48, K 4->2, N 8->4, M 64->19" \
    '.params_after < .params_before and ([.layers_after[] | [.E, .K, .N, .M]] == [[48,2,4,19],[48,2,4,19]])' "$TMP/ss.out.json"
jqcheck "structured report: exact unit counts" \
    '[.entries[] | select(.granularity == "structured") | .removed] == [32, 90, 32, 4, 8]' "$TMP/ss.out.json"
"$BIN" eval --model "$TMP/sm.safetensors" --dataset "$DS" --threads "$T" >"$TMP/em.json"
"$BIN" eval --model "$TMP/ss.safetensors" --dataset "$DS" --threads "$T" >"$TMP/es.json"
jqcheck "masked and shrunk models evaluate the same" --slurpfile a "$TMP/em.json" \
    '.accuracy == $a[0].accuracy and ((.loss - $a[0].loss) | fabs) < 1e-5 and .params < $a[0].params' "$TMP/es.json"
"$BIN" inspect "$TMP/ss.safetensors" >/dev/null && ok "shrunk checkpoint validates" || bad "shrunk checkpoint validates"
cat >"$TMP/again.json" <<'EOF'
{"prune": [{"component": "layer", "granularity": "structured", "rate": 0.5},
           {"component": "out_proj", "rate": 0.5}]}
EOF
"$BIN" prune --model "$TMP/ss.safetensors" --spec "$TMP/again.json" --out "$TMP/ss2.safetensors" --dataset "$DS" \
    --threads "$T" >"$TMP/ss2.out.json"
jqcheck "a shrunk model prunes again (one of two blocks removed)" \
    '(.layers_after | length) == 1 and .test.pruned.accuracy >= 0' "$TMP/ss2.out.json"
must_fail "a mask of the full model does not fit the shrunk one" "has shape" \
    "$BIN" eval --model "$TMP/ss.safetensors" --dataset "$DS" --masks "$TMP/k.safetensors"

# --- fine-tuning keeps the zeros ------------------------------------------------------------
cat >"$TMP/ft.json" <<'EOF'
{"prune": [{"component": "linear_out", "rate": 0.7}, {"component": "mlp", "rate": 0.7}],
 "finetune": {"steps": 40, "lr": 0.002}, "seed": 3}
EOF
"$BIN" prune --model "$M" --spec "$TMP/ft.json" --out "$TMP/ft.safetensors" --dataset "$DS" --threads "$T" --quiet >"$TMP/ft.out.json"
jqcheck "fine-tuning ran and kept exactly the pruned zeros" \
    '.finetune.steps_done == 40 and .sparsity.components.out_proj.zeros == 2868
     and .sparsity.components.mlp.zeros == 5734 and (.test.finetuned.accuracy | type) == "number"' "$TMP/ft.out.json"

# --- refusals -------------------------------------------------------------------------------
echo '{"prune": [{"component": "out_proj", "rate": 0.5, "sparsity": 1}]}' >"$TMP/b1.json"
must_fail "unknown key is refused" 'prune\[0\]\.sparsity: unknown key "sparsity"' \
    "$BIN" prune --model "$M" --spec "$TMP/b1.json" --out "$TMP/x.safetensors"
echo '{"prune": [{"component": "out_proj", "rate": 1.0}]}' >"$TMP/b2.json"
must_fail "rate 1.0 is refused" 'prune\[0\]\.rate: 1 is outside \[0, 1\)' \
    "$BIN" prune --model "$M" --spec "$TMP/b2.json" --out "$TMP/x.safetensors"
echo '{"prune": [{"component": "linear_Q", "rate": 0.5}]}' >"$TMP/b3.json"
must_fail "unknown component is refused" 'unknown component "linear_Q"' \
    "$BIN" prune --model "$M" --spec "$TMP/b3.json" --out "$TMP/x.safetensors"
echo '{"prune": [{"component": "mlp", "rate": 0.5, "layers": [2]}]}' >"$TMP/b4.json"
must_fail "layer out of range is refused" 'layer 2 is out of range' \
    "$BIN" prune --model "$M" --spec "$TMP/b4.json" --out "$TMP/x.safetensors"
echo '{"prune": [{"component": "mlp", "rate": 0.5, "criterion": "activation"}]}' >"$TMP/b5.json"
must_fail "a calibration criterion needs --dataset" 'give --dataset' \
    "$BIN" prune --model "$M" --spec "$TMP/b5.json" --out "$TMP/x.safetensors"
must_fail "missing spec file" 'cannot read spec' \
    "$BIN" prune --model "$M" --spec "$TMP/none.json" --out "$TMP/x.safetensors"
check "refused runs wrote nothing" test ! -e "$TMP/x.safetensors"

finish
