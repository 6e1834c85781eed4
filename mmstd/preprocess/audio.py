"""Audio operations. Input: mono float32 waveforms, a batch ``[N, samples]`` or a list of 1-D arrays.

Spectral features follow librosa's conventions (librosa ≥ 0.10 defaults), so a model trained on
``librosa.feature.mfcc`` features sees the same numbers:

- STFT: ``center=True`` with **zero** padding of ``n_fft // 2`` samples at both ends, a periodic
  Hann window ``w[n] = 0.5 − 0.5·cos(2πn / win_length)`` zero-padded (centred) to ``n_fft``,
  frame ``t`` starting at sample ``t·hop_length`` of the padded signal, so a signal of ``L``
  samples has ``1 + ⌊L / hop_length⌋`` frames. Power spectrum ``P = |rfft(frame · w)|²``.
- Mel filterbank: ``n_mels`` triangles between ``fmin`` and ``fmax`` (default: half the rate),
  equally spaced on the Slaney mel scale (linear below 1 kHz, ``f/(200/3)``; logarithmic above,
  ``15 + ln(f/1000)/(ln 6.4/27)``), or HTK (``2595·log10(1 + f/700)``); Slaney area normalization
  (``2 / (f_{m+2} − f_m)``) unless ``norm: none``. Same as ``librosa.filters.mel``.
- dB: ``S_dB = 10·log10(max(1e-10, M·P))``, then floored at ``max(S_dB) − top_db`` per utterance
  (``top_db`` default 80; ``null`` disables), as ``librosa.power_to_db(ref=1.0)``.
- MFCC: ``DCT-II`` with orthonormal scaling along the mel axis, first ``n_mfcc`` coefficients,
  optional lifter ``c_n · (1 + (lifter/2)·sin(π(n+1)/lifter))``; as ``librosa.feature.mfcc``.
- ``frames``: the signal is first zero-padded at its end to ``(frames − 1)·hop_length`` samples
  when shorter, the dB floor is taken over every computed frame, and the first ``frames`` frames
  are kept: the result equals librosa's on the padded signal, cut to ``frames``.

Features are returned time-major, ``[frames, n_mels]`` / ``[frames, n_mfcc]``, float32.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing  # noqa: F401  (np.typing in annotations)

from mmstd.errors import MmstdError

AMIN = 1e-10


def _rate(ctx: Any, op: str) -> int:
    if ctx.rate is None:
        raise MmstdError(f"input {ctx.input_name!r}: op {op!r} needs the audio's sample rate, which is unknown.",
                         code="E_USAGE", hint="pass source_rate (the suite field's sample_rate).")
    return int(ctx.rate)


def resample(x: np.ndarray, p: dict[str, Any], ctx: Any) -> np.ndarray:
    """Resample from the current rate to ``rate``: ``scipy.signal.resample_poly(x, up, down)``.

    ``up/down = rate / source`` reduced by their gcd; scipy's default anti-aliasing filter (FIR,
    Kaiser window β = 5, half-length ``10·max(up, down)``); the output has ``⌈L·up/down⌉`` samples.
    The same rate passes unchanged. Computed in float64, returned as float32.
    """
    src = _rate(ctx, "resample")
    dst = int(p["rate"])
    ctx.rate = dst
    if src == dst:
        return x.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = math.gcd(src, dst)
    return resample_poly(x.astype(np.float64), dst // g, src // g, axis=-1).astype(np.float32)


def pad_trim(x: np.ndarray, p: dict[str, Any], ctx: Any) -> np.ndarray:
    """Exactly ``samples`` long: zeros appended at the end, or the end cut off."""
    n = int(p["samples"])
    if x.shape[-1] >= n:
        return x[..., :n]
    pad = [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])]
    return np.pad(x, pad)


def hz_to_mel(f: np.typing.ArrayLike, *, htk: bool = False) -> np.ndarray:
    """Hz to mels: HTK ``2595·log10(1 + f/700)``, or Slaney (linear below 1 kHz, log above)."""
    f = np.asarray(f, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep, f / f_sp)


def mel_to_hz(m: np.typing.ArrayLike, *, htk: bool = False) -> np.ndarray:
    """Inverse of ``hz_to_mel``."""
    m = np.asarray(m, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(rate: int, n_fft: int, n_mels: int, *, fmin: float = 0.0, fmax: float | None = None,
                   htk: bool = False, slaney_norm: bool = True) -> np.ndarray:
    """The ``[n_mels, 1 + n_fft // 2]`` triangular filterbank of ``librosa.filters.mel``."""
    fmax = rate / 2 if fmax is None else fmax
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / rate)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin, htk=htk), hz_to_mel(fmax, htk=htk), n_mels + 2), htk=htk)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if slaney_norm:
        weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights


def power_spectrogram(x: np.ndarray, n_fft: int, hop_length: int, win_length: int | None = None) -> np.ndarray:
    """``|STFT|²`` of a batch ``[N, L]`` as ``[N, frames, 1 + n_fft // 2]`` (centred, zero padding)."""
    win_length = win_length or n_fft
    n = np.arange(win_length)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)
    left = (n_fft - win_length) // 2
    window = np.pad(window, (left, n_fft - win_length - left))
    padded = np.pad(x.astype(np.float64), ((0, 0), (n_fft // 2, n_fft // 2)))
    n_frames = 1 + (padded.shape[1] - n_fft) // hop_length
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=1)[:, ::hop_length][:, :n_frames]
    spec = np.fft.rfft(frames * window, axis=-1)
    return spec.real ** 2 + spec.imag ** 2


def _log_mel_db(x: np.ndarray, p: dict[str, Any], ctx: Any, op: str) -> np.ndarray:
    rate = _rate(ctx, op)
    x = _batch(x, op, ctx)
    frames, hop = p["frames"], p["hop_length"]
    if frames is not None and x.shape[1] < (frames - 1) * hop:
        x = np.pad(x, ((0, 0), (0, (frames - 1) * hop - x.shape[1])))
    power = power_spectrogram(x, p["n_fft"], hop, p["win_length"])
    fb = mel_filterbank(rate, p["n_fft"], p["n_mels"], fmin=p["fmin"], fmax=p["fmax"],
                        htk=p["mel_scale"] == "htk", slaney_norm=p["norm"] == "slaney")
    db = 10.0 * np.log10(np.maximum(AMIN, power @ fb.T))      # [N, T, n_mels]
    if p["top_db"] is not None:
        db = np.maximum(db, db.max(axis=(1, 2), keepdims=True) - p["top_db"])
    return db if frames is None else db[:, :frames]


def _batch(x: np.ndarray, op: str, ctx: Any) -> np.ndarray:
    if x.ndim != 2:
        raise MmstdError(f"input {ctx.input_name!r}: op {op!r} needs mono waveforms, got an array of shape "
                         f"{list(x.shape[1:])} per sample.", code="E_IO_CONTRACT")
    return x


def log_mel(x: np.ndarray, p: dict[str, Any], ctx: Any) -> np.ndarray:
    """Log-power mel spectrogram in dB, ``[frames, n_mels]`` (conventions in the module docstring)."""
    return _log_mel_db(x, p, ctx, "log_mel").astype(np.float32)


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Orthonormal DCT-II rows: ``D[k, m] = s_k·cos(πk(2m + 1) / (2·n_in))``, ``s_0 = √(1/n_in)``, else ``√(2/n_in)``."""
    k = np.arange(n_out)[:, None]
    m = np.arange(n_in)[None, :]
    d = np.cos(np.pi * k * (2 * m + 1) / (2 * n_in)) * math.sqrt(2.0 / n_in)
    d[0] /= math.sqrt(2.0)
    return d


def mfcc(x: np.ndarray, p: dict[str, Any], ctx: Any) -> np.ndarray:
    """MFCCs ``[frames, n_mfcc]``: ``C = S_dB · Dᵀ`` with ``D = dct_matrix(n_mfcc, n_mels)`` (+ lifter)."""
    db = _log_mel_db(x, p, ctx, "mfcc")
    c = db @ dct_matrix(p["n_mfcc"], p["n_mels"]).T
    if p["lifter"] > 0:
        n = np.arange(p["n_mfcc"])
        c = c * (1.0 + (p["lifter"] / 2.0) * np.sin(np.pi * (n + 1) / p["lifter"]))
    return c.astype(np.float32)
