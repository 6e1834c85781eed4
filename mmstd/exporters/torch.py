"""The PyTorch exporter: ``torch.onnx.export`` (TorchScript or dynamo) plus safetensors weights.

The model is called with the card's inputs in the card's order (or by keyword when its
``forward`` names them all) and must return the card's outputs: one tensor, a tuple in the
card's order, or a dict keyed by output name. Every named axis of the card becomes a dynamic
axis whose ``dim_param`` is the card's axis name.

Default path: TorchScript. Measured on the zoo and on LSTM/GRU/attention probes
(``bench/export.py``), it exports 10-40x faster than dynamo (0.02-0.3 s against 1-5 s) with the
same parity; its one measured mis-export (``nn.MultiheadAttention`` with a dynamic sequence axis,
pytorch#99701) is found by pre-flight, which then takes dynamo. ``--exporter dynamo`` (or
``export.exporter_path`` in the card) selects dynamo explicitly.

Nothing here imports torch at module import time: ``get_exporter`` checks the dependency first.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import warnings
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from mmstd.card import ModelCard
from mmstd.errors import ExportError, MmstdError
from mmstd.exporters import (
    ExportArtifacts,
    ExportOptions,
    call_factory,
    import_factory,
    require,
    resolve_opset,
    resolve_path,
)
from mmstd.exporters.preflight import Construct, choose_path

PATHS = ("torchscript", "dynamo")
DEFAULT_PATH = "torchscript"


class TorchExporter:
    """Export a ``torch.nn.Module`` to ONNX (torch.onnx) and its ``state_dict`` to safetensors."""

    name = "torch"
    extra = "torch"

    def load(self, ref: str, *, card: ModelCard | None = None, weights: Path | None = None) -> Any:
        """Import ``pkg.module:factory`` and call it (with ``card=`` when it takes one).

        Args:
            ref: ``pkg.module:factory`` returning an ``nn.Module``.
            card: Passed to the factory when it has a ``card`` parameter.
            weights: A ``weights.safetensors`` to load into the model (strict: every name).

        Raises:
            ExportError: ``E_USAGE`` / ``E_NOT_FOUND`` for a bad reference, ``E_SAFETENSORS_INVALID``
                when the weights do not fit the model.
        """
        import torch

        model = call_factory(import_factory(ref, what="--model"), card)
        if not isinstance(model, torch.nn.Module):
            raise ExportError(f"--model {ref!r} returned a {type(model).__name__}, expected a torch.nn.Module.",
                              code="E_USAGE", hint="the factory must build and return the model.")
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
        """Write ``model.onnx`` and ``weights.safetensors`` into ``out_dir``; run ``model`` on ``cases``.

        Raises:
            ExportError: ``E_EXPORT`` (pre-flight or torch.onnx failure), ``E_IO_CONTRACT``,
                ``E_ONNX_INVALID``, ``E_DEPENDENCY`` (dynamo without onnxscript).
        """
        import onnx
        import torch

        from mmstd.exporters.graph import check_graph, conform_graph, graph_versions, save_graph
        from mmstd.exporters.parity import export_sizes, random_feeds
        from mmstd.package import WEIGHTS

        options = options or ExportOptions()
        if not isinstance(model, torch.nn.Module):
            raise ExportError(f"the torch exporter got a {type(model).__name__}, expected a torch.nn.Module.", code="E_USAGE")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        what = f"model {type(model).__name__} for card {card.ref!r}"
        was_training = model.training
        model.eval()
        try:
            # eval() on the wrapper too: torch.onnx restores the exported module's mode afterwards, and a
            # wrapper left in training mode would switch the user's model (dropout) back on recursively.
            wrapper = _card_module()(model, card).eval()
            example = _to_torch(random_feeds(card, export_sizes(card), seed=options.seed), card)
            constructs = scan_model(model, wrapper, example, card)
            requested = resolve_path(options, card, allowed=PATHS, default=None, framework="torch")
            path, notes = choose_path(constructs, requested=requested, order=PATHS,
                                      versions={"torch": torch.__version__}, what=what)
            if path == "dynamo":
                require(("onnxscript",), extra="torch", what="The dynamo exporter path")
            opset = resolve_opset(options, card)
            raw = out_dir / "raw" / "model.onnx"
            raw.parent.mkdir(parents=True, exist_ok=True)
            notes += _export_call(wrapper, example, raw, card, exporter_path=path, opset=opset, what=what)
            proto = onnx.load(str(raw))
            notes += conform_graph(proto, card, where=f"{what} ({path})")
            files = save_graph(proto, out_dir / "model.onnx", max_inline_bytes=options.max_inline_bytes)
            del proto
            check_graph(files["model.onnx"], card, where=f"{what} ({path})")
            opset_used, ir = graph_versions(onnx.load(str(files["model.onnx"]), load_external_data=False))
            files[WEIGHTS] = save_weights(model, out_dir / WEIGHTS)
            outputs = tuple(run_model(wrapper, case.feeds, card) for case in cases)
        finally:
            model.train(was_training)
        source = {
            "framework": "torch", "framework_version": torch.__version__, "exporter": "torch.onnx",
            "exporter_version": torch.__version__, "exporter_path": path, "opset": opset_used, "ir_version": ir,
            "model": options.model_ref or f"{type(model).__module__}.{type(model).__qualname__}",
        }
        return ExportArtifacts(files=files, source=source, source_outputs=outputs, notes=tuple(notes))


# ------------------------------------------------------------------------------- calling the model


@cache
def _card_module() -> type:
    import torch

    class CardModule(torch.nn.Module):
        """Calls the user's model with the card's inputs; returns the card's outputs as a tuple."""

        def __init__(self, model: torch.nn.Module, card: ModelCard) -> None:
            super().__init__()
            self.model = model
            self.input_names = [s.name for s in card.inputs]
            self.output_names = [s.name for s in card.outputs]
            self.by_keyword = _takes_names(model, self.input_names)

        def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            if self.by_keyword:
                out = self.model(**dict(zip(self.input_names, inputs, strict=True)))
            else:
                out = self.model(*inputs)
            return _as_tuple(out, self.output_names)

    return CardModule


def _takes_names(model: Any, names: Sequence[str]) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    named = {n for n, p in params.items() if p.kind in kinds}
    return set(names) <= named


def _as_tuple(out: Any, names: Sequence[str]) -> tuple[Any, ...]:
    import torch

    if isinstance(out, torch.Tensor):
        out = (out,)
    elif isinstance(out, Mapping):
        missing = [n for n in names if n not in out]
        if missing:
            raise ExportError(f"the model returned a dict with keys {sorted(out)}; the card's outputs "
                              f"{list(names)} need {missing}.", code="E_IO_CONTRACT")
        out = tuple(out[n] for n in names)
    elif isinstance(out, list | tuple):
        out = tuple(out)
    else:
        raise ExportError(f"the model returned a {type(out).__name__}; expected a tensor, a tuple or a dict of tensors.",
                          code="E_IO_CONTRACT")
    if len(out) != len(names):
        raise ExportError(f"the model returned {len(out)} outputs; the card declares {len(names)} ({list(names)}).",
                          code="E_IO_CONTRACT", hint="return the card's outputs, in the card's order.")
    return out


def _to_torch(feeds: Mapping[str, np.ndarray], card: ModelCard) -> tuple[Any, ...]:
    import torch

    return tuple(torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in card.inputs)


def run_model(model: Any, feeds: Mapping[str, np.ndarray], card: ModelCard) -> dict[str, np.ndarray]:
    """The source framework's outputs for one batch (eval mode, no grad), keyed by card output name.

    ``model`` is the user's module or the card wrapper around it.
    """
    import torch

    wrapper: Any = model if isinstance(model, _card_module()) else _card_module()(model, card)
    was_training = wrapper.training
    wrapper.eval()
    try:
        with torch.no_grad():
            outs = wrapper(*_to_torch(feeds, card))
    finally:
        wrapper.train(was_training)
    return {name: t.detach().cpu().numpy() for name, t in zip(wrapper.output_names, outs, strict=True)}


# ------------------------------------------------------------------------------------- pre-flight


def scan_model(model: Any, wrapper: Any, example: tuple[Any, ...], card: ModelCard) -> list[Construct]:
    """Find the constructs the pre-flight table knows; runs the example through the model once.

    ``nn.MultiheadAttention``, ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (bidirectional or not), the manual
    bidirectional pattern (an RNN plus ``torch.flip``) and ``scaled_dot_product_attention`` are found
    by module type and by recording the torch functions called; they matter only when the card
    names a non-batch axis.
    """
    import torch
    from torch.overrides import TorchFunctionMode

    from mmstd.exporters.parity import batch_axis

    batch = batch_axis(card)
    seq_axes = sorted({a for s in card.inputs for i, a in s.axes.items() if a != batch})
    if not seq_axes:
        return []
    axes = ", ".join(map(repr, seq_axes))

    class Recorder(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: set[str] = set()

        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            self.seen.add(getattr(func, "__name__", ""))
            return func(*args, **(kwargs or {}))

    rec = Recorder()
    with torch.no_grad(), rec:
        wrapper(*example)
    found: list[Construct] = []
    rnns = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.RNNBase)]
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.MultiheadAttention):
            where = f"module {name!r} (nn.MultiheadAttention) with dynamic axes {axes}"
            found.append(Construct("mha-dynamic-length", where))
            found.append(Construct("sdpa-dynamic-length", where))
    if "scaled_dot_product_attention" in rec.seen and not any(c.key == "sdpa-dynamic-length" for c in found):
        found.append(Construct("sdpa-dynamic-length", f"scaled_dot_product_attention with dynamic axes {axes}"))
    for name, m in rnns:
        found.append(Construct("rnn-dynamic-time", f"module {name!r} ({type(m).__name__}) with dynamic axes {axes}"))
        if m.bidirectional:
            found.append(Construct("birnn-dynamic-time", f"module {name!r} (bidirectional {type(m).__name__}) "
                                                         f"with dynamic axes {axes}"))
    if rnns and "flip" in rec.seen and not any(m.bidirectional for _, m in rnns):
        found.append(Construct("birnn-dynamic-time", f"RNN modules {[n for n, _ in rnns]} with torch.flip "
                                                     f"(a manual bidirectional RNN) and dynamic axes {axes}"))
    return found


# ---------------------------------------------------------------------------------------- export


def _export_call(wrapper: Any, example: tuple[Any, ...], dest: Path, card: ModelCard, *, exporter_path: str,
                 opset: int, what: str) -> list[str]:
    """Run torch.onnx.export on one path; returns tracer warnings as notes.

    Raises:
        ExportError: ``E_EXPORT`` with torch's first line of explanation.
    """
    import torch

    input_names = [s.name for s in card.inputs]
    output_names = [s.name for s in card.outputs]
    notes: list[str] = []
    sink = io.StringIO()
    # Not under no_grad: there nn.MultiheadAttention takes its fused fast path, an op TorchScript export
    # cannot translate (pytorch#143107). Tracing computes no gradients either way.
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(sink), \
            contextlib.redirect_stderr(sink):
        warnings.simplefilter("always")
        try:
            if exporter_path == "torchscript":
                dynamic_axes = {s.name: s.axes for s in (*card.inputs, *card.outputs) if s.axes}
                torch.onnx.export(wrapper, example, str(dest), dynamo=False, input_names=input_names,
                                  output_names=output_names, dynamic_axes=dynamic_axes, opset_version=opset,
                                  do_constant_folding=True)
            else:
                dims: dict[str, Any] = {}
                shapes = []
                for spec in card.inputs:
                    shapes.append({i: dims.setdefault(a, torch.export.Dim(a)) for i, a in spec.axes.items()})
                torch.onnx.export(wrapper, example, str(dest), dynamo=True, input_names=input_names,
                                  output_names=output_names, dynamic_shapes=(tuple(shapes),), opset_version=opset,
                                  verbose=False, report=False)
        except MmstdError:
            raise
        except Exception as e:
            raise ExportError(f"{what}: torch.onnx.export ({exporter_path}) failed: {_explain(e)}", code="E_EXPORT",
                              hint="the other exporter path (--exporter) may succeed; see the torch.onnx docs for the construct.") from None
    torch_dir = str(Path(torch.__file__).resolve().parent)
    for w in caught:
        # Warnings raised inside torch's own modules (nn.LSTM's input checks) say nothing about the user's model.
        if w.category.__name__ == "TracerWarning" and not str(Path(w.filename).resolve()).startswith(torch_dir):
            note = f"torch.jit.trace: {str(w.message).splitlines()[0]} ({Path(w.filename).name}:{w.lineno})"
            if note not in notes:
                notes.append(note)
    return notes


def _explain(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    # torch's export errors open with a banner; the cause is usually the last informative line.
    informative = [ln for ln in lines if not ln.startswith(("-", "Refer", "Next steps", "\x1b"))]
    text = informative[-1] if informative else type(e).__name__
    return f"{type(e).__name__}: {text[:400]}"


# ----------------------------------------------------------------------------------------- weights


def save_weights(model: Any, path: Path) -> Path:
    """Write ``model.state_dict()`` to safetensors under its torch names, with provenance metadata."""
    import torch

    from mmstd import __version__
    from mmstd.exporters.tensors import from_torch, write_safetensors

    # Every state_dict entry is written on its own (tied weights twice), under its state_dict name.
    tensors = {k: from_torch(v) for k, v in model.state_dict().items()}
    return write_safetensors(path, tensors, {"framework": "torch", "framework_version": torch.__version__,
                                             "format": "state_dict", "mmstd_version": __version__})


def load_weights(model: Any, path: Path) -> Any:
    """Load a ``weights.safetensors`` written by ``save_weights`` into ``model``, strictly.

    Raises:
        ExportError: ``E_SAFETENSORS_INVALID`` listing missing, unexpected and mis-shaped tensors.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ExportError(f"{Path(path).name}: cannot read safetensors: {e}", code="E_SAFETENSORS_INVALID") from None
    expected = model.state_dict()
    problems = [f"missing tensor {k!r} {tuple(v.shape)}" for k, v in expected.items() if k not in tensors]
    problems += [f"unexpected tensor {k!r}" for k in tensors if k not in expected]
    problems += [f"tensor {k!r}: shape {tuple(tensors[k].shape)} in the file, {tuple(v.shape)} in the model"
                 for k, v in expected.items() if k in tensors and tuple(tensors[k].shape) != tuple(v.shape)]
    if problems:
        raise ExportError(f"{Path(path).name}: its tensors do not fit {type(model).__name__}.",
                          code="E_SAFETENSORS_INVALID", problems=problems,
                          hint="build the model from the same card and code that wrote the weights.")
    model.load_state_dict(tensors, strict=True)
    return model
