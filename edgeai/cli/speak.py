"""`edgeai speak TEXT|- [-o OUT.wav] [--voice NAME]`: text to speech, into a WAV file or the
speakers. Every check that needs no voice (the text, the output folder, the sound device, the
voice's name) runs before a voice loads; synthesis is `edgeai.speech.tts`'s, playback
`edgeai.speech.player`'s, both imported only when the command runs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgeai.errors import BadInput


def _read_text(text: str) -> str:
    if text != "-":
        return text
    raw = sys.stdin.buffer.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"stdin is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
                       "convert it first, e.g. iconv -f latin1 -t utf-8") from None


def _list_voices() -> None:
    from edgeai.speech.voices import default_voice_name, list_voices

    voices = list_voices()
    if not voices:
        default_voice_name()  # raises the one-line "not installed" error with the install hint
    default = default_voice_name()
    for voice in voices:
        mark = "  (default)" if voice.name == default else ""
        also = f"  also: {', '.join(voice.aliases)}" if voice.aliases else ""
        click.echo(f"{voice.name}\t{voice.engine}\t{voice.language}{mark}{also}")


@click.command()
@click.argument("text", required=False)
@click.option("-o", "--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write a 16-bit PCM mono WAV here instead of playing it.")
@click.option("--voice", help="A voice name (see --list-voices) or a piper .onnx file. "
                              "Default: piper's joe; espeak-ng's en-us when piper is missing.")
@click.option("--list-voices", is_flag=True, help="List the voices and exit.")
def speak(text: str | None, out: Path | None, voice: str | None, list_voices: bool) -> None:
    """Say TEXT (or stdin with -): play it, or write it to a WAV with -o."""
    if list_voices:
        _list_voices()
        return
    if text is None:
        raise BadInput("missing TEXT", "edgeai speak 'Hello there.'  or  echo Hello | edgeai speak -")
    text = _read_text(text)
    if not text.strip():
        raise BadInput("nothing to say: the text is empty")
    if out is not None and not out.parent.is_dir():
        raise BadInput(f"cannot write {out}: the folder {out.parent} does not exist")

    from edgeai.speech import tts

    if out is None:
        from edgeai.speech.player import check_output

        check_output()  # no device: one line now, not after synthesis
    loaded = tts.load_voice(voice)  # an unknown name fails before piper is imported
    sentences = tts.stream_speech(loaded, [text])
    if out is not None:
        seconds = tts.write_wav(out, sentences)
        click.echo(f"{out}: {seconds:.1f} s of speech, {loaded.rate} Hz ({loaded.engine}:{loaded.name})",
                   err=True)
        return

    from edgeai.speech.player import Player

    player = Player()
    try:
        player.play_all(sentences)  # speech starts with the first sentence, the rest synthesizes behind
    except KeyboardInterrupt:
        player.stop()
        raise
    finally:
        player.close()
