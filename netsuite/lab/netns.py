# -*- test-case-name: tests.lab.test_netns -*-
"""
A simulated access point on one machine, built from network namespaces.

    upstream (<prefix>up)  lo: 198.51.100.1/32, <up_port>: 192.0.2.1/30
        | veth
    AP (<prefix>ap)        wan0: 192.0.2.2/30, br-lan: 10.89.0.1/24
        | veth per client, a port of br-lan
    clients (<prefix>c1..cN)  eth0 with a fixed MAC, no address until DHCP

With C{ipv6=True} also: upstream lo 2001:db8:100::1/128, WAN link
2001:db8:ff::/64 (::1 upstream, ::2 AP), br-lan 2001:db8:89::1/64 with
radvd advertising the prefix, clients' SLAAC and temporary addresses.

All netlink work goes through pyroute2; sysctls are written through
C{/proc/sys} by a thread inside the namespace. The lab records itself in
C{/run/netsuite-lab/<name>.json} so another process can find and remove it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from typing import Any, Dict, List, Optional, Sequence

from pyroute2 import IPRoute
from pyroute2 import netns as _netns

from . import ipv6, nsutil
from .layout import BRIDGE, CLIENT_IF, LAB_NETNS_RE, WAN, LabError, Layout

STATE_DIR = "/run/netsuite-lab"
ETC_NETNS = "/etc/netns"


class Lab:
    """
    One lab: an AP, an upstream and N clients, named after C{name}.

    Build it with L{up}, remove it with L{down} (idempotent, also after a
    partial build). Used as a context manager it is built on entry (unless
    already up) and removed on exit.
    """

    def __init__(self, name: str = "lab1", clients: int = 2, lan: str = "10.89.0.0/24",
                 wan: str = "192.0.2.0/30", internet: str = "198.51.100.1",
                 state_dir: str = STATE_DIR, etc_netns: str = ETC_NETNS,
                 ipv6: bool = False) -> None:
        self.layout = Layout(name=name, clients=clients, lan=lan, wan=wan,
                             internet=internet, ipv6=ipv6)
        self.state_dir = state_dir
        self.etc_netns = etc_netns
        self.addresses = False
        self._popens: List["subprocess.Popen[Any]"] = []

    # names and addresses (see Layout)

    @property
    def name(self) -> str:
        return self.layout.name

    @property
    def prefix(self) -> str:
        return self.layout.prefix

    @property
    def roles(self) -> List[str]:
        return self.layout.roles

    @property
    def client_roles(self) -> List[str]:
        return self.layout.client_roles

    @property
    def ap_address(self) -> str:
        return self.layout.ap_address

    @property
    def wan_ap_address(self) -> str:
        return self.layout.wan_ap_address

    @property
    def wan_up_address(self) -> str:
        return self.layout.wan_up_address

    @property
    def internet(self) -> str:
        return self.layout.internet

    # IPv6 (with ipv6=True; the prefixes are fixed, see layout.py)

    @property
    def ipv6(self) -> bool:
        return self.layout.ipv6

    @property
    def ap_address6(self) -> str:
        return self.layout.ap_address6

    @property
    def internet6(self) -> str:
        return self.layout.internet6

    @property
    def lan_prefix6(self) -> str:
        return self.layout.lan_prefix6

    @property
    def wan_up_address6(self) -> str:
        return self.layout.wan_up_address6

    @property
    def wan_ap_address6(self) -> str:
        return self.layout.wan_ap_address6

    def client_slaac6(self, index: int) -> str:
        return self.layout.client_slaac6(index)

    @property
    def radvd_dir(self) -> str:
        """radvd's configuration, pid file and log (removed by L{down})."""
        return os.path.join(self.state_dir, self.name + ".radvd")

    def netns(self, role: str) -> str:
        """The namespace name of C{ap}, C{up}, C{c1}..."""
        return self.layout.netns(role)

    def client_mac(self, index: int) -> str:
        return self.layout.client_mac(index)

    def client_address(self, index: int) -> str:
        return self.layout.client_address(index)

    @property
    def state_path(self) -> str:
        return os.path.join(self.state_dir, self.name + ".json")

    # finding labs

    def namespaces(self) -> List[str]:
        """The namespaces of this lab that exist now."""
        return [ns for ns in nsutil.listed() if self.layout.role_of(ns) is not None]

    def exists(self) -> bool:
        return os.path.exists(self.state_path) or bool(self.namespaces())

    @classmethod
    def load(cls, name: str, state_dir: str = STATE_DIR,
             etc_netns: str = ETC_NETNS) -> "Lab":
        """The lab C{name} as recorded by the process that built it."""
        Layout(name=name, clients=0)  # refuses a bad name before it becomes a path
        path = os.path.join(state_dir, name + ".json")
        try:
            with open(path) as f:
                state = json.load(f)
        except FileNotFoundError:
            raise LabError(f"no lab named {name!r} ({path} does not exist)") from None
        layout = Layout.from_dict(state)
        lab = cls(layout.name, layout.clients, layout.lan, layout.wan, layout.internet,
                  state_dir=state_dir, etc_netns=etc_netns, ipv6=layout.ipv6)
        lab.addresses = bool(state.get("addresses"))
        return lab

    @classmethod
    def names(cls, state_dir: str = STATE_DIR) -> List[str]:
        """The names of the labs recorded in C{state_dir}."""
        try:
            return sorted(f[:-5] for f in os.listdir(state_dir) if f.endswith(".json"))
        except FileNotFoundError:
            return []

    @classmethod
    def remove_stale(cls, prefix: str, state_dir: str = STATE_DIR,
                     etc_netns: str = ETC_NETNS) -> List[str]:
        """
        Remove every lab namespace (C{ns<name>-ap|up|cN}) whose name starts
        with C{prefix}, with its processes, C{/etc/netns} entry and state
        file, and the labs recorded under such names. Return the namespaces
        removed.

        @param prefix: at least C{ns} and one more character (C{nst},
            C{nsdemo-}), so that a slip cannot remove every lab.
        """
        if len(prefix) < 3 or not prefix.startswith("ns"):
            raise LabError(f"prefix {prefix!r} is too broad: use ns<name>- or ns<start>")
        removed = []
        names = set()
        for ns in nsutil.listed():
            match = LAB_NETNS_RE.match(ns)
            if ns.startswith(prefix) and match:
                names.add(match.group(1))
                removed.append(ns)
        for name in cls.names(state_dir):
            if f"ns{name}-".startswith(prefix):
                names.add(name)
        for name in sorted(names):
            cls(name, clients=0, state_dir=state_dir, etc_netns=etc_netns).down()
        return sorted(removed)

    # building and removing

    def up(self, addresses: bool = False) -> "Lab":
        """
        Build the lab. With C{addresses}, client C{i} gets C{.10+i} and a
        default route via the AP; otherwise clients have no IPv4 address.
        With C{ipv6} (the constructor's), the WAN, the upstream's
        "internet" and the LAN get IPv6 too, and radvd in the AP sends
        router advertisements; C{up} does not wait for the clients'
        addresses (L{wait_ipv6} does).

        @raise LabError: the lab (or one of its namespaces) already exists,
            or this process is not root.
        """
        if os.geteuid() != 0:
            raise LabError("building a lab needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN)")
        if self.exists():
            raise LabError(f"lab {self.name} already exists "
                           f"(netsuite-lab down --name {self.name})")
        self.addresses = addresses
        self._write_state(complete=False)
        try:
            self._build(addresses)
        except BaseException:
            self.down()
            raise
        self._write_state(complete=True)
        return self

    def _build(self, addresses: bool) -> None:
        lay = self.layout
        for role in lay.roles:
            self._write_resolv_conf(role)
            _netns.create(lay.netns(role))
        ap_ns, up_ns = lay.netns("ap"), lay.netns("up")
        if lay.ipv6:  # the AP's own addresses, link-local too, are configured: no DAD
            nsutil.sysctl(ap_ns, "net.ipv6.conf.default.accept_dad", "0")
        with IPRoute(netns=up_ns) as ipr:
            _up(ipr, "lo")
            ipr.addr("add", index=nsutil.link_index(ipr, "lo"), address=lay.internet, prefixlen=32)
        with IPRoute(netns=ap_ns) as ipr:
            _up(ipr, "lo")
            ipr.link("add", ifname=BRIDGE, kind="bridge", address=lay.bridge_mac)
            bridge = _up(ipr, BRIDGE)
            ipr.addr("add", index=bridge, address=lay.ap_address,
                     prefixlen=lay.lan_network.prefixlen)
            ipr.link("add", ifname=WAN, kind="veth", address=lay.wan_mac,
                     peer={"ifname": lay.up_port, "address": lay.up_port_mac,
                           "net_ns_fd": up_ns})
            wan = _up(ipr, WAN)
            ipr.addr("add", index=wan, address=lay.wan_ap_address,
                     prefixlen=lay.wan_network.prefixlen)
            for i, role in enumerate(lay.client_roles, 1):
                ipr.link("add", ifname=lay.ap_port(i), kind="veth",
                         address=lay.ap_port_mac(i),
                         peer={"ifname": CLIENT_IF, "address": lay.client_mac(i),
                               "net_ns_fd": lay.netns(role)})
                port = nsutil.link_index(ipr, lay.ap_port(i))
                ipr.link("set", index=port, master=bridge, state="up")
            ipr.route("add", dst="0.0.0.0/0", gateway=lay.wan_up_address)
        nsutil.sysctl(ap_ns, "net.ipv4.ip_forward", "1")
        with IPRoute(netns=up_ns) as ipr:
            port = _up(ipr, lay.up_port)
            ipr.addr("add", index=port, address=lay.wan_up_address,
                     prefixlen=lay.wan_network.prefixlen)
            ipr.route("add", dst=str(lay.lan_network), gateway=lay.wan_ap_address)
        for i, role in enumerate(lay.client_roles, 1):
            if lay.ipv6:  # before eth0 is up, so the first RA makes both addresses
                nsutil.sysctl(lay.netns(role), f"net.ipv6.conf.{CLIENT_IF}.use_tempaddr", "2")
            with IPRoute(netns=lay.netns(role)) as ipr:
                _up(ipr, "lo")
                eth = _up(ipr, CLIENT_IF)
                if addresses:
                    ipr.addr("add", index=eth, address=lay.client_address(i),
                             prefixlen=lay.lan_network.prefixlen)
                    ipr.route("add", dst="0.0.0.0/0", gateway=lay.ap_address)
        if lay.ipv6:
            self._build6()

    def _build6(self) -> None:
        ipv6.build(self.layout, self.radvd_dir, self.name, self.popen)

    # IPv6 addresses of clients

    def addresses6(self, role: str) -> Dict[str, List[str]]:
        """Client C{role}'s global IPv6 addresses now, by kind (L{ipv6.addresses})."""
        return ipv6.addresses(self.netns(role))

    def wait_ipv6(self, role: str, timeout: float = 10.0) -> Dict[str, List[str]]:
        """
        Wait, at most C{timeout} seconds, until client C{role} has a SLAAC
        and a temporary address from the LAN prefix, both past DAD; return
        L{addresses6}. Raise L{LabError} if it does not happen in time.
        """
        if not self.ipv6:
            raise LabError(f"lab {self.name} has no IPv6 (Lab(..., ipv6=True), up --ipv6)")
        return ipv6.wait(self.netns(role), role, timeout)

    def client_addresses6(self, role: str, timeout: float = 10.0) -> List[str]:
        """
        Client C{role}'s global IPv6 addresses once usable (L{wait_ipv6}):
        the SLAAC ones first, then the temporary ones.
        """
        found = self.wait_ipv6(role, timeout)
        return found["slaac"] + found["temporary"]

    def down(self) -> None:
        """
        Remove the lab: kill what runs inside, delete the namespaces (which
        deletes their interfaces), the C{/etc/netns} entries and the state
        file. Safe to call again, or on a lab that was never built.
        """
        for proc in self._popens:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self._popens.clear()
        namespaces = set(self.namespaces())
        for ns in sorted(namespaces):
            nsutil.kill_all(ns)
            nsutil.remove(ns)
        try:
            entries = os.listdir(self.etc_netns)
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if self.layout.role_of(entry) is not None:
                shutil.rmtree(os.path.join(self.etc_netns, entry), ignore_errors=True)
        try:
            os.rmdir(self.etc_netns)
        except OSError:
            pass  # in use by another lab or by someone else
        shutil.rmtree(self.radvd_dir, ignore_errors=True)
        try:
            os.unlink(self.state_path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "Lab":
        if not os.path.exists(self.state_path):
            self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def _write_state(self, complete: bool) -> None:
        os.makedirs(self.state_dir, mode=0o755, exist_ok=True)
        state = dict(self.layout.to_dict(), addresses=self.addresses, complete=complete,
                     pid=os.getpid(), namespaces=[self.netns(r) for r in self.roles])
        if self.ipv6:
            state.update(lan6=self.lan_prefix6, ap_address6=self.ap_address6,
                         internet6=self.internet6, radvd_dir=self.radvd_dir)
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f, indent=1, sort_keys=True)
        os.replace(tmp, self.state_path)

    def _write_resolv_conf(self, role: str) -> None:
        path = os.path.join(self.etc_netns, self.netns(role))
        for attempt in range(3):  # another lab may rmdir an empty etc_netns
            try:
                os.makedirs(path, mode=0o755, exist_ok=True)
                with open(os.path.join(path, "resolv.conf"), "w") as f:
                    f.write(f"# netsuite lab {self.name}, namespace {role}\n"
                            f"nameserver {self.layout.resolver(role)}\n")
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise

    # using the lab

    def exec(self, ns: str, argv: Sequence[str], **kwargs: Any
             ) -> "subprocess.CompletedProcess[Any]":
        """
        Run C{argv} inside namespace C{ns} (a role or a full name), like
        C{subprocess.run}; unless the keyword arguments say otherwise, stdin
        is empty, output is captured as text and the run is bounded by 60 s.
        """
        if "stdout" not in kwargs and "stderr" not in kwargs:
            kwargs.setdefault("capture_output", True)
        if "input" not in kwargs:
            kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 60)
        return subprocess.run(nsutil.ns_argv(self.netns(ns), argv), **kwargs)

    def popen(self, ns: str, argv: Sequence[str], **kwargs: Any) -> "subprocess.Popen[Any]":
        """
        Start C{argv} inside namespace C{ns}; L{down} kills it if still running.
        """
        proc: "subprocess.Popen[Any]" = subprocess.Popen(
            nsutil.ns_argv(self.netns(ns), argv), **kwargs)
        self._popens.append(proc)
        return proc

    def ipr(self, ns: str) -> IPRoute:
        """A pyroute2 C{IPRoute} inside C{ns}; close it (or use C{with})."""
        return IPRoute(netns=self.netns(ns))

    def sysctl(self, ns: str, key: str, value: Optional[object] = None) -> str:
        """Read, or set and read back, a sysctl inside C{ns}."""
        return nsutil.sysctl(self.netns(ns), key, None if value is None else str(value))

    def bridge_nf_call_iptables(self, value: Optional[bool] = None) -> bool:
        """
        Read, or set, C{net.bridge.bridge-nf-call-iptables} in the AP. It is
        1 in a new namespace; 1 breaks TPROXY on a bridge port.
        """
        key = "net.bridge.bridge-nf-call-iptables"
        return self.sysctl("ap", key, None if value is None else int(value)) == "1"

    def pids(self, ns: str) -> List[int]:
        """The processes running inside C{ns}."""
        return nsutil.pids_in(self.netns(ns))

    def status(self) -> Dict[str, Any]:
        """
        What exists now: per role, the namespace, its interfaces (MAC, state,
        addresses, bridge master), IPv4 routes and processes.
        """
        result: Dict[str, Any] = dict(self.layout.to_dict(), prefix=self.prefix,
                                      state_file=self.state_path if os.path.exists(
                                          self.state_path) else None,
                                      namespaces={})
        if self.ipv6:
            result.update(lan6=self.lan_prefix6, ap_address6=self.ap_address6,
                          internet6=self.internet6, radvd_dir=self.radvd_dir)
        present = set(self.namespaces())
        for ns in sorted(present, key=_role_order(self.layout)):
            role = self.layout.role_of(ns)
            with IPRoute(netns=ns) as ipr:
                result["namespaces"][role] = dict(netns=ns, **_describe(ipr),
                                                  pids=nsutil.pids_in(ns))
        return result


def _up(ipr: IPRoute, ifname: str) -> int:
    index = nsutil.link_index(ipr, ifname)
    ipr.link("set", index=index, state="up")
    return index


def _role_order(layout: Layout) -> Any:
    def key(ns: str) -> Any:
        role = layout.role_of(ns) or ""
        return (role[:1] == "c", int(role[1:]) if role[1:].isdigit() else 0, role)
    return key


def _describe(ipr: IPRoute) -> Dict[str, Any]:
    links = {int(link["index"]): link for link in ipr.get_links()}
    names = {index: link.get("ifname") for index, link in links.items()}
    addresses: Dict[int, List[str]] = {}
    for msg in ipr.get_addr():
        addresses.setdefault(int(msg["index"]), []).append(
            f"{msg.get('address')}/{msg['prefixlen']}")
    interfaces = {}
    for index, link in sorted(links.items()):
        master = link.get("master")
        interfaces[names[index]] = {
            "mac": link.get("address"),
            "kind": link.get(("linkinfo", "kind")),
            "state": link.get("operstate"),
            "master": names.get(master) if master else None,
            "addresses": addresses.get(index, []),
        }
    routes = []
    for msg in ipr.get_routes(family=socket.AF_INET, table=254):
        dst = f"{msg.get('dst')}/{msg['dst_len']}" if msg.get("dst") else "default"
        via = f" via {msg.get('gateway')}" if msg.get("gateway") else ""
        routes.append(f"{dst}{via} dev {names.get(msg.get('oif'))}")
    routes6 = []
    for msg in ipr.get_routes(family=socket.AF_INET6, table=254):
        dst = f"{msg.get('dst')}/{msg['dst_len']}" if msg.get("dst") else "default"
        if dst.startswith(("fe80:", "ff00:")):
            continue
        via = f" via {msg.get('gateway')}" if msg.get("gateway") else ""
        routes6.append(f"{dst}{via} dev {names.get(msg.get('oif'))}")
    return {"interfaces": interfaces, "routes": routes, "routes6": routes6}


__all__ = ["Lab", "LabError", "STATE_DIR", "ETC_NETNS"]
