"""
The namespace lab: a simulated access point with N clients and an upstream
on one machine, for demos, debugging, benchmarks and integration tests, and
real peers (HTTP, SMTP, IMAP/POP3, LDAP, DNS, a DNS tunnel) to run inside
it. L{Child} runs any other process (a daemon, a hook script, a client)
and awaits its lines.

    from netsuite.lab import Lab
    with Lab("demo", clients=2).up(addresses=True) as lab:
        lab.exec("c1", ["busybox", "ping", "-c1", lab.internet], check=True)
"""

from .child import Child, ChildError
from .layout import LabError, Layout
from .netns import Lab
from .dnspeers import IodinedPeer, UnboundPeer, iodine_tunnel
from .peers import DovecotPeer, HttpPeer, Peer, PeerError, SlapdPeer, SmtpPeer

__all__ = ["Lab", "LabError", "Layout", "Child", "ChildError", "Peer", "PeerError",
           "HttpPeer", "SmtpPeer", "DovecotPeer", "SlapdPeer", "UnboundPeer", "IodinedPeer",
           "iodine_tunnel"]
