"""``report.json``: the machine report, in canonical form.

Keys follow the order of ``schemas/report.schema.json`` (so the file reads top-down: what ran,
where, then results); map keys such as metric names are sorted. The bytes therefore depend only on
the report's content, never on the order in which the evaluator filled the dict. Objects are
indented by 2; lists of plain values (a confusion-matrix row, a latency CDF) stay on one line.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mmstd.schema import load_schema


class JsonReporter:
    """Canonical JSON: schema key order, indent 2, UTF-8, trailing newline."""

    name = "json"
    filename = "report.json"

    def render(self, report: Mapping[str, Any]) -> str:
        schema = load_schema("report")
        return _dump(_ordered(report, schema, schema), 0) + "\n"


def _dump(value: Any, level: int) -> str:
    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = ",\n".join(f"{inner}{_scalar(k)}: {_dump(v, level + 1)}" for k, v in value.items())
        return "{\n" + items + "\n" + pad + "}"
    if isinstance(value, list):
        if all(not isinstance(v, (Mapping, list)) for v in value):
            return "[" + ", ".join(_scalar(v) for v in value) + "]"
        return "[\n" + ",\n".join(inner + _dump(v, level + 1) for v in value) + "\n" + pad + "]"
    return _scalar(value)


def _scalar(value: Any) -> str:
    # allow_nan=False: NaN/Infinity are not JSON; check_report refuses them before rendering.
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _ordered(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any]) -> Any:
    schema = _resolve(schema, root)
    if isinstance(value, Mapping):
        props: dict[str, Any] = {}
        for part in [schema, *(_resolve(s, root) for s in schema.get("allOf", ()))]:
            for k, v in part.get("properties", {}).items():
                props.setdefault(k, v)
        extra = schema.get("additionalProperties")
        rest = extra if isinstance(extra, Mapping) else {}
        keys = [k for k in props if k in value] + sorted(k for k in value if k not in props)
        return {k: _ordered(value[k], props.get(k, rest), root) for k in keys}
    if isinstance(value, list):
        items = schema.get("items")
        return [_ordered(v, items if isinstance(items, Mapping) else {}, root) for v in value]
    return value


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    # Follow local "$ref"s; a $ref beside other keywords (description) still names the shape.
    while "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = target
    return schema
