"""The sealed package: build it atomically, open it only after verifying every byte.

A package is a directory holding ``card.json``, ``model.onnx``, ``weights.safetensors``,
``reference.safetensors``, optional ``assets/`` and external-data files, and ``manifest.json``
(sha256 and size of every other file), written last. ``open_package`` trusts nothing: it walks the
tree without following links, re-hashes every file, re-validates the card, re-parses the
safetensors headers, runs ``onnx.checker`` by path and compares the graph's inputs and outputs
with the card. Each failure carries one stable code.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mmstd import __version__
from mmstd.card import ModelCard, TensorSpec, parse_card
from mmstd.errors import MmstdError, PackageError
from mmstd.files import (
    FileEntry,
    atomic_write_bytes,
    check_relpath,
    fsync_dir,
    hash_in_root,
    inventory,
    open_in_root,
    sha256_bytes,
    sha256_file,
)
from mmstd.schema import parse_document, validate

MANIFEST = "manifest.json"
CARD = "card.json"
MODEL = "model.onnx"
WEIGHTS = "weights.safetensors"
REFERENCE = "reference.safetensors"
REQUIRED = (CARD, MODEL, WEIGHTS, REFERENCE)

MAX_SAFETENSORS_HEADER = 100 << 20
SAFETENSORS_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}

# ONNX TensorProto element types by name, for comparing the graph with the card.
ONNX_DTYPES = {
    1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
    10: "float16", 11: "float64", 16: "bfloat16",
}


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    path: str
    sha256: str
    bytes: int


@dataclass(frozen=True, slots=True)
class Package:
    """A package whose every file has been verified. Paths point into ``root``."""

    root: Path
    card: ModelCard
    files: tuple[ManifestEntry, ...]
    digest: str

    @property
    def model_path(self) -> Path:
        return self.root / MODEL

    @property
    def weights_path(self) -> Path:
        return self.root / WEIGHTS

    @property
    def reference_path(self) -> Path:
        return self.root / REFERENCE

    def summary(self) -> dict[str, Any]:
        """What ``mmstd inspect`` shows: the contract, provenance and hashes."""
        by_modality: dict[str, list[dict[str, Any]]] = {}
        for spec in self.card.inputs:
            by_modality.setdefault(spec.modality or "?", []).append(
                {"name": spec.name, "dtype": spec.dtype, "shape": list(spec.shape),
                 "preprocessing": [op["op"] for op in spec.preprocessing]})
        sections = self.card.sections
        return {
            "package": self.root.name,
            "digest": self.digest,
            "model": self.card.ref,
            "task": {"kind": self.card.task_kind, "labels": list(self.card.labels)},
            "inputs_by_modality": by_modality,
            "outputs": [{"name": s.name, "kind": s.kind, "dtype": s.dtype, "shape": list(s.shape)} for s in self.card.outputs],
            "fusion": sections["fusion"],
            "source": sections.get("source"),
            "parity": {k: v for k, v in sections.get("parity", {}).items() if k != "checks"},
            "license": sections["model_details"]["license"],
            "files": [{"path": f.path, "sha256": f.sha256, "bytes": f.bytes} for f in self.files],
        }


# ------------------------------------------------------------------------------------- building


def build_package(
    out: Path,
    card: ModelCard,
    files: Mapping[str, Path],
    *,
    force: bool = False,
) -> Package:
    """Seal ``files`` and ``card`` into a package directory at ``out``.

    Files are copied into a staging directory beside ``out``; the card's ``artifacts`` are filled
    with their digests; every file and the directory are fsynced; ``manifest.json`` is written
    last; the staging directory is then renamed into place. A crash leaves only a hidden staging
    directory, never a half-written package.

    Args:
        out: Destination directory; must not exist unless ``force``.
        card: A card with ``source`` and ``parity`` filled in.
        files: Package-relative name -> source file; must hold model.onnx, weights.safetensors and
            reference.safetensors; anything else goes under ``assets/`` or is ONNX external data.
        force: Replace an existing package at ``out`` (never a directory that is not a package).

    Raises:
        PackageError: ``E_OUTPUT_EXISTS`` when ``out`` exists and ``force`` is false.
    """
    out = Path(out).absolute()
    _check_destination(out, force)
    missing = [name for name in (MODEL, WEIGHTS, REFERENCE) if name not in files]
    if missing:
        raise PackageError(f"build_package: missing {', '.join(missing)}.", code="E_MANIFEST_MISMATCH")
    for name in files:
        check_relpath(name, where="build_package")
        if name in (CARD, MANIFEST):
            raise PackageError(f"build_package: {name!r} is written by mmstd, not supplied.", code="E_USAGE")

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.staging-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        entries = {}
        for name, src in sorted(files.items()):
            dest = staging / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            _fsync_file(dest)
            entries[name] = ManifestEntry(name, sha256_file(dest), dest.stat().st_size)

        def art(e: ManifestEntry) -> dict[str, Any]:
            return {"path": e.path, "sha256": e.sha256, "bytes": e.bytes}

        artifacts: dict[str, Any] = {"model": art(entries[MODEL]), "weights": art(entries[WEIGHTS]),
                                     "reference": art(entries[REFERENCE])}
        others = [e for n, e in entries.items() if n not in (MODEL, WEIGHTS, REFERENCE)]
        if assets := [art(e) for e in others if e.path.startswith("assets/")]:
            artifacts["assets"] = assets
        if external := [art(e) for e in others if not e.path.startswith("assets/")]:
            artifacts["external_data"] = external
        sealed = card.with_sections(artifacts=artifacts)
        if not sealed.sealed:
            raise PackageError(f"card {card.ref!r}: cannot seal a card without 'source' and 'parity'.", code="E_CARD_SCHEMA")
        atomic_write_bytes(staging / CARD, sealed.to_json().encode("utf-8"))
        entries[CARD] = ManifestEntry(CARD, sha256_file(staging / CARD), (staging / CARD).stat().st_size)

        manifest = {
            "schema_version": "1.0",
            "mmstd_version": __version__,
            "created": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "files": [{"path": e.path, "sha256": e.sha256, "bytes": e.bytes} for e in sorted(entries.values(), key=lambda e: e.path)],
        }
        atomic_write_bytes(staging / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
        for d in sorted({(staging / n).parent for n in files} | {staging}):
            fsync_dir(d)
        _publish(staging, out, force)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return open_package(out)


def _check_destination(out: Path, force: bool) -> None:
    if not os.path.lexists(out):
        return
    if not force:
        raise PackageError(f"{out}: already exists; refusing to overwrite it.", code="E_OUTPUT_EXISTS",
                           hint="choose another --out, or pass --force to replace the package there.")
    if out.is_symlink() or not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file()):
        raise PackageError(f"{out}: exists and is not an mmstd package; --force only replaces packages.",
                           code="E_OUTPUT_EXISTS", hint="remove it yourself or choose another --out.")


def _publish(staging: Path, out: Path, force: bool) -> None:
    if os.path.lexists(out):
        # Swap rather than delete-then-rename: at every instant either the old or the new package is there.
        trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
        os.rename(out, trash)
        os.rename(staging, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(staging, out)
    fsync_dir(out.parent)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -------------------------------------------------------------------------------------- opening


def open_package(path: Path, *, check_graph: bool = True) -> Package:
    """Verify a package and return it.

    Checks, in order: containment (no links, special files, escapes, oversized files), the manifest
    (schema, every file listed exactly once, sha256 and size), the card (strict, schema, sealed,
    artifacts equal to the manifest), the safetensors headers, the ONNX graph (parses, external
    data inside the package, ``onnx.checker`` full check) and the card/graph IO contract.

    Args:
        path: The package directory.
        check_graph: Skip the ONNX checks (only for callers that check the graph themselves).

    Raises:
        MmstdError: With one of E_FS_PATH_ESCAPE, E_FS_NOT_REGULAR, E_FS_LIMIT, E_FORMAT_CORRUPT,
            E_DOCUMENT_SCHEMA, E_MANIFEST_MISMATCH, E_DIGEST_MISMATCH, E_CARD_JSON, E_CARD_SCHEMA,
            E_SAFETENSORS_INVALID, E_ONNX_INVALID, E_IO_CONTRACT.
    """
    root = Path(path).absolute()
    if not os.path.lexists(root):
        raise PackageError(f"{path}: no such package directory.", code="E_NOT_FOUND")
    found = inventory(root)
    name = root.name
    manifest = _read_manifest(root, found)
    listed = {e.path: e for e in manifest}
    present = {f.rel: f for f in found if f.rel != MANIFEST}
    missing = sorted(set(listed) - set(present))
    extra = sorted(set(present) - set(listed))
    if missing or extra:
        problems = [f"{name}/{p}: listed in manifest.json but missing" for p in missing]
        problems += [f"{name}/{p}: present but not listed in manifest.json" for p in extra]
        raise PackageError(f"Package {name!r}: its files differ from manifest.json.", code="E_MANIFEST_MISMATCH",
                           problems=problems, hint="a package is immutable once sealed; rebuild it with 'mmstd export'.")
    absent = [r for r in REQUIRED if r not in listed]
    if absent:
        raise PackageError(f"Package {name!r}: lacks {', '.join(absent)}.", code="E_MANIFEST_MISMATCH")
    for entry in manifest:
        digest, size = hash_in_root(root, entry.path)
        if digest != entry.sha256 or size != entry.bytes:
            raise PackageError(
                f"Package {name!r}: {entry.path} sha256 mismatch (manifest {entry.sha256[:12]}…, "
                f"{entry.bytes} bytes; file {digest[:12]}…, {size} bytes).",
                code="E_DIGEST_MISMATCH",
                hint="the package changed after sealing; rebuild it with 'mmstd export'.",
            )
    with open_in_root(root, CARD) as f:
        card = parse_card(f.read(), source=f"{name}/{CARD}")
    _check_card_artifacts(card, listed, name)
    for rel in (WEIGHTS, REFERENCE):
        check_safetensors(root, rel)
    if check_graph:
        check_onnx(root, MODEL, card, allowed_external=set(listed))
    canonical = json.dumps([[e.path, e.sha256, e.bytes] for e in manifest], separators=(",", ":"))
    return Package(root=root, card=card, files=tuple(manifest), digest=sha256_bytes(canonical.encode()))


def _read_manifest(root: Path, found: list[FileEntry]) -> list[ManifestEntry]:
    name = root.name
    if not any(f.rel == MANIFEST for f in found):
        raise PackageError(f"Package {name!r}: has no manifest.json; it was never sealed.", code="E_MANIFEST_MISMATCH",
                           hint="build packages with 'mmstd export' or 'mmstd zoo export'.")
    with open_in_root(root, MANIFEST, max_bytes=16 << 20) as f:
        doc = parse_document(f.read(), source=f"{name}/{MANIFEST}", fmt="json", code="E_FORMAT_CORRUPT")
    problems = validate(doc, "manifest", source=f"{name}/{MANIFEST}")
    if problems:
        raise PackageError(f"Package {name!r}: manifest.json is invalid.", code="E_DOCUMENT_SCHEMA", problems=problems)
    entries = [ManifestEntry(e["path"], e["sha256"], e["bytes"]) for e in doc["files"]]
    seen: set[str] = set()
    for i, e in enumerate(entries):
        check_relpath(e.path, where=f"{name}/{MANIFEST}: $.files[{i}].path")
        if e.path in seen or e.path == MANIFEST:
            raise PackageError(f"{name}/{MANIFEST}: $.files[{i}].path: {e.path!r} listed twice or lists the manifest.",
                               code="E_DOCUMENT_SCHEMA")
        seen.add(e.path)
    return entries


def _check_card_artifacts(card: ModelCard, listed: Mapping[str, ManifestEntry], name: str) -> None:
    absent = [s for s in ("source", "parity", "artifacts") if s not in card.sections]
    if absent:
        raise PackageError(f"{name}/{CARD}: $: a sealed card needs {', '.join(map(repr, absent))}; it is a draft.",
                           code="E_CARD_SCHEMA", hint="only 'mmstd export' seals a card.")
    arts = card.sections["artifacts"]
    pinned = [("$.artifacts.model", arts["model"]), ("$.artifacts.weights", arts["weights"]),
              ("$.artifacts.reference", arts["reference"])]
    pinned += [(f"$.artifacts.{k}[{i}]", a) for k in ("assets", "external_data") for i, a in enumerate(arts.get(k, []))]
    expected_paths = {"$.artifacts.model": MODEL, "$.artifacts.weights": WEIGHTS, "$.artifacts.reference": REFERENCE}
    for jpath, art in pinned:
        entry = listed.get(art["path"])
        if jpath in expected_paths and art["path"] != expected_paths[jpath]:
            raise PackageError(f"{name}/{CARD}: {jpath}.path: expected {expected_paths[jpath]!r}, got {art['path']!r}.",
                               code="E_CARD_SCHEMA")
        if entry is None or entry.sha256 != art["sha256"] or entry.bytes != art["bytes"]:
            raise PackageError(f"{name}/{CARD}: {jpath}: pins {art['path']} as sha256 {art['sha256'][:12]}… but the "
                               "manifest disagrees.", code="E_DIGEST_MISMATCH")


# ---------------------------------------------------------------------------------- safetensors


def check_safetensors(root: Path, rel: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Re-parse a safetensors header ourselves, refusing anything the format does not allow.

    Refused: a header length beyond the file or 100 MiB, non-strict JSON (duplicate names), unknown
    dtypes, negative or non-integer dims, offsets that do not match dtype x shape, overlap, gaps,
    or bytes after the last tensor.

    Returns:
        Tensor name -> (dtype, shape).

    Raises:
        PackageError: ``E_SAFETENSORS_INVALID`` naming the file and the tensor.
    """
    where = f"{root.name}/{rel}"

    def bad(msg: str) -> PackageError:
        return PackageError(f"{where}: {msg}", code="E_SAFETENSORS_INVALID")

    with open_in_root(root, rel) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise bad(f"file is {size} bytes; too short for a safetensors header.")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_SAFETENSORS_HEADER or n > size - 8:
            raise bad(f"header length {n} exceeds the file ({size} bytes) or the limit {MAX_SAFETENSORS_HEADER}.")
        raw = f.read(n)
    try:
        doc = parse_document(raw.rstrip(b" "), source=where, fmt="json", code="E_SAFETENSORS_INVALID")
    except MmstdError as e:
        raise bad(f"header is not strict JSON: {e.message}") from None
    if not isinstance(doc, dict):
        raise bad("header is not a JSON object.")
    data_len = size - 8 - n
    spans = []
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for key, info in doc.items():
        if key == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise bad("__metadata__ must map strings to strings.")
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {key!r}: expected exactly dtype, shape, data_offsets.")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in SAFETENSORS_DTYPES:
            raise bad(f"tensor {key!r}: dtype {dtype!r} is not one of {sorted(SAFETENSORS_DTYPES)}.")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise bad(f"tensor {key!r}: shape {shape!r} is not a list of non-negative ints.")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise bad(f"tensor {key!r}: data_offsets {offsets!r} is not [begin, end].")
        numel = 1
        for d in shape:
            numel *= d
        begin, end = offsets
        if not 0 <= begin <= end <= data_len or end - begin != numel * SAFETENSORS_DTYPES[dtype]:
            raise bad(f"tensor {key!r}: data_offsets {offsets} do not hold {dtype}{shape} inside {data_len} data bytes.")
        spans.append((begin, end, key))
        out[key] = (dtype, tuple(shape))
    cursor = 0
    for begin, end, key in sorted(spans):
        if begin != cursor:
            raise bad(f"tensor {key!r}: starts at {begin}, expected {cursor} (overlap or gap).")
        cursor = end
    if cursor != data_len:
        raise bad(f"{data_len - cursor} bytes after the last tensor.")
    return out


# ----------------------------------------------------------------------------------------- onnx


def check_onnx(
    root: Path,
    rel: str,
    card: ModelCard,
    *,
    allowed_external: set[str],
    pre_check: Callable[[Any], None] | None = None,
) -> Any:
    """Parse the graph, confine external data, run the full checker, compare IO with the card.

    Args:
        pre_check: Called with the parsed ``ModelProto`` before external data is resolved and
            before ``onnx.checker`` runs (the gate's allowlists and tensor bounds); it raises to refuse.

    Returns:
        The loaded ``onnx.ModelProto`` (without external data).
    """
    import onnx
    from google.protobuf.message import DecodeError

    where = f"{root.name}/{rel}"
    with open_in_root(root, rel) as f:
        data = f.read()
    if not data:
        raise PackageError(f"{where}: is empty; expected an ONNX model.", code="E_FORMAT_CORRUPT")
    try:
        model = onnx.load_from_string(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise PackageError(f"{where}: is not a valid ONNX protobuf ({e}).", code="E_FORMAT_CORRUPT") from None
    if not model.graph.node and not model.graph.output:
        raise PackageError(f"{where}: holds no graph.", code="E_FORMAT_CORRUPT")
    if pre_check is not None:
        pre_check(model)
    _check_external_data(model, root, where, allowed_external)
    # The contract first: "the card says X, the graph says Y" is a better diagnosis than the
    # shape-inference error the same mismatch often causes inside the checker.
    problems = compare_io(model, card, where=where)
    if problems:
        raise PackageError(f"{where}: graph inputs/outputs differ from the card {card.ref!r}.",
                           code="E_IO_CONTRACT", problems=problems)
    try:
        onnx.checker.check_model(str(root / rel), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PackageError(f"{where}: fails onnx.checker: {first}", code="E_ONNX_INVALID") from None
    return model


def _check_external_data(model: Any, root: Path, where: str, allowed: set[str]) -> None:
    from onnx.external_data_helper import _get_all_tensors

    for tensor in _get_all_tensors(model):
        if tensor.data_location != 1:  # TensorProto.EXTERNAL
            continue
        info = {e.key: e.value for e in tensor.external_data}
        loc = info.get("location", "")
        try:
            check_relpath(loc, where=f"{where}: tensor {tensor.name!r} external data")
        except MmstdError as e:
            raise PackageError(e.message, code="E_FS_PATH_ESCAPE") from None
        if loc not in allowed:
            raise PackageError(f"{where}: tensor {tensor.name!r} stores its data in {loc!r}, which is not a package file.",
                               code="E_FS_PATH_ESCAPE")


def compare_io(model: Any, card: ModelCard, *, where: str) -> list[str]:
    """Every difference between the graph's inputs/outputs and the card's, one message each."""
    inits = {t.name for t in model.graph.initializer}
    graph_in = {v.name: v for v in model.graph.input if v.name not in inits}
    graph_out = {v.name: v for v in model.graph.output}
    problems = []
    for side, specs, graph in (("inputs", card.inputs, graph_in), ("outputs", card.outputs, graph_out)):
        names = [s.name for s in specs]
        for extra in sorted(set(graph) - set(names)):
            problems.append(f"{where}: graph has {side[:-1]} {extra!r} that the card does not declare")
        for i, spec in enumerate(specs):
            if spec.name not in graph:
                problems.append(f"{where}: card $.{side}[{i}] {spec.name!r} is not a graph {side[:-1]}; "
                                f"graph {side}: {sorted(graph)}")
                continue
            problems += _compare_tensor(spec, graph[spec.name], f"{where}: {side[:-1]} {spec.name!r} ($.{side}[{i}])")
    return problems


def _compare_tensor(spec: TensorSpec, value: Any, where: str) -> list[str]:
    ttype = value.type.tensor_type
    dtype = ONNX_DTYPES.get(ttype.elem_type, f"onnx-type-{ttype.elem_type}")
    problems = []
    if dtype != spec.dtype:
        problems.append(f"{where}: dtype is {dtype} in the graph, {spec.dtype} in the card")
    if not ttype.HasField("shape"):
        return problems + [f"{where}: the graph declares no shape; the card says {list(spec.shape)}"]
    dims = ttype.shape.dim
    if len(dims) != spec.rank:
        return problems + [f"{where}: rank is {len(dims)} in the graph, {spec.rank} in the card ({list(spec.shape)})"]
    for i, (d, want) in enumerate(zip(dims, spec.shape, strict=True)):
        got: int | str | None = d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
        if got != want:
            shown = "unnamed dynamic" if got is None else repr(got)
            problems.append(f"{where}: dim {i} is {shown} in the graph, {want!r} in the card")
    return problems
