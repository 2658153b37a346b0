"""How the app looks: SVG snapshots at fixed sizes, with a deterministic clock and no live stats.

Regenerate after an intended change with `pytest tests/tui/test_snapshots.py --snapshot-update`
and look at the SVGs under __snapshots__/ before committing them.
"""

from __future__ import annotations

import pytest

REPLY = """Here is a small example:

```python
def greet(name: str) -> str:
    return f"Hello, {name}!"
```

It returns a **greeting**."""


@pytest.fixture
def stable_picker_states(monkeypatch):
    # whether a model is assembled here depends on the machine, not on the picker
    monkeypatch.setattr("edgeai.tui.screens.models.artifact_state",
                        lambda entry, art, settings: "built-in" if art.kind == "builtin" else "ready")


async def _quiet(pilot) -> None:
    """No cursor blink, no toasts: what is left is the same on every run."""
    app = pilot.app
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()
    app.chat.prompt.cursor_blink = False
    for field in app.screen.query("Input"):  # the sidebar's search box blinks too when focused
        field.cursor_blink = False
    app.clear_notifications()
    await pilot.pause()


def _chat_with(echo, send, replies: list[str], messages: list[str]):
    async def run_before(pilot) -> None:
        for reply, message in zip(replies, messages, strict=True):
            echo[0].enqueue(reply)
            await send(pilot, message)
        await _quiet(pilot)

    return run_before


def test_main_screen(snap_compare, make_app, echo, send):
    app = make_app()
    assert snap_compare(app, terminal_size=(100, 32),
                        run_before=_chat_with(echo, send, [REPLY], ["Show me a Python greeting"]))


def test_main_screen_light_theme_at_80x24(snap_compare, make_app, echo, send):
    app = make_app()
    app.theme = "textual-light"
    assert snap_compare(app, terminal_size=(80, 24),
                        run_before=_chat_with(echo, send, [REPLY], ["Show me a Python greeting"]))


def test_sidebar_with_several_conversations(snap_compare, make_app, echo, send, settle):
    async def run_before(pilot) -> None:
        for title in ("Rust lifetimes", "A [bracketed] title", "Dinner ideas"):
            await send(pilot, title)
            await pilot.press("ctrl+n")
            await settle(pilot)
        await send(pilot, "/search ti")  # two of the four match
        await _quiet(pilot)

    assert snap_compare(make_app(), terminal_size=(100, 32), run_before=run_before)


def test_model_picker(snap_compare, make_app, stable_picker_states):
    async def run_before(pilot) -> None:
        await _quiet(pilot)
        await pilot.press("ctrl+o")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(100, 32), run_before=run_before)
