# shellcheck shell=bash
# Shared by the Slurm tests (sourced): skips when this machine cannot run a local cluster, starts
# one in a temporary folder with scripts/slurm-local, and stops it when the test exits, whether it
# passes or fails.
#
# The tests exit 77 to skip (ctest SKIP_RETURN_CODE): not root, or slurm-wlm or munge missing.
# QATHW_REQUIRE_SLURM=1 turns a skip into a failure (for a CI that must run them).

skip() {
  echo "SKIP: $*" >&2
  if [ "${QATHW_REQUIRE_SLURM:-0}" = 1 ]; then
    echo "FAIL: QATHW_REQUIRE_SLURM=1, so the Slurm tests must run here" >&2
    exit 1
  fi
  exit 77
}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# slurm_test_require: skips unless root with Slurm's daemons and client commands and munge.
slurm_test_require() {
  export PATH=$PATH:/usr/sbin:/sbin
  [ "$(id -u)" -eq 0 ] ||
    skip "the Slurm tests start slurmctld, slurmd and munged and need root (run ctest as root)"
  local cmd path missing=()
  for cmd in slurmctld slurmd slurmstepd sbatch squeue scancel sinfo scontrol munged munge unmunge; do
    path=$(command -v "$cmd" 2>/dev/null) && [ -x "$path" ] || missing+=("$cmd")
  done
  [ ${#missing[@]} -eq 0 ] ||
    skip "Slurm or munge is not installed (missing: ${missing[*]}); install the Debian packages slurm-wlm and munge (scripts/setup)"
}

# slurm_test_start SLURM_LOCAL: starts a cluster in $work (a new temporary folder) and exports
# SLURM_CONF. On exit the cluster is stopped and $work removed; on failure the daemons' logs are
# printed first.
slurm_test_start() {
  local slurm_local=$1 env_lines
  # Short, under /tmp: munge's socket path must stay under 108 bytes.
  work=$(mktemp -d /tmp/qathw-slurm.XXXXXX)
  chmod 0755 "$work"   # munged wants its socket reachable by all
  slurm_local_script=$slurm_local
  trap slurm_test_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  env_lines=$("$slurm_local" start "$work/cluster") || fail "scripts/slurm-local start failed (output above)"
  eval "$env_lines"
  [ -n "${SLURM_CONF:-}" ] || fail "scripts/slurm-local start printed no SLURM_CONF"
  export SLURM_CONF
}

slurm_test_cleanup() {
  local rc=$?
  trap - EXIT
  if [ $rc -ne 0 ] && [ $rc -ne 77 ] && [ -d "$work/cluster/log" ]; then
    local f
    for f in "$work"/cluster/log/*.log; do
      echo "----- $f (last 30 lines) -----" >&2
      tail -n 30 "$f" >&2
    done
  fi
  "$slurm_local_script" stop "$work/cluster" || echo "warning: scripts/slurm-local stop failed" >&2
  rm -rf "$work"
  exit $rc
}

# slurm_wait_job ID SECONDS: waits until job ID (an array: all its tasks) has left the queue.
slurm_wait_job() {
  local id=$1 limit=$2 started=$SECONDS out
  while :; do
    if ! out=$(squeue -h -j "$id" -o %i 2>&1); then
      # A job purged from the controller is reported as invalid: it is no longer queued.
      case "$out" in *"Invalid job id"*) return 0 ;; esac
      fail "squeue -j $id failed: $out"
    fi
    [ -z "$out" ] && return 0
    [ $((SECONDS - started)) -lt "$limit" ] || {
      squeue -j "$id" >&2 || true
      scontrol show job "$id" >&2 || true
      fail "job $id still queued or running after $limit s"
    }
    sleep 0.5
  done
}
