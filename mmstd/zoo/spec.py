"""What a card asks of a zoo model, framework-neutral: encoders per input, head width, activation.

Both ``torch_models`` and ``keras_models`` read the card only through here, so the two
frameworks cannot disagree about which encoder an input gets or how wide the head is.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mmstd.card import ModelCard, TensorSpec
from mmstd.errors import CardError

#: Width of every encoder's feature vector.
FEATURES = 16
#: Width of the shared fusion layers (projections, attention tokens, hidden head layers).
WIDTH = 32
#: Vocabulary size for integer inputs without a ``value_range``.
DEFAULT_VOCAB = 256
_FLOATS = ("float32", "float16", "float64", "bfloat16")
_INTS = ("int8", "int16", "int32", "int64", "uint8")


@dataclass(frozen=True, slots=True)
class ZooSpec:
    """The head width, the output activation and each integer input's vocabulary size."""

    n_out: int
    activation: str
    vocab: Mapping[str, int]


def encoder_kind(spec: TensorSpec) -> str:
    """Which encoder an input gets: ``image-nhwc``, ``image-nchw``, ``tokens``, ``sequence`` or ``dense``.

    Raises:
        CardError: ``E_CARD_SCHEMA`` for an input no zoo encoder can read.
    """
    shape, rank = spec.shape, spec.rank
    if spec.dtype in _FLOATS and rank == 4:
        if isinstance(shape[-1], int) and shape[-1] <= 4:
            return "image-nhwc"
        if isinstance(shape[1], int) and shape[1] <= 4:
            return "image-nchw"
    if spec.dtype in _INTS and rank == 2:
        return "tokens"
    if spec.dtype in _FLOATS and rank == 3 and isinstance(shape[-1], int):
        return "sequence"
    if spec.dtype in _FLOATS and rank == 2 and isinstance(shape[-1], int):
        return "dense"
    raise CardError(
        f"zoo: input {spec.name!r} ({spec.modality}, {spec.dtype}, shape {list(spec.shape)}) fits no zoo encoder.",
        code="E_CARD_SCHEMA",
        hint="zoo encoders take [batch, H, W, C<=4] or [batch, C<=4, H, W] float images, [batch, tokens] integer ids, "
             "[batch, frames, features] float sequences and [batch, features] float vectors.")


def zoo_spec(card: ModelCard) -> ZooSpec:
    """Read the card's single output and integer inputs.

    Raises:
        CardError: ``E_CARD_SCHEMA`` for a card with several outputs, an embedding output or an
            input no encoder reads.
    """
    if len(card.outputs) != 1 or card.outputs[0].kind not in ("probabilities", "logits"):
        raise CardError(f"zoo: card {card.ref!r} must have exactly one 'probabilities' or 'logits' output; "
                        f"it has {[(o.name, o.kind) for o in card.outputs]}.", code="E_CARD_SCHEMA")
    out = card.outputs[0]
    last = out.shape[-1]
    n_out = last if isinstance(last, int) else len(card.labels)
    if out.kind == "logits":
        activation = "none"
    elif card.task_kind == "multilabel" or n_out == 1:
        activation = "sigmoid"
    else:
        activation = "softmax"
    vocab = {}
    for spec in card.inputs:
        if encoder_kind(spec) == "tokens":
            vocab[spec.name] = int(spec.value_range[1]) + 1 if spec.value_range is not None else DEFAULT_VOCAB
    return ZooSpec(n_out=n_out, activation=activation, vocab=vocab)


def image_grid(spec: TensorSpec) -> tuple[int, int] | None:
    """The image encoder's output grid (H, W after two stride-2 convolutions), or None if H or W is named."""
    nhwc = encoder_kind(spec) == "image-nhwc"
    h, w = (spec.shape[1], spec.shape[2]) if nhwc else (spec.shape[2], spec.shape[3])
    if isinstance(h, str) or isinstance(w, str):
        return None
    return (int(h) + 3) // 4, (int(w) + 3) // 4
