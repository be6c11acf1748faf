#!/usr/bin/env bash
# A sweep whose points train a model file (training.model as an axis): the point runs end to end
# and its SystemC model and RTL agree with the integer engine on every layer.
# Usage: sweep_model_test.sh QATHW SPEC WORKDIR
set -euo pipefail
qathw=$1 spec=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
"$qathw" sweep "$spec" --db "$work/cnn.sqlite" --jobs 1 --cache "$work/cache" > "$work/sweep.log" 2>&1 ||
  { cat "$work/sweep.log"; echo "FAIL: the sweep failed"; exit 1; }
row=$(sqlite3 "$work/cnn.sqlite" "SELECT status, verified_engines, overrides, cycles > 0, area_cells > 0, coalesce(error, '') FROM points")
echo "$row"
[[ "$row" == 'done|int,systemc,rtl|{"array.lanes":4,"array.rows":2,"training.model":"../../cli/tiny-cnn.toml"}|1|1|' ]] ||
  { cat "$work/sweep.log"; echo "FAIL: unexpected point row"; exit 1; }
echo "PASS: the model point trained, simulated and verified on SystemC and the RTL"
