"""The pre-flight table (mmstd.exporters.preflight): which path a risky construct gets, and the errors.

Detection of the constructs in real models is tested with torch and Keras in
test_exporters_torch.py / test_exporters_keras.py; here the rules and the choice of path.
"""
from __future__ import annotations

import pytest

from mmstd.errors import MmstdError
from mmstd.exporters.preflight import KNOWN_ISSUES, Construct, choose_path, findings, parse_version

MHA = Construct("mha-dynamic-length", "module 'attn' (nn.MultiheadAttention) with dynamic axes 'time'")
SDPA = Construct("sdpa-dynamic-length", "module 'attn' (nn.MultiheadAttention) with dynamic axes 'time'")
BIRNN = Construct("birnn-dynamic-time", "module 'rnn' (bidirectional LSTM) with dynamic axes 'time'")
ORDER = ("torchscript", "dynamo")


@pytest.mark.parametrize(("text", "parsed"), [("2.13.0+cpu", (2, 13, 0)), ("1.17.0", (1, 17, 0)),
                                              ("2.14.0.dev20260101", (2, 14, 0)), ("3.15.1rc1", (3, 15, 1))])
def test_versions_parse_to_their_leading_numbers(text: str, parsed: tuple[int, ...]) -> None:
    assert parse_version(text) == parsed


def test_every_known_issue_names_an_upstream_issue_and_a_path() -> None:
    keys = {i.key for i in KNOWN_ISSUES}
    assert keys == {"pytorch#99701", "pytorch#152018", "pytorch#174272", "pytorch#191855", "tensorflow-onnx#2211"}
    assert all(i.exporter_path in ("torchscript", "dynamo", "tf2onnx") for i in KNOWN_ISSUES)
    assert KNOWN_ISSUES[0].url == "https://github.com/pytorch/pytorch/issues/99701"


def test_fixed_issues_apply_only_below_the_version_they_were_fixed_in() -> None:
    old, new = {"torch": "2.12.1"}, {"torch": "2.13.0+cpu"}
    assert [f.issue.key for f in findings([BIRNN], "dynamo", old)] == ["pytorch#191855"]
    assert findings([BIRNN], "dynamo", new) == []
    assert findings([BIRNN], "torchscript", old) == []
    assert [f.issue.key for f in findings([MHA], "torchscript", new)] == ["pytorch#99701"]  # still open


def test_without_a_request_the_first_clean_path_is_taken_and_explained() -> None:
    path, notes = choose_path([MHA, SDPA], requested=None, order=ORDER, versions={"torch": "2.13.0"}, what="m")
    assert path == "dynamo"
    assert len(notes) == 1 and notes[0].startswith("pre-flight: using the dynamo exporter, because under torchscript: "
                                                   "module 'attn' (nn.MultiheadAttention)")
    assert "(pytorch#99701, https://github.com/pytorch/pytorch/issues/99701)" in notes[0]
    assert choose_path([], requested=None, order=ORDER, versions={"torch": "2.13.0"}, what="m") == ("torchscript", [])


def test_a_requested_path_known_to_mis_export_fails_naming_the_issue_and_the_way_out() -> None:
    with pytest.raises(MmstdError, match=r"E_EXPORT: m: pre-flight: the torchscript exporter is known to mis-export "
                                         r"this model\.") as info:
        choose_path([MHA], requested="torchscript", order=ORDER, versions={"torch": "2.13.0"}, what="m")
    assert "pytorch#99701" in info.value.problems[0]
    assert info.value.hint.startswith("use --exporter dynamo")


def test_when_every_path_is_affected_the_error_lists_them_all() -> None:
    with pytest.raises(MmstdError, match=r"E_EXPORT: m: pre-flight: every exporter path is known to mis-export") as info:
        choose_path([MHA, SDPA], requested=None, order=ORDER, versions={"torch": "2.12.0"}, what="m")
    assert [p.split(":")[0] for p in info.value.problems] == ["torchscript", "dynamo"]
    assert "pytorch#152018" in info.value.problems[1]


def test_keras_bidirectional_activation_rule_is_gated_on_tf2onnx() -> None:
    rnn = Construct("birnn-custom-activation", "layer 'bi' (Bidirectional LSTM, {'activation': 'relu'})")
    with pytest.raises(MmstdError, match=r"tensorflow-onnx#2211"):
        choose_path([rnn], requested="tf2onnx", order=("tf2onnx",), versions={"tf2onnx": "1.16.1"}, what="m")
    assert choose_path([rnn], requested="tf2onnx", order=("tf2onnx",), versions={"tf2onnx": "1.17.0"}, what="m") == ("tf2onnx", [])
