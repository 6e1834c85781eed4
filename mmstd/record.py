"""The RunRecord: what one suite run on one backend produced, kept raw so nothing needs a re-run.

A RunRecord holds the raw outputs (every output, every sample), the labels, each sample's hash,
the timings and the environment, and says which package, suite, split, backend and variant
produced them. Metrics, cross-backend parity and baseline deltas are computed from it later
(Polygraphy's ``RunResults.save/load`` is the model).

One evaluation writes one ``record.npz`` holding all of its records (backends x variants), keyed
``"<backend>/<variant>"`` (``"ort-cpu/clean"``), so a report's ``record.path`` names one file.
The file is a plain NPZ (a zip of ``.npy`` members, readable with
``numpy.load(path, allow_pickle=False)``) plus a ``meta.json`` member with every non-array field;
member names are generated (``r0/o1.npy``), never taken from tensor names. Nothing is pickled,
writes are atomic, and the bytes are deterministic for equal records.
"""
from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from mmstd.errors import MmstdError
from mmstd.files import atomic_write_bytes

__all__ = ["FORMAT", "SCHEMA_VERSION", "RunRecord", "Timings", "load_records", "save_records"]

FORMAT = "mmstd.run-records"
SCHEMA_VERSION = "1"
META = "meta.json"
MAX_MEMBERS = 100_000
MAX_BYTES = 64 << 30            # uncompressed, all members; refuses zip bombs before reading
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)   # fixed, so equal records give equal bytes
_SCORE_KINDS = ("probabilities", "logits")


@dataclass(frozen=True, eq=False)
class Timings:
    """Wall-clock facts of a run.

    Attributes:
        session_create_ms: Creating the onnxruntime session.
        first_run_ms: The first (cold) batch, kept apart from the latency arrays.
        latency_ns: Per-query latencies in ns by batch size, in measurement order (the latency
            protocol's output, before any statistics).
    """

    session_create_ms: float
    first_run_ms: float
    latency_ns: Mapping[int, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lat = {}
        for batch, values in self.latency_ns.items():
            arr = np.asarray(values)
            if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
                raise ValueError(f"latency_ns: batch sizes must be positive ints, got {batch!r}")
            if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"latency_ns[{batch}]: expected a 1-D integer array of ns, got {arr.dtype}{list(arr.shape)}")
            lat[batch] = arr.astype(np.int64, copy=False)
        object.__setattr__(self, "latency_ns", dict(sorted(lat.items())))
        for name in ("session_create_ms", "first_run_ms"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"{name}: expected a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Timings):
            return NotImplemented
        return all(_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class RunRecord:
    """Raw results of one (package, suite split, backend, variant) run.

    Attributes:
        package: The card's ``name@version``.
        package_digest: ``Package.digest`` (sha256 of the manifest).
        suite: The suite's ``name@version``.
        suite_fingerprint: The suite's content digest.
        split: The split that was run (``"test"``).
        backend: Backend registry key (``"ort-cuda"``).
        providers_active: ``session.get_providers()`` as ONNX Runtime reported it.
        session_options: Every session option set explicitly.
        outputs: Every model output by name, ``[n, ...]``, in the graph's output order.
        labels: Ground truth, ``[n]`` (class indices) or ``[n, k]`` (multilabel).
        sample_hashes: One content hash per sample, in run order.
        timings: Session creation, first run and latency arrays.
        environment: ``mmstd.env.capture_environment()``.
        seed: The seed of the run (sampling, ORT random operators).
        variant: Perturbation name, ``None`` for the clean data.
        task_kind: ``multiclass``, ``binary`` or ``multilabel`` (the card's ``task.kind``).
        output_kinds: Output name to the card's kind (``probabilities``, ``logits``, ``embedding``).
        backend_details: The rest of ``OrtSession.describe()``: provider options, I/O binding,
            device, CUDA graph and why not, node assignment.
    """

    package: str
    package_digest: str
    suite: str
    suite_fingerprint: str
    split: str
    backend: str
    providers_active: tuple[str, ...]
    session_options: Mapping[str, Any]
    outputs: Mapping[str, np.ndarray]
    labels: np.ndarray
    sample_hashes: tuple[str, ...]
    timings: Timings
    environment: Mapping[str, Any]
    seed: int
    variant: str | None = None
    task_kind: str = "multiclass"
    output_kinds: Mapping[str, str] = field(default_factory=dict)
    backend_details: Mapping[str, Any] = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "providers_active", tuple(self.providers_active))
        set_(self, "sample_hashes", tuple(str(h) for h in self.sample_hashes))
        set_(self, "session_options", dict(self.session_options))
        set_(self, "environment", dict(self.environment))
        set_(self, "output_kinds", dict(self.output_kinds))
        set_(self, "backend_details", dict(self.backend_details))
        outputs = {str(k): np.asarray(v) for k, v in self.outputs.items()}
        set_(self, "outputs", outputs)
        set_(self, "labels", np.asarray(self.labels))
        n = len(self.labels) if self.labels.ndim else -1
        problems = []
        if not outputs:
            problems.append("outputs: at least one output is required")
        for name, arr in outputs.items():
            if arr.dtype.kind not in "biuf":
                problems.append(f"outputs[{name!r}]: dtype {arr.dtype} is not numeric")
            if arr.ndim == 0 or len(arr) != n:
                problems.append(f"outputs[{name!r}]: {list(arr.shape)} does not have one row per label ({n})")
        if self.labels.dtype.kind not in "biuf":
            problems.append(f"labels: dtype {self.labels.dtype} is not numeric")
        if self.sample_hashes and len(self.sample_hashes) != n:
            problems.append(f"sample_hashes: {len(self.sample_hashes)} hashes for {n} labels")
        if any(not h.isascii() for h in self.sample_hashes):
            problems.append("sample_hashes: expected ASCII (hex) strings")
        if unknown := sorted(set(self.output_kinds) - set(outputs)):
            problems.append(f"output_kinds: names {unknown} are not outputs")
        if self.task_kind not in ("multiclass", "binary", "multilabel"):
            problems.append(f"task_kind: expected multiclass, binary or multilabel, got {self.task_kind!r}")
        if not isinstance(self.timings, Timings):
            problems.append(f"timings: expected Timings, got {type(self.timings).__name__}")
        if problems:
            raise ValueError(f"RunRecord {self.key!r}: " + "; ".join(problems))

    @property
    def key(self) -> str:
        """Name inside a records file: ``"<backend>/<variant>"``, ``clean`` without a variant."""
        return f"{self.backend}/{self.variant or 'clean'}"

    @property
    def n_samples(self) -> int:
        return len(self.labels)

    @property
    def score_output(self) -> str:
        """The output predictions come from: the first ``probabilities``/``logits`` output.

        Without ``output_kinds`` the first output is used.

        Raises:
            MmstdError: ``E_IO_CONTRACT`` when the outputs are kinds that carry no scores.
        """
        if not self.output_kinds:
            return next(iter(self.outputs))
        for name in self.outputs:
            if self.output_kinds.get(name) in _SCORE_KINDS:
                return name
        raise MmstdError(
            f"RunRecord {self.key!r}: no output is probabilities or logits (kinds: {self.output_kinds}).",
            code="E_IO_CONTRACT", hint="classification metrics need a probabilities or logits output.",
        )

    def predictions(self, output: str | None = None) -> np.ndarray:
        """Predicted classes from a score output.

        Multiclass: argmax over the last axis. A single-column binary output, and every column
        of a multilabel output, is thresholded at 0.5 (probabilities) or 0 (logits).

        Args:
            output: Output name; defaults to ``score_output``.

        Returns:
            ``[n]`` int64 class indices, or ``[n, k]`` int64 0/1 for multilabel.

        Raises:
            MmstdError: ``E_NOT_FOUND`` for an unknown output name.
        """
        name = output or self.score_output
        if name not in self.outputs:
            raise MmstdError(f"RunRecord {self.key!r} has no output {name!r}; outputs: {', '.join(self.outputs)}.",
                             code="E_NOT_FOUND")
        scores = self.outputs[name]
        threshold = 0.0 if self.output_kinds.get(name) == "logits" else 0.5
        if self.task_kind == "multilabel":
            return (scores >= threshold).astype(np.int64)
        if scores.ndim == 2 and scores.shape[1] == 1:
            return (scores[:, 0] >= threshold).astype(np.int64)
        return np.argmax(scores, axis=-1).astype(np.int64)

    def save(self, path: Path, *, overwrite: bool = False) -> Path:
        """Write this record alone to ``path`` (NPZ); see ``save_records``."""
        return save_records(path, [self], overwrite=overwrite)

    @classmethod
    def load(cls, path: Path, key: str | None = None) -> RunRecord:
        """Read one record from ``path``: the one named ``key``, or the file's only record.

        Raises:
            MmstdError: ``E_NOT_FOUND`` for an unknown key or when ``key`` is needed to choose,
                ``E_FORMAT_CORRUPT`` for a malformed file.
        """
        records = load_records(path)
        if key is None:
            if len(records) != 1:
                raise MmstdError(f"{Path(path).name}: holds {len(records)} records; name one of {', '.join(records)}.",
                                 code="E_NOT_FOUND")
            return next(iter(records.values()))
        if key not in records:
            raise MmstdError(f"{Path(path).name}: no record {key!r}; records: {', '.join(records)}.", code="E_NOT_FOUND")
        return records[key]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunRecord):
            return NotImplemented
        return all(_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))

    __hash__ = None  # type: ignore[assignment]


def _equal(a: Any, b: Any) -> bool:
    """Structural equality: arrays by dtype, shape and values (NaN equal to NaN), lists as tuples."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or a.dtype != b.dtype or a.shape != b.shape:
            return False
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b) and type(a) is type(b)


# ------------------------------------------------------------------------------------- files


def save_records(path: Path, records: Iterable[RunRecord], *, overwrite: bool = False) -> Path:
    """Write ``records`` to one NPZ file, atomically; refuses to clobber unless ``overwrite``.

    Returns:
        ``path``.

    Raises:
        MmstdError: ``E_USAGE`` for no records or a repeated key; ``E_OUTPUT_EXISTS`` when
            ``path`` exists and ``overwrite`` is false; ``E_DOCUMENT_SCHEMA`` when metadata
            is not JSON-serialisable (NaN, objects).
    """
    records = list(records)
    keys = [r.key for r in records]
    if not records or len(set(keys)) != len(keys):
        raise MmstdError(f"{Path(path).name}: need at least one record and unique keys, got {keys}.", code="E_USAGE")
    buf = io.BytesIO()
    metas = []
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for i, rec in enumerate(records):
            arrays: dict[str, np.ndarray] = {}

            def member(name: str, arr: np.ndarray, arrays: dict[str, np.ndarray] = arrays) -> str:
                arrays[name] = arr
                return name

            meta = {
                "key": rec.key,
                "schema_version": rec.schema_version,
                "package": rec.package,
                "package_digest": rec.package_digest,
                "suite": rec.suite,
                "suite_fingerprint": rec.suite_fingerprint,
                "split": rec.split,
                "backend": rec.backend,
                "variant": rec.variant,
                "providers_active": list(rec.providers_active),
                "session_options": rec.session_options,
                "environment": rec.environment,
                "seed": rec.seed,
                "task_kind": rec.task_kind,
                "output_kinds": rec.output_kinds,
                "backend_details": rec.backend_details,
                "outputs": [[name, member(f"r{i}/o{j}", arr)] for j, (name, arr) in enumerate(rec.outputs.items())],
                "labels": member(f"r{i}/labels", rec.labels),
                "sample_hashes": member(f"r{i}/hashes", np.array([h.encode("ascii") for h in rec.sample_hashes], dtype=bytes))
                if rec.sample_hashes else None,
                "timings": {
                    "session_create_ms": rec.timings.session_create_ms,
                    "first_run_ms": rec.timings.first_run_ms,
                    "latency_ns": {str(b): member(f"r{i}/lat{b}", arr) for b, arr in rec.timings.latency_ns.items()},
                },
            }
            metas.append(meta)
            for name, arr in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
                with zf.open(info, "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)
        try:
            text = json.dumps({"format": FORMAT, "schema_version": SCHEMA_VERSION, "records": metas},
                              indent=1, ensure_ascii=False, allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as err:
            raise MmstdError(f"{Path(path).name}: record metadata is not plain JSON ({err}).", code="E_DOCUMENT_SCHEMA") from None
        zf.writestr(zipfile.ZipInfo(META, date_time=_ZIP_DATE), text.encode("utf-8"))
    return atomic_write_bytes(Path(path), buf.getvalue(), overwrite=overwrite)


def load_records(path: Path) -> dict[str, RunRecord]:
    """Read every record of a file written by ``save_records``, keyed as written, in order.

    Raises:
        MmstdError: ``E_NOT_FOUND`` (no file), ``E_FORMAT_CORRUPT`` (not this format, a member
            missing or malformed), ``E_FS_LIMIT`` (too many or too large members).
    """
    path = Path(path)
    if not path.is_file():
        raise MmstdError(f"{path}: no such records file.", code="E_NOT_FOUND")
    where = path.name

    def bad(msg: str) -> MmstdError:
        return MmstdError(f"{where}: {msg}", code="E_FORMAT_CORRUPT",
                          hint="the file is not a RunRecord file written by mmstd, or it was truncated.")

    with open(path, "rb") as fh:    # ours to close, also when numpy gives up half-way
        try:
            npz = np.load(fh, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise bad(f"not an NPZ archive ({err}).") from None
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise bad("holds a single array, not an NPZ archive.")
        with npz:
            return _read_records(npz, where, bad)


def _read_records(npz: Any, where: str, bad: Callable[[str], MmstdError]) -> dict[str, RunRecord]:
    from mmstd.schema import parse_document

    if npz.zip is None:
        raise bad("is not an NPZ archive.")
    infos = npz.zip.infolist()
    if len(infos) > MAX_MEMBERS or sum(i.file_size for i in infos) > MAX_BYTES:
        raise MmstdError(f"{where}: {len(infos)} members, {sum(i.file_size for i in infos)} bytes "
                         f"(limits {MAX_MEMBERS}, {MAX_BYTES}).", code="E_FS_LIMIT")
    if META not in npz.files:
        raise bad(f"has no {META} member.")
    raw = npz[META]
    if not isinstance(raw, bytes):
        raise bad(f"{META} is an array, expected a JSON document.")
    doc = parse_document(raw, source=f"{where}:{META}", fmt="json", code="E_FORMAT_CORRUPT")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("records"), list):
        raise bad(f"{META} is not a {FORMAT} document.")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise bad(f"schema_version {doc.get('schema_version')!r}, expected {SCHEMA_VERSION!r}.")

    def array(name: Any, what: str) -> np.ndarray:
        if not isinstance(name, str) or name not in npz.files:
            raise bad(f"{what}: member {name!r} is missing.")
        try:
            return npz[name]
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise bad(f"{what}: member {name!r} is malformed ({err}).") from None

    out: dict[str, RunRecord] = {}
    for i, m in enumerate(doc["records"]):
        at = f"$.records[{i}]"
        try:
            lat = m["timings"]["latency_ns"]
            hashes = m["sample_hashes"]
            rec = RunRecord(
                package=m["package"], package_digest=m["package_digest"], suite=m["suite"],
                suite_fingerprint=m["suite_fingerprint"], split=m["split"], backend=m["backend"],
                providers_active=tuple(m["providers_active"]), session_options=m["session_options"],
                outputs={name: array(ref, f"{at}.outputs.{name}") for name, ref in m["outputs"]},
                labels=array(m["labels"], f"{at}.labels"),
                sample_hashes=tuple(h.decode("ascii") for h in array(hashes, f"{at}.sample_hashes").tolist())
                if hashes is not None else (),
                timings=Timings(
                    session_create_ms=m["timings"]["session_create_ms"],
                    first_run_ms=m["timings"]["first_run_ms"],
                    latency_ns={int(b): array(ref, f"{at}.timings.latency_ns.{b}") for b, ref in lat.items()},
                ),
                environment=m["environment"], seed=m["seed"], variant=m["variant"], task_kind=m["task_kind"],
                output_kinds=m["output_kinds"], backend_details=m["backend_details"],
                schema_version=m["schema_version"],
            )
        except MmstdError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, UnicodeDecodeError) as err:
            raise bad(f"{META}: {at}: {type(err).__name__}: {err}.") from None
        if rec.key != m.get("key") or rec.key in out:
            raise bad(f"{META}: {at}: key {m.get('key')!r} does not match the record or repeats.")
        out[rec.key] = rec
    return out

