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

The pool and the lease store block (SQLite): every call to them goes
through the runner, one worker thread, in order. ACKs wait for their lease
to be durable; leases waiting together are committed together.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ..registry.interfaces import IRegistry, Stop
from ..registry.registry import declare_service
from ..registry.values import MAC, Message
from .leases import Lease
from .options import encode_option, option_code
from .packet import (ACK, DECLINE, DISCOVER, INFORM, NAK, OFFER, RELEASE, REQUEST,
                     BOOTREPLY, MessageType, Packet)
from .pool import BindRequest, Pool, Subnet

__all__ = ["DHCPServer", "MAILBOXES"]

_log = Logger()
ZERO = IPv4Address(0)

MAILBOXES = {
    "/dhcp/packet/in": "Every request, first: {type, mac, client_id, xid, ciaddr, giaddr, "
                       "requested, hostname, subnet}. Answer {drop: true} to drop it.",
    "/dhcp/lookup": "Which address for this client: {type, mac, client_id, requested, subnet, "
                    "giaddr, hostname}. Answer {ip} (and optionally hostname) or continue; "
                    "the pool allocator is last.",
    "/dhcp/options": "Options for a reply: {type, mac, ip, subnet, hostname, requested_options, "
                     "options}. Answer a map of option names to values to add or replace "
                     "(None removes); the stock listener answers {}.",
    "/dhcp/leases": "Leases: {mac?, ip?}; answers a list of {ip, mac, state, expires, hostname, "
                    "subnet}.",
}
EVENTS = {
    "/dhcp/lease/offered": "Event: an address was offered {ip, mac, subnet, source}.",
    "/dhcp/lease/acked": "Event: a lease was bound {ip, mac, subnet, expires, hostname}.",
    "/dhcp/lease/renewed": "Event: a client renewed its lease {ip, mac, subnet, expires}.",
    "/dhcp/lease/released": "Event: a client released its lease {ip, mac, subnet}.",
    "/dhcp/lease/declined": "Event: a client declined an address {ip, mac, subnet}.",
    "/dhcp/lease/expired": "Event: a lease expired {ip, mac, subnet}.",
}


def _mac(request: Packet) -> Optional[MAC]:
    return request.mac


class GroupBinder:
    """
    Binds leases durably in batches: whatever arrives while the worker is
    committing goes into the next commit (one fsync for all of them).
    """

    def __init__(self, pool: Pool, runner: Any) -> None:
        self.pool = pool
        self.runner = runner
        self._waiting: List[Tuple[BindRequest, Deferred[Optional[Lease]]]] = []
        self._busy = False

    def bind(self, request: BindRequest) -> "Deferred[Optional[Lease]]":
        d: Deferred[Optional[Lease]] = Deferred()
        self._waiting.append((request, d))
        if not self._busy:
            self._flush()
        return d

    def _flush(self) -> None:
        batch, self._waiting = self._waiting, []
        if not batch:
            self._busy = False
            return
        self._busy = True

        def done(leases: List[Optional[Lease]]) -> None:
            for (_, d), lease in zip(batch, leases):
                d.callback(lease)

        def failed(failure: Any) -> None:
            _log.failure("could not store {n} leases; not acknowledging them", failure,
                         n=len(batch))
            for _, d in batch:
                d.callback(None)

        self.runner(self.pool.bind_many, [r for r, _ in batch]).addCallbacks(
            done, failed).addBoth(lambda _: self._flush())


class DHCPServer:
    """
    @param registry: where the DHCP mailboxes are declared.
    @param pool: addresses and leases (blocking: used through C{runner}).
    @param runner: runs blocking calls in order off the reactor thread.
    @param interface_subnet: the subnet of the interface served directly
        (requests without a relay).
    @param portal_url: the captive-portal URL (option 114), if any.
    """

    def __init__(self, registry: IRegistry, runner: Any, clock: Any,
                 interface_subnet: Optional[Subnet], portal_url: str = "",
                 sweep_interval: float = 10.0) -> None:
        self.registry = registry
        self.pool: Optional[Pool] = None
        self.runner = runner
        self.clock = clock
        self.interface_subnet = interface_subnet
        self.portal_url = portal_url
        self.binder: Optional[GroupBinder] = None
        self.counters = {"dropped": 0, "no_subnet": 0, "not_ready": 0, "offers": 0, "acks": 0, "naks": 0,
                         "exhausted": 0, "refused_hook_addresses": 0}
        self._sweeping = LoopingCall(self.sweep)
        self._sweeping.clock = clock
        self.sweep_interval = sweep_interval
        self._declare()

    def _declare(self) -> None:
        declare_service(self.registry, "dhcp", MAILBOXES, EVENTS, {
            "/dhcp/lookup": self._pool_lookup,
            "/dhcp/options": lambda message: Stop({}),
            "/dhcp/leases": self._leases})

    def start(self, pool: Pool) -> None:
        """
        Serve from C{pool} (built in the worker thread, from the store).
        """
        self.pool = pool
        self.binder = GroupBinder(pool, self.runner)
        if self.sweep_interval > 0:
            self._sweeping.start(self.sweep_interval, now=False)

    def stop(self) -> None:
        if self._sweeping.running:
            self._sweeping.stop()

    # the stock listeners

    def _pool_lookup(self, message: Message) -> "Deferred[Stop]":
        subnet = message["subnet"]
        key = message["client_key"]

        def offer() -> Optional[IPv4Address]:
            ip = self.pool.allocate(subnet, key, message["mac"], message["requested"])
            if ip is not None and self.pool.hold_offer(subnet, ip, key, message["mac"],
                                                       message["hostname"]) is None:
                return None
            return ip
        return self.runner(offer).addCallback(
            lambda ip: Stop({"ip": ip, "source": "pool"}))

    def _leases(self, message: Message) -> "Deferred[Stop]":
        def read() -> List[Lease]:
            if message.get("ip") is not None:
                lease = self.pool.store.get_by_ip(IPv4Address(message["ip"]))
                return [] if lease is None else [lease]
            return self.pool.store.all()
        wanted = message.get("mac")
        return self.runner(read).addCallback(lambda leases: Stop([
            _lease_value(lease) for lease in leases
            if wanted is None or lease.mac == MAC(wanted)]))

    # requests

    def subnet_for(self, request: Packet) -> Optional[Subnet]:
        if request.giaddr != ZERO:
            return self.pool.subnet_for(request.giaddr)
        return self.interface_subnet

    def _summary(self, request: Packet, subnet: Subnet) -> Message:
        return {"type": MessageType(request.message_type).name, "mac": _mac(request),
                "client_id": request.client_id, "xid": request.xid, "ciaddr": request.ciaddr,
                "giaddr": request.giaddr if request.giaddr != ZERO else None,
                "requested": request.requested_ip, "hostname": request.hostname,
                "subnet": subnet.name}

    @inlineCallbacks
    def handle(self, request: Packet) -> Any:
        """
        The reply to C{request}, or None.
        """
        if self.pool is None:
            self.counters["not_ready"] += 1
            return None
        subnet = self.subnet_for(request)
        if subnet is None:
            self.counters["no_subnet"] += 1
            return None
        summary = self._summary(request, subnet)
        if self.registry.mailbox("/dhcp/packet/in").listeners:
            verdict = yield self.registry.send("/dhcp/packet/in", summary)
            if isinstance(verdict, dict) and verdict.get("drop"):
                self.counters["dropped"] += 1
                return None
        kind = request.message_type
        if kind == DISCOVER:
            reply = yield self._discover(request, subnet, summary)
        elif kind == REQUEST:
            reply = yield self._request(request, subnet)
        elif kind == DECLINE:
            yield self._decline(request, subnet)
            reply = None
        elif kind == RELEASE:
            yield self._release(request, subnet)
            reply = None
        elif kind == INFORM:
            reply = yield self._reply(request, subnet, ACK, ZERO, inform=True)
        else:
            reply = None
        return reply

    @inlineCallbacks
    def _discover(self, request: Packet, subnet: Subnet, summary: Message) -> Any:
        key, mac = request.client_key, _mac(request)
        answer = yield self.registry.send("/dhcp/lookup", dict(summary, client_key=key))
        ip: Optional[IPv4Address] = None
        source = "pool"
        hostname = None
        if isinstance(answer, dict) and answer.get("ip") is not None:
            ip = IPv4Address(answer["ip"])
            source = str(answer.get("source", "hook"))
            if source != "pool":
                hostname = answer.get("hostname") or request.hostname
                held = yield self.runner(self.pool.hold_offer, subnet.name, ip, key, mac,
                                         hostname, True)
                if held is None:
                    self.counters["refused_hook_addresses"] += 1
                    _log.warn("refused {ip} from a /dhcp/lookup hook for {mac}: outside "
                              "subnet {subnet}, excluded, or in use by another client",
                              ip=str(ip), mac=str(mac), subnet=subnet.name)
                    answer = yield self._pool_lookup(dict(summary, client_key=key))
                    ip, source, hostname = answer.value["ip"], "pool", None
        if ip is None:
            self.counters["exhausted"] += 1
            return None
        self.counters["offers"] += 1
        self.registry.send("/dhcp/lease/offered", {"ip": ip, "mac": mac, "subnet": subnet.name,
                                                   "source": source})
        reply = yield self._reply(request, subnet, OFFER, ip, hostname=hostname)
        return reply

    @inlineCallbacks
    def _request(self, request: Packet, subnet: Subnet) -> Any:
        key, mac = request.client_key, _mac(request)
        server_id, requested = request.server_id, request.requested_ip
        if server_id is not None:  # SELECTING
            if server_id != subnet.server:
                yield self.runner(self.pool.release, requested or ZERO, key)
                return None  # the client chose another server
            ip = requested
        elif requested is not None and request.ciaddr == ZERO:  # INIT-REBOOT
            ip = requested
            if ip not in subnet.network:
                return self._nak(request, subnet, "requested address on the wrong network")
            lease = yield self.runner(self.pool.store.get_by_client, key, subnet.name)
            if lease is None or lease.state not in ("bound", "offered"):
                other = yield self.runner(self.pool.store.get_by_ip, ip)
                if other is not None and other.state == "bound" and other.client_key != key:
                    return self._nak(request, subnet, "address leased to another client")
                return None  # no record of this client: stay silent (section 4.3.2)
            if lease.ip != ip:
                return self._nak(request, subnet, "not the client's address")
        else:  # RENEWING or REBINDING
            ip = request.ciaddr
        if ip is None or ip == ZERO:
            return None
        previous = yield self.runner(self.pool.store.get_by_client, key, subnet.name)
        # The client's own name, else the one its offer got from a hook.
        hostname = request.hostname or (previous.hostname if previous is not None else None)
        lease = yield self.binder.bind(BindRequest(subnet.name, ip, key, mac, hostname))
        if lease is None:
            return self._nak(request, subnet, "address not available to this client")
        self.counters["acks"] += 1
        event = {"ip": ip, "mac": mac, "subnet": subnet.name, "expires": lease.expires,
                 "hostname": lease.hostname}
        renewed = previous is not None and previous.state == "bound" and previous.ip == ip
        self.registry.send("/dhcp/lease/renewed" if renewed else "/dhcp/lease/acked", event)
        reply = yield self._reply(request, subnet, ACK, ip,
                                  lease_time=round(lease.expires - self.clock.seconds()),
                                  hostname=None if request.hostname else lease.hostname)
        return reply

    def _nak(self, request: Packet, subnet: Subnet, why: str) -> Packet:
        self.counters["naks"] += 1
        _log.info("NAK to {mac}: {why}", mac=str(_mac(request)), why=why)
        return self._packet(request, NAK, ZERO, [(54, subnet.server.packed),
                                                 (56, why.encode())])

    @inlineCallbacks
    def _decline(self, request: Packet, subnet: Subnet) -> Any:
        if request.server_id not in (None, subnet.server) or request.requested_ip is None:
            return
        declined = yield self.runner(self.pool.decline, request.requested_ip,
                                     request.client_key)
        if declined is not None:
            _log.warn("{mac} declined {ip} (in use?); quarantined",
                      mac=str(_mac(request)), ip=str(request.requested_ip))
            self.registry.send("/dhcp/lease/declined", {
                "ip": request.requested_ip, "mac": _mac(request), "subnet": subnet.name})

    @inlineCallbacks
    def _release(self, request: Packet, subnet: Subnet) -> Any:
        released = yield self.runner(self.pool.release, request.ciaddr, request.client_key)
        if released is not None:
            self.registry.send("/dhcp/lease/released", {
                "ip": request.ciaddr, "mac": _mac(request), "subnet": subnet.name})

    # replies

    def _base_options(self, subnet: Subnet, lease_time: Optional[float]) -> Dict[str, Any]:
        options: Dict[str, Any] = {"server_id": subnet.server,
                                   "subnet_mask": subnet.network.netmask}
        if lease_time is not None:
            seconds = max(int(lease_time), 1)
            options.update(lease_time=seconds, renewal_time=seconds // 2,
                           rebinding_time=seconds * 7 // 8)
        if subnet.router is not None:
            options["routers"] = [subnet.router]
        if subnet.dns:
            options["dns_servers"] = list(subnet.dns)
        if self.portal_url:
            options["captive_portal"] = self.portal_url
        for code, value in subnet.options.items():
            options[code if isinstance(code, str) else _name_of(code)] = value
        return options

    @inlineCallbacks
    def _reply(self, request: Packet, subnet: Subnet, kind: int, ip: IPv4Address,
               inform: bool = False, lease_time: Optional[float] = None,
               hostname: Optional[str] = None) -> Any:
        """
        @param hostname: a host name given to the client (option 12), from
            a hook such as the directory's.
        """
        options = self._base_options(subnet, None if inform else (lease_time or subnet.lease_time))
        if hostname:
            options["host_name"] = hostname
        amend = yield self.registry.send("/dhcp/options", {
            "type": MessageType(kind).name, "mac": _mac(request), "ip": ip,
            "subnet": subnet.name, "hostname": request.hostname,
            "requested_options": list(request.parameter_request_list),
            "options": {name: _value(value) for name, value in options.items()}})
        if isinstance(amend, dict):
            for name, value in amend.items():
                if value is None:
                    options.pop(name, None)
                else:
                    options[name] = value
        pairs = []
        for name, value in options.items():
            try:
                pairs.append((option_code(name), encode_option(option_code(name), value)))
            except (KeyError, ValueError) as e:
                _log.warn("option {name}={value!r} left out of the reply: {error}",
                          name=name, value=value, error=e)
        pairs.sort(key=lambda pair: (pair[0] != 54, pair[0]))
        return self._packet(request, kind, ip, pairs, ciaddr=request.ciaddr if inform else ZERO)

    def _packet(self, request: Packet, kind: int, yiaddr: IPv4Address,
                options: List[Tuple[int, bytes]], ciaddr: IPv4Address = ZERO) -> Packet:
        return Packet(op=BOOTREPLY, htype=request.htype, hlen=request.hlen, hops=0,
                      xid=request.xid, secs=0, flags=request.flags, ciaddr=ciaddr,
                      yiaddr=yiaddr, siaddr=ZERO, giaddr=request.giaddr,
                      chaddr=request.chaddr, sname=b"", file=b"",
                      options=((53, bytes([kind])),) + tuple(
                          pair for pair in options if pair[0] != 53)
                      + _relay_echo(request))

    # expiry

    def sweep(self) -> "Deferred[Any]":
        """
        End the leases whose time is up (the store's expiry index: no scan).
        """
        def announce(expired: List[Lease]) -> None:
            for lease in expired:
                self.registry.send("/dhcp/lease/expired", {
                    "ip": lease.ip, "mac": lease.mac, "subnet": lease.subnet})
        return self.runner(self.pool.expire).addCallback(announce).addErrback(
            lambda f: _log.failure("lease expiry sweep failed", f))


def _relay_echo(request: Packet) -> Tuple[Tuple[int, bytes], ...]:
    """
    RFC 3046: a relay's agent information (82) goes back in the reply.
    """
    raw = request.option(82)
    return ((82, raw),) if raw is not None else ()


def _name_of(code: int) -> str:
    from .options import option_name
    return option_name(code)


def _value(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "packed") and not isinstance(value, (IPv4Address, MAC)):
        return str(value)
    return value


def _lease_value(lease: Lease) -> Message:
    return {"ip": lease.ip, "mac": lease.mac, "state": lease.state, "expires": lease.expires,
            "hostname": lease.hostname, "subnet": lease.subnet}

