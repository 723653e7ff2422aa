# -*- test-case-name: tests.stats.test_graphs -*-
"""
The operator's traffic graphs: the arguments of C{rrdtool graphv} for a
client's file or the uplink's over the last hour, day or week. Pure: it
names files and builds arguments, and reads or draws nothing itself
(L{render} does, in a thread).

A graph shows bits per second (the files keep bytes per second): down
(to the client, or in from the internet on the uplink) as a filled area,
up as a line over it, with the last, average and maximum of each below
(where there is no sample, as no traffic).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from . import layout

__all__ = ["PERIODS", "WIDTH", "HEIGHT", "DOWN_COLOUR", "UP_COLOUR", "graph_args", "render",
           "graph_file"]

PERIODS: Dict[str, int] = {"hour": 3600, "day": 86400, "week": 7 * 86400}
"""The periods a graph covers, in seconds, by the name in its URL."""

WIDTH, HEIGHT = 600, 150
"""The plotted area in pixels (rrdtool adds the axes, title and legend around it)."""

DOWN_COLOUR = "2E7D32"
UP_COLOUR = "1565C0"
"""The area (down) and the line (up), as RRGGBB: what a test looks for in the image."""


def _escape(text: str) -> str:
    """C{text} in an rrdtool graph element, where C{:} separates fields."""
    return text.replace("\\", "\\\\").replace(":", "\\:")


def graph_file(directory: str, name: str) -> Optional[str]:
    """
    The round-robin file a graph's URL names: C{uplink} or a client's MAC
    (lower-case, with colons or dashes); None for anything else (never a
    path outside C{directory}).
    """
    if name == layout.UPLINK:
        return layout.uplink_file(directory)
    mac = name.lower().replace("-", ":")
    try:
        return layout.client_file(directory, mac)
    except ValueError:
        return None


def graph_args(path: str, title: str, period: str, end: Any = "now",
               width: int = WIDTH, height: int = HEIGHT) -> List[str]:
    """
    The arguments of C{rrdtool.graphv("-", ...)} (a PNG in memory) for
    the file at C{path} over C{period} (a key of L{PERIODS}) ending at
    C{end} (C{"now"} or a time in seconds).

    @raise KeyError: an unknown period.
    """
    seconds = PERIODS[period]
    source = _escape(path)
    args = ["--imgformat", "PNG", "--start", f"end-{seconds}", "--end", str(end),
            "--width", str(width), "--height", str(height), "--title", title,
            "--vertical-label", "bits/s", "--base", "1000", "--lower-limit", "0",
            "--slope-mode"]
    for name, direction in (("down", "bytes_down"), ("up", "bytes_up")):
        args += [f"DEF:{name}_bytes={source}:{direction}:AVERAGE",
                 f"DEF:{name}_peak={source}:{direction}:MAX",
                 f"CDEF:{name}={name}_bytes,8,*",
                 f"CDEF:{name}_max={name}_peak,8,*",
                 # the legend counts no sample as no traffic (not "nan")
                 f"CDEF:{name}_z={name},UN,0,{name},IF",
                 f"CDEF:{name}_max_z={name}_max,UN,0,{name}_max,IF",
                 f"VDEF:{name}_last={name}_z,LAST",
                 f"VDEF:{name}_avg={name}_z,AVERAGE",
                 f"VDEF:{name}_top={name}_max_z,MAXIMUM"]
    args += [f"AREA:down#{DOWN_COLOUR}:down",
             "GPRINT:down_last:now %6.1lf %sb/s", "GPRINT:down_avg:average %6.1lf %sb/s",
             "GPRINT:down_top:max %6.1lf %sb/s\\n",
             f"LINE2:up#{UP_COLOUR}:up  ",
             "GPRINT:up_last:now %6.1lf %sb/s", "GPRINT:up_avg:average %6.1lf %sb/s",
             "GPRINT:up_top:max %6.1lf %sb/s\\n"]
    return args


def render(args: List[str]) -> Dict[str, Any]:
    """
    Draw a graph (blocking: run it in a thread): C{rrdtool.graphv}'s
    answer, with the PNG under C{image} and the plot's place in it
    (C{graph_left}, C{graph_top}, C{graph_width}, C{graph_height}).

    @raise rrdtool.OperationalError: a missing or unreadable file.
    """
    import rrdtool
    answer: Dict[str, Any] = rrdtool.graphv("-", *args)
    return answer
