"""The Keras 3 exporter (TensorFlow backend): tf2onnx with a card-built ``input_signature``.

Two sources, one path:

- an in-memory model (built by ``pkg.module:factory`` or by training code) is converted in this
  process: the user's own code is already running here;
- a ``.keras`` / ``.h5`` file is code (SECURITY.md rule 1). It is copied into a private staging
  directory through ``open_in_root``; a ``.keras`` archive's ``config.json`` is walked statically
  (Lambda layers, foreign modules and custom objects are ``E_UNSAFE_CONTENT``) before anything
  loads it; then a converter child (``mmstd.sandbox.run_child``: own session, rlimits, scrubbed
  environment, empty cwd, wall-clock kill) loads it with ``safe_mode=True``, exports ONNX,
  weights and the source outputs for the parity cases into a fresh directory, and exits. The
  parent trusts none of it: it re-checks the file list, the safetensors headers, the graph
  (``onnx.checker`` and the card/graph IO contract) and derives the card's ``source`` itself.

Only functional and Sequential models of built-in layers load from files (a subclassed model's
config names its own module, which is refused); export those from ``pkg.module:factory``.

Graph inputs and outputs get exactly the card's names (tf2onnx's ``Identity:0`` outputs are
renamed) and every named axis its card name (tf2onnx's ``unk__123`` dims are replaced).
Weights are stored under Keras weight paths (``head_out/kernel``).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from mmstd.card import ModelCard
from mmstd.errors import CODES, ExportError, MmstdError
from mmstd.exporters import (
    ExportArtifacts,
    ExportOptions,
    call_factory,
    import_factory,
    resolve_opset,
    resolve_path,
)
from mmstd.exporters.preflight import Construct, choose_path

PATHS = ("tf2onnx",)
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
#: Largest model file the exporter will stage and hand to the converter child.
MAX_MODEL_BYTES = 4 << 30
_CHILD_FILES = {"model.onnx", "model.onnx.data", "weights.safetensors", "outputs.safetensors", "notes.json"}
_DEFAULT_ACTIVATIONS = {"activation": "tanh", "recurrent_activation": "sigmoid"}


@dataclass(frozen=True, slots=True)
class KerasFile:
    """A Keras model file to be converted in a child process (what ``load`` returns for a path)."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name


class KerasExporter:
    """Export a Keras 3 model (TensorFlow backend) to ONNX with tf2onnx and its weights to safetensors."""

    name = "keras"
    extra = "keras"

    def load(self, ref: str, *, card: ModelCard | None = None, weights: Path | None = None) -> Any:
        """Open ``ref``: a ``.keras``/``.h5`` file (converted later, in a child) or ``pkg.module:factory``.

        Args:
            ref: A model file, or ``pkg.module:factory`` returning a ``keras.Model``.
            card: Passed to the factory when it has a ``card`` parameter.
            weights: A ``weights.safetensors`` (Keras weight paths) to load into a factory-built model.

        Raises:
            ExportError: ``E_USAGE`` / ``E_NOT_FOUND`` for a bad reference, ``E_UNSAFE_CONTENT``
                for a ``.keras`` archive holding code, ``E_SAFETENSORS_INVALID`` for weights that
                do not fit.
        """
        if ref.lower().endswith(KERAS_SUFFIXES):
            if weights is not None:
                raise ExportError("--weights applies to 'pkg.module:factory' models; a Keras file carries its weights.",
                                  code="E_USAGE")
            path = Path(ref)
            if not path.is_file():
                raise ExportError(f"--model {ref!r}: no such file.", code="E_FS_NOT_REGULAR")
            if path.suffix.lower() == ".keras":
                scan_keras_archive(path)  # fail fast, before the converter child is even started
            return KerasFile(path)
        _keras()
        model = call_factory(import_factory(ref, what="--model"), card)
        if not hasattr(model, "weights") or not callable(model):
            raise ExportError(f"--model {ref!r} returned a {type(model).__name__}, expected a keras.Model.", code="E_USAGE")
        if weights is not None:
            load_weights(model, weights)
        return model

    def export(
        self,
        model: Any,
        card: ModelCard,
        out_dir: Path,
        *,
        options: ExportOptions | None = None,
        cases: Sequence[Any] = (),
    ) -> ExportArtifacts:
        """Write ``model.onnx`` and ``weights.safetensors`` into ``out_dir``; run the model on ``cases``.

        A ``KerasFile`` is converted in a sandboxed child process; an in-memory model here.

        Raises:
            ExportError: ``E_EXPORT``, ``E_IO_CONTRACT``, ``E_ONNX_INVALID``, ``E_UNSAFE_CONTENT``,
                ``E_TIMEOUT`` / ``E_RUNTIME_CRASH`` / ``E_MEMORY_LIMIT`` (the child).
        """
        options = options or ExportOptions()
        resolve_path(options, card, allowed=PATHS, default="tf2onnx", framework="keras")
        if isinstance(model, KerasFile):
            return _export_in_child(model, card, Path(out_dir), options, cases)
        return export_in_process(model, card, Path(out_dir), options, cases)


# ------------------------------------------------------------------------------------- in process


def _keras() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow reads it once, at import
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ExportError(f"the Keras exporter needs the TensorFlow backend; Keras is using {keras.backend.backend()!r}.",
                          code="E_DEPENDENCY", hint="set KERAS_BACKEND=tensorflow before starting Python.")
    return keras


def versions() -> dict[str, str]:
    """Installed keras, tensorflow and tf2onnx versions, read from package metadata (nothing imported)."""
    out = {}
    for dist in ("keras", "tensorflow", "tf2onnx"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "0"
    return out


def export_in_process(model: Any, card: ModelCard, out_dir: Path, options: ExportOptions,
                      cases: Sequence[Any]) -> ExportArtifacts:
    """Convert an in-memory Keras model; see ``KerasExporter.export``."""
    import onnx

    from mmstd.exporters.graph import check_graph, conform_graph, graph_versions, save_graph
    from mmstd.package import WEIGHTS

    _keras()
    out_dir.mkdir(parents=True, exist_ok=True)
    what = f"Keras model {getattr(model, 'name', type(model).__name__)!r} for card {card.ref!r}"
    v = versions()
    requested = resolve_path(options, card, allowed=PATHS, default="tf2onnx", framework="keras")
    path, notes = choose_path(scan_model(model), requested=requested, order=PATHS, versions=v, what=what)
    opset = resolve_opset(options, card)
    proto = _convert(model, card, opset=opset, what=what)
    notes += conform_graph(proto, card, where=f"{what} (tf2onnx)")
    files = save_graph(proto, out_dir / "model.onnx", max_inline_bytes=options.max_inline_bytes)
    del proto
    check_graph(files["model.onnx"], card, where=f"{what} (tf2onnx)")
    opset_used, ir = graph_versions(onnx.load(str(files["model.onnx"]), load_external_data=False))
    files[WEIGHTS] = save_weights(model, out_dir / WEIGHTS)
    outputs = tuple(run_model(model, case.feeds, card) for case in cases)
    source = {
        "framework": "keras", "framework_version": v["keras"], "exporter": "tf2onnx", "exporter_version": v["tf2onnx"],
        "exporter_path": path, "opset": opset_used, "ir_version": ir,
        "model": options.model_ref or f"{type(model).__module__}.{type(model).__qualname__}",
    }
    return ExportArtifacts(files=files, source=source, source_outputs=outputs, notes=tuple(notes))


def _tf_name(name: str, i: int) -> str:
    # TensorSpec names allow fewer characters than card names; conform_graph renames by position.
    import re

    clean = re.sub(r"[^A-Za-z0-9_.\-/]", "_", name)
    return clean if clean[:1].isalnum() else f"input{i}"


def _convert(model: Any, card: ModelCard, *, opset: int, what: str) -> Any:
    import tensorflow as tf
    import tf2onnx

    signature = [tf.TensorSpec([None if isinstance(d, str) else d for d in s.shape], tf.as_dtype(s.dtype),
                               name=_tf_name(s.name, i)) for i, s in enumerate(card.inputs)]

    def forward(*inputs: Any) -> list[Any]:
        # A list, not a dict: tf.nest sorts dict keys, a list keeps the card's order for renaming.
        return list(_call(model, inputs, card, training=False))

    fn = tf.function(forward, input_signature=signature)
    with _quiet_tf2onnx():
        try:
            proto, _ = tf2onnx.convert.from_function(fn, input_signature=signature, opset=opset)
        except MmstdError:
            raise
        except Exception as e:
            first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
            raise ExportError(f"{what}: tf2onnx failed: {type(e).__name__}: {first[:400]}", code="E_EXPORT",
                              hint="tf2onnx converts TensorFlow ops; a layer without an ONNX equivalent needs replacing.") from None
    return proto


@contextmanager
def _quiet_tf2onnx() -> Any:
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _input_names(model: Any) -> list[str] | None:
    try:
        return [t.name for t in model.inputs]
    except (AttributeError, TypeError, ValueError):
        return None


def _call(model: Any, inputs: Sequence[Any], card: ModelCard, *, training: bool) -> tuple[Any, ...]:
    names = [s.name for s in card.inputs]
    if len(inputs) == 1:
        out = model(inputs[0], training=training)
    elif sorted(_input_names(model) or []) == sorted(names):
        out = model(dict(zip(names, inputs, strict=True)), training=training)
    else:
        out = model(list(inputs), training=training)
    wanted = [s.name for s in card.outputs]
    if isinstance(out, Mapping):
        missing = [n for n in wanted if n not in out]
        if missing:
            raise ExportError(f"the model returned a dict with keys {sorted(out)}; the card's outputs {wanted} need "
                              f"{missing}.", code="E_IO_CONTRACT")
        return tuple(out[n] for n in wanted)
    outs = tuple(out) if isinstance(out, list | tuple) else (out,)
    if len(outs) != len(wanted):
        raise ExportError(f"the model returned {len(outs)} outputs; the card declares {len(wanted)} ({wanted}).",
                          code="E_IO_CONTRACT", hint="return the card's outputs, in the card's order.")
    return outs


def run_model(model: Any, feeds: Mapping[str, np.ndarray], card: ModelCard) -> dict[str, np.ndarray]:
    """The source framework's outputs for one batch (``training=False``), keyed by card output name."""
    outs = _call(model, [feeds[s.name] for s in card.inputs], card, training=False)
    return {s.name: _numpy(o) for s, o in zip(card.outputs, outs, strict=True)}


def _numpy(value: Any) -> np.ndarray:
    # TensorFlow's own .numpy(): np.asarray on a tensor goes through a deprecated __array__ path.
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def scan_model(model: Any) -> list[Construct]:
    """Constructs of the pre-flight table: Bidirectional RNNs with non-default activations."""
    found = []
    for layer in _layers(model):
        if type(layer).__name__ != "Bidirectional":
            continue
        inner = getattr(layer, "forward_layer", None) or getattr(layer, "layer", None)
        cell = getattr(inner, "cell", inner)
        custom = {k: getattr(getattr(cell, k, None), "__name__", "?") for k in _DEFAULT_ACTIVATIONS}
        custom = {k: v for k, v in custom.items() if v not in (_DEFAULT_ACTIVATIONS[k], "?")}
        if custom:
            found.append(Construct("birnn-custom-activation",
                                   f"layer {layer.name!r} (Bidirectional {type(inner).__name__}, {custom})"))
    return found


def _layers(model: Any) -> list[Any]:
    out, stack = [], list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop(0)
        out.append(layer)
        stack.extend(getattr(layer, "layers", []) or [])
    return out


# ---------------------------------------------------------------------------------------- weights


def save_weights(model: Any, path: Path) -> Path:
    """Write every weight under its Keras path (``head_out/kernel``), with provenance metadata.

    Raises:
        ExportError: ``E_EXPORT`` when two weights share a path (nested models with clashing names).
    """
    from mmstd import __version__
    from mmstd.exporters.tensors import write_numpy

    tensors: dict[str, np.ndarray] = {}
    for w in model.weights:
        key = w.path
        if key in tensors:
            raise ExportError(f"two weights of the model share the path {key!r}; weights.safetensors needs unique names.",
                              code="E_EXPORT", hint="give the clashing layers distinct names.")
        tensors[key] = np.ascontiguousarray(_numpy(getattr(w, "value", w)))
    v = versions()
    return write_numpy(path, tensors, {"framework": "keras", "framework_version": v["keras"], "backend": "tensorflow",
                                       "tensorflow_version": v["tensorflow"], "format": "keras-weight-paths",
                                       "mmstd_version": __version__})


def load_weights(model: Any, path: Path) -> Any:
    """Assign a ``weights.safetensors`` written by ``save_weights`` to ``model``, strictly.

    Raises:
        ExportError: ``E_SAFETENSORS_INVALID`` listing missing, unexpected and mis-shaped tensors.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ExportError(f"{Path(path).name}: cannot read safetensors: {e}", code="E_SAFETENSORS_INVALID") from None
    expected = {w.path: w for w in model.weights}
    problems = [f"missing tensor {k!r} {tuple(w.shape)}" for k, w in expected.items() if k not in tensors]
    problems += [f"unexpected tensor {k!r}" for k in tensors if k not in expected]
    problems += [f"tensor {k!r}: shape {tensors[k].shape} in the file, {tuple(w.shape)} in the model"
                 for k, w in expected.items() if k in tensors and tuple(tensors[k].shape) != tuple(w.shape)]
    if problems:
        raise ExportError(f"{Path(path).name}: its tensors do not fit Keras model {model.name!r}.",
                          code="E_SAFETENSORS_INVALID", problems=problems,
                          hint="build the model from the same card and code that wrote the weights.")
    for k, w in expected.items():
        w.assign(tensors[k])
    return model


# ---------------------------------------------------------------------------- static archive scan


def scan_keras_archive(path: Path, *, rel: str | None = None) -> None:
    """Refuse a ``.keras`` archive whose ``config.json`` holds code, without loading it.

    Raises:
        MmstdError: ``E_UNSAFE_CONTENT`` (Lambda layers, foreign module references, custom
            objects), ``E_FORMAT_CORRUPT`` (not a zip, no config.json, not strict JSON),
            ``E_ARCHIVE_UNSAFE`` (member count), ``E_FS_LIMIT`` (config.json too large).
    """
    from mmstd.scan import ScanLimits, check_keras_zip_config, refuse

    rel = rel or path.name
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise refuse("E_FORMAT_CORRUPT", rel, f"is not a readable .keras (zip) archive ({e})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > ScanLimits().archive_max_members:
            raise refuse("E_ARCHIVE_UNSAFE", rel, f"has {len(infos)} members (limit {ScanLimits().archive_max_members})")
        if "config.json" not in {i.filename for i in infos}:
            raise refuse("E_FORMAT_CORRUPT", rel, "has no config.json; not a Keras 3 archive")
        check_keras_zip_config(zf, rel)


def _scan_h5(path: Path, rel: str) -> None:
    # Child side only: reading HDF5 is parsing untrusted bytes, which the parent never does.
    import h5py

    from mmstd.scan import check_keras_config, refuse
    from mmstd.schema import parse_document

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except OSError as e:
        raise refuse("E_FORMAT_CORRUPT", rel, f"is not a readable HDF5 file ({e})") from None
    if raw is None:
        raise refuse("E_FORMAT_CORRUPT", rel, "has no model_config; not a Keras model file (weights only?)")
    data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    doc = parse_document(data, source=f"{rel}:model_config", fmt="json", code="E_FORMAT_CORRUPT")
    check_keras_config(doc, rel)


# ---------------------------------------------------------------------------------- converter child


def _export_in_child(model: KerasFile, card: ModelCard, out_dir: Path, options: ExportOptions,
                     cases: Sequence[Any]) -> ExportArtifacts:
    import onnx
    from safetensors.numpy import load_file, save_file

    from mmstd.exporters.graph import check_graph, graph_versions
    from mmstd.files import open_in_root
    from mmstd.package import WEIGHTS, check_safetensors
    from mmstd.sandbox import SandboxLimits, run_child

    out_dir.mkdir(parents=True, exist_ok=True)
    rel = model.name
    with tempfile.TemporaryDirectory(prefix="mmstd-keras-") as tmp:
        work = Path(tmp)
        (work / "input").mkdir()
        staged = work / "input" / ("model" + Path(rel).suffix.lower())
        # Stage through open_in_root (no links, regular file, size cap); the child reads only this copy.
        with open_in_root(model.path.parent.absolute(), model.path.name, max_bytes=MAX_MODEL_BYTES) as src, \
                open(staged, "wb") as dst:
            shutil.copyfileobj(src, dst)
        if staged.suffix == ".keras":
            scan_keras_archive(staged, rel=rel)
        feeds = {f"{i}.{k}": np.ascontiguousarray(v) for i, c in enumerate(cases) for k, v in c.feeds.items()}
        if feeds:
            save_file(feeds, str(work / "cases.safetensors"))
        request = {"card": card.to_dict(), "model": staged.name, "rel": rel, "cases": len(cases),
                   "opset": resolve_opset(options, card), "max_inline_bytes": options.max_inline_bytes,
                   "exporter_path": options.exporter_path}
        (work / "request.json").write_text(json.dumps(request))
        (work / "out").mkdir()
        limits = SandboxLimits(timeout_s=options.timeout_s, memory_bytes=None, file_bytes=MAX_MODEL_BYTES + (1 << 30),
                               open_files=1024)
        outcome = run_child("mmstd.exporters.keras:convert_child", [str(work)], limits=limits, workdir=work)
        _raise_for_child(outcome, work, rel)
        produced = _check_child_files(work / "out", rel)
        for name in ("weights.safetensors", "outputs.safetensors"):
            if name in produced:
                check_safetensors(work / "out", name)
        check_graph(work / "out" / "model.onnx", card, where=f"{rel} (converted by tf2onnx in a child process)")
        opset_used, ir = graph_versions(onnx.load(str(work / "out" / "model.onnx"), load_external_data=False))
        raw_outputs = load_file(str(work / "out" / "outputs.safetensors")) if cases else {}
        outputs = []
        for i, _case in enumerate(cases):
            missing = [s.name for s in card.outputs if f"{i}.{s.name}" not in raw_outputs]
            if missing:
                raise ExportError(f"{rel}: the converter child returned no source output {missing} for parity case {i}.",
                                  code="E_EXPORT")
            outputs.append({s.name: raw_outputs[f"{i}.{s.name}"] for s in card.outputs})
        notes = _child_notes(work / "out" / "notes.json")
        files = {}
        for name in sorted(produced - {"outputs.safetensors", "notes.json"}):
            dest = out_dir / name
            shutil.copyfile(work / "out" / name, dest)
            files[name] = dest
    if WEIGHTS not in files:
        raise ExportError(f"{rel}: the converter child wrote no {WEIGHTS}.", code="E_EXPORT")
    v = versions()
    source = {"framework": "keras", "framework_version": v["keras"], "exporter": "tf2onnx",
              "exporter_version": v["tf2onnx"], "exporter_path": "tf2onnx", "opset": opset_used, "ir_version": ir,
              "model": options.model_ref or rel}
    return ExportArtifacts(files=files, source=source, source_outputs=tuple(outputs), notes=tuple(notes))


def _raise_for_child(outcome: Any, work: Path, rel: str) -> None:
    code = outcome.failure_code()
    if code is not None and code != "E_INTERNAL":
        what = {"E_TIMEOUT": "ran past its time limit", "E_MEMORY_LIMIT": "ran out of memory"}.get(
            code, f"died from signal {outcome.signal}")
        raise ExportError(f"{rel}: the converter child {what}.", code=code,
                          hint="the model file may be malicious or too large; it was never loaded in this process.")
    if outcome.ok:
        return
    err_path = work / "out" / "error.json"
    try:
        err = json.loads(err_path.read_text("utf-8")[:100_000])
        code = err.get("code") if err.get("code") in CODES else "E_EXPORT"
        message = str(err.get("message", ""))[:2000]
        hint = str(err["hint"])[:500] if err.get("hint") else None
        problems = [str(p)[:500] for p in err.get("problems", [])][:50]
    except (OSError, ValueError, AttributeError):
        code, message, hint, problems = "E_EXPORT", f"exited with status {outcome.returncode}", None, []
        tail = outcome.stderr_tail.strip().splitlines()
        if tail:
            message += f": {tail[-1][:300]}"
    raise ExportError(f"{rel}: converter child: {message}", code=code, hint=hint, problems=problems)


def _check_child_files(out: Path, rel: str) -> set[str]:
    from mmstd.files import inventory

    found = {f.rel for f in inventory(out, max_file_bytes=MAX_MODEL_BYTES + (1 << 30), max_files=16, max_depth=1)}
    unexpected = sorted(found - _CHILD_FILES)
    if unexpected or "model.onnx" not in found:
        raise ExportError(f"{rel}: the converter child left {sorted(found)}; expected model.onnx, weights.safetensors "
                          f"and outputs.safetensors only.", code="E_EXPORT")
    return found


def _child_notes(path: Path) -> list[str]:
    try:
        notes = json.loads(path.read_text("utf-8")[:100_000])
    except (OSError, ValueError):
        return []
    return [str(n)[:500] for n in notes][:20] if isinstance(notes, list) else []


def convert_child(args: list[str]) -> int:
    """The converter child's entry point (``mmstd.sandbox`` runs it after applying its limits).

    Reads ``request.json`` and ``cases.safetensors`` from the work directory, loads the staged
    model with ``safe_mode=True``, and writes ``out/model.onnx``, ``out/weights.safetensors``,
    ``out/outputs.safetensors`` and ``out/notes.json``; on failure ``out/error.json``.
    """
    from safetensors.numpy import load_file, save_file

    from mmstd.exporters.parity import ParityCase

    work = Path(args[0])
    out = work / "out"
    try:
        request = json.loads((work / "request.json").read_text("utf-8"))
        card = ModelCard.from_dict(request["card"], source="request.json")
        rel = request["rel"]
        staged = work / "input" / request["model"]
        if staged.suffix == ".keras":
            scan_keras_archive(staged, rel=rel)
        else:
            _scan_h5(staged, rel)
        keras = _keras()
        try:
            model = keras.models.load_model(str(staged), safe_mode=True, compile=False)
        except MmstdError:
            raise
        except Exception as e:
            first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
            code = "E_UNSAFE_CONTENT" if ("safe_mode" in first or "Lambda" in first) else "E_FORMAT_CORRUPT"
            raise ExportError(f"Keras cannot load it with safe_mode=True: {type(e).__name__}: {first[:400]}",
                              code=code) from None
        flat = load_file(str(work / "cases.safetensors")) if request["cases"] else {}
        cases = []
        for i in range(request["cases"]):
            cases.append(ParityCase(f"case {i}", {s.name: flat[f"{i}.{s.name}"] for s in card.inputs}))
        options = ExportOptions(opset=request["opset"], max_inline_bytes=request["max_inline_bytes"],
                                exporter_path=request["exporter_path"], model_ref=rel)
        art = export_in_process(model, card, out, options, cases)
        outputs = {f"{i}.{k}": np.ascontiguousarray(v) for i, o in enumerate(art.source_outputs) for k, v in o.items()}
        if outputs:
            save_file(outputs, str(out / "outputs.safetensors"))
        (out / "notes.json").write_text(json.dumps(list(art.notes)))
        return 0
    except MmstdError as e:
        _write_error(out, e.code, e.message, e.hint, list(e.problems))
        return 1
    except Exception as e:  # a converter crash is reported, never left as a bare traceback in the parent
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
        _write_error(out, "E_EXPORT", f"{type(e).__name__}: {first[:400]}", None, [])
        return 1


def _write_error(out: Path, code: str, message: str, hint: str | None, problems: list[str]) -> None:
    for name in os.listdir(out):  # half-written outputs must not be mistaken for results
        target = out / name
        if target.is_file():
            target.unlink()
    (out / "error.json").write_text(json.dumps({"code": code, "message": message, "hint": hint, "problems": problems}))
