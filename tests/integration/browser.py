"""
Headless Chromium for lab tests, driven through chromedriver's W3C
WebDriver HTTP API with the standard library only (no Selenium).

chromedriver must run inside the client's namespace (so the browser's
traffic comes from the client), but it listens on that namespace's
loopback, which the test (in the host namespace) cannot reach. So this
module is also a tiny relay, started inside the namespace:

    ip netns exec C python -m tests.integration.browser

It starts chromedriver on 127.0.0.1 (its own process group), prints
C{ready}, then for every JSON line C{[method, path, body]} on stdin does
that WebDriver request and prints one JSON line C{{"status", "value"}}.
At EOF, SIGTERM or any error it kills chromedriver and Chromium (its group)
and exits.

L{Browser} is the test side: it starts the relay as a
L{netsuite.lab.child.Child} and offers navigate / source / click, every
call bounded by a timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional

from netsuite.lab.child import Child, ChildError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER_NAMES = ("chromedriver",)
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-default-apps", "--disable-extensions", "--disable-dev-shm-usage",
    "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable",
    "--no-proxy-server",
]


def find_program(names: Any) -> Optional[str]:
    for name in names:
        path = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/lib/chromium")
        if path:
            return path
    return None


def missing_browser() -> List[str]:
    """What is missing to run the browser tests (empty: nothing)."""
    absent = []
    if find_program(CHROMIUM_NAMES) is None:
        absent.append("chromium")
    if find_program(CHROMEDRIVER_NAMES) is None:
        absent.append("chromedriver (Debian: chromium-driver)")
    return absent


# the relay, inside the namespace


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(base: str, method: str, path: str, body: Any, timeout: float) -> Dict[str, Any]:
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            return {"status": answer.status, "value": json.loads(answer.read() or b"{}").get("value")}
    except urllib.error.HTTPError as e:
        try:
            value = json.loads(e.read() or b"{}").get("value")
        except ValueError:
            value = None
        return {"status": e.code, "value": value}


def relay(timeout: float = 60.0) -> int:
    driver = find_program(CHROMEDRIVER_NAMES)
    if driver is None:
        print("error no chromedriver", flush=True)
        return 1
    port = _free_port()
    verbose = os.environ.get("NETSUITE_CHROMEDRIVER_LOG")  # debugging: keep a verbose log there
    extra = ["--verbose", f"--log-path={verbose}"] if verbose else []
    # Its own process group, with every Chromium process it starts.
    chromedriver = Child([driver, f"--port={port}", "--allowed-ips=127.0.0.1", *extra],
                         keep=50).start()
    base = f"http://127.0.0.1:{port}"
    # SIGTERM (Child.stop on the test side) ends the relay through finally.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        try:
            chromedriver.wait_for_line("started successfully", 20)  # it listens
        except ChildError:
            print("error chromedriver did not start", flush=True)
            return 1
        print("ready", flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            method, path, body = json.loads(line)
            try:
                answer = _request(base, method, path, body, timeout)
            except Exception as e:  # a timeout, a refused connection
                answer = {"status": 0, "value": {"error": "relay", "message": repr(e)}}
            print(json.dumps(answer), flush=True)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let this finish
        chromedriver.stop(0)
    return 0


# the test side

# In the page (WebDriver execute/async): answer with the URL once this page
# is the one wanted and complete; never answer otherwise (the page will go).
_WAIT_FOR_PAGE = """
const [wanted, prefix, answer] = arguments;
function check() {
    const here = location.href;
    if ((prefix ? here.startsWith(wanted) : here === wanted)
            && document.readyState === "complete") {
        answer(here);
    }
}
document.addEventListener("readystatechange", check);
check();
"""


class BrowserError(Exception):
    pass


class Browser:
    """
    One headless Chromium session inside namespace C{ns} of C{lab}.
    Blocking calls: run them in a thread (deferToThread) from a trial test.
    Always call L{close} (it kills the relay, chromedriver and Chromium).
    """

    def __init__(self, lab: Any, ns: str, timeout: float = 30.0) -> None:
        self.lab = lab
        self.ns = ns
        self.timeout = timeout
        self.session: Optional[str] = None
        self.profile = tempfile.mkdtemp(prefix="nschromium-")
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.relay = Child([sys.executable, "-m", "tests.integration.browser"],
                           label="WebDriver relay", netns=lab.netns(ns), cwd=root,
                           stdin=True).start()
        try:
            [line] = self.relay.wait_for_line("^(ready|error)", 30)
        except ChildError as e:
            line = str(e)
        if line != "ready":
            self.close()
            raise BrowserError(f"the WebDriver relay did not start: {line}")

    def call(self, method: str, path: str, body: Any = None) -> Any:
        seen = self.relay.line_count
        self.relay.send(json.dumps([method, path, body]) + "\n")
        try:
            [line] = self.relay.wait_for_line(r"^\{", self.timeout + 10, after=seen)
        except ChildError as e:
            raise BrowserError(f"no answer from the WebDriver relay: {e}") from None
        answer = json.loads(line)
        if answer["status"] != 200:
            raise BrowserError(f"{method} {path}: {answer}")
        return answer["value"]

    def start(self, **capabilities: Any) -> "Browser":
        """Start the session; C{capabilities} are added (C{acceptInsecureCerts=True})."""
        value = self.call("POST", "/session", {"capabilities": {"alwaysMatch": {
            **capabilities,
            "browserName": "chrome",
            # "none": Debian's Chromium opens https://start.duckduckgo.com/ in its
            # first tab, and with "normal" (or "eager") every command waits for
            # that navigation, which hangs in the lab: the tests poll instead
            "pageLoadStrategy": "none",
            "timeouts": {"pageLoad": int(self.timeout * 1000 / 2), "script": 10000,
                         "implicit": 0},
            "goog:chromeOptions": {
                "binary": find_program(CHROMIUM_NAMES),
                "args": CHROMIUM_ARGS + [f"--user-data-dir={self.profile}"]}}}})
        self.session = value["sessionId"]
        return self

    def _s(self, path: str) -> str:
        return f"/session/{self.session}{path}"

    def navigate(self, url: str) -> None:
        """Start loading C{url} (it returns at once: see L{wait_for_page})."""
        self.call("POST", self._s("/url"), {"url": url})

    def url(self) -> str:
        return self.call("GET", self._s("/url"))

    def source(self) -> str:
        return self.call("GET", self._s("/source"))

    def text(self) -> str:
        """The visible text of the page's body."""
        element = self.find("body")
        return self.call("GET", self._s(f"/element/{element}/text"))

    def find(self, css: str) -> str:
        value = self.call("POST", self._s("/element"), {"using": "css selector", "value": css})
        if not isinstance(value, dict) or ELEMENT not in value:
            raise BrowserError(f"no element {css!r}: {value!r}")
        return value[ELEMENT]

    def screenshot(self, css: Optional[str] = None) -> bytes:
        """A PNG of the window, or of the element C{css} only."""
        import base64
        path = self._s("/screenshot") if css is None else self._s(
            f"/element/{self.find(css)}/screenshot")
        return base64.b64decode(self.call("GET", path))

    def execute(self, script: str, *args: Any) -> Any:
        """The value of C{script} (a function body) run in the page with C{args}."""
        return self.call("POST", self._s("/execute/sync"), {"script": script, "args": list(args)})

    def execute_async(self, script: str, *args: Any) -> Any:
        """What C{script} passes to its last argument (a callback), within the script time-out."""
        return self.call("POST", self._s("/execute/async"), {"script": script, "args": list(args)})

    def click(self, css: str) -> None:
        self.call("POST", self._s(f"/element/{self.find(css)}/click"), {})

    def wait_for_page(self, url: str, prefix: bool = False, seconds: float = 15.0) -> str:
        """
        Wait until the page at C{url} (or at a URL starting with it) has
        loaded, and return its URL. The browser waits, not the test: a
        script in the page answers when the page is the one and complete;
        a page that goes away before (a redirect, the next page of a form)
        fails the script, and the next page gets the script again.
        """
        deadline = time.monotonic() + seconds
        last: Any = None
        while time.monotonic() < deadline:
            try:
                return self.call("POST", self._s("/execute/async"), {
                    "script": _WAIT_FOR_PAGE, "args": [url, prefix]})
            except BrowserError as e:  # the page went away, or the script timed out
                last = e
        try:
            where = self.url()
        except Exception as e:
            where = repr(e)
        raise BrowserError(f"{url} not loaded after {seconds} s (last: {last!r}, at {where})")

    def close(self) -> None:
        if self.session is not None and self.relay.running:
            try:
                self.call("DELETE", self._s(""))
            except Exception:
                pass
            self.session = None
        self.relay.stop(10)  # the relay kills chromedriver and Chromium
        shutil.rmtree(self.profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(relay())
