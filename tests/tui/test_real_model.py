"""The app on the real default model (llama.cpp): a streamed answer, then instant resume from
the saved KV cache after a restart. Skips with a stated reason where the model is missing."""

from __future__ import annotations

import pytest

from edgeai.chat.kv import kv_path

SIZE = (100, 32)

pytestmark = pytest.mark.model


async def test_real_model_answers_and_resumes_from_its_kv_cache(make_app, default_gguf, send,
                                                               settle, monkeypatch, edgeai_home):
    monkeypatch.setenv("EDGEAI_CTX", "1024")  # a small window loads and saves faster
    options = dict(loaded=None, loader=None, model=str(default_gguf),
                   overrides={"max_tokens": 12, "temperature": 0.0, "seed": 1})
    app = make_app(**options)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.model is not None and app.model.backend_name == "llamacpp"
        assert app.chat.status.state.context_window == 1024
        await send(pilot, "What is the capital of France? One word.")
        reply = app.chat.transcript.last("assistant")
        assert reply.status == "done" and reply.content.strip()
        assert "paris" in reply.content.lower()
        assert reply.stats["completion_tokens"] <= 12 and reply.stats["prompt_tokens"] > 10
        conv_id = app.chat.conversation.id
    kv = kv_path(edgeai_home, app.db, conv_id)
    assert kv.is_file() and kv.stat().st_size > 0

    again = make_app(**{**options, "model": None})  # the conversation remembers its model
    async with again.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert again.model is not None and again.model.request == str(default_gguf)
        note = again.chat.status.state.note or ""
        assert note.startswith("resumed ") and "cached tokens" in note
        await send(pilot, "And of Italy?")
        reply = again.chat.transcript.last("assistant")
        assert reply.status == "done" and reply.content.strip()
