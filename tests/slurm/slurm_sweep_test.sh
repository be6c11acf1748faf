#!/usr/bin/env bash
# slurm_sweep_test.sh SLURM_LOCAL QATHW SPEC TINY_IDX: `qat-hw sweep --backend slurm` on a real
# one-node cluster (scripts/slurm-local). The sweep submits its points as a job array and waits for
# it; then every point is in the SQLite database exactly once with status 'done', `sweep status
# --json` agrees, the report is written, and a re-run finds nothing left to do.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR
. "$here/slurm_test_lib.sh"
[ $# -eq 4 ] || fail "usage: $0 SLURM_LOCAL QATHW SPEC TINY_IDX"
slurm_local=$1 qathw=$2 spec_in=$3 tiny=$(cd "$4" && pwd)
points=2                  # the points of SPEC: "array.rows" = [4, 8]
sweep_limit=${QATHW_SLURM_SWEEP_TIMEOUT:-600}   # below the ctest TIMEOUT, so the cluster is stopped

slurm_test_require
command -v sqlite3 >/dev/null 2>&1 || fail "sqlite3 is not installed (Debian package sqlite3, scripts/setup)"
command -v python3 >/dev/null 2>&1 || fail "python3 is not installed (scripts/setup)"
[ -x "$qathw" ] || fail "$qathw: no qat-hw executable"
t0=$SECONDS
slurm_test_start "$slurm_local"
echo "cluster up in $((SECONDS - t0)) s: $SLURM_CONF"

# The spec with its data set as an absolute path: array tasks need not share our directory.
spec=$work/tiny_sweep.toml
sed "s|^data = .*|data = \"$tiny\"|" "$spec_in" >"$spec"
grep -q "^data = \"$tiny\"" "$spec" || fail "$spec_in: no 'data = ...' line to point at $tiny"
db=$work/sweep.sqlite
cache=()
if "$qathw" sweep --help 2>&1 | grep -q -- '--cache'; then cache=(--cache "$work/cache"); fi

show_logs() {
  local f
  for f in "$db".work/logs/*; do
    [ -f "$f" ] || continue
    echo "----- $f (last 30 lines) -----" >&2
    tail -n 30 "$f" >&2
  done
}

echo "+ qat-hw sweep $spec --backend slurm --db $db --jobs 2 ${cache[*]}"
rc=0
(cd "$work" && timeout -k 10 "$sweep_limit" "$qathw" sweep "$spec" --backend slurm --db "$db" --jobs 2 "${cache[@]}") || rc=$?
echo "sweep exit $rc after $((SECONDS - t0)) s"
if [ $rc -ne 0 ]; then
  show_logs
  [ $rc -ne 124 ] || fail "qat-hw sweep did not finish in $sweep_limit s"
  fail "qat-hw sweep --backend slurm exited $rc"
fi

# The sweep ran through Slurm: its array tasks are known to the controller, all completed.
jobs_text=$(scontrol show job 2>/dev/null || true)
completed=$(grep -c 'JobState=COMPLETED' <<<"$jobs_text" || true)
others=$(grep -o 'JobState=[A-Z_]*' <<<"$jobs_text" | grep -vc 'JobState=COMPLETED' || true)
[ "$completed" -ge "$points" ] || { echo "$jobs_text" >&2; fail "$completed completed Slurm tasks, wanted $points"; }
[ "$others" -eq 0 ] || { echo "$jobs_text" >&2; fail "Slurm tasks that did not complete: $others"; }
echo "slurm: $completed array tasks completed"

# Every point exactly once, done.
[ -f "$db" ] || fail "$db: no database"
q() { sqlite3 -batch -noheader "$db" "$1"; }
echo "points table:"
sqlite3 -batch -header -column "$db" "SELECT hash, status FROM points ORDER BY hash"
rows=$(q "SELECT COUNT(*) FROM points")
[ "$rows" -eq "$points" ] || fail "$rows rows in points, wanted $points"
dups=$(q "SELECT COUNT(*) FROM (SELECT hash FROM points GROUP BY hash HAVING COUNT(*) > 1)")
[ "$dups" -eq 0 ] || fail "$dups point hashes appear more than once"
distinct=$(q "SELECT COUNT(DISTINCT hash) FROM points WHERE hash GLOB '[0-9a-f]*' AND length(hash) = 16")
[ "$distinct" -eq "$points" ] || fail "$distinct distinct 16-digit hashes, wanted $points"
not_done=$(q "SELECT COUNT(*) FROM points WHERE status IS NOT 'done'")
[ "$not_done" -eq 0 ] || { sqlite3 -batch -line "$db" "SELECT * FROM points WHERE status IS NOT 'done'" >&2; fail "$not_done points not done"; }
if q "PRAGMA table_info(points)" | cut -d'|' -f2 | grep -qx rows; then
  geometries=$(q "SELECT group_concat(rows, ',') FROM (SELECT rows FROM points ORDER BY rows)")
  [ "$geometries" = "4,8" ] || fail "rows of the points: $geometries, wanted 4,8"
fi

# sweep status agrees.
"$qathw" sweep status "$db" || fail "qat-hw sweep status exited $?"
status_json=$("$qathw" sweep status "$db" --json) || fail "qat-hw sweep status --json exited $?"
echo "status: $status_json"
python3 - "$points" "$status_json" <<'PY' || fail "sweep status --json does not report every point done"
import json, sys
want, s = int(sys.argv[1]), json.loads(sys.argv[2])
ok = s["total"] == want and s["done"] == s["total"] and s["failed"] == 0 and s["pending"] == 0
sys.exit(0 if ok else 1)
PY

# The report.
"$qathw" sweep report "$db" --out "$work/report" || fail "qat-hw sweep report exited $?"
for f in points.csv points.json; do [ -s "$work/report/$f" ] || fail "no $f in $work/report"; done
csv_rows=$(($(wc -l <"$work/report/points.csv") - 1))
[ "$csv_rows" -eq "$points" ] || fail "points.csv has $csv_rows rows, wanted $points"
python3 - "$points" "$work/report/points.json" <<'PY' || fail "points.json does not hold the $points points"
import json, sys
want, doc = int(sys.argv[1]), json.load(open(sys.argv[2]))
rows = doc if isinstance(doc, list) else doc.get("points", [])
sys.exit(0 if len(rows) == want and len({r["hash"] for r in rows}) == want else 1)
PY

# A re-run resumes: nothing left to run, the database unchanged.
before=$(q "SELECT hash, status FROM points ORDER BY hash")
rc=0
(cd "$work" && timeout -k 10 300 "$qathw" sweep "$spec" --backend slurm --db "$db" --jobs 2 "${cache[@]}") || rc=$?
[ $rc -eq 0 ] || { show_logs; fail "the re-run of the finished sweep exited $rc"; }
[ "$(q "SELECT hash, status FROM points ORDER BY hash")" = "$before" ] || fail "the re-run changed the points"

echo "PASS: $points points swept on Slurm in $((SECONDS - t0)) s"
