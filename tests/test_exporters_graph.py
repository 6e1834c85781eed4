"""Making an exported graph honour the card (mmstd.exporters.graph), on graphs built with onnx.helper."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmstd.card import ModelCard
from mmstd.errors import MmstdError
from mmstd.exporters.graph import check_graph, conform_graph, graph_versions, save_graph


@pytest.fixture(scope="module")
def card(example_card: ModelCard) -> ModelCard:
    doc = example_card.to_dict()
    doc["inputs"] = [
        {"name": "x", "modality": "tabular", "dtype": "float32", "shape": ["batch", 4], "preprocessing": []},
        {"name": "ids", "modality": "tabular", "dtype": "int64", "shape": ["batch", "tokens"], "preprocessing": []},
    ]
    doc["outputs"] = [{"name": "probabilities", "kind": "probabilities", "dtype": "float32", "shape": ["batch", 3]}]
    doc["task"] = {"kind": "multiclass", "labels": ["a", "b", "c"]}
    return ModelCard.from_dict(doc)


def _graph(*, x_dims=("unk__1", 4), ids_dims=("unk__2", "unk__3"), x_type=1, out_name="Identity:0",
           out_dims=("unk__4", 3), inputs=("x", "ids"), extra_opset: bool = True, weight_size: int = 12):
    """x @ W + mean(ids) -> Softmax, named the way tf2onnx names things."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["xf", "W"], ["logits"]),
    ]
    if "ids" in inputs:
        nodes += [helper.make_node("Cast", ["ids"], ["idsf"], to=TensorProto.FLOAT),
                  helper.make_node("ReduceMean", ["idsf"], ["m"], keepdims=1, axes=[1]),
                  helper.make_node("Add", ["logits", "m"], ["logits2"])]
    last = "logits2" if "ids" in inputs else "logits"
    nodes.append(helper.make_node("Softmax", [last], [out_name], axis=-1))
    graph_inputs = [helper.make_tensor_value_info("x", x_type, list(x_dims))]
    if "ids" in inputs:
        graph_inputs.append(helper.make_tensor_value_info("ids", TensorProto.INT64, list(ids_dims)))
    w = np.arange(weight_size, dtype=np.float32).reshape(4, weight_size // 4) / 10
    graph = helper.make_graph(nodes, "g", graph_inputs,
                              [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, list(out_dims))],
                              initializer=[numpy_helper.from_array(w, "W")])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("ai.onnx.ml", 2)] if extra_opset else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 9
    return model


def _dims(value) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_tf2onnx_names_become_the_cards(card: ModelCard) -> None:
    model = _graph()
    notes = conform_graph(model, card, where="g")
    assert notes == ["renamed graph output 'Identity:0' to 'probabilities' (the card's name)"]
    assert [v.name for v in model.graph.output] == ["probabilities"]
    assert model.graph.node[-1].output[0] == "probabilities"
    assert [_dims(v) for v in model.graph.input] == [["batch", 4], ["batch", "tokens"]]
    assert _dims(model.graph.output[0]) == ["batch", 3]
    assert [o.domain for o in model.opset_import] == [""], "the unused ai.onnx.ml import is dropped"


def test_conformed_graph_saves_checks_and_runs(card: ModelCard, tmp_path: Path) -> None:
    import onnxruntime as ort

    model = _graph()
    conform_graph(model, card, where="g")
    files = save_graph(model, tmp_path / "model.onnx", max_inline_bytes=1 << 20)
    assert list(files) == ["model.onnx"]
    check_graph(files["model.onnx"], card, where="g")
    assert graph_versions(model) == (17, 9)
    sess = ort.InferenceSession(str(files["model.onnx"]), providers=["CPUExecutionProvider"])
    for batch, tokens in ((1, 3), (7, 11)):
        out = sess.run(None, {"x": np.ones((batch, 4), np.float32), "ids": np.ones((batch, tokens), np.int64)})[0]
        assert out.shape == (batch, 3)


def test_large_graphs_keep_their_tensors_in_external_data_beside_the_model(card: ModelCard, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    model = _graph()
    conform_graph(model, card, where="g")
    files = save_graph(model, tmp_path / "model.onnx", max_inline_bytes=16)
    assert sorted(files) == ["model.onnx", "model.onnx.data"] and files["model.onnx.data"].stat().st_size == 48
    inline = onnx.load(str(tmp_path / "model.onnx"), load_external_data=False)
    assert inline.graph.initializer[0].data_location == onnx.TensorProto.EXTERNAL
    check_graph(files["model.onnx"], card, where="g")
    sess = ort.InferenceSession(str(files["model.onnx"]), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"x": np.ones((2, 4), np.float32), "ids": np.ones((2, 5), np.int64)})[0].shape == (2, 3)


def test_a_named_axis_frozen_to_a_constant_is_an_export_error(card: ModelCard) -> None:
    with pytest.raises(MmstdError, match=r"E_EXPORT: g: the exporter froze named axes to constants: input 'ids' dim 1 "
                                         r"is 16 in the graph, the card names it 'tokens'"):
        conform_graph(_graph(ids_dims=("unk__2", 16)), card, where="g")


@pytest.mark.parametrize(("graph_kwargs", "problem"), [
    ({"x_type": 11}, "input 'x': dtype is float64 in the graph, float32 in the card"),
    ({"x_dims": ("b", 5)}, "input 'x': dim 1 is 5 in the graph, 4 in the card"),
    ({"out_dims": ("b",)}, "output 'probabilities': rank is 1 in the graph, 2 in the card (['batch', 3])"),
])
def test_what_renaming_cannot_fix_is_an_io_contract_error(card: ModelCard, graph_kwargs: dict, problem: str) -> None:
    with pytest.raises(MmstdError, match=r"E_IO_CONTRACT: g: graph inputs/outputs differ from the card") as info:
        conform_graph(_graph(**graph_kwargs), card, where="g")
    assert info.value.problems == (problem,)


def test_an_input_the_model_never_reads_is_named(card: ModelCard) -> None:
    with pytest.raises(MmstdError, match=r"E_IO_CONTRACT: g: the graph has no input 'ids'; the model never reads it"):
        conform_graph(_graph(inputs=("x",)), card, where="g")


def test_a_different_number_of_outputs_is_refused(card: ModelCard) -> None:
    from onnx import TensorProto, helper

    model = _graph()
    model.graph.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 3]))
    with pytest.raises(MmstdError, match=r"E_IO_CONTRACT: g: the graph has 2 outputs \['Identity:0', 'logits'\], "
                                         r"the card declares 1 \['probabilities'\]"):
        conform_graph(model, card, where="g")


def test_check_graph_runs_the_full_onnx_checker(card: ModelCard, tmp_path: Path) -> None:
    import onnx
    from onnx import helper

    model = _graph()
    conform_graph(model, card, where="g")
    model.graph.node.append(helper.make_node("NoSuchOp", ["probabilities"], ["junk"]))
    onnx.save(model, tmp_path / "model.onnx")
    with pytest.raises(MmstdError, match=r"E_ONNX_INVALID: g: the exported graph fails onnx.checker"):
        check_graph(tmp_path / "model.onnx", card, where="g")


def test_check_graph_compares_io_with_the_card_strictly(card: ModelCard, tmp_path: Path) -> None:
    import onnx

    onnx.save(_graph(), tmp_path / "model.onnx")  # not conformed: tf2onnx's names are still there
    with pytest.raises(MmstdError, match=r"E_IO_CONTRACT: g: graph inputs/outputs differ from the card"):
        check_graph(tmp_path / "model.onnx", card, where="g")
