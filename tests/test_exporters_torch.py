"""The PyTorch exporter: real torch.onnx exports (TorchScript and dynamo), real onnxruntime sessions.

Zoo packages are exported once per session (exporter_fixtures). Small probe models live in a module
written to a temp dir, so the CLI can name them as ``probe_models:factory``.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from exporter_fixtures import LOG, graph_io, ort_run, zoo_package  # noqa: E402

from mmstd.card import ModelCard  # noqa: E402
from mmstd.cli import cli  # noqa: E402
from mmstd.errors import MmstdError  # noqa: E402
from mmstd.exporters import ExportOptions, export_model, get_exporter  # noqa: E402
from mmstd.exporters import parity as par  # noqa: E402
from mmstd.package import open_package  # noqa: E402
from mmstd.zoo import STRATEGIES, build_zoo_model, card_path, load_zoo_card  # noqa: E402

pytestmark = pytest.mark.torch

PROBES = '''
import torch
from torch import nn


class BakedBatch(nn.Module):
    """Reads the batch size as a Python int: the trace bakes in the export batch (2)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        n = int(x.shape[0])
        return torch.softmax(self.lin(x).reshape(n, 3), dim=-1)


class Ignores(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x, unused):
        return torch.softmax(self.lin(x), dim=-1)


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        y = self.lin(x)
        return torch.softmax(y, dim=-1), y


class AttnSeq(nn.Module):
    """Self-attention over a dynamic time axis (nn.MultiheadAttention)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(13, 16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.out = nn.Linear(16, 10)

    def forward(self, audio):
        h = self.proj(audio)
        a, _ = self.attn(h, h, h, need_weights=False)
        return torch.softmax(self.out(a.mean(dim=1)), dim=-1)


class BiLstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(13, 8, batch_first=True, bidirectional=True)
        self.out = nn.Linear(16, 10)

    def forward(self, audio):
        y, _ = self.rnn(audio)
        return torch.softmax(self.out(y.mean(dim=1)), dim=-1)


class ManualBiGru(nn.Module):
    def __init__(self):
        super().__init__()
        self.fwd = nn.GRU(13, 5, batch_first=True)
        self.bwd = nn.GRU(13, 5, batch_first=True)
        self.out = nn.Linear(10, 10)

    def forward(self, audio):
        f, _ = self.fwd(audio)
        b, _ = self.bwd(torch.flip(audio, [1]))
        return torch.softmax(self.out(torch.cat([f, torch.flip(b, [1])], -1).mean(dim=1)), dim=-1)


class Sdpa(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = nn.Linear(13, 8)
        self.out = nn.Linear(8, 10)

    def forward(self, audio):
        q = self.q(audio)
        y = torch.nn.functional.scaled_dot_product_attention(q, q, q)
        return torch.softmax(self.out(y.mean(dim=1)), dim=-1)


def make(name):
    torch.manual_seed(0)
    return globals()[name]().eval()


def baked(card=None):
    return make("BakedBatch")


def ignores():
    return make("Ignores")


def two_outputs():
    return make("TwoOutputs")


def attn_seq():
    return make("AttnSeq")
'''


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory):
    import importlib
    import sys

    root = tmp_path_factory.mktemp("probes")
    (root / "probe_models.py").write_text(textwrap.dedent(PROBES))
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("probe_models")
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("probe_models", None)


def _card(example_card: ModelCard, inputs: list[tuple[str, list]], n_out: int = 3) -> ModelCard:
    doc = example_card.to_dict()
    doc["inputs"] = [{"name": n, "modality": "tabular", "dtype": "float32", "shape": s, "preprocessing": []} for n, s in inputs]
    doc["outputs"] = [{"name": "probabilities", "kind": "probabilities", "dtype": "float32", "shape": ["batch", n_out]}]
    doc["task"] = {"kind": "multiclass", "labels": [f"c{i}" for i in range(n_out)]}
    return ModelCard.from_dict(doc)


def _write_card(card: ModelCard, path: Path) -> Path:
    path.write_text(card.to_json())
    return path


def _cli(*args: str):
    return CliRunner().invoke(cli, list(args))


# ------------------------------------------------------------------------------------ the zoo


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_zoo_model_exports_validates_and_runs_at_batch_1_and_7(tmp_path_factory, name: str) -> None:
    pkg_dir = zoo_package(tmp_path_factory, "torch", name)
    pkg = open_package(pkg_dir)
    src, parity = pkg.card.sections["source"], pkg.card.sections["parity"]
    assert (src["framework"], src["exporter"], src["exporter_path"], src["opset"], src["ir_version"]) == \
        ("torch", "torch.onnx", "torchscript", 18, 8)
    assert parity["passed"] and parity["max_abs_diff"] < 1e-5 and parity["argmax_agreement"] == 1.0
    assert parity["samples"] == 26 and len(parity["checks"]) == 4
    card = pkg.card
    model = build_zoo_model(name, "torch", card, seed=0)
    from mmstd.exporters.torch import run_model

    for batch in (1, 7):
        feeds = par.random_feeds(card, {"batch": batch}, seed=100 + batch)
        got = ort_run(pkg_dir, feeds)["probabilities"]
        want = run_model(model, feeds, card)["probabilities"]
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_every_named_axis_is_a_dim_param_with_the_cards_name(tmp_path_factory) -> None:
    io = graph_io(zoo_package(tmp_path_factory, "torch", "early"))
    assert io == [("input", "image", 1, ["batch", 28, 28, 1]), ("input", "text", 7, ["batch", 16]),
                  ("input", "audio", 1, ["batch", 50, 13]), ("output", "probabilities", 1, ["batch", 10])]


def test_the_shapes_itm_contract_exports_too(tmp_path_factory) -> None:
    pkg_dir = zoo_package(tmp_path_factory, "torch", "attention", "shapes-itm")
    pkg = open_package(pkg_dir)
    assert [s.name for s in pkg.card.inputs] == ["image", "text"] and pkg.card.labels == ("mismatch", "match")
    feeds = par.random_feeds(pkg.card, {"batch": 7}, seed=1)
    assert ort_run(pkg_dir, feeds)["probabilities"].shape == (7, 2)


def test_mmstd_validate_accepts_an_exported_package(tmp_path_factory) -> None:
    result = _cli("validate", str(zoo_package(tmp_path_factory, "torch", "late")))
    assert result.exit_code == 0 and "PASSED | package zoo-late-digits-av@0.1.0 | 4 files verified" in result.output


def test_the_same_export_twice_gives_the_same_package_digest(tmp_path_factory, tmp_path: Path) -> None:
    from mmstd.zoo import export_zoo_model

    first = open_package(zoo_package(tmp_path_factory, "torch", "late"))
    second = export_zoo_model("late", tmp_path / "again", framework="torch")
    assert [(f.path, f.sha256) for f in second.files] == [(f.path, f.sha256) for f in first.files]
    assert second.digest == first.digest


def test_the_checklist_was_reported_per_output_and_shape(tmp_path_factory) -> None:
    zoo_package(tmp_path_factory, "torch", "intermediate")
    lines = LOG[("torch", "intermediate", "digits-av")]
    checks = [ln for ln in lines if ln.startswith("  [")]
    assert len(checks) == 4 and all(ln.startswith("  [✓] seeded batch=") for ln in checks)
    assert "'probabilities' shape (7, 10)" in checks[2]


# ----------------------------------------------------------------------------------- weights


def test_weights_round_trip_into_a_freshly_built_model(tmp_path_factory) -> None:
    pkg_dir = zoo_package(tmp_path_factory, "torch", "attention")
    card = load_zoo_card("attention")
    from safetensors import safe_open

    from mmstd.exporters.torch import load_weights, run_model

    fresh = build_zoo_model("attention", "torch", card, seed=123)
    with safe_open(str(pkg_dir / "weights.safetensors"), "pt") as f:
        assert sorted(f.keys()) == sorted(fresh.state_dict())
        assert f.metadata()["framework"] == "torch" and f.metadata()["framework_version"] == torch.__version__
    inputs, outputs = par.read_reference(pkg_dir / "reference.safetensors")
    before = run_model(fresh, inputs, card)["probabilities"]
    assert not np.allclose(before, outputs["probabilities"])
    load_weights(fresh, pkg_dir / "weights.safetensors")
    np.testing.assert_array_equal(run_model(fresh, inputs, card)["probabilities"], outputs["probabilities"])


def test_the_exporter_loads_a_factory_with_its_weights(tmp_path_factory) -> None:
    pkg_dir = zoo_package(tmp_path_factory, "torch", "early")
    card = load_zoo_card("early")
    model = get_exporter("torch").load("mmstd.zoo.torch_models:early", card=card, weights=pkg_dir / "weights.safetensors")
    inputs, outputs = par.read_reference(pkg_dir / "reference.safetensors")
    from mmstd.exporters.torch import run_model

    np.testing.assert_array_equal(run_model(model, inputs, card)["probabilities"], outputs["probabilities"])


def test_weights_of_another_model_are_refused_naming_the_tensors(tmp_path_factory) -> None:
    late = zoo_package(tmp_path_factory, "torch", "late")
    with pytest.raises(MmstdError, match=r"E_SAFETENSORS_INVALID: weights.safetensors: its tensors do not fit EarlyFusion") as info:
        get_exporter("torch").load("mmstd.zoo.torch_models:early", card=load_zoo_card("early"),
                                   weights=late / "weights.safetensors")
    assert "missing tensor 'head.0.weight' (32, 48)" in info.value.problems
    assert "unexpected tensor 'heads.image.weight'" in info.value.problems


# --------------------------------------------------------------------- paths and pre-flight


def test_dynamo_is_selectable_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "dyn"
    result = _cli("export", "--framework", "torch", "--model", "mmstd.zoo.torch_models:early", "--card",
                  str(card_path("early")), "--out", str(out), "--exporter", "dynamo")
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert (card["source"]["exporter_path"], card["source"]["ir_version"]) == ("dynamo", 10)
    assert card["source"]["model"] == "mmstd.zoo.torch_models:early"
    assert "PASSED | package zoo-early-digits-av@0.1.0 | torch via dynamo (opset 18)" in result.output
    assert ("input", "audio", 1, ["batch", 50, 13]) in graph_io(out)


@pytest.mark.filterwarnings("ignore")  # torch.onnx warns about its own internals here
def test_torchscript_freezes_multihead_attention_lengths_here(example_card: ModelCard, probes, tmp_path: Path) -> None:
    """The premise of rule pytorch#99701 on the installed torch: if this starts passing, set fixed_in."""
    import onnxruntime as ort

    model = probes.make("AttnSeq")
    path = tmp_path / "attn.onnx"
    torch.onnx.export(model, (torch.randn(2, 12, 13),), str(path), dynamo=False, input_names=["audio"],
                      output_names=["probabilities"], dynamic_axes={"audio": {0: "batch", 1: "time"}})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    sess.run(None, {"audio": np.zeros((2, 12, 13), np.float32)})
    with pytest.raises(Exception, match="Reshape"):
        sess.run(None, {"audio": np.zeros((2, 5, 13), np.float32)})


def test_preflight_routes_attention_over_a_dynamic_axis_to_dynamo(example_card: ModelCard, probes, tmp_path: Path) -> None:
    card = _card(example_card, [("audio", ["batch", "time", 13])], n_out=10)
    lines: list[str] = []
    pkg = export_model(probes.make("AttnSeq"), card, tmp_path / "attn", framework="torch", progress=lines.append)
    assert pkg.card.sections["source"]["exporter_path"] == "dynamo"
    assert any("pre-flight: using the dynamo exporter, because under torchscript: module 'attn' "
               "(nn.MultiheadAttention) with dynamic axes 'time'" in ln and "pytorch#99701" in ln for ln in lines)
    checks = pkg.card.sections["parity"]["checks"]
    lengths = sorted({c["inputs"] for c in checks if "time=" in c["inputs"]})
    assert [c["passed"] for c in checks] == [True] * len(checks)
    assert any("time=5" in c for c in lengths) and any("time=23" in c for c in lengths)
    assert ("input", "audio", 1, ["batch", "time", 13]) in graph_io(pkg.root)


def test_asking_for_torchscript_on_that_model_fails_naming_the_issue(example_card: ModelCard, probes,
                                                                    tmp_path: Path) -> None:
    card = _card(example_card, [("audio", ["batch", "time", 13])], n_out=10)
    card_file = _write_card(card, tmp_path / "card.json")
    result = _cli("export", "--framework", "torch", "--model", "probe_models:attn_seq", "--card", str(card_file),
                  "--out", str(tmp_path / "out"), "--exporter", "torchscript")
    assert result.exit_code == 1
    assert "E_EXPORT: model AttnSeq for card 'example-fusion@0.1.0': pre-flight: the torchscript exporter is known " \
           "to mis-export this model." in result.output
    assert "pytorch#99701" in result.output and "hint: use --exporter dynamo" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("probe", "construct"), [
    ("BiLstm", "birnn-dynamic-time"), ("BiLstm", "rnn-dynamic-time"), ("ManualBiGru", "birnn-dynamic-time"),
    ("Sdpa", "sdpa-dynamic-length"), ("AttnSeq", "mha-dynamic-length"),
])
def test_preflight_finds_the_risky_constructs(example_card: ModelCard, probes, probe: str, construct: str) -> None:
    from mmstd.exporters.torch import _card_module, _to_torch, scan_model

    card = _card(example_card, [("audio", ["batch", "time", 13])], n_out=10)
    model = probes.make(probe)
    wrapper = _card_module()(model, card).eval()
    example = _to_torch(par.random_feeds(card, par.export_sizes(card), seed=0), card)
    assert construct in {c.key for c in scan_model(model, wrapper, example, card)}
    fixed = _card(example_card, [("audio", ["batch", 20, 13])], n_out=10)
    assert scan_model(model, _card_module()(model, fixed), _to_torch(par.random_feeds(fixed, {"batch": 2}, seed=0), fixed),
                      fixed) == []


@pytest.mark.filterwarnings("ignore")  # torch.onnx warns about its own internals here
def test_dynamo_freezes_an_lstm_time_axis_after_the_first_export_here(example_card: ModelCard, probes,
                                                                      tmp_path: Path) -> None:
    """The premise of rule pytorch#174272 on the installed torch: if this starts failing, set fixed_in."""
    import contextlib
    import io

    import onnx

    dims = []
    for i in range(2):  # whatever ran before in this process, the second of two is never the first
        path = tmp_path / f"lstm{i}.onnx"
        time = torch.export.Dim("time")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            torch.onnx.export(probes.make("BiLstm"), (torch.randn(2, 12, 13),), str(path), dynamo=True,
                              input_names=["audio"], dynamic_shapes={"audio": {1: time}}, verbose=False)
        shape = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
        dims.append(shape[1].dim_param or shape[1].dim_value)
    assert dims[1] == 12


def test_asking_for_dynamo_on_an_lstm_over_a_dynamic_axis_fails_naming_the_issue(example_card: ModelCard, probes,
                                                                                 tmp_path: Path) -> None:
    card = _card(example_card, [("audio", ["batch", "time", 13])], n_out=10)
    with pytest.raises(MmstdError, match=r"E_EXPORT: model BiLstm for card 'example-fusion@0.1.0': pre-flight: the "
                                         r"dynamo exporter is known to mis-export this model") as info:
        export_model(probes.make("BiLstm"), card, tmp_path / "out", framework="torch",
                     options=ExportOptions(exporter_path="dynamo"))
    assert any("pytorch#174272" in p for p in info.value.problems)
    assert info.value.hint.startswith("use --exporter torchscript")


def test_bidirectional_rnns_take_torchscript_by_default_and_pass_parity(example_card: ModelCard, probes,
                                                                         tmp_path: Path) -> None:
    card = _card(example_card, [("audio", ["batch", "time", 13])], n_out=10)
    pkg = export_model(probes.make("BiLstm"), card, tmp_path / "ts", framework="torch")
    assert pkg.card.sections["source"]["exporter_path"] == "torchscript" and pkg.card.sections["parity"]["passed"]


# --------------------------------------------------------------------------- wrong exports


def test_a_size_baked_in_at_export_fails_parity_and_writes_nothing(example_card: ModelCard, probes,
                                                                   tmp_path: Path) -> None:
    card_file = _write_card(_card(example_card, [("x", ["batch", 4])]), tmp_path / "card.json")
    out = tmp_path / "pkgs" / "baked"
    result = _cli("export", "--framework", "torch", "--model", "probe_models:baked", "--card", str(card_file),
                  "--out", str(out))
    assert result.exit_code == 1, result.output
    assert "E_PARITY: example-fusion@0.1.0 exported with torchscript: onnxruntime disagrees with torch" in result.output
    assert "[✓] seeded batch=2 (export sizes)" in result.output
    assert "[x] seeded batch=7: 'probabilities': onnxruntime raised: " in result.output
    assert "note: torch.jit.trace: Converting a tensor to a Python integer" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "pkgs").exists(), "neither the package nor a staging directory was created"


def test_a_perturbed_weight_in_the_onnx_graph_fails_parity(tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    card = load_zoo_card("early")
    model = build_zoo_model("early", "torch", card, seed=0)
    cases = par.parity_cases(card)
    art = get_exporter("torch").export(model, card, tmp_path / "graph", cases=cases)
    ok = par.compare(card, art.files["model.onnx"], cases, art.source_outputs)
    assert ok.passed
    proto = onnx.load(str(art.files["model.onnx"]))
    target = next(t for t in proto.graph.initializer if t.name == "model.head.3.weight")
    w = numpy_helper.to_array(target).copy()
    w[0, 0] += 0.5
    target.CopyFrom(numpy_helper.from_array(w, target.name))
    onnx.save(proto, str(art.files["model.onnx"]))
    report = par.compare(card, art.files["model.onnx"], cases, art.source_outputs)
    assert not report.passed and report.max_abs_diff > 1e-3
    with pytest.raises(MmstdError, match="E_PARITY"):
        report.raise_for_failures(where="perturbed")


def test_an_input_the_model_ignores_is_an_io_contract_error(example_card: ModelCard, probes, tmp_path: Path) -> None:
    card = _card(example_card, [("x", ["batch", 4]), ("unused", ["batch", 4])])
    with pytest.raises(MmstdError, match=r"E_IO_CONTRACT: model Ignores for card 'example-fusion@0.1.0' "
                                         r"\(torchscript\): the graph has no input 'unused'; the model never reads it"):
        export_model(probes.ignores(), card, tmp_path / "out", framework="torch")
    assert not (tmp_path / "out").exists()


def test_more_outputs_than_the_card_declares_are_refused(example_card: ModelCard, probes, tmp_path: Path) -> None:
    card = _card(example_card, [("x", ["batch", 4])])
    with pytest.raises(MmstdError, match=r"E_IO_CONTRACT: the model returned 2 outputs; the card declares 1"):
        export_model(probes.two_outputs(), card, tmp_path / "out", framework="torch")


# ----------------------------------------------------------------------------- output dirs


def test_force_replaces_an_existing_package_and_only_a_package(tmp_path: Path) -> None:
    out = tmp_path / "pkg"
    args = ["zoo", "export", "late", "--framework", "torch", "--out", str(out)]
    assert _cli(*args).exit_code == 0
    again = _cli(*args)
    assert again.exit_code == 1 and "E_OUTPUT_EXISTS" in again.output
    forced = _cli(*args, "--force", "--seed", "1")
    assert forced.exit_code == 0, forced.output
    assert open_package(out).card.sections["source"]["model"] == "mmstd.zoo.torch_models:late (seed 1)"
    assert [p.name for p in tmp_path.iterdir()] == ["pkg"], "no staging or trash directories are left behind"


def test_a_graph_over_the_inline_limit_keeps_its_tensors_in_the_package(tmp_path: Path) -> None:
    from mmstd.zoo import export_zoo_model

    pkg = export_zoo_model("early", tmp_path / "big", framework="torch", options=ExportOptions(max_inline_bytes=4096))
    assert "model.onnx.data" in {f.path for f in pkg.files}
    assert [a["path"] for a in pkg.card.sections["artifacts"]["external_data"]] == ["model.onnx.data"]
    feeds = par.random_feeds(pkg.card, {"batch": 7}, seed=3)
    assert ort_run(pkg.root, feeds)["probabilities"].shape == (7, 10)


def test_suite_samples_and_card_assets_go_through_mmstd_export(tmp_path: Path) -> None:
    doc = load_zoo_card("early").to_dict()
    doc["inputs"][1]["preprocessing"] = [{"op": "tokenize", "kind": "words", "vocab": "assets/vocab.txt",
                                          "max_length": 16, "lowercase": True}]
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "vocab.txt").write_text("\n".join(["<pad>", "<unk>", "zero", "one", "two", "three"]) + "\n")
    card_file = _write_card(ModelCard.from_dict(doc), tmp_path / "card.json")
    out = tmp_path / "pkg"
    result = _cli("export", "--framework", "torch", "--model", "mmstd.zoo.torch_models:early", "--card", str(card_file),
                  "--out", str(out), "--suite", "digits-av", "--suite-samples", "24")
    assert result.exit_code == 0, result.output
    assert "[✓] suite digits-av@1 test[16:24]: 'probabilities' shape (8, 10)" in result.output
    pkg = open_package(out)
    assert [a["path"] for a in pkg.card.sections["artifacts"]["assets"]] == ["assets/vocab.txt"]
    assert (out / "assets" / "vocab.txt").read_text().startswith("<pad>")
    assert pkg.card.sections["parity"]["samples"] == 26 + 24
