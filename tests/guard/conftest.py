"""Fixtures for the guard: the shipped evaluation sets and settings with a `[guard]` table (the
echo model, a chat.db and plain settings come from tests/conftest.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"


def load_set(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(scope="session")
def attacks() -> list[dict]:
    return load_set("attacks.jsonl")


@pytest.fixture(scope="session")
def clean() -> list[dict]:
    return load_set("clean.jsonl")


@pytest.fixture
def guarded(settings):
    """Settings with a [guard] table: `guarded(redact=True, ...)`."""
    def make(**table):
        return replace(settings, guard=table)
    return make
