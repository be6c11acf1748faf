#!/usr/bin/env bash
# Training throughput and accuracy, side by side in one run: `qat-hw train` against the same QAT
# MLP in PyTorch (newest from PyPI, and Debian's python3-torch) and Brevitas, on Fashion-MNIST,
# with one recipe passed to every side, each side at 1 and 2 threads.
#
#   bench/train_vs_peers.sh [OUT_DIR]        (default bench/results)
#
# Writes OUT_DIR/train_vs_peers.json (every run) and OUT_DIR/train_vs_peers.md (the table and
# the ratios against the fastest peer). Environment: EPOCHS (default 20), THREADS ("1 2"),
# PEERS ("torch-pypi torch-debian brevitas"), REPEATS (default 1: rounds of every run of both
# sides, one after the other, so that a slow period of a shared machine slows both; each side's
# best round is compared, and every round's ratio is listed), NO_BUILD=1 (use build/release as
# it is; default: scripts/build first). Run it on an otherwise idle machine.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/bench/results}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
THREADS="${THREADS:-1 2}"

# The recipe, the single place both sides take it from.
RECIPE=(--epochs "${EPOCHS:-20}" --batch 256 --lr 4e-3 --weight-decay 0.05 --warmup-frac 0.05 --hidden 256,256
        --seed 1 --ste identity)

cd "$ROOT"
[[ "${NO_BUILD:-0}" == 1 ]] || scripts/build >/dev/null
bench/peers/setup_venv.sh >&2
bench/peers/setup_debian_torch.sh >&2 || echo "train_vs_peers: Debian's python3-torch unavailable; that row is skipped" >&2

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
qat_hw="$ROOT/build/release/cli/qat-hw"
for round in $(seq 1 "${REPEATS:-1}"); do
  for threads in $THREADS; do
    for target in ternary-asic int4-fpga; do
      echo "== round $round: qat-hw train --target $target --threads $threads" >&2
      # The FP32 twin is the same model for both targets: train it once per thread count.
      fp32=()
      [[ "$target" == int4-fpga ]] && fp32=(--no-fp32)
      "$qat_hw" train --target "$target" --threads "$threads" "${RECIPE[@]}" "${fp32[@]}" \
        --out "$WORK/run" >/dev/null
      cp "$WORK/run/report.json" "$WORK/ours-$round-$target-$threads.json"
      rm -rf "$WORK/run"
    done
  done
  PEER_ARGS="${RECIPE[*]}" THREADS="$THREADS" bench/peers/run_peers.sh "$WORK/peers-$round.json"
done

python3 - "$WORK" "$OUT" "$THREADS" <<'PY'
import glob, json, os, platform, sys

work, out, threads = sys.argv[1], sys.argv[2], sys.argv[3].split()
rows = []
for path in sorted(glob.glob(os.path.join(work, "ours-*.json"))):
    r = json.load(open(path))
    rnd = int(os.path.basename(path).split("-")[1])
    weights = "ternary" if r["target"] == "ternary-asic" else "int4"
    t = r["config"]["threads"]
    if "fp32" in r:
        rows.append(dict(side="qat-hw", mode="fp32", weights="-", threads=t, round=rnd,
                         steps_per_s=r["fp32"]["steps_per_s"], accuracy=r["fp32"]["test_accuracy"]))
    epochs = r["qat"].get("epoch_steps_per_s", [])
    rows.append(dict(side="qat-hw", mode="qat", weights=weights, threads=t, round=rnd,
                     steps_per_s=r["qat"]["steps_per_s"], accuracy=r["qat"]["test_accuracy"],
                     ptq=r.get("ptq", {}).get("test_accuracy"), agreement=r["agreement"]["mismatches"],
                     epochs=epochs, first_epoch=epochs[0] if epochs else None,
                     last_epoch=epochs[-1] if epochs else None))
for path in sorted(glob.glob(os.path.join(work, "peers-*.json"))):
    rnd = int(os.path.basename(path)[len("peers-"):-len(".json")])
    for p in json.load(open(path)):
        if "error" in p:
            rows.append(dict(side=p["peer"], mode="?", weights="?", threads="?", round=rnd, error=p["error"]))
            continue
        side = p["peer"] + " " + p.get("framework_version", "")
        rows.append(dict(side=side.strip(), mode=p["mode"], weights=p.get("weights", "-") if p["mode"] == "qat" else "-",
                         threads=p["threads"], round=rnd, steps_per_s=p["steps_per_s"], accuracy=p["test_accuracy"],
                         quantizers=p.get("quantizers")))
rounds = sorted({r["round"] for r in rows})

def best(side_pred, mode, weights=None, rnd=None):
    c = [r for r in rows if "error" not in r and side_pred(r["side"]) and r["mode"] == mode
         and (weights is None or r["weights"] == weights) and (rnd is None or r["round"] == rnd)]
    return max(c, key=lambda r: r["steps_per_s"]) if c else None

ours = lambda s: s == "qat-hw"
peer = lambda s: s != "qat-hw"
lines = ["| round | side | mode | weights | threads | steps/s | test accuracy |", "|---|---|---|---|---|---|---|"]
for r in rows:
    if "error" in r:
        lines.append(f"| {r['round']} | {r['side']} | failed: {r['error'][:60]} | | | | |")
        continue
    lines.append(f"| {r['round']} | {r['side']} | {r['mode']} | {r['weights']} | {r['threads']} | {r['steps_per_s']:.0f} | "
                 f"{100 * r['accuracy']:.2f}% |")
summary = []
peer_fp32 = best(peer, "fp32")
for w in ("ternary", "int4"):
    o, p = best(ours, "qat", w), best(peer, "qat", w)
    if o and p:
        summary.append(f"- {w} QAT: qat-hw {o['steps_per_s']:.0f} steps/s ({o['threads']} threads) vs fastest peer QAT "
                       f"{p['side']} {p['steps_per_s']:.0f} ({p['threads']} threads): **{o['steps_per_s'] / p['steps_per_s']:.2f}x**"
                       + (f"; vs fastest peer FP32 ({peer_fp32['side']}, {peer_fp32['steps_per_s']:.0f}): "
                          f"**{o['steps_per_s'] / peer_fp32['steps_per_s']:.2f}x**" if peer_fp32 else ""))
        summary.append(f"- {w} QAT accuracy: qat-hw {100 * o['accuracy']:.2f}% vs {p['side']} {100 * p['accuracy']:.2f}%")
    # The PyPI build of PyTorch on its own (the acceptance peer): each side at its best thread count.
    pypi = lambda s: s.startswith("torch-pypi")
    pq, pf = best(pypi, "qat", w), best(pypi, "fp32")
    if o and pq and pf:
        summary.append(f"- {w} QAT against PyPI PyTorch: {o['steps_per_s'] / pq['steps_per_s']:.2f}x its QAT, "
                       f"{o['steps_per_s'] / pf['steps_per_s']:.2f}x its FP32"
                       + (f" (each side's best of {len(rounds)} rounds)" if len(rounds) > 1 else ""))
    if len(rounds) > 1:
        per_round = []
        for rnd in rounds:
            ro, rq = best(ours, "qat", w, rnd), best(pypi, "qat", w, rnd)
            if ro and rq:
                per_round.append(f"{ro['steps_per_s'] / rq['steps_per_s']:.2f}x")
        if per_round:
            summary.append(f"- {w} QAT against PyPI PyTorch's QAT, round by round: " + ", ".join(per_round))
    if o and o.get("first_epoch"):
        summary.append(f"- {w} QAT per-epoch steps/s ({o['threads']} threads): first {o['first_epoch']:.0f}, "
                       f"last {o['last_epoch']:.0f} ({o['last_epoch'] / o['first_epoch']:.0%})")
md = "\n".join(lines + [""] + summary) + "\n"
result = {"machine": platform.processor() or platform.machine(), "rows": rows, "summary": summary}
for name, text in (("train_vs_peers.json", json.dumps(result, indent=1) + "\n"), ("train_vs_peers.md", md)):
    tmp = os.path.join(out, name + ".tmp")
    open(tmp, "w").write(text)
    os.replace(tmp, os.path.join(out, name))
print(md)
PY
