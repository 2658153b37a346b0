"""`edgeai doctor --tune`: runs bench/tune.py's probes under a progress bar, prints what each
probe measured, and writes the choices into the config file."""

from __future__ import annotations

import click


def run_tune(model: str | None) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from edgeai.bench.tune import tune, write_config
    from edgeai.config import config_path, default_threads, load_settings
    from edgeai.models import resolve
    from edgeai.runtime.loader import pick_backend

    settings = load_settings({"model": model})
    spec = resolve(settings.model, settings)  # fails fast on a missing model
    backend = pick_backend(spec, settings.backend)
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=console) as progress:
        task = {}

        def on_probe(label: str, total: int) -> None:
            if "id" in task:
                progress.update(task["id"], completed=progress.tasks[-1].total)
            task["id"] = progress.add_task(f"probe {label}", total=total)

        result = tune(settings.model, backend, default_threads(), on_probe=on_probe,
                      on_tick=lambda _: progress.advance(task["id"]))
    for probe in result.probes:
        figures = probe.error or "  ".join(
            f"{name} {value:7.1f} tok/s" for name, value in
            (("prefill", probe.prefill_tps), ("decode", probe.decode_tps)) if value)
        click.echo(f"{probe.what:>8} = {probe.value!s:<10} {figures}")
    for note in result.notes:
        click.echo(f"note: {note}")
    if not result.choice:
        raise click.ClickException("no probe succeeded; the config was not changed")
    path = config_path(settings.home)
    write_config(path, result.choice)
    chosen = ", ".join(f"{key} = {value}" for key, value in result.choice.items())
    click.echo(f"saved to {path}: {chosen}")
