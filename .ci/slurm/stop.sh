#!/usr/bin/env bash
# Stop the one-node CI cluster started by .ci/slurm/start.sh (reverse order).
#
# Stops only the daemons named by their pid files (slurmd, slurmctld, slurmdbd, munged)
# and MariaDB through its init script; installed packages, configs and the accounting
# database stay, so a later start.sh is quick.
#   .ci/slurm/stop.sh           # stop daemons
#   .ci/slurm/stop.sh --purge   # also delete slurmctld/slurmd state and logs
set -uo pipefail

T0=$(date +%s)
log() { echo "[slurm-stop] $*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }

stop_pidfile() {
  local name=$1 pidfile=$2 pid
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
  log "stopping $name (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop in 30 s, killing"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# Cancel leftover jobs so slurmd does not leave orphaned job processes behind.
if command -v scancel >/dev/null && scontrol ping >/dev/null 2>&1; then
  scancel --user=root >/dev/null 2>&1 || true
fi
stop_pidfile slurmd /run/slurm/slurmd.pid
stop_pidfile slurmctld /run/slurm/slurmctld.pid
stop_pidfile slurmdbd /run/slurm/slurmdbd.pid
if command -v mysqladmin >/dev/null && mysqladmin ping >/dev/null 2>&1; then
  log "stopping mariadb"
  /etc/init.d/mariadb stop >/dev/null 2>&1 || true
fi
stop_pidfile munged /run/munge/munged.pid

if [ "${1:-}" = "--purge" ]; then
  log "removing slurm state and logs"
  rm -rf /var/spool/slurmctld/* /var/spool/slurmd/* /var/log/slurm/*
fi
echo "slurm: stopped ($(( $(date +%s) - T0 ))s)"
