"""A turn in the app: send and stream, stop, edit-resend, regenerate, copy, export, history, keys."""

from __future__ import annotations

import json

from edgeai_testing.echo import record_streams
from textual import events

SIZE = (100, 32)


def stored(app):
    return app.db.messages(app.chat.conversation.id)


async def test_send_streams_markdown_reply_and_saves_it(make_app, echo, send):
    backend, _ = echo
    backend.enqueue("Here is code:\n\n```python\nprint('hi')\n```\n")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        assert app.focused is app.chat.prompt  # the prompt has focus at start
        await pilot.press(*"hello")
        await pilot.press("enter")
        await send(pilot, "", wait=True)  # just settle: an empty prompt sends nothing
        views = app.chat.transcript.views()
        assert [(v.role, v.status) for v in views] == [("user", "done"), ("assistant", "done")]
        assert views[0].content == "hello"
        assert "print('hi')" in views[1].content
        assert app.chat.prompt.text == ""
        rows = stored(app)
        assert [(m.role, m.status) for m in rows] == [("user", "done"), ("assistant", "done")]
        assert rows[1].stats["completion_tokens"] > 0 and rows[1].stats["model"] == "echo"
        assert app.chat.conversation.title == "hello"  # titled from the first message
        assert app.chat.status.state.context_used > 0


async def test_reasoning_goes_to_a_collapsed_thinking_block(make_app, echo, send):
    echo[0].enqueue("<think>let me consider this</think>The answer is 4.")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "2+2?")
        reply = app.chat.transcript.last("assistant")
        assert reply.content == "The answer is 4."
        assert reply.reasoning == "let me consider this"
        block = reply.query_one(".thinking")
        assert block.display and block.collapsed and "4 words" in block.title
        assert stored(app)[1].reasoning == "let me consider this"


async def test_escape_stops_mid_stream_and_keeps_the_partial_reply(make_app, make_echo, until, settle):
    backend, spec = make_echo("slow", token_delay=0.02)
    long_reply = "word " * 200
    backend.enqueue(long_reply)
    app = make_app(loaded=(backend, spec))
    async with app.run_test(size=SIZE) as pilot:
        app.chat.prompt.load_text("tell me a lot")
        await pilot.press("enter")
        await until(pilot, lambda: len(app.chat.transcript.last("assistant").content) > 10)
        assert app.chat.query_one("#stop").display  # a visible Stop button while it writes
        await pilot.press("escape")
        await settle(pilot)
        reply = app.chat.transcript.last("assistant")
        assert 10 < len(reply.content) < len(long_reply)
        assert long_reply.startswith(reply.content)
        row = stored(app)[1]
        assert row.status == "interrupted" and row.stats["finish_reason"] == "cancelled"
        assert row.content == reply.content
        assert "stopped" in str(reply.query_one(".header").render())
        assert app.chat.job is None and not app.chat.query_one("#stop").display

        backend.enqueue(long_reply)  # the visible Stop button does the same
        app.chat.prompt.load_text("again")
        await pilot.press("enter")
        await until(pilot, lambda: len(app.chat.transcript.last("assistant").content) > 10)
        await pilot.click("#stop")
        await settle(pilot)
        assert stored(app)[-1].status == "interrupted"


async def test_edit_and_resend_replaces_the_later_messages(make_app, echo, send, settle):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "first question")
        await send(pilot, "second question")
        views = app.chat.transcript.views()
        views[-1].focus()  # Up/Down walk the messages; Down past the last one is the prompt
        await pilot.press("up")
        assert app.focused is views[-2]
        await pilot.press("down", "down")
        assert app.focused is app.chat.prompt
        first = views[0]
        first.focus()
        await pilot.press("e")
        assert app.chat.prompt.text == "first question"
        assert app.chat.editing == first.message_id
        app.chat.prompt.load_text("better question")
        await pilot.press("enter")
        await settle(pilot)
        assert [m.content for m in stored(app)] == ["better question", "Echo: better question"]
        assert [v.content for v in app.chat.transcript.views()] == ["better question",
                                                                    "Echo: better question"]


async def test_escape_cancels_an_edit(make_app, send):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "keep me")
        app.chat.transcript.views()[0].focus()
        await pilot.press("e")
        await pilot.press("escape")
        assert app.chat.editing is None and app.chat.prompt.text == ""
        assert len(stored(app)) == 2


async def test_regenerate_replaces_the_reply(make_app, echo, send, settle):
    backend, _ = echo
    backend.enqueue("first try")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "question")
        backend.enqueue("second try")
        reply = app.chat.transcript.last("assistant")
        reply.focus()
        await pilot.press("r")
        await settle(pilot)
        assert [m.content for m in stored(app)] == ["question", "second try"]
        backend.enqueue("third try")
        await send(pilot, "/regen")
        assert [m.content for m in stored(app)] == ["question", "third try"]


async def test_copy_a_message_and_its_code_blocks(make_app, echo, send):
    echo[0].enqueue("Two blocks:\n\n```sh\nls -l\n```\n\nand\n\n```python\nx = 1\n```\n")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "show me")
        reply = app.chat.transcript.last("assistant")
        reply.focus()
        await pilot.press("c")
        assert app.clipboard == reply.content
        await pilot.press("y")
        assert app.clipboard == "ls -l"
        await pilot.press("y")
        assert app.clipboard == "x = 1"
        await pilot.press("y")
        assert app.clipboard == "ls -l"  # cycles
        app.chat.transcript.views()[0].focus()
        await pilot.press("c")
        assert app.clipboard == "show me"
        await send(pilot, "/copy")
        assert app.clipboard == reply.content
        assert len(stored(app)) == 2  # /copy is a command, not a message


async def test_copy_says_what_was_attempted_and_ctrl_v_pastes_it_inside_the_app(make_app, echo, send,
                                                                                 monkeypatch):
    # OSC 52 cannot confirm: tmux without `set-clipboard on` drops it, and the app must not claim
    # a copy it cannot see; what it can promise is its own register, which Ctrl+V pastes
    monkeypatch.setenv("TMUX", "/tmp/tmux-1000/default,1,0")
    echo[0].enqueue("x" * 400)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "a long one")
        reply = app.chat.transcript.last("assistant")
        reply.focus()
        app.clear_notifications()
        await pilot.press("c")
        [note] = [n.message for n in app._notifications]
        assert "Copied" not in note
        assert "400 characters" in note and "OSC 52" in note and "may not accept" in note
        assert "/export" in note and "Ctrl+V" in note
        assert "set-clipboard on" in note  # inside tmux: the one setting that makes it work
        app.chat.prompt.focus()
        await pilot.press("ctrl+v")
        assert app.chat.prompt.text == reply.content == "x" * 400
        monkeypatch.delenv("TMUX")
        app.clear_notifications()
        await send(pilot, "/copy")
        [note] = [n.message for n in app._notifications]
        assert "OSC 52" in note and "tmux" not in note


async def test_export_writes_markdown_and_json(make_app, send, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "/system be brief")
        await send(pilot, "hello there")
        await send(pilot, "/export")
        conv = app.chat.conversation
        md = tmp_path / f"hello-there-{conv.id}.md"
        js = tmp_path / f"hello-there-{conv.id}.json"
        text = md.read_text()
        assert text.startswith("# hello there\n") and "## System\n\nbe brief" in text
        assert "## User\n\nhello there" in text and "## Assistant\n\nEcho: hello there" in text
        data = json.loads(js.read_text())
        assert data["system"] == "be brief"
        assert [(m["role"], m["content"]) for m in data["messages"]] == [
            ("user", "hello there"), ("assistant", "Echo: hello there")]
        out = tmp_path / "out"
        out.mkdir()
        await send(pilot, "/export out")
        assert sorted(p.suffix for p in out.iterdir()) == [".json", ".md"]
        await send(pilot, f"/export {tmp_path / 'one.json'}")
        assert json.loads((tmp_path / "one.json").read_text())["title"] == "hello there"
        await send(pilot, "/export nowhere.txt")
        assert "cannot export" in str(list(app.chat.transcript.children)[-1].render())
        assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporaries


async def test_prompt_history_recall_with_up_and_down(make_app, send):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "one")
        await send(pilot, "two")
        prompt = app.chat.prompt
        await pilot.press(*"draft")
        await pilot.press("up")
        assert prompt.text == "two"
        await pilot.press("up")
        assert prompt.text == "one"
        await pilot.press("up")
        assert prompt.text == "one"  # the oldest stays
        await pilot.press("down")
        assert prompt.text == "two"
        await pilot.press("down")
        assert prompt.text == "draft"  # back to what was being written


async def test_newline_keys_and_paste_keep_lines(make_app, settle):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.chat.prompt
        await pilot.press("a", "ctrl+j", "b", "alt+enter", "c", "shift+enter", "d")
        assert prompt.text == "a\nb\nc\nd"
        prompt.clear()
        app.post_message(events.Paste("line 1\nline 2"))  # as the terminal driver does
        await pilot.pause()
        assert prompt.text == "line 1\nline 2"
        await pilot.press("enter")
        await settle(pilot)
        assert stored(app)[0].content == "line 1\nline 2"


async def test_up_on_a_later_line_moves_the_cursor_not_history(make_app, send):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "earlier")
        prompt = app.chat.prompt
        await pilot.press("x", "ctrl+j", "y")
        await pilot.press("up")
        assert prompt.text == "x\ny" and prompt.cursor_location[0] == 0


async def test_slash_completion(make_app, settle):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.chat.prompt
        suggestions = app.chat.query_one("#suggestions")
        await pilot.press("slash", "r")
        await pilot.pause()
        assert suggestions.display
        assert [o.id for o in suggestions.options] == ["rename", "regen", "rag"]
        await pilot.press("down", "tab")
        assert prompt.text == "/regen"
        await pilot.pause()
        assert not suggestions.display
        prompt.clear()
        await pilot.press("slash", "h", "e")
        await pilot.press("enter")  # a command without arguments runs at once
        await settle(pilot)
        assert app.screen.__class__.__name__ == "HelpScreen"
        await pilot.press("escape")
        await pilot.press("slash", "s", "y", "tab")
        assert prompt.text == "/system "  # takes an argument: completes and waits


async def test_enter_completes_the_text_as_it_is_not_an_earlier_one(make_app, settle):
    """Keys typed faster than the prompt's Changed messages (tmux send-keys, a paste): Enter must
    judge the text now in the prompt, not the suggestions of the text before it."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash", "s", "t", "a", "t")
        await pilot.pause()  # the suggestions for /stat (-> /stats) are showing
        prompt = app.chat.prompt
        prompt.load_text("/bogus")  # its Changed message is queued, not yet handled...
        await prompt._on_key(events.Key("enter", "\r"))  # ...when Enter arrives (a terminal's burst)
        await settle(pilot)
        notice = str(app.chat.transcript.children[-1].render())
        assert "unknown command /bogus" in notice  # not /stats, run by the stale suggestion
        assert prompt.text == "/bogus"


async def test_a_message_that_starts_with_a_slash_path_is_sent(make_app, send):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "/usr/bin is where?")
        assert [m.content for m in stored(app)] == ["/usr/bin is where?", "Echo: /usr/bin is where?"]


async def test_a_mistyped_command_is_not_sent_and_a_double_slash_sends_a_literal_one(make_app, send, settle):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        # (a prefix such as /stat is completed by the suggestions; these match no command)
        for typo, said in (("/stsat", "did you mean /stats?"), ("/bogus now", "/help lists them")):
            app.chat.prompt.load_text(typo)
            await pilot.press("enter")
            await settle(pilot)
            notice = str(app.chat.transcript.children[-1].render())
            assert f"unknown command /{typo[1:].split()[0]}" in notice and said in notice
            assert app.chat.prompt.text == typo  # left to be fixed
            assert stored(app) == []  # nothing went to the model
        app.chat.prompt.clear()
        await send(pilot, "//etc holds the configs")
        assert [m.content for m in stored(app)] == ["/etc holds the configs", "Echo: /etc holds the configs"]


async def test_message_stats_on_demand(make_app, send):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "hi")
        reply = app.chat.transcript.last("assistant")
        meta = reply.query_one(".meta")
        assert not meta.display
        reply.focus()
        await pilot.press("i")
        assert meta.display and "tokens" in str(meta.render())
        await send(pilot, "/stats")
        assert all(v.show_stats for v in app.chat.transcript.views())


async def test_a_failing_turn_shows_the_error_and_keeps_the_app(make_app, send):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "/set max_tokens 5000")  # echo's window is 4096: the reserve is capped
        await send(pilot, "x" * 5000)  # longer than the window
        reply = app.chat.transcript.last("assistant")
        assert reply.status == "error" and "context window" in reply.stats["error"]
        assert "error:" in str(reply.query_one(".meta").render())
        await send(pilot, "short")
        assert stored(app)[-1].content == "Echo: short"


async def test_sampling_settings_reach_the_backend(make_app, make_echo, send):
    backend, spec = make_echo()
    calls = record_streams(backend)
    app = make_app(loaded=(backend, spec))
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "/set top_k 7")
        await send(pilot, "/set temperature 0.25")
        await send(pilot, "hi")
        assert calls[-1][1].top_k == 7 and calls[-1][1].temperature == 0.25
        await send(pilot, "/unset top_k")
        await send(pilot, "again")
        assert calls[-1][1].top_k == 40
        await send(pilot, "/set top_p 7")  # out of range: refused, not stored
        assert "top_p" not in app.chat.conversation.params


# Gemma-style: the template itself refuses two turns of one role in a row
ALTERNATING = ("{% for m in messages if m.role != 'system' %}"
               "{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}"
               "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant') }}"
               "{% endif %}{% endfor %}")


async def test_a_failed_reply_does_not_break_a_template_that_wants_alternating_roles(make_app, make_echo,
                                                                                   send):
    from edgeai.errors import EdgeAIError
    from edgeai.runtime import templates

    backend, spec = make_echo()
    real, calls = backend.stream, []

    def strict(prompt, params):
        templates.render(ALTERNATING, prompt)
        calls.append(prompt)
        if len(calls) == 1:
            raise EdgeAIError("the server went away")  # the first reply fails, empty
        return real(prompt, params)

    backend.stream = strict
    app = make_app(loaded=(backend, spec))
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "first")
        assert stored(app)[-1].status == "error"
        await send(pilot, "second")
        await send(pilot, "third")
        assert [m.content for m in stored(app)[2:]] == ["second", "Echo: second", "third", "Echo: third"]
        assert [m.content for m in calls[-1]] == ["second", "Echo: second", "third"]


async def test_an_export_that_cannot_be_written_is_reported(make_app, send, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def refuse(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("edgeai.tui.export.atomic_write", refuse)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "hello")
        await send(pilot, "/export")
        notice = str(list(app.chat.transcript.children)[-1].render())
        assert notice.startswith("/export: cannot write") and "Permission denied" in notice
        await send(pilot, "still here")
        assert stored(app)[-1].content == "Echo: still here"
