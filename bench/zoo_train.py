"""Train the whole zoo on the built-in suites and measure it: time, and test accuracy of the package.

For every suite (digits-av, shapes-itm) x framework (torch, keras) x zoo model (early, late,
intermediate, attention), ``train_and_export`` runs with the suite's default hyper-parameters
(``mmstd.zoo.train.DEFAULTS``): fit on the ``train`` split, export with parity, score the exported
graph on the ``test`` split with onnxruntime CPU. Reported per row: preprocessing + fit seconds,
the whole ``train_and_export`` seconds (fit, export, parity, scoring, sealing), the test accuracy
and macro F1 the card records (onnxruntime), and image-missing / text-missing accuracy of the
package where the suite has those variants.

Single-modality baselines: each zoo model (PyTorch) is trained with only one modality present
(every other input fed as zeros in training and at test, as a ``*-missing`` variant feeds it),
same defaults but no modality dropout, and scored in PyTorch on the test split; the best model
per modality is reported beside the suite datasheet's logistic-regression numbers.

The machine's load average is printed with every row: timings from a shared machine are noisy.
Run it from the repository root (about 5 minutes on 2 cores; the last line is one JSON object)::

    .venv/bin/python bench/zoo_train.py
    .venv/bin/python bench/zoo_train.py --suites digits-av --frameworks torch --no-baselines
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mmstd.zoo import CONTRACTS, FRAMEWORKS, STRATEGIES, build_zoo_model, load_zoo_card  # noqa: E402
from mmstd.zoo.train import DEFAULTS, fit, predict, train_and_export  # noqa: E402

#: Logistic regression on the zoo preprocessing, from each suite's README (datasheet).
DATASHEET = {
    "digits-av": {"image": 0.828, "text": 0.620, "audio": 0.497, "all (concatenated)": 0.922},
    "shapes-itm": {"image": 0.506, "text": 0.526, "all (concatenated)": 0.516, "all (MLP 256)": 0.556},
}


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0]) if Path("/proc/loadavg").exists() else float("nan")


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def variant_accuracy(package: Any, suite: Any, variant: str) -> float | None:
    from mmstd.run import RunSettings, run_suite

    if variant not in {v.name for v in suite.variants}:
        return None
    record = run_suite(package, suite, variant=variant, settings=RunSettings(latency=False), environment={})
    out = record.outputs[package.card.outputs[0].name]
    return float((out.argmax(axis=1) == record.labels).mean())


def train_row(name: str, framework: str, suite: Any, root: Path) -> dict[str, Any]:
    trained_at: list[float] = []

    def progress(line: str) -> None:
        if line.startswith("trained "):  # build + preprocess + fit are done; export starts
            trained_at.append(time.perf_counter())

    start = time.perf_counter()
    pkg = train_and_export(name, framework, suite, root / f"{suite.name}-{framework}-{name}", progress=progress)
    total = time.perf_counter() - start
    scores = {r["metric"]: r for r in pkg.card.sections["quantitative_analyses"]["results"]}
    row = {
        "suite": suite.ref, "framework": framework, "model": name, "epochs": DEFAULTS[suite.name].epochs,
        "train_s": round(trained_at[0] - start, 2), "train_and_export_s": round(total, 2),
        "test_accuracy": round(scores["accuracy"]["value"], 4),
        "test_accuracy_ci": [round(scores["accuracy"]["ci_low"], 4), round(scores["accuracy"]["ci_high"], 4)],
        "test_f1_macro": round(scores["f1_macro"]["value"], 4),
        "parity_max_abs_diff": pkg.card.sections["parity"]["max_abs_diff"],
        "loadavg": load(),
    }
    for variant in ("image-missing", "text-missing"):
        acc = variant_accuracy(pkg, suite, variant)
        if acc is not None:
            row[f"{variant}_accuracy"] = round(acc, 4)
    return row


def single_modality(name: str, suite: Any, only: str) -> float:
    """Test accuracy of zoo model ``name`` (PyTorch) trained and tested with only input ``only`` present."""
    from dataclasses import replace

    from mmstd.preprocess import preprocess_batch

    card = load_zoo_card(name, suite.name)
    train, test = suite.split("train"), suite.split("test")

    def keep_only(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v if k == only else np.zeros_like(v) for k, v in feeds.items()}

    model = build_zoo_model(name, "torch", card, seed=0)
    config = replace(DEFAULTS[suite.name], modality_dropout=0.0)
    fit(model, "torch", card, keep_only(preprocess_batch(card, train)), train.labels, config=config, seed=0)
    out = predict(model, "torch", card, keep_only(preprocess_batch(card, test)))
    return float((out.argmax(axis=1) == test.labels).mean())


def render(rows: list[dict[str, Any]]) -> str:
    head = f"{'suite':<13}{'framework':<10}{'model':<13}{'train s':>8}{'total s':>8}{'test acc':>9}  {'95% CI':<16}" \
           f"{'f1':>6}{'img-miss':>9}{'txt-miss':>9}{'load':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        ci = f"[{r['test_accuracy_ci'][0]:.3f}, {r['test_accuracy_ci'][1]:.3f}]"
        im, tm = r.get("image-missing_accuracy"), r.get("text-missing_accuracy")
        lines.append(f"{r['suite']:<13}{r['framework']:<10}{r['model']:<13}{r['train_s']:>8.1f}"
                     f"{r['train_and_export_s']:>8.1f}{r['test_accuracy']:>9.3f}  {ci:<16}{r['test_f1_macro']:>6.3f}"
                     f"{'' if im is None else f'{im:.3f}':>9}{'' if tm is None else f'{tm:.3f}':>9}{r['loadavg']:>6.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suites", default=",".join(CONTRACTS))
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--models", default=",".join(STRATEGIES))
    parser.add_argument("--no-baselines", action="store_true", help="Skip the single-modality baselines.")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from mmstd.suite import load_suite

    suites = [load_suite(s) for s in args.suites.split(",")]
    rows, baselines = [], {}
    with tempfile.TemporaryDirectory(prefix="mmstd-bench-zoo-") as tmp:
        for suite in suites:
            for framework in args.frameworks.split(","):
                for name in args.models.split(","):
                    rows.append(train_row(name, framework, suite, Path(tmp)))
                    r = rows[-1]
                    say(f"{r['suite']} {framework:<5} {name:<12} train {r['train_s']:5.1f}s total "
                        f"{r['train_and_export_s']:5.1f}s test accuracy {r['test_accuracy']:.3f} (load {r['loadavg']:.2f})")
    for suite in [] if args.no_baselines else suites:
        card = load_zoo_card("early", suite.name)
        per = {}
        for spec in card.inputs:
            scores = {name: round(single_modality(name, suite, spec.name), 4) for name in args.models.split(",")}
            best = max(scores, key=lambda k: scores[k])
            per[spec.name] = {"best": scores[best], "best_model": best, "per_model": scores,
                              "datasheet_logreg": DATASHEET[suite.name].get(spec.modality or spec.name)}
            say(f"{suite.ref} only {spec.name}: best {scores[best]:.3f} ({best}); {scores}")
        baselines[suite.ref] = per
    print(render(rows), file=sys.stderr)
    from importlib import metadata

    versions = {d: metadata.version(d) for d in ("torch", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime")}
    print(json.dumps({"bench": "zoo_train", "machine": platform.machine(), "cpus": os.cpu_count(),
                      "versions": versions, "defaults": {k: asdict(v) for k, v in DEFAULTS.items()},
                      "rows": rows, "single_modality": baselines, "datasheet_logreg": DATASHEET}))


if __name__ == "__main__":
    main()
