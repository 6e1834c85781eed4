"""RunRecord: exact NPZ round trips, structural equality, predictions, and refusal of bad files."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mmstd.errors import MmstdError
from mmstd.record import RunRecord, Timings, load_records, save_records


def make_record(**overrides) -> RunRecord:
    rng = np.random.default_rng(0)
    n = 6
    fields = dict(
        package="example-fusion@0.1.0", package_digest="a" * 64, suite="digits-av@1", suite_fingerprint="b" * 64,
        split="test", backend="ort-cpu", providers_active=("CPUExecutionProvider",),
        session_options={"intra_op_num_threads": 1, "graph_optimization_level": "ORT_ENABLE_ALL", "flags": [1, 2]},
        outputs={"probabilities": rng.dirichlet(np.ones(3), n).astype(np.float32),
                 "embedding": rng.standard_normal((n, 2, 2))},
        labels=np.array([0, 1, 2, 2, 1, 0], dtype=np.int64),
        sample_hashes=tuple(hashlib.sha256(bytes([i])).hexdigest() for i in range(n)),
        timings=Timings(session_create_ms=3.25, first_run_ms=0.5,
                        latency_ns={1: np.array([1200, 1100, 1300]), 32: np.arange(5, dtype=np.int64) + 9000}),
        environment={"os": {"system": "Linux"}, "gpus": [], "cpu": {"usable_cores": 2}},
        seed=0,
        output_kinds={"probabilities": "probabilities", "embedding": "embedding"},
        backend_details={"io_binding": False, "cuda_graph_reason": None},
    )
    if "outputs" in overrides and "output_kinds" not in overrides:
        overrides["output_kinds"] = {k: v for k, v in fields["output_kinds"].items() if k in overrides["outputs"]}
    fields.update(overrides)
    return RunRecord(**fields)


def test_round_trip_is_exact(tmp_path: Path) -> None:
    rec = make_record()
    path = rec.save(tmp_path / "record.npz")
    back = RunRecord.load(path)
    assert back == rec
    assert back.outputs["probabilities"].dtype == np.float32
    assert back.timings.latency_ns[32].dtype == np.int64
    assert list(back.outputs) == ["probabilities", "embedding"]       # graph order survives
    assert back.session_options["flags"] == [1, 2]


def test_one_file_holds_every_record_of_an_evaluation(tmp_path: Path) -> None:
    clean = make_record()
    noisy = make_record(variant="image-noise")
    gpu = make_record(backend="ort-cuda", providers_active=("CUDAExecutionProvider", "CPUExecutionProvider"))
    path = save_records(tmp_path / "record.npz", [clean, noisy, gpu])
    records = load_records(path)
    assert list(records) == ["ort-cpu/clean", "ort-cpu/image-noise", "ort-cuda/clean"]
    assert records["ort-cpu/image-noise"] == noisy
    assert RunRecord.load(path, "ort-cuda/clean") == gpu
    with pytest.raises(MmstdError, match=r"holds 3 records; name one of ort-cpu/clean, ") as many:
        RunRecord.load(path)
    assert many.value.code == "E_NOT_FOUND"
    with pytest.raises(MmstdError, match=r"no record 'ort-trt/clean'"):
        RunRecord.load(path, "ort-trt/clean")
    with pytest.raises(MmstdError, match="unique keys"):
        save_records(tmp_path / "dup.npz", [clean, clean])


def test_file_is_plain_npz_without_pickle_and_deterministic(tmp_path: Path) -> None:
    rec = make_record()
    a = rec.save(tmp_path / "a.npz")
    b = rec.save(tmp_path / "b.npz")
    assert a.read_bytes() == b.read_bytes()            # content-addressable
    with np.load(a, allow_pickle=False) as npz:
        assert "meta.json" in npz.files
        meta = json.loads(npz["meta.json"])
        assert meta["format"] == "mmstd.run-records"
        ref = dict(meta["records"][0]["outputs"])["probabilities"]
        np.testing.assert_array_equal(npz[ref], rec.outputs["probabilities"])
        # member names are generated, never tensor names taken from a submission
        assert all(name == "meta.json" or name.startswith("r0/") for name in npz.files)


def test_save_refuses_to_clobber_unless_asked(tmp_path: Path) -> None:
    rec = make_record()
    path = rec.save(tmp_path / "record.npz")
    with pytest.raises(MmstdError) as info:
        rec.save(path)
    assert info.value.code == "E_OUTPUT_EXISTS"
    other = make_record(seed=7)
    other.save(path, overwrite=True)
    assert RunRecord.load(path).seed == 7
    assert [p.name for p in tmp_path.iterdir()] == ["record.npz"]   # no temp files left behind


@pytest.mark.parametrize(("change", "equal"), [
    ({}, True),
    ({"outputs": {"probabilities": np.zeros((6, 3), np.float32), "embedding": np.zeros((6, 2, 2))}}, False),
    ({"labels": np.array([0, 1, 2, 2, 1, 1])}, False),
    ({"labels": np.array([0, 1, 2, 2, 1, 0], dtype=np.int32)}, False),       # dtype matters
    ({"session_options": {"intra_op_num_threads": 1, "graph_optimization_level": "ORT_ENABLE_ALL", "flags": (1, 2)}}, True),
    ({"session_options": {"intra_op_num_threads": True, "graph_optimization_level": "ORT_ENABLE_ALL", "flags": [1, 2]}}, False),
    ({"timings": Timings(3.25, 0.5, {1: np.array([1200, 1100, 1301]), 32: np.arange(5) + 9000})}, False),
    ({"variant": "x"}, False),
])
def test_equality_compares_arrays_and_metadata_structurally(change: dict, equal: bool) -> None:
    assert (make_record() == make_record(**change)) is equal


def test_nan_outputs_round_trip_and_compare_equal(tmp_path: Path) -> None:
    probs = np.full((6, 3), np.nan, dtype=np.float32)
    rec = make_record(outputs={"probabilities": probs})
    assert RunRecord.load(rec.save(tmp_path / "r.npz")) == rec


def test_predictions() -> None:
    rec = make_record()
    assert rec.score_output == "probabilities"
    np.testing.assert_array_equal(rec.predictions(), rec.outputs["probabilities"].argmax(1))
    emb_first = make_record(outputs={"embedding": np.zeros((6, 2)), "logits": np.eye(6, 3)},
                            output_kinds={"embedding": "embedding", "logits": "logits"})
    assert emb_first.score_output == "logits"
    np.testing.assert_array_equal(emb_first.predictions(), [0, 1, 2, 0, 0, 0])
    binary = make_record(outputs={"p": np.array([[0.1], [0.5], [0.9], [0.49], [0.51], [1.0]])},
                         output_kinds={"p": "probabilities"}, task_kind="binary")
    np.testing.assert_array_equal(binary.predictions(), [0, 1, 1, 0, 1, 1])
    logit = make_record(outputs={"z": np.array([[-1.0], [0.0], [2.0], [-0.1], [0.1], [3.0]])},
                        output_kinds={"z": "logits"}, task_kind="binary")
    np.testing.assert_array_equal(logit.predictions(), [0, 1, 1, 0, 1, 1])
    multi = make_record(outputs={"p": np.array([[0.6, 0.2]] * 6)}, output_kinds={"p": "probabilities"},
                        task_kind="multilabel", labels=np.zeros((6, 2), np.int64))
    np.testing.assert_array_equal(multi.predictions(), [[1, 0]] * 6)
    untyped = make_record(output_kinds={})
    assert untyped.score_output == "probabilities"
    with pytest.raises(MmstdError, match="no output is probabilities or logits"):
        make_record(outputs={"e": np.zeros((6, 2))}, output_kinds={"e": "embedding"}).predictions()
    with pytest.raises(MmstdError, match="has no output 'nope'"):
        rec.predictions("nope")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"labels": np.zeros(5, np.int64)}, "does not have one row per label (5)"),
    ({"sample_hashes": ("a",)}, "sample_hashes: 1 hashes for 6 labels"),
    ({"outputs": {}}, "at least one output is required"),
    ({"outputs": {"p": np.array([object()] * 6)}}, "dtype object is not numeric"),
    ({"output_kinds": {"ghost": "logits"}}, "output_kinds: names ['ghost'] are not outputs"),
    ({"task_kind": "regression"}, "task_kind: expected multiclass, binary or multilabel"),
])
def test_inconsistent_records_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        make_record(**overrides)
    assert message in str(info.value)


def test_timings_are_checked() -> None:
    with pytest.raises(ValueError, match="1-D integer array of ns"):
        Timings(1.0, 1.0, {1: np.array([1.5])})
    with pytest.raises(ValueError, match="batch sizes must be positive ints"):
        Timings(1.0, 1.0, {0: np.array([1])})
    with pytest.raises(ValueError, match="first_run_ms: expected a finite number"):
        Timings(1.0, float("nan"))


def test_non_json_metadata_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MmstdError) as info:
        make_record(environment={"x": float("inf")}).save(tmp_path / "r.npz")
    assert info.value.code == "E_DOCUMENT_SCHEMA"
    assert not (tmp_path / "r.npz").exists()


def _rewrite(src: Path, dest: Path, *, drop: str | None = None, replace_member: tuple[str, bytes] | None = None) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(buf, "w") as zout:
        for info in zin.infolist():
            if info.filename == drop:
                continue
            data = replace_member[1] if replace_member and info.filename == replace_member[0] else zin.read(info)
            zout.writestr(info.filename, data)
    dest.write_bytes(buf.getvalue())
    return dest


def test_malformed_files_are_refused(tmp_path: Path) -> None:
    good = make_record().save(tmp_path / "good.npz")
    cases = {
        "not-zip": (tmp_path / "not-zip.npz", lambda p: p.write_bytes(b"hello")),
        "truncated": (tmp_path / "truncated.npz", lambda p: p.write_bytes(good.read_bytes()[:200])),
        "no-meta": (tmp_path / "no-meta.npz", lambda p: _rewrite(good, p, drop="meta.json")),
        "no-array": (tmp_path / "no-array.npz", lambda p: _rewrite(good, p, drop="r0/labels.npy")),
        "bad-json": (tmp_path / "bad-json.npz", lambda p: _rewrite(good, p, replace_member=("meta.json", b'{"a": NaN}'))),
        "other-format": (tmp_path / "other.npz", lambda p: _rewrite(good, p, replace_member=("meta.json", b'{"format": "x"}'))),
    }
    for name, (path, build) in cases.items():
        build(path)
        with pytest.raises(MmstdError) as info:
            load_records(path)
        assert info.value.code == "E_FORMAT_CORRUPT", name
        assert path.name in info.value.message, name


def test_object_arrays_are_never_unpickled(tmp_path: Path) -> None:
    good = make_record().save(tmp_path / "good.npz")
    evil = io.BytesIO()
    np.save(evil, np.array([{"x": 1}] * 6, dtype=object), allow_pickle=True)
    path = _rewrite(good, tmp_path / "evil.npz", replace_member=("r0/labels.npy", evil.getvalue()))
    with pytest.raises(MmstdError) as info:
        load_records(path)
    assert info.value.code == "E_FORMAT_CORRUPT"
    assert "r0/labels" in info.value.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MmstdError) as info:
        load_records(tmp_path / "none.npz")
    assert info.value.code == "E_NOT_FOUND"


def test_a_real_run_round_trips(tmp_path: Path, tiny_package_dir: Path) -> None:
    """ort-cpu on the sealed tiny package -> RunRecord with the session's facts -> file -> equal."""
    from backend_fixtures import reference_feeds

    from mmstd.backends import open_session
    from mmstd.env import capture_environment
    from mmstd.package import open_package

    pkg = open_package(tiny_package_dir)
    feeds, _ = reference_feeds(pkg.root)
    with open_session("ort-cpu", pkg.model_path, batch_size=2) as session:
        outputs = session.run(feeds)
        info = session.describe()
    rec = RunRecord(
        package=pkg.card.ref, package_digest=pkg.digest, suite="reference@0", suite_fingerprint="0" * 64,
        split="reference", backend=info.pop("backend"), providers_active=tuple(info.pop("providers_active")),
        session_options=info.pop("session_options"), outputs=outputs, labels=np.array([0, 1]),
        sample_hashes=(), timings=Timings(info["create_ms"], 0.1, {2: np.array([10, 11])}),
        environment=capture_environment(), seed=info["seed"], task_kind=pkg.card.task_kind,
        output_kinds={s.name: s.kind for s in pkg.card.outputs}, backend_details=info,
    )
    back = RunRecord.load(rec.save(tmp_path / "record.npz"))
    assert back == rec
    assert back.backend_details["nodes_by_provider"] == {"CPUExecutionProvider": info["nodes_by_provider"]["CPUExecutionProvider"]}
    assert replace(back, seed=1) != rec
