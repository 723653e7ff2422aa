# -*- test-case-name: tests.test_scripts -*-
"""
The shell scripts: they parse, and C{scripts/bench.sh} reads its arguments
as documented (with C{--dry-run}, which installs and runs nothing).
"""

from __future__ import annotations

import glob
import os
import subprocess
from typing import List

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "scripts", "bench.sh")


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", BENCH, *args], capture_output=True, text=True, timeout=30)


def benchmarks() -> List[str]:
    """
    The benchmarks in bench/: bench/NAME.py, helpers start with "_".
    """
    names = [os.path.basename(path)[:-3]
             for path in glob.glob(os.path.join(ROOT, "bench", "*.py"))]
    return sorted(name for name in names if not name.startswith("_"))


class ScriptTests(SynchronousTestCase):
    """
    Every script in scripts/ and bench/.
    """

    def test_syntax(self) -> None:
        """
        Every script parses (C{bash -n}) and is executable.
        """
        paths = glob.glob(os.path.join(ROOT, "scripts", "*.sh")) + glob.glob(
            os.path.join(ROOT, "bench", "*.sh")) + [os.path.join(ROOT, ".ci", "run")]
        for path in paths:
            done = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
            self.assertEqual((done.returncode, done.stderr), (0, ""), path)
            self.assertTrue(os.access(path, os.X_OK), path)

    def test_bench_wrappers(self) -> None:
        """
        bench/dhcp.sh, portal.sh, proxy.sh and mailproxy.sh are
        scripts/bench.sh with their benchmark.
        """
        for name in ("dhcp", "portal", "proxy", "mailproxy"):
            with open(os.path.join(ROOT, "bench", f"{name}.sh")) as f:
                last = f.read().strip().splitlines()[-1]
            self.assertEqual(last, f'exec "$(dirname "$0")/../scripts/bench.sh" {name} "$@"')


class BenchArgumentTests(SynchronousTestCase):
    """
    C{scripts/bench.sh [--dry-run] BENCHMARK|all [ARGS...]}.
    """

    def test_help(self) -> None:
        """
        --help prints the usage, naming every benchmark in bench/, and succeeds.
        """
        done = bench("--help")
        self.assertEqual(done.returncode, 0)
        choices = done.stdout.split("{")[1].split("}")[0].split("|")
        self.assertEqual(sorted(choices), sorted(benchmarks() + ["all"]))

    def test_all_runs_every_benchmark(self) -> None:
        """
        "all" runs every bench/NAME.py, each with the arguments given, after
        installing the peers of all of them.
        """
        done = bench("--dry-run", "all", "--quick")
        self.assertEqual(done.returncode, 0, done.stderr)
        setup, *runs = done.stdout.splitlines()
        self.assertEqual(setup, "setup: scripts/setup.sh kea-dhcp4-server kea-admin dnsmasq "
                         "slapd nginx-light wrk iperf3 haproxy")
        names = [run.split("bench/")[1].split(".py")[0] for run in runs]
        self.assertEqual(sorted(names), benchmarks())
        self.assertEqual(runs, [f"run: .venv/bin/python bench/{name}.py --quick"
                                for name in names])

    def test_one(self) -> None:
        """
        One benchmark: only its peers, and its arguments passed on as given.
        """
        done = bench("--dry-run", "portal", "--quick", "--tmp", "x")
        self.assertEqual((done.returncode, done.stdout.splitlines()), (0, [
            "setup: scripts/setup.sh nginx-light wrk",
            "run: .venv/bin/python bench/portal.py --quick --tmp x"]))
        self.assertEqual(bench("--dry-run", "bus").stdout.splitlines(), [
            "setup: scripts/setup.sh", "run: .venv/bin/python bench/bus.py"])

    def test_bad_usage(self) -> None:
        """
        No benchmark, or an unknown one, is a usage error (exit 2) naming
        the choices on standard error.
        """
        for args in [(), ("nosuch",), ("--dry-run",), ("--dry-run", "nosuch")]:
            done = bench(*args)
            self.assertEqual((done.returncode, done.stdout), (2, ""), args)
            self.assertIn("usage: scripts/bench.sh", done.stderr)
