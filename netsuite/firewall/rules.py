# -*- test-case-name: tests.firewall.test_rules -*-
"""
The firewall's static rules and sets, as data: no I/O.

Rules are written in python-iptables' C{iptc.easy} dictionary form, in the
canonical shape C{iptc.easy.dump_chain} gives back, so that checking the
kernel's rules is a comparison of two lists.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Tuple

import attr

__all__ = ["FirewallSettings", "Jump", "Rule", "ChainKey", "chains", "chains6", "closed_chains",
           "closed_chains6", "closed_jumps", "closed_jumps6", "jumps", "jumps6", "set_names"]

Rule = Dict[str, Any]
ChainKey = Tuple[str, str]
"""(table, chain)"""


@attr.s(frozen=True, auto_attribs=True)
class Jump:
    """
    The single rule in a built-in chain that sends packets to one of ours.
    """

    table: str
    builtin: str
    chain: str


@attr.s(frozen=True, auto_attribs=True)
class FirewallSettings:
    """
    What the static rules depend on (from the C{[firewall]} config section).
    """

    lan_interface: str
    wan_interface: str
    lan_network: ipaddress.IPv4Network
    prefix: str = "NS"
    portal_port: int = 0
    lan_ports: Tuple[int, ...] = ()
    walled_garden: Tuple[ipaddress.IPv4Network, ...] = ()
    reject_https: bool = True
    preauth_dns: bool = True
    dns_port: int = 53
    dns_after_login: str = "direct"
    masquerade: bool = True
    block_smtp: bool = True
    smtp_ports: Tuple[int, ...] = (25,)
    smtp_max_per_minute: int = 0
    tproxy_port: int = 0
    tproxy_ports: Tuple[int, ...] = ()
    tproxy_mark: int = 1
    divert_mark: int = 4
    nfqueue_num: int = -1
    nfqueue_ports: Tuple[int, ...] = ()
    nfqueue_bypass: bool = True
    nfqueue_redirect_port: int = 0
    extrusion_queue: int = -1
    dhcpv6: bool = False
    ipv6_mark: int = 2
    ipv6_timeout: int = 1800

    @property
    def nft_table(self) -> str:
        """netsuite's nftables table (family ip6): the IPv6 clients by MAC."""
        return self.prefix.lower()

    def chain6(self, name: str) -> str:
        return f"{self.prefix}6-{name}"

    @property
    def auth_set(self) -> str:
        return f"{self.prefix.lower()}-auth"

    @property
    def down_set(self) -> str:
        return f"{self.prefix.lower()}-down"

    @property
    def smtp_set(self) -> str:
        return f"{self.prefix.lower()}-smtp"

    @property
    def smtp_servers_set(self) -> str:
        """The per-(client, server) SMTP windows: C{hash:ip,port,ip}."""
        return f"{self.prefix.lower()}-smtpto"

    @property
    def garden_set(self) -> str:
        return f"{self.prefix.lower()}-garden"

    def chain(self, name: str) -> str:
        return f"{self.prefix}-{name}"


def set_names(s: FirewallSettings) -> Tuple[str, str, str, str]:
    return s.auth_set, s.down_set, s.smtp_set, s.garden_set


def _tcp(port: int, syn: bool = False) -> Dict[str, Any]:
    match: Dict[str, Any] = {"dport": str(port)}
    if syn:
        match["tcp-flags"] = ["FIN,SYN,RST,ACK", "SYN"]
    return match


def _reject_reset() -> Dict[str, Any]:
    return {"REJECT": {"reject-with": "tcp-reset"}}


def _nfqueue(s: FirewallSettings) -> Dict[str, Any]:
    options = {"queue-num": str(s.nfqueue_num)}
    if s.nfqueue_bypass:
        options["queue-bypass"] = ""
    return {"NFQUEUE": options}


def _from_lan(s: FirewallSettings, **rule: Any) -> Rule:
    """
    A rule for packets coming in on the LAN interface, in dump order.
    """
    ordered: Rule = {}
    if "src" in rule:
        ordered["src"] = rule.pop("src")
    if "protocol" in rule:
        ordered["protocol"] = rule.pop("protocol")
    if "dst" in rule:
        ordered["dst"] = rule.pop("dst")
    ordered["in-interface"] = s.lan_interface
    ordered.update(rule)
    return ordered


def _authorized(s: FirewallSettings) -> Dict[str, Any]:
    return {"match-set": [s.auth_set, "src,src"]}


def _garden(s: FirewallSettings) -> Dict[str, Any]:
    return {"match-set": [s.garden_set, "dst"]}


def chains(s: FirewallSettings) -> Dict[ChainKey, List[Rule]]:
    """
    netsuite's own chains and their rules, in order.

    NS-FORWARD sits first in FORWARD but only refuses: what it lets through
    it RETURNs, so the operator's own FORWARD rules (and the chain's
    policy) still see every packet netsuite does not drop or reject.
    """
    # Authorized clients are recognised on every packet, established or
    # not: once a client leaves the set, its flows stop at once (and the
    # firewall deletes their conntrack entries shortly after).
    forward: List[Rule] = [
        # Download counters: a rule with no target only counts (the down set).
        {"out-interface": s.lan_interface, "set": {"match-set": [s.down_set, "dst"]}},
        _from_lan(s, set=_authorized(s), target=s.chain("CLIENT")),
        # What NS-CLIENT did not refuse goes on to the operator's rules.
        _from_lan(s, set=_authorized(s), target="RETURN"),
        {"out-interface": s.lan_interface,
         "conntrack": {"ctstate": "RELATED,ESTABLISHED"}, "target": "RETURN"},
    ]
    if s.tproxy_port:
        # First: a packet marked for the proxy (NS-TPROXY) that the proxy
        # did not take (nothing listens: netsuite.firewall.divert) is
        # routed on, towards the server; reset it, so that the client
        # fails at once instead of reaching the server unwatched or hanging.
        forward.insert(0, _from_lan(s, protocol="tcp", mark={"mark": _divert_mark(s)},
                                    target=_reject_reset()))
    client: List[Rule] = [
        {"conntrack": {"ctstate": "RELATED,ESTABLISHED"}, "target": "RETURN"},
    ]
    smtp: List[Rule] = []
    if s.block_smtp:
        for port in s.smtp_ports:
            client.append({"protocol": "tcp", "tcp": _tcp(port), "target": s.chain("SMTP")})
        # A window to any destination (the client), or towards one server
        # (client, port, server).
        smtp = []
        if s.smtp_max_per_minute:
            # Even with a window: a client's SMTP SYN beyond the cap in the
            # last 60 s is reset, in the kernel (xt_recent, per source; the
            # refused ones count too). python-iptables cannot install
            # hashlimit (its htable-expire comes out 0: EINVAL).
            syn = {"tcp-flags": ["FIN,SYN,RST,ACK", "SYN"]}
            seen = {"name": s.smtp_set, "mask": "255.255.255.255", "rsource": ""}
            smtp += [
                {"protocol": "tcp", "tcp": syn, "recent": dict(seen, set="")},
                {"protocol": "tcp", "tcp": syn,
                 "recent": dict(seen, rcheck="", seconds="60",
                                hitcount=str(s.smtp_max_per_minute + 1)),
                 "target": _reject_reset()}]
        smtp += [
            {"set": {"match-set": [s.smtp_set, "src"]}, "target": "RETURN"},
            {"set": {"match-set": [s.smtp_servers_set, "src,dst,dst"]}, "target": "RETURN"},
            {"protocol": "tcp", "target": _reject_reset()},
        ]
    if s.nfqueue_num >= 0 and not s.nfqueue_redirect_port:
        for port in s.nfqueue_ports:
            client.append({"protocol": "tcp", "tcp": _tcp(port, syn=True),
                           "target": _nfqueue(s)})
    # Port 53 never leaves before login: with preauth_dns it was redirected
    # to the access point's resolver in NS-PREROUTING (and so never gets
    # here); without it, it is dropped, the garden's addresses included
    # (no tunnel through a resolver in the garden).
    forward += [_from_lan(s, protocol="udp", udp={"dport": "53"}, target="DROP"),
                _from_lan(s, protocol="tcp", tcp=_tcp(53), target="DROP")]
    for network in s.walled_garden:
        forward.append(_from_lan(s, dst=str(network), target="RETURN"))
    forward.append(_from_lan(s, set=_garden(s), target="RETURN"))
    if s.reject_https:
        forward.append(_from_lan(s, protocol="tcp", tcp=_tcp(443), target=_reject_reset()))
    forward.append(_from_lan(s, target="DROP"))

    # NS-INPUT decides only what comes in on the LAN: the answers of
    # accepted flows, what clients need (DHCP, DNS, ICMP, the portal and
    # lan_ports), accepted so that they work under an INPUT policy of DROP;
    # the rest of the LAN dropped (strangers reach no other service of the
    # access point). Anything else (WAN, loopback) matches no rule here and
    # goes on to the operator's INPUT rules and policy, established flows
    # included.
    # Before the established rule: a LAN client must not answer for the
    # upstream (a forged reply with a resolver's address matches the access
    # point's own flow in conntrack, whatever interface it came in on).
    # DHCP comes first, as clients without an address send from 0.0.0.0.
    ap_input: List[Rule] = [
        _from_lan(s, protocol="udp", udp={"dport": "67"}, target="ACCEPT"),
        _from_lan(s, src=f"!{s.lan_network}", target="DROP"),
        _from_lan(s, conntrack={"ctstate": "RELATED,ESTABLISHED"}, target="ACCEPT"),
    ]
    if s.tproxy_port:
        if s.nfqueue_num >= 0:
            for port in s.nfqueue_ports:
                ap_input.append(_from_lan(s, protocol="tcp", tcp=_tcp(port, syn=True),
                                          mark={"mark": _mark(s)}, target=_nfqueue(s)))
        ap_input.append(_from_lan(s, mark={"mark": _mark(s)}, target="ACCEPT"))
    if _nfqueue_redirect(s):
        # The mail proxy's nfqueue mode: what the REDIRECT below sent there,
        # not a client's own connection to that port.
        ap_input.append(_from_lan(s, protocol="tcp", tcp=_tcp(s.nfqueue_redirect_port),
                                  conntrack={"ctstate": "DNAT"}, target="ACCEPT"))
    # The resolver's port (where port 53 is redirected) and port 53 itself
    # (a client asking the access point directly, after login).
    for port in sorted({53, s.dns_port}):
        ap_input += [_from_lan(s, protocol="udp", udp={"dport": str(port)}, target="ACCEPT"),
                     _from_lan(s, protocol="tcp", tcp=_tcp(port), target="ACCEPT")]
    ap_input.append(_from_lan(s, protocol="icmp", target="ACCEPT"))
    for port in ((s.portal_port,) if s.portal_port else ()) + s.lan_ports:
        ap_input.append(_from_lan(s, protocol="tcp", tcp=_tcp(port), target="ACCEPT"))
    ap_input.append(_from_lan(s, target="DROP"))

    # DNS to any address goes to the access point's resolver: before login
    # with preauth_dns, after it too with dns_after_login = "netsuite" (then
    # ahead of the authorized clients' RETURN). A REDIRECT to a port nobody
    # listens on gets no answer: without the resolver, no DNS (fail closed).
    def redirect_dns(**only: Any) -> List[Rule]:
        to_resolver = {"REDIRECT": {"to-ports": str(s.dns_port)}}
        return [_from_lan(s, protocol="udp", udp={"dport": "53"}, **only, target=to_resolver),
                _from_lan(s, protocol="tcp", tcp=_tcp(53), **only, target=to_resolver)]
    prerouting: List[Rule] = []
    if _nfqueue_redirect(s):
        # The mail proxy's nfqueue mode: authorized clients' connections to
        # nfqueue_ports go to the proxy (their SYNs were queued in mangle
        # NS-QUEUE first, before this rewrites their destination).
        for port in s.nfqueue_ports:
            prerouting.append(_from_lan(
                s, protocol="tcp", tcp=_tcp(port), set=_authorized(s),
                target={"REDIRECT": {"to-ports": str(s.nfqueue_redirect_port)}}))
    if s.dns_after_login == "netsuite":
        prerouting += redirect_dns() if s.preauth_dns else redirect_dns(set=_authorized(s))
    prerouting.append(_from_lan(s, set=_authorized(s), target="RETURN"))
    if s.preauth_dns and s.dns_after_login != "netsuite":
        prerouting += redirect_dns()
    for network in s.walled_garden:
        prerouting.append(_from_lan(s, dst=str(network), target="RETURN"))
    prerouting.append(_from_lan(s, set=_garden(s), target="RETURN"))
    if s.portal_port:
        prerouting.append(_from_lan(s, protocol="tcp", tcp=_tcp(80),
                                    target={"REDIRECT": {"to-ports": str(s.portal_port)}}))

    result: Dict[ChainKey, List[Rule]] = {
        ("filter", s.chain("FORWARD")): forward,
        ("filter", s.chain("CLIENT")): client,
        ("filter", s.chain("INPUT")): ap_input,
        ("nat", s.chain("PREROUTING")): prerouting,
    }
    if smtp:
        result[("filter", s.chain("SMTP"))] = smtp
    if s.masquerade:
        result[("nat", s.chain("POSTROUTING"))] = [
            {"src": str(s.lan_network), "out-interface": s.wan_interface,
             "target": "MASQUERADE"}]
    if s.tproxy_port:
        mark = _mark(s)
        result[("mangle", s.chain("DIVERT"))] = [
            {"target": {"MARK": {"set-xmark": mark}}},
            {"target": "ACCEPT"},
        ]
        tproxy: List[Rule] = [
            {"protocol": "tcp", "socket": {"transparent": ""}, "target": s.chain("DIVERT")}]
        # Authorized clients' mail ports are only marked here: netsuite's
        # nft chain does the TPROXY (xt TPROXY drops what no socket takes;
        # nft's falls through, and NS-FORWARD resets it).
        for port in s.tproxy_ports:
            tproxy.append(_from_lan(
                s, protocol="tcp", tcp=_tcp(port), set=_authorized(s),
                target={"MARK": {"set-xmark": _divert_mark(s)}}))
        result[("mangle", s.chain("TPROXY"))] = tproxy
    if _nfqueue_redirect(s):
        # The queue reader must see the destination the client chose: in
        # mangle PREROUTING, ahead of nat's REDIRECT (in filter the SYN is
        # already rewritten). This replaces NS-CLIENT's NFQUEUE rules:
        # redirected SYNs are not forwarded.
        result[("mangle", s.chain("QUEUE"))] = [
            _from_lan(s, protocol="tcp", tcp=_tcp(port, syn=True), set=_authorized(s),
                      target=_nfqueue(s)) for port in s.nfqueue_ports]
    if s.extrusion_queue >= 0:
        # The stats' extrusion detectors: the SYN of every TCP connection
        # forwarded from the LAN, in mangle (its verdict, accept, goes on to
        # filter: NS-SMTP still refuses), always with bypass (no reader: it
        # passes).
        result[("mangle", s.chain("EXTRUSION"))] = [_extrusion(s)]
    return result


def _extrusion(s: FirewallSettings) -> Rule:
    return _from_lan(s, protocol="tcp", tcp={"tcp-flags": ["FIN,SYN,RST,ACK", "SYN"]},
                     target={"NFQUEUE": {"queue-num": str(s.extrusion_queue),
                                         "queue-bypass": ""}})


def _nfqueue_redirect(s: FirewallSettings) -> bool:
    return s.nfqueue_num >= 0 and bool(s.nfqueue_redirect_port) and bool(s.nfqueue_ports)


def _mark(s: FirewallSettings) -> str:
    return f"0x{s.tproxy_mark:x}/0x{s.tproxy_mark:x}"


def _divert_mark(s: FirewallSettings) -> str:
    return f"0x{s.divert_mark:x}/0x{s.divert_mark:x}"


def jumps(s: FirewallSettings) -> List[Jump]:
    """
    One jump from each built-in chain netsuite uses into its own chain.
    """
    own = chains(s)
    result = [Jump("filter", "FORWARD", s.chain("FORWARD")),
              Jump("filter", "INPUT", s.chain("INPUT")),
              Jump("nat", "PREROUTING", s.chain("PREROUTING"))]
    if ("nat", s.chain("POSTROUTING")) in own:
        result.append(Jump("nat", "POSTROUTING", s.chain("POSTROUTING")))
    if ("mangle", s.chain("TPROXY")) in own:
        result.append(Jump("mangle", "PREROUTING", s.chain("TPROXY")))
    if ("mangle", s.chain("QUEUE")) in own:
        result.append(Jump("mangle", "PREROUTING", s.chain("QUEUE")))
    if ("mangle", s.chain("EXTRUSION")) in own:
        result.append(Jump("mangle", "FORWARD", s.chain("EXTRUSION")))
    return result


def jump_rule(jump: Jump) -> Rule:
    return {"target": jump.chain}


def closed_chains(s: FirewallSettings) -> Dict[ChainKey, List[Rule]]:
    """
    What a clean stop leaves (without C{keep_clients}): the LAN closed.
    Nothing from the LAN is forwarded until the next start or an explicit
    removal (C{python -m netsuite.scripts.firewall --remove}); the access
    point itself (DHCP, SSH) is left alone. No set is referenced, so the
    sets can go.
    """
    return {("filter", s.chain("FORWARD")): [_from_lan(s, target="DROP")]}


def closed_jumps(s: FirewallSettings) -> List[Jump]:
    return [Jump("filter", "FORWARD", s.chain("FORWARD"))]


# IPv6 (ip6tables, the same python-iptables calls with ipv6=True). The LAN's
# IPv6 is closed but for authorized clients: netsuite's nftables table
# (netsuite.firewall.nftsets) marks their packets (ipv6_mark) when their
# MAC is authorized and their source address bound to that MAC, and
# NS6-FORWARD RETURNs marked packets ahead of the refusals, as NS-FORWARD's
# authorized rule does for IPv4. Unmarked packets are unauthorized: their
# HTTP is redirected to the portal (NS6-PREROUTING).

_ND_TYPES = ("128", "133", "134", "135", "136")
"""echo request, router solicitation and advertisement, neighbour
solicitation and advertisement"""


def _refuse6(s: FirewallSettings) -> List[Rule]:
    """
    Refuse forwarded IPv6 from the LAN fast, so that clients fall back to
    IPv4 at once: TCP with a reset, the rest with an ICMPv6 unreachable.
    """
    return [_from_lan(s, protocol="tcp", target=_reject_reset()),
            _from_lan(s, target={"REJECT": {"reject-with": "icmp6-adm-prohibited"}})]


def chains6(s: FirewallSettings) -> Dict[ChainKey, List[Rule]]:
    """
    netsuite's ip6tables chains and their rules, in order (installed when
    the LAN has IPv6). NS6-FORWARD: client to client left alone; towards
    the LAN only the answers of allowed flows (nothing from the WAN opens
    a flow to a client); from the LAN what netsuite's nft table marked
    (authorized clients) RETURNs, everything else is refused. NS6-INPUT:
    what a client needs to exist on the link and reach the portal
    (neighbour discovery, echo, DHCPv6 if served, DNS, the portal and
    lan_ports), the rest of the LAN dropped. NS6-PREROUTING (with a portal
    port): HTTP of packets without C{ipv6_mark} redirected to the portal.
    """
    forward: List[Rule] = [
        # Client to client (bridged: bridge-nf-call-ip6tables is 1 in every
        # new namespace, and netsuite leaves it) is not netsuite's: as for
        # IPv4, it goes on to the operator's rules.
        {"in-interface": s.lan_interface, "out-interface": s.lan_interface,
         "target": "RETURN"},
        {"out-interface": s.lan_interface,
         "conntrack": {"ctstate": "RELATED,ESTABLISHED"}, "target": "RETURN"},
        {"out-interface": s.lan_interface, "target": "DROP"},
    ]
    if s.block_smtp:
        # SMTP over IPv6 stays closed after login too: the SMTP gate's
        # windows are IPv4 (refused fast, so that a client falls back to
        # IPv4, where its window applies).
        forward += [_from_lan(s, protocol="tcp", tcp=_tcp(port), target=_reject_reset())
                    for port in s.smtp_ports]
    forward += [
        # Authorized (dual stack after login): marked by netsuite's nft table.
        _from_lan(s, mark={"mark": _mark6(s)}, target="RETURN"),
    ] + _refuse6(s)
    ap_input: List[Rule] = [
        _from_lan(s, conntrack={"ctstate": "RELATED,ESTABLISHED"}, target="ACCEPT"),
    ]
    for icmp_type in _ND_TYPES:
        ap_input.append(_from_lan(s, protocol="icmpv6", icmp6={"icmpv6-type": icmp_type},
                                  target="ACCEPT"))
    if s.dhcpv6:
        ap_input.append(_from_lan(s, protocol="udp", udp={"dport": "547"}, target="ACCEPT"))
    for port in sorted({53, s.dns_port}):
        ap_input += [_from_lan(s, protocol="udp", udp={"dport": str(port)}, target="ACCEPT"),
                     _from_lan(s, protocol="tcp", tcp=_tcp(port), target="ACCEPT")]
    for port in ((s.portal_port,) if s.portal_port else ()) + s.lan_ports:
        ap_input.append(_from_lan(s, protocol="tcp", tcp=_tcp(port), target="ACCEPT"))
    ap_input.append(_from_lan(s, target="DROP"))
    result: Dict[ChainKey, List[Rule]] = {("filter", s.chain6("FORWARD")): forward,
                                          ("filter", s.chain6("INPUT")): ap_input}
    if s.extrusion_queue >= 0:  # as for IPv4, into the same queue
        result[("mangle", s.chain6("EXTRUSION"))] = [_extrusion(s)]
    if s.portal_port:
        # Unauthorized clients' HTTP lands on the portal, as for IPv4: a
        # REDIRECT to the portal port on the LAN address the packet came to
        # (the portal listens on "::" for it; NS6-INPUT accepts that port).
        # The nat table sees a flow's first packet only: the mark is set
        # before it (nftables at a priority below -100, dstnat's).
        result[("nat", s.chain6("PREROUTING"))] = [
            _from_lan(s, mark={"mark": _mark6(s)}, target="RETURN"),
            _from_lan(s, protocol="tcp", tcp=_tcp(80),
                      target={"REDIRECT": {"to-ports": str(s.portal_port)}})]
    return result


def _mark6(s: FirewallSettings) -> str:
    return f"0x{s.ipv6_mark:x}/0x{s.ipv6_mark:x}"


def jumps6(s: FirewallSettings) -> List[Jump]:
    result = [Jump("filter", "FORWARD", s.chain6("FORWARD")),
              Jump("filter", "INPUT", s.chain6("INPUT"))]
    if s.portal_port:
        result.append(Jump("nat", "PREROUTING", s.chain6("PREROUTING")))
    if s.extrusion_queue >= 0:
        result.append(Jump("mangle", "FORWARD", s.chain6("EXTRUSION")))
    return result


def closed_chains6(s: FirewallSettings) -> Dict[ChainKey, List[Rule]]:
    """
    What a clean stop leaves of IPv6: forwarded IPv6 from the LAN refused
    (fast, as while running); the access point itself left alone. The
    portal's redirect goes (nothing listens there any more): a client's
    IPv6 HTTP is then refused with the rest, not sent to a closed port.
    """
    return {("filter", s.chain6("FORWARD")): _refuse6(s)}


def closed_jumps6(s: FirewallSettings) -> List[Jump]:
    return [Jump("filter", "FORWARD", s.chain6("FORWARD"))]
