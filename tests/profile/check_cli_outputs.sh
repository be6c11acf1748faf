#!/bin/sh
# check_cli_outputs.sh QAT_HW BUNDLE DATA OUT: runs qat-hw profile with --json and --plot into the
# fresh folder OUT and checks the table, the JSON's figures and both images.
set -u
qat_hw=$1 bundle=$2 data=$3 out=$4
rm -rf "$out" && mkdir -p "$out" || exit 1
fail() { echo "check_cli_outputs.sh: $*" >&2; exit 1; }

"$qat_hw" profile "$bundle" --data "$data" --samples 48 --json "$out/profile.json" --plot "$out/acc" \
  >"$out/stdout.txt" 2>&1
status=$?
cat "$out/stdout.txt"
[ "$status" -eq 0 ] || fail "exit code $status, wanted 0"
grep -E -q "^profile: 48 images of .* on target ternary-asic" "$out/stdout.txt" || fail "no header line"
grep -E -q "^  0 +[0-9]+ x [0-9]+ +24 " "$out/stdout.txt" || fail "no row for layer 0"
grep -E -q "accumulator bits: target 24, observed [0-9]+, provable [0-9]+" "$out/stdout.txt" || fail "no summary"

[ -s "$out/acc.png" ] || fail "acc.png missing or empty"
[ -s "$out/acc.svg" ] || fail "acc.svg missing or empty"
[ "$(head -c 4 "$out/acc.png" | od -An -c | tr -d ' ')" = "211PNG" ] || fail "acc.png is not a PNG"
grep -q "<svg" "$out/acc.svg" || fail "acc.svg is not an SVG"
ls "$out" | grep -q "tmp" && fail "temporary files left in $out"

python3 - "$out/profile.json" <<'PY' || fail "profile.json is not sane"
import json, sys
p = json.load(open(sys.argv[1]))
assert p["samples"] == 48, p["samples"]
assert p["target"] == "ternary-asic"
layers = p["layers"]
assert len(layers) >= 2
for i, l in enumerate(layers):
    assert l["layer"] == i
    if i > 0:
        assert l["in"] == layers[i - 1]["out"]
    assert l["acc_bits"] == 24 and l["act_bits"] == 8
    assert 0 < l["observed_acc_max"] <= l["bound_acc_max"], l
    assert 1 < l["observed_acc_bits"] <= l["provable_acc_bits"], l
    assert l["observed_acc_max"] == max(l["observed_acc_highest"], -l["observed_acc_lowest"])
    assert l["overflows"] == 0
    assert l["accumulations"] == 48 * l["out"]
    assert sum(l["accumulators"]["magnitude_bits"]) == l["accumulations"]
    assert len(l["accumulators"]["magnitude_bits"]) == l["observed_acc_max"].bit_length() + 1
    assert sum(l["activations"]["magnitude_bits"]) == 48 * l["in"]
    assert 0 < l["observed_act_max"] <= 127
assert p["observed_acc_bits"] == max(l["observed_acc_bits"] for l in layers)
assert p["provable_acc_bits"] == max(l["provable_acc_bits"] for l in layers)
PY
echo "check_cli_outputs.sh: table, JSON and plots as expected"
