"""One engine: the chat app, `chat --plain` and the server send the model the same prompt for the
same RAG turn (same collection, same system prompt, same question), and neither `chat --plain`
nor `serve` imports the app."""

from __future__ import annotations

import pytest
from edgeai_testing.corpus import build_corpus
from edgeai_testing.echo import echo_model, record_streams
from edgeai_testing.serve import serving

from edgeai.chat.rag import use_collection
from edgeai.chat.turn import begin_turn, run_turn
from edgeai.chatdb import ChatDB
from edgeai.cli.chat import PlainSession, handle_command
from edgeai.config import Settings
from edgeai.runtime.loaded import LoadedModel
from edgeai.types import GenParams

openai = pytest.importorskip("openai")
pytest.importorskip("tokenizers")

SYSTEM = "Answer from the documents; cite them."
QUESTION = "How much flour goes into the plum cake?"


def test_the_app_plain_and_the_server_send_the_same_rag_prompt(edgeai_home, tmp_path):
    from edgeai.rag import api

    settings = Settings(home=edgeai_home)
    api.ingest(settings, "docs", [build_corpus(tmp_path / "docs").root])
    params = GenParams(temperature=0, max_tokens=64)
    backend, spec = echo_model("echo", n_ctx=4096)
    calls = record_streams(backend)
    model = LoadedModel(backend, spec, "echo")

    # the chat app's turn (what screens/turn_worker.py runs)
    db = ChatDB(edgeai_home / "chat.db")
    conversation = use_collection(settings, db, db.create_conversation(system=SYSTEM), "docs")
    run_turn(begin_turn(db, conversation, QUESTION, model, surface="tui"), model, params, settings)
    db.close()

    # `chat --plain`, driven through its command handler as a user types
    session = PlainSession(settings, model, params, SYSTEM)
    assert handle_command("/rag on docs", session)
    session.say(QUESTION)
    session.close()

    # the server, asked for the same collection
    with serving(backend, settings) as served:
        client = openai.OpenAI(base_url=served.url, api_key="none", max_retries=0)
        reply = client.chat.completions.create(
            model="echo", temperature=0, max_tokens=64, extra_body={"collection": "docs"},
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}])
    assert reply.choices[0].message.content

    app, plain, server = (prompt for prompt, _ in calls)
    assert app == plain == server
    assert "340 grams" in app[-1].content  # the passage that answers was placed in the prompt
    assert app[0].content.startswith(SYSTEM)
