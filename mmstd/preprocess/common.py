"""Operations shared by several modalities: ``scale``, ``standardize``, ``cast``.

Each takes a batch whose first axis is the sample and returns a batch.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def scale(x: np.ndarray, p: dict[str, Any], ctx: Any) -> np.ndarray:
    """``y = x · factor + offset``, computed and returned in float32."""
    return (x.astype(np.float32) * np.float32(p["factor"]) + np.float32(p["offset"])).astype(np.float32)


def standardize(x: np.ndarray, p: dict[str, Any], ctx: Any) -> np.ndarray:
    """Per sample and per last-axis entry ``c``: ``y = (x − μ_c) / sqrt(σ²_c + eps)``.

    ``μ_c`` and ``σ²_c`` (population variance) run over every axis of the sample except the last, so
    ``[frames, coefficients]`` features are standardized per coefficient over time (per-utterance
    cepstral mean and variance normalization); a 1-D sample (a waveform) is standardized as a whole.
    A constant sample (e.g. silence) becomes all zeros. Computed in float64, returned as float32.
    """
    x64 = x.astype(np.float64)
    axes = (1,) if x.ndim == 2 else tuple(range(1, x.ndim - 1))
    mean = x64.mean(axis=axes, keepdims=True)
    var = x64.var(axis=axes, keepdims=True)
    return ((x64 - mean) / np.sqrt(var + p["eps"])).astype(np.float32)


def cast(x: np.ndarray, p: dict[str, Any], ctx: Any) -> np.ndarray:
    """Convert to ``dtype``.

    Float to integer rounds half to even (``rint``) and clips to the integer type's range, so a
    float image in ``[0, 255]`` casts back to the same ``uint8``; anything to ``bool`` is ``x ≠ 0``;
    integer to float and float to float are plain conversions.
    """
    dtype = np.dtype(p["dtype"])
    if dtype == x.dtype:
        return x
    if dtype == np.bool_:
        return x != 0
    if np.issubdtype(dtype, np.integer) and np.issubdtype(x.dtype, np.floating):
        info = np.iinfo(dtype)
        return np.clip(np.rint(x), info.min, info.max).astype(dtype)
    return x.astype(dtype)
