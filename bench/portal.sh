#!/bin/sh
# The captive portal benchmark (see bench/portal.py and
# docs/performance-portal.md): the same as scripts/bench.sh portal, which
# installs nginx and wrk first. Needs root.
exec "$(dirname "$0")/../scripts/bench.sh" portal "$@"
