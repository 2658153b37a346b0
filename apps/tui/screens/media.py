"""Speech and images on the chat screen: `/image` (and a pasted image path), `/audio`,
push-to-talk, hands-free listening and reading replies aloud.

Boundary: what the user asks of the media (#15), acted out in thread workers so the UI never
waits on a model or a device: the devices and models come from the app's `MediaKit`
(`edgeai.tui.media`), the work from the library (`edgeai.chat.attachments`,
`edgeai.speech.stt` / `streaming` / `tts`, the `Player`). A worker reaches the UI only through
`call_from_thread` of a small function here (none of these workers holds the model's lock, so
waiting for the UI cannot deadlock a turn). Every failure (no microphone, no sound output, a
non-audio file, a corrupt image) is one line in the transcript and leaves the app as it was.

- `/image PATH` copies the image into the data dir (content hash) and shows it above the prompt;
  the next message carries it (`begin_turn(attachments=...)`), chat.db keeps it with the message.
- Push-to-talk (ctrl+t or F4) records from the kit's source with a level meter and the elapsed
  time in the status bar; the second press stops it and the transcript is put in the prompt, to
  be edited and sent. It also silences a reply being read aloud (the user starts talking).
- Hands-free (`/handsfree on`) listens until turned off: streaming partials (VAD on) show in the
  status bar, committed text goes into the prompt, and a pause of `HANDS_FREE_SEND_S` after it
  sends the message.
- Read-aloud (`/speak on`) speaks each reply sentence by sentence while it streams
  (`stream_speech` -> `Player`); Esc or push-to-talk stops it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeai.errors import describe

if TYPE_CHECKING:
    from edgeai.tui.screens.chat import ChatScreen

LEVEL_EVERY_S = 0.1  # status-bar meter updates while recording
BARS = " ▁▂▃▄▅▆▇█"
HANDS_FREE_SEND_S = 2.0  # silence after committed speech that sends it (hands-free)


def _ui(screen: ChatScreen, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run `callback(*args, **kwargs)` on the UI thread from a worker; nothing when the app has gone."""
    try:
        screen.app.call_from_thread(callback, *args, **kwargs)
    except RuntimeError:
        pass


def _fail(screen: ChatScreen, what: str, error: str) -> None:
    screen.status.set(media=None)
    screen.transcript.notice(f"{what}: {error}", error=True)


def meter(level_db: float, width: int = 8) -> str:
    """A dBFS level (-60 silent .. 0 full scale) as a bar of `width` cells."""
    fill = max(0.0, min(1.0, (level_db + 60) / 60)) * width
    whole = int(fill)
    part = BARS[int((fill - whole) * (len(BARS) - 1))] if whole < width else ""
    return ("█" * whole + part).ljust(width, " ")


def level_db(block: Any) -> float:
    import numpy as np

    rms = float(np.sqrt(np.mean(np.square(block)))) if len(block) else 0.0
    return 20 * np.log10(rms) if rms > 1e-6 else -120.0


def clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


# -- /image and pasted paths ----------------------------------------------------------------
def attach(screen: ChatScreen, path: str) -> None:
    """Check and copy an image (worker), then show it above the prompt."""
    if not path.strip():
        screen.transcript.notice("usage: /image PATH (a PNG, JPEG, WebP… file); /image off removes "
                                 "the attached images", error=True)
        return
    if path.strip().lower() in ("off", "none", "clear"):
        screen.pending.clear()
        screen.show_pending()
        return
    screen.status.set(media=f"attaching {Path(path).name}…")
    screen.run_worker(partial(_attach, screen, path.strip()), thread=True, group="media",
                      exit_on_error=False)


def _attach(screen: ChatScreen, path: str) -> None:
    from edgeai.chat.attachments import attach_image

    try:
        record = attach_image(screen.chat_app.settings.home, Path(path).expanduser())
    except Exception as exc:  # BadInput: missing, not an image, corrupt, over the cap
        _ui(screen, _fail, screen, "/image", describe(exc))
        return
    _ui(screen, _attached, screen, record)


def _attached(screen: ChatScreen, record: dict[str, Any]) -> None:
    screen.status.set(media=None)
    if all(r["sha256"] != record["sha256"] for r in screen.pending):
        screen.pending.append(record)
    screen.show_pending()
    screen.prompt.focus()


# -- /audio ------------------------------------------------------------------------------------
def transcribe_file(screen: ChatScreen, path: str) -> None:
    if not path.strip():
        screen.transcript.notice("usage: /audio PATH (wav, flac, ogg, mp3…): its transcript goes into "
                                 "the prompt", error=True)
        return
    name = Path(path.strip()).name
    screen.status.set(media=f"transcribing {name}…")
    screen.run_worker(partial(_transcribe_file, screen, Path(path.strip()).expanduser()), thread=True,
                      group="media", exit_on_error=False)


def _transcribe_file(screen: ChatScreen, path: Path) -> None:
    from edgeai.speech.stt import transcribe

    last = [0.0]

    def progress(done: float, total: float | None) -> None:
        now = time.monotonic()
        if total and now - last[0] >= LEVEL_EVERY_S:
            last[0] = now
            _ui(screen, screen.status.set, media=f"transcribing {path.name} {done / total:.0%}")

    try:
        if not path.is_file():  # before the model loads: a typo is said at once
            from edgeai.errors import BadInput

            raise BadInput(f"no such audio file: {path}")
        engine = screen.chat_app.media.stt(screen.chat_app.settings)
        _ui(screen, screen.status.set, media=f"transcribing {path.name}…")
        text = transcribe(engine, path, progress=progress).text
    except Exception as exc:  # non-audio, zero-length, a missing speech extra
        _ui(screen, _fail, screen, "/audio", describe(exc))
        return
    _ui(screen, _heard, screen, text, f"{path.name}: nothing was heard")


def _heard(screen: ChatScreen, text: str, nothing: str = "nothing was heard") -> None:
    """A transcript into the prompt, after what is there, for the user to edit and send."""
    screen.status.set(media=None)
    if not text.strip():
        screen.notify(nothing, severity="warning")
        return
    prompt = screen.prompt
    before = prompt.text.rstrip()
    prompt.load_text(f"{before} {text.strip()}" if before else text.strip())
    prompt.move_cursor(prompt.document.end)
    prompt.focus()


# -- push-to-talk and hands-free ---------------------------------------------------------------
@dataclass
class Recording:
    source: Any
    hands_free: bool = False
    started: float = field(default_factory=time.monotonic)
    heard_s: float = 0.0  # audio received so far (tests wait on it)
    stopping: bool = False


def toggle_talk(screen: ChatScreen) -> None:
    """The push-to-talk key: start recording, or stop and transcribe."""
    recording = screen.recording
    if recording is not None:
        if recording.hands_free:
            set_hands_free(screen, False)
            return
        recording.stopping = True
        recording.source.stop()  # blocks() ends after the block in flight; the worker transcribes
        screen.status.set(media="transcribing…")
        return
    _listen(screen, hands_free=False)


def set_hands_free(screen: ChatScreen, on: bool) -> None:
    recording = screen.recording
    if not on:
        if screen.send_timer is not None:  # turned off: nothing more is sent on its own
            screen.send_timer.stop()
            screen.send_timer = None
        if recording is not None and recording.hands_free:
            recording.stopping = True
            recording.source.stop()
        screen.hands_free = False
        screen.status.set(media=None)
        return
    if recording is not None:
        screen.notify("Already recording: ctrl+t stops it first", severity="warning")
        return
    screen.hands_free = True
    _listen(screen, hands_free=True)


def _listen(screen: ChatScreen, hands_free: bool) -> None:
    stop_speaking(screen)  # the user starts talking: the reply being read aloud gives way
    try:
        source = screen.chat_app.media.source()
    except Exception as exc:  # noqa: BLE001  NoMicrophone from a source that checks at once
        _fail(screen, "voice input", describe(exc))
        screen.hands_free = False
        return
    screen.recording = recording = Recording(source, hands_free)
    screen.status.set(media="● listening" if hands_free else "● rec 0:00 · ctrl+t stops")
    work = _hands_free if hands_free else _record
    screen.run_worker(partial(work, screen, recording), thread=True, group="talk", exit_on_error=False)


def _record(screen: ChatScreen, recording: Recording) -> None:
    import numpy as np

    from edgeai.speech.stt import Options, transcribe

    blocks: list[Any] = []
    last = 0.0
    try:
        for block in recording.source.blocks():
            blocks.append(block)
            recording.heard_s += len(block) / recording.source.rate
            now = time.monotonic()
            if now - last >= LEVEL_EVERY_S and not recording.stopping:
                last = now
                shown = (f"● rec {clock(now - recording.started)} {meter(level_db(block))} · "
                         "ctrl+t stops")
                _ui(screen, screen.status.set, media=shown)
        _ui(screen, screen.status.set, media="transcribing…")
        if not blocks:
            _ui(screen, _talk_done, screen, recording, "")
            return
        engine = screen.chat_app.media.stt(screen.chat_app.settings)
        # the VAD: a press held in silence must not come back as Whisper's "Thank you."
        text = transcribe(engine, np.concatenate(blocks), Options(vad=True)).text
    except Exception as exc:  # NoMicrophone, a device gone mid-recording, a missing speech extra
        _ui(screen, _talk_failed, screen, recording, describe(exc))
        return
    _ui(screen, _talk_done, screen, recording, text)


def _talk_done(screen: ChatScreen, recording: Recording, text: str) -> None:
    if screen.recording is recording:
        screen.recording = None
    _heard(screen, text)


def _talk_failed(screen: ChatScreen, recording: Recording, error: str) -> None:
    if screen.recording is recording:
        screen.recording = None
    screen.hands_free = False
    _fail(screen, "voice input", error)


def _hands_free(screen: ChatScreen, recording: Recording) -> None:
    from edgeai.speech.streaming import stream_transcribe
    from edgeai.speech.stt import Options

    try:
        engine = screen.chat_app.media.stt(screen.chat_app.settings)
        for part in stream_transcribe(engine, recording.source, Options(vad=True)):
            recording.heard_s = part.end
            _ui(screen, _partial, screen, part.text, part.final)
    except Exception as exc:  # noqa: BLE001
        _ui(screen, _talk_failed, screen, recording, describe(exc))
        return
    _ui(screen, _hands_free_ended, screen, recording)


def _hands_free_ended(screen: ChatScreen, recording: Recording) -> None:
    """The source ended (or was turned off): what was heard stays, a pending send still goes."""
    if screen.recording is recording:
        screen.recording = None
    screen.hands_free = False
    screen.status.set(media=None)


def _partial(screen: ChatScreen, text: str, final: bool) -> None:
    if not text.strip():
        return
    stop_speaking(screen)  # someone is talking
    if screen.send_timer is not None:
        screen.send_timer.stop()
        screen.send_timer = None
    if not final:
        screen.status.set(media=f"● {text[-60:]}")
        return
    _heard(screen, text)
    screen.status.set(media="● listening")
    screen.send_timer = screen.set_timer(HANDS_FREE_SEND_S, partial(_send_heard, screen))


async def _send_heard(screen: ChatScreen) -> None:
    screen.send_timer = None
    text = screen.prompt.text
    if text.strip() and screen.job is None:
        await screen.send(text)


# -- read aloud ----------------------------------------------------------------------------------
class Speaker:
    """One reply read aloud: text fed on the UI thread, spoken sentence by sentence in a worker."""

    def __init__(self, reply_id: int) -> None:
        self.reply_id = reply_id
        self._chunks: queue.Queue[str | None] = queue.Queue()
        self.stopped = threading.Event()
        self.spoken: list[Any] = []  # the Audio pieces handed to the player, in order

    def feed(self, text: str) -> None:
        self._chunks.put(text)

    def end(self) -> None:
        self._chunks.put(None)

    def stop(self) -> None:
        self.stopped.set()
        self._chunks.put(None)

    def chunks(self) -> Iterator[str]:
        while not self.stopped.is_set():
            chunk = self._chunks.get()
            if chunk is None:
                return
            yield chunk


def set_read_aloud(screen: ChatScreen, on: bool) -> None:
    screen.read_aloud = on
    if not on:
        stop_speaking(screen)
    screen.notify("Replies will be read aloud (Esc or ctrl+t stops)" if on else "Read-aloud off")


def reply_text(screen: ChatScreen, reply_id: int, text: str, current: bool) -> None:
    """More of a reply: spoken when read-aloud is on and it is the reply being written here."""
    if not (screen.read_aloud and current and text):
        return
    speaker = screen.speaker
    if speaker is None or speaker.reply_id != reply_id:
        if speaker is not None:
            speaker.stop()
        screen.speaker = speaker = Speaker(reply_id)
        screen.status.set(media="speaking · esc stops")
        screen.refresh_bindings()
        screen.run_worker(partial(_speak, screen, speaker), thread=True, group="speak", exit_on_error=False)
    speaker.feed(text)


def reply_done(screen: ChatScreen, reply_id: int) -> None:
    if screen.speaker is not None and screen.speaker.reply_id == reply_id:
        screen.speaker.end()


def speaking(screen: ChatScreen) -> bool:
    return screen.speaker is not None and not screen.speaker.stopped.is_set()


def stop_speaking(screen: ChatScreen) -> None:
    speaker = screen.speaker
    if speaker is None:
        return
    speaker.stop()
    player = screen.chat_app.media.current_output()
    if player is not None:
        player.stop()  # silences the sentence being played within one block, drops the rest


def _speak(screen: ChatScreen, speaker: Speaker) -> None:
    from edgeai.speech.tts import stream_speech

    kit = screen.chat_app.media
    try:
        voice = kit.speaker_voice()
        player = kit.output()
        for audio in stream_speech(voice, speaker.chunks()):
            if speaker.stopped.is_set():
                break
            player.play(audio)  # raises what broke the player: NoSoundOutput
            speaker.spoken.append(audio)
            player.wait_for_room()  # the next sentence is synthesized while this one plays
            if speaker.stopped.is_set():
                break
        while player.busy and not speaker.stopped.is_set():
            time.sleep(0.03)
        if player.error is not None:
            raise player.error
    except Exception as exc:  # no sound output, no voice: one line, and read-aloud goes off
        kit.drop_output()
        _ui(screen, _speech_failed, screen, speaker, describe(exc))
        return
    _ui(screen, _speech_done, screen, speaker)


def _speech_done(screen: ChatScreen, speaker: Speaker) -> None:
    speaker.stopped.set()
    if screen.speaker is speaker:
        screen.speaker = None
        if screen.recording is None:
            screen.status.set(media=None)
        screen.refresh_bindings()


def _speech_failed(screen: ChatScreen, speaker: Speaker, error: str) -> None:
    _speech_done(screen, speaker)
    screen.read_aloud = False
    screen.notify(f"Read-aloud is off: {error}", severity="error", timeout=10)
