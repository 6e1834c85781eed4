"""Strict document reading and schema problems with JSON paths."""
from __future__ import annotations

import pytest

from mmstd.errors import MmstdError
from mmstd.schema import parse_document, validate


@pytest.mark.parametrize(
    ("data", "source", "match"),
    [
        (b'{"a": 1, "a": 2}', "c.json", r"c\.json: duplicate key 'a'"),
        (b"a: 1\na: 2\n", "c.yaml", r"c\.yaml: line 2: duplicate key 'a'"),
        (b'{"a": NaN}', "c.json", r"NaN is not valid JSON"),
        (b'{"a": Infinity}', "c.json", r"Infinity is not valid JSON"),
        (b"a: .nan\n", "c.yaml", r"line 1: '\.nan' is not a finite number"),
        (b"a: -.inf\n", "c.yaml", r"is not a finite number"),
        (b'\xef\xbb\xbf{"a": 1}', "c.json", r"byte-order mark"),
        (b'{"a": "\xff"}', "c.json", r"byte 7 is not valid UTF-8"),
        (b'{"a": 123456789012345678901234567890}', "c.json", r"too large"),
        (b"a: 123456789012345678901234567890\n", "c.yaml", r"\$\.a: integer .* too large"),
        (b'{"a": 1e400}', "c.json", r"not a finite number"),
        (b"[" * 100 + b"]" * 100, "c.json", r"nested deeper than 64"),
        (b"a: &x [1, 2]\nb: *x\n", "c.yaml", r"anchors and aliases are not allowed"),
        (b"{1: a}\n", "c.yaml", r"key 1 is a int; expected a string"),
        (b'{"a": 1,}', "c.json", r"c\.json: line 1 column 9"),
        (b"a: [1, 2\n", "c.yaml", r"c\.yaml: line 2"),
    ],
)
def test_strict_parsing_refuses(data: bytes, source: str, match: str) -> None:
    with pytest.raises(MmstdError, match=match) as info:
        parse_document(data, source=source)
    assert info.value.code == "E_CARD_JSON"


def test_yaml_dates_stay_strings() -> None:
    assert parse_document(b"date: 2026-11-25\n", source="c.yaml") == {"date": "2026-11-25"}


def test_error_code_is_the_callers() -> None:
    with pytest.raises(MmstdError) as info:
        parse_document(b"{", source="m.json", code="E_FORMAT_CORRUPT")
    assert info.value.code == "E_FORMAT_CORRUPT"


def test_validate_names_file_and_json_path() -> None:
    problems = validate({"schema_version": "1.0", "files": [{"path": "a", "sha256": "xyz", "bytes": -1}]},
                        "manifest", source="manifest.json")
    assert "manifest.json: $: missing required field 'mmstd_version'." in problems
    assert "manifest.json: $.files[0].sha256: expected 64 lowercase hex digits, got \"xyz\"." in problems
    assert "manifest.json: $.files[0].bytes: expected a number >= 0, got -1." in problems
