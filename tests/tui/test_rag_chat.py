"""RAG in the chat: /attach, /rag, answers with checked citations, the sources panel, persistence,
and the offer of the quality model. Real MiniLM, real SQLite collections; the echo model."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edgeai.chat import rag as ragturn
from edgeai.chatdb import MIGRATIONS, ChatDB
from edgeai.config import load_settings
from edgeai.rag import api
from edgeai.rag.context import QUESTION_TAIL, source_from_dict
from edgeai.tui.screens.confirm import ConfirmScreen
from edgeai.tui.widgets.sources import SourcesPanel

SIZE = (100, 32)
QUESTION = "What is the capital of Freedonia?"

GEOGRAPHY = """# Freedonia

## Cities

The capital of Freedonia is Glimmerton, a river port of 80,000 people.
Its old town has a bridge from 1712.

## Climate

Winters are wet and mild; summers are short.
"""
RIVERS = """The Sylvan river rises in the northern hills and flows south for 240 km.
It floods every spring. Barges carry grain on it as far as the coast.
"""
RECIPES = """Pancakes: mix flour, milk and two eggs; rest the batter for an hour.
Fry on a hot pan with a little butter.
"""


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "geography.md").write_text(GEOGRAPHY)
    (folder / "rivers.txt").write_text(RIVERS)
    (folder / "recipes.txt").write_text(RECIPES)
    return folder


def stored(app):
    return app.db.messages(app.chat.conversation.id)


def notices(app) -> list[str]:
    return [str(n.render()) for n in app.chat.transcript.query(".notice")]


def number_of(settings, collection: str, question: str, file_name: str) -> int:
    """The number the chat gives the passage from `file_name` (the search is deterministic)."""
    hits = api.search(settings, collection, question, k=ragturn.TOP_K)
    return next(i for i, h in enumerate(hits, 1) if Path(h.file).name == file_name)


async def attach(pilot, send, settle, path: Path) -> None:
    await send(pilot, f"/attach {path}")
    await settle(pilot)


async def test_attach_ask_see_citations_open_a_source(make_app, echo, send, settle, corpus):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await attach(pilot, send, settle, corpus)
        conv = app.chat.conversation
        name = f"chat-{conv.id}"
        assert conv.rag["collection"] == name
        assert any(f"indexed into {name!r}: 3 added" in n for n in notices(app))
        assert f"rag {name}" in app.chat.status.plain

        n = number_of(app.settings, name, QUESTION, "geography.md")
        echo[0].enqueue(f"The capital is Glimmerton [{n}]. It has a bridge [{n}]. Made up [42].")
        await send(pilot, QUESTION)
        reply = app.chat.transcript.last("assistant")
        # the model's markers checked against the passages and renumbered: a sentence no passage
        # holds is marked "[?]"; the passages it did not cite stay listed (and openable) after it
        assert reply.content == "The capital is Glimmerton [1]. It has a bridge [1]. Made up [?]."
        assert reply.rag["label"].startswith("retrieval · ") and reply.rag["cited"]
        cited = [s for s in reply.sources if s.cited]
        assert [(s.number, Path(s.file).name) for s in cited] == [(1, "geography.md")]
        consulted = [s for s in reply.sources if not s.cited]
        assert consulted and [s.number for s in consulted] == list(range(2, len(reply.sources) + 1))
        assert "Glimmerton" in cited[0].text and cited[0].where.startswith("line")
        shown = str(reply.query_one(".sources").render())
        assert reply.rag["label"] in shown and "[1] geography.md line" in shown
        assert "1 cited" in shown and f"also consulted: {consulted[0].label}" in shown
        row = stored(app)[-1]
        assert row.content == reply.content and row.rag["sources"][0]["file"].endswith("geography.md")

        # keyboard: from the prompt to the reply, then 1 opens source 1 in the side panel
        await pilot.press("shift+tab")
        assert app.focused is reply
        await pilot.press("1")
        await pilot.pause()
        panel = app.chat.query_one(SourcesPanel)
        assert panel.display and panel.current.number == 1
        where = str(panel.query_one("#source-where").render())
        assert "geography.md" in where and "line" in where
        text = panel.query_one("#source-text").render()
        assert "Glimmerton" in str(text)
        # the two cited sentences are on the passage's two lines: nothing to narrow
        assert (cited[0].where, cited[0].passage_span) == ("lines 5–6", None)
        await pilot.press("escape")
        assert not panel.display and app.focused is app.chat.prompt
        # a passage the reply only consulted opens just the same
        await pilot.press("shift+tab")
        await pilot.press("2")
        await pilot.pause()
        assert panel.display and panel.current == consulted[0] and not panel.current.cited
        await pilot.press("escape")

        # /sources toggles the panel with the last reply's sources
        await send(pilot, "/sources")
        assert panel.display and app.focused is panel.query_one("#source-list")
        await send(pilot, "/sources")
        assert not panel.display


async def test_the_model_gets_the_documents_fenced_and_an_uncited_answer_lists_what_it_consulted(
        make_app, echo, send, settle, corpus):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await attach(pilot, send, settle, corpus)
        await send(pilot, "/set max_tokens 3000")  # room to repeat it all
        await send(pilot, QUESTION)  # unscripted echo: it repeats the last message it was given
        reply = app.chat.transcript.last("assistant")
        sent = reply.content
        assert "<documents>" in sent and '<source id="1" file="' in sent
        assert "Glimmerton" in sent and sent.rstrip().endswith(QUESTION_TAIL)
        # the next question's history holds the question, not the documents it was sent with
        from edgeai.chat.history import history

        assert history(stored(app), None)[0].content == QUESTION

        echo[0].enqueue("The documents do not say.")
        await send(pilot, "Who founded Glimmerton?")
        reply = app.chat.transcript.last("assistant")
        assert not reply.rag["cited"] and len(reply.sources) >= 2
        assert [s.number for s in reply.sources] == list(range(1, len(reply.sources) + 1))
        assert "none cited; consulted:" in str(reply.query_one(".sources").render())


async def test_a_whole_document_question_uses_the_full_document(make_app, echo, send, settle, corpus):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await attach(pilot, send, settle, corpus)
        echo[0].enqueue("Freedonia's capital, climate [1].")
        await send(pilot, "Summarize geography.md")
        reply = app.chat.transcript.last("assistant")
        assert reply.rag["label"] == "full document: geography.md"
        assert reply.rag["strategy"] == "full-document"
        [source] = reply.sources
        assert source.text == GEOGRAPHY.strip() or "Winters are wet" in source.text
        assert "full document: geography.md" in str(reply.query_one(".sources").render())


def test_a_whole_collection_over_budget_is_not_read_under_the_lock(corpus, monkeypatch):
    from edgeai.types import Message

    class Words:  # a model whose tokens are words: a real model's ratio of text to tokens
        def tokenize(self, text: str) -> list[str]:
            return text.split()

    for i in range(8):
        (corpus / f"log{i}.txt").write_text(f"Entry {i}: the Sylvan river flooded the lower town.\n" * 24)
    settings = load_settings()
    api.ingest(settings, "many", [corpus])
    question = "How many floods are recorded?"
    plan = ragturn.retrieve(settings, "many", question)  # before the lock: the sizes come with it
    assert plan.sizes[str(corpus / "rivers.txt")] >= len(RIVERS.strip())
    assert sum(plan.sizes.values()) > 10 * 800
    read: list[str] = []
    document_text = api.document_text
    monkeypatch.setattr(api, "document_text", lambda s, c, f: read.append(f) or document_text(s, c, f))
    # a budget of 800 tokens: all 11 files are surely over it, the best hit's file fits
    ragturn.compose(plan, [Message("user", question)], Words(), n_ctx=1000, reserve=168)
    assert read == [plan.hits[0].file]
    assert plan.strategy == "full-document" and [s.file for s in plan.sources] == read


def test_the_sources_panel_and_the_search_share_one_stopword_list():
    from edgeai.rag.rerank import STOPWORDS
    from edgeai.tui.widgets.sources import question_terms

    assert question_terms(" ".join(STOPWORDS)) == []
    assert set(question_terms("Which rivers flood because of the spring rains?")) == {
        "rivers", "spring", "flood", "rains"}


async def test_attach_starts_a_new_conversation_with_no_stale_documents(make_app, echo, send, settle,
                                                                         corpus, tmp_path):
    # after `edgeai chat --reset-db` ids restart at 1, but rag/chat-1.db is the old chat's
    old = tmp_path / "old"
    old.mkdir()
    (old / "secret.txt").write_text("The old conversation's secret: the vault code is 4711.\n")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        name = f"chat-{app.chat.conversation.id}"
        api.ingest(app.settings, name, [old])
        await attach(pilot, send, settle, corpus / "rivers.txt")
        assert [Path(f).name for f in api.file_sizes(app.settings, name)] == ["rivers.txt"]
        assert any(f"indexed into {name!r}: 1 added" in n for n in notices(app))

        # the conversation's own attachments stay, even with RAG switched off in between
        await send(pilot, "/rag off")
        await attach(pilot, send, settle, corpus / "recipes.txt")
        assert [Path(f).name for f in api.file_sizes(app.settings, name)] == [
            "recipes.txt", "rivers.txt"]
        assert app.chat.conversation.rag["collection"] == name


async def test_rag_on_an_unknown_collection_is_a_clear_message(make_app, send):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "/rag on nowhere")
        assert any("/rag: no collection named 'nowhere'" in n for n in notices(app))
        assert app.chat.conversation.rag == {}
        await send(pilot, "/rag")
        assert "RAG is off" in notices(app)[-1]


async def test_rag_on_and_off_with_a_named_collection(make_app, echo, send, corpus):
    settings = load_settings()
    report = api.ingest(settings, "notes", [corpus])
    assert report.added == 3
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "/rag on notes")
        assert app.chat.conversation.rag["collection"] == "notes"
        assert "rag notes" in app.chat.status.plain
        await send(pilot, "/rag")
        assert "RAG is on: collection 'notes'" in notices(app)[-1]
        await send(pilot, QUESTION)
        assert app.chat.transcript.last("assistant").rag["collection"] == "notes"
        await send(pilot, "/rag off")
        assert "collection" not in app.chat.conversation.rag
        await send(pilot, "plain question")
        reply = app.chat.transcript.last("assistant")
        assert reply.content == "Echo: plain question" and reply.rag == {}
        assert not reply.query_one(".sources").display


async def test_a_collection_gone_since_fails_the_reply_with_a_way_out(make_app, send, corpus):
    from edgeai.rag.store import delete_collection

    settings = load_settings()
    api.ingest(settings, "brief", [corpus / "rivers.txt"])
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "/rag on brief")
        delete_collection(settings, "brief")
        await send(pilot, "Where does the Sylvan rise?")
        row = stored(app)[-1]
        assert row.status == "error" and "/rag off answers without documents" in row.stats["error"]
        await send(pilot, "/rag off")
        await send(pilot, "hello")
        assert stored(app)[-1].content == "Echo: hello"


async def test_attach_reports_bad_files_and_indexes_the_rest(make_app, send, settle, corpus):
    (corpus / "broken.txt").write_bytes(bytes(range(256)) * 20)
    (corpus / "empty.md").write_text("")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await attach(pilot, send, settle, corpus)
        shown = notices(app)
        assert any("3 added" in n and "skipped" in n for n in shown)
        assert any(n.startswith("skipped ") and "broken.txt" in n for n in shown)
        assert app.chat.conversation.rag["collection"] == f"chat-{app.chat.conversation.id}"
        await send(pilot, "/attach /no/such/place")
        assert any("no such file or folder: /no/such/place" in n for n in notices(app))

        # deleting the conversation removes what /attach indexed for it
        from edgeai.rag.store import collection_path

        name = f"chat-{app.chat.conversation.id}"
        assert collection_path(app.settings, name).exists()
        await send(pilot, "/delete")
        await pilot.press("y")
        await settle(pilot)
        assert not collection_path(app.settings, name).exists()
        assert name not in api.list_collections(app.settings)


async def test_a_replys_sources_survive_reopening_the_conversation(make_app, echo, send, settle, corpus,
                                                                   tmp_path):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await attach(pilot, send, settle, corpus)
        conv_id = app.chat.conversation.id
        n = number_of(app.settings, f"chat-{conv_id}", QUESTION, "geography.md")
        echo[0].enqueue(f"Glimmerton [{n}].")
        await send(pilot, QUESTION)
        before = app.chat.transcript.last("assistant").rag
        await pilot.press("ctrl+n")  # away and back
        await settle(pilot)
        await app.chat.open_conversation(conv_id)
        await settle(pilot)
        assert app.chat.transcript.last("assistant").rag == before

    again = make_app()  # a restart: the same chat.db
    async with again.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await again.chat.open_conversation(conv_id)
        await settle(pilot)
        reply = again.chat.transcript.last("assistant")
        assert reply.content == "Glimmerton [1]." and reply.rag == before
        assert "[1] geography.md" in str(reply.query_one(".sources").render())
        assert again.chat.conversation.rag["collection"] == f"chat-{conv_id}"
        reply.focus()
        await pilot.press("s")
        await pilot.pause()
        panel = again.chat.query_one(SourcesPanel)
        assert panel.display and "Glimmerton" in str(panel.query_one("#source-text").render())
        await send(pilot, f"/export {tmp_path / 'chat.md'}")  # the citations travel with an export
        exported = (tmp_path / "chat.md").read_text()
        assert "Glimmerton [1]." in exported and "- [1] geography.md line" in exported


@pytest.fixture
def quality_installed(monkeypatch):
    # whether the 1.1 GB quality model's packages are installed is this machine's business
    monkeypatch.setattr("edgeai.chat.rag.quality_model_installed", lambda settings: True)


async def test_the_quality_model_is_offered_once_per_conversation(make_app, make_echo, send, settle,
                                                                  corpus, quality_installed):
    api.ingest(load_settings(), "notes", [corpus])
    app = make_app(loaded=make_echo("qwen2.5-coder-0.5b-instruct"))
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "/rag on notes")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and "quality model" in app.screen.question
        await pilot.press("n")
        await settle(pilot)
        assert app.chat.conversation.rag["quality_asked"] is True
        await send(pilot, QUESTION)  # asked already: sent at once
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.model.spec.id == "qwen2.5-coder-0.5b-instruct"
        assert stored(app)[-1].rag["collection"] == "notes"

        await pilot.press("ctrl+n")  # a new conversation asks again
        await settle(pilot)
        await send(pilot, "/rag on notes")
        await pilot.pause()
        await pilot.press("y")  # yes: the quality model loads and becomes this chat's model
        await settle(pilot)
        assert app.model.request == ragturn.QUALITY_MODEL
        assert app.db.conversation(app.chat.conversation.id).model == ragturn.QUALITY_MODEL


async def test_a_question_sent_before_the_offer_waits_for_the_chosen_model(
        make_app, make_echo, send, settle, corpus, quality_installed):
    from edgeai.rag.store import collection_path

    api.ingest(load_settings(), "notes", [corpus])
    app = make_app(loaded=make_echo("qwen2.5-coder-0.5b-instruct"))
    async with app.run_test(size=SIZE) as pilot:
        conv = app.chat.conversation  # RAG switched on elsewhere (another client, an old version)
        app.chat.conversation = app.db.update_settings(conv.id, rag={"collection": "notes"})
        assert collection_path(app.settings, "notes").exists()
        await send(pilot, QUESTION)
        assert isinstance(app.screen, ConfirmScreen) and stored(app) == []
        await pilot.press("y")
        await settle(pilot)
        rows = stored(app)
        assert [m.role for m in rows] == ["user", "assistant"] and rows[0].content == QUESTION
        assert rows[1].stats["model"] == ragturn.QUALITY_MODEL and rows[1].rag["sources"]


def test_an_old_chat_db_gains_the_rag_columns_and_keeps_its_messages(tmp_path):
    path = tmp_path / "chat.db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0][1] + "; PRAGMA application_id=1162102593; PRAGMA user_version=1;")
    db.execute("INSERT INTO conversations(title, created, updated) VALUES ('old', 1, 1)")
    db.execute("INSERT INTO messages(conversation_id, role, content, created) VALUES (1, 'user', 'hi', 1)")
    db.commit()
    db.close()
    chat = ChatDB(path)
    try:
        conv = chat.conversation(1)
        assert conv.title == "old" and conv.rag == {}
        [message] = chat.messages(1)
        assert message.content == "hi" and message.rag == {}
        record = {"strategy": "retrieval", "sources": [{"number": 1, "file": "a", "page": None, "span": "",
                                                        "text": "t", "chunk_id": 3}]}
        chat.save_rag(message.id, record)
        assert source_from_dict(chat.message(message.id).rag["sources"][0]).chunk_id == 3
    finally:
        chat.close()


def test_sources_panel_snapshot(snap_compare, make_app, echo, send, settle, corpus, monkeypatch):
    monkeypatch.chdir(corpus.parent)  # the panel shows paths relative to the current folder

    async def run_before(pilot) -> None:
        app = pilot.app
        await attach(pilot, send, settle, corpus)
        n = number_of(app.settings, f"chat-{app.chat.conversation.id}", QUESTION, "geography.md")
        echo[0].enqueue(f"The capital of Freedonia is **Glimmerton** [{n}].")
        await send(pilot, QUESTION)
        app.chat.transcript.last("assistant").focus()
        await pilot.press("1")
        await settle(pilot)
        app.chat.prompt.cursor_blink = False
        for field in app.screen.query("Input"):
            field.cursor_blink = False
        app.clear_notifications()
        for notice in app.chat.transcript.query(".notice"):
            notice.remove()  # the indexing summary names a tmp path
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(120, 32), run_before=run_before)


def test_a_reply_of_source_numbers_only_tells_the_user_what_to_do():
    from edgeai.chat.rag import RagPlan, finish
    from edgeai.rag.context import MARKERS_ONLY_NOTE, Source

    placed = [Source(1, "/d/a.md", None, "lines 1-2", "alpha", 1), Source(2, "/d/b.md", None, "", "beta", 2)]
    plan = RagPlan("c", "q?", [], [], lambda f: None, sources=placed)
    text, record = finish(plan, "[1] [2]")
    assert text.endswith(MARKERS_ONLY_NOTE) and record["cited"]
    assert finish(plan, "Alpha comes first [1].")[0] == "Alpha comes first [1]."
