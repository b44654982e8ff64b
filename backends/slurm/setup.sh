#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, to try the job templates and for the tests.
#
#   backends/slurm/setup.sh    install slurm-wlm + munge (apt, once), write slurm.conf for this
#                              machine, start munged, slurmctld and slurmd, wait until idle
#   backends/slurm/stop.sh     stop the daemons this script started
#
# Idempotent: packages are installed only if missing, daemons already running with the same
# configuration are left alone (a changed configuration restarts them). Works as root without
# systemd (containers, VMs): the daemons are started directly.
#
# Environment:
#   DEEPCAM_SLURM_STATE  spool, state, logs and pid files  [/var/lib/deepcam-slurm]
#   DEEPCAM_SLURM_MPI    MpiDefault: srun's PMI for MPI programs  [pmi2]
#                        pmi2 is the plugin that works with Debian's MPICH 4 (its PMI client
#                        speaks the PMI-1/PMI-2 wire protocol that slurmstepd's pmi2 plugin
#                        serves); pmix does not (MPICH here is not built against PMIx).
#   DEEPCAM_SLURM_WAIT   seconds to wait for the node to become idle  [60]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${DEEPCAM_SLURM_STATE:-/var/lib/deepcam-slurm}
MPI_DEFAULT=${DEEPCAM_SLURM_MPI:-pmi2}
WAIT=${DEEPCAM_SLURM_WAIT:-60}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
MARK="# written by deepcam-hvd backends/slurm/setup.sh"
PACKAGES="slurmctld slurmd slurm-client munge"

say() { printf '[slurm] %s\n' "$*"; }
die() { printf '[slurm] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts daemons)"

# --- 1. packages ----------------------------------------------------------------------------
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done
if [ -n "$missing" ]; then
    command -v apt-get >/dev/null || die "missing$missing and no apt-get to install them"
    say "installing$missing (apt)"
    apt-get update -qq
    # policy-rc.d may refuse to start services in containers; we start them ourselves below.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing \
        >/dev/null
fi

# --- 2. munge key ---------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    install -d -o munge -g munge -m 0700 /etc/munge
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=128 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi

# --- 3. slurm.conf for this machine ---------------------------------------------------------
host=$(hostname -s)
# The node line as slurmd sees the hardware: CPUs, sockets, cores, threads, RealMemory (MB).
node_hw=$(slurmd -C | head -1 | sed -e 's/^NodeName=[^ ]* //')
[ -n "$node_hw" ] || die "slurmd -C printed no hardware description"
slurm_user=slurm
id "$slurm_user" >/dev/null 2>&1 || slurm_user=root

install -d -m 0755 "$STATE" "$STATE/log"
install -d -o "$slurm_user" -m 0755 "$STATE/ctld"
install -d -m 0755 "$STATE/d"
chown "$slurm_user" "$STATE/log"

if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script; not touching a real cluster's setup"
fi
new_conf=$(sed -e "s|@HOST@|$host|g" -e "s|@NODE_HW@|$node_hw|g" -e "s|@STATE@|$STATE|g" \
    -e "s|@SLURM_USER@|$slurm_user|g" -e "s|@MPI_DEFAULT@|$MPI_DEFAULT|g" \
    -e "s|@MARK@|$MARK|g" "$HERE/slurm.conf.in")
install -d -m 0755 "$CONF_DIR"
conf_changed=0
if [ "$(cat "$CONF" 2>/dev/null)" != "$new_conf" ]; then
    printf '%s\n' "$new_conf" > "$CONF"
    conf_changed=1
    say "wrote $CONF: NodeName=$host $node_hw, MpiDefault=$MPI_DEFAULT"
fi
# cgroup.conf is not used (proctrack/linuxproc), but slurmd warns without one on some versions.
[ -e "$CONF_DIR/cgroup.conf" ] || printf '%s\nCgroupPlugin=autodetect\n' "$MARK" \
    > "$CONF_DIR/cgroup.conf"

# --- 4. daemons -----------------------------------------------------------------------------
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged"
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    echo munged >> "$STATE/started"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
    munge -n | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"
fi

if [ "$conf_changed" = 1 ] && { alive "$STATE/slurmctld.pid" || alive "$STATE/slurmd.pid"; }; then
    say "configuration changed: restarting slurmctld and slurmd"
    DEEPCAM_SLURM_KEEP_MUNGE=1 bash "$HERE/stop.sh"
fi
if ! alive "$STATE/slurmctld.pid"; then
    say "starting slurmctld"
    /usr/sbin/slurmctld -c   # -c: start with a clean job state; it forks into the background
fi
if ! alive "$STATE/slurmd.pid"; then
    say "starting slurmd"
    /usr/sbin/slurmd
fi

# --- 5. wait for the node -------------------------------------------------------------------
deadline=$((SECONDS + WAIT))
state=""
while [ $SECONDS -lt $deadline ]; do
    state=$(sinfo -h -n "$host" -o %T 2>/dev/null | head -1 || true)
    case "$state" in
        idle|mixed|allocated) break ;;
        down*|drain*|fail*) scontrol update NodeName="$host" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 1
done
case "$state" in
    idle|mixed|allocated) ;;
    *) die "node $host is '${state:-unknown}' after ${WAIT}s; logs in $STATE/log/" ;;
esac
say "ready: node $host ($node_hw) is $state; partition debug; MpiDefault=$MPI_DEFAULT"
