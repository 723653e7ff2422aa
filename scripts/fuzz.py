#!/usr/bin/env python3
"""
The long fuzz campaigns (not CI: CI replays the corpus and runs a short
hypothesis campaign, tests.fuzz.test_campaigns).

    .venv/bin/python scripts/fuzz.py --target NAME --runs N [--engine ENGINE] [--seed S]

Targets: dhcp-packet, dhcp-server, portal-front, portal-forms, bus-box,
bus-values (their harnesses and invariants are in tests/fuzz/). Engines:

 - C{atheris} (the default when it is installed): coverage-guided, on
   the corpus of tests/fuzz/corpus/NAME, with netsuite and the Twisted
   code it drives instrumented;
 - C{mutate}: a seeded mutator without dependencies (bit flips, byte
   changes, inserts, cuts, splices of two seeds, chunk-selector changes),
   reproducible from C{--seed}.

Every crash (a harness raising) is counted, its input written to
C{--crashes} (default: fuzz-crashes/NAME/) and the campaign goes on. It
prints inputs/s and the peak RSS every 10% and ends with

    SUMMARY target=NAME engine=E runs=N crashes=C inputs_per_s=R max_rss_mib=M
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import random
import resource
import sys
import tempfile
import time
import traceback
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tests.fuzz.common import MAX_LEN  # noqa: E402  (the checkout's, not an installed one)

TARGETS = {
    "dhcp-packet": "tests.fuzz.dhcp_packet",
    "dhcp-server": "tests.fuzz.dhcp_server",
    "portal-front": "tests.fuzz.portal_front",
    "portal-forms": "tests.fuzz.portal_forms",
    "bus-box": "tests.fuzz.bus_box",
    "bus-values": "tests.fuzz.bus_values",
}


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Campaign:
    def __init__(self, name: str, check: Callable[[bytes], None], runs: int, engine: str,
                 crashes_dir: str) -> None:
        self.name = name
        self.check = check
        self.runs = runs
        self.engine = engine
        self.crashes_dir = crashes_dir
        self.done = 0
        self.crashes = 0
        self.kinds: dict = {}
        self.started = time.monotonic()
        self.every = max(1, runs // 10)

    def one(self, data: bytes) -> None:
        try:
            self.check(data)
        except Exception as e:
            self.crashes += 1
            kind = f"{type(e).__name__}: {str(e)[:40]}"
            if kind not in self.kinds:
                self.kinds[kind] = data
                os.makedirs(self.crashes_dir, exist_ok=True)
                path = os.path.join(self.crashes_dir,
                                    "crash-" + hashlib.sha1(data).hexdigest()[:16])
                with open(path, "wb") as f:
                    f.write(data)
                print(f"CRASH {kind} (input in {path})", flush=True)
                traceback.print_exc(limit=6)
        self.done += 1
        if self.done % self.every == 0:
            print(f"{self.name}: {self.done} runs, {self.rate():.0f} inputs/s, "
                  f"{self.crashes} crashes, max RSS {max_rss_mib():.1f} MiB", flush=True)
        if self.done >= self.runs:
            self.finish()

    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-9)

    def finish(self) -> None:
        print(f"SUMMARY target={self.name} engine={self.engine} runs={self.done} "
              f"crashes={self.crashes} kinds={len(self.kinds)} inputs_per_s={self.rate():.0f} "
              f"max_rss_mib={max_rss_mib():.1f}", flush=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1 if self.crashes else 0)  # atheris never returns from Fuzz()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, choices=sorted(TARGETS))
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=("atheris", "mutate"), default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--crashes", default=None, help="where crashing inputs go")
    args = parser.parse_args()
    engine = args.engine
    if engine is None:
        engine = "atheris" if importlib.util.find_spec("atheris") else "mutate"
    crashes_dir = args.crashes or os.path.join("fuzz-crashes", args.target)
    module_name = TARGETS[args.target]
    if engine == "atheris":
        import atheris
        with atheris.instrument_imports(include=["netsuite", "tests.fuzz", "twisted.web",
                                                 "twisted.protocols.amp"]):
            module = __import__(module_name, fromlist=["check"])
    else:
        module = __import__(module_name, fromlist=["check"])
    from tests.fuzz.common import corpus, mutate
    seeds = [data for _, data in corpus(module.NAME)]
    campaign = Campaign(args.target, module.check, args.runs, engine, crashes_dir)
    print(f"{args.target}: {engine}, {args.runs} runs, {len(seeds)} seeds", flush=True)
    if engine == "atheris":
        work = tempfile.mkdtemp(prefix=f"fuzz-{args.target}-")
        for n, data in enumerate(seeds):  # atheris grows its own copy of the corpus
            with open(os.path.join(work, f"seed-{n}"), "wb") as f:
                f.write(data)
        print(f"atheris keeps the inputs it finds in {work}", flush=True)
        atheris.Setup([sys.argv[0], f"-seed={args.seed}", f"-max_len={MAX_LEN}",
                       "-runs=-1", "-print_final_stats=0", work], campaign.one)
        atheris.Fuzz()
    rng = random.Random(args.seed)
    for data in seeds:
        campaign.one(data)
    while True:
        campaign.one(mutate(rng, seeds))


if __name__ == "__main__":
    main()
