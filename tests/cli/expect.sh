#!/bin/sh
# expect.sh EXIT PATTERN COMMAND [ARGS...]: runs COMMAND, passes when it exits with EXIT and its
# combined output matches the extended regular expression PATTERN.
want_exit=$1 pattern=$2
shift 2
out=$("$@" 2>&1)
got_exit=$?
printf '%s\n' "$out"
if [ "$got_exit" -ne "$want_exit" ]; then
  echo "expect.sh: exit code $got_exit, wanted $want_exit" >&2
  exit 1
fi
if ! printf '%s\n' "$out" | grep -E -q -- "$pattern"; then
  echo "expect.sh: output does not match: $pattern" >&2
  exit 1
fi
