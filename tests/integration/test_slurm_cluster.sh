#!/bin/bash
# test_slurm_cluster.sh — deploy/slurm/cluster.sh brings up a single-node Slurm that runs what
# the Slurm executor will need (an array with per-task --cpus-per-task and --mem, squeue, scancel,
# scontrol without accounting) and stops every daemon it started, by pid. Needs root (the daemons
# run as root and slurm): skipped otherwise, unless PRUNELAB_REQUIRE_SLURM=1 (deploy/test.sh sets
# it; CI runs as root), which turns a machine that cannot run it into a failure.
set -u
NAME=test_slurm_cluster
SRC=${PRUNELAB_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
CLUSTER=$SRC/deploy/slurm/cluster.sh
need() {
    if [ "${PRUNELAB_REQUIRE_SLURM:-0}" = 1 ]; then echo "$NAME: $* (PRUNELAB_REQUIRE_SLURM=1)" >&2; exit 1; fi
    echo "$NAME: skipped: $*" >&2
    exit 77
}
[ "$(id -u)" = 0 ] || need "needs root to start slurmctld and slurmd"
command -v slurmctld >/dev/null && command -v munged >/dev/null ||
    [ -x /usr/bin/apt-get ] || need "slurm-wlm and munge are not installed (apt-get install slurm-wlm munge)"

DIR=$(mktemp -d "${TMPDIR:-/tmp}/prunelab-$NAME.XXXXXX")
chmod 755 "$DIR"
PASSES=0 FAILS=0
ok() { PASSES=$((PASSES + 1)); echo "ok - $*"; }
bad() { FAILS=$((FAILS + 1)); echo "not ok - $*"; }
cleanup() {
    "$CLUSTER" stop "$DIR" >/dev/null 2>&1
    [ -n "${KEEP:-}" ] || rm -rf "$DIR"
}
trap cleanup EXIT

# wait_until SECONDS COMMAND...: poll every 0.2 s
wait_until() {
    local n=$(( $1 * 5 ))
    shift
    for _ in $(seq "$n"); do "$@" && return 0; sleep 0.2; done
    return 1
}

if "$CLUSTER" start "$DIR" > "$DIR/start.log" 2>&1; then ok "cluster.sh start"; else
    bad "cluster.sh start: $(tail -5 "$DIR/start.log")"
    for f in "$DIR"/log/*.log "$DIR"/munge/*.log; do [ -f "$f" ] && tail -5 "$f"; done
    exit 1
fi
export SLURM_CONF=$DIR/slurm.conf
pids=$(cat "$DIR"/slurmctld.pid "$DIR"/slurmd.pid)
[ "$(sinfo -h -o %a)" = up ] && ok "the partition is up" || bad "sinfo: $(sinfo 2>&1)"

# an array of 3 tasks, each with its own cpus and memory, logs appended under the directory
mkdir -p "$DIR/out"
id=$(sbatch --parsable --array=0-2 --cpus-per-task=1 --mem=64M --time=2 --open-mode=append \
    -o "$DIR/out/%A_%a.log" --wrap 'echo "task $SLURM_ARRAY_TASK_ID cpus $SLURM_CPUS_PER_TASK"' 2>&1)
[[ "$id" =~ ^[0-9]+$ ]] && ok "sbatch --parsable --array: job $id" || bad "sbatch: $id"
empty() { [ -z "$(squeue -h -j "$1" -o %i 2>/dev/null)" ]; }
wait_until 60 empty "$id" && ok "the array left squeue" || bad "the array is still queued: $(squeue)"
for t in 0 1 2; do
    grep -q "^task $t cpus 1$" "$DIR/out/${id}_$t.log" 2>/dev/null && ok "task $t ran with 1 cpu" ||
        bad "task $t: $(cat "$DIR/out/${id}_$t.log" 2>&1)"
done
# no accounting here: sacct says so, scontrol still shows a finished job until MinJobAge
sacct -j "$id" >/dev/null 2>&1 && bad "sacct answered without accounting" || ok "sacct is unavailable, as configured"
scontrol show job "${id}_1" 2>/dev/null | grep -q "JobState=COMPLETED" && ok "scontrol shows a completed task" ||
    bad "scontrol: $(scontrol show job "${id}_1" 2>&1 | head -3)"

# scancel of a running job empties squeue
long=$(sbatch --parsable --mem=64M --time=5 -o /dev/null --wrap 'sleep 300')
running() { [ "$(squeue -h -j "$1" -o %T 2>/dev/null)" = RUNNING ]; }
wait_until 30 running "$long" && ok "a long job runs" || bad "the long job: $(squeue)"
scancel "$long"
wait_until 30 empty "$long" && ok "scancel empties squeue" || bad "after scancel: $(squeue)"

"$CLUSTER" stop "$DIR"
alive=0
for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
[ "$alive" = 0 ] && ok "cluster.sh stop stopped slurmctld and slurmd" || bad "still running: $pids"

echo "# $NAME: $PASSES passed, $FAILS failed"
[ "$FAILS" = 0 ]
