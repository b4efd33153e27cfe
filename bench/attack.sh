#!/bin/bash
# bench/attack.sh — the hardening checks of a shared lab server, run against a real daemon the way
# a careless or hostile user would, each printed as one row: what was tried, what came back, and
# whether the server held (nothing lost, nothing run that should not be, no server work for an
# anonymous client). The loaded cases have their own scripts: bench/api_slow.sh (slow clients),
# bench/api_components.sh (component bursts), bench/api_pages.sh (10,000-cell pages).
#
# Usage: bench/attack.sh   (from the top of the tree, after `make`)
# Env:   PRUNELABD_BIN (./prunelabd), PRUNELAB_BIN (./prunelab), TRIALS (25), KEEP=1 keeps the temp dir.
set -u
BIN=${PRUNELABD_BIN:-./prunelabd}
ENGINE=${PRUNELAB_BIN:-./prunelab}
TRIALS=${TRIALS:-25}
die() { echo "attack.sh: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "PRUNELABD_BIN=$BIN is not an executable (run make)"
[ -x "$ENGINE" ] || die "PRUNELAB_BIN=$ENGINE is not an executable (run make)"
for tool in curl jq; do command -v $tool >/dev/null || die "$tool is required (apt-get install $tool)"; done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/prunelab-attack.XXXXXX")
PID=
cleanup() {
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && sleep 1 && kill -KILL "$PID" 2>/dev/null
    if [ "${KEEP:-0}" = 1 ]; then echo "attack.sh: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
DATA=$TMP/var
mkdir -p "$DATA"
ALICE=$("$BIN" user add alice --data-dir "$DATA" 2>/dev/null | grep -o 'plt_[0-9a-f]\{64\}')
BOB=$("$BIN" user add bob --data-dir "$DATA" 2>/dev/null | grep -o 'plt_[0-9a-f]\{64\}')
"$BIN" --listen 127.0.0.1:0 --data-dir "$DATA" --workers 2 >"$TMP/stdout" 2>"$TMP/stderr" &
PID=$!
for _ in $(seq 100); do grep -q '^prunelabd listening' "$TMP/stdout" && break; sleep 0.1; done
PORT=$(sed -n 's|^prunelabd listening on http://127\.0\.0\.1:\([0-9]*\)/$|\1|p' "$TMP/stdout")
[ -n "$PORT" ] || die "the daemon did not start: $(cat "$TMP/stderr")"
BASE=http://127.0.0.1:$PORT
A=(-H "Authorization: Bearer $ALICE")
HELD=0 BROKE=0
row() { # row ATTACK RESULT HELD(1/0)
    local v=held
    if [ "$3" = 1 ]; then HELD=$((HELD + 1)); else v="**broke**"; BROKE=$((BROKE + 1)); fi
    printf '| %s | %s | %s |\n' "$1" "$2" "$v"
}
wbytes() { awk '/^write_bytes/ {print $2}' /proc/$PID/io; }
"$ENGINE" init --preset tiny --dataset synthetic:n=256,classes=4 --out "$TMP/tiny.safetensors" >/dev/null 2>&1 ||
    die "prunelab init failed"
curl -s -o /dev/null -X PUT "${A[@]}" --data-binary @"$TMP/tiny.safetensors" "$BASE/api/v1/models/tiny0"

echo "prunelabd $BASE, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "| attack | what came back | server |"
echo "|---|---|---|"

# 3. an anonymous 300 MB upload
truncate -s 300M "$TMP/big"
w0=$(wbytes)
r=$(curl -s -o "$TMP/b" -w '%{http_code} %{size_upload}' -X PUT --data-binary @"$TMP/big" "$BASE/api/v1/models/big")
w1=$(wbytes)
row "anonymous 300 MB PUT" "$r bytes sent; daemon wrote $((w1 - w0)) bytes" $([ "${r%% *}" = 401 ] && [ $((w1 - w0)) -lt 1048576 ] && echo 1 || echo 0)

# 3. three concurrent uploads of one user
pids=()
for n in up1 up2; do
    curl -s -o /dev/null -X PUT "${A[@]}" --limit-rate 1M --data-binary @"$TMP/big" "$BASE/api/v1/models/$n" & pids+=($!)
done
sleep 1
r=$(curl -s -o "$TMP/b" -w '%{http_code} %{size_upload}' -X PUT "${A[@]}" --data-binary @"$TMP/big" "$BASE/api/v1/models/up3")
kill "${pids[@]}" 2>/dev/null; for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
row "a third 300 MB upload while two stream" "$r bytes sent ($(jq -r .error.code "$TMP/b"))" $([ "${r%% *}" = 429 ] && echo 1 || echo 0)

# 4. 500 MB of junk with a plausible header length, as a user
head -c 500000000 /dev/urandom >"$TMP/junk"
printf '\x10\x00\x00\x00\x00\x00\x00\x00' | dd of="$TMP/junk" conv=notrunc 2>/dev/null
r=$(curl -s -o "$TMP/b" -w '%{http_code}' -X PUT "${A[@]}" --data-binary @"$TMP/junk" "$BASE/api/v1/models/junk")
hwm=$(awk '/^VmHWM/ {print $2}' /proc/$PID/status)
row "500 MB junk upload" "$r $(jq -r .error.code "$TMP/b"); daemon peak RSS $((hwm / 1024)) MiB" $([ "$r" = 400 ] && [ "$hwm" -lt 102400 ] && echo 1 || echo 0)
rm -f "$TMP/junk" "$TMP/big"

# 7. delete a model while a job on it is submitted, TRIALS times
lost=0 acc=0 del=0
for i in $(seq "$TRIALS"); do
    curl -s -o /dev/null -X PUT "${A[@]}" --data-binary @"$TMP/tiny.safetensors" "$BASE/api/v1/models/race$i"
    curl -s -o "$TMP/del$i" -w '%{http_code}' -X DELETE "${A[@]}" "$BASE/api/v1/models/race$i" >"$TMP/dc$i" & d=$!
    curl -s -o "$TMP/job$i" -w '%{http_code}' -X POST "${A[@]}" --data-binary \
        "{\"type\":\"ablation\",\"model\":\"race$i\",\"components\":[\"mlp\"],\"rates\":[0.5],\"eval\":{\"max_samples\":16}}" \
        "$BASE/api/v1/jobs" >"$TMP/jc$i" & j=$!
    wait "$d" "$j"
    dc=$(cat "$TMP/dc$i") jc=$(cat "$TMP/jc$i")
    [ "$jc" = 202 ] && acc=$((acc + 1))
    [ "$dc" = 200 ] && del=$((del + 1))
    [ "$jc" = 202 ] && [ "$dc" = 200 ] && lost=$((lost + 1))
done
row "DELETE a model while submitting a job on it, $TRIALS times" "$acc jobs accepted, $del models deleted, $lost both" $([ $lost = 0 ] && echo 1 || echo 0)

# 7. two train jobs into one output name
T='{"type":"train","name":"same","dataset":"synthetic:n=64,classes=2","preset":"tiny","epochs":1}'
c1=$(curl -s -o "$TMP/t1" -w '%{http_code}' -X POST "${A[@]}" --data-binary "$T" "$BASE/api/v1/jobs")
c2=$(curl -s -o "$TMP/t2" -w '%{http_code}' -X POST -H "Authorization: Bearer $BOB" --data-binary "$T" "$BASE/api/v1/jobs")
row "two train jobs naming one output model" "$c1, then $c2 $(jq -r '.error.code // empty' "$TMP/t2")" $([ "$c1" = 202 ] && [ "$c2" = 409 ] && echo 1 || echo 0)

# 9. a train job whose cell would need tens of GB
c=$(curl -s -o "$TMP/b" -w '%{http_code}' -X POST "${A[@]}" --data-binary \
    '{"type":"train","name":"huge","dataset":"synthetic:n=64,classes=2","dims":{"d_model":4096,"layers":48},"batch":512}' \
    "$BASE/api/v1/jobs?dry_run=1")
row "dry run of a train job with d_model 4096, 48 layers, batch 512" "$c $(jq -r '(.error.code // "") + " " + (.error.field // "")' "$TMP/b")" $([ "$c" = 400 ] && echo 1 || echo 0)

# low: duplicate grid points, ids, a bad Content-Length, paths in errors, the database mode
c=$(curl -s -o "$TMP/b" -w '%{http_code}' -X POST "${A[@]}" --data-binary \
    '{"type":"ablation","model":"tiny0","components":["out_proj","linear_out"],"rates":[0.5]}' "$BASE/api/v1/jobs?dry_run=1")
row "dry run with out_proj and its alias linear_out" "$c $(jq -r '.error.code + " " + .error.field' "$TMP/b")" $([ "$c" = 400 ] && echo 1 || echo 0)
r=""
for id in '+1' '%201' '01' '1.0'; do r="$r $id:$(curl -s -o /dev/null -w '%{http_code}' "$BASE/api/v1/jobs/$id")"; done
row "job ids +1, %201, 01, 1.0" "$r" $(echo "$r" | grep -qv ':[^4]' && echo 1 || echo 0)
c=$(curl -s -o "$TMP/b" -w '%{http_code} %{content_type}' -X POST "${A[@]}" -H 'Content-Length: 2' -H 'Content-Length: 9' \
    --data-binary '{}' "$BASE/api/v1/jobs")
row "POST with two conflicting Content-Lengths" "$c $(jq -r '.error.code + " " + .error.field' "$TMP/b" 2>/dev/null)" \
    $(echo "$c" | grep -q '^400 application/json' && echo 1 || echo 0)
c=$(curl -s -o "$TMP/b" -w '%{http_code} %{content_type}' -X POST "${A[@]}" -H 'Content-Length: abc' --data-binary '{}' "$BASE/api/v1/jobs")
# libmicrohttpd 0.9.75 parses Content-Length itself and answers a malformed one with its own HTML
# page before any callback of ours runs: refused, but not in our JSON shape
row "POST with Content-Length: abc (answered by libmicrohttpd)" "$c" $(echo "$c" | grep -q '^400' && echo 1 || echo 0)
printf '\x10\x00\x00\x00\x00\x00\x00\x00{"a":1}' >"$DATA/models/tiny0.safetensors.broken"
cp "$DATA/models/tiny0.safetensors" "$TMP/keep"; cp "$DATA/models/tiny0.safetensors.broken" "$DATA/models/tiny0.safetensors"
c=$(curl -s -o "$TMP/b" -w '%{http_code}' "$BASE/api/v1/models/tiny0/components")
cp "$TMP/keep" "$DATA/models/tiny0.safetensors"
row "components of a checkpoint broken on disk" "$c: $(jq -r .error.message "$TMP/b" | head -c 90)" $(grep -q "$DATA" "$TMP/b" && echo 0 || echo 1)
"$BIN" user revoke bob --data-dir "$DATA" >/dev/null 2>&1
c=$(curl -s -o "$TMP/b" -w '%{http_code}' -H "Authorization: Bearer $BOB" "$BASE/api/v1/jobs")
NEW=$("$BIN" user token bob --data-dir "$DATA" 2>/dev/null | grep -o 'plt_[0-9a-f]\{64\}')
c2=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $NEW" "$BASE/api/v1/jobs")
row "a revoked user asks for a way back" "$c ($(jq -r .error.message "$TMP/b" | grep -o 'prunelabd user token[^)]*')), new token: $c2" $([ "$c2" = 200 ] && echo 1 || echo 0)
m=$(stat -c %a "$DATA/prunelab.db")
row "the database file's mode" "$m" $([ "$m" = 600 ] && echo 1 || echo 0)
kill -0 "$PID" 2>/dev/null && a=alive || a=dead
row "the daemon after all of the above" "$a; /healthz $(curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz")" $([ $a = alive ] && echo 1 || echo 0)
echo
echo "$HELD held, $BROKE broke"
