#!/usr/bin/env bash
# Convolutional training throughput and accuracy, side by side in one run: `qat-hw train --model
# lenet` against the same QAT LeNet in PyTorch (PyPI) and Brevitas (bench/peers/qat_cnn.py), on
# Fashion-MNIST, with one recipe passed to every side, each side at 1 and 2 threads.
#
#   bench/cnn_vs_peers.sh [OUT_DIR]        (default bench/results)
#
# Writes OUT_DIR/cnn_vs_peers.json (every run) and OUT_DIR/cnn_vs_peers.md (the table and the
# ratios against PyTorch). Environment:
#   EPOCHS=N          epochs of every run (default 20)
#   THREADS="1 2"     thread counts
#   SIDES="qat-hw torch-pypi brevitas"   sides to run (fewer: check one half)
#   MAX_STEPS=N       stop each peer run after N steps (quick checks; qat-hw always runs EPOCHS)
#   PEER_TIMEOUT=S    kill a peer run after S seconds (default: no limit)
#   PEERS_VENV=DIR    the peers' venv (default build/peers-venv)
#   NO_BUILD=1        use build/release as it is (default: scripts/build first)
# qat-hw takes ~15-25 s per epoch and phase (FP32 twin, ternary QAT, INT4 QAT) per thread count,
# a peer run about as long per epoch; at 20 epochs the script takes about 1.5 hours on 2 cores.
# Run it on an otherwise idle machine: at 2 threads PyTorch's spinning OpenMP threads slow down
# tenfold beside other load.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/bench/results}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
THREADS="${THREADS:-1 2}"
SIDES="${SIDES:-qat-hw torch-pypi brevitas}"
MAX_STEPS="${MAX_STEPS:-0}"
PEER_TIMEOUT="${PEER_TIMEOUT:-0}"
VENV="${PEERS_VENV:-$ROOT/build/peers-venv}"
MODEL=lenet

# The recipe, the single place both sides take it from.
RECIPE=(--epochs "${EPOCHS:-20}" --batch 256 --lr 4e-3 --weight-decay 0.05 --warmup-frac 0.05 --seed 1
        --ste identity)

has_side() { [[ " $SIDES " == *" $1 "* ]]; }

cd "$ROOT"
if has_side qat-hw && [[ "${NO_BUILD:-0}" != 1 ]]; then
  scripts/build >/dev/null
fi
if has_side torch-pypi || has_side brevitas; then
  bench/peers/setup_venv.sh >&2
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
qat_hw="$ROOT/build/release/cli/qat-hw"

if has_side qat-hw; then
  for threads in $THREADS; do
    for target in ternary-asic int4-fpga; do
      echo "== qat-hw train --model $MODEL --target $target --threads $threads" >&2
      # The FP32 twin is the same model for both targets: train it once per thread count.
      fp32=()
      [[ "$target" == int4-fpga ]] && fp32=(--no-fp32)
      # --device cpu: the peers run on the CPU.
      # A non-zero status with a report (the integer engine disagreeing) is kept as a row; the
      # report's agreement field says so.
      rc=0
      "$qat_hw" train --model "$MODEL" --target "$target" --threads "$threads" --device cpu "${RECIPE[@]}" \
        "${fp32[@]}" --out "$WORK/ours-$target-$threads" >/dev/null || rc=$?
      if [[ -f "$WORK/ours-$target-$threads/report.json" ]]; then
        cp "$WORK/ours-$target-$threads/report.json" "$WORK/ours-$target-$threads.json"
      else
        printf '{"target": "%s", "threads": %s, "error": "qat-hw train: exit status %s, no report"}\n' \
          "$target" "$threads" "$rc" >"$WORK/ours-$target-$threads.json"
      fi
    done
  done
fi

# peer NAME FRAMEWORK ARGS...: one peer run; its JSON (or an error object) in WORK/peer-NNN.json.
n=0
peer() {
  local name="$1" framework="$2"
  shift 2
  local base
  base="$WORK/peer-$(printf '%03d' "$n")"
  n=$((n + 1))
  echo "== $name $*" >&2
  local t=() steps=()
  [[ "$PEER_TIMEOUT" != 0 ]] && t=(timeout "$PEER_TIMEOUT")
  [[ "$MAX_STEPS" != 0 ]] && steps=(--max-steps "$MAX_STEPS")
  local rc=0
  "${t[@]}" "$VENV/bin/python" bench/peers/qat_cnn.py --framework "$framework" --model "$MODEL" "$@" \
    "${RECIPE[@]}" "${steps[@]}" >"$base.out" 2>"$base.err" || rc=$?
  tail -n 1 "$base.err" >&2
  python3 - "$base" "$name" "$rc" "$*" <<'PY'
import json, sys
base, name, rc, args = sys.argv[1:5]
lines = [l for l in open(base + ".out", errors="replace").read().splitlines() if l.strip()]
entry = None
if rc == "0" and lines:
    try:
        entry = json.loads(lines[-1])
    except ValueError:
        pass
if entry is None:
    err = open(base + ".err", errors="replace").read().strip().splitlines()
    entry = {"args": args, "error": f"exit status {rc}: " + " | ".join(err[-3:])}
json.dump({"peer": name, **entry}, open(base + ".json", "w"))
PY
}

for threads in $THREADS; do
  if has_side torch-pypi; then
    peer torch-pypi torch --mode fp32 --threads "$threads"
    for weights in ternary int4; do
      peer torch-pypi torch --mode qat --weights "$weights" --threads "$threads"
    done
  fi
  if has_side brevitas; then
    for weights in ternary int4; do
      peer brevitas brevitas --mode qat --weights "$weights" --threads "$threads"
    done
  fi
done

python3 - "$WORK" "$OUT" "$MODEL" "${EPOCHS:-20}" "$MAX_STEPS" <<'PY'
import glob, json, os, platform, sys

work, out, model, epochs, max_steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rows = []
for path in sorted(glob.glob(os.path.join(work, "ours-*.json"))):
    r = json.load(open(path))
    if "error" in r:
        rows.append(dict(side="qat-hw", mode="?", weights="?", threads=r["threads"], error=r["error"]))
        continue
    weights = "ternary" if r["target"] == "ternary-asic" else "int4"
    t = r["config"]["threads"]
    if "fp32" in r:
        e = r["fp32"].get("epoch_steps_per_s", [])
        rows.append(dict(side="qat-hw", mode="fp32", weights="-", threads=t, steps=r["fp32"]["steps"],
                         steps_per_s=r["fp32"]["steps_per_s"], accuracy=r["fp32"]["test_accuracy"],
                         first_epoch=e[0] if e else None, last_epoch=e[-1] if e else None))
    e = r["qat"].get("epoch_steps_per_s", [])
    rows.append(dict(side="qat-hw", mode="qat", weights=weights, threads=t, steps=r["qat"]["steps"],
                     steps_per_s=r["qat"]["steps_per_s"], accuracy=r["qat"]["test_accuracy"],
                     ptq=r.get("ptq", {}).get("test_accuracy"), agreement=r["agreement"]["mismatches"],
                     first_epoch=e[0] if e else None, last_epoch=e[-1] if e else None))
for path in sorted(glob.glob(os.path.join(work, "peer-*.json"))):
    p = json.load(open(path))
    if "error" in p:
        rows.append(dict(side=p["peer"], mode="?", weights="?", threads="?", error=f"{p['args']}: {p['error']}"))
        continue
    side = p["peer"] + " " + p.get("framework_version", "")
    rows.append(dict(side=side.strip(), mode=p["mode"], weights=p["weights"] if p["mode"] == "qat" else "-",
                     threads=p["threads"], steps=p["steps"], steps_per_s=p["steps_per_s"],
                     accuracy=p["test_accuracy"], first_epoch=p.get("first_epoch_steps_per_s"),
                     last_epoch=p.get("last_epoch_steps_per_s"), quantizers=p.get("quantizers")))

def best(side_pred, mode, weights=None):
    c = [r for r in rows if "error" not in r and side_pred(r["side"]) and r["mode"] == mode
         and (weights is None or r["weights"] == weights)]
    return max(c, key=lambda r: r["steps_per_s"]) if c else None

ours = lambda s: s == "qat-hw"
pypi = lambda s: s.startswith("torch-pypi")
brevitas = lambda s: s.startswith("brevitas")
lines = ["| side | mode | weights | threads | steps/s | first / last epoch | test accuracy |",
         "|---|---|---|---|---|---|---|"]
for r in rows:
    if "error" in r:
        lines.append(f"| {r['side']} | failed: {r['error'][:80]} | | | | | |")
        continue
    epochs_col = f"{r['first_epoch']:.1f} / {r['last_epoch']:.1f}" if r.get("first_epoch") else ""
    lines.append(f"| {r['side']} | {r['mode']} | {r['weights']} | {r['threads']} | {r['steps_per_s']:.1f} | "
                 f"{epochs_col} | {100 * r['accuracy']:.2f}% |")
summary = []
if max_steps:
    summary.append(f"- peer runs stopped after {max_steps} steps (MAX_STEPS): their accuracies are not comparable")
pf = best(pypi, "fp32")
for w in ("ternary", "int4"):
    # Each side at its best thread count.
    o, pq, bq = best(ours, "qat", w), best(pypi, "qat", w), best(brevitas, "qat", w)
    if o and pq:
        summary.append(f"- {w} QAT: qat-hw {o['steps_per_s']:.1f} steps/s ({o['threads']} threads) vs PyTorch QAT "
                       f"{pq['side']} {pq['steps_per_s']:.1f} ({pq['threads']} threads): "
                       f"**{o['steps_per_s'] / pq['steps_per_s']:.2f}x**"
                       + (f"; vs its FP32 ({pf['steps_per_s']:.1f}, {pf['threads']} threads): "
                          f"**{o['steps_per_s'] / pf['steps_per_s']:.2f}x**" if pf else ""))
    if o and bq:
        summary.append(f"- {w} QAT against Brevitas ({bq['side']}, {bq['steps_per_s']:.1f} steps/s, {bq['threads']} "
                       f"threads): {o['steps_per_s'] / bq['steps_per_s']:.2f}x")
    if o and (pq or bq):
        peers_acc = ", ".join(f"{p['side']} {100 * p['accuracy']:.2f}%" for p in (pq, bq) if p)
        summary.append(f"- {w} QAT accuracy: qat-hw {100 * o['accuracy']:.2f}% vs {peers_acc}")
    if o and o.get("first_epoch"):
        summary.append(f"- {w} QAT per-epoch steps/s of qat-hw ({o['threads']} threads): first {o['first_epoch']:.1f}, "
                       f"last {o['last_epoch']:.1f} ({o['last_epoch'] / o['first_epoch']:.0%})")
for r in rows:
    if r.get("agreement"):
        summary.append(f"- qat-hw {r['weights']} ({r['threads']} threads): the integer engine disagreed with the "
                       f"trainer on {r['agreement']} output integers")
md = f"Model {model}, {epochs} epochs.\n\n" + "\n".join(lines + [""] + summary) + "\n"
result = {"machine": platform.processor() or platform.machine(), "model": model, "epochs": epochs,
          "peer_max_steps": max_steps or None, "rows": rows, "summary": summary}
for name, text in (("cnn_vs_peers.json", json.dumps(result, indent=1) + "\n"), ("cnn_vs_peers.md", md)):
    tmp = os.path.join(out, name + ".tmp")
    open(tmp, "w").write(text)
    os.replace(tmp, os.path.join(out, name))
print(md)
PY
