"""`edgeai serve`'s speech API with the official OpenAI client on loopback: a transcription of
speech piper synthesized (real Whisper tiny.en), every response format, speech as a valid WAV
(real piper) that transcribes back to its text, and bad requests as OpenAI-style 400s."""

from __future__ import annotations

import importlib.util
import io
import json
import wave

import httpx
import pytest
from edgeai_testing.echo import echo_model
from edgeai_testing.serve import serving

from edgeai.config import Settings
from edgeai.serve.app import Options
from edgeai.serve.requests import Limits

openai = pytest.importorskip("openai")
if importlib.util.find_spec("faster_whisper") is None or importlib.util.find_spec("piper") is None:
    pytest.skip("needs the speech and tts extras (scripts/setup)", allow_module_level=True)

SENTENCE = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def server(tmp_path_factory, session_models):
    """One server for the module: Whisper and the voice load once, on first use."""
    settings = Settings(home=tmp_path_factory.mktemp("home"), models_home=session_models)
    backend, _ = echo_model()
    options = Options(limits=Limits(max_upload=2 << 20))
    with serving(backend, settings, options=options) as served:
        yield served


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    """SENTENCE spoken by piper's default voice, as a WAV file."""
    from edgeai.speech.tts import load_voice, synthesize, write_wav

    path = tmp_path_factory.mktemp("speech") / "fox.wav"
    write_wav(path, [synthesize(load_voice(), SENTENCE)])
    return path


def client(served):
    return openai.OpenAI(base_url=served.url, api_key="none", max_retries=0, timeout=120)


def error_of(response: httpx.Response, status: int = 400) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert "\n" not in error["message"]
    return error


def test_a_transcription_of_piper_speech_is_the_sentence(server, spoken):
    from edgeai.speech.wer import wer

    with spoken.open("rb") as audio:
        result = client(server).audio.transcriptions.create(file=audio, model="whisper-tiny.en")
    assert wer(SENTENCE, result.text) <= 0.15, result.text


def test_every_response_format(server, spoken):
    api = client(server)

    def ask(fmt: str, **extra):
        with spoken.open("rb") as audio:
            return api.audio.transcriptions.create(file=audio, model="whisper-tiny.en", response_format=fmt,
                                                   language="en", temperature=0, **extra)

    text = ask("text")
    assert isinstance(text, str) and "fox" in text.lower()
    srt = ask("srt")
    assert srt.startswith("1\n00:00:0") and " --> " in srt and "fox" in srt.lower()
    vtt = ask("vtt")
    assert vtt.startswith("WEBVTT") and "fox" in vtt.lower()
    verbose = ask("verbose_json", timestamp_granularities=["word", "segment"])
    assert verbose.language == "english" and verbose.task == "transcribe"
    assert 1.0 < verbose.duration < 10.0 and "fox" in verbose.text.lower()
    assert verbose.segments and verbose.segments[0].start < verbose.segments[-1].end <= verbose.duration + 0.5
    assert any(w.word.lower().strip(".,") == "fox" for w in verbose.words)


def test_speech_is_a_wav_that_transcribes_back(server):
    from edgeai.speech.wer import wer

    api = client(server)
    audio = api.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE, response_format="wav")
    data = audio.read()
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2 and wav.getframerate() >= 16000
        seconds = wav.getnframes() / wav.getframerate()
    assert 1.0 < seconds < 10.0
    back = api.audio.transcriptions.create(file=("speech.wav", data), model="whisper-tiny.en")
    assert wer(SENTENCE, back.text) <= 0.15, back.text


def test_bad_transcription_requests_are_openai_400s(server, tmp_path):
    url = f"{server.url}/audio/transcriptions"
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio at all\n" * 20)
    error = error_of(httpx.post(url, files={"file": ("notes.txt", notes.read_bytes())},
                                data={"model": "whisper-tiny.en"}, timeout=60))
    assert error["param"] == "file" and "notes.txt" in error["message"]
    assert "edgeai-upload" not in error["message"]  # the client's file name, not the server's copy
    assert error_of(httpx.post(url, data={"model": "whisper-tiny.en"}, files={"other": ("x", b"x")},
                               timeout=30))["param"] == "file"
    assert "multipart" in error_of(httpx.post(url, json={"model": "whisper-tiny.en"}, timeout=30))["message"]
    assert error_of(httpx.post(url, files={"file": ("a.wav", b"")}, timeout=30))["param"] == "file"
    assert error_of(httpx.post(url, files={"file": ("a.wav", b"RIFF")}, data={"response_format": "mp3"},
                               timeout=30))["param"] == "response_format"
    assert error_of(httpx.post(url, files={"file": ("a.wav", b"RIFF")}, data={"temperature": "3"},
                               timeout=30))["param"] == "temperature"
    english_only = error_of(httpx.post(url, files={"file": ("a.wav", b"RIFF")},
                                       data={"model": "whisper-tiny.en", "language": "de"}, timeout=60))
    assert "English-only" in english_only["message"]
    assert error_of(httpx.post(url, files={"file": ("a.wav", b"RIFF")}, data={"model": "/etc/passwd"},
                               timeout=30))["param"] == "model"
    too_big = httpx.post(url, files={"file": ("big.wav", b"\0" * (3 << 20))}, timeout=30)
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "request_too_large"


def test_bad_speech_requests_are_openai_400s(server):
    url = f"{server.url}/audio/speech"
    ok = {"model": "tts-1", "voice": "alloy", "input": "hello"}
    error = error_of(httpx.post(url, json={**ok, "response_format": "mp3"}, timeout=30))
    assert error["param"] == "response_format" and "wav" in error["message"]
    assert error_of(httpx.post(url, json={**ok, "input": "  "}, timeout=30))["param"] == "input"
    assert error_of(httpx.post(url, json={**ok, "voice": "no-such-voice"}, timeout=60))["param"] == "voice"
    assert error_of(httpx.post(url, json={**ok, "voice": "/tmp/x.onnx"}, timeout=30))["param"] == "voice"
    assert error_of(httpx.post(url, json={**ok, "speed": 9}, timeout=30))["param"] == "speed"
    assert error_of(httpx.post(url, json={**ok, "model": "gpt-9"}, timeout=30))["param"] == "model"
    assert error_of(httpx.post(url, content=b"{nope", timeout=30))["message"].endswith("not valid JSON")
    with pytest.raises(openai.BadRequestError) as err:
        client(server).audio.speech.create(model="tts-1", voice="alloy", input="hi", response_format="opus")
    assert "wav" in json.dumps(err.value.body)
