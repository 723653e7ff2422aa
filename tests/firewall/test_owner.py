"""
Tests for L{netsuite.firewall.owner}: one firewall owner per namespace.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from netsuite.firewall.owner import FirewallOwned, OwnerLock, netns_key


class OwnerLockTests(SynchronousTestCase):
    def setUp(self):
        self.directory = self.mktemp()

    def test_second_is_refused_with_the_pid(self):
        """
        A second lock on the same namespace is refused, naming the first's
        pid; once the first lets go the second may take it, and releasing
        removes the file.
        """
        first, second = OwnerLock(self.directory), OwnerLock(self.directory)
        first.acquire()
        first.acquire()  # idempotent for the owner
        path = first.path
        with open(path) as f:
            self.assertEqual(f.read(), f"{os.getpid()}\n")
        error = self.assertRaises(FirewallOwned, second.acquire)
        self.assertIn(f"pid {os.getpid()}", str(error))
        self.assertIn(path, str(error))
        first.release()
        self.assertFalse(os.path.exists(path))
        second.acquire()
        self.assertEqual(second.path, path)
        second.release()
        second.release()  # harmless

    def test_file_names_the_namespace(self):
        """
        The lock file is named after this thread's network namespace.
        """
        lock = OwnerLock(self.directory)
        lock.acquire()
        self.addCleanup(lock.release)
        self.assertEqual(os.path.basename(lock.path), f"firewall-netns-{netns_key()}.lock")
        st = os.stat("/proc/self/ns/net")
        self.assertEqual(netns_key(), f"{st.st_dev}-{st.st_ino}")
