"""The Keras exporter: real tf2onnx conversions, the sandboxed converter child, static archive scans.

In-memory zoo models are converted in-process and exported once per session (exporter_fixtures);
``.keras`` / ``.h5`` files go through the converter child, which the tests exercise end to end.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
pytest.importorskip("tf2onnx")

from exporter_fixtures import graph_io, ort_run, zoo_package  # noqa: E402

from mmstd.card import ModelCard  # noqa: E402
from mmstd.cli import cli  # noqa: E402
from mmstd.errors import MmstdError  # noqa: E402
from mmstd.exporters import export_model, get_exporter  # noqa: E402
from mmstd.exporters import parity as par  # noqa: E402
from mmstd.package import open_package  # noqa: E402
from mmstd.zoo import STRATEGIES, build_zoo_model, card_path, load_zoo_card  # noqa: E402

pytestmark = [
    pytest.mark.keras,
    # Raised inside Keras/TensorFlow (tensor __array__ under NumPy 2), not by mmstd.
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]


def _cli(*args: str):
    return CliRunner().invoke(cli, list(args))


def _lambda_model(path: Path) -> Path:
    x = keras.Input((4,), name="x")
    y = keras.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    keras.Model(x, keras.layers.Dense(3, activation="softmax")(y)).save(path)
    return path


# ------------------------------------------------------------------------------------ the zoo


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_zoo_model_exports_validates_and_runs_at_batch_1_and_7(tmp_path_factory, name: str) -> None:
    from mmstd.exporters.keras import run_model

    pkg_dir = zoo_package(tmp_path_factory, "keras", name)
    pkg = open_package(pkg_dir)
    src, parity = pkg.card.sections["source"], pkg.card.sections["parity"]
    assert (src["framework"], src["exporter"], src["exporter_path"], src["opset"], src["ir_version"]) == \
        ("keras", "tf2onnx", "tf2onnx", 18, 8)
    assert src["framework_version"] == keras.__version__
    assert parity["passed"] and parity["max_abs_diff"] < 1e-5 and parity["argmax_agreement"] == 1.0
    model = build_zoo_model(name, "keras", pkg.card, seed=0)
    for batch in (1, 7):
        feeds = par.random_feeds(pkg.card, {"batch": batch}, seed=200 + batch)
        got = ort_run(pkg_dir, feeds)["probabilities"]
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, run_model(model, feeds, pkg.card)["probabilities"], atol=1e-5, rtol=1e-4)


def test_graph_io_carries_the_cards_names_not_tf2onnx_ones(tmp_path_factory) -> None:
    import onnx

    pkg_dir = zoo_package(tmp_path_factory, "keras", "early")
    assert graph_io(pkg_dir) == [("input", "image", 1, ["batch", 28, 28, 1]), ("input", "text", 7, ["batch", 16]),
                                 ("input", "audio", 1, ["batch", 50, 13]), ("output", "probabilities", 1, ["batch", 10])]
    model = onnx.load(str(pkg_dir / "model.onnx"))
    assert [o.domain for o in model.opset_import] == [""]


def test_the_shapes_itm_contract_exports_too(tmp_path_factory) -> None:
    pkg_dir = zoo_package(tmp_path_factory, "keras", "early", "shapes-itm")
    pkg = open_package(pkg_dir)
    feeds = par.random_feeds(pkg.card, {"batch": 7}, seed=1)
    assert ort_run(pkg_dir, feeds)["probabilities"].shape == (7, 2)


# ----------------------------------------------------------------------------------- weights


def test_weights_are_stored_under_keras_paths_and_round_trip(tmp_path_factory) -> None:
    from safetensors import safe_open

    from mmstd.exporters.keras import load_weights, run_model

    pkg_dir = zoo_package(tmp_path_factory, "keras", "intermediate")
    card = load_zoo_card("intermediate")
    fresh = build_zoo_model("intermediate", "keras", card, seed=5)
    with safe_open(str(pkg_dir / "weights.safetensors"), "np") as f:
        assert sorted(f.keys()) == sorted(w.path for w in fresh.weights)
        assert {"head_out/kernel", "fuse_gate/bias", "text_lstm/lstm_cell/recurrent_kernel"} <= set(f.keys())
        meta = f.metadata()
    assert (meta["framework"], meta["backend"], meta["framework_version"]) == ("keras", "tensorflow", keras.__version__)
    inputs, outputs = par.read_reference(pkg_dir / "reference.safetensors")
    assert not np.allclose(run_model(fresh, inputs, card)["probabilities"], outputs["probabilities"])
    load_weights(fresh, pkg_dir / "weights.safetensors")
    np.testing.assert_allclose(run_model(fresh, inputs, card)["probabilities"], outputs["probabilities"], rtol=0, atol=1e-7)


def test_weights_that_do_not_fit_are_refused(tmp_path_factory) -> None:
    late = zoo_package(tmp_path_factory, "keras", "late")
    with pytest.raises(MmstdError, match=r"E_SAFETENSORS_INVALID: weights.safetensors: its tensors do not fit Keras "
                                         r"model 'zoo_early'") as info:
        get_exporter("keras").load("mmstd.zoo.keras_models:early", card=load_zoo_card("early"),
                                   weights=late / "weights.safetensors")
    assert "missing tensor 'head_dense/kernel' (48, 32)" in info.value.problems


def test_a_factory_with_weights_exports_the_same_model_from_the_command_line(tmp_path_factory, tmp_path: Path) -> None:
    source = zoo_package(tmp_path_factory, "keras", "late")
    out = tmp_path / "again"
    result = _cli("export", "--framework", "keras", "--model", "mmstd.zoo.keras_models:late", "--weights",
                  str(source / "weights.safetensors"), "--card", str(card_path("late")), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "weights.safetensors").read_bytes() == (source / "weights.safetensors").read_bytes()
    assert (out / "reference.safetensors").read_bytes() == (source / "reference.safetensors").read_bytes()


# ------------------------------------------------------------------------- files (the child)


def test_a_keras_file_is_converted_in_a_child_process(tmp_path: Path) -> None:
    card = load_zoo_card("attention")
    build_zoo_model("attention", "keras", card, seed=3).save(tmp_path / "attention.keras")
    out = tmp_path / "pkg"
    result = _cli("export", "--framework", "keras", "--model", str(tmp_path / "attention.keras"),
                  "--card", str(card_path("attention")), "--out", str(out))
    assert result.exit_code == 0, result.output
    pkg = open_package(out)
    assert pkg.card.sections["source"]["model"] == "attention.keras"  # a name, never a host path
    assert pkg.card.sections["parity"]["passed"]
    inputs, outputs = par.read_reference(out / "reference.safetensors")
    from mmstd.exporters.keras import run_model

    expected = run_model(build_zoo_model("attention", "keras", card, seed=3), inputs, card)
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], atol=1e-6)


def test_a_lambda_layer_is_refused_before_anything_loads_it(tmp_path: Path) -> None:
    model = _lambda_model(tmp_path / "lam.keras")
    result = _cli("export", "--framework", "keras", "--model", str(model), "--card", str(card_path("early")),
                  "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "E_UNSAFE_CONTENT: lam.keras:config.json:$.config.layers[1]: Keras 'Lambda' object holds Python code" \
        in result.output
    assert not (tmp_path / "out").exists()


def test_a_foreign_module_reference_is_refused(tmp_path: Path) -> None:
    src = _lambda_model(tmp_path / "src.keras")
    with zipfile.ZipFile(src) as zin:
        members = {i.filename: zin.read(i) for i in zin.infolist()}
    config = json.loads(members["config.json"])
    layers = config["config"]["layers"]
    config["config"]["layers"] = [layer for layer in layers if layer["class_name"] != "Lambda"]
    config["config"]["layers"][1]["module"] = "os"
    members["config.json"] = json.dumps(config).encode()
    bad = tmp_path / "foreign.keras"
    with zipfile.ZipFile(bad, "w") as zout:
        for name, data in members.items():
            zout.writestr(name, data)
    with pytest.raises(MmstdError, match=r"E_UNSAFE_CONTENT: foreign.keras:config.json:\$\.config\.layers\[1\]: "
                                         r"references module 'os' \(allowed: keras\.\*\)"):
        get_exporter("keras").load(str(bad))


def test_an_h5_file_with_a_lambda_is_refused_inside_the_child(tmp_path: Path) -> None:
    x = keras.Input((4,), name="x")
    y = keras.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    keras.Model(x, keras.layers.Dense(3, activation="softmax")(y)).save(tmp_path / "lam.h5")
    exporter = get_exporter("keras")
    handle = exporter.load(str(tmp_path / "lam.h5"))  # the parent never parses HDF5
    with pytest.raises(MmstdError, match=r"E_UNSAFE_CONTENT: lam.h5: converter child: lam.h5:config.json:") as info:
        export_model(handle, load_zoo_card("early"), tmp_path / "out", framework="keras")
    assert "Lambda" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_a_keras_archive_is_corrupt(tmp_path: Path) -> None:
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"PK\x03\x04 but not really a zip")
    with pytest.raises(MmstdError, match=r"E_FORMAT_CORRUPT: model.keras: is not a readable .keras \(zip\) archive"):
        get_exporter("keras").load(str(bad))


def test_a_missing_model_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(MmstdError, match=r"E_FS_NOT_REGULAR: --model '.*nope.keras': no such file\."):
        get_exporter("keras").load(str(tmp_path / "nope.keras"))


def test_torch_exporter_paths_do_not_apply_to_keras(tmp_path: Path) -> None:
    result = _cli("zoo", "export", "early", "--framework", "keras", "--exporter", "torchscript", "--out",
                  str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "E_USAGE: exporter path 'torchscript' is not available for framework 'keras'; expected one of tf2onnx." \
        in result.output


# -------------------------------------------------------------------- dynamic axes, pre-flight


def _sequence_card(example_card: ModelCard) -> ModelCard:
    doc = example_card.to_dict()
    doc["inputs"] = [{"name": "audio", "modality": "tabular", "dtype": "float32", "shape": ["batch", "time", 13],
                      "value_range": [-3.0, 3.0], "preprocessing": []}]
    return ModelCard.from_dict(doc)


def test_a_dynamic_time_axis_really_varies(example_card: ModelCard, tmp_path: Path) -> None:
    card = _sequence_card(example_card)
    x = keras.Input((None, 13), name="audio")
    h = keras.layers.Bidirectional(keras.layers.LSTM(8), name="bi")(x)
    model = keras.Model(x, keras.layers.Dense(10, activation="softmax", name="head")(h))
    pkg = export_model(model, card, tmp_path / "seq", framework="keras")
    assert ("input", "audio", 1, ["batch", "time", 13]) in graph_io(pkg.root)
    lengths = {c["inputs"] for c in pkg.card.sections["parity"]["checks"]}
    assert any("time=5" in c for c in lengths) and any("time=23" in c for c in lengths)
    for batch, time in ((1, 3), (7, 40)):
        feeds = {"audio": np.random.default_rng(0).standard_normal((batch, time, 13)).astype(np.float32)}
        np.testing.assert_allclose(ort_run(pkg.root, feeds)["probabilities"], model(feeds["audio"]).numpy(), atol=1e-5)


def test_preflight_finds_bidirectional_rnns_with_custom_activations() -> None:
    from mmstd.exporters.keras import scan_model

    x = keras.Input((None, 13))
    plain = keras.Model(x, keras.layers.Bidirectional(keras.layers.LSTM(4))(x))
    relu = keras.Model(x, keras.layers.Bidirectional(keras.layers.GRU(4, activation="relu"), name="bi_relu")(x))
    assert scan_model(plain) == []
    (found,) = scan_model(relu)
    assert found.key == "birnn-custom-activation" and "'bi_relu'" in found.where and "'activation': 'relu'" in found.where
