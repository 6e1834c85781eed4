"""Report formats: one machine report (``report.json``) and its renderings.

Every format is a ``Reporter`` registered in ``REPORTERS`` (entry-point group ``mmstd.reports``)
with the same verb, ``render(report) -> str | bytes``, a pure function of the report dict: the same
dict gives the same bytes, so renderings can be golden-tested and diffed between runs. Importing
this package imports neither matplotlib nor pandas; the HTML and CSV reporters do, when they render.
"""
from __future__ import annotations

from mmstd.registry import Registry
from mmstd.reports.document import (
    DEFAULT_FORMATS,
    SCHEMA_VERSION,
    Reporter,
    ReporterFactory,
    cdf_points,
    check_report,
    load_report,
    render_report,
    report_problems,
    write_report,
)

REPORTERS: Registry[ReporterFactory] = Registry("report format", entry_points="mmstd.reports")
REPORTERS.register("json", "mmstd.reports.json:JsonReporter")
REPORTERS.register("md", "mmstd.reports.markdown:MarkdownReporter")
REPORTERS.register("html", "mmstd.reports.html:HtmlReporter")
REPORTERS.register("junit", "mmstd.reports.junit:JunitReporter")
REPORTERS.register("csv", "mmstd.reports.csv:CsvReporter")

__all__ = [
    "DEFAULT_FORMATS",
    "REPORTERS",
    "SCHEMA_VERSION",
    "Reporter",
    "ReporterFactory",
    "cdf_points",
    "check_report",
    "load_report",
    "render_report",
    "report_problems",
    "write_report",
]
