"""Hostile submissions, crafted in code: each class of SECURITY.md in a few lines, with the code it must get.

``build_all(dest, env)`` writes every case of ``CASES`` into ``dest`` (a directory of submissions)
from one good sealed package; ``Env`` names the good package and a canary file outside ``dest``
that no case may read or write. Nothing binary is committed: ONNX graphs are built with
``onnx.helper`` and archives with ``zipfile``; pickles are benign objects (the gate never loads them).
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import stat
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mmstd.files import sha256_file

#: The policy the hostile set runs under: small caps so the limit cases stay cheap.
TEST_POLICY = """\
schema_version: "1.0"
name: hostile-test
evaluate: {suites: [digits-av], backends: [ort-cpu], mode: reference}
limits:
  timeout_s: 3
  grace_s: 2
  memory_mib: 1024
  max_files: 40
  max_file_mib: 4
  max_total_mib: 8
  max_depth: 6
  max_tensor_elements: 16777216
  max_dim: 1048576
  archive_max_members: 64
  archive_max_ratio: 100
onnx:
  ir_version: {min: 7, max: 10}
  opsets: {ai.onnx: {min: 13, max: 21}}
card:
  required: [model_details.license, intended_use.primary_uses, caveats]
rules:
  - {id: reference-parity, kind: reference_parity, min_argmax_agreement: 0.99, max_abs_diff: 0.001}
  - {id: digits-accuracy, kind: score, suite: digits-av, metric: accuracy, min: 0.5}
  - {id: cpu-latency, kind: latency, backend: ort-cpu, percentile: p99, max_ms: 1000}
"""


@dataclass(frozen=True)
class Env:
    """What the builders share: the good package to copy and the canary outside the submissions."""

    good: Path
    outside: Path

    @property
    def canary(self) -> Path:
        return self.outside / "canary.txt"


@dataclass(frozen=True)
class Case:
    """One hostile submission: its entry name in the submissions directory, expected code and message."""

    name: str
    code: str
    match: str
    build: Callable[[Path, Env], None]
    kind: str = "fs"


CASES: list[Case] = []


def case(name: str, code: str, match: str, kind: str) -> Callable[[Callable[[Path, Env], None]], Callable[[Path, Env], None]]:
    def register(fn: Callable[[Path, Env], None]) -> Callable[[Path, Env], None]:
        CASES.append(Case(name, code, match, fn, kind))
        return fn
    return register


# ------------------------------------------------------------------------------------------ helpers


def copy_good(env: Env, dest: Path) -> Path:
    shutil.copytree(env.good, dest)
    return dest


def reseal(pkg: Path, *, card: bool = True) -> None:
    """Recompute the card's pins and the manifest after a deliberate change, so a later check is reached."""
    files = sorted(str(p.relative_to(pkg)) for p in pkg.rglob("*") if p.is_file() and not p.is_symlink()
                   and p.name != "manifest.json")
    if card:
        doc = json.loads((pkg / "card.json").read_text())
        for key in ("model", "weights", "reference"):
            art = doc["artifacts"][key]
            art["sha256"], art["bytes"] = sha256_file(pkg / art["path"]), (pkg / art["path"]).stat().st_size
        assets = [f for f in files if f.startswith("assets/")]
        external = [f for f in files if f not in assets and f not in
                    ("card.json", "model.onnx", "weights.safetensors", "reference.safetensors")]
        for key, names in (("assets", assets), ("external_data", external)):
            doc["artifacts"].pop(key, None)
            if names:
                doc["artifacts"][key] = [{"path": f, "sha256": sha256_file(pkg / f), "bytes": (pkg / f).stat().st_size}
                                         for f in names]
        (pkg / "card.json").write_text(json.dumps(doc, indent=2))
    write_manifest(pkg, files)


def write_manifest(pkg: Path, files: list[str], extra: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["files"] = [{"path": f, "sha256": sha256_file(pkg / f), "bytes": (pkg / f).stat().st_size} for f in files]
    manifest["files"] += list(extra)
    (pkg / "manifest.json").write_text(json.dumps(manifest, indent=2))


def with_card_bytes(env: Env, dest: Path, data: bytes) -> None:
    copy_good(env, dest)
    (dest / "card.json").write_bytes(data)
    reseal(dest, card=False)


def card_text(env: Env) -> str:
    return (env.good / "card.json").read_text()


def with_model(env: Env, dest: Path, model: Any) -> None:
    copy_good(env, dest)
    (dest / "model.onnx").write_bytes(model.SerializeToString())
    reseal(dest)


def base_model(env: Env) -> Any:
    return onnx.load(str(env.good / "model.onnx"))


def _const(name: str, value: Any, dtype: Any = np.int64) -> Any:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def mix_into_logits(model: Any, nodes: list[Any], inits: list[Any], tensor: str, op: str = "Add") -> Any:
    """Make ``tensor`` flow into the logits (``logits_raw <op> tensor``) so the runtime cannot skip it."""
    g = model.graph
    for n in g.node:
        if n.op_type == "Softmax" and n.input[0] == "logits_raw":
            n.input[0] = "logits_mixed"
    g.node.extend(nodes + [helper.make_node(op, ["logits_raw", tensor], ["logits_mixed"])])
    g.initializer.extend(inits)
    _topo_sort(g)
    return model


def rewire_output(model: Any, nodes: list[Any], inits: list[Any], tensor: str) -> Any:
    """Replace what the final Cast to ``probabilities`` reads with ``tensor`` (built from ``probabilities_f``)."""
    g = model.graph
    for n in g.node:
        if n.op_type == "Cast" and n.output[0] == "probabilities":
            n.input[0] = tensor
    g.node.extend(nodes)
    g.initializer.extend(inits)
    _topo_sort(g)
    return model


def _topo_sort(g: Any) -> None:
    known = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    pending, ordered = list(g.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            ordered += pending  # a deliberately broken graph keeps its order
            break
        for n in ready:
            ordered.append(n)
            known.update(n.output)
            pending.remove(n)
    del g.node[:]
    g.node.extend(ordered)


def st_bytes(header: str | dict[str, Any], data: bytes, *, n: int | None = None) -> bytes:
    h = header if isinstance(header, str) else json.dumps(header)
    raw = h.encode()
    return struct.pack("<Q", len(raw) if n is None else n) + raw + data


def with_weights(env: Env, dest: Path, data: bytes) -> None:
    copy_good(env, dest)
    (dest / "weights.safetensors").write_bytes(data)
    reseal(dest)


def with_asset(env: Env, dest: Path, rel: str, data: bytes) -> None:
    copy_good(env, dest)
    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
    (dest / rel).write_bytes(data)
    reseal(dest)


def package_zip(pkg: Path, zpath: Path, *, prefix: str = "", extra: Callable[[zipfile.ZipFile], None] | None = None) -> None:
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(pkg.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + str(p.relative_to(pkg)))
        if extra is not None:
            extra(zf)


def keras_zip(config: dict[str, Any]) -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.1", "date_saved": "2026-11-25"}))
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(64))
    return buf.getvalue()


def keras_config(layer: dict[str, Any]) -> dict[str, Any]:
    dense = {"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense", "units": 10},
             "registered_name": None}
    return {"module": "keras", "class_name": "Functional", "config": {"name": "m", "layers": [dense, layer]},
            "registered_name": "Functional"}


# ============================================================================ filesystem escapes


@case("fs_symlink_to_outside_file", "E_FS_PATH_ESCAPE", r"weights\.safetensors: is a symlink; links are not allowed", "fs")
def _(dest: Path, env: Env) -> None:
    copy_good(env, dest)
    (dest / "weights.safetensors").unlink()
    (dest / "weights.safetensors").symlink_to(env.canary)


@case("fs_symlinked_dir", "E_FS_PATH_ESCAPE", r"assets: is a symlink", "fs")
def _(dest: Path, env: Env) -> None:
    copy_good(env, dest)
    (dest / "assets").symlink_to(env.outside, target_is_directory=True)


@case("fs_hard_link_to_outside", "E_FS_PATH_ESCAPE", r"assets/notes\.txt: has 2 hard links", "fs")
def _(dest: Path, env: Env) -> None:
    copy_good(env, dest)
    (dest / "assets").mkdir()
    os.link(env.canary, dest / "assets" / "notes.txt")


@case("fs_fifo", "E_FS_NOT_REGULAR", r"assets/pipe: is a FIFO", "fs")
def _(dest: Path, env: Env) -> None:
    copy_good(env, dest)
    (dest / "assets").mkdir()
    os.mkfifo(dest / "assets" / "pipe")


@case("fs_socket", "E_FS_NOT_REGULAR", r"assets/s: is a socket", "fs")
def _(dest: Path, env: Env) -> None:
    copy_good(env, dest)
    (dest / "assets").mkdir()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    try:
        os.chdir(dest / "assets")  # a relative bind keeps us under the 108-byte socket path limit
        s.bind("s")
    finally:
        os.chdir(cwd)
        s.close()


@case("fs_manifest_absolute_path", "E_FS_PATH_ESCAPE", r"manifest\.json:\$\.files\[\d+\]\.path: path '/etc/passwd' escapes", "fs")
def _(dest: Path, env: Env) -> None:
    copy_good(env, dest)
    files = json.loads((dest / "manifest.json").read_text())["files"]
    write_manifest(dest, [f["path"] for f in files], [{"path": "/etc/passwd", "sha256": "0" * 64, "bytes": 1}])


@case("fs_manifest_dotdot", "E_FS_PATH_ESCAPE", r"manifest\.json:\$\.files\[\d+\]\.path: path '\.\./outside/canary\.txt' escapes", "fs")
def _(dest: Path, env: Env) -> None:
    copy_good(env, dest)
    files = json.loads((dest / "manifest.json").read_text())["files"]
    write_manifest(dest, [f["path"] for f in files],
                   [{"path": "../outside/canary.txt", "sha256": sha256_file(env.canary), "bytes": env.canary.stat().st_size}])


@case("fs_external_data_escape", "E_FS_PATH_ESCAPE", r"model\.onnx: tensor 'head\.bias' external data: path '\.\./\.\./outside/canary\.txt'", "fs")
def _(dest: Path, env: Env) -> None:
    model = base_model(env)
    bias = next(t for t in model.graph.initializer if t.name == "head.bias")
    bias.ClearField("raw_data")
    del bias.float_data[:]
    bias.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../../outside/canary.txt"), ("offset", "0"), ("length", "40")):
        bias.external_data.add(key=k, value=v)
    with_model(env, dest, model)


@case("fs_deep_nesting", "E_FS_LIMIT", r"nested deeper than 6 levels", "fs")
def _(dest: Path, env: Env) -> None:
    copy_good(env, dest)
    deep = dest.joinpath("assets", *["d"] * 10)
    deep.mkdir(parents=True)
    (deep / "x.txt").write_text("deep")


@case("fs_too_many_files", "E_FS_LIMIT", r"holds more than 40 files", "fs")
def _(dest: Path, env: Env) -> None:
    copy_good(env, dest)
    (dest / "assets").mkdir()
    for i in range(45):
        (dest / "assets" / f"f{i:03d}.txt").write_text(str(i))


@case("fs_sparse_5gib_file", "E_FS_LIMIT", r"assets/huge\.txt: is 5368709120 bytes \(limit 4194304\)", "fs")
def _(dest: Path, env: Env) -> None:
    copy_good(env, dest)
    (dest / "assets").mkdir()
    with open(dest / "assets" / "huge.txt", "wb") as f:
        f.truncate(5 << 30)  # sparse: costs nothing on disk, and must never be read


@case("fs_total_size", "E_FS_LIMIT", r"files total \d+ bytes \(limit 8388608\)", "fs")
def _(dest: Path, env: Env) -> None:
    copy_good(env, dest)
    (dest / "assets").mkdir()
    for i in range(3):
        with open(dest / "assets" / f"part{i}.txt", "wb") as f:
            f.truncate(3 << 20)


@case("fs_undecodable_name", "E_FS_LIMIT", r"a file name is not valid UTF-8", "fs")
def _(dest: Path, env: Env) -> None:
    copy_good(env, dest)
    (dest / "assets").mkdir()
    fd = os.open(os.fsencode(dest / "assets") + b"/\xff\xfe.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)


@case("fs_symlinked_submission", "E_FS_PATH_ESCAPE", r"\.: is a symlink; a submission must be a real directory", "fs")
def _(dest: Path, env: Env) -> None:
    dest.symlink_to(env.good, target_is_directory=True)


@case("fs_fifo_submission", "E_FS_NOT_REGULAR", r"\.: is a FIFO, socket or device", "fs")
def _(dest: Path, env: Env) -> None:
    os.mkfifo(dest)


# ======================================================================================= archives


@case("zip_slip.zip", "E_ARCHIVE_UNSAFE", r"'\.\./\.\./escaped\.txt': escapes the archive root", "archive")
def _(dest: Path, env: Env) -> None:
    package_zip(env.good, dest, extra=lambda zf: zf.writestr("../../escaped.txt", "pwned"))


@case("zip_absolute_member.zip", "E_ARCHIVE_UNSAFE", r"'/tmp/mmstd-hostile-abs\.txt': escapes the archive root", "archive")
def _(dest: Path, env: Env) -> None:
    package_zip(env.good, dest, extra=lambda zf: zf.writestr(zipfile.ZipInfo("/tmp/mmstd-hostile-abs.txt"), "pwned"))


@case("zip_symlink_member.zip", "E_ARCHIVE_UNSAFE", r"'assets/passwd': is a symlink member", "archive")
def _(dest: Path, env: Env) -> None:
    def link(zf: zipfile.ZipFile) -> None:
        info = zipfile.ZipInfo("assets/passwd")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, str(env.canary))
    package_zip(env.good, dest, extra=link)


@case("zip_bomb.zip", "E_ARCHIVE_UNSAFE", r"'assets/zeros\.txt': compression ratio \d+:1 \(limit 100:1; zip bomb\)", "archive")
def _(dest: Path, env: Env) -> None:
    package_zip(env.good, dest, extra=lambda zf: zf.writestr("assets/zeros.txt", bytes(3 << 20)))


@case("zip_too_many_members.zip", "E_ARCHIVE_UNSAFE", r"has 7\d members \(limit 64\)", "archive")
def _(dest: Path, env: Env) -> None:
    def many(zf: zipfile.ZipFile) -> None:
        for i in range(70):
            zf.writestr(f"assets/m{i}.txt", "x")
    package_zip(env.good, dest, extra=many)


@case("zip_duplicate_member.zip", "E_ARCHIVE_UNSAFE", r"'model\.onnx': appears twice", "archive")
def _(dest: Path, env: Env) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate we are making on purpose
        package_zip(env.good, dest, extra=lambda zf: zf.writestr("model.onnx", b"\x08\x09"))


@case("zip_encrypted_member.zip", "E_ARCHIVE_UNSAFE", r"'assets/secret\.txt': is encrypted", "archive")
def _(dest: Path, env: Env) -> None:
    package_zip(env.good, dest, extra=lambda zf: zf.writestr("assets/secret.txt", b"\x00" * 12 + b"ciphertext"))
    # zipfile cannot write encrypted members: set the 'encrypted' flag bit in both headers by hand
    data = bytearray(dest.read_bytes())
    name = b"assets/secret.txt"
    for sig, flag_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        at = data.find(sig)
        while at != -1:
            if data[at + name_at:at + name_at + len(name)] == name:
                data[at + flag_at] |= 0x1
            at = data.find(sig, at + 4)
    dest.write_bytes(bytes(data))


@case("zip_corrupt.zip", "E_FORMAT_CORRUPT", r"is not a readable zip archive", "archive")
def _(dest: Path, env: Env) -> None:
    dest.write_bytes(b"PK\x03\x04" + os.urandom(200))


# ==================================================================================== ONNX graphs


@case("onnx_empty", "E_FORMAT_CORRUPT", r"model\.onnx: is empty; expected an ONNX model", "onnx")
def _(dest: Path, env: Env) -> None:
    copy_good(env, dest)
    (dest / "model.onnx").write_bytes(b"")
    reseal(dest)


@case("onnx_truncated", "E_FORMAT_CORRUPT", r"model\.onnx: is not a valid ONNX protobuf", "onnx")
def _(dest: Path, env: Env) -> None:
    copy_good(env, dest)
    data = (dest / "model.onnx").read_bytes()
    (dest / "model.onnx").write_bytes(data[: len(data) // 3])
    reseal(dest)


@case("onnx_unknown_domain", "E_ONNX_UNSUPPORTED", r"model\.onnx:opset_import: domain 'com\.evil' is not allowed", "onnx")
def _(dest: Path, env: Env) -> None:
    model = base_model(env)
    model.opset_import.append(helper.make_opsetid("com.evil", 1))
    model.graph.node.append(helper.make_node("Backdoor", ["logits_raw"], ["evil"], domain="com.evil"))
    with_model(env, dest, model)


@case("onnx_future_opset", "E_ONNX_UNSUPPORTED", r"opset 99 of domain 'ai\.onnx' is not allowed \(allowed 13\.\.21\)", "onnx")
def _(dest: Path, env: Env) -> None:
    model = base_model(env)
    model.opset_import[0].version = 99
    with_model(env, dest, model)


@case("onnx_future_ir", "E_ONNX_UNSUPPORTED", r"model\.onnx: IR version 99 is not allowed \(allowed 7\.\.10\)", "onnx")
def _(dest: Path, env: Env) -> None:
    model = base_model(env)
    model.ir_version = 99
    with_model(env, dest, model)


@case("onnx_unknown_op", "E_ONNX_UNSUPPORTED", r"operator 'ai\.onnx':NotAnOp does not exist at opset 17", "onnx")
def _(dest: Path, env: Env) -> None:
    model = base_model(env)
    model.graph.node.append(helper.make_node("NotAnOp", ["logits_raw"], ["x"]))
    with_model(env, dest, model)


@case("onnx_checker_failure", "E_ONNX_INVALID", r"model\.onnx: fails onnx\.checker", "onnx")
def _(dest: Path, env: Env) -> None:
    model = base_model(env)
    model.graph.node.append(helper.make_node("Relu", ["no_such_tensor"], ["dangling"]))
    with_model(env, dest, model)


@case("onnx_huge_declared_dim", "E_TENSOR_LIMIT", r"initializer 'ghost': dimension 1099511627776 \(limit 1048576\)", "onnx")
def _(dest: Path, env: Env) -> None:
    model = base_model(env)
    ghost = TensorProto(name="ghost", data_type=TensorProto.FLOAT, dims=[1 << 40])  # declared, no data
    model.graph.initializer.append(ghost)
    with_model(env, dest, model)


@case("onnx_huge_input_dim", "E_TENSOR_LIMIT", r"input 'image': dimension 4294967296", "onnx")
def _(dest: Path, env: Env) -> None:
    model = base_model(env)
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 1 << 32
    with_model(env, dest, model)


@case("onnx_constantofshape_bomb", "E_TENSOR_LIMIT", r"node 'bomb' \(ConstantOfShape output\): 1099511627776 elements", "onnx")
def _(dest: Path, env: Env) -> None:
    model = base_model(env)
    nodes = [helper.make_node("ConstantOfShape", ["bomb_shape"], ["bomb_out"], name="bomb"),
             helper.make_node("ReduceSum", ["bomb_out"], ["bomb_sum"], keepdims=0)]
    mix_into_logits(model, nodes, [_const("bomb_shape", [1 << 20, 1 << 20])], "bomb_sum")
    with_model(env, dest, model)


@case("onnx_expand_bomb", "E_TENSOR_LIMIT", r"node 'fan' \(Expand output\): 4294967296 elements", "onnx")
def _(dest: Path, env: Env) -> None:
    model = base_model(env)
    nodes = [helper.make_node("Expand", ["head.bias", "fan_shape"], ["fan_out"], name="fan"),
             helper.make_node("ReduceSum", ["fan_out"], ["fan_sum"], keepdims=0)]
    mix_into_logits(model, nodes, [_const("fan_shape", [1 << 16, 1 << 16, 1])], "fan_sum")
    with_model(env, dest, model)


@case("onnx_inferred_tile_bomb", "E_TENSOR_LIMIT", r"node 'tiler' output 'tiled': dimension 1450000 \(limit 1048576\)", "onnx")
def _(dest: Path, env: Env) -> None:
    model = base_model(env)  # no constant builder: only shape inference with data propagation sees it
    nodes = [helper.make_node("Tile", ["head.weight", "reps"], ["tiled"], name="tiler"),
             helper.make_node("ReduceSum", ["tiled"], ["tiled_sum"], keepdims=0)]
    mix_into_logits(model, nodes, [_const("reps", [1000, 1000])], "tiled_sum")
    with_model(env, dest, model)


@case("onnx_output_dtype_contradicts_card", "E_IO_CONTRACT", r"output 'probabilities' .*dtype is float64 in the graph, float32 in the card", "onnx")
def _(dest: Path, env: Env) -> None:
    model = base_model(env)
    for n in model.graph.node:
        if n.output[0] == "probabilities":
            n.attribute[0].i = TensorProto.DOUBLE
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    with_model(env, dest, model)


# ============================================================================ runtime (sandboxed)


@case("run_never_finishes", "E_TIMEOUT", r"model\.onnx: (run: .*terminate flag.*\(limit 3 s\)|did not finish within 3 s)", "runtime")
def _(dest: Path, env: Env) -> None:
    model = base_model(env)
    body = helper.make_graph(
        [helper.make_node("Add", ["acc", "one"], ["acc_out"]), helper.make_node("Identity", ["cond"], ["cond_out"])],
        "spin",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1])],
        initializer=[_const("one", [1.0], np.float32)],
    )
    nodes = [helper.make_node("Loop", ["trips", "keep_going", "zero_f"], ["spun"], body=body),
             helper.make_node("Mul", ["spun", "zero_f"], ["spun_zero"])]
    inits = [_const("trips", 1 << 62), _const("keep_going", True, np.bool_), _const("zero_f", [0.0], np.float32)]
    mix_into_logits(model, nodes, inits, "spun_zero")
    with_model(env, dest, model)


@case("run_unbounded_allocation", "E_MEMORY_LIMIT", r"model\.onnx: run: .*\(limit 1024 MiB address space\)", "runtime")
def _(dest: Path, env: Env) -> None:
    model = base_model(env)  # the size depends on input values, so no static check can bound it
    nodes = [helper.make_node("ReduceMax", ["text"], ["tmax"], keepdims=0),
             helper.make_node("Add", ["tmax", "one_i"], ["tmax1"]),
             helper.make_node("Mul", ["tmax1", "scale"], ["n"]),
             helper.make_node("Reshape", ["n", "one_dim"], ["n1"]),
             helper.make_node("ConstantOfShape", ["n1"], ["hog"]),
             helper.make_node("ReduceSum", ["hog"], ["hog_sum"], keepdims=0)]
    inits = [_const("one_i", 1), _const("scale", 1 << 26), _const("one_dim", [1])]
    mix_into_logits(model, nodes, inits, "hog_sum")
    with_model(env, dest, model)


@case("run_nan_output", "E_NONFINITE_OUTPUT", r"model\.onnx:output 'probabilities': 20 NaN and 0 Inf among 20 values", "runtime")
def _(dest: Path, env: Env) -> None:
    model = base_model(env)
    mix_into_logits(model, [], [_const("nan", [float("nan")], np.float32)], "nan")
    with_model(env, dest, model)


@case("run_inf_output", "E_NONFINITE_OUTPUT", r"0 NaN and 20 Inf among 20 values", "runtime")
def _(dest: Path, env: Env) -> None:
    model = base_model(env)
    rewire_output(model, [helper.make_node("Div", ["probabilities_f", "zero_div"], ["infs"])],
                  [_const("zero_div", [0.0], np.float32)], "infs")
    with_model(env, dest, model)


@case("run_output_shape_contradicts_card", "E_IO_CONTRACT", r"output 'probabilities': shape is \(2, 7\) at run time \(expected \(2, 10\)", "runtime")
def _(dest: Path, env: Env) -> None:
    model = base_model(env)  # the slice end depends on input values: shape inference cannot see the lie
    nodes = [helper.make_node("ReduceMax", ["text"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero_i"], ["m0"]),
             helper.make_node("Add", ["m0", "seven"], ["end"]),
             helper.make_node("Reshape", ["end", "one_dim"], ["ends"]),
             helper.make_node("Slice", ["probabilities_f", "starts", "ends", "axes"], ["sliced"])]
    inits = [_const("zero_i", 0), _const("seven", 7), _const("one_dim", [1]), _const("starts", [0]), _const("axes", [1])]
    rewire_output(model, nodes, inits, "sliced")
    with_model(env, dest, model)


@case("run_disagrees_with_reference", "E_PARITY", r"rule reference-parity: .*(argmax agreement|max abs diff) = [\d.e-]+ [<>] ", "runtime")
def _(dest: Path, env: Env) -> None:
    model = base_model(env)
    w = next(t for t in model.graph.initializer if t.name == "head.weight")
    w.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(w), "head.weight"))
    with_model(env, dest, model)


@case("run_nondeterministic", "E_NONDETERMINISTIC", r"model\.onnx: repeat: output 'probabilities' differs between two runs", "runtime")
def _(dest: Path, env: Env) -> None:
    model = base_model(env)  # an unseeded random op: tiny noise, inside parity tolerances, different every run
    noise = helper.make_node("RandomUniform", [], ["noise"], shape=[1, 10], low=0.0, high=1e-3, dtype=TensorProto.FLOAT)
    mix_into_logits(model, [noise], [], "noise")
    with_model(env, dest, model)


# ==================================================================================== safetensors


@case("st_huge_header_length", "E_SAFETENSORS_INVALID", r"weights\.safetensors: header length 4611686018427387904 exceeds", "safetensors")
def _(dest: Path, env: Env) -> None:
    with_weights(env, dest, st_bytes({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4), n=1 << 62))


@case("st_duplicate_names", "E_SAFETENSORS_INVALID", r"weights\.safetensors: header is not strict JSON: .*duplicate key 'w'", "safetensors")
def _(dest: Path, env: Env) -> None:
    t = '{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}'
    with_weights(env, dest, st_bytes(f'{{"w": {t}, "w": {t}}}', bytes(4)))


@case("st_overlapping_offsets", "E_SAFETENSORS_INVALID", r"tensor 'b': starts at 4, expected 8 \(overlap or gap\)", "safetensors")
def _(dest: Path, env: Env) -> None:
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
    with_weights(env, dest, st_bytes(header, bytes(12)))


@case("st_bad_dtype", "E_SAFETENSORS_INVALID", r"tensor 'a': dtype 'F128' is not one of", "safetensors")
def _(dest: Path, env: Env) -> None:
    with_weights(env, dest, st_bytes({"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, bytes(16)))


@case("st_trailing_bytes", "E_SAFETENSORS_INVALID", r"weights\.safetensors: 7 bytes after the last tensor", "safetensors")
def _(dest: Path, env: Env) -> None:
    with_weights(env, dest, st_bytes({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4 + 7)))


@case("st_reference_lacks_input", "E_SAFETENSORS_INVALID", r"reference\.safetensors: lacks tensor 'input\.audio'", "safetensors")
def _(dest: Path, env: Env) -> None:
    from safetensors.numpy import load_file, save_file

    copy_good(env, dest)
    ref = load_file(str(dest / "reference.safetensors"))
    del ref["input.audio"]
    save_file(ref, str(dest / "reference.safetensors"))
    reseal(dest)


# ============================================================================= code-bearing files


@case("code_pickle_extension", "E_UNSAFE_CONTENT", r"assets/labels\.pkl: '\.pkl' files are pickles", "code")
def _(dest: Path, env: Env) -> None:
    with_asset(env, dest, "assets/labels.pkl", pickle.dumps(["0", "1"], protocol=4))


@case("code_pickle_as_safetensors", "E_UNSAFE_CONTENT", r"weights\.safetensors: is a pickle \(magic bytes\)", "code")
def _(dest: Path, env: Env) -> None:
    with_weights(env, dest, pickle.dumps({"head.weight": [0.0] * 8}, protocol=4))


@case("code_protocol0_pickle_as_text", "E_UNSAFE_CONTENT", r"assets/vocab\.txt: is a pickle", "code")
def _(dest: Path, env: Env) -> None:
    with_asset(env, dest, "assets/vocab.txt", b"cos\nsystem\n(S'echo pwned'\ntR.")


@case("code_torch_zip_checkpoint", "E_UNSAFE_CONTENT", r"assets/model\.bin: is a zip holding pickles \('archive/data\.pkl'", "code")
def _(dest: Path, env: Env) -> None:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": 1}, protocol=2))
        zf.writestr("archive/version", "3\n")
    with_asset(env, dest, "assets/model.bin", buf.getvalue())


@case("code_keras_lambda", "E_UNSAFE_CONTENT", r"assets/model\.keras:config\.json:\$\.config\.layers\[1\]: Keras 'Lambda' object holds Python code", "code")
def _(dest: Path, env: Env) -> None:
    layer = {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
             "config": {"name": "evil", "function": {"class_name": "__lambda__", "config": {"code": "4wEAAAAA..."}}}}
    with_asset(env, dest, "assets/model.keras", keras_zip(keras_config(layer)))


@case("code_keras_module_reference", "E_UNSAFE_CONTENT", r"references module 'os' \(allowed: keras\.\*\)", "code")
def _(dest: Path, env: Env) -> None:
    layer = {"module": "os", "class_name": "system", "registered_name": None, "config": {"name": "x"}}
    with_asset(env, dest, "assets/model.keras", keras_zip(keras_config(layer)))


@case("code_keras_submission.keras", "E_UNSAFE_CONTENT", r"\.:config\.json:\$\.config\.layers\[1\]: Keras 'Lambda'", "code")
def _(dest: Path, env: Env) -> None:
    layer = {"module": "keras.layers", "class_name": "Lambda", "registered_name": None, "config": {"name": "evil"}}
    dest.write_bytes(keras_zip(keras_config(layer)))


@case("code_keras_without_code", "E_FORMAT_UNSUPPORTED", r"assets/model\.keras: is a Keras archive", "code")
def _(dest: Path, env: Env) -> None:
    layer = {"module": "keras.layers", "class_name": "Dense", "registered_name": None, "config": {"name": "d2", "units": 2}}
    with_asset(env, dest, "assets/model.keras", keras_zip(keras_config(layer)))


@case("code_native_library", "E_UNSAFE_CONTENT", r"assets/ops\.dat: is native code", "code")
def _(dest: Path, env: Env) -> None:
    with_asset(env, dest, "assets/ops.dat", b"\x7fELF\x02\x01\x01" + bytes(57))


@case("code_shared_object_extension", "E_UNSAFE_CONTENT", r"custom_ops\.so: '\.so' files are code or native libraries", "code")
def _(dest: Path, env: Env) -> None:
    with_asset(env, dest, "custom_ops.so", b"\x7fELF" + bytes(60))


@case("format_hdf5", "E_FORMAT_UNSUPPORTED", r"assets/weights\.h5: is HDF5", "code")
def _(dest: Path, env: Env) -> None:
    with_asset(env, dest, "assets/weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(100))


@case("format_unknown_binary_asset", "E_FORMAT_UNSUPPORTED", r"assets/blob\.dat: content is binary, not an allowed asset kind", "code")
def _(dest: Path, env: Env) -> None:
    with_asset(env, dest, "assets/blob.dat", bytes(range(256)) * 4)


@case("format_extension_mismatch", "E_FORMAT_UNSUPPORTED", r"assets/photo\.png: extension '\.png' says png but the content is text", "code")
def _(dest: Path, env: Env) -> None:
    with_asset(env, dest, "assets/photo.png", b"not a picture\n")


# ======================================================================================= the card


@case("card_duplicate_keys", "E_CARD_JSON", r"card\.json: duplicate key 'schema_version'", "card")
def _(dest: Path, env: Env) -> None:
    text = card_text(env)
    with_card_bytes(env, dest, ('{"schema_version": "1.0", ' + text.lstrip()[1:]).encode())


@case("card_nan", "E_CARD_JSON", r"card\.json: NaN is not valid JSON", "card")
def _(dest: Path, env: Env) -> None:
    with_card_bytes(env, dest, card_text(env).replace('"samples": 8', '"samples": NaN', 1).encode())


@case("card_bom", "E_CARD_JSON", r"card\.json: starts with a UTF-8 byte-order mark", "card")
def _(dest: Path, env: Env) -> None:
    with_card_bytes(env, dest, b"\xef\xbb\xbf" + card_text(env).encode())


@case("card_deep_nesting", "E_CARD_JSON", r"card\.json: .*nested deeper than 64 levels", "card")
def _(dest: Path, env: Env) -> None:
    text = card_text(env).replace('"caveats": [', '"caveats": ' + "[" * 100_000 + "]" * 99_999 + ", [", 1)
    with_card_bytes(env, dest, text.encode())


@case("card_huge_int", "E_CARD_JSON", r"card\.json: integer 1000000000000000000\d*\.\.\. is too large", "card")
def _(dest: Path, env: Env) -> None:
    with_card_bytes(env, dest, card_text(env).replace('"samples": 8', '"samples": 1' + "0" * 400, 1).encode())


@case("card_unknown_field", "E_CARD_SCHEMA", r"card\.json: \$: unknown field 'backdoor'", "card")
def _(dest: Path, env: Env) -> None:
    doc = json.loads(card_text(env))
    doc["backdoor"] = {"cmd": "rm -rf /"}
    with_card_bytes(env, dest, json.dumps(doc).encode())


@case("card_invalid_utf8", "E_CARD_JSON", r"card\.json: byte \d+ is not valid UTF-8", "card")
def _(dest: Path, env: Env) -> None:
    with_card_bytes(env, dest, card_text(env).encode().replace(b"Example Team", b"Example \xff\xfe Team", 1))


@case("card_missing_policy_field", "E_CARD_SCHEMA", r"card\.json:\$\.caveats: missing or empty \(required by the policy\)", "card")
def _(dest: Path, env: Env) -> None:
    doc = json.loads(card_text(env))
    del doc["caveats"]
    with_card_bytes(env, dest, json.dumps(doc).encode())


# ========================================================================================= digests


@case("digest_tampered_byte", "E_DIGEST_MISMATCH", r"^model\.onnx: sha256 mismatch \(manifest [0-9a-f]{12}…", "digest")
def _(dest: Path, env: Env) -> None:
    copy_good(env, dest)
    data = bytearray((dest / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (dest / "model.onnx").write_bytes(bytes(data))


@case("digest_unlisted_file", "E_MANIFEST_MISMATCH", r"its files differ from manifest\.json \[assets/extra\.txt: present but not listed", "digest")
def _(dest: Path, env: Env) -> None:
    copy_good(env, dest)
    (dest / "assets").mkdir()
    (dest / "assets" / "extra.txt").write_text("smuggled")


@case("digest_unsealed", "E_MANIFEST_MISMATCH", r"has no manifest\.json; it was never sealed", "digest")
def _(dest: Path, env: Env) -> None:
    copy_good(env, dest)
    (dest / "manifest.json").unlink()


def build_all(dest: Path, env: Env) -> dict[str, Case]:
    """Write every case into ``dest`` (created) and return them by entry name."""
    dest.mkdir(parents=True, exist_ok=True)
    for c in CASES:
        c.build(dest / c.name, env)
    return {c.name: c for c in CASES}
