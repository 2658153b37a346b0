"""`edgeai chat --plain` with images and recordings, as a user pipes a session into it: `/image`
and a pasted image path attach to the next message (read through OCR for a text model, said
beside the reply), a bad file is one line and the REPL goes on, `/audio` makes a recording's
transcript the next message. The real command in a subprocess; echo repeats what it was sent."""

from __future__ import annotations

import importlib.util

import pytest
from edgeai_testing.receipts import render_receipts


@pytest.fixture(scope="module")
def receipt(tmp_path_factory):
    return next(r for r in render_receipts(tmp_path_factory.mktemp("receipts")) if r.layout == "mono")


def plain(cli, script: str):
    result = cli("chat", "--plain", "--backend", "echo", "--temperature", "0", "--max-tokens", "4000",
                 input=script)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def test_an_attached_receipt_reaches_the_model_as_its_ocr_text(cli, receipt):
    code, out, err = plain(cli, f"/image {receipt.path}\nwhat is the total?\nand now?\n")
    assert code == 0 and "Traceback" not in err, err
    assert f"attached [image: {receipt.path.name} " in out and "sent with your next message" in out
    first, _, second = out.partition("Echo: and now?")
    assert receipt.total in first and "what is the total?" in first, out
    assert err.count("(OCR · ") == 1, err  # said once, beside the reply that read the image


def test_a_pasted_image_path_attaches_like_image(cli, receipt):
    code, out, err = plain(cli, f"'{receipt.path}'\nwhat is the total?\n")
    assert code == 0 and f"attached [image: {receipt.path.name} " in out, (out, err)
    assert receipt.total in out and "(OCR · " in err


def test_image_off_forgets_the_attachment(cli, receipt):
    code, out, err = plain(cli, f"/image {receipt.path}\n/image off\nwhat is the total?\n")
    assert code == 0 and "(no image attached)" in out
    assert receipt.total not in out.partition("no image attached")[2] and "OCR" not in err


def test_a_bad_image_is_one_line_and_the_repl_goes_on(cli, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    code, out, err = plain(cli, f"/image {tmp_path / 'gone.png'}\n/image {broken}\n/image\nhello\n")
    assert code == 0 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("edgeai: error: ")]
    assert len(errors) == 2 and "gone.png" in errors[0] and "broken.png" in errors[1], err
    assert "usage: /image PATH" in out and "Echo: hello" in out


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("faster_whisper", "piper")),
                    reason="needs the speech and tts extras (scripts/setup)")
def test_audio_turns_a_recording_into_the_next_message(cli, tmp_path):
    question = tmp_path / "question.wav"
    spoken = cli("speak", "What is the capital of France?", "-o", str(question))
    assert spoken.returncode == 0, spoken.stderr.decode()
    (tmp_path / "notes.mp3").write_text("not a recording\n")
    code, out, err = plain(cli, f"/audio {tmp_path / 'notes.mp3'}\n/audio {question}\n")
    assert code == 0 and "Traceback" not in err, err
    assert err.count("edgeai: error: ") == 1 and "notes.mp3" in err, err
    heard = out.partition("heard question.wav: ")[2].splitlines()[0]
    assert "capital of france" in heard.lower(), out
    assert f"Echo: {heard.rstrip(')')}" in out, out  # sent as heard (piped: nothing to edit it in)
