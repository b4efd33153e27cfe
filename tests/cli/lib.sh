# shellcheck shell=bash
# tests/cli/lib.sh — shared harness of the CLI test scripts (sourced, not run).
# Sets BIN (PRUNELAB_BIN, must be executable), TMP (a temp dir removed on exit), PASSES/FAILS
# and provides ok / bad / check / jqcheck / must_fail / finish. Needs jq.
# Usage at the top of a test: NAME=test_x; . "$(dirname "$0")/lib.sh"
BIN=${PRUNELAB_BIN:-./prunelab}
if [ ! -x "$BIN" ]; then echo "$NAME: PRUNELAB_BIN=$BIN is not an executable" >&2; exit 1; fi
command -v jq >/dev/null || { echo "$NAME: jq is required (apt-get install jq)" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/prunelab-$NAME.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
FAILS=0
PASSES=0

ok() { PASSES=$((PASSES + 1)); echo "ok   - $1"; }
bad() { FAILS=$((FAILS + 1)); echo "FAIL - $1"; }
check() { # check DESCRIPTION COMMAND...
    local d=$1; shift
    if "$@"; then ok "$d"; else bad "$d"; fi
}
jqcheck() { # jqcheck DESCRIPTION JQ-ARGS... (jq -e, output discarded)
    local d=$1; shift
    if jq -e "$@" >/dev/null; then ok "$d"; else bad "$d"; fi
}
# run a command that must fail (non-zero) and print a message matching a pattern on stderr
must_fail() { # must_fail DESCRIPTION PATTERN COMMAND...
    local d=$1 pat=$2; shift 2
    if "$@" >"$TMP/out" 2>"$TMP/err"; then
        bad "$d (exit 0)"
    elif ! grep -Eq -- "$pat" "$TMP/err"; then
        bad "$d (stderr lacks /$pat/: $(head -c 300 "$TMP/err"))"
    else
        ok "$d"
    fi
}
finish() { # summary line; the exit status of the test
    echo "$PASSES passed, $FAILS failed"
    [ "$FAILS" -eq 0 ]
}
