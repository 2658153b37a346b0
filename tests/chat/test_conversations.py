"""Whole conversations: deleting one takes everything named after it; clearing keeps it."""

from __future__ import annotations

from edgeai_testing.echo import keep_state

from edgeai.chat.conversations import clear_conversation, delete_conversation, title_from
from edgeai.chat.kv import kv_path
from edgeai.chat.store import conversation_exists, open_chat_db
from edgeai.chatdb import ChatDB
from edgeai.rag import api
from edgeai.rag.store import collection_path


def test_delete_takes_the_row_its_kv_file_and_its_own_collection(settings, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "rivers.txt").write_text("The Sylvan river rises in the northern hills.\n")
    db = open_chat_db(settings)
    conv = db.create_conversation("doomed")
    other = db.create_conversation("kept")
    db.add_message(conv.id, "user", "hi")
    own, named = f"chat-{conv.id}", "notes"
    api.ingest(settings, own, [docs])
    api.ingest(settings, named, [docs])
    db.update_settings(conv.id, rag={"collection": named, "attached": own})
    for conversation_id in (conv.id, other.id):
        kv = kv_path(settings.home, db, conversation_id)
        kv.parent.mkdir(parents=True, exist_ok=True)
        kv.write_bytes(b"kv")

    delete_conversation(settings, db, conv.id)
    assert not conversation_exists(db, conv.id) and db.messages(conv.id) == []
    assert not kv_path(settings.home, db, conv.id).exists()
    assert not collection_path(settings, own).exists() and own not in api.list_collections(settings)
    assert named in api.list_collections(settings)  # a named collection outlives the chats using it
    assert kv_path(settings.home, db, other.id).exists() and conversation_exists(db, other.id)
    db.close()


def test_clear_deletes_the_messages_and_the_kv_file_and_keeps_the_conversation(settings):
    db = open_chat_db(settings)
    conv = db.create_conversation("keep me", system="terse", params={"temperature": 0.2})
    for role, text in [("user", "a"), ("assistant", "b"), ("user", "c")]:
        db.add_message(conv.id, role, text)
    kv = kv_path(settings.home, db, conv.id)
    kv.parent.mkdir(parents=True)
    kv.write_bytes(b"kv")
    assert clear_conversation(settings, db, conv.id) == 3
    assert db.messages(conv.id) == [] and not kv.exists()
    kept = db.conversation(conv.id)
    assert (kept.title, kept.system, kept.params) == ("keep me", "terse", {"temperature": 0.2})
    db.close()


def test_an_in_memory_chat_names_nothing_on_disk(settings):
    # `chat --plain`'s conversation 1 is not chat.db's conversation 1: its KV file stays
    on_disk = open_chat_db(settings)
    kv = kv_path(settings.home, on_disk, 1)
    on_disk.close()
    kv.parent.mkdir(parents=True)
    kv.write_bytes(b"kv")
    db = ChatDB.in_memory()
    conv = db.create_conversation()
    assert conv.id == 1
    db.add_message(conv.id, "user", "hi")
    assert clear_conversation(settings, db, conv.id) == 1
    delete_conversation(settings, db, conv.id)
    assert kv.exists()
    db.close()


def test_a_title_is_the_first_line_of_the_first_message():
    assert title_from("  Hello\n  world") == "Hello"
    assert title_from("a  b\tc") == "a b c"
    assert title_from("x" * 60) == "x" * 47 + "…"
    assert title_from("   ") == "New chat"


def test_a_fresh_chat_db_never_resumes_an_earlier_ones_conversation(settings, make_echo):
    """Conversation ids restart at 1 in a new chat.db (after --reset-db, or chat.db deleted by
    hand): its conversation 1 must not pick up the KV state of the old conversation 1."""
    from edgeai.chat.kv import kv_file, prepare
    from edgeai.runtime.loaded import LoadedModel

    backend, spec = make_echo()
    restored: list[int] = []
    keep_state(backend, restored=restored)
    model = LoadedModel(backend, spec, "echo")

    old = open_chat_db(settings)
    first = old.create_conversation("old chat")
    old.add_message(first.id, "user", "a secret history")
    kept = kv_file(settings.home, old, backend, first.id)
    backend.save_state(kept)
    old.close()
    (settings.home / "chat.db").write_bytes(b"this is not a database" * 100)  # damaged

    reported = []
    fresh = open_chat_db(settings, reset=True, report=reported.append)
    conv = fresh.create_conversation("new chat")
    assert conv.id == first.id  # the very id the old state was saved under
    assert prepare(model, fresh, conv, kv_file(settings.home, fresh, backend, conv.id)) == (0, 0)
    assert restored == []
    moved = [p.name for p in settings.home.iterdir() if p.name.startswith("kv.broken-")]
    assert len(moved) == 1 and (settings.home / moved[0] / kept.name).exists()  # aside, not deleted
    assert "moved it to" in reported[0]
    state = kv_file(settings.home, fresh, backend, conv.id)
    backend.save_state(state)  # the new conversation 1 keeps a state of its own
    fresh.close()

    (settings.home / "chat.db").unlink()  # deleted by hand: kv/ stays where it is
    newest = open_chat_db(settings)
    conv = newest.create_conversation("newest")
    assert conv.id == 1 and state.exists()
    assert prepare(model, newest, conv, kv_file(settings.home, newest, backend, conv.id)) == (0, 0)
    assert restored == []
    newest.close()
