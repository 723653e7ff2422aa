"""
netsuite: network-service daemons for a public Wi-Fi access point or small
gateway, on Twisted, whose every decision is a mailbox anyone can hook.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
