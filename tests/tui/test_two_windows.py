"""Two `edgeai chat` windows on one data dir (#17 item 4): each shows what the other writes, and
a send never goes out on a history the user has not seen. The second window is a second
chat.db connection here, as it is a second process in real use (tests/test_chatdb.py holds the
cross-process part: the lock file that tells a live window from a dead one)."""

from __future__ import annotations

from edgeai.chatdb import ChatDB
from edgeai.tui.widgets.message import Notice

SIZE = (100, 32)


def shown(app) -> list[str]:
    return [v.content for v in app.chat.transcript.views()]


def notices(app) -> list[str]:
    return [str(n.render()) for n in app.chat.transcript.query(Notice)]


async def test_a_send_on_a_chat_another_window_changed_shows_the_change_first(make_app, send, settle,
                                                                              until):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "first question")
        conversation = app.chat.conversation.id
        other = ChatDB(app.settings.home / "chat.db")
        try:
            other.add_message(conversation, "user", "asked in the other window")
            other.add_message(conversation, "assistant", "answered in the other window")
            # Enter at once, before the view could have been refreshed by the watch
            app.chat.prompt.load_text("my follow-up")
            await pilot.press("enter")
            await settle(pilot)
            assert len(app.db.messages(conversation)) == 4  # nothing was sent
            assert shown(app)[-2:] == ["asked in the other window", "answered in the other window"]
            assert app.chat.prompt.text == "my follow-up"  # kept, to send once read
            assert any("another edgeai window" in n for n in notices(app))
            await pilot.press("enter")  # now it goes out, on the history on screen
            await settle(pilot)
            assert [m.content for m in app.db.messages(conversation)][2:5] == [
                "asked in the other window", "answered in the other window", "my follow-up"]
            # with no key pressed: the watch brings the other window's writes in
            other.add_message(conversation, "user", "later, elsewhere")
            await until(pilot, lambda: "later, elsewhere" in shown(app))
            other.create_conversation("started elsewhere")
            listing = app.chat.query_one("#conversations")
            await until(pilot, lambda: "started elsewhere" in str(listing.get_option_at_index(0).prompt))
        finally:
            other.close()


async def test_a_reply_being_written_in_another_window_holds_this_windows_send(make_app, send, until):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "first question")
        conversation = app.chat.conversation.id
        other = ChatDB(app.settings.home / "chat.db")
        try:
            assert app.db.others_open()
            other.add_message(conversation, "user", "asked elsewhere")
            reply = other.start_reply(conversation)
            other.save_partial(reply.id, "half an ans")
            await send(pilot, "mine")  # held: first the change is shown
            assert shown(app)[-1] == "half an ans"
            await send(pilot, "mine")
            assert len(app.db.messages(conversation)) == 4  # held again: that reply is not done
            assert any("being written in another edgeai window" in n for n in notices(app))
            other.finish_reply(reply.id, "half an answer, whole now")
            await until(pilot, lambda: shown(app)[-1] == "half an answer, whole now")  # the watch
            await send(pilot, "mine")
            assert [m.content for m in app.db.messages(conversation)][2:5] == [
                "asked elsewhere", "half an answer, whole now", "mine"]
        finally:
            other.close()
