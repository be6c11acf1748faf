#!/usr/bin/env bash
# Language-model training throughput and validation bits per byte, side by side in one run:
# `qat-hw train --model bitnet-tiny --data text:PATH` against the same BitNet b1.58 decoder in
# plain PyTorch (PyPI; bench/peers/bitnet_lm.py) on the same byte-level corpus and the same
# train/validation split, each side at 1 and 2 threads.
#
#   bench/lm_vs_peers.sh [OUT_DIR]        (default bench/results)
#
# Writes OUT_DIR/lm_vs_peers.json (every run, the split check) and OUT_DIR/lm_vs_peers.md (the
# table and the ratios against PyTorch). Both sides take the model's sizes and recipe from
# models/bitnet-tiny.toml (epochs, steps per epoch, batch, lr, weight decay, qat_init) and run the
# same phases: the FP32 twin, PTQ of its weights, QAT (from the twin's weights with qat_init =
# "fp32"). Environment:
#   DATA=PATH          text file or folder (default /usr/share/games/fortunes)
#   EPOCHS, STEPS_PER_EPOCH, BATCH, LR, WEIGHT_DECAY   override the model file's recipe, both sides
#   SEED (1), WARMUP_FRAC (0.05)
#   THREADS="1 2"      thread counts
#   WEIGHTS="ternary"  QAT weight formats ("ternary int4" for both; int4 is qat-hw's int4-fpga)
#   SIDES="qat-hw torch-pypi"   sides to run (fewer: check one half)
#   MAX_STEPS=N        stop each peer phase after N steps (quick checks; qat-hw always runs the
#                      recipe; the peer's bits per byte are then not comparable)
#   QATHW_ARGS="..."   further flags for qat-hw train
#   PEER_ARGS="..."    further flags for every peer run (e.g. --attn int8, --pos none)
#   PEER_TIMEOUT=S     kill a peer run after S seconds (default: no limit)
#   PEERS_VENV=DIR     the peers' venv (default build/peers-venv)
#   NO_BUILD=1         use build/release as it is (default: scripts/build first)
#   QATHW=PATH         the qat-hw binary (default build/release/cli/qat-hw)
# The qat-hw side runs only where that binary has the language-model trainer (`qat-hw train
# --help` lists --steps-per-epoch); otherwise it is skipped, saying so, and the peer runs alone.
# Before training, the peer's split (--check-split) is compared with the C++ code's
# (text_split_check, built by bench/CMakeLists.txt, or compiled here against build/release).
# With the model file's recipe (2 phases x 4 x 250 steps of 32 x 64 bytes) a peer run takes about
# 6 minutes at 1 thread on an idle 2-core machine, twice that beside other load.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/bench/results}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
DATA="${DATA:-/usr/share/games/fortunes}"
THREADS="${THREADS:-1 2}"
WEIGHTS="${WEIGHTS:-ternary}"
SIDES="${SIDES:-qat-hw torch-pypi}"
MAX_STEPS="${MAX_STEPS:-0}"
PEER_TIMEOUT="${PEER_TIMEOUT:-0}"
VENV="${PEERS_VENV:-$ROOT/build/peers-venv}"
MODEL=bitnet-tiny
read -r -a QATHW_EXTRA <<<"${QATHW_ARGS:-}"
read -r -a PEER_EXTRA <<<"${PEER_ARGS:-}"

# The recipe beyond the model file's, the single place both sides take it from.
RECIPE=(--warmup-frac "${WARMUP_FRAC:-0.05}" --seed "${SEED:-1}" --ste identity)
[[ -n "${EPOCHS:-}" ]] && RECIPE+=(--epochs "$EPOCHS")
[[ -n "${STEPS_PER_EPOCH:-}" ]] && RECIPE+=(--steps-per-epoch "$STEPS_PER_EPOCH")
[[ -n "${BATCH:-}" ]] && RECIPE+=(--batch "$BATCH")
[[ -n "${LR:-}" ]] && RECIPE+=(--lr "$LR")
[[ -n "${WEIGHT_DECAY:-}" ]] && RECIPE+=(--weight-decay "$WEIGHT_DECAY")

has_side() { [[ " $SIDES " == *" $1 "* ]]; }

cd "$ROOT"
if has_side qat-hw && [[ "${NO_BUILD:-0}" != 1 ]]; then
  scripts/build >/dev/null
fi
if has_side torch-pypi; then
  bench/peers/setup_venv.sh >&2
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
qat_hw="${QATHW:-$ROOT/build/release/cli/qat-hw}"
PY="$VENV/bin/python"
[[ -x "$PY" ]] || PY=python3  # --check-split needs no torch

# ---- the split: the peer's re-implementation against the C++ code -------------------------------
split_check="$ROOT/build/release/bench/text_split_check"
if [[ ! -x "$split_check" ]] && command -v c++ >/dev/null \
   && [[ -f build/release/training/libqathw_training.a && -f build/release/util/libqathw_util.a ]]; then
  c++ -std=c++20 -O2 -I training/include -I util/include bench/peers/text_split_check.cpp \
    build/release/training/libqathw_training.a build/release/util/libqathw_util.a -o "$WORK/text_split_check" \
    2>"$WORK/split-build.err" && split_check="$WORK/text_split_check"
fi
split_status="skipped: no text_split_check (build qat-hw first)"
if [[ -x "$split_check" ]]; then
  # The peer first: its context is the model's (models/bitnet-tiny.toml, PEER_ARGS, or 64).
  : >"$WORK/split-cpp.err"
  if "$PY" bench/peers/bitnet_lm.py --check-split --data "$DATA" --seed "${SEED:-1}" "${PEER_EXTRA[@]}" \
       >"$WORK/split-peer.json" 2>"$WORK/split-peer.err" &&
     context="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["context"])' "$WORK/split-peer.json")" &&
     "$split_check" "$DATA" "$context" "${SEED:-1}" >"$WORK/split-cpp.json" 2>"$WORK/split-cpp.err"; then
    if cmp -s "$WORK/split-cpp.json" "$WORK/split-peer.json"; then
      split_status="identical"
    else
      split_status="DIFFERS"
    fi
  else
    split_status="failed: $(cat "$WORK/split-peer.err" "$WORK/split-cpp.err" | tail -n 1)"
  fi
fi
echo "== split check (peer against training/text.cpp): $split_status" >&2

# ---- qat-hw ------------------------------------------------------------------------------------
qathw_status="not requested (SIDES)"
if has_side qat-hw; then
  if [[ ! -x "$qat_hw" ]]; then
    qathw_status="skipped: $qat_hw is not built"
  elif [[ ! -f "models/$MODEL.toml" ]] || ! "$qat_hw" train --help 2>/dev/null | grep -e --steps-per-epoch >/dev/null; then
    qathw_status="skipped: this qat-hw has no language-model trainer (\`qat-hw train --help\` lists no --steps-per-epoch, or models/$MODEL.toml is missing); rebuild it (scripts/build) once it has"
  else
    qathw_status="ran"
    qathw_failures=()
    for threads in $THREADS; do
      for weights in $WEIGHTS; do
        target=ternary-asic
        [[ "$weights" == int4 ]] && target=int4-fpga
        echo "== qat-hw train --model $MODEL --data text:$DATA --target $target --threads $threads" >&2
        # Every target trains its own FP32 twin: with qat_init = "fp32" QAT starts from it, so
        # --no-fp32 would change the QAT run.
        rc=0
        load0="$(cut -d' ' -f1 /proc/loadavg)"
        "$qat_hw" train --model "$MODEL" --data "text:$DATA" --target "$target" --threads "$threads" --device cpu \
          "${RECIPE[@]}" "${QATHW_EXTRA[@]}" --out "$WORK/ours-$weights-$threads" \
          >"$WORK/ours-$weights-$threads.log" 2>&1 || rc=$?
        # Other work on the machine skews the timing: the 1-minute load before and after.
        echo "$load0 $(cut -d' ' -f1 /proc/loadavg)" >"$WORK/ours-$weights-$threads.load"
        if [[ -f "$WORK/ours-$weights-$threads/report.json" ]]; then
          cp "$WORK/ours-$weights-$threads/report.json" "$WORK/ours-$weights-$threads.json"
        else
          msg="$(tail -n 1 "$WORK/ours-$weights-$threads.log" | tr -d '"\\')"
          echo "   qat-hw failed (exit status $rc): $msg" >&2
          qathw_failures+=("$weights, $threads threads: $msg")
          printf '{"weights": "%s", "threads": %s, "error": "qat-hw train: exit status %s, no report: %s"}\n' \
            "$weights" "$threads" "$rc" "$msg" >"$WORK/ours-$weights-$threads.json"
        fi
      done
    done
  fi
fi
if [[ "$qathw_status" == ran && ${#qathw_failures[@]} -gt 0 ]]; then
  qathw_status="ran; failed: $(IFS=';'; echo "${qathw_failures[*]}")"
fi
echo "== qat-hw side: $qathw_status" >&2

# ---- the PyTorch peer ----------------------------------------------------------------------------
# peer ARGS...: one peer run; its JSON (or an error object) in WORK/peer-NNN.json.
n=0
peer() {
  local base
  base="$WORK/peer-$(printf '%03d' "$n")"
  n=$((n + 1))
  echo "== torch-pypi bitnet_lm.py $*" >&2
  local t=() limit=()
  [[ "$PEER_TIMEOUT" != 0 ]] && t=(timeout "$PEER_TIMEOUT")
  [[ "$MAX_STEPS" != 0 ]] && limit=(--max-steps "$MAX_STEPS")
  local rc=0
  "${t[@]}" "$VENV/bin/python" bench/peers/bitnet_lm.py --data "$DATA" "$@" "${RECIPE[@]}" \
    "${limit[@]}" "${PEER_EXTRA[@]}" >"$base.out" 2>"$base.err" || rc=$?
  tail -n 1 "$base.err" >&2
  python3 - "$base" "$rc" "$*" <<'PY'
import json, sys
base, rc, args = sys.argv[1:4]
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
json.dump({"peer": "torch-pypi", **entry}, open(base + ".json", "w"))
PY
}

if has_side torch-pypi; then
  for threads in $THREADS; do
    for weights in $WEIGHTS; do
      peer --mode qat --weights "$weights" --threads "$threads"
    done
  done
fi

python3 - "$WORK" "$OUT" "$MODEL" "$DATA" "$MAX_STEPS" "$split_status" "$qathw_status" <<'PY'
import glob, json, os, platform, sys

work, out, model, data, max_steps, split_status, qathw_status = sys.argv[1:8]
max_steps = int(max_steps)
split = {"status": split_status}
for side in ("cpp", "peer"):
    path = os.path.join(work, f"split-{side}.json")
    if os.path.exists(path):
        try:
            split[side] = json.load(open(path))
        except ValueError:
            pass

BPB_KEYS = ("validation_bits_per_byte", "bits_per_byte", "val_bits_per_byte", "bpb")

def bpb_of(phase):
    """qat-hw's report fields for the language model were not fixed when this was written:
    the first bits-per-byte key found in the phase's object."""
    for key in BPB_KEYS:
        if isinstance(phase.get(key), (int, float)):
            return phase[key]
    return None

rows = []
for path in sorted(glob.glob(os.path.join(work, "ours-*.json"))):
    r = json.load(open(path))
    if "error" in r:
        rows.append(dict(side="qat-hw", mode="?", weights=r["weights"], threads=r["threads"], error=r["error"]))
        continue
    weights = "int4" if "int4" in str(r.get("target", "")) else "ternary"
    t = (r.get("config") or {}).get("threads")
    load_path = path[:-len(".json")] + ".load"
    load = open(load_path).read().split() if os.path.exists(load_path) else None
    ptq = bpb_of(r.get("ptq") or {})
    for mode in ("fp32", "qat"):
        ph = r.get(mode)
        if not isinstance(ph, dict):
            continue
        row = dict(side="qat-hw", mode=mode, weights=weights if mode == "qat" else "-", threads=t,
                   steps=ph.get("steps"), steps_per_s=ph.get("steps_per_s"), bpb=bpb_of(ph),
                   ptq_bpb=ptq if mode == "fp32" else None, ptq_weights=weights if mode == "fp32" else None,
                   load=f"{load[0]} / {load[1]}" if load else None)
        if mode == "qat":
            row["agreement"] = (r.get("agreement") or {}).get("mismatches")
        if row["bpb"] is None:
            row["note"] = f"no bits-per-byte field in report.json's {mode} (keys: {sorted(ph)})"
        rows.append(row)
recipe = None
for path in sorted(glob.glob(os.path.join(work, "peer-*.json"))):
    p = json.load(open(path))
    if "error" in p:
        rows.append(dict(side=p["peer"], mode="?", weights="?", threads="?", error=f"{p['args']}: {p['error']}"))
        continue
    recipe = recipe or {k: p.get(k) for k in ("epochs", "steps_per_epoch", "batch", "lr", "weight_decay", "qat_init")}
    for mode in ("fp32", "qat"):
        ph = p.get(mode)
        if not ph:
            continue
        rows.append(dict(side=f"{p['peer']} {p['framework_version']}", mode=mode,
                         weights=p["weights"] if mode == "qat" else "-", threads=p["threads"], steps=ph["steps"],
                         steps_per_s=ph["steps_per_s"], tokens_per_s=ph["tokens_per_s"],
                         bpb=ph["validation_bits_per_byte"],
                         ptq_bpb=p.get("ptq_bits_per_byte") if mode == "fp32" else None,
                         ptq_weights=p["weights"] if mode == "fp32" else None,
                         epoch_steps_per_s=ph["epoch_steps_per_s"], network=p["network"], sizes=p["sizes"],
                         load=f"{p.get('loadavg_1m_start')} / {p.get('loadavg_1m_end')}",
                         quantizers=p["quantizers"] if mode == "qat" else None))

def best(side_pred, mode, weights=None, ptq_weights=None):
    c = [r for r in rows if "error" not in r and side_pred(r["side"]) and r["mode"] == mode
         and (weights is None or r["weights"] == weights)
         and (ptq_weights is None or r.get("ptq_weights") == ptq_weights) and r.get("steps_per_s")]
    return max(c, key=lambda r: r["steps_per_s"]) if c else None

fmt = lambda v, f: format(v, f) if isinstance(v, (int, float)) else ""
ptq_cell = lambda r: f"{r['ptq_bpb']:.4f} ({r['ptq_weights']})" if isinstance(r.get("ptq_bpb"), (int, float)) else ""
lines = ["| side | mode | weights | threads | steps | steps/s | validation bits/byte | PTQ bits/byte | load 1m (start / end) |",
         "|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    if "error" in r:
        lines.append(f"| {r['side']} | failed: {r['error'][:100]} | | | | | | | |")
        continue
    lines.append(f"| {r['side']} | {r['mode']} | {r['weights']} | {r['threads']} | {r['steps']} | "
                 f"{fmt(r['steps_per_s'], '.2f')} | {fmt(r['bpb'], '.4f')} | {ptq_cell(r)} | {r.get('load') or ''} |")
summary = [f"- split check (bitnet_lm.py --check-split against training/text.cpp on {data}): {split_status}",
           f"- qat-hw side: {qathw_status}"]
if max_steps:
    summary.append(f"- peer phases stopped after {max_steps} steps (MAX_STEPS): their bits per byte are not "
                   "comparable")
ours = lambda s: s == "qat-hw"
peer = lambda s: s.startswith("torch-pypi")
for w in sorted({r["weights"] for r in rows if r.get("mode") == "qat"}):
    o, pq = best(ours, "qat", w), best(peer, "qat", w)
    if o and pq:
        summary.append(f"- {w} QAT: qat-hw {o['steps_per_s']:.2f} steps/s ({o['threads']} threads) vs PyTorch "
                       f"{pq['steps_per_s']:.2f} ({pq['threads']} threads): **{o['steps_per_s'] / pq['steps_per_s']:.2f}x**")
    for name, side in (("qat-hw", ours), ("PyTorch", peer)):
        # The FP32 twin of the same runs (its PTQ used these weights).
        q, f = best(side, "qat", w), best(side, "fp32", ptq_weights=w)
        if q and f and q.get("bpb") and f.get("bpb"):
            summary.append(f"- {name} {w}: QAT {q['bpb']:.4f} bits/byte against its FP32 {f['bpb']:.4f} "
                           f"({q['bpb'] / f['bpb'] - 1:+.1%})"
                           + (f", PTQ {f['ptq_bpb']:.4f}" if f.get("ptq_bpb") and f.get("ptq_weights") == w else ""))
for r in rows:
    if r.get("agreement"):
        summary.append(f"- qat-hw {r['weights']} ({r['threads']} threads): the integer engine disagreed with the "
                       f"trainer on {r['agreement']} output integers")
    if r.get("note"):
        summary.append(f"- qat-hw {r['mode']} ({r['threads']} threads): {r['note']}")
net = next((r for r in rows if r.get("network")), None)
head = f"Model {model} on {data}"
if recipe:
    head += (f"; per phase {recipe['epochs']} epochs x {recipe['steps_per_epoch']} steps of {recipe['batch']} "
             f"sequences, lr {recipe['lr']}, weight decay {recipe['weight_decay']}, QAT from {recipe['qat_init']}")
head += "."
if net:
    head += f" Peer network: {net['network']}."
md = head + "\n\n" + "\n".join(lines + [""] + summary) + "\n"
result = {"machine": platform.processor() or platform.machine(), "model": model, "data": data,
          "recipe": recipe, "peer_max_steps": max_steps or None, "split_check": split,
          "qat_hw": qathw_status, "rows": rows, "summary": summary}
for name, text in (("lm_vs_peers.json", json.dumps(result, indent=1) + "\n"), ("lm_vs_peers.md", md)):
    tmp = os.path.join(out, name + ".tmp")
    open(tmp, "w").write(text)
    os.replace(tmp, os.path.join(out, name))
print(md)
PY
