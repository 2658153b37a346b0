"""chat.db: conversations, partial replies that survive kill -9, broken and foreign files."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from edgeai.chatdb import ChatDB, ChatDBError
from edgeai.errors import EdgeAIError


@pytest.fixture
def db(tmp_path):
    ticks = iter(range(1, 10_000))
    store = ChatDB(tmp_path / "chat.db", clock=lambda: float(next(ticks)))
    yield store
    store.close()


def test_create_list_rename_delete_and_search(db):
    a = db.create_conversation("Rust questions", system="Be brief.", model="m1")
    b = db.create_conversation("Cooking")
    db.add_message(b.id, "user", "How long do I boil an egg?")
    assert [c.title for c in db.conversations()] == ["Cooking", "Rust questions"]
    assert [c.id for c in db.conversations("EGG")] == [b.id]
    assert [c.id for c in db.conversations("rust")] == [a.id]
    assert db.conversations("100%") == []
    db.rename(a.id, "Borrow checker")
    assert db.conversation(a.id).title == "Borrow checker"
    db.delete(b.id)
    assert [c.id for c in db.conversations()] == [a.id]
    assert db.messages(b.id) == []


def test_settings_are_per_conversation_and_persist(db, tmp_path):
    c = db.create_conversation()
    db.update_settings(c.id, system="Answer in French.", model="qwen", backend="llamacpp",
                       params={"temperature": 0.2})
    db.close()
    again = ChatDB(tmp_path / "chat.db")
    stored = again.conversation(c.id)
    assert (stored.system, stored.model, stored.backend, stored.params) == (
        "Answer in French.", "qwen", "llamacpp", {"temperature": 0.2})
    again.close()


def test_edit_resend_and_regenerate_delete_from_a_message(db):
    c = db.create_conversation()
    first = db.add_message(c.id, "user", "one")
    db.add_message(c.id, "assistant", "1")
    second = db.add_message(c.id, "user", "two")
    db.add_message(c.id, "assistant", "2")
    db.delete_from(second.id)
    assert [m.content for m in db.messages(c.id)] == ["one", "1"]
    db.delete_from(first.id)
    assert db.messages(c.id) == []


def test_a_reply_killed_mid_stream_is_kept_and_marked_interrupted(tmp_path):
    path = tmp_path / "chat.db"
    writer = textwrap.dedent(f"""
        import os, signal
        from edgeai.chatdb import ChatDB
        db = ChatDB({str(path)!r})
        c = db.create_conversation("kill me")
        db.add_message(c.id, "user", "tell me a story")
        reply = db.start_reply(c.id)
        db.save_partial(reply.id, "Once upon a time")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", writer], capture_output=True, timeout=60)
    assert result.returncode == -9
    db = ChatDB(path)
    (conversation,) = db.conversations()
    messages = db.messages(conversation.id)
    assert [(m.role, m.content, m.status) for m in messages] == [
        ("user", "tell me a story", "done"), ("assistant", "Once upon a time", "interrupted")]
    db.close()


def test_a_corrupt_file_is_refused_untouched_and_can_be_moved_aside(tmp_path):
    path = tmp_path / "chat.db"
    garbage = b"this is not sqlite" * 100
    path.write_bytes(garbage)
    with pytest.raises(ChatDBError) as err:
        ChatDB(path)
    assert "damaged or not a database" in err.value.message and "--reset-db" in err.value.hint
    assert path.read_bytes() == garbage
    backup = ChatDB.backup_and_recreate(path)
    assert backup.read_bytes() == garbage and not path.exists()
    fresh = ChatDB(path)
    assert fresh.conversations() == []
    fresh.close()


def test_a_foreign_sqlite_database_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "chat.db"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE invoices(id INTEGER, total REAL)")
    other.execute("INSERT INTO invoices VALUES (1, 9.5)")
    other.commit()
    other.close()
    with pytest.raises(ChatDBError, match="another program"):
        ChatDB(path)
    check = sqlite3.connect(path)
    assert check.execute("SELECT total FROM invoices").fetchall() == [(9.5,)]
    assert [r[0] for r in check.execute("SELECT name FROM sqlite_master")] == ["invoices"]
    check.close()


def test_a_locked_database_is_not_called_damaged(tmp_path):
    path = tmp_path / "chat.db"
    ChatDB(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(EdgeAIError) as err:
            ChatDB(path)
        assert not isinstance(err.value, ChatDBError)  # no advice to move a healthy file aside
        assert "locked" in err.value.message
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    ChatDB(path).close()


def test_ids_of_deleted_conversations_are_never_reused(db):
    first = db.create_conversation("one")
    db.delete(first.id)
    assert db.create_conversation("two").id != first.id


def test_an_in_memory_chat_db_keeps_nothing_on_disk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a ":memory:" path taken as a file name would land here
    db = ChatDB.in_memory()
    conv = db.create_conversation("plain", system="terse")
    first = db.add_message(conv.id, "user", "hi")
    db.add_message(conv.id, "assistant", "hello")
    assert not db.persistent and db.messages(conv.id)[0] == first
    assert db.clear(conv.id) == 2 and db.messages(conv.id) == []
    assert db.conversation(conv.id).system == "terse"  # cleared, not deleted
    db.close()
    assert list(tmp_path.iterdir()) == []


def test_a_written_message_is_returned_without_being_read_back(db):
    conv = db.create_conversation()
    reads = []
    real = db._read
    db._read = lambda sql, args=(): reads.append(sql) or real(sql, args)
    user = db.add_message(conv.id, "user", "hi", stats={"n": 1})
    reply = db.start_reply(conv.id)
    assert reads == []
    db._read = real
    assert db.messages(conv.id) == [user, reply]  # what was returned is what is stored
    assert reply.status == "streaming" and reply.content == ""


def test_a_reply_streaming_in_another_window_is_not_marked_interrupted_by_a_second_open(tmp_path):
    # Only a reply whose process is gone is `interrupted`: a second window opening chat.db must
    # not relabel the first window's live reply (#17 item 4).
    first = ChatDB(tmp_path / "chat.db")
    conversation = first.create_conversation()
    reply = first.start_reply(conversation.id)
    assert not first.others_open()
    second = ChatDB(tmp_path / "chat.db")
    assert second.message(reply.id).status == "streaming"
    assert first.others_open() and second.others_open()
    second.close()
    assert not first.others_open()
    first.close()  # the writer is gone without finishing: now it is a dead process's reply
    third = ChatDB(tmp_path / "chat.db")
    assert third.message(reply.id).status == "interrupted"
    third.close()


def test_data_version_moves_only_when_another_connection_writes(tmp_path):
    mine, theirs = ChatDB(tmp_path / "chat.db"), ChatDB(tmp_path / "chat.db")
    seen = mine.data_version()
    mine.create_conversation("mine")
    assert mine.data_version() == seen  # our own writes are already on screen
    theirs.create_conversation("theirs")
    assert mine.data_version() != seen
    mine.close()
    theirs.close()


def _old_chat_db(path, migrations: int) -> None:
    """A chat.db as an earlier edgeai left it: only the first `migrations` applied."""
    from edgeai.chatdb import APPLICATION_ID, MIGRATIONS
    from edgeai.migrate import apply_migrations

    raw = sqlite3.connect(path, isolation_level=None)
    apply_migrations(raw, MIGRATIONS[:migrations], APPLICATION_ID)
    raw.execute("INSERT INTO conversations(title, created, updated) VALUES ('old', 1, 1)")
    raw.execute("INSERT INTO messages(conversation_id, role, content, created) VALUES (1, 'user', 'hi', 1)")
    raw.close()


def test_attachments_are_kept_with_their_message_and_resolved_under_the_data_dir(tmp_path):
    """#15: an image record travels in the message's own row; its copy's path is resolved
    against the folder chat.db is in (so a moved data dir still finds it), never stored."""
    _old_chat_db(tmp_path / "chat.db", 3)  # before m004: the migration adds the column to old rows
    db = ChatDB(tmp_path / "chat.db")
    try:
        assert db.messages(1)[0].attachments == ()
        record = {"kind": "image", "name": "receipt.png", "file": "attachments/ab12.png", "sha256": "ab12",
                  "bytes": 10, "width": 80, "height": 120, "path": "/elsewhere/ignored.png"}
        written = db.add_message(1, "user", "what is the total?", attachments=[record])
        read = db.messages(1)[-1]
        assert read.attachments == written.attachments
        assert read.attachments[0]["path"] == str(tmp_path / "attachments/ab12.png")
        assert read.images == (tmp_path / "attachments/ab12.png",)
        stored = db._read("SELECT attachments FROM messages WHERE id=?", (written.id,))[0][0]
        assert "path" not in stored and "elsewhere" not in stored
        assert db.attachment_files() == {"attachments/ab12.png"}
        with pytest.raises(ValueError):  # a record without its stored copy is a bug, not data
            db.add_message(1, "user", "x", attachments=[{"kind": "image", "name": "a.png"}])
        assert len(db.messages(1)) == 2  # and nothing was written
    finally:
        db.close()
