"""A deterministic evaluation report built in code, for the reporters' tests and golden files.

Everything a real run would measure is fixed here: latencies come from a formula, the environment
is normalised, scores are computed exactly from fixed confusion matrices, and every interval is a
fixed half-width around its value. Two backends (ort-cpu, ort-cuda) that disagree on one sample,
two variants (drop-audio on both backends, image-noise on ort-cpu).
"""
from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Sequence
from typing import Any

from mmstd.reports import cdf_points

LABELS = ("cat", "dog", "bird")
CI_LEVEL = 0.95
RESAMPLES = 1000


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _r(x: float) -> float:
    return round(x, 6)


# ------------------------------------------------------------------------------------ scores


def base_confusion(n: int) -> list[list[int]]:
    """A diagonal-heavy n x n matrix with a few fixed confusions."""
    return [[30 + 5 * i if i == j else (i * 7 + j * 3) % 4 for j in range(n)] for i in range(n)]


def degrade(cm: list[list[int]], moves: Sequence[int]) -> list[list[int]]:
    """Move ``moves[i]`` correct samples of class i to the next class (same total)."""
    out = copy.deepcopy(cm)
    n = len(cm)
    for i, k in enumerate(moves):
        k = min(k, out[i][i])
        out[i][i] -= k
        out[i][(i + 1) % n] += k
    return out


def _interval(value: float, half: float = 0.03) -> tuple[float, float]:
    return _r(max(0.0, value - half)), _r(min(1.0, value + half))


def _score(value: float) -> dict[str, Any]:
    low, high = _interval(value)
    return {"value": value, "ci_low": low, "ci_high": high, "ci_level": CI_LEVEL, "resamples": RESAMPLES,
            "higher_is_better": True}


def scores_from_confusion(cm: list[list[int]], labels: Sequence[str], *, per_class: bool = True) -> dict[str, Any]:
    """The scores block for ``cm`` (rows true, columns predicted), computed exactly."""
    n = len(cm)
    total = sum(map(sum, cm))
    tp = [cm[i][i] for i in range(n)]
    support = [sum(cm[i]) for i in range(n)]
    predicted = [sum(cm[i][j] for i in range(n)) for j in range(n)]
    precision = [tp[i] / predicted[i] if predicted[i] else 0.0 for i in range(n)]
    recall = [tp[i] / support[i] if support[i] else 0.0 for i in range(n)]
    f1 = [2 * p * r / (p + r) if p + r else 0.0 for p, r in zip(precision, recall, strict=True)]
    accuracy = sum(tp) / total
    headline = {
        "accuracy": accuracy,
        "f1_macro": sum(f1) / n,
        "f1_micro": accuracy,
        "f1_weighted": sum(f * s for f, s in zip(f1, support, strict=True)) / total,
        "precision_macro": sum(precision) / n,
        "recall_macro": sum(recall) / n,
        "recall_weighted": sum(r * s for r, s in zip(recall, support, strict=True)) / total,
        "top_2_accuracy": accuracy + (1 - accuracy) * 0.75,
    }
    out: dict[str, Any] = {"headline": {k: _score(_r(v)) for k, v in headline.items()}}
    if per_class:
        out["per_class"] = [
            {"label": lab, "precision": _r(p), "recall": _r(r), "f1": _r(f), "support": s,
             "f1_ci_low": _interval(_r(f), 0.05)[0], "f1_ci_high": _interval(_r(f), 0.05)[1]}
            for lab, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        ]
        out["confusion_matrix"] = cm
        out["top_k"] = [{"k": 1, "accuracy": _r(accuracy)}, {"k": 2, "accuracy": _r(headline["top_2_accuracy"])}]
    return out


def deltas(now: dict[str, Any], base: dict[str, Any], *, half: float = 0.025) -> dict[str, Any]:
    out = {}
    for metric in ("accuracy", "f1_macro", "recall_macro"):
        d = now["headline"][metric]["value"] - base["headline"][metric]["value"]
        out[metric] = {"delta": d, "ci_low": _r(d - half), "ci_high": _r(d + half), "ci_level": CI_LEVEL,
                       "resamples": RESAMPLES}
    return out


# ----------------------------------------------------------------------------------- latency


def latencies(base_ms: float, spread_ms: float, n: int, *, tail_every: int = 97, tail_ms: float = 2.0) -> list[float]:
    """``n`` fixed latencies: a uniform-looking spread plus a periodic slow tail."""
    return [_r(base_ms + spread_ms * ((i * 7919) % 1000) / 1000 + (tail_ms if i % tail_every == 0 else 0.0))
            for i in range(n)]


def _nearest_rank(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[max(math.ceil(q * len(sorted_ms) - 1e-9), 1) - 1]


def latency_stats(values: list[float], batch_size: int, *, cdf: bool) -> dict[str, Any]:
    s = sorted(values)
    duration = sum(s) / 1000
    out: dict[str, Any] = {
        "batch_size": batch_size, "queries": len(s), "duration_s": _r(duration),
        "latency_p50_ms": _nearest_rank(s, 0.50), "latency_p90_ms": _nearest_rank(s, 0.90),
        "latency_p95_ms": _nearest_rank(s, 0.95), "latency_p99_ms": _nearest_rank(s, 0.99),
        "latency_mean_ms": _r(sum(s) / len(s)), "latency_max_ms": s[-1], "latency_min_ms": s[0],
        "throughput_per_s": _r(len(s) * batch_size / duration),
    }
    if cdf:
        out["cdf"] = cdf_points(s)
    return out


def latency_block(base_ms: float, *, quick: bool = False) -> dict[str, Any]:
    offline = [] if quick else [
        latency_stats(latencies(base_ms * 3, base_ms, 120, tail_every=41), 8, cdf=False),
        latency_stats(latencies(base_ms * 9, base_ms * 2, 60, tail_every=29), 32, cdf=False),
    ]
    return {
        "single_stream": latency_stats(latencies(base_ms, base_ms / 2, 500), 1, cdf=True),
        "offline": offline,
        "protocol": {"warmup_queries": 10, "min_duration_s": 0.2, "min_queries": 100},
    }


# ------------------------------------------------------------------------------------ report


def _backend(name: str, cm: list[list[int]], labels: Sequence[str], *, quick: bool) -> dict[str, Any]:
    cuda = name == "ort-cuda"
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
    options: dict[str, Any] = {"graph_optimization_level": "ORT_ENABLE_ALL", "intra_op_num_threads": 0 if cuda else 4,
                               "inter_op_num_threads": 1, "execution_mode": "ORT_SEQUENTIAL"}
    if cuda:
        options["provider_options"] = {"CUDAExecutionProvider": {"device_id": 0, "cudnn_conv_algo_search": "DEFAULT"}}
    return {
        "name": name,
        "providers_requested": providers,
        "providers_active": list(providers),
        "session_options": options,
        "io_binding": cuda,
        "device": "cuda:0" if cuda else "cpu",
        "session_create_ms": 412.5 if cuda else 18.25,
        "first_run_ms": 95.125 if cuda else 1.5,
        "scores": scores_from_confusion(cm, labels),
        "latency": latency_block(0.35 if cuda else 0.9, quick=quick),
        "audit": {"latency_outputs_match_accuracy_run": True, "repeat_run_identical": True,
                  "max_abs_diff": 0.0},
    }


def fixture_report(
    *,
    labels: Sequence[str] = LABELS,
    name: str = "fusion-demo",
    version: str = "1.2.0",
    digest: str | None = None,
    path: str = "fusion-demo-1.2.0",
    fusion_strategy: str = "late",
    quick: bool = False,
) -> dict[str, Any]:
    """A valid report for a ``len(labels)``-class task with two backends and two variants."""
    labels = list(labels)
    n = len(labels)
    cpu_cm = base_confusion(n)
    cuda_cm = copy.deepcopy(cpu_cm)
    cuda_cm[0][0] -= 1          # the backends disagree on exactly one class-0 sample
    cuda_cm[0][1] += 1
    samples = sum(map(sum, cpu_cm))
    backends = [_backend("ort-cpu", cpu_cm, labels, quick=quick), _backend("ort-cuda", cuda_cm, labels, quick=quick)]
    cpu, cuda = (b["scores"] for b in backends)

    variant_specs = [
        ("drop-audio", "drop_modality", "The audio input replaced by silence.", {"modality": "audio"}, "ort-cpu",
         degrade(cpu_cm, [4 + i % 3 for i in range(n)])),
        ("drop-audio", "drop_modality", "The audio input replaced by silence.", {"modality": "audio"}, "ort-cuda",
         degrade(cuda_cm, [4 + i % 3 for i in range(n)])),
        ("image-noise", "gaussian_noise", "Gaussian noise (std 0.1) added to the image.",
         {"modality": "image", "std": 0.1}, "ort-cpu", degrade(cpu_cm, [1 + i % 2 for i in range(n)])),
    ]
    variants = []
    for vname, kind, desc, params, backend, cm in variant_specs:
        scores = scores_from_confusion(cm, labels, per_class=False)
        variants.append({"name": vname, "kind": kind, "description": desc, "params": params, "backend": backend,
                         "scores": scores, "deltas": deltas(scores, cpu if backend == "ort-cpu" else cuda)})

    output_diffs = [{"output": "probabilities", "max_abs_diff": 3.5762786865234375e-07,
                     "max_rel_diff": 2.1e-06, "argmax_agreement": (samples - 1) / samples}]
    return {
        "schema_version": "1.0",
        "mmstd_version": "0.1.0",
        "created": "2026-11-25T12:00:00Z",
        "run_id": "20261125T120000Z-fixture",
        "seed": 0,
        "quick": quick,
        "limit": None,
        "package": {
            "name": name, "version": version, "digest": digest or _sha(f"package {name}@{version}"),
            "path": path, "task_kind": "multiclass", "labels": labels, "fusion_strategy": fusion_strategy,
            "source": {"framework": "torch", "framework_version": "2.13.0", "exporter": "torch.onnx",
                       "exporter_version": "2.13.0", "exporter_path": "dynamo", "opset": 18},
        },
        "suite": {"name": "digits-av", "version": 1, "ref": "digits-av@1", "data_sha256": _sha("suite data"),
                  "fingerprint": _sha("suite samples"), "split": "test", "samples": samples},
        "environment": {
            "os": "Linux-6.1-x86_64", "python": "3.11.9", "cpu_model": "Fixture CPU @ 2.00GHz", "cpu_cores": 8,
            "memory_bytes": 34359738368,
            "gpu": [{"name": "NVIDIA H100 80GB HBM3", "driver": "550.54.15", "memory_bytes": 85520809984,
                     "cuda": "12.4", "compute_capability": "9.0"}],
            "libraries": {"mmstd": "0.1.0", "numpy": "2.1.0", "onnx": "1.21.0", "onnxruntime": "1.31.1"},
        },
        "backends": backends,
        "parity": {
            "reference": [
                {"backend": b["name"], "against": "reference.safetensors", "atol": 0.0001, "rtol": 0.001,
                 "samples": 2, "per_output": [{"output": "probabilities", "max_abs_diff": 5.960464477539063e-08 * (i + 1),
                                               "max_rel_diff": 4.2e-07 * (i + 1), "argmax_agreement": 1.0,
                                               "passed": True}],
                 "passed": True}
                for i, b in enumerate(backends)
            ],
            "cross_backend": [{
                "a": "ort-cpu", "b": "ort-cuda", "per_output": output_diffs,
                "argmax_agreement": (samples - 1) / samples, "label_flips": 1,
                "metric_deltas": deltas(cuda, cpu, half=0.01),
            }],
        },
        "variants": variants,
        "record": {"path": "record.npz", "sha256": _sha("record"), "bytes": 48213},
    }


# -------------------------------------------------------------------------------------- card


def fixture_card_dict() -> dict[str, Any]:
    """A sealed card for the fixture report's package (fusion-demo@1.2.0, cat/dog/bird, image + text)."""
    return {
        "schema_version": "1.0",
        "model_details": {
            "name": "fusion-demo", "version": "1.2.0",
            "description": "Classifies a photo and its caption as cat, dog or bird by late fusion.",
            "owners": [{"name": "Fixture Team", "contact": "fixtures@example.com"}],
            "license": "Apache-2.0", "date": "2026-11-20",
            "references": ["https://arxiv.org/abs/1810.03993"],
            "citation": "@misc{fusiondemo, title={Fusion demo}}",
        },
        "intended_use": {"primary_uses": ["Testing mmstd's reporters."], "primary_users": ["mmstd developers"],
                         "out_of_scope": ["Anything real."]},
        "factors": {"relevant": ["caption language"], "evaluation": ["audio missing", "image noise"]},
        "metrics": {"performance_measures": ["accuracy", "f1_macro", "latency_p99_ms"],
                    "decision_thresholds": "argmax over the class probabilities.",
                    "variation_approaches": "95% bootstrap intervals (1000 resamples)."},
        "evaluation_data": {"datasets": [{"name": "digits-av", "version": 1, "split": "test"}]},
        "training_data": {"datasets": [{"name": "digits-av", "version": 1, "split": "train"}],
                          "description": "Synthetic pairs."},
        "quantitative_analyses": {"results": [{"suite": "digits-av@1", "metric": "accuracy", "value": 0.9,
                                               "backend": "ort-cpu", "ci_low": 0.87, "ci_high": 0.93}]},
        "ethical_considerations": ["Synthetic data only."],
        "caveats": ["Not for production use."],
        "task": {"kind": "multiclass", "labels": list(LABELS)},
        "inputs": [
            {"name": "image", "modality": "image", "dtype": "float32", "shape": ["batch", 8, 8, 1],
             "value_range": [0.0, 1.0],
             "preprocessing": [{"op": "grayscale"}, {"op": "resize", "height": 8, "width": 8, "interpolation": "bilinear"},
                               {"op": "scale", "factor": 0.00392156862745098}, {"op": "cast", "dtype": "float32"}]},
            {"name": "text", "modality": "text", "dtype": "int64", "shape": ["batch", 16], "value_range": [0, 63],
             "preprocessing": [{"op": "tokenize", "kind": "chars", "lowercase": True, "max_length": 16,
                                "vocab_size": 64}]},
        ],
        "outputs": [{"name": "probabilities", "kind": "probabilities", "dtype": "float32", "shape": ["batch", 3]}],
        "fusion": {"strategy": "late", "description": "Per-modality classifiers whose probabilities are averaged."},
        "source": {"framework": "torch", "framework_version": "2.13.0", "exporter": "torch.onnx",
                   "exporter_version": "2.13.0", "exporter_path": "dynamo", "opset": 18, "ir_version": 10},
        "parity": {"atol": 0.0001, "rtol": 0.001, "max_abs_diff": 5.960464477539063e-08, "max_rel_diff": 4.2e-07,
                   "argmax_agreement": 1.0, "samples": 8, "passed": True, "runtime": "onnxruntime-cpu"},
        "artifacts": {
            "model": {"path": "model.onnx", "sha256": _sha("model"), "bytes": 2048},
            "weights": {"path": "weights.safetensors", "sha256": _sha("weights"), "bytes": 1024},
            "reference": {"path": "reference.safetensors", "sha256": _sha("reference"), "bytes": 512},
        },
    }
