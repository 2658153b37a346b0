"""One assembled copy of a packaged model per machine (#17 item 11): a shared cache keyed by the
sha256, hard-linked (or referenced) into each data dir's models folder."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from edgeai.config import Settings
from edgeai.models.resolve import artifact_path, artifact_state, ensure_artifact, read_stamp


@pytest.fixture
def split(split_model, tmp_path, monkeypatch):
    """The tiny split package of test_catalog.py, with the shared cache pointed at tmp."""
    shared = tmp_path / "shared"
    monkeypatch.setenv("EDGEAI_SHARED_CACHE", str(shared))
    monkeypatch.delenv("EDGEAI_MODELS_DIR", raising=False)
    entry, art, blob, _ = split_model
    return entry, art, blob, shared


def _home(tmp_path, name: str) -> Settings:
    return Settings(home=tmp_path / name)  # no models_home: the data dir's own models folder


def _counting():
    seen = []
    return seen, lambda n, total: seen.append(n)


def test_a_second_data_dir_links_the_first_assembly_instead_of_copying(split, tmp_path):
    entry, art, blob, shared = split
    seen, progress = _counting()
    first = ensure_artifact(entry, art, _home(tmp_path, "a"), progress)
    assert sum(seen) == len(blob)  # assembled once, into the shared cache
    seen.clear()
    second = ensure_artifact(entry, art, _home(tmp_path, "b"), progress)
    assert seen == []  # not a byte joined or copied again
    assert first == artifact_path(entry, art, _home(tmp_path, "a"))
    assert second == artifact_path(entry, art, _home(tmp_path, "b"))
    cached = shared / art.sha256 / art.file
    assert os.path.samefile(first, cached) and os.path.samefile(second, cached)
    assert second.read_bytes() == blob and read_stamp(second)["verified"]
    assert artifact_state(entry, art, _home(tmp_path, "c")) == "ready"  # shared: ready everywhere


def test_a_damaged_shared_copy_fails_the_sha256_check_and_is_assembled_again(split, tmp_path):
    entry, art, blob, shared = split
    ensure_artifact(entry, art, _home(tmp_path, "a"))
    cached = shared / art.sha256 / art.file
    with cached.open("r+b") as handle:  # same size, one byte changed: only the hash can tell
        handle.seek(1000)
        handle.write(bytes([blob[1000] ^ 0xFF]))
    seen, progress = _counting()
    fresh = ensure_artifact(entry, art, _home(tmp_path, "b"), progress)
    assert sum(seen) == len(blob) and fresh.read_bytes() == blob
    again = ensure_artifact(entry, art, _home(tmp_path, "a"))  # the first data dir heals too
    assert again.read_bytes() == blob and os.path.samefile(again, fresh)


def test_an_intact_shared_copy_that_was_only_touched_is_not_assembled_again(split, tmp_path):
    entry, art, blob, shared = split
    ensure_artifact(entry, art, _home(tmp_path, "a"))
    cached = shared / art.sha256 / art.file
    os.utime(cached, ns=(1, 1))  # the stamp no longer matches; the bytes are fine
    seen, progress = _counting()
    path = ensure_artifact(entry, art, _home(tmp_path, "b"), progress)
    assert seen == [] and os.path.samefile(path, cached)


def test_where_a_hard_link_is_impossible_the_shared_copy_is_referenced(split, tmp_path, monkeypatch):
    entry, art, blob, shared = split
    ensure_artifact(entry, art, _home(tmp_path, "a"))

    def cross_device(src, dst, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    path = ensure_artifact(entry, art, _home(tmp_path, "b"))
    assert os.path.samefile(path, shared / art.sha256 / art.file)
    assert path.read_bytes() == blob
    assert not any(p.is_file() and not p.is_symlink() and p.stat().st_size == len(blob)
                   and not os.path.samefile(p, shared / art.sha256 / art.file)
                   for p in (tmp_path / "b").rglob("*"))  # no second copy of the bytes


def test_edgeai_models_dir_keeps_its_own_copy_and_leaves_the_cache_alone(split, tmp_path, monkeypatch):
    entry, art, blob, shared = split
    settings = replace(_home(tmp_path, "a"), models_home=tmp_path / "big-disk")
    path = ensure_artifact(entry, art, settings)
    assert path.parent.parent == tmp_path / "big-disk" and path.read_bytes() == blob
    assert not shared.exists()


def test_the_shared_cache_is_the_user_cache_dir_unless_the_environment_moves_it(monkeypatch, tmp_path):
    from edgeai.config import shared_models_dir

    monkeypatch.setenv("EDGEAI_SHARED_CACHE", str(tmp_path / "x"))
    assert shared_models_dir() == (tmp_path / "x").resolve()
    monkeypatch.delenv("EDGEAI_SHARED_CACHE")
    import platformdirs

    assert shared_models_dir() == \
        __import__("pathlib").Path(platformdirs.user_cache_dir("edgeai", appauthor=False)) / "models"
