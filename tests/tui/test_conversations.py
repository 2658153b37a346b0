"""Conversations: new, switch, rename, delete, search; persistence across restarts and crashes."""

from __future__ import annotations

import pytest

from edgeai.chat.store import open_chat_db
from edgeai.chatdb import ChatDB, ChatDBError
from edgeai.config import load_settings
from edgeai.tui.widgets.sidebar import ConversationList

SIZE = (100, 32)


def listed(app) -> list[str]:
    """The sidebar's titles, as shown (current one marked with ●)."""
    listing = app.chat.query_one(ConversationList)
    return [str(listing.get_option_at_index(i).prompt).strip() for i in range(listing.option_count)]


async def test_new_switch_rename_delete_and_search(make_app, send, settle):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "about apples")
        first = app.chat.conversation.id
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert app.chat.conversation.id != first
        assert app.chat.transcript.views() == [] and app.focused is app.chat.prompt
        await send(pilot, "about pears")
        second = app.chat.conversation.id
        assert listed(app) == ["● about pears", "about apples"]

        # switch with the list (keyboard), as a user would
        app.chat.query_one(ConversationList).focus()
        await pilot.press("down", "enter")
        await settle(pilot)
        assert app.chat.conversation.id == first
        assert [v.content for v in app.chat.transcript.views()] == ["about apples", "Echo: about apples"]
        assert app.focused is app.chat.prompt

        # rename through the F2 dialog
        await pilot.press("f2")
        await pilot.pause()
        rename_input = app.screen.query_one("#title")
        rename_input.value = "Fruit talk"
        await pilot.press("enter")
        await settle(pilot)
        assert app.db.conversation(first).title == "Fruit talk"
        assert "● Fruit talk" in listed(app)
        await send(pilot, "/rename Apples only")
        assert app.db.conversation(first).title == "Apples only"

        # search matches titles and message text
        await pilot.press("ctrl+f")
        await pilot.press(*"pears")
        await settle(pilot)
        assert listed(app) == ["about pears"]
        app.chat.query_one("#search").value = ""
        await settle(pilot)
        assert len(listed(app)) == 2

        # a cancelled delete keeps everything
        await send(pilot, "/delete")
        await pilot.press("n")
        await settle(pilot)
        assert len(app.db.conversations()) == 2

        # delete the highlighted conversation from the list, confirming
        listing = app.chat.query_one(ConversationList)
        listing.focus()
        listing.highlighted = listing.get_option_index(str(second))
        await pilot.press("delete")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert [c.id for c in app.db.conversations()] == [first]
        assert app.chat.conversation.id == first

        # deleting the open one opens another (a new one when none is left)
        await send(pilot, "/delete")
        await pilot.press("y")
        await settle(pilot)
        remaining = app.db.conversations()
        assert [c.title for c in remaining] == ["New chat"]
        assert app.db.messages(remaining[0].id) == []
        assert app.chat.conversation.id == remaining[0].id


async def test_settings_and_messages_survive_a_restart(make_app, send, settle):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "/system You are terse.")
        await send(pilot, "/set temperature 0.3")
        await send(pilot, "/rename Kept")
        await send(pilot, "remember me")
        conv_id = app.chat.conversation.id

    again = make_app()
    async with again.run_test(size=SIZE) as pilot:
        await settle(pilot)
        conv = again.chat.conversation
        assert conv.id == conv_id and conv.title == "Kept"
        assert conv.system == "You are terse." and conv.params == {"temperature": 0.3}
        assert conv.model == "echo" and conv.backend == "echo"
        shown = [v.content for v in again.chat.transcript.views()]
        assert shown[0] == "remember me" and shown[1].endswith(": remember me")  # 0.3: any phrasing
        notices = [str(n.render()) for n in again.chat.transcript.query(".notice")]
        assert "system prompt: You are terse." in notices
        assert again.chat.status.state.context_used > 0
        assert again.chat.prompt.prompts == ["remember me"]  # history recall works after restart


async def test_system_flag_starts_a_conversation_with_it(make_app, send, settle):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "old chat")
    app = make_app(system="Answer in French.")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.chat.conversation.system == "Answer in French."
        assert app.chat.transcript.views() == []
        assert len(app.db.conversations()) == 2


async def test_a_reply_cut_by_a_crash_is_shown_as_interrupted(make_app, settle):
    home = load_settings().home
    db = ChatDB(home / "chat.db")
    conv = db.create_conversation("Crashed", model="echo", backend="echo")
    db.add_message(conv.id, "user", "write a long story")
    reply = db.start_reply(conv.id)
    db.save_partial(reply.id, "Once upon a time")
    db._db.close()  # the process dies here: no finish_reply, no clean close,
    db._presence.close()  # and the kernel drops its lock on the chat.db slot (the file stays)

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = app.chat.transcript.last("assistant")
        assert view.content == "Once upon a time" and view.status == "interrupted"
        assert "interrupted" in str(view.query_one(".header").render())
        assert app.db.message(reply.id).status == "interrupted"


def test_an_app_given_no_db_opens_chat_db_as_the_cli_does(make_app):
    # bench/tui.py starts the app without db=: a corrupt file stops it before any screen, as
    # `edgeai chat` does, and is left alone
    home = load_settings().home
    home.mkdir(parents=True, exist_ok=True)
    broken = home / "chat.db"
    junk = b"this is not sqlite at all\n" * 200
    broken.write_bytes(junk)
    with pytest.raises(ChatDBError) as failed:
        make_app()
    assert "is damaged or not a database" in failed.value.message
    assert "edgeai chat --reset-db" in failed.value.hint
    assert broken.read_bytes() == junk
    assert sorted(p.name for p in home.iterdir()) == ["chat.db"]


def test_open_chat_db_moves_a_broken_file_aside_only_when_asked(edgeai_home):
    settings = load_settings()
    edgeai_home.mkdir(parents=True, exist_ok=True)
    (edgeai_home / "chat.db").write_bytes(b"garbage" * 100)
    said: list[str] = []
    with pytest.raises(ChatDBError):
        open_chat_db(settings, report=said.append)
    open_chat_db(settings, reset=True, report=said.append).close()
    assert len(said) == 1 and "moved it to" in said[0]
    assert len(list(edgeai_home.glob("chat.db.broken-*"))) == 1


def test_cli_reports_a_corrupt_chat_db_before_the_app_starts(edgeai_home, monkeypatch, capsys):
    from edgeai.cli import run_cli

    edgeai_home.mkdir(parents=True, exist_ok=True)
    broken = edgeai_home / "chat.db"
    broken.write_bytes(b"garbage" * 100)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)  # as from a terminal: the app path
    monkeypatch.setattr("edgeai.tui.app.EdgeChatApp.run", lambda self: pytest.fail("app started"))
    assert run_cli(["chat", "--backend", "echo"]) == 1
    err = capsys.readouterr().err
    assert "is damaged or not a database" in err and "edgeai chat --reset-db" in err
    assert broken.read_bytes() == b"garbage" * 100
    assert sorted(p.name for p in edgeai_home.iterdir()) == ["chat.db"]


def test_reset_db_moves_a_corrupt_chat_db_aside(cli, edgeai_home):
    edgeai_home.mkdir(parents=True, exist_ok=True)
    broken = edgeai_home / "chat.db"
    broken.write_bytes(b"garbage" * 100)
    result = cli("chat", "--plain", "--reset-db", "--backend", "echo", "--temperature", "0",
                 input="hi\n")
    assert result.returncode == 0, result.stderr
    assert "Echo: hi" in result.stdout.decode()
    assert "moved it to" in result.stderr.decode()
    backups = list(edgeai_home.glob("chat.db.broken-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == b"garbage" * 100
    ChatDB(broken).close()  # the fresh one opens


async def test_command_palette_has_our_commands_and_sidebar_toggles(make_app, settle):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        first = app.chat.conversation.id
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"new conv")
        await pilot.pause(0.2)  # the palette searches in the background
        await pilot.press("enter")
        await settle(pilot)
        assert app.chat.conversation.id != first
        sidebar = app.chat.query_one("#sidebar")
        await pilot.press("ctrl+b")
        assert not sidebar.display
        await pilot.press("ctrl+b")
        assert sidebar.display
