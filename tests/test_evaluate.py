"""mmstd evaluate end to end: reports that validate, a record that re-scores, exit codes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mmstd.cli import cli
from mmstd.evaluate import evaluate
from mmstd.record import load_records
from mmstd.reports import load_report
from mmstd.reports.make import make_report
from mmstd.run import RunSettings, latency_protocol
from mmstd.suite import load_suite

SETTINGS = RunSettings(batch_size=32, limit=60, quick=True)


@pytest.fixture(scope="module")
def evaluation(tiny_package_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("eval") / "r"
    return evaluate(tiny_package_dir, "digits-av", out_dir=out, variants=["all"], settings=SETTINGS, resamples=200)


def test_writes_every_format_and_a_valid_report(evaluation) -> None:
    assert {p.name for p in evaluation.out_dir.iterdir()} == {
        "report.json", "report.md", "report.html", "junit.xml", "per_class.csv", "record.npz"}
    report = load_report(evaluation.out_dir / "report.json")  # schema + consistency checks
    backend = report["backends"][0]
    assert backend["providers_active"] == ["CPUExecutionProvider"]
    headline = backend["scores"]["headline"]
    for metric in ("accuracy", "f1_macro", "recall_macro"):
        assert headline[metric]["ci_low"] <= headline[metric]["value"] <= headline[metric]["ci_high"]
    single = backend["latency"]["single_stream"]
    assert single["queries"] >= 64 and single["latency_p50_ms"] <= single["latency_p90_ms"] <= single["latency_p99_ms"]
    assert report["suite"]["samples"] == 60 and report["limit"] == 60 and report["quick"] is True
    assert report["parity"]["reference"][0]["passed"] is True


def test_every_variant_has_deltas_with_cis(evaluation) -> None:
    report = evaluation.report
    assert [v["name"] for v in report["variants"]] == ["image-missing", "text-missing", "audio-missing", "image-noise"]
    clean = report["backends"][0]["scores"]["headline"]["accuracy"]["value"]
    for v in report["variants"]:
        d = v["deltas"]["accuracy"]
        assert d["delta"] == pytest.approx(v["scores"]["headline"]["accuracy"]["value"] - clean, abs=1e-9)
        assert d["ci_low"] <= d["ci_high"]


def test_record_rescores_without_rerunning(evaluation) -> None:
    records = list(load_records(evaluation.out_dir / "record.npz").values())
    assert len(records) == 5
    report = evaluation.report
    again = make_report(records, package={**report["package"]}, suite=report["suite"],
                        protocol=latency_protocol(load_suite("digits-av"), quick=True), quick=True, limit=60,
                        record_file=report["record"], resamples=200)
    assert again["backends"][0]["scores"] == report["backends"][0]["scores"]
    assert [(v["scores"], v["deltas"]) for v in again["variants"]] == [
        (v["scores"], v["deltas"]) for v in report["variants"]]


def test_refuses_to_overwrite_an_evaluation(evaluation, tiny_package_dir: Path) -> None:
    with pytest.raises(Exception, match="already holds record.npz, report.json; refusing to overwrite") as info:
        evaluate(tiny_package_dir, "digits-av", out_dir=evaluation.out_dir, settings=SETTINGS)
    assert info.value.code == "E_OUTPUT_EXISTS"


def test_cli_quick_run_and_missing_gpu(tiny_package_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["evaluate", str(tiny_package_dir), "--suite", "digits-av", "--quick", "--limit", "32",
                             "--out", str(tmp_path / "r"), "--format", "json,md"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.strip().splitlines()[-1].endswith("report.json")
    assert json.loads((tmp_path / "r" / "report.json").read_text())["backends"][0]["name"] == "ort-cpu"
    gpu = runner.invoke(cli, ["evaluate", str(tiny_package_dir), "--suite", "digits-av", "--quick",
                              "--backend", "ort-cuda", "--out", str(tmp_path / "g")])
    try:
        import onnxruntime

        has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if not has_cuda:
        assert gpu.exit_code == 4
        assert "Backend 'ort-cuda' requested CUDAExecutionProvider but" in gpu.output
        assert "Traceback" not in gpu.output
        assert not (tmp_path / "g").exists()


def test_cli_usage_errors(tiny_package_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(cli, ["evaluate", str(tiny_package_dir), "--suite", "digits-av", "--format", "pdf"])
    assert bad.exit_code == 2 and "unknown format(s) pdf" in bad.output
    nosuite = runner.invoke(cli, ["evaluate", str(tiny_package_dir), "--suite", "digits-avv", "--out", str(tmp_path / "x")])
    assert nosuite.exit_code == 1 and "digits-avv" in nosuite.output


@pytest.mark.gpu
def test_cpu_and_gpu_agree(tiny_package_dir: Path, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("CUDAExecutionProvider not available")
    result = evaluate(tiny_package_dir, "digits-av", out_dir=tmp_path / "r", backends=["ort-cpu", "ort-cuda"],
                      settings=SETTINGS, resamples=200)
    pair = result.report["parity"]["cross_backend"][0]
    assert pair["argmax_agreement"] >= 0.99
    assert pair["per_output"][0]["max_abs_diff"] < 1e-3
    assert result.report["backends"][1]["providers_active"][0] == "CUDAExecutionProvider"
