# -*- test-case-name: tests.lab.test_ipv6 -*-
"""
The lab's IPv6 (C{Lab(ipv6=True)}): static addresses and routes on the WAN
side and the AP's LAN side, radvd in the AP so that clients make SLAAC and
temporary addresses, and reading those addresses back.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import Any, Callable, Dict, List

from pyroute2 import IPRoute

from . import nsutil
from .layout import BRIDGE, CLIENT_IF, WAN, LabError, Layout

__all__ = ["build", "addresses", "wait"]

# Address flags (linux/if_addr.h)
IFA_F_TEMPORARY = 0x01
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40

# radvd in the AP (Lab(ipv6=True)): RAs every 3-10 s, the LAN prefix for
# SLAAC; clients make a temporary (privacy) address too (use_tempaddr=2).
RADVD = "/usr/sbin/radvd"
RADVD_CONF = """# netsuite lab {name}: router advertisements on the AP's LAN
interface {bridge} {{
    AdvSendAdvert on;
    MinRtrAdvInterval 3;
    MaxRtrAdvInterval 10;
    AdvDefaultLifetime 600;
    prefix {prefix} {{
        AdvOnLink on;
        AdvAutonomous on;
    }};
}};
"""


def build(lay: Layout, radvd_dir: str, name: str, popen: Callable[..., Any]) -> None:
    """
    Static IPv6 on the WAN link, the "internet" and the AP's LAN side
    (no DAD: configured, not autoconfigured), forwarding in the AP,
    routes both ways without NAT, then radvd on C{br-lan}.
    """
    ap_ns, up_ns = lay.netns("ap"), lay.netns("up")
    nsutil.sysctl(ap_ns, "net.ipv6.conf.all.forwarding", "1")
    with IPRoute(netns=up_ns) as ipr:
        ipr.addr("add", index=nsutil.link_index(ipr, "lo"), address=lay.internet6, prefixlen=128)
        ipr.addr("add", index=nsutil.link_index(ipr, lay.up_port), address=lay.wan_up_address6,
                 prefixlen=64, flags=IFA_F_NODAD)
        ipr.route("add", family=socket.AF_INET6, dst=lay.lan_prefix6,
                  gateway=lay.wan_ap_address6)
    with IPRoute(netns=ap_ns) as ipr:
        ipr.addr("add", index=nsutil.link_index(ipr, WAN), address=lay.wan_ap_address6,
                 prefixlen=64, flags=IFA_F_NODAD)
        ipr.addr("add", index=nsutil.link_index(ipr, BRIDGE), address=lay.ap_address6,
                 prefixlen=64, flags=IFA_F_NODAD)
        ipr.route("add", family=socket.AF_INET6, dst="::/0",
                  gateway=lay.wan_up_address6)
    _start_radvd(lay, radvd_dir, name, popen)


def _start_radvd(lay: Layout, directory: str, name: str, popen: Callable[..., Any],
                 timeout: float = 5.0) -> None:
    if not os.path.exists(RADVD):
        raise LabError(f"the IPv6 lab needs radvd ({RADVD}; Debian package radvd)")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, mode=0o700)
    conf = os.path.join(directory, "radvd.conf")
    pidfile = os.path.join(directory, "radvd.pid")
    log = os.path.join(directory, "radvd.log")
    with open(conf, "w") as f:
        f.write(RADVD_CONF.format(name=name, bridge=BRIDGE,
                                  prefix=lay.lan_prefix6))
    os.chmod(conf, 0o600)  # radvd refuses a configuration others can write
    with open(log, "w") as out:
        proc = popen("ap", [RADVD, "-n", "-C", conf, "-p", pidfile, "-m", "logfile", "-l", log,
                            "-d", "1"],
                     stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not nsutil.read_text(pidfile).strip():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise LabError(f"radvd did not start in the AP: {nsutil.read_text(log)[-2000:]}")
        time.sleep(0.02)


def addresses(netns: str) -> Dict[str, List[str]]:
    """
    The global IPv6 addresses on C{eth0} of a client (namespace C{netns}) now, by
    kind: C{slaac} (stable), C{temporary} (privacy), C{tentative}
    (DAD still running) and C{failed} (DAD failed).
    """
    found: Dict[str, List[str]] = {"slaac": [], "temporary": [], "tentative": [],
                                   "failed": []}
    with IPRoute(netns=netns) as ipr:
        for msg in ipr.get_addr(family=socket.AF_INET6, index=nsutil.link_index(ipr, CLIENT_IF)):
            if msg["scope"] != 0:  # RT_SCOPE_UNIVERSE: not link-local
                continue
            flags = msg.get_attr("IFA_FLAGS") or msg["flags"]
            kind = ("failed" if flags & IFA_F_DADFAILED else
                    "tentative" if flags & IFA_F_TENTATIVE else
                    "temporary" if flags & IFA_F_TEMPORARY else "slaac")
            found[kind].append(str(msg.get_attr("IFA_ADDRESS")))
    return found


def wait(netns: str, role: str, timeout: float) -> Dict[str, List[str]]:
    """
    Wait, at most C{timeout} seconds, until client C{role} (namespace
    C{netns}) has a SLAAC and a temporary address, both past DAD; return
    L{addresses}. Raise L{LabError} if it does not happen in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = addresses(netns)
        if found["slaac"] and found["temporary"]:
            return found
        if time.monotonic() > deadline:
            raise LabError(f"{role} has no SLAAC and temporary IPv6 address after "
                           f"{timeout} s: {found}")
        time.sleep(0.05)
