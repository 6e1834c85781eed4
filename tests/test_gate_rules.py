"""Policy rules checked on hand-built report dicts: every kind passes, fails with its code, or skips and says why."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from mmstd.gate import Baselines, RuleResult, check_rules, parse_policy

LABELS = ["0", "1", "2"]


def score(value: float, low: float | None = None, high: float | None = None, *, higher: bool = True) -> dict[str, Any]:
    return {"value": value, "ci_low": low, "ci_high": high, "ci_level": 0.95, "resamples": 0 if low is None else 1000,
            "higher_is_better": higher}


def backend(name: str, acc: float = 0.9, *, recall: tuple[float, ...] = (0.9, 0.8, 0.7), p99: float = 4.0) -> dict[str, Any]:
    return {
        "name": name,
        "scores": {
            "headline": {"accuracy": score(acc, acc - 0.05, acc + 0.05), "f1_macro": score(acc - 0.1, acc - 0.2, acc)},
            "per_class": [{"label": lab, "precision": 0.8, "recall": r, "f1": (0.8 * r * 2) / (0.8 + r), "support": 10 * (i + 1),
                           "f1_ci_low": 0.5, "f1_ci_high": 0.9} for i, (lab, r) in enumerate(zip(LABELS, recall, strict=True))],
        },
        "latency": {"single_stream": {"batch_size": 1, "latency_p50_ms": p99 / 2, "latency_p90_ms": p99 * 0.8,
                                      "latency_p95_ms": p99 * 0.9, "latency_p99_ms": p99},
                    "offline": [{"batch_size": 32, "latency_p99_ms": p99 * 10}]},
    }


def report(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "package": {"name": "fusion", "version": "1"},
        "suite": {"ref": "digits-av@1"},
        "backends": [backend("ort-cpu"), backend("ort-cuda", 0.89)],
        "parity": {
            "reference": [{"backend": "ort-cpu", "against": "reference.safetensors", "atol": 1e-4, "rtol": 1e-3, "samples": 2,
                           "per_output": [{"output": "probabilities", "max_abs_diff": 2e-7, "max_rel_diff": 1e-6,
                                           "argmax_agreement": 1.0, "passed": True}], "passed": True}],
            "cross_backend": [{"a": "ort-cpu", "b": "ort-cuda", "argmax_agreement": 0.995, "label_flips": 2,
                               "metric_deltas": {"accuracy": {"delta": -0.01, "ci_low": -0.015, "ci_high": -0.005}}}],
        },
        "variants": [{"name": "image-missing", "kind": "missing", "backend": "ort-cpu",
                      "scores": {"headline": {"accuracy": score(0.6, 0.55, 0.65)}},
                      "deltas": {"accuracy": {"delta": -0.3, "ci_low": -0.35, "ci_high": -0.25}}}],
    }
    doc.update(changes)
    return doc


def policy(*rules: dict[str, Any], suites: tuple[str, ...] = ("digits-av",)) -> Any:
    return parse_policy({"schema_version": "1.0", "name": "t", "evaluate": {"suites": list(suites)}, "rules": list(rules)})


def one(rule: dict[str, Any], rep: dict[str, Any] | None = None, baseline: dict[str, Any] | None = None,
        **kw: Any) -> RuleResult:
    results = check_rules(report() if rep is None else rep, policy(rule), baseline, **kw)
    assert len(results) == 1, results
    return results[0]


# ------------------------------------------------------------------------------------------ score


def test_score_min_passes_and_fails_per_backend() -> None:
    r = one({"kind": "score", "suite": "digits-av", "metric": "accuracy", "min": 0.895})
    assert r.status == "fail" and r.code == "E_POLICY_RULE"
    assert "accuracy.value = 0.89 < min 0.895 (digits-av@1, ort-cuda)" in r.message and "ort-cpu" not in r.message
    assert (r.observed, r.limit) == (0.89, 0.895)
    assert one({"kind": "score", "metric": "accuracy", "min": 0.5, "backend": "ort-cpu"}).status == "pass"


def test_score_on_the_confidence_interval_lower_bound() -> None:
    rule = {"kind": "score", "metric": "accuracy", "min": 0.86, "backend": "ort-cpu"}
    assert one(rule).status == "pass"
    r = one({**rule, "using": "ci_low"})
    assert r.status == "fail" and "accuracy.ci_low = 0.85 < min 0.86" in r.message


def test_score_without_an_interval_fails_rather_than_falling_back_to_the_value() -> None:
    rep = report()
    rep["backends"][0]["scores"]["headline"]["accuracy"] = score(0.9)
    r = one({"kind": "score", "metric": "accuracy", "min": 0.5, "backend": "ort-cpu", "using": "ci_low"}, rep)
    assert r.status == "fail" and "no confidence interval was computed" in r.message


def test_score_max_for_a_lower_is_better_metric() -> None:
    rep = report()
    rep["backends"][0]["scores"]["headline"]["log_loss"] = score(0.7, higher=False)
    assert one({"kind": "score", "metric": "log_loss", "max": 0.5, "backend": "ort-cpu"}, rep).status == "fail"


def test_missing_metric_or_backend_fails_unless_optional() -> None:
    r = one({"kind": "score", "metric": "top_5_accuracy", "min": 0.5})
    assert r.status == "fail" and "lacks metric 'top_5_accuracy'" in r.message
    r = one({"kind": "score", "metric": "accuracy", "min": 0.5, "backend": "ort-trt"})
    assert r.status == "fail" and "lacks results for backend 'ort-trt'" in r.message
    r = one({"kind": "score", "metric": "accuracy", "min": 0.5, "backend": "ort-trt", "optional": True})
    assert r.status == "skip" and "optional rule" in r.message


def test_rules_for_another_suite_are_skipped_and_a_foreign_suite_fails() -> None:
    pol = policy({"kind": "score", "suite": "shapes-itm", "metric": "accuracy", "min": 0.9},
                 suites=("digits-av", "shapes-itm"))
    results = check_rules(report(), pol)
    assert [r.status for r in results] == ["skip"] and "applies to suite shapes-itm" in results[0].message
    results = check_rules(report(suite={"ref": "cifar@3"}), policy({"kind": "score", "metric": "accuracy", "min": 0.1}))
    assert results[0].id == "suite" and results[0].status == "fail" and "policy evaluates digits-av" in results[0].message


def test_suite_version_pins() -> None:
    rule = {"kind": "score", "suite": "digits-av@2", "metric": "accuracy", "min": 0.1}
    assert check_rules(report(), policy(rule, suites=("digits-av@2",)))[-1].status == "skip"


def test_scope_turns_missing_sections_into_skips() -> None:
    rep = {"parity": report()["parity"]}
    r = one({"kind": "score", "metric": "accuracy", "min": 0.5}, rep, scope={"reference_parity"})
    assert r.status == "skip" and "not evaluated: this evaluation produced reference_parity, not scores" in r.message
    assert one({"kind": "reference_parity", "min_argmax_agreement": 0.99}, rep, scope={"reference_parity"}).status == "pass"


# -------------------------------------------------------------------------------------- per class


def test_per_class_recall_names_the_weak_classes() -> None:
    r = one({"kind": "per_class", "metric": "recall", "min": 0.75, "backend": "ort-cpu"})
    assert r.status == "fail" and "class '2'" in r.message and "class '1'" not in r.message and r.observed == 0.7


def test_per_class_label_subset_and_min_support() -> None:
    assert one({"kind": "per_class", "metric": "recall", "min": 0.75, "labels": ["0", "1"]}).status == "pass"
    assert one({"kind": "per_class", "metric": "recall", "min": 0.75, "min_support": 25}).status == "fail"
    assert one({"kind": "per_class", "metric": "recall", "min": 0.75, "min_support": 31}).status == "fail"  # no class left
    assert one({"kind": "per_class", "metric": "f1", "min": 0.5, "using": "ci_low"}).status == "pass"


# ---------------------------------------------------------------------------------------- latency


def test_latency_percentile_and_scenarios() -> None:
    assert one({"kind": "latency", "backend": "ort-cpu", "percentile": "p99", "max_ms": 5}).status == "pass"
    r = one({"kind": "latency", "backend": "ort-cpu", "percentile": "p99", "max_ms": 3})
    assert r.status == "fail" and "latency_p99_ms = 4 > max 3 (ort-cpu, single_stream, batch 1)" in r.message
    r = one({"kind": "latency", "percentile": "p99", "max_ms": 30, "scenario": "offline", "batch_size": 32})
    assert r.status == "fail" and "batch 32" in r.message
    r = one({"kind": "latency", "percentile": "p99", "max_ms": 30, "scenario": "offline", "batch_size": 8})
    assert r.status == "fail" and "lacks offline latency_p99_ms" in r.message


# ---------------------------------------------------------------------------------- cross backend


def test_cross_backend_agreement_and_delta_interval_within_margin() -> None:
    rule = {"kind": "cross_backend", "a": "ort-cpu", "b": "ort-cuda", "min_argmax_agreement": 0.99,
            "metric_margins": {"accuracy": 0.02}}
    r = one(rule)
    assert r.status == "pass" and "accuracy delta CI [-0.015, -0.005] within ±0.02" in r.message
    r = one({**rule, "metric_margins": {"accuracy": 0.01}})
    assert r.status == "fail" and "outside ±0.01" in r.message
    assert one({**rule, "metric_margins": {"accuracy": 0.01}, "using": "value"}).status == "pass"
    assert one({**rule, "min_argmax_agreement": 0.999}).status == "fail"
    assert one({**rule, "max_label_flips": 1}).status == "fail"


def test_cross_backend_absent_pair_is_optional_on_a_cpu_only_runner() -> None:
    rep = report(parity={"reference": report()["parity"]["reference"]})
    rule = {"kind": "cross_backend", "a": "ort-cpu", "b": "ort-cuda", "min_argmax_agreement": 0.99}
    assert one(rule, rep).status == "fail"
    assert one({**rule, "optional": True}, rep).status == "skip"


# ------------------------------------------------------------------------------- reference parity


def test_reference_parity_thresholds_and_card_tolerances() -> None:
    assert one({"kind": "reference_parity", "min_argmax_agreement": 0.99, "max_abs_diff": 1e-3}).status == "pass"
    r = one({"kind": "reference_parity", "max_abs_diff": 1e-7})
    assert r.status == "fail" and r.code == "E_PARITY" and "max abs diff = 2e-07 > max 1e-07" in r.message
    rep = report()
    rep["parity"]["reference"][0]["per_output"][0]["passed"] = False
    assert one({"kind": "reference_parity", "require_passed": True}, rep).status == "fail"


def test_reference_parity_accepts_the_single_dict_form() -> None:
    rep = report()
    rep["parity"]["reference"] = rep["parity"]["reference"][0]
    assert one({"kind": "reference_parity", "min_argmax_agreement": 0.99}, rep).status == "pass"


# ------------------------------------------------------------------------ fraction and baselines


def test_fraction_of_a_fixed_reference_score_mlperf_style() -> None:
    rule = {"kind": "fraction_of_reference", "metric": "accuracy", "fraction": 0.99, "reference": 0.9, "backend": "ort-cpu"}
    assert one(rule).status == "pass"
    r = one({**rule, "backend": "ort-cuda"})
    assert r.status == "fail" and "0.89 < 0.891" in r.message and "0.99 of reference 0.9" in r.message


def test_fraction_of_the_baseline_and_baseline_drop() -> None:
    base = report()
    base["backends"][0]["scores"]["headline"]["accuracy"] = score(0.95, 0.9, 1.0)
    frac = {"kind": "fraction_of_reference", "metric": "accuracy", "fraction": 0.99, "reference": "baseline",
            "backend": "ort-cpu"}
    assert one(frac, baseline=base).status == "fail"
    drop = {"kind": "baseline_drop", "metric": "accuracy", "max_drop": 0.02, "backend": "ort-cpu"}
    r = one(drop, baseline=base)
    assert r.status == "fail" and "drop = 0.05 > max 0.02" in r.message
    assert one({**drop, "max_drop": 0.06}, baseline=base).status == "pass"
    assert one({**drop, "relative": True, "max_drop": 0.06}, baseline=base).status == "pass"


def test_baseline_rules_skip_without_a_comparable_baseline() -> None:
    drop = {"kind": "baseline_drop", "metric": "accuracy", "max_drop": 0.02}
    r = one(drop)
    assert r.status == "skip" and "--baseline" in r.message
    other = report(suite={"ref": "digits-av@0"})
    r = one(drop, baseline=other)
    assert r.status == "skip" and "baseline is for suite digits-av@0" in r.message


def test_baselines_are_found_by_model_and_suite() -> None:
    a, b = report(), copy.deepcopy(report())
    b["package"]["name"] = "other"
    found = Baselines([a, b])
    assert found.find("other", "digits-av@1") is b and found.find("fusion", "digits-av@1") is a
    assert found.find("fusion", "digits-av@2") is None and found.find("missing", None) is None
    assert Baselines([a], single=True).find("anything", None) is a


# --------------------------------------------------------------------------------------- variants


def test_variant_minimum_and_drop_against_the_unperturbed_run() -> None:
    rule = {"kind": "variant", "variant": "image-missing", "metric": "accuracy"}
    assert one({**rule, "min": 0.5}).status == "pass"
    r = one({**rule, "min": 0.7})
    assert r.status == "fail" and "variant image-missing, ort-cpu" in r.message
    r = one({**rule, "max_drop": 0.2})
    assert r.status == "fail" and "accuracy drop = 0.3 > max 0.2" in r.message
    assert one({**rule, "max_drop": 0.32}).status == "pass"
    assert one({**rule, "max_drop": 0.32, "using": "ci_low"}).status == "fail"  # the pessimistic end: a 0.35 drop
    assert one({**rule, "variant": "audio-missing", "min": 0.1}).status == "fail"


# ----------------------------------------------------------------------------------------- policy


def test_every_rule_kind_has_a_check_and_a_schema_branch() -> None:
    import json

    from mmstd.gate import _CHECKS, RULE_SECTIONS
    from mmstd.schema import schema_path

    schema = json.loads(schema_path("policy").read_text())
    kinds = set(schema["properties"]["rules"]["items"]["properties"]["kind"]["enum"])
    assert kinds == set(_CHECKS) == set(RULE_SECTIONS)


def test_results_keep_policy_order_and_ids() -> None:
    pol = policy({"id": "acc", "kind": "score", "metric": "accuracy", "min": 0.1},
                 {"kind": "latency", "percentile": "p50", "max_ms": 100})
    results = check_rules(report(), pol)
    assert [r.id for r in results] == ["acc", "latency-2"] and all(r.status == "pass" for r in results)


@pytest.mark.parametrize(("rules", "match"), [
    ([{"kind": "score", "metric": "accuracy"}], r"\$\.rules\[0\]"),
    ([{"kind": "score", "metric": "accuracy", "min": 0.5, "on": "ci_low"}], r"unknown field 'on'"),
    ([{"kind": "teleport", "metric": "accuracy"}], r"\$\.rules\[0\]\.kind: expected one of"),
    ([{"kind": "cross_backend", "a": "ort-cpu", "b": "ort-cpu", "min_argmax_agreement": 0.9}], r"two different backends"),
    ([{"id": "x", "kind": "score", "metric": "a", "min": 1}, {"id": "x", "kind": "score", "metric": "b", "min": 1}],
     r"'x' is already used"),
    ([{"kind": "score", "suite": "cifar", "metric": "accuracy", "min": 0.5}], r"not one of evaluate\.suites"),
])
def test_invalid_policies_are_refused_with_json_paths(rules: list[dict[str, Any]], match: str) -> None:
    from mmstd.errors import MmstdError

    with pytest.raises(MmstdError) as info:
        policy(*rules)
    assert info.value.code == "E_POLICY"
    assert any(__import__("re").search(match, p) for p in info.value.problems), info.value.problems
