#!/usr/bin/env bash
# tests/integration/test_lm_service.sh — prunelabd with causal LM models and token datasets,
# without running an LM cell: an LM checkpoint made by `prunelab init --task lm` (tied, and an
# untied one) is uploaded and the model JSON and list carry task, vocab and tied; a job pairing an
# LM with an image dataset, or an image model with a token dataset, is 400 naming dataset (dry run
# too), seq_len / eval.max_tokens are checked and accepted (dry run); GET /api/v1/datasets lists
# the token and text datasets found under DATA_DIR/datasets with their kind, an admin registers
# one by path (403 for others, 400 naming name or path for bad ones, 409 for a taken name) and it
# is listed afterwards; an LM job written straight into the database shows perplexity in
# results.json (metric "perplexity") and results.csv.
# Starts prunelabd on 127.0.0.1 port 0 and stops it by pid. Env: PRUNELABD_BIN, PRUNELAB_BIN.
# Needs curl, jq, sqlite3.
set -u
NAME=test_lm_service
BIN=${PRUNELABD_BIN:-./prunelabd}
ENGINE=${PRUNELAB_BIN:-./prunelab}
. "$(dirname "$0")/lib.sh"
command -v sqlite3 >/dev/null || { echo "$NAME: sqlite3 is required (apt-get install sqlite3)"; exit 77; }

finish() {
    echo "$NAME: $PASSES passed, $FAILS failed"
    [ $FAILS -eq 0 ]
    exit $?
}
# req METHOD PATH [curl args]: status in $CODE, body in $TMP/body
req() {
    local m=$1 p=$2
    shift 2
    CODE=$(curl -s -o "$TMP/body" -w '%{http_code}' -X "$m" "$@" "$BASE$p")
}
jqcheck() { # jqcheck DESCRIPTION FILTER (on $TMP/body)
    if jq -e "$2" "$TMP/body" >/dev/null 2>&1; then ok "$1"; else bad "$1 ($CODE: $(head -c 400 "$TMP/body"))"; fi
}
expect_error() { # expect_error DESCRIPTION STATUS CODE FIELD (null: none)
    local f="\"$4\""
    [ "$4" = null ] && f=null
    if [ "$CODE" = "$2" ] && jq -e ".error.code == \"$3\" and .error.field == $f" "$TMP/body" >/dev/null 2>&1; then
        ok "$1"
    else
        bad "$1: want $2 $3 $4, got $CODE $(head -c 400 "$TMP/body")"
    fi
}

DATA=$TMP/var
mkdir -p "$DATA/datasets/wt2" "$DATA/datasets/notokens" "$TMP/ext"
ALICE=$(new_token alice) || exit 1
ROOT=$(new_token root --admin) || exit 1
A=(-H "Authorization: Bearer $ALICE")
R=(-H "Authorization: Bearer $ROOT")
# found under DATA_DIR/datasets: tokens:wt2 (train.bin + val.bin), text:brown.txt; not: notokens/, empty.txt
printf '\001\000\002\000' >"$DATA/datasets/wt2/train.bin"
printf '\001\000' >"$DATA/datasets/wt2/val.bin"
touch "$DATA/datasets/notokens/train.bin" "$DATA/datasets/empty.txt"
echo "the quick brown fox" >"$DATA/datasets/brown.txt"
mkdir -p "$TMP/ext/corpus"
cp "$DATA/datasets/wt2/"*.bin "$TMP/ext/corpus/"
echo "some text" >"$TMP/ext/book.txt"

"$ENGINE" init --task lm --preset lm-tiny --vocab 64 --out "$TMP/lm.safetensors" >/dev/null 2>&1 &&
    "$ENGINE" init --task lm --preset lm-tiny --vocab 300 --untied --out "$TMP/lmu.safetensors" >/dev/null 2>&1 &&
    "$ENGINE" init --preset tiny --dataset synthetic:n=256,classes=4 --out "$TMP/img.safetensors" >/dev/null 2>&1 ||
    { echo "FAIL - prunelab init could not make the test models"; exit 1; }

start_daemon --data-dir "$DATA" --workers 1

# ------------------------------------------------------------------ models of either task
req PUT /api/v1/models/lm "${A[@]}" --data-binary @"$TMP/lm.safetensors"
[ "$CODE" = 201 ] && ok "an LM checkpoint without a recorded dataset uploads (201)" || bad "LM upload: $CODE $(head -c 300 "$TMP/body")"
jqcheck "the LM model JSON: task causal_lm, vocab 64, tied, no dataset" \
    '.task == "causal_lm" and .vocab == 64 and .tied == true and .dataset == null'
req PUT "/api/v1/models/lmu?dataset=synthetic-lm:vocab=300" "${A[@]}" --data-binary @"$TMP/lmu.safetensors"
jqcheck "an untied LM: tied false, vocab 300, its dataset a token dataset name" \
    '.task == "causal_lm" and .vocab == 300 and .tied == false and .dataset == "synthetic-lm:vocab=300"'
req PUT /api/v1/models/img "${A[@]}" --data-binary @"$TMP/img.safetensors"
jqcheck "an image model: task image_classifier, vocab and tied null" \
    '.task == "image_classifier" and .vocab == null and .tied == null'
req GET /api/v1/models
jqcheck "the models list carries task, vocab and tied" \
    '[.models[] | {name, task, vocab, tied}] == [{"name":"img","task":"image_classifier","vocab":null,"tied":null},
      {"name":"lm","task":"causal_lm","vocab":64,"tied":true},{"name":"lmu","task":"causal_lm","vocab":300,"tied":false}]'
req GET /api/v1/models/lm
jqcheck "GET /models/lm: task causal_lm" '.task == "causal_lm" and .info.config.task == "causal_lm"'

# ------------------------------------------------------------------ jobs: the task / dataset pair
ABL='"type":"ablation","components":["in_proj"],"rates":[0.5]'
for dry in "" "?dry_run=1"; do
    req POST "/api/v1/jobs$dry" "${A[@]}" --data-binary "{$ABL,\"model\":\"lm\",\"dataset\":\"fashion-mnist\"}"
    expect_error "LM model with an image dataset: 400 naming dataset ${dry:-(submit)}" 400 invalid_value dataset
    req POST "/api/v1/jobs$dry" "${A[@]}" --data-binary "{$ABL,\"model\":\"lm\"}"
    expect_error "LM model without a dataset: 400 naming dataset ${dry:-(submit)}" 400 missing_field dataset
    req POST "/api/v1/jobs$dry" "${A[@]}" --data-binary "{$ABL,\"model\":\"img\",\"dataset\":\"synthetic-lm\"}"
    expect_error "image model with a token dataset: 400 naming dataset ${dry:-(submit)}" 400 invalid_value dataset
    req POST "/api/v1/jobs$dry" "${A[@]}" --data-binary "{$ABL,\"model\":\"lm\",\"dataset\":\"text:brown.txt\"}"
    expect_error "LM of vocab 64 with text (256 ids): 400 naming dataset ${dry:-(submit)}" 400 invalid_value dataset
done
req POST "/api/v1/jobs?dry_run=1" "${A[@]}" --data-binary "{$ABL,\"model\":\"lm\",\"dataset\":\"synthetic-lm\",\"seq_len\":1}"
expect_error "seq_len 1: 400 naming seq_len" 400 invalid_value seq_len
req POST "/api/v1/jobs?dry_run=1" "${A[@]}" --data-binary "{$ABL,\"model\":\"lm\",\"dataset\":\"synthetic-lm\",\"eval\":{\"max_tokens\":0}}"
expect_error "eval.max_tokens 0: 400 naming eval.max_tokens" 400 invalid_value eval.max_tokens
req POST "/api/v1/jobs?dry_run=1" "${A[@]}" --data-binary "{$ABL,\"model\":\"img\",\"seq_len\":128}"
expect_error "seq_len on an image job: 400 naming seq_len" 400 invalid_value seq_len
for t in "$ABL" '"type":"sensitivity","layers":"all","components":["in_proj"],"rate":0.5' \
    '"type":"joint","configs":[{"in_proj":0.5}]' '"type":"rsst","spec":{"prune":[{"component":"in_proj","rate":0.5}]}'; do
    req POST "/api/v1/jobs?dry_run=1" "${A[@]}" \
        --data-binary "{$t,\"model\":\"lmu\",\"seq_len\":128,\"eval\":{\"max_tokens\":1000}}"
    jqcheck "dry run of an LM job ($(echo "$t" | cut -d'"' -f4)) with seq_len and eval.max_tokens: accepted" '.dry_run == true and .cells >= 1'
done

# ------------------------------------------------------------------ datasets
req GET /api/v1/datasets
jqcheck "datasets: image ones carry kind image" '[.datasets[] | select(.name == "fashion-mnist" or .name == "synthetic") | .kind] == ["image","image"]'
jqcheck "datasets: synthetic-lm, tokens:wt2 and text:brown.txt listed with their kind" \
    '([.datasets[] | select(.name == "synthetic-lm") | .kind] == ["tokens"]) and
     ([.datasets[] | select(.name == "tokens:wt2") | [.kind, .source, .available]] == [["tokens","data_dir",true]]) and
     ([.datasets[] | select(.name == "text:brown.txt") | [.kind, .vocab]] == [["text",256]])'
jqcheck "datasets: a directory without val.bin and an empty .txt are not listed" \
    '[.datasets[] | select(.name == "tokens:notokens" or .name == "text:empty.txt")] == []'
REG="{\"name\":\"tokens:corpus\",\"path\":\"$TMP/ext/corpus\"}"
req POST /api/v1/datasets --data-binary "$REG"
[ "$CODE" = 401 ] && ok "register without a token: 401" || bad "register anonymous: $CODE"
req POST /api/v1/datasets "${A[@]}" --data-binary "$REG"
expect_error "register as a non-admin: 403" 403 forbidden null
req POST /api/v1/datasets "${R[@]}" --data-binary "{\"name\":\"corpus\",\"path\":\"$TMP/ext/corpus\"}"
expect_error "register a name without tokens:/text:: 400 naming name" 400 invalid_value name
req POST /api/v1/datasets "${R[@]}" --data-binary "{\"name\":\"tokens:a/b\",\"path\":\"$TMP/ext/corpus\"}"
expect_error "register a name with a slash: 400 naming name" 400 invalid_value name
req POST /api/v1/datasets "${R[@]}" --data-binary "{\"name\":\"synthetic-lm\",\"path\":\"$TMP/ext/corpus\"}"
expect_error "register synthetic-lm: 400 naming name" 400 invalid_value name
req POST /api/v1/datasets "${R[@]}" --data-binary "{\"name\":\"tokens:x\",\"path\":\"$TMP/ext/book.txt\"}"
expect_error "tokens: with a file: 400 naming path" 400 invalid_value path
req POST /api/v1/datasets "${R[@]}" --data-binary "{\"name\":\"tokens:x\",\"path\":\"$DATA/datasets/notokens\"}"
expect_error "tokens: without val.bin: 400 naming path" 400 invalid_value path
req POST /api/v1/datasets "${R[@]}" --data-binary "{\"name\":\"text:x\",\"path\":\"$TMP/ext/corpus\"}"
expect_error "text: with a directory: 400 naming path" 400 invalid_value path
req POST /api/v1/datasets "${R[@]}" --data-binary '{"name":"tokens:x","path":"relative/dir"}'
expect_error "a relative path: 400 naming path" 400 invalid_value path
req POST /api/v1/datasets "${R[@]}" --data-binary "{\"name\":\"tokens:x\",\"path\":\"$TMP/nope\"}"
expect_error "a missing path: 400 naming path" 400 invalid_value path
req POST /api/v1/datasets "${R[@]}" --data-binary "{\"name\":\"tokens:x\",\"path\":\"$TMP/ext/corpus\",\"vocab\":5}"
expect_error "an unknown field: 400 naming it" 400 unknown_field vocab
req POST /api/v1/datasets "${R[@]}" --data-binary "{\"name\":\"tokens:wt2\",\"path\":\"$TMP/ext/corpus\"}"
expect_error "a name found under DATA_DIR/datasets: 409" 409 dataset_exists name
req POST /api/v1/datasets "${R[@]}" --data-binary "$REG"
if [ "$CODE" = 201 ] && jq -e '.name == "tokens:corpus" and .kind == "tokens" and .source == "registered" and .available' "$TMP/body" >/dev/null; then
    ok "an admin registers tokens:corpus (201)"
else
    bad "register: $CODE $(head -c 300 "$TMP/body")"
fi
req POST /api/v1/datasets "${R[@]}" --data-binary "$REG"
expect_error "the same name again: 409" 409 dataset_exists name
req POST /api/v1/datasets "${R[@]}" --data-binary "{\"name\":\"text:book\",\"path\":\"$TMP/ext/book.txt\"}"
[ "$CODE" = 201 ] && ok "an admin registers text:book (201)" || bad "register text: $CODE $(head -c 300 "$TMP/body")"
req GET /api/v1/datasets
jqcheck "registered datasets are listed afterwards" \
    "[.datasets[] | select(.source == \"registered\") | [.name, .kind, .path]] == [[\"text:book\",\"text\",\"$TMP/ext/book.txt\"],[\"tokens:corpus\",\"tokens\",\"$TMP/ext/corpus\"]]"
req POST "/api/v1/jobs?dry_run=1" "${A[@]}" --data-binary "{$ABL,\"model\":\"lmu\",\"dataset\":\"tokens:corpus\"}"
jqcheck "a job may name a registered token dataset" '.dry_run == true'

# ------------------------------------------------------------------ results of LM cells
LMRES='{"event":"result","metrics":{"task":"causal_lm","metric":"perplexity","loss":2.5,"perplexity":12.18,"baseline_perplexity":9.5,"baseline_loss":2.25,"delta_perplexity":2.68,"bits_per_token":3.6067,"accuracy":0.31,"baseline_accuracy":0.35,"delta_accuracy":-0.04,"tokens_per_s":51234.5,"eval":{"split":"val","n":16,"tokens":4080,"seq_len":256},"wall_s":1.5}}'
sqlite3 "$DATA/prunelab.db" <<EOF || { bad "cannot write the LM job"; finish; }
INSERT INTO jobs (id, owner, type, spec, state, n_cells, n_done, n_failed, created_ms)
VALUES (90, 'alice', 'ablation', '{"type":"ablation","model":"lm","dataset":"synthetic-lm","components":["in_proj"],"rates":[0.3,0.5]}',
        'failed', 2, 1, 1, 1700000000000);
INSERT INTO cells (job_id, idx, spec, state, result, error_code, created_ms) VALUES
 (90, 0, '{"component":"in_proj","rate":0.3,"seq_len":256}', 'failed', NULL, 'runtime', 1),
 (90, 1, '{"component":"in_proj","rate":0.5,"seq_len":256}', 'done', '$LMRES', NULL, 1);
EOF
req GET /api/v1/jobs/90/results.json
jqcheck "results.json of an LM job: metric perplexity, the row's perplexity, delta and tokens/s" \
    '.metric == "perplexity" and (.rows[1] | .task == "causal_lm" and .metric == "perplexity" and .perplexity == 12.18
     and .delta_perplexity == 2.68 and .baseline_perplexity == 9.5 and .bits_per_token == 3.6067 and .tokens_per_s == 51234.5
     and .bits_per_byte == null) and .rows[0].perplexity == null'
req GET /api/v1/jobs/90/results.csv
H=$(head -1 "$TMP/body")
ROW=$(sed -n 3p "$TMP/body")
col() { echo "$H" | tr , '\n' | grep -nx "$1" | cut -d: -f1; }
if [ "$(echo "$ROW" | cut -d, -f"$(col perplexity)")" = 12.18 ] && [ "$(echo "$ROW" | cut -d, -f"$(col metric)")" = perplexity ] &&
    [ "$(echo "$ROW" | cut -d, -f"$(col tokens_per_s)")" = 51234.5 ] && [ "$(echo "$ROW" | cut -d, -f"$(col task)")" = causal_lm ]; then
    ok "results.csv of an LM job: task, metric, perplexity and tokens_per_s columns"
else
    bad "results.csv: $H / $ROW"
fi
kill -0 "$PID" 2>/dev/null && ok "the daemon is still up" || bad "the daemon died: $(tail -5 "$TMP/stderr")"
finish
