"""`--mmproj` as a user gives it (#15): the real commands in a subprocess on a tiny VLM (a
random-weight llama GGUF and its LLaVA-style projector, edgeai_testing/tiny_vlm.py, built in
under a second), through the real llama.cpp and mtmd. An image reaches the model itself ("VLM")
with the projector and its OCR text without one ("OCR · N words"); `see` answers from the pixels;
`chat` loads the projector for the model it was given with; a bad --mmproj is one line, exit 2,
whatever is wrong with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("PIL")

from edgeai_testing.cli_errors import one_line_error  # noqa: E402
from edgeai_testing.tiny_vlm import build_projector, build_text_model  # noqa: E402

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def write_words(path: Path, text: str = "HELLO WORLD") -> Path:
    """Black words on white, large enough for OCR to read them."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (360, 90), "white")
    font = ImageFont.truetype(str(DEJAVU), 36) if DEJAVU.is_file() else ImageFont.load_default(size=36)
    ImageDraw.Draw(image).text((12, 20), text, fill="black", font=font)
    image.save(path)
    return path


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    d = tmp_path_factory.mktemp("vlm")
    return {"text": build_text_model(d / "text.gguf"), "mmproj": build_projector(d / "mmproj.gguf"),
            "image": write_words(d / "words.png"), "dir": d}



def run_args(vlm, *extra: str) -> list[str]:
    return ["run", "--model", str(vlm["text"]), "--image", str(vlm["image"]), "--max-tokens", "8",
            "--temperature", "0", "--draft", "off", *extra, "describe"]


def test_run_with_mmproj_sends_the_image_to_the_model(cli, vlm):
    result = cli(*run_args(vlm, "--mmproj", str(vlm["mmproj"])))
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert err.strip().splitlines()[-1] == "(VLM)", err  # how the image was used, beside the reply
    data = json.loads(cli(*run_args(vlm, "--mmproj", str(vlm["mmproj"]), "--json")).stdout)
    assert data["images"] == ["VLM"] and data["backend"] == "llamacpp" and data["completion_tokens"] == 8


def test_run_without_mmproj_routes_the_image_through_ocr(cli, vlm):
    pytest.importorskip("rapidocr")
    result = cli(*run_args(vlm))
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert err.strip().splitlines()[-1] == "(OCR · 2 words)", err


@pytest.mark.parametrize("case", ["missing", "folder", "text-file", "truncated", "text-model", "other-width"])
def test_a_bad_mmproj_is_one_line(cli, vlm, case):
    d = vlm["dir"]
    path = {"missing": d / "nope.gguf", "folder": d, "text-model": vlm["text"]}.get(case)
    if case == "text-file":
        path = d / "notes.gguf"
        path.write_text("not a projector\n")
    elif case == "truncated":
        path = d / "half.gguf"
        data = vlm["mmproj"].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "other-width":  # a projector for a 32-wide text model; this one is 64 wide
        path = d / "other.gguf"
        if not path.exists():
            build_projector(path, text_embd=32)
    line = one_line_error(cli(*run_args(vlm, "--mmproj", str(path))))
    expected = {"missing": "does not exist", "folder": "is a folder", "text-file": "is not a GGUF file",
                "truncated": "is truncated", "text-model": "not a vision projector",
                "other-width": "mismatch between text model (n_embd = 64) and mmproj (n_embd = 32)"}[case]
    assert expected in line, line


def test_mmproj_on_a_backend_other_than_llamacpp_is_one_line(cli, vlm):
    line = one_line_error(cli("run", "--backend", "echo", "--mmproj", str(vlm["mmproj"]), "hi"))
    assert "the echo backend cannot load it" in line


def test_see_answers_from_the_pixels_with_mmproj(cli, vlm):
    result = cli("see", str(vlm["image"]), "what is written?", "--model", str(vlm["text"]),
                 "--mmproj", str(vlm["mmproj"]))
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert err.strip().splitlines()[-1] == "(VLM)", err
    line = one_line_error(cli("see", str(vlm["image"]), "--mmproj", str(vlm["mmproj"])))
    assert "--mmproj is for the model that answers a QUESTION" in line


def test_chat_plain_loads_the_projector_and_refuses_a_bad_one(cli, vlm):
    args = ["chat", "--plain", "--model", str(vlm["text"]), "--max-tokens", "4"]
    result = cli(*args, "--mmproj", str(vlm["mmproj"]), input="hello\n")
    assert result.returncode == 0, result.stderr.decode()
    assert "is not a GGUF file" in one_line_error(cli(*args, "--mmproj", str(vlm["image"]), input="hello\n"))


def test_the_chat_apps_loader_gives_the_projector_to_its_model_only(vlm, settings):
    from edgeai.tui.loader import default_loader

    load = default_loader(settings, mmproj=(str(vlm["text"]), str(vlm["mmproj"])))
    backend, _ = load(str(vlm["text"]), None)
    try:
        assert backend.capabilities.vision is True
    finally:
        backend.close()
    other = vlm["dir"] / "other-text.gguf"
    other.write_bytes(vlm["text"].read_bytes())  # another request: a model switched to in the app
    backend, _ = load(str(other), None)
    try:
        assert backend.capabilities.vision is False
    finally:
        backend.close()
