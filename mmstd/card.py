"""The model card: a validated description of a fusion model and its machine contract.

``load_card`` reads a YAML draft or a sealed ``card.json`` strictly and validates it against
``schemas/model-card.schema.json`` plus the rules a schema cannot state (unique names, label count
vs output width, a binary task with two labels). ``ModelCard`` exposes the contract as typed
``TensorSpec``s; everything else (the Mitchell et al. sections) travels unchanged.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mmstd.errors import CardError, MmstdError
from mmstd.schema import load_document, parse_document, validate

SCHEMA_VERSION = "1.0"
SEALED_SECTIONS = ("source", "parity", "artifacts")
Dim = int | str

# Everything the card holds besides the typed contract, in the order it is written out.
_SECTION_ORDER = (
    "schema_version", "model_details", "intended_use", "factors", "metrics", "evaluation_data",
    "training_data", "quantitative_analyses", "ethical_considerations", "caveats", "task", "inputs",
    "outputs", "fusion", "export", "source", "parity", "artifacts",
)


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One graph input or output as the card declares it.

    ``shape`` mixes fixed sizes (ints) and named axes (strings), e.g. ``("batch", 28, 28, 1)``.
    Inputs carry a ``modality`` and ``preprocessing``; outputs carry a ``kind``.
    """

    name: str
    dtype: str
    shape: tuple[Dim, ...]
    modality: str | None = None
    kind: str | None = None
    field: str | None = None
    value_range: tuple[float, float] | None = None
    preprocessing: tuple[Mapping[str, Any], ...] = ()
    description: str | None = None

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def axes(self) -> dict[int, str]:
        """Named (dynamic) axes by position, in the form torch.onnx's ``dynamic_axes`` wants."""
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def concrete_shape(self, sizes: Mapping[str, int]) -> tuple[int, ...]:
        """The shape with every named axis replaced by ``sizes[name]``."""
        return tuple(sizes[d] if isinstance(d, str) else d for d in self.shape)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorSpec:
        vr = d.get("value_range")
        return cls(
            name=d["name"],
            dtype=d["dtype"],
            shape=tuple(d["shape"]),
            modality=d.get("modality"),
            kind=d.get("kind"),
            field=d.get("field"),
            value_range=(vr[0], vr[1]) if vr is not None else None,
            preprocessing=tuple(copy.deepcopy(dict(op)) for op in d.get("preprocessing", ())),
            description=d.get("description"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.modality is not None:
            out["modality"] = self.modality
        if self.kind is not None:
            out["kind"] = self.kind
        out["dtype"] = self.dtype
        out["shape"] = list(self.shape)
        if self.field is not None:
            out["field"] = self.field
        if self.value_range is not None:
            out["value_range"] = list(self.value_range)
        if self.modality is not None:
            out["preprocessing"] = [dict(op) for op in self.preprocessing]
        if self.description is not None:
            out["description"] = self.description
        return out


@dataclass(frozen=True, slots=True)
class ModelCard:
    """A validated card. Build it with ``load_card`` or ``ModelCard.from_dict``."""

    name: str
    version: str
    task_kind: str
    labels: tuple[str, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    fusion_strategy: str
    sections: Mapping[str, Any] = field(default_factory=dict)

    @property
    def sealed(self) -> bool:
        """True when export has filled in ``source``, ``parity`` and ``artifacts``."""
        return all(s in self.sections for s in SEALED_SECTIONS)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise CardError(f"card {self.ref!r} has no input {name!r}; inputs: {', '.join(s.name for s in self.inputs)}.")

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, source: str = "card") -> ModelCard:
        """Validate ``doc`` and build the card.

        Raises:
            CardError: ``E_CARD_SCHEMA`` listing every problem with its JSON path.
        """
        problems = validate(doc, "model-card", source=source)
        if not problems:
            problems = _semantic_problems(doc, source)
        if problems:
            raise CardError(
                f"{source}: is not a valid model card ({len(problems)} problem{'s' * (len(problems) > 1)}).",
                code="E_CARD_SCHEMA",
                problems=problems,
                hint="run 'mmstd card init' for a commented example; schemas/model-card.schema.json lists every field.",
            )
        details = doc["model_details"]
        return cls(
            name=details["name"],
            version=details["version"],
            task_kind=doc["task"]["kind"],
            labels=tuple(doc["task"]["labels"]),
            inputs=tuple(TensorSpec.from_dict(d) for d in doc["inputs"]),
            outputs=tuple(TensorSpec.from_dict(d) for d in doc["outputs"]),
            fusion_strategy=doc["fusion"]["strategy"],
            sections={k: copy.deepcopy(v) for k, v in doc.items() if k not in ("inputs", "outputs")},
        )

    def to_dict(self) -> dict[str, Any]:
        """The card as a JSON-ready dict, sections in a stable order."""
        doc = copy.deepcopy(dict(self.sections))
        doc["inputs"] = [s.to_dict() for s in self.inputs]
        doc["outputs"] = [s.to_dict() for s in self.outputs]
        ordered = {k: doc[k] for k in _SECTION_ORDER if k in doc}
        ordered.update({k: v for k, v in doc.items() if k not in ordered})
        return ordered

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def with_sections(self, **updates: Any) -> ModelCard:
        """A copy with top-level sections replaced (``source=...``, ``parity=...``), re-validated."""
        doc = self.to_dict()
        doc.update(updates)
        return ModelCard.from_dict(doc, source=f"card {self.ref}")

    def replace_specs(self, *, inputs: Sequence[TensorSpec] | None = None, outputs: Sequence[TensorSpec] | None = None) -> ModelCard:
        return replace(self, inputs=tuple(inputs or self.inputs), outputs=tuple(outputs or self.outputs))


def load_card(path: Path) -> ModelCard:
    """Read a card from YAML or JSON, strictly, and validate it.

    Raises:
        CardError: ``E_CARD_JSON`` for syntax (duplicate keys, NaN, BOM, nesting, huge numbers),
            ``E_CARD_SCHEMA`` for content; the message names the file and every JSON path.
    """
    path = Path(path)
    try:
        doc = load_document(path, code="E_CARD_JSON")
    except MmstdError as e:
        raise CardError(e.message, code=e.code, hint=e.hint) from None
    return ModelCard.from_dict(_require_object(doc, path.name), source=path.name)


def parse_card(data: bytes, *, source: str) -> ModelCard:
    """Like ``load_card`` for bytes already read (e.g. through ``open_in_root``)."""
    try:
        doc = parse_document(data, source=source, code="E_CARD_JSON")
    except MmstdError as e:
        raise CardError(e.message, code=e.code, hint=e.hint) from None
    return ModelCard.from_dict(_require_object(doc, source), source=source)


def _require_object(doc: Any, source: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise CardError(f"{source}: $: expected an object (mapping) at the top level, got {type(doc).__name__}.",
                        code="E_CARD_SCHEMA")
    return doc


def _semantic_problems(doc: Mapping[str, Any], source: str) -> list[str]:
    """Rules JSON Schema cannot express, each named by its JSON path."""
    problems = []
    seen: dict[str, str] = {}
    for side in ("inputs", "outputs"):
        for i, spec in enumerate(doc[side]):
            if spec["name"] in seen:
                problems.append(f"{source}: $.{side}[{i}].name: {spec['name']!r} is already used by {seen[spec['name']]}; "
                                "expected unique tensor names.")
            seen[spec["name"]] = f"$.{side}[{i}]"
            axes = [d for d in spec["shape"] if isinstance(d, str)]
            for a in set(axes):
                if axes.count(a) > 1:
                    problems.append(f"{source}: $.{side}[{i}].shape: axis name {a!r} appears twice; expected distinct axes.")
    labels = doc["task"]["labels"]
    if doc["task"]["kind"] == "binary" and len(labels) != 2:
        problems.append(f"{source}: $.task.labels: a binary task needs exactly 2 labels, got {len(labels)}.")
    for i, out in enumerate(doc["outputs"]):
        last = out["shape"][-1]
        if out["kind"] in ("probabilities", "logits") and isinstance(last, int):
            width_ok = last == len(labels) or (doc["task"]["kind"] == "binary" and last == 1)
            if not width_ok:
                problems.append(f"{source}: $.outputs[{i}].shape[{len(out['shape']) - 1}]: expected {len(labels)} "
                                f"(one per label), got {last}.")
    from mmstd.preprocess import check_preprocessing  # the standard ops and their parameters live there

    problems += check_preprocessing(doc, source)
    return problems
