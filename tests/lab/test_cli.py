"""
Tests for netsuite-lab, the lab's command line: in-process for the errors,
as a real process where exec replaces it.
"""

import json
import os
import subprocess
import sys
from io import StringIO

from twisted.trial.unittest import SynchronousTestCase

from netsuite.lab import Lab
from netsuite.lab import nsutil
from netsuite.lab.cli import main
from netsuite.lab.netns import ETC_NETNS

from .labs import lab_name, need, need_root

CLI = [sys.executable, "-m", "netsuite.lab.cli"]


def run_cli(*args, user=None):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, user=user)


class CommandLineTests(SynchronousTestCase):
    def setUp(self):
        need_root()
        self.name = lab_name(self)
        self.addCleanup(Lab(self.name, clients=0).down)

    def call(self, *argv):
        out, err = StringIO(), StringIO()
        code = main(list(argv), out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    def test_up_status_exec_down(self):
        """
        up builds the lab and prints it; status shows it (also as JSON);
        exec runs inside a namespace with the command's exit status; down
        removes everything.
        """
        need("busybox")
        built = run_cli("up", "--name", self.name, "--clients", "2", "--addresses")
        self.assertEqual(built.returncode, 0, built.stderr)
        lab = Lab.load(self.name)
        self.assertIn(lab.netns("c2"), built.stdout)
        self.assertIn(lab.client_mac(2), built.stdout)
        code, out, err = self.call("status", "--name", self.name, "--json")
        self.assertEqual(code, 0, err)
        status = json.loads(out)
        self.assertEqual(status["namespaces"]["c1"]["interfaces"]["eth0"]["addresses"][0],
                         "10.89.0.11/24")
        ping = run_cli("exec", "c1", "--name", self.name, "--",
                       "busybox", "ping", "-c", "1", "-W", "2", lab.internet)
        self.assertEqual(ping.returncode, 0, ping.stdout + ping.stderr)
        self.assertIn("1 packets received", ping.stdout)
        failing = run_cli("exec", "--name", self.name, "up", "--", "sh", "-c", "exit 3")
        self.assertEqual(failing.returncode, 3)
        removed = run_cli("down", "--name", self.name)
        self.assertEqual(removed.returncode, 0, removed.stderr)
        self.assertEqual([ns for ns in nsutil.listed() if ns.startswith(lab.prefix)], [])
        self.assertEqual([e for e in os.listdir(ETC_NETNS) if e.startswith(lab.prefix)]
                         if os.path.isdir(ETC_NETNS) else [], [])
        self.assertFalse(os.path.exists(lab.state_path))

    def test_up_ipv6(self):
        """
        up --ipv6 builds the IPv6 lab; radvd outlives the command, so a
        client gets its addresses and pings the IPv6 "internet"; status
        shows the prefix; down removes radvd's directory.
        """
        need("busybox", "radvd")
        built = run_cli("up", "--name", self.name, "--clients", "1", "--ipv6")
        self.assertEqual(built.returncode, 0, built.stderr)
        self.assertIn("IPv6: LAN 2001:db8:89::/64", built.stdout)
        lab = Lab.load(self.name)
        self.assertTrue(lab.ipv6)
        addresses = lab.client_addresses6("c1", timeout=10)
        ping = run_cli("exec", "c1", "--name", self.name, "--",
                       "busybox", "ping", "-c", "1", "-W", "2", lab.internet6)
        self.assertIn("1 packets received", ping.stdout)
        code, out, err = self.call("status", "--name", self.name)
        self.assertEqual(code, 0, err)
        for address in addresses:
            self.assertIn(address, out)
        self.assertEqual(run_cli("down", "--name", self.name).returncode, 0)
        self.assertFalse(os.path.exists(lab.radvd_dir))

    def test_lab_exists(self):
        """
        up refuses a name in use; list shows it.
        """
        self.assertEqual(self.call("up", "--name", self.name, "--clients", "1")[0], 0)
        code, out, err = self.call("up", "--name", self.name)
        self.assertEqual(code, 1)
        self.assertIn(f"lab {self.name} already exists", err)
        self.assertIn(self.name, self.call("list")[1].split())

    def test_lab_missing(self):
        """
        status, exec and down of an unknown lab, or of an unknown role,
        fail with exit status 1 and a message.
        """
        named = ["--name", self.name]
        for argv in (["status", *named], ["down", *named],
                     ["exec", "c1", *named, "--", "true"]):
            code, out, err = self.call(*argv)
            self.assertEqual(code, 1)
            self.assertIn(f"no lab named '{self.name}'", err)
        self.assertEqual(self.call("up", "--name", self.name, "--clients", "1")[0], 0)
        code, out, err = self.call("exec", "c2", "--name", self.name, "--", "true")
        self.assertEqual(code, 1)
        self.assertIn("has no namespace 'c2'", err)
        code, out, err = self.call("exec", "c1", "--name", self.name)
        self.assertEqual(code, 1)
        self.assertIn("needs a command", err)

    def test_not_root(self):
        """
        Run by another user, netsuite-lab says it needs root.
        """
        result = run_cli("up", "--name", self.name, user="nobody")
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("must run as root", result.stderr)
        self.assertFalse(Lab(self.name).exists())

    def test_usage(self):
        """
        A bad command line exits with status 2.
        """
        result = run_cli("up", "--clients", "many")
        self.assertEqual(result.returncode, 2)
        self.assertEqual(run_cli().returncode, 2)

    def test_bad_name(self):
        """
        An invalid lab name is an error naming the rule.
        """
        code, out, err = self.call("up", "--name", "no/slash")
        self.assertEqual(code, 1)
        self.assertIn("bad lab name", err)
