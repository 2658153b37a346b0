"""Every installed artifact of a catalog model: the catalog's own file plus the exports
`edgeai models optimize` made for it.

Exports live under the model's own place in the models dir,
`<models_dir>/<entry id>/optimized/<format>-<quant>/`, each an `edgeai convert` folder
(manifest.json names its format and quant, report.json carries its fidelity card). This module
only reads them; `optimize.py` writes them and `resolve.py` turns them into specs. Nothing here
imports a runtime or a converter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgeai.config import Settings
from edgeai.formats import FORMATS
from edgeai.models.catalog import Entry

OPTIMIZED = "optimized"


@dataclass(frozen=True)
class Installed:
    """One runnable artifact of a model: where it is and, for an export, how faithful it is."""

    format: str
    quant: str
    path: Path  # a file (GGUF) or an export folder
    origin: str  # "catalog" | "optimized"
    ratio: float | None = None  # perplexity ratio to the 16-bit import (exports only)
    size: int = 0  # bytes on disk

    @property
    def label(self) -> str:
        return f"{self.quant}@{self.format}"


def optimized_dir(entry: Entry, settings: Settings) -> Path:
    return settings.models_dir / entry.id / OPTIMIZED


def export_name(fmt: str, quant: str) -> str:
    return f"{fmt}-{quant.lower()}"


def read_export(folder: Path) -> Installed | None:
    """An `edgeai convert` folder as an artifact, or None when it is not whole (no manifest,
    a format nothing runs here, a GGUF folder without its file)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    fmt, quant = manifest.get("format"), str(manifest.get("quant", "")).lower()
    if fmt not in FORMATS or not FORMATS[fmt].backend:
        return None
    path = folder
    if fmt == "gguf":  # the backend loads the file, not the folder
        files = sorted(folder.glob("*.gguf"))
        if not files:
            return None
        path = files[0]
    ratio = None
    try:
        ratio = json.loads((folder / "report.json").read_text(encoding="utf-8")).get("perplexity_ratio")
    except (OSError, ValueError):
        pass
    size = manifest.get("size_bytes") or 0
    return Installed(fmt, quant, path.resolve(), "optimized", ratio, int(size))


def exports(entry: Entry, settings: Settings) -> list[Installed]:
    """The whole exports made for `entry`, smallest first (the likely fastest of a format first)."""
    root = optimized_dir(entry, settings)
    if not root.is_dir():
        return []
    found = [read_export(p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    return sorted((f for f in found if f), key=lambda f: (f.size, f.path.name))


def find_export(entry: Entry, settings: Settings, quant: str | None, fmt: str | None) -> Installed | None:
    """The export matching `:quant` and/or `@format` (the first, i.e. smallest, when several)."""
    for item in exports(entry, settings):
        if (quant is None or item.quant == quant) and (fmt is None or item.format == fmt):
            return item
    return None
