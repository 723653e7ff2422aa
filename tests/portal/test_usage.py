"""
The status page's usage today, asked of the stats service's
C{/stats/usage} (L{netsuite.portal.usage}): shown when stats answers in
time, left out (never a stall, never an error) when it is absent, slow,
failing or makes no sense.
"""

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from netsuite.portal.resource import CSRF_COOKIE
from netsuite.portal.usage import DEADLINE, usage_line
from netsuite.registry import Stop
from netsuite.stats.model import Totals, Usage

from .helpers import A, MAC_A, PortalFixture


def found(down, up):
    usage = Usage(str(A), str(MAC_A), total=Totals(up * 2, down * 2, 5, 5),
                  today=Totals(up, down, 3, 3), day="2026-12-04")
    return {"found": True, "usage": usage.as_dict()}


class StatusUsageTests(SynchronousTestCase):
    def setUp(self):
        self.f = PortalFixture()
        self.f.resource.stats_process = ""  # stats in this process
        self.assertEqual(self.f.accept(A).responseCode, 303)
        self.asked = []

    def stats(self, answer):
        """Declare /stats/usage here, answered by C{answer(message)}."""
        self.f.registry.declare("/stats/usage")

        def listener(message):
            self.asked.append(message)
            return answer(message)
        self.f.registry.listen("/stats/usage", listener)

    def status(self):
        return self.f.request(b"GET", b"/status", cookies={CSRF_COOKIE: b"A" * 32})

    def assertWithout(self, r):
        self.assertEqual(r.responseCode, 200)
        body = r.body().decode()
        self.assertIn("Connected as 10.89.0.11", body)
        self.assertIn("Log out", body)
        self.assertNotIn("Used today", body)

    def test_shown(self):
        """Stats answers: the page says what the client used today, each way."""
        self.stats(lambda m: Stop(found(4_200_000, 1500)))
        r = self.status()
        self.assertEqual(r.responseCode, 200)
        self.assertIn('<p class="usage">Used today: 4.2 MB down, 1.5 kB up</p>',
                      r.body().decode())
        self.assertEqual(self.asked, [{"ip": A}])

    def test_no_stats(self):
        """No /stats/usage in the process: the page without the line, at once."""
        self.assertWithout(self.status())
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_unreachable_process(self):
        """A stats_process this registry cannot reach: the page without the line."""
        self.f.resource.stats_process = "stats"
        self.assertWithout(self.status())

    def test_not_asked(self):
        """stats_process None (the fixture's default): nothing asked."""
        self.stats(lambda m: Stop(found(1, 1)))
        self.f.resource.stats_process = None
        self.assertWithout(self.status())
        self.assertEqual(self.asked, [])

    def test_slow(self):
        """
        Stats that does not answer: the page waits DEADLINE seconds, then
        goes without the line; the late answer changes nothing.
        """
        late = []
        self.stats(lambda m: late.append(Deferred()) or late[-1])
        r = self.status()
        self.assertFalse(r.finished)
        self.f.clock.advance(DEADLINE - 0.01)
        self.assertFalse(r.finished)
        self.f.clock.advance(0.01)
        self.assertTrue(r.finished)
        self.assertWithout(r)
        late[0].callback(Stop(found(1, 1)))
        self.f.clock.advance(5)
        self.f.registry.eventual.flush_sync()
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_not_found_or_nonsense(self):
        """Not found, a failing listener, answers that make no sense: no line."""
        answers = [lambda m: Stop({"found": False}),
                   lambda m: Stop({"found": True, "usage": {"today": {"bytes_down": "x",
                                                                      "bytes_up": 1}}}),
                   lambda m: Stop({"found": True, "usage": {"today": {"bytes_down": -1,
                                                                      "bytes_up": 1}}}),
                   lambda m: Stop({"found": True}), lambda m: Stop([1, 2]),
                   lambda m: 1 / 0]
        for answer in answers:
            self.f = PortalFixture()
            self.f.resource.stats_process = ""
            self.f.accept(A)
            self.stats(answer)
            self.assertWithout(self.status())
        self.flushLoggedErrors(ZeroDivisionError)

    def test_line(self):
        """The line in human units; none without an answer."""
        self.assertEqual(usage_line(None), "")
        self.assertEqual(usage_line((0, 999)),
                         '<p class="usage">Used today: 0 B down, 999 B up</p>')
