"""Fixtures for the guard: the shipped evaluation sets, a settings object with a `[guard]` table,
the echo model and a chat.db (the engine is tested as the library it is)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from edgeai_testing.echo import echo_model

from edgeai.chatdb import ChatDB
from edgeai.config import load_settings

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
def settings(edgeai_home):
    return load_settings()


@pytest.fixture
def guarded(settings):
    """Settings with a [guard] table: `guarded(redact=True, ...)`."""
    def make(**table):
        return replace(settings, guard=table)
    return make


@pytest.fixture
def db(tmp_path):
    database = ChatDB(tmp_path / "chat.db")
    yield database
    database.close()


@pytest.fixture
def make_echo():
    return echo_model
