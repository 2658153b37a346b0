"""Fixtures for the chat app: the echo backend, an app factory, and helpers to drive it."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from edgeai_testing.echo import echo_model

from edgeai.config import load_settings
from edgeai.errors import EdgeAIError
from edgeai.tui.app import EdgeChatApp

SIZE = (100, 32)
FIXED_CLOCK = 1_700_000_000.0


def echo_loader(request: str, backend: str | None, progress=None):
    """Loads any request as an echo model named after it; 'broken…' fails like a bad file."""
    if request.startswith("broken"):
        raise EdgeAIError(f"model file is not GGUF: bad magic b'PK\\x03\\x04' in {request}")
    return echo_model(request)


def ticking_clock():
    """A clock that advances one second per reading: orderings stay real, runs stay identical."""
    ticks = itertools.count()
    return lambda: FIXED_CLOCK + next(ticks)


@pytest.fixture
def echo():
    return echo_model()


@pytest.fixture
def make_app(echo):
    """EdgeChatApp on the echo backend, a deterministic clock and no live stats (stable snapshots)."""

    def make(**kwargs) -> EdgeChatApp:
        kwargs.setdefault("loaded", echo)
        kwargs.setdefault("loader", echo_loader)
        kwargs.setdefault("clock", ticking_clock())
        kwargs.setdefault("live_stats", False)
        kwargs.setdefault("overrides", {"temperature": 0.0})  # echo's phrasing is then fixed
        return EdgeChatApp(load_settings(), **kwargs)

    return make


async def _settle(pilot) -> None:
    """Let every worker (load, turn, prepare) finish and the UI catch up."""
    app = pilot.app
    await pilot.pause()
    while any(not worker.is_finished for worker in app.workers):
        await app.workers.wait_for_complete()
        await pilot.pause()  # a finished worker may have started the next (load -> prepare)


async def _send(pilot, text: str, wait: bool = True) -> None:
    prompt = pilot.app.chat.prompt
    prompt.focus()
    prompt.load_text(text)
    await pilot.press("enter")
    if wait:
        await _settle(pilot)


async def _until(pilot, condition, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.02)


# The helpers as fixtures: test modules are imported by path (--import-mode=importlib), so a
# helper module next to them could not be imported by name.
@pytest.fixture
def settle():
    return _settle


@pytest.fixture
def send():
    return _send


@pytest.fixture
def until():
    return _until
