"""The two files every export folder carries: `manifest.json` (what was made, from what, with
which tools) and `report.json` (how faithful it is). Plain dataclasses, written atomically."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeai.fileio import atomic_write

MANIFEST = "manifest.json"
REPORT = "report.json"


@dataclass(frozen=True)
class Manifest:
    format: str
    quant: str
    family: str
    source: str  # what SRC was, as the user gave it (resolved path)
    source_kind: str  # hf | gguf
    artifacts: tuple[str, ...]  # file or folder names inside OUT
    toolchain: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    peak_rss_mb: float | None = None
    size_bytes: int = 0
    notes: tuple[str, ...] = ()
    edgeai: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def write_json(path: Path, data: Any) -> None:
    text = data.to_json() if hasattr(data, "to_json") else json.dumps(data, indent=2) + "\n"
    atomic_write(path, text)


def read_manifest(out: Path) -> Manifest:
    from edgeai.errors import BadInput

    path = Path(out) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["artifacts"] = tuple(data["artifacts"])
        data["notes"] = tuple(data.get("notes", ()))
        return Manifest(**data)
    except FileNotFoundError:
        raise BadInput(f"{out} is not an edgeai export (no {MANIFEST})") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise BadInput(f"{path} is damaged: {exc}") from None


def folder_size(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
