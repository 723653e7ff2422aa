# -*- test-case-name: tests.firewall.test_contract -*-
"""
The real firewall adapter: python-iptables for the static rules, netlink
for the sets, the routing, conntrack and tc. Every kernel call runs through
the runner (one worker thread, in order); the adapter's own state (who is
authorized) lives in the reactor thread.
"""

from __future__ import annotations

import ipaddress
from typing import AbstractSet, Any, Dict, List, Optional, Set, Tuple

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ..registry.values import MAC
from ..runner import IRunner
from .interfaces import (Client, FirewallError, IFirewall, IShaper, Rates, Traffic,
                         client_address, new_client, smtp_server, window_seconds)
from .flows import FlowCutter
from .garden import GardenBook
from .gardenwrites import GardenWrites
from .iptables import StaticRules
from .divert import KernelDivert
from .kernel6 import KernelIPv6
from .kernelsets import KernelSets
from .netlink import KernelNetwork
from .owner import OwnerLock
from .rules import FirewallSettings, set_names

__all__ = ["KernelFirewall"]

_log = Logger()


@implementer(IFirewall)
class KernelFirewall:
    """
    @param settings: the static rules' settings.
    @param runner: runs blocking calls, one at a time in call order
        (a one-thread L{netsuite.runner.ThreadRunner}).
    @param clock: schedules the cutting of de-authorized clients' flows,
        C{cut_delay} seconds after the first of a batch.
    @param shaper: the rate limits, an L{IShaper} (the kernel's is
        L{netsuite.firewall.shaping.Shaper}), called from the runner only;
        None for no rate limits.
    @param smtp_window: default seconds of an SMTP window.
    @param default_limits: (up, down) kbit/s for clients authorized without
        limits of their own (0: unlimited).
    @param rates: per-device limits (L{interfaces.Rates}), before the
        defaults (L{interfaces.new_client}).
    @param keep_clients: leave authorized clients (and the rules) in the
        kernel on stop, and adopt them on the next start.
    @param bridge_netfilter: C{"fix"} sets bridge-nf-call-iptables to 0 on
        a LAN bridge; C{"refuse"} refuses to start while it is 1.
    @param lock_dir: where the lock making this process the namespace's
        only firewall owner lives (L{netsuite.firewall.owner}).
    @param garden_ttl: (min, max) seconds of a garden entry; a requested
        time is clamped to them.
    @param garden_max_entries: at most this many garden entries (the set's
        C{maxelem} too); adds beyond are refused, counted and logged.
    @param ipv6: C{"auto"}, C{"on"} or C{"off"}: the IPv6 half,
        L{netsuite.firewall.kernel6.KernelIPv6} (the LAN's IPv6 closed, and
        dual stack for authorized clients by MAC).
    """

    def __init__(self, settings: FirewallSettings, runner: IRunner, clock: IReactorTime,
                 shaper: Optional[IShaper] = None, smtp_window: int = 600,
                 default_limits: Tuple[int, int] = (0, 0), keep_clients: bool = False,
                 bridge_netfilter: str = "fix", network: Optional[KernelNetwork] = None,
                 cut_delay: float = 0.2, lock_dir: str = "/run/netsuite",
                 garden_ttl: Tuple[int, int] = (60, 86400),
                 garden_max_entries: int = 4096, ipv6: str = "auto",
                 rates: Optional[Rates] = None) -> None:
        self.settings = settings
        self.rates = dict(rates or {})
        self._run = runner.run
        self.clock = clock
        self.cut_delay = cut_delay
        self.flows = FlowCutter(local=settings.lan_network)
        self._to_cut: Set[ipaddress.IPv4Address] = set()
        self._cutting: Optional[IDelayedCall] = None
        self.shaper = shaper
        self.smtp_window = smtp_window
        self.default_limits = default_limits
        self.keep_clients = keep_clients
        self.bridge_netfilter = bridge_netfilter
        self.rules = StaticRules(settings)
        # MACs de-authorized whose IPv6 bindings and flows go in the next cut
        self._to_cut6: Set[MAC] = set()
        self.sets = KernelSets(set_names(settings), settings.lan_network, smtp_window,
                               garden_max=garden_max_entries, garden_timeout=garden_ttl[0],
                               smtp_servers=settings.smtp_servers_set,
                               smtp_ports=settings.smtp_ports)
        self.garden_book = GardenBook(clock, settings.lan_network, *garden_ttl,
                                      max_entries=garden_max_entries)
        self.garden_writes = GardenWrites(self.garden_book, lambda: self.sets, runner, clock)
        self.network = network or KernelNetwork(settings.lan_interface, settings.tproxy_mark)
        self.v6 = KernelIPv6(settings, self.network, self.flows, ipv6, keep_clients)
        self.divert = KernelDivert(settings, self.v6.nft)  # with tproxy_port
        self.clients: Dict[ipaddress.IPv4Address, Client] = {}
        # MAC -> how many of the clients have it (IPv6 is authorized by MAC)
        self._macs: Dict[MAC, int] = {}
        # ip -> authorizes queued on the runner and not yet done: the check
        # leaves those addresses alone (see check)
        self._adding: Dict[ipaddress.IPv4Address, int] = {}
        self.owner = OwnerLock(lock_dir)

    # start and stop

    def start(self) -> "Deferred[None]":
        def adopted(state: Tuple[Dict[ipaddress.IPv4Address, Client],
                                 Dict[ipaddress.IPv4Address, int]]) -> None:
            found, garden = state
            self.clients = found
            self._macs = {}
            for client in found.values():
                self._macs[client.mac] = self._macs.get(client.mac, 0) + 1
            self.garden_book.adopt(garden)
            if found:
                _log.info("firewall adopted {n} authorized clients from the kernel",
                          n=len(found))
        return self._run(self._start).addCallback(adopted)

    def _start(self) -> Tuple[Dict[ipaddress.IPv4Address, Client],
                              Dict[ipaddress.IPv4Address, int]]:
        self.owner.acquire()  # before anything changes
        try:
            return self._install()
        except BaseException:
            self.owner.release()
            raise

    def _install(self) -> Tuple[Dict[ipaddress.IPv4Address, Client],
                                Dict[ipaddress.IPv4Address, int]]:
        self._check_bridge()
        self.v6.start()
        garden: Dict[ipaddress.IPv4Address, int] = {}
        if self.sets.exists(self.sets.garden):
            if self.keep_clients:
                garden = self.sets.garden_entries()
            else:
                self.sets.flush_garden()
        found: Dict[ipaddress.IPv4Address, Client] = {}
        if self.sets.exists(self.sets.auth):
            limits = self.shaper.limits() if self.shaper is not None else {}
            for ip, (mac, _) in self.sets.clients().items():
                up, down = limits.get(ip, (0, 0))
                found[ip] = Client(ip, mac, up, down)
            if not self.keep_clients:
                for ip in found:
                    self._remove_client(ip)
                self.flows.cut(set(found))
                found = {}
        self.v6.adopt({client.mac for client in found.values()})
        self.sets.create_missing()
        if self.settings.tproxy_port:
            self._install_divert()
        repaired = self.rules.install()
        if repaired:
            _log.info("firewall rules installed ({what})", what="; ".join(repaired))
        if self.settings.tproxy_port:
            self.network.install_tproxy_routing()
        if self.shaper is not None:
            self.shaper.setup()  # keeps a sound tree, limits included
            for ip in set(self.shaper.limits()) - set(found):
                self.shaper.unlimit(ip)  # left by a run whose clients are gone
            for client in found.values():
                self._apply_limits(client)
        return found, garden

    def _install_divert(self) -> None:
        try:
            self.divert.install()
        except Exception as e:
            raise FirewallError(
                f"firewall.tproxy_port is {self.settings.tproxy_port} but netsuite cannot make "
                f"its nftables table ip {self.settings.nft_table} ({type(e).__name__}: {e}): "
                "the mail ports would be reset for every client. Install python3-nftables "
                "(and load nft_tproxy), or set tproxy_port to 0.") from e

    def _check_bridge(self) -> None:
        value = self.network.bridge_nf_call_iptables()
        if value != 1:
            return
        if self.bridge_netfilter == "refuse":
            raise FirewallError(
                f"{self.settings.lan_interface} is a bridge and "
                "net.bridge.bridge-nf-call-iptables is 1: TPROXY on the bridge and the "
                "upload rate limits (IFB) would silently fail. Set it to 0 in this "
                "namespace, or set firewall.bridge_netfilter = \"fix\".")
        self.network.set_bridge_nf_call_iptables(0)
        _log.warn("set net.bridge.bridge-nf-call-iptables to 0 in this namespace "
                  "({lan} is a bridge; TPROXY and IFB need it)", lan=self.settings.lan_interface)

    def stop(self) -> "Deferred[None]":
        if self.keep_clients:
            _log.info("firewall stopping; {n} clients stay authorized (keep_clients)",
                      n=len(self.clients))
            return self._run(self._let_go)
        if self._cutting is not None and self._cutting.active():
            self._cutting.cancel()
        to_cut, self._to_cut = self._to_cut, set()
        self._to_cut6 = set()
        self.garden_writes.drop()
        return self._run(self._stop, to_cut)

    def _stop(self, to_cut: Set[ipaddress.IPv4Address]) -> None:
        if not self.owner.held:
            # Never started, or refused: the state is another process's.
            self._let_go()
            return
        self.flows.cut(to_cut | set(self.clients) | self.v6.bound())
        self.flows.close()
        self.rules.close()  # fail closed: the LAN stays shut until removed
        self.v6.close()
        self._teardown()

    def remove(self) -> "Deferred[None]":
        return self._run(self._remove)

    def _remove(self) -> None:
        self.owner.acquire()  # refused while another firewall runs here
        self.rules.remove()
        self.v6.remove()
        self._teardown()

    def _teardown(self) -> None:
        if self.settings.tproxy_port:
            self.network.remove_tproxy_routing()
            try:
                # After the rules: nothing sets the divert mark any more.
                self.divert.remove()
            except Exception:
                _log.failure("could not delete the nft table ip {table} (harmless: "
                             "nothing marks packets for it now)", table=self.settings.nft_table)
        if self.shaper is not None:
            self.shaper.teardown()
        self.sets.destroy()
        self._let_go()

    def _let_go(self) -> None:
        self.sets.close()
        self.owner.release()

    # clients

    def _in_lan(self, ip: Any) -> ipaddress.IPv4Address:
        return client_address(self.settings.lan_network, ip)

    def authorize(self, ip: ipaddress.IPv4Address, mac: MAC, up_kbit: Optional[int] = None,
                  down_kbit: Optional[int] = None) -> "Deferred[Client]":
        try:
            client = new_client(self.settings.lan_network, ip, mac, up_kbit, down_kbit,
                                self.default_limits, self.rates)
        except (ValueError, TypeError):
            return fail()
        ip = client.ip
        # A client whose address is authorized anew for another MAC: that
        # MAC loses its IPv6 (unless another client has it).
        before = self.clients.get(ip)
        old_mac = before.mac if before is not None and before.mac != client.mac and \
            self._macs.get(before.mac, 0) <= 1 else None

        def done(_: Any) -> Client:
            self._forget(ip)
            self.clients[ip] = client
            self._macs[client.mac] = self._macs.get(client.mac, 0) + 1
            return client

        def settled(result: Any) -> Any:
            self._adding[ip] -= 1
            if not self._adding[ip]:
                del self._adding[ip]
            return result
        self._to_cut.discard(ip)
        self._to_cut6.discard(client.mac)
        self._adding[ip] = self._adding.get(ip, 0) + 1
        return self._run(self._add_client, client, old_mac).addCallback(done).addBoth(settled)

    def _forget(self, ip: ipaddress.IPv4Address) -> Optional[Client]:
        """
        Take C{ip} out of L{clients}; return its client, if it had one.
        """
        client = self.clients.pop(ip, None)
        if client is not None:
            left = self._macs.get(client.mac, 0) - 1
            if left > 0:
                self._macs[client.mac] = left
            else:
                self._macs.pop(client.mac, None)
        return client

    def _add_client(self, client: Client, old_mac: Optional[MAC] = None) -> None:
        # Limits first: if tc refuses, the client is not let in unshaped.
        self._apply_limits(client)
        self.sets.add_client(client.ip, client.mac)
        self.v6.authorize(client.mac, old_mac)

    def _apply_limits(self, client: Client) -> None:
        if self.shaper is None:
            return
        # limit(ip, 0, 0) is unlimit(ip), except with an uplink capacity
        # (fair shares), where every client has a class
        self.shaper.limit(client.ip, client.up_kbit, client.down_kbit)

    def deauthorize(self, ip: ipaddress.IPv4Address) -> "Deferred[bool]":
        try:
            ip = self._in_lan(ip)
        except ValueError:
            return fail()
        client = self._forget(ip)
        known = client is not None
        # Its MAC loses IPv6 unless another client has it.
        mac = client.mac if client is not None and client.mac not in self._macs else None

        def removed(_: Any) -> bool:
            self._cut_soon(ip, mac)
            return known
        return self._run(self._remove_client, ip, mac).addCallback(removed)

    def _remove_client(self, ip: ipaddress.IPv4Address, mac: Optional[MAC] = None) -> None:
        """
        Out of the sets (and C{mac} out of auth6): from now on its packets,
        established flows included, stop at the firewall. Its conntrack
        entries (and IPv6 bindings) go shortly after (L{_cut_soon}).
        """
        self.sets.remove_client(ip)
        if mac is not None:
            self.v6.deauthorize(mac)
        if self.shaper is not None:
            self.shaper.unlimit(ip)

    def _cut_soon(self, ip: ipaddress.IPv4Address, mac: Optional[MAC] = None) -> None:
        """
        Delete C{ip}'s conntrack entries (and C{mac}'s IPv6 bindings and
        flows) with those of every client de-authorized in the next
        C{cut_delay} seconds: one table dump.
        """
        self._to_cut.add(ip)
        if mac is not None:
            self._to_cut6.add(mac)
        if self._cutting is None or not self._cutting.active():
            self._cutting = self.clock.callLater(self.cut_delay, self._cut_now)

    def _cut_now(self) -> "Deferred[int]":
        to_cut, self._to_cut = self._to_cut, set()
        macs, self._to_cut6 = self._to_cut6, set()

        def cut(count: int) -> int:
            if count:
                _log.info("cut {count} connections of {n} de-authorized clients",
                          count=count, n=len(to_cut))
            return count

        def failed(failure: Any) -> None:
            _log.failure("could not cut the connections of {ips}", failure,
                         ips=sorted(str(ip) for ip in to_cut))
        return self._run(self._cut, to_cut, macs).addCallbacks(cut, failed)

    def _cut(self, ips: Set[ipaddress.IPv4Address], macs: Set[MAC]) -> int:
        """
        Remove C{macs}' IPv6 bindings (their addresses free to be claimed
        again) and cut the flows of C{ips} and of those addresses at once.
        """
        return self.flows.cut(set(ips) | self.v6.unbind(macs))

    def traffic(self) -> "Deferred[Dict[ipaddress.IPv4Address, Traffic]]":
        clients = dict(self.clients)

        def read() -> Dict[ipaddress.IPv4Address, Traffic]:
            up = self.sets.clients()
            down = self.sets.downloads()
            up6, down6 = self.v6.traffic({c.mac for c in clients.values()})
            result = {}
            for ip, client in clients.items():
                bytes_up, packets_up = up.get(ip, (None, (0, 0)))[1]
                bytes_down, packets_down = down.get(ip, (0, 0))
                u6, d6 = up6.get(client.mac, (0, 0)), down6.get(client.mac, (0, 0))
                result[ip] = Traffic(bytes_up + u6[0], packets_up + u6[1],
                                     bytes_down + d6[0], packets_down + d6[1])
            return result
        return self._run(read)

    # SMTP windows

    def open_smtp(self, ip: ipaddress.IPv4Address, seconds: Optional[int] = None,
                  server: Optional[ipaddress.IPv4Address] = None) -> "Deferred[int]":
        try:
            ip = self._in_lan(ip)
            seconds = window_seconds(seconds, self.smtp_window)
            server = smtp_server(server, self.settings.lan_network)
        except (ValueError, TypeError):
            return fail()
        return self._run(self.sets.open_smtp, ip, seconds, server).addCallback(
            lambda _: seconds)

    def close_smtp(self, ip: ipaddress.IPv4Address) -> "Deferred[None]":
        try:
            ip = self._in_lan(ip)
        except ValueError:
            return fail()
        return self._run(self.sets.close_smtp, ip)

    def smtp_windows(self) -> "Deferred[Dict[ipaddress.IPv4Address, Dict[Any, int]]]":
        return self._run(self.sets.smtp_windows)

    # the garden

    def add_garden(self, ips: Any, seconds: Any) -> "Deferred[int]":
        return self.garden_writes.add(ips, seconds)

    def garden(self) -> "Deferred[Dict[ipaddress.IPv4Address, int]]":
        return self._run(self.sets.garden_entries)

    def flush_garden(self) -> "Deferred[int]":
        return self.garden_writes.flush()

    # the periodic check

    def check(self) -> "Deferred[List[str]]":
        """
        Compare the kernel with what this adapter let through, and restore
        it. An address with an authorize queued before the check (on the
        same runner: it is in the kernel by the time the check runs, but
        in L{clients} only once it is done, and only if it worked) is
        neither removed nor added: the check must not undo a login under
        way, nor let in one that fails.
        """
        clients = dict(self.clients)
        adding = set(self._adding)
        garden = self.garden_writes.expected()

        def logged(repaired: List[str]) -> List[str]:
            if repaired:
                _log.warn("firewall state was changed by someone else; restored: {what}",
                          what="; ".join(repaired))
            return repaired
        return self._run(self._check, clients, adding, garden).addCallback(logged)

    def _check(self, clients: Dict[ipaddress.IPv4Address, Client],
               adding: AbstractSet[ipaddress.IPv4Address] = frozenset(),
               garden: Optional[Dict[ipaddress.IPv4Address, int]] = None) -> List[str]:
        repaired = [f"set {name} was missing" for name in self.sets.create_missing()]
        if garden and self.sets.size(self.sets.garden) < len(garden):
            missing = garden.keys() - self.sets.garden_entries().keys()
            self.sets.add_garden(sorted((ip, garden[ip]) for ip in missing))
            repaired.append(f"garden entries restored ({len(missing)} were missing)")
        # Cheap: two set headers. Only a mismatch costs a walk of the clients.
        if adding or (self.sets.size(self.sets.auth), self.sets.size(self.sets.down)) != \
                (len(clients), len(clients)):
            kernel = self.sets.clients()
            settled = {ip: c for ip, c in clients.items() if ip not in adding}
            extra = kernel.keys() - settled.keys() - adding
            missing = settled.keys() - kernel.keys()
            for ip in extra:
                self.sets.remove_client(ip)
            if extra or missing or not adding:
                for client in settled.values():
                    self.sets.add_client(client.ip, client.mac)
                repaired.append(f"authorized clients restored ({len(missing)} were missing)")
        if self.settings.tproxy_port:
            problems = self.divert.problems()
            if problems:
                self.divert.install()
                repaired.append(f"TPROXY diversion restored ({'; '.join(problems)})")
        repaired += self.rules.install()
        if self.settings.tproxy_port and self.network.tproxy_routing_problems():
            self.network.install_tproxy_routing()
            repaired.append("TPROXY policy routing restored")
        if self.shaper is not None and not self.shaper.intact():
            self.shaper.setup()
            for client in clients.values():
                self._apply_limits(client)
            repaired.append("rate limits restored")
        # The IPv4 repairs above stand (and are reported) whatever IPv6's do.
        return repaired + self.v6.check({c.mac for c in clients.values()}, bool(adding))
