"""run_suite: real onnxruntime runs of a tiny package on a built-in suite, audits, output checks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmstd.errors import RunError
from mmstd.package import open_package
from mmstd.run import RunSettings, check_outputs, latency_protocol, run_suite
from mmstd.suite import load_suite

QUICK = RunSettings(batch_size=16, limit=40, quick=True)


@pytest.fixture(scope="module")
def suite():
    return load_suite("digits-av")


@pytest.fixture(scope="module")
def record(tiny_package_dir: Path, suite):
    return run_suite(open_package(tiny_package_dir), suite, settings=QUICK)


def test_record_holds_raw_outputs_and_provenance(record, suite) -> None:
    assert record.outputs["probabilities"].shape == (40, 10)
    assert record.outputs["probabilities"].dtype == np.float32
    assert record.labels.shape == (40,)
    assert record.sample_hashes == suite.split("test").sample_hashes[:40]
    assert record.providers_active == ("CPUExecutionProvider",)
    assert record.suite == "digits-av@1" and record.split == "test" and record.variant is None
    assert np.allclose(record.outputs["probabilities"].sum(axis=1), 1.0, atol=1e-5)


def test_latency_follows_the_protocol(record) -> None:
    single = record.timings.latency_ns[1]
    assert len(single) >= 64  # LoadGen's p90 minimum under --quick
    assert (single > 0).all()
    assert list(record.timings.latency_ns) == [1]  # no offline throughput under --quick


def test_audits_pass_on_cpu(record) -> None:
    audit = record.backend_details["audit"]
    assert audit["repeat_run_identical"] is True
    assert audit["latency_outputs_match_accuracy_run"] is True
    ref = record.backend_details["reference"]
    assert ref["passed"] and ref["samples"] == 2
    assert ref["per_output"][0]["max_abs_diff"] < 1e-5


def test_variant_is_scored_without_latency(tiny_package_dir: Path, suite, record) -> None:
    v = run_suite(open_package(tiny_package_dir), suite, variant="image-missing", settings=QUICK)
    assert v.variant == "image-missing" and v.timings.latency_ns == {}
    assert not np.array_equal(v.outputs["probabilities"], record.outputs["probabilities"])
    assert np.array_equal(v.labels, record.labels)


def test_two_cpu_runs_give_identical_outputs(tiny_package_dir: Path, suite, record) -> None:
    again = run_suite(open_package(tiny_package_dir), suite, settings=RunSettings(batch_size=7, limit=40, quick=True))
    assert np.array_equal(again.outputs["probabilities"], record.outputs["probabilities"]) or np.allclose(
        again.outputs["probabilities"], record.outputs["probabilities"], atol=1e-6)


def test_protocol_never_below_loadgen_p99_minimum(suite) -> None:
    assert latency_protocol(suite, quick=False).min_queries >= 662
    assert latency_protocol(suite, quick=True).min_queries == 64


def test_unknown_variant(tiny_package_dir: Path, suite) -> None:
    with pytest.raises(Exception, match=r"no variant 'image-mising'\. Did you mean 'image-missing'\?"):
        run_suite(open_package(tiny_package_dir), suite, variant="image-mising", settings=QUICK)


def test_outputs_are_checked_against_the_card(example_card) -> None:
    good = {"probabilities": np.full((3, 10), 0.1, dtype=np.float32)}
    check_outputs(good, example_card, 3, where="m")
    with pytest.raises(RunError, match=r"output 'probabilities': shape \[3, 9\], card says \['batch', 10\]") as info:
        check_outputs({"probabilities": np.zeros((3, 9), np.float32)}, example_card, 3, where="m")
    assert info.value.code == "E_IO_CONTRACT"
    with pytest.raises(RunError, match=r"dtype float64, card says float32"):
        check_outputs({"probabilities": np.zeros((3, 10))}, example_card, 3, where="m")
    with pytest.raises(RunError, match=r"output 'probabilities' is missing"):
        check_outputs({"logits": np.zeros((3, 10), np.float32)}, example_card, 3, where="m")
    bad = good["probabilities"].copy()
    bad[1, 2] = np.nan
    with pytest.raises(RunError, match=r"output 'probabilities' has NaN or Inf for 1 of 3 samples") as info:
        check_outputs({"probabilities": bad}, example_card, 3, where="m")
    assert info.value.code == "E_NONFINITE_OUTPUT"
