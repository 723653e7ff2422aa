"""
A portal client of bench/soak.py, run in a client namespace: until
SECONDS have passed, over and over: an upstream GET (redirected to the
portal: 307), the login page, the login form (303), the upstream GET
again (200, the upstream's body), the logout (303). Every answer is
timed; a wrong status, a wrong body or a socket error counts as an error
of that kind. An answer that is not 2xx/3xx is noted with its page's
reason (its title and first paragraph, e.g. "503 Cannot connect: Your
device could not be identified..."). At the end one JSON line: per kind,
the count, errors, the slowest answer in ms, the first few error texts,
the count of such answers by reason, and the first 200 of them (seconds
since the start, reason).

    python bench/_soak_client.py PORTAL_URL UPSTREAM_URL SECONDS [PAUSE]
"""

import http.client
import json
import re
import sys
import time
import urllib.parse

KINDS = ("redirect", "login-page", "login", "upstream", "logout")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
TITLE = re.compile(r"<title>(.*?)</title>", re.S)
PARAGRAPH = re.compile(r"<p[^>]*>(.*?)</p>", re.S)
TAG = re.compile(r"<[^>]+>")
NOTED = 200


def reason(status, text):
    """A page's reason: C{"503 Cannot connect: Your device could not..."}."""
    title = TITLE.search(text)
    paragraph = PARAGRAPH.search(text)
    words = [TAG.sub("", m.group(1)).strip() for m in (title, paragraph) if m]
    return " ".join(f"{status} {': '.join(w for w in words if w)}".split())[:160]


class Fail(Exception):
    pass


def request(url, method="GET", body=None, cookies=None):
    """One request on a fresh connection: (status, headers, body text)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=5)
    headers = {}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""),
                     body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        return response.status, response.getheaders(), text
    finally:
        conn.close()


def cookies_of(headers, jar):
    for name, value in headers:
        if name.lower() == "set-cookie":
            key, _, rest = value.partition("=")
            jar[key.strip()] = rest.split(";", 1)[0]


def main(portal, upstream, seconds, pause):
    stats = {k: {"count": 0, "errors": 0, "slowest_ms": 0.0, "first_errors": [],
                 "reasons": {}, "answers": []}
             for k in KINDS}
    began_all = time.monotonic()

    def timed(kind, check, *args, **kw):
        began = time.monotonic()
        try:
            result = request(*args, **kw)
            if not 200 <= result[0] < 400:
                why = reason(result[0], result[2])
                s = stats[kind]
                s["reasons"][why] = s["reasons"].get(why, 0) + 1
                if len(s["answers"]) < NOTED:
                    s["answers"].append([round(time.monotonic() - began_all, 3), why])
            check(result)
        except (OSError, http.client.HTTPException, Fail) as e:
            stats[kind]["errors"] += 1
            if len(stats[kind]["first_errors"]) < 5:
                stats[kind]["first_errors"].append(f"{type(e).__name__}: {e}"[:200])
            result = None
        ms = 1000.0 * (time.monotonic() - began)
        stats[kind]["count"] += 1
        stats[kind]["slowest_ms"] = max(stats[kind]["slowest_ms"], ms)
        return result

    def status(expected, body=None):
        def check(result):
            if result[0] != expected:
                raise Fail(f"status {result[0]}, not {expected}: {result[2][:120]!r}")
            if body is not None and body not in result[2]:
                raise Fail(f"body {result[2][:80]!r}")
        return check

    end = time.monotonic() + seconds
    target = urllib.parse.quote(upstream, safe="")
    while time.monotonic() < end:
        timed("redirect", status(307), upstream)
        jar = {}
        page = timed("login-page", status(200), f"{portal}/login?url={target}")
        if page is None:
            time.sleep(pause)
            continue
        cookies_of(page[1], jar)
        token = CSRF.search(page[2])
        if token is None:
            stats["login-page"]["errors"] += 1
            continue
        form = f"csrf={token.group(1)}&url={target}&accept=1"
        if timed("login", status(303), f"{portal}/login", "POST", form, jar) is not None:
            timed("upstream", status(200, "the internet"), upstream)
            timed("logout", status(303), f"{portal}/logout", "POST",
                  f"csrf={token.group(1)}", jar)
        time.sleep(pause)
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]),
         float(sys.argv[4]) if len(sys.argv) > 4 else 0.2)
