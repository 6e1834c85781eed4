"""Static validation of untrusted files: stage them, identify them by magic bytes, bound what a graph may allocate.

Nothing here runs a model or unpickles anything. Submission bytes are read only through
``mmstd.files`` (``inventory`` + ``open_in_root``) and copied into a gate-owned staging directory
while hashing; every later check reads the staged copy. Formats are an allowlist decided by
magic bytes, never by extension alone: pickles, native libraries, scripts and Keras archives with
Lambda layers or module references are code (``E_UNSAFE_CONTENT``); anything else outside the
allowlist is ``E_FORMAT_UNSUPPORTED``. ONNX graphs are held to an allowlist of IR versions,
domains, opsets and operators, and every tensor the graph declares or can build from constants is
bounded (``E_TENSOR_LIMIT``) before ``onnx.checker`` or onnxruntime sees it.

Every error is an ``MmstdError`` whose message starts with the submission-relative path:
``<path>[:<field/tensor/node>]: <what> (<limit or expected>)``.
"""
from __future__ import annotations

import codecs
import hashlib
import io
import math
import os
import pickletools
import stat
import struct
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from mmstd.errors import MmstdError
from mmstd.files import CHUNK, check_relpath, inventory, open_in_root
from mmstd.schema import parse_document

#: How much of each file is read to identify it.
SNIFF_BYTES = 1 << 20
#: How much of a possible protocol 0/1 pickle is disassembled (bounded: crafted opcode runs are slow).
PICKLE_SCAN_BYTES = 64 << 10
_PICKLE_TRUNCATED = ("exhausted before seeing STOP", "no newline found", "remain")
#: Largest ``config.json`` read out of a Keras archive.
MAX_KERAS_CONFIG = 16 << 20
#: Members smaller than this are never called bombs, whatever their compression ratio.
RATIO_FLOOR_BYTES = 1 << 20

PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib", ".dill"})
CODE_SUFFIXES = frozenset({".py", ".pyc", ".pyo", ".pyd", ".so", ".dylib", ".dll", ".exe", ".sh", ".bat", ".ps1"})
ASSET_KINDS = frozenset({"text", "png", "jpeg", "wav", "safetensors"})
_SUFFIX_KINDS = {
    ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".wav": "wav", ".safetensors": "safetensors",
    ".json": "text", ".txt": "text", ".csv": "text", ".md": "text", ".vocab": "text", ".yaml": "text", ".yml": "text",
}
_NATIVE_MAGIC = (b"\x7fELF", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe",
                 b"\xca\xfe\xba\xbe")
KERAS_LAMBDA_CLASSES = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__", "function"})


@dataclass(frozen=True, slots=True)
class ScanLimits:
    """Caps applied before anything is allocated; every one is a policy field (``limits``)."""

    max_files: int = 256
    max_file_bytes: int = 2 << 30
    max_total_bytes: int = 4 << 30
    max_depth: int = 8
    max_tensor_elements: int = 1 << 28
    max_dim: int = 1 << 24
    max_rank: int = 8
    archive_max_members: int = 1024
    archive_max_ratio: float = 200.0


@dataclass(frozen=True, slots=True)
class OnnxAllowlist:
    """The IR versions, domains (with opset ranges) and operators a submitted graph may use.

    ``opsets`` maps a domain (``""`` is ``ai.onnx``) to its inclusive ``(min, max)`` opset.
    Model-local functions may define their own domain when ``local_functions`` is true; their
    bodies are held to the same allowlist.
    """

    ir_min: int = 7
    ir_max: int = 13
    opsets: Mapping[str, tuple[int, int]] = field(default_factory=lambda: {"": (13, 26), "ai.onnx.ml": (1, 5)})
    denied_ops: frozenset[str] = frozenset()
    local_functions: bool = True


@dataclass(frozen=True, slots=True)
class StagedFile:
    """One file copied into the staging directory: its submission-relative path, sha256 and size."""

    rel: str
    sha256: str
    size: int


def refuse(code: str, path: str, what: str, *, field: str | None = None) -> MmstdError:
    """An error in the gate's message shape: ``<path>[:<field>]: <what>``."""
    loc = f"{path}:{field}" if field else path
    return MmstdError(f"{loc}: {what}", code=code)


# -------------------------------------------------------------------------------------- staging


def stage_tree(src: Path, dest: Path, limits: ScanLimits) -> dict[str, StagedFile]:
    """Copy every regular file of ``src`` into the new directory ``dest``, hashing while copying.

    ``src`` is walked with ``inventory`` (lstat only: links, hard links and special files are
    refused without being opened) and each file is read through ``open_in_root``; libraries later
    read only ``dest``, so a submission changing under us cannot change what is checked.

    Raises:
        MmstdError: ``E_FS_PATH_ESCAPE``, ``E_FS_NOT_REGULAR``, ``E_FS_LIMIT``; messages of the
            walk start with ``src.name``.
    """
    entries = inventory(src, max_file_bytes=limits.max_file_bytes, max_files=limits.max_files, max_depth=limits.max_depth)
    total = sum(e.size for e in entries)
    if total > limits.max_total_bytes:
        raise refuse("E_FS_LIMIT", ".", f"files total {total} bytes (limit {limits.max_total_bytes})")
    os.mkdir(dest, 0o700)
    staged: dict[str, StagedFile] = {}
    for e in entries:
        with open_in_root(src, e.rel, max_bytes=limits.max_file_bytes) as f:
            staged[e.rel] = _copy_stream(f, dest, e.rel, limit=e.size, code="E_FS_LIMIT",
                                         what="changed size while it was being staged")
        if staged[e.rel].size != e.size:
            raise refuse("E_FS_LIMIT", e.rel, f"changed size while it was being staged ({e.size} bytes listed, "
                                              f"{staged[e.rel].size} read)")
    return staged


def _copy_stream(f: Any, dest: Path, rel: str, *, limit: int, code: str, what: str) -> StagedFile:
    target = dest / rel
    _makedirs(dest, target.parent)
    h = hashlib.sha256()
    n = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := f.read(CHUNK):
            n += len(chunk)
            if n > limit:
                raise refuse(code, rel, f"{what} (more than {limit} bytes)")
            h.update(chunk)
            out.write(chunk)
    return StagedFile(rel, h.hexdigest(), n)


def _makedirs(root: Path, d: Path) -> None:
    missing = []
    while d != root and not d.is_dir():
        missing.append(d)
        d = d.parent
    for m in reversed(missing):
        os.mkdir(m, 0o700)


def extract_zip(archive: Path, dest: Path, limits: ScanLimits, *, name: str) -> dict[str, StagedFile]:
    """Extract a zip of a package into the new directory ``dest``, refusing every archive trick first.

    The central directory is checked before a byte is extracted: member count, names (absolute,
    ``..``, backslashes, NUL), links and special members, encryption, duplicates, depth, declared
    sizes and compression ratios. Extraction then streams each member with its size enforced.
    A package zipped with its directory (``pkg/manifest.json``) is unwrapped.

    Args:
        archive: The staged copy of the zip (gate-owned).
        dest: Where the package's files go; must not exist.
        limits: Caps from the policy.
        name: The archive's submission-relative name, for messages.

    Raises:
        MmstdError: ``E_ARCHIVE_UNSAFE`` for tricks and bombs, ``E_FORMAT_CORRUPT`` when unreadable.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
        raise refuse("E_FORMAT_CORRUPT", name, f"is not a readable zip archive ({e})") from None
    with zf:
        members = _check_members(zf, limits, name, archive.stat().st_size)
        prefix = _common_package_dir(members)
        os.mkdir(dest, 0o700)
        staged: dict[str, StagedFile] = {}
        for info, rel in members:
            rel = rel[len(prefix):]
            try:
                with zf.open(info) as src:
                    staged[rel] = _copy_stream(src, dest, rel, limit=min(info.file_size, limits.max_file_bytes),
                                               code="E_ARCHIVE_UNSAFE", what=f"member {info.filename!r} inflates beyond its declared size")
            except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as e:
                raise refuse("E_FORMAT_CORRUPT", name, f"member {info.filename!r} cannot be extracted ({e})") from None
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                raise refuse("E_ARCHIVE_UNSAFE", name, f"member {info.filename!r} collides with another member") from None
        return staged


def _check_members(zf: zipfile.ZipFile, limits: ScanLimits, name: str, archive_bytes: int) -> list[tuple[zipfile.ZipInfo, str]]:
    infos = zf.infolist()
    if len(infos) > limits.archive_max_members:
        raise refuse("E_ARCHIVE_UNSAFE", name, f"has {len(infos)} members (limit {limits.archive_max_members})")

    def bad(info: zipfile.ZipInfo, what: str) -> MmstdError:
        return refuse("E_ARCHIVE_UNSAFE", name, what, field=repr(info.filename))

    files: list[tuple[zipfile.ZipInfo, str]] = []
    seen: set[str] = set()
    total = 0
    for info in infos:
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise bad(info, "is a symlink member; links are not allowed")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise bad(info, "is a special-file member (device, FIFO or socket)")
        if info.flag_bits & 0x1:
            raise bad(info, "is encrypted")
        is_dir = info.filename.endswith("/") or kind == stat.S_IFDIR
        rel = info.filename.rstrip("/") if is_dir else info.filename
        if len(rel) > 1 and rel[1] == ":":
            raise bad(info, "has a drive-letter path (zip slip)")
        try:
            check_relpath(rel, where=name)
        except MmstdError:
            raise bad(info, "escapes the archive root: absolute, '..', '.', backslash or NUL (zip slip)") from None
        if rel.count("/") + 1 > limits.max_depth:
            raise bad(info, f"is nested deeper than {limits.max_depth} levels")
        if is_dir:
            continue
        if rel in seen:
            raise bad(info, "appears twice in the archive")
        seen.add(rel)
        if info.file_size > limits.max_file_bytes:
            raise bad(info, f"inflates to {info.file_size} bytes (limit {limits.max_file_bytes})")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_FLOOR_BYTES and ratio > limits.archive_max_ratio:
            raise bad(info, f"compression ratio {ratio:.0f}:1 (limit {limits.archive_max_ratio:.0f}:1; zip bomb)")
        total += info.file_size
        files.append((info, rel))
    if total > limits.max_total_bytes:
        raise refuse("E_ARCHIVE_UNSAFE", name, f"inflates to {total} bytes in all (limit {limits.max_total_bytes})")
    if total > RATIO_FLOOR_BYTES and total / max(archive_bytes, 1) > limits.archive_max_ratio:
        raise refuse("E_ARCHIVE_UNSAFE", name, f"inflates {total / max(archive_bytes, 1):.0f}-fold "
                                               f"(limit {limits.archive_max_ratio:.0f}; zip bomb)")
    if len(files) > limits.max_files:
        raise refuse("E_ARCHIVE_UNSAFE", name, f"holds {len(files)} files (limit {limits.max_files})")
    return files


def _common_package_dir(members: list[tuple[zipfile.ZipInfo, str]]) -> str:
    rels = [rel for _, rel in members]
    if "manifest.json" in rels or not rels:
        return ""
    tops = {rel.split("/", 1)[0] for rel in rels}
    if len(tops) == 1 and all("/" in r for r in rels):
        top = tops.pop()
        if f"{top}/manifest.json" in rels:
            return f"{top}/"
    return ""


# ------------------------------------------------------------------------------- identification


def identify(root: Path, rel: str, *, role: str, limits: ScanLimits) -> str:
    """Identify ``root/rel`` by its magic bytes and refuse code-bearing or unlisted kinds.

    Args:
        root: The staged (gate-owned) directory.
        rel: Submission-relative path.
        role: ``"asset"`` (must be UTF-8 text, PNG, JPEG, WAV or safetensors, matching its
            extension), ``"document"``, ``"onnx"``, ``"safetensors"`` or ``"data"`` (ONNX external
            data: raw bytes). Every role refuses pickles, native code, scripts and archives.
        limits: Caps for archives found inside.

    Returns:
        The kind: ``text``, ``png``, ``jpeg``, ``wav``, ``safetensors`` or ``binary``.

    Raises:
        MmstdError: ``E_UNSAFE_CONTENT`` or ``E_FORMAT_UNSUPPORTED``.
    """
    suffix = PurePosixPath(rel).suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise refuse("E_UNSAFE_CONTENT", rel, f"'{suffix}' files are pickles, which run code when loaded "
                                              "(expected safetensors weights)")
    if suffix in CODE_SUFFIXES:
        raise refuse("E_UNSAFE_CONTENT", rel, f"'{suffix}' files are code or native libraries (custom-op "
                                              "libraries and scripts are never loaded)")
    with open_in_root(root, rel) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(SNIFF_BYTES)
    kind = sniff(head, size)
    if kind == "pickle":
        raise refuse("E_UNSAFE_CONTENT", rel, "is a pickle (magic bytes), which runs code when loaded "
                                              "(expected safetensors or ONNX)")
    if kind == "native":
        raise refuse("E_UNSAFE_CONTENT", rel, "is native code (ELF/Mach-O/PE); custom-op libraries are never loaded")
    if kind == "script":
        raise refuse("E_UNSAFE_CONTENT", rel, "is a script ('#!'); submissions carry no code")
    if kind == "zip":
        inspect_zip(root / rel, rel, limits)
    if kind == "hdf5":
        raise refuse("E_FORMAT_UNSUPPORTED", rel, "is HDF5 (e.g. Keras .h5), which the gate does not load "
                                                  "(export it to ONNX + safetensors with 'mmstd export')")
    if kind == "npy":
        if _npy_has_objects(head):
            raise refuse("E_UNSAFE_CONTENT", rel, "is a NumPy array of Python objects (pickled)")
        raise refuse("E_FORMAT_UNSUPPORTED", rel, "is a .npy array (expected safetensors)")
    if role == "asset":
        if kind not in ASSET_KINDS:
            raise refuse("E_FORMAT_UNSUPPORTED", rel, f"content is {kind}, not an allowed asset kind "
                                                      f"(expected one of {', '.join(sorted(ASSET_KINDS))})")
        want = _SUFFIX_KINDS.get(suffix)
        if want is not None and want != kind:
            raise refuse("E_FORMAT_UNSUPPORTED", rel, f"extension '{suffix}' says {want} but the content is {kind}")
    return kind


def sniff(head: bytes, size: int) -> str:
    """The kind of a file from its first bytes (at most ``SNIFF_BYTES``)."""
    if _is_pickle(head, truncated=len(head) < size):
        return "pickle"
    if head.startswith(_NATIVE_MAGIC) or _is_pe(head):
        return "native"
    if head.startswith(b"#!"):
        return "script"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return "zip"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= size - 8:
        return "safetensors"
    if _is_text(head, complete=len(head) == size):
        return "text"
    return "binary"


class _Discard(io.TextIOBase):
    def write(self, s: str) -> int:
        return len(s)


def _is_pickle(head: bytes, *, truncated: bool) -> bool:
    """True when ``head`` is a pickle stream (protocol 0-5): complete up to STOP, or valid up to where it was cut.

    Protocol 2+ pickles start with PROTO (0x80, 2..5). Older protocols have no magic, so the first
    ``PICKLE_SCAN_BYTES`` are disassembled (with stack checks: plain text fails within a few
    bytes); a stream still valid where our read stopped counts as a pickle. Nothing is unpickled.
    """
    if not head:
        return False
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return True
    if head[0] in b"{[\x00" or head[0] >= 0x80:
        return False
    cut = truncated or len(head) > PICKLE_SCAN_BYTES
    try:
        pickletools.dis(io.BytesIO(head[:PICKLE_SCAN_BYTES]), out=_Discard())  # type: ignore[arg-type]
    except ValueError as e:
        return cut and any(s in str(e) for s in _PICKLE_TRUNCATED)
    except Exception:  # any other decoding problem means "not a pickle"; dis raises several types
        return False
    return True


def _is_pe(head: bytes) -> bool:
    if not head.startswith(b"MZ") or len(head) < 64:
        return False
    (offset,) = struct.unpack("<I", head[60:64])
    return head[offset:offset + 4] == b"PE\x00\x00"


def _is_text(head: bytes, *, complete: bool) -> bool:
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        return False
    return not any(ord(c) < 32 and c not in "\t\n\r" for c in text)


def _npy_has_objects(head: bytes) -> bool:
    header = head[10:10 + 4096]
    return b"'O'" in header or b"|O" in header or b"'<O'" in header


def inspect_zip(path: Path, rel: str, limits: ScanLimits) -> None:
    """Refuse a zip found inside a submission, naming why: torch pickle, Keras code, or just an archive.

    Raises:
        MmstdError: Always: ``E_UNSAFE_CONTENT`` (pickle members, Keras Lambda layers or module
            references) or ``E_FORMAT_UNSUPPORTED`` (any other archive, code-free Keras included).
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise refuse("E_FORMAT_CORRUPT", rel, f"has zip magic but is not a readable archive ({e})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.archive_max_members:
            raise refuse("E_ARCHIVE_UNSAFE", rel, f"has {len(infos)} members (limit {limits.archive_max_members})")
        names = {i.filename for i in infos}
        pickled = sorted(n for n in names if PurePosixPath(n).suffix.lower() in PICKLE_SUFFIXES)
        if pickled:
            raise refuse("E_UNSAFE_CONTENT", rel, f"is a zip holding pickles ({pickled[0]!r}: a torch checkpoint "
                                                  "runs code when loaded; expected safetensors)")
        if "config.json" in names and ({"metadata.json", "model.weights.h5"} & names):
            check_keras_zip_config(zf, rel)
            raise refuse("E_FORMAT_UNSUPPORTED", rel, "is a Keras archive; the gate only takes ONNX + safetensors "
                                                      "(export it with 'mmstd export')")
        raise refuse("E_FORMAT_UNSUPPORTED", rel, "is a zip archive inside a package (nested archives are not allowed)")


def check_keras_zip_config(zf: zipfile.ZipFile, rel: str) -> None:
    """Read a ``.keras`` archive's config.json (size-capped, strict JSON) and walk it for code.

    Raises:
        MmstdError: ``E_FS_LIMIT`` (config.json too large), ``E_FORMAT_CORRUPT`` (not strict JSON),
            ``E_UNSAFE_CONTENT`` (see ``check_keras_config``).
    """
    info = zf.getinfo("config.json")
    if info.file_size > MAX_KERAS_CONFIG:
        raise refuse("E_FS_LIMIT", rel, f"config.json is {info.file_size} bytes (limit {MAX_KERAS_CONFIG})")
    with zf.open(info) as f:
        data = f.read(MAX_KERAS_CONFIG + 1)
    try:
        doc = parse_document(data, source=f"{rel}:config.json", fmt="json", code="E_FORMAT_CORRUPT")
    except MmstdError as e:
        raise refuse("E_FORMAT_CORRUPT", rel, f"Keras config is not strict JSON ({e.message})") from None
    check_keras_config(doc, rel)


def check_keras_config(doc: Any, rel: str) -> None:
    """Walk a Keras ``config.json`` statically; refuse Lambda layers, custom objects and foreign modules.

    Raises:
        MmstdError: ``E_UNSAFE_CONTENT`` naming the JSON path of the first offending object.
    """
    for path, node in _walk(doc, "$"):
        if not isinstance(node, dict):
            continue
        where = f"config.json:{path}"
        cls = node.get("class_name")
        if isinstance(cls, str) and cls in KERAS_LAMBDA_CLASSES:
            raise refuse("E_UNSAFE_CONTENT", rel, f"Keras {cls!r} object holds Python code (not allowed)", field=where)
        module = node.get("module")
        if module is not None and not (isinstance(module, str) and (module == "keras" or module.startswith("keras."))):
            raise refuse("E_UNSAFE_CONTENT", rel, f"references module {module!r} (allowed: keras.*)", field=where)
        registered = node.get("registered_name")
        if isinstance(registered, str) and ">" in registered:
            raise refuse("E_UNSAFE_CONTENT", rel, f"custom object {registered!r} needs user code to load", field=where)


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    stack = [(path, node)]
    while stack:
        p, n = stack.pop()
        yield p, n
        if isinstance(n, dict):
            stack += [(f"{p}.{k}", v) for k, v in n.items()]
        elif isinstance(n, list):
            stack += [(f"{p}[{i}]", v) for i, v in enumerate(n)]


# ------------------------------------------------------------------------------------------ onnx


def check_onnx_static(model: Any, allow: OnnxAllowlist, limits: ScanLimits, *, where: str = "model.onnx") -> None:
    """Hold a parsed ONNX model to the allowlist and bound every tensor it declares or builds from constants.

    Runs before ``onnx.checker`` and before any runtime: IR version, opset imports, each node's
    domain and operator (subgraphs and model-local functions included), declared shapes of inputs,
    outputs and value_info, initializer and attribute tensors, and the outputs of
    ConstantOfShape / Expand / Range / Tile / Resize fed by constants.

    Raises:
        MmstdError: ``E_ONNX_UNSUPPORTED`` or ``E_TENSOR_LIMIT``.
    """
    import onnx.defs

    ir = model.ir_version
    if not allow.ir_min <= ir <= allow.ir_max:
        raise refuse("E_ONNX_UNSUPPORTED", where, f"IR version {ir} is not allowed (allowed {allow.ir_min}..{allow.ir_max})")
    local = {(f.domain, f.name): f for f in model.functions}
    if local and not allow.local_functions:
        raise refuse("E_ONNX_UNSUPPORTED", where, "model-local functions are not allowed by the policy")
    local_domains = {d for d, _ in local}
    imports: dict[str, int] = {}
    for op in model.opset_import:
        domain = "" if op.domain == "ai.onnx" else op.domain
        imports[domain] = op.version
        if domain in allow.opsets:
            lo, hi = allow.opsets[domain]
            if not lo <= op.version <= hi:
                raise refuse("E_ONNX_UNSUPPORTED", where, f"opset {op.version} of domain {_dname(domain)} is not allowed "
                                                          f"(allowed {lo}..{hi})", field="opset_import")
        elif domain not in local_domains:
            raise refuse("E_ONNX_UNSUPPORTED", where, f"domain {_dname(domain)} is not allowed (allowed: "
                                                      f"{', '.join(_dname(d) for d in sorted(allow.opsets))})",
                         field="opset_import")
    graphs = [("graph", model.graph)] + [(f"function {f.domain}:{f.name}", f) for f in model.functions]
    for label, g in graphs:
        for node, _ in _nodes(g):
            domain = "" if node.domain == "ai.onnx" else node.domain
            node_where = f"node {node.name or node.op_type!r}" if label == "graph" else f"{label}: node {node.op_type!r}"
            if (domain, node.op_type) in local:
                continue
            if domain not in allow.opsets:
                raise refuse("E_ONNX_UNSUPPORTED", where, f"domain {_dname(domain)} is not allowed (custom operators "
                                                          "need code the gate never loads)", field=node_where)
            if node.op_type in allow.denied_ops:
                raise refuse("E_ONNX_UNSUPPORTED", where, f"operator {node.op_type} is denied by the policy", field=node_where)
            version = imports.get(domain)
            if version is None:
                raise refuse("E_ONNX_UNSUPPORTED", where, f"domain {_dname(domain)} is used but not imported", field=node_where)
            try:
                onnx.defs.get_schema(node.op_type, version, domain)
            except onnx.defs.SchemaError:
                raise refuse("E_ONNX_UNSUPPORTED", where, f"operator {_dname(domain)}:{node.op_type} does not exist "
                                                          f"at opset {version}", field=node_where) from None
    _check_declared(model, limits, where)
    _check_constant_builders(model, limits, where)


def _dname(domain: str) -> str:
    return repr(domain or "ai.onnx")


def _nodes(graph: Any) -> Iterator[tuple[Any, Any]]:
    """Every node of ``graph`` and of its subgraphs (Loop/If/Scan bodies), with its owning graph."""
    stack = [graph]
    while stack:
        g = stack.pop()
        for node in g.node:
            yield node, g
            for attr in node.attribute:
                if attr.HasField("g"):
                    stack.append(attr.g)
                stack.extend(attr.graphs)


def _graphs(model: Any) -> Iterator[Any]:
    stack = [model.graph]
    while stack:
        g = stack.pop()
        yield g
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    stack.append(attr.g)
                stack.extend(attr.graphs)


def _bound(dims: list[int], limits: ScanLimits, where: str, field: str, *, rank: int | None = None) -> None:
    rank = len(dims) if rank is None else rank
    if rank > limits.max_rank:
        raise refuse("E_TENSOR_LIMIT", where, f"rank {rank} (limit {limits.max_rank})", field=field)
    for d in dims:
        if d < 0:
            raise refuse("E_TENSOR_LIMIT", where, f"dimension {d} is negative", field=field)
        if d > limits.max_dim:
            raise refuse("E_TENSOR_LIMIT", where, f"dimension {d} (limit {limits.max_dim})", field=field)
    n = math.prod(dims)
    if n > limits.max_tensor_elements:
        raise refuse("E_TENSOR_LIMIT", where, f"{n} elements, shape {dims} (limit {limits.max_tensor_elements})", field=field)


def _check_declared(model: Any, limits: ScanLimits, where: str) -> None:
    from onnx import AttributeProto

    for g in _graphs(model):
        for kind, values in (("input", g.input), ("output", g.output), ("value_info", g.value_info)):
            for v in values:
                t = v.type.tensor_type
                if v.type.HasField("tensor_type") and t.HasField("shape"):
                    dims = [d.dim_value for d in t.shape.dim if d.HasField("dim_value")]
                    _bound(dims, limits, where, f"{kind} {v.name!r}", rank=len(t.shape.dim))
        for init in g.initializer:
            _bound(list(init.dims), limits, where, f"initializer {init.name!r}")
        for sp in g.sparse_initializer:
            _bound(list(sp.dims), limits, where, f"sparse initializer {sp.values.name!r}")
        for node in g.node:
            for attr in node.attribute:
                tensors = list(attr.tensors) + ([attr.t] if attr.type == AttributeProto.TENSOR else [])
                if attr.type == AttributeProto.SPARSE_TENSOR:
                    _bound(list(attr.sparse_tensor.dims), limits, where, f"node {node.name or node.op_type!r}.{attr.name}")
                for t in tensors:
                    _bound(list(t.dims), limits, where, f"node {node.name or node.op_type!r}.{attr.name}")


def _constants(graph: Any) -> dict[str, list[float]]:
    """Small numeric constants (initializers and Constant nodes) whose values are in the model."""
    from onnx import AttributeProto, numpy_helper

    out: dict[str, list[float]] = {}

    def add(name: str, t: Any) -> None:
        if math.prod(t.dims) <= 64 and t.data_location != 1:  # never follow external data here
            try:
                out[name] = [float(x) for x in numpy_helper.to_array(t).reshape(-1)]
            except Exception:  # an undecodable constant is the checker's business, not ours
                pass

    for init in graph.initializer:
        add(init.name, init)
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.type == AttributeProto.TENSOR:
                    add(node.output[0], attr.t)
                elif attr.name == "value_ints":
                    out[node.output[0]] = [float(x) for x in attr.ints]
                elif attr.name == "value_int":
                    out[node.output[0]] = [float(attr.i)]
    return out


def _check_constant_builders(model: Any, limits: ScanLimits, where: str) -> None:
    for g in _graphs(model):
        consts = _constants(g)

        def value(i: int, node: Any, consts: dict[str, list[float]] = consts) -> list[float] | None:
            return consts.get(node.input[i]) if len(node.input) > i and node.input[i] else None

        for node in g.node:
            label = f"node {node.name or node.op_type!r}"
            op = node.op_type
            if op in ("ConstantOfShape", "Expand"):
                shape = value(0 if op == "ConstantOfShape" else 1, node)
                if shape is not None:
                    _bound([max(int(d), 0) for d in shape], limits, where, f"{label} ({op} output)")
            elif op == "Range":
                start, limit, delta = value(0, node), value(1, node), value(2, node)
                if start and limit and delta and delta[0] != 0:
                    count = max(math.ceil((limit[0] - start[0]) / delta[0]), 0)
                    _bound([count], limits, where, f"{label} (Range output)")
            elif op == "Resize" and (sizes := value(3, node)) is not None:
                _bound([max(int(d), 0) for d in sizes], limits, where, f"{label} (Resize output)")


def check_onnx_inferred(model: Any, limits: ScanLimits, *, where: str = "model.onnx") -> None:
    """Bound every tensor whose static shape onnx can infer (with data propagation), e.g. Tile of constants.

    Runs after ``onnx.checker`` has accepted the graph. Named (dynamic) axes count as 1, so the
    bound is a lower bound; the sandbox's memory limit covers what depends on input values.

    Raises:
        MmstdError: ``E_TENSOR_LIMIT`` naming the node that would build the tensor, or
            ``E_ONNX_INVALID`` when inference itself fails.
    """
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as e:  # onnx raises several types (InferenceError, RuntimeError, ValidationError)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise refuse("E_ONNX_INVALID", where, f"shape inference failed: {first}") from None
    producers = {out: node for node, _ in _nodes(inferred.graph) for out in node.output}
    for v in list(inferred.graph.value_info) + list(inferred.graph.output):
        t = v.type.tensor_type
        if not (v.type.HasField("tensor_type") and t.HasField("shape")):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in t.shape.dim]
        node = producers.get(v.name)
        label = f"node {(node.name or node.op_type)!r} output {v.name!r}" if node is not None else f"tensor {v.name!r}"
        _bound(dims, limits, where, label)
