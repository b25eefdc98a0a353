#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, to try docs/slurm-bench.sh (and run
# tests/slurm_bench.rs) without a lab cluster. Debian/Ubuntu, as root:
#
#   scripts/slurm-local.sh          # install (apt-get), configure and start it; a second run does nothing
#   scripts/slurm-local.sh --stop   # stop the daemons it started (the packages and config stay)
#
# Installs slurmctld, slurmd, slurm-client and munge; writes a munge key if the package made
# none, and /etc/slurm/slurm.conf (one node: this hostname, its CPUs and memory from
# `slurmd -C`; no cgroups, no accounting), then starts munged, slurmctld and slurmd directly
# (no systemd needed). State in /var/spool/slurm{ctld,d}, logs in /var/log/slurm/.
# It will not overwrite a slurm.conf that it did not write.
set -euo pipefail

say() { printf '[slurm-local] %s\n' "$*" >&2; }
die() { printf '[slurm-local] error: %s\n' "$*" >&2; exit 1; }

MODE=start
case "${1:-}" in
  "") ;;
  --stop) MODE=stop ;;
  -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument '$1' (usage: $0 [--stop])" ;;
esac

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts system daemons): sudo $0${1:+ $1}"

CONF=/etc/slurm/slurm.conf
MARK="# Written by prefix-subspace scripts/slurm-local.sh (single-node test cluster)."
LOGDIR=/var/log/slurm
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid

# The pid in a pid file, if that process is alive and runs the named program.
alive() { # pidfile program
  local pid
  [ -f "$1" ] || return 1
  pid="$(cat "$1" 2>/dev/null)" || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  grep -q "$2" "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

stop_one() { # pidfile program
  local pid
  if pid="$(alive "$1" "$2")"; then
    kill "$pid"
    for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
    if [ -d "/proc/$pid" ]; then die "$2 (pid $pid) did not stop after SIGTERM within 10 s"; fi
    say "stopped $2 (pid $pid)"
  else
    say "$2 is not running"
  fi
}

if [ "$MODE" = stop ]; then
  stop_one "$SLURMD_PID" slurmd
  stop_one "$CTLD_PID" slurmctld
  stop_one "$MUNGE_PID" munged
  exit 0
fi

# 1. Packages.
need=()
command -v slurmctld >/dev/null || need+=(slurmctld)
command -v slurmd >/dev/null || need+=(slurmd)
command -v sbatch >/dev/null || need+=(slurm-client)
command -v munged >/dev/null || need+=(munge)
if [ "${#need[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null || die "apt-get not found: install ${need[*]} with this system's package manager, then rerun $0"
  say "installing ${need[*]} with apt-get"
  # Keep the packages' init scripts from starting daemons during the install (no config yet).
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  ok=""
  if apt-get install -y -q --no-install-recommends "${need[@]}" >/tmp/slurm-local-apt.log 2>&1; then ok=1
  else
    say "apt-get install failed; running apt-get update and trying again"
    if apt-get update -q >>/tmp/slurm-local-apt.log 2>&1 \
      && apt-get install -y -q --no-install-recommends "${need[@]}" >>/tmp/slurm-local-apt.log 2>&1; then ok=1; fi
  fi
  [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
  [ -n "$ok" ] || die "apt-get could not install ${need[*]} (log: /tmp/slurm-local-apt.log)"
else
  say "packages already installed ($(slurmctld -V))"
fi

# 2. slurm.conf: this host, its CPUs / sockets / cores / memory as slurmd sees them.
HOST="$(hostname -s)"
getent hosts "$HOST" >/dev/null || die "the hostname '$HOST' does not resolve; add it to /etc/hosts (e.g. '127.0.0.1 $HOST')"
HW="$(slurmd -C | head -n1)"
[[ "$HW" == NodeName=* ]] || die "'slurmd -C' printed no node line: $HW"
HW="${HW/NodeName=* CPUs=/NodeName=$HOST CPUs=}"
# A little memory off the top, so the node is not drained for "Low RealMemory" if free memory shrinks.
MEM="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$HW")"
MEM=$((MEM * 95 / 100))
# shellcheck disable=SC2001
HW="$(sed "s/RealMemory=[0-9]*/RealMemory=$MEM/" <<<"$HW")"
CPUS="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$HW")"
WANT="$(cat <<CONF
$MARK
# Rerun the script to rewrite it; remove it to hand /etc/slurm back to your own config.
ClusterName=local
SlurmctldHost=$HOST
AuthType=auth/munge
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
# No cgroups (containers often have none usable): processes are tracked through /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A job that asks for no memory gets its CPUs' share, not the whole node.
DefMemPerCPU=$((MEM / CPUS))
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
MaxArraySize=10001
$HW State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
)"
if [ -f "$CONF" ] && ! head -n1 "$CONF" | grep -qxF "$MARK"; then
  die "$CONF exists and was not written by this script; move it away to use $0 (it is left as it is)"
fi

# Up already, with this config? Controller answers and the node is usable: nothing to do.
node_state() { sinfo -h -N -n "$HOST" -o %t 2>/dev/null | head -n1; }
if [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$WANT" ] \
  && alive "$MUNGE_PID" munged >/dev/null && alive "$CTLD_PID" slurmctld >/dev/null && alive "$SLURMD_PID" slurmd >/dev/null \
  && scontrol ping 2>/dev/null | grep -q 'is UP' && [[ "$(node_state)" =~ ^(idle|mix|alloc)$ ]]; then
  say "already up (node $HOST: $(node_state)); nothing to do. Stop it with: $0 --stop"
  exit 0
fi

# 3. Munge: key, runtime dirs, daemon.
id munge >/dev/null 2>&1 || die "the munge package did not create the user 'munge'"
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
  say "creating the munge key /etc/munge/munge.key"
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge /var/log/munge && chmod 0400 /etc/munge/munge.key && chmod 0755 /run/munge /var/lib/munge
if alive "$MUNGE_PID" munged >/dev/null; then
  say "munged already running"
else
  say "starting munged"
  runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
fi
for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
munge -n | unmunge >/dev/null 2>&1 || die "munge does not work: 'munge -n | unmunge' fails (see /var/log/munge/munged.log)"

# 4. Write slurm.conf.
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOGDIR"
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$WANT" ]; then
  printf '%s\n' "$WANT" > "$CONF"
  say "wrote $CONF (node: $HW)"
  # Running daemons would keep the old config.
  if alive "$SLURMD_PID" slurmd >/dev/null; then stop_one "$SLURMD_PID" slurmd; fi
  if alive "$CTLD_PID" slurmctld >/dev/null; then stop_one "$CTLD_PID" slurmctld; fi
else
  say "$CONF is up to date"
fi

# 5. Daemons.
if alive "$CTLD_PID" slurmctld >/dev/null; then
  say "slurmctld already running"
else
  say "starting slurmctld (log: $LOGDIR/slurmctld.log)"
  slurmctld || die "slurmctld did not start (see $LOGDIR/slurmctld.log)"
fi
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.2; done
scontrol ping 2>/dev/null | grep -q 'is UP' || die "slurmctld does not answer 'scontrol ping' (see $LOGDIR/slurmctld.log)"
if alive "$SLURMD_PID" slurmd >/dev/null; then
  say "slurmd already running"
else
  say "starting slurmd (log: $LOGDIR/slurmd.log)"
  slurmd || die "slurmd did not start (see $LOGDIR/slurmd.log)"
fi

# 6. The node must come up idle (a node drained or down from an earlier run is resumed).
state=""
for _ in $(seq 100); do
  state="$(node_state)"
  case "$state" in
    idle|mix|alloc) break ;;
    drain*|down*|drng) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 0.2
done
[[ "$state" =~ ^(idle|mix|alloc)$ ]] \
  || die "node $HOST is '$state', not idle: $(scontrol show node "$HOST" | grep -o 'Reason=.*' || true) (see $LOGDIR/slurmd.log)"
out="$(timeout 60 srun -N1 -n1 -t 1 hostname 2>&1)" || die "'srun hostname' failed: $out"
say "up: node $HOST is $state and 'srun hostname' printed '$out'"
sinfo >&2
say "try: sbatch --array=0-1 docs/slurm-bench.sh BENCH.toml; stop with: $0 --stop"
