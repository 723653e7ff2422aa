# -*- test-case-name: tests.firewall.test_kernel -*-
"""
netsuite's kernel sets, through netlink (pyroute2): blocking calls, made
from the firewall's worker thread.

 - C{<prefix>-auth}: C{bitmap:ip,mac} over the LAN, with counters: the
   authorized clients, each bound to its MAC (matched C{src,src}); its
   counters are the client's upload.
 - C{<prefix>-down}: C{bitmap:ip} over the LAN, with counters: the same
   clients, matched C{dst} on the way to the LAN; its counters are the
   client's download.
 - C{<prefix>-smtp}: C{hash:ip} with timeouts: the open SMTP windows to any
   destination, which the kernel expires by itself.
 - C{<prefix>-smtpto}: C{hash:ip,port,ip} with timeouts: the SMTP windows
   towards one server, an entry (client, SMTP port, server) per SMTP port
   (matched C{src,dst,dst}); the kernel expires them too.
 - C{<prefix>-garden}: C{hash:ip} with timeouts, at most C{garden_max}
   entries: addresses open before login (matched C{dst}), added by the
   resolver for a garden name's records; the kernel expires them.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any, Dict, Optional, Sequence, Tuple

from pyroute2 import IPSet
from pyroute2.ipset import IPSET_CMD_CREATE, _nlmsg_error
from pyroute2.netlink import NLM_F_ACK, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nfnetlink.ipset import IPSET_FLAG_WITH_COUNTERS, ipset_msg

from ..registry.values import MAC
from .setwriter import IPSET_CMD_ADD, IPSET_CMD_DEL, SetReader, SetWriter, WindowEntry

__all__ = ["KernelSets", "SetCounters"]

SetCounters = Tuple[int, int]
"""(bytes, packets)"""

IPSET_FLAG_LIST_HEADER = 1 << 2  # list the set's header only


class KernelSets:
    """
    Create, fill, read and remove netsuite's sets.

    @param names: (auth, down, smtp, garden) set names.
    @param network: the LAN, the range of the two bitmap sets.
    @param garden_max: the garden set's C{maxelem}.
    @param smtp_servers: the name of the per-(client, server) SMTP windows'
        set ("": C{names}' SMTP set's, with C{to} added).
    @param smtp_ports: the SMTP ports a window towards a server opens.
    """

    def __init__(self, names: Tuple[str, str, str, str], network: ipaddress.IPv4Network,
                 smtp_timeout: int, garden_max: int = 4096, garden_timeout: int = 60,
                 smtp_servers: str = "", smtp_ports: Sequence[int] = (25,)) -> None:
        self.auth, self.down, self.smtp, self.garden = names
        self.smtp_servers = smtp_servers or self.smtp + "to"
        self.smtp_ports = tuple(smtp_ports)
        self.network = network
        self.smtp_timeout = smtp_timeout
        self.garden_max = garden_max
        self.garden_timeout = garden_timeout
        self._ipset: Optional[IPSet] = None
        self.writer = SetWriter()
        self.reader = SetReader()

    @property
    def ipset(self) -> IPSet:
        # Made lazily, in the thread that uses it.
        if self._ipset is None:
            self._ipset = IPSet()
        return self._ipset

    def close(self) -> None:
        self.writer.close()
        self.reader.close()
        if self._ipset is not None:
            self._ipset.close()
            self._ipset = None

    # the sets themselves

    def exists(self, name: str) -> bool:
        try:
            list(self.ipset.headers(name))
            return True
        except NetlinkError as e:
            if e.code == errno.ENOENT:
                return False
            raise

    def size(self, name: str) -> int:
        """
        The number of entries, read from the set's header (cheap).
        """
        for header in self.ipset.list(name, flags=IPSET_FLAG_LIST_HEADER):
            data = header.get_attr("IPSET_ATTR_DATA")
            if data is not None:
                return int(data.get_attr("IPSET_ATTR_ELEMENTS") or 0)
        return 0

    def create_missing(self) -> list[str]:
        """
        Create whichever of the sets does not exist; return their names.
        """
        made = []
        if not self.exists(self.auth):
            self._create_bitmap(self.auth, "bitmap:ip,mac")
            made.append(self.auth)
        if not self.exists(self.down):
            self._create_bitmap(self.down, "bitmap:ip")
            made.append(self.down)
        if not self.exists(self.smtp):
            self.ipset.create(self.smtp, stype="hash:ip", timeout=self.smtp_timeout)
            made.append(self.smtp)
        if not self.exists(self.smtp_servers):
            self.ipset.create(self.smtp_servers, stype="hash:ip,port,ip",
                              timeout=self.smtp_timeout)
            made.append(self.smtp_servers)
        if not self.exists(self.garden):
            self.ipset.create(self.garden, stype="hash:ip", timeout=self.garden_timeout,
                              maxelem=self.garden_max)
            made.append(self.garden)
        return made

    def _create_bitmap(self, name: str, stype: str) -> None:
        """
        pyroute2's C{create} has no IP range, which bitmap sets need: build
        the same netlink request with C{IPSET_ATTR_IP}/C{IPSET_ATTR_IP_TO}.
        """
        first = str(self.network.network_address)
        last = str(self.network.broadcast_address)
        core = self.ipset.asyncore

        async def create() -> Any:
            revision = (await core.get_supported_revisions(stype))[1]
            msg = ipset_msg()
            msg["attrs"] = [
                ["IPSET_ATTR_PROTOCOL", core._proto_version],
                ["IPSET_ATTR_SETNAME", name],
                ["IPSET_ATTR_TYPENAME", stype],
                ["IPSET_ATTR_FAMILY", socket.AF_INET],
                ["IPSET_ATTR_REVISION", revision],
                ["IPSET_ATTR_DATA", {"attrs": [
                    ["IPSET_ATTR_IP", {"attrs": [["IPSET_ATTR_IPADDR_IPV4", first]]}],
                    ["IPSET_ATTR_IP_TO", {"attrs": [["IPSET_ATTR_IPADDR_IPV4", last]]}],
                    ["IPSET_ATTR_CADT_FLAGS", IPSET_FLAG_WITH_COUNTERS],
                ]}],
            ]
            return await core.request(msg, IPSET_CMD_CREATE,
                                      msg_flags=NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL,
                                      terminate=_nlmsg_error)
        self.ipset._run_with_cleanup(create)

    def destroy(self) -> None:
        """
        Remove the sets (they must no longer be referenced by rules).
        """
        for name in self._names():
            if self.exists(name):
                self.ipset.destroy(name)

    def _names(self) -> Tuple[str, ...]:
        return (self.auth, self.down, self.smtp, self.smtp_servers, self.garden)

    def flush(self) -> None:
        for name in self._names():
            if self.exists(name):
                self.ipset.flush(name)

    # clients

    def add_client(self, ip: ipaddress.IPv4Address, mac: MAC) -> None:
        """
        Put C{ip} bound to C{mac} in the auth set (replacing another MAC for
        that address) and C{ip} in the download set.
        """
        self.writer.apply([(IPSET_CMD_ADD, self.auth, ip, mac, None),
                           (IPSET_CMD_ADD, self.down, ip, None, None)])

    def remove_client(self, ip: ipaddress.IPv4Address) -> None:
        self.writer.apply([(IPSET_CMD_DEL, self.auth, ip, None, None),
                           (IPSET_CMD_DEL, self.down, ip, None, None)])

    def clients(self) -> Dict[ipaddress.IPv4Address, Tuple[MAC, SetCounters]]:
        """
        The auth set's entries: ip -> (mac, upload counters).
        """
        return {ip: (mac, (nbytes, packets))
                for ip, mac, nbytes, packets, _ in self.reader.rows(self.auth) if mac is not None}

    def downloads(self) -> Dict[ipaddress.IPv4Address, SetCounters]:
        return {ip: (nbytes, packets) for ip, _, nbytes, packets, _ in self.reader.rows(self.down)}

    # SMTP windows

    def open_smtp(self, ip: ipaddress.IPv4Address, seconds: int,
                  server: Optional[ipaddress.IPv4Address] = None) -> None:
        """
        Open (or re-time) C{ip}'s window to any destination, or (with
        C{server}) towards C{server} only, on every SMTP port.
        """
        if server is None:
            self.writer.add(self.smtp, ip, timeout=seconds)
        else:
            self.writer.apply_windows([(IPSET_CMD_ADD, self.smtp_servers, ip, port, server,
                                        seconds) for port in self.smtp_ports])

    def close_smtp(self, ip: ipaddress.IPv4Address) -> None:
        """
        Close every window of C{ip}: to any destination and towards servers.
        """
        self.writer.delete(self.smtp, ip)
        entries: list[WindowEntry] = [
            (IPSET_CMD_DEL, self.smtp_servers, client, port, server, None)
            for client, port, server, _ in self.reader.windows(self.smtp_servers)
            if client == ip]
        self.writer.apply_windows(entries)

    def smtp_windows(self) -> Dict[ipaddress.IPv4Address,
                                   Dict[Optional[ipaddress.IPv4Address], int]]:
        """
        client -> {None (any destination) or server: seconds left}, as the
        kernel counts them (a server's window: its longest of the ports).
        """
        windows: Dict[ipaddress.IPv4Address, Dict[Optional[ipaddress.IPv4Address], int]] = {}
        for ip, _, _, _, left in self.reader.rows(self.smtp):
            windows.setdefault(ip, {})[None] = left or 0
        for ip, _, server, left in self.reader.windows(self.smtp_servers):
            mine = windows.setdefault(ip, {})
            mine[server] = max(mine.get(server, 0), left or 0)
        return windows

    # the garden

    def add_garden(self, entries: Sequence[Tuple[ipaddress.IPv4Address, int]]) -> None:
        """
        Add (or re-time) C{(ip, seconds)} entries: one send per hundred.
        """
        self.writer.apply([(IPSET_CMD_ADD, self.garden, ip, None, seconds)
                           for ip, seconds in entries])

    def flush_garden(self) -> None:
        self.ipset.flush(self.garden)

    def garden_entries(self) -> Dict[ipaddress.IPv4Address, int]:
        """
        ip -> seconds left, as the kernel counts them.
        """
        return {ip: left or 0 for ip, _, _, _, left in self.reader.rows(self.garden)}
