"""The remote backend's images: OpenAI `image_url` parts with base64 data URLs of the image
decoded within the cap, downscaled and re-encoded, checked on the request a loopback server
recorded; bad images refused before anything is sent; and `edgeai run --image` against an
endpoint."""

from __future__ import annotations

import base64
import io
import json

import pytest
from edgeai_testing.openai_server import serve_backend

from edgeai.errors import BadInput
from edgeai.runtime import generate, get_backend
from edgeai.runtime.remote import SEND_MAX_PIXELS, RemoteBackend, remote_spec
from edgeai.types import GenParams, LoadOptions, Message, ModelSpec
from edgeai.vision.route import route_images

GREEDY = GenParams(max_tokens=32, temperature=0)


def echo():
    backend = get_backend("echo")
    backend.load(ModelSpec(id="echo"), LoadOptions())
    return backend


def connect(url: str) -> RemoteBackend:
    remote = RemoteBackend()
    remote.load(remote_spec(url), LoadOptions())
    return remote


def chat_bodies(endpoint) -> list[dict]:
    return [r.body for r in endpoint.requests if r.path == "/v1/chat/completions"]


def decoded(url: str):
    from PIL import Image

    head, _, data = url.partition(",")
    return head, Image.open(io.BytesIO(base64.b64decode(data)))


@pytest.fixture
def drawing(tmp_path):
    """A large, mostly white PNG with a dark block top-left (so orientation can be checked)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (3200, 2000), "white")
    ImageDraw.Draw(image).rectangle((0, 0, 400, 300), fill="black")
    path = tmp_path / "drawing.png"
    image.save(path)
    return path


def test_images_go_as_image_url_parts_downscaled_and_reencoded(drawing):
    with serve_backend(echo()) as endpoint:
        remote = connect(endpoint.url)
        assert remote.capabilities.vision  # the server decides whether its model really sees
        messages = [Message("system", "be brief"), Message("user", "what is drawn?", images=(drawing,))]
        routed, labels = route_images(messages, remote.capabilities)
        assert routed == messages and labels == ["VLM"]
        reply = generate(remote, routed, GREEDY)
        assert reply.text.startswith("Echo: what is drawn?")  # the text part reached the model
        body = chat_bodies(endpoint)[0]
    system, user = body["messages"]
    assert system == {"role": "system", "content": "be brief"}
    text, picture = user["content"]
    assert text == {"type": "text", "text": "what is drawn?"}
    assert picture["type"] == "image_url"
    head, image = decoded(picture["image_url"]["url"])
    assert head == "data:image/png;base64" and image.format == "PNG"
    assert image.width * image.height <= SEND_MAX_PIXELS
    assert abs(image.width / image.height - 3200 / 2000) < 0.01  # shape kept
    assert image.getpixel((5, 5)) == (0, 0, 0) and image.getpixel((image.width - 5, 5)) == (255, 255, 255)


def test_a_jpeg_is_sent_as_jpeg_turned_as_its_exif_says_without_metadata(tmp_path):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (300, 200), "white")
    ImageDraw.Draw(image).rectangle((0, 0, 60, 40), fill="black")  # top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": the viewer sees it 200 x 300
    exif[0x010F] = "SecretCam"  # a camera make: must not leave the machine
    path = tmp_path / "photo.jpg"
    image.save(path, exif=exif, quality=95)
    with serve_backend(echo()) as endpoint:
        remote = connect(endpoint.url)
        generate(remote, [Message("user", "what?", images=(path,))], GREEDY)
        _, part = chat_bodies(endpoint)[0]["messages"][0]["content"]
    head, sent = decoded(part["image_url"]["url"])
    assert head == "data:image/jpeg;base64" and sent.size == (200, 300)
    assert sent.getpixel((sent.width - 5, 5))[0] < 60  # the dark block now top-right
    assert not sent.getexif()


def test_a_bad_image_is_refused_before_anything_is_sent(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    with serve_backend(echo()) as endpoint:
        remote = connect(endpoint.url)
        with pytest.raises(BadInput, match="broken.png"):
            generate(remote, [Message("user", "what?", images=(broken,))], GREEDY)
        assert chat_bodies(endpoint) == []


def test_audio_is_refused_with_a_hint(tmp_path):
    with serve_backend(echo()) as endpoint:
        remote = connect(endpoint.url)
        with pytest.raises(BadInput, match="audio") as err:
            generate(remote, [Message("user", "what?", audio=tmp_path / "a.wav")], GREEDY)
        assert "transcribe" in err.value.hint


def test_run_with_an_image_against_an_endpoint(cli, drawing):
    with serve_backend(echo()) as endpoint:
        result = cli("run", "--model", f"{endpoint.url}#echo", "--image", str(drawing), "what is it?",
                     "--json")
        assert result.returncode == 0, result.stderr.decode()
        assert json.loads(result.stdout)["images"] == ["VLM"]
        (body,) = chat_bodies(endpoint)
    assert [p["type"] for p in body["messages"][-1]["content"]] == ["text", "image_url"]
