"""Suites: versioned shared datasets, loaded only after their data's sha256 is verified.

A suite is ``suite.yaml`` (valid against ``schemas/suite.schema.json``) plus its data and a README
datasheet; data only, never code. ``load_suite`` resolves a built-in name
(``conformance/suites/<name>/``, shipped in the wheel as ``mmstd/_suites``) or a path, checks the
document, verifies the data digest **before** parsing a byte of it, then decodes every split into
canonical form and validates it:

- image: ``uint8`` ``H x W x C`` (C = 1 or 3);
- text: a ``str`` (NFC-normalized; control characters other than tab/newline are refused);
- audio: a mono ``float32`` waveform at the field's ``sample_rate``;
- label: ``int64`` index into ``task.labels`` (multilabel: a multi-hot ``int64`` vector).

Data formats: ``parquet`` (one file, split column), ``npz`` (one archive read with
``allow_pickle=False``, split array), ``imagefolder`` (a directory with ``metadata.csv`` whose
``file_name`` column names the images) and ``hf-datasets`` (a ``datasets`` ``save_to_disk``
directory; needs the optional ``datasets`` library). Image columns are ``raw`` (exactly
``H·W·C`` bytes per row in row-major HWC order, or an ``[N, H, W, C]`` array), ``encoded``
(PNG/JPEG bytes, decoded by Pillow under a pixel cap) or ``file``. Audio columns are ``float32``
(a list of floats of any width, or little-endian float32 bytes), ``pcm16`` (int16, ``x / 32768``), ``mulaw``
(G.711 μ-law bytes, ``mulaw_decode``) or ``wav`` (PCM WAV bytes).

**Sample hashes.** Each sample's identity is the sha256 of its canonical encoding: for every field
in name order, ``u64 length`` + ``name NUL modality NUL`` + payload, where an image's payload is
``b"I" + u32 H, W, C + pixel bytes``, a text's ``b"T" + UTF-8``, an audio's
``b"A" + u32 rate + u64 n + float32 LE samples`` and a missing field's ``b"M"``; then
``b"L" + int64 LE label(s)`` (all integers little-endian). Two results are comparable only when
their sample hashes are equal; ``Suite.fingerprint`` summarizes them with the task and fields.
"""
from __future__ import annotations

import difflib
import hashlib
import io
import json
import os
import struct
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmstd.errors import MmstdError, SuiteError
from mmstd.files import check_relpath, inventory, open_in_root, sha256_bytes
from mmstd.schema import load_document, validate

if TYPE_CHECKING:  # pragma: no cover
    from mmstd.card import TensorSpec

SCHEMA_VERSION = "1.0"
SUITE_DIRS = (
    Path(__file__).resolve().parent / "_suites",                         # installed wheel
    Path(__file__).resolve().parent.parent / "conformance" / "suites",   # source checkout
)
MAX_DATA_BYTES = 2 << 30
MAX_ROWS = 10_000_000
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_IMAGE_BYTES = 64 << 20
DEFAULT_MAX_CHARS = 4096
EVAL_SPLIT = "test"
_ALLOWED_CONTROLS = {"\t", "\n", "\r"}


# ------------------------------------------------------------------------------------ artifacts


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One model-facing field of a suite in canonical form."""

    name: str
    modality: str                        # image | text | audio
    column: str
    encoding: str | None = None          # image: raw | encoded | file; audio: float32 | pcm16 | mulaw | wav
    shape: tuple[int, int, int] | None = None     # raw images: (H, W, C)
    channels: int | None = None          # encoded/file images: 1 or 3
    sample_rate: int | None = None       # audio
    max_samples: int | None = None       # audio
    max_chars: int = DEFAULT_MAX_CHARS   # text


@dataclass(frozen=True, slots=True)
class DataSpec:
    format: str
    path: str
    sha256: str
    split_column: str = "split"


@dataclass(frozen=True, slots=True)
class VariantSpec:
    """A named perturbation of one field: ``missing``, ``zero`` or ``noise`` (with ``std``/``rate``, ``seed``)."""

    name: str
    field: str
    kind: str
    std: float | None = None
    rate: float | None = None
    seed: int = 0
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "field": self.field, "kind": self.kind}
        for key in ("std", "rate"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.kind == "noise":
            out["seed"] = self.seed
        return out


@dataclass(frozen=True, slots=True)
class SuiteMetric:
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LatencyProtocol:
    """Untimed ``warmup`` runs, then until both ``min_duration_s`` and ``min_queries`` are reached."""

    warmup: int = 10
    min_duration_s: float = 1.0
    min_queries: int = 100
    batch_sizes: tuple[int, ...] = (1, 32)


@dataclass(frozen=True)
class SplitData:
    """One split (or a slice of it) in canonical form: what run/evaluate feed a model.

    ``values[field]`` is, by modality: images, an ``[N, H, W, C]`` ``uint8`` array when every image
    has the same shape, else a list of ``H x W x C`` arrays; texts, a list of str; audio, an
    ``[N, samples]`` ``float32`` array when every clip has the same length, else a list of 1-D
    arrays. ``labels`` is ``int64`` ``[N]`` (multilabel ``[N, L]`` multi-hot). ``missing`` names
    fields a variant removed: ``preprocess_batch`` feeds them as zeros.
    """

    suite: str                            # "name@version"
    split: str
    fields: Mapping[str, FieldSpec]
    values: Mapping[str, Any]
    labels: np.ndarray
    label_names: tuple[str, ...]
    task_kind: str
    sample_hashes: tuple[str, ...]
    missing: frozenset[str] = frozenset()
    variant: str | None = None

    def __len__(self) -> int:
        return len(self.sample_hashes)

    @property
    def fingerprint(self) -> str:
        """sha256 over the sample hashes (in order) and the variant name."""
        h = hashlib.sha256(f"{self.suite}\0{self.split}\0{self.variant or ''}\0".encode())
        for s in self.sample_hashes:
            h.update(bytes.fromhex(s))
        return h.hexdigest()

    def take(self, indices: Sequence[int] | np.ndarray) -> SplitData:
        """The samples at ``indices``, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        values = {k: _take(v, idx) for k, v in self.values.items()}
        return replace(self, values=values, labels=self.labels[idx],
                       sample_hashes=tuple(self.sample_hashes[i] for i in idx))

    def head(self, n: int | None) -> SplitData:
        """The first ``n`` samples (all when ``n`` is None)."""
        return self if n is None or n >= len(self) else self.take(np.arange(n))

    def batches(self, size: int) -> Iterator[SplitData]:
        """Consecutive slices of at most ``size`` samples."""
        for start in range(0, len(self), size):
            yield self.take(np.arange(start, min(start + size, len(self))))

    def field_for(self, spec: TensorSpec) -> str:
        """The field a card input reads: its ``field``, or the only field of its modality.

        Raises:
            SuiteError: ``E_IO_CONTRACT`` naming the input and the suite's fields.
        """
        listing = ", ".join(f"{n} ({f.modality})" for n, f in self.fields.items())
        if spec.field is not None:
            if spec.field not in self.fields:
                raise SuiteError(f"Suite {self.suite!r} has no field {spec.field!r} for input {spec.name!r}. "
                                 f"Suite fields: {listing}.", code="E_IO_CONTRACT")
            return spec.field
        fits = [n for n, f in self.fields.items() if f.modality == spec.modality]
        if len(fits) != 1:
            why = "no" if not fits else "more than one"
            raise SuiteError(f"Suite {self.suite!r} has {why} {spec.modality} field for input {spec.name!r}. "
                             f"Suite fields: {listing}.", code="E_IO_CONTRACT",
                             hint="name the suite field in the card input's 'field'.")
        return fits[0]


@dataclass(frozen=True)
class Suite:
    """A loaded, verified suite. Build it with ``load_suite``."""

    name: str
    version: int
    description: str
    license: str
    task_kind: str
    labels: tuple[str, ...]
    fields: Mapping[str, FieldSpec]
    label_column: str
    data: DataSpec
    metrics: tuple[SuiteMetric, ...]
    latency: LatencyProtocol
    variants: tuple[VariantSpec, ...]
    splits: Mapping[str, SplitData]
    root: Path
    fingerprint: str
    data_bytes: int
    source: str | None = None
    document: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """``name@version``: the key results are stored under."""
        return f"{self.name}@{self.version}"

    @property
    def readme(self) -> Path | None:
        p = self.root / "README.md"
        return p if p.is_file() else None

    def split(self, name: str = EVAL_SPLIT, *, limit: int | None = None) -> SplitData:
        """The canonical data of split ``name`` (the first ``limit`` samples when given).

        Raises:
            SuiteError: ``E_NOT_FOUND`` for a split the suite does not have.
        """
        if name not in self.splits:
            raise SuiteError(f"Suite {self.ref!r} has no split {name!r}. Splits: {', '.join(self.splits)}.",
                             code="E_NOT_FOUND")
        return self.splits[name].head(limit)

    def variant(self, name: str) -> VariantSpec:
        """The variant called ``name``.

        Raises:
            SuiteError: ``E_NOT_FOUND``, suggesting the closest name.
        """
        for v in self.variants:
            if v.name == name:
                return v
        names = [v.name for v in self.variants]
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        guess = f" Did you mean {close[0]!r}?" if close else ""
        raise SuiteError(f"Suite {self.ref!r} has no variant {name!r}.{guess} Variants: {', '.join(names) or 'none'}.",
                         code="E_NOT_FOUND")

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description: datasheet line, fields, splits and sizes, variants, digests."""
        return {
            "suite": self.ref,
            "description": self.description,
            "license": self.license,
            "source": self.source,
            "task": {"kind": self.task_kind, "labels": list(self.labels)},
            "data": {"format": self.data.format, "path": self.data.path, "sha256": self.data.sha256,
                     "bytes": self.data_bytes},
            "fingerprint": self.fingerprint,
            "fields": {n: {k: v for k, v in (("modality", f.modality), ("column", f.column), ("encoding", f.encoding),
                                             ("shape", list(f.shape) if f.shape else None), ("channels", f.channels),
                                             ("sample_rate", f.sample_rate)) if v is not None}
                       for n, f in self.fields.items()},
            "splits": {n: {"samples": len(s), "fingerprint": s.fingerprint,
                           "label_counts": _label_counts(s)} for n, s in self.splits.items()},
            "metrics": [{"name": m.name, **({"params": dict(m.params)} if m.params else {})} for m in self.metrics],
            "latency": {"warmup": self.latency.warmup, "min_duration_s": self.latency.min_duration_s,
                        "min_queries": self.latency.min_queries, "batch_sizes": list(self.latency.batch_sizes)},
            "variants": [v.to_dict() for v in self.variants],
            "readme": str(self.readme) if self.readme else None,
        }


def _label_counts(s: SplitData) -> list[int]:
    if s.labels.ndim == 2:
        return [int(c) for c in s.labels.sum(axis=0)]
    return [int(c) for c in np.bincount(s.labels, minlength=len(s.label_names))]


# ------------------------------------------------------------------------------------ resolving


def builtin_suites() -> list[str]:
    """Names of the suites shipped with mmstd, sorted."""
    names: set[str] = set()
    for d in SUITE_DIRS:
        if d.is_dir():
            names |= {p.parent.name for p in d.glob("*/suite.yaml")}
    return sorted(names)


def suite_path(name_or_path: str | Path) -> Path:
    """The ``suite.yaml`` of a built-in suite name, a suite directory or a suite file.

    Raises:
        SuiteError: ``E_NOT_FOUND``, with the closest built-in name.
    """
    p = Path(name_or_path)
    if p.is_dir():
        p = p / "suite.yaml"
    if p.is_file():
        return p
    name = str(name_or_path)
    for d in SUITE_DIRS:
        candidate = d / name / "suite.yaml"
        if "/" not in name and name not in ("", ".", "..") and candidate.is_file():
            return candidate
    names = builtin_suites()
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    guess = f" Did you mean {close[0]!r}?" if close else ""
    raise SuiteError(f"Unknown suite {name!r}: not a built-in suite nor a suite.yaml or suite directory.{guess} "
                     f"Built-in: {', '.join(names) or 'none'}.", code="E_NOT_FOUND")


# -------------------------------------------------------------------------------------- loading


def load_suite(name_or_path: str | Path, *, max_bytes: int = MAX_DATA_BYTES, max_rows: int = MAX_ROWS) -> Suite:
    """Load a suite: validate ``suite.yaml``, verify the data's sha256, decode and check every split.

    Args:
        name_or_path: A built-in name (``digits-av``), a suite directory or its ``suite.yaml``.
        max_bytes: Refuse data larger than this (``E_DATASET_LIMIT``).
        max_rows: Refuse data with more rows than this (``E_DATASET_LIMIT``).

    Returns:
        The suite with every split in canonical form, sample hashes and fingerprints.

    Raises:
        SuiteError: ``E_NOT_FOUND``, ``E_DOCUMENT_SCHEMA`` (with every JSON path),
            ``E_DIGEST_MISMATCH`` (naming the file, expected and actual digest),
            ``E_DATASET_SCHEMA`` / ``_VALUE`` / ``_EMPTY`` / ``_LIMIT``, ``E_IMAGE_INVALID``,
            ``E_IMAGE_BOMB``, ``E_TEXT_INVALID``, ``E_FORMAT_CORRUPT``, ``E_DEPENDENCY``, or a
            filesystem code (``E_FS_*``) for a data path that escapes the suite directory.
    """
    path = suite_path(name_or_path)
    root = path.parent
    source = path.name
    try:
        doc = load_document(path, code="E_DOCUMENT_SCHEMA")
    except SuiteError:
        raise
    except MmstdError as e:
        raise SuiteError(e.message, code=e.code, hint=e.hint) from None
    problems = validate(doc, "suite", source=source) if isinstance(doc, Mapping) else [
        f"{source}: $: expected an object (mapping) at the top level, got {type(doc).__name__}."]
    if not problems:
        problems = _semantic_problems(doc, source)
    if problems:
        raise SuiteError(f"{source}: is not a valid suite ({len(problems)} problem{'s' * (len(problems) > 1)}).",
                         code="E_DOCUMENT_SCHEMA", problems=problems,
                         hint="see schemas/suite.schema.json; conformance/suites/*/suite.yaml are examples.")
    fields = {n: _field_spec(n, f) for n, f in doc["fields"].items()}
    d = doc["data"]
    data = DataSpec(d["format"], d["path"], d["sha256"], d.get("split_column", "split"))
    label_column = doc["label"].get("column", "label")
    labels = tuple(doc["task"]["labels"])
    ref = f"{doc['name']}@{doc['version']}"

    blob, files, size = _read_verified(root, data, max_bytes=max_bytes)
    ctx = _Ctx(ref=ref, file=data.path, fields=fields, label_column=label_column, labels=labels,
               task_kind=doc["task"]["kind"], splits=tuple(doc["splits"]), split_column=data.split_column,
               max_rows=max_rows, max_bytes=max_bytes)
    reader = {"parquet": _read_parquet, "npz": _read_npz, "imagefolder": _read_imagefolder,
              "hf-datasets": _read_hf}[data.format]
    splits = reader(ctx, root, blob, files)
    lat = doc.get("latency", {})
    suite = Suite(
        name=doc["name"], version=doc["version"], description=doc["description"], license=doc["license"],
        task_kind=doc["task"]["kind"], labels=labels, fields=fields, label_column=label_column, data=data,
        metrics=tuple(SuiteMetric(m["name"], dict(m.get("params", {}))) for m in doc.get("metrics", [])),
        latency=LatencyProtocol(lat.get("warmup", 10), float(lat.get("min_duration_s", 1.0)),
                                lat.get("min_queries", 100), tuple(lat.get("batch_sizes", (1, 32)))),
        variants=tuple(VariantSpec(v["name"], v["field"], v["kind"], v.get("std"), v.get("rate"), v.get("seed", 0),
                                   v.get("description")) for v in doc.get("variants", [])),
        splits=splits, root=root, fingerprint=_fingerprint(doc, fields, splits), data_bytes=size,
        source=doc.get("source"), document=doc,
    )
    return suite


def _field_spec(name: str, f: Mapping[str, Any]) -> FieldSpec:
    shape = f.get("shape")
    return FieldSpec(
        name=name, modality=f["modality"], column=f.get("column", name), encoding=f.get("encoding"),
        shape=tuple(shape) if shape else None, channels=f.get("channels") or (shape[2] if shape else None),
        sample_rate=f.get("sample_rate"), max_samples=f.get("max_samples"),
        max_chars=f.get("max_chars", DEFAULT_MAX_CHARS))


def _semantic_problems(doc: Mapping[str, Any], source: str) -> list[str]:
    """Rules the JSON schema cannot state, each with its JSON path."""
    problems = []
    labels = doc["task"]["labels"]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        problems.append(f"{source}: $.task.labels: label {dup[0]!r} appears twice; expected unique labels.")
    if doc["task"]["kind"] == "binary" and len(labels) != 2:
        problems.append(f"{source}: $.task.labels: a binary task needs exactly 2 labels, got {len(labels)}.")
    fmt = doc["data"]["format"]
    columns: dict[str, str] = {}
    for name, f in doc["fields"].items():
        at = f"$.fields.{name}"
        col = f.get("column", name)
        if col in columns:
            problems.append(f"{source}: {at}.column: {col!r} is already read by {columns[col]}; expected one field per column.")
        columns[col] = at
        enc = f.get("encoding")
        if f["modality"] == "image":
            if enc == "raw" and "shape" not in f:
                problems.append(f"{source}: {at}: missing required field 'shape' for encoding 'raw'.")
            if enc in ("encoded", "file") and "channels" not in f:
                problems.append(f"{source}: {at}: missing required field 'channels' for encoding {enc!r}.")
            if (enc == "file") != (fmt == "imagefolder"):
                problems.append(f"{source}: {at}.encoding: expected {'file' if fmt == 'imagefolder' else 'raw or encoded'} "
                                f"for format {fmt!r}, got {enc!r}.")
        if f["modality"] == "audio" and fmt == "imagefolder":
            problems.append(f"{source}: {at}.modality: format 'imagefolder' holds images, text and labels; got an audio field.")
    label_col = doc["label"].get("column", "label")
    if label_col in columns:
        problems.append(f"{source}: $.label.column: {label_col!r} is also read by {columns[label_col]}.")
    seen_metrics = set()
    for i, m in enumerate(doc.get("metrics", [])):
        key = json.dumps([m["name"], m.get("params", {})], sort_keys=True)
        if key in seen_metrics:
            problems.append(f"{source}: $.metrics[{i}]: {m['name']!r} with these params is listed twice.")
        seen_metrics.add(key)
    names: set[str] = set()
    for i, v in enumerate(doc.get("variants", [])):
        at = f"$.variants[{i}]"
        if v["name"] in names:
            problems.append(f"{source}: {at}.name: {v['name']!r} is already used; expected unique variant names.")
        names.add(v["name"])
        f = doc["fields"].get(v["field"])
        if f is None:
            problems.append(f"{source}: {at}.field: expected one of {', '.join(map(repr, doc['fields']))}, got {v['field']!r}.")
            continue
        kind = v["kind"]
        if kind == "noise":
            need = "rate" if f["modality"] == "text" else "std"
            other = "std" if need == "rate" else "rate"
            if need not in v:
                problems.append(f"{source}: {at}: missing required field {need!r} for noise on a {f['modality']} field.")
            if other in v:
                problems.append(f"{source}: {at}.{other}: does not apply to noise on a {f['modality']} field; use {need!r}.")
            if "seed" not in v:
                problems.append(f"{source}: {at}: missing required field 'seed' for kind 'noise'.")
        else:
            extra = [k for k in ("std", "rate", "seed") if k in v]
            if extra:
                problems.append(f"{source}: {at}.{extra[0]}: does not apply to kind {kind!r}.")
    return problems


def _read_verified(root: Path, data: DataSpec, *, max_bytes: int) -> tuple[bytes | None, list[str], int]:
    """Hash the data (file or directory) through ``open_in_root`` and compare with the pinned digest.

    A single file is read once into memory, hashed and parsed from those same bytes, so what is
    verified is what is parsed. Directories are hashed file by file (sha256sum listing).
    """
    where = f"{root.name}/suite.yaml: $.data.path"
    check_relpath(data.path, where=where)
    target = root / data.path
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        raise SuiteError(f"{data.path}: does not exist (named by {where}).", code="E_FS_NOT_REGULAR") from None
    import stat as _stat

    if _stat.S_ISDIR(st.st_mode):
        entries = inventory(target, max_file_bytes=max_bytes)
        total = sum(e.size for e in entries)
        if total > max_bytes:
            raise SuiteError(f"{data.path}: holds {total} bytes (limit {max_bytes}).", code="E_DATASET_LIMIT")
        lines = []
        for e in entries:
            h = hashlib.sha256()
            with open_in_root(target, e.rel, max_bytes=max_bytes) as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            lines.append(f"{h.hexdigest()}  {e.rel}\n")
        actual = sha256_bytes("".join(lines).encode("utf-8"))
        _compare_digest(data, actual)
        return None, [e.rel for e in entries], total
    if st.st_size > max_bytes:
        raise SuiteError(f"{data.path}: is {st.st_size} bytes (limit {max_bytes}).", code="E_DATASET_LIMIT")
    with open_in_root(root, data.path, max_bytes=max_bytes) as f:
        blob = f.read()
    _compare_digest(data, sha256_bytes(blob))
    return blob, [data.path], len(blob)


def _compare_digest(data: DataSpec, actual: str) -> None:
    if actual != data.sha256:
        raise SuiteError(
            f"{data.path}: sha256 mismatch (suite.yaml pins {data.sha256}, the data has {actual}).",
            code="E_DIGEST_MISMATCH",
            hint="the data changed after the suite was pinned: restore it, or bump the suite's version and pin the new digest.")


def directory_digest(path: Path) -> str:
    """The digest a directory-format suite pins: sha256 of its sorted sha256sum listing."""
    from mmstd.files import hash_in_root

    lines = [f"{hash_in_root(path, e.rel)[0]}  {e.rel}\n" for e in inventory(path)]
    return sha256_bytes("".join(lines).encode("utf-8"))


# ------------------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class _Ctx:
    ref: str
    file: str
    fields: Mapping[str, FieldSpec]
    label_column: str
    labels: tuple[str, ...]
    task_kind: str
    splits: tuple[str, ...]
    split_column: str
    max_rows: int
    max_bytes: int

    def err(self, code: str, what: str, *, column: str | None = None, row: int | None = None, hint: str | None = None) -> SuiteError:
        where = self.file + (f": column {column!r}" if column else "") + (f", row {row}" if row is not None else "")
        return SuiteError(f"{where}: {what}", code=code, hint=hint)


def _check_rows(ctx: _Ctx, n: int) -> None:
    if n > ctx.max_rows:
        raise ctx.err("E_DATASET_LIMIT", f"holds {n} rows (limit {ctx.max_rows}).")


def _split_rows(ctx: _Ctx, split_values: Sequence[Any]) -> dict[str, np.ndarray]:
    """Row indices of each declared split; an undeclared split value is an error."""
    col = np.asarray([str(v) if v is not None else "" for v in split_values], dtype=object)
    out: dict[str, np.ndarray] = {}
    for s in ctx.splits:
        out[s] = np.flatnonzero(col == s)
    unknown = sorted(set(col.tolist()) - set(ctx.splits))
    if unknown:
        row = int(np.flatnonzero(col == unknown[0])[0])
        raise ctx.err("E_DATASET_VALUE", f"split {unknown[0]!r} is not declared in suite.yaml's $.splits "
                      f"({', '.join(ctx.splits)}).", column=ctx.split_column, row=row)
    return out


def _read_parquet(ctx: _Ctx, root: Path, blob: bytes | None, files: list[str]) -> dict[str, SplitData]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    assert blob is not None   # single-file formats are read (and verified) into memory
    try:
        pf = pq.ParquetFile(pa.BufferReader(blob))
        _check_rows(ctx, pf.metadata.num_rows)
        names = set(pf.schema_arrow.names)
        wanted = _wanted_columns(ctx, split=True)
        _require_columns(ctx, names, wanted)
        table = pf.read(columns=wanted)
    except MmstdError:
        raise
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as e:
        raise ctx.err("E_FORMAT_CORRUPT", f"is not a readable Parquet file ({str(e).splitlines()[0][:200]}).") from None
    split_col = table.column(ctx.split_column)
    if not (pa.types.is_string(split_col.type) or pa.types.is_large_string(split_col.type)
            or pa.types.is_dictionary(split_col.type)):
        raise ctx.err("E_DATASET_SCHEMA", f"has type {split_col.type}; expected string split names.", column=ctx.split_column)
    rows = _split_rows(ctx, split_col.to_pylist())
    return {s: _decode_split(ctx, s, idx, _ArrowColumns(table, idx), root) for s, idx in rows.items()}


def _read_hf(ctx: _Ctx, root: Path, blob: bytes | None, files: list[str]) -> dict[str, SplitData]:
    try:
        import datasets
    except ImportError:
        raise SuiteError(f"{ctx.file}: format 'hf-datasets' needs the 'datasets' library, which is not installed.",
                         code="E_DEPENDENCY", hint="pip install datasets") from None
    try:
        loaded = datasets.load_from_disk(str(root / ctx.file))
    except Exception as e:  # datasets raises many kinds for bad directories
        raise ctx.err("E_FORMAT_CORRUPT", f"is not a datasets save_to_disk directory ({str(e).splitlines()[0][:200]}).") from None
    out = {}
    if isinstance(loaded, datasets.DatasetDict):
        missing = [s for s in ctx.splits if s not in loaded]
        if missing:
            raise ctx.err("E_DATASET_SCHEMA", f"has splits {sorted(loaded)}; expected {missing[0]!r} too (suite.yaml's $.splits).")
        for s in ctx.splits:
            table = loaded[s].with_format("arrow")[:]
            _check_rows(ctx, table.num_rows)
            _require_columns(ctx, set(table.column_names), _wanted_columns(ctx, split=False))
            idx = np.arange(table.num_rows)
            out[s] = _decode_split(ctx, s, idx, _ArrowColumns(table, idx), root)
        return out
    table = loaded.with_format("arrow")[:]
    _check_rows(ctx, table.num_rows)
    _require_columns(ctx, set(table.column_names), _wanted_columns(ctx, split=True))
    rows = _split_rows(ctx, table.column(ctx.split_column).to_pylist())
    return {s: _decode_split(ctx, s, idx, _ArrowColumns(table, idx), root) for s, idx in rows.items()}


def _read_npz(ctx: _Ctx, root: Path, blob: bytes | None, files: list[str]) -> dict[str, SplitData]:
    import zipfile

    assert blob is not None
    try:
        zf = zipfile.ZipFile(io.BytesIO(blob))
        infos = {i.filename: i for i in zf.infolist()}
    except zipfile.BadZipFile as e:
        raise ctx.err("E_FORMAT_CORRUPT", f"is not a readable .npz archive ({e}).") from None
    members = {name[:-4]: info for name, info in infos.items() if name.endswith(".npy")}
    wanted = _wanted_columns(ctx, split=True)
    _require_columns(ctx, set(members), wanted)
    for name in wanted:
        if members[name].file_size > ctx.max_bytes:
            raise ctx.err("E_DATASET_LIMIT", f"array is {members[name].file_size} bytes uncompressed (limit {ctx.max_bytes}).",
                          column=name)
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            for name in wanted:
                arrays[name] = npz[name]
    except ValueError as e:
        msg = str(e)
        if "pickle" in msg.lower() or "object" in msg.lower():
            raise ctx.err("E_UNSAFE_CONTENT", "holds an object (pickled) array; expected plain numeric or string arrays.",
                          hint="save with numeric/unicode dtypes; mmstd never loads pickles.") from None
        raise ctx.err("E_FORMAT_CORRUPT", f"has an unreadable array ({msg[:200]}).") from None
    n = {len(a) if a.ndim else -1 for a in arrays.values()}
    if len(n) != 1 or -1 in n:
        lens = {k: (len(a) if a.ndim else 0) for k, a in arrays.items()}
        raise ctx.err("E_DATASET_SCHEMA", f"arrays have different lengths {lens}; expected one row per sample in each.")
    _check_rows(ctx, n.pop())
    split = arrays[ctx.split_column]
    if split.dtype.kind != "U" or split.ndim != 1:
        raise ctx.err("E_DATASET_SCHEMA", f"has dtype {split.dtype} shape {list(split.shape)}; expected a 1-D unicode array.",
                      column=ctx.split_column)
    rows = _split_rows(ctx, split.tolist())
    return {s: _decode_split(ctx, s, idx, _NumpyColumns(arrays, idx), root) for s, idx in rows.items()}


def _read_imagefolder(ctx: _Ctx, root: Path, blob: bytes | None, files: list[str]) -> dict[str, SplitData]:
    import csv

    if "metadata.csv" not in files:
        raise ctx.err("E_DATASET_SCHEMA", "has no metadata.csv; expected one with file_name, label and split columns.")
    folder = root / ctx.file
    with open_in_root(folder, "metadata.csv", max_bytes=ctx.max_bytes) as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SuiteError(f"{ctx.file}/metadata.csv: byte {e.start} is not valid UTF-8.", code="E_TEXT_INVALID") from None
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        records = list(reader)
    except csv.Error as e:
        raise SuiteError(f"{ctx.file}/metadata.csv: not valid CSV ({e}).", code="E_FORMAT_CORRUPT") from None
    _require_columns(ctx, set(reader.fieldnames or ()), _wanted_columns(ctx, split=True), file=f"{ctx.file}/metadata.csv")
    _check_rows(ctx, len(records))
    if any(None in r for r in records):
        row = next(i for i, r in enumerate(records) if None in r)
        raise SuiteError(f"{ctx.file}/metadata.csv: row {row} has more values than the header.", code="E_DATASET_SCHEMA")
    columns = {c: [r[c] for r in records] for c in _wanted_columns(ctx, split=True)}
    rows = _split_rows(ctx, columns[ctx.split_column])
    ctx_csv = replace(ctx, file=f"{ctx.file}/metadata.csv")
    return {s: _decode_split(ctx_csv, s, idx, _ListColumns(columns, idx), folder) for s, idx in rows.items()}


def _wanted_columns(ctx: _Ctx, *, split: bool) -> list[str]:
    cols = [f.column for f in ctx.fields.values()] + [ctx.label_column]
    return cols + [ctx.split_column] if split else cols


def _require_columns(ctx: _Ctx, have: set[str], wanted: list[str], *, file: str | None = None) -> None:
    missing = [c for c in wanted if c not in have]
    if missing:
        raise SuiteError(f"{file or ctx.file}: has no column {missing[0]!r}; columns: {', '.join(sorted(have)) or 'none'}.",
                         code="E_DATASET_SCHEMA", hint="the suite's fields, label.column and data.split_column name the columns.")


class _ArrowColumns:
    """Rows ``idx`` of an Arrow table, column by column, as Python values or numpy arrays."""

    def __init__(self, table: Any, idx: np.ndarray) -> None:
        self.table, self.idx = table, idx

    def arrow(self, name: str) -> Any:
        import pyarrow as pa

        col = self.table.column(name).take(pa.array(self.idx, type=pa.int64()))
        return col.combine_chunks() if hasattr(col, "combine_chunks") else col

    def kind(self, name: str) -> str:
        return "arrow"


class _NumpyColumns:
    def __init__(self, arrays: Mapping[str, np.ndarray], idx: np.ndarray) -> None:
        self.arrays, self.idx = arrays, idx

    def array(self, name: str) -> np.ndarray:
        return self.arrays[name][self.idx]

    def kind(self, name: str) -> str:
        return "numpy"


class _ListColumns:
    def __init__(self, columns: Mapping[str, list[str]], idx: np.ndarray) -> None:
        self.columns, self.idx = columns, idx

    def strings(self, name: str) -> list[str]:
        col = self.columns[name]
        return [col[i] for i in self.idx]

    def kind(self, name: str) -> str:
        return "csv"


def _decode_split(ctx: _Ctx, split: str, idx: np.ndarray, cols: Any, folder: Path) -> SplitData:
    if len(idx) == 0:
        raise ctx.err("E_DATASET_EMPTY", f"split {split!r} has no rows; expected at least one.",
                      hint="every split declared in suite.yaml's $.splits must hold samples.")
    values: dict[str, Any] = {}
    for name, f in ctx.fields.items():
        if f.modality == "image":
            values[name] = _decode_images(ctx, f, cols, idx, folder)
        elif f.modality == "text":
            values[name] = _decode_texts(ctx, f, cols, idx)
        else:
            values[name] = _decode_audio(ctx, f, cols, idx)
    labels = _decode_labels(ctx, cols, idx)
    hashes = tuple(sample_hash(ctx.fields, values, labels, i) for i in range(len(idx)))
    return SplitData(suite=ctx.ref, split=split, fields=dict(ctx.fields), values=values, labels=labels,
                     label_names=ctx.labels, task_kind=ctx.task_kind, sample_hashes=hashes)


def _pyvalues(ctx: _Ctx, cols: Any, column: str, idx: np.ndarray) -> list[Any]:
    """A column's values as Python objects; a null is an error naming its row."""
    if cols.kind(column) == "arrow":
        arr = cols.arrow(column)
        if arr.null_count:
            row = int(idx[np.flatnonzero(np.asarray(arr.is_null()))[0]])
            raise ctx.err("E_DATASET_VALUE", "is empty (null); expected a value in every row.", column=column, row=row)
        try:
            return arr.to_pylist()
        except UnicodeDecodeError:
            raise ctx.err("E_TEXT_INVALID", "holds a string that is not valid UTF-8.", column=column) from None
    if cols.kind(column) == "numpy":
        return list(cols.array(column))
    return cols.strings(column)


def _arrow_type(cols: Any, column: str) -> Any:
    return cols.arrow(column).type if cols.kind(column) == "arrow" else None


def _decode_images(ctx: _Ctx, f: FieldSpec, cols: Any, idx: np.ndarray, folder: Path) -> Any:
    import pyarrow as pa

    col = f.column
    if f.encoding == "raw":
        h, w, c = f.shape  # type: ignore[misc]
        if h * w > MAX_IMAGE_PIXELS:
            raise ctx.err("E_IMAGE_BOMB", f"declares {h}x{w} = {h * w} pixels per image (limit {MAX_IMAGE_PIXELS}).", column=col)
        if cols.kind(col) == "numpy":
            arr = cols.array(col)
            if arr.dtype != np.uint8 or arr.shape[1:] != (h, w, c):
                raise ctx.err("E_DATASET_SCHEMA", f"is {arr.dtype} {list(arr.shape[1:])} per row; expected uint8 "
                              f"{[h, w, c]} (raw images).", column=col)
            return np.ascontiguousarray(arr)
        t = _arrow_type(cols, col)
        if not (pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)):
            raise ctx.err("E_DATASET_SCHEMA", f"has type {t}; expected binary (raw {h}x{w}x{c} uint8 bytes).", column=col)
        raw = _pyvalues(ctx, cols, col, idx)
        for i, b in enumerate(raw):
            if len(b) != h * w * c:
                raise ctx.err("E_IMAGE_INVALID", f"holds {len(b)} bytes; expected {h * w * c} ({h}x{w}x{c} uint8).",
                              column=col, row=int(idx[i]))
        return np.frombuffer(b"".join(raw), dtype=np.uint8).reshape(len(raw), h, w, c).copy()
    images = []
    if f.encoding == "file":
        names = _pyvalues(ctx, cols, col, idx)
        for i, rel in enumerate(names):
            where = f"{ctx.file}: column {col!r}, row {int(idx[i])}"
            check_relpath(rel, where=where)
            with open_in_root(folder, rel, max_bytes=MAX_IMAGE_BYTES) as fh:
                images.append(decode_image(fh.read(), channels=f.channels or 3, where=f"{where} ({rel})"))
    else:
        t = _arrow_type(cols, col)
        vals = _pyvalues(ctx, cols, col, idx)
        if t is not None and pa.types.is_struct(t):   # datasets' Image feature: {bytes, path}
            vals = [v.get("bytes") if isinstance(v, dict) else None for v in vals]
        elif t is not None and not (pa.types.is_binary(t) or pa.types.is_large_binary(t)):
            raise ctx.err("E_DATASET_SCHEMA", f"has type {t}; expected binary (encoded PNG/JPEG bytes).", column=col)
        for i, b in enumerate(vals):
            if not isinstance(b, bytes | bytearray):
                raise ctx.err("E_DATASET_SCHEMA", f"holds {type(b).__name__}; expected encoded image bytes.",
                              column=col, row=int(idx[i]))
            if len(b) > MAX_IMAGE_BYTES:
                raise ctx.err("E_DATASET_LIMIT", f"holds an image of {len(b)} bytes (limit {MAX_IMAGE_BYTES}).",
                              column=col, row=int(idx[i]))
            images.append(decode_image(bytes(b), channels=f.channels or 3, where=f"{ctx.file}: column {col!r}, row {int(idx[i])}"))
    if all(im.shape == images[0].shape for im in images):
        return np.stack(images)
    return images


def decode_image(data: bytes, *, channels: int, where: str, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode PNG or JPEG bytes to ``uint8`` ``H x W x channels``, refusing oversized or broken images.

    The pixel count is checked from the header, before any pixel is decoded. Modes L, LA, RGB,
    RGBA, P and 1 are converted (alpha dropped); anything else (16-bit, CMYK, float) is refused.

    Raises:
        SuiteError: ``E_IMAGE_BOMB`` over ``max_pixels``; ``E_IMAGE_INVALID`` undecodable, truncated,
            another format or mode.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["PNG", "JPEG"]) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise SuiteError(f"{where}: image is {w}x{h} = {w * h} pixels (limit {max_pixels}).", code="E_IMAGE_BOMB")
                if im.mode not in ("L", "LA", "RGB", "RGBA", "P", "1"):
                    raise SuiteError(f"{where}: image mode {im.mode!r}; expected L, RGB (or LA, RGBA, P).",
                                     code="E_IMAGE_INVALID")
                im.load()
                arr = np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise SuiteError(f"{where}: image exceeds Pillow's decompression-bomb limit.", code="E_IMAGE_BOMB") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        raise SuiteError(f"{where}: not a decodable PNG/JPEG image ({str(e)[:120]}).", code="E_IMAGE_INVALID") from None
    return arr.reshape(arr.shape[0], arr.shape[1], channels)


def _decode_texts(ctx: _Ctx, f: FieldSpec, cols: Any, idx: np.ndarray) -> list[str]:
    col = f.column
    if cols.kind(col) == "numpy":
        arr = cols.array(col)
        if arr.dtype.kind != "U" or arr.ndim != 1:
            raise ctx.err("E_DATASET_SCHEMA", f"is {arr.dtype} {list(arr.shape[1:])}; expected a 1-D unicode array.", column=col)
    elif cols.kind(col) == "arrow":
        import pyarrow as pa

        t = _arrow_type(cols, col)
        if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)):
            raise ctx.err("E_DATASET_SCHEMA", f"has type {t}; expected string (UTF-8 text).", column=col)
    out = []
    for i, v in enumerate(_pyvalues(ctx, cols, col, idx)):
        row = int(idx[i])
        if isinstance(v, bytes | bytearray):
            try:
                v = bytes(v).decode("utf-8")
            except UnicodeDecodeError as e:
                raise ctx.err("E_TEXT_INVALID", f"byte {e.start} is not valid UTF-8.", column=col, row=row) from None
        v = unicodedata.normalize("NFC", str(v))
        if len(v) > f.max_chars:
            raise ctx.err("E_TEXT_INVALID", f"text is {len(v)} characters (limit max_chars {f.max_chars}).", column=col, row=row)
        bad = next((c for c in v if unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROLS), None)
        if bad is not None:
            raise ctx.err("E_TEXT_INVALID", f"text holds control character U+{ord(bad):04X}; expected printable text.",
                          column=col, row=row)
        out.append(v)
    return out


def _decode_audio(ctx: _Ctx, f: FieldSpec, cols: Any, idx: np.ndarray) -> Any:
    col, enc = f.column, f.encoding
    clips: list[np.ndarray]
    if cols.kind(col) == "numpy":
        arr = cols.array(col)
        want = {"float32": np.float32, "pcm16": np.int16}.get(enc or "")
        if want is None or arr.dtype != want or arr.ndim != 2:
            raise ctx.err("E_DATASET_SCHEMA", f"is {arr.dtype} with {arr.ndim - 1} axes per row; expected a 2-D "
                          f"{np.dtype(want).name if want else 'float32 or int16'} array [N, samples] for encoding {enc!r}.", column=col)
        clips = list(arr.astype(np.float32) / 32768.0 if enc == "pcm16" else arr)
    else:
        import pyarrow as pa

        t = _arrow_type(cols, col)
        vals = _pyvalues(ctx, cols, col, idx)
        listy = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
        binary = pa.types.is_binary(t) or pa.types.is_large_binary(t)
        if enc == "wav" and pa.types.is_struct(t):
            vals, binary = [v.get("bytes") if isinstance(v, dict) else None for v in vals], True
        item = t.value_type if listy else None
        ok = (binary and enc in ("float32", "pcm16", "mulaw", "wav")) or (
            listy and ((enc == "float32" and pa.types.is_floating(item)) or (enc == "pcm16" and pa.types.is_int16(item))))
        if not ok:
            raise ctx.err("E_DATASET_SCHEMA", f"has type {t}; expected {_AUDIO_TYPES[enc or 'float32']} for encoding {enc!r}.",
                          column=col)
        clips = []
        for i, v in enumerate(vals):
            clips.append(_audio_value(ctx, f, v, binary, int(idx[i])))
    for i, c in enumerate(clips):
        if f.max_samples is not None and len(c) > f.max_samples:
            raise ctx.err("E_DATASET_LIMIT", f"clip has {len(c)} samples (limit max_samples {f.max_samples}).",
                          column=col, row=int(idx[i]))
        if not np.all(np.isfinite(c)):
            raise ctx.err("E_DATASET_VALUE", "clip holds NaN or Inf; expected finite samples.", column=col, row=int(idx[i]))
    if all(len(c) == len(clips[0]) for c in clips):
        return np.stack(clips).astype(np.float32, copy=False)
    return [c.astype(np.float32, copy=False) for c in clips]


_AUDIO_TYPES = {
    "float32": "list<float> (any float width, converted to float32) or binary (little-endian float32)",
    "pcm16": "list<int16> or binary (little-endian int16)",
    "mulaw": "binary (G.711 mu-law bytes)",
    "wav": "binary or {bytes, path} (WAV file bytes)",
}


def _audio_value(ctx: _Ctx, f: FieldSpec, v: Any, binary: bool, row: int) -> np.ndarray:
    enc = f.encoding
    if not binary:
        return np.asarray(v, dtype=np.float32) / (32768.0 if enc == "pcm16" else 1.0)
    b = bytes(v or b"")
    if enc == "float32":
        if len(b) % 4:
            raise ctx.err("E_DATASET_VALUE", f"holds {len(b)} bytes; expected a multiple of 4 (float32).", column=f.column, row=row)
        return np.frombuffer(b, dtype="<f4").astype(np.float32)
    if enc == "pcm16":
        if len(b) % 2:
            raise ctx.err("E_DATASET_VALUE", f"holds {len(b)} bytes; expected a multiple of 2 (int16).", column=f.column, row=row)
        return np.frombuffer(b, dtype="<i2").astype(np.float32) / 32768.0
    if enc == "mulaw":
        return mulaw_decode(np.frombuffer(b, dtype=np.uint8))
    return _decode_wav(ctx, f, b, row)


def _decode_wav(ctx: _Ctx, f: FieldSpec, b: bytes, row: int) -> np.ndarray:
    import wave

    try:
        with wave.open(io.BytesIO(b)) as w:
            ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            if f.max_samples is not None and n > f.max_samples:
                raise ctx.err("E_DATASET_LIMIT", f"clip has {n} samples (limit max_samples {f.max_samples}).", column=f.column, row=row)
            frames = w.readframes(n)
    except (wave.Error, EOFError) as e:
        raise ctx.err("E_DATASET_VALUE", f"is not a readable PCM WAV ({e}).", column=f.column, row=row) from None
    if ch != 1 or width not in (1, 2) or rate != f.sample_rate:
        raise ctx.err("E_DATASET_VALUE", f"WAV is {ch} channel(s), {8 * width}-bit, {rate} Hz; expected mono 8/16-bit "
                      f"at {f.sample_rate} Hz.", column=f.column, row=row)
    if width == 1:
        return (np.frombuffer(frames, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0


def _decode_labels(ctx: _Ctx, cols: Any, idx: np.ndarray) -> np.ndarray:
    col, names = ctx.label_column, ctx.labels
    index = {n: i for i, n in enumerate(names)}
    kind = cols.kind(col)
    if kind == "numpy":
        arr = cols.array(col)
        if ctx.task_kind == "multilabel" and arr.ndim == 2:
            if arr.dtype.kind not in "iub" or arr.shape[1] != len(names):
                raise ctx.err("E_DATASET_SCHEMA", f"is {arr.dtype} {list(arr.shape[1:])}; expected multi-hot integers "
                              f"[N, {len(names)}].", column=col)
            bad = np.flatnonzero(~np.isin(arr, (0, 1)).all(axis=1))
            if bad.size:
                raise ctx.err("E_DATASET_VALUE", "multi-hot label holds a value other than 0 or 1.", column=col, row=int(idx[bad[0]]))
            return arr.astype(np.int64)
        if arr.dtype.kind == "f":
            bad = np.flatnonzero(~np.isfinite(arr))
            if bad.size:
                raise ctx.err("E_DATASET_VALUE", "label is NaN or Inf; expected a label index or name.", column=col, row=int(idx[bad[0]]))
            raise ctx.err("E_DATASET_SCHEMA", f"has dtype {arr.dtype}; expected integer indices or unicode label names.", column=col)
        if arr.dtype.kind not in "iuU" or arr.ndim != 1:
            raise ctx.err("E_DATASET_SCHEMA", f"has dtype {arr.dtype}; expected integer indices or unicode label names.", column=col)
        values: list[Any] = arr.tolist()
    elif kind == "arrow":
        import pyarrow as pa

        t = _arrow_type(cols, col)
        if pa.types.is_floating(t):
            vals = np.asarray(cols.arrow(col).to_numpy(zero_copy_only=False), dtype=np.float64)
            bad = np.flatnonzero(~np.isfinite(vals))
            if bad.size:
                raise ctx.err("E_DATASET_VALUE", "label is NaN or Inf; expected a label index or name.", column=col, row=int(idx[bad[0]]))
            raise ctx.err("E_DATASET_SCHEMA", f"has type {t}; expected integer indices or string label names.", column=col)
        inner = t.value_type if (pa.types.is_list(t) or pa.types.is_large_list(t)) else t
        if not (pa.types.is_integer(inner) or pa.types.is_string(inner) or pa.types.is_large_string(inner)
                or pa.types.is_dictionary(inner)):
            raise ctx.err("E_DATASET_SCHEMA", f"has type {t}; expected integer indices or string label names.", column=col)
        if (inner is not t) != (ctx.task_kind == "multilabel"):
            raise ctx.err("E_DATASET_SCHEMA", f"has type {t}; a {ctx.task_kind} task expects "
                          f"{'a list of labels per row' if ctx.task_kind == 'multilabel' else 'one label per row'}.", column=col)
        values = _pyvalues(ctx, cols, col, idx)
    else:
        values = cols.strings(col)
        if ctx.task_kind == "multilabel":
            values = [[s for s in v.split(";") if s] for v in values]

    def to_index(v: Any, row: int) -> int:
        if isinstance(v, str) and v in index:
            return index[v]
        if isinstance(v, str) and kind == "csv" and v.strip().lstrip("-").isdigit():
            v = int(v)
        if isinstance(v, int | np.integer) and not isinstance(v, bool):
            if 0 <= v < len(names):
                return int(v)
            raise ctx.err("E_DATASET_VALUE", f"label {int(v)} is out of range; expected 0..{len(names) - 1} "
                          f"({len(names)} labels).", column=col, row=row)
        raise ctx.err("E_DATASET_VALUE", f"label {v!r} is not one of the suite's labels ({', '.join(names[:10])}"
                      f"{', ...' if len(names) > 10 else ''}).", column=col, row=row)

    if ctx.task_kind == "multilabel":
        out = np.zeros((len(values), len(names)), dtype=np.int64)
        for i, v in enumerate(values):
            if not isinstance(v, list):
                raise ctx.err("E_DATASET_SCHEMA", "expected a list of labels per row.", column=col, row=int(idx[i]))
            for x in v:
                out[i, to_index(x, int(idx[i]))] = 1
        return out
    return np.asarray([to_index(v, int(idx[i])) for i, v in enumerate(values)], dtype=np.int64)


# --------------------------------------------------------------------------------------- hashes


def _field_payload(f: FieldSpec, value: Any, missing: bool) -> bytes:
    head = f"{f.name}\0{f.modality}\0".encode()
    if missing:
        body = b"M"
    elif f.modality == "image":
        a = np.ascontiguousarray(value, dtype=np.uint8)
        body = b"I" + struct.pack("<III", *a.shape) + a.tobytes()
    elif f.modality == "text":
        body = b"T" + value.encode("utf-8")
    else:
        a = np.ascontiguousarray(value, dtype="<f4")
        body = b"A" + struct.pack("<IQ", f.sample_rate or 0, a.size) + a.tobytes()
    part = head + body
    return struct.pack("<Q", len(part)) + part


def sample_hash(fields: Mapping[str, FieldSpec], values: Mapping[str, Any], labels: np.ndarray, i: int,
                missing: frozenset[str] = frozenset()) -> str:
    """sha256 of sample ``i``'s canonical encoding (see the module docstring)."""
    h = hashlib.sha256()
    for name in sorted(fields):
        h.update(_field_payload(fields[name], values[name][i], name in missing))
    h.update(b"L" + np.ascontiguousarray(labels[i], dtype="<i8").tobytes())
    return h.hexdigest()


def _fingerprint(doc: Mapping[str, Any], fields: Mapping[str, FieldSpec], splits: Mapping[str, SplitData]) -> str:
    """sha256 of the suite's identity: name, version, task, fields and every split's sample hashes.

    Storage details (format, encoding, compression, column names) do not enter it: the same
    samples stored as Parquet or NPZ give the same fingerprint.
    """
    ident = {
        "fingerprint": "mmstd-suite/1",
        "name": doc["name"], "version": doc["version"],
        "task": {"kind": doc["task"]["kind"], "labels": list(doc["task"]["labels"])},
        "fields": {n: {"modality": f.modality, **({"sample_rate": f.sample_rate} if f.sample_rate else {})}
                   for n, f in sorted(fields.items())},
        "splits": {n: s.fingerprint for n, s in sorted(splits.items())},
    }
    return sha256_bytes(json.dumps(ident, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())


# ------------------------------------------------------------------------------------- variants


def apply_variant(split: SplitData, variant: VariantSpec) -> SplitData:
    """``split`` perturbed by ``variant``; deterministic (noise is seeded per sample).

    - ``missing``: the field is marked missing and its values are zeroed (black images, silent
      clips of the same length, empty texts); ``preprocess_batch`` feeds it as zeros *after*
      preprocessing (padding ids, zero pixels/features), whatever the card's ops.
    - ``zero``: the canonical values are zeroed as above but still go through preprocessing.
    - ``noise``: images ``clip(round(x + N(0, std²)), 0, 255)`` as uint8; audio ``x + N(0, std²)``
      (float32, not clipped); text: each character is replaced, with probability ``rate``, by a
      uniformly drawn character of ``a-z``. Sample ``i`` draws from
      ``numpy.random.default_rng([seed, int(clean_hash_i[:16], 16)])``, so a sample gets the same
      noise whatever subset or order it is evaluated in.

    Sample hashes are recomputed from the perturbed values (a missing field hashes as a marker).

    Raises:
        SuiteError: ``E_NOT_FOUND`` when the split has no such field.
    """
    name = variant.field
    if name not in split.fields:
        raise SuiteError(f"variant {variant.name!r} perturbs field {name!r}, but suite {split.suite!r} has fields "
                         f"{', '.join(split.fields)}.", code="E_NOT_FOUND")
    f = split.fields[name]
    vals = split.values[name]
    n = len(split)
    if variant.kind in ("missing", "zero"):
        new = _zeroed(f, vals)
    else:
        rngs = [np.random.default_rng([variant.seed, int(split.sample_hashes[i][:16], 16)]) for i in range(n)]
        std = float(variant.std or 0.0)
        if f.modality == "image":
            new = _map(vals, lambda i, x: np.clip(np.rint(x.astype(np.float64) + rngs[i].normal(0.0, std, x.shape)),
                                                  0, 255).astype(np.uint8))
        elif f.modality == "audio":
            new = _map(vals, lambda i, x: (x.astype(np.float64) + rngs[i].normal(0.0, std, x.shape)).astype(np.float32))
        else:
            letters = "abcdefghijklmnopqrstuvwxyz"
            new = ["".join(letters[rngs[i].integers(26)] if rngs[i].random() < (variant.rate or 0) else c for c in t)
                   for i, t in enumerate(vals)]
    values = dict(split.values)
    values[name] = new
    missing = split.missing | ({name} if variant.kind == "missing" else set())
    hashes = tuple(sample_hash(split.fields, values, split.labels, i, frozenset(missing)) for i in range(n))
    return replace(split, values=values, missing=frozenset(missing), sample_hashes=hashes, variant=variant.name)


def _zeroed(f: FieldSpec, vals: Any) -> Any:
    if f.modality == "text":
        return ["" for _ in vals]
    if isinstance(vals, np.ndarray):
        return np.zeros_like(vals)
    return [np.zeros_like(v) for v in vals]


def _map(vals: Any, fn: Any) -> Any:
    out = [fn(i, v) for i, v in enumerate(vals)]
    return np.stack(out) if isinstance(vals, np.ndarray) else out


def _take(v: Any, idx: np.ndarray) -> Any:
    if isinstance(v, np.ndarray):
        return v[idx]
    return [v[i] for i in idx]


# ------------------------------------------------------------------------------------- mu-law


def _mulaw_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign, exponent, mantissa = u & 0x80, (u >> 4) & 0x07, u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return (np.where(sign != 0, -magnitude, magnitude) / 32768.0).astype(np.float32)


_MULAW = _mulaw_table()


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    """G.711 μ-law bytes to float32 in [-1, 1): ``x = ±(((m << 3) + 132) << e) − 132) / 32768``."""
    return _MULAW[np.asarray(codes, dtype=np.uint8)]


def mulaw_encode(x: np.ndarray) -> np.ndarray:
    """float waveform in [-1, 1] to G.711 μ-law bytes (the ITU-T reference encoder on ``round(x·32768)``)."""
    pcm = np.clip(np.rint(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int32)
    sign = np.where(pcm < 0, 0x80, 0)
    mag = np.minimum(np.abs(pcm), 32635) + 0x84
    exponent = np.array([max(0, int(v).bit_length() - 1) for v in range(256)], dtype=np.int32)[(mag >> 7) & 0xFF]
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
