#!/bin/sh
# The captive portal benchmark (see bench/portal.py and docs/performance-portal.md).
# Needs root and: apt-get install -y wrk nginx-light
cd "$(dirname "$0")/.." || exit 1
exec .venv/bin/python bench/portal.py "$@"
