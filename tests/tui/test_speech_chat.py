"""Speech in the chat app (#15): push-to-talk fed from a file played as a live source puts the
transcript in the prompt, `/audio` does the same for a file, read-aloud speaks each sentence of
a reply into a fake sound card and stops on Esc, and a missing microphone or sound output is
one line. Real components throughout (piper's voice, faster-whisper tiny.en, the `Player`);
only the devices are stand-ins: a `FileSource` for the microphone, a recording stream for the
sound card (`Player(open_stream=...)`)."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import pytest

from edgeai.config import Settings
from edgeai.speech.player import NoSoundOutput, Player
from edgeai.speech.sources import FileSource, NoMicrophone
from edgeai.tui.media import MediaKit

SPOKEN = "Please remind me to water the garden tomorrow morning."


def _speech_ready() -> bool:
    if importlib.util.find_spec("faster_whisper") is None or importlib.util.find_spec("piper") is None:
        return False
    from edgeai.models import find_entry
    from edgeai.models.resolve import package_installed

    return package_installed(find_entry("whisper-tiny.en").artifacts[0])


pytestmark = pytest.mark.skipif(not _speech_ready(), reason="needs the speech and tts extras (scripts/setup)")


@pytest.fixture(scope="session")
def voice():
    from edgeai.speech.tts import load_voice

    return load_voice()


@pytest.fixture(scope="session")
def tiny(session_models, tmp_path_factory):
    from edgeai.speech.stt import get_engine

    settings = Settings(home=tmp_path_factory.mktemp("tui-stt"), models_home=session_models)
    return get_engine("faster-whisper", "whisper-tiny.en", settings, threads=2)


@pytest.fixture(scope="session")
def clip(voice, tmp_path_factory) -> tuple[Path, float]:
    """piper speaking SPOKEN, then 3 s of silence (so push-to-talk is stopped by the key, not by
    the file ending): the WAV and how long the speech lasts."""
    from edgeai.speech.tts import Audio, synthesize, write_wav

    speech = synthesize(voice, SPOKEN)
    silence = Audio(b"\0\0" * voice.rate * 3, voice.rate, "", 0.0, 0.0)
    path = tmp_path_factory.mktemp("tui-speech") / "ask.wav"
    write_wav(path, [speech, silence])
    return path, speech.duration_s


def _words(text: str) -> set[str]:
    return {w.strip(".,!?").lower() for w in text.split()}


class FakeSoundCard:
    """sounddevice's RawOutputStream as the Player uses it, playing at `speed` x real time."""

    def __init__(self, rate: int, log: list, speed: float = 8.0) -> None:
        self.rate, self.speed, self.log = rate, speed, log
        self.written = 0
        self.aborts = 0

    def start(self) -> None: ...

    def write(self, data: bytes) -> None:
        time.sleep(len(data) / 2 / self.rate / self.speed)
        self.written += len(data)
        self.log.append(len(data))

    def abort(self) -> None:
        self.aborts += 1

    def close(self) -> None: ...


def card(speed: float = 8.0):
    cards: list[FakeSoundCard] = []
    log: list[int] = []

    def open_stream(rate: int) -> FakeSoundCard:
        cards.append(FakeSoundCard(rate, log, speed))
        return cards[-1]

    return cards, log, open_stream


async def test_push_to_talk_puts_the_transcript_in_the_prompt(make_app, settle, until, tiny, clip):
    wav, speech_s = clip
    app = make_app(media=MediaKit(source=lambda: FileSource(wav, speed=2.0), engine=lambda s: tiny))
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(pilot)
        screen = app.chat
        screen.prompt.load_text("Hey,")  # what is typed stays; the transcript follows it
        await pilot.press("ctrl+t")
        recording = screen.recording
        assert recording is not None and not recording.hands_free
        await until(pilot, lambda: "● rec 0:0" in screen.status.plain)
        assert "ctrl+t stops" in screen.status.plain
        await until(pilot, lambda: recording.heard_s >= speech_s + 0.3, timeout=20)
        await pilot.press("f4")  # the other push-to-talk key: stops and transcribes
        await settle(pilot)
        assert screen.recording is None and "rec" not in screen.status.plain
        text = screen.prompt.text
        assert text.startswith("Hey, ") and {"water", "garden", "tomorrow"} <= _words(text), text
        assert recording.heard_s < speech_s + 2.5  # stopped by the key, before the file's end


async def test_audio_command_transcribes_a_file_into_the_prompt(make_app, settle, send, tiny, clip, tmp_path):
    wav, _ = clip
    app = make_app(media=MediaKit(engine=lambda s: tiny))
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(pilot)
        await send(pilot, f"/audio {wav}")
        assert {"remind", "garden", "morning"} <= _words(app.chat.prompt.text)
        app.chat.prompt.clear()
        junk = tmp_path / "notes.wav"
        junk.write_text("not audio")
        await send(pilot, f"/audio {junk}")
        errors = [str(n.render()) for n in app.chat.query(".notice.-error")]
        assert len(errors) == 1 and errors[0].startswith("/audio: ") and "\n" not in errors[0]
        assert app.chat.prompt.text == "" and app.chat.status.state.media is None


async def test_no_microphone_is_one_line_and_the_app_carries_on(make_app, settle, send):
    class Unplugged:  # what MicSource does on a machine without an input device
        rate = 16000

        def blocks(self):
            raise NoMicrophone("no microphone: Error querying device -1", "connect an input device")

        def stop(self) -> None: ...

    app = make_app(media=MediaKit(source=Unplugged))
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+t")
        await settle(pilot)
        errors = [str(n.render()) for n in app.chat.query(".notice.-error")]
        assert errors == ["voice input: no microphone: Error querying device -1 "
                          "(hint: connect an input device)"]
        assert app.chat.recording is None and app.chat.status.state.media is None
        await send(pilot, "still here?")
        assert app.chat.transcript.last("assistant").content == "Echo: still here?"


async def test_read_aloud_speaks_each_sentence_and_esc_stops_it(make_app, settle, send, until, voice):
    cards, log, open_stream = card(speed=8.0)
    app = make_app(media=MediaKit(voice=lambda: voice, player=lambda: Player(open_stream=open_stream)))
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(pilot)
        screen = app.chat
        await send(pilot, "/speak on")
        assert screen.read_aloud
        await send(pilot, "The sun is up. Birds sing today. We walk home.", wait=False)
        await until(pilot, lambda: screen.speaker is not None)
        speaker = screen.speaker
        await settle(pilot)
        sentences = ["Echo: The sun is up.", "Birds sing today.", "We walk home."]
        assert [a.text for a in speaker.spoken] == sentences
        assert sum(log) == sum(len(a.pcm) for a in speaker.spoken)  # every sentence played whole
        assert screen.speaker is None and screen.status.state.media is None

        # a long reply, played in real time: Esc stops it within a block and drops the rest
        cards[0].speed = 1.0
        log.clear()
        long = " ".join(f"Sentence number {n} is here." for n in range(1, 13))
        await send(pilot, long, wait=False)
        await until(pilot, lambda: screen.speaker is not None)
        speaker = screen.speaker
        await until(pilot, lambda: sum(log) > 0, timeout=20)
        assert "speaking" in screen.status.plain
        started = time.monotonic()
        await pilot.press("escape")
        await settle(pilot)
        assert time.monotonic() - started < 3
        assert speaker.stopped.is_set() and screen.speaker is None
        played_s = sum(log) / 2 / cards[0].rate
        assert played_s < 2.0 and len(speaker.spoken) <= 2  # synthesis runs one sentence ahead
        assert cards[0].aborts >= 1


async def test_no_sound_output_is_one_notification_and_read_aloud_goes_off(make_app, settle, send, voice):
    def no_card(rate: int):
        raise NoSoundOutput("no sound output device", "write a file instead: edgeai speak TEXT -o OUT.wav")

    notes: list[str] = []
    app = make_app(media=MediaKit(voice=lambda: voice, player=lambda: Player(open_stream=no_card)))
    async with app.run_test(size=(100, 32)) as pilot:
        real_notify = app.notify
        app.notify = lambda message, **kw: (notes.append(str(message)), real_notify(message, **kw))
        await settle(pilot)
        await send(pilot, "/speak on")
        await send(pilot, "Hello there.")
        assert not app.chat.read_aloud and app.chat.speaker is None
        assert notes[-1].startswith("Read-aloud is off: no sound output device") and "\n" not in notes[-1]
        assert app.chat.transcript.last("assistant").content == "Echo: Hello there."
        assert threading.active_count() < 50


async def test_hands_free_streams_partials_and_a_pause_sends_what_was_said(make_app, settle, send, until,
                                                                          tiny, clip):
    wav, _ = clip
    app = make_app(media=MediaKit(source=lambda: FileSource(wav, speed=1.5), engine=lambda s: tiny))
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(pilot)
        screen = app.chat
        await send(pilot, "/handsfree on", wait=False)
        await until(pilot, lambda: screen.recording is not None and screen.recording.hands_free)
        assert screen.status.plain.endswith("● listening") or "●" in screen.status.plain
        await until(pilot, lambda: screen.transcript.last("user") is not None, timeout=30)
        await settle(pilot)
        sent = screen.transcript.last("user").content
        assert {"water", "garden"} <= _words(sent), sent
        assert screen.transcript.last("assistant").content.startswith("Echo: ")
        assert screen.recording is None and not screen.hands_free and screen.prompt.text == ""
