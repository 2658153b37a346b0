"""The small JSON files that travel with an exported model folder (config, tokenizer_config,
chat template), read the same way by every backend that loads a folder (mlx, onnx, coreml)."""

from __future__ import annotations

import json
from pathlib import Path

from edgeai.errors import ModelFormatError


def read_json(path: Path) -> dict:
    """A JSON object from `path`; {} when the file is absent, a clear error when it is damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path.name} in {path.parent} is not valid JSON: {exc}") from None
    return data if isinstance(data, dict) else {}


def token_text(value) -> str:
    """A tokenizer_config token entry: a string, or an AddedToken dict with `content`."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else ""


def own_template(folder: Path) -> str | None:
    """The chat template that travelled with the model: chat_template.jinja, else the one in
    tokenizer_config.json (a string, or named templates of which "default" is used)."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = read_json(folder / "tokenizer_config.json").get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) and template.strip() else None
