"""Static validation: magic-byte identification, pickle detection, safe zip extraction, ONNX allowlists and bounds."""
from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from mmstd.errors import MmstdError
from mmstd.scan import (
    OnnxAllowlist,
    ScanLimits,
    check_keras_config,
    check_onnx_inferred,
    check_onnx_static,
    extract_zip,
    identify,
    sniff,
    stage_tree,
)

LIMITS = ScanLimits(max_files=20, max_file_bytes=1 << 20, max_total_bytes=4 << 20, max_depth=4,
                    max_tensor_elements=1 << 20, max_dim=1 << 16, max_rank=6, archive_max_members=16, archive_max_ratio=50)


def _refused(code: str, match: str, fn, *args, **kw) -> MmstdError:  # type: ignore[no-untyped-def]
    with pytest.raises(MmstdError, match=match) as info:
        fn(*args, **kw)
    assert info.value.code == code, str(info.value)
    return info.value


# ---------------------------------------------------------------------------------- identification


@pytest.mark.parametrize(("data", "kind"), [
    (pickle.dumps([1, 2], protocol=2), "pickle"),
    (pickle.dumps({"a": 1}, protocol=0), "pickle"),
    (pickle.dumps((1, "x"), protocol=1), "pickle"),
    (b"cos\nsystem\n(S'id'\ntR.", "pickle"),
    (b"label.\nother\n", "text"),            # decodes as opcodes but fails the stack checks
    (b"N.", "pickle"),
    (b'{"a": 1}', "text"),
    (b"\x7fELF\x02\x01", "native"),
    (b"MZ" + bytes(58) + b"\x40\x00\x00\x00" + b"PE\x00\x00", "native"),
    (b"MZ is a fine start for text\n", "text"),
    (b"#!/bin/sh\nrm -rf /\n", "script"),
    (b"PK\x03\x04rest", "zip"),
    (b"\x89HDF\r\n\x1a\n", "hdf5"),
    (b"\x93NUMPY\x01\x00", "npy"),
    (b"\x89PNG\r\n\x1a\n....", "png"),
    (b"\xff\xd8\xff\xe0", "jpeg"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", "wav"),
    (bytes(range(256)), "binary"),
    (b"caf\xc3\xa9\n", "text"),
    (b"bad \xff utf-8", "binary"),
])
def test_sniff_by_magic_bytes(data: bytes, kind: str) -> None:
    assert sniff(data, len(data)) == kind


def test_sniff_recognises_safetensors_only_with_a_plausible_header() -> None:
    header = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    good = len(header).to_bytes(8, "little") + header + bytes(4)
    assert sniff(good, len(good)) == "safetensors"
    bad = (1 << 40).to_bytes(8, "little") + header
    assert sniff(bad, len(bad)) != "safetensors"


def test_identify_roles(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "labels.txt").write_text("0\n1\n")
    (tmp_path / "model.onnx.data").write_bytes(np.arange(8, dtype=np.float32).tobytes())
    assert identify(tmp_path, "assets/labels.txt", role="asset", limits=LIMITS) == "text"
    assert identify(tmp_path, "model.onnx.data", role="data", limits=LIMITS) == "binary"
    _refused("E_FORMAT_UNSUPPORTED", r"assets/x\.bin: content is binary", lambda: (
        (tmp_path / "assets" / "x.bin").write_bytes(bytes(range(256))),
        identify(tmp_path, "assets/x.bin", role="asset", limits=LIMITS)))
    (tmp_path / "assets" / "o.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, }")
    _refused("E_UNSAFE_CONTENT", r"NumPy array of Python objects", identify, tmp_path, "assets/o.npy", role="asset", limits=LIMITS)


def test_identify_refuses_pickle_suffixes_without_reading(tmp_path: Path) -> None:
    (tmp_path / "w.pt").write_bytes(b"anything")
    _refused("E_UNSAFE_CONTENT", r"w\.pt: '\.pt' files are pickles", identify, tmp_path, "w.pt", role="data", limits=LIMITS)


# ----------------------------------------------------------------------------------------- keras


def test_keras_config_walk() -> None:
    ok = {"module": "keras", "class_name": "Sequential", "config": {"layers": [
        {"module": "keras.layers", "class_name": "Dense", "config": {"units": 3}, "registered_name": None}]}}
    check_keras_config(ok, "m.keras")
    for bad, match in [
        ({"class_name": "TFOpLambda", "config": {}}, r"'TFOpLambda' object holds Python code"),
        ({"module": "builtins", "class_name": "eval"}, r"references module 'builtins'"),
        ({"module": "keras.layers", "class_name": "Mine", "registered_name": "Custom>Mine"}, r"custom object 'Custom>Mine'"),
        ({"class_name": "function", "config": "print"}, r"'function' object"),
    ]:
        doc = json.loads(json.dumps(ok))
        doc["config"]["layers"].append(bad)
        err = _refused("E_UNSAFE_CONTENT", match, check_keras_config, doc, "m.keras")
        assert ":config.json:$.config.layers[1]" in err.message


# ------------------------------------------------------------------------------------ staging, zips


def test_stage_tree_copies_and_hashes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "x.txt").write_bytes(b"hello")
    staged = stage_tree(src, tmp_path / "dst", LIMITS)
    assert staged["a/x.txt"].size == 5
    assert staged["a/x.txt"].sha256 == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert (tmp_path / "dst" / "a" / "x.txt").read_bytes() == b"hello"
    assert oct((tmp_path / "dst" / "a" / "x.txt").stat().st_mode & 0o777) == "0o600"


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_extract_zip_unwraps_a_zipped_package_directory(tmp_path: Path) -> None:
    z = tmp_path / "p.zip"
    z.write_bytes(_zip({"pkg/manifest.json": b"{}", "pkg/assets/a.txt": b"x"}))
    staged = extract_zip(z, tmp_path / "out", LIMITS, name="p.zip")
    assert sorted(staged) == ["assets/a.txt", "manifest.json"]
    assert (tmp_path / "out" / "assets" / "a.txt").read_bytes() == b"x"


@pytest.mark.parametrize(("members", "match"), [
    ({"a/../../x": b"1"}, r"escapes the archive root"),
    ({"C:/windows/x": b"1"}, r"drive-letter path"),
    ({"a\\..\\x": b"1"}, r"escapes the archive root"),
    ({"./a": b"1"}, r"escapes the archive root"),
    ({"a/b/c/d/e/f": b"1"}, r"nested deeper than 4 levels"),
    ({"big": bytes(2 << 20)}, r"inflates to 2097152 bytes \(limit 1048576\)"),
    ({f"m{i}": b"1" for i in range(17)}, r"has 17 members \(limit 16\)"),
])
def test_extract_zip_refuses_tricks_before_extracting(tmp_path: Path, members: dict[str, bytes], match: str) -> None:
    z = tmp_path / "p.zip"
    z.write_bytes(_zip(members))
    _refused("E_ARCHIVE_UNSAFE", match, extract_zip, z, tmp_path / "out", LIMITS, name="p.zip")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------- onnx


def _model(nodes, inits=(), *, opset: int = 17, outputs=("y",), inputs=(("x", [2, 3]),), functions=(), extra_opsets=()):  # type: ignore[no-untyped-def]
    g = helper.make_graph(list(nodes), "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), *extra_opsets], functions=list(functions))
    m.ir_version = 9
    return m


ALLOW = OnnxAllowlist(ir_min=7, ir_max=10, opsets={"": (13, 21)})


def test_allowlist_accepts_a_plain_graph_and_local_functions() -> None:
    check_onnx_static(_model([helper.make_node("Relu", ["x"], ["y"])]), ALLOW, LIMITS)
    fn = helper.make_function("local.fn", "Twice", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
                              [helper.make_opsetid("", 17)])
    m = _model([helper.make_node("Twice", ["x"], ["y"], domain="local.fn")], functions=[fn],
               extra_opsets=[helper.make_opsetid("local.fn", 1)])
    check_onnx_static(m, ALLOW, LIMITS)
    _refused("E_ONNX_UNSUPPORTED", r"model-local functions are not allowed", check_onnx_static, m,
             OnnxAllowlist(opsets={"": (13, 21)}, local_functions=False), LIMITS)


def test_function_bodies_and_subgraphs_are_held_to_the_allowlist() -> None:
    fn = helper.make_function("local.fn", "Evil", ["a"], ["b"], [helper.make_node("Run", ["a"], ["b"], domain="com.evil")],
                              [helper.make_opsetid("", 17), helper.make_opsetid("com.evil", 1)])
    m = _model([helper.make_node("Evil", ["x"], ["y"], domain="local.fn")], functions=[fn],
               extra_opsets=[helper.make_opsetid("local.fn", 1)])
    _refused("E_ONNX_UNSUPPORTED", r"function local\.fn:Evil: node 'Run': domain 'com\.evil' is not allowed",
             check_onnx_static, m, ALLOW, LIMITS)
    then = helper.make_graph([helper.make_node("Spawn", [], ["t"], domain="com.evil")], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Constant", [], ["e"], value_float=0.0)], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    m = _model([helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)], inputs=(("c", []),))
    _refused("E_ONNX_UNSUPPORTED", r"domain 'com\.evil' is not allowed", check_onnx_static, m, ALLOW, LIMITS)


def test_denied_ops() -> None:
    m = _model([helper.make_node("Relu", ["x"], ["y"])])
    _refused("E_ONNX_UNSUPPORTED", r"operator Relu is denied", check_onnx_static, m,
             OnnxAllowlist(opsets={"": (13, 21)}, denied_ops=frozenset({"Relu"})), LIMITS)


@pytest.mark.parametrize(("nodes", "inits", "match"), [
    ([helper.make_node("Range", ["s", "l", "d"], ["y"], name="r")],
     [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("s", 0), ("l", 1 << 40), ("d", 1))],
     r"node 'r' \(Range output\): dimension 1099511627776"),
    ([helper.make_node("Constant", [], ["shp"], value_ints=[1 << 12, 1 << 12]),
      helper.make_node("ConstantOfShape", ["shp"], ["y"], name="c")], [], r"node 'c' \(ConstantOfShape output\): 16777216 elements"),
    ([helper.make_node("Resize", ["x4", "", "", "sizes"], ["y"], name="rs")],
     [numpy_helper.from_array(np.array([1, 1, 1 << 11, 1 << 11], np.int64), "sizes")], r"node 'rs' \(Resize output\): 4194304 elements"),
])
def test_constant_builders_are_bounded_statically(nodes, inits, match) -> None:  # type: ignore[no-untyped-def]
    m = _model(nodes, inits, inputs=(("x", [2, 3]), ("x4", [1, 1, 4, 4])))
    _refused("E_TENSOR_LIMIT", match, check_onnx_static, m, ALLOW, LIMITS)


def test_rank_and_negative_dims_are_bounded() -> None:
    m = _model([helper.make_node("Relu", ["x"], ["y"])], inputs=(("x", [1] * 7),))
    _refused("E_TENSOR_LIMIT", r"input 'x': rank 7 \(limit 6\)", check_onnx_static, m, ALLOW, LIMITS)
    bad = TensorProto(name="neg", data_type=TensorProto.FLOAT, dims=[-4])
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [bad])
    _refused("E_TENSOR_LIMIT", r"initializer 'neg': dimension -4 is negative", check_onnx_static, m, ALLOW, LIMITS)


def test_inferred_shapes_catch_computed_bombs() -> None:
    c = [numpy_helper.from_array(np.array([1 << 8], np.int64), n) for n in ("a", "b")]
    nodes = [helper.make_node("Concat", ["a", "b", "a"], ["shape"], axis=0),
             helper.make_node("ConstantOfShape", ["shape"], ["y"], name="grow")]
    m = _model(nodes, c)
    check_onnx_static(m, ALLOW, LIMITS)  # no single constant feeds it: only inference sees it
    _refused("E_TENSOR_LIMIT", r"node 'grow' output 'y': 16777216 elements", check_onnx_inferred, m, LIMITS)


def test_long_protocol0_pickles_are_caught_from_their_first_bytes() -> None:
    big = pickle.dumps([f"item {i}" for i in range(20000)], protocol=0)
    assert len(big) > 64 << 10 and sniff(big[: 1 << 20], len(big)) == "pickle"
    text = ("".join(f"word{i}\n" for i in range(20000))).encode()
    assert sniff(text, len(text)) == "text"
    runs = b"N" * (200 << 10)  # a crafted opcode run is scanned only up to the cap
    assert sniff(runs, len(runs)) == "pickle"
