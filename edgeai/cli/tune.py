"""`edgeai doctor --tune`: runs bench/tune.py's probes under a progress bar, prints what each
probe measured, and writes the choices into the config file."""

from __future__ import annotations

import click


def run_tune(model: str | None) -> None:
    from edgeai.bench.tune import tune, write_config
    from edgeai.cli.common import with_progress
    from edgeai.config import config_path, default_threads, load_settings
    from edgeai.formats import FORMAT_BACKENDS
    from edgeai.models import resolve
    from edgeai.runtime.loader import pick_backend

    settings = load_settings({"model": model})
    spec = resolve(settings.model, settings)  # fails fast on a missing model
    backend = pick_backend(spec, settings.backend)
    # every installed format of the model, by the backend that runs it: the backend probe's field
    formats = {FORMAT_BACKENDS[fmt]: str(path) for fmt, path in spec.artifacts.items()
               if fmt in FORMAT_BACKENDS}
    result = with_progress(lambda start, tick: tune(settings.model, backend, default_threads(),
                                                   formats=formats, on_probe=start, on_tick=tick))
    for probe in result.probes:
        figures = probe.error or "  ".join(
            f"{name} {value:7.1f} tok/s" for name, value in
            (("prefill", probe.prefill_tps), ("decode", probe.decode_tps)) if value)
        if probe.keypress_p95_s is not None:
            figures += f"  keypress p95 {probe.keypress_p95_s * 1000:5.1f} ms (while streaming)"
        click.echo(f"{probe.what:>8} = {probe.value!s:<10} {figures}")
    for note in result.notes:
        click.echo(f"note: {note}")
    if not result.choice:
        raise click.ClickException("no probe succeeded; the config was not changed")
    path = config_path(settings.home)
    write_config(path, result.choice)
    chosen = ", ".join(f"{key} = {value}" for key, value in result.choice.items())
    click.echo(f"saved to {path}: {chosen}")
