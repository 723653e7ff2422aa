"""
Tests for L{netsuite.portal.pages}: the check on a client's URL and the
layout.
"""

from twisted.trial.unittest import SynchronousTestCase

from netsuite.portal.pages import Pages, in_words, safe_url


class SafeURLTests(SynchronousTestCase):
    def test_accepts_http(self):
        self.assertEqual(safe_url("http://example.com/a?b=c"), "http://example.com/a?b=c")
        self.assertEqual(safe_url("https://example.com/"), "https://example.com/")

    def test_refuses_other_schemes(self):
        for url in ["javascript:alert(1)", "JavaScript://example.com/%0aalert(1)",
                    "data:text/html,x", "//evil.example/", "http:\\\\evil", "ftp://x/",
                    "http://", "http://a b/", "http://x/\r\nSet-Cookie: a=b", "", None]:
            self.assertIsNone(safe_url(url), url)

    def test_escapes_quotes(self):
        self.assertEqual(safe_url('http://x/"<a>'), "http://x/%22%3Ca%3E")


class TemplateTests(SynchronousTestCase):
    def test_template(self):
        """
        An operator's template lays out the pages: $title escaped, $body
        as the page's own HTML.
        """
        pages = Pages("<main data-x='1'><h2>$title</h2>$body</main>")
        self.assertEqual(pages.page("A <b>", "<p>hi</p>"),
                         b"<main data-x='1'><h2>A &lt;b&gt;</h2><p>hi</p></main>")


class FormatTests(SynchronousTestCase):
    def test_in_words(self):
        """
        Time-outs read as people say them: seconds below two minutes,
        whole hours when exact, else minutes.
        """
        for seconds, words in [(1, "1 second"), (45, "45 seconds"), (119, "119 seconds"),
                               (120, "2 minutes"), (1800, "30 minutes"), (3600, "1 hour"),
                               (5400, "90 minutes"), (7200, "2 hours"), (-5, "0 seconds")]:
            self.assertEqual(in_words(seconds), words, seconds)
