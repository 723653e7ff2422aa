#!/bin/sh
# The DHCP benchmark (see bench/dhcp.py and docs/performance-dhcp.md): the
# same as scripts/bench.sh dhcp, which installs Kea, perfdhcp, dnsmasq and
# slapd first. Needs root.
exec "$(dirname "$0")/../scripts/bench.sh" dhcp "$@"
