"""The app's parts tested without running it: export files, slash parsing, status text, message
helpers, the UI's thread count, the help screen. (The turn itself is the engine's: tests/chat/.)"""

from __future__ import annotations

import pytest

from edgeai.chatdb import ChatDB
from edgeai.errors import BadInput, EdgeAIError
from edgeai.tui import slash
from edgeai.tui.export import export_conversation, targets, to_markdown
from edgeai.tui.loader import ui_settings
from edgeai.tui.screens.commands import HANDLERS
from edgeai.tui.widgets.message import MessageView, code_blocks, format_stats
from edgeai.tui.widgets.status import StatusState, left_text, right_text


@pytest.fixture
def db(tmp_path):
    database = ChatDB(tmp_path / "chat.db")
    yield database
    database.close()


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
    assert "did you mean /stats?" in slash.unknown_command("/stat")
    assert "did you mean /regen?" in slash.unknown_command("/regne")
    assert slash.unknown_command("/usr/bin is where?") is None and slash.unknown_command("/help") is None
    assert slash.unknown_command("//bogus") is None and slash.literal("//bogus") == "/bogus"


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


def test_the_ui_keeps_a_core_unless_chat_threads_were_chosen(monkeypatch):
    from edgeai.config import Settings

    monkeypatch.setattr("edgeai.runtime.threads.default_threads", lambda: 2)
    chosen = ui_settings(Settings(home="."))
    assert (chosen.threads, chosen.wait_policy) == (1, "passive")
    assert ui_settings(Settings(home=".", chat_threads=2)).threads == 2
    # a tune's headless choice (all cores, spinning) is not the chat's
    chosen = ui_settings(Settings(home=".", threads=2, wait_policy="active"))
    assert (chosen.threads, chosen.wait_policy) == (1, "passive")
    assert ui_settings(Settings(home=".", chat_wait_policy="active")).wait_policy == "active"
    monkeypatch.setattr("edgeai.runtime.threads.default_threads", lambda: 1)
    assert ui_settings(Settings(home=".")).threads == 1


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
    conv = db.create_conversation("t")
    reply = db.start_reply(conv.id)
    MessageView(reply, "echo").set_header_note("stopping…")  # removed by a switch: no crash
