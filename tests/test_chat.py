import pytest

from edgeai.chat import Conversation, Turn, chat_turn, fit_to_context
from edgeai.errors import ContextOverflow
from edgeai.runtime import get_backend
from edgeai.types import GenParams, LoadOptions, Message, ModelSpec


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
    echo = get_backend("echo")
    echo.load(ModelSpec(id="echo"), LoadOptions())
    echo.enqueue("A long scripted answer that will be cut.")
    conversation, turn = Conversation(system="terse"), Turn()
    stream = chat_turn(echo, conversation, "question", GenParams(temperature=0), 4096, turn)
    for _ in range(5):
        next(stream)
    stream.close()
    assert conversation.turns[-1] == Message("assistant", turn.text)
    assert 0 < len(turn.text) < len("A long scripted answer that will be cut.")
