#!/usr/bin/env bash
# Two runs on one place: a second `train` into a folder another train is writing, and a second
# `sweep` on a database another sweep is running, each exit 2 naming the holder (pid and host);
# the first runs on undisturbed. A `sweep-point` of a point another process runs waits for it.
# Usage: concurrent_runs.sh QATHW TINY_DATA SWEEP_SPEC WORKDIR
set -euo pipefail
qathw=$1 data=$2 spec=$3 work=$4
rm -rf "$work" && mkdir -p "$work"
cd "$work"
fail() { echo "FAIL: $*"; exit 1; }

# Waits until lock file $1 names its holder, i.e. the first run holds it.
wait_for_holder() {
  for _ in $(seq 600); do
    [ -s "$1" ] && return 0
    sleep 0.1
  done
  fail "$1 was never taken"
}

"$qathw" train --data "$data" --hidden 4 --epochs 10000 --no-fp32 --out first > first.log 2>&1 &
first=$!
wait_for_holder first/train.lock
set +e
out=$("$qathw" train --data "$data" --hidden 4 --epochs 1 --no-fp32 --out first 2>&1)
status=$?
set -e
echo "$out"
[ "$status" -eq 2 ] || fail "second train exited $status, wanted 2"
[[ "$out" == *"first: another qat-hw train is writing this folder (pid $first on "* ]] ||
  fail "second train did not name the holder"
kill -0 "$first" 2>/dev/null || { cat first.log; fail "the first train did not run on"; }
kill "$first"; wait "$first" 2>/dev/null || true

# An empty cache of its own: the point then synthesizes and builds its RTL (seconds), so it is
# still running when the hand-started sweep-point below comes; with warm caches it could end first.
"$qathw" sweep "$spec" --db s.sqlite --jobs 1 --cache cache > sweep.log 2>&1 &
sweep=$!
wait_for_holder s.sqlite.work/sweep.lock
set +e
out=$("$qathw" sweep "$spec" --db s.sqlite --jobs 1 --cache cache 2>&1)
status=$?
set -e
echo "$out"
[ "$status" -eq 2 ] || fail "second sweep exited $status, wanted 2"
[[ "$out" == *"s.sqlite: another qat-hw sweep is running on this database (pid $sweep on "* ]] ||
  fail "second sweep did not name the holder"
# Its first point (index 0: the first to run) is being run by the sweep's worker: a hand-started
# run of it waits, then finds it recorded and does not run it again.
# (The sweep holds its database's lock before its worker takes the point's.)
for _ in $(seq 600); do
  compgen -G 's.sqlite.work/locks/*.lock' >/dev/null && break
  sleep 0.1
done
point_lock=$(compgen -G 's.sqlite.work/locks/*.lock' | head -1) || fail "no point was started"
wait_for_holder "$point_lock"
out=$("$qathw" sweep-point "$spec" --db s.sqlite --index 0 --cache cache 2>&1)
echo "$out"
[[ "$out" == *"waiting for pid "* ]] || fail "sweep-point did not wait for the worker"
[[ "$out" == *"already done"* || "$out" == *"already failed"* ]] || fail "sweep-point ran the point again"
kill "$sweep"; wait "$sweep" 2>/dev/null || true
echo "PASS"
