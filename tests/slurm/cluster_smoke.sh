#!/usr/bin/env bash
# cluster_smoke.sh SLURM_LOCAL: a real one-node Slurm cluster (scripts/slurm-local) runs a
# four-task job array, one task per CPU at a time, and every task's output arrives.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR
. "$here/slurm_test_lib.sh"
[ $# -eq 1 ] || fail "usage: $0 SLURM_LOCAL"

slurm_test_require
t0=$SECONDS
slurm_test_start "$1"
echo "cluster up in $((SECONDS - t0)) s: $SLURM_CONF"
sinfo

mkdir -p "$work/out"
cat >"$work/task.sh" <<'TASK'
#!/bin/sh
# One array task: records when it ran, and stays long enough for the tasks to overlap.
start=$(date +%s.%N)
sleep 2
echo "$SLURM_ARRAY_JOB_ID $SLURM_ARRAY_TASK_ID $start $(date +%s.%N)" >"$OUT_DIR/task.$SLURM_ARRAY_TASK_ID"
TASK
chmod +x "$work/task.sh"

id=$(OUT_DIR=$work/out sbatch --parsable --array=0-3 --job-name=smoke --chdir="$work" \
       --output="$work/out/slurm-%A_%a.log" "$work/task.sh") || fail "sbatch failed"
id=${id%%;*}
echo "submitted job array $id"
slurm_wait_job "$id" 120
echo "job array $id left the queue $((SECONDS - t0)) s after the start"

for i in 0 1 2 3; do
  f=$work/out/task.$i
  [ -s "$f" ] || { cat "$work"/out/slurm-*.log >&2 2>/dev/null || true; fail "array task $i wrote no $f"; }
  read -r job task _ <"$f"
  if [ "$job" != "$id" ] || [ "$task" != "$i" ]; then fail "$f holds '$job $task', wanted '$id $i'"; fi
done
n=$(find "$work/out" -name 'task.*' | wc -l)
[ "$n" -eq 4 ] || fail "$n task files, wanted 4"

# Every task completed (finished jobs stay visible to scontrol for MinJobAge).
states=$(scontrol show job "$id" | grep -o 'JobState=[A-Z_]*' | sort | uniq -c | tr -s ' ')
echo "states:$states"
[ "$(scontrol show job "$id" | grep -c 'JobState=COMPLETED')" -eq 4 ] || fail "not all 4 tasks COMPLETED: $states"

# With CR_Core and 2 or more CPUs, tasks run side by side.
if [ "$(nproc)" -ge 2 ]; then
  overlap=$(cat "$work"/out/task.* | awk '{ s[NR] = $3; e[NR] = $4 }
    END { m = 0; for (i = 1; i <= NR; i++) { c = 0; for (j = 1; j <= NR; j++) if (s[j] <= s[i] && s[i] < e[j]) c++; if (c > m) m = c }; print m }')
  [ "$overlap" -ge 2 ] || fail "array tasks ran one at a time on $(nproc) CPUs"
  echo "up to $overlap tasks ran at once"
fi
echo "PASS: 4 array tasks ran on the local cluster in $((SECONDS - t0)) s"
