# -*- test-case-name: tests.firewall.test_service -*-
"""
C{twistd netsuite-firewall}, and the C{[firewall]} section of the config.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service

from ..config.fields import (INTERFACE, MAX_KBIT, NETWORK, NETWORK_LIST, OPTIONAL_PATH, PORT,
                             PORT_LIST, PORT_OR_ZERO, RATE_MAP, SECONDS, between, one_of)
from ..config.schema import ConfigError, Field
from .rules import FirewallSettings

# The kernel modules (python-iptables loads libiptc) are imported only when
# the firewall is built, so reading the config never needs them.

__all__ = ["SECTION", "CAPABILITIES", "check", "firewall_from_config", "serviceFromConfig", "settings_from_config"]

# What the firewall needs once started, all of it after twistd --uid
# (netsuite.privileges): CAP_NET_RAW for libiptc's raw IP socket
# (python-iptables, iptables.py); CAP_NET_ADMIN for replacing the tables,
# ipset and conntrack over nfnetlink (kernelsets.py, setwriter.py,
# flows.py), tc classes and the IFB device (shaping.py), the TPROXY routing
# rule (netlink.py) and writing /proc/sys/net/bridge/bridge-nf-call-iptables.
CAPABILITIES = frozenset({"CAP_NET_ADMIN", "CAP_NET_RAW"})


SECTION = {
    "enabled": Field(bool, False, "run the firewall adapter in this process"),
    "lan_interface": Field(INTERFACE, "br-lan", "the clients' interface (often a bridge)"),
    "wan_interface": Field(INTERFACE, "wan0", "the uplink"),
    "lan_network": Field(NETWORK, "10.89.0.0/24", "the clients' IPv4 network"),
    "prefix": Field(str, "NS", "prefix of netsuite's chains and sets"),
    "portal_port": Field(PORT_OR_ZERO, 0, "redirect unauthorized HTTP here (0: no redirect)"),
    "walled_garden": Field(NETWORK_LIST, [], "networks open before login"),
    "lan_ports": Field(PORT_LIST, [], "more TCP ports of the access point open to every "
                       "client (the portal's HTTPS API port, say)"),
    "reject_https": Field(bool, True, "refuse unauthorized HTTPS at once (TCP reset)"),
    "preauth_dns": Field(bool, True, "unauthorized clients' DNS (udp and tcp port 53, to any "
                         "address) is redirected to the access point's resolver on dns_port "
                         "(false: dropped before login)"),
    "dns_port": Field(PORT, 53, "the access point's resolver's port on the LAN address "
                      "(netsuite-dns), where port 53 is redirected"),
    "dns_after_login": Field(str, "direct", "authorized clients' DNS: direct (where they "
                             "send it) or netsuite (redirected to the resolver too)",
                             one_of("direct", "netsuite")),
    "garden_min_ttl": Field(int, 60, "shortest seconds a garden address stays open",
                            between(1, 2147483, "seconds")),
    "garden_max_ttl": Field(int, 86400, "longest seconds a garden address stays open",
                            between(1, 2147483, "seconds")),
    "garden_max_entries": Field(int, 4096, "most addresses in the garden set at once",
                                between(1, 1000000, "a number of entries")),
    "masquerade": Field(bool, True, "NAT the LAN out of the WAN interface"),
    "block_smtp": Field(bool, True, "block outbound SMTP except open windows"),
    "smtp_ports": Field(PORT_LIST, [25], "SMTP ports to block"),
    "smtp_window": Field(int, 600, "default seconds an SMTP window stays open",
                         between(1, 2147483, "seconds")),
    "smtp_max_per_minute": Field(int, 0, "new SMTP connections a client may open per "
                                 "minute, even with a window (0: no cap)",
                                 between(0, 19, "a number of connections")),
    "tproxy_port": Field(PORT_OR_ZERO, 0, "TPROXY mail ports to this local port (0: off)"),
    "tproxy_ports": Field(PORT_LIST, [110, 143], "ports sent to the TPROXY port"),
    "tproxy_mark": Field(int, 1, "fwmark (and mask) of TPROXY'd packets",
                         between(1, 2 ** 32 - 1, "a mark")),
    "divert_mark": Field(int, 4, "fwmark bit (and mask) netsuite's iptables sets on authorized "
                         "clients' tproxy_ports for its nftables tproxy chain; what the proxy "
                         "does not take keeps it and is reset; must not overlap tproxy_mark "
                         "or ipv6_mark", between(1, 2 ** 32 - 1, "a mark")),
    "tproxy_table": Field(int, 100, "routing table delivering marked packets locally"),
    "nfqueue_num": Field(int, -1, "NFQUEUE number for SYNs of nfqueue_ports (-1: off)",
                         between(-1, 65535, "a queue number")),
    "nfqueue_ports": Field(PORT_LIST, [], "ports whose SYNs go to the queue"),
    "nfqueue_bypass": Field(bool, True, "let packets pass when nobody reads the queue"),
    "nfqueue_redirect_port": Field(PORT_OR_ZERO, 0, "the mail proxy's nfqueue mode: REDIRECT "
                                   "authorized clients' nfqueue_ports to this local port, their "
                                   "SYNs queued before the rewrite (0: off)"),
    "extrusion_queue": Field(int, -1, "NFQUEUE number for the SYN of every TCP connection "
                             "forwarded from the LAN, read by the stats' extrusion detectors "
                             "(stats.extrusion.queue), always with bypass (-1: off)",
                             between(-1, 65535, "a queue number")),
    "shaping": Field(bool, True, "per-client rate limits with tc (HTB, IFB)"),
    "ifb_interface": Field(INTERFACE, "ifb-ns0", "IFB device for upload limits"),
    "default_up_kbit": Field(int, 0, "upload limit of a client (0: unlimited)",
                             between(0, MAX_KBIT, "kbit/s")),
    "default_down_kbit": Field(int, 0, "download limit of a client (0: unlimited)",
                               between(0, MAX_KBIT, "kbit/s")),
    "uplink_up_kbit": Field(int, 0, "the uplink's upload capacity, shared fairly by the "
                            "clients (0: upload not shared, as without it)",
                            between(0, MAX_KBIT, "kbit/s")),
    "uplink_down_kbit": Field(int, 0, "the uplink's download capacity, shared fairly by the "
                              "clients (0: download not shared)",
                              between(0, MAX_KBIT, "kbit/s")),
    "uplink_clients": Field(int, 0, "clients the guaranteed share (capacity / this) is sized "
                            "for (0: every client address of lan_network)",
                            between(0, 65534, "a number of clients")),
    "rates": Field(RATE_MAP, {}, "per-device limits: MAC -> { up_kbit, down_kbit }, for "
                   "clients authorized without limits of their own"),
    "keep_clients": Field(bool, False, "keep authorized clients online across a restart"),
    "check_interval": Field(SECONDS, 5.0, "seconds between checks of the kernel state "
                            "(0: never)"),
    "lock_dir": Field(OPTIONAL_PATH, "", "directory of the lock (one file per network namespace, "
                      "holding the pid) that makes one process the firewall's only owner "
                      "(empty: bus.socket_dir)"),
    "bridge_netfilter": Field(str, "fix", "on a bridge with bridge-nf-call-iptables=1: "
                              "fix (set 0) or refuse", one_of("fix", "refuse")),
    "ipv6": Field(str, "auto", "close the LAN's IPv6 (ip6tables): auto (when the LAN has "
                  "IPv6), on, or off (refused on a LAN that has IPv6)",
                  one_of("auto", "on", "off")),
    "dhcpv6": Field(bool, False, "DHCPv6 is served on the LAN: open udp/547 of the access "
                    "point to IPv6 clients"),
    "ipv6_mark": Field(int, 2, "fwmark bit (and mask) of IPv6 packets from authorized clients "
                       "(set by netsuite's nftables table, matched by its ip6tables rules); "
                       "must not overlap tproxy_mark", between(1, 2 ** 32 - 1, "a mark")),
    "ipv6_timeout": Field(int, 1800, "seconds an authorized client's IPv6 address stays bound "
                          "to its MAC after its last packet (then any authorized MAC may "
                          "claim it)", between(60, 86400, "seconds")),
}


def settings_from_config(section: Any) -> FirewallSettings:
    return FirewallSettings(
        lan_interface=section.lan_interface, wan_interface=section.wan_interface,
        lan_network=section.lan_network, prefix=section.prefix,
        portal_port=section.portal_port, lan_ports=tuple(section.lan_ports),
        walled_garden=tuple(section.walled_garden),
        reject_https=section.reject_https, preauth_dns=section.preauth_dns,
        dns_port=section.dns_port, dns_after_login=section.dns_after_login,
        masquerade=section.masquerade,
        block_smtp=section.block_smtp, smtp_ports=tuple(section.smtp_ports),
        smtp_max_per_minute=section.smtp_max_per_minute,
        tproxy_port=section.tproxy_port, tproxy_ports=tuple(section.tproxy_ports),
        tproxy_mark=section.tproxy_mark, divert_mark=section.divert_mark,
        nfqueue_num=section.nfqueue_num,
        nfqueue_ports=tuple(section.nfqueue_ports), nfqueue_bypass=section.nfqueue_bypass,
        nfqueue_redirect_port=section.nfqueue_redirect_port,
        extrusion_queue=section.extrusion_queue,
        dhcpv6=section.dhcpv6, ipv6_mark=section.ipv6_mark, ipv6_timeout=section.ipv6_timeout)


def check(config: Any) -> None:
    """
    The garden's shortest time is not longer than its longest.
    """
    section = config.firewall
    if section.garden_min_ttl > section.garden_max_ttl:
        raise ConfigError(f"{config.source}: [firewall] garden_min_ttl ({section.garden_min_ttl}) "
                          f"is longer than garden_max_ttl ({section.garden_max_ttl})")
    if section.ipv6_mark & section.tproxy_mark:
        raise ConfigError(f"{config.source}: [firewall] ipv6_mark (0x{section.ipv6_mark:x}) "
                          f"overlaps tproxy_mark (0x{section.tproxy_mark:x})")
    both = set(section.nfqueue_ports) & set(section.tproxy_ports)
    if section.nfqueue_redirect_port and section.tproxy_port and both:
        raise ConfigError(f"{config.source}: [firewall] nfqueue_ports and tproxy_ports both "
                          f"hold {sorted(both)}: a port is redirected (nfqueue_redirect_port) "
                          f"or TPROXY'd, not both")
    if section.extrusion_queue >= 0 and section.extrusion_queue == section.nfqueue_num:
        raise ConfigError(f"{config.source}: [firewall] extrusion_queue and nfqueue_num are "
                          f"both {section.nfqueue_num}: the stats and the mail proxy each "
                          "read a queue of their own")
    if section.shaping and (section.uplink_up_kbit or section.uplink_down_kbit) and \
            section.lan_network.prefixlen < 17:
        raise ConfigError(f"{config.source}: [firewall] uplink_up_kbit/uplink_down_kbit: fair "
                          f"shares need a lan_network of /17 or smaller, not "
                          f"{section.lan_network}")
    for name in ("tproxy_mark", "ipv6_mark"):
        if section.divert_mark & getattr(section, name):
            raise ConfigError(f"{config.source}: [firewall] divert_mark "
                              f"(0x{section.divert_mark:x}) overlaps {name} "
                              f"(0x{getattr(section, name):x})")


def serviceFromConfig(config: Any, registry: Any, reactor: Any) -> Service:
    from .service import FirewallService

    section = config.firewall
    firewall = firewall_from_config(config, reactor)
    return FirewallService(firewall, registry, reactor, section.check_interval)


def firewall_from_config(config: Any, reactor: Any) -> Any:
    """
    The L{netsuite.firewall.kernel.KernelFirewall} the config's
    C{[firewall]} section describes.
    """
    from .kernel import KernelFirewall
    from .netlink import KernelNetwork
    from ..runner import ThreadRunner

    section = config.firewall
    settings = settings_from_config(section)
    shaper = None
    if section.shaping:
        from .shaping import Shaper
        from .slots import Uplink
        shaper = Shaper(section.lan_interface, settings.lan_network, section.ifb_interface,
                        uplink=Uplink(section.uplink_up_kbit, section.uplink_down_kbit,
                                      section.uplink_clients))
    return KernelFirewall(
        settings, ThreadRunner(reactor, name="netsuite-firewall"), reactor, shaper=shaper,
        smtp_window=section.smtp_window,
        default_limits=(section.default_up_kbit, section.default_down_kbit),
        rates=section.rates, keep_clients=section.keep_clients, bridge_netfilter=section.bridge_netfilter,
        lock_dir=section.lock_dir or config.bus.socket_dir,
        garden_ttl=(section.garden_min_ttl, section.garden_max_ttl),
        garden_max_entries=section.garden_max_entries, ipv6=section.ipv6,
        network=KernelNetwork(section.lan_interface, section.tproxy_mark,
                              section.tproxy_table))
