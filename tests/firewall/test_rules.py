"""
Tests for L{netsuite.firewall.rules}: the static rules as data.
"""

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from netsuite.firewall.rules import (FirewallSettings, Jump, chains, chains6, closed_chains,
                                     closed_chains6, closed_jumps, closed_jumps6, jumps, jumps6)

LAN = ipaddress.IPv4Network("10.89.0.0/24")


def minimal(**kw):
    return FirewallSettings("br-lan", "wan0", LAN, **kw)


def targets(rules):
    return [rule.get("target") for rule in rules]


class ChainsTests(SynchronousTestCase):
    def test_forward_order(self):
        """
        Forwarding: the download counter, authorized clients (every packet,
        established or not) to their own chain, then returned, replies to
        the LAN, port 53 dropped, the garden set returned, then HTTPS
        refused and the rest from the LAN dropped, in that order. Nothing
        is ACCEPTed: what netsuite lets through returns to FORWARD, where
        the operator's rules follow.
        """
        forward = chains(minimal())[("filter", "NS-FORWARD")]
        self.assertEqual(targets(forward), [
            None, "NS-CLIENT", "RETURN", "RETURN", "DROP", "DROP", "RETURN",
            {"REJECT": {"reject-with": "tcp-reset"}}, "DROP"])
        self.assertEqual(forward[0]["set"], {"match-set": ["ns-down", "dst"]})
        self.assertEqual(forward[1]["set"], {"match-set": ["ns-auth", "src,src"]})
        self.assertEqual(forward[2]["set"], {"match-set": ["ns-auth", "src,src"]})
        self.assertEqual(forward[3]["out-interface"], "br-lan")
        self.assertEqual(forward[6], {"in-interface": "br-lan",
                                      "set": {"match-set": ["ns-garden", "dst"]},
                                      "target": "RETURN"})
        garden = ipaddress.IPv4Network("198.51.100.7/32")
        own = chains(minimal(walled_garden=(garden,), nfqueue_num=1, nfqueue_ports=(80,)))
        for chain in ("NS-FORWARD", "NS-CLIENT", "NS-SMTP"):
            self.assertNotIn("ACCEPT", targets(own[("filter", chain)]), chain)

    def test_no_port_53_before_login(self):
        """
        Nothing from an unauthorized client leaves on port 53, whatever
        preauth_dns says: UDP and TCP port 53 from the LAN are dropped
        after the authorized clients' RETURN and before any garden RETURN
        (a resolver in the walled garden is no tunnel either); no rule
        returns port 53.
        """
        garden = ipaddress.IPv4Network("198.51.100.0/24")
        udp = {"protocol": "udp", "in-interface": "br-lan", "udp": {"dport": "53"},
               "target": "DROP"}
        tcp = {"protocol": "tcp", "in-interface": "br-lan", "tcp": {"dport": "53"},
               "target": "DROP"}
        for preauth in (True, False):
            forward = chains(minimal(preauth_dns=preauth, walled_garden=(garden,)))[
                ("filter", "NS-FORWARD")]
            authorized = max(i for i, r in enumerate(forward) if "set" in r
                             and r["set"]["match-set"][0] == "ns-auth")
            first_garden = min(i for i, r in enumerate(forward) if r.get("dst") == str(garden))
            self.assertLess(authorized, forward.index(udp))
            self.assertLess(forward.index(tcp), first_garden)
            self.assertEqual([r for r in forward if r.get("target") == "RETURN" and "53" in (
                r.get("udp", {}).get("dport"), r.get("tcp", {}).get("dport"))], [])

    def test_preauth_dns(self):
        """
        By default (preauth_dns) every UDP and TCP port-53 packet of an
        unauthorized client, to any address, is redirected to the access
        point's resolver on dns_port: after the authorized clients' RETURN,
        before the walled garden's (the garden's resolvers too) and the
        portal's redirect. NS-INPUT accepts dns_port (and 53) from the LAN.
        """
        garden = ipaddress.IPv4Network("198.51.100.7/32")
        own = chains(minimal(portal_port=8080, walled_garden=(garden,), dns_port=5353))
        prerouting = own[("nat", "NS-PREROUTING")]
        redirect = {"REDIRECT": {"to-ports": "5353"}}
        self.assertEqual(targets(prerouting), [
            "RETURN", redirect, redirect, "RETURN", "RETURN",
            {"REDIRECT": {"to-ports": "8080"}}])
        self.assertEqual(prerouting[0]["set"], {"match-set": ["ns-auth", "src,src"]})
        self.assertEqual(prerouting[1], {"protocol": "udp", "in-interface": "br-lan",
                                         "udp": {"dport": "53"}, "target": redirect})
        self.assertEqual(prerouting[2], {"protocol": "tcp", "in-interface": "br-lan",
                                         "tcp": {"dport": "53"}, "target": redirect})
        ap_input = own[("filter", "NS-INPUT")]
        for port in ("53", "5353"):
            for proto in ("udp", "tcp"):
                accept = {"protocol": proto, "in-interface": "br-lan", proto: {"dport": port},
                          "target": "ACCEPT"}
                self.assertLess(ap_input.index(accept), len(ap_input) - 1)
        self.assertEqual(ap_input[-1], {"in-interface": "br-lan", "target": "DROP"})

    def test_preauth_dns_off(self):
        """
        With preauth_dns off nothing is redirected: port 53 is dropped
        before login (forward chain), the access point's resolver stays
        open (to a client that asks it directly).
        """
        own = chains(minimal(preauth_dns=False))
        self.assertEqual(targets(own[("nat", "NS-PREROUTING")]), ["RETURN", "RETURN"])
        self.assertIn({"protocol": "udp", "in-interface": "br-lan", "udp": {"dport": "53"},
                       "target": "DROP"}, own[("filter", "NS-FORWARD")])
        self.assertIn({"protocol": "udp", "in-interface": "br-lan", "udp": {"dport": "53"},
                       "target": "ACCEPT"}, own[("filter", "NS-INPUT")])

    def test_dns_after_login(self):
        """
        dns_after_login = "netsuite" redirects port 53 of every client,
        authorized or not, ahead of the authorized clients' RETURN; with
        preauth_dns off only authorized clients' (the others' is dropped).
        """
        redirect = {"REDIRECT": {"to-ports": "53"}}
        prerouting = chains(minimal(dns_after_login="netsuite"))[("nat", "NS-PREROUTING")]
        self.assertEqual(targets(prerouting), [redirect, redirect, "RETURN", "RETURN"])
        self.assertNotIn("set", prerouting[0])
        prerouting = chains(minimal(dns_after_login="netsuite", preauth_dns=False))[
            ("nat", "NS-PREROUTING")]
        self.assertEqual(targets(prerouting), [redirect, redirect, "RETURN", "RETURN"])
        self.assertEqual(prerouting[0], {"protocol": "udp", "in-interface": "br-lan",
                                         "udp": {"dport": "53"},
                                         "set": {"match-set": ["ns-auth", "src,src"]},
                                         "target": redirect})

    def test_client_chain(self):
        """
        An authorized client's packets: its established flows return at
        once, new SMTP goes through the SMTP check, the rest returns too (to
        the operator's FORWARD rules).
        """
        client = chains(minimal())[("filter", "NS-CLIENT")]
        self.assertEqual(targets(client), ["RETURN", "NS-SMTP"])
        self.assertEqual(client[1]["tcp"], {"dport": "25"})

    def test_smtp_chain(self):
        """
        The SMTP chain returns for clients with an open window to any
        destination, and for (client, port, server) with a window towards
        that server, and resets everyone else; with block_smtp off there is
        no such chain.
        """
        smtp = chains(minimal())[("filter", "NS-SMTP")]
        self.assertEqual(smtp, [
            {"set": {"match-set": ["ns-smtp", "src"]}, "target": "RETURN"},
            {"set": {"match-set": ["ns-smtpto", "src,dst,dst"]}, "target": "RETURN"},
            {"protocol": "tcp", "target": {"REJECT": {"reject-with": "tcp-reset"}}}])
        self.assertNotIn(("filter", "NS-SMTP"), chains(minimal(block_smtp=False)))

    def test_smtp_cap(self):
        """
        With smtp_max_per_minute, the SMTP chain first records each SYN
        per source (xt_recent) and resets the one beyond the cap in 60 s,
        windows or not.
        """
        smtp = chains(minimal(smtp_max_per_minute=5))[("filter", "NS-SMTP")]
        syn = {"tcp-flags": ["FIN,SYN,RST,ACK", "SYN"]}
        seen = {"name": "ns-smtp", "mask": "255.255.255.255", "rsource": ""}
        self.assertEqual(smtp[:2], [
            {"protocol": "tcp", "tcp": syn, "recent": dict(seen, set="")},
            {"protocol": "tcp", "tcp": syn,
             "recent": dict(seen, rcheck="", seconds="60", hitcount="6"),
             "target": {"REJECT": {"reject-with": "tcp-reset"}}}])
        self.assertEqual(len(smtp), 5)

    def test_portal_redirect(self):
        """
        With a portal port, unauthorized HTTP is redirected to it and the
        port is open on the access point; authorized clients and the walled
        garden are not redirected.
        """
        garden = ipaddress.IPv4Network("198.51.100.7/32")
        own = chains(minimal(portal_port=8080, walled_garden=(garden,)))
        prerouting = own[("nat", "NS-PREROUTING")]
        dns = {"REDIRECT": {"to-ports": "53"}}
        self.assertEqual(targets(prerouting), [
            "RETURN", dns, dns, "RETURN", "RETURN", {"REDIRECT": {"to-ports": "8080"}}])
        self.assertEqual(prerouting[3]["dst"], "198.51.100.7/32")
        self.assertEqual(prerouting[4]["set"], {"match-set": ["ns-garden", "dst"]})
        self.assertIn({"protocol": "tcp", "in-interface": "br-lan",
                       "tcp": {"dport": "8080"}, "target": "ACCEPT"},
                      own[("filter", "NS-INPUT")])
        self.assertIn({"dst": "198.51.100.7/32", "in-interface": "br-lan", "target": "RETURN"},
                      own[("filter", "NS-FORWARD")])
        self.assertEqual(len(chains(minimal())[("nat", "NS-PREROUTING")]), 4)

    def test_tproxy(self):
        """
        With a TPROXY port, authorized clients' mail ports get the divert
        mark (netsuite's nft chain diverts them: netsuite.firewall.divert),
        established transparent sockets are marked, and marked packets are
        accepted on input.
        """
        own = chains(minimal(tproxy_port=10143, tproxy_ports=(110, 143)))
        tproxy = own[("mangle", "NS-TPROXY")]
        self.assertEqual(tproxy[0]["socket"], {"transparent": ""})
        self.assertEqual(tproxy[0]["target"], "NS-DIVERT")
        self.assertEqual(tproxy[2], {
            "protocol": "tcp", "in-interface": "br-lan", "tcp": {"dport": "143"},
            "set": {"match-set": ["ns-auth", "src,src"]},
            "target": {"MARK": {"set-xmark": "0x4/0x4"}}})
        self.assertFalse([r for r in tproxy if "TPROXY" in str(r["target"])])
        self.assertIn({"in-interface": "br-lan", "mark": {"mark": "0x1/0x1"},
                       "target": "ACCEPT"}, own[("filter", "NS-INPUT")])
        self.assertNotIn(("mangle", "NS-TPROXY"), chains(minimal()))

    def test_tproxy_missed_reset(self):
        """
        A packet with the divert mark in NS-FORWARD is one the proxy did
        not take (nothing listens): NS-FORWARD resets its TCP first, ahead
        of the authorized clients' rules; without a TPROXY port there is no
        such rule.
        """
        forward = chains(minimal(tproxy_port=10143, divert_mark=0x10))[("filter", "NS-FORWARD")]
        self.assertEqual(forward[0], {
            "protocol": "tcp", "in-interface": "br-lan", "mark": {"mark": "0x10/0x10"},
            "target": {"REJECT": {"reject-with": "tcp-reset"}}})
        forward = chains(minimal())[("filter", "NS-FORWARD")]
        self.assertFalse([r for r in forward if "mark" in r])

    def test_nfqueue(self):
        """
        NFQUEUE takes the SYNs of authorized clients to the configured ports,
        with queue-bypass when asked.
        """
        client = chains(minimal(nfqueue_num=3, nfqueue_ports=(143,)))[("filter", "NS-CLIENT")]
        queued = [r for r in client if isinstance(r.get("target"), dict)
                  and "NFQUEUE" in r["target"]]
        self.assertEqual(len(queued), 1)
        self.assertEqual(queued[0]["target"], {"NFQUEUE": {"queue-num": "3",
                                                           "queue-bypass": ""}})
        self.assertEqual(queued[0]["tcp"]["tcp-flags"], ["FIN,SYN,RST,ACK", "SYN"])

    def test_nfqueue_redirect(self):
        """
        With nfqueue_redirect_port (the mail proxy's nfqueue mode), the SYNs
        are queued in mangle NS-QUEUE, ahead of nat's REDIRECT (so the reader
        sees the destination the client chose), not in NS-CLIENT (redirected
        SYNs are not forwarded); authorized clients' connections to the
        ports are redirected, and NS-INPUT accepts only redirected ones.
        """
        s = minimal(nfqueue_num=3, nfqueue_ports=(143, 110), nfqueue_redirect_port=10143)
        own = chains(s)
        self.assertEqual(own[("mangle", "NS-QUEUE")], [
            {"protocol": "tcp", "in-interface": "br-lan",
             "tcp": {"dport": str(port), "tcp-flags": ["FIN,SYN,RST,ACK", "SYN"]},
             "set": {"match-set": ["ns-auth", "src,src"]},
             "target": {"NFQUEUE": {"queue-num": "3", "queue-bypass": ""}}}
            for port in (143, 110)])
        self.assertFalse([r for r in own[("filter", "NS-CLIENT")]
                          if isinstance(r.get("target"), dict) and "NFQUEUE" in r["target"]])
        prerouting = own[("nat", "NS-PREROUTING")]
        self.assertEqual(prerouting[:2], [
            {"protocol": "tcp", "in-interface": "br-lan", "tcp": {"dport": str(port)},
             "set": {"match-set": ["ns-auth", "src,src"]},
             "target": {"REDIRECT": {"to-ports": "10143"}}} for port in (143, 110)])
        self.assertEqual(prerouting[2]["target"], "RETURN", "ahead of the authorized RETURN")
        accept = {"protocol": "tcp", "in-interface": "br-lan", "tcp": {"dport": "10143"},
                  "conntrack": {"ctstate": "DNAT"}, "target": "ACCEPT"}
        ap_input = own[("filter", "NS-INPUT")]
        self.assertIn(accept, ap_input)
        self.assertLess(ap_input.index(accept), len(ap_input) - 1)
        self.assertIn(Jump("mangle", "PREROUTING", "NS-QUEUE"), jumps(s))
        self.assertNotIn(Jump("mangle", "PREROUTING", "NS-QUEUE"),
                         jumps(minimal(nfqueue_num=3, nfqueue_ports=(143,))))
        # off without a queue: nothing redirected to a proxy nobody told of SYNs
        off = chains(minimal(nfqueue_ports=(143,), nfqueue_redirect_port=10143))
        self.assertNotIn(("mangle", "NS-QUEUE"), off)
        self.assertNotIn(accept, off[("filter", "NS-INPUT")])
        self.assertEqual(len(off[("nat", "NS-PREROUTING")]), 4)

    def test_extrusion_queue(self):
        """
        With extrusion_queue, the SYN of every TCP connection forwarded from
        the LAN goes to that queue, with bypass, in mangle FORWARD (ahead of
        filter, where NS-SMTP still refuses what the reader accepts); off
        by default.
        """
        s = minimal(extrusion_queue=5)
        self.assertEqual(chains(s)[("mangle", "NS-EXTRUSION")], [
            {"protocol": "tcp", "in-interface": "br-lan",
             "tcp": {"tcp-flags": ["FIN,SYN,RST,ACK", "SYN"]},
             "target": {"NFQUEUE": {"queue-num": "5", "queue-bypass": ""}}}])
        self.assertIn(Jump("mangle", "FORWARD", "NS-EXTRUSION"), jumps(s))
        self.assertEqual(chains(s)[("filter", "NS-CLIENT")],
                         chains(minimal())[("filter", "NS-CLIENT")])
        self.assertNotIn(("mangle", "NS-EXTRUSION"), chains(minimal()))
        self.assertNotIn(Jump("mangle", "FORWARD", "NS-EXTRUSION"), jumps(minimal()))
        # IPv6 (ip6tables) alike, into the same queue
        self.assertEqual(chains6(s)[("mangle", "NS6-EXTRUSION")],
                         chains(s)[("mangle", "NS-EXTRUSION")])
        self.assertIn(Jump("mangle", "FORWARD", "NS6-EXTRUSION"), jumps6(s))
        self.assertNotIn(("mangle", "NS6-EXTRUSION"), chains6(minimal()))
        # one without bypass is another setting's (nfqueue_bypass): not this one's
        self.assertIn("queue-bypass", chains(minimal(extrusion_queue=5, nfqueue_bypass=False))[
            ("mangle", "NS-EXTRUSION")][0]["target"]["NFQUEUE"])

    def test_input_default_deny(self):
        """
        The access point accepts DHCP, DNS and ICMP from the LAN and drops
        the rest of what the LAN starts.
        """
        ap_input = chains(minimal())[("filter", "NS-INPUT")]
        self.assertEqual(ap_input[-1], {"in-interface": "br-lan", "target": "DROP"})
        self.assertIn({"protocol": "udp", "in-interface": "br-lan", "udp": {"dport": "67"},
                       "target": "ACCEPT"}, ap_input)

    def test_input_only_the_lan(self):
        """
        Every NS-INPUT rule matches the LAN interface only: what comes in
        elsewhere (the WAN's answers to the access point's own flows
        included) goes on to the operator's INPUT rules.
        """
        for settings in (minimal(), minimal(portal_port=5280, lan_ports=(22,), tproxy_port=1,
                                            tproxy_ports=(110,), nfqueue_num=0,
                                            nfqueue_ports=(25,))):
            for rule in chains(settings)[("filter", "NS-INPUT")]:
                self.assertEqual(rule["in-interface"], "br-lan", rule)
        self.assertEqual(chains(minimal())[("filter", "NS-INPUT")][2],
                         {"in-interface": "br-lan",
                          "conntrack": {"ctstate": "RELATED,ESTABLISHED"}, "target": "ACCEPT"})

    def test_input_no_spoofed_sources(self):
        """
        Before the established rule, NS-INPUT drops what a LAN client sends
        from an address outside the LAN (a forged answer from "the upstream
        resolver" would match the access point's own flow); DHCP, sent from
        0.0.0.0, is accepted before that.
        """
        ap_input = chains(minimal())[("filter", "NS-INPUT")]
        self.assertEqual(ap_input[:2], [
            {"protocol": "udp", "in-interface": "br-lan", "udp": {"dport": "67"},
             "target": "ACCEPT"},
            {"src": "!10.89.0.0/24", "in-interface": "br-lan", "target": "DROP"}])

    def test_jumps(self):
        """
        One jump from each built-in chain used into netsuite's chain.
        """
        self.assertEqual(jumps(minimal()), [
            Jump("filter", "FORWARD", "NS-FORWARD"), Jump("filter", "INPUT", "NS-INPUT"),
            Jump("nat", "PREROUTING", "NS-PREROUTING"),
            Jump("nat", "POSTROUTING", "NS-POSTROUTING")])
        self.assertIn(Jump("mangle", "PREROUTING", "NS-TPROXY"),
                      jumps(minimal(tproxy_port=1)))
        self.assertEqual(len(jumps(minimal(masquerade=False))), 3)

    def test_closed(self):
        """
        What a clean stop leaves: one jump from FORWARD into a chain dropping
        everything from the LAN, and no reference to a set (the sets go).
        """
        s = minimal(portal_port=8080, tproxy_port=1)
        self.assertEqual(closed_chains(s), {
            ("filter", "NS-FORWARD"): [{"in-interface": "br-lan", "target": "DROP"}]})
        self.assertEqual(closed_jumps(s), [Jump("filter", "FORWARD", "NS-FORWARD")])
        self.assertTrue(set(closed_jumps(s)) <= set(jumps(s)))

    def test_prefix(self):
        """
        The prefix names every chain and set, so two instances can coexist.
        """
        own = chains(minimal(prefix="AP2"))
        self.assertIn(("filter", "AP2-FORWARD"), own)
        self.assertEqual(own[("filter", "AP2-FORWARD")][0]["set"],
                         {"match-set": ["ap2-down", "dst"]})

    def test_lan_ports(self):
        """
        lan_ports opens more TCP ports of the access point to every client,
        before the final drop.
        """
        ap_input = chains(minimal(portal_port=5280, lan_ports=(8443,)))[("filter", "NS-INPUT")]
        ports = [r["tcp"]["dport"] for r in ap_input
                 if r.get("target") == "ACCEPT" and r.get("protocol") == "tcp"
                 and r["tcp"]["dport"] not in ("53",)]
        self.assertEqual(ports, ["5280", "8443"])
        self.assertEqual(ap_input[-1]["target"], "DROP")


RESET = {"REJECT": {"reject-with": "tcp-reset"}}
PROHIBITED = {"REJECT": {"reject-with": "icmp6-adm-prohibited"}}


class Chains6Tests(SynchronousTestCase):
    """
    The IPv6 rules: the LAN's IPv6 closed (nobody is authorized for IPv6).
    """

    def test_forward(self):
        """
        Client to client (bridged, or back out of the LAN) is returned to
        the operator's rules, as for IPv4; towards the LAN only the answers
        of allowed flows (the rest dropped); from the LAN, what the nft
        table marked (authorized clients, ipv6_mark) RETURNed, the rest: TCP reset and the rest refused with an ICMPv6
        unreachable, so that clients fall back to IPv4 at once. Nothing is
        ACCEPTed.
        """
        forward = chains6(minimal(portal_port=8080))[("filter", "NS6-FORWARD")]
        self.assertEqual(forward, [
            {"in-interface": "br-lan", "out-interface": "br-lan", "target": "RETURN"},
            {"out-interface": "br-lan", "conntrack": {"ctstate": "RELATED,ESTABLISHED"},
             "target": "RETURN"},
            {"out-interface": "br-lan", "target": "DROP"},
            {"protocol": "tcp", "in-interface": "br-lan", "tcp": {"dport": "25"},
             "target": RESET},
            {"in-interface": "br-lan", "mark": {"mark": "0x2/0x2"}, "target": "RETURN"},
            {"protocol": "tcp", "in-interface": "br-lan", "target": RESET},
            {"in-interface": "br-lan", "target": PROHIBITED}])
        # SMTP over IPv6 is refused to authorized clients too (the gate's
        # windows are IPv4), unless SMTP is not blocked at all.
        self.assertNotIn("tcp", [r.get("tcp") and "tcp" for r in chains6(
            minimal(block_smtp=False))[("filter", "NS6-FORWARD")]])
        smtp = chains6(minimal(smtp_ports=(25, 587)))[("filter", "NS6-FORWARD")]
        self.assertEqual([r["tcp"]["dport"] for r in smtp if "tcp" in r], ["25", "587"])
        # The authorized clients' mark (set by the nft table) is ipv6_mark.
        self.assertIn({"in-interface": "br-lan", "mark": {"mark": "0x8/0x8"}, "target": "RETURN"},
                      chains6(minimal(ipv6_mark=8))[("filter", "NS6-FORWARD")])

    def test_input(self):
        """
        From the LAN the access point accepts established flows, neighbour
        discovery, router solicitation and echo, DNS (53 and dns_port), the
        portal and lan_ports; DHCPv6 only when served; the rest dropped.
        """
        ap_input = chains6(minimal(portal_port=8080, dns_port=5353, lan_ports=(8443,)))[
            ("filter", "NS6-INPUT")]
        self.assertTrue(all(rule["in-interface"] == "br-lan" for rule in ap_input))
        self.assertEqual(ap_input[0]["conntrack"], {"ctstate": "RELATED,ESTABLISHED"})
        self.assertEqual([r["icmp6"]["icmpv6-type"] for r in ap_input if "icmp6" in r],
                         ["128", "133", "134", "135", "136"])
        accepted = [(r["protocol"], r[r["protocol"]]["dport"]) for r in ap_input
                    if r.get("protocol") in ("tcp", "udp")]
        self.assertEqual(accepted, [("udp", "53"), ("tcp", "53"), ("udp", "5353"),
                                    ("tcp", "5353"), ("tcp", "8080"), ("tcp", "8443")])
        self.assertEqual(ap_input[-1], {"in-interface": "br-lan", "target": "DROP"})
        self.assertEqual(targets(ap_input)[:-1], ["ACCEPT"] * (len(ap_input) - 1))
        served = chains6(minimal(dhcpv6=True))[("filter", "NS6-INPUT")]
        self.assertIn({"protocol": "udp", "in-interface": "br-lan", "udp": {"dport": "547"},
                       "target": "ACCEPT"}, served)
        self.assertNotIn("547", str(ap_input))

    def test_jumps_and_closed(self):
        """
        One jump from FORWARD and INPUT each (and nat PREROUTING with a
        portal port); a clean stop leaves the LAN's forwarded IPv6 refused
        as while running, and the access point alone: no redirect to a
        portal that is gone.
        """
        s = minimal(prefix="AP2")
        self.assertEqual(set(chains6(s)), {("filter", "AP26-FORWARD"),
                                           ("filter", "AP26-INPUT")})
        self.assertEqual(jumps6(s), [Jump("filter", "FORWARD", "AP26-FORWARD"),
                                     Jump("filter", "INPUT", "AP26-INPUT")])
        closed = {("filter", "AP26-FORWARD"): [
            {"protocol": "tcp", "in-interface": "br-lan", "target": RESET},
            {"in-interface": "br-lan", "target": PROHIBITED}]}
        self.assertEqual(closed_chains6(s), closed)
        self.assertEqual(closed_jumps6(s), [Jump("filter", "FORWARD", "AP26-FORWARD")])
        with_portal = minimal(prefix="AP2", portal_port=8080)
        self.assertIn(("nat", "AP26-PREROUTING"), chains6(with_portal))
        self.assertEqual(jumps6(with_portal)[-1],
                         Jump("nat", "PREROUTING", "AP26-PREROUTING"))
        self.assertEqual(closed_chains6(with_portal), closed)
        self.assertEqual(closed_jumps6(with_portal), closed_jumps6(s))

    def test_portal_redirect(self):
        """
        With a portal port, IPv6 HTTP from the LAN without the ipv6_mark
        bit (an unauthorized client) is redirected to the portal port,
        which NS6-INPUT accepts; marked packets (authorized) are returned
        first; nothing else is redirected. Without a portal port, no nat
        chain.
        """
        own = chains6(minimal(portal_port=8080, ipv6_mark=4))
        self.assertEqual(own[("nat", "NS6-PREROUTING")], [
            {"in-interface": "br-lan", "mark": {"mark": "0x4/0x4"}, "target": "RETURN"},
            {"protocol": "tcp", "in-interface": "br-lan", "tcp": {"dport": "80"},
             "target": {"REDIRECT": {"to-ports": "8080"}}}])
        self.assertIn({"protocol": "tcp", "in-interface": "br-lan",
                       "tcp": {"dport": "8080"}, "target": "ACCEPT"},
                      own[("filter", "NS6-INPUT")])
        self.assertEqual(set(chains6(minimal())), {("filter", "NS6-FORWARD"),
                                                   ("filter", "NS6-INPUT")})
