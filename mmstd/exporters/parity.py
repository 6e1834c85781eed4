"""Export-time parity: onnxruntime CPU must reproduce the source framework on the same inputs.

Cases come from the card: seeded inputs inside each input's ``value_range`` at the export sizes
(the reference case), at further batch sizes, and at two further sizes of every other named axis,
none of them the sizes used at export; a suite's samples can be appended as extra batches. The
exporter produces the source framework's outputs (in-process or in a converter child); this
module only runs onnxruntime and judges, Polygraphy style.

Per case and output the law is ``numpy.allclose``: every element must satisfy
``|onnx - source| <= atol + rtol * |source|``; shapes and dtypes must equal the source's and
values must be finite. ``max_rel_diff`` is reported over the elements with ``|source| >= atol``
(smaller ones are judged by ``atol`` alone). Argmax agreement is the share of rows whose argmax
over the last axis agrees, where a row also agrees when onnxruntime's pick is within ``atol`` of
the source's maximum (a tie); it is enforced for ``probabilities`` and ``logits`` outputs.

Defaults (a card's ``export`` section overrides them): ``atol`` 1e-4, ``rtol`` 1e-3,
``argmax_agreement_min`` 1.0.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmstd.card import ModelCard, TensorSpec
from mmstd.errors import ExportError

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3
DEFAULT_ARGMAX_MIN = 1.0

#: Batch size of the example inputs used at export (and of the reference case).
EXPORT_BATCH = 2
#: Further batch sizes checked, none equal to EXPORT_BATCH.
PARITY_BATCHES = (1, 7, 16)
#: Size of every other named axis at export; the first value that collides with no fixed dim wins.
EXPORT_AXIS_SIZE = 12
#: Two further sizes of every other named axis.
PARITY_AXIS_SIZES = (5, 23)
#: Batch size used while another named axis varies.
AXIS_CASE_BATCH = 3

NP_DTYPES: dict[str, Any] = {
    "float32": np.float32, "float16": np.float16, "float64": np.float64, "int8": np.int8, "int16": np.int16,
    "int32": np.int32, "int64": np.int64, "uint8": np.uint8, "bool": np.bool_,
}
_SCORED_KINDS = ("probabilities", "logits")


@dataclass(frozen=True, slots=True)
class Tolerance:
    """What parity tolerates; ``from_card`` reads the card's ``export`` section."""

    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    argmax_min: float = DEFAULT_ARGMAX_MIN

    @classmethod
    def from_card(cls, card: ModelCard) -> Tolerance:
        section = card.sections.get("export", {})
        return cls(atol=float(section.get("atol", DEFAULT_ATOL)), rtol=float(section.get("rtol", DEFAULT_RTOL)),
                   argmax_min=float(section.get("argmax_agreement_min", DEFAULT_ARGMAX_MIN)))


@dataclass(frozen=True, slots=True)
class ParityCase:
    """One batch of inputs, named for the checklist (``"seeded batch=7"``)."""

    label: str
    feeds: Mapping[str, np.ndarray]

    @property
    def rows(self) -> int:
        return int(next(iter(self.feeds.values())).shape[0]) if self.feeds else 0


@dataclass(frozen=True, slots=True)
class OutputCheck:
    """The verdict for one output on one case."""

    case: str
    output: str
    shape: tuple[int, ...] | None
    expected_shape: tuple[int, ...] | None
    max_abs_diff: float
    max_rel_diff: float
    argmax_agreement: float | None
    rows: int
    passed: bool
    problem: str | None = None
    scored: bool = False

    def line(self, tol: Tolerance) -> str:
        mark = "✓" if self.passed else "x"
        head = f"  [{mark}] {self.case}: {self.output!r}"
        if self.problem and self.shape is None:
            return f"{head}: {self.problem}"
        shape = f"shape {self.shape}" + ("" if self.shape == self.expected_shape else f" != source {self.expected_shape}")
        nums = f"max |diff| {self.max_abs_diff:.2e} (atol {tol.atol:g}), max rel {self.max_rel_diff:.2e} (rtol {tol.rtol:g})"
        agree = "" if self.argmax_agreement is None else f", argmax agreement {self.argmax_agreement:.4f}"
        tail = f"; {self.problem}" if self.problem else ""
        return f"{head} {shape}, {nums}{agree}{tail}"


@dataclass(frozen=True, slots=True)
class ParityReport:
    """Every check of one export, with the figures the card's ``parity`` section records."""

    tolerance: Tolerance
    checks: tuple[OutputCheck, ...]
    runtime: str
    source: str
    samples: int

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def max_abs_diff(self) -> float:
        return max((c.max_abs_diff for c in self.checks), default=0.0)

    @property
    def max_rel_diff(self) -> float:
        return max((c.max_rel_diff for c in self.checks), default=0.0)

    @property
    def argmax_agreement(self) -> float:
        """Row-weighted agreement over the scored outputs (all outputs when none is scored)."""
        rated = [c for c in self.checks if c.scored] or list(self.checks)
        rated = [c for c in rated if c.argmax_agreement is not None]
        rows = sum(c.rows for c in rated)
        if not rows:
            return 0.0 if any(not c.passed for c in self.checks) else 1.0
        return sum(c.argmax_agreement * c.rows for c in rated if c.argmax_agreement is not None) / rows

    def checklist(self) -> list[str]:
        """Optimum-style lines: a header, then ``[✓]`` / ``[x]`` per case and output."""
        t = self.tolerance
        lines = [f"Validating the ONNX graph on {self.runtime} against {self.source} "
                 f"(atol {t.atol:g}, rtol {t.rtol:g}, argmax agreement >= {t.argmax_min:g}):"]
        lines += [c.line(t) for c in self.checks]
        verdict = "PASSED" if self.passed else "FAILED"
        lines.append(f"  {verdict}: {sum(c.passed for c in self.checks)}/{len(self.checks)} checks, {self.samples} samples, "
                     f"max |diff| {self.max_abs_diff:.2e}, max rel {self.max_rel_diff:.2e}, "
                     f"argmax agreement {self.argmax_agreement:.4f}")
        return lines

    def failures(self) -> list[str]:
        return [c.line(self.tolerance).strip()[4:] for c in self.checks if not c.passed]

    def raise_for_failures(self, *, where: str) -> None:
        """Raise one ``E_PARITY`` error listing every failing output with its numbers.

        Raises:
            ExportError: ``E_PARITY`` when any check failed.
        """
        failed = self.failures()
        if failed:
            outputs = sorted({c.output for c in self.checks if not c.passed})
            raise ExportError(
                f"{where}: onnxruntime disagrees with {self.source} on {len(failed)} of {len(self.checks)} checks "
                f"(outputs {', '.join(map(repr, outputs))}); no package was written.",
                code="E_PARITY",
                problems=failed,
                hint="a value-dependent branch or a size baked in at export is the usual cause; try the other "
                     "exporter path (--exporter), or widen export.atol / export.rtol in the card if the drift is benign.",
            )

    def to_card(self) -> dict[str, Any]:
        """The card's ``parity`` section."""
        checks = []
        for c in self.checks:
            entry: dict[str, Any] = {"output": c.output, "inputs": c.case, "max_abs_diff": _finite(c.max_abs_diff),
                                     "max_rel_diff": _finite(c.max_rel_diff), "passed": c.passed}
            if c.shape is not None:
                entry["shape"] = list(c.shape)
            if c.argmax_agreement is not None:
                entry["argmax_agreement"] = c.argmax_agreement
            checks.append(entry)
        return {"atol": self.tolerance.atol, "rtol": self.tolerance.rtol, "max_abs_diff": _finite(self.max_abs_diff),
                "max_rel_diff": _finite(self.max_rel_diff), "argmax_agreement": self.argmax_agreement,
                "samples": self.samples, "passed": self.passed, "runtime": self.runtime, "checks": checks}


def _finite(x: float) -> float:
    # The card is strict JSON: no NaN/Infinity. A failing non-finite check never reaches a card anyway.
    return x if math.isfinite(x) else 1e300


# ------------------------------------------------------------------------------------------- cases


def batch_axis(card: ModelCard) -> str | None:
    """The axis named first in every input (``"batch"`` by convention), or None."""
    firsts = {s.shape[0] for s in card.inputs}
    if len(firsts) == 1:
        (first,) = firsts
        if isinstance(first, str):
            return first
    return None


def export_sizes(card: ModelCard) -> dict[str, int]:
    """A size for every named axis, as used for the export example inputs.

    The batch axis gets ``EXPORT_BATCH``; every other axis a distinct size from
    ``EXPORT_AXIS_SIZE`` upwards that equals no fixed dim of the card (dynamo would otherwise
    be free to unify them).
    """
    fixed = {d for s in (*card.inputs, *card.outputs) for d in s.shape if isinstance(d, int)}
    batch = batch_axis(card)
    sizes: dict[str, int] = {}
    nxt = EXPORT_AXIS_SIZE
    for spec in (*card.inputs, *card.outputs):
        for d in spec.shape:
            if not isinstance(d, str) or d in sizes:
                continue
            if d == batch:
                sizes[d] = EXPORT_BATCH
                continue
            while nxt in fixed or nxt in sizes.values() or nxt in PARITY_AXIS_SIZES:
                nxt += 1
            sizes[d] = nxt
            nxt += 1
    return sizes


def random_feeds(card: ModelCard, sizes: Mapping[str, int], *, seed: int) -> dict[str, np.ndarray]:
    """Seeded inputs drawn from each input's spec.

    Integer inputs (token ids) are uniform in ``value_range`` with a random tail of padding
    (the range's low end); image and tabular floats uniform in ``value_range``; audio floats
    standard normal clipped to ``value_range`` (standardized features). Without a range: floats
    standard normal, integers 0 or 1.
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in card.inputs:
        shape = spec.concrete_shape(sizes)
        dtype = NP_DTYPES[spec.dtype]
        feeds[spec.name] = _draw(rng, spec, shape, dtype)
    return feeds


def _draw(rng: np.random.Generator, spec: TensorSpec, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    lo, hi = spec.value_range if spec.value_range is not None else (None, None)
    if dtype is np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        low, high = (int(math.ceil(lo)), int(math.floor(hi))) if lo is not None and hi is not None else (0, 1)
        ids = rng.integers(low, high + 1, size=shape)
        if spec.modality == "text" and len(shape) == 2 and shape[1] > 1:
            # Real token rows end in padding; a graph that mishandles it should be caught here.
            lengths = rng.integers(1, shape[1] + 1, size=shape[0])
            ids[np.arange(shape[1])[None, :] >= lengths[:, None]] = low
        return ids.astype(dtype)
    if spec.modality == "audio" or lo is None or hi is None:
        x = rng.standard_normal(size=shape)
        return (np.clip(x, lo, hi) if lo is not None and hi is not None else x).astype(dtype)
    return rng.uniform(lo, hi, size=shape).astype(dtype)


def parity_cases(card: ModelCard, *, seed: int = 0,
                 extra: Sequence[Mapping[str, Any] | ParityCase] = ()) -> list[ParityCase]:
    """The cases parity runs, the reference case first.

    Args:
        card: Supplies the inputs' names, dtypes, shapes and value ranges.
        seed: Each case uses ``seed + index``.
        extra: Further batches, each mapping every card input to an array (labelled ``extra batch i``)
            or a ``ParityCase`` (keeps its label; ``suite_cases`` makes them from a suite).

    Raises:
        ExportError: ``E_IO_CONTRACT`` when an extra batch misses an input or has the wrong
            dtype, rank or fixed dims.
    """
    base = export_sizes(card)
    batch = batch_axis(card)
    plans: list[tuple[str, dict[str, int]]] = [(_label("export sizes", base, batch), base)]
    if batch is not None:
        plans += [(_label(None, {**base, batch: b}, batch), {**base, batch: b}) for b in PARITY_BATCHES]
    for axis in base:
        if axis == batch:
            continue
        for size in PARITY_AXIS_SIZES:
            sizes = {**base, axis: size}
            if batch is not None:
                sizes[batch] = AXIS_CASE_BATCH
            plans.append((_label(None, sizes, batch), sizes))
    cases = [ParityCase(label, random_feeds(card, sizes, seed=seed + i)) for i, (label, sizes) in enumerate(plans)]
    for i, feeds in enumerate(extra):
        if isinstance(feeds, ParityCase):
            cases.append(ParityCase(feeds.label, _check_extra(card, feeds.feeds, i)))
        else:
            cases.append(ParityCase(f"extra batch {i}", _check_extra(card, feeds, i)))
    return cases


def suite_cases(card: ModelCard, suite: str | Path | Any, *, split: str = "test", limit: int = 64,
                batch_size: int = 16, assets_root: Path | None = None) -> list[ParityCase]:
    """A suite's first ``limit`` samples of ``split``, preprocessed by the card, as parity cases.

    Args:
        card: Its inputs' preprocessing turns the suite's canonical values into tensors.
        suite: A built-in suite name, a path to a suite.yaml / suite directory, or a loaded ``Suite``.
        assets_root: The directory holding the card's ``assets/`` (vocabularies, tokenizers).

    Raises:
        MmstdError: From ``load_suite`` (digest, schema) or the preprocessing (``E_IO_CONTRACT``).
    """
    from mmstd.preprocess import preprocess_batch
    from mmstd.suite import Suite, load_suite

    loaded = suite if isinstance(suite, Suite) else load_suite(suite)
    data = loaded.split(split, limit=limit)
    cases = []
    for start, batch in zip(range(0, len(data), batch_size), data.batches(batch_size), strict=True):
        label = f"suite {loaded.ref} {split}[{start}:{start + len(batch)}]"
        cases.append(ParityCase(label, preprocess_batch(card, batch, assets_root=assets_root)))
    return cases


def _label(prefix: str | None, sizes: Mapping[str, int], batch: str | None) -> str:
    dims = ", ".join(f"{k}={v}" for k, v in sizes.items())
    return f"seeded {dims}" + (f" ({prefix})" if prefix else "")


def _check_extra(card: ModelCard, feeds: Mapping[str, Any], index: int) -> dict[str, np.ndarray]:
    where = f"extra parity batch {index}"
    missing = [s.name for s in card.inputs if s.name not in feeds]
    unknown = sorted(set(feeds) - {s.name for s in card.inputs})
    if missing or unknown:
        raise ExportError(f"{where}: inputs {sorted(feeds)} do not match the card's {[s.name for s in card.inputs]} "
                          f"(missing {missing}, unknown {unknown}).", code="E_IO_CONTRACT")
    out: dict[str, np.ndarray] = {}
    rows = None
    for spec in card.inputs:
        arr = np.asarray(feeds[spec.name])
        if arr.dtype != np.dtype(NP_DTYPES[spec.dtype]):
            raise ExportError(f"{where}: input {spec.name!r} is {arr.dtype}, the card says {spec.dtype}.",
                              code="E_IO_CONTRACT", hint="apply the card's preprocessing (it ends with the cast).")
        bad_dims = arr.ndim != spec.rank or any(isinstance(d, int) and d != n for d, n in zip(spec.shape, arr.shape, strict=False))
        if bad_dims:
            raise ExportError(f"{where}: input {spec.name!r} has shape {arr.shape}, the card says {list(spec.shape)}.",
                              code="E_IO_CONTRACT")
        if rows is not None and arr.shape[0] != rows:
            raise ExportError(f"{where}: input {spec.name!r} has {arr.shape[0]} rows, another input {rows}.",
                              code="E_IO_CONTRACT")
        rows = arr.shape[0]
        out[spec.name] = np.ascontiguousarray(arr)
    return out


# ---------------------------------------------------------------------------------------- judging


def compare(
    card: ModelCard,
    onnx_path: Path,
    cases: Sequence[ParityCase],
    source_outputs: Sequence[Mapping[str, Any]],
    *,
    tolerance: Tolerance | None = None,
    source: str = "the source framework",
) -> ParityReport:
    """Run every case through onnxruntime CPU and judge it against the source's outputs.

    A case on which onnxruntime raises (a size baked in at export, say) becomes a failed check
    for every output; it does not stop the other cases.

    Args:
        card: Names the outputs to check and their kinds.
        onnx_path: The exported graph (external data beside it).
        cases: From ``parity_cases``.
        source_outputs: The source framework's outputs, one mapping per case.
        tolerance: Defaults to the card's.
        source: How to name the source in messages (``"torch 2.13.0"``).

    Raises:
        ExportError: ``E_EXPORT`` when onnxruntime cannot load the graph, or when the source
            outputs do not cover every case and output.
    """
    import onnxruntime as ort

    tol = tolerance or Tolerance.from_card(card)
    if len(source_outputs) != len(cases):
        raise ExportError(f"the source produced outputs for {len(source_outputs)} of {len(cases)} parity cases.",
                          code="E_EXPORT")
    session = ort_session(onnx_path)
    checks: list[OutputCheck] = []
    for case, expected in zip(cases, source_outputs, strict=True):
        try:
            got = dict(zip([o.name for o in session.get_outputs()], session.run(None, dict(case.feeds)), strict=True))
        except Exception as e:  # onnxruntime's errors all derive from Exception directly
            if type(e).__module__.split(".")[0] != "onnxruntime":
                raise
            msg = _first_line(e)
            checks += [OutputCheck(case.label, s.name, None, None, math.inf, math.inf, 0.0, case.rows, False,
                                   f"onnxruntime raised: {msg}", s.kind in _SCORED_KINDS) for s in card.outputs]
            continue
        for spec in card.outputs:
            if spec.name not in expected:
                raise ExportError(f"the source produced no output {spec.name!r} for case {case.label!r}.", code="E_EXPORT")
            checks.append(_check(case, spec, np.asarray(got[spec.name]), np.asarray(expected[spec.name]), tol))
    samples = sum(c.rows for c in cases)
    return ParityReport(tolerance=tol, checks=tuple(checks), runtime=f"onnxruntime-cpu {ort.__version__}",
                        source=source, samples=samples)


def ort_session(onnx_path: Path) -> Any:
    """A deterministic CPU session on ``onnx_path`` (by path, so external data resolves)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.use_deterministic_compute = True
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        if type(e).__module__.split(".")[0] != "onnxruntime":
            raise
        raise ExportError(f"{Path(onnx_path).name}: onnxruntime cannot load the exported graph: {_first_line(e)}",
                          code="E_EXPORT") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(e).__name__


def _check(case: ParityCase, spec: TensorSpec, got: np.ndarray, ref: np.ndarray, tol: Tolerance) -> OutputCheck:
    rows = case.rows
    scored = spec.kind in _SCORED_KINDS
    problems: list[str] = []
    if got.shape != ref.shape:
        return OutputCheck(case.label, spec.name, tuple(got.shape), tuple(ref.shape), math.inf, math.inf,
                           0.0, rows, False, "shape differs from the source's", scored)
    if got.dtype != np.dtype(NP_DTYPES[spec.dtype]):
        problems.append(f"dtype {got.dtype}, card says {spec.dtype}")
    g = got.astype(np.float64)
    r = ref.astype(np.float64)
    finite = bool(np.isfinite(g).all() and np.isfinite(r).all())
    if not np.isfinite(r).all():
        problems.append("the source produced NaN/Inf")
    elif not np.isfinite(g).all():
        problems.append("onnxruntime produced NaN/Inf")
    if g.size == 0:
        max_abs = max_rel = 0.0
        close = True
    elif finite:
        diff = np.abs(g - r)
        max_abs = float(diff.max())
        big = np.abs(r) >= tol.atol
        max_rel = float((diff[big] / np.abs(r[big])).max()) if big.any() else 0.0
        close = bool((diff <= tol.atol + tol.rtol * np.abs(r)).all())
        if not close:
            n_bad = int((diff > tol.atol + tol.rtol * np.abs(r)).sum())
            problems.append(f"{n_bad} of {diff.size} values exceed atol + rtol * |source|")
    else:
        max_abs = max_rel = math.inf
        close = False
    agreement: float | None = None
    if not finite:
        agreement = 0.0
    elif g.ndim >= 1 and g.size:
        agreement = _argmax_agreement(g, r, tol.atol)
    if scored and finite and agreement is not None and agreement < tol.argmax_min:
        problems.append(f"argmax agreement {agreement:.4f} < {tol.argmax_min:g}")
    return OutputCheck(case.label, spec.name, tuple(got.shape), tuple(ref.shape), max_abs, max_rel, agreement, rows,
                       close and not problems, "; ".join(problems) or None, scored)


def _argmax_agreement(got: np.ndarray, ref: np.ndarray, atol: float) -> float:
    g = got.reshape(-1, got.shape[-1]) if got.ndim > 1 else got.reshape(1, -1)
    r = ref.reshape(-1, ref.shape[-1]) if ref.ndim > 1 else ref.reshape(1, -1)
    gi, ri = g.argmax(axis=1), r.argmax(axis=1)
    rows = np.arange(len(r))
    # A row whose two picks are tied within atol in the source's own values is not a disagreement.
    agree = (gi == ri) | (r[rows, gi] >= r[rows, ri] - atol)
    return float(agree.mean())


# -------------------------------------------------------------------------------------- reference


def write_reference(path: Path, case: ParityCase, outputs: Mapping[str, Any], *, framework: str) -> Path:
    """Write ``reference.safetensors``: ``input.<name>`` and ``output.<name>`` tensors for one case."""
    from mmstd.exporters.tensors import write_numpy

    tensors = {f"input.{k}": np.asarray(v) for k, v in case.feeds.items()}
    tensors.update({f"output.{k}": np.asarray(v) for k, v in outputs.items()})
    return write_numpy(path, tensors, {"framework": framework, "inputs": case.label})


def read_reference(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The inputs and outputs stored by ``write_reference``, keyed by tensor name."""
    from safetensors.numpy import load_file

    data = load_file(str(path))
    inputs = {k[len("input."):]: v for k, v in data.items() if k.startswith("input.")}
    outputs = {k[len("output."):]: v for k, v in data.items() if k.startswith("output.")}
    return inputs, outputs
