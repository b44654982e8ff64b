#!/usr/bin/env bash
# Stop the single-node Slurm that backends/slurm/setup.sh started: slurmd, slurmctld, and munged
# if setup.sh started it (DEEPCAM_SLURM_KEEP_MUNGE=1 keeps it). Only the processes named by our
# pid files are signalled. Safe to run when nothing is running.
set -euo pipefail

STATE=${DEEPCAM_SLURM_STATE:-/var/lib/deepcam-slurm}

say() { printf '[slurm] %s\n' "$*"; }

stop_pid_file() {  # name pidfile: TERM, wait up to 15 s, then KILL
    local name=$1 file=$2 pid
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    kill -0 "$pid" 2>/dev/null || { rm -f "$file"; return 0; }
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name did not stop: killing pid $pid"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

stop_pid_file slurmd "$STATE/slurmd.pid"
stop_pid_file slurmctld "$STATE/slurmctld.pid"
if [ "${DEEPCAM_SLURM_KEEP_MUNGE:-0}" != 1 ] && grep -qx munged "$STATE/started" 2>/dev/null; then
    stop_pid_file munged /run/munge/munged.pid
    sed -i '/^munged$/d' "$STATE/started"
fi
exit 0
