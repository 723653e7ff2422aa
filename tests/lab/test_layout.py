"""
Tests for netsuite.lab.layout: names, MACs and addresses (no root needed).
"""

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from netsuite.lab.layout import LabError, Layout, lab_hash


class LayoutTests(SynchronousTestCase):
    def test_interface_names_fit(self):
        """
        Every interface name fits IFNAMSIZ, even for the longest lab name
        and the most clients.
        """
        layout = Layout(name="a" * 24, clients=200, lan="10.0.0.0/16")
        for name in layout.interface_names():
            self.assertLessEqual(len(name), 15, name)

    def test_names_from_prefix(self):
        """
        Namespaces are ns<name>-<role>; roles map both ways.
        """
        layout = Layout(name="demo", clients=2)
        self.assertEqual(layout.prefix, "nsdemo-")
        self.assertEqual(layout.roles, ["ap", "up", "c1", "c2"])
        self.assertEqual(layout.netns("c2"), "nsdemo-c2")
        self.assertEqual(layout.netns("nsdemo-ap"), "nsdemo-ap")
        self.assertEqual(layout.role_of("nsdemo-c1"), "c1")
        self.assertIsNone(layout.role_of("nsdemo2-c1"))
        self.assertIsNone(layout.role_of("nsdemo-x-ap"))
        self.assertRaises(LabError, layout.netns, "c3")
        self.assertRaises(LabError, layout.netns, "nsother-ap")

    def test_macs(self):
        """
        Client MACs are fixed by the lab name and index, unicast and
        locally administered, and differ between labs.
        """
        one, two = Layout(name="one", clients=3), Layout(name="two", clients=3)
        self.assertEqual(one.client_mac(1), Layout(name="one").client_mac(1))
        macs = set()
        for layout in (one, two):
            for i in range(1, 4):
                mac = layout.client_mac(i)
                self.assertRegex(mac, r"^02:4e:[0-9a-f]{2}:[0-9a-f]{2}:00:0%d$" % i)
                macs.add(mac)
            macs.update([layout.bridge_mac, layout.wan_mac, layout.up_port_mac])
        self.assertEqual(len(macs), 12)
        self.assertRaises(LabError, one.client_mac, 4)

    def test_addresses(self):
        """
        The AP takes the LAN's first host, clients .10+i, upstream the WAN's
        first host and the AP its second.
        """
        layout = Layout(name="x", clients=2, lan="10.89.0.0/24", wan="192.0.2.0/30")
        self.assertEqual(layout.ap_address, "10.89.0.1")
        self.assertEqual(layout.client_address(2), "10.89.0.12")
        self.assertEqual(layout.wan_up_address, "192.0.2.1")
        self.assertEqual(layout.wan_ap_address, "192.0.2.2")
        self.assertEqual(layout.resolver("c1"), "10.89.0.1")

    def test_refused(self):
        """
        Bad names, too many clients, and overlapping or too small networks
        are refused with LabError.
        """
        for kwargs in [dict(name="bad-name"), dict(name=""), dict(name="x" * 25),
                       dict(clients=-1), dict(clients=300),
                       dict(lan="10.0.0.0/28", clients=10),
                       dict(wan="192.0.2.0/31"), dict(lan="10.0.0.0/24", wan="10.0.0.0/30")]:
            self.assertRaises(LabError, Layout, **kwargs)

    def test_round_trip(self):
        """
        A layout survives to_dict/from_dict (the state file).
        """
        layout = Layout(name="rt", clients=5, lan="10.1.0.0/24", wan="192.0.2.4/30",
                        internet="203.0.113.7")
        self.assertEqual(Layout.from_dict(layout.to_dict()), layout)
        layout6 = Layout(name="rt6", ipv6=True)
        self.assertEqual(Layout.from_dict(layout6.to_dict()), layout6)
        old = layout.to_dict()
        del old["ipv6"]  # a state file written before IPv6
        self.assertFalse(Layout.from_dict(old).ipv6)

    def test_ipv6_addresses(self):
        """
        The IPv6 prefixes are fixed documentation prefixes; a client's
        SLAAC address is the LAN prefix and the modified EUI-64 of its MAC.
        """
        layout = Layout(name="lab1", ipv6=True)
        self.assertEqual(layout.lan_prefix6, "2001:db8:89::/64")
        self.assertEqual(layout.ap_address6, "2001:db8:89::1")
        self.assertEqual(layout.wan_up_address6, "2001:db8:ff::1")
        self.assertEqual(layout.wan_ap_address6, "2001:db8:ff::2")
        self.assertEqual(layout.internet6, "2001:db8:100::1")
        h = lab_hash("lab1")
        self.assertEqual(layout.client_mac(2), f"02:4e:{h[:2]}:{h[2:]}:00:02")
        # 02:4e:.. -> 00:4e:..:ff:fe:..: the universal/local bit flipped
        self.assertEqual(layout.client_slaac6(2),
                         str(ipaddress.ip_address(f"2001:db8:89::4e:{h[:2]}ff:fe{h[2:]}:2")))
        self.assertFalse(Layout().ipv6)
