"""One chat turn (edgeai.chat.turn): begun in chat.db, streamed off the caller's thread, saved while
it grows, stopped, trimmed to the window, its KV state kept; and the user's text never read back."""

from __future__ import annotations

import os
import threading
import time

import pytest
from edgeai_testing.corpus import QUESTIONS, build_corpus
from edgeai_testing.echo import keep_state, on_stream_close

from edgeai.chat.history import history
from edgeai.chat.kv import kv_path, prepare, prune_kv
from edgeai.chat.turn import begin_turn, run_turn
from edgeai.chatdb import ChatDB, StoredMessage
from edgeai.runtime.loaded import LoadedModel
from edgeai.types import GenParams, Message


def start(db, model, text="hi", system=None):
    conv = db.create_conversation("t", system=system)
    return begin_turn(db, conv, text, model)


def test_partial_reply_is_saved_while_it_streams(db, make_echo, settings):
    backend, spec = make_echo(token_delay=0.01)
    backend.enqueue("x" * 120)  # ~1.2 s: at least two saves
    model = LoadedModel(backend, spec, "echo")
    turn = start(db, model)
    seen_in_db = []

    def on_text(text, reasoning):
        seen_in_db.append(db.message(turn.reply.id).content)

    out = run_turn(turn, model, GenParams(), settings, on_text=on_text)
    assert out.status == "done" and out.text == "x" * 120
    partial = [c for c in seen_in_db if 0 < len(c) < 120]
    assert partial, "nothing was saved while the reply streamed"
    row = db.message(turn.reply.id)
    assert row.status == "done" and row.content == "x" * 120 and row.stats["completion_tokens"] == 120


def test_a_stopped_reply_keeps_its_statistics(db, make_echo, settings):
    backend, spec = make_echo(token_delay=0.01)
    backend.enqueue("word " * 100)
    model = LoadedModel(backend, spec, "echo")
    turn = start(db, model)
    received = []
    out = run_turn(turn, model, GenParams(), settings, should_stop=lambda: len("".join(received)) > 60,
                   on_text=lambda text, reasoning: received.append(text))
    assert out.status == "interrupted" and out.stats["finish_reason"] == "cancelled"
    stats = db.message(turn.reply.id).stats
    assert 60 < stats["completion_tokens"] < 500 and stats["ttft_s"] > 0 and stats["gen_tps"] > 0
    assert stats["model"] == spec.id


def test_a_reply_names_its_model_from_its_first_write(db, make_echo):
    """A process killed mid-reply leaves the row `streaming` (`interrupted` on the next open): it
    still says which model wrote it."""
    backend, spec = make_echo()
    turn = start(db, LoadedModel(backend, spec, "echo"))
    row = db.message(turn.reply.id)
    assert row.status == "streaming" and (row.stats["model"], row.stats["backend"]) == (spec.id, "echo")


def test_a_stop_during_the_prefill_abandons_the_prompt(db, make_echo, settings):
    backend, spec = make_echo(token_delay=0.05)  # 5 ms per 32-char prefill step
    model = LoadedModel(backend, spec, "echo")
    turn = start(db, model, "long prompt " * 200)
    polls = []

    def should_stop():
        polls.append(1)
        return len(polls) > 2  # during the prefill's empty chunks

    closed = threading.Event()
    on_stream_close(backend, closed.set)
    out = run_turn(turn, model, GenParams(), settings, should_stop=should_stop)
    assert closed.is_set()  # the generator was closed, not left hanging
    assert out.status == "interrupted" and out.text == ""
    assert out.stats["finish_reason"] == "cancelled"
    assert db.message(turn.reply.id).status == "interrupted"


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


def test_old_messages_are_left_out_when_the_window_is_full(db, make_echo, settings):
    backend, spec = make_echo("tiny", n_ctx=400)
    conv = db.create_conversation("t")
    for i in range(6):
        db.add_message(conv.id, "user", f"question {i} " + "x" * 40)
        db.add_message(conv.id, "assistant", f"answer {i} " + "y" * 40)
    model = LoadedModel(backend, spec, "tiny")
    turn = begin_turn(db, conv, "last", model)
    out = run_turn(turn, model, GenParams(max_tokens=100, temperature=0), settings)
    assert out.status == "done", out.error
    assert out.stats["dropped"] >= 2
    assert len(db.messages(conv.id)) == 14  # trimmed for the model only, never in chat.db


def test_the_window_is_the_loaded_backends_not_the_fallback(make_echo):
    backend, spec = make_echo(n_ctx=400)
    assert LoadedModel(backend, spec, "echo", fallback_ctx=4096).n_ctx == 400


def test_the_outcome_is_reported_before_the_kv_state_is_saved(db, make_echo, settings):
    backend, spec = make_echo()
    model = LoadedModel(backend, spec, "echo")
    events = []
    keep_state(backend, on_save=lambda path: events.append(("save", model.lock.locked())))
    turn = start(db, model)
    kv = kv_path(settings.home, db, turn.conversation.id)
    out = run_turn(turn, model, GenParams(), settings,
                   on_outcome=lambda outcome: events.append(("outcome", outcome.status)))
    assert events == [("outcome", "done"), ("save", True)]  # saved after, still under the lock
    assert out.status == "done" and kv.is_file()


def test_no_kv_file_is_left_for_a_conversation_deleted_meanwhile(db, make_echo, settings):
    backend, spec = make_echo()
    saves = []
    keep_state(backend, on_save=saves.append)
    model = LoadedModel(backend, spec, "echo")
    turn = start(db, model)
    conv = turn.conversation
    kv = kv_path(settings.home, db, conv.id)
    out = run_turn(turn, model, GenParams(), settings,
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


def test_each_saved_state_prunes_and_a_restore_counts_as_a_use(db, make_echo, settings, monkeypatch):
    monkeypatch.setattr("edgeai.chat.kv.KV_CAP_BYTES", 3)
    backend, spec = make_echo()
    keep_state(backend)
    model = LoadedModel(backend, spec, "echo")
    first = db.create_conversation("t")
    old = kv_path(settings.home, db, first.id)
    old.parent.mkdir(parents=True)
    old.write_bytes(b"kv")
    os.utime(old, (time.time() - 60, time.time() - 60))
    restored, _ = prepare(model, db, first, old)
    assert restored == 7 and old.stat().st_mtime > time.time() - 30  # used just now
    os.utime(old, (time.time() - 60, time.time() - 60))
    turn = start(db, model)
    run_turn(turn, model, GenParams(), settings)
    kept = kv_path(settings.home, db, turn.conversation.id).name
    assert [p.name for p in old.parent.iterdir()] == [kept]  # 2 + 2 bytes > 3


def test_a_prepare_that_was_cancelled_while_it_waited_does_nothing(db, make_echo, tmp_path):
    backend, spec = make_echo()
    restores = []
    keep_state(backend)
    backend.restore_state = lambda path: restores.append(path) or 7
    kv = kv_path(tmp_path, db, 1)
    kv.parent.mkdir(parents=True)
    kv.write_bytes(b"kv")
    model = LoadedModel(backend, spec, "echo")
    assert prepare(model, db, db.create_conversation("t"), kv, cancelled=lambda: True) == (0, 0)
    assert restores == [] and model.kv_owner is None


# -- begin_turn: every write of a turn, in one place ---------------------------------------
def test_a_new_chat_is_titled_from_its_first_message_and_takes_the_model(db, make_echo):
    backend, spec = make_echo()
    model = LoadedModel(backend, spec, "echo-request")
    conv = db.create_conversation("New chat")
    turn = begin_turn(db, conv, "  How do I\nboil an egg?", model)
    assert turn.conversation.title == "How do I"
    assert (turn.conversation.model, turn.conversation.backend) == ("echo-request", "echo")
    assert [(m.role, m.status) for m in db.messages(conv.id)] == [("user", "done"),
                                                                  ("assistant", "streaming")]
    assert turn.user.content == "  How do I\nboil an egg?" and turn.reply.status == "streaming"
    second = begin_turn(db, turn.conversation, "x" * 80, model)
    assert second.conversation.title == "How do I"  # only a new chat is renamed


def test_edit_resend_replaces_the_edited_message_and_everything_after(db, make_echo, settings):
    backend, spec = make_echo()
    model = LoadedModel(backend, spec, "echo")
    first = start(db, model, "first question")
    run_turn(first, model, GenParams(temperature=0), settings)
    second = begin_turn(db, first.conversation, "second question", model)
    run_turn(second, model, GenParams(temperature=0), settings)
    edited = begin_turn(db, second.conversation, "better question", model, edit_from=first.user.id)
    assert [m.content for m in edited.messages] == ["better question"]
    run_turn(edited, model, GenParams(temperature=0), settings)
    assert [m.content for m in db.messages(first.conversation.id)] == ["better question",
                                                                        "Echo: better question"]


def test_regenerate_answers_the_last_question_of_the_stored_history(db, make_echo, settings):
    backend, spec = make_echo()
    model = LoadedModel(backend, spec, "echo")
    backend.enqueue("first try")
    turn = start(db, model, "question", system="terse")
    run_turn(turn, model, GenParams(), settings)
    backend.enqueue("second try")
    again = begin_turn(db, turn.conversation, None, model, edit_from=turn.reply.id)
    assert again.user is None and again.question == "question"
    assert again.messages == [Message("system", "terse"), Message("user", "question")]
    run_turn(again, model, GenParams(), settings)
    assert [m.content for m in db.messages(turn.conversation.id)] == ["question", "second try"]


# -- the user's text is an argument, never read back ---------------------------------------
def spy_reads(db: ChatDB) -> tuple[list, list]:
    """Record what every read of `db` returns: the public methods' rows and the raw SQL rows."""
    returned: list = []
    raw: list = []
    for name in ("messages", "message", "conversation", "conversations"):
        real = getattr(db, name)

        def wrapped(*args, _real=real, **kwargs):
            got = _real(*args, **kwargs)
            returned.extend(got if isinstance(got, list) else [got])
            return got

        setattr(db, name, wrapped)
    real_read = db._read

    def read(sql, args=()):
        rows = real_read(sql, args)
        raw.extend(rows)
        return rows

    db._read = read
    return returned, raw


@pytest.mark.parametrize("with_rag", [False, True], ids=["plain", "rag"])
def test_the_users_text_is_never_read_back_from_chat_db(db, make_echo, settings, tmp_path, with_rag):
    from edgeai.rag import api

    backend, spec = make_echo()
    model = LoadedModel(backend, spec, "echo")
    conv = db.create_conversation("t")
    db.add_message(conv.id, "user", "an earlier question")
    db.add_message(conv.id, "assistant", "an earlier answer")
    question = QUESTIONS[0]
    if with_rag:
        api.ingest(settings, "corpus", [build_corpus(tmp_path / "docs").root])
        conv = db.update_settings(conv.id, rag={"collection": "corpus"})
    returned, raw = spy_reads(db)
    turn = begin_turn(db, conv, question.question, model)
    contexts = []
    out = run_turn(turn, model, GenParams(temperature=0), settings, on_context=contexts.append)
    assert out.status == "done", out.error
    assert turn.messages[-1] == Message("user", question.question)
    user_id = turn.user.id
    assert returned and raw  # the spies saw the reads there are (the earlier history, once)
    assert not [r for r in returned if isinstance(r, StoredMessage) and r.id == user_id]
    assert not [r for r in raw if "role" in r.keys() and r["id"] == user_id]
    assert sum(isinstance(r, StoredMessage) for r in returned) == 2  # the earlier history, read once
    if with_rag:  # retrieval searched with the text it was given, and found the answer
        [record] = contexts
        assert any(question.answer in " ".join(s["text"].split()) for s in record["sources"])
    assert db.message(user_id).content == question.question  # it is in chat.db all the same


# -- Ctrl-C and the hook seam ----------------------------------------------------------------
def test_ctrl_c_keeps_the_partial_reply_as_interrupted_then_propagates(make_echo, settings):
    db = ChatDB.in_memory()
    backend, spec = make_echo(token_delay=0.01)  # ~0.4 s: several batches of text
    backend.enqueue("A long scripted answer that will be cut.")
    model = LoadedModel(backend, spec, "echo")
    turn = start(db, model, "question")
    shown: list[str] = []

    def on_text(text, reasoning):
        shown.append(text)
        if len("".join(shown)) > 5:
            raise KeyboardInterrupt  # as Ctrl-C arrives while the REPL prints

    outcomes = []
    with pytest.raises(KeyboardInterrupt):
        run_turn(turn, model, GenParams(), settings, on_text=on_text, on_outcome=outcomes.append)
    row = db.message(turn.reply.id)
    assert row.status == "interrupted" and 0 < len(row.content) < 40
    assert [o.status for o in outcomes] == ["interrupted"] and not model.lock.locked()
    assert history(db.messages(turn.conversation.id), None)[-1] == Message("assistant", row.content)
    db.close()


def test_hooks_see_the_turn_with_its_attachments_and_a_refusal_fails_the_reply(db, make_echo, settings,
                                                                               tmp_path):
    backend, spec = make_echo()
    model = LoadedModel(backend, spec, "echo")
    seen = []

    def note(turn, messages):
        seen.append((turn.attachments, [m.content for m in messages]))
        return messages

    turn = begin_turn(db, db.create_conversation("t"), "look", model, attachments=[tmp_path / "a.png"])
    assert run_turn(turn, model, GenParams(temperature=0), settings, hooks=[note]).text == "Echo: look"
    assert seen == [((tmp_path / "a.png",), ["look"])]

    def refuse(turn, messages):
        raise ValueError("not allowed")

    turn = begin_turn(db, turn.conversation, "again", model)
    out = run_turn(turn, model, GenParams(), settings, hooks=[refuse])
    assert out.status == "error" and "not allowed" in out.error
    assert db.message(turn.reply.id).status == "error"
