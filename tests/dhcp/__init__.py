"""Tests for L{netsuite.dhcp}."""
