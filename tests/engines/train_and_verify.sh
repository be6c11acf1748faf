#!/usr/bin/env bash
# train_and_verify.sh QATHW OUT DATA EPOCHS SAMPLES TARGET.toml...: trains each target (FP32 twin
# skipped) and verifies its bundle on int, SystemC, RTL and HLS on the first SAMPLES test images;
# fails unless every engine agrees with the integer engine on every op. One line per target:
# target, QAT test accuracy, verify verdict.
set -euo pipefail
qathw=$1 out=$2 data=$3 epochs=$4 samples=$5
shift 5
mkdir -p "$out"
status=0
for target in "$@"; do
  name=$(basename "$target" .toml)
  "$qathw" train --target "$target" --data "$data" --epochs "$epochs" --no-fp32 --out "$out/$name" \
    > "$out/$name.train.log" 2>&1 || { echo "$name: training failed, see $out/$name.train.log"; status=1; continue; }
  accuracy=$(grep -o 'QAT *test accuracy [0-9.]*%' "$out/$name.train.log" | grep -o '[0-9.]*%')
  if "$qathw" verify "$out/$name/model.qhw" --data "$data" --samples "$samples" --engines int,systemc,rtl,hls \
       --json "$out/$name.verify.json" > "$out/$name.verify.log" 2>&1; then
    echo "$name: QAT $accuracy; int, systemc, rtl, hls identical on every op of $samples images"
  else
    echo "$name: QAT $accuracy; verify FAILED, see $out/$name.verify.log"
    status=1
  fi
done
exit $status
