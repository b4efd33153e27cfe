#!/bin/sh
# test_web_units.sh — the dashboard's pure JavaScript helpers (web/js/charts.js) under node:test:
# heatmap grid, rate lines, sensitivity bars, Pareto front (against a brute-force reference),
# RSST / train series, cell table rows, sort comparator and number formatting; and apiAll
# (web/js/api.js), the walk through a paged listing.
# Env: PRUNELAB_SRCDIR (default: the directory two levels above this script). Needs node >= 18;
# exits 77 (skipped) when node is not installed.
NAME=test_web_units
if ! command -v node >/dev/null 2>&1; then
    echo "$NAME: node is not installed (apt-get install nodejs); skipping the dashboard unit tests"
    exit 77
fi
MAJOR=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$MAJOR" -lt 18 ]; then
    echo "$NAME: node $(node --version) is too old for node:test (needs >= 18); skipping"
    exit 77
fi
SRC=${PRUNELAB_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
set -- "$SRC"/tests/web/*.test.mjs
if [ ! -f "$1" ]; then
    echo "$NAME: no tests under $SRC/tests/web" >&2
    exit 1
fi
exec node --test "$@"
