"""Things that happen at the same time: a reply finishing while the user switches, stops,
deletes or quits; model loads overtaken by a switch; KV saves and restores racing."""

from __future__ import annotations

import threading
import time

from edgeai_testing.echo import keep_state, on_stream_close

from edgeai.chat.kv import kv_path

SIZE = (100, 32)


def held_loader(make_echo, release: threading.Event, only: str | None = None):
    """A model loader that waits for `release` (for the request `only`, or for every request)."""
    def loader(request, backend, progress=None):
        if only is None or request == only:
            release.wait(5)
        return make_echo(request)

    return loader


def finish_slowly(backend, release: threading.Event) -> None:
    """Once stopped, the stream takes until `release` to close (as a long llama.cpp prefill
    batch does): the reply stays 'finishing', its worker holding the model's lock."""
    on_stream_close(backend, lambda: release.wait(5))


class OwnedLock:
    """A Lock that knows which thread holds it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.owner: int | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._lock.acquire(blocking, timeout)
        if got:
            self.owner = threading.get_ident()
        return got

    def release(self) -> None:
        self.owner = None
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self.release()


async def test_stopping_and_switching_while_a_stopped_reply_finishes(make_app, make_echo, until, settle):
    backend, spec = make_echo("slow", token_delay=0.02)
    release = threading.Event()
    finish_slowly(backend, release)
    backend.enqueue("word " * 200)
    app = make_app(loaded=(backend, spec))
    async with app.run_test(size=SIZE) as pilot:
        first = app.chat.conversation.id
        app.chat.prompt.load_text("tell me a lot")
        await pilot.press("enter")
        await until(pilot, lambda: len(app.chat.transcript.last("assistant").content) > 10)
        reply_id = app.chat.job.reply_id
        await pilot.press("escape")  # stopped: the reply is finishing
        await app.chat.new_conversation()  # its view is removed with the transcript
        await pilot.press("escape")  # Esc again, on a view that is gone: no crash
        await app.chat.open_conversation(first)  # back: a new view shows the reply
        assert app.chat.transcript.view_for(reply_id).status == "streaming"
        release.set()
        await settle(pilot)
        view = app.chat.transcript.view_for(reply_id)
        assert view.status == "interrupted"  # the new view was finished, not only the old one
        assert "stopped" in str(view.query_one(".header").render())
        assert app.chat.job is None and not app.chat.status.state.generating


async def test_no_worker_waits_on_the_ui_while_it_holds_the_model_lock(make_app, make_echo, send,
                                                                       until, settle):
    backend, spec = make_echo(token_delay=0.002)
    keep_state(backend, marker=b"kv" * 100)
    app = make_app(loaded=(backend, spec))
    lock = app.model.lock = OwnedLock()
    waits_under_lock = []
    real = app.call_from_thread

    def spy(callback, *args, **kwargs):
        waits_under_lock.append(lock.owner == threading.get_ident())
        return real(callback, *args, **kwargs)

    app.call_from_thread = spy
    async with app.run_test(size=SIZE) as pilot:
        backend.enqueue("x" * 200)
        await send(pilot, "a reply that streams in many batches")
        backend.enqueue("y" * 400)
        await send(pilot, "and one that is stopped", wait=False)
        await until(pilot, lambda: len(app.chat.transcript.last("assistant").content) > 20)
        await pilot.press("escape")
        await settle(pilot)
        await app.chat.new_conversation()  # a switch: KV restore and count
        await settle(pilot)
    assert waits_under_lock and not any(waits_under_lock)


async def test_quitting_while_a_reply_takes_long_to_finish_does_not_hang(make_app, make_echo, until,
                                                                         monkeypatch):
    monkeypatch.setattr("edgeai.tui.app.SHUTDOWN_WAIT_S", 0.2)
    monkeypatch.setattr("edgeai.tui.app.CLOSE_WAIT_S", 0.3)
    backend, spec = make_echo("slow", token_delay=0.02)
    release = threading.Event()
    finish_slowly(backend, release)
    backend.enqueue("word " * 200)
    app = make_app(loaded=(backend, spec))
    started = None
    try:
        async with app.run_test(size=SIZE) as pilot:
            app.chat.prompt.load_text("tell me a lot")
            await pilot.press("enter")
            await until(pilot, lambda: len(app.chat.transcript.last("assistant").content) > 10)
            started = time.monotonic()
            await app.action_quit()  # Ctrl+Q: stop the reply, wait for it (bounded), exit
        assert time.monotonic() - started < 3  # the lock is still held: closing gave up in time
        assert app.return_code == 0
    finally:
        release.set()


async def test_switching_back_cancels_a_load_for_another_conversation(make_app, make_echo, send,
                                                                      settle):
    release = threading.Event()

    loader = held_loader(make_echo, release, only="slow")

    app = make_app(loader=loader)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "on echo")
        first = app.chat.conversation.id
        await app.chat.new_conversation()
        await send(pilot, "/model slow", wait=False)
        await pilot.pause()
        assert app.chat.status.state.loading.startswith("slow")
        await app.chat.open_conversation(first)  # its model is the loaded one
        assert app.chat.status.state.loading is None
        release.set()
        await settle(pilot)
        assert app.model.spec.id == "echo"  # the finished load did not take over
        assert app.chat.status.state.model == "echo"
        assert app.db.conversation(first).model == "echo"


async def test_clearing_the_conversation_keeps_the_model_it_is_loading(make_app, make_echo, send,
                                                                       settle):
    release = threading.Event()

    loader = held_loader(make_echo, release)

    app = make_app(loader=loader)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "/model slow", wait=False)
        await pilot.pause()
        await send(pilot, "/clear", wait=False)  # reopens the same conversation: not a switch
        await pilot.pause()
        assert app.chat.status.state.loading.startswith("slow")
        release.set()
        await settle(pilot)
        assert app.model.spec.id == "slow" and app.chat.conversation.model == "slow"


async def test_deleting_a_conversation_while_its_model_loads(make_app, make_echo, echo, send, settle):
    release = threading.Event()
    closed = threading.Event()
    echo[0].close = closed.set

    loader = held_loader(make_echo, release)

    app = make_app(loader=loader)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await app.chat.new_conversation()
        doomed = app.chat.conversation.id
        await send(pilot, "/model slow", wait=False)
        await pilot.pause()
        plain = app.db.create_conversation("no model of its own")  # opened after the delete
        await app.chat.delete_conversation(doomed)
        assert app.chat.conversation.id == plain.id
        release.set()
        await settle(pilot)
        assert app.model.spec.id == "slow" and closed.is_set()  # the old model was closed
        assert app.chat.status.state.loading is None and app.chat.status.state.model == "slow"
        assert app.db.conversation(plain.id).model is None
        await send(pilot, "still fine")
        assert app.chat.transcript.last("assistant").content == "Echo: still fine"


async def test_the_reply_is_finished_before_its_kv_state_is_saved(make_app, make_echo, send, until,
                                                                  settle):
    saving, release = threading.Event(), threading.Event()
    backend, spec = make_echo()
    saved: list = []
    keep_state(backend, on_save=lambda path: (saving.set(), release.wait(5), saved.append(path)),
               marker=b"kv" * 100)
    app = make_app(loaded=(backend, spec))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "hi", wait=False)
        await until(pilot, saving.is_set)
        await until(pilot, lambda: app.chat.job is None)  # done for the user during the save
        assert not app.chat.status.state.generating
        assert app.chat.transcript.last("assistant").status == "done"
        assert app.model.lock.locked()  # the save still holds the model
        release.set()
        await settle(pilot)
        assert saved == [kv_path(app.settings.home, app.db, app.chat.conversation.id)]


async def test_quick_switches_restore_only_the_last_conversations_kv(make_app, make_echo, settle):
    backend, spec = make_echo()
    restored: list[int] = []
    keep_state(backend, restored=restored, marker=b"kv" * 100)
    app = make_app(loaded=(backend, spec))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        ids = [app.db.create_conversation(f"chat {i}").id for i in range(3)]
        for conversation_id in ids:
            path = kv_path(app.settings.home, app.db, conversation_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"kv")
        with app.model.lock:  # as while a reply finishes: the switches queue up
            for conversation_id in ids:
                await app.chat.open_conversation(conversation_id)
        await settle(pilot)
        assert restored == [ids[-1]]
        assert app.model.kv_owner == ids[-1]
