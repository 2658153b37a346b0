"""Images in the chat app (#15): `/image` and a pasted path attach, the message shows it, chat.db
keeps a content-addressed copy with the message, and the image survives regenerate, export and
a restart; the reply says how the image was used. The echo backend cannot see, so the turn
routes the image through OCR (edgeai/vision/route.py) and echoes the described question: the
OCR text reaching the model is visible in the reply itself."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from textual import events

from edgeai.tui.widgets.attachments import ImagePreview
from edgeai.tui.widgets.message import MessageView

pytest.importorskip("PIL")
pytest.importorskip("rapidocr")
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")


def render_note(path: Path) -> Path:
    """A small receipt: a few lines of large dark text on white (what OCR reads reliably)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(DEJAVU), 30) if DEJAVU.exists() else ImageFont.load_default(size=30)
    image = Image.new("RGB", (420, 200), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(["COFFEE 3.50", "BAGEL 2.25", "TOTAL 5.75"]):
        draw.text((20, 20 + 55 * row), line, fill=(0, 0, 0), font=font)
    image.save(path)
    return path


@pytest.fixture
def note(tmp_path) -> Path:
    return render_note(tmp_path / "receipt.png")


def _stored(home: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(home / "chat.db") as raw:
        return raw.execute("SELECT content, attachments FROM messages WHERE role='user'").fetchall()


async def test_image_is_attached_shown_stored_routed_and_survives_regen_export_restart(
        make_app, send, settle, until, note, edgeai_home, tmp_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        screen = app.chat
        await send(pilot, f"/image {note}")
        assert [r["name"] for r in screen.pending] == ["receipt.png"]
        bar = str(screen.query_one("#pending").render())
        assert "[image: receipt.png 420×200]" in bar and "/image off" in bar
        await send(pilot, "what is the total?")
        assert screen.pending == [] and not screen.query_one("#pending").display
        user = screen.transcript.last("user")
        preview = user.query_one(ImagePreview)
        await until(pilot, lambda: preview.drawn)
        shown = str(preview.render())
        assert shown.startswith("[image: receipt.png 420×200]") and "▀" in shown  # drawn inline
        reply = screen.transcript.last("assistant")
        used = str(reply.query_one(".images").render())
        assert used.startswith("image: OCR · ") and "words" in used
        assert "TOTAL 5.75" in reply.content  # the OCR description reached the model's prompt
        # stored: a copy named by its content, the record in the message's row
        (content, records), = _stored(edgeai_home)
        record = json.loads(records)[0]
        copy = edgeai_home / record["file"]
        assert content == "what is the total?" and copy.read_bytes() == note.read_bytes()
        assert record["file"].startswith("attachments/") and record["sha256"] in copy.name
        assert "path" not in record  # resolved when read, never stored
        # regenerate answers from the stored copy, even with the original gone
        note.unlink()
        reply.focus()
        await pilot.press("r")
        await settle(pilot)
        again = screen.transcript.last("assistant")
        assert again is not reply and "TOTAL 5.75" in again.content
        assert str(again.query_one(".images").render()).startswith("image: OCR")
        # export: the Markdown links the stored copy, the JSON carries the record
        out = tmp_path / "out"
        out.mkdir()
        await send(pilot, f"/export {out}")
        markdown = next(out.glob("*.md")).read_text()
        assert f"![image: receipt.png 420×200]({copy.as_uri()})" in markdown
        assert "*images used as: OCR · " in markdown
        exported = json.loads(next(out.glob("*.json")).read_text())
        assert exported["messages"][0]["attachments"][0]["path"] == str(copy)
    # a restart on the same data dir shows the image with its message
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        user = app.chat.transcript.last("user")
        preview = user.query_one(ImagePreview)
        await until(pilot, lambda: preview.drawn)
        assert str(preview.render()).startswith("[image: receipt.png 420×200]")
        used = app.chat.transcript.last("assistant").query_one(".images")
        assert str(used.render()).startswith("image: OCR")


async def test_a_pasted_image_path_attaches_and_bad_files_are_one_line(make_app, settle, until, note,
                                                                       tmp_path, send):
    app = make_app(inline_images=False)
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(pilot)
        screen = app.chat
        screen.prompt.focus()
        app.post_message(events.Paste(f"'{note}'\n"))  # a dropped file: quoted, with a newline
        await until(pilot, lambda: bool(screen.pending))
        await settle(pilot)
        assert screen.prompt.text == "" and screen.pending[0]["name"] == "receipt.png"
        app.post_message(events.Paste("just some words"))  # any other paste is text
        await pilot.pause()
        assert screen.prompt.text == "just some words"
        screen.prompt.clear()
        await send(pilot, "/image off")
        assert screen.pending == []
        fake = tmp_path / "notes.png"
        fake.write_text("not an image at all")
        await send(pilot, f"/image {fake}")
        await send(pilot, f"/image {tmp_path / 'missing.png'}")
        notices = [str(n.render()) for n in screen.query(".notice.-error")]
        assert len(notices) == 2 and all("\n" not in n for n in notices)
        assert "notes.png is not an image" in notices[0] and "no such image" in notices[1]
        assert screen.pending == []
        # without inline drawing the message shows the placeholder only
        await send(pilot, f"/image {note}")
        await send(pilot, "what is this?")
        preview = screen.transcript.last("user").query_one(ImagePreview)
        assert str(preview.render()) == "[image: receipt.png 420×200]" and not preview.drawn
        assert isinstance(screen.transcript.last("user"), MessageView)
