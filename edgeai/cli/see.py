"""`edgeai see IMAGE [QUESTION]`: what is in an image (OCR text, faces, size, colours), and with a
QUESTION the chat model's answer from that description (greedy, on the default model unless
--model). With --json, one object: `text`, `objects`, `size`, ... and `answer` when asked.

The answer goes through the same generation path as `edgeai run` (a loaded backend's `stream`
over chat messages); the image reaches a text-only model as a fenced description
(`edgeai.vision.describe`), and a VLM (a GGUF `--model` with its `--mmproj` projector) as its
pixels, the question beside it. How it was used is printed on stderr ("VLM", "OCR · 42 words")
and is --json's `used`. Without --json a VLM's answer needs no OCR, so none runs.
"""

from __future__ import annotations

import json

import click

from edgeai.cli.common import mmproj_from, mmproj_option
from edgeai.errors import BadInput

# an answer about one image is a sentence or two; this bounds a model that starts to ramble
ANSWER_TOKENS = 256
# room kept in the context for the preamble, the question and the answer when sizing the OCR text
RESERVED_TOKENS = 768
# OCR'd text runs ~3 characters a token (numbers, short words, punctuation)
CHARS_PER_TOKEN = 3


@click.command()
@click.argument("image", type=click.Path(dir_okay=False, path_type=str))
@click.argument("question", required=False)
@click.option("--model", "-m", metavar="ID|PATH|URL",
              help="The chat model that answers (default: the default model).")
@mmproj_option
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: text, lines, objects, size, colours, used (and answer).")
def see(image: str, question: str | None, model: str | None, mmproj: str | None, as_json: bool) -> None:
    """Describe IMAGE (OCR text, faces, size, colours), or answer QUESTION about it."""
    if question is not None and not question.strip():
        raise BadInput("the question is empty")
    if mmproj and question is None:
        raise BadInput("--mmproj is for the model that answers a QUESTION; without one, see only "
                       "describes the image", 'ask: edgeai see IMAGE "what is this?" --model M --mmproj P')
    projector = mmproj_from({"mmproj": mmproj})  # a bad projector file, before anything loads
    if projector and not as_json:  # the model sees the pixels: no OCR to run
        from edgeai.vision.image import open_image

        open_image(image).image.close()  # a bad image fails here, before any model loads
        analysis = report = None
    else:
        from edgeai.vision.analyze import analyze

        analysis = analyze(image)  # a bad image fails here, before any model loads
        report = analysis.to_dict()
    if question is None:
        click.echo(json.dumps(report) if as_json else analysis.describe().text)
        return
    answer, model_id, used = _answer(image, analysis, question, model, projector, stream=not as_json)
    if as_json:
        click.echo(json.dumps({**report, "used": used, "question": question, "answer": answer,
                               "model": model_id}))


def _answer(image: str, analysis, question: str, model: str | None, mmproj: str | None,
            stream: bool) -> tuple[str, str, str]:
    """The chat model's greedy answer, its id and how the image was used; streamed to stdout
    unless `stream` is off. A model that sees gets the image; any other its description."""
    from pathlib import Path

    from edgeai.cli.common import open_model, settings_from
    from edgeai.runtime.loader import gen_params
    from edgeai.types import Message
    from edgeai.vision.describe import image_messages
    from edgeai.vision.route import VLM_LABEL

    settings = settings_from({"model": model})
    backend, spec = open_model(settings, None, None, mmproj=mmproj)
    try:
        if not spec.chat:
            raise BadInput(f"{spec.id} is a base model: it cannot answer questions",
                           "use a chat model (the default model is one)")
        params = gen_params(spec, {"temperature": 0.0, "max_tokens": ANSWER_TOKENS})
        if backend.capabilities.vision:
            messages, used = [Message("user", question.strip(), images=(Path(image),))], VLM_LABEL
        else:
            budget = max(1000, (settings.n_ctx - RESERVED_TOKENS) * CHARS_PER_TOKEN)
            description = analysis.describe(max_chars=budget)
            messages, used = image_messages(question, description), description.label
        parts = []
        for chunk in backend.stream(messages, params):
            parts.append(chunk.text)
            if stream and chunk.text:
                click.echo(chunk.text, nl=False)
    finally:
        backend.close()
    if stream:
        click.echo()
        click.secho(f"({used})", err=True, dim=True)
    return "".join(parts).strip(), spec.id, used
