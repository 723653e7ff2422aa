"""
Tests for L{netsuite.firewall.compact}: the compact counters' rows.
"""

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from netsuite.firewall.compact import ROW_SIZE, pack_rows, rows_of, unpack_rows
from netsuite.firewall.interfaces import Traffic

A = ipaddress.IPv4Address("10.89.0.11")
B = ipaddress.IPv4Address("10.89.0.2")


class CompactTests(SynchronousTestCase):
    def test_round_trip(self):
        """
        Rows come back in address order with the model's counter order;
        a client without a MAC is left out.
        """
        data = pack_rows({A: Traffic(1, 2, 3, 4), B: Traffic(2 ** 64 - 1, 0, 0, 5),
                          ipaddress.IPv4Address("10.89.0.3"): Traffic()},
                         {A: bytes.fromhex("024e0000000b"), B: bytes(6)})
        self.assertEqual(len(data), 2 * ROW_SIZE)
        rows = list(unpack_rows(data))
        self.assertEqual(rows, [("10.89.0.2", "00:00:00:00:00:00", 2 ** 64 - 1, 0, 0, 5),
                                ("10.89.0.11", "02:4e:00:00:00:0b", 1, 3, 2, 4)])
        self.assertEqual(rows_of(rows), data)

    def test_malformed(self):
        """Data that is not whole rows is refused, naming the row size."""
        for bad in (b"x" * (ROW_SIZE + 1), "text", None):
            with self.assertRaises(ValueError) as caught:
                list(unpack_rows(bad))
            self.assertIn(str(ROW_SIZE), str(caught.exception))
