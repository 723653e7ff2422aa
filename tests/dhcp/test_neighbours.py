"""
Tests for L{netsuite.dhcp.neighbours}: the C{SIOCSARP} request (pure), the
bounded queue and the refusals with a fake ioctl, and the entries a real
kernel keeps (in a lab namespace, as root).
"""

import errno
import socket
import struct

from pyroute2 import IPRoute
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from netsuite.dhcp.neighbours import (ATF_COM, SIOCSARP, KernelNeighbours, NeighboursBusy,
                                      NeighboursRefused, arp_request)
from netsuite.registry.values import MAC
from netsuite.runner import RunnerStopped, ThreadRunner
from netsuite.testing import HeldRunner, SyncRunner

from ..lab.labs import make_lab

MAC_A = MAC("02:4e:00:00:00:0a")
MAC_B = MAC("02:4e:00:00:00:0b")


class FakeIoctl:
    def __init__(self, error=None):
        self.calls = []
        self.error = error

    def __call__(self, fd, request, argument):
        self.calls.append((request, argument))
        if self.error is not None:
            raise self.error


class ArpRequestTests(SynchronousTestCase):
    def test_layout(self):
        """
        A C{struct arpreq}: the address as a sockaddr_in, the MAC as an
        Ethernet sockaddr, ATF_COM (not permanent), the interface's name.
        """
        data = arp_request("br-lan", "10.89.0.100", MAC_A)
        self.assertEqual(len(data), 68)
        family, port, address = struct.unpack_from("=HH4s", data, 0)
        self.assertEqual((family, port, socket.inet_ntoa(address)),
                         (socket.AF_INET, 0, "10.89.0.100"))
        self.assertEqual(struct.unpack_from("=H6s", data, 16), (1, MAC_A.packed))
        self.assertEqual(struct.unpack_from("=i", data, 32), (ATF_COM,))
        self.assertEqual(data[52:], b"br-lan".ljust(16, b"\0"))


class KernelNeighboursTests(SynchronousTestCase):
    def test_learn(self):
        """
        An entry is one SIOCSARP ioctl, made through the runner; the
        Deferred fires once it is made.
        """
        ioctl = FakeIoctl()
        runner = SyncRunner()
        neighbours = KernelNeighbours("br-lan", runner, ioctl=ioctl)
        self.addCleanup(neighbours.close)
        self.assertIsNone(self.successResultOf(neighbours.learn("10.89.0.100", MAC_A)))
        self.assertEqual(ioctl.calls, [(SIOCSARP, arp_request("br-lan", "10.89.0.100", MAC_A))])
        self.assertEqual((runner.calls, neighbours.waiting), (1, 0))

    def test_batched(self):
        """
        Entries asked for while a batch is written go together in the
        next: one call to the thread for them, one ioctl each, each
        Deferred firing once its entry is made.
        """
        runner = HeldRunner()
        ioctl = FakeIoctl()
        neighbours = KernelNeighbours("br-lan", runner, ioctl=ioctl)
        first = neighbours.learn("10.89.0.100", MAC_A)
        later = [neighbours.learn(f"10.89.0.{n}", MAC_B) for n in (101, 102)]
        self.assertEqual((len(runner.calls), neighbours.waiting), (1, 3))
        runner.run_next()
        self.assertIsNone(self.successResultOf(first))
        self.assertNoResult(later[0])
        [(_, _, (requests,))] = runner.calls
        self.assertEqual(requests, [arp_request("br-lan", f"10.89.0.{n}", MAC_B)
                                    for n in (101, 102)])
        runner.run_next()
        self.assertEqual([self.successResultOf(d) for d in later], [None, None])
        self.assertEqual((len(ioctl.calls), neighbours.waiting, runner.calls), (3, 0, []))

    def test_bounded(self):
        """
        At most C{most_waiting} entries wait (in the thread or for it);
        past that L{KernelNeighbours.learn} fails at once, without
        queuing, and takes entries again as the waiting ones are made.
        """
        runner = HeldRunner()
        ioctl = FakeIoctl()
        neighbours = KernelNeighbours("br-lan", runner, most_waiting=2, ioctl=ioctl)
        first = neighbours.learn("10.89.0.100", MAC_A)
        neighbours.learn("10.89.0.101", MAC_B)
        self.failureResultOf(neighbours.learn("10.89.0.102", MAC_B), NeighboursBusy)
        self.assertEqual(neighbours.waiting, 2)
        runner.run_next()
        self.assertIsNone(self.successResultOf(first))
        neighbours.learn("10.89.0.102", MAC_B)
        self.assertEqual(neighbours.waiting, 2)
        while runner.calls:
            runner.run_next()
        self.assertEqual(neighbours.waiting, 0)
        self.assertEqual([call[1][:8] for call in ioctl.calls],
                         [arp_request("br-lan", f"10.89.0.{n}", MAC_A)[:8]
                          for n in (100, 101, 102)])

    def test_some_fail(self):
        """
        In a batch, an entry that fails fails alone.
        """
        def ioctl(fd, request, argument):
            if argument[4:8] == socket.inet_aton("10.89.0.101"):
                raise OSError(errno.ENODEV, "No such device")
        runner = HeldRunner()
        neighbours = KernelNeighbours("br-lan", runner, ioctl=ioctl)
        neighbours.learn("10.89.0.100", MAC_A)
        bad, good = neighbours.learn("10.89.0.101", MAC_A), neighbours.learn("10.89.0.102", MAC_A)
        runner.run_next()
        runner.run_next()
        self.failureResultOf(bad, OSError)
        self.assertIsNone(self.successResultOf(good))

    def test_runner_stopped(self):
        """
        A runner that refuses the batch fails each of its entries.
        """
        runner = SyncRunner()
        runner.stop()
        neighbours = KernelNeighbours("br-lan", runner, ioctl=FakeIoctl())
        self.failureResultOf(neighbours.learn("10.89.0.100", MAC_A), RunnerStopped)
        self.assertEqual(neighbours.waiting, 0)

    def test_refused(self):
        """
        Without CAP_NET_ADMIN (EPERM) the entry fails with
        L{NeighboursRefused}, and so does every later one, at once.
        """
        runner = SyncRunner()
        ioctl = FakeIoctl(PermissionError(errno.EPERM, "Operation not permitted"))
        neighbours = KernelNeighbours("br-lan", runner, ioctl=ioctl)
        self.addCleanup(neighbours.close)
        self.failureResultOf(neighbours.learn("10.89.0.100", MAC_A), NeighboursRefused)
        self.failureResultOf(neighbours.learn("10.89.0.101", MAC_B), NeighboursRefused)
        self.assertEqual((runner.calls, len(ioctl.calls), neighbours.waiting), (1, 1, 0))

    def test_other_error(self):
        """
        Another error (the interface gone) fails that entry only.
        """
        runner = SyncRunner()
        ioctl = FakeIoctl(OSError(errno.ENODEV, "No such device"))
        neighbours = KernelNeighbours("br-lan", runner, ioctl=ioctl)
        self.addCleanup(neighbours.close)
        self.failureResultOf(neighbours.learn("10.89.0.100", MAC_A), OSError)
        ioctl.error = None
        self.successResultOf(neighbours.learn("10.89.0.100", MAC_A))
        self.assertFalse(neighbours.refused)

    def test_close(self):
        """
        Closing before any entry wakes no thread; after one, it closes the
        socket in the worker thread.
        """
        runner = SyncRunner()
        neighbours = KernelNeighbours("br-lan", runner, ioctl=FakeIoctl())
        self.successResultOf(neighbours.close())
        self.assertEqual(runner.calls, 0)
        neighbours.learn("10.89.0.100", MAC_A)
        self.successResultOf(neighbours.close())
        self.assertEqual(runner.calls, 2)
        self.assertIsNone(neighbours._socket)


class KernelTests(TestCase):
    """
    Against the kernel: the entries in a lab's access point (root).
    """

    timeout = 60

    def neighbours_of(self, ns):
        with IPRoute(netns=ns) as ipr:
            index = ipr.link_lookup(ifname="br-lan")[0]
            return {entry.get_attr("NDA_DST"): (entry.get_attr("NDA_LLADDR"), entry["state"])
                    for entry in ipr.get_neighbours(ifindex=index)
                    if entry.get_attr("NDA_LLADDR")}

    @inlineCallbacks
    def test_entries(self):
        """
        Each address gets one STALE entry at the MAC given (as dnsmasq's
        ATF_COM makes); a second MAC for an address replaces the first.
        """
        lab = make_lab(self, clients=1)
        ns = lab.netns("ap")
        runner = ThreadRunner(reactor, name="test-neighbours", netns=ns)
        self.addCleanup(runner.stop)
        neighbours = KernelNeighbours("br-lan", runner)
        yield neighbours.learn("10.89.0.100", MAC_A)
        yield neighbours.learn("10.89.0.101", MAC_A)
        yield neighbours.learn("10.89.0.100", MAC_B)
        yield neighbours.close()
        entries = self.neighbours_of(ns)
        stale = 0x04  # NUD_STALE
        self.assertEqual({ip: entries.get(ip) for ip in ("10.89.0.100", "10.89.0.101")}, {
            "10.89.0.100": (str(MAC_B), stale), "10.89.0.101": (str(MAC_A), stale)})
