from netsuite.services import ServicePlugin

netsuite_stats = ServicePlugin(
    "stats", "netsuite.stats.tap",
    "netsuite stats: per-client traffic series, accounting log, Prometheus metrics, graphs, "
    "extrusion detection",
    rank=60)
