"""``mmstd card render --format hf``: a Hugging Face README from a card and its reports."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from report_fixtures import fixture_card_dict, fixture_report

from mmstd.card import ModelCard
from mmstd.cli import cli
from mmstd.errors import ReportError
from mmstd.hfcard import hf_metric, render_hf_readme
from mmstd.reports import write_report


def _front_matter(text: str) -> dict[str, Any]:
    assert text.startswith("---\n")
    head, sep, _ = text[4:].partition("\n---\n")
    assert sep, "front matter is not closed"
    return yaml.safe_load(head)


@pytest.fixture
def card() -> ModelCard:
    return ModelCard.from_dict(fixture_card_dict())


def test_readme_matches_golden(card: ModelCard, golden: Any) -> None:
    golden.check("reports/hf-README.md", render_hf_readme(card, [fixture_report()]))


def test_front_matter_holds_license_tags_and_model_index(card: ModelCard) -> None:
    meta = _front_matter(render_hf_readme(card, [fixture_report()]))
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "onnx"
    assert meta["tags"] == ["mmstd", "onnx", "multimodal", "late-fusion", "multiclass", "image", "text", "torch"]
    (entry,) = meta["model-index"]
    assert entry["name"] == "fusion-demo"
    (result,) = entry["results"]
    assert result["task"] == {"type": "multimodal-classification", "name": "Multimodal classification (image + text)"}
    assert result["dataset"] == {"type": "digits-av", "name": "digits-av@1", "split": "test"}
    by_name = {m["name"]: m for m in result["metrics"]}
    assert by_name["Accuracy, ort-cpu"] == {"type": "accuracy", "value": 0.897436, "name": "Accuracy, ort-cpu",
                                            "verified": False}
    assert by_name["F1 (macro), ort-cpu"]["type"] == "f1"
    assert by_name["F1 (macro), ort-cpu"]["args"] == {"average": "macro"}
    assert all(set(m) >= {"type", "value"} and isinstance(m["value"], float) for m in result["metrics"])


def test_one_result_per_report_and_no_index_without_reports(card: ModelCard) -> None:
    other = fixture_report()
    other["suite"].update(name="vqa-tiny", version=2, ref="vqa-tiny@2", split=None)
    meta = _front_matter(render_hf_readme(card, [fixture_report(), other]))
    datasets = [r["dataset"] for r in meta["model-index"][0]["results"]]
    assert datasets == [{"type": "digits-av", "name": "digits-av@1", "split": "test"},
                        {"type": "vqa-tiny", "name": "vqa-tiny@2"}]
    bare = render_hf_readme(card)
    assert "model-index" not in _front_matter(bare)
    assert "### Reported results" in bare and "mmstd evaluate . --suite SUITE" in bare


def test_single_modality_task_and_unknown_license() -> None:
    doc = fixture_card_dict()
    doc["inputs"] = doc["inputs"][:1]
    doc["model_details"]["license"] = "LicenseRef-Acme Internal"
    meta = _front_matter(render_hf_readme(ModelCard.from_dict(doc), [fixture_report()]))
    assert (meta["license"], meta["license_name"]) == ("other", "licenseref-acme-internal")
    assert meta["model-index"][0]["results"][0]["task"]["type"] == "image-classification"


@pytest.mark.parametrize(("name", "expected"), [
    ("accuracy", {"type": "accuracy"}), ("recall_weighted", {"type": "recall", "args": {"average": "weighted"}}),
    ("top_2_accuracy", {"type": "top_k_accuracy", "args": {"k": 2}}), ("log_loss", {"type": "log_loss"}),
])
def test_metric_names_map_to_hub_metric_ids(name: str, expected: dict[str, Any]) -> None:
    assert hf_metric(name) == expected


def test_report_of_another_package_is_refused(card: ModelCard) -> None:
    with pytest.raises(ReportError, match="E_DIGEST_MISMATCH") as e:
        render_hf_readme(card, [fixture_report()], digest="0" * 64)
    assert "differs from the package's 000000000000…" in e.value.problems[0]
    with pytest.raises(ReportError, match="does not describe package 'fusion-demo@1.2.0'"):
        render_hf_readme(card, [fixture_report(version="1.3.0")])


def test_card_text_is_escaped(card: ModelCard) -> None:
    doc = fixture_card_dict()
    doc["caveats"] = ["<img src=x onerror=alert(1)> | [click](http://evil)"]
    text = render_hf_readme(ModelCard.from_dict(doc))
    assert "- \\<img src=x onerror=alert(1)\\> \\| \\[click\\](http://evil)" in text


# ------------------------------------------------------------------------------------------ CLI


def _report_for(package_dir: Path, tmp: Path, **changes: Any) -> Path:
    from mmstd.package import open_package

    pkg = open_package(package_dir)
    report = fixture_report(labels=pkg.card.labels, name=pkg.card.name, version=pkg.card.version,
                            digest=pkg.digest, path=pkg.root.name, fusion_strategy=pkg.card.fusion_strategy)
    report.update(changes)
    return write_report(report, tmp, ["json"])["json"]


def test_cli_renders_a_readme_for_a_sealed_package(tiny_package_dir: Path, tmp_path: Path) -> None:
    report = _report_for(tiny_package_dir, tmp_path / "run")
    out = tmp_path / "README.md"
    args = ["card", "render", str(tiny_package_dir), "--report", str(report), "--format", "hf", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    meta = _front_matter(out.read_text("utf-8"))
    (result_entry,) = meta["model-index"][0]["results"]
    assert meta["model-index"][0]["name"] == "example-fusion"
    assert result_entry["task"]["type"] == "multimodal-classification"
    assert any(m["type"] == "accuracy" for m in result_entry["metrics"])
    assert "## Inputs and outputs" in out.read_text("utf-8")

    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1 and "E_OUTPUT_EXISTS" in again.output
    assert CliRunner().invoke(cli, [*args, "--force"]).exit_code == 0
    stdout = CliRunner().invoke(cli, args[:-2])
    assert stdout.exit_code == 0 and stdout.output == out.read_text("utf-8")


def test_cli_refuses_a_report_of_another_package(tiny_package_dir: Path, tmp_path: Path) -> None:
    report = _report_for(tiny_package_dir, tmp_path / "run")
    doc = json.loads(report.read_text())
    doc["package"]["digest"] = "f" * 64
    report.write_text(json.dumps(doc))
    result = CliRunner().invoke(cli, ["card", "render", str(tiny_package_dir), "--report", str(report)])
    assert result.exit_code == 1
    assert "E_DIGEST_MISMATCH" in result.output and "Traceback" not in result.output
