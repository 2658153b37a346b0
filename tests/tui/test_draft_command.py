"""`/draft` in the app: the state with no argument, a backend that cannot draft says so."""

from __future__ import annotations

SIZE = (100, 32)


def last_notice(app) -> str:
    return str(app.chat.transcript.children[-1].render())


async def test_draft_shows_the_state_and_echo_cannot_draft(make_app, send, settle):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        for text, said in (("/draft", "drafting: off"),
                           ("/draft off", "drafting is off: the echo backend decodes one token at a time"),
                           ("/draft ngram", "--draft ngram needs the batched step")):
            app.chat.prompt.load_text(text)
            await pilot.press("enter")
            await settle(pilot)
            assert said in last_notice(app), last_notice(app)
        await send(pilot, "hello")  # the model still answers
        assert app.db.messages(app.chat.conversation.id)[-1].content == "Echo: hello"
