#!/usr/bin/env bash
# Installs what netsuite needs on a fresh Debian 12 machine (run as root):
# Debian packages, then a virtualenv in .venv with netsuite installed in it.
# Run by scripts/test.sh, scripts/demo.sh and scripts/bench.sh; safe to run
# again.
#
#   scripts/setup.sh [DEBIAN_PACKAGE...]    also install these (bench.sh's peers)
#
# It prints a few lines of its own; the tools' output goes to .setup.log
# and is shown (its tail) only when a step fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_PACKAGES=(python3 python3-venv python3-dev gcc iproute2 iptables ipset conntrack busybox
              dovecot-imapd dovecot-pop3d slapd ldap-utils udhcpc isc-dhcp-client curl
              chromium chromium-driver tcpdump faketime dnsmasq-base
              kea-admin unbound iodine dnsperf bind9-dnsutils radvd nftables python3-nftables
              libnetfilter-queue-dev python3-rrdtool rrdtool
              "$@")
# kea-admin: perfdhcp, for the fault tests; unbound, iodine (iodined and the
# client), dnsperf and bind9-dnsutils (dig): the DNS lab peers and bench/dns.sh;
# radvd: router advertisements in the IPv6 lab (netsuite-lab up --ipv6);
# python3-nftables: libnftables' Python module, for the firewall's IPv6 table
# (dual stack after login), linked into .venv below; nftables: the nft tool
# the tests read the table with; libnetfilter-queue-dev (with python3-dev and gcc):
# to build NetfilterQueue (PyPI has only its source), the mail proxy's nfqueue mode;
# python3-rrdtool: librrd's Python binding, netsuite-stats' round-robin store and
# graphs, linked into .venv below; rrdtool: the rrdtool command, to look at them

LOG="$PWD/.setup.log"
: >"$LOG"

# step WHAT CMD...: run CMD with its output in the log; on failure show the
# log's tail and stop.
step() {
    local what=$1
    shift
    echo "== $what" >>"$LOG"
    if ! "$@" >>"$LOG" 2>&1; then
        echo "setup: $what failed; the last lines of $LOG:" >&2
        tail -n 25 "$LOG" | sed 's/^/  | /' >&2
        echo "setup: full log: $LOG" >&2
        exit 1
    fi
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: missing Debian packages ${missing[*]}; run as root to install them" >&2
        exit 1
    fi
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    step "apt-get update" apt-get update -q
    step "apt-get install" apt-get install -y -q "${missing[@]}"
fi

# Debian's own Python (3.11 on Debian 12), whatever else is first on PATH.
if [ ! -x .venv/bin/python ]; then
    echo "setup: making the virtualenv .venv"
    step "python3 -m venv" /usr/bin/python3 -m venv .venv
fi
echo "setup: installing netsuite (editable) and its test tools in .venv (log: .setup.log)"
PIP=(.venv/bin/pip install --disable-pip-version-check --no-input)
step "pip install pip setuptools wheel" "${PIP[@]}" --upgrade pip setuptools wheel
# An editable install: setup.py's package_dir puts the checkout itself on
# sys.path (a static .pth), so twistd finds twisted/plugins/ and netsuite here.
step "pip install -e .[test,nfqueue]" "${PIP[@]}" -e '.[test,nfqueue]'
# python3-nftables is Debian's (a ctypes wrapper of libnftables, not on PyPI
# in this version) and the venv does not see the system's site-packages: link
# the module in.
SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
step "link the nftables module into .venv" ln -sfn /usr/lib/python3/dist-packages/nftables \
    "$SITE/nftables"
step "import nftables in .venv" .venv/bin/python -c 'import nftables; nftables.Nftables()'
# The same for python3-rrdtool (an extension module built for Debian's Python).
for so in /usr/lib/python3/dist-packages/rrdtool*.so; do
    step "link the rrdtool module into .venv" ln -sfn "$so" "$SITE/$(basename "$so")"
done
step "import rrdtool in .venv" .venv/bin/python -c 'import rrdtool; rrdtool.lib_version()'
