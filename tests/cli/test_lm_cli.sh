#!/usr/bin/env bash
# test_lm_cli.sh — the causal-LM side of init, inspect and grad: init --task lm / lm-* presets
# (file and HF directory, tied and untied, --vocab or the dataset's vocabulary), inspect's task /
# vocab / tied / layer_norm_epsilon / per-layer dims for a file and a directory, and grad on the
# transformers fixture (tests/fixtures/hf_mamba_a) against its expected loss, logits and grads.
# Needs PRUNELAB_BIN, PRUNELAB_SRCDIR and jq; the numeric comparison also python3 (skipped without).
set -u

NAME=test_lm_cli
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/lib.sh"
FIX="${PRUNELAB_SRCDIR:-.}/tests/fixtures/hf_mamba_a"

# --- init ------------------------------------------------------------------------------------
check "init --task lm --preset lm-tiny" "$BIN" init --task lm --preset lm-tiny --vocab 64 --seed 2 \
    --out "$TMP/lm.safetensors"
check "init is deterministic" bash -c "'$BIN' init --preset lm-tiny --vocab 64 --seed 2 --out '$TMP/lm2.safetensors' \
    2>/dev/null && cmp -s '$TMP/lm.safetensors' '$TMP/lm2.safetensors'"
check "init into an HF directory, untied, dims overridden" "$BIN" init --task lm --preset lm-tiny --untied \
    --d-model 48 --layers 3 --dataset text:/dev/null --out "$TMP/hf/"
jqcheck "the directory has an HF config.json" '.model_type == "mamba" and .hidden_size == 48
    and .num_hidden_layers == 3 and .vocab_size == 256 and .tie_word_embeddings == false
    and .intermediate_size == 96 and .time_step_rank == 3 and .state_size == 8' "$TMP/hf/config.json"
must_fail "an LM needs a vocabulary" "needs --vocab" "$BIN" init --task lm --preset lm-tiny --out "$TMP/x"
must_fail "image preset with --task lm" "image preset" "$BIN" init --task lm --preset tiny --vocab 8 --out "$TMP/x"
must_fail "--vocab on an image model" "for causal LMs" "$BIN" init --preset tiny --dataset synthetic --vocab 8 \
    --out "$TMP/x"
must_fail "unknown token dataset" "not a token dataset" "$BIN" init --task lm --dataset cifar10 --out "$TMP/x"

# --- inspect ---------------------------------------------------------------------------------
"$BIN" inspect "$TMP/lm.safetensors" >"$TMP/i1.json"
jqcheck "inspect: task, vocab, tied, eps, dims" '.config.task == "causal_lm" and .config.vocab == 64
    and .config.tied == true and .config.layer_norm_epsilon == 1e-5 and (.layers | length) == 2
    and .layers[0].d_inner == 64 and .layers[0].d_state == 8 and .layers[0].mlp == 0
    and .params_outside_layers == 64 * 32 + 32 and .params == .params_outside_layers + ([.layers[].params] | add)' \
    "$TMP/i1.json"
"$BIN" inspect "$TMP/hf" >"$TMP/i2.json"
jqcheck "inspect a directory: untied" '.config.tied == false and .config.vocab == 256 and .config.d_model == 48
    and .tensor_count == 1 + 3 * 10 + 2' "$TMP/i2.json"
"$BIN" inspect "$FIX" >"$TMP/i3.json"
jqcheck "inspect the transformers fixture" '.config.task == "causal_lm" and .config.vocab == 256
    and .config.tied == true and .config.hf_config == true and (.layers | length) == 2' "$TMP/i3.json"

# --- grad ------------------------------------------------------------------------------------
check "grad on the fixture directory" "$BIN" grad --model "$FIX" --batch "$FIX/expected.safetensors" \
    --out "$TMP/g.safetensors" --threads 1
check "grad on the fixture file" "$BIN" grad --model "$FIX/model.safetensors" --batch "$FIX/expected.safetensors" \
    --out "$TMP/g2.safetensors" --threads 1
check "directory and file give the same bytes" cmp -s "$TMP/g.safetensors" "$TMP/g2.safetensors"
if command -v python3 >/dev/null; then
    check "grad matches transformers (loss 1e-4 rel, logits 1e-4 abs, grads 1e-3 of max)" python3 - \
        "$TMP/g.safetensors" "$FIX/expected.safetensors" <<'PY'
import json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__" or v["dtype"] != "F32":
            continue
        s, e = v["data_offsets"]
        out[k] = struct.unpack("<%df" % ((e - s) // 4), b[8 + n + s:8 + n + e])
    return out
g, x = load(sys.argv[1]), load(sys.argv[2])
assert set(g) == set(x), sorted(set(g) ^ set(x))
assert abs(g["loss"][0] - x["loss"][0]) <= 1e-4 * abs(x["loss"][0])
assert max(abs(a - b) for a, b in zip(g["logits"], x["logits"])) <= 1e-4
for k in g:
    if k.startswith("grad."):
        m = max(abs(v) for v in x[k])
        assert max(abs(a - b) for a, b in zip(g[k], x[k])) <= 1e-3 * m, k
PY
fi
python3 -c "
import json,struct
h=json.dumps({'input_ids':{'dtype':'I32','shape':[1,1],'data_offsets':[0,4]}}).encode()
h+=b' '*((8-len(h)%8)%8)
open('$TMP/short.safetensors','wb').write(struct.pack('<Q',len(h))+h+struct.pack('<i',3))
h=json.dumps({'input_ids':{'dtype':'I32','shape':[1,2],'data_offsets':[0,8]}}).encode()
h+=b' '*((8-len(h)%8)%8)
open('$TMP/oov.safetensors','wb').write(struct.pack('<Q',len(h))+h+struct.pack('<ii',3,64))
" 2>/dev/null && {
    must_fail "grad refuses a window of one token" "T >= 2" "$BIN" grad --model "$TMP/lm.safetensors" \
        --batch "$TMP/short.safetensors" --out "$TMP/x"
    must_fail "grad refuses a token outside the vocabulary" "outside the vocabulary" "$BIN" grad \
        --model "$TMP/lm.safetensors" --batch "$TMP/oov.safetensors" --out "$TMP/x"
}
must_fail "grad on an LM wants input_ids" "no tensor 'input_ids'" "$BIN" grad --model "$TMP/lm.safetensors" \
    --batch "$TMP/lm.safetensors" --out "$TMP/x"

finish
