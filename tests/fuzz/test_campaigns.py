"""
The short fuzz campaigns CI runs: every target's corpus replayed, then a
few hundred derandomized hypothesis examples of plain bytes, mutated
seeds and inputs with the target's structure (L{tests.fuzz.strategies}).
The long campaigns are C{scripts/fuzz.py}'s.
"""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from . import bus_box, bus_values, dhcp_packet, dhcp_server, portal_forms, portal_front
from .common import corpus, mutate
from .strategies import (SELECTOR, amp_streams, dhcp_datagrams, http_requests, typed_json)

SHORT = settings(derandomize=True, database=None, deadline=None, max_examples=300,
                 suppress_health_check=list(HealthCheck))


def mutated(module: ModuleType) -> Any:
    seeds = [data for _, data in corpus(module.NAME)]
    return st.integers(0, 2 ** 32 - 1).map(lambda seed: mutate(random.Random(seed), seeds))


class _Campaign:
    """
    A target's corpus and its short campaign; subclasses name the module
    and the strategy of structured inputs.
    """

    target: ModuleType
    structured: Any = st.nothing()
    examples = 300

    def test_corpus(self) -> None:
        """
        Every seed of the corpus (real captures, and inputs that once
        crashed) holds the target's invariants.
        """
        seeds = corpus(self.target.NAME)
        self.assertGreater(len(seeds), 5)
        for name, data in seeds:
            try:
                self.target.check(data)
            except Exception as e:  # name the seed
                self.fail(f"{self.target.NAME} seed {name}: {e!r}")

    def test_campaign(self) -> None:
        """
        Plain bytes, mutated seeds and structured inputs hold the
        target's invariants.
        """
        inputs = st.one_of(st.binary(max_size=600), mutated(self.target), self.structured)

        @settings(SHORT, max_examples=self.examples)
        @given(inputs)
        def run(data: bytes) -> None:
            self.target.check(data)
        run()


class DHCPPacketTests(_Campaign, SynchronousTestCase):
    target = dhcp_packet
    structured = dhcp_datagrams()
    examples = 1000


class DHCPServerTests(_Campaign, SynchronousTestCase):
    target = dhcp_server
    structured = st.builds(lambda source, datagram: bytes([source]) + datagram,
                           SELECTOR, dhcp_datagrams())
    examples = 500


class PortalFrontTests(_Campaign, SynchronousTestCase):
    target = portal_front
    structured = http_requests()


class PortalFormsTests(_Campaign, SynchronousTestCase):
    target = portal_forms
    structured = http_requests()


class BusBoxTests(_Campaign, SynchronousTestCase):
    target = bus_box
    structured = amp_streams()


class BusValuesTests(_Campaign, SynchronousTestCase):
    target = bus_values
    structured = typed_json()
    examples = 1000
