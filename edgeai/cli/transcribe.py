"""`edgeai transcribe FILE...`: speech to text on local Whisper models (edgeai/speech/stt.py).

Prints the transcript (or, with --json, one object per file per line; --srt/--vtt subtitles).
Progress goes to stderr: a bar on a terminal, a line every 10% off it. Every file is checked
(exists, readable as audio) before the model loads, so a typo fails in a second, in one line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edgeai.config import load_settings

PROGRESS_AFTER_S = 60.0  # audio shorter than this finishes before a progress display helps


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", "-m", metavar="ID|DIR", help="whisper-base (default), whisper-tiny.en, or a "
              "CTranslate2 Whisper folder.")
@click.option("--engine", type=click.Choice(["faster-whisper", "openai-whisper"]), default="faster-whisper",
              show_default=True,
              help="openai-whisper runs a checkpoint converted once from the same weights.")
@click.option("--language", metavar="xx", help="Spoken language (en, de, fr, ...); default: detected.")
@click.option("--translate", is_flag=True, help="Translate the speech into English text.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per file per line: text, language, segments, engine, model, rtf.")
@click.option("--srt", "fmt", flag_value="srt", help="SubRip subtitles.")
@click.option("--vtt", "fmt", flag_value="vtt", help="WebVTT subtitles.")
@click.option("--beam-size", type=click.IntRange(min=1), default=5, show_default=True,
              help="Beam search width; 1 = greedy (fastest).")
@click.option("--vad/--no-vad", default=None,
              help="Skip silence with Silero VAD (default: on for audio over 30 s).")
@click.option("--words", is_flag=True, help="Word timestamps (in --json's segments).")
@click.option("--threads", type=int, metavar="N", help="CPU threads (default: all cores).")
def transcribe(files, model, engine, language, translate, as_json, fmt, beam_size, vad, words,
               threads) -> None:
    """Transcribe audio files (wav, flac, ogg, mp3, ...: any rate, depth and channel count)."""
    from edgeai.cli.common import progress_bar
    from edgeai.errors import BadInput
    from edgeai.speech.audio import probe
    from edgeai.speech.stt import DEFAULT_MODEL, Options, get_engine
    from edgeai.speech.stt import transcribe as run

    if as_json and fmt:
        raise BadInput(f"--json and --{fmt} are two output formats: choose one")
    if threads is not None and threads < 1:
        raise BadInput("--threads must be at least 1")
    options = Options(language=language.lower() if language else None, translate=translate,
                      beam_size=beam_size, vad=vad, words=words)
    infos = [probe(path) for path in files]  # every bad path fails here, before minutes of loading
    settings = load_settings()
    with progress_bar("assembling Whisper weights (first use only)") as advance:
        stt = get_engine(engine, model or DEFAULT_MODEL, settings, threads=threads, progress=advance)
    for path, info in zip(files, infos, strict=True):
        with _progress(path, info.duration) as update:
            transcript = run(stt, path, options, progress=update)
        if as_json:
            row = {"file": str(path), **transcript.to_dict(words=words)}
            click.echo(json.dumps(row, ensure_ascii=False))
        elif fmt:
            from edgeai.speech import subtitles

            click.echo(getattr(subtitles, fmt)(transcript), nl=False)
        else:
            if len(files) > 1:
                click.echo(f"== {path}")
            click.echo(transcript.text)


class _LineProgress:
    """Off a terminal: one line per 10% of the audio, so a log shows that work goes on."""

    def __init__(self, name: str):
        self.name, self.next = name, 0.1

    def __call__(self, done: float, total: float | None) -> None:
        if total and done / total >= self.next:
            click.echo(f"transcribing {self.name}: {100 * done / total:.0f}% "
                       f"({done:.0f} of {total:.0f} s)", err=True)
            while self.next <= done / total:
                self.next += 0.1


class _progress:
    """A context manager yielding the progress callback for one file (nothing for short audio)."""

    def __init__(self, path: Path, duration: float | None):
        self.path, self.duration, self.bar = path, duration, None

    def __enter__(self):
        if self.duration is not None and self.duration < PROGRESS_AFTER_S:
            return None
        if not sys.stderr.isatty():
            return _LineProgress(self.path.name)
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("transcribing {task.description}"), BarColumn(),
                            TextColumn("{task.completed:.0f} s of audio"), TimeElapsedColumn(),
                            console=Console(stderr=True), transient=True)
        self.bar.start()
        task = self.bar.add_task(self.path.name, total=self.duration)
        return lambda done, total: self.bar.update(task, completed=done, total=total)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
