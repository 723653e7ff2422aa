#!/bin/sh
# The soak benchmark (see bench/soak.py and docs/performance.md): the same as
# scripts/bench.sh soak, which installs perfdhcp first. Needs root.
exec "$(dirname "$0")/../scripts/bench.sh" soak "$@"
