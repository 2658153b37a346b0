"""`edgeai see` as a user runs it (the real command in a subprocess): the JSON contract, bad
images as one line with exit 2, the question answered by the real default model, and a
`--help` that imports no image stack."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from edgeai_testing.cli_errors import one_line_error

from edgeai.vision.image import MAX_PIXELS

IMAGE_STACK = ("PIL", "cv2", "rapidocr", "onnxruntime", "numpy")


def test_json_has_the_text_in_reading_order_objects_and_size(cli, receipts, find_total_line):
    receipt = next(r for r in receipts if r.layout == "tax")
    result = cli("see", str(receipt.path), "--json")
    assert result.returncode == 0, result.stderr.decode()
    data = json.loads(result.stdout)
    line = find_total_line(data["text"])
    assert line is not None and receipt.total in line, data["text"]
    assert data["text"].splitlines()[0] == "SUNRISE MARKET"
    assert data["objects"] == []
    assert data["size"] == {"width": 520, "height": data["size"]["height"]} and data["size"]["height"] > 500
    assert data["used"].startswith("OCR · ") and data["format"] == "PNG"
    assert [line["text"] for line in data["lines"]] == data["text"].splitlines()
    assert all(len(line["box"]) == 4 and 0 < line["confidence"] <= 1 for line in data["lines"])
    assert "answer" not in data


def test_json_objects_are_faces_with_label_box_and_score(cli, astronaut):
    result = cli("see", str(astronaut), "--json")
    assert result.returncode == 0, result.stderr.decode()
    data = json.loads(result.stdout)
    assert data["size"] == {"width": 512, "height": 512}
    assert [o["label"] for o in data["objects"]] == ["face"]
    assert len(data["objects"][0]["box"]) == 4 and 0.5 <= data["objects"][0]["score"] <= 1
    assert "1 face" in data["used"]


def test_the_plain_output_is_the_description(cli, astronaut):
    result = cli("see", str(astronaut))
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert out.startswith("Image: astronaut.png, 512x512 pixels, PNG\n")
    assert "Faces: 1 found: upper centre" in out


def test_a_corrupt_image_is_one_line(cli, tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 20)
    one_line_error(cli("see", str(path)), "photo.jpg")


def test_a_decompression_bomb_is_one_line_naming_the_cap(cli, tmp_path, header_only_png):
    bomb = header_only_png(tmp_path / "bomb.png", 9500, 9500)  # 90 MP claimed in ~100 bytes
    line = one_line_error(cli("see", str(bomb), "--json"), "bomb.png")
    assert f"{MAX_PIXELS // 1_000_000} MP cap" in line
    bigger = header_only_png(tmp_path / "bigger.png", 30000, 30000)  # Pillow's own error
    one_line_error(cli("see", str(bigger)), "decompression bomb", f"{MAX_PIXELS // 1_000_000} MP cap")


def test_a_missing_image_and_an_empty_question_are_bad_input(cli, tmp_path, receipts):
    one_line_error(cli("see", str(tmp_path / "nope.png")), "no such image")
    one_line_error(cli("see", str(receipts[0].path), "  "), "question is empty")


PROBE = """
import sys
from edgeai.cli import run_cli
code = run_cli(sys.argv[1:])
print('LOADED=' + ','.join(sorted(m for m in sys.modules if m.split('.')[0] in {stack!r})), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("args", [["--help"], ["see", "--help"]])
def test_help_imports_no_image_stack(args):
    result = subprocess.run([sys.executable, "-c", PROBE.format(stack=IMAGE_STACK), *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "LOADED=", result.stderr
    if args == ["--help"]:
        assert " see " in result.stdout


@pytest.mark.model
@pytest.mark.slow  # 14-28 s a receipt on a shared 2-core machine: OCR (~3-4 s) + model load + answer
def test_the_default_model_answers_the_total(cli, receipts, default_gguf):
    """The receipts with a Subtotal and a Tax line above the TOTAL: the model must pick the total."""
    answers = []
    for receipt in [r for r in receipts if r.layout in ("tax", "tilted")]:
        started = time.perf_counter()
        result = cli("see", str(receipt.path), "what is the total?", "--json")
        assert result.returncode == 0, result.stderr.decode()
        data = json.loads(result.stdout)
        answers.append((receipt.total, data["answer"], round(time.perf_counter() - started, 1)))
    print("\n", answers)
    assert all(total in answer for total, answer, _ in answers), answers
    assert data["model"].startswith("qwen2.5-coder-0.5b-instruct")
