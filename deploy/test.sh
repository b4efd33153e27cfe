#!/usr/bin/env bash
# deploy/test.sh — build prunelab and run its whole test suite on Debian 12.
#
#   ./deploy/test.sh               install missing Debian packages, build, `make check`
#   ./deploy/test.sh --build-only  same, without `make check` and without chromium (used by
#                                  deploy/quickstart.sh)
#   ./deploy/test.sh --fresh       regenerate and reconfigure even if a build is present
#
# Besides the build packages it installs Node.js and npm when `node` / `npm` are missing, the
# dashboard's npm packages (`npm ci --prefix web`: Plotly for the pages, playwright-core for the
# browser test; never a browser download) and, for the tests, Debian's `chromium`. The tests run
# with PRUNELAB_REQUIRE_BROWSER=1, so a missing chromium or web/node_modules fails the browser
# test instead of skipping it; likewise slurm-wlm and munge with PRUNELAB_REQUIRE_SLURM=1 (the
# default when run as root, as CI is) for the single-node Slurm test, which needs root.
#
# Environment:
#   EXTRA_PACKAGES    more Debian packages to install (space separated)
#   CONFIGURE_FLAGS   extra ./configure arguments on a fresh configure (e.g. --enable-sanitizers)
#   JOBS              make parallelism (default 2)
#   SKIP_APT=1        do not touch packages (e.g. a machine without apt)
#   SKIP_NPM=1        do not run npm (web/node_modules must then be present for the browser test)
#   PRUNELAB_REQUIRE_BROWSER=0  let the browser test skip when chromium or node is missing
#   PRUNELAB_REQUIRE_SLURM=0|1  whether the Slurm test may skip (default: required when root)
#
# Runs as root or through sudo. Idempotent: with the packages present and a configured tree it
# only runs make (automake's own rules regenerate anything whose inputs changed) and runs npm only
# when web/package-lock.json changed since the last install. Exits non-zero on the first failure;
# when tests fail it prints test-suite.log (which holds each failing test's log).
set -euo pipefail

PACKAGES=(build-essential autoconf automake libtool pkg-config libopenblas-dev libopenblas0-openmp libjansson-dev
          libmicrohttpd-dev libsqlite3-dev sqlite3 check zlib1g-dev jq curl python3)

build_only=0
fresh=0
for arg in "$@"; do
    case "$arg" in
        --build-only) build_only=1 ;;
        --fresh) fresh=1 ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "deploy/test.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}

say() { printf '==> %s\n' "$*"; }
die() { printf 'deploy/test.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- packages
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run: $* (run as root or install sudo)"
    fi
}

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

install_packages() {
    local pkgs=("${PACKAGES[@]}")
    # The browser test drives Debian's chromium; the quickstart (--build-only) does not need it.
    # The Slurm test brings up a single-node cluster (deploy/slurm/cluster.sh).
    if [ "$build_only" -eq 0 ]; then pkgs+=(chromium slurm-wlm munge); fi
    # Node.js may come from elsewhere (e.g. NodeSource, whose nodejs bundles npm and conflicts
    # with Debian's npm): ask for the Debian packages only for the commands that are missing.
    command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
    command -v npm >/dev/null 2>&1 || pkgs+=(npm)
    if [ -n "${EXTRA_PACKAGES:-}" ]; then
        local extra
        read -r -a extra <<<"$EXTRA_PACKAGES"
        pkgs+=("${extra[@]}")
    fi
    local missing=() p
    for p in "${pkgs[@]}"; do
        installed "$p" || missing+=("$p")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        say "Debian packages present"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "missing packages ${missing[*]} and no apt-get"
    say "installing ${missing[*]}"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends)
    if ! as_root "${apt[@]}" "${missing[@]}"; then
        say "install failed; refreshing the package lists and retrying"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
            die "apt-get update failed"
        as_root "${apt[@]}" "${missing[@]}" || die "cannot install: ${missing[*]}"
    fi
}

# ---------------------------------------------------------------- build
newer_than() { # newer_than FILE INPUT...: FILE exists and is newer than every INPUT present
    local f=$1 i
    shift
    [ -e "$f" ] || return 1
    for i in "$@"; do
        if [ -e "$i" ] && [ "$i" -nt "$f" ]; then return 1; fi
    done
    return 0
}

build() {
    if [ "$fresh" -eq 1 ] || ! newer_than configure configure.ac Makefile.am m4/*.m4; then
        say "autoreconf -fi"
        autoreconf -fi
        rm -f config.status # configure must run again after a regenerate
    fi
    if [ "$fresh" -eq 1 ] || [ ! -f Makefile ] || ! newer_than config.status configure; then
        say "./configure ${CONFIGURE_FLAGS:-}"
        # shellcheck disable=SC2086 # CONFIGURE_FLAGS is a word list on purpose
        ./configure ${CONFIGURE_FLAGS:-}
    fi
    say "make -j$JOBS"
    make -j"$JOBS"
}

# ---------------------------------------------------------------- dashboard packages
# web/package.json pins the dashboard's npm packages and web/package-lock.json their exact tree.
# `npm ci` reinstalls from the lock file; it is skipped when node_modules was installed from
# the current lock file (npm writes node_modules/.package-lock.json on every install).
install_web() {
    [ -f web/package.json ] || { say "no web/package.json; skipping npm"; return 0; }
    [ -f web/package-lock.json ] || die "web/package-lock.json is missing (npm ci needs it)"
    if newer_than web/node_modules/.package-lock.json web/package.json web/package-lock.json; then
        say "web/node_modules is up to date"
        return 0
    fi
    command -v npm >/dev/null 2>&1 || die "npm is missing (apt-get install npm, or unset SKIP_APT)"
    say "npm ci --prefix web"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix web --no-audit --no-fund ||
        die "npm ci --prefix web failed"
}

run_checks() {
    say "make -j$JOBS check"
    # the Slurm test needs root: required as root (CI), allowed to skip for a developer's account
    local slurm_default=0
    [ "$(id -u)" = 0 ] && slurm_default=1
    if ! PRUNELAB_REQUIRE_BROWSER=${PRUNELAB_REQUIRE_BROWSER:-1} PRUNELAB_REQUIRE_SLURM=${PRUNELAB_REQUIRE_SLURM:-$slurm_default} \
        make -j"$JOBS" check; then
        if [ -f test-suite.log ]; then
            echo "---------------------------------------------------------------- test-suite.log"
            cat test-suite.log
        fi
        die "make check failed"
    fi
}

if [ "${SKIP_APT:-0}" != 1 ]; then install_packages; fi
build
if [ "${SKIP_NPM:-0}" != 1 ]; then install_web; fi
if [ "$build_only" -eq 0 ]; then run_checks; fi
say "ok"
