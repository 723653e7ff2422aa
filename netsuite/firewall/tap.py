# -*- test-case-name: tests.firewall.test_service -*-
"""
C{twistd netsuite-firewall}, and the C{[firewall]} section of the config.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Optional

from twisted.application.service import MultiService, Service

from ..config.options import ProcessOptions
from ..config.schema import Field
from ..process import make_process_service
from .rules import FirewallSettings

# The kernel modules (python-iptables loads libiptc) are imported only when
# the firewall is built, so reading the config never needs them.

__all__ = ["SECTION", "Options", "makeService", "serviceFromConfig", "settings_from_config"]


def _network(value: Any) -> Optional[str]:
    try:
        ipaddress.IPv4Network(value)
        return None
    except ValueError:
        return "an IPv4 network such as \"10.89.0.0/24\""


def _networks(value: Any) -> Optional[str]:
    return next((_network(v) for v in value if _network(v)), None)


def _port(value: Any) -> Optional[str]:
    return None if 0 <= value <= 65535 else "a port number (0 for none)"


def _ports(value: Any) -> Optional[str]:
    return None if all(0 < v <= 65535 for v in value) else "a list of port numbers"


SECTION = {
    "enabled": Field(bool, False, "run the firewall adapter in this process"),
    "lan_interface": Field(str, "br-lan", "the clients' interface (often a bridge)"),
    "wan_interface": Field(str, "wan0", "the uplink"),
    "lan_network": Field(str, "10.89.0.0/24", "the clients' IPv4 network", _network),
    "prefix": Field(str, "NS", "prefix of netsuite's chains and sets"),
    "portal_port": Field(int, 0, "redirect unauthorized HTTP here (0: no redirect)", _port),
    "walled_garden": Field("str_list", [], "networks open before login", _networks),
    "lan_ports": Field("int_list", [], "more TCP ports of the access point open to every "
                       "client (the portal's HTTPS API port, say)", _ports),
    "reject_https": Field(bool, True, "refuse unauthorized HTTPS at once (TCP reset)"),
    "preauth_dns": Field(bool, True, "unauthorized clients may send DNS (udp and tcp port "
                         "53) to any resolver, not only to the access point"),
    "masquerade": Field(bool, True, "NAT the LAN out of the WAN interface"),
    "block_smtp": Field(bool, True, "block outbound SMTP except open windows"),
    "smtp_ports": Field("int_list", [25], "SMTP ports to block", _ports),
    "smtp_window": Field(int, 600, "default seconds an SMTP window stays open", _port),
    "tproxy_port": Field(int, 0, "TPROXY mail ports to this local port (0: off)", _port),
    "tproxy_ports": Field("int_list", [110, 143], "ports sent to the TPROXY port", _ports),
    "tproxy_mark": Field(int, 1, "fwmark (and mask) of TPROXY'd packets"),
    "tproxy_table": Field(int, 100, "routing table delivering marked packets locally"),
    "nfqueue_num": Field(int, -1, "NFQUEUE number for SYNs of nfqueue_ports (-1: off)"),
    "nfqueue_ports": Field("int_list", [], "ports whose SYNs go to the queue", _ports),
    "nfqueue_bypass": Field(bool, True, "let packets pass when nobody reads the queue"),
    "shaping": Field(bool, True, "per-client rate limits with tc (HTB, IFB)"),
    "ifb_interface": Field(str, "ifb-ns0", "IFB device for upload limits"),
    "default_up_kbit": Field(int, 0, "upload limit of a client (0: unlimited)"),
    "default_down_kbit": Field(int, 0, "download limit of a client (0: unlimited)"),
    "keep_clients": Field(bool, False, "keep authorized clients online across a restart"),
    "check_interval": Field(float, 5.0, "seconds between checks of the kernel state"),
    "bridge_netfilter": Field(str, "fix", "on a bridge with bridge-nf-call-iptables=1: "
                              "fix (set 0) or refuse",
                              lambda v: None if v in ("fix", "refuse") else "fix or refuse"),
}


def settings_from_config(section: Any) -> FirewallSettings:
    return FirewallSettings(
        lan_interface=section.lan_interface, wan_interface=section.wan_interface,
        lan_network=ipaddress.IPv4Network(section.lan_network), prefix=section.prefix,
        portal_port=section.portal_port, lan_ports=tuple(section.lan_ports),
        walled_garden=tuple(ipaddress.IPv4Network(n) for n in section.walled_garden),
        reject_https=section.reject_https, preauth_dns=section.preauth_dns,
        masquerade=section.masquerade,
        block_smtp=section.block_smtp, smtp_ports=tuple(section.smtp_ports),
        tproxy_port=section.tproxy_port, tproxy_ports=tuple(section.tproxy_ports),
        tproxy_mark=section.tproxy_mark, nfqueue_num=section.nfqueue_num,
        nfqueue_ports=tuple(section.nfqueue_ports), nfqueue_bypass=section.nfqueue_bypass)


def serviceFromConfig(config: Any, registry: Any, reactor: Any) -> Service:
    from .kernel import KernelFirewall
    from .netlink import KernelNetwork
    from ..runner import ThreadRunner
    from .service import FirewallService

    section = config.firewall
    settings = settings_from_config(section)
    shaper = None
    if section.shaping:
        from .shaping import Shaper
        shaper = Shaper(section.lan_interface, settings.lan_network, section.ifb_interface)
    firewall = KernelFirewall(
        settings, ThreadRunner(reactor, name="netsuite-firewall"), reactor, shaper=shaper, smtp_window=section.smtp_window,
        default_limits=(section.default_up_kbit, section.default_down_kbit),
        keep_clients=section.keep_clients, bridge_netfilter=section.bridge_netfilter,
        network=KernelNetwork(section.lan_interface, section.tproxy_mark,
                              section.tproxy_table))
    return FirewallService(firewall, registry, reactor, section.check_interval)


class Options(ProcessOptions):
    """
    Options of C{twistd netsuite-firewall} (the firewall runs whatever
    firewall.enabled says).
    """

    synopsis = "[--config PATH] [--name NAME] [--socket-dir DIR]"


def makeService(options: Options, reactor: Any = None) -> MultiService:
    if reactor is None:
        from twisted.internet import reactor as global_reactor
        reactor = global_reactor
    return make_process_service(options.config, reactor, [serviceFromConfig])
