#!/bin/sh
# The stats benchmark (see bench/stats.py and docs/stats.md): the same as
# scripts/bench.sh stats, which installs what it needs first. Needs root.
exec "$(dirname "$0")/../scripts/bench.sh" stats "$@"
