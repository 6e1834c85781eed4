"""Make an exported ONNX graph honour the card exactly, then save and check it.

Exporters name things their own way: tf2onnx calls outputs ``Identity:0`` and unknown dims
``unk__123``, dynamo may name dims ``s0``. ``conform_graph`` renames graph inputs and outputs to
the card's names and writes the card's axis names into every named dim, so that
``package.compare_io`` (strict: names, dtypes, ranks, fixed dims, dim_param names) holds. What
cannot be fixed by renaming is refused: a dropped input, a wrong dtype or rank, a fixed dim that
differs from the card, or a named axis the exporter specialized to a constant.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmstd.card import ModelCard, TensorSpec
from mmstd.errors import ExportError
from mmstd.package import ONNX_DTYPES


def conform_graph(model: Any, card: ModelCard, *, where: str) -> list[str]:
    """Rename IO and named axes of ``model`` (an ``onnx.ModelProto``, edited in place) to the card's.

    Returns:
        Notes on what was renamed, for the user.

    Raises:
        ExportError: ``E_IO_CONTRACT`` for a missing or extra input/output, a dtype or rank that
            differs, or a fixed dim that differs; ``E_EXPORT`` for a named axis the exporter
            froze to a constant.
    """
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    real_inputs = [v for v in graph.input if v.name not in inits]
    notes: list[str] = []
    notes += _match_names(model, real_inputs, card.inputs, "input", where)
    notes += _match_names(model, list(graph.output), card.outputs, "output", where)
    by_name = {v.name: v for v in (*real_inputs, *graph.output)}
    problems: list[str] = []
    frozen: list[str] = []
    for side, specs in (("input", card.inputs), ("output", card.outputs)):
        for spec in specs:
            problems += _conform_value(by_name[spec.name], spec, f"{side} {spec.name!r}", frozen)
    if frozen:
        raise ExportError(f"{where}: the exporter froze named axes to constants: {'; '.join(frozen)}.",
                          code="E_EXPORT", problems=frozen,
                          hint="the model uses that size as a Python number; try the other exporter path (--exporter) "
                               "or keep the size symbolic in the model code.")
    if problems:
        raise ExportError(f"{where}: graph inputs/outputs differ from the card {card.ref!r}.", code="E_IO_CONTRACT",
                          problems=problems, hint="fix the model or the card so that they agree.")
    _drop_unused_opsets(model)
    return notes


def _match_names(model: Any, values: list[Any], specs: tuple[TensorSpec, ...], side: str, where: str) -> list[str]:
    names = [v.name for v in values]
    wanted = [s.name for s in specs]
    if names == wanted or set(names) == set(wanted):
        return []
    if set(names) < set(wanted):
        missing = [n for n in wanted if n not in names]
        raise ExportError(
            f"{where}: the graph has no {side} {', '.join(map(repr, missing))}; the model never reads it, so the "
            f"exporter dropped it.", code="E_IO_CONTRACT",
            hint=f"use every {side} the card declares, or remove it from the card.")
    if len(names) != len(wanted):
        raise ExportError(f"{where}: the graph has {len(names)} {side}s {names}, the card declares {len(wanted)} {wanted}.",
                          code="E_IO_CONTRACT", hint=f"the model's {side}s must be the card's, in the card's order.")
    taken = _all_value_names(model.graph) - set(names)
    clash = [n for n in wanted if n in taken]
    if clash:
        raise ExportError(f"{where}: cannot rename graph {side}s to {clash}: the graph already uses those names inside.",
                          code="E_EXPORT")
    notes = []
    for old, new in zip(names, wanted, strict=True):
        if old != new:
            _rename(model.graph, old, new)
            notes.append(f"renamed graph {side} {old!r} to {new!r} (the card's name)")
    return notes


def _conform_value(value: Any, spec: TensorSpec, what: str, frozen: list[str]) -> list[str]:
    ttype = value.type.tensor_type
    dtype = ONNX_DTYPES.get(ttype.elem_type, f"onnx-type-{ttype.elem_type}")
    problems = []
    if dtype != spec.dtype:
        problems.append(f"{what}: dtype is {dtype} in the graph, {spec.dtype} in the card")
    if not ttype.HasField("shape") or len(ttype.shape.dim) != spec.rank:
        got = len(ttype.shape.dim) if ttype.HasField("shape") else "unknown"
        return problems + [f"{what}: rank is {got} in the graph, {spec.rank} in the card ({list(spec.shape)})"]
    for i, (dim, want) in enumerate(zip(ttype.shape.dim, spec.shape, strict=True)):
        fixed = dim.dim_value if dim.HasField("dim_value") else None
        if isinstance(want, str):
            if fixed is not None:
                frozen.append(f"{what} dim {i} is {fixed} in the graph, the card names it {want!r}")
                continue
            dim.dim_param = want
        elif fixed is None:
            dim.dim_value = want
        elif fixed != want:
            problems.append(f"{what}: dim {i} is {fixed} in the graph, {want} in the card")
    return problems


def _graphs(graph: Any) -> Iterator[Any]:
    """``graph`` and every subgraph (Loop/If/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for g in attr.graphs:
                yield from _graphs(g)


def _all_value_names(graph: Any) -> set[str]:
    names: set[str] = set()
    for g in _graphs(graph):
        names.update(v.name for v in (*g.input, *g.output, *g.value_info))
        names.update(t.name for t in g.initializer)
        for node in g.node:
            names.update(node.input)
            names.update(node.output)
    return names


def _rename(graph: Any, old: str, new: str) -> None:
    # Subgraphs may read outer-scope values by name (tf2onnx's Loop bodies do), so rename everywhere.
    for g in _graphs(graph):
        for v in (*g.input, *g.output, *g.value_info):
            if v.name == old:
                v.name = new
        for node in g.node:
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = new
            for i, name in enumerate(node.output):
                if name == old:
                    node.output[i] = new


def _drop_unused_opsets(model: Any) -> None:
    # tf2onnx imports ai.onnx.ml whether or not it is used; an unused domain only widens what a gate must allow.
    used = {n.domain or "" for g in _graphs(model.graph) for n in g.node}
    used |= {f.domain for f in model.functions}
    keep = [o for o in model.opset_import if (o.domain or "") in used or (o.domain or "") in ("", "ai.onnx")]
    if len(keep) != len(model.opset_import):
        del model.opset_import[:]
        model.opset_import.extend(keep)


def tensor_bytes(model: Any) -> int:
    """Bytes held by the graph's initializers and constant tensors (an estimate of its size on disk)."""
    from onnx.external_data_helper import _get_all_tensors

    total = 0
    for t in _get_all_tensors(model):
        total += len(t.raw_data) + 4 * (len(t.float_data) + len(t.int32_data)) + 8 * (len(t.int64_data) + len(t.double_data))
    return total


def save_graph(model: Any, path: Path, *, max_inline_bytes: int, data_name: str = "model.onnx.data") -> dict[str, Path]:
    """Save ``model`` at ``path``; tensors go to ``data_name`` beside it when they exceed ``max_inline_bytes``.

    Returns:
        Package-relative name -> file for every file written.
    """
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    files = {"model.onnx": path}
    if tensor_bytes(model) > max_inline_bytes:
        data = path.parent / data_name
        if data.exists():
            os.unlink(data)  # save_model appends to an existing data file
        # Tiny constants stay inline (they are cheap and shape inference reads them).
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=min(1024, max_inline_bytes))
        if data.exists():
            files[data_name] = data
    else:
        onnx.save_model(model, str(path))
    return files


def check_graph(path: Path, card: ModelCard, *, where: str) -> Any:
    """Run ``onnx.checker`` (full check, by path) and the strict card/graph IO comparison.

    Returns:
        The loaded model (without external data).

    Raises:
        ExportError: ``E_ONNX_INVALID`` or ``E_IO_CONTRACT``.
    """
    import onnx

    from mmstd.package import compare_io

    model = onnx.load(str(path), load_external_data=False)
    problems = compare_io(model, card, where=where)
    if problems:
        raise ExportError(f"{where}: graph inputs/outputs differ from the card {card.ref!r}.", code="E_IO_CONTRACT",
                          problems=problems)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"{where}: the exported graph fails onnx.checker: {first}", code="E_ONNX_INVALID") from None
    return model


def graph_versions(model: Any) -> tuple[int, int]:
    """The default-domain opset and the IR version of ``model``."""
    opset = next((o.version for o in model.opset_import if (o.domain or "") in ("", "ai.onnx")), 0)
    return int(opset), int(model.ir_version)
