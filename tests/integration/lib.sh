# tests/integration/lib.sh — how every integration script starts: its binaries and tools checked,
# a temp dir ($TMP), the daemon ($PID) stopped and the temp dir removed on exit, wait_line,
# start_daemon, and ok / bad counting into PASSES / FAILS (scripts may define their own).
# Source it after setting NAME, BIN and (when the script runs cells) ENGINE.
# Hooks: a function it_cleanup_extra, when defined, runs at exit before $TMP goes; KEEP=1 keeps
# $TMP; IT_TERM_FIRST=1 stops the daemon with SIGTERM (up to 5 s) before SIGKILL.

if [ ! -x "$BIN" ]; then echo "$NAME: PRUNELABD_BIN=$BIN is not an executable" >&2; exit 1; fi
if [ -n "${ENGINE:-}" ] && [ ! -x "$ENGINE" ]; then
    echo "$NAME: PRUNELAB_BIN=$ENGINE is not an executable" >&2
    exit 1
fi
for tool in curl jq; do
    command -v $tool >/dev/null || { echo "$NAME: $tool is required (apt-get install $tool)" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/prunelab-$NAME.XXXXXX")
PID=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        if [ -n "${IT_TERM_FIRST:-}" ]; then
            kill -TERM "$PID" 2>/dev/null
            for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        fi
        kill -KILL "$PID" 2>/dev/null
    fi
    if declare -F it_cleanup_extra >/dev/null; then it_cleanup_extra; fi
    [ -n "${KEEP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT

# wait_line FILE PATTERN: wait up to 10 s for a line matching PATTERN in FILE
wait_line() {
    for _ in $(seq 100); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

FAILS=0
PASSES=0
ok() { PASSES=$((PASSES + 1)); echo "ok   - $1"; }
bad() { FAILS=$((FAILS + 1)); echo "FAIL - $1"; }

# start_daemon ARGS...: "$BIN" --listen 127.0.0.1:0 ARGS in the background (output in
# $TMP/stdout and $TMP/stderr) until it prints its address; sets PID (stopped at exit), PORT and
# BASE. Exits 1 when the daemon does not start within 10 s.
start_daemon() {
    "$BIN" --listen 127.0.0.1:0 "$@" >"$TMP/stdout" 2>"$TMP/stderr" &
    PID=$!
    if ! wait_line "$TMP/stdout" '^prunelabd listening on http://127\.0\.0\.1:[0-9]*/$'; then
        echo "FAIL - daemon did not start: $(cat "$TMP/stderr")"
        exit 1
    fi
    PORT=$(sed -n 's|^prunelabd listening on http://127\.0\.0\.1:\([0-9]*\)/$|\1|p' "$TMP/stdout")
    BASE=http://127.0.0.1:$PORT
}

# new_token NAME [--admin]: `prunelabd user add` in $DATA; prints the new token (exits 1 on none).
new_token() {
    local t
    t=$("$BIN" user add "$@" --data-dir "$DATA" 2>"$TMP/user.err" | grep -o 'plt_[0-9a-f]\{64\}' | head -1)
    [ -n "$t" ] || { echo "FAIL - user add $1 printed no token: $(head -c 200 "$TMP/user.err")" >&2; exit 1; }
    echo "$t"
}
