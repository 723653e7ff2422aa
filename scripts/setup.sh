#!/usr/bin/env bash
# Installs what netsuite needs on a fresh Debian 12 machine (run as root):
# Debian packages, then a virtualenv in .venv with netsuite installed in it.
# Sourced by scripts/test.sh and scripts/demo.sh; safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_PACKAGES=(python3 python3-venv python3-dev gcc iproute2 iptables ipset conntrack busybox
              dovecot-imapd dovecot-pop3d slapd ldap-utils udhcpc isc-dhcp-client curl
              chromium chromium-driver)

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
    echo "setup: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

# Debian's own Python (3.11 on Debian 12), whatever else is first on PATH.
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
# compat mode puts the checkout on sys.path, so twistd finds twisted/plugins/.
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' \
    --config-settings editable_mode=compat
