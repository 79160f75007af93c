#!/usr/bin/env bash
# run-tier.sh NAME CMD...: runs one test tier, shows its output, and fails
# if the command fails or if it ran no test at all.
set -uo pipefail
name=$1
shift
log=$(mktemp)
echo "== tier $name: $*"
"$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# cargo test: "test result: ok. N passed"; node --test: "# pass N".
passed=$(sed -nE 's/.*test result: (ok|FAILED)\. ([0-9]+) passed.*/\2/p; s/^# pass ([0-9]+)$/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
rm -f "$log"
if [ "$rc" -ne 0 ]; then
  echo "== tier $name FAILED (exit $rc)"
  exit "$rc"
fi
if [ -z "$passed" ] || [ "$passed" -eq 0 ]; then
  echo "== tier $name ran no test: failing"
  exit 1
fi
echo "== tier $name: $passed tests passed"
