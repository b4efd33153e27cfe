#!/bin/bash
# cluster.sh — a single-node Slurm on this machine, for prunelab's Slurm tests and for trying the
# Slurm executor. Debian 12, as root: installs slurm-wlm and munge if missing, generates a munge
# key if there is none, writes a minimal slurm.conf (one node as `slurmd -C` describes it,
# proctrack/linuxproc, task/none, select/cons_tres by core and memory, no accounting) under DIR,
# and starts munged, slurmctld and slurmd with pid files there. Clients find the cluster through
# SLURM_CONF=DIR/slurm.conf (printed by `start` and `env`).
#
#   deploy/slurm/cluster.sh start  [DIR]   # default DIR: var/slurm under the checkout
#   deploy/slurm/cluster.sh stop   [DIR]   # stops what start started, by pid
#   deploy/slurm/cluster.sh status [DIR]   # sinfo through that configuration
#   deploy/slurm/cluster.sh env    [DIR]   # the export line for clients
#
# A lab's cluster needs none of this: see deploy/slurm/README.md.
set -euo pipefail

cmd=${1:-}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${2:-$ROOT/var/slurm}
CONF=$DIR/slurm.conf
die() { echo "cluster.sh: $*" >&2; exit 1; }

install_packages() {
    local missing=()
    for p in slurm-wlm munge; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return
    [ "$(id -u)" = 0 ] || die "needs root to install ${missing[*]} (apt-get install ${missing[*]})"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() { # seconds what command...
    local n=$(( $1 * 10 )) what=$2
    shift 2
    for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    die "$what did not come up (logs in $DIR)"
}

write_conf() {
    local node cpus mem
    node=$(hostname -s)
    cpus=$(nproc)
    # leave the daemons and the OS 1 GiB; slurmd refuses a node configured above what it finds
    mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    chown slurm:slurm "$DIR/state"
    cat > "$CONF" <<CONF
# written by deploy/slurm/cluster.sh: a single-node test cluster
ClusterName=prunelab-test
SlurmctldHost=$node
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
MaxArraySize=1001
NodeName=$node CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
    [ "$(id -u)" = 0 ] || die "start needs root (the daemons run as root and slurm)"
    install_packages
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    mkdir -p "$DIR"
    write_conf
    install -d -o munge -g munge -m 755 /run/munge
    if ! alive "$DIR/munged.pid"; then
        # an already running munged (a service) serves us as well
        if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
            install -d -o munge -g munge -m 700 "$DIR/munge"
            runuser -u munge -- munged --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
                || die "munged failed (see $DIR/munge/munged.log)"
            wait_for 10 munged test -s "$DIR/munge/munged.pid"
            cp "$DIR/munge/munged.pid" "$DIR/munged.pid"
        fi
    fi
    wait_for 10 munge sh -c 'munge -n | unmunge'
    export SLURM_CONF=$CONF
    alive "$DIR/slurmctld.pid" || slurmctld -f "$CONF" || die "slurmctld failed (see $DIR/log/slurmctld.log)"
    wait_for 30 slurmctld scontrol ping
    alive "$DIR/slurmd.pid" || slurmd -f "$CONF" || die "slurmd failed (see $DIR/log/slurmd.log)"
    wait_for 30 "the node" sh -c "sinfo -h -N -o %T | grep -Eq '^(idle|mixed|allocated)'"
    echo "cluster.sh: single-node Slurm up: export SLURM_CONF=$CONF"
}

stop() {
    local f pid
    for f in slurmd slurmctld munged; do
        alive "$DIR/$f.pid" || { rm -f "$DIR/$f.pid"; continue; }
        pid=$(cat "$DIR/$f.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$DIR/$f.pid"
    done
    rm -f "$DIR/munge/munged.pid"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    status) SLURM_CONF=$CONF sinfo ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
esac
