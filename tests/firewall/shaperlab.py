"""
The namespaces the kernel shaper tests run in
(L{tests.firewall.test_shaping}, L{tests.firewall.test_shaper_contract}):
an access point with a LAN bridge and two clients, the C{tc} binary to read
its state back as an independent check, and bounded TCP transfers measured
with C{tcpmeter.py}.
"""

import json
import os
import shutil
import subprocess
import sys
from ipaddress import IPv4Network

from pyroute2 import IPRoute
from twisted.trial.unittest import SkipTest

from netsuite.firewall.shaping import Shaper

IP = shutil.which("ip") or "/sbin/ip"
TC = shutil.which("tc") or "/sbin/tc"
METER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tcpmeter.py")

TRANSFER_SECONDS = 1.0


def need_root():
    if os.geteuid() != 0:
        raise SkipTest("needs root: builds network namespaces, bridges and qdiscs")


def run(argv, check=True, timeout=10):
    return subprocess.run(argv, check=check, timeout=timeout, capture_output=True, text=True)


class Lab:
    """
    An access point namespace with a bridge br0 (10.77.<n>.1/24) and two
    client namespaces A (.10) and B (.20) on veth ports.
    """

    count = 0

    def __init__(self, case):
        Lab.count += 1
        n = Lab.count
        self.prefix = f"nsshp{os.getpid()}-{n}"
        self.ap, self.a, self.b = (f"{self.prefix}-{x}" for x in ("ap", "a", "b"))
        subnet = 100 + (os.getpid() + n) % 100
        self.network = IPv4Network(f"10.77.{subnet}.0/24")
        self.gateway = self.network.network_address + 1
        self.ip_a = self.network.network_address + 10
        self.ip_b = self.network.network_address + 20
        for ns in (self.ap, self.a, self.b):
            case.addCleanup(run, [IP, "netns", "del", ns], check=False)
            run([IP, "netns", "add", ns])
        run([IP, "-n", self.ap, "link", "add", "br0", "type", "bridge"])
        run([IP, "-n", self.ap, "link", "set", "br0", "up"])
        run([IP, "-n", self.ap, "addr", "add", f"{self.gateway}/24", "dev", "br0"])
        run([IP, "-n", self.ap, "link", "set", "lo", "up"])
        # br_netfilter would drop what the ingress redirect sends to the IFB
        run([IP, "netns", "exec", self.ap, "sh", "-c",
             "echo 0 > /proc/sys/net/bridge/bridge-nf-call-iptables"])
        for ns, port, ip in ((self.a, "pa", self.ip_a), (self.b, "pb", self.ip_b)):
            run([IP, "-n", self.ap, "link", "add", port, "type", "veth",
                 "peer", "name", "eth0", "netns", ns])
            run([IP, "-n", self.ap, "link", "set", port, "master", "br0", "up"])
            run([IP, "-n", ns, "link", "set", "lo", "up"])
            run([IP, "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"])
            run([IP, "-n", ns, "link", "set", "eth0", "up"])
        self.ipr = IPRoute(netns=self.ap)
        case.addCleanup(self.ipr.close)

    def tc(self, *argv):
        """
        C{tc -j ...} in the access point namespace, parsed.
        """
        out = run([TC, "-n", self.ap, "-j", *argv]).stdout
        return json.loads(out) if out.strip() else []

    def classes(self, dev):
        """
        handle -> rate as tc prints it ("4Mbit"): this tc prints HTB classes
        as text even with -j.
        """
        out = run([TC, "-n", self.ap, "class", "show", "dev", dev]).stdout
        found = {}
        for line in out.splitlines():
            words = line.split()
            if words[:2] == ["class", "htb"]:
                found[words[2]] = words[words.index("rate") + 1]
        return found

    def links(self):
        return {link["ifname"]: link for link in
                json.loads(run([IP, "-n", self.ap, "-j", "link", "show"]).stdout)}

    def transfer(self, case, sender_ns, receiver_ns, receiver_ip):
        """
        A bounded TCP transfer: the receiver's rate in bit/s over
        TRANSFER_SECONDS.
        """
        port = "5201"
        receiver = subprocess.Popen(
            [IP, "netns", "exec", receiver_ns, sys.executable, METER, "recv",
             str(receiver_ip), port, str(TRANSFER_SECONDS)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        case.addCleanup(_reap, receiver)
        self_ready = receiver.stdout.readline()
        case.assertEqual(self_ready.strip(), "ready", receiver.stderr.read() if receiver.poll() else "")
        sender = subprocess.Popen(
            [IP, "netns", "exec", sender_ns, sys.executable, METER, "send",
             str(receiver_ip), port, str(TRANSFER_SECONDS + 8)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        case.addCleanup(_reap, sender)
        out, err = receiver.communicate(timeout=TRANSFER_SECONDS + 10)
        sender.wait(timeout=10)
        case.assertEqual(receiver.returncode, 0, err)
        return float(out.split()[0])


def _reap(process):
    if process.poll() is None:
        process.kill()
        process.wait()


class KernelTestsMixin:
    """
    C{self.lab}, and C{self.shaper} on its bridge, not set up yet.
    """

    def setUp(self):
        need_root()
        self.lab = Lab(self)
        self.shaper = Shaper("br0", self.lab.network, ipr=self.lab.ipr)
