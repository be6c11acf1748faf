#!/usr/bin/env bash
# Runs one fuzzer of the fuzz preset on corpus folder CORPUS, after copying into it the seeds that
# FUZZER.seeds lists (fuzz/CMakeLists.txt writes that list beside the fuzzer), with the dictionary
# fuzz/NAME.dict when there is one. --fresh empties CORPUS first, so every run starts alike.
#   fuzz/run.sh [--fresh] build/fuzz/fuzz/NAME CORPUS [libFuzzer options]
set -euo pipefail
fresh=0
if [ "${1:-}" = --fresh ]; then
  fresh=1
  shift
fi
fuzzer=$1 corpus=$2
shift 2
if [ "$fresh" = 1 ]; then rm -rf "$corpus"; fi
mkdir -p "$corpus"
n=0
while IFS= read -r seed; do
  [ -n "$seed" ] || continue
  cp "$seed" "$corpus/seed-$n-$(basename "$seed")"
  n=$((n + 1))
done < "$fuzzer.seeds"
options=(-rss_limit_mb=2048)
dict=$(dirname "$0")/$(basename "$fuzzer").dict
if [ -f "$dict" ]; then options+=("-dict=$dict"); fi
exec "$fuzzer" "${options[@]}" "$@" "$corpus"
