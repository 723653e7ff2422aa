"""
netsuite-dns as a real twistd process forwarding to a real dnsmasq, both
on loopback addresses of their own (ports 19553 and 19554), queried with
twisted.names' client.
"""

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


class LoopbackTests(TestCase):
    timeout = 60

    def dnsmasq(self):
        if shutil.which("dnsmasq") is None:
            raise SkipTest("dnsmasq is not installed (scripts/setup.sh installs it)")
        child = spawn(self, "dnsmasq dnscore", [
            "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--log-facility=-",
            "--bind-interfaces", f"--listen-address={UPSTREAM[0]}", f"--port={UPSTREAM[1]}",
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
