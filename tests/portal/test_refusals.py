"""
The portal's and the firewall's decisions define refusals (what a fail-closed
hook's failure answers), tested through a login.
"""

from twisted.trial.unittest import SynchronousTestCase

from netsuite.portal.testing import A, PortalFixture


class FailClosedHookTests(SynchronousTestCase):
    """
    The portal's and the firewall's decisions define refusals, so a hook
    on them may fail closed: a deny-list that crashes refuses the login.
    """

    def test_authenticate_hook_fails_closed(self):
        f = PortalFixture()
        f.registry.listen("/portal/authenticate", lambda m: 1 / 0, first=True,
                          fail_closed=True)
        request = f.accept(A)
        self.assertEqual(request.responseCode, 403)
        self.assertIn(b"Logins cannot be checked right now", request.body())
        self.assertIsNone(f.sessions.get(A))
        self.flushLoggedErrors(ZeroDivisionError)

    def test_authorize_hook_fails_closed(self):
        f = PortalFixture()
        f.registry.listen("/firewall/authorize", lambda m: 1 / 0, first=True,
                          fail_closed=True)
        request = f.accept(A)
        self.assertEqual(request.responseCode, 403)
        self.assertIn(b"a required check of this device failed", request.body())
        self.assertNotIn(A, f.firewall.clients)
        self.flushLoggedErrors(ZeroDivisionError)
