"""`edgeai run --image PATH` as a user runs it (the real command in a subprocess): the image routed
through OCR to a text-only model, how it was used in --json's `images`, bad images as one line
(exit 2), and the real default model reading a receipt's total."""

from __future__ import annotations

import json

import pytest
from edgeai_testing.cli_errors import one_line_error
from edgeai_testing.receipts import render_receipts


@pytest.fixture(scope="module")
def receipts(tmp_path_factory):
    return {r.layout: r for r in render_receipts(tmp_path_factory.mktemp("receipts"))}



def test_the_image_reaches_a_text_model_as_its_ocr_text(cli, receipts):
    receipt = receipts["mono"]
    result = cli("run", "--backend", "echo", "--temperature", "0", "--max-tokens", "4000",
                 "--image", str(receipt.path), "what is the total?", "--json")
    assert result.returncode == 0, result.stderr.decode()
    data = json.loads(result.stdout)
    assert receipt.total in data["text"] and "TOTAL" in data["text"]  # echo repeats what it was sent
    assert len(data["images"]) == 1 and data["images"][0].startswith("OCR · ")


def test_without_images_the_json_has_no_images_field(cli):
    result = cli("run", "--backend", "echo", "hi", "--json")
    assert result.returncode == 0 and "images" not in json.loads(result.stdout)


def test_bad_images_are_one_line(cli, tmp_path):
    assert "no such image" in one_line_error(cli("run", "--backend", "echo", "--image",
                                                 str(tmp_path / "gone.png"), "what?"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    assert "broken.png" in one_line_error(cli("run", "--backend", "echo", "--image", str(broken), "what?"))


@pytest.mark.model
@pytest.mark.slow  # 25-75 s on a shared 2-core machine: OCR start-up + model load + answer
def test_the_default_model_reads_the_total(cli, receipts, default_gguf):
    """The receipt with a Subtotal and a Tax line above the TOTAL: the total, not the subtotal."""
    receipt = receipts["tax"]
    result = cli("run", "--image", str(receipt.path), "what is the total?", "--temperature", "0")
    assert result.returncode == 0, result.stderr.decode()
    assert receipt.total in result.stdout.decode(), result.stdout.decode()
    assert "(OCR · " in result.stderr.decode()  # how the image was used, beside the answer
