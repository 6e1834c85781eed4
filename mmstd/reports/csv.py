"""``per_class.csv``: one row per backend and label, for spreadsheets and dataframes.

Columns: backend, label, precision, recall, f1, support, f1_ci_low, f1_ci_high (empty when no
bootstrap ran). Floats are written at full precision so the file round-trips.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

COLUMNS = ("backend", "label", "precision", "recall", "f1", "support", "f1_ci_low", "f1_ci_high")

# A cell starting with one of these is a formula to Excel/LibreOffice (CSV injection), unless it is a number.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def safe_cell(text: str) -> str:
    """``text``, prefixed with ``'`` when a spreadsheet would run it as a formula."""
    if text.startswith(_FORMULA_START) and not _NUMBER.match(text):
        return "'" + text
    return text


class CsvReporter:
    """Per-class precision, recall, F1 with its interval, and support, for every backend."""

    name = "csv"
    filename = "per_class.csv"

    def render(self, report: Mapping[str, Any]) -> str:
        import pandas as pd  # lazy: `import mmstd` must stay light

        rows = [
            {"backend": b["name"], "label": safe_cell(c["label"]), "precision": c["precision"], "recall": c["recall"],
             "f1": c["f1"], "support": c["support"], "f1_ci_low": c["f1_ci_low"], "f1_ci_high": c["f1_ci_high"]}
            for b in report["backends"] for c in b["scores"]["per_class"]
        ]
        frame = pd.DataFrame(rows, columns=list(COLUMNS))
        frame["support"] = frame["support"].astype("int64")
        for col in ("precision", "recall", "f1", "f1_ci_low", "f1_ci_high"):
            frame[col] = frame[col].astype("float64")
        return frame.to_csv(index=False, lineterminator="\n")
