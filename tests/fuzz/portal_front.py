# -*- test-case-name: tests.fuzz.test_campaigns -*-
"""
Fuzz target C{portal-front}: any bytes from an unauthorized client on a
portal connection, in any reads (L{tests.fuzz.common.split}); the
redirect front answers plain foreign GETs and HEADs itself and hands the
rest to twisted.web. Invariants: L{tests.fuzz.portal_http}.
"""

from __future__ import annotations

from netsuite.portal.testing import PortalFixture

from .common import corpus_dir
from .portal_http import Driver

NAME = "portal-front"
CORPUS = corpus_dir(NAME)

_driver = None


def check(data: bytes) -> None:
    global _driver
    if _driver is None:
        _driver = Driver(PortalFixture())
    _driver.check(data)
