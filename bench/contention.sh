#!/usr/bin/env bash
# The trainer on a busy machine, against itself on an idle one, in one run: QAT steps/s (a)
# alone, (b) beside one CPU-bound process, (c) two trainings at once; each with the default
# --threads auto and with --threads fixed at the usable CPUs, so the table shows what fitting
# the thread count to the machine is worth. Also the per-epoch steps/s of the first and last
# epoch of the idle run (denormals: the last must hold the first's pace). Writes Markdown to
# stdout and JSON to OUT_DIR/contention.json.
#
#   bench/contention.sh [EPOCHS] [OUT_DIR]    (default 4 epochs of Fashion-MNIST; bench/results)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
epochs=${1:-4}
out=${2:-bench/results}
mkdir -p "$out"
out=$(cd "$out" && pwd)
qat_hw=build/release/cli/qat-hw
[[ -x $qat_hw ]] || scripts/build >/dev/null
work=$(mktemp -d)
hog_pid=
cleanup() {
  [[ -n $hog_pid ]] && kill "$hog_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
cpus=$(nproc)

# train OUT THREADS: QAT only, its steps/s and last/first epoch ratio from the report.
train() {
  "$qat_hw" train --no-fp32 --epochs "$epochs" --threads "$2" --out "$work/$1" >"$work/$1.log" 2>&1
  python3 - "$work/$1/report.json" <<'PY'
import json, sys
q = json.load(open(sys.argv[1]))["qat"]
e = q["epoch_steps_per_s"]
print(f'{q["steps_per_s"]:.1f} {e[0]:.1f} {e[-1]:.1f}')
PY
}

start_hog() {
  sh -c 'while :; do :; done' &
  hog_pid=$!
}
stop_hog() {
  kill "$hog_pid" 2>/dev/null || true
  wait "$hog_pid" 2>/dev/null || true
  hog_pid=
}

declare -A rate
for threads in auto "$cpus"; do
  read -r alone first last < <(train "alone-$threads" "$threads")
  rate[alone_$threads]=$alone rate[first_$threads]=$first rate[last_$threads]=$last
  start_hog
  read -r busy _ _ < <(train "busy-$threads" "$threads")
  stop_hog
  rate[busy_$threads]=$busy
  train "pair-a-$threads" "$threads" >"$work/pair-a.out" &
  pair=$!
  read -r b _ _ < <(train "pair-b-$threads" "$threads")
  wait "$pair"
  read -r a _ _ <"$work/pair-a.out"
  rate[pair_$threads]=$(python3 -c "print(round($a + $b, 1))")
done

python3 - "$out" "$cpus" "$epochs" "${rate[alone_auto]}" "${rate[busy_auto]}" "${rate[pair_auto]}" \
  "${rate[first_auto]}" "${rate[last_auto]}" "${rate[alone_$cpus]}" "${rate[busy_$cpus]}" "${rate[pair_$cpus]}" <<'PY'
import json, os, sys
out, cpus, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
a_alone, a_busy, a_pair, first, last, f_alone, f_busy, f_pair = map(float, sys.argv[4:])
rows = [
    ("auto", a_alone, a_busy, a_pair),
    (str(cpus), f_alone, f_busy, f_pair),
]
print(f"QAT (ternary-asic, 784-256-256-10, batch 256), {epochs} epochs, {cpus} CPUs")
print()
print("| --threads | alone steps/s | beside a CPU-bound process | (of alone) | two trainings together | (of one alone) |")
print("|---|---|---|---|---|---|")
for name, alone, busy, pair in rows:
    print(f"| {name} | {alone:.0f} | {busy:.0f} | {busy / alone:.0%} | {pair:.0f} | {pair / alone:.0%} |")
print()
print(f"Idle run, --threads auto: first epoch {first:.0f} steps/s, last epoch {last:.0f} steps/s ({last / first:.0%}).")
result = {"cpus": cpus, "epochs": epochs,
          "auto": {"alone": a_alone, "busy": a_busy, "pair_total": a_pair, "first_epoch": first, "last_epoch": last},
          "fixed": {"threads": cpus, "alone": f_alone, "busy": f_busy, "pair_total": f_pair}}
tmp = os.path.join(out, "contention.json.tmp")
with open(tmp, "w") as f:
    json.dump(result, f, indent=2)
os.replace(tmp, os.path.join(out, "contention.json"))
PY
