# -*- test-case-name: tests.portal.test_pages -*-
"""
What the portal's pages say, apart from any request: the layout
(L{Pages}, one per portal, made from the operator's template), the fixed
answers to the OS probes, the check on a client's C{url}, and the
formatting of times and byte counts.
"""

from __future__ import annotations

import html
import re
import string
from typing import Any, Optional
from urllib.parse import quote, urlsplit

__all__ = ["Pages", "DEFAULT_TEMPLATE", "HTML", "PROBES", "safe_url", "esc", "duration",
           "in_words", "data_size"]

HTML = b"text/html; charset=utf-8"

PROBES = {
    "/hotspot-detect.html": (200, b"text/html",
                             b"<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"),
    "/library/test/success.html": (200, b"text/html",
                                   b"<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"),
    "/generate_204": (204, None, b""),
    "/gen_204": (204, None, b""),
    "/connecttest.txt": (200, b"text/plain", b"Microsoft Connect Test"),
    "/ncsi.txt": (200, b"text/plain", b"Microsoft NCSI"),
    "/canonical.html": (200, b"text/html",
                        b'<meta http-equiv="refresh" '
                        b'content="0;url=https://support.mozilla.org/kb/captive-portal"/>'),
    "/success.txt": (200, b"text/plain", b"success\n"),
}
"""What a connected client gets from an OS's captive-portal probe."""


def safe_url(url: Optional[str]) -> Optional[str]:
    """
    C{url} (non-ASCII and quotes %-escaped) if it is an absolute http(s) URL
    with a host and no space or control character; else None (never a
    redirect to another scheme).
    """
    if not url or len(url) > 2000 or re.search(r"[\x00-\x20\x7f\\]", url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return quote(url, safe="!#$%&'()*+,/:;=?@[]~")


def esc(value: Any) -> str:
    """
    C{value} as text safe in HTML, inside an attribute's quotes too.
    """
    return html.escape(str(value), quote=True)


def duration(seconds: float) -> str:
    """
    A time as C{H:MM:SS} (negative times as 0:00:00).
    """
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def in_words(seconds: float) -> str:
    """
    A time-out as people read it: C{45 seconds}, C{1 minute}, C{30 minutes},
    C{2 hours} (whole minutes from two minutes on, whole hours when exact).
    """
    seconds = int(max(0, seconds))
    if seconds < 120:
        return f"{seconds} second{'' if seconds == 1 else 's'}"
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'' if hours == 1 else 's'}"
    return f"{round(seconds / 60)} minutes"


def data_size(count: int) -> str:
    """
    A byte count as people read it: 512 B, 1.5 MB, 2.25 GB (powers of 1000).
    """
    for unit, size in (("GB", 10 ** 9), ("MB", 10 ** 6), ("kB", 10 ** 3)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{int(count)} B"


DEFAULT_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 32rem; margin: 0 auto;
       padding: 1.5rem 1rem; line-height: 1.5; color: #1b1b1b; background: #fafafa; }
h1 { font-size: 1.5rem; margin-top: 0; }
button, input { font-size: 1rem; padding: 0.6rem 1rem; margin: 0.25rem 0; }
button { background: #1f6feb; color: white; border: 0; border-radius: 0.4rem; width: 100%; }
input[type=text], input[type=password] { width: 100%; box-sizing: border-box; }
.policy { background: white; border: 1px solid #ddd; padding: 0.75rem; border-radius: 0.4rem;
          white-space: pre-wrap; }
table { border-collapse: collapse; width: 100%; } td, th { padding: 0.25rem; text-align: left; }
</style></head>
<body>
<h1>$title</h1>
$body
</body></html>
"""
"""The built-in layout, made for phones."""


class Pages:
    """
    One portal's layout: every page it serves (login, status, operator,
    the redirect page) is laid out by one template. Each portal has its
    own, so that two portals in one process can look different.

    @param template: HTML with C{$title} (escaped) and C{$body} (the
        page's own, already escaped HTML) where they go; other C{$} are
        left as they are.
    """

    def __init__(self, template: str = DEFAULT_TEMPLATE) -> None:
        self._template = string.Template(template)

    def page(self, title: str, body: str) -> bytes:
        """
        A whole page: C{body} (HTML) laid out with C{title} (text).
        """
        return self._template.safe_substitute(title=esc(title), body=body).encode("utf-8")

    def redirect(self, location: str) -> bytes:
        """
        The page of a redirect to C{location}: a meta refresh and a link,
        for clients that do not follow the Location header.
        """
        return self.page("Redirecting", (
            f'<meta http-equiv="refresh" content="0; url={esc(location)}">'
            f'<p><a href="{esc(location)}">Continue to the login page</a></p>'))
