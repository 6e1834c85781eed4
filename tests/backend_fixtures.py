"""Helpers for tests that run models on backends: skip cleanly where a provider is missing.

Import from tests (``from backend_fixtures import require_backend``); kept out of conftest.py so
other suites can opt in without touching shared fixtures.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest


@functools.cache
def backend_unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot run here, probing a one-node model for ONNX Runtime backends.

    A GPU build of onnxruntime lists CUDAExecutionProvider even on a machine without a GPU, so a
    provider-list check alone would run (and fail) GPU tests there; the probe opens a session.
    """
    from mmstd.backends import BACKENDS
    from mmstd.backends.onnxruntime import OrtBackend

    backend = BACKENDS.get(name)
    if isinstance(backend, OrtBackend):
        return backend.unavailable_reason(probe=True)
    return backend.unavailable_reason()


def require_backend(name: str) -> None:
    """Skip the calling test unless backend ``name`` can run on this machine."""
    reason = backend_unavailable_reason(name)
    if reason is not None:
        pytest.skip(f"backend {name} unavailable here: {reason}")


def reference_feeds(package_root: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The package's ``reference.safetensors``: (``input.<name>`` feeds, ``output.<name>`` outputs)."""
    from safetensors.numpy import load_file

    tensors = load_file(str(package_root / "reference.safetensors"))
    feeds = {k.removeprefix("input."): v for k, v in tensors.items() if k.startswith("input.")}
    outputs = {k.removeprefix("output."): v for k, v in tensors.items() if k.startswith("output.")}
    return feeds, outputs
