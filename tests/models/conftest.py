"""The models tests' fixtures: a tiny split weights package, really installed (importlib.metadata
finds it), that assembles like the default model's."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest

from edgeai.config import Settings
from edgeai.models import find_entry


def fake_split_package(root: Path, name: str, data: bytes) -> None:
    """A real (if tiny) installed distribution holding one data part, found by importlib.metadata."""
    pkg = name.replace("-", "_")
    (root / pkg / "data").mkdir(parents=True)
    (root / pkg / "data" / "part.bin").write_bytes(data)
    info = root / f"{pkg}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "RECORD").write_text(f"{pkg}/data/part.bin,,\n{pkg}-1.0.dist-info/METADATA,,\n")


@pytest.fixture
def split_model(tmp_path, monkeypatch):
    root = tmp_path / "site"
    parts = [os.urandom(300_000), os.urandom(123_457)]
    for i, data in enumerate(parts):
        fake_split_package(root, f"edgeai-test-part{i + 1}", data)
    monkeypatch.syspath_prepend(str(root))
    blob = b"".join(parts)
    entry = replace(find_entry("qwen2.5-coder-0.5b-instruct"), id="tiny-split")
    art = replace(entry.artifacts[0], file="tiny.gguf", size=len(blob),
                  sha256=hashlib.sha256(blob).hexdigest(),
                  source={"kind": "package", "version": "1.0", "extra": "tiny",
                          "packages": ["edgeai-test-part1", "edgeai-test-part2"]})
    return entry, art, blob, Settings(home=tmp_path / "home")
