"""The reference fusion zoo (mmstd.zoo): cards as data, models built from the card, both frameworks alike."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from mmstd.card import ModelCard, load_card
from mmstd.cli import cli
from mmstd.errors import MmstdError
from mmstd.testing import EXAMPLE_CARD
from mmstd.zoo import CARDS_DIR, CONTRACTS, STRATEGIES, card_path, list_zoo, load_zoo_card
from mmstd.zoo.spec import encoder_kind, zoo_spec

KERAS_WARNING = "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"


def _cli(*args: str):
    return CliRunner().invoke(cli, list(args))


# ------------------------------------------------------------------------------- cards (data)


def test_every_strategy_has_a_card_for_every_contract_and_nothing_else() -> None:
    expected = {f"{s}.{c}.yaml" for s in STRATEGIES for c in CONTRACTS}
    assert {p.name for p in CARDS_DIR.iterdir()} == expected
    assert [(e.name, e.contracts, e.frameworks) for e in list_zoo()] == [(s, CONTRACTS, ("torch", "keras")) for s in STRATEGIES]


@pytest.mark.parametrize("path", sorted(CARDS_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_zoo_card_passes_mmstd_validate(path: Path) -> None:
    result = _cli("validate", str(path))
    assert result.exit_code == 0, result.output
    strategy, contract = path.name.split(".")[:2]
    card = load_card(path)
    assert card.name == f"zoo-{strategy}-{contract}" and card.fusion_strategy == strategy
    assert card.sections["training_data"]["datasets"][0]["name"] == contract


@pytest.mark.parametrize("contract", CONTRACTS)
def test_cards_of_one_contract_share_the_whole_machine_contract(contract: str) -> None:
    docs = [yaml.safe_load(card_path(s, contract).read_text()) for s in STRATEGIES]
    for key in ("task", "inputs", "outputs", "export", "evaluation_data", "training_data"):
        assert all(d[key] == docs[0][key] for d in docs), key


def test_digits_av_is_the_example_cards_contract() -> None:
    example = yaml.safe_load(EXAMPLE_CARD.read_text())
    zoo = yaml.safe_load(card_path("early", "digits-av").read_text())
    assert zoo["inputs"] == example["inputs"] and zoo["outputs"] == example["outputs"] and zoo["task"] == example["task"]


def test_shapes_itm_is_a_binary_image_text_contract() -> None:
    card = load_zoo_card("late", "shapes-itm")
    assert (card.task_kind, card.labels) == ("binary", ("mismatch", "match"))
    image, text = card.inputs
    assert (image.shape, image.value_range, [op["op"] for op in image.preprocessing]) == \
        (("batch", 32, 32, 3), (0.0, 1.0), ["rgb", "resize", "scale", "cast"])
    assert (text.dtype, text.shape, text.value_range) == ("int64", ("batch", 32), (0, 63))
    assert dict(text.preprocessing[0]) == {"op": "tokenize", "kind": "chars", "lowercase": True, "max_length": 32,
                                           "vocab_size": 64}
    assert card.outputs[0].shape == ("batch", 2)


@pytest.mark.parametrize(("name", "contract", "message"), [
    ("erly", "digits-av", r"E_NOT_FOUND: Unknown zoo model 'erly'\. Did you mean 'early'\? Available: early, late, "
                          r"intermediate, attention\."),
    ("late", "digits", r"E_NOT_FOUND: Unknown zoo contract 'digits'\. Did you mean 'digits-av'\?"),
])
def test_unknown_names_suggest_the_closest(name: str, contract: str, message: str) -> None:
    with pytest.raises(MmstdError, match=message):
        card_path(name, contract)


def test_mmstd_zoo_list_shows_every_model_and_contract() -> None:
    result = _cli("zoo", "list")
    assert result.exit_code == 0
    for name in STRATEGIES:
        assert result.output.count(f"{name} ") >= 1
    assert result.output.count("contracts: digits-av, shapes-itm") == 4


# --------------------------------------------------------------------------- built from the card


def test_the_card_decides_encoders_and_head_width() -> None:
    digits, itm = load_zoo_card("early"), load_zoo_card("early", "shapes-itm")
    assert [encoder_kind(s) for s in digits.inputs] == ["image-nhwc", "tokens", "sequence"]
    assert zoo_spec(digits).n_out == 10 and zoo_spec(itm).n_out == 2
    assert zoo_spec(digits).vocab == {"text": 64} and zoo_spec(digits).activation == "softmax"


def test_an_input_no_encoder_reads_is_refused(example_card: ModelCard) -> None:
    doc = copy.deepcopy(example_card.to_dict())
    doc["inputs"].append({"name": "volume", "modality": "tabular", "dtype": "float32", "shape": ["batch", 2, 2, 2, 2],
                          "preprocessing": []})
    with pytest.raises(MmstdError, match=r"E_CARD_SCHEMA: zoo: input 'volume' \(tabular, float32, shape \['batch', 2, 2, "
                                         r"2, 2\]\) fits no zoo encoder\."):
        zoo_spec(ModelCard.from_dict(doc))


def test_a_card_with_two_outputs_is_not_a_zoo_card(example_card: ModelCard) -> None:
    doc = copy.deepcopy(example_card.to_dict())
    doc["outputs"].append({"name": "emb", "kind": "embedding", "dtype": "float32", "shape": ["batch", 8]})
    with pytest.raises(MmstdError, match=r"E_CARD_SCHEMA: zoo: card 'example-fusion@0.1.0' must have exactly one"):
        zoo_spec(ModelCard.from_dict(doc))


@pytest.mark.torch
def test_torch_models_are_seeded_and_fit_other_contracts(example_card: ModelCard) -> None:
    torch = pytest.importorskip("torch")
    from mmstd.exporters import parity
    from mmstd.exporters.torch import run_model
    from mmstd.zoo import build_zoo_model

    card = load_zoo_card("intermediate")
    a, b, c = (build_zoo_model("intermediate", "torch", card, seed=s) for s in (1, 1, 2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.state_dict()["gate.weight"], c.state_dict()["gate.weight"])
    doc = copy.deepcopy(example_card.to_dict())  # a different suite: audio frames vary, a tabular input, 4 labels
    doc["inputs"][2]["shape"] = ["batch", "frames", 13]
    doc["inputs"].append({"name": "meta", "modality": "tabular", "dtype": "float32", "shape": ["batch", 5], "preprocessing": []})
    doc["task"]["labels"] = ["a", "b", "c", "d"]
    doc["outputs"][0]["shape"] = ["batch", 4]
    other = ModelCard.from_dict(doc)
    for name in STRATEGIES:
        model = build_zoo_model(name, "torch", other, seed=0)
        out = run_model(model, parity.random_feeds(other, {"batch": 3, "frames": 9}, seed=0), other)["probabilities"]
        assert out.shape == (3, 4) and np.allclose(out.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.keras
@pytest.mark.filterwarnings(KERAS_WARNING)
@pytest.mark.parametrize("name", STRATEGIES)
def test_keras_models_have_no_code_and_load_in_safe_mode(name: str, tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    pytest.importorskip("tf2onnx")
    from mmstd.exporters.keras import scan_keras_archive
    from mmstd.zoo import build_zoo_model

    card = load_zoo_card(name)
    model = build_zoo_model(name, "keras", card, seed=0)
    model.save(tmp_path / f"{name}.keras")
    scan_keras_archive(tmp_path / f"{name}.keras")  # no Lambda, no foreign module, no custom object
    again = keras.models.load_model(tmp_path / f"{name}.keras", safe_mode=True, compile=False)
    assert [w.path for w in again.weights] == [w.path for w in model.weights]


# -------------------------------------------------------------------------- both frameworks alike


@pytest.mark.torch
@pytest.mark.keras
@pytest.mark.filterwarnings(KERAS_WARNING)
@pytest.mark.parametrize("name", STRATEGIES)
def test_keras_and_torch_versions_have_identical_graph_io(tmp_path_factory, name: str) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("tf2onnx")
    from exporter_fixtures import graph_io, zoo_package

    torch_io = graph_io(zoo_package(tmp_path_factory, "torch", name))
    keras_io = graph_io(zoo_package(tmp_path_factory, "keras", name))
    assert torch_io == keras_io
    assert [n for side, n, _, _ in torch_io if side == "input"] == ["image", "text", "audio"]


@pytest.mark.torch
@pytest.mark.keras
@pytest.mark.filterwarnings(KERAS_WARNING)
def test_zoo_export_early_in_both_frameworks_validates_and_runs_at_batch_1_and_7(tmp_path: Path) -> None:
    """The issue's definition of done, through the command line."""
    pytest.importorskip("torch")
    pytest.importorskip("tf2onnx")
    from exporter_fixtures import graph_io, ort_run

    from mmstd.exporters.parity import random_feeds

    a, b = tmp_path / "A", tmp_path / "B"
    for framework, out in (("torch", a), ("keras", b)):
        result = _cli("zoo", "export", "early", "--framework", framework, "--out", str(out))
        assert result.exit_code == 0, result.output
        assert f"PASSED | package zoo-early-digits-av@0.1.0 | {framework} via " in result.output
        assert _cli("validate", str(out)).exit_code == 0
    card = load_zoo_card("early")
    for batch in (1, 7):
        feeds = random_feeds(card, {"batch": batch}, seed=batch)
        pa, pb = ort_run(a, feeds)["probabilities"], ort_run(b, feeds)["probabilities"]
        assert pa.shape == pb.shape == (batch, 10)
    assert graph_io(a) == graph_io(b)
