"""Standard preprocessing: every op against hand-computed values or an independent reference, the card
checks with their JSON paths, and the batch entry point's contract (exact dtype and shape)."""
from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from mmstd.card import TensorSpec, load_card
from mmstd.errors import CardError, MmstdError
from mmstd.preprocess import OPS, check_preprocessing, ops_for, preprocess_input
from mmstd.preprocess.audio import dct_matrix, mel_filterbank
from mmstd.preprocess.image import resize_weights
from mmstd.preprocess.text import ALPHABET
from mmstd.testing import EXAMPLE_CARD


def spec(modality: str, ops: list[dict], shape: tuple, dtype: str = "float32", name: str = "x") -> TensorSpec:
    return TensorSpec(name, dtype, shape, modality=modality, preprocessing=tuple(ops))


@pytest.fixture
def card_doc() -> dict:
    return yaml.safe_load(EXAMPLE_CARD.read_text())


# ----------------------------------------------------------------------------------- card checks


def test_example_card_pipelines_check_clean(card_doc: dict) -> None:
    assert check_preprocessing(card_doc, "card.yaml") == []
    assert check_preprocessing(load_card(EXAMPLE_CARD), "card.yaml") == []


def test_unknown_op_is_a_card_schema_error_with_its_path(card_doc: dict, tmp_path: Path) -> None:
    card_doc["inputs"][1]["preprocessing"][0]["op"] = "tokenise"
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card_doc))
    with pytest.raises(CardError) as info:
        load_card(path)
    assert info.value.code == "E_CARD_SCHEMA"
    assert info.value.problems == (
        "card.json: $.inputs[1].preprocessing[0].op: expected one of 'cast', 'tokenize' for a text input, "
        "got \"tokenise\" (did you mean 'tokenize'?).",)


@pytest.mark.parametrize(
    ("where", "mutate", "expected"),
    [
        (1, lambda ops: ops[0].update(kind="x"),
         "card.yaml: $.inputs[1].preprocessing[0].kind: expected one of 'chars', 'bytes', 'words', 'hf-tokenizer', got \"x\"."),
        (0, lambda ops: ops[1].update(height="28"), "card.yaml: $.inputs[0].preprocessing[1].height: expected an integer, got \"28\"."),
        (0, lambda ops: ops[1].update(height=0), "card.yaml: $.inputs[0].preprocessing[1].height: expected a number >= 1, got 0."),
        (0, lambda ops: ops[1].update(interpolation="lanczos"),
         "card.yaml: $.inputs[0].preprocessing[1].interpolation: expected one of 'nearest', 'bilinear', 'bicubic', 'area', got \"lanczos\"."),
        (0, lambda ops: ops[2].update(fctor=2), "card.yaml: $.inputs[0].preprocessing[2]: unknown parameter 'fctor' for op 'scale'; expected: factor, offset."),
        (0, lambda ops: ops[1].pop("width"), "card.yaml: $.inputs[0].preprocessing[1]: missing required parameter 'width' for op 'resize'."),
        (0, lambda ops: ops[3].update(dtype="float8"), "card.yaml: $.inputs[0].preprocessing[3].dtype: expected one of 'float32'"),
        (1, lambda ops: ops[0].update(vocab="assets/vocab.txt"),
         "card.yaml: $.inputs[1].preprocessing[0].vocab: applies to kind 'words' only, got kind 'chars'."),
        (1, lambda ops: ops[0].update(kind="words", vocab_size=None),
         "card.yaml: $.inputs[1].preprocessing[0].vocab_size: applies to kind 'chars' or 'bytes' only, got kind 'words'."),
        (1, lambda ops: ops[0].update(kind="words", vocab_size=None) or ops[0].pop("vocab_size"),
         "card.yaml: $.inputs[1].preprocessing[0]: missing required parameter 'vocab' for kind 'words'."),
        (1, lambda ops: ops[0].update(kind="words", vocab="../etc/passwd") or ops[0].pop("vocab_size"),
         "card.yaml: $.inputs[1].preprocessing[0].vocab: expected a path inside the package's assets/ folder"),
        (1, lambda ops: ops[0].update(padding_id=70),
         "card.yaml: $.inputs[1].preprocessing[0].padding_id: expected an id below vocab_size (64), got 70."),
        (1, lambda ops: ops[0].update(output="attention"),
         "card.yaml: $.inputs[1].preprocessing[0].output: expected one of 'ids', 'mask', got \"attention\"."),
        (2, lambda ops: ops[2].update(n_mfcc=40), "card.yaml: $.inputs[2].preprocessing[2].n_mfcc: expected at most n_mels (26), got 40."),
        (2, lambda ops: ops[2].update(fmax=6000), "card.yaml: $.inputs[2].preprocessing[2].fmax: expected at most 4000 (half the rate 8000), got 6000."),
        (2, lambda ops: ops[2].update(win_length=512), "card.yaml: $.inputs[2].preprocessing[2].win_length: expected at most n_fft (256), got 512."),
        (2, lambda ops: ops.insert(3, {"op": "mfcc", "n_mfcc": 13, "n_fft": 256, "hop_length": 160}),
         "card.yaml: $.inputs[2].preprocessing[3].op: 'mfcc' needs a waveform, but the ops before it produce a [frames, coefficients] array."),
        (0, lambda ops: ops.insert(0, {"op": "layout", "order": "CHW"}),
         "card.yaml: $.inputs[0].preprocessing[1].op: 'grayscale' needs an HxWxC image, but the ops before it produce a CHW image"),
        (0, lambda ops: ops.insert(2, {"op": "normalize", "mean": [0.5, 0.5], "std": [0.2, 0.2]}),
         "card.yaml: $.inputs[0].preprocessing[2].mean: expected 1 or 1 values (one per channel), got 2."),
        (0, lambda ops: ops.insert(2, {"op": "normalize", "mean": [0.5], "std": [0.2, 0.3]}),
         "card.yaml: $.inputs[0].preprocessing[2].std: expected 1 values (one per mean), got 2."),
        (0, lambda ops: ops.insert(2, {"op": "normalize", "mean": [0.5], "std": [0]}),
         "card.yaml: $.inputs[0].preprocessing[2].std: expected a list of numbers > 0, got [0]."),
        (0, lambda ops: ops.insert(0, {"op": "blur"}), "card.yaml: $.inputs[0].preprocessing[0].op: expected one of 'cast', 'center_crop',"),
    ],
)
def test_bad_preprocessing_names_its_json_path(card_doc: dict, where: int, mutate, expected: str) -> None:
    mutate(card_doc["inputs"][where]["preprocessing"])
    problems = check_preprocessing(card_doc, "card.yaml")
    assert any(p.startswith(expected) for p in problems), problems


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["inputs"][0]["preprocessing"][1].update(height=32),
         "card.yaml: $.inputs[0].shape[1]: expected 32 (what the preprocessing produces), got 28."),
        (lambda d: d["inputs"][0]["preprocessing"][0].update(op="rgb"),
         "card.yaml: $.inputs[0].shape[3]: expected 3 (what the preprocessing produces), got 1."),
        (lambda d: d["inputs"][0]["preprocessing"].pop(),
         None),   # scale already gives float32: dropping the cast changes nothing
        (lambda d: d["inputs"][0].update(dtype="float16"),
         "card.yaml: $.inputs[0].dtype: expected 'float32' (what the preprocessing produces; end with {op: cast, dtype: float16} to change it), got 'float16'."),
        (lambda d: d["inputs"][1].update(shape=["batch", 16, 1]),
         "card.yaml: $.inputs[1].shape: expected rank 2 ([batch, 16], what the preprocessing produces), got rank 3 ([batch, 16, 1])."),
        (lambda d: d["inputs"][1].update(preprocessing=[]),
         "card.yaml: $.inputs[1].preprocessing: a text input needs a 'tokenize' op to become a tensor, got []."),
        (lambda d: d["inputs"][2]["preprocessing"][2].pop("frames"),
         "card.yaml: $.inputs[2].shape[1]: expected 51 (what the preprocessing produces), got 50."),
        (lambda d: d["inputs"][2]["preprocessing"][2].update(n_mfcc=20),
         "card.yaml: $.inputs[2].shape[2]: expected 20 (what the preprocessing produces), got 13."),
        (lambda d: d["inputs"][0].update(preprocessing=[]),
         "card.yaml: $.inputs[0].dtype: expected 'uint8' (what the preprocessing produces;"),
    ],
)
def test_pipeline_must_end_in_the_declared_dtype_and_shape(card_doc: dict, mutate, expected: str | None) -> None:
    mutate(card_doc)
    problems = check_preprocessing(card_doc, "card.yaml")
    if expected is None:
        assert problems == []
    else:
        assert any(p.startswith(expected) for p in problems), problems


def test_every_op_has_a_formula_docstring_and_a_modality() -> None:
    from mmstd.preprocess import _impl

    for name, op in OPS.items():
        fn = _impl(op.impl)
        assert fn.__doc__ and len(fn.__doc__.split()) > 5, name
        assert op.modalities and all(name in ops_for(m) for m in op.modalities)
    # the ops cards already use (example card, zoo cards) must stay available
    assert {"grayscale", "rgb", "resize", "scale", "normalize", "layout", "cast"} <= set(ops_for("image"))
    assert {"tokenize", "cast"} <= set(ops_for("text"))
    assert {"resample", "pad_trim", "log_mel", "mfcc", "standardize", "cast"} <= set(ops_for("audio"))


# ------------------------------------------------------------------------------------------ image


def _img(values, channels: int = 1) -> np.ndarray:
    a = np.asarray(values, dtype=np.uint8)
    return a.reshape(1, a.shape[0], a.shape[1], channels) if channels == 1 else a[None]


def test_grayscale_and_rgb_by_hand() -> None:
    px = np.array([[[10, 200, 30], [255, 255, 255]]], dtype=np.uint8)[None]
    g = preprocess_input(spec("image", [{"op": "grayscale"}], ("batch", 1, 2, 1), "uint8"), px)
    # 0.299*10 + 0.587*200 + 0.114*30 = 123.81 -> 124; white stays 255
    assert g.tolist() == [[[[124], [255]]]]
    c = preprocess_input(spec("image", [{"op": "rgb"}], ("batch", 1, 2, 3), "uint8"), g)
    assert c.tolist() == [[[[124, 124, 124], [255, 255, 255]]]]
    same = preprocess_input(spec("image", [{"op": "rgb"}], ("batch", 1, 2, 3), "uint8"), px)
    assert np.array_equal(same, px)


def test_resize_bilinear_by_hand() -> None:
    # 2 -> 4, half-pixel: u = [-0.25, 0.25, 0.75, 1.25] clamped -> weights [1,0] [.75,.25] [.25,.75] [0,1]
    out = preprocess_input(spec("image", [{"op": "resize", "height": 1, "width": 4, "interpolation": "bilinear"}],
                                ("batch", 1, 4, 1)), _img([[0, 100]]))
    assert out.reshape(-1).tolist() == [0.0, 25.0, 75.0, 100.0]
    assert out.dtype == np.float32


def test_resize_nearest_and_area_by_hand() -> None:
    row = _img([[10, 20, 30, 40]])
    nearest = preprocess_input(spec("image", [{"op": "resize", "height": 1, "width": 2, "interpolation": "nearest"}],
                                    ("batch", 1, 2, 1)), row)
    assert nearest.reshape(-1).tolist() == [20.0, 40.0]        # floor((i + .5) * 2) = 1, 3
    area = preprocess_input(spec("image", [{"op": "resize", "height": 1, "width": 2, "interpolation": "area"}],
                                 ("batch", 1, 2, 1)), row)
    assert area.reshape(-1).tolist() == [15.0, 35.0]
    # 3 -> 2 by area: [0, 1.5) and [1.5, 3): (10 + 20/2) / 1.5, (20/2 + 30) / 1.5
    area3 = resize_weights(3, 2, "area") @ np.array([10.0, 20.0, 30.0])
    assert np.allclose(area3, [40 / 3, 80 / 3])


@pytest.mark.parametrize("method", ["nearest", "bilinear", "bicubic", "area"])
def test_resize_same_size_is_identity_and_constant_stays_constant(method: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 7, 5, 3), dtype=np.uint8)
    same = preprocess_input(spec("image", [{"op": "resize", "height": 7, "width": 5, "interpolation": method}],
                                 ("batch", 7, 5, 3)), x)
    assert np.array_equal(same, x.astype(np.float32))
    flat = np.full((1, 9, 13, 1), 77, dtype=np.uint8)
    for h, w in ((4, 6), (20, 3)):
        out = preprocess_input(spec("image", [{"op": "resize", "height": h, "width": w, "interpolation": method}],
                                    ("batch", h, w, 1)), flat)
        assert np.allclose(out, 77.0, atol=1e-4), method


@pytest.mark.parametrize(("method", "mode"), [("nearest", "nearest-exact"), ("bilinear", "bilinear"), ("bicubic", "bicubic")])
@pytest.mark.parametrize("size", [(5, 11), (19, 3), (64, 64)])
def test_resize_matches_torch_interpolate(method: str, mode: str, size: tuple[int, int]) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (2, 13, 9, 3), dtype=np.uint8)
    ours = preprocess_input(spec("image", [{"op": "resize", "height": size[0], "width": size[1], "interpolation": method}],
                                 ("batch", *size, 3)), x)
    kwargs = {} if mode == "nearest-exact" else {"align_corners": False}
    ref = torch.nn.functional.interpolate(torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2), size=size,
                                          mode=mode, **kwargs).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=2e-3)


def test_resize_area_matches_average_pooling() -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (1, 12, 8, 1), dtype=np.uint8)
    ours = preprocess_input(spec("image", [{"op": "resize", "height": 4, "width": 2, "interpolation": "area"}],
                                 ("batch", 4, 2, 1)), x)
    ref = x.reshape(1, 4, 3, 2, 4, 1).astype(np.float64).mean(axis=(2, 4))
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_scale_normalize_layout_cast_by_hand() -> None:
    x = np.array([[[[0, 51, 255]]]], dtype=np.uint8)          # 1x1 RGB
    ops = [{"op": "scale", "factor": 1 / 255}, {"op": "normalize", "mean": [0.0, 0.1, 0.5], "std": [1.0, 0.5, 0.25]},
           {"op": "layout", "order": "CHW"}]
    out = preprocess_input(spec("image", ops, ("batch", 3, 1, 1)), x)
    np.testing.assert_allclose(out.reshape(-1), [0.0, (0.2 - 0.1) / 0.5, (1.0 - 0.5) / 0.25], rtol=1e-6)
    assert out.shape == (1, 3, 1, 1) and out.dtype == np.float32
    with_offset = preprocess_input(spec("image", [{"op": "scale", "factor": 2, "offset": -1}], ("batch", 1, 1, 3)), x)
    assert with_offset.reshape(-1).tolist() == [-1.0, 101.0, 509.0]


def test_cast_rounds_half_to_even_and_clips() -> None:
    x = np.array([[-1.5, 0.5, 1.5, 2.5, 254.6, 300.0]], dtype=np.float32)
    out = preprocess_input(spec("tabular", [{"op": "cast", "dtype": "uint8"}], ("batch", 6), "uint8"), x)
    assert out.tolist() == [[0, 0, 2, 2, 255, 255]]
    as_bool = preprocess_input(spec("tabular", [{"op": "cast", "dtype": "bool"}], ("batch", 6), "bool"), x)
    assert as_bool.tolist() == [[True] * 6]


def test_image_round_trips() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (3, 6, 4, 3), dtype=np.uint8)
    chw = preprocess_input(spec("image", [{"op": "layout", "order": "CHW"}], ("batch", 3, 6, 4), "uint8"), x)
    assert np.array_equal(chw.transpose(0, 2, 3, 1), x)
    back = preprocess_input(spec("image", [{"op": "scale", "factor": 1 / 255}, {"op": "scale", "factor": 255},
                                           {"op": "cast", "dtype": "uint8"}], ("batch", 6, 4, 3), "uint8"), x)
    assert np.array_equal(back, x)


def test_images_of_different_sizes_become_one_batch() -> None:
    imgs = [np.full((10, 20, 3), 9, np.uint8), np.full((31, 7, 1), 200, np.uint8)]
    out = preprocess_input(spec("image", [{"op": "rgb"}, {"op": "resize", "height": 8, "width": 8},
                                          {"op": "scale", "factor": 1.0}], ("batch", 8, 8, 3)), imgs)
    assert out.shape == (2, 8, 8, 3)
    assert np.allclose(out[0], 9) and np.allclose(out[1], 200)


def test_output_that_differs_from_the_card_is_an_io_contract_error() -> None:
    with pytest.raises(MmstdError, match=r"input 'x': preprocessing gives float32 \[2, 32, 32, 1\], but the card declares "
                                         r"float32 \[batch, 28, 28, 1\] \(batch 2\)") as info:
        preprocess_input(spec("image", [{"op": "scale", "factor": 1.0}], ("batch", 28, 28, 1)),
                         np.zeros((2, 32, 32, 1), np.uint8))
    assert info.value.code == "E_IO_CONTRACT"
    with pytest.raises(MmstdError, match="samples of different shapes") as info:
        preprocess_input(spec("image", [{"op": "scale", "factor": 1.0}], ("batch", 28, 28, 1)),
                         [np.zeros((28, 28, 1), np.uint8), np.zeros((27, 28, 1), np.uint8)])
    assert info.value.code == "E_IO_CONTRACT"


def test_missing_modality_is_zeros_of_the_card_shape() -> None:
    s = spec("text", [{"op": "tokenize", "kind": "chars", "max_length": 5}], ("batch", 5), "int64")
    out = preprocess_input(s, ["hello", "x", "y"], missing=True)
    assert out.shape == (3, 5) and out.dtype == np.int64 and not out.any()


# ------------------------------------------------------------------------------------------- text


def tok(texts: list[str], length: int = 6, **params) -> np.ndarray:
    op = {"op": "tokenize", "max_length": length, **params}
    op.setdefault("kind", "chars")
    return preprocess_input(spec("text", [op], ("batch", length), "int64"), texts)


def test_chars_ids_by_hand() -> None:
    assert ALPHABET[:4] == " abc" and len(ALPHABET) == 95 and len(set(ALPHABET)) == 95
    # id = 2 + index: ' '=2, 'a'=3, 'b'=4, '!'= 2 + 41; padding 0 on the right
    assert ALPHABET.index("!") == 41
    assert tok(["ab !"]).tolist() == [[3, 4, 2, 43, 0, 0]]
    assert tok(["Ab"], lowercase=True).tolist() == tok(["ab"]).tolist()
    # 'A' is at index 62 -> id 64, folded into unknown (1) with vocab_size 64; 'é' is not in the alphabet
    assert tok(["Aé"], vocab_size=64).tolist() == [[1, 1, 0, 0, 0, 0]]
    assert tok(["A"], vocab_size=65).tolist() == [[64, 0, 0, 0, 0, 0]]


def test_truncation_padding_sides_and_mask() -> None:
    assert tok(["abcdefgh"], 4).tolist() == [[3, 4, 5, 6]]
    assert tok(["abcdefgh"], 4, truncation_side="left").tolist() == [[7, 8, 9, 10]]
    assert tok(["ab"], 4, padding_side="left").tolist() == [[0, 0, 3, 4]]
    assert tok(["ab", ""], 4, output="mask").tolist() == [[1, 1, 0, 0], [0, 0, 0, 0]]
    assert tok(["ab"], 4, padding_id=1, unknown_id=0).tolist() == [[3, 4, 1, 1]]
    with pytest.raises(MmstdError, match="text 0 has 8 tokens, more than max_length 4, and truncation is off") as info:
        tok(["abcdefgh"], 4, truncation=False)
    assert info.value.code == "E_TEXT_INVALID"


def test_bytes_ids_by_hand() -> None:
    assert tok(["é"], 3, kind="bytes").tolist() == [[2 + 0xC3, 2 + 0xA9, 0]]
    assert tok(["é"], 3, kind="bytes", vocab_size=172).tolist() == [[1, 171, 0]]


def test_words_read_the_vocabulary_from_the_package_assets(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "vocab.txt").write_text("[PAD]\n[UNK]\nthe\ncat\n.\n", encoding="utf-8")
    s = spec("text", [{"op": "tokenize", "kind": "words", "vocab": "assets/vocab.txt", "max_length": 5, "lowercase": True}],
             ("batch", 5), "int64")
    assert preprocess_input(s, ["The cat sat."], assets_root=tmp_path).tolist() == [[2, 3, 1, 4, 0]]
    with pytest.raises(MmstdError, match="no package directory was given") as info:
        preprocess_input(s, ["x"])
    assert info.value.code == "E_USAGE"
    os.symlink("/etc/hostname", tmp_path / "assets" / "link.txt")
    bad = spec("text", [{"op": "tokenize", "kind": "words", "vocab": "assets/link.txt", "max_length": 5}], ("batch", 5), "int64")
    with pytest.raises(MmstdError) as info:
        preprocess_input(bad, ["x"], assets_root=tmp_path)
    assert info.value.code == "E_FS_PATH_ESCAPE"


def test_hf_tokenizer_needs_the_optional_library(tmp_path: Path) -> None:
    s = spec("text", [{"op": "tokenize", "kind": "hf-tokenizer", "tokenizer": "assets/tokenizer.json", "max_length": 8}],
             ("batch", 8), "int64")
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        with pytest.raises(MmstdError, match="needs the 'tokenizers' library") as info:
            preprocess_input(s, ["hello"], assets_root=tmp_path)
        assert info.value.code == "E_DEPENDENCY"
        return
    from tokenizers import Tokenizer, models, pre_tokenizers

    t = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "hello": 2, "world": 3}, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    (tmp_path / "assets").mkdir()
    t.save(str(tmp_path / "assets" / "tokenizer.json"))
    assert preprocess_input(s, ["hello big world"], assets_root=tmp_path).tolist() == [[2, 1, 3, 0, 0, 0, 0, 0]]


# ------------------------------------------------------------------------------------------ audio


def test_resample_keeps_a_sine_and_changes_the_length() -> None:
    t = np.arange(16000) / 16000
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    out = preprocess_input(spec("audio", [{"op": "resample", "rate": 8000}], ("batch", 8000)), x[None], source_rate=16000)
    ref = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    np.testing.assert_allclose(out[0, 200:-200], ref[200:-200], atol=2e-3)
    same = preprocess_input(spec("audio", [{"op": "resample", "rate": 16000}], ("batch", 16000)), x[None], source_rate=16000)
    assert np.array_equal(same, x[None])
    with pytest.raises(MmstdError, match="needs the audio's sample rate") as info:
        preprocess_input(spec("audio", [{"op": "resample", "rate": 8000}], ("batch", 8000)), x[None])
    assert info.value.code == "E_USAGE"


def test_clips_of_different_lengths_resample_from_the_same_rate() -> None:
    rng = np.random.default_rng(4)
    clips = [rng.normal(size=n).astype(np.float32) for n in (16000, 12000, 20000)]
    s = spec("audio", [{"op": "resample", "rate": 8000}, {"op": "pad_trim", "samples": 8000}], ("batch", 8000))
    together = preprocess_input(s, clips, source_rate=16000)
    for i, c in enumerate(clips):
        assert np.array_equal(together[i], preprocess_input(s, [c], source_rate=16000)[0])


def test_pad_trim_by_hand() -> None:
    s = spec("audio", [{"op": "pad_trim", "samples": 4}], ("batch", 4))
    assert preprocess_input(s, [np.array([1, 2], np.float32), np.array([1, 2, 3, 4, 5], np.float32)]).tolist() == \
        [[1, 2, 0, 0], [1, 2, 3, 4]]


def _reference_log_mel(y: np.ndarray, sr: int, n_fft: int, hop: int, n_mels: int) -> np.ndarray:
    """An independent, loop-based librosa-convention log-mel (dB), [n_mels, frames]."""
    from scipy.signal import get_window

    window = get_window("hann", n_fft, fftbins=True)
    padded = np.concatenate([np.zeros(n_fft // 2), y, np.zeros(n_fft // 2)])
    frames = []
    t = 0
    while t + n_fft <= len(padded):
        frames.append(np.abs(np.fft.rfft(padded[t:t + n_fft] * window)) ** 2)
        t += hop
    power = np.array(frames).T                                      # [bins, frames]

    def hz_to_mel(f: float) -> float:
        return f / (200 / 3) if f < 1000 else 15 + math.log(f / 1000) / (math.log(6.4) / 27)

    def mel_to_hz(m: float) -> float:
        return m * (200 / 3) if m < 15 else 1000 * math.exp((m - 15) * math.log(6.4) / 27)

    edges = [mel_to_hz(m) for m in np.linspace(hz_to_mel(0), hz_to_mel(sr / 2), n_mels + 2)]
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    fb = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        for k, f in enumerate(freqs):
            fb[m, k] = max(0.0, min((f - lo) / (mid - lo), (hi - f) / (hi - mid))) * 2 / (hi - lo)
    db = 10 * np.log10(np.maximum(1e-10, fb @ power))
    return np.maximum(db, db.max() - 80.0)


def test_log_mel_and_mfcc_match_an_independent_reference() -> None:
    from scipy.fft import dct

    rng = np.random.default_rng(5)
    t = np.arange(8000) / 8000
    y = (0.3 * np.sin(2 * np.pi * 300 * t) + 0.1 * np.sin(2 * np.pi * 1700 * t * (1 + t)) +
         0.02 * rng.normal(size=8000)).astype(np.float32)
    ref = _reference_log_mel(y.astype(np.float64), 8000, 256, 160, 26)               # 26 x 51
    assert ref.shape == (26, 51)
    common = {"n_mels": 26, "n_fft": 256, "hop_length": 160}
    lm = preprocess_input(spec("audio", [{"op": "log_mel", **common}], ("batch", 51, 26)), y[None], source_rate=8000)
    np.testing.assert_allclose(lm[0], ref.T, rtol=1e-5, atol=2e-3)
    mf = preprocess_input(spec("audio", [{"op": "mfcc", "n_mfcc": 13, "frames": 50, **common}], ("batch", 50, 13)),
                          y[None], source_rate=8000)
    ref_mfcc = dct(ref, type=2, norm="ortho", axis=0)[:13].T[:50]
    np.testing.assert_allclose(mf[0], ref_mfcc, rtol=1e-5, atol=5e-3)
    assert np.allclose(dct_matrix(13, 26), dct(np.eye(26), type=2, norm="ortho", axis=0)[:13])


def test_mfcc_matches_librosa_when_installed() -> None:
    librosa = pytest.importorskip("librosa")
    y = np.random.default_rng(6).normal(scale=0.1, size=8000).astype(np.float32)
    ours = preprocess_input(spec("audio", [{"op": "mfcc", "n_mfcc": 13, "n_mels": 26, "n_fft": 256, "hop_length": 160}],
                                 ("batch", 51, 13)), y[None], source_rate=8000)
    ref = librosa.feature.mfcc(y=y, sr=8000, n_mfcc=13, n_mels=26, n_fft=256, hop_length=160)
    np.testing.assert_allclose(ours[0], ref.T, rtol=1e-5, atol=1e-3)      # measured: 1.5e-5 with librosa 0.11
    lm = preprocess_input(spec("audio", [{"op": "log_mel", "n_mels": 26, "n_fft": 256, "hop_length": 160}],
                               ("batch", 51, 26)), y[None], source_rate=8000)
    ref_lm = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=8000, n_mels=26, n_fft=256, hop_length=160))
    np.testing.assert_allclose(lm[0], ref_lm.T, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(mel_filterbank(8000, 256, 26), librosa.filters.mel(sr=8000, n_fft=256, n_mels=26), atol=1e-6)


def test_frames_pad_short_clips_and_cut_long_ones() -> None:
    common = {"n_mfcc": 13, "n_mels": 26, "n_fft": 256, "hop_length": 160, "frames": 50}
    s = spec("audio", [{"op": "mfcc", **common}], ("batch", 50, 13))
    short = np.ones(3000, np.float32) * 0.1
    out = preprocess_input(s, [short], source_rate=8000)
    padded = np.concatenate([short, np.zeros(49 * 160 - 3000, np.float32)])
    np.testing.assert_allclose(out, preprocess_input(s, [padded], source_rate=8000))
    assert preprocess_input(s, [np.zeros(20000, np.float32)], source_rate=8000).shape == (1, 50, 13)


def test_standardize_per_coefficient_and_silence_is_zero() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(3.0, 5.0, size=(2, 50, 13)).astype(np.float32)
    out = preprocess_input(spec("tabular", [{"op": "standardize"}], ("batch", 50, 13)), x)
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=1), 1, atol=1e-4)
    card = load_card(EXAMPLE_CARD)
    silent = preprocess_input(card.input("audio"), np.zeros((2, 8000), np.float32), source_rate=8000)
    assert silent.shape == (2, 50, 13) and not silent.any()


def test_example_card_inputs_give_exact_shapes_and_dtypes() -> None:
    card = load_card(EXAMPLE_CARD)
    rng = np.random.default_rng(8)
    feeds = {
        "image": preprocess_input(card.input("image"), rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)),
        "text": preprocess_input(card.input("text"), ["seven", "Drei?", ""]),
        "audio": preprocess_input(card.input("audio"), [rng.normal(size=n).astype(np.float32) * 0.1 for n in (16000, 9000, 4000)],
                                  source_rate=16000),
    }
    assert {k: (v.shape, str(v.dtype)) for k, v in feeds.items()} == {
        "image": ((3, 28, 28, 1), "float32"), "text": ((3, 16), "int64"), "audio": ((3, 50, 13), "float32")}
    assert feeds["image"].min() >= 0 and feeds["image"].max() <= 1
    assert feeds["text"].max() < 64


def test_preprocessing_specs_survive_card_round_trip(card_doc: dict) -> None:
    doc = copy.deepcopy(card_doc)
    doc["inputs"][0]["preprocessing"].append({"op": "normalize", "mean": [0.5], "std": [0.25]})
    doc["inputs"][0]["preprocessing"].append({"op": "layout", "order": "CHW"})
    doc["inputs"][0]["shape"] = ["batch", 1, 28, 28]
    assert check_preprocessing(doc, "card.yaml") == []
