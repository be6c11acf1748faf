#!/bin/bash
# bad_specs_test.sh QAT_HW DIR: every DIR/*.toml is a malformed sweep spec whose first line is
# "# expect: FRAGMENT". `qat-hw sweep FILE` must exit with status 2, and its stderr must name the
# file and contain FRAGMENT (the field, as the message names it). Prints one line per file and
# fails listing every mismatch; DIR must hold at least 20 specs.
set -u
qat_hw=$1 dir=$2
min_files=20
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

shopt -s nullglob
files=("$dir"/*.toml)
mismatches=()
for file in "${files[@]}"; do
  name=$(basename "$file")
  expect=$(sed -n '1s/^# expect: //p' "$file")
  if [ -z "$expect" ]; then
    mismatches+=("$name: first line is not '# expect: FRAGMENT'")
    echo "FAIL $name: no '# expect:' line"
    continue
  fi
  # A spec that is wrongly accepted would start a sweep: keep its database out of the source tree
  # and stop it quickly.
  timeout 30 "$qat_hw" sweep "$file" --db "$work/$name.sqlite" --report "$work/$name.report" \
    >"$work/stdout" 2>"$work/stderr"
  status=$?
  err=$(cat "$work/stderr")
  problems=()
  [ "$status" -eq 2 ] || problems+=("exit status $status, wanted 2")
  [[ "$err" == *"$name"* ]] || problems+=("stderr does not name the file")
  [[ "$err" == *"$expect"* ]] || problems+=("stderr lacks \"$expect\"")
  if [ ${#problems[@]} -eq 0 ]; then
    echo "ok   $name: $err"
  else
    detail=$(printf '%s; ' "${problems[@]}")
    detail=${detail%; }
    mismatches+=("$name: $detail; stderr: $err")
    echo "FAIL $name: $detail"
    echo "     stderr: $err"
  fi
done

if [ ${#files[@]} -lt $min_files ]; then
  mismatches+=("$dir holds ${#files[@]} specs, at least $min_files are required")
fi
echo "${#files[@]} malformed sweep specs, ${#mismatches[@]} mismatches"
if [ ${#mismatches[@]} -gt 0 ]; then
  printf 'mismatch: %s\n' "${mismatches[@]}" >&2
  exit 1
fi
