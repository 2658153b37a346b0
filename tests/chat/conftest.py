"""Fixtures for the chat engine: a chat.db in the test's folder and the echo model. Nothing here
imports the app: the engine is tested as the library it is."""

from __future__ import annotations

import pytest
from edgeai_testing.echo import echo_model

from edgeai.chatdb import ChatDB
from edgeai.config import load_settings


@pytest.fixture
def db(tmp_path):
    database = ChatDB(tmp_path / "chat.db")
    yield database
    database.close()


@pytest.fixture
def make_echo():
    return echo_model


@pytest.fixture
def settings(edgeai_home):
    return load_settings()
