"""`edgeai run [PROMPT]`: one prompt, the reply streamed to stdout (or one JSON object with --json).

`--image PATH` (repeatable) sends images with the prompt through `edgeai.vision.route`: a model
that sees (a GGUF with its `--mmproj` projector) gets them as they are, a text-only one a fenced
description (OCR, faces, facts); how each was used is printed on stderr ("VLM", "OCR · 42
words") and is the `images` field of --json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edgeai.cli.common import (
    adapter_from,
    adapter_option,
    draft_options,
    mmproj_from,
    mmproj_option,
    model_options,
    open_model,
    sampling_from,
    sampling_options,
    settings_from,
)
from edgeai.errors import BadInput
from edgeai.runtime.base import draft_of
from edgeai.types import Message


def read_prompt(prompt: str | None) -> str:
    """PROMPT itself, or stdin when PROMPT is missing or '-'."""
    if prompt is not None and prompt != "-":
        return prompt
    if sys.stdin is None or sys.stdin.isatty():
        raise BadInput("no prompt given", "edgeai run \"your question\", or pipe text into it")
    try:
        return sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"the prompt on stdin is not UTF-8 text (byte {exc.start})") from None


@click.command()
@click.argument("prompt", required=False)
@model_options
@sampling_options
@click.option("--system", metavar="TEXT", help="System prompt.")
@click.option("--stop", multiple=True, metavar="TEXT", help="Stop sequence (repeatable).")
@click.option("--json-schema", "json_schema", metavar="FILE",
              help="Constrain the reply to JSON matching this schema.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with text and stats.")
@click.option("--image", "images", multiple=True, metavar="PATH",
              type=click.Path(dir_okay=False, path_type=str),
              help="An image sent with the prompt (repeatable); a text-only model gets its OCR text, "
                   "a model with --mmproj the image.")
@draft_options
@adapter_option
@mmproj_option
def run(prompt: str | None, system: str | None, stop: tuple[str, ...], json_schema: str | None,
        as_json: bool, images: tuple[str, ...], draft: str, draft_max: int | None, draft_min: int | None,
        **opts) -> None:
    """Generate a reply to PROMPT (or stdin) and stream it to stdout."""
    from edgeai.runtime.loader import check_overrides, gen_params
    from edgeai.schema import load_json_schema

    text = read_prompt(prompt)
    if not text.strip():
        raise BadInput("the prompt is empty")
    missing = next((p for p in images if not Path(p).is_file()), None)
    if missing is not None:  # before the model loads
        raise BadInput(f"no such image: {missing}")
    schema = load_json_schema(json_schema) if json_schema else None
    adapter = adapter_from(opts)  # the run's base and the mlx backend, unless given
    mmproj = mmproj_from(opts)  # a bad projector file, before the model loads
    settings = settings_from(opts)
    check_overrides(sampling_from(opts))  # before the model loads
    backend, spec = open_model(settings, opts.get("backend"), opts.get("chat_template"), adapter=adapter,
                               mmproj=mmproj, draft=draft, draft_max=draft_max, draft_min=draft_min)
    try:
        params = gen_params(spec, {**sampling_from(opts), "stop": stop or None,
                                   "response_format": schema})
        used: list[str] = []
        if spec.chat:
            head = [Message("system", system)] if system else []
            request: str | list[Message] = head + [Message("user", text, images=tuple(map(Path, images)))]
            if images:
                from edgeai.vision.route import route_images

                request, used = route_images(request, backend.capabilities)
        elif images:
            raise BadInput(f"{spec.id} is a base model: it completes text and cannot take images",
                           "use a chat model (the default model is one)")
        else:  # a base model completes text; it has no conversation format
            request = text
        answer, reasoning, final = [], [], None
        for chunk in backend.stream(request, params):
            answer.append(chunk.text)
            reasoning.append(chunk.reasoning)
            final = chunk if chunk.finish_reason else final
            if not as_json:
                if chunk.reasoning:
                    click.secho(chunk.reasoning, nl=False, err=True, dim=True)
                if chunk.text:
                    click.echo(chunk.text, nl=False)
    finally:
        backend.close()
    if as_json:
        report = _report(answer, reasoning, final, spec.id, backend.name)
        report["format"] = loaded_format(spec, backend.name)
        if images:
            report["images"] = used
        if draft != "off":  # the contract: draft stats whenever drafting was not switched off
            report.update(draft=draft_of(backend),
                          drafted=report["drafted"] or 0, accepted=report["accepted"] or 0)
        else:
            del report["drafted"], report["accepted"]
        click.echo(json.dumps(report))
    else:
        click.echo()
        if used:
            click.secho(f"({', '.join(used)})", err=True, dim=True)


def loaded_format(spec, backend: str) -> str | None:
    """The format of the artifact `backend` loaded (None: nothing local, e.g. echo, remote)."""
    from edgeai.formats import FORMAT_BACKENDS

    return next((fmt for fmt in spec.artifacts if FORMAT_BACKENDS.get(fmt) == backend), None)


def _report(answer: list[str], reasoning: list[str], final, model: str, backend: str) -> dict:
    from edgeai.runtime.base import chunk_stats

    return {"text": "".join(answer), "reasoning": "".join(reasoning), **chunk_stats(final),
            "model": model, "backend": backend}
