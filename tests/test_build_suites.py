"""The built-in suites are rebuilt bit for bit by conformance/build_suites.py.

Every row comes from its own seeded generator, so a prefix rebuild must give exactly the committed
samples (compared through their content hashes). A full rebuild must reproduce the pinned Parquet
bytes when the tools recorded in suite.yaml's ``build.tools`` are the ones installed (Parquet bytes
carry pyarrow's version; the audio depends on espeak-ng's). digits-av needs espeak-ng and skips
cleanly without it; install it with ``apt-get install espeak-ng``.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mmstd.files import sha256_bytes
from mmstd.suite import load_suite, mulaw_decode, sample_hash

ROOT = Path(__file__).resolve().parent.parent
SUITES = ROOT / "conformance" / "suites"


@pytest.fixture(scope="module")
def build():
    spec = importlib.util.spec_from_file_location("build_suites", ROOT / "conformance" / "build_suites.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_suites"] = module
    spec.loader.exec_module(module)
    return module


def _recorded_tools(name: str) -> dict[str, str]:
    return yaml.safe_load((SUITES / name / "suite.yaml").read_text())["build"]["tools"]


def _needs_espeak(build) -> str:
    version = build.espeak_version()
    if version is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    recorded = _recorded_tools("digits-av")["espeak-ng"]
    if version != recorded:
        pytest.skip(f"espeak-ng {version} differs from the {recorded} the suite was built with")
    return version


def _hashes(suite, rows: dict, n: int) -> list[str]:
    fields = suite.fields
    values = {"image": [np.frombuffer(b, np.uint8).reshape(fields["image"].shape) for b in rows["image"][:n]],
              "text": rows["text"][:n]}
    if "audio" in rows:
        values["audio"] = [mulaw_decode(np.frombuffer(b, np.uint8)) for b in rows["audio"][:n]]
    labels = np.asarray(rows["label"][:n], dtype=np.int64)
    return [sample_hash(fields, values, labels, i) for i in range(n)]


def _same_tools(build, name: str, audio: bool) -> bool:
    return build.tool_versions(audio) == _recorded_tools(name)


def test_shapes_prefix_rebuild_gives_the_committed_samples(build) -> None:
    suite = load_suite("shapes-itm")
    rows = build.shapes_rows(limit=64)
    assert _hashes(suite, rows, 64) == list(suite.split("train").sample_hashes[:64])


def test_shapes_full_rebuild_is_bit_for_bit(build, tmp_path: Path) -> None:
    out, sha = build.build("shapes-itm", tmp_path / "shapes-itm")
    suite = load_suite(out)
    assert suite.fingerprint == load_suite("shapes-itm").fingerprint
    if not _same_tools(build, "shapes-itm", audio=False):
        pytest.skip(f"tools {build.tool_versions(False)} differ from the recorded {_recorded_tools('shapes-itm')}: "
                    "same samples, Parquet bytes may differ")
    assert sha == suite.data.sha256 == load_suite("shapes-itm").data.sha256
    assert (out / "suite.yaml").read_bytes() == (SUITES / "shapes-itm" / "suite.yaml").read_bytes()


def test_digits_prefix_rebuild_gives_the_committed_samples(build) -> None:
    _needs_espeak(build)
    suite = load_suite("digits-av")
    rows = build.digits_rows(limit=48)
    assert _hashes(suite, rows, 48) == list(suite.split("train").sample_hashes[:48])


@pytest.mark.slow
def test_digits_full_rebuild_is_bit_for_bit(build) -> None:
    """About 15-30 s: every utterance is synthesized again."""
    _needs_espeak(build)
    data = build.parquet_bytes(build.digits_rows())
    committed = load_suite("digits-av")
    if not _same_tools(build, "digits-av", audio=True):
        pytest.skip("tool versions differ from the recorded ones; the prefix test checks the samples")
    assert sha256_bytes(data) == committed.data.sha256


def test_texts_fit_the_zoo_cards_max_lengths(build) -> None:
    rng = np.random.default_rng(0)
    texts = [build.digit_text(d % 10, rng)[0] for d in range(2000)]
    assert max(map(len, texts)) <= 16
    caps = []
    for row in range(300):
        r = np.random.default_rng([1, row])
        _, a, rel, b = build.shapes_scene(r)
        caps.append(build.shapes_caption(a, rel, b, bool(row % 2), r)[0])
    assert max(map(len, caps)) <= 32


def test_mismatched_captions_differ_in_exactly_one_attribute(build) -> None:
    for row in range(200):
        rng = np.random.default_rng([7, row])
        _, a, rel, b = build.shapes_scene(rng)
        text, change = build.shapes_caption(a, rel, b, False, rng)
        words = text.split()
        x, y, rel_said = (words[0], words[1]), (words[-2], words[-1]), " ".join(words[2:-2])
        assert (x, rel_said, y) not in {(a, rel, b), (b, build.RELATIONS[rel], a)}      # the caption is false
        if change == "relation":
            assert {x, y} == {a, b}                 # same objects, wrong relation
        else:
            assert len({x, y} & {a, b}) == 1        # one object changed in one attribute
