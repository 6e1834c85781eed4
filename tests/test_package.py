"""Sealed packages: built atomically, and every kind of tampering refused with its own code."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import onnx
import pytest

from mmstd.errors import MmstdError
from mmstd.package import MANIFEST, build_package, check_safetensors, open_package
from mmstd.testing import seal_tiny_package


def _reseal(pkg: Path) -> None:
    """Rewrite the manifest (and the card's pins) after a deliberate change, so a later check is reached."""
    from mmstd.files import sha256_file

    card = json.loads((pkg / "card.json").read_text())
    for key in ("model", "weights", "reference"):
        art = card["artifacts"][key]
        art["sha256"], art["bytes"] = sha256_file(pkg / art["path"]), (pkg / art["path"]).stat().st_size
    (pkg / "card.json").write_text(json.dumps(card))
    manifest = json.loads((pkg / MANIFEST).read_text())
    for entry in manifest["files"]:
        entry["sha256"], entry["bytes"] = sha256_file(pkg / entry["path"]), (pkg / entry["path"]).stat().st_size
    (pkg / MANIFEST).write_text(json.dumps(manifest))


def _refused(pkg: Path, code: str, match: str) -> MmstdError:
    with pytest.raises(MmstdError, match=match) as info:
        open_package(pkg)
    assert info.value.code == code, str(info.value)
    return info.value


def test_sealed_package_opens(tiny_package_dir: Path) -> None:
    pkg = open_package(tiny_package_dir)
    assert pkg.card.sealed
    assert sorted(f.path for f in pkg.files) == ["card.json", "model.onnx", "reference.safetensors", "weights.safetensors"]
    arts = pkg.card.sections["artifacts"]
    assert arts["model"]["sha256"] == next(f.sha256 for f in pkg.files if f.path == "model.onnx")
    assert len(pkg.digest) == 64
    assert pkg.summary()["inputs_by_modality"]["audio"][0]["shape"] == ["batch", 50, 13]


def test_build_refuses_existing_output_and_leaves_no_staging(tiny_package_dir: Path, example_card) -> None:
    with pytest.raises(MmstdError, match="already exists; refusing to overwrite") as info:
        seal_tiny_package(example_card, tiny_package_dir)
    assert info.value.code == "E_OUTPUT_EXISTS"
    assert not [p for p in tiny_package_dir.parent.iterdir() if ".staging-" in p.name]


def test_force_replaces_a_package_but_not_other_directories(tmp_path: Path, example_card) -> None:
    out = tmp_path / "p"
    seal_tiny_package(example_card, out, seed=1)
    first = (out / "model.onnx").read_bytes()
    seal_tiny_package(example_card, out, seed=2, force=True)
    assert (out / "model.onnx").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(MmstdError, match="is not an mmstd package; --force only replaces packages"):
        seal_tiny_package(example_card, other, force=True)
    assert (other / "keep.txt").read_text() == "mine"


def test_build_requires_the_three_files(tmp_path: Path, example_card) -> None:
    with pytest.raises(MmstdError, match="missing weights.safetensors, reference.safetensors") as info:
        build_package(tmp_path / "x", example_card, {"model.onnx": tmp_path / "m"})
    assert info.value.code == "E_MANIFEST_MISMATCH"


def test_tampered_byte(package_copy: Path) -> None:
    data = bytearray((package_copy / "model.onnx").read_bytes())
    data[-1] ^= 1
    (package_copy / "model.onnx").write_bytes(bytes(data))
    err = _refused(package_copy, "E_DIGEST_MISMATCH", r"model\.onnx sha256 mismatch \(manifest [0-9a-f]{12}…")
    assert "rebuild it with 'mmstd export'" in (err.hint or "")


def test_missing_file(package_copy: Path) -> None:
    (package_copy / "weights.safetensors").unlink()
    err = _refused(package_copy, "E_MANIFEST_MISMATCH", "differ from manifest.json")
    assert any("weights.safetensors: listed in manifest.json but missing" in p for p in err.problems)


def test_extra_file(package_copy: Path) -> None:
    (package_copy / "payload.py").write_text("print('hi')")
    err = _refused(package_copy, "E_MANIFEST_MISMATCH", "differ from manifest.json")
    assert any("payload.py: present but not listed" in p for p in err.problems)


def test_no_manifest(package_copy: Path) -> None:
    (package_copy / MANIFEST).unlink()
    _refused(package_copy, "E_MANIFEST_MISMATCH", "has no manifest.json")


def test_manifest_path_escape(package_copy: Path) -> None:
    manifest = json.loads((package_copy / MANIFEST).read_text())
    manifest["files"][0]["path"] = "../outside.txt"
    (package_copy / MANIFEST).write_text(json.dumps(manifest))
    _refused(package_copy, "E_FS_PATH_ESCAPE", r"path '\.\./outside\.txt' escapes the root")


def test_symlink_out(package_copy: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    (package_copy / "weights.safetensors").unlink()
    os.symlink(secret, package_copy / "weights.safetensors")
    _refused(package_copy, "E_FS_PATH_ESCAPE", r"weights\.safetensors: is a symlink")


def test_package_dir_itself_a_symlink(tiny_package_dir: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    os.symlink(tiny_package_dir, link)
    _refused(link, "E_FS_PATH_ESCAPE", "is a symlink; a package must be a real directory")


def test_hard_link(package_copy: Path, tmp_path: Path) -> None:
    os.link(package_copy / "weights.safetensors", tmp_path / "elsewhere")
    _refused(package_copy, "E_FS_PATH_ESCAPE", r"weights\.safetensors: has 2 hard links")


def test_fifo(package_copy: Path) -> None:
    os.mkfifo(package_copy / "pipe")
    _refused(package_copy, "E_FS_NOT_REGULAR", r"pipe: is a FIFO, not a regular file")


def test_oversized_file_is_refused_before_reading(package_copy: Path) -> None:
    from mmstd.files import inventory

    with open(package_copy / "big.bin", "wb") as f:
        f.truncate(2 << 20)  # sparse: costs nothing on disk
    with pytest.raises(MmstdError, match=r"big\.bin: is 2097152 bytes \(limit 1048576\)") as info:
        inventory(package_copy, max_file_bytes=1 << 20)
    assert info.value.code == "E_FS_LIMIT"


def test_external_data_outside_package(package_copy: Path) -> None:
    model = onnx.load(package_copy / "model.onnx")
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "../../etc/passwd"), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    onnx.save(model, package_copy / "model.onnx")
    _reseal(package_copy)
    _refused(package_copy, "E_FS_PATH_ESCAPE", r"external data: path '\.\./\.\./etc/passwd' escapes the root")


def test_truncated_onnx(package_copy: Path) -> None:
    data = (package_copy / "model.onnx").read_bytes()
    (package_copy / "model.onnx").write_bytes(data[: len(data) // 3])
    _reseal(package_copy)
    _refused(package_copy, "E_FORMAT_CORRUPT", r"model\.onnx: is not a valid ONNX protobuf")


def test_empty_onnx(package_copy: Path) -> None:
    (package_copy / "model.onnx").write_bytes(b"")
    _reseal(package_copy)
    _refused(package_copy, "E_FORMAT_CORRUPT", r"model\.onnx: is empty; expected an ONNX model")


def test_checker_failure(package_copy: Path) -> None:
    model = onnx.load(package_copy / "model.onnx")
    model.graph.node[0].input[0] = "no_such_tensor"
    onnx.save(model, package_copy / "model.onnx")
    _reseal(package_copy)
    _refused(package_copy, "E_ONNX_INVALID", r"model\.onnx: fails onnx\.checker")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: setattr(m.graph.input[0], "name", "pixels"), r"card \$\.inputs\[0\] 'image' is not a graph input"),
        (lambda m: m.graph.input[1].type.tensor_type.__setattr__("elem_type", onnx.TensorProto.INT32),
         r"input 'text' \(\$\.inputs\[1\]\): dtype is int32 in the graph, int64 in the card"),
        (lambda m: m.graph.input[2].type.tensor_type.shape.dim.add().__setattr__("dim_value", 1),
         r"input 'audio' \(\$\.inputs\[2\]\): rank is 4 in the graph, 3 in the card"),
        (lambda m: m.graph.input[0].type.tensor_type.shape.dim[1].__setattr__("dim_value", 32),
         r"dim 1 is 32 in the graph, 28 in the card"),
        (lambda m: m.graph.input[0].type.tensor_type.shape.dim[0].__setattr__("dim_param", "unk__182"),
         r"dim 0 is 'unk__182' in the graph, 'batch' in the card"),
        (lambda m: m.graph.output[0].type.tensor_type.shape.dim[1].__setattr__("dim_value", 3),
         r"output 'probabilities' \(\$\.outputs\[0\]\): dim 1 is 3 in the graph, 10 in the card"),
    ],
)
def test_io_contract_mismatch(package_copy: Path, edit, match: str) -> None:
    model = onnx.load(package_copy / "model.onnx")
    edit(model)
    onnx.save(model, package_copy / "model.onnx")
    _reseal(package_copy)
    err = _refused(package_copy, "E_IO_CONTRACT", "graph inputs/outputs differ from the card")
    assert any(__import__("re").search(match, p) for p in err.problems), err.problems


def test_card_pins_must_match_manifest(package_copy: Path) -> None:
    card = json.loads((package_copy / "card.json").read_text())
    card["artifacts"]["weights"]["sha256"] = "0" * 64
    (package_copy / "card.json").write_text(json.dumps(card))
    manifest = json.loads((package_copy / MANIFEST).read_text())
    from mmstd.files import sha256_file

    for e in manifest["files"]:
        e["sha256"], e["bytes"] = sha256_file(package_copy / e["path"]), (package_copy / e["path"]).stat().st_size
    (package_copy / MANIFEST).write_text(json.dumps(manifest))
    _refused(package_copy, "E_DIGEST_MISMATCH", r"\$\.artifacts\.weights: pins weights\.safetensors")


def test_draft_card_in_package_is_refused(package_copy: Path) -> None:
    card = json.loads((package_copy / "card.json").read_text())
    del card["parity"]
    (package_copy / "card.json").write_text(json.dumps(card))
    _reseal(package_copy)
    _refused(package_copy, "E_CARD_SCHEMA", r"a sealed card needs 'parity'; it is a draft")


def _write_safetensors(path: Path, header: dict | bytes, data: bytes = b"", length: int | None = None) -> None:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes((length if length is not None else len(raw)).to_bytes(8, "little") + raw + data)


@pytest.mark.parametrize(
    ("header", "data", "length", "match"),
    [
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, 1 << 40, "header length 1099511627776 exceeds"),
        (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
         b"\0" * 4, None, "duplicate key 'a'"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
         b"\0" * 12, None, "starts at 4, expected 8"),
        ({"a": {"dtype": "OBJ", "shape": [1], "data_offsets": [0, 1]}}, b"\0", None, "dtype 'OBJ' is not one of"),
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, None, r"do not hold F32\[3\]"),
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, None, "is not a list of non-negative ints"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 9, None, "5 bytes after the last tensor"),
        ({"__metadata__": {"x": 1}}, b"", None, "__metadata__ must map strings to strings"),
        (b"\x80\x04\x95", b"", None, "header is not strict JSON"),
    ],
)
def test_safetensors_header_attacks(tmp_path: Path, header, data: bytes, length, match: str) -> None:
    _write_safetensors(tmp_path / "w.safetensors", header, data, length)
    with pytest.raises(MmstdError, match=match) as info:
        check_safetensors(tmp_path, "w.safetensors")
    assert info.value.code == "E_SAFETENSORS_INVALID"


def test_safetensors_from_the_library_pass(tiny_package_dir: Path) -> None:
    tensors = check_safetensors(tiny_package_dir, "weights.safetensors")
    assert tensors["head.weight"] == ("F32", (28 * 28 * 1 + 16 + 50 * 13, 10))


def test_package_copy_is_not_affected_by_shutil_copy_metadata(tiny_package_dir: Path, tmp_path: Path) -> None:
    # copytree is how users move packages around; the copy must still verify.
    dest = tmp_path / "moved"
    shutil.copytree(tiny_package_dir, dest)
    assert open_package(dest).digest == open_package(tiny_package_dir).digest
