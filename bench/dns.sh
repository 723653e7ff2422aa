#!/bin/sh
# The DNS benchmark (see bench/dns.py and docs/performance-dns.md): the same
# as scripts/bench.sh dns, which runs scripts/setup.sh first (it installs
# dnsperf, unbound, dnsmasq-base and dig). Needs root.
exec "$(dirname "$0")/../scripts/bench.sh" dns "$@"
