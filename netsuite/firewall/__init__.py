"""The firewall adapter: one interface, a kernel implementation, an in-memory fake."""
