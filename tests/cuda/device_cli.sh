#!/bin/sh
# device_cli.sh QATHW DATA BUNDLE OUT: the command line's CUDA options on whatever this machine has.
# With a usable device they must work and name it; without one, `train --device cuda` and
# `infer --engine cuda` must exit 2 with the reason, and `--device auto` must fall back to the CPU.
qathw=$1 data=$2 bundle=$3 out=$4
fail() { echo "device_cli.sh: $*" >&2; exit 1; }

auto=$("$qathw" train --device auto --data "$data" --hidden 8 --batch 16 --epochs 1 --no-fp32 --out "$out/auto" 2>&1)
rc=$?
printf '%s\n' "$auto"
[ $rc -eq 0 ] || fail "train --device auto exited $rc"
if printf '%s\n' "$auto" | grep -q '^train: device: cuda:0 (.*), chosen by --device auto$'; then
  gpu=yes
elif printf '%s\n' "$auto" | grep -q '^train: device: cpu (--device auto: .*; falling back to the CPU)$'; then
  gpu=no
else
  fail "train --device auto did not say which device it chose"
fi

cuda=$("$qathw" train --device cuda --data "$data" --hidden 8 --batch 16 --epochs 1 --no-fp32 --out "$out/cuda" 2>&1)
rc=$?
printf '%s\n' "$cuda"
infer=$("$qathw" infer "$bundle" --engine cuda --data "$data" 2>&1)
irc=$?
printf '%s\n' "$infer"
if [ $gpu = yes ]; then
  [ $rc -eq 0 ] || fail "train --device cuda exited $rc with a device present"
  printf '%s\n' "$cuda" | grep -q ' 0 mismatching output integers' || fail "GPU-trained bundle disagrees with the integer engine"
  [ $irc -eq 0 ] || fail "infer --engine cuda exited $irc with a device present"
  printf '%s\n' "$infer" | grep -q '^engine cuda: 64 images' || fail "infer --engine cuda printed no result"
else
  [ $rc -eq 2 ] || fail "train --device cuda exited $rc without a device (wanted 2)"
  printf '%s\n' "$cuda" | grep -Eq 'qat-hw: --device cuda: (no CUDA device: .+|CUDA support was not compiled in)' ||
    fail "train --device cuda gave no reason"
  [ $irc -eq 2 ] || fail "infer --engine cuda exited $irc without a device (wanted 2)"
  printf '%s\n' "$infer" | grep -Eq 'qat-hw: --engine cuda: (no CUDA device: .+|CUDA support was not compiled in)' ||
    fail "infer --engine cuda gave no reason"
fi
echo "device_cli.sh: ok (device present: $gpu)"
