"""Reads and checks a JSON schema for constrained output, before any model is loaded.

The checks catch what a user gets wrong (not JSON, not an object, a misspelt type) with a
message naming the place; the backend's grammar converter then handles the rest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeai.errors import BadInput

JSON_TYPES = {"string", "number", "integer", "boolean", "object", "array", "null"}


def _check(node: Any, where: str) -> None:
    if isinstance(node, bool):
        return
    if not isinstance(node, dict):
        raise BadInput(f"invalid JSON schema at {where}: expected an object, got {type(node).__name__}")
    kinds = node.get("type")
    for kind in kinds if isinstance(kinds, list) else ([kinds] if kinds is not None else []):
        if kind not in JSON_TYPES:
            raise BadInput(f"invalid JSON schema at {where}: unknown type {kind!r}",
                           f"JSON schema types are {', '.join(sorted(JSON_TYPES))}")
    props = node.get("properties", {})
    if not isinstance(props, dict):
        raise BadInput(f"invalid JSON schema at {where}.properties: expected an object")
    for name, sub in props.items():
        _check(sub, f"{where}.properties.{name}")
    required = node.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise BadInput(f"invalid JSON schema at {where}.required: expected a list of names")
    if "items" in node:
        _check(node["items"], f"{where}.items")
    if "enum" in node and not isinstance(node["enum"], list):
        raise BadInput(f"invalid JSON schema at {where}.enum: expected a list")
    for key in ("anyOf", "oneOf", "allOf"):
        for i, sub in enumerate(node.get(key, [])):
            _check(sub, f"{where}.{key}[{i}]")


def load_json_schema(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"JSON schema file does not exist: {path}") from None
    except UnicodeDecodeError:
        raise BadInput(f"JSON schema file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise BadInput(f"cannot read JSON schema file {path}: {exc.strerror}") from None
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"JSON schema file {path} is not valid JSON: {exc}") from None
    _check(schema, "$")
    if not isinstance(schema, dict):
        raise BadInput(f"JSON schema in {path} must be an object")
    return schema
