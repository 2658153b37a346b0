"""OpenAI's speech API over `edgeai.speech`: /v1/audio/transcriptions and /v1/audio/speech.

Boundary: HTTP in (a multipart upload; a JSON body), OpenAI's response shapes out (json, text,
srt, vtt, verbose_json; WAV bytes); the speech work itself is `edgeai.speech`'s (`stt.transcribe`,
`tts.synthesize`), as `edgeai transcribe` and `edgeai speak` do it.

Whisper engines and voices load lazily, on the first request that names them, once per server
(`Speech`). Every speech job (a load included) runs on a worker thread, never on the event loop,
one at a time: Whisper and piper each use every core, so two at once only slow each other and
the chat. Waiting jobs are bounded like the chat's queue: past `SPEECH_QUEUE` a request is 429
with Retry-After, at once. Uploads are bounded by `Limits.max_upload` (413 before the rest is read).

The multipart body is parsed here (`form_fields`, the standard library's header parser for the
parts' parameters): a transcription upload is one small form, and this keeps the server off
an extra dependency.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import threading
import wave
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message as HeaderMessage
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from edgeai.errors import BadInput, EdgeAIError, describe
from edgeai.serve.app import Served, read_json
from edgeai.serve.requests import ApiError

SPEECH_QUEUE = 8  # speech jobs that may wait behind the running one
TRANSCRIPT_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
# OpenAI's names for its own speech-to-text models: a client written for OpenAI gets the default
OPENAI_STT = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
OPENAI_TTS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
# OpenAI's voices: a client written for OpenAI gets the default voice (piper's joe)
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer",
                 "verse")
FORM_SLACK = 64 << 10  # bytes of form fields and part headers allowed beside the file itself
# verbose_json names the language as OpenAI does ("english"); codes Whisper detects beyond these
# are given as the code
LANGUAGE_NAMES = {"en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian",
                  "pt": "portuguese", "nl": "dutch", "pl": "polish", "ru": "russian", "uk": "ukrainian",
                  "zh": "chinese", "ja": "japanese", "ko": "korean", "ar": "arabic", "hi": "hindi",
                  "tr": "turkish", "sv": "swedish", "da": "danish", "no": "norwegian", "fi": "finnish",
                  "cs": "czech", "el": "greek", "he": "hebrew", "id": "indonesian", "vi": "vietnamese"}


@dataclass(frozen=True)
class Field:
    value: bytes
    filename: str | None = None  # set for a file part

    def text(self) -> str:
        try:
            return self.value.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "a form field is not UTF-8 text") from None


class Speech:
    """A server's speech models and the one-at-a-time gate in front of them."""

    def __init__(self, settings, queue: int = SPEECH_QUEUE) -> None:
        self.settings = settings
        self.queue = queue
        self._engines: dict[str, Any] = {}
        self._voices: dict[str | None, Any] = {}
        self._load = threading.Lock()
        self._gate: asyncio.Semaphore | None = None
        self._waiting = 0

    async def run(self, work: Callable[[], Any]) -> Any:
        """`work` on a worker thread once the jobs ahead have finished; 429 when too many wait."""
        if self._gate is None:  # made on the server's own event loop
            self._gate = asyncio.Semaphore(1)
        if self._waiting >= self.queue:
            raise ApiError(429, "the server is busy: too many speech requests are waiting",
                           code="rate_limit_exceeded", kind="rate_limit_error",
                           headers={"Retry-After": str(max(1, self._waiting))})
        self._waiting += 1
        try:
            await self._gate.acquire()
        finally:
            self._waiting -= 1
        try:
            return await run_in_threadpool(work)
        finally:
            self._gate.release()

    def engine(self, model: str):
        """The faster-whisper engine on `model` (a catalog id), loaded on first use."""
        from edgeai.speech.stt import get_engine

        with self._load:
            if model not in self._engines:
                self._engines[model] = get_engine(model=model, settings=self.settings)
            return self._engines[model]

    def voice(self, name: str | None):
        from edgeai.speech.tts import load_voice

        with self._load:
            if name not in self._voices:
                self._voices[name] = load_voice(name)
            return self._voices[name]


def routes(served: Served) -> list[Route]:
    limits = served.options.limits
    speech = Speech(served.engine.settings)

    async def transcriptions(request: Request) -> Response:
        fields = form_fields(await read_upload(request, limits.max_upload + FORM_SLACK, limits.max_upload),
                             request.headers.get("content-type", ""))
        upload = fields.get("file")
        if upload is None or upload.filename is None:
            raise ApiError(400, "the audio file is missing: send it as the multipart field 'file'",
                           param="file")
        if not upload.value:
            raise ApiError(400, "the audio file is empty (zero bytes)", param="file")
        model = stt_model(fields["model"].text() if "model" in fields else "")
        fmt = fields["response_format"].text() if "response_format" in fields else "json"
        if fmt not in TRANSCRIPT_FORMATS:
            raise ApiError(400, f"response_format must be one of {', '.join(TRANSCRIPT_FORMATS)}, "
                           f"not {fmt!r}", param="response_format")
        language = (fields["language"].text().strip() or None) if "language" in fields else None
        _temperature(fields)
        words = "word" in [f.text() for f in fields.get_all("timestamp_granularities[]")]
        options = _options(language, words)
        transcript = await speech.run(lambda: _transcribe(speech, model, upload, options))
        return transcript_response(transcript, fmt, words)

    async def speak(request: Request) -> Response:
        body = await read_json(request, limits)
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "input must be non-empty text", param="input")
        if len(text) > limits.max_speech_chars:
            raise ApiError(400, f"input is {len(text):,} characters; at most {limits.max_speech_chars:,}",
                           param="input")
        model = body.get("model") or ""
        if not isinstance(model, str) or model not in ("", "piper", "espeak-ng", *OPENAI_TTS):
            raise ApiError(400, f"unknown speech model {model!r}: this server speaks with piper "
                           f"(or espeak-ng); use one of {', '.join(OPENAI_TTS)} or piper", param="model")
        fmt = body.get("response_format") or "wav"  # OpenAI's default is mp3: we have WAV only
        if fmt != "wav":
            raise ApiError(400, f"response_format {fmt!r} is not supported: this server returns wav "
                           "(16-bit PCM)", param="response_format")
        if (body.get("stream_format") or "audio") != "audio":
            raise ApiError(400, "stream_format must be audio (one WAV body)", param="stream_format")
        speed = body.get("speed", 1.0)
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0.25 <= speed <= 4.0:
            raise ApiError(400, "speed must be a number from 0.25 to 4.0", param="speed")
        if speed != 1.0:
            raise ApiError(400, "speed other than 1.0 is not supported by this server", param="speed")
        voice = voice_name(body.get("voice"))
        wav = await speech.run(lambda: _speak(speech, voice, text))
        return Response(wav, media_type="audio/wav")

    return [Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
            Route("/v1/audio/speech", speak, methods=["POST"])]


# -- requests ------------------------------------------------------------------------------------
async def read_upload(request: Request, most: int, file_limit: int) -> bytes:
    """The raw body, 413 past `most` bytes before the rest is read."""
    def too_large() -> ApiError:
        return ApiError(413, f"the upload is over {file_limit / 2**20:.0f} MB", code="request_too_large")

    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > most:
        raise too_large()
    raw = bytearray()
    async for part in request.stream():
        raw += part
        if len(raw) > most:
            raise too_large()
    return bytes(raw)


class Form(dict):
    """Form fields by name (the first of each), with every value of a repeated one."""

    def __init__(self) -> None:
        super().__init__()
        self.repeated: dict[str, list[Field]] = {}

    def add(self, name: str, field: Field) -> None:
        self.setdefault(name, field)
        self.repeated.setdefault(name, []).append(field)

    def get_all(self, name: str) -> list[Field]:
        return self.repeated.get(name, [])


def form_fields(body: bytes, content_type: str) -> Form:
    """A multipart/form-data body -> its fields. Malformed: 400."""
    header = HeaderMessage()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str) or not boundary:
        raise ApiError(400, "send the audio as multipart/form-data with a 'file' field")
    form = Form()
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise ApiError(400, "the multipart body is malformed (no closing boundary)")
    for chunk in chunks[1:-1]:
        head, found, value = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not found or not value.endswith(b"\r\n"):
            raise ApiError(400, "the multipart body is malformed (a part without headers)")
        part = HeaderMessage()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, colon, rest = line.partition(":")
            if colon:
                part[key.strip()] = rest.strip()
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise ApiError(400, "the multipart body is malformed (a part without a name)")
        form.add(name, Field(value[:-2], part.get_filename()))
    return form


def stt_model(name: str) -> str:
    """The request's model -> a catalog id: OpenAI's names mean the default Whisper model."""
    from edgeai.speech.stt import DEFAULT_MODEL

    name = name.strip()
    if not name or name in OPENAI_STT:
        return DEFAULT_MODEL
    if "/" in name or name.startswith("."):  # a client never names files on the server
        raise ApiError(400, f"model {name!r}: name a speech model by its id (whisper-base, "
                       "whisper-tiny.en)", param="model")
    return name


def voice_name(voice: Any) -> str | None:
    """The request's voice -> ours (None: the default). OpenAI's voices mean the default."""
    if voice is None or voice == "":
        return None
    if not isinstance(voice, str):  # OpenAI also takes {"id": ...} for custom voices
        voice = voice.get("id") if isinstance(voice, dict) else None
        if not isinstance(voice, str):
            raise ApiError(400, "voice must be a name", param="voice")
    if voice in OPENAI_VOICES:
        return None
    if "/" in voice or voice.endswith(".onnx"):  # a client never names files on the server
        raise ApiError(400, f"voice {voice!r}: name a voice (see `edgeai speak --list-voices`)",
                       param="voice")
    return voice


def _temperature(fields: Form) -> None:
    """Checked as OpenAI checks it; decoding is Whisper's own (beam search with its temperature
    fallback), the same as `edgeai transcribe`, so the value is not applied."""
    if "temperature" not in fields:
        return
    try:
        value = float(fields["temperature"].text())
    except ValueError:
        raise ApiError(400, "temperature must be a number", param="temperature") from None
    if not 0.0 <= value <= 1.0:
        raise ApiError(400, "temperature must be between 0 and 1", param="temperature")


def _options(language: str | None, words: bool):
    from edgeai.speech.stt import Options

    try:
        return Options(language=language, words=words)
    except BadInput as exc:
        raise ApiError(400, exc.message, param="language") from None


# -- the work (worker threads) -------------------------------------------------------------------
def _transcribe(speech: Speech, model: str, upload: Field, options):
    from edgeai.speech.stt import check_options, transcribe

    try:
        engine = speech.engine(model)
        check_options(engine, options)  # an English-only model asked for German: before decoding
    except BadInput as exc:
        raise ApiError(400, exc.message, param="model") from None
    except EdgeAIError as exc:  # a missing extra, a broken install: the server's, not the client's
        raise ApiError(500, describe(exc), kind="server_error") from None
    name = upload.filename or "the upload"
    suffix = Path(name).suffix[:10] or ".audio"
    with tempfile.NamedTemporaryFile(prefix="edgeai-upload-", suffix=suffix) as handle:
        handle.write(upload.value)
        handle.flush()
        try:
            return transcribe(engine, Path(handle.name), options)
        except BadInput as exc:  # not audio, no samples: said with the client's own file name
            raise ApiError(400, exc.message.replace(handle.name, name).replace(Path(handle.name).name, name),
                           param="file") from None
        except EdgeAIError as exc:
            raise ApiError(500, describe(exc), kind="server_error") from None


def _speak(speech: Speech, voice: str | None, text: str) -> bytes:
    from edgeai.speech.tts import synthesize

    try:
        audio = synthesize(speech.voice(voice), text)
    except BadInput as exc:
        raise ApiError(400, exc.message, param="voice") from None
    except EdgeAIError as exc:
        raise ApiError(500, describe(exc), kind="server_error") from None
    if not audio.pcm:
        raise ApiError(400, "input has nothing to say (no speakable text)", param="input")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(audio.rate)
        out.writeframes(audio.pcm)
    return buffer.getvalue()


# -- responses -----------------------------------------------------------------------------------
def transcript_response(transcript, fmt: str, words: bool) -> Response:
    from edgeai.speech import subtitles

    if fmt == "text":
        return PlainTextResponse(transcript.text + "\n")
    if fmt == "srt":
        return PlainTextResponse(subtitles.srt(transcript))
    if fmt == "vtt":
        return PlainTextResponse(subtitles.vtt(transcript), media_type="text/vtt")
    usage = {"type": "duration", "seconds": max(1, round(transcript.duration))}
    if fmt == "json":
        return JSONResponse({"text": transcript.text, "usage": usage})
    segments = [{"id": i, "start": round(s.start, 3), "end": round(s.end, 3), "text": s.text}
                for i, s in enumerate(transcript.segments)]
    body: dict[str, Any] = {"task": transcript.task,
                            "language": LANGUAGE_NAMES.get(transcript.language, transcript.language),
                            "duration": round(transcript.duration, 3), "text": transcript.text,
                            "segments": segments, "usage": usage}
    if words:
        body["words"] = [{"word": w.word.strip(), "start": round(w.start, 3), "end": round(w.end, 3)}
                         for s in transcript.segments for w in s.words]
    return JSONResponse(body)
