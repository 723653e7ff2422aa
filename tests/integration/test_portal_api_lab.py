"""
The Captive Portal API over HTTPS in a real lab (RFC 8908, RFC 8910): one
C{twistd netsuite} process in the access point runs the firewall, the DHCP
server and the portal with a test CA's certificate; the client gets the
API URL as DHCP option 114 from dhclient or busybox udhcpc, and asks the
API with curl (trusting only the test CA) before and after logging in.
The operator page is refused on plain HTTP and served over HTTPS.
"""

import json
import os
import re
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from netsuite.bus import connect
from netsuite.lab import Lab
from netsuite.lab.peers import missing
from netsuite.portal.auth import hash_password

from .procs import TWISTD, dhclient_files, socket_dir, spawn, write_config
from ..lab.labs import lab_name
from ..portal.test_tls import make_ca_and_certificate

PORT = 5280
API_PORT = 8443
API_HOST = "portal.lab.test"

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
portal_port = {port}
lan_ports = [{api_port}]
check_interval = 1.0
shaping = false

[dhcp]
enabled = true
interface = "br-lan"
lease_file = "{work}/leases.sqlite"

[[dhcp.subnet]]
name = "lan"
network = "10.89.0.0/24"
first = "10.89.0.100"
last = "10.89.0.150"
server = "10.89.0.1"
router = "10.89.0.1"
dns = ["10.89.0.1"]
lease_time = 600
interface = "br-lan"

[portal]
enabled = true
port = {port}
interface_address = "{ap}"
session_file = "{work}/sessions.sqlite"
sample_interval = 1.0
api_port = {api_port}
api_host = "{api_host}"
tls_certificate = "{cert}"
tls_key = "{key}"

[portal.operator]
username = "op"
password_hash = "{op_hash}"
admin_networks = ["10.89.0.0/24"]
"""
OPERATOR_PASSWORD = "lab-operator-pw"

# udhcpc runs its script with the event as $1 and the lease as environment
# variables; this one keeps each event's whole environment in a file.
UDHCPC_SCRIPT = """#!/bin/sh
env > "{work}/udhcpc.$1.env"
case "$1" in
  bound) ip addr add "$ip/$mask" dev "$interface" ;;
esac
"""


def need_lab():
    if os.getuid() != 0:
        raise SkipTest("needs root to build network namespaces, bind port 67 and change "
                       "their firewall")
    absent = missing("curl", "dhclient", "ipset", "iptables-legacy", "iptables-legacy-save")
    if absent:
        raise SkipTest(f"not installed: {', '.join(absent)}")


class PortalApiLabTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def setUp(self):
        need_lab()
        self.lab = Lab(lab_name(self), clients=1)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, False)
        self.work = tempfile.mkdtemp(prefix="nsportalapi-")
        self.addCleanup(shutil.rmtree, self.work, True)
        self.ca, cert, key = make_ca_and_certificate(self.work, API_HOST)
        self.sockets = socket_dir(self)
        self.config = write_config(self, CONFIG.format(
            port=PORT, api_port=API_PORT, api_host=API_HOST, ap=self.lab.ap_address,
            work=self.work, cert=cert, key=key,
            op_hash=hash_password(OPERATOR_PASSWORD, n=16, r=1, p=1)))
        self.daemon = spawn(self, "netsuite", [
            *TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap", "--socket-dir",
            self.sockets, "--config", self.config], netns=self.lab.netns("ap"))
        for line in ("firewall ready", "dhcp ready", "portal ready", "portal API ready"):
            yield self.daemon.when_line(line)
        self.bus = connect("ap", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.bus.close)
        self.portal = f"http://{self.lab.ap_address}:{PORT}"
        self.api = f"https://{API_HOST}:{API_PORT}/api"

    def run_in(self, role, argv, timeout=30):
        return deferToThread(self.lab.exec, role, argv, timeout=timeout)

    def curl(self, *args, seconds=3):
        return self.run_in("c1", ["curl", "-s", "--max-time", str(seconds), *args]).addCallback(
            lambda p: (p.returncode, p.stdout))

    @inlineCallbacks
    def dhclient(self):
        files = dhclient_files(self.work)
        self.addCleanup(self.lab.exec, "c1", ["dhclient", "-x", *files, "eth0"], timeout=30,
                        check=False)
        done = yield self.run_in("c1", ["dhclient", "-v", *files, "-1", "eth0"])
        self.assertEqual(done.returncode, 0, done.stderr)
        return [dict(field.split("=", 1) for field in line.split())
                for line in done.stdout.splitlines() if line.startswith("reason=")]

    @inlineCallbacks
    def udhcpc(self):
        """
        Run busybox udhcpc once in c1, asking for option 114; fire with the
        environment its script got for C{bound}.
        """
        if missing("udhcpc"):
            raise SkipTest("not installed: udhcpc (Debian package busybox or udhcpc)")
        script = os.path.join(self.work, "udhcpc.sh")
        with open(script, "w") as f:
            f.write(UDHCPC_SCRIPT.format(work=self.work))
        os.chmod(script, 0o755)
        self.addCleanup(self.lab.exec, "c1", ["ip", "addr", "flush", "dev", "eth0"],
                        timeout=30, check=False)
        # -f foreground, -q quit once bound, -n give up (exit 1) without a
        # lease after -t 3 discovers -T 1 s apart.
        done = yield self.run_in("c1", ["udhcpc", "-f", "-q", "-n", "-t", "3", "-T", "1",
                                        "-i", "eth0", "-s", script, "-O", "114"])
        self.assertEqual(done.returncode, 0, done.stderr)
        with open(os.path.join(self.work, "udhcpc.bound.env")) as f:
            return dict(line.split("=", 1) for line in f.read().splitlines() if "=" in line)

    def ask_api(self):
        return self.curl("-i", "--cacert", self.ca, "--resolve",
                         f"{API_HOST}:{API_PORT}:{self.lab.ap_address}", self.api)

    @inlineCallbacks
    def api_answer(self):
        """
        The API's JSON as the client gets it, once its status, type and
        user-portal-url are checked.
        """
        code, out = yield self.ask_api()
        self.assertEqual(code, 0, out)
        head, _, body = out.replace("\r\n", "\n").partition("\n\n")
        self.assertIn(" 200", head.splitlines()[0])
        self.assertRegex(head, r"(?im)^content-type: application/captive\+json\s*$")
        answer = json.loads(body)
        self.assertEqual(answer["user-portal-url"], f"https://{API_HOST}:{API_PORT}/login")
        return answer

    @inlineCallbacks
    def login(self):
        jar = os.path.join(self.work, "c1.jar")
        code, page = yield self.curl("-c", jar, "-b", jar, f"{self.portal}/login")
        self.assertEqual(code, 0)
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        code, out = yield self.curl("-c", jar, "-b", jar, "-o", "/dev/null", "-w",
                                    "%{http_code}", "--data", f"csrf={token}&accept=1",
                                    f"{self.portal}/login")
        self.assertEqual((code, out), (0, "303"))

    @inlineCallbacks
    def test_option_114_and_api(self):
        """
        dhclient asking for option 114 gets the HTTPS API URL; the API
        (certificate checked against the test CA) says captive before the
        login and not captive after.
        """
        bound = [fields for fields in (yield self.dhclient()) if fields["reason"] == "BOUND"]
        self.assertEqual(len(bound), 1)
        self.assertEqual(bound[0]["portal"], self.api)

        # firewall.lan_ports opens the API port to unauthorized clients.
        answer = yield self.api_answer()
        self.assertIs(answer["captive"], True)
        code, page = yield self.curl("--cacert", self.ca, "--resolve",
                                     f"{API_HOST}:{API_PORT}:{self.lab.ap_address}",
                                     answer["user-portal-url"])
        self.assertEqual(code, 0, page)
        self.assertIn('name="csrf"', page)

        yield self.login()
        sessions = yield self.bus.send("/portal/sessions")
        self.assertEqual([str(s["ip"]) for s in sessions], [bound[0]["ip"]])
        answer = yield self.api_answer()
        self.assertIs(answer["captive"], False)

        # A client not trusting the certificate's CA refuses the API.
        code, _ = yield self.curl("--resolve", f"{API_HOST}:{API_PORT}:{self.lab.ap_address}",
                                  self.api)
        self.assertEqual(code, 60)

    @inlineCallbacks
    def test_udhcpc_option_114_and_api(self):
        """
        busybox udhcpc asking for option 114 (C{-O 114}) gets the HTTPS API
        URL; the API says captive before the login and not captive after.
        """
        env = yield self.udhcpc()
        # busybox 1.35 has no name for option 114 (-O captive_portal is
        # "unknown option"): it hands it to the script as $opt114, the
        # option's bytes in hex.
        self.assertIn("opt114", env, sorted(env))
        self.assertEqual(bytes.fromhex(env["opt114"]).decode("ascii"), self.api)
        self.assertEqual((env["interface"], env["mask"]), ("eth0", "24"))

        answer = yield self.api_answer()
        self.assertIs(answer["captive"], True)

        yield self.login()
        sessions = yield self.bus.send("/portal/sessions")
        self.assertEqual([str(s["ip"]) for s in sessions], [env["ip"]])
        answer = yield self.api_answer()
        self.assertIs(answer["captive"], False)

    @inlineCallbacks
    def test_release_ends_session(self):
        """
        A client that releases its lease (dhclient -r sends DHCPRELEASE)
        loses its portal session: the next holder of the address starts at
        the portal ([portal] end_with_lease, on by default).
        """
        bound = [fields for fields in (yield self.dhclient()) if fields["reason"] == "BOUND"]
        yield self.login()
        sessions = yield self.bus.send("/portal/sessions")
        self.assertEqual([str(s["ip"]) for s in sessions], [bound[0]["ip"]])
        ended = self.bus.wait_for("/portal/logout", {"reason": "lease-released"}, timeout=15)
        done = yield self.run_in("c1", ["dhclient", "-r", "-v", *dhclient_files(self.work),
                                        "eth0"])
        self.assertEqual(done.returncode, 0, done.stderr)
        logout = yield ended
        self.assertEqual(str(logout["ip"]), bound[0]["ip"])
        self.assertEqual((yield self.bus.send("/portal/sessions")), [])

    def test_start_order(self):
        """
        The all-in-one starts each service once the one before it is ready:
        the firewall's rules are in place before DHCP answers, and DHCP
        answers before the portal listens.
        """
        lines = self.daemon.lines()
        seen = [next(i for i, line in enumerate(lines) if ready in line)
                for ready in ("firewall ready", "dhcp ready", "portal ready")]
        self.assertEqual(seen, sorted(seen), "\n".join(lines))

    @inlineCallbacks
    def test_operator_https_only(self):
        """
        curl on the plain portal port gets a 403 for /operator, even with
        the right credentials, and is never asked for them; over HTTPS
        (the test CA trusted) the page asks for them (401) and, given
        them, lists the client logged in.
        """
        bound = [fields for fields in (yield self.dhclient()) if fields["reason"] == "BOUND"]
        yield self.login()
        code, out = yield self.curl("-i", "-u", f"op:{OPERATOR_PASSWORD}",
                                    f"{self.portal}/operator")
        self.assertEqual(code, 0, out)
        head, _, body = out.replace("\r\n", "\n").partition("\n\n")
        self.assertIn(" 403", head.splitlines()[0])
        self.assertNotRegex(head, r"(?im)^www-authenticate:")
        self.assertIn(f"https://{API_HOST}:{API_PORT}/operator", body)

        https = ["--cacert", self.ca, "--resolve",
                 f"{API_HOST}:{API_PORT}:{self.lab.ap_address}"]
        operator = f"https://{API_HOST}:{API_PORT}/operator"
        code, out = yield self.curl("-i", *https, "-u", "op:wrong", operator)
        self.assertEqual(code, 0, out)
        head = out.replace("\r\n", "\n").partition("\n\n")[0]
        self.assertIn(" 401", head.splitlines()[0])
        self.assertRegex(head, r"(?im)^www-authenticate: basic")
        code, out = yield self.curl("-i", *https, "-u", f"op:{OPERATOR_PASSWORD}", operator)
        self.assertEqual(code, 0, out)
        head, _, body = out.replace("\r\n", "\n").partition("\n\n")
        self.assertIn(" 200", head.splitlines()[0])
        self.assertIn(f"<td>{bound[0]['ip']}</td>", body)
