"""
Tests for L{netsuite.portal.tls} (the HTTPS Captive Portal API) and
L{netsuite.portal.announce} (its URL in DHCP option 114).
"""

import datetime
import ipaddress
import json
import os

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from netsuite.config.schema import ConfigError
from netsuite.portal.auth import hash_password
from netsuite.portal import tap
from netsuite.services import find_service
from netsuite.portal.announce import Announcer
from netsuite.portal.service import PortalService
from netsuite.portal.tls import ApiResource, ApiSettings, api_endpoint, api_settings, load_tls
from netsuite.registry import EVENT, Registry, Stop

from .helpers import HOST, PortalFixture, FakeRequest

PLUGIN = find_service("portal")


def make_ca_and_certificate(directory, host, chain=False):
    """
    Write a test CA and a server certificate for C{host} (a name or an IP
    address) signed by it into C{directory}; return the paths
    C{(ca, certificate, key)}. With C{chain}, an intermediate CA signs the
    server certificate and follows it in the certificate file.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def build(subject, key, issuer, issuer_key, ca, extra=()):
        builder = (x509.CertificateBuilder().subject_name(name(subject))
                   .issuer_name(name(issuer)).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        for extension in extra:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("netsuite test CA", ca_key, "netsuite test CA", ca_key, True)
    issuer, issuer_key, intermediates = ca, ca_key, []
    if chain:
        middle_key = ec.generate_private_key(ec.SECP256R1())
        middle = build("netsuite test intermediate", middle_key, "netsuite test CA", ca_key, True)
        issuer, issuer_key, intermediates = middle, middle_key, [middle]
    try:
        san = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = build(host, key, issuer.subject.rfc4514_string()[3:], issuer_key, False,
                        [x509.SubjectAlternativeName([san])])
    paths = tuple(os.path.join(directory, n) for n in ("ca.pem", "cert.pem", "key.pem"))
    with open(paths[0], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], "wb") as f:
        for c in [certificate] + intermediates:
            f.write(c.public_bytes(serialization.Encoding.PEM))
    with open(paths[2], "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return paths


class Section:
    """
    A [portal] section with the defaults of the API keys.
    """

    def __init__(self, **kw):
        self.port = 5280
        self.interface_address = "10.89.0.1"
        self.api_port = 8443
        self.api_host = ""
        self.tls_certificate = ""
        self.tls_key = ""
        self.__dict__.update(kw)


class SettingsTests(SynchronousTestCase):
    def test_off_without_files(self):
        """
        The defaults (no certificate) and api_port = 0 mean no HTTPS API.
        """
        self.assertIsNone(api_settings(Section()))
        self.assertIsNone(api_settings(Section(api_port=0, tls_certificate="c", tls_key="k")))

    def test_url(self):
        settings = api_settings(Section(api_host="portal.example", tls_certificate="c",
                                        tls_key="k"))
        self.assertEqual(settings.url, "https://portal.example:8443/api")
        self.assertEqual(settings.interface, "10.89.0.1")
        self.assertEqual(api_settings(Section(tls_certificate="c", tls_key="k")).url,
                         "https://10.89.0.1:8443/api")
        self.assertEqual(ApiSettings("portal.example", 443, "c", "k").url,
                         "https://portal.example/api")
        self.assertEqual(ApiSettings("fd00::1", 8443, "c", "k").url, "https://[fd00::1]:8443/api")

    def test_inconsistent(self):
        for section in (Section(tls_certificate="c"), Section(tls_key="k"),
                        Section(tls_certificate="c", tls_key="k", api_port=5280),
                        Section(tls_certificate="c", tls_key="k", interface_address=""),
                        Section(tls_certificate="c", tls_key="k", api_host="a b/")):
            self.assertRaises(ConfigError, api_settings, section)

    def test_load(self):
        directory = self.mktemp()
        os.makedirs(directory)
        ca, cert, key = make_ca_and_certificate(directory, "portal.example", chain=True)
        settings = ApiSettings("portal.example", 8443, cert, key)
        self.assertIsNotNone(load_tls(settings))
        endpoint = api_endpoint(reactor, settings, load_tls(settings))
        self.assertEqual(endpoint._port, 8443)

    def test_load_problems(self):
        """
        Wrong host, a key of another certificate, missing or non-PEM files:
        ConfigError.
        """
        one, two = self.mktemp(), self.mktemp()
        os.makedirs(one)
        os.makedirs(two)
        _, cert, key = make_ca_and_certificate(one, "portal.example")
        _, _, other_key = make_ca_and_certificate(two, "10.89.0.1")
        for settings in (ApiSettings("other.example", 8443, cert, key),
                         ApiSettings("portal.example", 8443, cert, other_key),
                         ApiSettings("portal.example", 8443, cert + ".absent", key),
                         ApiSettings("portal.example", 8443, key, key)):
            self.assertRaises(ConfigError, load_tls, settings)
        _, ip_cert, ip_key = make_ca_and_certificate(two, "10.89.0.1")
        load_tls(ApiSettings("10.89.0.1", 8443, ip_cert, ip_key))
        self.assertRaises(ConfigError, load_tls, ApiSettings("10.89.0.2", 8443, ip_cert, ip_key))


class TapTests(SynchronousTestCase):
    def config(self, extra):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.ca, cert, key = make_ca_and_certificate(directory, "portal.example")
        path = os.path.join(directory, "netsuite.toml")
        with open(path, "w") as f:
            f.write(f'[portal]\nsession_file = "{directory}/s.sqlite"\n'
                    f'tls_certificate = "{cert}"\ntls_key = "{key}"\n{extra}')
        return path

    def test_options(self):
        options = PLUGIN.options()
        options.parseOptions(["--config", self.config('api_host = "portal.example"\n')])
        self.assertEqual(tap.api_url(options.config.portal), "https://portal.example:8443/api")
        top = PLUGIN.makeService(options)
        [service] = [s for s in top if isinstance(s, PortalService)]
        self.assertIsInstance(service.api_site.resource, ApiResource)
        self.assertEqual(service.api_url, "https://portal.example:8443/api")
        self.assertEqual(service.announcer.url, service.api_url)

    def test_operator_needs_https(self):
        """
        An operator page with no HTTPS site to serve it is a config error;
        with the HTTPS site it is served there.
        """
        from twisted.python import usage
        operator = (f'\n[portal.operator]\nusername = "op"\n'
                    f'password_hash = "{hash_password("x", n=16, r=1, p=1)}"\n')
        error = self.assertRaises(usage.UsageError, PLUGIN.options().parseOptions,
                                  ["--config", self.config("api_port = 0\n" + operator)])
        self.assertIn("HTTPS only", str(error))
        options = PLUGIN.options()
        options.parseOptions(["--config", self.config('api_host = "portal.example"\n'
                                                      + operator)])
        self.assertEqual(options.config.portal.operator.username, "op")

    def test_stats_keys(self):
        """
        [portal] stats_process reaches the status page ("" by default: this
        process) and [portal.operator] graphs_url the operator page.
        """
        operator = (f'\n[portal.operator]\nusername = "op"\n'
                    f'password_hash = "{hash_password("x", n=16, r=1, p=1)}"\n'
                    f'graphs_url = "https://portal.example:8444/"\n')
        for extra, process in (("", ""), ('stats_process = "stats"\n', "stats")):
            options = PLUGIN.options()
            options.parseOptions(["--config", self.config(
                'api_host = "portal.example"\n' + extra + operator)])
            top = PLUGIN.makeService(options)
            [service] = [s for s in top if isinstance(s, PortalService)]
            resource = service.site.resource
            self.assertEqual(resource.stats_process, process)
            self.assertEqual(resource.graphs_url, "https://portal.example:8444/")

    def test_wrong_host(self):
        from twisted.python import usage
        self.assertRaises(usage.UsageError, PLUGIN.options().parseOptions,
                          ["--config", self.config('api_host = "other.example"\n')])


class ApiResourceTests(SynchronousTestCase):
    def request(self, method, uri, template_dir=""):
        f = PortalFixture()
        if template_dir:
            from netsuite.portal.resource import PortalResource
            f.resource = PortalResource(f.portal, f.clock, template_dir=template_dir)
        resource = ApiResource(f.resource, HOST)
        request = FakeRequest(method, uri, b"portal.example:8443")
        request.render(resource)
        f.registry.eventual.flush_sync()
        return request

    def test_api(self):
        """
        /api is the portal's own answer, whatever the Host of the request.
        """
        request = self.request(b"GET", b"/api")
        self.assertEqual(request.responseCode or 200, 200)
        self.assertEqual(request.header(b"content-type"), b"application/captive+json")
        self.assertEqual(request.header(b"cache-control"), b"no-store")
        self.assertIs(json.loads(request.body())["captive"], True)

    def test_login_page(self):
        """
        The login page the API's user-portal-url points to is served too.
        """
        request = self.request(b"GET", b"/login")
        self.assertEqual(request.responseCode or 200, 200)
        self.assertIn(b'name="csrf"', request.body())

    def test_static(self):
        """
        The operator's static files (the login page's logo and style)
        are served over HTTPS too.
        """
        import os
        directory = self.mktemp()
        os.mkdir(directory)
        with open(os.path.join(directory, "logo.png"), "wb") as f:
            f.write(b"\x89PNG")
        request = self.request(b"GET", b"/static/logo.png", template_dir=directory)
        self.assertEqual((request.responseCode or 200, request.body()), (200, b"\x89PNG"))
        self.assertEqual(request.header(b"content-type"), b"image/png")
        self.assertEqual(self.request(b"POST", b"/static/logo.png", directory).responseCode,
                         404)

    def test_other(self):
        """
        Anything else on the HTTPS port is a 404.
        """
        for method, uri in ((b"POST", b"/api"), (b"GET", b"/"), (b"GET", b"/operator/x")):
            request = self.request(method, uri)
            self.assertEqual(request.responseCode, 404)
            self.assertEqual(request.header(b"cache-control"), b"no-store")


URL = "https://portal.example:8443/api"


class AnnounceTests(SynchronousTestCase):
    def dhcp(self):
        registry = Registry("ap", reactor)
        registry.declare("/dhcp/options")
        registry.listen("/dhcp/options", lambda message: Stop({}))
        return registry

    def options(self, registry, requested):
        results = []
        registry.send("/dhcp/options", {"type": "OFFER", "requested_options": requested,
                                        "options": {}}).addCallback(results.append)
        registry.eventual.flush_sync()
        return results[0]

    def test_requested(self):
        """
        The URL goes to a client asking for option 114; others get the
        other listeners' answer.
        """
        registry = self.dhcp()
        announcer = Announcer(registry, URL)
        self.assertIsNotNone(announcer.start())
        self.assertEqual(self.options(registry, [1, 3, 6, 114]), {"captive_portal": URL})
        self.assertEqual(self.options(registry, [1, 3, 6]), {})
        self.assertEqual(self.options(registry, []), {})
        announcer.stop()
        self.assertEqual(self.options(registry, [114]), {})

    def test_first(self):
        """
        The listener goes in front of one already there.
        """
        registry = self.dhcp()
        registry.listen("/dhcp/options", lambda message: Stop({"captive_portal": "x"}),
                        first=True)
        Announcer(registry, URL).start()
        self.assertEqual(self.options(registry, [114]), {"captive_portal": URL})

    def test_no_dhcp(self):
        """
        No /dhcp/options here: nothing added, nothing raised.
        """
        registry = Registry("ap", reactor)
        registry.declare("/dhcp/other", kind=EVENT)
        announcer = Announcer(registry, URL)
        self.assertIsNone(announcer.start())
        announcer.stop()

    def test_remote(self):
        """
        With dhcp_process, the listener goes to that process's mailbox,
        first, with a short deadline.
        """
        calls = []

        class Handle:
            removed = False

            def remove(self):
                self.removed = True

        class Fake:
            name = "portal"

            def listen(self, address, fn, **kw):
                calls.append((address, kw))
                return handle

        handle = Handle()
        announcer = Announcer(Fake(), URL, "dhcp")
        self.assertIs(announcer.start(), handle)
        [(address, kw)] = calls
        self.assertEqual(address, "dhcp:/dhcp/options")
        self.assertTrue(kw["first"])
        self.assertLessEqual(kw["deadline"], 1.0)
        announcer.stop()
        self.assertTrue(handle.removed)
        self.assertEqual(Announcer(Fake(), URL, "portal").address, "/dhcp/options")


class ServiceTests(TestCase):
    @inlineCallbacks
    def test_https(self):
        """
        The service serves the API over HTTPS with the configured
        certificate; a client trusting the CA gets the captive+json answer.
        """
        from twisted.internet.ssl import Certificate
        from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, readBody
        from twisted.web.server import Site

        directory = self.mktemp()
        os.makedirs(directory)
        ca, cert, key = make_ca_and_certificate(directory, "localhost")
        settings = ApiSettings("localhost", 0, cert, key, "127.0.0.1")
        f = PortalFixture()
        service = PortalService(f.portal, Site(f.resource), reactor, "tcp:0:interface=127.0.0.1",
                                0, api_site=Site(ApiResource(f.resource, HOST)),
                                api_endpoint=api_endpoint(reactor, settings, load_tls(settings)),
                                api_url=settings.url)
        service.startService()
        self.addCleanup(service.stopService)
        port = service.api_port.getHost().port
        with open(ca, "rb") as pem:
            trust = Certificate.loadPEM(pem.read())
        agent = Agent(reactor, BrowserLikePolicyForHTTPS(trustRoot=trust))
        response = yield agent.request(b"GET", b"https://localhost:%d/api" % port)
        body = yield readBody(response)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"),
                         [b"application/captive+json"])
        self.assertIs(json.loads(body)["captive"], True)
