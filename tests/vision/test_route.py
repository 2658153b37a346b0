"""Image routing (edgeai.vision.route): pixels for a model that sees, a fenced OCR description
for one that does not, one line when nothing can read the image; and the chat turn that routes
every surface's images (real OCR on rendered receipts, the echo backend as the model)."""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace

import pytest

from edgeai.chat.turn import begin_turn, run_turn
from edgeai.errors import BadInput
from edgeai.runtime.loaded import LoadedModel
from edgeai.types import Capabilities, GenParams, Message
from edgeai.vision import route
from edgeai.vision.route import IMAGES_HEAD, route_images

TEXT_ONLY = Capabilities()
SEES = Capabilities(vision=True)


def test_a_model_that_sees_gets_the_images_unchanged(tmp_path):
    # no file is read: the backend takes the pixels, so nothing here may import the image stack
    messages = [Message("system", "be brief"), Message("user", "what is this?", images=(tmp_path / "a.png",
                                                                                       tmp_path / "b.png"))]
    out, labels = route_images(messages, SEES)
    assert out == messages and labels == ["VLM", "VLM"]


def test_only_the_newest_messages_images_are_labelled(tmp_path):
    """An image from an earlier turn stays in the history, but this reply did not use it afresh."""
    messages = [Message("user", "what is this?", images=(tmp_path / "a.png",)), Message("assistant", "a cat"),
                Message("user", "and these?", images=(tmp_path / "b.png", tmp_path / "c.png"))]
    assert route_images(messages, SEES)[1] == ["VLM", "VLM"]
    thanks = messages[:2] + [Message("user", "thanks")]
    assert route_images(thanks, SEES) == (thanks, [])


def test_messages_without_images_pass_through():
    messages = [Message("user", "hi")]
    assert route_images(messages, TEXT_ONLY) == (messages, [])


def test_a_text_model_gets_the_receipt_as_fenced_ocr_text(receipts, ocr_engine, find_total_line):
    receipt = receipts[0]
    messages = [Message("system", "be brief"), Message("user", "hello"), Message("assistant", "hi"),
                Message("user", "what is the total?", images=(receipt.path,))]
    out, labels = route_images(messages, TEXT_ONLY)
    assert out[:3] == messages[:3]
    routed = out[3]
    assert routed.images == () and routed.role == "user"
    assert routed.content.startswith(IMAGES_HEAD)
    assert '<source id="1"' in routed.content and "</documents>" in routed.content
    assert receipt.total in find_total_line(route.image_part(routed.content))
    assert routed.content.rstrip().endswith(route.TAIL) and "Question: what is the total?" in routed.content
    assert len(labels) == 1 and labels[0].startswith("OCR · ") and labels[0].endswith("words")
    assert route.image_part(routed.content).endswith("</documents>\n")
    assert route.image_part("what is the total?") is None


def test_an_earlier_turns_image_stays_described_without_a_new_label(receipts, ocr_engine):
    messages = [Message("user", "read this", images=(receipts[0].path,)), Message("assistant", "done"),
                Message("user", "what is the total?")]
    out, labels = route_images(messages, TEXT_ONLY)
    assert labels == [] and out[0].content.startswith(IMAGES_HEAD) and out[2] == messages[2]


def test_two_images_are_numbered_and_labelled_in_order(receipts, ocr_engine, tmp_path):
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 48), "white").save(blank)
    out, labels = route_images([Message("user", "", images=(receipts[0].path, blank))], TEXT_ONLY)
    assert '<source id="1"' in out[0].content and '<source id="2"' in out[0].content
    assert labels[0].startswith("OCR · ") and labels[1] == "image facts"
    assert f"Question: {route.NO_QUESTION}" in out[0].content  # an image sent without words


def test_the_same_content_is_analysed_once(receipts, ocr_engine, tmp_path):
    copy = tmp_path / "copy-of-receipt.png"
    shutil.copyfile(receipts[0].path, copy)
    first = route.analysis_of(receipts[0].path)
    assert route.analysis_of(copy) is first  # another path, same bytes: the cached analysis


def test_a_corrupt_or_missing_image_is_one_line(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(BadInput) as err:
        route_images([Message("user", "what?", images=(bad,))], TEXT_ONLY)
    assert "bad.png" in err.value.message and "\n" not in err.value.message
    with pytest.raises(BadInput, match="no such image"):
        route_images([Message("user", "what?", images=(tmp_path / "gone.png",))], TEXT_ONLY)


def test_ocr_missing_for_a_text_model_is_bad_input_naming_it(monkeypatch, draw_receipt, tmp_path):
    from edgeai.vision import ocr

    receipt = draw_receipt(tmp_path / "fresh.png", "mono", 99)  # content not in the cache
    monkeypatch.setattr(ocr, "_engine", None)
    monkeypatch.setitem(sys.modules, "rapidocr", None)  # what `import rapidocr` does when missing
    with pytest.raises(BadInput) as err:
        route_images([Message("user", "total?", images=(receipt.path,))], TEXT_ONLY)
    message = err.value.message
    assert "fresh.png" in message and "cannot see images" in message and "OCR" in message
    assert "\n" not in message and "edgeai[vision]" in err.value.hint
    # a model that sees does not need OCR at all
    assert route_images([Message("user", "total?", images=(receipt.path,))], SEES)[1] == ["VLM"]


def test_the_chat_turn_routes_images_and_keeps_the_labels(db, make_echo, settings, receipts, ocr_engine):
    backend, spec = make_echo()
    model = LoadedModel(backend, spec, "echo")
    receipt = receipts[0]  # analysed by an earlier test in this process: the cache serves it
    turn = begin_turn(db, db.create_conversation("t"), "what is the total?", model)
    # the images a surface sends ride on the last message (the chat app puts its stored copy there)
    last = replace(turn.messages[-1], images=(receipt.path,))
    turn = replace(turn, messages=[*turn.messages[:-1], last])
    notes = []
    out = run_turn(turn, model, GenParams(temperature=0, max_tokens=4000), settings, on_note=notes.append)
    assert out.status == "done", out.error
    assert receipt.total in out.text  # echo repeats the message it got: the description reached it
    assert out.images and out.images[0].startswith("OCR · ")
    assert notes == ["reading the image…"]
    assert db.message(turn.reply.id).stats["images"] == out.images


def test_an_unreadable_image_fails_the_turn_with_one_line(db, make_echo, settings, tmp_path):
    backend, spec = make_echo()
    model = LoadedModel(backend, spec, "echo")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    turn = begin_turn(db, db.create_conversation("t"), "what is this?", model)
    turn = replace(turn, messages=[*turn.messages[:-1], replace(turn.messages[-1], images=(bad,))])
    out = run_turn(turn, model, GenParams(), settings)
    assert out.status == "error" and "broken.jpg" in out.error
    assert db.message(turn.reply.id).status == "error"
