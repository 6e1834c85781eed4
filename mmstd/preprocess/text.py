"""Text operations: ``tokenize`` turns a list of strings into a padded ``[N, max_length]`` int64 array.

Kinds (all of them apply ``lowercase`` first when asked, with ``str.lower``):

- ``chars``: one token per Unicode character. ``id(c) = 2 + ALPHABET.index(c)`` when that is below
  ``vocab_size``, else ``unknown_id`` (also for characters not in ``ALPHABET``). ``ALPHABET`` is
  the 95 printable ASCII characters in a fixed order, most useful first: space, ``a-z``, ``0-9``,
  25 punctuation marks, ``A-Z``, then the 7 rarest marks. So ``vocab_size: 64`` covers space,
  lowercase letters, digits and common punctuation (ids 2..63) and folds the rest into unknown;
  the default ``vocab_size`` is 97 (everything). Ids 0 and 1 are reserved for padding and unknown.
- ``bytes``: one token per UTF-8 byte ``b``: ``id = 2 + b`` (below ``vocab_size``, default 258,
  else ``unknown_id``).
- ``words``: ``re.findall(r"\\w+|[^\\w\\s]", text)`` (words and single punctuation marks); a
  token's id is its 0-based line number in the ``vocab`` file (UTF-8, one token per line, read
  from the package's assets), else ``unknown_id``. Line 0 should be the padding token.
- ``hf-tokenizer``: a Hugging Face ``tokenizer.json`` from the assets, run with the optional
  ``tokenizers`` library (``add_special_tokens`` as given); mmstd does truncation and padding.

Then every sequence is truncated to ``max_length`` (dropping from ``truncation_side``; with
``truncation: false`` a longer text is an ``E_TEXT_INVALID`` error) and padded with ``padding_id``
on ``padding_side``. ``output: mask`` returns the attention mask instead: 1 where a token is, 0 on
padding. An empty string gives all padding (and an all-zero mask).
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from mmstd.errors import MmstdError

ALPHABET = (
    " abcdefghijklmnopqrstuvwxyz0123456789"
    ".,;:!?'\"-()/&+*#%$@=<>[]_"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "`^{|}~\\"
)
_CHAR_IDS = {c: 2 + i for i, c in enumerate(ALPHABET)}
_WORDS = re.compile(r"\w+|[^\w\s]")
MAX_VOCAB_BYTES = 64 << 20


def default_vocab_size(kind: str) -> int:
    """The vocabulary size when a ``chars`` or ``bytes`` tokenize op does not name one."""
    return 2 + (len(ALPHABET) if kind == "chars" else 256)


def char_ids(text: str, *, vocab_size: int, unknown_id: int = 1) -> list[int]:
    """Ids of ``text`` for kind ``chars`` (no truncation or padding)."""
    out = []
    for c in text:
        i = _CHAR_IDS.get(c, unknown_id)
        out.append(i if i < vocab_size else unknown_id)
    return out


def tokenize(texts: list[str], p: dict[str, Any], ctx: Any) -> np.ndarray:
    """Token ids ``[N, max_length]`` int64 (or the attention mask); see the module docstring."""
    kind = p["kind"]
    if p["lowercase"]:
        texts = [t.lower() for t in texts]
    if kind == "chars":
        seqs = [char_ids(t, vocab_size=p["vocab_size"], unknown_id=p["unknown_id"]) for t in texts]
    elif kind == "bytes":
        size, unk = p["vocab_size"], p["unknown_id"]
        seqs = [[2 + b if 2 + b < size else unk for b in t.encode("utf-8")] for t in texts]
    elif kind == "words":
        vocab = _vocab(p["vocab"], ctx)
        seqs = [[vocab.get(w, p["unknown_id"]) for w in _WORDS.findall(t)] for t in texts]
    else:
        tok = _hf_tokenizer(p["tokenizer"], ctx)
        seqs = [enc.ids for enc in tok.encode_batch(texts, add_special_tokens=p["add_special_tokens"])]
    length = p["max_length"]
    ids = np.full((len(seqs), length), p["padding_id"], dtype=np.int64)
    mask = np.zeros((len(seqs), length), dtype=np.int64)
    for i, seq in enumerate(seqs):
        if len(seq) > length:
            if not p["truncation"]:
                raise MmstdError(
                    f"input {ctx.input_name!r}: text {i} has {len(seq)} tokens, more than max_length {length}, "
                    "and truncation is off.", code="E_TEXT_INVALID",
                    hint="set truncation: true in the tokenize op, or raise max_length.")
            seq = seq[:length] if p["truncation_side"] == "right" else seq[len(seq) - length:]
        n = len(seq)
        if p["padding_side"] == "right":
            ids[i, :n], mask[i, :n] = seq, 1
        elif n:
            ids[i, length - n:], mask[i, length - n:] = seq, 1
    return mask if p["output"] == "mask" else ids


def _read_asset(rel: str, ctx: Any) -> bytes:
    from mmstd.files import open_in_root

    if ctx.assets_root is None:
        raise MmstdError(f"input {ctx.input_name!r}: tokenize needs {rel!r}, but no package directory was given "
                         "to read assets from.", code="E_USAGE")
    with open_in_root(ctx.assets_root, rel, max_bytes=MAX_VOCAB_BYTES) as f:
        return f.read()


def _vocab(rel: str, ctx: Any) -> dict[str, int]:
    key = f"vocab:{rel}"
    if key not in ctx.cache:
        data = _read_asset(rel, ctx)
        try:
            lines = data.decode("utf-8").split("\n")
        except UnicodeDecodeError as e:
            raise MmstdError(f"{rel}: byte {e.start} is not valid UTF-8.", code="E_TEXT_INVALID") from None
        if lines and lines[-1] == "":
            lines.pop()
        vocab: dict[str, int] = {}
        for i, tok in enumerate(lines):
            vocab.setdefault(tok.rstrip("\r"), i)
        ctx.cache[key] = vocab
    return ctx.cache[key]


def _hf_tokenizer(rel: str, ctx: Any) -> Any:
    key = f"hf:{rel}"
    if key not in ctx.cache:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise MmstdError(f"input {ctx.input_name!r}: kind 'hf-tokenizer' needs the 'tokenizers' library, "
                             "which is not installed.", code="E_DEPENDENCY",
                             hint="pip install tokenizers") from None
        data = _read_asset(rel, ctx)
        try:
            ctx.cache[key] = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as e:  # the library raises plain Exceptions for bad files
            raise MmstdError(f"{rel}: not a valid tokenizer.json ({str(e).splitlines()[0][:200]}).",
                             code="E_FORMAT_CORRUPT") from None
    return ctx.cache[key]
