"""
netsuite-dns as a real twistd process forwarding to a real dnsmasq, both
on loopback addresses of their own (ports 19553 and 19554; 19755 and 19756
for the upstream client's test; 19757 and 19758 for the IPv6 upstream's),
queried with twisted.names' client.
"""

import os
import re
import shutil

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.names import client, dns, error
from twisted.trial.unittest import SkipTest, TestCase

from tests.integration.procs import TWISTD, socket_dir, spawn, write_config

UPSTREAM = ("127.0.0.95", 19553)
RESOLVER = ("127.0.0.96", 19554)

CONFIG = f"""
[dns]
listen = ["{RESOLVER[0]}"]
port = {RESOLVER[1]}
upstreams = ["{UPSTREAM[0]}:{UPSTREAM[1]}"]
local_names = {{ "portal.dnscore.test" = "10.89.0.1" }}
"""

POOL_UPSTREAM = ("127.0.0.95", 19755)
POOL_RESOLVER = ("127.0.0.96", 19756)
POOL_CONFIG = f"""
[dns]
listen = ["{POOL_RESOLVER[0]}"]
port = {POOL_RESOLVER[1]}
upstreams = ["{POOL_UPSTREAM[0]}:{POOL_UPSTREAM[1]}"]
upstream_sockets = 4
preauth_rate = 1000.0
preauth_burst = 1000
"""
V6_UPSTREAM = ("::1", 19757)
V6_RESOLVER = ("127.0.0.96", 19758)
V6_CONFIG = f"""
[dns]
listen = ["{V6_RESOLVER[0]}"]
port = {V6_RESOLVER[1]}
upstreams = ["[{V6_UPSTREAM[0]}]:{V6_UPSTREAM[1]}"]
"""
PORT_LINE = re.compile(r"starting on \d+$|\(UDP Port \d+ Closed\)")


class LoopbackTests(TestCase):
    timeout = 60

    def dnsmasq(self, upstream=UPSTREAM, label="dnscore"):
        if shutil.which("dnsmasq") is None:
            raise SkipTest("dnsmasq is not installed (scripts/setup.sh installs it)")
        child = spawn(self, f"dnsmasq {label}", [
            "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--log-facility=-",
            "--bind-interfaces", f"--listen-address={upstream[0]}", f"--port={upstream[1]}",
            "--no-resolv", "--no-hosts", "--address=/x.test/192.0.2.7", "--local-ttl=300",
            "--user=root"])
        return child

    @inlineCallbacks
    def test_forward_cache_refuse(self):
        """
        An A query is answered from dnsmasq, then from the cache once dnsmasq
        is gone; a TXT query from a client not logged in is refused; a local
        name is answered.
        """
        upstream = self.dnsmasq()
        yield upstream.when_line(r"started, version")
        sockets = socket_dir(self)
        config = write_config(self, CONFIG)
        daemon = spawn(self, "netsuite-dns dnscore", TWISTD + [
            "-n", "--pidfile=", "netsuite-dns", "--name", "dnscore", "--socket-dir", sockets,
            "--config", config])
        yield daemon.when_line(r"dns ready")
        resolver = client.Resolver(servers=[RESOLVER], reactor=reactor)

        answers, _, _ = yield resolver.lookupAddress("www.x.test", timeout=(2,))
        self.assertEqual([a.payload.dottedQuad() for a in answers], ["192.0.2.7"])

        upstream.signal("KILL")
        yield upstream.when_ended()
        answers, _, _ = yield resolver.lookupAddress("www.x.test", timeout=(2,))
        self.assertEqual([a.payload.dottedQuad() for a in answers], ["192.0.2.7"])
        self.assertLess(answers[0].ttl, 1000)

        with self.assertRaises(error.DNSQueryRefusedError):
            yield resolver.lookupText("www.x.test", timeout=(2,))

        answers, _, _ = yield resolver.lookupAddress("portal.dnscore.test", timeout=(2,))
        self.assertEqual([a.payload.dottedQuad() for a in answers], ["10.89.0.1"])

        # over TCP too
        message = yield resolver.queryTCP([dns.Query(b"www.x.test", dns.A)])
        self.assertEqual([a.payload.dottedQuad() for a in message.answers], ["192.0.2.7"])

    @inlineCallbacks
    def test_upstream_pool_quiet(self):
        """
        40 uncached queries are forwarded and answered, and twistd logs no
        UDP port opened or closed for them: the upstream sockets are opened
        at start (upstream_sockets of them), before "dns ready".
        """
        upstream = self.dnsmasq(POOL_UPSTREAM, "dnsup")
        yield upstream.when_line(r"started, version")
        config = write_config(self, POOL_CONFIG)
        daemon = spawn(self, "netsuite-dns dnsup", TWISTD + [
            "-n", "--pidfile=", "netsuite-dns", "--name", "dnsup", "--socket-dir",
            socket_dir(self), "--config", config])
        yield daemon.when_line(r"dns ready")
        ready = daemon.line_count
        at_start = [line for line in daemon.lines() if PORT_LINE.search(line)]
        pool = [line for line in at_start if "UpstreamSocket starting" in line]
        self.assertEqual(len(pool), 4, at_start)
        resolver = client.Resolver(servers=[POOL_RESOLVER], reactor=reactor)
        for i in range(40):
            answers, _, _ = yield resolver.lookupAddress(f"n{i}.dnsup.x.test", timeout=(2,))
            self.assertEqual([a.payload.dottedQuad() for a in answers], ["192.0.2.7"])
        daemon.signal("TERM")
        yield daemon.when_ended()
        after = [line for line in daemon.lines(ready) if PORT_LINE.search(line)]
        # at stop the pool's 4 ports and the resolver's own UDP port close: nothing else
        self.assertEqual(len(after), 4 + 1, "\n".join(after))
        self.assertEqual([line for line in after if "starting on" in line], [])

    @inlineCallbacks
    def test_ipv6_upstream(self):
        """An upstream on an IPv6 address is asked from the IPv6 pool."""
        if not os.path.exists("/proc/net/if_inet6"):
            raise SkipTest("this kernel has no IPv6")
        upstream = self.dnsmasq(V6_UPSTREAM, "dnsv6")
        yield upstream.when_line(r"started, version")
        daemon = spawn(self, "netsuite-dns dnsv6", TWISTD + [
            "-n", "--pidfile=", "netsuite-dns", "--name", "dnsv6", "--socket-dir",
            socket_dir(self), "--config", write_config(self, V6_CONFIG)])
        yield daemon.when_line(r"dns ready")
        resolver = client.Resolver(servers=[V6_RESOLVER], reactor=reactor)
        answers, _, _ = yield resolver.lookupAddress("v6.x.test", timeout=(2,))
        self.assertEqual([a.payload.dottedQuad() for a in answers], ["192.0.2.7"])
