"""
netsuite-dhcp in a real lab: the server runs in the access point's
namespace, real DHCP clients (busybox udhcpc, ISC dhclient) run in the
client namespaces.
"""

import json
import os
import re
import signal
import subprocess
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from netsuite.bus import connect
from netsuite.lab import Lab
from netsuite.lab.peers import missing

from .procs import PYTHON, TWISTD, dhclient_files, socket_dir, spawn, write_config
from ..lab.labs import lab_name

CONFIG = """
[dhcp]
enabled = true
interface = "br-lan"
lease_file = "{leases}"
sweep_interval = 1.0
relays = {relays}
{dhcp_keys}
[[dhcp.subnet]]
name = "lan"
network = "10.89.0.0/24"
first = "10.89.0.100"
last = "{last}"
server = "10.89.0.1"
router = "10.89.0.1"
dns = ["10.89.0.1"]
lease_time = {lease_time}
interface = "br-lan"
"""

# The client's script: print what it got, and set the address so that
# renewals (unicast from the client's address) work. Never touches
# resolv.conf.
SCRIPT = """#!/bin/sh
echo "event=$1 ip=$ip router=$router dns=$dns lease=$lease hostname=$hostname"
case "$1" in
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/24" dev "$interface" ;;
  deconfig) ip addr flush dev "$interface" ;;
esac
"""

OPTIONS_HOOK = """
import sys
from twisted.internet.defer import Deferred
from twisted.internet.task import react
from netsuite.bus import Stop, connect

def main(reactor, socket_dir):
    bus = connect("ap", socket_dir=socket_dir, reactor=reactor)
    handle = bus.listen("/dhcp/options", lambda m: Stop({"captive_portal": "http://portal.test/"}),
                        first=True)
    handle.attached.addCallback(lambda _: print("hooked", flush=True))
    return Deferred()

react(main, sys.argv[1:])
"""


# A capture of the DHCP requests reaching the access point (the lab has no
# tcpdump): one line per request, with its IP destination, so that a test
# tells a unicast renewal (RENEWING) from a broadcast one (REBINDING).
SNIFFER = r"""
import socket, struct, sys
TYPES = {1: "DISCOVER", 3: "REQUEST", 4: "DECLINE", 7: "RELEASE", 8: "INFORM"}
sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
sock.bind((sys.argv[1], 0x0800))
print("sniffing", flush=True)
while True:
    data = sock.recv(4096)
    try:
        ihl = (data[0] & 15) * 4
        if data[9] != 17 or struct.unpack("!H", data[ihl + 2:ihl + 4])[0] != 67:
            continue
        bootp, kind, i = data[ihl + 8:], None, 240
        while i < len(bootp) and bootp[i] != 255:
            if bootp[i] == 0:
                i += 1
                continue
            if bootp[i] == 53:
                kind = bootp[i + 2]
            i += 2 + bootp[i + 1]
        print(f"{TYPES.get(kind, kind)} mac={bootp[28:34].hex(':')} "
              f"ciaddr={socket.inet_ntoa(bootp[12:16])} src={socket.inet_ntoa(data[12:16])} "
              f"dst={socket.inet_ntoa(data[16:20])}", flush=True)
    except (IndexError, struct.error):
        continue
"""


def need_lab():
    if os.getuid() != 0:
        raise SkipTest("needs root to build network namespaces and bind port 67 in them")
    absent = missing("udhcpc", "dhclient")
    if absent:
        raise SkipTest(f"not installed: {', '.join(absent)}")


class DHCPLab(TestCase):
    """
    A lab with netsuite-dhcp in the access point (no tests of its own).
    """

    timeout = 120
    last = "10.89.0.150"
    lease_time = 600
    relays = ()  # the addresses allowed to relay (dhcp.relays)
    dhcp_keys = ""  # more [dhcp] keys, as TOML lines

    @inlineCallbacks
    def setUp(self):
        need_lab()
        self.lab = Lab(lab_name(self), clients=3)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, False)
        self.work = tempfile.mkdtemp(prefix="nsdhcp-")
        self.addCleanup(subprocess.run, ["rm", "-rf", self.work])
        self.script = os.path.join(self.work, "udhcpc.sh")
        with open(self.script, "w") as f:
            f.write(SCRIPT)
        os.chmod(self.script, 0o755)
        self.sockets = socket_dir(self)
        yield self.before_server()
        self.config = write_config(self, CONFIG.format(
            leases=self.lease_file(), last=self.last,
            lease_time=self.lease_time, relays=json.dumps(list(self.relays)),
            dhcp_keys=self.dhcp_keys)
            + self.extra_config())
        yield self.start_server()
        self.bus = connect("ap", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.bus.close)

    def before_server(self):
        return None

    def lease_file(self):
        return os.path.join(self.work, "leases.sqlite")

    def extra_config(self):
        return ""

    def start_server(self):
        self.server = spawn(self, "netsuite-dhcp", [
            *TWISTD, "-n", "--pidfile=", "netsuite-dhcp", "--name", "ap", "--socket-dir",
            self.sockets, "--config", self.config], netns=self.lab.netns("ap"))
        return self.server.when_line("dhcp ready")

    def udhcpc(self, client, *extra):
        """
        Run udhcpc once in C{client} (exit after a lease, or after 3 tries);
        fire with (exit code, the script's lines).
        """
        argv = ["udhcpc", "-f", "-q", "-n", "-t", "3", "-T", "1", "-i", "eth0",
                "-s", self.script, *extra]
        done = deferToThread(self.lab.exec, client, argv, timeout=30)
        return done.addCallback(lambda p: (p.returncode, [
            line for line in p.stdout.splitlines() if line.startswith("event=")]))

    def fields(self, line):
        return dict(re.findall(r"(\w+)=(\S*)", line))

    def sniff(self):
        """
        Capture the requests reaching the access point's bridge; fire with
        the capture (a L{Child}, one line per request) once it runs.
        """
        sniffer = spawn(self, "sniffer", [PYTHON, "-c", SNIFFER, "br-lan"],
                        netns=self.lab.netns("ap"))
        return sniffer.when_line("sniffing", timeout=20).addCallback(lambda _: sniffer)

    @inlineCallbacks
    def watching(self, bus, path, mac):
        """
        Watch C{path} on C{bus} for messages about C{mac}; fire, once the
        watch is attached, with (the list of them, a Deferred of the first).
        """
        seen, first = [], Deferred()

        def saw(message):
            if str(message["mac"]) == mac:
                seen.append(message)
                if not first.called:
                    first.callback(message)
        handle = bus.watch(path, saw)
        self.addCleanup(handle.remove)
        yield handle.attached
        return seen, first

    def dhclient_files(self):
        return dhclient_files(self.work)

    def dhclient(self, client, *args):
        """
        Run dhclient in C{client} with a script of ours; fire with
        (exit code, the script's fields per line, stderr).
        """
        files = self.dhclient_files()
        done = deferToThread(self.lab.exec, client, ["dhclient", "-v", *files, *args, "eth0"],
                             timeout=30)
        return done.addCallback(lambda p: (p.returncode, [
            self.fields(line) for line in p.stdout.splitlines() if line.startswith("reason=")],
            p.stderr))


class DHCPLabTests(DHCPLab):
    """
    Real clients against the server.
    """

    @inlineCallbacks
    def test_udhcpc_lease(self):
        """
        udhcpc gets an address from the range with router, DNS and lease
        time; the lease is in the server's store (/dhcp/leases).
        """
        code, lines = yield self.udhcpc("c1")
        self.assertEqual(code, 0, lines)
        bound = self.fields(lines[-1])
        self.assertEqual(bound["event"], "bound")
        self.assertTrue(bound["ip"].startswith("10.89.0.1"), bound)
        self.assertEqual((bound["router"], bound["dns"], bound["lease"]),
                         ("10.89.0.1", "10.89.0.1", "600"))
        leases = yield self.bus.send("/dhcp/leases", {"mac": self.lab.client_mac(1)})
        self.assertEqual([(str(l["ip"]), l["state"]) for l in leases], [(bound["ip"], "bound")])

    @inlineCallbacks
    def test_three_clients_at_once(self):
        """
        Three clients asking together get three different addresses.
        """
        results = yield DeferredList([self.udhcpc(c) for c in ("c1", "c2", "c3")],
                                     consumeErrors=True)
        addresses = [self.fields(result[1][-1])["ip"] for ok, result in results]
        self.assertEqual(len(set(addresses)), 3, addresses)

    @inlineCallbacks
    def test_dhclient_lease_and_release(self):
        """
        ISC dhclient gets a lease and releases it (-r); the server records
        the release.
        """
        code, lines, errors = yield self.dhclient("c2", "-1")
        self.assertEqual(code, 0, errors)
        bound = [fields for fields in lines if fields["reason"] == "BOUND"]
        self.assertEqual(len(bound), 1, errors)
        ip = bound[0]["ip"]
        released = self.bus.wait_for("/dhcp/lease/released", timeout=20)
        code, lines, errors = yield self.dhclient("c2", "-r")
        self.assertEqual(code, 0, errors)
        message = yield released
        self.assertEqual(str(message["ip"]), ip)
        leases = yield self.bus.send("/dhcp/leases", {"ip": ip})
        self.assertEqual(leases[0]["state"], "released")

    @inlineCallbacks
    def test_option_114_from_another_process(self):
        """
        A listener on /dhcp/options in another process sets the captive-
        portal URL (option 114), and the client receives it.
        """
        hook_path = os.path.join(self.work, "options_hook.py")
        with open(hook_path, "w") as f:
            f.write(OPTIONS_HOOK)
        hook = spawn(self, "hook", [PYTHON, hook_path, self.sockets])
        yield hook.when_line("hooked")
        code, lines, errors = yield self.dhclient("c1", "-1")
        self.assertEqual(code, 0, errors)
        self.assertEqual([f["portal"] for f in lines if f["reason"] == "BOUND"],
                         ["http://portal.test/"], (lines, errors, hook.output()))

    @inlineCallbacks
    def test_restart_keeps_lease(self):
        """
        After kill -9 of the server and a restart, the client asking for
        its address again gets the same one.
        """
        code, lines = yield self.udhcpc("c1")
        ip = self.fields(lines[-1])["ip"]
        self.server.signal("KILL")
        yield self.server.when_ended()
        yield self.start_server()
        code, lines = yield self.udhcpc("c1", "-r", ip)
        self.assertEqual(code, 0, lines)
        self.assertEqual(self.fields(lines[-1])["ip"], ip)
        other = yield self.udhcpc("c2", "-r", ip)
        self.assertNotEqual(self.fields(other[1][-1])["ip"], ip)

    @inlineCallbacks
    def test_restart_then_renew(self):
        """
        A udhcpc that keeps running through a kill -9 and a restart of the
        server, told to renew (SIGUSR1), renews: the restarted server sees
        only REQUESTs from its address (ciaddr, unicast to the server; no
        DISCOVER), ACKs them as a renewal of the same address, and the
        client's script gets that address again.
        """
        mac = self.lab.client_mac(1)
        sniffer = yield self.sniff()
        client = spawn(self, "udhcpc", [
            "udhcpc", "-f", "-i", "eth0", "-s", self.script, "-t", "3", "-T", "1"],
            netns=self.lab.netns("c1"))
        ip = self.fields((yield client.when_line("^event=bound", timeout=20)))["ip"]
        self.server.signal("KILL")
        yield self.server.when_ended()
        yield self.start_server()
        bus = connect("ap", socket_dir=self.sockets, reactor=reactor)  # to the new server
        self.addCleanup(bus.close)
        requests, _ = yield self.watching(bus, "/dhcp/packet/in", mac)
        _, renewed = yield self.watching(bus, "/dhcp/lease/renewed", mac)
        since, sniffed = client.line_count, sniffer.line_count
        client.signal(signal.SIGUSR1)  # renew
        message = yield renewed.addTimeout(20, reactor)
        self.assertEqual(str(message["ip"]), ip)
        line = yield client.when_line("^event=renew", after=since, timeout=20)
        self.assertEqual(self.fields(line)["ip"], ip)
        self.assertEqual({(m["type"], str(m["ciaddr"]), m["requested"]) for m in requests},
                         {("REQUEST", ip, None)}, requests)
        wire = yield sniffer.when_line(f"^REQUEST mac={mac} ciaddr={re.escape(ip)} ",
                                       after=sniffed, timeout=20)
        self.assertEqual((self.fields(wire)["src"], self.fields(wire)["dst"]),
                         (ip, "10.89.0.1"), sniffer.output())
        self.assertEqual([l for l in sniffer.lines(after=sniffed)
                          if l.startswith("DISCOVER")], [])
        leases = yield bus.send("/dhcp/leases", {"mac": mac})
        self.assertEqual([(str(l["ip"]), l["state"]) for l in leases], [(ip, "bound")])

    @inlineCallbacks
    def test_renew_and_release(self):
        """
        A running udhcpc told to renew (SIGUSR1) sends a RENEWING request
        from its address; the server extends the lease and announces it.
        Stopped (with -R), it releases the lease, which the server records.
        """
        client = spawn(self, "udhcpc", ["udhcpc", "-f", "-R", "-i", "eth0", "-s", self.script,
                                        "-t", "3", "-T", "1"], netns=self.lab.netns("c1"))
        bound = self.fields((yield client.when_line("^event=bound")))
        renewed = Deferred()
        watch = self.bus.watch("/dhcp/lease/renewed",
                               lambda m: renewed.called or renewed.callback(m))
        self.addCleanup(watch.remove)
        yield watch.attached
        client.signal(signal.SIGUSR1)  # renew
        message = yield renewed.addTimeout(20, reactor)
        self.assertEqual(str(message["ip"]), bound["ip"])
        self.assertEqual(str(message["mac"]), self.lab.client_mac(1))

        released = Deferred()
        watch = self.bus.watch("/dhcp/lease/released",
                               lambda m: released.called or released.callback(m))
        self.addCleanup(watch.remove)
        yield watch.attached
        client.signal("TERM")  # -R: release on exit
        message = yield released.addTimeout(20, reactor)
        self.assertEqual(str(message["ip"]), bound["ip"])
        leases = yield self.bus.send("/dhcp/leases", {"ip": bound["ip"]})
        self.assertEqual(leases[0]["state"], "released")


class ShortLeaseTests(DHCPLab):
    """
    Leases of 8 s: a client renews by itself at T1 (4 s, dhclient a little
    earlier at random).
    """

    lease_time = 8

    @inlineCallbacks
    def test_dhclient_renews(self):
        """
        A running ISC dhclient renews at T1: a REQUEST from its address
        (ciaddr, unicast to the server), which the server ACKs as a renewal
        of the same address; dhclient's script sees RENEW with it.
        """
        mac = self.lab.client_mac(2)
        sniffer = yield self.sniff()
        requests, _ = yield self.watching(self.bus, "/dhcp/packet/in", mac)
        _, renewed = yield self.watching(self.bus, "/dhcp/lease/renewed", mac)
        client = spawn(self, "dhclient", ["dhclient", "-d", "-v", *self.dhclient_files(), "eth0"],
                       netns=self.lab.netns("c2"))
        ip = self.fields((yield client.when_line("^reason=BOUND", timeout=20)))["ip"]
        message = yield renewed.addTimeout(20, reactor)
        self.assertEqual(str(message["ip"]), ip)
        line = yield client.when_line("^reason=RENEW ", timeout=20)
        self.assertEqual(self.fields(line)["ip"], ip)
        renewals = {(m["type"], str(m["ciaddr"]), m["requested"])
                    for m in requests if str(m["ciaddr"]) != "0.0.0.0"}
        self.assertEqual(renewals, {("REQUEST", ip, None)}, requests)
        self.assertEqual([m["type"] for m in requests].count("DISCOVER"), 1, requests)
        wire = yield sniffer.when_line(f"^REQUEST mac={mac} ciaddr={re.escape(ip)} ",
                                       timeout=20)
        self.assertEqual((self.fields(wire)["src"], self.fields(wire)["dst"]),
                         (ip, "10.89.0.1"), sniffer.output())
        leases = yield self.bus.send("/dhcp/leases", {"mac": mac})
        self.assertEqual([(str(l["ip"]), l["state"]) for l in leases], [(ip, "bound")])


class ExhaustionTests(DHCPLab):
    """
    A range of two addresses and three clients.
    """

    last = "10.89.0.101"

    @inlineCallbacks
    def test_exhausted(self):
        """
        The third client gets no address and the server logs the
        exhaustion.
        """
        for client in ("c1", "c2"):
            code, lines = yield self.udhcpc(client)
            self.assertEqual(code, 0, lines)
        code, lines = yield self.udhcpc("c3")
        self.assertNotEqual(code, 0)
        self.assertEqual([l for l in lines if "event=bound" in l], [])
        yield self.server.when_line("exhausted")



LDAP_CONFIG = """
[dhcp.ldap]
enabled = {enabled}
url = "ldap://127.0.0.1:{port}"
base = "{base}"
deadline = 1.0
cache_ttl = 0
negative_ttl = 0
"""


class LdapLab(DHCPLab):
    """
    A directory (slapd, in the access point) knows c1 and c3.
    """

    in_process = True

    def before_server(self):
        if missing("slapd", "slapadd"):
            raise SkipTest("not installed: slapd (Debian: slapd, ldap-utils)")
        from netsuite.lab.peers import SlapdPeer
        self.port = 3389
        self.slapd = SlapdPeer(self.lab.netns("ap"), "127.0.0.1", self.port, hosts=[
            ("c1host", self.lab.client_mac(1), "10.89.0.50"),
            ("c3host", self.lab.client_mac(3), "10.89.0.51")])
        self.addCleanup(self.slapd.stop)
        return deferToThread(self.slapd.start)

    def extra_config(self):
        return LDAP_CONFIG.format(enabled=str(self.in_process).lower(), port=self.port,
                                  base=self.slapd.hosts_dn)

    @inlineCallbacks
    def ldap_listing(self):
        """
        What C{netsuite-hook list ap:/dhcp/lookup} prints for the LDAP
        lookup's listener (the line tagged C{hook=ldap}).
        """
        hook_cli = os.path.join(os.path.dirname(PYTHON), "netsuite-hook")
        listing = spawn(self, "netsuite-hook", [hook_cli, "--socket-dir", self.sockets,
                                                "list", "ap:/dhcp/lookup"])
        code = yield listing.when_ended()
        self.assertEqual(code, 0, listing.output())
        [line] = [l for l in listing.output().splitlines() if "hook=ldap" in l]
        return line

    @inlineCallbacks
    def hit_miss_then_stopped(self):
        """
        c1 (in the directory) gets its directory address, c2 (not in it) a
        pool address; with slapd stopped, c3 (in it) a pool address, within
        the deadline of the first try. Fires with the LDAP listener's line
        of C{netsuite-hook list} after each step.
        """
        code, lines = yield self.udhcpc("c1")
        self.assertEqual((code, self.fields(lines[-1])["ip"]), (0, "10.89.0.50"), lines)
        self.assertEqual(self.fields(lines[-1])["hostname"], "c1host")
        code, lines = yield self.udhcpc("c2")
        self.assertEqual((code, self.fields(lines[-1])["ip"]), (0, "10.89.0.100"), lines)
        running = yield self.ldap_listing()
        yield deferToThread(self.slapd.stop)
        began = reactor.seconds()
        code, lines = yield self.udhcpc("c3")
        self.assertEqual((code, self.fields(lines[-1])["ip"]), (0, "10.89.0.101"), lines)
        self.assertLess(reactor.seconds() - began, 4.0)
        stopped = yield self.ldap_listing()
        return running, stopped

    def assertReasons(self, running, stopped):
        """
        The listing shows why the lookup let the pool answer: hits and
        misses while slapd runs, errors once it is stopped; no error or
        timeout of the listener itself (it answered every time).
        """
        self.assertRegex(running, r"errors=0 timeouts=0  reasons: hit=[1-9]\d* miss=[1-9]\d*$")
        self.assertRegex(stopped, r"errors=0 timeouts=0  reasons: error=[1-9]\d* "
                         r"hit=[1-9]\d* miss=[1-9]\d*$")


class LdapLabTests(LdapLab):
    """
    The paper's example for real: the LDAP hook answers from the directory,
    the pool answers for everyone else, and for everyone when the directory
    is gone.
    """

    @inlineCallbacks
    def test_directory_then_pool(self):
        """
        c1 (in the directory) gets its directory address, outside the
        dynamic range; c2 (not in it) gets a pool address; with slapd
        stopped, c3 (in it) gets a pool address, within the deadline of the
        first try. netsuite-hook list shows why, on the lookup's listener.
        """
        running, stopped = yield self.hit_miss_then_stopped()
        self.assertReasons(running, stopped)
        offered = yield self.bus.send("/dhcp/leases", {"mac": self.lab.client_mac(1)})
        self.assertEqual(offered[0]["hostname"], "c1host")


class ExternalLdapHookTests(LdapLab):
    """
    The same hook as a separate process over the bus (the MetaNet
    architecture): killing it makes the chain fall through at once.
    """

    in_process = False

    @inlineCallbacks
    def test_hook_process(self):
        """
        With the hook process attached, c1 gets its directory address; once
        it is killed, c3 (also in the directory) gets a pool address at once.
        """
        hook = spawn(self, "ldaphook", [
            PYTHON, "-m", "netsuite.dhcp.ldaphook", "--config", self.config, "--process", "ap",
            "--socket-dir", self.sockets], netns=self.lab.netns("ap"))
        yield hook.when_line("hooked")
        code, lines = yield self.udhcpc("c1")
        self.assertEqual((code, self.fields(lines[-1])["ip"]), (0, "10.89.0.50"), lines)
        hook.signal("KILL")
        yield hook.when_ended()
        began = reactor.seconds()
        code, lines = yield self.udhcpc("c3")
        self.assertEqual((code, self.fields(lines[-1])["ip"]), (0, "10.89.0.100"), lines)
        self.assertLess(reactor.seconds() - began, 2.0)

    @inlineCallbacks
    def test_hook_process_reasons(self):
        """
        The hook process's reasons cross the bus: the DHCP process's
        listing counts them under the hook's listener, with slapd running
        and stopped.
        """
        hook = spawn(self, "ldaphook", [
            PYTHON, "-m", "netsuite.dhcp.ldaphook", "--config", self.config, "--process", "ap",
            "--socket-dir", self.sockets], netns=self.lab.netns("ap"))
        yield hook.when_line("hooked")
        running, stopped = yield self.hit_miss_then_stopped()
        self.assertReasons(running, stopped)
        self.assertIn(f"pid={hook.pid}", stopped)


# Another DHCP server's socket, as dnsmasq binds it: every interface, port 67.
PORT_HOLDER = """
import signal, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 67))
print("bound", flush=True)
while True:
    signal.pause()  # until the test's clean-up kills it
"""


class AnotherServerTests(DHCPLab):
    """
    netsuite-dhcp refuses to start beside another DHCP server on its
    interface, rather than both answering the clients.
    """

    def start_server(self):
        holder = spawn(self, "port-holder", [PYTHON, "-c", PORT_HOLDER],
                       netns=self.lab.netns("ap"))

        @inlineCallbacks
        def then():
            yield holder.when_line("^bound$")
            self.server = spawn(self, "netsuite-dhcp", [
                *TWISTD, "-n", "--pidfile=", "netsuite-dhcp", "--name", "ap", "--socket-dir",
                self.sockets, "--config", self.config], netns=self.lab.netns("ap"))
            self.ended = yield self.server.when_ended()
        return then()

    def test_refused(self):
        """
        It exits at start, naming the port, the interface and the reason,
        and gives no client a lease.
        """
        self.assertNotEqual(self.ended, 0)
        self.assertIn("UDP port 67 on br-lan is taken: another DHCP server",
                      self.server.output())
