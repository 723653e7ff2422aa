# -*- test-case-name: tests.integration.test_firewall_lab -*-
"""
C{python -m netsuite.scripts.firewall --remove [--config FILE]}: take
netsuite's firewall out of this network namespace, the closed LAN a clean
stop leaves included. Afterwards the LAN is forwarded as the rest of the
firewall says: run it only when the access point is meant to be open
without netsuite.

Exit status: 0 removed, 1 error (netsuite's firewall still running, say),
2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, List, Optional

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import react

__all__ = ["main"]


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m netsuite.scripts.firewall",
        description="Manage netsuite's firewall state in this network namespace.")
    parser.add_argument("--config", "-c", help="TOML configuration file (its [firewall] "
                        "section names the interfaces, network and prefix)")
    parser.add_argument("--remove", action="store_true", required=True,
                        help="remove netsuite's chains, jumps and sets, the closed LAN "
                        "included (refused while a netsuite firewall runs here)")
    return parser.parse_args(argv)


async def _remove(reactor: Any, config: Any) -> None:
    from ..firewall.tap import firewall_from_config
    await firewall_from_config(config, reactor).remove()


def main(argv: Optional[List[str]] = None) -> None:
    from ..config.schema import ConfigError, defaults, load
    from ..services import all_sections

    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = load(args.config, all_sections()) if args.config else defaults(all_sections())
    except ConfigError as e:
        sys.exit(f"netsuite firewall: {e}")

    def run(reactor: Any) -> Any:
        def done(_: Any) -> None:
            print("netsuite firewall: removed; the LAN is no longer closed by netsuite")

        def failed(failure: Any) -> None:
            print(f"netsuite firewall: not removed: {failure.getErrorMessage()}",
                  file=sys.stderr)
            raise SystemExit(1)
        return ensureDeferred(_remove(reactor, config)).addCallbacks(done, failed)
    react(run)


if __name__ == "__main__":
    main()
