#!/usr/bin/env bash
# run-tier.sh NAME CMD...: runs one test tier, shows its output, and fails
# if the command fails, if any one suite of it (a cargo test target, a
# wasm-bindgen-test binary, a node --test file) ran no test, or if any test
# was skipped or ignored.
#   cargo test: "Running <target>" / "Doc-tests <crate>" each followed by
#     "test result: ok. N passed; M failed; K ignored; ...".
#   node --test: run with scripts/suite-counts.mjs as a reporter, which
#     prints "# suite <file> passed N failed M skipped K" per file.
set -uo pipefail
name=$1
shift
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "== tier $name: $*"
"$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
  echo "== tier $name FAILED (exit $rc)"
  exit "$rc"
fi
# One line per suite: "<suite>\t<passed>\t<skipped>".
suites=$(awk '
  /^ *Running / { sub(/^ *Running /, ""); suite = $0; next }
  /^ *Doc-tests / { sub(/^ *Doc-tests /, ""); suite = "doc-tests " $0; next }
  /test result: (ok|FAILED)\. [0-9]+ passed/ {
    match($0, /[0-9]+ passed/); p = substr($0, RSTART, RLENGTH) + 0
    k = 0; if (match($0, /[0-9]+ ignored/)) k = substr($0, RSTART, RLENGTH) + 0
    printf "%s\t%d\t%d\n", (suite == "" ? "(unnamed cargo suite)" : suite), p, k
    suite = ""; next
  }
  /^# suite .* passed [0-9]+ failed [0-9]+ skipped [0-9]+$/ {
    printf "%s\t%d\t%d\n", $3, $5, $9
  }
' "$log")
if [ -z "$suites" ]; then
  echo "== tier $name ran no test suite: failing"
  exit 1
fi
bad=0
total=0
while IFS=$'\t' read -r suite passed skipped; do
  total=$((total + passed))
  if [ "$passed" -eq 0 ]; then
    echo "== tier $name: suite $suite ran no test"
    bad=1
  fi
  if [ "$skipped" -ne 0 ]; then
    echo "== tier $name: suite $suite skipped or ignored $skipped tests"
    bad=1
  fi
done <<<"$suites"
if [ "$bad" -ne 0 ]; then
  echo "== tier $name FAILED"
  exit 1
fi
echo "== tier $name: $total tests passed in $(wc -l <<<"$suites") suites"
