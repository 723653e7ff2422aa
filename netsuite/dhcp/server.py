# -*- test-case-name: tests.dhcp.test_server -*-
"""
The DHCP server's decisions (RFC 2131 section 4.3), each around a mailbox:

 - C{/dhcp/packet/in}: every request, before anything else; a listener may
   drop it.
 - C{/dhcp/lookup}: which address for this client; the pool allocator is
   the last listener, a hook in front (LDAP) may answer instead.
 - C{/dhcp/options}: options to add to an OFFER or ACK.
 - events C{/dhcp/lease/offered|acked|renewed|released|declined|expired}.
 - C{/dhcp/leases}: the leases, by MAC, by IP or all.

The pool and the lease store answer from memory, on the reactor thread;
only their writes to the lease file go through the runner, one worker
thread, in order. ACKs wait for their lease to be durable; leases waiting
together are committed together.
"""

from __future__ import annotations

import functools
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Dict, Iterable, List, Optional, Tuple

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ..registry.interfaces import IRegistry, Stop
from ..clock import clock_watch
from ..runner import GroupCommit, IRunner
from ..registry.registry import declare_service
from ..registry.values import MAC, Message
from .guard import COUNTERS as FRAME_COUNTERS
from .leases import Lease
from .options import HOST_NAME
from .packet import (ACK, DECLINE, DISCOVER, INFORM, NAK, OFFER, RELEASE, REQUEST,
                     MessageType, Packet, as_address)
from .pool import Pool, Subnet
from .replies import ReplyOptions, amended, encoded, in_order, named, reply_packet

__all__ = ["DHCPServer", "MAILBOXES"]

_log = Logger()
ZERO = IPv4Address(0)
REQUEST_TYPES = frozenset({DISCOVER, REQUEST, DECLINE, RELEASE, INFORM})
"""The message types a client sends a server: anything else is dropped."""

MAILBOXES = {
    "/dhcp/packet/in": "Every request, first: {type, mac, client_id, xid, ciaddr, giaddr, "
                       "requested, hostname, subnet, network}. Answer {drop: true} to drop it.",
    "/dhcp/lookup": "Which address for this client: {type, mac, client_id, client_key, xid, "
                    "ciaddr, requested, subnet, network, giaddr, hostname}. Answer {ip} (and "
                    "optionally hostname) or continue; the pool allocator is last.",
    "/dhcp/options": "Options for a reply: {type, mac, ip, subnet, hostname, requested_options, "
                     "options}. Answer a map of option names to values to add or replace "
                     "(None removes). Sent only when it has listeners or watchers.",
    "/dhcp/leases": "Leases: {mac?, ip?}; answers a list of {ip, mac, state, expires, hostname, "
                    "subnet}.",
    "/dhcp/counters": "The server's counters: {name: count}, e.g. offers, acks, naks and each "
                      "kind of refused request (unlisted_relay, unknown_renewals, "
                      "refused_declines, chaddr_mismatch) and of frame seen "
                      "(malformed_frames, rogue_replies...).",
}
EVENTS = {
    "/dhcp/lease/offered": "Event: an address was offered {ip, mac, subnet, source}.",
    "/dhcp/lease/acked": "Event: a lease was bound {ip, mac, subnet, expires, hostname}.",
    "/dhcp/lease/renewed": "Event: a client renewed its lease {ip, mac, subnet, expires}.",
    "/dhcp/lease/released": "Event: a client released its lease {ip, mac, subnet}.",
    "/dhcp/lease/declined": "Event: a client declined an address {ip, mac, subnet}.",
    "/dhcp/lease/expired": "Event: a lease expired {ip, mac, subnet}.",
    "/dhcp/rogue-server": "Event: another DHCP server's reply was seen on the LAN {ip, mac, "
                          "server_id, type, interface, client, yiaddr, replies}; at most once "
                          "per server per dhcp.rogue_report_interval.",
}


REFUSALS = {"/dhcp/lookup": {"ip": None, "source": "refused"}}
"""What a decision answers when a fail-closed hook on it fails or is late:
no address is offered."""


class DHCPServer:
    """
    @param registry: where the DHCP mailboxes are declared.
    @param runner: runs the lease file's commits in order off the reactor
        thread.
    @param interface_subnet: the subnet of the interface served directly
        (requests without a relay).
    @param portal_url: the captive-portal URL (option 114), if any.
    @param relays: the addresses relays send from. A request with giaddr
        set from any other source is dropped (C{unlisted_relay}): else a
        client on the LAN, setting giaddr, leases from a relayed subnet
        and has replies sent wherever its giaddr says.
    @param bind_unknown_renewals: ACK a RENEWING or REBINDING request for
        a free address the server holds no lease of for that client (after
        a lost lease file, say), instead of NAKing it (C{unknown_renewals}):
        lets any client take any free address without a DISCOVER.
    """

    def __init__(self, registry: IRegistry, runner: IRunner, clock: Any,
                 interface_subnet: Optional[Subnet], portal_url: str = "",
                 sweep_interval: float = 10.0, relays: Iterable[IPv4Address] = (),
                 bind_unknown_renewals: bool = False) -> None:
        self.relays = frozenset(str(ip) for ip in relays)
        self.bind_unknown_renewals = bind_unknown_renewals
        self.registry = registry
        self.pool: Optional[Pool] = None
        self.runner = runner
        self.clock = clock
        self.interface_subnet = interface_subnet
        self.reply_options = ReplyOptions(portal_url)
        self.committer: Optional[GroupCommit] = None
        self._unwatch: Optional[Any] = None
        self._pool_answer: Optional[Tuple[Message, Optional[Lease]]] = None
        self.counters = {"dropped": 0, "unknown_type": 0, "no_subnet": 0, "not_ready": 0,
                         "offers": 0, "acks": 0, "naks": 0, "exhausted": 0,
                         "refused_hook_addresses": 0, "refused_declines": 0,
                         "unlisted_relay": 0, "unknown_renewals": 0, "unstored": 0,
                         "store_failures": 0, **{name: 0 for name in FRAME_COUNTERS}}
        self._sweeping = LoopingCall(self.sweep)
        self._sweeping.clock = clock
        self.sweep_interval = sweep_interval
        self._declare()

    @property
    def portal_url(self) -> str:
        """The captive-portal URL (option 114), or ""."""
        return self.reply_options.portal_url

    def _declare(self) -> None:
        declare_service(self.registry, "dhcp", MAILBOXES, EVENTS, {
            "/dhcp/lookup": self._pool_lookup,
            "/dhcp/leases": self._leases,
            "/dhcp/counters": lambda message: Stop(self._counters())}, refusals=REFUSALS)

    def _counters(self) -> Dict[str, int]:
        counters = dict(self.counters)
        if self.committer is not None:
            counters["store_failures"] = self.committer.failures
        return counters

    def start(self, pool: Pool) -> None:
        """
        Serve from C{pool} (built in the worker thread, from the store,
        which must not write through).
        """
        self.pool = pool
        self.committer = GroupCommit(pool.store.take_writes, pool.store.commit, self.runner,
                                     "lease changes (ACKs withheld until they are stored)",
                                     give_back=pool.store.give_back, clock=self.clock)
        self._unwatch = clock_watch(self.clock).observe(self._clock_stepped)
        if self.sweep_interval > 0:
            self._sweeping.start(self.sweep_interval, now=False)

    def _clock_stepped(self, seconds: float) -> None:
        """
        The wall clock stepped: each lease keeps the time it had left, and
        the file gets the new ends.
        """
        self.pool.shift(seconds)
        self.committer.flush()

    def stop(self) -> "Deferred[bool]":
        """
        Stop sweeping; the Deferred fires once the last changes are on disk.
        """
        if self._sweeping.running:
            self._sweeping.stop()
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self.committer is None:
            return succeed(True)
        committer = self.committer

        def stopped(durable: bool) -> bool:
            committer.cancel_retry()
            return durable
        return committer.durable().addCallback(stopped)

    # the stock listeners

    def _pool_offer(self, message: Message) -> Optional[Lease]:
        return self.pool.offer(message["subnet"], message["client_key"], message["mac"],
                               message["requested"], message["hostname"])

    def _pool_lookup(self, message: Message) -> Stop:
        offer = self._pool_offer(message)
        answer = {"ip": None if offer is None else offer.ip, "source": "pool"}
        # The send's callback (_offer) runs before any other message can
        # reach this listener (it answers at once, last in the chain), so
        # one slot is enough to hand the offer itself to _chosen.
        self._pool_answer = (answer, offer)
        return Stop(answer)

    def _leases(self, message: Message) -> Stop:
        if message.get("ip") is not None:
            lease = self.pool.store.get_by_ip(IPv4Address(message["ip"]))
            leases = [] if lease is None else [lease]
        else:
            leases = self.pool.store.all()
        wanted = message.get("mac")
        return Stop([_lease_value(lease) for lease in leases
                     if wanted is None or lease.mac == MAC(wanted)])

    # requests
    #
    # Each step returns the reply (a Packet or None) or a Deferred of it:
    # with only the stock listeners attached nothing waits, and a request
    # is answered without a Deferred or a generator in its way.

    def subnet_for(self, request: Packet) -> Optional[Subnet]:
        if request.giaddr != ZERO:
            return self.pool.subnet_for(request.giaddr)
        return self.interface_subnet

    def _summary(self, request: Packet, subnet: Subnet) -> Message:
        return {"type": MessageType(request.message_type).name, "mac": request.mac,
                "client_id": request.client_id, "xid": request.xid, "ciaddr": request.ciaddr,
                "giaddr": request.giaddr if request.giaddr != ZERO else None,
                "requested": request.requested_ip, "hostname": request.hostname,
                "subnet": subnet.name, "network": _network_text(subnet.network)}

    def handle(self, request: Packet, source: Optional[str] = None) -> Any:
        """
        The reply to C{request}: a L{Packet}, None, or a Deferred of either.
        A request without a client's message type (option 53 absent, 0,
        13, an OFFER...), or relayed (giaddr) from a C{source} address
        that is not a listed relay, is dropped and counted, unseen by any
        mailbox.
        """
        if request.message_type not in REQUEST_TYPES:
            self.counters["unknown_type"] += 1
            return None
        if request.giaddr != ZERO and source not in self.relays:
            dropped = self.counters["unlisted_relay"] = self.counters["unlisted_relay"] + 1
            log = _log.warn if dropped % 1000 == 1 else _log.debug
            log("dropped a request relayed (giaddr {giaddr}) from {source}, not in dhcp.relays "
                "({n} so far)", giaddr=str(request.giaddr), source=source, n=dropped)
            return None
        if self.pool is None:
            self.counters["not_ready"] += 1
            return None
        subnet = self.subnet_for(request)
        if subnet is None:
            self.counters["no_subnet"] += 1
            return None
        if self.registry.heard("/dhcp/packet/in"):
            return self.registry.send("/dhcp/packet/in", self._summary(request, subnet)
                                      ).addCallback(self._admitted, request, subnet)
        return self._serve(request, subnet)

    def _admitted(self, verdict: Any, request: Packet, subnet: Subnet) -> Any:
        if isinstance(verdict, dict) and verdict.get("drop"):
            self.counters["dropped"] += 1
            return None
        return self._serve(request, subnet)

    def _serve(self, request: Packet, subnet: Subnet) -> Any:
        kind = request.message_type
        if kind == DISCOVER:
            return self._discover(request, subnet)
        if kind == REQUEST:
            return self._request(request, subnet)
        if kind == DECLINE:
            self._decline(request, subnet)
        elif kind == RELEASE:
            self._release(request, subnet)
        elif kind == INFORM:
            return self._reply(request, subnet, ACK, ZERO, inform=True)
        return None

    def _discover(self, request: Packet, subnet: Subnet) -> Any:
        summary = self._summary(request, subnet)
        summary["client_key"] = request.client_key
        return self.registry.send("/dhcp/lookup", summary).addCallback(
            self._offer, request, subnet, summary)

    def _offer(self, answer: Any, request: Packet, subnet: Subnet, summary: Message) -> Any:
        ip, source, hostname = self._chosen(answer, request, subnet, summary)
        if ip is None:
            self.counters["exhausted"] += 1
            return None
        self.counters["offers"] += 1
        self._announce("/dhcp/lease/offered", {"ip": ip, "mac": summary["mac"],
                                               "subnet": subnet.name, "source": source})
        return self._reply(request, subnet, OFFER, ip, hostname=hostname)

    def _chosen(self, answer: Any, request: Packet, subnet: Subnet,
                summary: Message) -> Tuple[Optional[IPv4Address], str, Optional[str]]:
        """
        The address C{/dhcp/lookup} chose, where it came from and the host
        name to give with it. Only the pool's own offer is taken as it is,
        whoever says C{source: "pool"}; any other address is offered once
        the pool holds it for this client, else refused for the pool's.
        """
        pooled, self._pool_answer = self._pool_answer, None
        if pooled is not None and answer is pooled[0]:  # the pool's own, untouched
            offer = pooled[1]
            return (None, "pool", None) if offer is None else (offer.ip, "pool", None)
        if not isinstance(answer, dict) or answer.get("ip") is None:
            return None, "pool", None
        key = summary["client_key"]
        source = str(answer.get("source", "hook"))
        try:
            ip: Optional[IPv4Address] = as_address(answer["ip"])
        except (TypeError, ValueError):
            ip = None
        if ip is not None and source == "pool" and self._pool_offered(ip, key, subnet):
            return ip, "pool", None
        hostname = answer.get("hostname") or request.hostname
        if ip is not None and self.pool.hold_offer(subnet.name, ip, key, summary["mac"],
                                                   hostname, True) is not None:
            return ip, "hook" if source == "pool" else source, hostname
        self.counters["refused_hook_addresses"] += 1
        _log.warn("refused {ip} from a /dhcp/lookup hook for {mac}: not an address, outside "
                  "subnet {subnet}, excluded, or in use by another client", ip=str(answer["ip"]),
                  mac=str(summary["mac"]), subnet=subnet.name)
        offer = self._pool_offer(summary)
        return None if offer is None else offer.ip, "pool", None

    def _pool_offered(self, ip: IPv4Address, client_key: bytes, subnet: Subnet) -> bool:
        """
        Whether the pool holds C{ip} for this client in C{subnet}: its
        current offer, or its bound lease (which the pool offers again).
        """
        lease = self.pool.store.get_by_ip(ip)
        return (lease is not None and lease.client_key == client_key
                and lease.subnet == subnet.name
                and (lease.state == "bound" or (lease.state == "offered"
                                                and lease.expires > self.clock.seconds())))

    def _request(self, request: Packet, subnet: Subnet) -> Any:
        key, mac = request.client_key, request.mac
        server_id, requested = request.server_id, request.requested_ip
        store = self.pool.store
        if server_id is not None:  # SELECTING
            if server_id != subnet.server:
                self.pool.release(requested or ZERO, key)
                self.committer.flush()
                return None  # the client chose another server
            ip = requested
        elif requested is not None and request.ciaddr == ZERO:  # INIT-REBOOT
            ip = requested
            if ip not in subnet.network:
                return self._nak(request, subnet, "requested address on the wrong network")
            lease = store.get_by_client(key, subnet.name)
            if lease is None or lease.state not in ("bound", "offered"):
                other = store.get_by_ip(ip)
                if other is not None and other.state == "bound" and other.client_key != key:
                    return self._nak(request, subnet, "address leased to another client")
                return None  # no record of this client: stay silent (section 4.3.2)
            if lease.ip != ip:
                return self._nak(request, subnet, "not the client's address")
        else:  # RENEWING or REBINDING
            ip = request.ciaddr
            if ip != ZERO and not self.bind_unknown_renewals:
                lease = store.get_by_ip(ip)
                if (lease is None or lease.client_key != key or lease.subnet != subnet.name
                        or lease.state not in ("bound", "expired")):
                    self.counters["unknown_renewals"] += 1
                    return self._nak(request, subnet, "no lease of this address for this "
                                     "client")
        if ip is None or ip == ZERO:
            return None
        previous = store.get_by_client(key, subnet.name)
        # The client's own name, else the one its offer got from a hook.
        hostname = request.hostname or (previous.hostname if previous is not None else None)
        lease = self.pool.bind(subnet.name, ip, key, mac, hostname)
        if lease is None:
            return self._nak(request, subnet, "address not available to this client")
        renewed = previous is not None and previous.state == "bound" and previous.ip == ip
        return self.committer.durable().addCallback(self._acked, request, subnet, lease,
                                                    renewed)

    def _acked(self, durable: bool, request: Packet, subnet: Subnet, lease: Lease,
               renewed: bool) -> Any:
        if not durable:
            # Logged by the committer. No ACK without the lease on disk (an
            # ACK promises a binding that survives a restart), and no NAK
            # either (the client did nothing wrong, and a NAK sends it back
            # to DISCOVER): it asks again, and is ACKed once a commit works.
            self.counters["unstored"] += 1
            return None
        self.counters["acks"] += 1
        self._announce("/dhcp/lease/renewed" if renewed else "/dhcp/lease/acked", {
            "ip": lease.ip, "mac": lease.mac, "subnet": subnet.name,
            "expires": lease.expires, "hostname": lease.hostname})
        return self._reply(request, subnet, ACK, lease.ip,
                           lease_time=round(lease.expires - self.clock.seconds()),
                           hostname=None if request.hostname else lease.hostname)

    def _nak(self, request: Packet, subnet: Subnet, why: str) -> Packet:
        self.counters["naks"] += 1
        _log.info("NAK to {mac}: {why}", mac=str(request.mac), why=why)
        return self._packet(request, NAK, ZERO, [(54, subnet.server.packed),
                                                 (56, why.encode())])

    def _decline(self, request: Packet, subnet: Subnet) -> None:
        if request.server_id not in (None, subnet.server) or request.requested_ip is None:
            return
        refused = self.pool.refused_declines
        declined = self.pool.decline(request.requested_ip, request.client_key)
        self.committer.flush()
        self.counters["refused_declines"] += self.pool.refused_declines - refused
        if declined is not None:
            _log.warn("{mac} declined {ip} (in use?); quarantined",
                      mac=str(request.mac), ip=str(request.requested_ip))
            self._announce("/dhcp/lease/declined", {
                "ip": request.requested_ip, "mac": request.mac, "subnet": subnet.name})

    def _release(self, request: Packet, subnet: Subnet) -> None:
        released = self.pool.release(request.ciaddr, request.client_key)
        self.committer.flush()
        if released is not None:
            self._announce("/dhcp/lease/released", {
                "ip": request.ciaddr, "mac": request.mac, "subnet": subnet.name})

    def _announce(self, event: str, message: Message) -> None:
        """
        Send an event, if anyone listens or watches (an event nobody hears
        is not worth dispatching on every exchange).
        """
        if self.registry.heard(event):
            self.registry.send(event, message)

    # replies

    def _reply(self, request: Packet, subnet: Subnet, kind: int, ip: IPv4Address,
               inform: bool = False, lease_time: Optional[float] = None,
               hostname: Optional[str] = None) -> Any:
        """
        An OFFER or ACK of C{ip}, its options amended by the
        C{/dhcp/options} listeners if there are any.

        @param hostname: a host name given to the client (option 12), from
            a hook such as the directory's.
        """
        ciaddr = request.ciaddr if inform else ZERO
        seconds = None if inform else (lease_time or subnet.lease_time)
        if not self.registry.heard("/dhcp/options"):
            return self._packet(request, kind, ip,
                                self.reply_options.ready(subnet, seconds, hostname), ciaddr)
        options = self.reply_options.base(subnet, seconds)
        if hostname:
            options[HOST_NAME] = hostname
        return self.registry.send("/dhcp/options", {
            "type": MessageType(kind).name, "mac": request.mac, "ip": ip,
            "subnet": subnet.name, "hostname": request.hostname,
            "requested_options": list(request.parameter_request_list),
            "options": named(options),
        }).addCallback(self._amended, request, kind, ip, options, ciaddr)

    def _amended(self, amend: Any, request: Packet, kind: int, ip: IPv4Address,
                 options: Dict[int, Any], ciaddr: IPv4Address) -> Packet:
        """
        The reply with the options a C{/dhcp/options} listener answered:
        option names (the mailbox's language) to values, None removing one.
        """
        if isinstance(amend, dict):
            amended(options, amend)
        return self._packet(request, kind, ip, in_order(dict(encoded(options))), ciaddr)

    def _packet(self, request: Packet, kind: int, yiaddr: IPv4Address,
                options: List[Tuple[int, bytes]], ciaddr: IPv4Address = ZERO) -> Packet:
        return reply_packet(request, kind, yiaddr, options, ciaddr)

    # expiry

    def sweep(self) -> None:
        """
        End the leases whose time is up (the store's expiry heap: no scan),
        after moving them with a step of the wall clock, if there was one.
        """
        clock_watch(self.clock).check()
        try:
            expired = self.pool.expire()
        except Exception:
            _log.failure("lease expiry sweep failed")
            return
        self.committer.flush()
        for lease in expired:
            self._announce("/dhcp/lease/expired", {
                "ip": lease.ip, "mac": lease.mac, "subnet": lease.subnet})


@functools.lru_cache(maxsize=64)
def _network_text(network: IPv4Network) -> str:
    """
    C{network} as CIDR text ("10.89.0.0/24"), made once per network.
    """
    return str(network)


def _lease_value(lease: Lease) -> Message:
    return {"ip": lease.ip, "mac": lease.mac, "state": lease.state, "expires": lease.expires,
            "hostname": lease.hostname, "subnet": lease.subnet}

