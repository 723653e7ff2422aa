"""
The small transparent-proxy framework netsuite-mailproxy stands on: sans-IO
filters per direction (L{netsuite.proxy.filters}), interception and relaying.
"""
