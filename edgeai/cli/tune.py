"""`edgeai doctor --tune`: runs bench/tune.py's probes (threads, batch) on the model's catalog
artifact, then bench/tune_formats.py's over every installed artifact (`models optimize` adds
them), under a progress bar; prints what each probe measured; writes the machine-wide choices
into the config file and the model's (format, the chat's format and why, drafting) into
`<home>/tuned.json`."""

from __future__ import annotations

import click


def run_tune(model: str | None) -> None:
    from edgeai.bench.tune import tune, write_config
    from edgeai.cli.common import with_progress
    from edgeai.config import config_path, default_threads, load_settings
    from edgeai.models import resolve
    from edgeai.models.resolve import installed
    from edgeai.runtime.loader import pick_backend

    settings = load_settings({"model": model})
    spec = resolve(settings.model, settings)  # fails fast on a missing model; the catalog's first
    backend = pick_backend(spec, settings.backend)
    items = installed(settings.model, settings)
    # threads are probed on one fixed artifact (the catalog's), whatever a last tune chose
    first = str(items[0].path) if items else settings.model
    cores = default_threads()
    result = with_progress(lambda start, tick: tune(first, backend, cores, on_probe=start, on_tick=tick))
    for probe in result.probes:
        p95 = probe.keypress_p95_s  # the chat probes': typing while a reply streams
        typing = "" if p95 is None else f"  keypress p95 {p95 * 1000:5.1f} ms"
        click.echo(f"{probe.what:>8} = {probe.value!s:<10} {_figures(probe)}{typing}")
    for note in result.notes:
        click.echo(f"note: {note}")
    if not result.choice:
        raise click.ClickException("no probe succeeded; the config was not changed")
    path = config_path(settings.home)
    write_config(path, result.choice)
    chosen = ", ".join(f"{key} = {value}" for key, value in result.choice.items())
    click.echo(f"saved to {path}: {chosen}")
    tune_model(settings, items, result.choice, cores, backend)


def _figures(probe) -> str:
    return probe.error or "  ".join(
        f"{name} {value:7.1f} tok/s" for name, value in
        (("prefill", probe.prefill_tps), ("decode", probe.decode_tps)) if value)


def tune_model(settings, items, choice: dict, cores: int, backend: str = "llamacpp") -> None:
    """The per-model choices: the fastest installed artifact, the chat's, and drafting."""
    from dataclasses import replace
    from datetime import datetime, timezone

    from edgeai.bench.tune_formats import measured_rows, probe_formats
    from edgeai.cli.common import with_progress
    from edgeai.tuned import ModelTuning, model_tuning, save_model_tuning

    threads = choice.get("threads") or cores
    if len(items) < 2:
        click.echo(f"format: only one format is installed for {settings.model}; "
                   "`edgeai models optimize` builds faster exports")
        formats = None
    else:
        formats = with_progress(lambda start, tick: probe_formats(
            items, threads, cores, wait_policy=choice.get("wait_policy"), on_probe=start, on_tick=tick))
        for probe in formats.probes:
            click.echo(f"  format = {probe.label:<18} {probe.threads}t  {_figures(probe)}")
    old = model_tuning(settings.home, settings.model) or ModelTuning()
    tuning = ModelTuning(draft=old.draft, draft_speedup=old.draft_speedup)
    if formats and formats.winner:
        win, chat = formats.winner, formats.chat
        tuning = replace(tuning, format=win.format, path=win.path, chat_format=chat.format if chat else None,
                         chat_path=chat.path if chat else None, chat_why=formats.chat_why,
                         measured=measured_rows(formats))
        click.echo(f"fastest: {win.label} ({win.decode_tps:.1f} tok/s at {win.threads} threads) "
                   "for run, serve and bench")
        click.echo(f"chat: {chat.label if chat else 'no installed artifact does all the chat needs'}"
                   + (f" — {formats.chat_why}" if formats.chat_why else ""))
        if win.threads != threads:
            # headless commands now run the winner, at the count it was measured best at (the
            # thread probes measured llama.cpp's)
            from edgeai.bench.tune import write_config
            from edgeai.config import config_path

            write_config(config_path(settings.home), {"threads": win.threads})
            click.echo(f"threads = {win.threads} for run, serve and bench: {win.label}'s best count")
            threads = win.threads
    draft = _probe_draft(settings, tuning, threads, choice.get("wait_policy"), backend)
    if draft is not None:
        choice_, speedup, _rows = draft
        tuning = replace(tuning, draft=choice_, draft_speedup=speedup)
        click.echo(f"draft: {choice_}" + (f" (×{speedup:.2f})" if speedup else ""))
    if tuning.format or tuning.draft != "off":
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        tuning = replace(tuning, at=now)
        click.echo(f"tuned.json: {save_model_tuning(settings.home, settings.model, tuning)}")


def _probe_draft(settings, tuning, threads: int, wait_policy: str | None, backend: str):
    """Whether drafting wins on the chosen artifact that can draft (edgeai.bench.draft);
    None when there is no probe or it could not run (then `--draft auto` keeps what it had)."""
    from edgeai.cli.common import with_progress
    from edgeai.errors import EdgeAIError
    from edgeai.formats import FORMAT_BACKENDS
    from edgeai.runtime import get_backend
    from edgeai.runtime.base import Drafting

    try:
        from edgeai.bench.draft import probe_draft
    except ImportError:
        return None
    # the run's artifact, or the chat's where only that one's backend can draft (an ONNX winner
    # cannot; the chat's llama.cpp artifact is what `--draft auto` then matters for)
    choices = [(FORMAT_BACKENDS.get(tuning.format or "", backend), tuning.path or settings.model)]
    if tuning.chat_format and tuning.chat_format != tuning.format:
        choices.append((FORMAT_BACKENDS.get(tuning.chat_format, backend), tuning.chat_path))
    backend, model = next(((name, path) for name, path in choices
                           if isinstance(get_backend(name), Drafting)), choices[0])
    try:
        return with_progress(lambda start, tick: probe_draft(model, backend, threads, start, tick,
                                                             wait_policy=wait_policy))
    except (EdgeAIError, RuntimeError) as exc:
        click.echo(f"draft: not measured on {backend} ({exc})")
        return None
