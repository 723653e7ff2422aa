"""
A stand-in mail module for the service's tests: a login per "LOGIN user
ok|no" line; done after a successful one.
"""

from typing import Tuple

from netsuite.proxy.filters import Connection, Event, Step
from netsuite.proxy.modules import Passed


class Logins:
    def __init__(self) -> None:
        self.done = False

    def feed(self, data: bytes) -> Step:
        events = []
        for line in data.split(b"\n"):
            words = line.decode("latin-1").split()
            if len(words) == 3 and words[0] == "LOGIN":
                events.append(Event("login", {
                    "protocol": "imap", "user": words[1],
                    "outcome": "success" if words[2] == "ok" else "failure",
                    "evidence": "seen"}))
                if words[2] == "ok":
                    self.done = True
                    break
        return Step(data, events)

    def end(self) -> Step:
        return Step()


def logins(conn: Connection) -> Tuple[Logins, Passed]:
    return Logins(), Passed()
