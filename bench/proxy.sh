#!/bin/sh
# The proxy framework's benchmark (see bench/proxy.py and docs/mailproxy.md): the
# same as scripts/bench.sh proxy, which installs iperf3 and haproxy first.
exec "$(dirname "$0")/../scripts/bench.sh" proxy "$@"
