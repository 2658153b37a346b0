import pytest
from edgeai_testing.echo import echo_model

from edgeai.chat.history import fit_to_context, history
from edgeai.chat.turn import begin_turn, run_turn
from edgeai.chatdb import ChatDB
from edgeai.config import load_settings
from edgeai.errors import ContextOverflow
from edgeai.runtime.loaded import LoadedModel
from edgeai.types import GenParams, Message


def count(messages):
    return sum(len(m.content) for m in messages)


def test_fit_drops_oldest_exchanges_and_keeps_the_system_prompt():
    messages = [Message("system", "s" * 10)] + [
        Message(role, f"{role}{i}" + "x" * 40) for i in range(3) for role in ("user", "assistant")
    ] + [Message("user", "last")]
    kept, dropped = fit_to_context(messages, count, n_ctx=150, reserve=20)
    assert kept[0].role == "system" and kept[-1].content == "last"
    assert kept[1].role == "user" and dropped % 2 == 0 and dropped > 0
    assert count(kept) + 20 <= 150


def test_a_single_message_larger_than_the_window_is_an_overflow():
    with pytest.raises(ContextOverflow):
        fit_to_context([Message("user", "x" * 500)], count, n_ctx=100, reserve=10)


def test_an_interrupted_reply_is_kept_in_the_history():
    # as `chat --plain` keeps a conversation: the engine's turn on an in-memory chat.db
    echo, spec = echo_model()
    echo.enqueue("A long scripted answer that will be cut.")
    db = ChatDB.in_memory()
    model = LoadedModel(echo, spec, "echo")
    turn = begin_turn(db, db.create_conversation(system="terse"), "question", model)
    polls = []
    out = run_turn(turn, model, GenParams(temperature=0), load_settings(),
                   should_stop=lambda: polls.append(1) or len(polls) > 5)  # after 5 chunks
    assert history(db.messages(turn.conversation.id), "terse")[-1] == Message("assistant", out.text)
    assert 0 < len(out.text) < len("A long scripted answer that will be cut.")
    db.close()
