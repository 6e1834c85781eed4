"""Export-time parity (mmstd.exporters.parity) on tiny ONNX graphs built in code; no framework needed.

The "source framework" here is mmstd.testing's NumPy implementation of the tiny fusion graph, so
a faithful graph must pass and a graph whose weights differ from the source's must fail.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from mmstd.card import ModelCard
from mmstd.errors import MmstdError
from mmstd.exporters import parity
from mmstd.testing import tiny_fusion_model, tiny_reference, tiny_weights


def _card_with(example_card: ModelCard, **edits: object) -> ModelCard:
    doc = copy.deepcopy(example_card.to_dict())
    for key, value in edits.items():
        doc[key] = value
    return ModelCard.from_dict(doc)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, example_card: ModelCard) -> tuple[Path, dict[str, np.ndarray]]:
    import onnx

    weights = tiny_weights(example_card, seed=3)
    path = tmp_path_factory.mktemp("parity") / "model.onnx"
    onnx.save(tiny_fusion_model(example_card, weights), path)
    return path, weights


def test_reference_case_comes_first_and_other_batches_were_not_used_at_export(example_card: ModelCard) -> None:
    cases = parity.parity_cases(example_card, seed=0)
    assert cases[0].label == "seeded batch=2 (export sizes)" and cases[0].rows == parity.EXPORT_BATCH
    rows = [c.rows for c in cases[1:]]
    assert rows == list(parity.PARITY_BATCHES) and parity.EXPORT_BATCH not in rows and len(set(rows)) >= 2
    for case in cases:
        assert set(case.feeds) == {"image", "text", "audio"}
        img, txt, aud = case.feeds["image"], case.feeds["text"], case.feeds["audio"]
        assert img.dtype == np.float32 and img.shape[1:] == (28, 28, 1) and 0.0 <= img.min() and img.max() <= 1.0
        assert txt.dtype == np.int64 and txt.shape[1:] == (16,) and 0 <= txt.min() and txt.max() <= 63
        assert aud.dtype == np.float32 and aud.shape[1:] == (50, 13) and -3.0 <= aud.min() and aud.max() <= 3.0
    big = cases[-1].feeds
    assert (big["text"] == 0).any(), "token rows should end in padding"
    assert abs(float(big["audio"].mean())) < 0.2, "audio features are standardized (mean ~0)"


def test_every_other_named_axis_gets_two_sizes_not_used_at_export(example_card: ModelCard) -> None:
    doc = example_card.to_dict()
    doc["inputs"][2]["shape"] = ["batch", "frames", 13]
    card = ModelCard.from_dict(doc)
    sizes = parity.export_sizes(card)
    assert sizes["batch"] == 2 and sizes["frames"] not in parity.PARITY_AXIS_SIZES and sizes["frames"] != 13
    cases = parity.parity_cases(card)
    frames = [c.feeds["audio"].shape[1] for c in cases]
    assert frames[0] == sizes["frames"]
    assert sorted(set(frames) - {sizes["frames"]}) == sorted(parity.PARITY_AXIS_SIZES)
    axis_cases = [c for c in cases if c.feeds["audio"].shape[1] in parity.PARITY_AXIS_SIZES]
    assert [c.rows for c in axis_cases] == [parity.AXIS_CASE_BATCH] * 2
    assert "frames=5" in axis_cases[0].label


def test_export_size_of_a_named_axis_avoids_every_fixed_dim(example_card: ModelCard) -> None:
    doc = example_card.to_dict()
    doc["inputs"] = [{"name": n, "modality": "tabular", "dtype": "float32", "shape": shape, "preprocessing": []}
                     for n, shape in (("a", ["batch", 12]), ("b", ["batch", 13, 14]), ("c", ["batch", "rows", 4]))]
    sizes = parity.export_sizes(ModelCard.from_dict(doc))
    assert sizes == {"batch": parity.EXPORT_BATCH, "rows": 15}


def test_cases_are_seeded(example_card: ModelCard) -> None:
    a, b, c = (parity.parity_cases(example_card, seed=s) for s in (4, 4, 5))
    assert all(np.array_equal(x.feeds["audio"], y.feeds["audio"]) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0].feeds["audio"], c[0].feeds["audio"])


def _sources(card: ModelCard, weights: dict[str, np.ndarray], cases: list[parity.ParityCase]) -> list[dict]:
    return [tiny_reference(card, weights, dict(c.feeds)) for c in cases]


def test_a_faithful_graph_passes_and_its_figures_fit_the_card(example_card: ModelCard, tiny) -> None:
    path, weights = tiny
    cases = parity.parity_cases(example_card)
    report = parity.compare(example_card, path, cases, _sources(example_card, weights, cases), source="numpy")
    assert report.passed and report.samples == 2 + sum(parity.PARITY_BATCHES)
    assert report.max_abs_diff < 1e-5 and report.argmax_agreement == 1.0
    lines = report.checklist()
    assert lines[0].startswith("Validating the ONNX graph on onnxruntime-cpu") and "against numpy" in lines[0]
    assert all(line.startswith("  [✓] ") for line in lines[1:-1]) and lines[-1].startswith("  PASSED: 4/4 checks")
    section = report.to_card()
    sealed = example_card.with_sections(parity=section)  # validates against the schema
    assert sealed.sections["parity"]["checks"][1]["inputs"] == "seeded batch=1"
    assert sealed.sections["parity"]["checks"][1]["shape"] == [1, 10]
    report.raise_for_failures(where="tiny")  # no error


def test_perturbed_weights_fail_with_every_failing_check_and_its_numbers(example_card: ModelCard, tiny) -> None:
    path, weights = tiny
    wrong = {k: v.copy() for k, v in weights.items()}
    wrong["head.weight"] = -wrong["head.weight"]  # as if the exporter had lost a sign
    cases = parity.parity_cases(example_card)
    report = parity.compare(example_card, path, cases, _sources(example_card, wrong, cases), source="numpy")
    assert not report.passed and report.max_abs_diff > 0.1 and report.argmax_agreement < 0.5
    assert all(line.startswith("  [x] ") for line in report.checklist()[1:-1])
    with pytest.raises(MmstdError, match=r"E_PARITY: tiny: onnxruntime disagrees with numpy on 4 of 4 checks "
                                         r"\(outputs 'probabilities'\); no package was written") as info:
        report.raise_for_failures(where="tiny")
    problems = info.value.problems
    assert len(problems) == 4 and problems[2].startswith("seeded batch=7: 'probabilities' shape (7, 10), max |diff| ")
    assert "exceed atol + rtol * |source|" in problems[0]


def _baked_batch_model(path: Path) -> None:
    """x[batch, 4] -> Reshape to the constant [2, 4] (a size baked in at export) -> Softmax."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Softmax", ["r"], ["probabilities"], axis=-1)],
        "baked", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 4])],
        initializer=[numpy_helper.from_array(np.array([2, 4], dtype=np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, path)


def _vector_card(example_card: ModelCard) -> ModelCard:
    doc = example_card.to_dict()
    doc["inputs"] = [{"name": "x", "modality": "tabular", "dtype": "float32", "shape": ["batch", 4],
                      "value_range": [-1.0, 1.0], "preprocessing": []}]
    doc["outputs"] = [{"name": "probabilities", "kind": "probabilities", "dtype": "float32", "shape": ["batch", 4]}]
    doc["task"] = {"kind": "multiclass", "labels": ["a", "b", "c", "d"]}
    return ModelCard.from_dict(doc)


def test_onnxruntime_raising_on_a_case_is_a_failed_check_not_a_crash(example_card: ModelCard, tmp_path: Path) -> None:
    card = _vector_card(example_card)
    path = tmp_path / "baked.onnx"
    _baked_batch_model(path)
    cases = parity.parity_cases(card)

    def softmax(x: np.ndarray) -> np.ndarray:
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    report = parity.compare(card, path, cases, [{"probabilities": softmax(c.feeds["x"])} for c in cases])
    verdicts = [(c.case, c.passed) for c in report.checks]
    assert verdicts[0] == ("seeded batch=2 (export sizes)", True)
    assert [v for _, v in verdicts[1:]] == [False, False, False]
    assert "onnxruntime raised: " in report.checks[1].line(report.tolerance)
    with pytest.raises(MmstdError, match="E_PARITY") as info:
        report.raise_for_failures(where="baked")
    assert len(info.value.problems) == 3


def test_extra_batches_are_appended_after_the_seeded_cases(example_card: ModelCard) -> None:
    extra = parity.random_feeds(example_card, {"batch": 5}, seed=9)
    cases = parity.parity_cases(example_card, extra=[extra])
    assert cases[-1].label == "extra batch 0" and cases[-1].rows == 5


@pytest.mark.parametrize(("edit", "message"), [
    (lambda f: f.pop("audio"), r"missing \['audio'\]"),
    (lambda f: f.__setitem__("text", f["text"].astype(np.int32)), r"input 'text' is int32, the card says int64"),
    (lambda f: f.__setitem__("image", f["image"][:, :, :27]), r"input 'image' has shape \(5, 28, 27, 1\)"),
    (lambda f: f.__setitem__("audio", f["audio"][:4]), r"input 'audio' has 4 rows, another input 5"),
])
def test_an_extra_batch_that_breaks_the_contract_is_refused(example_card: ModelCard, edit, message: str) -> None:
    feeds = parity.random_feeds(example_card, {"batch": 5}, seed=9)
    edit(feeds)
    with pytest.raises(MmstdError, match=rf"E_IO_CONTRACT: extra parity batch 0: .*{message}"):
        parity.parity_cases(example_card, extra=[feeds])


def test_argmax_agreement_counts_ties_within_atol_as_agreeing() -> None:
    ref = np.array([[0.5, 0.5 - 1e-6, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    got = np.array([[0.5 - 1e-6, 0.5, 0.0], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1]])
    assert parity._argmax_agreement(got, ref, atol=1e-4) == pytest.approx(2 / 3)


def test_nan_in_the_source_fails_parity(example_card: ModelCard, tiny) -> None:
    path, weights = tiny
    cases = parity.parity_cases(example_card)[:2]
    sources = _sources(example_card, weights, cases)
    sources[1]["probabilities"][0, 0] = np.nan
    report = parity.compare(example_card, path, cases, sources)
    assert [c.passed for c in report.checks] == [True, False]
    assert report.checks[1].problem == "the source produced NaN/Inf"
    assert report.to_card()["max_abs_diff"] == 1e300  # strict JSON has no Infinity


def test_tolerances_come_from_the_cards_export_section(example_card: ModelCard) -> None:
    assert parity.Tolerance.from_card(example_card) == parity.Tolerance(1e-4, 1e-3, 1.0)
    card = _card_with(example_card, export={"atol": 0.01, "rtol": 0.1, "argmax_agreement_min": 0.9})
    assert parity.Tolerance.from_card(card) == parity.Tolerance(0.01, 0.1, 0.9)


def test_a_wider_atol_in_the_card_accepts_a_small_drift(example_card: ModelCard, tiny) -> None:
    path, weights = tiny
    wrong = {k: v.copy() for k, v in weights.items()}
    wrong["head.bias"] += 1e-3  # shifting every logit equally leaves softmax nearly unchanged
    wrong["head.weight"][0, 0] += 1e-4
    cases = parity.parity_cases(example_card)
    sources = _sources(example_card, wrong, cases)
    strict = parity.compare(example_card, path, cases, sources, tolerance=parity.Tolerance(atol=1e-9, rtol=0.0))
    loose = parity.compare(example_card, path, cases, sources, tolerance=parity.Tolerance(atol=1e-2, rtol=1e-2))
    assert not strict.passed and loose.passed


def test_source_outputs_must_cover_every_case(example_card: ModelCard, tiny) -> None:
    path, weights = tiny
    cases = parity.parity_cases(example_card)
    with pytest.raises(MmstdError, match=r"E_EXPORT: the source produced outputs for 1 of 4 parity cases"):
        parity.compare(example_card, path, cases, _sources(example_card, weights, cases[:1]))


def test_a_graph_onnxruntime_cannot_load_is_an_export_error(example_card: ModelCard, tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(MmstdError, match=r"E_EXPORT: model.onnx: onnxruntime cannot load the exported graph"):
        parity.compare(example_card, bad, [], [])


def test_reference_file_holds_input_and_output_tensors(example_card: ModelCard, tiny, tmp_path: Path) -> None:
    _, weights = tiny
    case = parity.parity_cases(example_card)[0]
    outputs = tiny_reference(example_card, weights, dict(case.feeds))
    path = parity.write_reference(tmp_path / "reference.safetensors", case, outputs, framework="numpy")
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        assert sorted(f.keys()) == ["input.audio", "input.image", "input.text", "output.probabilities"]
        assert f.metadata() == {"framework": "numpy", "inputs": "seeded batch=2 (export sizes)"}
    inputs, outs = parity.read_reference(path)
    assert np.array_equal(inputs["text"], case.feeds["text"]) and np.array_equal(outs["probabilities"], outputs["probabilities"])


def test_a_suites_samples_become_labelled_cases_after_the_seeded_ones(example_card: ModelCard, tiny) -> None:
    path, weights = tiny
    suite = parity.suite_cases(example_card, "digits-av", limit=20, batch_size=8)
    assert [c.label for c in suite] == ["suite digits-av@1 test[0:8]", "suite digits-av@1 test[8:16]",
                                        "suite digits-av@1 test[16:20]"]
    cases = parity.parity_cases(example_card, extra=suite)
    assert [c.label for c in cases[-3:]] == [c.label for c in suite] and cases[-1].rows == 4
    report = parity.compare(example_card, path, cases, _sources(example_card, weights, cases))
    assert report.passed and report.samples == 2 + sum(parity.PARITY_BATCHES) + 20
    assert report.to_card()["checks"][-1]["inputs"] == "suite digits-av@1 test[16:20]"


def test_a_suite_that_does_not_fit_the_card_is_refused(example_card: ModelCard) -> None:
    with pytest.raises(MmstdError, match=r"E_IO_CONTRACT: Suite 'shapes-itm@1' has no audio field for input 'audio'"):
        parity.suite_cases(example_card, "shapes-itm", limit=4)
