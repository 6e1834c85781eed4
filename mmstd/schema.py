"""Strict reading of JSON/YAML documents and JSON Schema validation with readable paths.

Human-written inputs (card drafts, suites, policies) are YAML; machine artifacts are JSON. Both
are read strictly (no duplicate keys, NaN/Infinity, BOM, invalid UTF-8, deep nesting, absurd
numbers or YAML anchors) and validated against ``schemas/*.schema.json``. Every problem names
the file and the JSON path: ``card.yaml: $.inputs[1].shape[0]: expected ..., got -1.``
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from mmstd.errors import MmstdError

MAX_DEPTH = 64
MAX_DOC_BYTES = 16 << 20
MAX_ABS_INT = 2**53          # beyond this JSON numbers stop round-tripping through float
MAX_ABS_FLOAT = 1e300

SCHEMA_DIRS = (
    Path(__file__).resolve().parent / "_schemas",          # installed wheel
    Path(__file__).resolve().parent.parent / "schemas",    # source checkout / editable install
)


def schema_path(name: str) -> Path:
    """Path of ``schemas/<name>.schema.json``."""
    for d in SCHEMA_DIRS:
        p = d / f"{name}.schema.json"
        if p.is_file():
            return p
    raise MmstdError(f"schema {name!r} not found in {[str(d) for d in SCHEMA_DIRS]}.", code="E_INTERNAL")


@cache
def load_schema(name: str) -> dict[str, Any]:
    return json.loads(schema_path(name).read_text("utf-8"))


# --------------------------------------------------------------------------------------- reading


def parse_document(data: bytes, *, source: str, fmt: str | None = None, code: str = "E_CARD_JSON") -> Any:
    """Parse JSON or YAML bytes strictly.

    Args:
        data: The raw bytes.
        source: File name used in messages.
        fmt: ``"json"`` or ``"yaml"``; guessed from ``source``'s suffix when omitted.
        code: Error code for syntax problems (``E_CARD_JSON`` for cards).

    Raises:
        MmstdError: Any syntax or strictness problem, naming ``source``.
    """
    if len(data) > MAX_DOC_BYTES:
        raise MmstdError(f"{source}: is {len(data)} bytes (limit {MAX_DOC_BYTES}).", code=code)
    if data.startswith(b"\xef\xbb\xbf"):
        raise MmstdError(f"{source}: starts with a UTF-8 byte-order mark; expected plain UTF-8.", code=code)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MmstdError(f"{source}: byte {e.start} is not valid UTF-8.", code=code) from None
    fmt = fmt or ("json" if source.endswith(".json") else "yaml")
    doc = _parse_json(text, source, code) if fmt == "json" else _parse_yaml(text, source, code)
    _check_values(doc, source, code, "$", 0)
    return doc


def load_document(path: Path, *, code: str = "E_CARD_JSON") -> Any:
    """Read and strictly parse a ``.json``, ``.yaml`` or ``.yml`` file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MmstdError(f"{path}: no such file.", code="E_NOT_FOUND") from None
    except IsADirectoryError:
        raise MmstdError(f"{path}: is a directory; expected a file.", code="E_FS_NOT_REGULAR") from None
    return parse_document(data, source=path.name, code=code)


def _parse_json(text: str, source: str, code: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise MmstdError(f"{source}: duplicate key {k!r}.", code=code)
            out[k] = v
        return out

    def bad_constant(name: str) -> Any:
        raise MmstdError(f"{source}: {name} is not valid JSON; expected a finite number.", code=code)

    def parse_int(s: str) -> int:
        if len(s.lstrip("-")) > 16:
            raise MmstdError(f"{source}: integer {s[:20]}... is too large (limit {MAX_ABS_INT}).", code=code)
        return int(s)

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=bad_constant, parse_int=parse_int)
    except json.JSONDecodeError as e:
        raise MmstdError(f"{source}: line {e.lineno} column {e.colno}: {e.msg}.", code=code) from None
    except RecursionError:
        raise MmstdError(f"{source}: nested deeper than {MAX_DEPTH} levels.", code=code) from None


def _parse_yaml(text: str, source: str, code: str) -> Any:
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise MmstdError(
                    f"{source}: line {key_node.start_mark.line + 1}: key {key!r} is a {type(key).__name__}; "
                    "expected a string.", code=code)
            if key in out:
                raise MmstdError(f"{source}: line {key_node.start_mark.line + 1}: duplicate key {key!r}.", code=code)
            out[key] = loader.construct_object(value_node, deep=True)
        return out

    def construct_float(loader: StrictLoader, node: yaml.ScalarNode) -> float:
        value = yaml.SafeLoader.construct_yaml_float(loader, node)
        if not math.isfinite(value):
            raise MmstdError(
                f"{source}: line {node.start_mark.line + 1}: {node.value!r} is not a finite number.", code=code)
        return value

    def construct_str(loader: StrictLoader, node: yaml.ScalarNode) -> str:
        # Dates stay strings: the schema, not YAML's implicit typing, decides what a value is.
        return str(node.value)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    StrictLoader.add_constructor("tag:yaml.org,2002:float", construct_float)
    StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", construct_str)
    StrictLoader.add_constructor("tag:yaml.org,2002:binary", None)  # type: ignore[arg-type]

    try:
        loader = StrictLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_yaml_nodes(node, source, code)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise MmstdError(f"{source}: {where}{problem}.", code=code) from None


def _check_yaml_nodes(root: Any, source: str, code: str) -> None:
    """Refuse anchors/aliases (billion-laughs) and nesting beyond MAX_DEPTH before constructing."""
    import yaml

    seen: set[int] = set()
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise MmstdError(f"{source}: nested deeper than {MAX_DEPTH} levels.", code=code)
        if id(node) in seen or getattr(node, "anchor", None):
            raise MmstdError(
                f"{source}: line {node.start_mark.line + 1}: YAML anchors and aliases are not allowed.", code=code)
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack += [(k, depth + 1), (v, depth + 1)]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(v, depth + 1) for v in node.value]


def _check_values(value: Any, source: str, code: str, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise MmstdError(f"{source}: {path}: nested deeper than {MAX_DEPTH} levels.", code=code)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if abs(value) > MAX_ABS_INT:
            raise MmstdError(f"{source}: {path}: integer {value} is too large (limit {MAX_ABS_INT}).", code=code)
    elif isinstance(value, float):
        if not math.isfinite(value) or abs(value) > MAX_ABS_FLOAT:
            raise MmstdError(f"{source}: {path}: {value!r} is not a finite number of sane size.", code=code)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _check_values(v, source, code, f"{path}.{k}", depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_values(v, source, code, f"{path}[{i}]", depth + 1)
    else:
        raise MmstdError(f"{source}: {path}: unsupported value type {type(value).__name__}.", code=code)


# ------------------------------------------------------------------------------------ validation


def validate(doc: Any, schema: str, *, source: str) -> list[str]:
    """Validate ``doc`` against ``schemas/<schema>.schema.json``.

    Returns:
        Every problem as ``"<source>: <json path>: <what is wrong>"``, sorted by path; empty when valid.
    """
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(load_schema(schema), format_checker=Draft202012Validator.FORMAT_CHECKER)
    problems = []
    for err in validator.iter_errors(doc):
        for leaf in _leaves(err):
            problems.append((_json_path(leaf.absolute_path), f"{source}: {_json_path(leaf.absolute_path)}: {_describe(leaf)}"))
    return [msg for _, msg in sorted(set(problems))]


def check(doc: Any, schema: str, *, source: str, code: str, what: str) -> None:
    """Raise one error listing every schema problem of ``doc``.

    Raises:
        MmstdError: With ``code`` and one problem per line.
    """
    problems = validate(doc, schema, source=source)
    if problems:
        raise MmstdError(
            f"{source}: is not a valid {what} ({len(problems)} problem{'s' * (len(problems) > 1)}).",
            code=code,
            problems=problems,
            hint=f"see schemas/{schema}.schema.json for the fields and their types.",
        )


def _leaves(err: Any) -> list[Any]:
    # oneOf/anyOf failures carry their branches' errors; the most specific ones read best.
    if err.context and err.validator in ("oneOf", "anyOf") and "x-expected" not in err.schema:
        best = max(err.context, key=lambda e: len(e.absolute_path))
        deepest = [e for e in err.context if len(e.absolute_path) == len(best.absolute_path)]
        if len(best.absolute_path) > len(err.absolute_path):
            return [leaf for e in deepest[:1] for leaf in _leaves(e)]
    return [err]


def _json_path(parts: Any) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _describe(err: Any) -> str:
    got = _short(err.instance)
    expected = err.schema.get("x-expected") if isinstance(err.schema, dict) else None
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        allowed = ", ".join(sorted(err.schema.get("properties", {})))
        return f"unknown field{'s' * (len(extra) > 1)} {', '.join(map(repr, extra))}; expected one of: {allowed}."
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        return f"missing required field {missing!r}."
    if expected:
        return f"expected {expected}, got {got}."
    if err.validator == "enum":
        return f"expected one of {', '.join(map(repr, err.validator_value))}, got {got}."
    if err.validator == "const":
        return f"expected {err.validator_value!r}, got {got}."
    if err.validator == "type":
        kinds = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        return f"expected {' or '.join(_TYPE_WORDS.get(k, k) for k in kinds)}, got {got}."
    if err.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[err.validator]
        return f"expected a number {op} {err.validator_value}, got {got}."
    if err.validator == "pattern":
        return f"expected a string matching {err.validator_value!r}, got {got}."
    if err.validator in ("minItems", "maxItems", "minLength", "maxLength"):
        return f"{err.message}."
    return f"{err.message}."


_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "object": "an object",
    "array": "a list",
    "boolean": "true or false",
    "null": "null",
}


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
