"""The model catalog: one TOML manifest per model in this folder, read into frozen entries.

Data, not code. An id follows `name[:quant][@format]` (Ollama-style); `parse_id` splits it.
Entries know where each artifact comes from (a weights package, a local path, a hub repo)
but nothing about assembling or loading it: that is `resolve.py`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from edgeai.errors import BadInput, ModelNotFound

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

UNVERIFIED = "unverified"


@dataclass(frozen=True)
class Artifact:
    format: str  # gguf | mlx | onnx | coreml | hf | ct2 (Whisper, edgeai.speech)
    quant: str
    file: str  # file name (or folder name) once installed
    source: Mapping[str, Any]  # {"kind": "package"|"hf"|"path", ...}
    sha256: str = UNVERIFIED
    size: int | None = None

    @property
    def kind(self) -> str:
        return str(self.source.get("kind", ""))

    @property
    def size_label(self) -> str:
        """'491 MB', '1.1 GB', or '' when the size is not known before download."""
        if not self.size:
            return ""
        return f"{self.size / 1e9:.1f} GB" if self.size >= 1e9 else f"{self.size / 1e6:.0f} MB"


@dataclass(frozen=True)
class Entry:
    id: str
    name: str
    family: str
    license: str
    license_note: str
    context_length: int
    chat: bool
    description: str
    artifacts: tuple[Artifact, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    chat_template: str | None = None
    role: str = ""  # "default" | "quality" | "base" | ""
    aliases: tuple[str, ...] = ()

    def artifact(self, quant: str | None = None, fmt: str | None = None) -> Artifact:
        for art in self.artifacts:
            if (quant is None or art.quant == quant) and (fmt is None or art.format == fmt):
                return art
        have = ", ".join(f"{a.quant}@{a.format}" for a in self.artifacts)
        want = f"{quant or '*'}@{fmt or '*'}"
        raise ModelNotFound(f"model {self.id} has no artifact {want}", f"it has: {have}")


def parse_id(model_id: str) -> tuple[str, str | None, str | None]:
    """'qwen2.5-coder-0.5b-instruct:q4_k_m@gguf' -> (name, quant, format)."""
    rest, _, fmt = model_id.partition("@")
    name, _, quant = rest.partition(":")
    if not name:
        raise BadInput(f"model id {model_id!r} has no name", "ids look like name[:quant][@format]")
    return name.lower(), (quant.lower() or None), (fmt.lower() or None)


def _entry(data: Mapping[str, Any], origin: str) -> Entry:
    try:
        artifacts = tuple(
            Artifact(format=a["format"], quant=a["quant"].lower(), file=a["file"],
                     source=a["source"], sha256=a.get("sha256", UNVERIFIED), size=a.get("size"))
            for a in data["artifacts"])
        return Entry(
            id=data["id"], name=data["name"], family=data["family"], license=data["license"],
            license_note=data.get("license_note", ""), context_length=data["context_length"],
            chat=data.get("chat", True), description=data.get("description", ""),
            artifacts=artifacts, defaults=data.get("defaults", {}),
            chat_template=data.get("chat_template"), role=data.get("role", ""),
            aliases=tuple(data.get("aliases", ())))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"catalog manifest {origin} is missing or mistypes {exc}") from None


@lru_cache(maxsize=1)
def load_catalog() -> tuple[Entry, ...]:
    folder = resources.files("edgeai.models")
    entries = []
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".toml"):
            entries.append(_entry(tomllib.loads(item.read_text(encoding="utf-8")), item.name))
    return tuple(entries)


def find_entry(name: str) -> Entry:
    for entry in load_catalog():
        if name == entry.id or name in entry.aliases:
            return entry
    raise ModelNotFound(f"model {name!r} is not in the catalog",
                        "see `edgeai models list`, or pass a path to a .gguf file")
