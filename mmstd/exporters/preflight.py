"""Pre-flight: constructs known to mis-export, found before exporting, and the path that avoids them.

Each ``KnownIssue`` names an upstream issue, the exporter path it affects, and the exporter
version in which mmstd measured it fixed (``None``: still reproduced with the versions mmstd
is tested on). An exporter scans its model for the constructs (``Construct``), asks
``findings`` which issues apply at the installed version, and ``choose_path`` then either
takes a path with no finding or fails naming the issues. Parity still runs afterwards: the
table only gives a better diagnosis earlier, it is not the control.

Measured here (torch 2.13.0, tf2onnx 1.17.0, onnxruntime 1.31.1; ``bench/export.py`` and
``tests/test_exporters_torch.py`` reproduce it): under TorchScript an ``nn.MultiheadAttention``
exported with a dynamic sequence axis runs only at the export length, while dynamo exports it
correctly. Under dynamo an LSTM/GRU keeps a dynamic time axis only in the first such export of
a process, while TorchScript exports RNNs correctly every time. SDPA and the manual
bidirectional flip pattern export correctly on both paths, and tf2onnx keeps Bidirectional
activations. ``graph.conform_graph`` refuses a named axis frozen to a constant whatever the
table says.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mmstd.errors import ExportError


@dataclass(frozen=True, slots=True)
class KnownIssue:
    """An upstream bug: which path, which construct, what goes wrong, and where it was fixed."""

    key: str
    exporter_path: str
    construct: str
    effect: str
    version_of: str
    fixed_in: str | None = None

    @property
    def url(self) -> str:
        owner_repo = {"pytorch": "pytorch/pytorch", "tensorflow-onnx": "onnx/tensorflow-onnx"}[self.key.split("#")[0]]
        return f"https://github.com/{owner_repo}/issues/{self.key.split('#')[1]}"

    def affects(self, version: str) -> bool:
        return self.fixed_in is None or parse_version(version) < parse_version(self.fixed_in)


#: construct keys an exporter may report: see ``TorchExporter`` and ``KerasExporter``.
KNOWN_ISSUES: tuple[KnownIssue, ...] = (
    KnownIssue("pytorch#99701", "torchscript", "mha-dynamic-length",
               "nn.MultiheadAttention freezes the sequence length of the example input; onnxruntime fails "
               "(Reshape) at any other length", "torch"),
    KnownIssue("pytorch#152018", "dynamo", "sdpa-dynamic-length",
               "scaled_dot_product_attention under dynamic shapes exports with the example's sizes specialized",
               "torch", fixed_in="2.13.0"),
    KnownIssue("pytorch#174272", "dynamo", "rnn-dynamic-time",
               "an nn.LSTM/GRU/RNN keeps a dynamic time axis only in a process's first dynamo export (the fix, "
               "pytorch#184872, does not apply again); later exports freeze it to the example length", "torch"),
    KnownIssue("pytorch#191855", "dynamo", "birnn-dynamic-time",
               "a bidirectional LSTM/GRU with a dynamic time axis keeps the example length in an Expand shape",
               "torch", fixed_in="2.13.0"),
    KnownIssue("tensorflow-onnx#2211", "tf2onnx", "birnn-custom-activation",
               "a Bidirectional LSTM/GRU loses its non-default activations in the ONNX LSTM node", "tf2onnx",
               fixed_in="1.17.0"),
)


@dataclass(frozen=True, slots=True)
class Construct:
    """One risky construct found in a model: its key and where (``"module 'attn' (MultiheadAttention)"``)."""

    key: str
    where: str


@dataclass(frozen=True, slots=True)
class Finding:
    issue: KnownIssue
    construct: Construct

    def describe(self) -> str:
        return f"{self.construct.where}: {self.issue.effect} ({self.issue.key}, {self.issue.url})"


def parse_version(version: str) -> tuple[int, ...]:
    """``"2.13.0+cpu"`` -> ``(2, 13, 0)``; stops at the first non-numeric part."""
    parts = []
    for piece in version.split("+")[0].split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
        if m.group() != piece:
            break
    return tuple(parts)


def findings(constructs: Sequence[Construct], exporter_path: str, versions: Mapping[str, str]) -> list[Finding]:
    """The known issues that apply to ``constructs`` on ``exporter_path`` at the installed ``versions``."""
    out = []
    for c in constructs:
        for issue in KNOWN_ISSUES:
            if issue.construct == c.key and issue.exporter_path == exporter_path and issue.affects(versions.get(issue.version_of, "0")):
                out.append(Finding(issue, c))
    return out


def choose_path(
    constructs: Sequence[Construct],
    *,
    requested: str | None,
    order: Sequence[str],
    versions: Mapping[str, str],
    what: str,
) -> tuple[str, list[str]]:
    """Pick the exporter path: the requested one if it has no finding, else the first clean one.

    Args:
        constructs: What the exporter found in the model.
        requested: A path the user asked for (``--exporter`` or the card), or None for "choose".
        order: Candidate paths, default first.
        versions: Installed versions by package name (``{"torch": "2.13.0"}``).
        what: The model, for messages.

    Returns:
        The path and notes explaining a switch away from the default.

    Raises:
        ExportError: ``E_EXPORT`` naming every applicable upstream issue when the requested path
            (or every path) is affected.
    """
    by_path = {p: findings(constructs, p, versions) for p in order}
    if requested is not None:
        hits = by_path.get(requested) or findings(constructs, requested, versions)
        if not hits:
            return requested, []
        clean = [p for p in order if p != requested and not by_path[p]]
        hint = (f"use --exporter {clean[0]} (no known issue for this model there), or leave --exporter out"
                if clean else "change the model so that the affected size is fixed, or drop the dynamic axis from the card.")
        raise ExportError(f"{what}: pre-flight: the {requested} exporter is known to mis-export this model.",
                          code="E_EXPORT", problems=[f.describe() for f in hits], hint=hint)
    for path in order:
        if not by_path[path]:
            notes = []
            if path != order[0]:
                notes = [f"pre-flight: using the {path} exporter, because under {order[0]}: {f.describe()}"
                         for f in by_path[order[0]]]
            return path, notes
    problems = [f"{p}: {f.describe()}" for p in order for f in by_path[p]]
    raise ExportError(f"{what}: pre-flight: every exporter path is known to mis-export this model.", code="E_EXPORT",
                      problems=problems, hint="upgrade the exporter, or drop the dynamic axis from the card.")
