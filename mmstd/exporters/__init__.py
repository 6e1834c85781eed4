"""Exporters: a trained Keras or PyTorch fusion model becomes a sealed package, parity enforced.

``export_model`` is the one stage function. It draws parity cases from the card, asks the
framework's exporter to write ``model.onnx`` and ``weights.safetensors`` and to run the source
framework on those cases, lets ``parity`` judge onnxruntime against the source, writes
``reference.safetensors`` and seals everything with ``build_package``. Nothing is written to
``out`` unless parity passes.

Exporters are looked up in ``EXPORTERS`` (lazy ``"module:attr"`` entries, entry-point group
``mmstd.exporters``). Each offers the same verbs: ``load(ref)`` and ``export(model, card, out_dir)``.
Importing this package imports neither torch, TensorFlow, tf2onnx nor onnxruntime.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mmstd.card import ModelCard
from mmstd.errors import ExportError, PackageError
from mmstd.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from mmstd.package import Package

#: The opset every exporter targets unless the card's ``export.opset`` or ``--opset`` says otherwise.
DEFAULT_OPSET = 18
#: Graphs whose tensors exceed this many bytes are saved with external data (the protobuf limit).
MAX_INLINE_BYTES = 2_000_000_000
#: The file external data goes to, inside the package.
EXTERNAL_DATA = "model.onnx.data"

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """How to export; every field has a default, the card's ``export`` section fills the rest.

    Attributes:
        exporter_path: ``"torchscript"`` or ``"dynamo"`` for torch, ``"tf2onnx"`` for Keras;
            ``None`` takes the card's ``export.exporter_path`` or the exporter's default.
        opset: ONNX opset; ``None`` takes the card's ``export.opset`` or ``DEFAULT_OPSET``.
        seed: Seed for the parity inputs and the export example inputs.
        model_ref: What to record as ``source.model`` (a file name or ``module:factory``).
        max_inline_bytes: Above this the graph's tensors go to ``model.onnx.data``.
        timeout_s: Wall-clock limit for a converter child process (Keras files).
        assets_root: The directory holding the ``assets/`` files the card's preprocessing names
            (``mmstd export`` uses the card file's directory); they are copied into the package.
        suite: A suite (name or path) whose samples parity also runs, preprocessed by the card.
        suite_samples: How many of the suite's ``test`` samples.
    """

    exporter_path: str | None = None
    opset: int | None = None
    seed: int = 0
    model_ref: str | None = None
    max_inline_bytes: int = MAX_INLINE_BYTES
    timeout_s: float = 600.0
    assets_root: Path | None = None
    suite: str | Path | None = None
    suite_samples: int = 64


@dataclass(frozen=True, slots=True)
class ExportArtifacts:
    """What an exporter leaves in its working directory.

    Attributes:
        files: Package-relative name -> file: ``model.onnx``, ``weights.safetensors`` and any
            external data.
        source: The card's ``source`` section (framework, exporter, path, opset, IR version).
        source_outputs: The source framework's outputs, one mapping per parity case, in order.
        notes: Pre-flight decisions and exporter warnings worth showing the user.
    """

    files: Mapping[str, Path]
    source: Mapping[str, Any]
    source_outputs: tuple[Mapping[str, Any], ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


class Exporter(Protocol):
    """The verbs every exporter offers (see ``TorchExporter``, ``KerasExporter``)."""

    name: str
    extra: str

    def load(self, ref: str, *, card: ModelCard | None = None, weights: Path | None = None) -> Any:
        """Build or open the model named by ``ref`` (``pkg.module:factory`` or a file)."""
        ...

    def export(self, model: Any, card: ModelCard, out_dir: Path, *, options: ExportOptions | None = None,
               cases: Sequence[Any] = ()) -> ExportArtifacts:
        """Write the ONNX graph and weights into ``out_dir`` and run the source on ``cases``."""
        ...


EXPORTERS: Registry[type[Exporter]] = Registry("exporter", entry_points="mmstd.exporters")
EXPORTERS.register("torch", "mmstd.exporters.torch:TorchExporter")
EXPORTERS.register("keras", "mmstd.exporters.keras:KerasExporter")

#: The Python modules each built-in exporter needs, checked before it is used.
REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "keras": ("tensorflow", "keras", "tf2onnx"),
}


def require(modules: Sequence[str], *, extra: str, what: str) -> None:
    """Check that ``modules`` are installed, without importing them, or fail with ``E_DEPENDENCY``.

    Raises:
        ExportError: ``E_DEPENDENCY`` naming the first missing module and the pip line for the extra.
    """
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # ValueError: a module blanked out in sys.modules
            found = False
        if not found:
            raise ExportError(
                f"{what} needs the Python package {module!r}, which is not installed.",
                code="E_DEPENDENCY",
                hint=f"pip install 'mmstd[{extra}]'",
            )


def get_exporter(name: str) -> Exporter:
    """The exporter registered as ``name``, with its framework importable.

    Raises:
        RegistryError: ``E_NOT_FOUND`` for an unknown name (with a suggestion).
        ExportError: ``E_DEPENDENCY`` when the framework is not installed.
    """
    if name in REQUIREMENTS:
        require(REQUIREMENTS[name], extra=name, what=f"The {name!r} exporter")
    cls = EXPORTERS.get(name)
    return cls()


def export_model(
    model: Any,
    card: ModelCard,
    out: Path,
    *,
    framework: str,
    options: ExportOptions | None = None,
    extra_feeds: Sequence[Mapping[str, Any] | Any] = (),
    force: bool = False,
    progress: Progress | None = None,
) -> Package:
    """Export ``model`` to ONNX, enforce parity, and seal a package at ``out``.

    Args:
        model: An in-memory ``torch.nn.Module`` or Keras model, or what the exporter's ``load``
            returned (a Keras file is converted in a child process).
        card: The card draft: names, modalities, dtypes and shapes with named axes.
        out: The package directory to create.
        framework: Registry key: ``"torch"`` or ``"keras"``.
        options: Exporter path, opset, seed; see ``ExportOptions``.
        extra_feeds: Further parity batches, each name -> array or a ``parity.ParityCase``
            (``parity.suite_cases`` makes them from a suite; ``options.suite`` does it for you).
        force: Replace an existing package at ``out``.
        progress: Receives the pre-flight notes and the parity checklist, one line per call.

    Returns:
        The sealed ``Package``, verified by ``open_package``.

    Raises:
        MmstdError: ``E_OUTPUT_EXISTS`` before any work when ``out`` exists without ``force``;
            ``E_PARITY`` listing every failing output (nothing is written); ``E_EXPORT``,
            ``E_IO_CONTRACT``, ``E_ONNX_INVALID``, ``E_DEPENDENCY``, ``E_UNSAFE_CONTENT`` from
            the exporter.
    """
    from mmstd.exporters import parity
    from mmstd.package import MODEL, REFERENCE, WEIGHTS, build_package

    options = options or ExportOptions()
    say = progress or (lambda _line: None)
    out = Path(out)
    _check_out(out, force)
    exporter = get_exporter(framework)
    tolerance = parity.Tolerance.from_card(card)
    extra: list[Any] = list(extra_feeds)
    if options.suite is not None:
        extra += parity.suite_cases(card, options.suite, limit=options.suite_samples, assets_root=options.assets_root)
    cases = parity.parity_cases(card, seed=options.seed, extra=extra)
    with tempfile.TemporaryDirectory(prefix="mmstd-export-") as tmp:
        work = Path(tmp)
        assets = stage_assets(card, options.assets_root, work / "staged")
        art = exporter.export(model, card, work / "graph", options=options, cases=cases)
        for note in art.notes:
            say(f"note: {note}")
        report = parity.compare(card, art.files[MODEL], cases, art.source_outputs, tolerance=tolerance,
                                source=f"{art.source['framework']} {art.source['framework_version']}")
        for line in report.checklist():
            say(line)
        report.raise_for_failures(where=f"{card.ref} exported with {art.source.get('exporter_path')}")
        ref_path = work / REFERENCE
        parity.write_reference(ref_path, cases[0], art.source_outputs[0], framework=framework)
        sealed = card.with_sections(source=dict(art.source), parity=report.to_card())
        files = {**art.files, **assets, REFERENCE: ref_path}
        if WEIGHTS not in files:
            raise ExportError(f"exporter {framework!r} wrote no {WEIGHTS}.", code="E_INTERNAL")
        return build_package(out, sealed, files, force=force)


def export_ref(
    ref: str,
    card: ModelCard,
    out: Path,
    *,
    framework: str,
    weights: Path | None = None,
    options: ExportOptions | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> Package:
    """``mmstd export``: load the model named by ``ref`` with the framework's exporter, then ``export_model``.

    Args:
        ref: ``pkg.module:factory`` (called with ``card=`` when it takes it) or, for Keras, a
            ``.keras`` / ``.h5`` file (converted in a child process, never loaded here).
        weights: A ``weights.safetensors`` loaded into the factory's model first.

    The output directory is checked first, so a clash fails before any model is loaded.
    ``source.model`` records the reference (a file's name only, never a host path).
    """
    from dataclasses import replace

    _check_out(Path(out), force)
    exporter = get_exporter(framework)
    model = exporter.load(ref, card=card, weights=weights)
    shown = Path(ref).name if ref.lower().endswith((".keras", ".h5", ".hdf5")) else ref
    options = options or ExportOptions()
    options = replace(options, model_ref=options.model_ref or shown)
    return export_model(model, card, out, framework=framework, options=options, force=force, progress=progress)


def card_assets(card: ModelCard) -> list[str]:
    """The ``assets/...`` files the card's preprocessing names (vocabularies, tokenizers), sorted."""
    from mmstd.preprocess import OPS

    found = set()
    for spec in card.inputs:
        for op in spec.preprocessing:
            opspec = OPS.get(str(op.get("op")))
            for param in getattr(opspec, "params", ()):
                if param.type == "asset" and isinstance(op.get(param.name), str):
                    found.add(op[param.name])
    return sorted(found)


def stage_assets(card: ModelCard, root: Path | None, dest: Path) -> dict[str, Path]:
    """Copy every asset the card names from ``root`` into ``dest`` (contained reads, no links).

    Returns:
        Package-relative name (``assets/vocab.txt``) -> staged copy.

    Raises:
        MmstdError: ``E_USAGE`` when the card names assets but no ``root`` was given;
            ``E_FS_NOT_REGULAR`` / ``E_FS_PATH_ESCAPE`` for a missing file or a link.
    """
    from mmstd.files import open_in_root

    names = card_assets(card)
    if names and root is None:
        raise ExportError(f"card {card.ref!r} names {', '.join(names)}, but no directory holding assets/ was given.",
                          code="E_USAGE", hint="keep assets/ beside the card file (mmstd export reads it there).")
    staged = {}
    for rel in names:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open_in_root(Path(root).absolute(), rel) as src:  # type: ignore[arg-type]
            target.write_bytes(src.read())
        staged[rel] = target
    return staged


def _check_out(out: Path, force: bool) -> None:
    # Fail before minutes of export work; build_package checks again when it publishes.
    if os.path.lexists(out) and not force:
        raise PackageError(f"{out}: already exists; refusing to overwrite it.", code="E_OUTPUT_EXISTS",
                           hint="choose another --out, or pass --force to replace the package there.")


def resolve_path(options: ExportOptions, card: ModelCard, *, allowed: Sequence[str], default: str | None,
                 framework: str) -> str | None:
    """The exporter path asked for by ``options`` or the card, checked against ``allowed``.

    Returns ``default`` (possibly ``None`` meaning "let pre-flight choose") when neither asks.

    Raises:
        ExportError: ``E_USAGE`` for a path this framework does not have.
    """
    asked = options.exporter_path or card.sections.get("export", {}).get("exporter_path")
    if asked is None:
        return default
    if asked not in allowed:
        raise ExportError(f"exporter path {asked!r} is not available for framework {framework!r}; "
                          f"expected one of {', '.join(allowed)}.", code="E_USAGE",
                          hint="drop --exporter (or export.exporter_path in the card) to use the default.")
    return asked


def resolve_opset(options: ExportOptions, card: ModelCard) -> int:
    """The opset from ``options``, else the card's ``export.opset``, else ``DEFAULT_OPSET``."""
    return int(options.opset or card.sections.get("export", {}).get("opset") or DEFAULT_OPSET)


def import_factory(ref: str, *, what: str) -> Callable[..., Any]:
    """Resolve ``pkg.module:factory`` to a callable.

    Raises:
        ExportError: ``E_USAGE`` for a malformed reference, ``E_NOT_FOUND`` when the module or
            attribute does not exist.
    """
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ExportError(f"{what}: {ref!r} is not 'pkg.module:factory'.", code="E_USAGE",
                          hint="name a module and a callable in it, e.g. 'mmstd.zoo.torch_models:early'.")
    try:
        obj: Any = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            raise ExportError(f"{what}: module {module!r} of {ref!r} cannot be imported ({e.msg}).",
                              code="E_NOT_FOUND", hint="check the spelling and that it is on PYTHONPATH.") from None
        raise
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ExportError(f"{what}: {module!r} has no attribute {attr!r}.", code="E_NOT_FOUND")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ExportError(f"{what}: {ref!r} is a {type(obj).__name__}, not a callable.", code="E_USAGE")
    return obj


def call_factory(factory: Callable[..., Any], card: ModelCard | None) -> Any:
    """Call ``factory(card=card)`` when it takes a ``card`` parameter, else ``factory()``."""
    import inspect

    params: Mapping[str, Any]
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    if "card" in params and card is not None:
        return factory(card=card)
    return factory()


__all__ = [
    "DEFAULT_OPSET", "EXPORTERS", "ExportArtifacts", "ExportOptions", "Exporter", "export_model", "export_ref",
    "get_exporter", "require",
]
