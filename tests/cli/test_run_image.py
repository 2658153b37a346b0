"""`edgeai run --image PATH` as a user runs it (the real command in a subprocess): the image routed
through OCR to a text-only model, how it was used in --json's `images`, bad images as one line
(exit 2), and the real default model reading a receipt's total."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

VISION_HELPERS = Path(__file__).parents[1] / "vision" / "conftest.py"


@pytest.fixture(scope="module")
def receipts(tmp_path_factory):
    """The receipts tests/vision renders (its conftest is not visible from here: loaded by path)."""
    spec = importlib.util.spec_from_file_location("vision_receipts", VISION_HELPERS)
    helpers = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = helpers  # dataclasses look their module up while the class is made
    spec.loader.exec_module(helpers)
    folder = tmp_path_factory.mktemp("receipts")
    return {layout: helpers.render_receipt(folder / f"receipt-{layout}.png", layout, seed)
            for seed, layout in enumerate(helpers.LAYOUTS)}


def one_line_error(result) -> str:
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "Traceback" not in err and result.stdout == b""
    lines = err.strip().splitlines()
    assert lines[0].startswith("edgeai: error: ") and len(lines) <= 2, err
    return lines[0]


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
