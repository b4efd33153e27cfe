#!/bin/bash
# tests/integration/test_api.sh — the REST API (jobs, models, datasets) against a real prunelabd.
# Starts prunelabd on 127.0.0.1 port 0 with a temp data dir, creates users with
# `prunelabd user add`, uploads a tiny model made by `prunelab init`, then checks: auth (no
# token, malformed, unknown (401) and revoked (403) tokens, another user's job), every bad input (malformed
# JSON with its position, unknown field, unknown component and model, rate 1.5, empty and
# oversized grids, path traversal in model names, invalid uploads), Idempotency-Key, listing
# with filters and page tokens (each change visible in the next listing), dry runs
# (?dry_run=1: the cell count of the real submission, the same errors, nothing created), and —
# with the scheduler running — a train job on the
# synthetic set with the tiny preset, an ablation, a sensitivity and a joint job to completion
# with results.json / results.csv rows, cancel, retry of failed cells and delete.
# Env: PRUNELABD_BIN (default ./prunelabd), PRUNELAB_BIN (default ./prunelab). Needs curl, jq.
NAME=test_api
BIN=${PRUNELABD_BIN:-./prunelabd}
ENGINE=${PRUNELAB_BIN:-./prunelab}
. "$(dirname "$0")/lib.sh"
FAILS=0
PASSES=0
ok() { PASSES=$((PASSES + 1)); echo "ok   - $1"; }
bad() { FAILS=$((FAILS + 1)); echo "FAIL - $1"; }
note() { echo "#    $1"; }
jqcheck() { # jqcheck DESCRIPTION FILE FILTER
    if jq -e "$3" "$2" >/dev/null 2>&1; then ok "$1"; else bad "$1 (body: $(head -c 400 "$2"))"; fi
}
# req METHOD PATH [curl args...]: status in $CODE, body in $TMP/body, headers in $TMP/headers
req() {
    local m=$1 p=$2; shift 2
    CODE=$(curl -s --path-as-is -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' -X "$m" "$@" "$BASE$p")
}
# As alice (when tokens exist).
areq() { local m=$1 p=$2; shift 2; req "$m" "$p" "${AUTH[@]}" "$@"; }
expect() { # expect DESCRIPTION STATUS ERROR-CODE-or-"" [FIELD]
    if [ "$CODE" != "$2" ]; then
        bad "$1 (status $CODE, want $2: $(head -c 400 "$TMP/body"))"
    elif [ -n "$3" ]; then
        local f='true'
        [ -n "$4" ] && f=".error.field == \"$4\""
        jqcheck "$1" "$TMP/body" ".error.code == \"$3\" and (.error.message | length > 0) and $f"
    else
        ok "$1"
    fi
}
post_job() { # post_job DESCRIPTION JSON STATUS CODE [FIELD]
    areq POST /api/v1/jobs -H 'Content-Type: application/json' --data-binary "$2"
    expect "$1" "$3" "$4" "$5"
}
# wait_job ID SECONDS: long-poll until the job is finished; state in $STATE
wait_job() {
    local end=$((SECONDS + $2)) v=0
    STATE=
    while [ $SECONDS -lt $end ]; do
        kill -0 "$PID" 2>/dev/null || { STATE="(daemon died)"; return 1; }
        curl -s -o "$TMP/job" "$BASE/api/v1/jobs/$1?wait=5&since=$v"
        STATE=$(jq -r .state "$TMP/job" 2>/dev/null)
        v=$(jq -r '.version // 0' "$TMP/job" 2>/dev/null)
        case "$STATE" in done | failed | cancelled) return 0 ;; esac
    done
    return 1
}
finish() {
    echo "$NAME: $PASSES passed, $FAILS failed"
    [ $FAILS -eq 0 ]
    exit $?
}

DATA=$TMP/var
mkdir -p "$DATA"
# ------------------------------------------------------------------ users
AUTH=()
HAVE_USERS=0
if "$BIN" user add alice --data-dir "$DATA" >"$TMP/alice" 2>"$TMP/err" &&
    "$BIN" user add bob --data-dir "$DATA" >"$TMP/bob" 2>>"$TMP/err" &&
    "$BIN" user add root --admin --data-dir "$DATA" >"$TMP/root" 2>>"$TMP/err"; then
    ALICE=$(grep -o 'plt_[0-9a-f]\{64\}' "$TMP/alice" | head -1)
    BOB=$(grep -o 'plt_[0-9a-f]\{64\}' "$TMP/bob" | head -1)
    ROOT=$(grep -o 'plt_[0-9a-f]\{64\}' "$TMP/root" | head -1)
    if [ -n "$ALICE" ] && [ -n "$BOB" ] && [ -n "$ROOT" ]; then
        HAVE_USERS=1
        AUTH=(-H "Authorization: Bearer $ALICE")
        ok "user add printed tokens"
    fi
fi
if [ $HAVE_USERS -eq 0 ]; then
    echo "FAIL - prunelabd user add printed no tokens: $(head -c 200 "$TMP/err")"
    exit 1
fi

# ------------------------------------------------------------------ start
start_daemon --data-dir "$DATA" --workers 2
ok "listening on port $PORT"
req GET /api/v1/jobs
if [ "$CODE" != 200 ] || ! jq -e '.jobs' "$TMP/body" >/dev/null 2>&1; then
    echo "FAIL - GET /api/v1/jobs answers $CODE: $(head -c 300 "$TMP/body")"
    exit 1
fi
ok "GET /api/v1/jobs anonymous 200"

alive() { kill -0 "$PID" 2>/dev/null || { bad "the daemon died: $(tail -5 "$TMP/stderr")"; finish; }; }

# ------------------------------------------------------------------ auth
ABL='{"type":"ablation","model":"tiny0","components":["linear_out"],"rates":[0.5]}'
req POST /api/v1/jobs --data-binary "$ABL"
expect "POST without a token 401" 401 unauthorized
grep -qi '^www-authenticate: Bearer' "$TMP/headers" && ok "401 carries WWW-Authenticate" || bad "401 WWW-Authenticate"
req POST /api/v1/jobs -H 'Authorization: Basic YWxpY2U6eA==' --data-binary "$ABL"
expect "non-bearer Authorization 401" 401 unauthorized
req POST /api/v1/jobs -H "Authorization: Bearer plt_$(printf '%064d' 0)" --data-binary "$ABL"
expect "unknown token 401" 401 invalid_token

# ------------------------------------------------------------------ models
"$ENGINE" init --preset tiny --dataset synthetic:n=256,classes=4 --out "$TMP/tiny0.safetensors" >/dev/null 2>&1 ||
    bad "prunelab init failed"
req PUT /api/v1/models/tiny0 --data-binary @"$TMP/tiny0.safetensors"
expect "PUT model without a token 401" 401 unauthorized
areq PUT /api/v1/models/tiny0 --data-binary @"$TMP/tiny0.safetensors"
expect "PUT model 201" 201 ""
jqcheck "uploaded model has params, dataset and layers" "$TMP/body" \
    '.name == "tiny0" and .params > 0 and .dataset == "synthetic:n=256,classes=4" and .info.config.n_layers == 2 and .owner == "alice"'
[ -f "$DATA/models/tiny0.safetensors" ] && ok "checkpoint stored under models/" || bad "checkpoint not in models/"
areq PUT /api/v1/models/tiny0 --data-binary @"$TMP/tiny0.safetensors"
expect "PUT an existing name 409" 409 model_exists name
# refusals decided on the headers: no byte of the body is sent (Expect: 100-continue) or stored
truncate -s 50M "$TMP/big"
up() { # up NAME [curl args...] -> $CODE, $SENT (bytes curl uploaded)
    local n=$1; shift
    read -r CODE SENT < <(curl -s -o "$TMP/body" -w '%{http_code} %{size_upload}\n' -X PUT -H 'Expect: 100-continue' \
        --expect100-timeout 10 "$@" --data-binary @"$TMP/big" "$BASE/api/v1/models/$n")
}
up big50
[ "$CODE" = 401 ] && [ "$SENT" = 0 ] && ok "anonymous 50 MB PUT: 401 before the body (0 bytes sent)" ||
    bad "anonymous 50 MB PUT: $CODE after $SENT bytes"
up tiny0 "${AUTH[@]}"
[ "$CODE" = 409 ] && [ "$SENT" = 0 ] && ok "50 MB PUT on a taken name: 409 before the body" ||
    bad "PUT on a taken name: $CODE after $SENT bytes"
up 'a%20b' "${AUTH[@]}"
[ "$CODE" = 400 ] && [ "$SENT" = 0 ] && ok "50 MB PUT with a bad name: 400 before the body" ||
    bad "PUT with a bad name: $CODE after $SENT bytes"
[ -z "$(ls -A "$DATA/tmp" 2>/dev/null)" ] && ok "refused uploads left nothing in tmp/" || bad "tmp/ holds $(ls "$DATA/tmp")"
# a user streams at most uploads_per_user (2) bodies at once; a third is refused on its headers
SLOW=()
for n in slow1 slow2; do
    curl -s -o /dev/null -X PUT "${AUTH[@]}" --limit-rate 512K --data-binary @"$TMP/big" "$BASE/api/v1/models/$n" &
    SLOW+=($!)
done
for _ in $(seq 1 100); do [ "$(ls "$DATA/tmp" 2>/dev/null | wc -l)" -ge 2 ] && break; sleep 0.1; done
up slow3 "${AUTH[@]}"
[ "$CODE" = 429 ] && [ "$SENT" = 0 ] && jq -e '.error.code == "too_many_uploads"' "$TMP/body" >/dev/null &&
    ok "a third concurrent upload of one user: 429 too_many_uploads before the body" ||
    bad "third concurrent upload: $CODE after $SENT bytes: $(head -c 300 "$TMP/body")"
req PUT /api/v1/models/slowbob -H "Authorization: Bearer $BOB" --data-binary @"$TMP/tiny0.safetensors"
expect "another user's upload is not held up (201)" 201 ""
areq DELETE /api/v1/models/slowbob
req DELETE /api/v1/models/slowbob -H "Authorization: Bearer $BOB"
kill "${SLOW[@]}" 2>/dev/null
for p in "${SLOW[@]}"; do wait "$p" 2>/dev/null; done
# the clients are gone mid-body: their slots come back (a 5000-byte junk upload is then judged, 400)
head -c 5000 /dev/urandom >"$TMP/junk"
for _ in $(seq 1 100); do
    areq PUT /api/v1/models/afterslow --data-binary @"$TMP/junk"
    [ "$CODE" != 429 ] && break
    sleep 0.2
done
expect "uploads dropped mid-body give their slots back" 400 invalid_model
for _ in $(seq 1 50); do [ -z "$(ls -A "$DATA/tmp" 2>/dev/null)" ] && break; sleep 0.1; done
[ -z "$(ls -A "$DATA/tmp" 2>/dev/null)" ] && ok "dropped uploads left nothing in tmp/" || bad "tmp/ holds $(ls "$DATA/tmp")"
CODE=$(curl -s -o "$TMP/body" -w '%{http_code}' -X PUT "${AUTH[@]}" -H 'Transfer-Encoding: chunked' \
    --data-binary @"$TMP/tiny0.safetensors" "$BASE/api/v1/models/chunky")
expect "a chunked upload (no Content-Length) 411" 411 length_required
head -c 5000 /dev/urandom >"$TMP/junk"
areq PUT /api/v1/models/junk --data-binary @"$TMP/junk"
expect "PUT a non-model 400 with the engine's message" 400 invalid_model
jqcheck "invalid upload's message says 'the upload', not the temp path" "$TMP/body" \
    '(.error.message | contains("the upload")) and (.error.message | contains("/tmp/") | not) and (.error.message | contains("upload-") | not)'
[ -e "$DATA/models/junk.safetensors" ] && bad "invalid upload left a file" || ok "invalid upload leaves nothing"
# a lying header length is refused from the first 8 bytes, before the engine runs
printf '\x00\x00\x10\x00\x00\x00\x00\x00{"x":1}' >"$TMP/liar"
areq PUT /api/v1/models/liar --data-binary @"$TMP/liar"
expect "PUT with a header length past the end 400" 400 invalid_model
jqcheck "the refusal names the header length and the file size" "$TMP/body" \
    '.error.message | contains("header length 1048576 runs past its end (file of 15 bytes)")'
printf '\x05\x00\x00\x00\x00\x00\x00\x00[1,2]' >"$TMP/notobj"
areq PUT /api/v1/models/notobj --data-binary @"$TMP/notobj"
expect "PUT with a header that is not an object 400" 400 invalid_model
# a model's dataset is a dataset name, from ?dataset= or from the checkpoint's metadata
up 'tinyds?dataset=..%2F..%2Fetc%2Fpasswd' "${AUTH[@]}"
[ "$CODE" = 400 ] && [ "$SENT" = 0 ] && jq -e '.error.code == "invalid_value" and .error.field == "dataset"' "$TMP/body" >/dev/null &&
    ok "PUT with ?dataset=../../etc/passwd: 400 invalid_value (dataset) before the body" ||
    bad "PUT with a traversal dataset: $CODE after $SENT bytes: $(head -c 300 "$TMP/body")"
LC_ALL=C sed 's#synthetic:n=256,classes=4#../../../../../../etc/pwd#' "$TMP/tiny0.safetensors" >"$TMP/evilds.safetensors"
areq PUT /api/v1/models/evilds --data-binary @"$TMP/evilds.safetensors"
expect "PUT of a checkpoint whose metadata names ../../etc/pwd as its dataset 400" 400 invalid_value dataset
[ -e "$DATA/models/evilds.safetensors" ] && bad "the refused checkpoint was kept" || ok "the refused checkpoint is not kept"
printf 'abc' >"$TMP/tiny"
areq PUT /api/v1/models/tinyjunk --data-binary @"$TMP/tiny"
expect "PUT of 3 bytes 400" 400 invalid_model
areq PUT '/api/v1/models/..%2F..%2Fetc' --data-binary @"$TMP/tiny0.safetensors"
case "$CODE" in 400 | 404) ok "PUT with a traversal name refused ($CODE)" ;; *) bad "traversal PUT answered $CODE" ;; esac
areq PUT '/api/v1/models/a%20b' --data-binary @"$TMP/tiny0.safetensors"
expect "PUT with a bad name 400" 400 bad_name name
req GET '/api/v1/models/..'
case "$CODE" in 400 | 404) ok "GET /models/.. refused ($CODE)" ;; *) bad "GET /models/.. answered $CODE" ;; esac
req GET /api/v1/models
jqcheck "model list" "$TMP/body" '.models | map(.name) == ["tiny0"]'
# a checkpoint broken behind the daemon's back: the engine's complaint, without server paths
areq PUT /api/v1/models/tinyc --data-binary @"$TMP/tiny0.safetensors"
expect "PUT a second model 201" 201 ""
printf '\x10\x00\x00\x00\x00\x00\x00\x00{"a":1}' >"$DATA/models/tinyc.safetensors"
req GET /api/v1/models/tinyc/components
expect "components of a broken checkpoint 502 engine_error" 502 engine_error
jqcheck "its message names the model, not the server's paths" "$TMP/body" \
    "(.error.message | contains(\"the checkpoint of tinyc\")) and (.error.message | contains(\"$DATA\") | not) and (.error.message | contains(\"/models/\") | not)"
areq DELETE /api/v1/models/tinyc
expect "delete the broken model 200" 200 ""
req GET /api/v1/models/tiny0/components
expect "components 200" 200 ""
jqcheck "components lists out_proj with its alias" "$TMP/body" '.total | map(select(.component == "out_proj" and .alias == "linear_out")) | length == 1'
req GET /api/v1/models/nope
expect "unknown model 404" 404 not_found
req GET /api/v1/datasets
jqcheck "datasets list synthetic as available" "$TMP/body" \
    '(.datasets | map(.name) | index("fashion-mnist")) != null and (.datasets[] | select(.name == "synthetic") | .available)'

alive
# ------------------------------------------------------------------ bad job bodies
areq POST /api/v1/jobs --data-binary '{"type": "ablation", "rates": [0.3,]}'
expect "malformed JSON 400" 400 bad_json
jqcheck "bad_json names the position" "$TMP/body" '.error.message | test("line 1 column")'
req POST /api/v1/jobs --data-binary '{"type": tru}'
expect "malformed JSON without a token: 400 before 401" 400 bad_json
post_job "unknown model 404 with field model" \
    '{"type":"ablation","model":"nosuch","components":["mlp"],"rates":[0.5]}' 404 unknown_model model
post_job "unknown field 400" \
    '{"type":"ablation","model":"tiny0","components":["mlp"],"rates":[0.5],"ratez":1}' 400 unknown_field ratez
post_job "unknown component 400" \
    '{"type":"ablation","model":"tiny0","components":["mlp","linear_zz"],"rates":[0.5]}' 400 unknown_component "components[1]"
# the vocabulary: the names every spec accepts, from the one table both processes parse with
areq GET /api/v1/vocabulary
expect "vocabulary 200" 200 ""
jqcheck "vocabulary: 10 components with aliases, units and the recommended flag" "$TMP/body" \
    '(.components | length == 10) and (.components[] | select(.name == "gate") | .alias == "linear_gate" and .structured and .recommended)
     and (.components[] | select(.name == "D") | (.structured | not) and (.recommended | not) and .structured_unit == null)
     and (.criteria | map(.name) | index("wanda") != null) and (.job_types | map(.name) == ["train","ablation","sensitivity","joint","rsst","lite"])
     and (.job_types[] | select(.name == "rsst") | .keys | index("spec") != null)'
# rsst / lite specs are parsed by the engine's own parser at submission, dry run or not
for q in '?dry_run=1' ''; do
    areq POST "/api/v1/jobs$q" --data-binary '{"type":"rsst","model":"tiny0","spec":{"prune":[{"component":"mlp","rate":0.5}],"round":2}}'
    expect "rsst spec with an unknown key 400${q:+ (dry run)}" 400 unknown_field spec.round
    areq POST "/api/v1/jobs$q" --data-binary '{"type":"rsst","model":"tiny0","spec":{"prune":[{"component":"linear_q","rate":0.5}]}}'
    expect "rsst spec with a bad component 400${q:+ (dry run)}" 400 unknown_component "spec.prune[0].component"
    areq POST "/api/v1/jobs$q" --data-binary '{"type":"lite","model":"tiny0","spec":{"target":{"d_state":2},"finetune":{"lr":50}}}'
    expect "lite spec with an out-of-range rate 400${q:+ (dry run)}" 400 invalid_value spec.finetune.lr
    areq POST "/api/v1/jobs$q" --data-binary '{"type":"rsst","model":"tiny0","spec":{"prune":[{"component":"mlp","rate":1.5}]}}'
    expect "rsst spec with rate 1.5 400${q:+ (dry run)}" 400 invalid_value "spec.prune[0].rate"
done
post_job "rate 1.5 400" \
    '{"type":"ablation","model":"tiny0","components":["mlp"],"rates":[0.3,1.5]}' 400 invalid_value "rates[1]"
post_job "rate as a string 400" \
    '{"type":"ablation","model":"tiny0","components":["mlp"],"rates":["0.3"]}' 400 invalid_value "rates[0]"
post_job "a repeated rate 400, naming the repeat" \
    '{"type":"ablation","model":"tiny0","components":["mlp"],"rates":[0.5,0.3,5e-1]}' 400 duplicate_value "rates[2]"
jqcheck "the repeat's message names the first" "$TMP/body" '.error.message | contains("rates[0]")'
areq POST '/api/v1/jobs?dry_run=1' --data-binary '{"type":"ablation","model":"tiny0","components":["out_proj","mlp","linear_out"],"rates":[0.5]}'
expect "dry run: a component and its alias are one grid point 400" 400 duplicate_value "components[2]"
areq POST '/api/v1/jobs?dry_run=1' --data-binary '{"type":"joint","model":"tiny0","configs":[{"mlp":0.5,"gate":0.3},{"gate":0.3,"mlp":0.5}]}'
expect "dry run: two equal joint configs 400" 400 duplicate_value "configs[1]"
areq POST '/api/v1/jobs?dry_run=1' --data-binary '{"type":"ablation","model":"tiny0","components":["mlp"],"rates":[0.5],"seeds":[1,2,1]}'
expect "dry run: a repeated seed 400" 400 duplicate_value "seeds[2]"
post_job "empty grid 400" '{"type":"ablation","model":"tiny0","components":[],"rates":[0.5]}' 400 empty_grid components
RATES=$(seq 0 1000 | awk '{ if (NR > 1) printf ","; printf "%.6f", $1 / 1002 }')
post_job "10,010-cell grid refused" \
    "{\"type\":\"ablation\",\"model\":\"tiny0\",\"components\":[\"out_proj\",\"mlp\",\"gate\",\"in_proj\",\"conv1d\",\"x_proj_bc\",\"dt\",\"A\",\"D\",\"layer\"],\"rates\":[$RATES]}" \
    400 grid_too_large rates
post_job "traversal in the model name 400" \
    '{"type":"ablation","model":"../../etc/passwd","components":["mlp"],"rates":[0.5]}' 400 invalid_value model
post_job "sensitivity layer out of range 400" \
    '{"type":"sensitivity","model":"tiny0","layers":[0,2],"components":["mlp"],"rate":0.5}' 400 invalid_value "layers[1]"
post_job "unknown job type 400" '{"type":"prune","model":"tiny0"}' 400 invalid_value type
post_job "train into an existing model 409" \
    '{"type":"train","name":"tiny0","dataset":"synthetic:n=256,classes=4","preset":"tiny"}' 409 model_exists name
req GET '/api/v1/jobs?type=bogus'
expect "list with a bad type 400" 400 bad_query type
req GET '/api/v1/jobs?page_token=zzz'
expect "list with a bad page token 400" 400 bad_query page_token
req GET /api/v1/jobs/999999
expect "unknown job 404" 404 not_found

alive
# ------------------------------------------------------------------ dry runs
EVAL='"eval":{"max_samples":32}'
ABL_BODY="{\"type\":\"ablation\",\"model\":\"tiny0\",\"components\":[\"linear_out\",\"mlp\"],\"rates\":[0.3,0.5],$EVAL}"
SENS_BODY="{\"type\":\"sensitivity\",\"model\":\"tiny0\",\"layers\":\"all\",\"components\":[\"mlp\"],\"rate\":0.5,$EVAL}"
req GET '/api/v1/jobs?limit=1000'
cp "$TMP/body" "$TMP/list_before_dry"
areq POST '/api/v1/jobs?dry_run=1' -H 'Idempotency-Key: dry-1' --data-binary "$ABL_BODY"
expect "dry run of an ablation 200" 200 ""
jqcheck "dry run answers dry_run, cells and type" "$TMP/body" '.dry_run == true and .type == "ablation" and (.cells | type == "number") and (has("id") | not)'
DRY_ABL=$(jq -r .cells "$TMP/body")
areq POST '/api/v1/jobs?dry_run=true' --data-binary "$SENS_BODY"
expect "dry_run=true of a sensitivity 200" 200 ""
jqcheck "sensitivity dry run type" "$TMP/body" '.dry_run == true and .type == "sensitivity"'
DRY_SENS=$(jq -r .cells "$TMP/body")
req POST '/api/v1/jobs?dry_run=1' --data-binary "$ABL_BODY"
expect "dry run without a token 401" 401 unauthorized
areq POST '/api/v1/jobs?dry_run=maybe' --data-binary "$ABL_BODY"
expect "dry_run=maybe 400" 400 bad_query dry_run
# A bad body gets exactly the real submission's error (status and body).
for body in '{"type":"ablation","model":"tiny0","components":["mlp","linear_zz"],"rates":[0.5]}' \
    '{"type":"ablation","model":"nosuch","components":["mlp"],"rates":[0.5]}' \
    '{"type":"sensitivity","model":"tiny0","layers":[0,2],"components":["mlp"],"rate":0.5}' \
    '{"type":"ablation","model":"tiny0","components":["mlp"],"rates":[0.5],"ratez":1}' \
    '{"type":"train","name":"tiny0","dataset":"synthetic:n=256,classes=4","preset":"tiny"}' \
    '{"type": "ablation", "rates": [0.3,]}'; do
    areq POST /api/v1/jobs --data-binary "$body"
    REAL="$CODE $(jq -cS . "$TMP/body")"
    areq POST '/api/v1/jobs?dry_run=1' --data-binary "$body"
    DRY="$CODE $(jq -cS . "$TMP/body")"
    if [ "$REAL" = "$DRY" ] && [ "${CODE:0:1}" = 4 ]; then ok "dry run error = real error ($CODE $(jq -r .error.code "$TMP/body"))"
    else bad "dry run error differs: real $REAL, dry $DRY"; fi
done
req GET '/api/v1/jobs?limit=1000'
cmp -s "$TMP/body" "$TMP/list_before_dry" && ok "dry runs and refused bodies created no job" ||
    bad "the job list changed: $(head -c 300 "$TMP/body")"
# The dry run's Idempotency-Key was not recorded: the key is free for another body.
areq POST /api/v1/jobs -H 'Idempotency-Key: dry-1' --data-binary "$SENS_BODY"
expect "a dry run's Idempotency-Key stays unused" 202 ""
SENS0=$(jq -r .id "$TMP/body")
jqcheck "real sensitivity cells = dry run's" "$TMP/body" ".cells == $DRY_SENS and .cells == 2 and .replayed == false"
req GET '/api/v1/jobs?limit=1'
jqcheck "the next listing shows the new job" "$TMP/body" ".jobs[0].id == $SENS0"

alive
# ------------------------------------------------------------------ jobs to completion
post_job "train job 202" \
    "{\"type\":\"train\",\"name\":\"tiny1\",\"dataset\":\"synthetic:n=256,classes=4\",\"preset\":\"tiny\",\"epochs\":1,\"batch\":32,$EVAL}" 202 ""
TRAIN=$(jq -r .id "$TMP/body")
jqcheck "train job has 1 cell" "$TMP/body" '.cells == 1'
grep -qi "^location: /api/v1/jobs/$TRAIN" "$TMP/headers" && ok "202 carries Location" || bad "Location header"

areq POST /api/v1/jobs -H 'Idempotency-Key: abl-1' --data-binary "$ABL_BODY"
expect "ablation 202" 202 ""
ABLID=$(jq -r .id "$TMP/body")
jqcheck "ablation 2x2 = 4 cells" "$TMP/body" '.cells == 4'
jqcheck "real ablation cells = dry run's" "$TMP/body" ".cells == $DRY_ABL"
req GET "/api/v1/jobs/$ABLID"
expect "the job by its id 200" 200 ""
for alias in "%2B$ABLID" "%20$ABLID" "0$ABLID" "$ABLID%20"; do # +ID, " ID", 0ID, "ID ": no job
    req GET "/api/v1/jobs/$alias"
    expect "job id spelled '$alias' 404" 404 not_found
done
areq POST /api/v1/jobs -H 'Idempotency-Key: abl-1' --data-binary "$ABL_BODY"
[ "$CODE" = 202 ] && [ "$(jq -r .id "$TMP/body")" = "$ABLID" ] && ok "Idempotency-Key replay returns the same job" ||
    bad "idempotent replay ($CODE $(head -c 200 "$TMP/body"))"
areq POST /api/v1/jobs -H 'Idempotency-Key: abl-1' --data-binary "${ABL_BODY/0.5/0.6}"
expect "Idempotency-Key with another body 409" 409 idempotency_conflict
post_job "sensitivity 202" "$SENS_BODY" 202 ""
SENS=$(jq -r .id "$TMP/body")
jqcheck "sensitivity over all 2 layers = 2 cells" "$TMP/body" '.cells == 2'
post_job "joint 202" \
    "{\"type\":\"joint\",\"model\":\"tiny0\",\"configs\":[{\"mlp\":0.5,\"linear_out\":0.3},{\"conv1d\":0.25}],$EVAL}" 202 ""
JOINT=$(jq -r .id "$TMP/body")
# A spec the engine would refuse is refused at submission (above); a dataset name only the
# engine resolves gets through and fails in the cell, with the engine's error.
post_job "rsst job with a dataset only the engine checks is accepted" \
    '{"type":"rsst","model":"tiny0","dataset":"imagenet","spec":{"prune":[{"component":"mlp","rate":0.5}]}}' 202 ""
BADRSST=$(jq -r .id "$TMP/body")

req GET "/api/v1/jobs?type=ablation&order=oldest&limit=1"
jqcheck "list filtered by type" "$TMP/body" ".jobs | length == 1 and .[0].id == $ABLID and .[0].owner == \"alice\""
req GET "/api/v1/jobs?order=oldest&limit=2"
TOKEN=$(jq -r .next_page_token "$TMP/body")
req GET "/api/v1/jobs?order=oldest&limit=2&page_token=$TOKEN"
jqcheck "second page continues" "$TMP/body" ".jobs | length == 2 and .[0].id == $ABLID and .[1].id == $SENS"

# permissions
req POST "/api/v1/jobs/$ABLID/cancel" -H "Authorization: Bearer $BOB"
expect "another user cannot cancel 403" 403 forbidden
req DELETE "/api/v1/jobs/$ABLID" -H "Authorization: Bearer $BOB"
expect "another user cannot delete 403" 403 forbidden
"$BIN" user revoke bob --data-dir "$DATA" >/dev/null 2>&1
req POST /api/v1/jobs -H "Authorization: Bearer $BOB" --data-binary "$ABL"
expect "revoked token 403 token_revoked" 403 token_revoked
req GET /api/v1/jobs -H "Authorization: Bearer $BOB"
expect "a read with a revoked token 403" 403 token_revoked
req GET /api/v1/jobs -H "Authorization: Bearer plt_$(printf '%064d' 1)"
expect "a read with an unknown token 401" 401 invalid_token
areq GET /api/v1/jobs
expect "a read with an active token 200" 200 ""
req GET /api/v1/jobs -H "Authorization: Bearer $BOB"
jqcheck "the revoked-token message names 'prunelabd user token'" "$TMP/body" \
    '.error.message | contains("prunelabd user token")'
BOB2=$("$BIN" user token bob --data-dir "$DATA" 2>"$TMP/user.err" | grep -o 'plt_[0-9a-f]\{64\}')
[ -n "$BOB2" ] && ok "user token gives a revoked user a new token" ||
    bad "user token bob printed no token: $(head -c 200 "$TMP/user.err")"
req DELETE "/api/v1/jobs/$ABLID" -H "Authorization: Bearer $BOB2"
expect "the new token authenticates (bob is still not alice's owner: 403 forbidden)" 403 forbidden
req GET /api/v1/jobs -H "Authorization: Bearer $BOB"
expect "the old token stays revoked" 403 token_revoked
if "$BIN" user token nobody --data-dir "$DATA" >/dev/null 2>"$TMP/user.err"; then
    bad "user token for an unknown user succeeded"
elif grep -q "user add nobody" "$TMP/user.err"; then ok "user token for an unknown user fails with a hint"
else bad "user token nobody: no hint: $(head -c 200 "$TMP/user.err")"; fi

for id in $TRAIN $ABLID $SENS $JOINT; do
    if wait_job "$id" 80 && [ "$STATE" = done ]; then ok "job $id done"
    else bad "job $id ended $STATE: $(head -c 600 "$TMP/job")"; fi
done
jqcheck "joint job: 2 cells done, progress 1" "$TMP/job" '.counts.done == 2 and .progress == 1'
req GET "/api/v1/jobs/$ABLID"
jqcheck "ablation: 4 cells done, progress 1" "$TMP/body" '.counts.done == 4 and .progress == 1 and .state == "done"'
areq POST /api/v1/jobs -H 'Idempotency-Key: abl-1' --data-binary "$ABL_BODY"
jqcheck "a replay of the finished job reports its state (done), not queued" "$TMP/body" \
    ".id == $ABLID and .replayed == true and .state == \"done\""
req GET /api/v1/models/tiny1
expect "the train job registered its model" 200 ""
req GET "/api/v1/jobs/$ABLID/results.json"
jqcheck "results.json: 4 rows with coordinates and accuracy" "$TMP/body" \
    '.rows | length == 4 and all(.[]; (.accuracy | type == "number") and (.rate | type == "number") and (.component | type == "string") and (.params | type == "number"))'
jqcheck "every result carries its delta and sparsity" "$TMP/body" \
    '.rows | all(.[]; (.delta_accuracy | type == "number") and .sparsity > 0 and .sparsity < 1)'
req GET "/api/v1/jobs/$ABLID/results.csv"
expect "results.csv 200" 200 ""
[ "$(wc -l <"$TMP/body")" -eq 5 ] && ok "results.csv: header + 4 rows" || bad "results.csv rows: $(cat "$TMP/body")"
head -1 "$TMP/body" | grep -q '^idx,cell_id,state,component,.*accuracy' && ok "results.csv header" || bad "csv header: $(head -1 "$TMP/body")"
grep -qi '^content-type: text/csv' "$TMP/headers" && ok "results.csv is text/csv" || bad "csv content type"
req GET "/api/v1/jobs/$SENS/cells"
jqcheck "sensitivity cells carry layer and result" "$TMP/body" \
    '.cells | length == 2 and (map(.spec.layer) == [0, 1]) and all(.[]; .result.accuracy | type == "number")'
req GET "/api/v1/jobs/$JOINT/results.csv"
grep -q 'linear_out=0.3;mlp=0.5\|mlp=0.5;linear_out=0.3' "$TMP/body" && ok "joint CSV shows the config" || bad "joint CSV: $(cat "$TMP/body")"

# long-poll on a finished job returns at once
T0=$SECONDS
req GET "/api/v1/jobs/$ABLID?wait=20"
[ $((SECONDS - T0)) -lt 5 ] && [ "$CODE" = 200 ] && ok "long-poll on a finished job returns at once" || bad "long-poll"

# retry of failed cells
if wait_job "$BADRSST" 60 && [ "$STATE" = failed ]; then ok "bad rsst spec: job failed"; else bad "bad rsst job ended $STATE"; fi
req GET "/api/v1/jobs/$BADRSST/cells"
jqcheck "failed cell carries the engine's error" "$TMP/body" '.cells[0].state == "failed" and .cells[0].error.code == "bad_spec"'
areq POST "/api/v1/jobs/$ABLID/retry"
expect "retry with no failed cells 409" 409 nothing_to_retry
req POST "/api/v1/jobs/$BADRSST/retry" -H "Authorization: Bearer $ROOT"
expect "admin retries failed cells 200" 200 ""
jqcheck "one cell requeued" "$TMP/body" '.requeued == 1'
wait_job "$BADRSST" 60
[ "$STATE" = failed ] && ok "retried cell ran again and failed again" || bad "retried job ended $STATE"

# cancel
post_job "big ablation 202" \
    '{"type":"ablation","model":"tiny0","components":["linear_out","mlp","linear_gate","linear_in","conv1d","linear_B_C"],"rates":[0.3,0.5,0.7,0.9]}' 202 ""
BIG=$(jq -r .id "$TMP/body")
jqcheck "the notes' grid is 24 cells" "$TMP/body" '.cells == 24'
req GET /api/v1/jobs
jqcheck "the listing shows the big job first" "$TMP/body" ".jobs[0].id == $BIG and .jobs[0].cells == 24"
areq POST "/api/v1/jobs/$BIG/cancel"
expect "cancel 200" 200 ""
req GET /api/v1/jobs
jqcheck "the next listing shows it cancelled" "$TMP/body" ".jobs[0].id == $BIG and .jobs[0].state == \"cancelled\""
wait_job "$BIG" 30
[ "$STATE" = cancelled ] && ok "cancelled job stays cancelled" || bad "cancelled job ended $STATE"
req GET "/api/v1/jobs/$BIG"
jqcheck "cancelled job: no queued or running cells" "$TMP/body" '.counts.queued == 0 and .counts.running == 0 and .counts.cancelled >= 1'
areq POST "/api/v1/jobs/$ABLID/cancel"
expect "cancel a done job 409" 409 not_cancellable

# delete
areq DELETE "/api/v1/jobs/$BIG"
expect "delete 200" 200 ""
req GET "/api/v1/jobs/$BIG"
expect "deleted job 404" 404 not_found
req GET /api/v1/jobs
jqcheck "the next listing no longer has it" "$TMP/body" "(.jobs | map(.id) | index($BIG)) == null and (.jobs | length) > 0"
areq DELETE /api/v1/models/tiny1
expect "owner deletes the trained model" 200 ""
[ -e "$DATA/models/tiny1.safetensors" ] && bad "deleted model file left" || ok "model file removed"

# a train job's output name is reserved at submission: a second job into the same name is refused
# (long enough to be cancelled while it runs; cancelled before it could finish)
TWIN='{"type":"train","name":"twin","dataset":"synthetic:n=64,classes=4","preset":"tiny","epochs":5000,"priority":-5}'
post_job "train into a free name 202" "$TWIN" 202 ""
TWINID=$(jq -r .id "$TMP/body")
post_job "a second train job into the same name 409" "${TWIN/\"epochs\":5000/\"epochs\":5001}" 409 model_exists name
areq POST "/api/v1/jobs/$TWINID/cancel"
expect "cancel the first 200" 200 ""
post_job "its name is free once it is cancelled 202" "${TWIN/\"epochs\":5000/\"epochs\":5001}" 202 ""
TWIN2=$(jq -r .id "$TMP/body")
areq POST "/api/v1/jobs/$TWIN2/cancel"

kill -TERM $PID
for _ in $(seq 100); do kill -0 $PID 2>/dev/null || break; sleep 0.1; done
wait $PID; rc=$?
[ $rc -eq 0 ] && ok "SIGTERM -> exit 0" || bad "exit status $rc after SIGTERM"
PID=
finish
