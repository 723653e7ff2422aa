#!/bin/sh
# The DHCP benchmark (see bench/dhcp.py and docs/performance-dhcp.md).
# Needs root and: apt-get install -y kea-admin kea-dhcp4-server dnsmasq slapd
cd "$(dirname "$0")/.." || exit 1
exec .venv/bin/python bench/dhcp.py "$@"
