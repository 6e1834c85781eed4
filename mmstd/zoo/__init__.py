"""The reference fusion zoo: four strategies, each in PyTorch and Keras, built from a card.

``early`` (feature-level), ``late`` (decision-level), ``intermediate`` (model-level, a gated
multimodal unit) and ``attention`` (a transformer block over one token per modality). The card
decides the encoders (by each input's rank and dtype) and the head width (the labels), so one zoo
entry serves every contract; the cards for the built-in contracts are data in ``zoo/cards/``
(``<strategy>.<contract>.yaml``). The PyTorch and Keras versions of an entry share that card and
therefore have identical graph inputs and outputs.

For training code::

    card = load_zoo_card("early", "digits-av")
    model = build_zoo_model("early", "torch", card, seed=0)   # an nn.Module (or a keras.Model)
    ...train it...
    export_model(model, card, Path("out/early"), framework="torch")   # mmstd.exporters

Importing this module imports neither torch nor TensorFlow.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmstd.card import ModelCard, load_card
from mmstd.errors import MmstdError

if TYPE_CHECKING:  # pragma: no cover
    from mmstd.exporters import ExportOptions
    from mmstd.package import Package

STRATEGIES = ("early", "late", "intermediate", "attention")
CONTRACTS = ("digits-av", "shapes-itm")
DEFAULT_CONTRACT = "digits-av"
FRAMEWORKS = ("torch", "keras")
CARDS_DIR = Path(__file__).resolve().parent / "cards"

_SUMMARIES = {
    "early": "feature-level: encoder features concatenated, dense head",
    "late": "decision-level: one classifier per modality, probabilities averaged",
    "intermediate": "model-level: per-modality encoders into a gated multimodal unit and shared layers",
    "attention": "cross-modal self-attention over one token per modality",
}


@dataclass(frozen=True, slots=True)
class ZooEntry:
    """One zoo model as ``mmstd zoo list`` shows it."""

    name: str
    summary: str
    frameworks: tuple[str, ...]
    contracts: tuple[str, ...]


def list_zoo() -> list[ZooEntry]:
    """Every zoo model with the contracts that have a card for it."""
    entries = []
    for name in STRATEGIES:
        contracts = tuple(c for c in CONTRACTS if (CARDS_DIR / f"{name}.{c}.yaml").is_file())
        entries.append(ZooEntry(name, _SUMMARIES[name], FRAMEWORKS, contracts))
    return entries


def _pick(kind: str, value: str, choices: tuple[str, ...]) -> str:
    if value in choices:
        return value
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.5)
    guess = f" Did you mean {close[0]!r}?" if close else ""
    raise MmstdError(f"Unknown zoo {kind} {value!r}.{guess} Available: {', '.join(choices)}.", code="E_NOT_FOUND",
                     hint="'mmstd zoo list' shows every model and contract.")


def card_path(name: str, contract: str = DEFAULT_CONTRACT) -> Path:
    """The YAML card of zoo model ``name`` for ``contract``.

    Raises:
        MmstdError: ``E_NOT_FOUND`` for an unknown name or contract, with a suggestion.
    """
    path = CARDS_DIR / f"{_pick('model', name, STRATEGIES)}.{_pick('contract', contract, CONTRACTS)}.yaml"
    if not path.is_file():
        raise MmstdError(f"zoo model {name!r} has no card for contract {contract!r} ({path.name}).", code="E_NOT_FOUND")
    return path


def load_zoo_card(name: str, contract: str = DEFAULT_CONTRACT) -> ModelCard:
    """Load and validate the card of zoo model ``name`` for ``contract``."""
    return load_card(card_path(name, contract))


def build_zoo_model(name: str, framework: str, card: ModelCard, *, seed: int = 0) -> Any:
    """Build zoo model ``name`` in ``framework`` for ``card``, weights seeded by ``seed``.

    Args:
        name: ``early``, ``late``, ``intermediate`` or ``attention``.
        framework: ``torch`` (returns an ``nn.Module`` in eval mode) or ``keras`` (a functional
            ``keras.Model``).
        card: Any card whose inputs the zoo encoders read (see ``mmstd.zoo.spec``); its single
            output's width sets the head.
        seed: Same seed, same weights (Keras seeds its global generators).

    Raises:
        MmstdError: ``E_NOT_FOUND`` (name, framework), ``E_DEPENDENCY`` (framework missing),
            ``E_CARD_SCHEMA`` (an input no encoder reads).
    """
    from mmstd.exporters import REQUIREMENTS, require

    name = _pick("model", name, STRATEGIES)
    framework = _pick("framework", framework, FRAMEWORKS)
    require(REQUIREMENTS[framework], extra=framework, what=f"The {framework} zoo")
    builder: Callable[..., Any]
    if framework == "torch":
        from mmstd.zoo.torch_models import build as builder
    else:
        from mmstd.zoo.keras_models import build as builder
    return builder(name, card, seed=seed)


def export_zoo_model(
    name: str,
    out: Path,
    *,
    framework: str,
    contract: str = DEFAULT_CONTRACT,
    seed: int = 0,
    force: bool = False,
    options: ExportOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> Package:
    """Build zoo model ``name`` (seeded, untrained) and export it as a sealed package at ``out``.

    Returns:
        The ``Package``. See ``mmstd.exporters.export_model`` for the errors.
    """
    from dataclasses import replace

    from mmstd.exporters import ExportOptions, export_model

    card = load_zoo_card(name, contract)
    model = build_zoo_model(name, framework, card, seed=seed)
    module = "torch_models" if framework == "torch" else "keras_models"
    opts = options or ExportOptions()
    opts = replace(opts, seed=seed, model_ref=opts.model_ref or f"mmstd.zoo.{module}:{name} (seed {seed})")
    return export_model(model, card, out, framework=framework, options=opts, force=force, progress=progress)
