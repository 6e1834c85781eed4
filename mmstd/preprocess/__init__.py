"""The standard preprocessing a card may name: canonical suite values in, the model's tensor out.

A card's ``inputs[].preprocessing`` is a list of ``{op: NAME, ...params}``. Each op is defined here
once, with its parameters, the modalities it applies to and its formula (in the implementing
function's docstring: ``mmstd.preprocess.image``, ``.text``, ``.audio``, ``.common``). The pipeline
starts from the suite's canonical form of the input's modality:

- image: ``uint8`` array ``H x W x C`` (C = 1 or 3);
- text: a Unicode string (NFC);
- audio: a ``float32`` mono waveform at the suite field's sample rate.

Two entry points:

- ``check_preprocessing(card, source)`` returns every problem as ``"<source>: <json path>: ..."``
  (unknown op, bad parameter, an op that does not fit the previous op's output, a pipeline whose
  final dtype or statically known shape differs from the input's declared ``dtype``/``shape``).
  ``mmstd.card`` calls it, so a card naming an unknown op is an ``E_CARD_SCHEMA`` error.
- ``preprocess_input(spec, values, ...)`` turns a batch of canonical values into the input tensor,
  with exactly the card's dtype and shape (named axes filled from the batch).

A **missing** modality (a suite variant) is fed as an all-zero tensor of the input's shape and
dtype, i.e. zeros *after* preprocessing: padding ids (0) for token ids, a zero attention mask,
zero pixels/features. ``preprocess_input(..., missing=True)`` produces it.

This module imports nothing heavy: numpy and the op implementations load on first use.
"""
from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmstd.errors import MmstdError, SuiteError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from mmstd.card import ModelCard, TensorSpec

DTYPES = ("float32", "float16", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
MAX_SIZE = 16384           # largest resize / length / frame count a card may ask for
MAX_TOKENS = 65536


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of an op: its JSON type, whether it is required, its default and bounds."""

    name: str
    type: str                        # int | number | bool | string | numbers | dtype | asset | int_or_null | number_or_null
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    kinds: tuple[str, ...] = ()      # tokenize only: the tokenizer kinds this parameter applies to


@dataclass(frozen=True, slots=True)
class OpSpec:
    """A standard operation: name, the modalities it applies to, parameters, implementation."""

    name: str
    modalities: tuple[str, ...]
    params: tuple[Param, ...]
    impl: str                        # "module:function"
    summary: str

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


_INTERP = ("nearest", "bilinear", "bicubic", "area")
_MEL = (
    Param("n_fft", "int", True, minimum=16, maximum=MAX_SIZE),
    Param("hop_length", "int", True, minimum=1, maximum=MAX_SIZE),
    Param("win_length", "int_or_null", minimum=1, maximum=MAX_SIZE),
    Param("n_mels", "int", False, 128, minimum=1, maximum=1024),
    Param("frames", "int_or_null", minimum=1, maximum=MAX_SIZE),
    Param("fmin", "number", False, 0.0, minimum=0),
    Param("fmax", "number_or_null", minimum=0),
    Param("top_db", "number_or_null", False, 80.0, minimum=0),
    Param("mel_scale", "string", False, "slaney", choices=("slaney", "htk")),
    Param("norm", "string", False, "slaney", choices=("slaney", "none")),
)

#: Every standard op, by name.
OPS: dict[str, OpSpec] = {op.name: op for op in (
    # ------------------------------------------------------------------ image
    OpSpec("grayscale", ("image",), (), "mmstd.preprocess.image:grayscale",
           "1 channel: L = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601)"),
    OpSpec("rgb", ("image",), (), "mmstd.preprocess.image:rgb", "3 channels: a gray channel is repeated"),
    OpSpec("resize", ("image",), (
        Param("height", "int", True, minimum=1, maximum=MAX_SIZE),
        Param("width", "int", True, minimum=1, maximum=MAX_SIZE),
        Param("interpolation", "string", False, "bilinear", choices=_INTERP),
    ), "mmstd.preprocess.image:resize", "to height x width, half-pixel centres, float32"),
    OpSpec("center_crop", ("image",), (
        Param("height", "int", True, minimum=1, maximum=MAX_SIZE),
        Param("width", "int", True, minimum=1, maximum=MAX_SIZE),
    ), "mmstd.preprocess.image:center_crop", "the central height x width window"),
    OpSpec("normalize", ("image",), (
        Param("mean", "numbers", True),
        Param("std", "numbers", True, minimum=0),
    ), "mmstd.preprocess.image:normalize", "(x - mean[c]) / std[c] per channel, float32"),
    OpSpec("layout", ("image",), (
        Param("order", "string", True, choices=("HWC", "CHW")),
    ), "mmstd.preprocess.image:layout", "HWC (canonical) or CHW"),
    # ------------------------------------------------------------------- text
    OpSpec("tokenize", ("text",), (
        Param("kind", "string", True, choices=("chars", "bytes", "words", "hf-tokenizer")),
        Param("max_length", "int", True, minimum=1, maximum=MAX_TOKENS),
        Param("lowercase", "bool", False, False),
        Param("vocab_size", "int_or_null", minimum=3, maximum=1 << 24, kinds=("chars", "bytes")),
        Param("vocab", "asset", kinds=("words",)),
        Param("tokenizer", "asset", kinds=("hf-tokenizer",)),
        Param("add_special_tokens", "bool", False, True, kinds=("hf-tokenizer",)),
        Param("padding_id", "int", False, 0, minimum=0, maximum=1 << 24),
        Param("unknown_id", "int", False, 1, minimum=0, maximum=1 << 24, kinds=("chars", "bytes", "words")),
        Param("truncation", "bool", False, True),
        Param("padding_side", "string", False, "right", choices=("right", "left")),
        Param("truncation_side", "string", False, "right", choices=("right", "left")),
        Param("output", "string", False, "ids", choices=("ids", "mask")),
    ), "mmstd.preprocess.text:tokenize", "token ids (or their attention mask), padded to max_length, int64"),
    # ------------------------------------------------------------------ audio
    OpSpec("resample", ("audio",), (
        Param("rate", "int", True, minimum=1, maximum=1_000_000),
    ), "mmstd.preprocess.audio:resample", "polyphase resampling to rate (scipy.signal.resample_poly)"),
    OpSpec("pad_trim", ("audio",), (
        Param("samples", "int", True, minimum=1, maximum=1 << 26),
    ), "mmstd.preprocess.audio:pad_trim", "zero-pad or cut at the end to exactly samples"),
    OpSpec("log_mel", ("audio",), _MEL, "mmstd.preprocess.audio:log_mel",
           "log-power mel spectrogram in dB, [frames, n_mels]"),
    OpSpec("mfcc", ("audio",), (
        Param("n_mfcc", "int", True, minimum=1, maximum=1024),
        *_MEL,
        Param("lifter", "number", False, 0.0, minimum=0),
    ), "mmstd.preprocess.audio:mfcc", "DCT-II (ortho) of the dB mel spectrogram, [frames, n_mfcc]"),
    # ----------------------------------------------------------------- shared
    OpSpec("scale", ("image", "audio", "tabular"), (
        Param("factor", "number", True),
        Param("offset", "number", False, 0.0),
    ), "mmstd.preprocess.common:scale", "x * factor + offset, float32"),
    OpSpec("standardize", ("audio", "image", "tabular"), (
        Param("eps", "number", False, 1e-6, minimum=0),
    ), "mmstd.preprocess.common:standardize", "per sample, per last-axis entry: (x - mean) / sqrt(var + eps)"),
    OpSpec("cast", ("image", "text", "audio", "tabular"), (
        Param("dtype", "dtype", True),
    ), "mmstd.preprocess.common:cast", "to dtype; floats to integers round half to even and clip"),
)}


def ops_for(modality: str) -> list[str]:
    """The op names a ``modality`` input may use, sorted."""
    return sorted(n for n, op in OPS.items() if modality in op.modalities)


def resolve_params(op: Mapping[str, Any]) -> dict[str, Any]:
    """An op's parameters with defaults filled in (``op`` must already be checked)."""
    spec = OPS[op["op"]]
    out = {p.name: p.default for p in spec.params}
    out.update({k: v for k, v in op.items() if k != "op"})
    if spec.name == "tokenize" and out.get("vocab_size") is None and out["kind"] in ("chars", "bytes"):
        from mmstd.preprocess.text import default_vocab_size

        out["vocab_size"] = default_vocab_size(out["kind"])
    return out


# ------------------------------------------------------------------------------------- checking


@dataclass(slots=True)
class _State:
    """What the pipeline holds after each op, as far as it is known without data."""

    stage: str                        # image-hwc | image-chw | text | ids | wave | features | array
    dims: tuple[int | None, ...]      # per sample (no batch axis); None = depends on the data
    dtype: str
    rate: int | None = None           # audio: the sample rate after resampling, when known
    notes: list[str] = field(default_factory=list)


_START = {
    "image": _State("image-hwc", (None, None, None), "uint8"),
    "text": _State("text", (), "string"),
    "audio": _State("wave", (None,), "float32"),
    "tabular": _State("array", (), "float32"),
}


def check_preprocessing(card: ModelCard | Mapping[str, Any], source: str) -> list[str]:
    """Every problem with the preprocessing of every input of ``card``.

    Checks op names, parameter names, types and bounds, the order of ops (e.g. ``mfcc`` needs a
    waveform), asset paths, and that each pipeline ends in the input's declared ``dtype`` and, where
    knowable without data, its rank and sizes.

    Args:
        card: A ``ModelCard`` or a card document that already passed the JSON schema.
        source: The file name used in messages (``card.yaml``).

    Returns:
        Problems as ``"<source>: $.inputs[i].preprocessing[j].<param>: expected ..., got ..."``.
    """
    inputs = [s.to_dict() for s in card.inputs] if hasattr(card, "inputs") and not isinstance(card, Mapping) \
        else list(card.get("inputs", ()))
    problems: list[str] = []
    for i, spec in enumerate(inputs):
        problems += _check_input(spec, f"$.inputs[{i}]", source)
    return problems


def _check_input(spec: Mapping[str, Any], where: str, source: str) -> list[str]:
    modality = spec.get("modality")
    if modality not in _START:
        return []
    start = _START[modality]
    state = _State(start.stage, start.dims, start.dtype)
    problems: list[str] = []
    ops = spec.get("preprocessing") or []
    for j, op in enumerate(ops):
        at = f"{where}.preprocessing[{j}]"
        found = _check_op(op, modality, at, source)
        problems += found
        if found:
            return problems   # later shapes would only repeat the same mistake
        problems += _advance(state, op["op"], resolve_params(op), at, source)
        if problems:
            return problems
    return _check_end(state, spec, where, source)


def _check_op(op: Mapping[str, Any], modality: str, at: str, source: str) -> list[str]:
    name = op.get("op")
    allowed = ops_for(modality)
    if name not in allowed:
        close = difflib.get_close_matches(str(name), allowed, n=1, cutoff=0.6)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        return [f"{source}: {at}.op: expected one of {', '.join(map(repr, allowed))} for {'an' if modality[0] in 'aeiou' else 'a'} {modality} input, "
                f"got {_short(name)}{guess}."]
    spec = OPS[name]
    problems = []
    kind = op.get("kind") if name == "tokenize" else None
    for key, value in op.items():
        if key == "op":
            continue
        p = spec.param(key)
        if p is None:
            names = ", ".join(q.name for q in spec.params) or "none"
            problems.append(f"{source}: {at}: unknown parameter {key!r} for op {name!r}; expected: {names}.")
            continue
        problem = _check_value(p, value)
        if problem:
            problems.append(f"{source}: {at}.{key}: expected {problem}, got {_short(value)}.")
        elif p.kinds and kind in OPS["tokenize"].param("kind").choices and kind not in p.kinds:  # type: ignore[union-attr]
            problems.append(f"{source}: {at}.{key}: applies to kind {' or '.join(map(repr, p.kinds))} only, "
                            f"got kind {kind!r}.")
    for p in spec.params:
        if p.required and p.name not in op:
            problems.append(f"{source}: {at}: missing required parameter {p.name!r} for op {name!r}.")
    if problems:
        return problems
    return _cross_check(name, op, at, source)


def _check_value(p: Param, value: Any) -> str | None:
    """Why ``value`` does not fit ``p`` (the 'expected ...' half of a message), or None."""
    if p.type in ("int_or_null", "number_or_null") and value is None:
        return None
    if p.type in ("int", "int_or_null"):
        if isinstance(value, bool) or not isinstance(value, int):
            return "an integer"
    elif p.type in ("number", "number_or_null"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return "a number"
    elif p.type == "bool":
        return None if isinstance(value, bool) else "true or false"
    elif p.type == "dtype":
        return None if value in DTYPES else f"one of {', '.join(map(repr, DTYPES))}"
    elif p.type == "asset":
        if not isinstance(value, str) or not value.startswith("assets/") or _bad_relpath(value):
            return "a path inside the package's assets/ folder, e.g. 'assets/vocab.txt'"
        return None
    elif p.type == "numbers":
        if not isinstance(value, list) or not value or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
            return "a non-empty list of numbers"
        if p.minimum is not None and any(v <= p.minimum for v in value):
            return f"a list of numbers > {p.minimum}"
        return None
    elif p.type == "string":
        if p.choices and value not in p.choices:
            return f"one of {', '.join(map(repr, p.choices))}"
        return None if isinstance(value, str) else "a string"
    if p.minimum is not None and value < p.minimum:
        return f"a number >= {p.minimum}"
    if p.maximum is not None and value > p.maximum:
        return f"a number <= {p.maximum}"
    return None


def _bad_relpath(rel: str) -> bool:
    return rel.startswith("/") or "\\" in rel or "\x00" in rel or any(
        part in ("", ".", "..") for part in rel.split("/"))


def _cross_check(name: str, op: Mapping[str, Any], at: str, source: str) -> list[str]:
    """Rules between parameters of one op."""
    p = resolve_params(op)
    problems = []
    if name == "normalize" and len(p["mean"]) != len(p["std"]):
        problems.append(f"{source}: {at}.std: expected {len(p['mean'])} values (one per mean), got {len(p['std'])}.")
    if name in ("log_mel", "mfcc"):
        if p["win_length"] is not None and p["win_length"] > p["n_fft"]:
            problems.append(f"{source}: {at}.win_length: expected at most n_fft ({p['n_fft']}), got {p['win_length']}.")
        if p["fmax"] is not None and p["fmax"] <= p["fmin"]:
            problems.append(f"{source}: {at}.fmax: expected more than fmin ({p['fmin']}), got {p['fmax']}.")
    if name == "mfcc" and p["n_mfcc"] > p["n_mels"]:
        problems.append(f"{source}: {at}.n_mfcc: expected at most n_mels ({p['n_mels']}), got {p['n_mfcc']}.")
    if name == "tokenize":
        kind = p["kind"]
        needs = {"words": "vocab", "hf-tokenizer": "tokenizer"}.get(kind)
        if needs and not p.get(needs):
            problems.append(f"{source}: {at}: missing required parameter {needs!r} for kind {kind!r}.")
        size = p.get("vocab_size")
        if kind in ("chars", "bytes") and size is not None:
            for key in ("padding_id", "unknown_id"):
                if p[key] >= size:
                    problems.append(f"{source}: {at}.{key}: expected an id below vocab_size ({size}), got {p[key]}.")
            if problems:
                return problems
            if {p["padding_id"], p["unknown_id"]} - {0, 1}:
                problems.append(f"{source}: {at}: kind {kind!r} reserves ids 0 and 1 for padding and unknown; "
                                f"expected padding_id and unknown_id in {{0, 1}}, got {p['padding_id']} and {p['unknown_id']}.")
    return problems


def _advance(state: _State, name: str, p: dict[str, Any], at: str, source: str) -> list[str]:
    """Apply one op's effect on stage, dims and dtype; a problem when it does not fit what came before."""
    def wrong(needs: str) -> list[str]:
        return [f"{source}: {at}.op: {name!r} needs {needs}, but the ops before it produce {_describe_stage(state)}."]

    st = state.stage
    if name in ("grayscale", "rgb", "resize", "center_crop", "normalize", "layout"):
        if st != "image-hwc":
            return wrong("an HxWxC image")
        h, w, c = state.dims
        if name == "grayscale":
            state.dims = (h, w, 1)
        elif name == "rgb":
            state.dims = (h, w, 3)
        elif name in ("resize", "center_crop"):
            state.dims = (p["height"], p["width"], c)
            state.dtype = "float32" if name == "resize" else state.dtype
        elif name == "normalize":
            n = len(p["mean"])
            if c is not None and n not in (1, c):
                return [f"{source}: {at}.mean: expected 1 or {c} values (one per channel), got {n}."]
            state.dtype = "float32"
        elif name == "layout" and p["order"] == "CHW":
            state.stage, state.dims = "image-chw", (c, h, w)
    elif name == "tokenize":
        if st != "text":
            return wrong("text")
        state.stage, state.dims, state.dtype = "ids", (p["max_length"],), "int64"
    elif name in ("resample", "pad_trim", "log_mel", "mfcc"):
        if st != "wave":
            return wrong("a waveform")
        if name == "resample":
            state.rate, state.dims = p["rate"], (None,)
        elif name == "pad_trim":
            state.dims = (p["samples"],)
        else:
            if state.rate is not None:
                nyquist = state.rate / 2
                if p["fmax"] is not None and p["fmax"] > nyquist:
                    return [f"{source}: {at}.fmax: expected at most {nyquist:g} (half the rate {state.rate}), got {p['fmax']}."]
            frames = p["frames"]
            if frames is None and state.dims[0] is not None:
                frames = 1 + state.dims[0] // p["hop_length"]
            state.stage = "features"
            state.dims = (frames, p["n_mfcc"] if name == "mfcc" else p["n_mels"])
            state.dtype = "float32"
    elif name in ("scale", "standardize"):
        if st in ("text",):
            return wrong("numbers")
        state.dtype = "float32"
    elif name == "cast":
        if st == "text":
            return wrong("token ids (tokenize first)")
        state.dtype = p["dtype"]
    return []


def _describe_stage(state: _State) -> str:
    return {"image-hwc": "an HxWxC image", "image-chw": "a CHW image (layout must come last, before cast/scale)",
            "text": "text", "ids": "token ids", "wave": "a waveform", "features": "a [frames, coefficients] array",
            "array": "an array"}[state.stage]


def _check_end(state: _State, spec: Mapping[str, Any], where: str, source: str) -> list[str]:
    if state.stage == "text":
        return [f"{source}: {where}.preprocessing: a text input needs a 'tokenize' op to become a tensor, "
                f"got {[op.get('op') for op in spec.get('preprocessing') or []]}."]
    if state.stage == "array":
        return []       # tabular: the suite decides the width
    problems = []
    shape = list(spec.get("shape") or [])
    produced = ["batch", *state.dims]
    if len(shape) != len(produced):
        problems.append(f"{source}: {where}.shape: expected rank {len(produced)} ({_fmt_shape(produced)}, what the "
                        f"preprocessing produces), got rank {len(shape)} ({_fmt_shape(shape)}).")
    else:
        for k, (want, got) in enumerate(zip(produced[1:], shape[1:], strict=True), start=1):
            if isinstance(want, int) and isinstance(got, int) and want != got:
                problems.append(f"{source}: {where}.shape[{k}]: expected {want} (what the preprocessing produces), "
                                f"got {got}.")
    dtype = spec.get("dtype")
    if dtype is not None and dtype != state.dtype:
        problems.append(f"{source}: {where}.dtype: expected {state.dtype!r} (what the preprocessing produces; end "
                        f"with {{op: cast, dtype: {dtype}}} to change it), got {dtype!r}.")
    return problems


def _fmt_shape(shape: Sequence[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


# ----------------------------------------------------------------------------------- running


@dataclass(slots=True)
class Context:
    """What an op may need besides its input: the current sample rate and the package's assets."""

    input_name: str
    rate: int | None = None
    assets_root: Path | None = None
    cache: dict[str, Any] = field(default_factory=dict)


def preprocess_input(
    spec: TensorSpec,
    values: Any,
    *,
    assets_root: Path | None = None,
    source_rate: int | None = None,
    missing: bool = False,
) -> np.ndarray:
    """Turn a batch of canonical values into the tensor for one card input.

    Args:
        spec: The card input; its ``preprocessing`` ops run in order.
        values: The batch in canonical form: images as a ``uint8`` array ``[N, H, W, C]`` or a list
            of ``H x W x C`` arrays; texts as a list of str; audio as a ``float32`` array
            ``[N, samples]`` or a list of 1-D arrays.
        assets_root: The package directory; asset paths such as ``assets/vocab.txt`` are read
            inside it (through ``open_in_root``: no links, no escaping).
        source_rate: The sample rate of audio ``values`` (the suite field's ``sample_rate``).
        missing: Feed the modality as missing: zeros of the input's shape and dtype.

    Returns:
        An array with exactly ``spec.dtype`` and ``spec``'s shape, named axes taken from the batch
        (every named axis is the batch size; name fixed sizes in the card otherwise).

    Raises:
        SuiteError: ``E_IO_CONTRACT`` when the result's shape or dtype differs from the card's.
        MmstdError: From an op: ``E_TEXT_INVALID`` (text too long without truncation),
            ``E_DEPENDENCY`` (``tokenizers`` missing), filesystem codes for a bad asset.
    """
    import numpy as np

    n = len(values)
    want = tuple(n if isinstance(d, str) else d for d in spec.shape)
    if missing:
        return np.zeros(want, dtype=spec.dtype)
    if n == 0:
        raise SuiteError(f"input {spec.name!r}: got an empty batch; expected at least one sample.", code="E_DATASET_EMPTY")
    ctx = Context(spec.name, rate=source_rate, assets_root=assets_root)
    x: Any = _as_batch(values)
    for op in spec.preprocessing:
        params = resolve_params(op)
        fn = _impl(OPS[op["op"]].impl)
        if isinstance(x, list) and op["op"] != "tokenize":
            rate, outs = ctx.rate, []
            for v in x:      # samples of different shapes go one by one, each from the same rate
                ctx.rate = rate
                outs.append(fn(v[None], params, ctx)[0])
            x = _stack_if_uniform(outs)
        else:
            x = fn(x, params, ctx)
        if isinstance(x, np.ndarray) and x.ndim == 0:
            raise MmstdError(f"input {spec.name!r}: op {op['op']!r} produced a scalar.", code="E_INTERNAL")
    if isinstance(x, list):
        shapes = sorted({tuple(v.shape) for v in x})
        raise SuiteError(
            f"input {spec.name!r}: preprocessing gives samples of different shapes {shapes[:3]}; expected one shape "
            f"{_fmt_shape(spec.shape)}.", code="E_IO_CONTRACT",
            hint="add a resize (images) or pad_trim / frames (audio) op so every sample has the same shape.")
    if x.shape != want or x.dtype != np.dtype(spec.dtype):
        raise SuiteError(
            f"input {spec.name!r}: preprocessing gives {x.dtype} {list(x.shape)}, but the card declares "
            f"{spec.dtype} {_fmt_shape(spec.shape)} (batch {n}).", code="E_IO_CONTRACT",
            hint="the suite's canonical data does not fit this card's preprocessing; check resize/pad_trim/cast ops.")
    return x


def _as_batch(values: Any) -> Any:
    import numpy as np

    if isinstance(values, np.ndarray):
        return values
    values = list(values)
    if values and isinstance(values[0], str):
        return values
    return _stack_if_uniform([np.asarray(v) for v in values])


def _stack_if_uniform(items: list[Any]) -> Any:
    import numpy as np

    if items and all(v.shape == items[0].shape and v.dtype == items[0].dtype for v in items):
        return np.stack(items)
    return items


_IMPLS: dict[str, Any] = {}


def _impl(ref: str) -> Any:
    if ref not in _IMPLS:
        import importlib

        module, _, attr = ref.partition(":")
        _IMPLS[ref] = getattr(importlib.import_module(module), attr)
    return _IMPLS[ref]


def preprocess_batch(card: ModelCard, batch: Any, *, assets_root: Path | None = None) -> dict[str, np.ndarray]:
    """Feeds for every input of ``card`` from a suite batch (a ``SplitData``).

    Each input reads the suite field named by its ``field``, or the only field of its modality;
    a field the batch marks missing (a variant) is fed as zeros.

    Raises:
        SuiteError: ``E_IO_CONTRACT`` when no field (or more than one) fits an input.
    """
    feeds = {}
    for spec in card.inputs:
        name = batch.field_for(spec)
        field_spec = batch.fields[name]
        feeds[spec.name] = preprocess_input(
            spec, batch.values[name], assets_root=assets_root, source_rate=field_spec.sample_rate,
            missing=name in batch.missing)
    return feeds


__all__ = ["OPS", "OpSpec", "Param", "check_preprocessing", "ops_for", "preprocess_batch", "preprocess_input",
           "resolve_params"]
