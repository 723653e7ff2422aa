"""
netsuite-stats: per-client traffic (sampled from the firewall's counters),
round-robin series in RRDtool, the accounting log, Prometheus metrics,
graphs, extrusion detection and fair shares (docs/stats.md).
"""
