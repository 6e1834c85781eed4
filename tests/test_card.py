"""Model cards: the example validates, every invalid card names its JSON path and code."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from mmstd.card import ModelCard, TensorSpec, load_card
from mmstd.errors import CardError
from mmstd.testing import EXAMPLE_CARD


@pytest.fixture
def card_doc() -> dict:
    return yaml.safe_load(EXAMPLE_CARD.read_text())


def _problems(doc: dict, tmp_path: Path) -> list[str]:
    path = tmp_path / "card.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(CardError) as info:
        load_card(path)
    assert info.value.code == "E_CARD_SCHEMA"
    return list(info.value.problems)


def test_example_card_is_valid_draft(example_card: ModelCard) -> None:
    assert example_card.ref == "example-fusion@0.1.0"
    assert [s.modality for s in example_card.inputs] == ["image", "text", "audio"]
    assert example_card.inputs[0].axes == {0: "batch"}
    assert not example_card.sealed


def test_round_trip(example_card: ModelCard) -> None:
    assert ModelCard.from_dict(example_card.to_dict()) == example_card
    spec = example_card.inputs[1]
    assert TensorSpec.from_dict(spec.to_dict()) == spec


def test_concrete_shape(example_card: ModelCard) -> None:
    assert example_card.inputs[0].concrete_shape({"batch": 7}) == (7, 28, 28, 1)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(colour="red"), "card.json: $: unknown field 'colour'; expected one of:"),
        (lambda d: d["inputs"][1]["shape"].__setitem__(0, -1),
         "card.json: $.inputs[1].shape[0]: expected a positive int or an axis name, got -1."),
        (lambda d: d["inputs"][0].update(modality="smell"),
         "card.json: $.inputs[0].modality: expected one of 'image', 'text', 'audio', 'tabular', got \"smell\"."),
        (lambda d: d["inputs"][0].update(dtype="float8"), "card.json: $.inputs[0].dtype: expected one of"),
        (lambda d: d["task"].update(kind="regression"), "card.json: $.task.kind: expected one of 'multiclass'"),
        (lambda d: d["fusion"].update(strategy="magic"), "card.json: $.fusion.strategy: expected one of 'early'"),
        (lambda d: d["task"].pop("labels"), "card.json: $.task: missing required field 'labels'."),
        (lambda d: d.pop("model_details"), "card.json: $: missing required field 'model_details'."),
        (lambda d: d["model_details"].update(version=1), "card.json: $.model_details.version: expected a string, got 1."),
        (lambda d: d["export"].update(atol="0.1"), "card.json: $.export.atol: expected a number, got \"0.1\"."),
        (lambda d: d["model_details"].update(date="25/11/2026"), "card.json: $.model_details.date: expected a date YYYY-MM-DD"),
        (lambda d: d["inputs"][0]["preprocessing"].append({"size": 3}), "card.json: $.inputs[0].preprocessing[4]: missing required field 'op'."),
        (lambda d: d["inputs"][1].update(name="image"),
         "card.json: $.inputs[1].name: 'image' is already used by $.inputs[0]; expected unique tensor names."),
        (lambda d: d["outputs"][0]["shape"].__setitem__(1, 9), "card.json: $.outputs[0].shape[1]: expected 10 (one per label), got 9."),
        (lambda d: d["inputs"][0].update(shape=["batch", "batch", 28, 1]), "card.json: $.inputs[0].shape: axis name 'batch' appears twice"),
        (lambda d: d["task"].update(kind="binary"), "card.json: $.task.labels: a binary task needs exactly 2 labels, got 10."),
        (lambda d: d.update(schema_version="2.0"), "card.json: $.schema_version: expected '1.0', got \"2.0\"."),
    ],
)
def test_invalid_cards_name_their_json_path(card_doc: dict, tmp_path: Path, mutate, expected: str) -> None:
    doc = copy.deepcopy(card_doc)
    mutate(doc)
    problems = _problems(doc, tmp_path)
    assert any(p.startswith(expected) for p in problems), problems


def test_every_problem_is_listed(card_doc: dict, tmp_path: Path) -> None:
    card_doc["colour"] = "red"
    card_doc["inputs"][1]["shape"][0] = -1
    card_doc["task"]["kind"] = "regression"
    assert len(_problems(card_doc, tmp_path)) == 3


def test_yaml_syntax_problem_is_card_json(tmp_path: Path) -> None:
    path = tmp_path / "card.yaml"
    path.write_text(EXAMPLE_CARD.read_text() + "task: {kind: binary}\n")
    with pytest.raises(CardError, match=r"card\.yaml: line \d+: duplicate key 'task'") as info:
        load_card(path)
    assert info.value.code == "E_CARD_JSON"


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    path = tmp_path / "card.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(CardError, match=r"card\.yaml: \$: expected an object"):
        load_card(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"nope\.yaml: no such file"):
        load_card(tmp_path / "nope.yaml")


def test_with_sections_revalidates(example_card: ModelCard) -> None:
    with pytest.raises(CardError, match=r"\$\.source: missing required field"):
        example_card.with_sections(source={"framework": "torch"})
