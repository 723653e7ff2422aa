"""
Tests for L{netsuite.capabilities}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from netsuite.capabilities import (NUMBERS, MalformedStatus, ProcessPrivileges,
                                   UnknownCapability, mask, names, parse_status)

# /proc/PID/status of a process started by
# setpriv --reuid=61000 --regid=61000 --clear-groups --no-new-privs
#   --inh-caps=+net_admin,+net_raw --ambient-caps=+net_admin,+net_raw
#   --bounding-set=-all,+net_admin,+net_raw cat /proc/self/status
# (Linux 6.18; the lines we read as they were, some of the others left out).
SETPRIV_STATUS = """\
Name:	cat
Umask:	0022
State:	S (sleeping)
Tgid:	4242
Pid:	4242
PPid:	4200
Uid:	61000	61000	61000	61000
Gid:	61000	61000	61000	61000
FDSize:	64
Groups:	 
NStgid:	4242
VmRSS:	    1024 kB
Threads:	1
CapInh:	0000000000003000
CapPrm:	0000000000003000
CapEff:	0000000000003000
CapBnd:	0000000000003000
CapAmb:	0000000000003000
NoNewPrivs:	1
Seccomp:	0
"""

# A root shell's, with every capability of Linux 6.18 but CAP_SYS_RESOURCE.
ROOT_STATUS = """\
Uid:	0	0	0	0
Gid:	0	0	0	0
Groups:	0 65534 
CapInh:	0000000000000000
CapPrm:	000001fffeffffff
CapEff:	000001fffeffffff
CapBnd:	000001fffeffffff
CapAmb:	0000000000000000
NoNewPrivs:	0
"""


class MaskTests(SynchronousTestCase):
    def test_numbers(self) -> None:
        """
        The numbers are linux/capability.h's, from CAP_CHOWN (0) to
        CAP_CHECKPOINT_RESTORE (40).
        """
        self.assertEqual((NUMBERS["CAP_CHOWN"], NUMBERS["CAP_SETPCAP"],
                          NUMBERS["CAP_NET_BIND_SERVICE"], NUMBERS["CAP_NET_ADMIN"],
                          NUMBERS["CAP_NET_RAW"], NUMBERS["CAP_SYS_ADMIN"],
                          NUMBERS["CAP_CHECKPOINT_RESTORE"]), (0, 8, 10, 12, 13, 21, 40))
        self.assertEqual(sorted(NUMBERS.values()), list(range(41)))

    def test_mask(self) -> None:
        """
        A set of names is the mask with their bits set; none is 0.
        """
        self.assertEqual(mask({"CAP_NET_ADMIN", "CAP_NET_RAW"}), 0x3000)
        self.assertEqual(mask([]), 0)

    def test_unknown(self) -> None:
        """
        A name that is no capability's is refused, by name.
        """
        e = self.assertRaises(UnknownCapability, mask, ["CAP_NET_ADMIN", "NET_RAW"])
        self.assertIn("'NET_RAW'", str(e))

    def test_names(self) -> None:
        """
        A mask is the set of its capabilities' names; a bit newer than the
        table is named by its number.
        """
        self.assertEqual(names(0x3400), {"CAP_NET_ADMIN", "CAP_NET_RAW",
                                         "CAP_NET_BIND_SERVICE"})
        self.assertEqual(names(0), frozenset())
        self.assertEqual(names(1 << 41 | 1), {"CAP_41", "CAP_CHOWN"})
        self.assertRaises(ValueError, names, -1)

    def test_round_trip(self) -> None:
        """
        Every set of known capabilities survives mask and back.
        """
        every = frozenset(NUMBERS)
        self.assertEqual(names(mask(every)), every)
        for name in NUMBERS:
            self.assertEqual(names(mask([name])), {name})


class ParseStatusTests(SynchronousTestCase):
    def test_setpriv(self) -> None:
        """
        An unprivileged process with two capabilities, as setpriv (or
        systemd's User= and AmbientCapabilities=) makes it.
        """
        net = frozenset({"CAP_NET_ADMIN", "CAP_NET_RAW"})
        self.assertEqual(parse_status(SETPRIV_STATUS), ProcessPrivileges(
            uids=(61000,) * 4, gids=(61000,) * 4, groups=frozenset(), effective=net,
            permitted=net, inheritable=net, bounding=net, ambient=net, no_new_privs=True))

    def test_root(self) -> None:
        """
        A root process: its groups, and its full sets.
        """
        status = parse_status(ROOT_STATUS)
        self.assertEqual(status.uids, (0, 0, 0, 0))
        self.assertEqual(status.groups, {0, 65534})
        self.assertEqual(status.effective, frozenset(NUMBERS) - {"CAP_SYS_RESOURCE"})
        self.assertEqual((status.inheritable, status.ambient), (frozenset(), frozenset()))
        self.assertFalse(status.no_new_privs)

    def test_missing(self) -> None:
        """
        A status without a field we read is refused, naming the field.
        """
        text = "".join(line + "\n" for line in ROOT_STATUS.splitlines()
                       if not line.startswith("CapAmb"))
        e = self.assertRaises(MalformedStatus, parse_status, text)
        self.assertIn("CapAmb", str(e))

    def test_malformed(self) -> None:
        """
        A mask that is not hex, or a Uid line without four ids, is refused.
        """
        for old, new in [("CapEff:\t000001fffeffffff", "CapEff:\tzz"),
                         ("Uid:\t0\t0\t0\t0", "Uid:\t0\t0")]:
            self.assertIn(old, ROOT_STATUS)
            self.assertRaises(MalformedStatus, parse_status, ROOT_STATUS.replace(old, new))

    def test_this_process(self) -> None:
        """
        This process's own status parses, and agrees with its uid.
        """
        import os
        with open("/proc/self/status") as f:
            status = parse_status(f.read())
        self.assertEqual(status.uids[0], os.getuid())
        self.assertEqual(status.gids[1], os.getegid())
