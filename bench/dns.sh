#!/bin/sh
# The DNS benchmark (see bench/dns.py and docs/performance-dns.md): the same
# as scripts/bench.sh dns, which installs dnsperf, unbound and dnsmasq
# first. Needs root.
exec "$(dirname "$0")/../scripts/bench.sh" dns "$@"
