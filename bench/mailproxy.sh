#!/bin/sh
# netsuite-mailproxy's benchmark in a lab (see bench/mailproxy.py and docs/mailproxy.md,
# Speed): the same as scripts/bench.sh mailproxy, which installs iperf3, haproxy and
# dovecot first.
exec "$(dirname "$0")/../scripts/bench.sh" mailproxy "$@"
