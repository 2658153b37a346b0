"""The chat app's speech devices and models, behind factories a test can replace.

Boundary: where the microphone, the speech-to-text engine, the voice and the sound output come
from; nothing here draws or decides. `MediaKit()` is the real thing: `MicSource` (sounddevice),
faster-whisper on the catalog's Whisper model, piper's voice, a `Player` on the default output.
A test passes `MediaKit(source=lambda: FileSource(wav), player=lambda: Player(open_stream=fake))`
to `EdgeChatApp(media=...)`, so push-to-talk and read-aloud run for real on a file and a fake
sound card. The engine, voice and player are made once, on first use, in a worker thread (a
Whisper model or a piper voice takes a second or more to load); every heavy import happens
there, never at the app's first paint.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgeai.config import Settings


def _mic() -> Any:
    from edgeai.speech.sources import MicSource

    return MicSource()


def _player() -> Any:
    from edgeai.speech.player import Player

    return Player()


def _voice() -> Any:
    from edgeai.speech.tts import load_voice

    return load_voice()


@dataclass
class MediaKit:
    source: Callable[[], Any] = _mic  # a fresh AudioSource per recording
    engine: Callable[[Settings], Any] | None = None  # None: faster-whisper on `stt_model`
    voice: Callable[[], Any] = _voice
    player: Callable[[], Any] = _player
    stt_model: str = "whisper-base"
    _made: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _once(self, name: str, make: Callable[[], Any]) -> Any:
        # under the lock: push-to-talk and /audio at once must not load Whisper twice
        with self._lock:
            if name not in self._made:
                self._made[name] = make()
            return self._made[name]

    def stt(self, settings: Settings) -> Any:
        """The speech-to-text engine (worker thread only: the first call loads the model)."""
        def make() -> Any:
            if self.engine is not None:
                return self.engine(settings)
            from edgeai.config import default_threads
            from edgeai.speech.stt import get_engine

            # one core left to the UI, as the chat model's loader does
            threads = max(1, (settings.threads or default_threads()) - 1)
            return get_engine(model=self.stt_model, settings=settings, threads=threads)

        return self._once("stt", make)

    def speaker_voice(self) -> Any:
        return self._once("voice", self.voice)

    def output(self) -> Any:
        return self._once("player", self.player)

    def current_output(self) -> Any:
        """The player if one was made (stopping speech must not open a sound device)."""
        with self._lock:
            return self._made.get("player")

    def drop_output(self) -> None:
        """Forget a player whose device failed: the next read-aloud opens a fresh one."""
        with self._lock:
            player = self._made.pop("player", None)
        if player is not None:
            player.close()

    def close(self) -> None:
        self.drop_output()

