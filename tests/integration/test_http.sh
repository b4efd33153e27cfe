#!/bin/bash
# tests/integration/test_http.sh — prunelabd's HTTP layer against a real daemon.
# Starts prunelabd on 127.0.0.1 port 0 with a temp data dir and a config file, reads the port
# from its stdout line, then checks: /healthz, /metrics counters, 404 / 405 JSON, strict JSON
# with the error position, body caps (413, Content-Length and chunked), the file-streamed
# upload route and its cap, path traversal, flag/file precedence, config and flag errors,
# a second daemon on the same port or data dir, and SIGTERM -> exit 0.
# Env: PRUNELABD_BIN (default ./prunelabd). Needs curl and jq.
NAME=test_http
BIN=${PRUNELABD_BIN:-./prunelabd}
. "$(dirname "$0")/lib.sh"
FAILS=0
PASSES=0
ok() { PASSES=$((PASSES + 1)); echo "ok   - $1"; }
bad() { FAILS=$((FAILS + 1)); echo "FAIL - $1"; }
jqcheck() { # jqcheck DESCRIPTION FILE FILTER
    if jq -e "$3" "$2" >/dev/null 2>&1; then ok "$1"; else bad "$1 (body: $(head -c 300 "$2"))"; fi
}
# req METHOD PATH [curl args...]: status code in $CODE, body in $TMP/body, headers in $TMP/headers
req() {
    local m=$1 p=$2; shift 2
    if [ "$m" = HEAD ]; then set -- -I "$@"; else set -- -X "$m" "$@"; fi # -X HEAD would wait for a body
    CODE=$(curl -s --path-as-is -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' "$@" "$BASE$p")
}
expect() { # expect DESCRIPTION STATUS ERROR-CODE-or-"" (uses the last req)
    if [ "$CODE" != "$2" ]; then
        bad "$1 (status $CODE, want $2: $(head -c 300 "$TMP/body"))"
    elif [ -n "$3" ]; then
        jqcheck "$1" "$TMP/body" ".error.code == \"$3\" and (.error.message | length > 0) and has(\"error\")"
    else
        ok "$1"
    fi
}

# ------------------------------------------------------------------ command line
if "$BIN" --help >"$TMP/help" 2>&1 && grep -q -- '--listen HOST:PORT' "$TMP/help" &&
    grep -q 'body_max' "$TMP/help"; then ok "--help exits 0 with usage and config keys"; else bad "--help"; fi
"$BIN" --bogus >"$TMP/out" 2>"$TMP/err"; rc=$?
if [ $rc -eq 2 ] && grep -q "unknown option '--bogus'.*--help" "$TMP/err"; then ok "unknown flag refused with a hint"
else bad "unknown flag (rc $rc: $(cat "$TMP/err"))"; fi
"$BIN" --workers zero >"$TMP/out" 2>"$TMP/err"; rc=$?
if [ $rc -eq 2 ] && grep -q -- "--workers: 'zero'" "$TMP/err"; then ok "bad --workers value refused"
else bad "bad --workers (rc $rc: $(cat "$TMP/err"))"; fi
printf 'workers = 1\n# comment\nbogus_key = 3\n' >"$TMP/unknown.conf"
"$BIN" --config "$TMP/unknown.conf" >"$TMP/out" 2>"$TMP/err"; rc=$?
if [ $rc -ne 0 ] && grep -q "unknown.conf:3: unknown key 'bogus_key'" "$TMP/err"; then ok "unknown config key refused with its line"
else bad "unknown config key (rc $rc: $(cat "$TMP/err"))"; fi

# ------------------------------------------------------------------ start
# The file's listen address is overridden by the flag; small caps keep the bodies small.
cat >"$TMP/prunelabd.conf" <<'EOF'
# test configuration
listen = 127.0.0.1:1        # overridden by --listen
body_max = 64K
upload_max = 2M
max_connections_per_ip = 32
EOF
DATA=$TMP/var
"$BIN" --config "$TMP/prunelabd.conf" --listen 127.0.0.1:0 --data-dir "$DATA" >"$TMP/stdout" 2>"$TMP/stderr" &
PID=$!
if ! wait_line "$TMP/stdout" '^prunelabd listening on http://127\.0\.0\.1:[0-9]*/$'; then
    echo "FAIL - daemon did not start: $(cat "$TMP/stderr")"
    exit 1
fi
PORT=$(sed -n 's|^prunelabd listening on http://127\.0\.0\.1:\([0-9]*\)/$|\1|p' "$TMP/stdout")
BASE=http://127.0.0.1:$PORT
ok "listening on port $PORT (flag overrides the file's listen)"
if [ "$(cat "$DATA/prunelabd.port" 2>/dev/null)" = "$PORT" ]; then ok "port file matches"; else bad "port file"; fi
if [ -d "$DATA/models" ] && [ -d "$DATA/tmp" ]; then ok "data dir with models/ and tmp/"; else bad "data dir layout"; fi

# ------------------------------------------------------------------ basic routes
req GET /healthz
expect "GET /healthz 200" 200 ""
jqcheck "/healthz body" "$TMP/body" '.status == "ok" and (.version | type == "string")'
grep -qi '^content-type: application/json' "$TMP/headers" && ok "/healthz is application/json" || bad "/healthz content type"
req GET /healthz
req HEAD /healthz
[ "$CODE" = 200 ] && ok "HEAD /healthz 200" || bad "HEAD /healthz ($CODE)"

req GET /metrics
expect "GET /metrics 200" 200 ""
n=$(sed -n 's/^prunelabd_http_requests_total{method="GET",route="\/healthz",code="200"} \([0-9]*\)$/\1/p' "$TMP/body")
[ "${n:-0}" -ge 2 ] && ok "/metrics counts GET /healthz ($n)" || bad "/metrics healthz counter: $(grep healthz "$TMP/body" | head -3)"
grep -q '^prunelabd_http_request_duration_seconds_bucket{method="GET",route="/healthz",le="+Inf"} ' "$TMP/body" &&
    ok "/metrics has the latency histogram" || bad "/metrics histogram"
grep -qi '^content-type: text/plain' "$TMP/headers" && ok "/metrics is text/plain" || bad "/metrics content type"

req GET /api/v1/openapi.json
expect "GET /api/v1/openapi.json 200" 200 ""
jqcheck "openapi lists the routes" "$TMP/body" \
    '.openapi and .paths["/healthz"].get and .paths["/api/v1/jobs"].post and .paths["/api/v1/models/{name}"].put'

req GET /no/such/thing
expect "unknown path 404 JSON" 404 not_found
req DELETE /healthz
expect "wrong method 405 JSON" 405 method_not_allowed
grep -qi '^allow: GET' "$TMP/headers" && ok "405 carries Allow" || bad "405 Allow header: $(cat "$TMP/headers")"

# ------------------------------------------------------------------ JSON bodies
req POST /api/v1/jobs -H 'Content-Type: application/json' --data-binary '{"type": "ablation", "rates": [0.3,]}'
expect "malformed JSON 400" 400 bad_json
jqcheck "bad_json names the position" "$TMP/body" '.error.message | test("line 1 column 36 \\(byte 36\\)")'
jqcheck "bad_json has field null" "$TMP/body" '.error | has("field") and .field == null'
req POST /api/v1/jobs --data-binary $'{\n  "type": "ablation",\n  "rates": tru\n}'
expect "malformed JSON on line 3" 400 bad_json
jqcheck "position on line 3" "$TMP/body" '.error.message | test("at line 3 column")'
req POST /api/v1/jobs --data-binary '{"a": 1, "a": 2}'
expect "duplicate keys 400" 400 bad_json
req POST /api/v1/jobs --data-binary '[1, 2]'
expect "non-object body 400" 400 bad_json
req POST /api/v1/jobs --data-binary '{"x": 1} trailing'
expect "trailing garbage 400" 400 bad_json
req POST /api/v1/jobs
expect "empty body 400" 400 bad_json
req POST /api/v1/jobs -H 'Content-Type: application/json' --data-binary '{"type": "ablation"}'
expect "valid JSON without a token: 401" 401 unauthorized

# ------------------------------------------------------------------ body caps
head -c 70000 /dev/zero | tr '\0' ' ' >"$TMP/b70k"
req POST /api/v1/jobs --data-binary @"$TMP/b70k"
expect "body over body_max: 413 (Content-Length)" 413 body_too_large
req POST /api/v1/jobs -H 'Transfer-Encoding: chunked' --data-binary @"$TMP/b70k"
expect "body over body_max: 413 (chunked)" 413 body_too_large
head -c 1000000 /dev/urandom >"$TMP/b1m"
req PUT /api/v1/models/m1 -H 'Content-Type: application/octet-stream' --data-binary @"$TMP/b1m"
expect "upload route takes a body over body_max (then 401 without a token)" 401 unauthorized
[ -z "$(ls -A "$DATA/tmp")" ] && ok "upload temp file removed" || bad "upload temp left: $(ls "$DATA/tmp")"
head -c 3000000 /dev/zero >"$TMP/b3m"
req PUT /api/v1/models/m1 --data-binary @"$TMP/b3m"
expect "upload over upload_max: 413" 413 body_too_large

# ------------------------------------------------------------------ paths
req GET '/api/v1/models/..%2Fetc'
expect "..%2Fetc refused" 400 bad_path
req GET '/api/v1/models/%2e%2e'
expect "encoded .. segment refused" 400 bad_path
req GET '/api/v1/models/../../etc/passwd'
expect "literal .. segment refused" 400 bad_path
req GET '/api/v1/models/a%0Ab'
expect "encoded control character refused" 400 bad_path
req GET '/api/v1/models/%zz'
expect "bad percent escape refused" 400 bad_path
req GET '/api/v1/models/caf%C3%A9'
expect "a valid encoded name is routed to the model handler" 400 bad_name
req GET '/api/v1/models/m%31x'
expect "an encoded valid name reaches the model handler" 404 not_found
jqcheck "the name is decoded" "$TMP/body" '.error.message | test("m1x")'

# ------------------------------------------------------------------ access log
wait_line "$TMP/stderr" 'GET /healthz 200 [0-9.]* ms' && ok "access log line per request" ||
    bad "access log: $(tail -3 "$TMP/stderr")"

# ------------------------------------------------------------------ a second daemon
"$BIN" --listen "127.0.0.1:$PORT" --data-dir "$TMP/var2" >"$TMP/out2" 2>"$TMP/err2" &
P2=$!
for _ in $(seq 50); do kill -0 $P2 2>/dev/null || break; sleep 0.1; done
if kill -0 $P2 2>/dev/null; then
    kill -KILL $P2; bad "a second daemon on the same port kept running"
else
    wait $P2; rc=$?
    if [ $rc -ne 0 ] && grep -q "cannot listen on 127.0.0.1:$PORT: Address already in use" "$TMP/err2"; then
        ok "second daemon on the same port fails clearly"
    else
        bad "second daemon on the same port (rc $rc: $(cat "$TMP/err2"))"
    fi
fi
"$BIN" --listen 127.0.0.1:0 --data-dir "$DATA" >"$TMP/out3" 2>"$TMP/err3" &
P3=$!
for _ in $(seq 50); do kill -0 $P3 2>/dev/null || break; sleep 0.1; done
if kill -0 $P3 2>/dev/null; then
    kill -KILL $P3; bad "a second daemon on the same data dir kept running"
else
    wait $P3; rc=$?
    if [ $rc -ne 0 ] && grep -q "is in use by another prunelabd (pid $PID)" "$TMP/err3"; then
        ok "second daemon on the same data dir fails clearly"
    else
        bad "second daemon on the same data dir (rc $rc: $(cat "$TMP/err3"))"
    fi
fi
req GET /healthz
[ "$CODE" = 200 ] && ok "first daemon still serves" || bad "first daemon after the second attempts ($CODE)"

# ------------------------------------------------------------------ SIGTERM
kill -TERM $PID
for _ in $(seq 50); do kill -0 $PID 2>/dev/null || break; sleep 0.1; done
if kill -0 $PID 2>/dev/null; then
    bad "SIGTERM: still running after 5 s"
else
    wait $PID; rc=$?
    [ $rc -eq 0 ] && ok "SIGTERM -> exit 0" || bad "SIGTERM exit status $rc"
    PID=
fi
[ ! -e "$DATA/prunelabd.port" ] && ok "port file removed on exit" || bad "port file left after exit"
code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz")
[ "$code" = 000 ] && ok "port closed after exit" || bad "port still answers ($code)"

echo "$PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
