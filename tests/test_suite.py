"""Suites: schema paths and codes, the digest refusal, every bad-data code, each data format, variants,
sample hashes and fingerprints, feeds for a card, and the `mmstd suites` commands."""
from __future__ import annotations

import copy
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from mmstd.card import TensorSpec, load_card
from mmstd.cli import cli
from mmstd.errors import MmstdError
from mmstd.files import sha256_file
from mmstd.preprocess import preprocess_batch
from mmstd.suite import (
    SUITE_DIRS,
    apply_variant,
    builtin_suites,
    directory_digest,
    load_suite,
    mulaw_decode,
    mulaw_encode,
)
from mmstd.testing import EXAMPLE_CARD

SUITES = SUITE_DIRS[1]


@pytest.fixture(scope="module")
def digits():
    return load_suite("digits-av")


@pytest.fixture(scope="module")
def shapes():
    return load_suite("shapes-itm")


# ------------------------------------------------------------------------------- tiny suite maker


def base_doc(**over: Any) -> dict[str, Any]:
    doc = {
        "schema_version": "1.0", "name": "tiny", "version": 1, "description": "a tiny test suite",
        "license": "CC0-1.0", "task": {"kind": "multiclass", "labels": ["a", "b", "c"]},
        "data": {"format": "parquet", "path": "data.parquet", "sha256": "0" * 64},
        "splits": {"train": {}, "test": {}},
        "fields": {
            "image": {"modality": "image", "encoding": "raw", "shape": [2, 2, 1]},
            "text": {"modality": "text", "max_chars": 20},
            "audio": {"modality": "audio", "encoding": "float32", "sample_rate": 8000, "max_samples": 16},
        },
        "label": {"column": "label"},
        "variants": [{"name": "image-noise", "field": "image", "kind": "noise", "std": 50.0, "seed": 3},
                     {"name": "text-missing", "field": "text", "kind": "missing"}],
    }
    doc.update(over)
    return doc


def tiny_columns(n: int = 6) -> dict[str, pa.Array]:
    rng = np.random.default_rng(0)
    return {
        "split": pa.array(["train", "test"] * (n // 2)),
        "image": pa.array([rng.integers(0, 256, 4, dtype=np.uint8).tobytes() for _ in range(n)], pa.binary()),
        "text": pa.array([f"sample {i}" for i in range(n)]),
        "audio": pa.array([rng.normal(size=8).astype(np.float32).tolist() for _ in range(n)], pa.list_(pa.float32())),
        "label": pa.array([i % 3 for i in range(n)], pa.int64()),
    }


def write_suite(root: Path, columns: dict[str, Any] | None = None, doc: dict[str, Any] | None = None,
                data: bytes | None = None) -> Path:
    """A suite directory with data.parquet and a suite.yaml pinning its real digest."""
    root.mkdir(parents=True, exist_ok=True)
    doc = copy.deepcopy(doc or base_doc())
    if data is None:
        buf = io.BytesIO()
        pq.write_table(pa.table(columns if columns is not None else tiny_columns()), buf)
        data = buf.getvalue()
    path = root / doc["data"]["path"]
    if doc["data"]["format"] in ("parquet", "npz"):
        path.write_bytes(data)
        doc["data"]["sha256"] = sha256_file(path)
    else:
        doc["data"]["sha256"] = directory_digest(path)
    (root / "suite.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return root


def load_error(root: Path, **kwargs: Any) -> MmstdError:
    with pytest.raises(MmstdError) as info:
        load_suite(root, **kwargs)
    return info.value


# ------------------------------------------------------------------------------------- built-ins


def test_builtin_suites_load_verified(digits, shapes) -> None:
    assert builtin_suites() == ["digits-av", "shapes-itm"]
    assert (digits.ref, len(digits.split("train")), len(digits.split("test"))) == ("digits-av@1", 1397, 400)
    assert (shapes.ref, len(shapes.split("train")), len(shapes.split("test"))) == ("shapes-itm@1", 2000, 500)
    te = digits.split("test")
    assert te.values["image"].shape == (400, 28, 28, 1) and te.values["image"].dtype == np.uint8
    assert te.values["audio"].shape == (400, 8000) and te.values["audio"].dtype == np.float32
    assert all(isinstance(t, str) and len(t) <= 16 for t in te.values["text"])
    assert te.labels.dtype == np.int64 and set(te.labels.tolist()) == set(range(10))
    assert max(len(t) for t in shapes.split("train").values["text"]) <= 32
    assert shapes.split("test").values["image"].shape == (500, 64, 64, 3)
    assert len(set(te.sample_hashes)) == 400


def test_every_builtin_suite_pins_its_data_and_has_a_datasheet() -> None:
    for path in sorted(SUITES.glob("*/suite.yaml")):
        suite = load_suite(path)
        assert suite.data.sha256 == sha256_file(path.parent / suite.data.path)
        assert suite.readme is not None and "## " in suite.readme.read_text()
        assert (path.parent / suite.data.path).stat().st_size < 20 << 20
        assert "test" in suite.splits and suite.variants
        assert {v.name for v in suite.variants} >= {"image-noise"}


def test_wheel_ships_the_builtin_suites() -> None:
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert '"conformance/suites" = "mmstd/_suites"' in pyproject
    assert SUITE_DIRS[0].name == "_suites" and SUITE_DIRS[0].parent.name == "mmstd"


def test_limit_split_and_unknown_names(digits) -> None:
    head = digits.split("test", limit=7)
    assert len(head) == 7 and head.sample_hashes == digits.split("test").sample_hashes[:7]
    err = pytest.raises(MmstdError, digits.split, "valid").value
    assert err.code == "E_NOT_FOUND" and "Splits: train, test" in err.message
    err = pytest.raises(MmstdError, digits.variant, "image-nois").value
    assert err.code == "E_NOT_FOUND" and "Did you mean 'image-noise'?" in err.message
    err = pytest.raises(MmstdError, load_suite, "digits-a").value
    assert err.code == "E_NOT_FOUND" and "Did you mean 'digits-av'?" in err.message


def test_suite_resolves_from_a_directory_or_its_file(tmp_path: Path) -> None:
    root = write_suite(tmp_path / "s")
    assert load_suite(root).fingerprint == load_suite(root / "suite.yaml").fingerprint


# --------------------------------------------------------------------------------- schema errors


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(colour="red"), "suite.yaml: $: unknown field 'colour'; expected one of:"),
        (lambda d: d.update(version="1"), "suite.yaml: $.version: expected an integer, got \"1\"."),
        (lambda d: d["task"].update(kind="regression"), "suite.yaml: $.task.kind: expected one of 'multiclass', 'binary', 'multilabel'"),
        (lambda d: d["data"].update(sha256="abc"), "suite.yaml: $.data.sha256: expected 64 lowercase hex digits, got \"abc\"."),
        (lambda d: d["data"].update(format="csv"), "suite.yaml: $.data.format: expected one of 'parquet', 'npz'"),
        (lambda d: d["fields"]["image"].update(encoding="jpeg2000"), "suite.yaml: $.fields.image.encoding: expected one of 'raw', 'encoded', 'file'"),
        (lambda d: d["fields"]["audio"].pop("sample_rate"), "suite.yaml: $.fields.audio: missing required field 'sample_rate'."),
        (lambda d: d["fields"]["text"].update(sample_rate=8000), "suite.yaml: $.fields.text: unknown field 'sample_rate'"),
        (lambda d: d["fields"]["image"].update(shape=[2, 2, 4]), "suite.yaml: $.fields.image.shape[2]: expected one of 1, 3, got 4."),
        (lambda d: d["splits"].pop("test"), "suite.yaml: $.splits: missing required field 'test'."),
        (lambda d: d.update(latency={"batch_sizes": [0]}), "suite.yaml: $.latency.batch_sizes[0]: expected a number >= 1, got 0."),
        (lambda d: d["variants"][0].update(kind="blur"), "suite.yaml: $.variants[0].kind: expected one of 'missing', 'zero', 'noise'"),
        (lambda d: d.update(metrics=[{"name": "F1 macro"}]), "suite.yaml: $.metrics[0].name: expected a metric name"),
        # rules beyond the schema
        (lambda d: d["variants"][0].update(field="video"), "suite.yaml: $.variants[0].field: expected one of 'image', 'text', 'audio', got 'video'."),
        (lambda d: d["variants"][0].pop("std"), "suite.yaml: $.variants[0]: missing required field 'std' for noise on a image field."),
        (lambda d: d["variants"][1].update(seed=1), "suite.yaml: $.variants[1].seed: does not apply to kind 'missing'."),
        (lambda d: d["variants"].append({"name": "text-noise", "field": "text", "kind": "noise", "std": 1.0, "seed": 0}),
         "suite.yaml: $.variants[2]: missing required field 'rate' for noise on a text field."),
        (lambda d: d["variants"].append({"name": "image-noise", "field": "image", "kind": "zero"}),
         "suite.yaml: $.variants[2].name: 'image-noise' is already used; expected unique variant names."),
        (lambda d: d["task"].update(labels=["a", "b", "a"]), "suite.yaml: $.task.labels: label 'a' appears twice; expected unique labels."),
        (lambda d: d["task"].update(kind="binary"), "suite.yaml: $.task.labels: a binary task needs exactly 2 labels, got 3."),
        (lambda d: d["fields"]["image"].pop("shape"), "suite.yaml: $.fields.image: missing required field 'shape' for encoding 'raw'."),
        (lambda d: d["label"].update(column="text"), "suite.yaml: $.label.column: 'text' is also read by $.fields.text."),
        (lambda d: d.update(metrics=[{"name": "accuracy"}, {"name": "accuracy"}]), "suite.yaml: $.metrics[1]: 'accuracy' with these params is listed twice."),
    ],
)
def test_invalid_suites_name_their_json_path(tmp_path: Path, mutate, expected: str) -> None:
    root = write_suite(tmp_path / "s")
    doc = yaml.safe_load((root / "suite.yaml").read_text())
    mutate(doc)
    (root / "suite.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    err = load_error(root)
    assert err.code == "E_DOCUMENT_SCHEMA"
    assert any(p.startswith(expected) for p in err.problems), err.problems


def test_yaml_syntax_problem(tmp_path: Path) -> None:
    root = write_suite(tmp_path / "s")
    (root / "suite.yaml").write_text((root / "suite.yaml").read_text() + "name: again\n")
    err = load_error(root)
    assert err.code == "E_DOCUMENT_SCHEMA" and "duplicate key 'name'" in err.message


# ---------------------------------------------------------------------------------------- digest


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["shapes-itm", "digits-av"])
def test_changed_byte_is_refused_before_anything_runs(tmp_path: Path, name: str) -> None:
    copy_dir = tmp_path / name
    shutil.copytree(SUITES / name, copy_dir)
    pinned = yaml.safe_load((copy_dir / "suite.yaml").read_text())["data"]["sha256"]
    _flip_one_byte(copy_dir / "data.parquet")
    actual = sha256_file(copy_dir / "data.parquet")
    err = load_error(copy_dir)
    assert err.code == "E_DIGEST_MISMATCH"
    assert err.message == f"data.parquet: sha256 mismatch (suite.yaml pins {pinned}, the data has {actual})."
    runner = CliRunner()
    bad = runner.invoke(cli, ["suites", "verify", str(copy_dir)])
    assert bad.exit_code == 1
    assert "E_DIGEST_MISMATCH: data.parquet: sha256 mismatch" in bad.output


def test_cli_verify_builtins_pass() -> None:
    runner = CliRunner()
    for name in ("digits-av", "shapes-itm"):
        ok = runner.invoke(cli, ["suites", "verify", name])
        assert ok.exit_code == 0, ok.output
        assert f"PASSED | suite {name}@1 | data.parquet sha256" in ok.output


def test_data_path_may_not_escape_or_follow_links(tmp_path: Path) -> None:
    root = write_suite(tmp_path / "s")
    doc = yaml.safe_load((root / "suite.yaml").read_text())
    doc["data"]["path"] = "../outside.parquet"
    (root / "suite.yaml").write_text(yaml.safe_dump(doc))
    assert load_error(root).code == "E_FS_PATH_ESCAPE"
    (root / "real.parquet").write_bytes((root / "data.parquet").read_bytes())
    (root / "data.parquet").unlink()
    (root / "data.parquet").symlink_to(root / "real.parquet")
    doc["data"]["path"] = "data.parquet"
    doc["data"]["sha256"] = sha256_file(root / "real.parquet")
    (root / "suite.yaml").write_text(yaml.safe_dump(doc))
    assert load_error(root).code == "E_FS_PATH_ESCAPE"


# -------------------------------------------------------------------------------------- bad data


def _cols(**changes: Any) -> dict[str, Any]:
    cols = tiny_columns()
    for k, v in changes.items():
        if v is None:
            cols.pop(k)
        else:
            cols[k] = v
    return cols


@pytest.mark.parametrize(
    ("columns", "doc_change", "code", "message"),
    [
        (_cols(text=None), None, "E_DATASET_SCHEMA", "data.parquet: has no column 'text'; columns: audio, image, label, split."),
        (_cols(text=pa.array(range(6), pa.int64())), None, "E_DATASET_SCHEMA",
         "data.parquet: column 'text': has type int64; expected string (UTF-8 text)."),
        (_cols(audio=pa.array([[1, 2]] * 6, pa.list_(pa.int64()))), None, "E_DATASET_SCHEMA",
         "data.parquet: column 'audio': has type list<element: int64>; expected list<float> (any float width, converted to float32) or binary"),
        (_cols(label=pa.array([0, 1, 2, 3, 0, 1], pa.int64())), None, "E_DATASET_VALUE",
         "data.parquet: column 'label', row 3: label 3 is out of range; expected 0..2 (3 labels)."),
        (_cols(label=pa.array(["a", "b", "c", "d", "a", "b"])), None, "E_DATASET_VALUE",
         "data.parquet: column 'label', row 3: label 'd' is not one of the suite's labels (a, b, c)."),
        (_cols(label=pa.array([0.0, 1.0, float("nan"), 0.0, 1.0, 2.0], pa.float64())), None, "E_DATASET_VALUE",
         "data.parquet: column 'label', row 2: label is NaN or Inf"),
        (_cols(label=pa.array([0.0, 1.0, 2.0, 0.0, 1.0, 2.0], pa.float64())), None, "E_DATASET_SCHEMA",
         "data.parquet: column 'label': has type double; expected integer indices or string label names."),
        (_cols(audio=pa.array([[0.0, float("nan")]] + [[0.0]] * 5, pa.list_(pa.float32()))), None, "E_DATASET_VALUE",
         "data.parquet: column 'audio', row 0: clip holds NaN or Inf; expected finite samples."),
        (_cols(text=pa.array(["x", None, "y", "z", "w", "v"])), None, "E_DATASET_VALUE",
         "data.parquet: column 'text', row 1: is empty (null); expected a value in every row."),
        (_cols(split=pa.array(["train"] * 6)), None, "E_DATASET_EMPTY", "data.parquet: split 'test' has no rows; expected at least one."),
        (_cols(split=pa.array(["train", "test", "valid", "test", "train", "test"])), None, "E_DATASET_VALUE",
         "data.parquet: column 'split', row 2: split 'valid' is not declared in suite.yaml's $.splits (train, test)."),
        (_cols(image=pa.array([b"\x00" * 3] * 6, pa.binary())), None, "E_IMAGE_INVALID",
         "data.parquet: column 'image', row 0: holds 3 bytes; expected 4 (2x2x1 uint8)."),
        (_cols(image=pa.array([b"not a png"] * 6, pa.binary())), {"encoding": "encoded", "channels": 1}, "E_IMAGE_INVALID",
         "data.parquet: column 'image', row 0: not a decodable PNG/JPEG image"),
        (_cols(), {"shape": [8192, 4096, 1]}, "E_IMAGE_BOMB", "data.parquet: column 'image': declares 8192x4096 = 33554432 pixels per image"),
        (_cols(text=pa.array([b"ok", b"\xff\xfe", b"a", b"b", b"c", b"d"], pa.binary())), None, "E_TEXT_INVALID",
         "data.parquet: column 'text', row 1: byte 0 is not valid UTF-8."),
        (_cols(text=pa.array(["x" * 21] + ["y"] * 5)), None, "E_TEXT_INVALID",
         "data.parquet: column 'text', row 0: text is 21 characters (limit max_chars 20)."),
        (_cols(text=pa.array(["bell\x07"] + ["y"] * 5)), None, "E_TEXT_INVALID",
         "data.parquet: column 'text', row 0: text holds control character U+0007"),
        (_cols(audio=pa.array([[0.0] * 17] + [[0.0]] * 5, pa.list_(pa.float32()))), None, "E_DATASET_LIMIT",
         "data.parquet: column 'audio', row 0: clip has 17 samples (limit max_samples 16)."),
    ],
)
def test_bad_data_has_a_stable_code(tmp_path: Path, columns, doc_change, code: str, message: str) -> None:
    doc = base_doc()
    if doc_change:
        doc["fields"]["image"].update(doc_change)
        if "encoding" in doc_change:
            doc["fields"]["image"].pop("shape")
    err = load_error(write_suite(tmp_path / "s", columns, doc))
    assert err.code == code
    assert err.message.startswith(message), err.message


def test_oversized_png_is_an_image_bomb(tmp_path: Path) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (5000, 4000)).save(buf, format="PNG")
    doc = base_doc()
    doc["fields"]["image"] = {"modality": "image", "encoding": "encoded", "channels": 1}
    err = load_error(write_suite(tmp_path / "s", _cols(image=pa.array([buf.getvalue()] * 6, pa.binary())), doc))
    assert err.code == "E_IMAGE_BOMB"
    assert err.message == "data.parquet: column 'image', row 0: image is 5000x4000 = 20000000 pixels (limit 16777216)."


def test_size_and_row_limits(tmp_path: Path) -> None:
    root = write_suite(tmp_path / "s")
    size = (root / "data.parquet").stat().st_size
    err = load_error(root, max_bytes=size - 1)
    assert (err.code, err.message) == ("E_DATASET_LIMIT", f"data.parquet: is {size} bytes (limit {size - 1}).")
    err = load_error(root, max_rows=5)
    assert (err.code, err.message) == ("E_DATASET_LIMIT", "data.parquet: holds 6 rows (limit 5).")


def test_corrupt_parquet(tmp_path: Path) -> None:
    err = load_error(write_suite(tmp_path / "s", data=b"PAR1 this is not parquet PAR1"))
    assert err.code == "E_FORMAT_CORRUPT" and err.message.startswith("data.parquet: is not a readable Parquet file")


# ---------------------------------------------------------------------------------------- formats


def test_npz_holds_the_same_samples_as_parquet(tmp_path: Path, shapes) -> None:
    """The fingerprint depends on the samples, not on how they are stored."""
    doc = yaml.safe_load((SUITES / "shapes-itm" / "suite.yaml").read_text())
    doc["data"] = {"format": "npz", "path": "data.npz", "sha256": "0" * 64}
    arrays = {}
    splits = []
    for name in ("train", "test"):
        s = shapes.split(name)
        splits += [name] * len(s)
        arrays.setdefault("image", []).append(s.values["image"])
        arrays.setdefault("text", []).append(np.array(s.values["text"]))
        arrays.setdefault("label", []).append(s.labels)
    buf = io.BytesIO()
    np.savez_compressed(buf, split=np.array(splits), **{k: np.concatenate(v) for k, v in arrays.items()})
    npz = load_suite(write_suite(tmp_path / "npz", doc=doc, data=buf.getvalue()))
    assert npz.split("test").sample_hashes == shapes.split("test").sample_hashes
    assert npz.fingerprint == shapes.fingerprint


def test_npz_refuses_pickles_and_ragged_arrays(tmp_path: Path) -> None:
    doc = base_doc()
    doc["data"] = {"format": "npz", "path": "data.npz", "sha256": "0" * 64}
    doc["fields"].pop("audio")
    good = {"split": np.array(["train", "test"]), "image": np.zeros((2, 2, 2, 1), np.uint8),
            "text": np.array(["a", "b"]), "label": np.array([0, 1])}
    buf = io.BytesIO()
    np.savez(buf, **{**good, "text": np.array([{"x": 1}, "b"], dtype=object)})
    err = load_error(write_suite(tmp_path / "pickle", doc=doc, data=buf.getvalue()))
    assert err.code == "E_UNSAFE_CONTENT"
    buf = io.BytesIO()
    np.savez(buf, **{**good, "label": np.array([0, 1, 2])})
    err = load_error(write_suite(tmp_path / "ragged", doc=doc, data=buf.getvalue()))
    assert err.code == "E_DATASET_SCHEMA" and "different lengths" in err.message


def test_imagefolder_with_metadata_csv(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "s"
    folder = root / "images"
    (folder / "img").mkdir(parents=True)
    rng = np.random.default_rng(1)
    pixels = [rng.integers(0, 256, (5, 4, 3), dtype=np.uint8) for _ in range(4)]
    for i, p in enumerate(pixels):
        Image.fromarray(p).save(folder / "img" / f"{i}.png")
    (folder / "metadata.csv").write_text(
        "file_name,caption,label,split\n"
        "img/0.png,\"a, red thing\",cat,train\nimg/1.png,dog,dog,test\nimg/2.png,\"\",1,test\nimg/3.png,x,cat,train\n",
        encoding="utf-8")
    doc = base_doc(task={"kind": "binary", "labels": ["cat", "dog"]})
    doc["data"] = {"format": "imagefolder", "path": "images", "sha256": "0" * 64}
    doc["fields"] = {"image": {"modality": "image", "column": "file_name", "encoding": "file", "channels": 3},
                     "caption": {"modality": "text"}}
    doc["variants"] = []
    suite = load_suite(write_suite(root, doc=doc))
    test = suite.split("test")
    assert np.array_equal(test.values["image"], np.stack([pixels[1], pixels[2]]))
    assert test.values["caption"] == ["dog", ""] and test.labels.tolist() == [1, 1]
    assert suite.split("train").values["caption"][0] == "a, red thing"
    (folder / "img" / "3.png").write_bytes(b"broken")
    err = load_error(root)
    assert err.code == "E_DIGEST_MISMATCH"
    write_suite(root, doc=doc)
    err = load_error(root)
    assert err.code == "E_IMAGE_INVALID" and "img/3.png" in err.message


def test_hf_datasets_directory(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    cols = {k: v.to_pylist() for k, v in tiny_columns().items() if k != "split"}
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({k: v[0::2] for k, v in cols.items()}),
        "test": datasets.Dataset.from_dict({k: v[1::2] for k, v in cols.items()}),
    })
    dd.save_to_disk(str(tmp_path / "s" / "hf"))
    doc = base_doc()
    doc["data"] = {"format": "hf-datasets", "path": "hf", "sha256": "0" * 64}
    suite = load_suite(write_suite(tmp_path / "s", doc=doc))
    assert suite.split("test").values["text"] == ["sample 1", "sample 3", "sample 5"]
    # datasets' Image feature stores {bytes, path} structs: read as encoded images, decoded under the cap
    from PIL import Image

    pngs = []
    for i in range(6):
        buf = io.BytesIO()
        Image.fromarray(np.full((3, 5), 40 * i, np.uint8)).save(buf, format="PNG")
        pngs.append({"bytes": buf.getvalue(), "path": None})
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string"),
                                  "audio": datasets.Sequence(datasets.Value("float32")), "label": datasets.Value("int64")})
    cols["image"] = pngs
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({k: v[0::2] for k, v in cols.items()}, features=features),
        "test": datasets.Dataset.from_dict({k: v[1::2] for k, v in cols.items()}, features=features),
    })
    dd.save_to_disk(str(tmp_path / "t" / "hf"))
    doc["fields"]["image"] = {"modality": "image", "encoding": "encoded", "channels": 1}
    images = load_suite(write_suite(tmp_path / "t", doc=doc)).split("test").values["image"]
    assert images.shape == (3, 3, 5, 1) and images[:, 0, 0, 0].tolist() == [40, 120, 200]


def test_hf_datasets_needs_the_library(tmp_path: Path) -> None:
    try:
        import datasets  # noqa: F401
        pytest.skip("datasets is installed; test_hf_datasets_directory covers it")
    except ImportError:
        pass
    (tmp_path / "s" / "hf").mkdir(parents=True)
    (tmp_path / "s" / "hf" / "dataset_dict.json").write_text('{"splits": ["train", "test"]}')
    doc = base_doc()
    doc["data"] = {"format": "hf-datasets", "path": "hf", "sha256": "0" * 64}
    err = load_error(write_suite(tmp_path / "s", doc=doc))
    assert err.code == "E_DEPENDENCY" and "needs the 'datasets' library" in err.message


@pytest.mark.parametrize("encoding", ["float32-list", "float32", "pcm16", "pcm16-list", "mulaw", "wav"])
def test_audio_encodings_decode_to_float32(tmp_path: Path, encoding: str) -> None:
    import wave

    rng = np.random.default_rng(2)
    clips = [np.round(rng.uniform(-0.9, 0.9, 8) * 32768) / 32768 for _ in range(6)]
    pcm = [np.clip(np.rint(c * 32768), -32768, 32767).astype("<i2") for c in clips]
    if encoding == "float32-list":
        col = pa.array([c.astype(np.float32).tolist() for c in clips], pa.list_(pa.float32()))
    elif encoding == "float32":
        col = pa.array([c.astype("<f4").tobytes() for c in clips], pa.binary())
    elif encoding == "pcm16":
        col = pa.array([p.tobytes() for p in pcm], pa.binary())
    elif encoding == "pcm16-list":
        col = pa.array([p.tolist() for p in pcm], pa.list_(pa.int16()))
    elif encoding == "mulaw":
        col = pa.array([mulaw_encode(c).tobytes() for c in clips], pa.binary())
    else:
        blobs = []
        for p in pcm:
            b = io.BytesIO()
            with wave.open(b, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(8000)
                w.writeframes(p.tobytes())
            blobs.append(b.getvalue())
        col = pa.array(blobs, pa.binary())
    doc = base_doc()
    doc["fields"]["audio"]["encoding"] = encoding.split("-")[0]
    suite = load_suite(write_suite(tmp_path / "s", _cols(audio=col), doc))
    got = suite.split("train").values["audio"]
    assert got.dtype == np.float32 and got.shape == (3, 8)
    atol = 0.03 if encoding == "mulaw" else 1e-6
    np.testing.assert_allclose(got, np.stack(clips[0::2]), atol=atol)


def test_mulaw_round_trip_is_close_and_decode_is_the_g711_table() -> None:
    x = np.linspace(-1, 1, 2001)
    y = mulaw_decode(mulaw_encode(x))
    assert np.max(np.abs(y - x)) < 0.032        # the largest G.711 step is 1024/32768
    assert mulaw_decode(np.array([0xFF, 0x7F, 0x00, 0x80])).tolist() == [0.0, 0.0, -32124 / 32768, 32124 / 32768]
    assert np.array_equal(mulaw_encode(mulaw_decode(np.arange(256, dtype=np.uint8))) == np.arange(256),
                          np.array([True] * 127 + [False] + [True] * 128))   # 0x7F (-0) encodes as 0xFF (+0)


def test_multilabel_lists_become_multi_hot(tmp_path: Path) -> None:
    doc = base_doc(task={"kind": "multilabel", "labels": ["a", "b", "c"]})
    labels = pa.array([["a"], ["b", "c"], [], [0, 2], ["c"], ["a", "b"]][:2] + [[], ["a", "c"], ["c"], ["a", "b"]],
                      pa.list_(pa.string()))
    suite = load_suite(write_suite(tmp_path / "s", _cols(label=labels), doc))
    assert suite.split("test").labels.tolist() == [[0, 1, 1], [1, 0, 1], [1, 1, 0]]
    err = load_error(write_suite(tmp_path / "t", _cols(), doc))
    assert err.code == "E_DATASET_SCHEMA" and "expects a list of labels per row" in err.message


# ---------------------------------------------------------------------------- hashes and variants


def test_sample_hashes_follow_the_content(tmp_path: Path) -> None:
    a = load_suite(write_suite(tmp_path / "a"))
    cols = tiny_columns()
    cols["text"] = pa.array(["sample 0", "sample 1", "sample 2", "sample 3", "sample 4", "changed"])
    b = load_suite(write_suite(tmp_path / "b", cols))
    ha, hb = a.split("test").sample_hashes, b.split("test").sample_hashes
    assert ha[:2] == hb[:2] and ha[2] != hb[2]
    assert a.split("train").sample_hashes == b.split("train").sample_hashes
    assert a.fingerprint != b.fingerprint
    # NFC: a decomposed accent is the same text as the composed one
    cols["text"] = pa.array(["e\u0301"] * 6)
    c = load_suite(write_suite(tmp_path / "c", cols))
    cols["text"] = pa.array(["\u00e9"] * 6)
    d = load_suite(write_suite(tmp_path / "d", cols))
    assert c.split("test").values["text"][0] == "\u00e9" and c.fingerprint == d.fingerprint


def test_variants_are_deterministic_and_subset_independent(digits) -> None:
    test = digits.split("test")
    noise = digits.variant("image-noise")
    a, b = apply_variant(test, noise), apply_variant(test, noise)
    assert np.array_equal(a.values["image"], b.values["image"]) and a.sample_hashes == b.sample_hashes
    assert not np.array_equal(a.values["image"], test.values["image"])
    diff = a.values["image"].astype(float) - test.values["image"].astype(float)
    assert 30 < diff.std() < 60              # std 60 before clipping to 0..255
    part = apply_variant(test.take([5, 3]), noise)
    assert np.array_equal(part.values["image"], a.values["image"][[5, 3]])
    assert a.values["audio"] is test.values["audio"] and a.variant == "image-noise"
    assert a.fingerprint != test.fingerprint


def test_missing_variant_feeds_zeros_and_zero_variant_zeroes_canonical(digits) -> None:
    card = load_card(EXAMPLE_CARD)
    test = digits.split("test", limit=8)
    clean = preprocess_batch(card, test)
    gone = apply_variant(test, digits.variant("text-missing"))
    assert gone.missing == {"text"} and gone.values["text"] == [""] * 8
    feeds = preprocess_batch(card, gone)
    assert not feeds["text"].any() and feeds["text"].shape == (8, 16)
    assert np.array_equal(feeds["image"], clean["image"]) and np.array_equal(feeds["audio"], clean["audio"])
    from mmstd.suite import VariantSpec

    zero = apply_variant(test, VariantSpec("audio-zero", "audio", "zero"))
    assert not zero.values["audio"].any() and zero.missing == frozenset()
    assert not preprocess_batch(card, zero)["audio"].any()   # silence, standardized, is zeros too
    words = apply_variant(test, VariantSpec("text-noise", "text", "noise", rate=1.0, seed=0))
    assert [len(t) for t in words.values["text"]] == [len(t) for t in test.values["text"]]
    assert all(t == "" or t != u for t, u in zip(words.values["text"], test.values["text"], strict=True))


def test_feeds_for_the_zoo_pipelines(digits, shapes) -> None:
    card = load_card(EXAMPLE_CARD)
    feeds = preprocess_batch(card, digits.split("test", limit=32))
    assert {k: (v.shape, str(v.dtype)) for k, v in feeds.items()} == {
        "image": ((32, 28, 28, 1), "float32"), "text": ((32, 16), "int64"), "audio": ((32, 50, 13), "float32")}
    img = TensorSpec("pixels", "float32", ("batch", 32, 32, 3), modality="image", preprocessing=(
        {"op": "rgb"}, {"op": "resize", "height": 32, "width": 32, "interpolation": "bilinear"},
        {"op": "scale", "factor": 1 / 255}, {"op": "cast", "dtype": "float32"}))
    txt = TensorSpec("ids", "int64", ("batch", 32), modality="text", preprocessing=(
        {"op": "tokenize", "kind": "chars", "lowercase": True, "max_length": 32, "vocab_size": 64},))
    batch = shapes.split("test", limit=16)
    itm = card.replace_specs(inputs=[img, txt])
    out = preprocess_batch(itm, batch)
    assert out["pixels"].shape == (16, 32, 32, 3) and out["ids"].shape == (16, 32)
    assert (out["ids"] != 1).all()        # every caption character is inside the 64-id vocabulary
    audio = TensorSpec("a", "float32", ("batch", 8000), modality="audio")
    err = pytest.raises(MmstdError, preprocess_batch, card.replace_specs(inputs=[audio]), batch).value
    assert err.code == "E_IO_CONTRACT"
    assert err.message == ("Suite 'shapes-itm@1' has no audio field for input 'a'. Suite fields: image (image), text (text).")


# ----------------------------------------------------------------------------------------- the CLI


def test_cli_list_and_show() -> None:
    runner = CliRunner()
    listed = runner.invoke(cli, ["suites", "list"])
    assert listed.exit_code == 0
    assert "digits-av@1  multiclass x10  fields: image (image), text (text), audio (audio)" in listed.output
    shown = runner.invoke(cli, ["suites", "show", "shapes-itm"])
    assert shown.exit_code == 0
    for part in ("shapes-itm@1  (binary, license CC0-1.0)", "  train        2000 samples  per label [997, 1003]", "image-noise      noise    image",
                 "text-missing     missing  text", "sha256      " + yaml.safe_load(
                     (SUITES / "shapes-itm" / "suite.yaml").read_text())["data"]["sha256"], "datasheet "):
        assert part in shown.output, part
    as_json = json.loads(runner.invoke(cli, ["suites", "show", "shapes-itm", "--json"]).output)
    assert as_json["splits"]["test"]["samples"] == 500 and as_json["data"]["format"] == "parquet"
