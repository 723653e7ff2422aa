"""
A real slapd on loopback for tests: the lab's peer with C{ou=people} and
one user, alice (password C{wonderland}), added over LDAP.
"""

import os
import socket

from twisted.trial.unittest import SkipTest

from netsuite.lab.peer import binary
from netsuite.lab.peers import SlapdPeer, missing

ALICE_PASSWORD = "wonderland"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def slapd_with_alice(test, suffix: str = "dc=example,dc=test", hosts=(),
                     netns=None) -> SlapdPeer:
    """
    Start slapd for C{test} (stopped at its clean-up), on loopback (of
    namespace C{netns}, if given), with C{hosts} under C{ou=hosts} and
    alice under C{ou=people}; skip when OpenLDAP is missing.
    """
    absent = missing("slapd", "slapadd", "ldapadd")
    if absent:
        raise SkipTest(f"needs OpenLDAP's {', '.join(absent)} (Debian: slapd, ldap-utils)")
    if not os.path.exists("/etc/ldap/schema/nis.schema"):
        raise SkipTest("needs /etc/ldap/schema/nis.schema (Debian: slapd)")
    slapd = SlapdPeer(netns, "127.0.0.1", free_port(), suffix=suffix, hosts=list(hosts))
    test.addCleanup(slapd.stop)
    slapd.start(timeout=10)
    ldif = (f"dn: ou=people,{suffix}\nobjectClass: organizationalUnit\nou: people\n\n"
            f"dn: uid=alice,ou=people,{suffix}\nobjectClass: account\n"
            f"objectClass: simpleSecurityObject\nuid: alice\n"
            f"userPassword: {ALICE_PASSWORD}\n\n")
    slapd.run([binary("ldapadd"), "-x", "-H", slapd.url, "-D", slapd.admin_dn,
               "-w", slapd.password], input=ldif.encode(), timeout=10)
    return slapd
