"""Image operations. Input: a batch ``[N, H, W, C]`` (canonical ``uint8``, C = 1 or 3).

Resizing is separable: each axis is a fixed ``out x in`` weight matrix, so every interpolation is
exactly ``Y = W_h · X · W_wᵀ`` per channel, computed in float64 and returned as float32. Source
coordinates use half-pixel centres, ``x_src = (x_dst + 0.5) · in / out − 0.5``, the convention of
``torch.nn.functional.interpolate(align_corners=False)``, ONNX ``Resize`` (``half_pixel``) and
``tf.image.resize``; no antialiasing filter is applied when shrinking (except by ``area``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mmstd.errors import SuiteError

#: Keys' cubic convolution coefficient, as in PyTorch and ONNX Resize (``cubic_coeff_a``).
CUBIC_A = -0.75


def _check_hwc(x: np.ndarray, op: str, ctx: Any) -> None:
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise SuiteError(f"input {ctx.input_name!r}: op {op!r} needs images H x W x C with C = 1 or 3, "
                         f"got an array of shape {list(x.shape[1:])}.", code="E_IO_CONTRACT")


def grayscale(x: np.ndarray, p: dict[str, Any], ctx: Any) -> np.ndarray:
    """One channel: ``L = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601 luma).

    A 1-channel image passes unchanged. ``uint8`` input gives ``uint8`` output rounded half up,
    ``floor(L + 0.5)``; float input gives float32.
    """
    _check_hwc(x, "grayscale", ctx)
    if x.shape[-1] == 1:
        return x
    lum = x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if x.dtype == np.uint8:
        return np.clip(np.floor(lum + 0.5), 0, 255).astype(np.uint8)[..., None]
    return lum.astype(np.float32)[..., None]


def rgb(x: np.ndarray, p: dict[str, Any], ctx: Any) -> np.ndarray:
    """Three channels: a gray channel is repeated, ``R = G = B = L``; RGB passes unchanged."""
    _check_hwc(x, "rgb", ctx)
    return x if x.shape[-1] == 3 else np.repeat(x, 3, axis=-1)


def resize_weights(n_in: int, n_out: int, method: str) -> np.ndarray:
    """The ``n_out x n_in`` matrix that resizes one axis.

    With ``s = n_in / n_out`` and ``u = (i + 0.5)·s − 0.5`` the source coordinate of output ``i``:

    - ``nearest``: ``y_i = x[min(floor((i + 0.5)·s), n_in − 1)]`` (PyTorch ``nearest-exact``).
    - ``bilinear``: ``u`` clamped to ``[0, n_in − 1]``, ``y_i = (1 − t)·x[⌊u⌋] + t·x[min(⌊u⌋ + 1, n_in − 1)]``,
      ``t = u − ⌊u⌋``.
    - ``bicubic``: ``y_i = Σ_{k=−1..2} K(t − k)·x[clamp(⌊u⌋ + k)]``, Keys kernel with ``a = −0.75``:
      ``K(d) = (a+2)|d|³ − (a+3)|d|² + 1`` for ``|d| ≤ 1``, ``a|d|³ − 5a|d|² + 8a|d| − 4a`` for
      ``1 < |d| < 2``; borders replicate (PyTorch ``bicubic``). Values may overshoot the input range.
    - ``area``: ``y_i`` is the mean of ``x`` over the source interval ``[i·s, (i + 1)·s)``, each
      source pixel weighted by the length it covers (exact box filter; average pooling when ``s`` is
      an integer).
    """
    i = np.arange(n_out, dtype=np.float64)
    s = n_in / n_out
    w = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    if method == "nearest":
        src = np.minimum(np.floor((i + 0.5) * s).astype(np.int64), n_in - 1)
        w[rows, src] = 1.0
    elif method == "bilinear":
        u = np.clip((i + 0.5) * s - 0.5, 0.0, n_in - 1)
        x0 = np.floor(u).astype(np.int64)
        x1 = np.minimum(x0 + 1, n_in - 1)
        t = u - x0
        np.add.at(w, (rows, x0), 1.0 - t)
        np.add.at(w, (rows, x1), t)
    elif method == "bicubic":
        u = (i + 0.5) * s - 0.5
        x0 = np.floor(u).astype(np.int64)
        t = u - x0
        for k in (-1, 0, 1, 2):
            np.add.at(w, (rows, np.clip(x0 + k, 0, n_in - 1)), _keys(t - k))
    elif method == "area":
        lo, hi = i * s, (i + 1) * s
        j = np.arange(n_in, dtype=np.float64)
        overlap = np.clip(np.minimum(hi[:, None], j[None, :] + 1) - np.maximum(lo[:, None], j[None, :]), 0, None)
        w = overlap / s
    else:  # pragma: no cover - parameters are validated before
        raise ValueError(method)
    return w


def _keys(d: np.ndarray) -> np.ndarray:
    a = CUBIC_A
    d = np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def resize(x: np.ndarray, p: dict[str, Any], ctx: Any) -> np.ndarray:
    """Resize to ``height x width``: ``Y[c] = W_h · X[c] · W_wᵀ`` (see ``resize_weights``), float32."""
    _check_hwc(x, "resize", ctx)
    wh = resize_weights(x.shape[1], p["height"], p["interpolation"])
    ww = resize_weights(x.shape[2], p["width"], p["interpolation"])
    out = np.einsum("oh,nhwc,pw->nopc", wh, x.astype(np.float64), ww, optimize=True)
    return out.astype(np.float32)


def center_crop(x: np.ndarray, p: dict[str, Any], ctx: Any) -> np.ndarray:
    """The central window: rows ``[⌊(H − h)/2⌋, +h)``, columns ``[⌊(W − w)/2⌋, +w)``; dtype kept."""
    _check_hwc(x, "center_crop", ctx)
    h, w = p["height"], p["width"]
    if h > x.shape[1] or w > x.shape[2]:
        raise SuiteError(f"input {ctx.input_name!r}: center_crop {h}x{w} is larger than the image "
                         f"{x.shape[1]}x{x.shape[2]}.", code="E_IO_CONTRACT", hint="resize first.")
    top, left = (x.shape[1] - h) // 2, (x.shape[2] - w) // 2
    return x[:, top:top + h, left:left + w, :]


def normalize(x: np.ndarray, p: dict[str, Any], ctx: Any) -> np.ndarray:
    """Per channel ``c``: ``y = (x − mean[c]) / std[c]`` in float32; one value applies to all channels."""
    _check_hwc(x, "normalize", ctx)
    mean = np.asarray(p["mean"], dtype=np.float32)
    std = np.asarray(p["std"], dtype=np.float32)
    if mean.size not in (1, x.shape[-1]):
        raise SuiteError(f"input {ctx.input_name!r}: normalize has {mean.size} means for {x.shape[-1]} channels.",
                         code="E_IO_CONTRACT")
    return ((x.astype(np.float32) - mean) / std).astype(np.float32)


def layout(x: np.ndarray, p: dict[str, Any], ctx: Any) -> np.ndarray:
    """``HWC`` keeps the canonical layout; ``CHW`` transposes each image to channels-first."""
    _check_hwc(x, "layout", ctx)
    return x if p["order"] == "HWC" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))
