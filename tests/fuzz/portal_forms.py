# -*- test-case-name: tests.fuzz.test_campaigns -*-
"""
Fuzz target C{portal-forms}: requests for the portal's own pages (the
login and logout forms, the status page and API, the operator page and
its kick form, over plain HTTP and over TLS), from a client the portal
knows and one it does not: the first byte of an input chooses the reads
(L{tests.fuzz.common.split}, bit 7 and the low bits), TLS (bit 6) and the
client (bit 5); the rest is the bytes sent. Invariants:
L{tests.fuzz.portal_http}.
"""

from __future__ import annotations

from netsuite.portal.testing import A, PortalFixture

from .common import corpus_dir
from .portal_http import B, Driver, with_operator

NAME = "portal-forms"
CORPUS = corpus_dir(NAME)

_driver = None


def check(data: bytes) -> None:
    global _driver
    if _driver is None:
        _driver = Driver(with_operator(PortalFixture()))
    if not data:
        return
    _driver.check(data, secure=bool(data[0] & 64), client=B if data[0] & 32 else str(A))
