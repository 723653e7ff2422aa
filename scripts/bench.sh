#!/usr/bin/env bash
# Runs netsuite's benchmarks beside the established tools they compare with
# (docs/performance*.md), after installing what they need:
#
#   scripts/bench.sh [--dry-run] BENCHMARK [ARGS...]
#
# BENCHMARK is one of the names in BENCHMARKS below (bench/NAME.py), or
# "all" for each in turn; ARGS go to each one run (all of them take
# --quick). It runs scripts/setup.sh first, with the Debian packages of the
# peers the chosen benchmarks compare with: quietly, and only what is
# missing. --dry-run prints what it would install and run, and does neither.
# They need root, except bus, and an otherwise idle machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The benchmarks, in the order "all" runs them, and the Debian packages of
# the peers each one compares with (setup.sh installs the rest). A new
# benchmark is bench/NAME.py and one line here.
BENCHMARKS=(bus firewall dhcp dns portal stop soak proxy mailproxy stats)
declare -A PEERS=(
    [bus]=""                                          # a raw Unix-socket echo, in Python
    [firewall]=""                                     # one iptables rule per client
    [dhcp]="kea-dhcp4-server kea-admin dnsmasq slapd" # kea-admin has perfdhcp
    [dns]=""                                          # dnsperf, unbound, dnsmasq-base, dig come with setup.sh
    [portal]="nginx-light wrk"
    [stop]=""                                         # no peer; slapd, udhcpc, curl come with setup.sh
    [soak]="kea-admin"                                # perfdhcp
    [proxy]="iperf3 haproxy"                          # the proxy framework's relay (docs/mailproxy.md)
    [mailproxy]="iperf3 haproxy"                      # in a lab; dovecot comes with setup.sh (docs/mailproxy.md)
    [stats]=""                                        # ipset, rrdtool come with setup.sh (docs/stats.md)
)

usage() {
    local IFS="|"
    echo "usage: scripts/bench.sh [--dry-run] {${BENCHMARKS[*]}|all} [ARGS...]"
    echo "  e.g. scripts/bench.sh dhcp --quick; scripts/bench.sh all --quick"
}

dry_run=0
case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    --dry-run) dry_run=1; shift ;;
esac
if [ $# -eq 0 ]; then
    usage >&2
    exit 2
fi
chosen=$1
shift
if [ "$chosen" = all ]; then
    run=("${BENCHMARKS[@]}")
elif [ -n "${PEERS[$chosen]+set}" ]; then
    run=("$chosen")
else
    echo "bench: unknown benchmark '$chosen'" >&2
    usage >&2
    exit 2
fi

packages=()
for name in "${run[@]}"; do
    for package in ${PEERS[$name]}; do  # each once (soak shares dhcp's perfdhcp)
        [[ " ${packages[*]} " == *" $package "* ]] || packages+=("$package")
    done
done

if [ $dry_run = 1 ]; then
    echo "setup: scripts/setup.sh${packages[*]:+ ${packages[*]}}"
    for name in "${run[@]}"; do
        echo "run: .venv/bin/python bench/$name.py${*:+ $*}"
    done
    exit 0
fi

bash scripts/setup.sh "${packages[@]}"
failed=()
for name in "${run[@]}"; do
    echo "bench: $name"
    .venv/bin/python "bench/$name.py" "$@" || failed+=("$name")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "bench: failed: ${failed[*]}" >&2
    exit 1
fi
