#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root) and runs the demo: a netsuite
# daemon, and an example hook script in another process that changes what
# the daemon answers. Everything lives in a temporary directory and is
# stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

work=$(mktemp -d /tmp/netsuite-demo.XXXXXX)
sockets="$work/sockets"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

hook() { .venv/bin/netsuite-hook --socket-dir "$sockets" "$@"; }
wait_for_line() {  # FILE PATTERN: wait (at most 20 s) until FILE has a line matching PATTERN
    for _ in $(seq 200); do
        grep -q -- "$2" "$1" && return 0
        sleep 0.1
    done
    echo "demo: timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

echo "== starting the netsuite daemon (process 'demo', sockets in $sockets)"
.venv/bin/twistd -n --pidfile= netsuite --name demo --socket-dir "$sockets" \
    --config etc/netsuite.toml >"$work/daemon.log" 2>&1 &
pids+=($!)
wait_for_line "$work/daemon.log" "bus ready"

echo "== the stock answer of demo:/system/ping, for the operator"
hook send demo:/system/ping who=operator

echo "== starting examples/ping_hook.py in its own process"
.venv/bin/python examples/ping_hook.py demo "$sockets" >"$work/hook.log" 2>&1 &
pids+=($!)
wait_for_line "$work/hook.log" "hooked"

echo "== the same send now: the hook answers for the operator"
hook send demo:/system/ping who=operator
echo "== and lets anyone else fall through to the stock listener"
hook send demo:/system/ping who=guest

echo "== the mailbox, its listeners (the hook first) and counters"
hook list demo:/system/ping

echo "== killing the hook: the chain falls through to the stock listener at once"
kill "${pids[1]}"; wait "${pids[1]}" 2>/dev/null || true
hook send demo:/system/ping who=operator
echo "== demo done"
