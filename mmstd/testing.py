"""Tiny fusion models built in code with ``onnx.helper``, for tests, examples and the demo.

``tiny_fusion_model`` turns any card into a real ONNX graph that honours its contract: each input is
cast to float, flattened, concatenated and sent through one MatMul + Softmax (or the output's kind).
``seal_tiny_package`` exports it like a real exporter would: weights to safetensors, reference
outputs computed by a NumPy implementation of the same maths, parity measured against onnxruntime.
"""
from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mmstd.card import ModelCard, TensorSpec, load_card

#: The commented example card that ``mmstd card init`` writes.
EXAMPLE_CARD = Path(__file__).resolve().parent / "templates" / "example-card.yaml"

NP_DTYPES = {
    "float32": np.float32, "float16": np.float16, "float64": np.float64, "int8": np.int8, "int16": np.int16,
    "int32": np.int32, "int64": np.int64, "uint8": np.uint8, "bool": np.bool_,
}


def _onnx_type(dtype: str) -> int:
    from onnx import helper

    return helper.np_dtype_to_tensor_dtype(np.dtype(NP_DTYPES[dtype]))


def _feature_width(spec: TensorSpec) -> int:
    return math.prod(d for d in spec.shape[1:] if isinstance(d, int))


def tiny_weights(card: ModelCard, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded weights for ``tiny_fusion_model``: one matrix and one bias."""
    rng = np.random.default_rng(seed)
    width = sum(_feature_width(s) for s in card.inputs)
    n_out = card.outputs[0].shape[-1]
    return {
        "head.weight": (rng.standard_normal((width, n_out)) / math.sqrt(width)).astype(np.float32),
        "head.bias": (rng.standard_normal(n_out) * 0.1).astype(np.float32),
    }


def tiny_fusion_model(card: ModelCard, weights: dict[str, np.ndarray], *, opset: int = 17) -> Any:
    """An ONNX model whose inputs and outputs are exactly the card's (names, dtypes, named axes).

    Every input must have a leading batch axis and fixed other dims; the first output's last dim
    sets the head width, and every output gets the same values.
    """
    from onnx import TensorProto, helper, numpy_helper

    nodes, feats = [], []
    for spec in card.inputs:
        nodes.append(helper.make_node("Cast", [spec.name], [f"{spec.name}_f"], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("Flatten", [f"{spec.name}_f"], [f"{spec.name}_flat"], axis=1))
        feats.append(f"{spec.name}_flat")
    nodes.append(helper.make_node("Concat", feats, ["fused"], axis=1))
    nodes.append(helper.make_node("MatMul", ["fused", "head.weight"], ["mm"]))
    nodes.append(helper.make_node("Add", ["mm", "head.bias"], ["logits_raw"]))
    for out in card.outputs:
        op = "Softmax" if out.kind == "probabilities" else "Identity"
        kwargs = {"axis": -1} if op == "Softmax" else {}
        nodes.append(helper.make_node(op, ["logits_raw"], [f"{out.name}_f"], **kwargs))
        nodes.append(helper.make_node("Cast", [f"{out.name}_f"], [out.name], to=_onnx_type(out.dtype)))
    graph = helper.make_graph(
        nodes,
        f"{card.name}-tiny",
        [helper.make_tensor_value_info(s.name, _onnx_type(s.dtype), list(s.shape)) for s in card.inputs],
        [helper.make_tensor_value_info(s.name, _onnx_type(s.dtype), list(s.shape)) for s in card.outputs],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="mmstd.testing")
    model.ir_version = 9
    return model


def tiny_reference(card: ModelCard, weights: dict[str, np.ndarray], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The NumPy implementation of ``tiny_fusion_model``: the 'source framework' for parity."""
    flat = [feeds[s.name].astype(np.float32).reshape(len(feeds[s.name]), -1) for s in card.inputs]
    logits = np.concatenate(flat, axis=1) @ weights["head.weight"] + weights["head.bias"]
    out = {}
    for spec in card.outputs:
        if spec.kind == "probabilities":
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            out[spec.name] = (e / e.sum(axis=1, keepdims=True)).astype(NP_DTYPES[spec.dtype])
        else:
            out[spec.name] = logits.astype(NP_DTYPES[spec.dtype])
    return out


def random_feeds(card: ModelCard, batch: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs inside each input's ``value_range`` (default [0, 1])."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in card.inputs:
        shape = spec.concrete_shape({a: batch for a in spec.axes.values()})
        low, high = spec.value_range or (0, 1)
        dtype = NP_DTYPES[spec.dtype]
        if np.issubdtype(dtype, np.integer):
            feeds[spec.name] = rng.integers(int(low), int(high) + 1, size=shape).astype(dtype)
        else:
            feeds[spec.name] = rng.uniform(low, high, size=shape).astype(dtype)
    return feeds


def seal_tiny_package(card: ModelCard, out: Path, *, seed: int = 0, force: bool = False) -> Any:
    """Build ``tiny_fusion_model`` for ``card``, measure parity on onnxruntime, and seal a package."""
    import onnx
    import onnxruntime as ort
    from safetensors.numpy import save_file

    from mmstd.package import build_package

    weights = tiny_weights(card, seed=seed)
    model = tiny_fusion_model(card, weights)
    atol, rtol = 1e-5, 1e-4
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        onnx.save(model, t / "model.onnx")
        save_file(weights, str(t / "weights.safetensors"), metadata={"framework": "numpy"})
        sess = ort.InferenceSession(str(t / "model.onnx"), providers=["CPUExecutionProvider"])
        max_abs = max_rel = 0.0
        agree = total = 0
        for batch in (1, 7):
            feeds = random_feeds(card, batch, seed=seed + batch)
            ref = tiny_reference(card, weights, feeds)
            got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
            for name, r in ref.items():
                diff = np.abs(got[name].astype(np.float64) - r.astype(np.float64))
                max_abs = max(max_abs, float(diff.max()))
                max_rel = max(max_rel, float((diff / np.maximum(np.abs(r), 1e-12)).max()))
                agree += int((got[name].argmax(-1) == r.argmax(-1)).sum())
                total += batch
        feeds = random_feeds(card, 2, seed=seed)
        save_file({**{f"input.{k}": v for k, v in feeds.items()},
                   **{f"output.{k}": v for k, v in tiny_reference(card, weights, feeds).items()}},
                  str(t / "reference.safetensors"), metadata={"framework": "numpy"})
        sealed = card.with_sections(
            source={"framework": "onnx", "framework_version": onnx.__version__, "exporter": "onnx.helper",
                    "exporter_version": onnx.__version__, "exporter_path": "none", "opset": 17, "ir_version": model.ir_version,
                    "model": "mmstd.testing:tiny_fusion_model"},
            parity={"atol": atol, "rtol": rtol, "max_abs_diff": max_abs, "max_rel_diff": max_rel,
                    "argmax_agreement": agree / total, "samples": 8, "passed": max_abs <= atol, "runtime": "onnxruntime-cpu"},
        )
        return build_package(out, sealed, {"model.onnx": t / "model.onnx", "weights.safetensors": t / "weights.safetensors",
                                           "reference.safetensors": t / "reference.safetensors"}, force=force)


def _main() -> None:
    parser = argparse.ArgumentParser(prog="python -m mmstd.testing")
    sub = parser.add_subparsers(dest="cmd", required=True)
    seal = sub.add_parser("seal", help="seal a tiny ONNX model for CARD into a package")
    seal.add_argument("--card", type=Path, required=True)
    seal.add_argument("--out", type=Path, required=True)
    seal.add_argument("--force", action="store_true")
    args = parser.parse_args()
    pkg = seal_tiny_package(load_card(args.card), args.out, force=args.force)
    print(f"sealed {pkg.card.ref} at {pkg.root}")


if __name__ == "__main__":
    _main()
