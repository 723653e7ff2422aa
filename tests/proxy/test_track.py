"""L{netsuite.proxy.track}: the live connections as plain dicts."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netsuite.proxy.track import CONNECTING, ConnectionTable


class TableTests(SynchronousTestCase):
    def test_describe(self) -> None:
        clock = Clock()
        table = ConnectionTable(clock)
        clock.advance(100)
        entry = table.add(("2001:db8:89::5", 40000), ("2001:db8:100::1", 143), ["imap"])
        other = table.add(("10.89.0.11", 40001), ("198.51.100.1", 110), ["pop3"])
        clock.advance(5)
        entry.received["client"] += 10
        entry.last = clock.seconds()
        clock.advance(2.5)
        self.assertEqual(table.describe()[0], {
            "id": 1, "client": "[2001:db8:89::5]:40000", "server": "[2001:db8:100::1]:143",
            "modules": ["imap"], "state": CONNECTING, "from_client": 10, "from_server": 0,
            "age": 7.5, "idle": 2.5})
        self.assertEqual(len(table), 2)
        table.remove(entry)
        table.remove(entry)
        self.assertEqual([e.id for e in table], [other.id])
