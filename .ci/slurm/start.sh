#!/usr/bin/env bash
# Start a one-node SLURM cluster (with job accounting) on this machine, for CI and tests.
#
# Runs as root on Debian 12 without systemd, needs no stdin, and is idempotent: a second
# call finds the daemons running with unchanged configs and only re-checks the cluster.
#
#   .ci/slurm/start.sh            # install (if needed), configure, start, wait for idle
#   OPTICAL_SLURM_ACCOUNTING=0 .ci/slurm/start.sh   # no slurmdbd/MariaDB (sacct off)
#
# What it builds:
#   munged -> MariaDB -> slurmdbd (accounting_storage/mysql) -> slurmctld -> slurmd,
#   cluster "$CLUSTER", partition "$PARTITION" (default, MaxTime infinite), account
#   "$ACCOUNT" with root as a user, so `sacct` answers and the Snakemake SLURM executor
#   plugin can use its default status command (sacct). See profiles/README.md.
# Prints one status line at the end, e.g.:
#   slurm: up cluster=optical node=host cpus=2 mem_mb=23593 partition=ci accounting=slurmdbd (12s)
set -euo pipefail

T0=$(date +%s)
CLUSTER=${OPTICAL_SLURM_CLUSTER:-optical}
PARTITION=${OPTICAL_SLURM_CI_PARTITION:-ci}
ACCOUNT=${OPTICAL_SLURM_CI_ACCOUNT:-optical}
ACCOUNTING=${OPTICAL_SLURM_ACCOUNTING:-1}
WAIT_S=${OPTICAL_SLURM_WAIT_S:-120}
HOST=$(hostname -s)
ETC=/etc/slurm
LOG=/var/log/slurm
DB_PASS=slurm-ci-only  # local CI database, reachable only through the unix socket/localhost

export DEBIAN_FRONTEND=noninteractive

log() { echo "[slurm-start] $*" >&2; }
die() {
  echo "[slurm-start] ERROR: $*" >&2
  for f in "$LOG"/slurmctld.log "$LOG"/slurmd.log "$LOG"/slurmdbd.log; do
    [ -f "$f" ] && { echo "--- tail $f" >&2; tail -n 20 "$f" >&2; }
  done
  exit 1
}
[ "$(id -u)" = 0 ] || die "must run as root"

# Wait until "$@" succeeds, at most $1 seconds (polling every 0.2 s).
wait_for() {
  local limit=$1; shift
  local end=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.2
  done
}

# A daemon runs if its pid file names a live process.
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Stop the daemon named by a pid file (only that pid), wait for it to exit.
stop_pidfile() {
  local pidfile=$1 pid
  running "$pidfile" || return 0
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  wait_for 30 bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
}

# Write stdin to $1 if it differs; return 0 if the file changed.
install_if_changed() {
  local dest=$1 mode=$2 tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if [ -f "$dest" ] && cmp -s "$tmp" "$dest"; then
    rm -f "$tmp"
    return 1
  fi
  install -m "$mode" "$tmp" "$dest"
  rm -f "$tmp"
  return 0
}

# ---------------------------------------------------------------- packages
PKGS=(slurm-wlm munge)
[ "$ACCOUNTING" = 1 ] && PKGS+=(slurmdbd mariadb-server)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---------------------------------------------------------------- munge
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  log "creating munge key"
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! running /run/munge/munged.pid; then
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged
fi
wait_for 20 bash -c 'munge -n | unmunge' || die "munged does not answer"

# ---------------------------------------------------------------- configs
install -d -m 0755 "$ETC" "$LOG" /var/spool/slurmctld /var/spool/slurmd /run/slurm
NCPU=$(nproc)
# RealMemory: what slurmd detects (it drains the node if the config claims more), less
# 5% kept for the OS and the daemons.
DETECTED_MB=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
[ -n "$DETECTED_MB" ] || DETECTED_MB=$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)
MEM_MB=$(( DETECTED_MB * 95 / 100 ))
DEF_MEM=$(( MEM_MB / NCPU ))

if [ "$ACCOUNTING" = 1 ]; then
  ACCT_CONF="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
  ACCT_CONF="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi

changed_ctld=0
install_if_changed "$ETC/slurm.conf" 0644 <<EOF && changed_ctld=1 || true
# Written by .ci/slurm/start.sh: one-node CI cluster, not a production config.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
AuthType=auth/munge
CryptoType=crypto/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in containers: track processes through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEF_MEM
SchedulerType=sched/backfill
ReturnToService=2
# Keep finished jobs visible to squeue for 5 min (a fallback status source for
# snakemake's slurm plugin when sacct is off; it needs >= 3x its first check delay).
MinJobAge=300
KillWait=10
InactiveLimit=0
MpiDefault=none
MailProg=/bin/true
$ACCT_CONF
JobCompType=jobcomp/none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE DefaultTime=60 State=UP
EOF
# A one-node cluster has no GPUs to declare; gres.conf would only add failure modes.

changed_dbd=0
if [ "$ACCOUNTING" = 1 ]; then
  install_if_changed "$ETC/slurmdbd.conf" 0600 <<EOF && changed_dbd=1 || true
# Written by .ci/slurm/start.sh
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
PidFile=/run/slurm/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF

  # ------------------------------------------------------------ MariaDB + slurmdbd
  if ! mysqladmin ping >/dev/null 2>&1; then
    log "starting mariadb"
    install -d -o mysql -g mysql -m 0755 /run/mysqld
    # The init script starts mysqld_safe in the background; no systemd needed.
    /etc/init.d/mariadb start >/dev/null 2>&1 || true
    wait_for 60 mysqladmin ping || die "mariadb did not start"
  fi
  mysql -u root <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
  if [ "$changed_dbd" = 1 ]; then stop_pidfile /run/slurm/slurmdbd.pid; fi
  if ! running /run/slurm/slurmdbd.pid; then
    log "starting slurmdbd"
    /usr/sbin/slurmdbd
  fi
  # slurmdbd creates its tables on first start; sacctmgr answers once it listens.
  wait_for 60 sacctmgr -n list cluster || die "slurmdbd does not answer"
  # Register cluster, account and user before slurmctld connects (idempotent: sacctmgr
  # -i add fails harmlessly on existing entries, so check first).
  if [ -z "$(sacctmgr -n -P list cluster "$CLUSTER" format=cluster)" ]; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
  if [ -z "$(sacctmgr -n -P list account "$ACCOUNT" format=account)" ]; then
    sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" \
      description="OPTICAL CI" organization=ci >/dev/null
  fi
  if [ -z "$(sacctmgr -n -P list assoc user=root account="$ACCOUNT" cluster="$CLUSTER" format=user)" ]; then
    sacctmgr -i add user root account="$ACCOUNT" cluster="$CLUSTER" \
      defaultaccount="$ACCOUNT" >/dev/null
  fi
fi

# ---------------------------------------------------------------- slurmctld + slurmd
if [ "$changed_ctld" = 1 ] || [ "$changed_dbd" = 1 ]; then
  stop_pidfile /run/slurm/slurmd.pid
  stop_pidfile /run/slurm/slurmctld.pid
fi
if ! running /run/slurm/slurmctld.pid; then
  log "starting slurmctld"
  /usr/sbin/slurmctld
fi
wait_for 30 scontrol ping || die "slurmctld does not answer"
if ! running /run/slurm/slurmd.pid; then
  log "starting slurmd"
  /usr/sbin/slurmd
fi

node_idle() { sinfo -h -n "$HOST" -o '%t' | grep -Eq '^(idle|mix|alloc)'; }
if ! wait_for "$WAIT_S" node_idle; then
  # A node left DOWN/DRAIN by an earlier run (e.g. a reboot) is resumed once.
  scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
  wait_for 30 node_idle || die "node $HOST not idle: $(sinfo -h -N -o '%N %t %E')"
fi
if [ "$ACCOUNTING" = 1 ]; then
  wait_for 30 sacct -n -X --starttime now-1minutes || die "sacct does not answer"
  acct=slurmdbd
else
  acct=none
fi

echo "slurm: up cluster=$CLUSTER node=$HOST cpus=$NCPU mem_mb=$MEM_MB" \
  "partition=$PARTITION account=$([ "$ACCOUNTING" = 1 ] && echo "$ACCOUNT" || echo -)" \
  "accounting=$acct ($(( $(date +%s) - T0 ))s)"
