"""The UI-free parts: a reply off the UI thread, export files, slash parsing, status text."""

from __future__ import annotations

import threading

import pytest

from edgeai.chatdb import ChatDB
from edgeai.errors import BadInput
from edgeai.tui import slash
from edgeai.tui.export import targets, to_markdown
from edgeai.tui.screens.commands import HANDLERS
from edgeai.tui.session import LoadedModel, ui_settings
from edgeai.tui.turn import history, run_reply
from edgeai.tui.widgets.message import code_blocks, format_stats
from edgeai.tui.widgets.status import StatusState, left_text, right_text
from edgeai.types import GenParams


@pytest.fixture
def db(tmp_path):
    database = ChatDB(tmp_path / "chat.db")
    yield database
    database.close()


def start(db, text="hi", system=None):
    conv = db.create_conversation("t", system=system)
    db.add_message(conv.id, "user", text)
    return conv, db.start_reply(conv.id)


def test_partial_reply_is_saved_while_it_streams(db, make_echo):
    backend, spec = make_echo(token_delay=0.01)
    backend.enqueue("x" * 120)  # ~1.2 s: at least two saves
    conv, reply = start(db)
    seen_in_db = []

    def on_text(text, reasoning):
        seen_in_db.append(db.message(reply.id).content)

    out = run_reply(LoadedModel(backend, spec, "echo"), db, conv, reply.id, GenParams(),
                    lambda: False, on_text)
    assert out.status == "done" and out.text == "x" * 120
    partial = [c for c in seen_in_db if 0 < len(c) < 120]
    assert partial, "nothing was saved while the reply streamed"
    row = db.message(reply.id)
    assert row.status == "done" and row.content == "x" * 120 and row.stats["completion_tokens"] == 120


def test_a_stop_during_the_prefill_abandons_the_prompt(db, make_echo):
    backend, spec = make_echo(token_delay=0.05)  # 5 ms per 32-char prefill step
    conv, reply = start(db, "long prompt " * 200)
    polls = []

    def should_stop():
        polls.append(1)
        return len(polls) > 2  # during the prefill's empty chunks

    closed = threading.Event()
    real = backend.stream

    def tracked(prompt, params):
        inner = real(prompt, params)

        def gen():
            try:
                yield from inner
            finally:
                closed.set()

        return gen()

    backend.stream = tracked
    out = run_reply(LoadedModel(backend, spec, "echo"), db, conv, reply.id, GenParams(),
                    should_stop, lambda t, r: None)
    assert closed.is_set()  # the generator was closed, not left hanging
    assert out.status == "interrupted" and out.text == ""
    assert out.stats["finish_reason"] == "cancelled"
    assert db.message(reply.id).status == "interrupted"


def test_history_keeps_partial_replies_and_drops_failed_ones(db):
    conv = db.create_conversation("t")
    db.add_message(conv.id, "user", "a")
    db.add_message(conv.id, "assistant", "half", status="interrupted")
    db.add_message(conv.id, "user", "b")
    db.add_message(conv.id, "assistant", "", status="error")
    db.add_message(conv.id, "user", "c")
    got = history(db.messages(conv.id), "sys")
    assert [(m.role, m.content) for m in got] == [
        ("system", "sys"), ("user", "a"), ("assistant", "half"), ("user", "b"), ("user", "c")]


def test_old_messages_are_left_out_when_the_window_is_full(db, make_echo):
    from edgeai.runtime import get_backend
    from edgeai.types import LoadOptions, ModelSpec

    backend = get_backend("echo")
    spec = ModelSpec(id="tiny", family="echo")
    backend.load(spec, LoadOptions(n_ctx=400))
    conv = db.create_conversation("t")
    for i in range(6):
        db.add_message(conv.id, "user", f"question {i} " + "x" * 40)
        db.add_message(conv.id, "assistant", f"answer {i} " + "y" * 40)
    db.add_message(conv.id, "user", "last")
    reply = db.start_reply(conv.id)
    out = run_reply(LoadedModel(backend, spec, "tiny"), db, conv, reply.id,
                    GenParams(max_tokens=100, temperature=0), lambda: False, lambda t, r: None)
    assert out.status == "done", out.error
    assert out.stats["dropped"] >= 2
    assert len(db.messages(conv.id)) == 14  # trimmed for the model only, never in chat.db


def test_export_markdown_and_targets(db, tmp_path):
    conv = db.create_conversation("My [odd] title!", system="be nice", model="m", backend="echo",
                                  params={"temperature": 0.2})
    db.add_message(conv.id, "user", "q")
    db.add_message(conv.id, "assistant", "a", reasoning="hmm", status="interrupted")
    conv = db.conversation(conv.id)
    md = to_markdown(conv, db.messages(conv.id))
    assert md.splitlines()[:4] == ["# My [odd] title!", "", "- model: `m` (echo)",
                                   "- sampling: temperature=0.2"]
    assert "## Assistant (interrupted)" in md and "<summary>Thinking</summary>" in md
    assert [p.name for p in targets(conv, None, tmp_path)] == [f"my-odd-title-{conv.id}.md",
                                                               f"my-odd-title-{conv.id}.json"]
    with pytest.raises(BadInput):
        targets(conv, "missing-dir/x.md", tmp_path)


def test_slash_commands_parse_and_complete():
    assert slash.parse("/set top_k 20") == ("set", "top_k 20")
    assert slash.parse("/HELP") == ("help", "")
    assert slash.parse("/usr/bin/env") is None and slash.parse("hello") is None
    assert [c.name for c in slash.complete("/re")] == ["rename", "regen"]
    assert slash.complete("/set x") == [] and slash.complete("set") == []
    assert set(HANDLERS) == set(slash.BY_NAME)  # every command has a handler


def test_status_text_warns_before_trimming_and_hides_live_stats():
    s = StatusState(model="m", backend="echo", context_used=3000, context_window=4096, reserve=800,
                    ttft_s=0.25, gen_tps=31.5, peak_mem_mb=512)
    assert "ctx 3,000/4,096 ⚠ oldest messages will be left out" in left_text(s).plain
    assert right_text(s, live_stats=True).plain == "TTFT 0.25s · 31.5 tok/s · 512 MB"
    assert right_text(s, live_stats=False).plain == ""
    assert "⚠" not in left_text(StatusState(model="m", backend="e", context_used=10,
                                            context_window=4096)).plain


def test_message_helpers():
    assert code_blocks("a\n```py\nx = 1\n```\nb\n```\ny\n```\n") == ["x = 1", "y"]
    text = format_stats({"completion_tokens": 5, "ttft_s": 0.5, "gen_tps": 10.0,
                         "prompt_tokens": 20, "prompt_tps": 100.0, "peak_mem_mb": 64,
                         "model": "m", "backend": "echo"})
    assert text == ("5 tokens · 0.50 s to first token · 10.0 tok/s · prompt 20 tokens at 100 tok/s "
                    "· 64 MB peak · m on echo")


def test_the_ui_keeps_a_core_unless_threads_were_chosen(monkeypatch):
    from edgeai.config import Settings

    monkeypatch.setattr("edgeai.tui.session.default_threads", lambda: 2)
    assert ui_settings(Settings(home=".")).threads == 1
    assert ui_settings(Settings(home=".", threads=2)).threads == 2
    monkeypatch.setattr("edgeai.tui.session.default_threads", lambda: 1)
    assert ui_settings(Settings(home=".")).threads == 1
