"""The dashboard's two pages as the server puts them together from ``ui/page.html`` and each
page's own parts (the browser tests drive them: tests/test_dashboard.py, test_memory_page.py)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from memory_proxy.server.dashboard import PAGES, render


class Outline(HTMLParser):
    """Tags, ids, scripts and the nav's links of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.scripts: list[str] = []
        self.nav: list[tuple[str, str]] = []  # (tag, text) inside <nav>
        self.titles: list[str] = []
        self._in: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._in.append(tag)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "script":
            self.scripts.append(attrs["src"])

    def handle_endtag(self, tag):
        while self._in and self._in.pop() != tag:
            pass

    def handle_data(self, data):
        if "nav" in self._in and data.strip(" ·\n"):
            self.nav.append((self._in[-1], data.strip()))
        if self._in and self._in[-1] == "title":
            self.titles.append(data)


@pytest.mark.parametrize(("path", "name", "script", "own_ids"), [
    ("", "usage", "app.js", {"range", "by", "requests-chart", "cost-chart", "latency", "cards", "live"}),
    ("memory", "memory", "memory.js", {"pick", "known", "typed", "confirm"}),
])
def test_each_page_is_its_parts_in_the_shell(path, name, script, own_ids):
    text = render(path).decode()
    outline = Outline()
    outline.feed(text)
    assert text.startswith("<!doctype html>") and text.count("<body>") == 1 and text.endswith("</html>\n")
    assert "$" not in text and "<!-- main -->" not in text
    assert outline.titles == [f"Memory proxy {name}"]
    assert outline.scripts == ["common.js", script]
    assert outline.nav == [("strong" if p == path else "a", n) for p, (n, _) in PAGES.items()]
    assert {"login", "login-key", "login-error", "main"} | own_ids <= set(outline.ids)
    assert len(outline.ids) == len(set(outline.ids)), "an id twice"
    assert f"enter one to see its {name}" in text
