"""
Who may serve the bus, with real processes: the daemon refuses a socket
directory another user owns, and a client refuses a socket served by a
uid it does not trust (SO_PEERCRED), before sending it anything.
"""

import os

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SkipTest, TestCase

from netsuite.lab.child import PYTHON

from .procs import TWISTD, socket_dir, spawn

HOOK_CLI = os.path.join(os.path.dirname(os.sys.executable), "netsuite-hook")
NOBODY = 65534

# A Unix-socket server that says when it listens, and how many bytes it was
# sent once its one client has gone.
IMPOSTOR = """
import os, socket, sys
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
server.listen(1)
print("listening as uid", os.getuid(), flush=True)
client, _ = server.accept()
client.settimeout(20)
received = 0
while True:
    data = client.recv(65536)
    if not data:
        break
    received += len(data)
print("client gone after", received, "bytes", flush=True)
"""


class BusTrustTests(TestCase):
    """
    Neither side of the bus trusts a socket of another user's.
    """

    timeout = 60

    def setUp(self) -> None:
        if os.getuid() != 0:
            raise SkipTest("needs root to run a process as nobody and chown to it")

    @inlineCallbacks
    def test_socket_dir_of_another_user_refused(self):
        """
        twistd refuses to start on a socket directory owned by nobody,
        naming the directory and its owner, and makes no socket there.
        """
        sockets = socket_dir(self)
        os.chown(sockets, NOBODY, NOBODY)
        daemon = spawn(self, "daemon", TWISTD + ["-n", "--pidfile=", "netsuite", "--name",
                                                 "alpha", "--socket-dir", sockets])
        code = yield daemon.when_ended()
        self.assertNotEqual(code, 0, daemon.output())
        self.assertIn(f"bus.socket_dir {sockets} is owned by uid {NOBODY}; it must be owned "
                      "by root or by the daemon", daemon.output())
        self.assertEqual(os.listdir(sockets), [])

    @inlineCallbacks
    def test_server_of_another_uid_refused(self):
        """
        A socket at the expected path, served by a process running as
        nobody (in a root-owned directory others may write to), is refused
        by netsuite-hook, which says who serves it, and sends it nothing.
        """
        sockets = socket_dir(self)
        os.chmod(sockets, 0o1777)
        path = os.path.join(sockets, "alpha.sock")
        impostor = spawn(self, "impostor", [PYTHON, "-c", IMPOSTOR, path],
                         uid=NOBODY, gid=NOBODY)
        yield impostor.when_line(rf"listening as uid {NOBODY}")
        hook = spawn(self, "netsuite-hook", [HOOK_CLI, "--socket-dir", sockets, "send",
                                             "alpha:/system/ping"])
        code = yield hook.when_ended()
        self.assertEqual(code, 3, hook.output())
        self.assertIn(f"refusing process alpha at unix:path={path}: its socket is served by "
                      f"uid {NOBODY} (pid {impostor.pid})", hook.output())
        yield impostor.when_line(r"client gone after 0 bytes")
