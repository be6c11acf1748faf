#!/usr/bin/env bash
# A sweep killed with SIGKILL mid-run and run again finishes with every point exactly once and
# the same figures as an uninterrupted run of the same spec.
# Usage: sweep_resume_test.sh QATHW SPEC WORKDIR
set -euo pipefail
qathw=$1 spec=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
cache=$work/cache  # shared: synthesis and RTL builds are cached work, not results

"$qathw" sweep "$spec" --db "$work/reference.sqlite" --jobs 2 --cache "$cache" > "$work/reference.log" 2>&1 ||
  { cat "$work/reference.log"; echo "FAIL: the uninterrupted sweep failed"; exit 1; }
points=$(sqlite3 "$work/reference.sqlite" "SELECT value FROM sweep WHERE key = 'points'")

rows() { sqlite3 "$1" "SELECT count(*) FROM points" 2>/dev/null || echo 0; }

# Kill the sweep (and with it its workers) as soon as its first point is recorded: the other
# worker is then in the middle of a point.
"$qathw" sweep "$spec" --db "$work/killed.sqlite" --jobs 2 --cache "$cache" > "$work/killed.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  [ "$(rows "$work/killed.sqlite")" -ge 1 ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
# Its workers die with it, but one may be committing its point at this moment: count the rows once
# every point's lock is free (each worker holds its point's lock until it exits).
for lock in "$work/killed.sqlite.work/locks/"*.lock; do
  [ -e "$lock" ] && flock -w 120 "$lock" true
done
before=$(rows "$work/killed.sqlite")
echo "killed the sweep with $before of $points points recorded"
[ "$before" -lt "$points" ] || { echo "FAIL: the sweep finished before it could be killed"; exit 1; }

"$qathw" sweep "$spec" --db "$work/killed.sqlite" --jobs 2 --cache "$cache" > "$work/resumed.log" 2>&1 ||
  { cat "$work/resumed.log"; echo "FAIL: the resumed sweep failed"; exit 1; }
grep -q "$((points - before)) to run" "$work/resumed.log" ||
  { cat "$work/resumed.log"; echo "FAIL: the re-run did not resume (expected $((points - before)) to run)"; exit 1; }

metrics="hash, point_index, status, overrides, target_hash, training_key, accuracy, cycles, latency_us,
         utilization, energy_nj, area_cells, flip_flops, observed_acc_bits, provable_acc_bits, sim_samples,
         verified_engines, mismatch"
sqlite3 "$work/reference.sqlite" "SELECT $metrics FROM points ORDER BY hash" > "$work/reference.txt"
sqlite3 "$work/killed.sqlite" "SELECT $metrics FROM points ORDER BY hash" > "$work/resumed.txt"
count=$(sqlite3 "$work/killed.sqlite" "SELECT count(*), count(DISTINCT hash) FROM points")
[ "$count" = "$points|$points" ] || { echo "FAIL: $count rows|distinct hashes, expected $points of each"; exit 1; }
done=$(sqlite3 "$work/killed.sqlite" "SELECT count(*) FROM points WHERE status = 'done'")
[ "$done" = "$points" ] || { sqlite3 "$work/killed.sqlite" "SELECT hash, status, error, mismatch FROM points"; echo "FAIL: $done of $points done"; exit 1; }
diff "$work/reference.txt" "$work/resumed.txt" || { echo "FAIL: the resumed sweep's figures differ"; exit 1; }
echo "PASS: $points points, each once, figures identical to the uninterrupted run"
