"""Export time per framework and exporter path, with and without parity, for every zoo model.

Rows: each zoo model (digits-av contract, seed 0) exported with torch/TorchScript, torch/dynamo
and keras/tf2onnx, plus three probe models that decide the default torch path (a bidirectional
LSTM, scaled-dot-product attention and ``nn.MultiheadAttention`` over a dynamic time axis).

- ``export_s``: the exporter alone (``exporter.export``: graph, conform, checker, weights), median.
- ``sealed_s``: the whole stage (``export_model``: export, source runs, parity on onnxruntime,
  reference, ``build_package`` + ``open_package``), median.
- parity figures and the status (``ok``, ``E_PARITY``, or the pre-flight refusal) of the sealed run.

Untimed warm-ups run first: one export per framework/path (imports, dynamo's registry) and one per
model (its first trace). The machine is usually shared, so read ratios, not absolutes. Run from the
repository root; the last line of the output is one JSON object with every figure::

    .venv/bin/python bench/export.py              # 3 repeats
    .venv/bin/python bench/export.py --repeats 1 --no-probes
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from mmstd.card import ModelCard  # noqa: E402
from mmstd.errors import MmstdError  # noqa: E402
from mmstd.exporters import ExportOptions, export_model, get_exporter  # noqa: E402
from mmstd.zoo import STRATEGIES, build_zoo_model, load_zoo_card  # noqa: E402

PATHS = (("torch", "torchscript"), ("torch", "dynamo"), ("keras", "tf2onnx"))


def probe_models() -> dict[str, Any]:
    """Small torch models over ``audio [batch, time, 13]`` that stress the exporter paths."""
    import torch
    from torch import nn

    class BiLstm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(13, 16, batch_first=True, bidirectional=True)
            self.out = nn.Linear(32, 10)

        def forward(self, audio: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.out(self.rnn(audio)[0].mean(dim=1)), dim=-1)

    class Sdpa(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q = nn.Linear(13, 16)
            self.out = nn.Linear(16, 10)

        def forward(self, audio: torch.Tensor) -> torch.Tensor:
            q = self.q(audio).unflatten(-1, (2, 8)).transpose(1, 2)
            y = nn.functional.scaled_dot_product_attention(q, q, q).transpose(1, 2).flatten(2)
            return torch.softmax(self.out(y.mean(dim=1)), dim=-1)

    class Mha(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(13, 16)
            self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
            self.out = nn.Linear(16, 10)

        def forward(self, audio: torch.Tensor) -> torch.Tensor:
            h = self.proj(audio)
            return torch.softmax(self.out(self.attn(h, h, h, need_weights=False)[0].mean(dim=1)), dim=-1)

    torch.manual_seed(0)
    return {"probe-bilstm": BiLstm().eval(), "probe-sdpa": Sdpa().eval(), "probe-mha": Mha().eval()}


def probe_card() -> ModelCard:
    doc = load_zoo_card("early").to_dict()
    doc["model_details"]["name"] = "probe"
    doc["inputs"] = [{"name": "audio", "modality": "tabular", "dtype": "float32", "shape": ["batch", "time", 13],
                      "value_range": [-3.0, 3.0], "preprocessing": []}]
    return ModelCard.from_dict(doc)


def timed(fn: Any, repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def measure(name: str, framework: str, path: str, model: Any, card: ModelCard, repeats: int, tmp: Path) -> dict[str, Any]:
    exporter = get_exporter(framework)
    options = ExportOptions(exporter_path=path)
    row: dict[str, Any] = {"model": name, "framework": framework, "path": path}
    counter = iter(range(1_000_000))
    try:
        exporter.export(model, card, tmp / "warm-up", options=options)  # untimed: first trace of this model
        row["export_s"], _ = timed(lambda: exporter.export(model, card, tmp / f"raw-{next(counter)}", options=options),
                                   repeats)
        row["sealed_s"], pkg = timed(lambda: export_model(model, card, tmp / f"pkg-{next(counter)}", framework=framework,
                                                          options=options), repeats)
        par = pkg.card.sections["parity"]
        row.update(status="ok", max_abs_diff=par["max_abs_diff"], max_rel_diff=par["max_rel_diff"],
                   argmax_agreement=par["argmax_agreement"], samples=par["samples"],
                   opset=pkg.card.sections["source"]["opset"], ir_version=pkg.card.sections["source"]["ir_version"])
    except MmstdError as e:
        row["status"] = e.code + (f" ({e.problems[0].split('(')[-1].split(',')[0]})" if e.problems else "")
    return row


def render(rows: list[dict[str, Any]]) -> str:
    head = f"{'model':<13} {'framework':<9} {'path':<11} {'export_s':>8} {'sealed_s':>8} {'max_abs':>9} {'max_rel':>9} " \
           f"{'argmax':>6} {'samples':>7}  status"
    lines = [head, "-" * len(head)]
    for r in rows:
        def f(key: str, fmt: str, r: dict[str, Any] = r) -> str:
            return format(r[key], fmt) if key in r else "-"
        lines.append(f"{r['model']:<13} {r['framework']:<9} {r['path']:<11} {f('export_s', '8.3f'):>8} "
                     f"{f('sealed_s', '8.3f'):>8} {f('max_abs_diff', '9.2e'):>9} {f('max_rel_diff', '9.2e'):>9} "
                     f"{f('argmax_agreement', '6.3f'):>6} {f('samples', '7d'):>7}  {r['status']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per cell (median reported)")
    parser.add_argument("--no-probes", action="store_true", help="only the zoo models")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mmstd-bench-export-") as tmp, redirect_stderr(io.StringIO()):
        root = Path(tmp)
        for framework, path in PATHS:
            warm = build_zoo_model("late", framework, load_zoo_card("late"), seed=0)
            measure("warm-up", framework, path, warm, load_zoo_card("late"), 1, root / f"warm-{path}")
            for name in STRATEGIES:
                card = load_zoo_card(name)
                model = build_zoo_model(name, framework, card, seed=0)
                rows.append(measure(name, framework, path, model, card, args.repeats, root / f"{name}-{path}"))
        if not args.no_probes:
            card = probe_card()
            for name, model in probe_models().items():
                for path in ("torchscript", "dynamo"):
                    rows.append(measure(name, "torch", path, model, card, args.repeats, root / f"{name}-{path}"))
    print(render(rows))
    summary = {}
    for framework, path in PATHS:
        zoo = [r for r in rows if r["framework"] == framework and r["path"] == path and r["model"] in STRATEGIES]
        ok = [r for r in zoo if r["status"] == "ok"]
        if ok:
            summary[f"{framework}/{path}"] = {"export_s_median": statistics.median(r["export_s"] for r in ok),
                                              "sealed_s_median": statistics.median(r["sealed_s"] for r in ok),
                                              "max_abs_diff": max(r["max_abs_diff"] for r in ok)}
    from importlib import metadata

    versions = {d: metadata.version(d) for d in ("torch", "onnxscript", "tensorflow", "keras", "tf2onnx", "onnx",
                                                 "onnxruntime")}
    print(json.dumps({"bench": "export", "repeats": args.repeats, "machine": platform.machine(),
                      "cpus": os.cpu_count(), "versions": versions, "summary": summary, "rows": rows}))


if __name__ == "__main__":
    main()
