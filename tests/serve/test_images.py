"""`edgeai serve`'s image input with the official OpenAI client: `image_url` parts (data URLs)
routed like a chat turn's images (real OCR for a text-only model, the pixels for one that sees),
how each was used in the reply, http(s) URLs and malformed images refused with OpenAI-style
400s, the body limit raised only for images; and the real default model reading a receipt."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from edgeai_testing.echo import echo_model, record_streams
from edgeai_testing.receipts import render_receipts
from edgeai_testing.serve import serving

from edgeai.serve.app import Options
from edgeai.serve.requests import Limits

openai = pytest.importorskip("openai")
QUESTION = "What is the total?"


@pytest.fixture(scope="module")
def receipts(tmp_path_factory):
    return {r.layout: r for r in render_receipts(tmp_path_factory.mktemp("receipts"))}


def data_url(path: Path, kind: str = "png") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(path.read_bytes()).decode()


def image_message(url: str, text: str = QUESTION) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


def client(served):
    return openai.OpenAI(base_url=served.url, api_key="none", max_retries=0, timeout=120)


def error_of(response: httpx.Response, status: int = 400) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"} and "\n" not in error["message"]
    return error


@pytest.fixture
def echo_server(settings):
    backend, _ = echo_model()
    with serving(backend, settings, options=Options(limits=Limits(max_body=4096))) as served:
        yield served


def test_a_receipt_reaches_a_text_model_as_its_ocr_text(echo_server, receipts):
    receipt = receipts["mono"]
    api = client(echo_server)
    whole = api.chat.completions.create(model="echo", temperature=0, max_tokens=4000,
                                        messages=image_message(data_url(receipt.path)))
    text = whole.choices[0].message.content
    assert receipt.total in text and "TOTAL" in text and QUESTION in text  # echo repeats what it got
    assert whole.images[0].startswith("OCR · ")  # edgeai's extension, like `sources`
    # streamed: the same routing, the labels on the last chunk; the body is over max_body (4096
    # bytes) but carries an image, so it is taken
    chunks = list(api.chat.completions.create(model="echo", temperature=0, max_tokens=4000, stream=True,
                                              messages=image_message(data_url(receipt.path))))
    assert receipt.total in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].images == whole.images


def test_a_model_that_sees_gets_the_pixels(settings, receipts):
    from PIL import Image

    backend, _ = echo_model()
    backend.capabilities = replace(backend.capabilities, vision=True)
    calls = record_streams(backend)
    with serving(backend, settings) as served:
        reply = httpx.post(f"{served.url}/chat/completions", timeout=60, json={
            "model": "echo", "messages": image_message(data_url(receipts["sans"].path))}).json()
        (messages, _), = calls
        (sent,) = messages[-1].images
        assert messages[-1].content == QUESTION and reply["images"] == ["VLM"]
        with Image.open(sent) as image, Image.open(receipts["sans"].path) as original:
            assert image.size == original.size  # the bytes the client sent, as a file the backend reads


def test_image_urls_that_are_not_inline_images_are_400(echo_server, tmp_path):
    url = f"{echo_server.url}/chat/completions"

    def post(image_url) -> dict:
        content = [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": image_url}]
        return error_of(httpx.post(url, json={"messages": [{"role": "user", "content": content}]},
                                   timeout=30))

    remote = post({"url": "https://example.com/cat.png"})
    assert "offline" in remote["message"] and "data:image/png;base64" in remote["message"]
    assert remote["code"] == "image_url_not_fetched"
    assert "base64 data URL" in post({"url": "data:text/plain;base64,aGk="})["message"]
    assert "base64 data URL" in post({"url": "data:image/png,rawbytes"})["message"]
    assert "needs a url" in post({})["message"]
    assert "not valid base64" in post({"url": "data:image/png;base64,@@@"})["message"]
    corrupt = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 30).decode()
    broken = post({"url": f"data:image/png;base64,{corrupt}"})
    assert broken["message"].startswith("image-") and ".png" in broken["message"]
    unknown = error_of(httpx.post(url, timeout=30, json={"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]}))
    assert "image_url" in unknown["message"]


def test_a_big_body_without_images_is_still_413(echo_server):
    big = {"messages": [{"role": "user", "content": "x" * 8000}]}
    response = httpx.post(f"{echo_server.url}/chat/completions", json=big, timeout=30)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


def test_ollama_images_are_routed_too(echo_server, receipts):
    receipt = receipts["mono"]
    body = {"model": "echo", "stream": False, "options": {"temperature": 0, "num_predict": 4000},
            "messages": [{"role": "user", "content": QUESTION,
                          "images": [base64.b64encode(receipt.path.read_bytes()).decode()]}]}
    reply = httpx.post(f"{echo_server.root}/api/chat", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    assert receipt.total in reply.json()["message"]["content"]


@pytest.mark.model
@pytest.mark.slow  # OCR + the default model's answer on a shared CPU: 15-40 s
def test_the_default_model_reads_the_total_from_an_image_url(llama_backend, settings, receipts):
    receipt = receipts["tax"]  # a Subtotal and a Tax line above the TOTAL
    with serving(llama_backend, settings, model_id="qwen2.5-coder-0.5b-instruct") as served:
        whole = client(served).chat.completions.create(model="qwen2.5-coder-0.5b-instruct", temperature=0,
                                                       messages=image_message(data_url(receipt.path)))
    assert receipt.total in whole.choices[0].message.content, whole.choices[0].message.content
    assert whole.images[0].startswith("OCR · ")
