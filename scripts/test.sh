#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root) and runs the whole test suite:
# unit tests, and integration tests with real processes (root needed for
# the ones that change uid or build network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== pyflakes"
.venv/bin/python -m pyflakes $(ls -d netsuite tests examples bench twisted/plugins 2>/dev/null)

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
.venv/bin/trial --temp-directory="$(mktemp -d)/_trial_temp" "${@:-tests}" 2>&1 | tee "$log" \
    || status=$?
# One plain summary line: "N passed, N failed, N skipped".
.venv/bin/python - "$log" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
ran = re.findall(r"^Ran (\d+) tests?", text, re.M)
counts = {k: 0 for k in ("successes", "failures", "errors", "skips", "expectedFailures",
                         "unexpectedSuccesses")}
for line in re.findall(r"^(?:PASSED|FAILED) \((.*)\)$", text, re.M):
    for key, value in re.findall(r"(\w+)=(\d+)", line):
        counts[key] = counts.get(key, 0) + int(value)
failed = counts["failures"] + counts["errors"] + counts["unexpectedSuccesses"]
print(f"trial: {counts['successes'] + counts['expectedFailures']} passed, {failed} failed, "
      f"{counts['skips']} skipped")
PY
exit "$status"
