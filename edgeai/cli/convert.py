"""`edgeai convert SRC --to FORMAT [--quant Q] -o OUT [--force]`: export a model and print its
fidelity card. The work is in `edgeai.converters`; this module only draws progress and the card."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeai.converters.progress import Progress
from edgeai.formats import CONVERT_TARGETS, quant_help

FORMATS = (*CONVERT_TARGETS, "all")


class RichProgress(Progress):
    """Each stage a line with a bar (a spinner when its length is unknown), on stderr."""

    def __init__(self, bar):
        self.bar = bar
        self.task = None

    def start(self, name: str, total: int | None = None) -> None:
        if self.task is not None:
            task = self.bar.tasks[-1]
            self.bar.update(self.task, completed=task.total or 1, total=task.total or 1)
        self.task = self.bar.add_task(name, total=total)

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.bar.advance(self.task, n)


class LineProgress(Progress):
    """Off a terminal (stderr redirected, CI, a pipe): one line per stage, then a line at most
    every `every` seconds while it runs, so a long export is never silent."""

    def __init__(self, write=None, every: float = 10.0, clock=None):
        import time

        self.write = write or (lambda line: click.echo(line, err=True))
        self.every, self.clock = every, clock or time.monotonic
        self.began = self.clock()
        self.name, self.total, self.done, self.said = "", None, 0, 0.0

    def start(self, name: str, total: int | None = None) -> None:
        self.name, self.total, self.done = name, total, 0
        self.said = self.clock()
        self.write(f"convert: {name}… ({self.said - self.began:.0f} s)")

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.said >= self.every:
            self.said = now
            of = f"/{self.total}" if self.total else ""
            self.write(f"convert: {self.name} {self.done}{of} ({now - self.began:.0f} s)")


@click.command()
@click.argument("src")
@click.option("--to", "to", required=True, type=click.Choice(FORMATS), help="Target format.")
@click.option("--quant", "-q", metavar="Q", help=quant_help())
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists (only once the new export is whole).")
@click.option("--no-validate", "no_validate", is_flag=True, help="Skip the fidelity check (no report.json).")
@click.option("--json", "as_json", is_flag=True, help="Print report.json instead of the card.")
def convert(src: str, to: str, quant: str | None, out: Path, force: bool, no_validate: bool,
            as_json: bool) -> None:
    """Export SRC (a Hugging Face folder, a .gguf file or a catalog id) to GGUF, MLX, ONNX,
    Core ML or an HF folder, quantized, then check it against SRC: OUT gets the artifact(s),
    manifest.json and report.json."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn

    from edgeai import converters
    from edgeai.errors import BadInput

    if to == "all" and quant:
        raise BadInput("--quant names one format's quantization; with --to all each format takes its default")
    if to == "all":
        from edgeai.converters.staging import check_output

        source = converters.open_source(src)
        check_output(out, force)
    else:  # fail fast, before the progress display starts
        source = converters.prepare(src, out, to=to, quant=quant, force=force)[0]
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    from rich.progress import Progress as Bar

    console = Console(stderr=True)
    with Bar(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        progress = RichProgress(bar) if console.is_terminal else LineProgress()
        if to == "all":
            made = converters.convert_all(source, out, force=force, check=not no_validate, progress=progress)
        else:
            made = [(out, converters.convert(source, out, to=to, quant=quant, force=force,
                                             check=not no_validate, progress=progress))]
    for folder, manifest in made:
        report_file = Path(folder) / converters.REPORT
        report = json.loads(report_file.read_text()) if report_file.is_file() else None
        if as_json:
            click.echo(json.dumps(report or {}, indent=2))
        else:
            click.echo(card(Path(folder), manifest, report))


def _mb(n: float | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1024:.2f} GB" if n >= 1024 else f"{n:.0f} MB"


def card(folder: Path, manifest, report: dict | None) -> str:
    """The export's fidelity card, a few lines a person reads at a glance."""
    checked = (report or {}).get("validate_seconds") or 0.0
    took = (f"{manifest.seconds + checked:.1f} s: export {manifest.seconds:.1f} + check {checked:.1f}"
            if report is not None else f"{manifest.seconds:.1f} s")
    lines = [f"{manifest.format} {manifest.quant} → {folder}  ({_mb(manifest.size_bytes / 2**20)}, "
             f"{took}, peak memory {_mb(manifest.peak_rss_mb)})"]
    for note in manifest.notes:
        lines.append(f"  note: {note}")
    if report is None:
        lines.append("  not validated (--no-validate)")
        return "\n".join(lines)
    if not report["numbers_checked"]:
        lines.append(f"  numbers not checked: {report['why_not_checked']}")
        spec = report.get("spec") or {}
        checks = spec.get("checks", {})
        if checks:
            lines.append("  spec: " + " · ".join(f"{k} {'✓' if ok else '✗'}" for k, ok in checks.items()))
    else:
        divergence = report["first_divergence"]
        where = (f", first divergence in prompt {divergence['sequence']} at token {divergence['position']}"
                 if divergence else "")
        lines.append(f"  vs source ({report['reference']}) on {report['runner']}: top-1 "
                     f"{report['top1_agreement']:.1%} of {report['positions']} positions{where}; "
                     f"max |Δlogit| {report['max_abs_logit_delta']:.3g}")
        short = " (shortened to what the runner takes)" if report["perplexity_text_shortened"] else ""
        lines.append(f"  perplexity on {report['perplexity_text']}, {report['perplexity_tokens']} "
                     f"tokens{short}: {report['perplexity']:.3f} vs {report['perplexity_reference']:.3f} "
                     f"(×{report['perplexity_ratio']:.4f})")
        greedy = ("identical" if report["greedy_equal"] else
                  f"differs from token {report['greedy_first_divergence']}")
        ids = "match" if report["tokenizer_ids_match"] else "DIFFER"
        lines.append(f"  greedy 16 tokens: {greedy}; tokenizer ids {ids}")
    travelled = report.get("travelled") or {}
    if travelled:
        lines.append("  travelled: " + " · ".join(f"{k.replace('_', ' ')} {'✓' if ok else '✗ missing'}"
                                                 for k, ok in travelled.items()))
    return "\n".join(lines)
