# -*- test-case-name: tests.portal.test_tls -*-
"""
The Captive Portal API (RFC 8908) over HTTPS, as RFC 8910 and Android
require: its URL, the TLS settings of C{[portal]}, the HTTPS endpoint and
the resource serving the portal's C{/api} (and nothing else) on it.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Optional
from urllib.parse import urlsplit

from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.web.resource import Resource

from ..config.schema import ConfigError

__all__ = ["ApiSettings", "ApiResource", "api_settings", "api_endpoint", "load_tls"]

_PEM_CERT_RE = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----",
                          re.DOTALL)
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


class ApiSettings:
    """
    The HTTPS API of a portal.

    @ivar host: the host name (or IP address) in the URL, which the
        certificate names.
    @ivar port: the HTTPS port.
    @ivar certificate: path of the PEM certificate (the server's first,
        then any intermediate certificates).
    @ivar key: path of the PEM private key.
    @ivar interface: the address to listen on ("" for all).
    """

    def __init__(self, host: str, port: int, certificate: str, key: str,
                 interface: str = "") -> None:
        self.host = host
        self.port = port
        self.certificate = certificate
        self.key = key
        self.interface = interface

    @property
    def url(self) -> str:
        """
        The API URL, C{https://<host>[:<port>]/api} (what option 114 carries).
        """
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}{'' if self.port == 443 else f':{self.port}'}/api"


def api_settings(section: Any, source: str = "config") -> Optional[ApiSettings]:
    """
    The HTTPS API's settings from C{[portal]}, or None when it is off
    (C{api_port = 0}, or no C{tls_certificate} and C{tls_key} given).
    Raise L{ConfigError} on an inconsistent section.
    """
    if not section.api_port:
        return None
    certificate, key = section.tls_certificate, section.tls_key
    if not certificate and not key:
        return None
    if not (certificate and key):
        raise ConfigError(f"{source}: [portal] needs both tls_certificate and tls_key "
                          f"(or neither, or api_port = 0)")
    if section.api_port == section.port:
        raise ConfigError(f"{source}: [portal] api_port must differ from port "
                          f"({section.port})")
    host = section.api_host or section.interface_address
    if host in ("", "0.0.0.0", "::"):
        raise ConfigError(f"{source}: [portal] needs api_host (the name in the "
                          f"certificate) when interface_address is "
                          f"{section.interface_address!r}")
    if not _is_ip(host) and not _HOST_RE.match(host):
        raise ConfigError(f"{source}: [portal] api_host {host!r} is not a host name "
                          f"or an IP address")
    return ApiSettings(host, section.api_port, certificate, key, section.interface_address)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def load_tls(settings: ApiSettings, source: str = "config", where: str = "[portal]",
             host_key: str = "api_host") -> Any:
    """
    Read the certificate (and chain) and key; check they belong together
    and that the certificate names C{settings.host}. Return the
    C{CertificateOptions}, or raise L{ConfigError} naming the section
    C{where} (and C{host_key}, the key of the host), as the stats
    service's operator page (C{[stats.operator]}) loads its own.
    """
    try:
        from OpenSSL import crypto
        from twisted.internet import ssl
    except ImportError as e:  # pragma: no cover - a dependency
        raise ConfigError(f"{source}: {where} tls_certificate needs pyOpenSSL: {e}") from None
    try:
        with open(settings.certificate, "rb") as f:
            certificates = _PEM_CERT_RE.findall(f.read())
        with open(settings.key, "rb") as f:
            key_pem = f.read()
    except OSError as e:
        raise ConfigError(f"{source}: {where} cannot read the TLS files: {e}") from None
    if not certificates:
        raise ConfigError(f"{source}: {where} tls_certificate {settings.certificate!r} "
                          f"holds no PEM certificate")
    try:
        leaf = ssl.Certificate.loadPEM(certificates[0])
        chain = [ssl.Certificate.loadPEM(pem).original for pem in certificates[1:]]
        key = ssl.KeyPair.load(key_pem, crypto.FILETYPE_PEM)
        options = ssl.CertificateOptions(privateKey=key.original, certificate=leaf.original,
                                         extraCertChain=chain or None)
        options.getContext()  # checks that the key matches the certificate
    except Exception as e:
        raise ConfigError(f"{source}: {where} bad tls_certificate or tls_key: {e}") from None
    problem = _names_mismatch(leaf.original.to_cryptography(), settings.host, host_key)
    if problem:
        raise ConfigError(f"{source}: {where} the certificate {settings.certificate!r} "
                          f"{problem}")
    return options


def _names_mismatch(certificate: Any, host: str, host_key: str = "api_host") -> Optional[str]:
    """
    Why C{certificate} (a cryptography certificate) does not name C{host},
    or None when it does.
    """
    import service_identity
    from service_identity.cryptography import (verify_certificate_hostname,
                                               verify_certificate_ip_address)
    try:
        if _is_ip(host):
            verify_certificate_ip_address(certificate, host)
        else:
            verify_certificate_hostname(certificate, host.rstrip("."))
    except (service_identity.VerificationError,
            service_identity.CertificateError) as e:
        return f"does not name {host_key} {host!r} ({e})"
    return None


def api_endpoint(reactor: Any, settings: ApiSettings, tls_options: Any) -> Any:
    """
    The HTTPS server endpoint (built from objects: no strports string, so
    no escaping of paths or addresses).
    """
    return SSL4ServerEndpoint(reactor, settings.port, tls_options,
                              interface=settings.interface)


class ApiResource(Resource):
    """
    The HTTPS site: C{/api}, the login, status and logout pages that
    the API's C{user-portal-url} points to, and the operator page, answered by the portal's own
    resource, which dispatches on Host (the HTTPS request's Host names the
    API host, so it is replaced by the portal's); anything else is a 404.

    @param portal_resource: the portal's whole site (a leaf resource).
    @param portal_host: the C{host[:port]} that resource answers for.
    """

    isLeaf = True

    def __init__(self, portal_resource: Any, portal_host: str) -> None:
        Resource.__init__(self)
        self.portal_resource = portal_resource
        self.portal_host = portal_host

    # The API, the user portal it points to (RFC 8908: over HTTPS) and the
    # operator page (served over HTTPS only).
    SERVED = {(b"GET", "/api"), (b"HEAD", "/api"), (b"GET", "/login"), (b"POST", "/login"),
              (b"GET", "/status"), (b"POST", "/logout"), (b"GET", "/operator"),
              (b"POST", "/operator/kick")}

    def render(self, request: Any) -> Any:
        path = urlsplit(request.uri.decode("latin-1")).path
        static = path.startswith("/static/") and request.method in (b"GET", b"HEAD")
        if (request.method, path) not in self.SERVED and not static:
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            request.setHeader(b"Cache-Control", b"no-store")
            return b"Not found: this port serves /api, the login pages and /static.\n"
        request.requestHeaders.setRawHeaders(b"host", [self.portal_host.encode("ascii")])
        return self.portal_resource.render(request)
