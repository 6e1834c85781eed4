"""report.html: self-contained, deterministic, escaped, and it opens in a real browser.

The page skeleton (everything but the plot images, whose SVG paths depend on the matplotlib and
font versions) is a golden file: ``pytest --update-golden`` rewrites tests/golden/reports/report.html.
"""
from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from report_fixtures import fixture_report

from mmstd.reports import render_report

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", shutil.which("chromium") or "")
                 if p and os.access(p, os.X_OK)), None)
SECTIONS = ["Summary", "Checks", "Scores", "Per-class scores", "Confusion matrices", "Latency", "Backends", "Parity",
            "Variants"]
_DATA_URI = re.compile(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)")


class _Page(HTMLParser):
    """Collects what the tests look at: headings, images, external references, scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.tags: list[str] = []
        self.external: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "h2":
            self._in_h2 = True
            self.h2.append("")
        if tag == "img":
            self.images.append(a)
        for key in ("src", "href"):
            value = a.get(key) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.h2[-1] += data


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return fixture_report()


@pytest.fixture(scope="module")
def page_html(report: dict[str, Any]) -> str:
    return render_report(report, "html")


def test_page_is_self_contained_with_every_section_and_plot(page_html: str) -> None:
    page = _parse(page_html)
    assert page.h2 == SECTIONS
    assert page.external == [] and "script" not in page.tags
    assert "Content-Security-Policy" in page_html and "default-src 'none'" in page_html
    # per-class F1, two confusion matrices, latency CDF, throughput, variant deltas
    assert len(page.images) == 6
    for img in page.images:
        assert img["alt"]
        match = _DATA_URI.fullmatch(img["src"] or "")
        assert match, (img["src"] or "")[:60]
        svg = ET.fromstring(base64.b64decode(match.group(1)))
        assert svg.tag == "{http://www.w3.org/2000/svg}svg"
        assert not list(svg.iter("{http://www.w3.org/2000/svg}text"))     # glyphs as paths: no font needed


def test_page_is_deterministic(report: dict[str, Any], page_html: str) -> None:
    again = render_report(report, "html")
    assert again == page_html
    assert "<dc:date>" not in page_html and "Matplotlib v" not in base64.b64decode(
        _DATA_URI.search(page_html).group(1)).decode()  # type: ignore[union-attr]


def test_page_skeleton_matches_golden(page_html: str, golden: Any) -> None:
    golden.check("reports/report.html", _DATA_URI.sub("data:image/svg+xml;base64,…", page_html))


def test_labels_are_escaped_and_plots_survive_them() -> None:
    labels = ["<script>alert(1)</script>", "$\\frac{1}{0}$", "a & b \"quoted\"", "x" * 80]
    text = render_report(fixture_report(labels=labels), "html")
    page = _parse(text)
    assert "script" not in page.tags and len(page.images) == 6
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "a &amp; b &quot;quoted&quot;" in text


def test_many_labels_keep_plots_readable() -> None:
    labels = [f"class-{i:02d}" for i in range(60)]
    report = fixture_report(labels=labels)
    text = render_report(report, "html")
    assert len(_parse(text).images) == 6
    md = render_report(report, "md")
    assert "The 50 classes with the lowest F1 of 60; per_class.csv lists all." in md
    assert "60 labels: see report.html for the heat maps." in md


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")
def test_headless_chromium_opens_the_page(tmp_path: Path, page_html: str) -> None:
    path = tmp_path / "report.html"
    path.write_text(page_html, "utf-8")
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"]
    done = subprocess.run([*args, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _parse(done.stdout)
    assert dom.h2 == SECTIONS
    assert len(dom.images) == 6 and all((i["src"] or "").startswith("data:image/svg+xml;base64,") for i in dom.images)
    shot = tmp_path / "shot.png"
    done = subprocess.run([*args, "--window-size=1280,2000", f"--screenshot={shot}", path.as_uri()],
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
