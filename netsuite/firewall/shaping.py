# -*- test-case-name: tests.firewall.test_shaping,tests.firewall.test_shaper_contract -*-
"""
Per-client rate limits for the LAN, through netlink (pyroute2) only.

Layout, on the LAN interface C{lan} and an IFB device C{ifb}::

    lan egress (download)              lan ingress (upload)
    htb 1: default 1:ffff              ingress ffff:
      class 1:ffff  10gbit (others)      u32 prio 1, match all, protocol all
      class 1:<off> per client             -> mirred egress redirect to ifb
      u32 prio 10, protocol ip
        800::1  match dst in LAN       ifb egress
                hash on dst low byte   htb 1: default 1:ffff
                link 2:                  (same classes and u32 tree, keyed
        2:<b>:<n> match dst/32            on the source address instead)
                  classid 1:<off>

With an uplink capacity in a direction (L{slots.Uplink}), that tree also
has the uplink's class C{1:fffe} (rate = ceil = capacity, a root class)
and every client's class is under it, one without a limit of its own too:
rate the guarantee, ceil its limit or the capacity, the same quantum for
all (fair shares: C{docs/firewall-shaping.md}).

Every client's identifiers are derived from its host offset C{off} in the LAN
network (L{slots.client_slot}): the class is C{1:<off>} and its u32 node
C{2:<low byte of the address>:<(off >> 8) + 1>} in a 256-bucket hash table
keyed on the low byte of the address. So L{Shaper.limit} and
L{Shaper.unlimit} are a fixed handful of netlink requests whatever the
number of clients (the kernel's own work grows slowly with it), and classifying a packet costs one hash lookup plus a
walk of at most C{2 ** (24 - prefixlen)} nodes (one node on a /24 or smaller).

The kernel these daemons run on has only htb, tbf, ingress and [pb]fifo
qdiscs, the u32 and bpf classifiers and the mirred action (no police action,
no fq_codel, no matchall or flower), hence HTB classes matched by u32, and
upload shaped on an IFB device fed by an ingress redirect.

The identifiers are computed in L{netsuite.firewall.slots} and the messages
built and read in L{netsuite.firewall.tcmessages}; this module sends them.
"""

from __future__ import annotations

import errno
import ipaddress
import threading
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Dict, List, Optional, Tuple

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import TC_H_INGRESS, TC_H_ROOT
from zope.interface import implementer

from . import tcmessages as tc
from .interfaces import IShaper
from .slots import (
    DEFAULT_CLASSID,
    DEFAULT_MINOR,
    HASH_HT,
    INGRESS_HANDLE,
    LINK_HANDLE,
    NO_UPLINK,
    UNLIMITED_KBIT,
    UPLINK_CLASSID,
    UPLINK_MIN_PREFIXLEN,
    ClientSlot,
    Uplink,
    bytes_to_kbit,
    check_limits,
    check_network,
    check_uplink,
    client_slot,
    fair_class,
)

__all__ = ["Shaper"]

_ABSENT = (errno.ENOENT, errno.EINVAL)
_GONE = (errno.ENOENT, errno.EINVAL, errno.ENODEV)


@implementer(IShaper)
class Shaper:
    """
    Per-client rate limits: HTB classes matched by IP with u32; download on
    the LAN interface egress, upload through an IFB device fed by an ingress
    mirred redirect of the LAN interface.

    Every method blocks on a few netlink requests; call them from one worker
    thread at a time (a lock serializes them anyway). Without C{ipr}, the
    Shaper opens its own netlink socket on first use, in the calling thread.

    L{setup} keeps the client classes it finds under a well-formed layout
    (after a crash or a restart): compare L{limits} with what should be set
    and L{unlimit} what is stale, or a recycled address inherits a limit.

    With an C{uplink} capacity in a direction, that direction's tree has
    the uplink's class C{1:fffe} (rate = ceil = capacity) and every client
    limited there, C{limit(ip, 0, 0)} included, a class under it
    (L{netsuite.firewall.slots.fair_class}): fair shares, drawn in
    C{docs/firewall-shaping.md}.
    """

    def __init__(self, lan_ifname: str, lan_network: IPv4Network,
                 ifb_ifname: str = "ifb-ns0", ipr: Optional[IPRoute] = None,
                 uplink: Uplink = NO_UPLINK):
        self.lan_ifname = lan_ifname
        self.lan_network = check_network(ipaddress.IPv4Network(lan_network))
        self.uplink = check_uplink(uplink, self.lan_network)
        self.ifb_ifname = ifb_ifname
        self._ipr = ipr
        self._own_ipr = ipr is None
        self._lock = threading.RLock()
        self._lan_index: Optional[int] = None
        self._ifb_index: Optional[int] = None

    # -- plumbing

    @property
    def ipr(self) -> IPRoute:
        if self._ipr is None:
            self._ipr = IPRoute()
        return self._ipr

    def close(self) -> None:
        """
        Close the netlink socket if the Shaper opened it. Kernel state stays.
        """
        with self._lock:
            if self._own_ipr and self._ipr is not None:
                self._ipr.close()
                self._ipr = None

    def _request(self, msg: Any, ignore: Tuple[int, ...] = ()) -> bool:
        """
        Send one request (from L{tcmessages}) and wait for its ack. False if
        it failed with an errno in C{ignore}.
        """
        try:
            # (IPRoute.nlm_request of pyroute2 0.9.7 fails with KeyError
            # 'nlm_generator'; the batch call of one message does the same job)
            self.ipr.nlm_request_batch([msg])
        except NetlinkError as e:
            if e.code in ignore:
                return False
            raise
        return True

    def _link(self, ifname: str) -> Any:
        try:
            return self.ipr.link('get', ifname=ifname)[0]
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return None
            raise

    def _lan(self) -> int:
        if self._lan_index is None:
            link = self._link(self.lan_ifname)
            if link is None:
                raise LookupError(f"no LAN interface {self.lan_ifname}")
            self._lan_index = link['index']
        return self._lan_index

    def _ifb(self) -> int:
        if self._ifb_index is None:
            link = self._link(self.ifb_ifname)
            if link is None:
                raise LookupError(f"no IFB device {self.ifb_ifname}: call setup() first")
            self._ifb_index = link['index']
        return self._ifb_index

    def _devices(self) -> List[Tuple[int, str]]:
        """
        (ifindex, the address field its u32 tree matches) for both directions.
        """
        return [(self._lan(), "dst"), (self._ifb(), "src")]

    def _qdiscs(self) -> Dict[Tuple[int, int], Any]:
        """
        The root and ingress qdiscs of every device: (ifindex, parent) -> msg.
        """
        found = {}
        for msg in self.ipr.tc('dump'):
            if msg['parent'] in (TC_H_ROOT, TC_H_INGRESS):
                found[(msg['index'], msg['parent'])] = msg
        return found

    def _ingress_filters(self, lan: int) -> List[Any]:
        """
        The LAN ingress filters that have a kind (not the bare priority
        headers of the dump).
        """
        return [m for m in self.ipr.get_filters(index=lan, parent=INGRESS_HANDLE)
                if m.get_attr('TCA_KIND') is not None]

    def _get_filter(self, index: int, handle: int) -> Any:
        """
        One filter of the client tree by its handle (RTM_GETTFILTER, not a
        dump), or None.
        """
        try:
            answer = self.ipr.nlm_request_batch([tc.get_tree_filter(index, handle)])
        except NetlinkError as e:
            if e.code in _ABSENT:
                return None
            raise
        return tc.found_filter(answer, handle)

    # -- setup / teardown

    def setup(self) -> None:
        """
        Build the layout, or complete and repair what is there. Idempotent.
        """
        with self._lock:
            self._lan_index = None
            self._ifb_index = None
            lan = self._lan()
            ifb = self._ensure_ifb()
            qdiscs = self._qdiscs()
            for index, direction in ((lan, "dst"), (ifb, "src")):
                self._ensure_htb(index, direction, qdiscs.get((index, TC_H_ROOT)))
            self._ensure_redirect(lan, ifb, qdiscs.get((lan, TC_H_INGRESS)))

    def _ensure_ifb(self) -> int:
        link = self._link(self.ifb_ifname)
        if link is not None and tc.link_kind(link) != 'ifb':
            raise RuntimeError(
                f"{self.ifb_ifname} exists and is a {tc.link_kind(link)!r} device, not an IFB")
        if link is None:
            self.ipr.link('add', ifname=self.ifb_ifname, kind='ifb')
            link = self._link(self.ifb_ifname)
        if not link['flags'] & 1:
            self.ipr.link('set', index=link['index'], state='up')
        self._ifb_index = link['index']
        return self._ifb_index

    def _has_uplink_class(self, index: int) -> bool:
        """
        Does the tree have the uplink's class? (On a /16 1:fffe would be a
        client's, and fair shares are refused there.)
        """
        if self.lan_network.prefixlen < UPLINK_MIN_PREFIXLEN:
            return False
        return self._request(tc.get_class(index, UPLINK_CLASSID), ignore=_ABSENT)

    def _ensure_htb(self, index: int, direction: str, current: Any) -> None:
        capacity = self.uplink.capacity(direction)
        ours = (
            tc.is_htb_root(current)
            and tc.htb_defcls(current) == DEFAULT_MINOR
            and self._tree_matches(index, direction)
            # a tree with fair shares and one without cannot be turned into
            # each other class by class (the kernel moves no class)
            and self._has_uplink_class(index) == bool(capacity)
        )
        if not ours:
            # replacing the root drops whatever classes and filters it held
            if current is not None and current.get_attr('TCA_KIND') not in (None, 'noqueue'):
                self._request(tc.delete_root(index), ignore=_ABSENT)
            self._request(tc.add_htb_root(index))
        self._request(tc.set_class(index, DEFAULT_CLASSID, UNLIMITED_KBIT))
        if capacity:
            self._request(tc.set_class(index, UPLINK_CLASSID, capacity))
        if not ours:
            # the hash table 2: (256 buckets), and the node in 800: that
            # sends LAN addresses into it
            self._request(tc.add_hash_table(index))
            self._request(tc.set_hash_link(index, self.lan_network, direction))

    def _tree_matches(self, index: int, direction: str) -> bool:
        """
        Is the u32 tree on this htb root ours, for this LAN and direction?
        Two gets, whatever the number of clients (their nodes are not
        checked one by one).
        """
        if not tc.is_hash_table(self._get_filter(index, HASH_HT)):
            return False
        return tc.is_hash_link(self._get_filter(index, LINK_HANDLE), self.lan_network, direction)

    def _ensure_redirect(self, lan: int, ifb: int, current: Any) -> None:
        if current is not None and current.get_attr('TCA_KIND') == 'ingress':
            if tc.redirects_only_to(self._ingress_filters(lan), ifb):
                return
            self._request(tc.delete_ingress(lan), ignore=_ABSENT)
        elif current is not None:
            # a clsact, or something else holding the ingress hook
            self._request(tc.delete_ingress(lan, current['handle']), ignore=_ABSENT)
        self._request(tc.add_ingress(lan))
        self._request(tc.set_redirect(lan, ifb))

    def teardown(self) -> None:
        """
        Remove the root qdiscs of the LAN and the IFB, the LAN ingress qdisc
        and the IFB device. Idempotent.
        """
        with self._lock:
            self._lan_index = None
            self._ifb_index = None
            lan = self._link(self.lan_ifname)
            ifb = self._link(self.ifb_ifname)
            if lan is not None:
                qdiscs = self._qdiscs()
                if tc.is_htb_root(qdiscs.get((lan['index'], TC_H_ROOT))):
                    self._request(tc.delete_root(lan['index']), ignore=_GONE)
                ingress = qdiscs.get((lan['index'], TC_H_INGRESS))
                if ingress is not None and ingress.get_attr('TCA_KIND') == 'ingress':
                    self._request(tc.delete_ingress(lan['index']), ignore=_GONE)
            if ifb is not None and tc.link_kind(ifb) == 'ifb':
                try:
                    self.ipr.link('del', index=ifb['index'])
                except NetlinkError as e:
                    if e.code not in _GONE:
                        raise

    # -- clients

    def limit(self, ip: IPv4Address, up_kbit: int, down_kbit: int) -> None:
        """
        Set (add or replace) the client's limits in kbit/s (1000 bit/s);
        0 leaves that direction unlimited (without an uplink capacity
        there) or at the uplink's fair share.
        """
        slot = client_slot(ip, self.lan_network)
        check_limits(up_kbit, down_kbit)
        with self._lock:
            for (index, direction), kbit in zip(self._devices(), (down_kbit, up_kbit)):
                if kbit or self.uplink.capacity(direction):
                    self._set(index, direction, IPv4Address(ip), slot, kbit)
                else:
                    self._clear(index, slot)

    def unlimit(self, ip: IPv4Address) -> None:
        """
        Remove the client's limits; harmless if it has none.
        """
        slot = client_slot(ip, self.lan_network)
        with self._lock:
            for index, _ in self._devices():
                self._clear(index, slot)

    def _set(self, index: int, direction: str, ip: IPv4Address, slot: ClientSlot, kbit: int) -> None:
        capacity = self.uplink.capacity(direction)
        if capacity:
            rate, ceil = fair_class(capacity, self.uplink.guarantee(capacity, self.lan_network),
                                    kbit)
            quantum = tc.fair_quantum(capacity)
            self._request(tc.set_class(index, slot.classid, rate, parent=UPLINK_CLASSID,
                                       ceil_kbit=ceil, quantum=quantum, cburst=quantum))
        else:
            self._request(tc.set_class(index, slot.classid, kbit))
        self._request(tc.set_client_filter(index, slot, ip, direction))

    def _clear(self, index: int, slot: ClientSlot) -> None:
        # the filter first: the kernel refuses to delete a class in use
        self._request(tc.delete_client_filter(index, slot), ignore=_ABSENT)
        self._request(tc.delete_class(index, slot.classid), ignore=_ABSENT)

    def limits(self) -> Dict[IPv4Address, Tuple[int, int]]:
        """
        The limits set in the kernel: address -> (up_kbit, down_kbit), 0 for
        a direction without a limit. Read from the HTB classes: under the
        uplink's class, a ceil that is the uplink's capacity is no limit
        (0), and a client with such classes only is there with (0, 0).
        """
        with self._lock:
            found: Dict[IPv4Address, List[int]] = {}
            for (index, _), position in zip(self._devices(), (1, 0)):
                msgs = list(self.ipr.get_classes(index=index))
                uplink = [tc.htb_rate(m) for m in msgs if m['handle'] == UPLINK_CLASSID
                          and self.lan_network.prefixlen >= UPLINK_MIN_PREFIXLEN]
                for msg in msgs:
                    client = tc.client_class(msg, self.lan_network)
                    if client is None:
                        continue
                    ip, parent, ceil = client
                    if parent == UPLINK_CLASSID and uplink and \
                            ceil == bytes_to_kbit(uplink[0]):
                        ceil = 0
                    found.setdefault(ip, [0, 0])[position] = ceil
            return {ip: (up, down) for ip, (up, down) in found.items()}

    def intact(self) -> bool:
        """
        Do the IFB device (up), both htb roots with their hashing node, the
        LAN ingress qdisc and its redirect to the IFB exist? A few requests,
        independent of the number of clients.
        """
        with self._lock:
            try:
                lan = self._link(self.lan_ifname)
                ifb = self._link(self.ifb_ifname)
                if lan is None or ifb is None or tc.link_kind(ifb) != 'ifb' or not ifb['flags'] & 1:
                    return False
                self._lan_index, self._ifb_index = lan['index'], ifb['index']
                qdiscs = self._qdiscs()
                for index, direction in ((lan['index'], "dst"), (ifb['index'], "src")):
                    if not tc.is_htb_root(qdiscs.get((index, TC_H_ROOT))):
                        return False
                    if self._get_filter(index, LINK_HANDLE) is None:
                        return False
                    if self.uplink.capacity(direction) and not self._has_uplink_class(index):
                        return False
                ingress = qdiscs.get((lan['index'], TC_H_INGRESS))
                if ingress is None or ingress.get_attr('TCA_KIND') != 'ingress':
                    return False
                return tc.redirects_only_to(self._ingress_filters(lan['index']), ifb['index'])
            except NetlinkError:
                return False
