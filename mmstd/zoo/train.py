"""Train the zoo: a zoo model fitted to a suite's ``train`` split on the CPU, then sealed as a package.

The suite's name selects the zoo card (its contract: ``digits-av`` or ``shapes-itm``). The card's
standard preprocessing turns the whole train split into tensors once (``preprocess_batch``), and
a plain loop fits the model: Adam, cross-entropy on the card's output, shuffled mini-batches, a
few epochs. Batch order and modality-dropout masks come from one NumPy generator seeded by the
seed, so the PyTorch and Keras loops see the same batches. Hyper-parameters per contract are data
(``DEFAULTS``).

``train_and_export`` then exports the model (parity on seeded inputs and on the suite's test
samples), runs the exported graph on the suite's ``test`` split with onnxruntime, and seals the
package with that measured accuracy and macro F1 (95% bootstrap intervals) in the card's
``quantitative_analyses`` and the suite in ``training_data`` / ``evaluation_data``.

**Determinism.** Same seed, same machine and library versions: same weights, bit for bit.
PyTorch: ``torch.manual_seed`` inside ``fork_rng`` (the caller's generator is left alone),
``torch.use_deterministic_algorithms(True)`` and one intra-op thread while fitting, because
parallel CPU reductions split their work by thread count and so round differently on machines
with different core counts (for models this small one thread is also no slower). Keras:
``keras.utils.set_random_seed`` and ``tf.config.experimental.enable_op_determinism()``; both are
process-wide and stay on afterwards (TensorFlow has no scoped form). Results differ between the two
frameworks (different initializers and kernels) and may differ across library versions.

Importing this module imports neither torch nor TensorFlow.
"""
from __future__ import annotations

import difflib
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mmstd.card import ModelCard
from mmstd.errors import MmstdError, PackageError
from mmstd.zoo import CONTRACTS, FRAMEWORKS, build_zoo_model, load_zoo_card
from mmstd.zoo.spec import zoo_spec

#: The split every zoo model is fitted on, and the one its accuracy is measured on.
TRAIN_SPLIT = "train"
TEST_SPLIT = "test"
#: Suite test samples that parity runs on besides the seeded inputs.
PARITY_SAMPLES = 64
#: The backend whose outputs the card's ``quantitative_analyses`` record.
SCORE_BACKEND = "ort-cpu"
#: The metrics recorded in the card, each with its 95% bootstrap interval.
SCORE_METRICS = ("accuracy", "f1_macro")

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """How to fit a zoo model.

    Attributes:
        epochs: Passes over the train split.
        batch_size: Samples per Adam step (the last batch of an epoch may be smaller).
        lr: Adam's learning rate.
        modality_dropout: Probability that one input of one training sample is fed as zeros,
            exactly as a suite's ``*-missing`` variant feeds it (never every input of a sample),
            so the model learns not to depend on any single modality.
    """

    epochs: int
    batch_size: int = 32
    lr: float = 0.01
    modality_dropout: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            problems.append(f"epochs: expected an int >= 1, got {self.epochs!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            problems.append(f"batch_size: expected an int >= 1, got {self.batch_size!r}")
        if not (isinstance(self.lr, float | int) and self.lr > 0):
            problems.append(f"lr: expected a number > 0, got {self.lr!r}")
        if not (isinstance(self.modality_dropout, float | int) and 0 <= self.modality_dropout < 1):
            problems.append(f"modality_dropout: expected a number in [0, 1), got {self.modality_dropout!r}")
        if problems:
            raise MmstdError("Invalid training configuration.", code="E_USAGE", problems=problems)


#: Defaults per contract, measured on a 2-core CPU (bench/zoo_train.py): each model trains in
#: seconds and the digits-av models clear conformance/policies/default.yaml. shapes-itm is fitted
#: for fewer epochs because longer runs do not move the zoo's encoders off chance there (see the
#: suite's datasheet: only a cross-modal comparison beats 0.5).
DEFAULTS: dict[str, TrainConfig] = {
    "digits-av": TrainConfig(epochs=30, batch_size=32, lr=0.01, modality_dropout=0.15),
    "shapes-itm": TrainConfig(epochs=20, batch_size=32, lr=0.003, modality_dropout=0.0),
}


@dataclass(frozen=True, slots=True)
class EpochStats:
    """One epoch: mean training loss over its batches and its wall time."""

    epoch: int
    loss: float
    seconds: float


@dataclass(frozen=True, slots=True)
class TrainHistory:
    """What a fit did: the data, the settings and each epoch's loss.

    Attributes:
        suite: ``name@version`` of the suite trained on.
        split: The split (``train``).
        samples: Samples in that split.
        framework: ``torch`` or ``keras``.
        seed: The seed of the weights, batch order, masks and dropout.
        config: The hyper-parameters used.
        epochs: One entry per epoch, in order.
        preprocess_seconds: Turning the split into tensors (once).
        fit_seconds: The training loop.
    """

    suite: str
    split: str
    samples: int
    framework: str
    seed: int
    config: TrainConfig
    epochs: tuple[EpochStats, ...]
    preprocess_seconds: float
    fit_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


# ---------------------------------------------------------------------------------------- data


def contract_for(suite: Any) -> str:
    """The zoo contract a suite's name selects.

    Raises:
        MmstdError: ``E_NOT_FOUND`` when the suite's name is not a zoo contract.
    """
    if suite.name in CONTRACTS:
        return str(suite.name)
    close = difflib.get_close_matches(suite.name, CONTRACTS, n=1, cutoff=0.5)
    guess = f" Did you mean {close[0]!r}?" if close else ""
    raise MmstdError(f"Suite {suite.ref!r} has no zoo card: the zoo trains on the suites named after its contracts.{guess} "
                     f"Contracts: {', '.join(CONTRACTS)}.", code="E_NOT_FOUND",
                     hint="train your own model on this suite and package it with 'mmstd export'.")


def default_config(contract: str, *, epochs: int | None = None) -> TrainConfig:
    """``DEFAULTS[contract]``, with ``epochs`` replaced when given."""
    config = DEFAULTS[contract]
    return config if epochs is None else replace(config, epochs=epochs)


def _suite(suite: Any) -> Any:
    from mmstd.suite import Suite, load_suite

    return suite if isinstance(suite, Suite) else load_suite(suite)


def plan_batches(n: int, n_inputs: int, config: TrainConfig, rng: np.random.Generator) -> Iterator[
        tuple[np.ndarray, np.ndarray | None]]:
    """One epoch's mini-batches: sample indices and, with modality dropout, a keep mask.

    Yields:
        ``(indices, keep)`` where ``keep`` is a ``[batch, n_inputs]`` bool array (``None``
        without dropout or with a single input); a sample whose every input was drawn for
        dropping keeps them all.
    """
    order = rng.permutation(n)
    for start in range(0, n, config.batch_size):
        idx = order[start:start + config.batch_size]
        keep = None
        if config.modality_dropout > 0 and n_inputs > 1:
            keep = rng.random((len(idx), n_inputs)) >= config.modality_dropout
            keep[~keep.any(axis=1)] = True
        yield idx, keep


def _batch(arrays: Sequence[np.ndarray], idx: np.ndarray, keep: np.ndarray | None) -> list[np.ndarray]:
    out = []
    for i, a in enumerate(arrays):
        x = a[idx]
        if keep is not None:
            # Zeros after preprocessing: what a suite's `missing` variant feeds (padding ids, black pixels).
            x = x * keep[:, i].reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)
        out.append(x)
    return out


def _targets(card: ModelCard, labels: np.ndarray) -> tuple[str, np.ndarray]:
    """The loss the card's output calls for, and the labels in the form that loss takes."""
    spec = zoo_spec(card)
    if spec.activation == "sigmoid":
        y = labels.astype(np.float32)
        return "binary", (y.reshape(-1, 1) if y.ndim == 1 else y)
    return ("nll" if spec.activation == "softmax" else "logits"), labels.astype(np.int64)


# ----------------------------------------------------------------------------------- fitting


def fit(
    model: Any,
    framework: str,
    card: ModelCard,
    feeds: Mapping[str, np.ndarray],
    labels: np.ndarray,
    *,
    config: TrainConfig,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[EpochStats, ...]:
    """Fit ``model`` in place on preprocessed tensors; leave it in inference mode.

    Args:
        model: A zoo model (``nn.Module`` or ``keras.Model``) built for ``card``.
        framework: ``torch`` or ``keras``.
        card: Its inputs' order is the model's input order; its output picks the loss
            (probabilities: cross-entropy on their log; logits: softmax cross-entropy; sigmoid
            outputs: binary cross-entropy).
        feeds: Input name -> array over all training samples (``preprocess_batch``'s output).
        labels: ``[n]`` class indices (``[n, C]`` multi-hot for multilabel).
        config: Epochs, batch size, learning rate, modality dropout.
        seed: Seeds batch order, dropout masks and the framework's generators.
        progress: Called with one line per epoch.

    Returns:
        The per-epoch statistics.
    """
    names = [s.name for s in card.inputs]
    arrays = [np.ascontiguousarray(feeds[n]) for n in names]
    loss_kind, y = _targets(card, labels)
    rng = np.random.default_rng(seed)
    epochs = (list(plan_batches(len(y), len(arrays), config, rng)) for _ in range(config.epochs))
    if framework == "torch":
        stats = _fit_torch(model, arrays, y, loss_kind, epochs, config, seed, progress)
    elif framework == "keras":
        stats = _fit_keras(model, arrays, y, loss_kind, epochs, config, seed, progress)
    else:
        raise MmstdError(f"Unknown framework {framework!r}; expected one of {', '.join(FRAMEWORKS)}.", code="E_NOT_FOUND")
    return tuple(stats)


def _epoch_line(stats: EpochStats, total: int) -> str:
    return f"epoch {stats.epoch}/{total}: loss {stats.loss:.4f} ({stats.seconds:.1f}s)"


def _fit_torch(model: Any, arrays: list[np.ndarray], y: np.ndarray, loss_kind: str,
               epochs: Iterator[list[tuple[np.ndarray, np.ndarray | None]]], config: TrainConfig, seed: int,
               progress: Progress | None) -> list[EpochStats]:
    import torch
    import torch.nn.functional as F

    def loss_fn(out: Any, target: Any) -> Any:
        if loss_kind == "nll":
            return F.nll_loss(torch.log(out.clamp_min(1e-7)), target)
        if loss_kind == "logits":
            return F.cross_entropy(out, target)
        return F.binary_cross_entropy(out.clamp(1e-7, 1 - 1e-7), target)

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    stats = []
    try:
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
            target = torch.from_numpy(y)
            model.train()
            for epoch, batches in enumerate(epochs, start=1):
                start, total = time.perf_counter(), 0.0
                for idx, keep in batches:
                    xs = [torch.from_numpy(x) for x in _batch(arrays, idx, keep)]
                    loss = loss_fn(model(*xs), target[torch.from_numpy(idx)])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * len(idx)
                stats.append(EpochStats(epoch, total / len(y), time.perf_counter() - start))
                if progress:
                    progress(_epoch_line(stats[-1], config.epochs))
    finally:
        model.eval()
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)
    return stats


def _fit_keras(model: Any, arrays: list[np.ndarray], y: np.ndarray, loss_kind: str,
               epochs: Iterator[list[tuple[np.ndarray, np.ndarray | None]]], config: TrainConfig, seed: int,
               progress: Progress | None) -> list[EpochStats]:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    loss: Any
    if loss_kind == "binary":
        loss = keras.losses.BinaryCrossentropy()
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=loss_kind == "logits")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=config.lr), loss=loss)
    stats = []
    for epoch, batches in enumerate(epochs, start=1):
        start, total = time.perf_counter(), 0.0
        for idx, keep in batches:
            value = model.train_on_batch(_batch(arrays, idx, keep), y[idx])
            total += float(np.asarray(value).reshape(-1)[0]) * len(idx)
        stats.append(EpochStats(epoch, total / len(y), time.perf_counter() - start))
        if progress:
            progress(_epoch_line(stats[-1], config.epochs))
    return stats


def predict(model: Any, framework: str, card: ModelCard, feeds: Mapping[str, np.ndarray], *,
            batch_size: int = 256) -> np.ndarray:
    """The model's single output for ``feeds``, in inference mode, as a NumPy array."""
    names = [s.name for s in card.inputs]
    n = len(feeds[names[0]])
    parts = []
    if framework == "torch":
        import torch

        with torch.inference_mode():
            for s in range(0, n, batch_size):
                parts.append(model(*(torch.from_numpy(np.ascontiguousarray(feeds[k][s:s + batch_size]))
                                     for k in names)).numpy())
    else:
        for s in range(0, n, batch_size):
            parts.append(np.asarray(model([feeds[k][s:s + batch_size] for k in names], training=False)))
    return np.concatenate(parts)


# ------------------------------------------------------------------------------------ the API


def train_zoo_model(
    name: str,
    framework: str,
    suite: Any,
    *,
    epochs: int | None = None,
    seed: int = 0,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
) -> tuple[Any, ModelCard, TrainHistory]:
    """Build zoo model ``name`` in ``framework`` and fit it to ``suite``'s train split.

    Args:
        name: ``early``, ``late``, ``intermediate`` or ``attention``.
        framework: ``torch`` or ``keras``.
        suite: A loaded ``Suite``, a built-in suite name or a suite path; its name picks the
            zoo card (``digits-av``, ``shapes-itm``).
        epochs: Override the contract's default epochs.
        seed: Seeds the initial weights and the fit (see the module docstring).
        config: Override every hyper-parameter (``epochs`` still wins when given).
        progress: Called with one line per epoch.

    Returns:
        ``(model, card, history)``: the fitted model in inference mode, the zoo card with
        ``training_data`` and ``evaluation_data`` naming the suite, and the fit's history.

    Raises:
        MmstdError: ``E_NOT_FOUND`` for an unknown model, framework or suite (with a suggestion)
            or a suite that is no zoo contract; ``E_DEPENDENCY`` when the framework is missing.
    """
    loaded = _suite(suite)
    contract = contract_for(loaded)
    card = load_zoo_card(name, contract)
    if config is None:
        config = default_config(contract, epochs=epochs)
    elif epochs is not None:
        config = replace(config, epochs=epochs)
    model = build_zoo_model(name, framework, card, seed=seed)
    start = time.perf_counter()
    data = loaded.split(TRAIN_SPLIT)
    from mmstd.preprocess import preprocess_batch

    feeds = preprocess_batch(card, data)
    prep_s = time.perf_counter() - start
    start = time.perf_counter()
    stats = fit(model, framework, card, feeds, data.labels, config=config, seed=seed, progress=progress)
    history = TrainHistory(suite=loaded.ref, split=TRAIN_SPLIT, samples=len(data), framework=framework, seed=seed,
                           config=config, epochs=stats, preprocess_seconds=prep_s,
                           fit_seconds=time.perf_counter() - start)
    return model, trained_card(card, loaded, history), history


def trained_card(card: ModelCard, suite: Any, history: TrainHistory) -> ModelCard:
    """``card`` saying what it was trained and is evaluated on, and how (no measured numbers)."""
    c = history.config
    data = {"name": suite.name, "version": suite.version, "sha256": suite.data.sha256}
    test_n = len(suite.split(TEST_SPLIT)) if TEST_SPLIT in suite.splits else None
    training = {
        "datasets": [{**data, "split": history.split, "description": f"{history.samples} samples"}],
        "preprocessing": "The card's standard preprocessing operations (the inputs' 'preprocessing'), applied once "
                         "to the whole split.",
        "description": (f"Fitted by 'mmstd zoo train' in {history.framework}: Adam (learning rate {c.lr:g}), "
                        f"cross-entropy, shuffled mini-batches of {c.batch_size}, {c.epochs} epochs, modality dropout "
                        f"{c.modality_dropout:g} (an input zeroed per sample, as a '*-missing' variant feeds it), "
                        f"seed {history.seed}, deterministic CPU training."),
    }
    evaluation = {
        "datasets": [{**data, "split": TEST_SPLIT,
                      **({"description": f"{test_n} samples"} if test_n is not None else {})}],
        "description": "The suite's evaluation split, never seen in training; 'mmstd evaluate --suite "
                       f"{suite.name}' reproduces quantitative_analyses.",
    }
    caveats = [*card.sections.get("caveats", []),
               f"Trained for {c.epochs} epochs on {history.samples} synthetic samples ({suite.ref}): a reference "
               "for tooling and fusion comparisons, not a strong model."]
    return card.with_sections(training_data=training, evaluation_data=evaluation, caveats=caveats)


def score_package(package: Any, suite: Any) -> list[dict[str, Any]]:
    """Accuracy and macro F1 of a package on the suite's test split (onnxruntime CPU), with 95% CIs.

    Returns:
        ``quantitative_analyses.results`` entries.
    """
    from mmstd.metrics import bootstrap_intervals
    from mmstd.run import RunSettings, run_suite

    record = run_suite(package, suite, backend=SCORE_BACKEND, split=TEST_SPLIT, settings=RunSettings(latency=False),
                       environment={})
    out = package.card.outputs[0]
    intervals = bootstrap_intervals(record.labels, record.outputs[out.name], task_kind=package.card.task_kind,
                                    labels=package.card.labels, names=list(SCORE_METRICS),
                                    output_kind=out.kind or "probabilities")
    results = []
    for metric in SCORE_METRICS:
        ci = intervals[metric]
        results.append({"suite": suite.ref, "metric": metric, "value": float(ci.estimate),  # type: ignore[union-attr]
                        "backend": SCORE_BACKEND, "ci_low": float(ci.low), "ci_high": float(ci.high)})  # type: ignore[union-attr]
    return results


def train_and_export(
    name: str,
    framework: str,
    suite_ref: Any,
    out: Path,
    *,
    epochs: int | None = None,
    seed: int = 0,
    force: bool = False,
    progress: Progress | None = None,
) -> Any:
    """``mmstd zoo train``: fit zoo model ``name`` on a suite, export it, measure it, seal it at ``out``.

    Parity is enforced on seeded inputs and on the first ``PARITY_SAMPLES`` test samples of the
    suite. The exported graph is then run on the whole test split with onnxruntime CPU and its
    accuracy and macro F1 go into ``quantitative_analyses``; the package is sealed only after that.

    Args:
        name: ``early``, ``late``, ``intermediate`` or ``attention``.
        framework: ``torch`` or ``keras``.
        suite_ref: A built-in suite name, a suite path, or a loaded ``Suite``.
        out: The package directory to create.
        epochs: Override the contract's default epochs (``DEFAULTS``).
        seed: Seeds weights, fit and parity inputs.
        force: Replace an existing package at ``out``.
        progress: Receives one line per epoch, the parity checklist and the score.

    Returns:
        The sealed, verified ``Package``.

    Raises:
        MmstdError: ``E_OUTPUT_EXISTS`` (before any work) when ``out`` exists without ``force``;
            ``E_NOT_FOUND`` for an unknown model, framework or suite; ``E_PARITY`` and the other
            export errors of ``mmstd.exporters.export_model``.
    """
    from mmstd.exporters import ExportOptions, export_model
    from mmstd.exporters.parity import suite_cases
    from mmstd.package import CARD, MANIFEST, build_package

    say = progress or (lambda _line: None)
    out = Path(out)
    if os.path.lexists(out) and not force:  # fail before a minute of training, not after
        raise PackageError(f"{out}: already exists; refusing to overwrite it.", code="E_OUTPUT_EXISTS",
                           hint="choose another --out, or pass --force to replace the package there.")
    suite = _suite(suite_ref)
    model, card, history = train_zoo_model(name, framework, suite, epochs=epochs, seed=seed, progress=say)
    say(f"trained {name} ({framework}) on {history.suite} {history.split}: {history.samples} samples, "
        f"{len(history.epochs)} epochs, final loss {history.epochs[-1].loss:.4f}, "
        f"{history.preprocess_seconds + history.fit_seconds:.1f}s")
    module = "torch_models" if framework == "torch" else "keras_models"
    options = ExportOptions(seed=seed, model_ref=f"mmstd.zoo.{module}:{name} (mmstd zoo train on {history.suite}, "
                                                 f"seed {seed})")
    cases = suite_cases(card, suite, split=TEST_SPLIT, limit=PARITY_SAMPLES)
    with tempfile.TemporaryDirectory(prefix="mmstd-train-") as tmp:
        staged = export_model(model, card, Path(tmp) / "package", framework=framework, options=options,
                              extra_feeds=cases, progress=progress)
        results = score_package(staged, suite)
        for r in results:
            say(f"{r['metric']} on {r['suite']} {TEST_SPLIT} ({r['backend']}): {r['value']:.4f} "
                f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]")
        analyses = {**staged.card.sections.get("quantitative_analyses", {}), "results": results}
        sealed = staged.card.with_sections(quantitative_analyses=analyses)
        files = {e.path: staged.root / e.path for e in staged.files if e.path not in (CARD, MANIFEST)}
        return build_package(out, sealed, files, force=force)


def summary_line(package: Any, out: Path) -> str:
    """The one-line result of ``mmstd zoo train``."""
    card = package.card
    src, par = card.sections["source"], card.sections["parity"]
    scores = ", ".join(f"{r['metric']} {r['value']:.3f}" for r in card.sections["quantitative_analyses"]["results"])
    data = card.sections["training_data"]["datasets"][0]
    return (f"PASSED | package {card.ref} | {src['framework']} trained on {data['name']}@{data['version']} "
            f"{data['split']} | test {scores} (onnxruntime) | parity max abs diff {par['max_abs_diff']:.2g} over "
            f"{par['samples']} samples | {out}")


__all__ = [
    "DEFAULTS", "EpochStats", "TrainConfig", "TrainHistory", "contract_for", "default_config", "fit", "plan_batches",
    "predict", "score_package", "summary_line", "train_and_export", "train_zoo_model", "trained_card",
]
