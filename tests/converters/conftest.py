"""Tiny checkpoints built once per session, one per family, shared by the converter tests."""

from __future__ import annotations

import pytest
from edgeai_testing.tiny_models import FAMILIES, build_tiny_hf


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """family -> the folder of a tiny HF checkpoint (built on first use)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("tiny")
    built: dict = {}

    def get(family: str):
        if family not in built:
            built[family] = build_tiny_hf(root / family, family)
        return built[family]

    return get


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param
