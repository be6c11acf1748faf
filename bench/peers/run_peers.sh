#!/usr/bin/env bash
# Run every peer configuration of the training benchmark and write one JSON list to $1.
#
#   bench/peers/run_peers.sh OUT.json
#
# Peers: torch-pypi and brevitas (build/peers-venv, see setup_venv.sh) and torch-debian
# (/usr/bin/python3 with python3-torch, see setup_debian_torch.sh; skipped if not installed).
# Configurations: fp32 (torch peers only), qat ternary, qat int4; each at 1 and 2 threads.
# Environment overrides:
#   EPOCHS=N        epochs per run (default: qat_mlp.py's, 10)
#   MAX_STEPS=N     stop each run after N steps (quick timing runs; default: no limit)
#   THREADS="1 2"   thread counts to run
#   PEERS="torch-pypi torch-debian brevitas"   peers to run
#   PEER_TIMEOUT=S  kill a run after S seconds (default: no limit)
#   PEERS_VENV=DIR  the venv (default: build/peers-venv)
#   PEER_ARGS="..." flags for every run, e.g. the recipe: "--epochs 20 --lr 4e-3"
# A run that fails is recorded as an object with an "error" field; the others still run.
set -uo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT.json" >&2
  exit 2
fi
OUT="$1"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${PEERS_VENV:-$ROOT/build/peers-venv}"
SCRIPT="$HERE/qat_mlp.py"
THREADS="${THREADS:-1 2}"
PEERS="${PEERS:-torch-pypi torch-debian brevitas}"
PEER_TIMEOUT="${PEER_TIMEOUT:-0}"

extra=()
# PEER_ARGS: recipe flags passed to every run (bench/train_vs_peers.sh passes its recipe here).
read -r -a peer_args <<<"${PEER_ARGS:-}"
extra+=("${peer_args[@]}")
[[ -n "${EPOCHS:-}" ]] && extra+=(--epochs "$EPOCHS")
[[ -n "${MAX_STEPS:-}" ]] && extra+=(--max-steps "$MAX_STEPS")

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
n=0

# record PEER ARGS...: runs one configuration, leaves WORK/NNN.{peer,args,out,err,rc}
record() {
  local peer="$1" py="$2"
  shift 2
  local id
  id=$(printf '%03d' "$n")
  n=$((n + 1))
  printf '%s' "$peer" >"$WORK/$id.peer"
  printf '%s' "$*" >"$WORK/$id.args"
  echo "== $peer $*" >&2
  local t=()
  [[ "$PEER_TIMEOUT" != 0 ]] && t=(timeout "$PEER_TIMEOUT")
  if [[ ! -x "$py" ]]; then
    echo "no interpreter at $py" >"$WORK/$id.err"
    echo 127 >"$WORK/$id.rc"
    return
  fi
  "${t[@]}" "$py" "$SCRIPT" "$@" "${extra[@]}" >"$WORK/$id.out" 2>"$WORK/$id.err"
  echo $? >"$WORK/$id.rc"
  tail -n 1 "$WORK/$id.err" >&2
}

for peer in $PEERS; do
  case "$peer" in
    torch-pypi) py="$VENV/bin/python"; fw=torch ;;
    brevitas) py="$VENV/bin/python"; fw=brevitas ;;
    torch-debian)
      py=/usr/bin/python3; fw=torch
      if ! "$py" -c 'import torch' >/dev/null 2>&1; then
        echo "== torch-debian skipped: /usr/bin/python3 has no torch (see setup_debian_torch.sh)" >&2
        continue
      fi ;;
    *) echo "unknown peer '$peer'" >&2; continue ;;
  esac
  for threads in $THREADS; do
    [[ "$fw" == torch ]] && record "$peer" "$py" --framework "$fw" --mode fp32 --threads "$threads"
    for weights in ternary int4; do
      record "$peer" "$py" --framework "$fw" --mode qat --weights "$weights" --threads "$threads"
    done
  done
done

python3 - "$WORK" "$OUT" <<'PY'
import glob, json, os, sys

work, out = sys.argv[1], sys.argv[2]
results = []
for peer_file in sorted(glob.glob(os.path.join(work, "*.peer"))):
    base = peer_file[:-len(".peer")]
    read = lambda ext: open(base + ext, errors="replace").read() if os.path.exists(base + ext) else ""
    peer, args, rc = read(".peer"), read(".args"), read(".rc").strip()
    entry = None
    lines = [l for l in read(".out").splitlines() if l.strip()]
    if rc == "0" and lines:
        try:
            entry = json.loads(lines[-1])
        except ValueError:
            entry = None
    if entry is None:
        err = read(".err").strip().splitlines()
        entry = {"args": args, "error": f"exit status {rc or '?'}: " + " | ".join(err[-5:])}
    entry = {"peer": peer, **entry}
    results.append(entry)
with open(out, "w") as f:
    json.dump(results, f, indent=1)
    f.write("\n")
failed = sum("error" in r for r in results)
print(f"{len(results)} peer runs written to {out}, {failed} failed", file=sys.stderr)
PY
