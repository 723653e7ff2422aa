# -*- test-case-name: tests.dns.test_server -*-
"""
The resolver's decisions for one query, around its mailboxes:

 - C{/dns/query}: a query the resolver is about to answer; a listener may
   answer it (C{{answer: [ips]}}) or refuse it (C{{refuse: rcode}}); when
   none does, the resolver forwards it (or answers from its cache).
   Sent only when someone listens: with nobody attached, a query costs no
   message.
 - events C{/dns/answer}, C{/dns/refused}, C{/dns/tunnel-suspect}.
 - C{/dns/counters}.

L{DNSServer.handle} takes one datagram (or one TCP message) and gives the
reply's bytes, None (dropped) or a Deferred of either; the transports are
in L{netsuite.dns.protocol}.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from twisted.logger import Logger
from twisted.names import dns, error

from ..registry.interfaces import Stop
from ..registry.registry import declare_service
from .cache import Answer, Cache
from .policy import Policy, RateLimit, qtype_name, qtype_number

__all__ = ["DNSServer", "MAILBOXES", "EVENTS", "LocalNames"]

_log = Logger()

MAILBOXES = {
    "/dns/query": "A query about to be resolved: {ip, name, qtype, authorized}. Answer "
                  "{answer: [IPv4 addresses]} or {refuse: rcode (REFUSED, NXDOMAIN or a "
                  "number)}, or continue: the resolver forwards it. Sent only when it has "
                  "listeners or watchers.",
    "/dns/counters": "The resolver's counters: {name: count} (queries, answered, cached, "
                     "malformed, refused_<reason>, upstream_failures, upstream_<name> of the "
                     "upstream client, garden_sent...).",
    "/dns/refusals": "Clients refused before login: {ip: {count, reasons}}.",
}
EVENTS = {
    "/dns/answer": "Event: a query was answered {ip, name, qtype, rcode, answers: [text]}; "
                   "sent only when heard.",
    "/dns/refused": "Event: a client's query was refused before login {ip, name, qtype, "
                    "reason, suppressed}; at most once per dns.refused_event_interval per "
                    "client (suppressed: the refusals not announced since the last one).",
    "/dns/tunnel-suspect": "Event: a client passed dns.suspect_threshold refusals (again at "
                           "each multiple) {ip, count, reasons: {reason: count}}.",
}

REFUSALS = {"/dns/query": {"refuse": "REFUSED"}}
"""What C{/dns/query} answers when a fail-closed hook on it (a deny-list)
fails or is late: the query is refused."""

RCODES = {"NOERROR": dns.OK, "FORMERR": dns.EFORMAT, "SERVFAIL": dns.ESERVER,
          "NXDOMAIN": dns.ENAME, "NOTIMP": dns.ENOTIMP, "REFUSED": dns.EREFUSED}
LOCAL_TTL = 60
UDP_SIZE = 512
UPSTREAM_ERRORS = {error.DNSNameError: dns.ENAME, error.DomainError: dns.ENAME,
                   error.AuthoritativeDomainError: dns.ENAME,
                   error.DNSQueryRefusedError: dns.EREFUSED,
                   error.DNSFormatError: dns.ESERVER, error.DNSNotImplementedError: dns.ESERVER}


class LocalNames:
    """
    Names answered here: name (lower case, no final dot) -> addresses.
    """

    def __init__(self) -> None:
        self.names: Dict[bytes, List[Any]] = {}

    def add(self, name: str, address: Any) -> None:
        key = name.strip().lower().rstrip(".").encode("idna")
        address = ip_address(str(address))
        addresses = self.names.setdefault(key, [])
        if address not in addresses:
            addresses.append(address)

    def read_hosts(self, path: str) -> int:
        """Add the names of an /etc/hosts-style file; how many lines gave names."""
        count = 0
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) < 2:
                    continue
                try:
                    address = ip_address(fields[0].split("%", 1)[0])
                except ValueError:
                    continue
                for name in fields[1:]:
                    self.add(name, address)
                count += 1
        return count

    def answer(self, name: bytes, qtype: int) -> Optional[Answer]:
        addresses = self.names.get(name.lower())
        if addresses is None:
            return None
        records = []
        for address in addresses:
            if isinstance(address, IPv4Address) and qtype in (dns.A, dns.ALL_RECORDS):
                payload: Any = dns.Record_A(str(address), LOCAL_TTL)
            elif isinstance(address, IPv6Address) and qtype in (dns.AAAA, dns.ALL_RECORDS):
                payload = dns.Record_AAAA(str(address), LOCAL_TTL)
            else:
                continue
            records.append(dns.RRHeader(name, payload.TYPE, dns.IN, LOCAL_TTL, payload,
                                        auth=True))
        return Answer(dns.OK, records)


def _rcode(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 <= value < 16:
        return value
    if isinstance(value, str):
        return RCODES.get(value.upper())
    return None


class DNSServer:
    """
    @param upstream: what the queries not answered here go to: its
        C{query(dns.Query, timeout)} as an C{IResolver}'s
        (L{netsuite.dns.upstream.UpstreamClient}); its C{counters}, if any,
        are in C{/dns/counters} as C{upstream_<name>}.
    @param cache: a L{Cache}.
    @param local: the L{LocalNames}.
    @param policy: the L{Policy} for clients not logged in.
    @param authorized: a container of the text addresses logged in
        (L{netsuite.dns.clients.AuthorizedClients}).
    @param garden: the L{netsuite.dns.garden.GardenNames}, and C{feeder},
        the L{netsuite.dns.garden.GardenFeeder} their addresses go to.
    @param limit_authorized: apply the policy to clients logged in too.
    @param authorized_rate: the L{RateLimit} of clients logged in (else
        unlimited), so that none can flood the resolver or its upstreams.
    @param max_pending: queries waiting for the upstream at once; more
        are dropped and counted (C{overloaded}).
    """

    def __init__(self, registry: Any, upstream: Any, cache: Cache, local: LocalNames,
                 policy: Policy, authorized: Any = (), garden: Any = None, feeder: Any = None,
                 limit_authorized: bool = False, max_pending: int = 1024,
                 upstream_timeout: Sequence[float] = (1.0, 3.0),
                 authorized_rate: Optional[RateLimit] = None) -> None:
        self.registry = registry
        self.upstream = upstream
        self.cache = cache
        self.local = local
        self.policy = policy
        self.authorized = authorized
        self.garden = garden
        self.feeder = feeder
        self.limit_authorized = limit_authorized
        self.authorized_rate = authorized_rate
        self.max_pending = max_pending
        self.upstream_timeout = tuple(upstream_timeout)
        self.pending = 0
        # The wire cache: the encoded replies of this second, by question
        # (lower-cased wire name, type and class) and transport, so that a
        # cached answer is sent without parsing or encoding a message.
        self._wire: Dict[Tuple[bytes, bool], bytes] = {}
        self._wire_second = -1
        self.counters: Dict[str, int] = {
            "queries": 0, "answered": 0, "cached": 0, "local": 0, "forwarded": 0,
            "malformed": 0, "not_queries": 0, "not_one_question": 0, "overloaded": 0,
            "hook_answers": 0, "hook_refusals": 0, "upstream_failures": 0, "truncated": 0}
        declare_service(registry, "dns", MAILBOXES, EVENTS, {
            "/dns/counters": lambda message: Stop(self.all_counters()),
            "/dns/refusals": lambda message: Stop(self.policy.refusals())},
            refusals=REFUSALS)

    def all_counters(self) -> Dict[str, int]:
        counters = dict(self.counters)
        counters.update({f"refused_{reason}": n for reason, n in self.policy.counters.items()})
        counters["cache_entries"] = len(self.cache)
        counters["cache_hits"] = self.cache.hits
        counters.update({f"upstream_{name}": n
                         for name, n in getattr(self.upstream, "counters", {}).items()})
        if self.feeder is not None:
            counters.update(self.feeder.counters)
        return counters

    # one message

    def handle(self, data: bytes, ip: str, tcp: bool = False) -> Any:
        """
        The reply to the DNS message C{data} from C{ip}: bytes, None (dropped)
        or a Deferred of either.
        """
        fast = self._fast(data, ip, tcp)
        if fast is not None:
            return fast
        message = dns.Message()
        try:
            message.fromStr(data)
        except Exception:
            self.counters["malformed"] += 1
            return None
        if message.answer or message.opCode != dns.OP_QUERY:
            self.counters["not_queries"] += 1
            return None
        if len(message.queries) != 1 or message.answers or message.authority:
            self.counters["not_one_question"] += 1
            return None
        self.counters["queries"] += 1
        query = message.queries[0]
        name = query.name.name.lower()
        limited = self.limit_authorized or ip not in self.authorized
        if limited:
            reason = self.policy.check(ip, name, query.type)
            if reason is not None:
                return self._refuse(message, ip, query, reason, tcp)
        elif self.authorized_rate is not None and not self.authorized_rate.take(ip):
            return self._refuse(message, ip, query, "rate", tcp)
        local = self.local.answer(name, query.type)
        if local is not None:
            self.counters["local"] += 1
            return self._reply(message, local, ip, query, limited, tcp)
        if self.registry.heard("/dns/query"):
            d = self.registry.send("/dns/query", {
                "ip": ip, "name": name.decode("ascii", "replace"),
                "qtype": qtype_name(query.type), "authorized": not limited})
            return d.addCallback(self._decided, message, ip, query, limited, tcp).addErrback(
                self._failed, message, tcp)
        return self._resolve(message, ip, query, limited, tcp)

    def _question(self, data: bytes) -> Optional[int]:
        """
        Where the only question of the plain query C{data} ends (its name,
        type and class), or None for anything else: a response, another
        opcode, counts other than one question and at most one OPT record,
        a compressed or malformed name, trailing bytes.
        """
        size = len(data)
        if (size < 17 or data[2] & 0xF8 or data[4:10] != b"\x00\x01\x00\x00\x00\x00"
                or data[10] or data[11] > 1):
            return None
        pos = 12
        while True:
            length = data[pos] if pos < size else 0xFF
            if length == 0:
                break
            if length > 63:
                return None
            pos += length + 1
        end = pos + 5
        if data[11] == 0:
            return end if end == size else None
        # one OPT record (EDNS): root name, type 41, class, TTL, rdata
        if end + 11 > size or data[end:end + 3] != b"\x00\x00\x29":
            return None
        return end if end + 11 + int.from_bytes(data[end + 9:end + 11], "big") == size else None

    def _fast(self, data: bytes, ip: str, tcp: bool) -> Optional[bytes]:
        """
        The reply from the wire cache, or None: answer the long way.
        """
        if not self._wire:
            return None
        end = self._question(data)
        if end is None:
            return None
        name_end = end - 4
        key = (data[12:name_end].lower() + data[name_end:end], tcp)
        template = self._wire.get(key)
        if template is None or int(self.cache.clock.seconds()) != self._wire_second:
            return None
        if self.registry.heard("/dns/query") or self.registry.heard("/dns/answer"):
            return None
        limited = self.limit_authorized or ip not in self.authorized
        if limited:
            if len(template) > self.policy.max_answer:
                return None
            labels, pos = [], 12
            while data[pos]:
                labels.append(data[pos + 1:pos + 1 + data[pos]])
                pos += data[pos] + 1
            reason = self.policy.check(ip, b".".join(labels).lower(),
                                       int.from_bytes(data[name_end:name_end + 2], "big"))
            if reason is not None:
                message = dns.Message()
                message.fromStr(data)
                self.counters["queries"] += 1
                return self._refuse(message, ip, message.queries[0], reason, tcp)
        elif self.authorized_rate is not None and not self.authorized_rate.take(ip):
            return None  # refused the long way
        self.counters["queries"] += 1
        self.counters["cached"] += 1
        self.counters["answered"] += 1
        self.cache.hits += 1
        # the client's id, its RD bit, its question as it wrote it (case)
        return (data[:2] + bytes([template[2] & 0xFE | data[2] & 0x01]) + template[3:12]
                + data[12:end] + template[end:])

    def _remember_wire(self, message: Any, data: bytes, tcp: bool) -> None:
        second = int(self.cache.clock.seconds())
        if second != self._wire_second:
            self._wire.clear()
            self._wire_second = second
        if len(self._wire) >= max(1, self.cache.size):
            return
        query = message.queries[0]
        name = b"".join(bytes([len(label)]) + label
                        for label in query.name.name.split(b".") if label) + b"\x00"
        key = (name.lower() + query.type.to_bytes(2, "big") + query.cls.to_bytes(2, "big"), tcp)
        self._wire[key] = data

    def _failed(self, failure: Any, message: Any, tcp: bool) -> bytes:
        _log.failure("dns: /dns/query failed; answering SERVFAIL", failure)
        return self._encode(message, Answer(dns.ESERVER), tcp)

    def _decided(self, verdict: Any, message: Any, ip: str, query: Any, limited: bool,
                 tcp: bool) -> Any:
        if isinstance(verdict, dict) and "refuse" in verdict:
            self.counters["hook_refusals"] += 1
            rcode = _rcode(verdict["refuse"])
            return self._reply(message, Answer(dns.EREFUSED if rcode is None else rcode),
                               ip, query, limited, tcp)
        if isinstance(verdict, dict) and isinstance(verdict.get("answer"), list):
            self.counters["hook_answers"] += 1
            records = []
            for value in verdict["answer"]:
                try:
                    address = IPv4Address(str(value))
                except ValueError:
                    continue
                if query.type in (dns.A, dns.ALL_RECORDS):
                    records.append(dns.RRHeader(query.name.name, dns.A, dns.IN, LOCAL_TTL,
                                                dns.Record_A(str(address), LOCAL_TTL)))
            return self._reply(message, Answer(dns.OK, records), ip, query, limited, tcp)
        return self._resolve(message, ip, query, limited, tcp)

    def _resolve(self, message: Any, ip: str, query: Any, limited: bool, tcp: bool) -> Any:
        key = (query.name.name.lower(), query.type, query.cls)
        cached = self.cache.get(key)
        if cached is not None:
            self.counters["cached"] += 1
            data = self._reply(message, cached, ip, query, limited, tcp)
            if (self.cache.size and data[3] & 0x0F == dns.OK
                    and not (self.garden and self.garden.matches(query.name.name))):
                self._remember_wire(message, data, tcp)
            return data
        if self.pending >= self.max_pending:
            self.counters["overloaded"] += 1
            return None
        self.pending += 1
        self.counters["forwarded"] += 1
        d = self.upstream.query(dns.Query(query.name.name, query.type, query.cls),
                                timeout=self.upstream_timeout)

        def got(result: Tuple[list, list, list]) -> Answer:
            return Answer(dns.OK, *result)

        def failed(failure: Any) -> Answer:
            rcode = UPSTREAM_ERRORS.get(type(failure.value))  # exactly: all are DomainErrors
            if rcode is not None:
                answer = failure.value.args[0] if failure.value.args else None
                if isinstance(answer, dns.Message):
                    return Answer(rcode, answer.answers, answer.authority)
                return Answer(rcode)
            self.counters["upstream_failures"] += 1
            n = self.counters["upstream_failures"]
            log = _log.warn if n % 100 == 1 else _log.debug
            log("dns: upstream failed for {name} ({n} failures so far): {error}",
                name=query.name.name, n=n, error=failure.getErrorMessage())
            return Answer(dns.ESERVER)

        def answered(answer: Answer) -> Any:
            self.pending -= 1
            if answer.rcode != dns.ESERVER:
                self.cache.put(key, answer)
            return self._reply(message, answer, ip, query, limited, tcp)
        return d.addCallbacks(got, failed).addCallback(answered)

    def _refuse(self, message: Any, ip: str, query: Any, reason: str, tcp: bool) -> bytes:
        for path, event in self.policy.refused(ip, query.name.name.lower(), query.type, reason):
            if self.registry.heard(path):
                self.registry.send(path, event)
        return self._encode(message, Answer(dns.EREFUSED), tcp)

    def _reply(self, message: Any, answer: Answer, ip: str, query: Any, limited: bool,
               tcp: bool) -> bytes:
        if self.garden and answer.answers and self.garden.matches(query.name.name):
            self.feeder.add((IPv4Address(r.payload.dottedQuad()), r.ttl)
                            for r in answer.answers if r.type == dns.A)
        data = self._encode(message, answer, tcp)
        if limited and len(data) > self.policy.max_answer:
            return self._refuse(message, ip, query, "answer_size", tcp)
        self.counters["answered"] += 1
        if self.registry.heard("/dns/answer"):
            self.registry.send("/dns/answer", {
                "ip": ip, "name": query.name.name.decode("ascii", "replace"),
                "qtype": qtype_name(query.type), "rcode": answer.rcode,
                "answers": [r.payload.dottedQuad() if r.type == dns.A else str(r.payload)
                            for r in answer.answers]})
        return data

    def _encode(self, message: Any, answer: Answer, tcp: bool) -> bytes:
        reply = dns.Message(id=message.id, answer=1, opCode=dns.OP_QUERY, recDes=message.recDes,
                            recAv=1, rCode=answer.rcode, maxSize=0)
        reply.queries = message.queries
        reply.answers = answer.answers
        reply.authority = answer.authority
        reply.additional = [r for r in answer.additional if r.type != dns.OPT]
        data = reply.toStr()
        if not tcp and len(data) > UDP_SIZE:
            self.counters["truncated"] += 1
            reply.answers, reply.authority, reply.additional = [], [], []
            reply.trunc = 1
            data = reply.toStr()
        return data


def refuse_types(names: Iterable[str]) -> List[int]:
    """The query type numbers of C{names} (ValueError naming a bad one)."""
    return [qtype_number(name) for name in names]
