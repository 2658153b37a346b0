"""The openai-whisper engine (PyTorch), on a checkpoint converted from the packaged CT2 weights.

Boundary: a 16 kHz mono float32 array + `Options` -> `Decoded`. The checkpoint is made once by
`ct2_checkpoint` and cached under `<home>/cache/openai-whisper/`; audio is always an array (the
package's own file reader shells out to ffmpeg, which this machine does not have). Nothing here
needs `triton` (GPU kernels only): the timing code's CPU path is numba's. openai-whisper has no
VAD: with the VAD on, speech is cut out with faster-whisper's Silero VAD and timestamps mapped
back, which is what faster-whisper does inside.
"""

from __future__ import annotations

from typing import Any

from edgeai.config import Settings
from edgeai.errors import BadInput
from edgeai.speech.stt import Decoded, ModelFiles, Options, Segment, Word

BEST_OF = 5  # candidates when the temperature fallback samples: faster-whisper's default


class OpenAIWhisperEngine:
    name = "openai-whisper"

    def __init__(self, files: ModelFiles, threads: int, settings: Settings | None = None):
        import torch
        from whisper.model import ModelDimensions, Whisper

        from edgeai.fileio import sha256_file
        from edgeai.speech.ct2_checkpoint import cached_checkpoint

        if settings is None:
            from edgeai.config import load_settings

            settings = load_settings()
        sha = files.sha256 or sha256_file(files.folder / "model.bin")
        path = cached_checkpoint(files.folder, sha, settings.home / "cache" / "openai-whisper")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model = Whisper(ModelDimensions(**ckpt["dims"]))
        model.load_state_dict(ckpt["model_state_dict"])  # strict: a wrong mapping fails here
        heads = ckpt.get("alignment_heads") or []
        if heads:  # OpenAI's word-timing heads for this model (by default: every head of the top half)
            mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
            for layer, head in heads:
                mask[layer, head] = True
            model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
        torch.set_num_threads(threads)
        self._model = model.eval()
        self.model = files.id
        self.multilingual = bool(model.is_multilingual)

    def decode(self, audio: Any, options: Options, language: str | None) -> Decoded:
        import whisper
        from whisper.tokenizer import LANGUAGES

        if language is not None and language not in LANGUAGES:
            raise BadInput(f"Whisper does not know the language {language!r}",
                           "pass a code like en, de, fr, es, ja (ISO 639-1)")
        speech, timeline = (audio, None)
        if options.vad:
            speech, timeline = _speech_only(audio)
            if not len(speech):
                return Decoded(language or "en", [], None)
        result = whisper.transcribe(
            self._model, speech, language=language, task="translate" if options.translate else "transcribe",
            beam_size=options.beam_size if options.beam_size > 1 else None,  # None: greedy, as beam 1
            best_of=BEST_OF, fp16=False, word_timestamps=options.words, verbose=None)
        segments = [_segment(s, timeline) for s in result["segments"]]
        return Decoded(result.get("language") or language or "en", segments, None)


def _speech_only(audio: Any) -> tuple[Any, Any]:
    import numpy as np
    from faster_whisper.vad import SpeechTimestampsMap, VadOptions, collect_chunks, get_speech_timestamps

    from edgeai.speech.audio import RATE

    chunks = get_speech_timestamps(audio, VadOptions())
    if not chunks:
        return np.zeros(0, np.float32), None
    pieces, _ = collect_chunks(audio, chunks)
    return np.concatenate(pieces), SpeechTimestampsMap(chunks, RATE)


def _segment(raw: dict, timeline) -> Segment:
    def at(t: float, is_end: bool = False) -> float:
        return timeline.get_original_time(t, is_end=is_end) if timeline else float(t)

    words = tuple(Word(at(w["start"]), at(w["end"], True), w["word"], float(w.get("probability", 0.0)))
                  for w in raw.get("words") or ())
    return Segment(at(raw["start"]), at(raw["end"], True), raw["text"], words)
