#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root) and runs the demo: a simulated
# access point in network namespaces with netsuite in it, clients blocked
# and then authorized over the bus, a hook script in another process
# changing what the daemon decides, and a client's SMTP opened by its IMAP
# login through the mail proxy. Everything is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

exec .venv/bin/python -m netsuite.lab.demo
