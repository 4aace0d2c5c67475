#!/usr/bin/env bash
# Proves scripts/slurm/bench-array.sbatch on a real Slurm: starts a throwaway single-node cluster
# (its own munged, slurmctld and slurmd, all state under one temporary folder), runs the bench
# array on data/gso-mini, cancels one array task while it runs and resubmits just that index, then
# checks that `orbitmesh bench merge` of the parts reports what one `orbitmesh bench` run does.
#   sudo scripts/slurm/test-local.sh
# ORBITMESH: the binary [default: $CARGO_TARGET_DIR/release/orbitmesh, CARGO_TARGET_DIR defaulting
# to ~/.cache/orbitmesh-target]. FAULT_TASK: the array index to cancel and resubmit [default: 2].
# Installs Debian's slurm-wlm and munge if they are missing. Needs root: slurmd runs jobs as their
# submitter, and this cluster's daemons run as root so that nothing else has to be set up.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
orbitmesh="${ORBITMESH:-${CARGO_TARGET_DIR:-$HOME/.cache/orbitmesh-target}/release/orbitmesh}"
dataset="$repo/data/gso-mini"
fault_task="${FAULT_TASK:-2}"
shards=3
objects=$(find "$dataset" -mindepth 1 -maxdepth 1 -type d | wc -l)
# The fastest honest bench: the scans' own renders as the orbit and the hull as the mesh, seconds
# per object, so the test is about the array and the merge, not about the pipeline.
bench_args=(--oracle --coarse hull --fine-steps 0)

state=""
pids=()
jobs_submitted=()
cleanup() {
  local rc=$?
  # Cancel first: killing slurmd would leave running job steps (and their orbitmesh) behind.
  if ((${#jobs_submitted[@]})); then
    scancel "${jobs_submitted[@]}" 2>/dev/null || true
    for _ in $(seq 50); do
      [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
      sleep 0.2
    done
  fi
  # Newest first: slurmd, slurmctld, then munged, which the other two need to say goodbye.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  if ((rc == 0)); then
    rm -rf "$state"
  elif [[ -n $state ]]; then
    echo "FAIL (exit $rc); kept $state: slurmctld.log, slurmd.log, munged.log, logs/ (the tasks')" >&2
  else
    echo "FAIL (exit $rc)" >&2
  fi
}
trap cleanup EXIT
# So that an interrupted run cleans up as a failure, not as a success.
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
  echo "test-local: $*" >&2
  exit 1
}

[[ $EUID -eq 0 ]] || die "run as root (the test cluster's daemons run as root)"
[[ -x $orbitmesh ]] || die "$orbitmesh: no orbitmesh binary (cargo build --release, or set ORBITMESH)"
orbitmesh=$(realpath "$orbitmesh")
((fault_task >= 0 && fault_task < shards)) || die "FAULT_TASK=$fault_task: expected 0..$((shards - 1))"

# type -P, unlike command -v, fails when any one of the names is missing.
if ! type -P slurmctld slurmd sbatch munged mungekey >/dev/null; then
  echo "installing slurm-wlm and munge"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge
fi
echo "$(slurmd -V), $(munged --version | head -n 1)"

state=$(mktemp -d "${TMPDIR:-/tmp}/orbitmesh-slurm.XXXXXX")

# wait_for SECONDS WHAT COMMAND...: polls COMMAND until it succeeds, or fails the test. Often,
# because a shard of this bench takes seconds and the fault has to land while one runs.
wait_for() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do
    ((SECONDS < deadline)) || die "timed out waiting for $what"
    sleep 0.05
  done
}

# A private munged (own key, own socket): no system-wide munge key or service to set up or disturb.
mkdir -p "$state/munge" "$state/ctld" "$state/slurmd" "$state/logs"
# munged wants its socket's folders searchable by everyone; the key itself stays 0600.
chmod 755 "$state" "$state/munge"
mungekey --create --keyfile="$state/munge/munge.key"
socket="$state/munge/munge.socket"
munged --foreground --socket="$socket" --key-file="$state/munge/munge.key" \
  --pid-file="$state/munge/munged.pid" --seed-file="$state/munge/munged.seed" >"$state/munged.log" 2>&1 &
pids+=($!)
wait_for 10 munged bash -c "munge -n --socket='$socket' 2>/dev/null | unmunge --socket='$socket' >/dev/null 2>&1"

host=$(hostname -s)
# 10% of the memory left to the system, as slurmd drains a node that has less than it claims.
memory=$(awk '/^MemTotal:/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)
export SLURM_CONF="$state/slurm.conf"
# Loopback addresses and ports off Slurm's defaults (6817/6818), so that this cluster neither needs
# the host name to resolve nor meets a real Slurm on this machine. No cgroups (linuxproc, task/none,
# no accounting), which containers often lack. No mail. In the foreground (-D) the daemons log to
# stderr, which goes to files beside this. MinJobAge keeps finished tasks in `scontrol show
# job` for the checks below.
cat >"$SLURM_CONF" <<EOF
ClusterName=orbitmesh-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/slurmd
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=3600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -D -f "$SLURM_CONF" >"$state/slurmctld.log" 2>&1 &
pids+=($!)
wait_for 30 slurmctld bash -c "scontrol ping | grep -q UP"
slurmd -D -f "$SLURM_CONF" >"$state/slurmd.log" 2>&1 &
pids+=($!)
wait_for 60 "node $host to be idle" bash -c "sinfo -h -n '$host' -o %t | grep -qx idle"
echo "cluster up: $host, $(nproc) CPUs, ${memory} MB, state in $state"

out="$state/bench"
single="$state/single"
export ORBITMESH="$orbitmesh"
# The sbatch file asks 8 CPUs and 16 GB, a real cluster's node share; this node has less.
submit=(sbatch --parsable --cpus-per-task=1 --mem=2G --output="$state/logs/bench-%A_%a.log")
submit_bench() {
  "${submit[@]}" "$@" "$repo/scripts/slurm/bench-array.sbatch" "$dataset" "$out" "${bench_args[@]}"
}

# task_state JOB TASK: the array task's state, as `scontrol show job` reports it.
task_state() {
  scontrol show job "$1_$2" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'
}

# wait_job JOB: until none of its tasks is pending or running.
wait_job() {
  wait_for 600 "job $1 to finish" bash -c "[[ -z \$(squeue -h -j '$1' -o %i) ]]"
}

# expect_completed JOB TASK...: each task finished with exit code 0.
expect_completed() {
  local job=$1 task info
  shift
  for task in "$@"; do
    info=$(scontrol show job "${job}_$task")
    if ! { grep -q 'JobState=COMPLETED' <<<"$info" && grep -q 'ExitCode=0:0' <<<"$info"; }; then
      die "task ${job}_$task did not complete: $(grep -o 'JobState=[^ ]*\|ExitCode=[^ ]*' <<<"$info" | tr '\n' ' ')(log: $state/logs/bench-${job}_$task.log)"
    fi
  done
}

job=$(submit_bench --array="0-$((shards - 1))")
jobs_submitted+=("$job")
echo "submitted array job $job (tasks 0-$((shards - 1)))"

# The fault: cancel one task once it runs, as a preempted or failed node would end it.
wait_for 300 "task ${job}_$fault_task to run" \
  bash -c "squeue -h -r -j '$job' -o '%K %T' | grep -qx '$fault_task RUNNING'"
scancel "${job}_$fault_task"
wait_job "$job"
[[ $(task_state "$job" "$fault_task") == CANCELLED ]] \
  || die "task ${job}_$fault_task ended $(task_state "$job" "$fault_task"), not CANCELLED: it finished before scancel reached it"
echo "task ${job}_$fault_task cancelled while running; part-$fault_task after it:"
written=$(find "$out/part-$fault_task" -mindepth 1 -maxdepth 2 2>/dev/null | sed "s|^$out/|  |" | sort)
echo "${written:-  (nothing written yet)}"
others=()
for ((task = 0; task < shards; task++)); do
  ((task == fault_task)) || others+=("$task")
done
expect_completed "$job" "${others[@]}"

# A lone index's array has one task, so SHARDS tells the task how many shards there are.
retry=$(SHARDS=$shards submit_bench --array="$fault_task")
jobs_submitted+=("$retry")
echo "resubmitted task $fault_task as job $retry"
wait_job "$retry"
expect_completed "$retry" "$fault_task"

"$orbitmesh" bench merge "$out"/part-* --out "$out/all"
"$orbitmesh" bench "$dataset" --out "$single" "${bench_args[@]}"

# `seconds` is the one timing column (wall time per object); everything else must agree exactly.
python3 - "$out/all/results.csv" "$single/results.csv" "$objects" <<'EOF'
import csv
import sys

merged_path, single_path, objects = sys.argv[1], sys.argv[2], int(sys.argv[3])


def table(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    if "seconds" not in header or "error" not in header:
        sys.exit(f"{path}: header {header} lacks the seconds or error column")
    keep = [i for i, name in enumerate(header) if name != "seconds"]
    return [[row[i] for i in keep] for row in rows]


merged, single = table(merged_path), table(single_path)
for label, rows in (("merged (Slurm array)", merged), ("single run", single)):
    print(f"{label}, results.csv without seconds:")
    for row in rows:
        print("  " + ",".join(row))
error = merged[0].index("error")
failed = [row[0] for row in merged[1:] + single[1:] if row[error]]
if failed:
    sys.exit(f"objects with errors: {failed}")
if len(merged) - 1 != objects:
    sys.exit(f"the merge has {len(merged) - 1} objects, expected {objects}")
if merged != single:
    sys.exit("the merged results.csv differs from the single run's")
EOF
echo "PASS: Slurm array ($shards tasks, task $fault_task cancelled and resubmitted) merged equals the single run, in ${SECONDS} s"
