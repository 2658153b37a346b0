"""Options and helpers the model-using commands share: flags -> Settings, GenParams, a loaded model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from edgeai.config import Settings, load_settings


def model_options(fn: Callable) -> Callable:
    options = [
        click.option("--model", "-m", metavar="ID|PATH|URL",
                     help="Catalog id, .gguf path, or OpenAI-compatible URL (http://host:port/v1#model)."),
        click.option("--backend", metavar="NAME", help="Runtime backend (default: from the model)."),
        click.option("--gpu-layers", type=int, metavar="N",
                     help="Layers to offload to the GPU (default: all, where the build can)."),
        click.option("--threads", type=int, metavar="N",
                     help="CPU threads (default: all cores; the chat app leaves one to the UI)."),
        click.option("--ctx", type=int, metavar="N", help="Context window in tokens (default 4096)."),
        click.option("--chat-template", metavar="NAME|JINJA",
                     help="Override the model's chat template (chatml, gemma, llama3, phi3)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def adapter_option(fn: Callable) -> Callable:
    """`--adapter OUT`: a fine-tuned adapter (`edgeai finetune`'s OUT), on the mlx backend."""
    return click.option("--adapter", metavar="OUT",
                        help="Apply a fine-tuned adapter (the OUT of `edgeai finetune`) on the mlx backend; "
                             "without --model, to the base it was tuned on.")(fn)


def adapter_from(opts: dict[str, Any]) -> str | None:
    """The adapter folder `--adapter` names (None: none), after pointing `opts` at what runs it:
    the run's MLX base when no --model was given, and the mlx backend when none was asked for
    (another one is refused by the loader)."""
    if not opts.get("adapter"):
        return None
    from pathlib import Path

    from edgeai.converters.finetune.export import base_mlx, run_manifest

    run = Path(opts["adapter"]).expanduser()
    info = run_manifest(run)  # a clear error for anything but a finished run
    if not opts.get("model"):
        opts["model"] = str(base_mlx(run, info))
    opts["backend"] = opts.get("backend") or "mlx"
    return str(run.resolve())


def mmproj_option(fn: Callable) -> Callable:
    """`--mmproj PATH`: a VLM's vision projector GGUF, loaded beside the model on llama.cpp."""
    return click.option("--mmproj", metavar="PATH",
                        help="The vision projector (mmproj-*.gguf) of a VLM's GGUF: images then go to "
                             "the model itself instead of through OCR (llamacpp backend).")(fn)


def mmproj_from(opts: dict[str, Any]) -> str | None:
    """The projector `--mmproj` names (None: none), checked from its header before any model
    loads: a missing, non-GGUF, truncated or non-projector file is one line here, not after the
    text model has loaded. Whether it fits that model, llama.cpp tells when it loads."""
    if not opts.get("mmproj"):
        return None
    from edgeai.runtime.llamacpp_mtmd import check_projector

    return str(check_projector(opts["mmproj"]).resolve())


def sampling_options(fn: Callable) -> Callable:
    options = [
        click.option("--max-tokens", type=int, metavar="N", help="Most tokens to generate."),
        click.option("--temperature", type=float, metavar="T", help="0 = greedy."),
        click.option("--top-p", type=float),
        click.option("--top-k", type=int),
        click.option("--min-p", type=float),
        click.option("--repeat-penalty", type=float),
        click.option("--seed", type=int, help="Fix the sampler's seed for repeatable output."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def draft_options(fn: Callable) -> Callable:
    """`--draft MODEL|ngram|auto|off`, `--draft-max`, `--draft-min` (runtime/speculative.py)."""
    options = [
        click.option("--draft", default="auto", show_default=True, metavar="MODEL|ngram|auto|off",
                     help="Speculative decoding: prompt lookup (ngram), a smaller model of the same "
                          "vocabulary, or auto (what `edgeai doctor --tune` measured to win here)."),
        click.option("--draft-max", type=int, metavar="N", help="Most ids drafted per verify (default 16)."),
        click.option("--draft-min", type=int, metavar="N",
                     help="Fewer drafted ids than this are not verified (default 0)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def settings_from(opts: dict[str, Any]) -> Settings:
    settings = load_settings({"model": opts.get("model"), "backend": opts.get("backend"),
                              "n_ctx": opts.get("ctx"), "threads": opts.get("threads"),
                              "gpu_layers": opts.get("gpu_layers")})
    from edgeai.errors import BadInput

    if settings.n_ctx < 16:
        raise BadInput("--ctx must be at least 16 tokens")
    if settings.threads is not None and settings.threads < 1:
        raise BadInput("--threads must be at least 1")
    if settings.n_batch is not None and settings.n_batch < 1:
        raise BadInput("n_batch must be at least 1")
    return settings


SAMPLING_KEYS = ("max_tokens", "temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed")


def sampling_from(opts: dict[str, Any]) -> dict[str, Any]:
    return {k: opts.get(k) for k in SAMPLING_KEYS}


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields a callback(advance_bytes, total_bytes). The bar
    appears with the first advance: work that has nothing to report (the weights already
    assembled) draws nothing, not even the blank line a stopped bar leaves off a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), console=Console(stderr=True), transient=True)
    task: list = []

    def advance(n: int, total: int) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task(description, total=None))
        bar.update(task[0], advance=n, total=total)

    try:
        yield advance
    finally:
        if task:
            bar.stop()


def open_model(settings: Settings, backend: str | None, chat_template: str | None, n_seq: int = 1,
               chat: bool = False, adapter: str | None = None, mmproj: str | None = None, **draft):
    from edgeai.runtime.loader import load_model

    with progress_bar("assembling model weights (first use only)") as advance:
        return load_model(settings, settings.model, backend or settings.backend, chat_template,
                          progress=advance, n_seq=n_seq, chat=chat, adapter=adapter, mmproj=mmproj,
                          **draft)


def with_progress(work: Callable):
    """Run `work(start, tick)` under a progress bar on stderr: `start(name, total)` opens a task
    (a backend, a probe), `tick(label)` advances it and shows what just ran."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        current: dict = {}

        def start(name: str, total: int) -> None:
            current.update(task=progress.add_task(f"{name}: loading", total=total), name=name)

        def tick(label: str) -> None:
            progress.update(current["task"], advance=1, description=f"{current['name']}: {label}")

        return work(start, tick)
