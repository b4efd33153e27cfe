#!/usr/bin/env bash
# test_cli.sh — end-to-end checks of the prunelab CLI on the synthetic dataset, tiny preset:
# init -> train -> eval above chance; --resume after epoch 1 equals an uninterrupted run
# byte for byte; grad writes a finite loss, logits and a gradient of the right shape for every
# parameter; inspect refuses truncated files; bad flags fail with a hint; --help exits 0.
# Needs PRUNELAB_BIN (the built binary) and jq.
set -u

NAME=test_cli
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/lib.sh"
DS="synthetic:n=512,classes=4"
T=2

# --- help -----------------------------------------------------------------------------------
check "prunelab --help exits 0" "$BIN" --help >/dev/null
for c in init train eval grad inspect bench; do
    if "$BIN" "$c" --help >"$TMP/help" 2>&1 && grep -q "usage: prunelab $c" "$TMP/help"; then
        ok "$c --help"
    else
        bad "$c --help"
    fi
done

# --- bad invocations ------------------------------------------------------------------------
must_fail "unknown command" "hint:" "$BIN" frobnicate
must_fail "unknown flag gets a suggestion" "did you mean --epochs" "$BIN" train --model x --dataset "$DS" --epoch 2 --out y
must_fail "bad integer value" "expects an integer" "$BIN" train --model x --dataset "$DS" --epochs two --out y
must_fail "out of range value" "between" "$BIN" train --model x --dataset "$DS" --batch 0 --out y
must_fail "bad choice" "one of adamw\|sgd" "$BIN" train --model x --dataset "$DS" --optimizer adam --out y
must_fail "missing required flag" "--out is required" "$BIN" init --preset tiny --dataset "$DS"
must_fail "missing value" "needs a value" "$BIN" init --preset tiny --dataset "$DS" --out
must_fail "unknown preset" "one of tiny\|small\|base" "$BIN" init --preset huge --dataset "$DS" --out "$TMP/x"
must_fail "unknown dataset" "unknown dataset" "$BIN" init --preset tiny --dataset nosuchset --out "$TMP/x"
must_fail "missing model file" "cannot load model" "$BIN" eval --model "$TMP/none.safetensors" --dataset "$DS"

# --- init -> train -> eval ------------------------------------------------------------------
check "init tiny" "$BIN" init --preset tiny --seed 3 --dataset "$DS" --out "$TMP/m0.safetensors"
check "init is deterministic" bash -c "'$BIN' init --preset tiny --seed 3 --dataset '$DS' --out '$TMP/m0b.safetensors' 2>/dev/null && cmp -s '$TMP/m0.safetensors' '$TMP/m0b.safetensors'"
"$BIN" inspect "$TMP/m0.safetensors" >"$TMP/inspect.json"
jqcheck "inspect prints params and layers"  '.params > 0 and (.layers | length) == 2 and .config.classes == 4' "$TMP/inspect.json"

TRAIN=(--dataset "$DS" --epochs 2 --batch 32 --lr 3e-3 --threads "$T" --seed 7)
check "train 2 epochs" "$BIN" train --model "$TMP/m0.safetensors" "${TRAIN[@]}" --out "$TMP/m2.safetensors" --report-every 1
check "epoch checkpoint and optimizer state written" test -s "$TMP/m2.ckpt.safetensors" -a -s "$TMP/m2.ckpt.safetensors.optim"
"$BIN" eval --model "$TMP/m2.safetensors" --dataset "$DS" --threads "$T" >"$TMP/eval.json"
jqcheck "eval JSON has every field" 'has("accuracy") and has("loss") and has("params") and has("flops_per_sample")
    and has("latency_ms_per_batch") and has("samples_per_s") and has("peak_rss_kb") and has("blas_kernel")
    and has("threads") and has("n")' "$TMP/eval.json"
jqcheck "accuracy well above chance (0.25)" '.accuracy >= 0.6 and .n == 128' "$TMP/eval.json"
"$BIN" eval --model "$TMP/m0.safetensors" --dataset "$DS" --threads "$T" >"$TMP/eval0.json"
jqcheck "training lowered the loss" --slurpfile a "$TMP/eval0.json" '.loss < $a[0].loss' "$TMP/eval.json"

# --- resume ---------------------------------------------------------------------------------
check "train, stop after epoch 1" "$BIN" train --model "$TMP/m0.safetensors" "${TRAIN[@]}" --stop-after-epoch 1 --quiet --out "$TMP/r1.safetensors"
check "resume from the epoch-1 checkpoint" "$BIN" train --resume "$TMP/r1.ckpt.safetensors" "${TRAIN[@]}" --quiet --out "$TMP/r2.safetensors"
check "resumed run is byte-identical to the uninterrupted one" cmp "$TMP/m2.safetensors" "$TMP/r2.safetensors"
must_fail "resume with another batch size is refused" "same --batch" "$BIN" train --resume "$TMP/r1.ckpt.safetensors" --dataset "$DS" --epochs 2 --batch 16 --threads "$T" --quiet --out "$TMP/r3.safetensors"
check "sgd with momentum trains" "$BIN" train --model "$TMP/m0.safetensors" --dataset "$DS" --epochs 1 --optimizer sgd --lr 0.05 --momentum 0.9 --nesterov --threads "$T" --quiet --no-checkpoint --out "$TMP/s1.safetensors"

# --- grad -----------------------------------------------------------------------------------
# X.safetensors: images F32 [4,1,H,H] (H = $2) with values in +-[0.5, 2), labels I64 [4] = 0 1 2 3.
make_batch() {
    local out=$1 H=$2 B=4 n=$((4 * 1 * $2 * $2))
    local ib=$((n * 4)) lb=$((B * 8))
    local hdr="{\"images\":{\"dtype\":\"F32\",\"shape\":[4,1,$H,$H],\"data_offsets\":[0,$ib]},\"labels\":{\"dtype\":\"I64\",\"shape\":[4],\"data_offsets\":[$ib,$((ib + lb))]}}"
    while [ $(( ${#hdr} % 8 )) -ne 0 ]; do hdr="$hdr "; done
    local len=${#hdr}
    {
        printf "$(printf '\\x%02x' $((len & 255)) $(((len >> 8) & 255)) 0 0 0 0 0 0)"
        printf '%s' "$hdr"
        local i seed=12345
        for ((i = 0; i < n; i++)); do
            seed=$(((seed * 1103515245 + 12345) & 2147483647))
            printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((seed & 255)) $(((seed >> 8) & 255)) $(((seed >> 16) & 255)) $(( (seed >> 24) & 1 ? 0xbf : 0x3f )))"
        done
        for ((i = 0; i < B; i++)); do printf "$(printf '\\x%02x' $i)\\x00\\x00\\x00\\x00\\x00\\x00\\x00"; done
    } >"$out"
}
# header of a safetensors file as JSON
st_header() {
    local len
    len=$(od -An -t u8 -N 8 "$1" | tr -d ' ')
    tail -c +9 "$1" | head -c "$len"
}
make_batch "$TMP/x.safetensors" 16
make_batch "$TMP/x8.safetensors" 8
check "grad runs" "$BIN" grad --model "$TMP/m2.safetensors" --batch "$TMP/x.safetensors" --out "$TMP/g.safetensors"
st_header "$TMP/g.safetensors" >"$TMP/g.json"
"$BIN" inspect --tensors "$TMP/m2.safetensors" >"$TMP/tensors.json"
jqcheck "grad has loss [1] and logits [4,4]" '.loss.shape == [1] and .logits.shape == [4,4] and .loss.dtype == "F32"' "$TMP/g.json"
jqcheck "a gradient of the parameter's shape for every parameter" --slurpfile t "$TMP/tensors.json" \
    '. as $g | ($t[0].tensors | length) > 0 and all($t[0].tensors[]; $g["grad." + .name].shape == .shape)
     and ([keys[] | select(startswith("grad."))] | length) == ($t[0].tensors | length)' "$TMP/g.json"
hlen=$(od -An -t u8 -N 8 "$TMP/g.safetensors" | tr -d ' ')
loff=$(jq '.loss.data_offsets[0]' "$TMP/g.json")
loss=$(od -An -t f4 -j $((8 + hlen + loff)) -N 4 "$TMP/g.safetensors" | tr -d ' ')
check "loss is finite and positive ($loss)" awk -v l="$loss" 'BEGIN { exit !(l + 0 > 0 && l + 0 < 100) }'
must_fail "grad refuses a batch of the wrong shape" "images must be \\[B,1,16,16\\]" "$BIN" grad --model "$TMP/m2.safetensors" --batch "$TMP/x8.safetensors" --out "$TMP/g2.safetensors"
must_fail "grad refuses a file without images" "no tensor 'images'" "$BIN" grad --model "$TMP/m2.safetensors" --batch "$TMP/g.safetensors" --out "$TMP/g2.safetensors"

# --- inspect as validator -------------------------------------------------------------------
head -c 1000 "$TMP/m2.safetensors" >"$TMP/trunc.safetensors"
must_fail "inspect refuses a truncated file" "not a valid model" "$BIN" inspect "$TMP/trunc.safetensors"
printf 'hello' >"$TMP/tiny.safetensors"
must_fail "inspect refuses a 5-byte file" "not a valid model" "$BIN" inspect "$TMP/tiny.safetensors"
n=$(grep -o "tiny.safetensors" "$TMP/err" | wc -l)
[ "$n" = 1 ] && ok "the refusal names the file once" || bad "the refusal names the file $n times: $(head -c 300 "$TMP/err")"
must_fail "inspect needs a file" "missing" "$BIN" inspect

# --- bench ----------------------------------------------------------------------------------
"$BIN" bench --preset tiny --batch 8 --threads 1 --steps 2 --warmup-steps 1 --json >"$TMP/bench.json"
jqcheck "bench JSON" '.train_samples_per_s > 0 and .infer_samples_per_s > 0 and .flops_per_sample > 0
    and .sgemm_gflops > 0 and has("train_roofline") and (.blas_kernel | length) > 0' "$TMP/bench.json"
"$BIN" bench --model "$TMP/m2.safetensors" --batch 8 --threads 1 --steps 2 --warmup-steps 1 --json >"$TMP/benchm.json"
jqcheck "bench --model measures that checkpoint" --slurpfile i "$TMP/inspect.json" \
    '.model != null and .preset == null and .params == $i[0].params and .infer_samples_per_s > 0' "$TMP/benchm.json"
must_fail "bench --model refuses a missing file" "cannot open|No such file" \
    "$BIN" bench --model "$TMP/none.safetensors" --batch 8 --threads 1 --steps 1 --json
"$BIN" bench --model "$TMP/m2.safetensors" --against "$TMP/m0.safetensors" --batch 8 --threads 1 --steps 5 \
    --warmup-steps 1 --json >"$TMP/benchv.json"
jqcheck "bench --against: paired inference, no training, quartiles around the median" '
    .against != null and .train_samples_per_s == null and .against_infer_samples_per_s > 0
    and .speedup > 0 and .speedup_p25 <= .speedup and .speedup <= .speedup_p75' "$TMP/benchv.json"
"$BIN" init --preset tiny --seed 3 --dataset "synthetic:n=64,classes=3" --out "$TMP/m3c.safetensors" 2>/dev/null
must_fail "bench --against refuses a baseline with other classes" "classes" \
    "$BIN" bench --model "$TMP/m2.safetensors" --against "$TMP/m3c.safetensors" --batch 8 --threads 1 --steps 1
must_fail "bench --against needs --model" "needs --model" "$BIN" bench --against "$TMP/m0.safetensors" --steps 1

finish
