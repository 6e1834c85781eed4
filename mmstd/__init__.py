"""mmstd: standard export and conformance evaluation for multimodal fusion models.

Importing this package is cheap on purpose: torch, TensorFlow, tf2onnx and onnxruntime are
imported only by the stage that needs them, so ``mmstd --help`` starts in a fraction of a second.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
