#!/usr/bin/env bash
# SystemC model speed on the full Fashion-MNIST test set, beside the integer engine in the same
# run, for bundles of both built-in targets (trained first if runs/<target>/model.qhw is missing).
#
#   bench/sim_speed.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
scripts/build >/dev/null
qat_hw=build/release/cli/qat-hw
echo "| target | engine | images | wall s | images/s | check |"
echo "|---|---|---|---|---|---|"
for target in ternary-asic int4-fpga; do
  bundle=runs/$target/model.qhw
  [[ -d $bundle ]] || "$qat_hw" train --target "$target" --out "runs/$target" >/dev/null 2>&1
  start=$(date +%s%N)
  "$qat_hw" infer "$bundle" --engine int --json /tmp/qathw-int.json >/dev/null
  int_ms=$(( ($(date +%s%N) - start) / 1000000 ))
  start=$(date +%s%N)
  check=$("$qat_hw" sim "$bundle" --check --json /tmp/qathw-sim.json | grep -o "every layer of [0-9]* images identical" || echo MISMATCH)
  sim_ms=$(( ($(date +%s%N) - start) / 1000000 ))
  int_rate=$(python3 -c "import json; print(round(json.load(open('/tmp/qathw-int.json'))['images_per_s']))")
  sim_rate=$(python3 -c "import json; print(round(json.load(open('/tmp/qathw-sim.json'))['sim_images_per_s']))")
  printf '| %s | int | 10000 | %d.%03d | %s | |\n' "$target" $((int_ms / 1000)) $((int_ms % 1000)) "$int_rate"
  printf '| %s | systemc (+ --check against int) | 10000 | %d.%03d | %s | %s |\n' "$target" $((sim_ms / 1000)) \
    $((sim_ms % 1000)) "$sim_rate" "$check"
done
