"""The UI-free parts: a reply off the UI thread, export files, slash parsing, status text."""

from __future__ import annotations

import os
import threading
import time

import pytest

from edgeai.chatdb import ChatDB
from edgeai.errors import BadInput, EdgeAIError
from edgeai.tui import slash
from edgeai.tui.export import export_conversation, targets, to_markdown
from edgeai.tui.screens.commands import HANDLERS
from edgeai.tui.session import LoadedModel, kv_path, prune_kv, ui_settings
from edgeai.tui.turn import history, prepare, run_reply
from edgeai.tui.widgets.message import MessageView, code_blocks, format_stats
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


def test_history_keeps_partial_replies_and_drops_failed_ones_with_their_question(db):
    conv = db.create_conversation("t")
    db.add_message(conv.id, "user", "a")
    db.add_message(conv.id, "assistant", "half", status="interrupted")
    db.add_message(conv.id, "user", "b")
    db.add_message(conv.id, "assistant", "", status="error")
    db.add_message(conv.id, "user", "b2")
    db.add_message(conv.id, "assistant", "  ", status="interrupted")  # stopped before a word
    db.add_message(conv.id, "user", "c")
    reply = db.start_reply(conv.id)
    got = history(db.messages(conv.id), "sys", skip=reply.id)
    # roles alternate: templates such as Gemma's raise on two user turns in a row
    assert [(m.role, m.content) for m in got] == [
        ("system", "sys"), ("user", "a"), ("assistant", "half"), ("user", "c")]
    # not skipped, the reply still empty counts as none: its question goes with it
    assert [m.content for m in history(db.messages(conv.id), None)] == ["a", "half"]


def test_history_never_has_two_turns_of_one_role_in_a_row(db):
    conv = db.create_conversation("t")
    for role, text in [("user", "lost"), ("user", "q"), ("assistant", "r"), ("user", "next")]:
        db.add_message(conv.id, role, text)
    assert [(m.role, m.content) for m in history(db.messages(conv.id), None)] == [
        ("user", "q"), ("assistant", "r"), ("user", "next")]


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


def keep_state(backend, on_save=None):
    """The echo backend with llamacpp's KV-state methods (the file holds a marker)."""

    def save_state(path):
        if on_save is not None:
            on_save(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"kv")

    backend.save_state = save_state
    backend.restore_state = lambda path: 7


def test_the_outcome_is_reported_before_the_kv_state_is_saved(db, make_echo, tmp_path):
    backend, spec = make_echo()
    model = LoadedModel(backend, spec, "echo")
    events = []
    keep_state(backend, lambda path: events.append(("save", model.lock.locked())))
    conv, reply = start(db)
    kv = kv_path(tmp_path, conv.id)
    out = run_reply(model, db, conv, reply.id, GenParams(), lambda: False, lambda t, r: None, kv,
                    on_outcome=lambda outcome: events.append(("outcome", outcome.status)))
    assert events == [("outcome", "done"), ("save", True)]  # saved after, still under the lock
    assert out.status == "done" and kv.is_file()


def test_no_kv_file_is_left_for_a_conversation_deleted_meanwhile(db, make_echo, tmp_path):
    backend, spec = make_echo()
    saves = []
    keep_state(backend, saves.append)
    conv, reply = start(db)
    kv = kv_path(tmp_path, conv.id)
    out = run_reply(LoadedModel(backend, spec, "echo"), db, conv, reply.id, GenParams(),
                    lambda: False, lambda t, r: None, kv,
                    on_outcome=lambda outcome: db.delete(conv.id))  # deleted as it finished
    assert out.status == "done" and saves == [] and not kv.exists()


def test_kv_files_are_held_to_a_size_cap_least_recently_used_first(tmp_path):
    folder = tmp_path / "kv"
    folder.mkdir()
    now = time.time()
    for name, age in [("1.kv", 300), ("2.kv", 100), ("3.kv", 200)]:
        path = folder / name
        path.write_bytes(b"x" * 400)
        os.utime(path, (now - age, now - age))
    (folder / "notes.txt").write_bytes(b"x" * 5000)  # not a KV state: neither counted nor removed
    assert [p.name for p in prune_kv(folder, 900)] == ["1.kv"]
    assert sorted(p.name for p in folder.iterdir()) == ["2.kv", "3.kv", "notes.txt"]
    assert prune_kv(folder, 900) == []


def test_each_saved_state_prunes_and_a_restore_counts_as_a_use(db, make_echo, tmp_path, monkeypatch):
    monkeypatch.setattr("edgeai.tui.session.KV_CAP_BYTES", 3)
    backend, spec = make_echo()
    keep_state(backend)
    model = LoadedModel(backend, spec, "echo")
    first = db.create_conversation("t")
    old = kv_path(tmp_path, first.id)
    old.parent.mkdir(parents=True)
    old.write_bytes(b"kv")
    os.utime(old, (time.time() - 60, time.time() - 60))
    restored, _ = prepare(model, db, first, old)
    assert restored == 7 and old.stat().st_mtime > time.time() - 30  # used just now
    os.utime(old, (time.time() - 60, time.time() - 60))
    conv, reply = start(db)
    run_reply(model, db, conv, reply.id, GenParams(), lambda: False, lambda t, r: None,
              kv_path(tmp_path, conv.id))
    assert [p.name for p in old.parent.iterdir()] == [f"{conv.id}.kv"]  # 2 + 2 bytes > 3


def test_a_prepare_that_was_cancelled_while_it_waited_does_nothing(db, make_echo, tmp_path):
    backend, spec = make_echo()
    restores = []
    keep_state(backend)
    backend.restore_state = lambda path: restores.append(path) or 7
    kv = kv_path(tmp_path, 1)
    kv.parent.mkdir(parents=True)
    kv.write_bytes(b"kv")
    model = LoadedModel(backend, spec, "echo")
    assert prepare(model, db, db.create_conversation("t"), kv, cancelled=lambda: True) == (0, 0)
    assert restores == [] and model.kv_owner is None


def test_an_unwritable_export_target_is_a_message_not_a_crash(db, tmp_path, monkeypatch):
    conv = db.create_conversation("t")

    def refuse(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("edgeai.tui.export.atomic_write", refuse)
    with pytest.raises(EdgeAIError, match=f"cannot write {tmp_path}/t-{conv.id}.md: Permission denied"):
        export_conversation(db, conv.id, None, cwd=tmp_path)


def test_the_help_screen_names_every_key_the_footer_shows():
    from edgeai.tui.app import EdgeChatApp
    from edgeai.tui.screens.chat import ChatScreen
    from edgeai.tui.screens.help import KEYS
    from edgeai.tui.widgets.sidebar import ConversationList

    names = {"escape": "esc", "question_mark": "?"}
    listed = {word.strip("(),").lower() for keys, _ in KEYS for word in keys.replace("/", " ").split()}
    for owner in (EdgeChatApp, ChatScreen, MessageView, ConversationList):
        for binding in owner.BINDINGS:
            if binding.show:
                for key in binding.key.split(","):
                    assert names.get(key, key) in listed, f"{owner.__name__}: {key} is not in the help"


def test_a_note_on_a_message_view_that_is_not_shown_is_ignored(db):
    conv, reply = start(db)
    MessageView(reply, "echo").set_header_note("stopping…")  # removed by a switch: no crash
