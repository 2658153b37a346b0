"""`edgeai finetune BASE --data PATH -o OUT [...]` and `edgeai finetune --eval OUT --data FILE`:
fine-tune in MLX (LoRA, DoRA, QLoRA, full), resume, export the result, compare it with its base.
The work is in `edgeai.converters.finetune`; this module parses flags and draws progress."""

from __future__ import annotations

import time
from pathlib import Path

import click

from edgeai.converters.finetune.plan import METHODS


def _reporter(console, bar):
    """The run's progress: a bar with loss, rate, tokens/s, memory and ETA on a terminal; off one,
    a line per evaluation and at most one every 10 s between."""
    from edgeai.cli.convert import LineProgress, RichProgress
    from edgeai.converters.finetune.train import Reporter

    class CliReporter(Reporter):
        def __init__(self):
            self.stages = RichProgress(bar) if console.is_terminal else LineProgress()
            self.task, self.said = None, 0.0
            self.val = None

        def say(self, line: str) -> None:
            console.print(line, highlight=False, markup=False, soft_wrap=True)

        def step(self, record: dict, total: int) -> None:
            val = f" · val {self.val:.3f}" if self.val is not None else ""
            fields = (f"loss {record['loss']:.3f}{val}"
                      f" · lr {record['learning_rate']:.2e} · {record['tokens_per_second']:,.0f} tok/s"
                      f" · {record['peak_memory_mb']:,.0f} MB")
            if console.is_terminal:
                if self.task is None:
                    self.task = bar.add_task("train", total=total, completed=record["step"] - 1)
                bar.update(self.task, completed=record["step"], description=f"train · {fields}")
            elif time.monotonic() - self.said >= 10 or record["step"] == total:
                self.said = time.monotonic()
                eta = record["seconds"] * (total - record["step"])
                console.print(f"finetune: step {record['step']}/{total} · {fields} · eta {eta:.0f} s",
                              highlight=False, markup=False, soft_wrap=True)

        def evaluated(self, record: dict) -> None:
            self.val = record["val_loss"]
            if not console.is_terminal or record["step"] == 0:
                console.print(f"finetune: step {record['step']} · val loss {record['val_loss']:.4f}",
                              highlight=False, markup=False, soft_wrap=True)

    return CliReporter()


@click.command()
@click.argument("base", required=False)
@click.option("--data", type=click.Path(path_type=Path), help="JSONL, or a folder of train/valid/test.jsonl.")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="The run's folder (made when done).")
@click.option("--method", type=click.Choice(METHODS), help="lora (default), dora, qlora (4-bit base), full.")
@click.option("--iters", type=int, help="Training steps (default: three passes over the data, 50..1000).")
@click.option("--batch-size", type=int, help="Records per step (default 4; clamped to the data).")
@click.option("--lora-layers", type=int, help="Trained blocks, from the top (default 16).")
@click.option("--rank", type=int, help="LoRA rank (default 8).")
@click.option("--alpha", type=float, help="LoRA alpha; the scale is alpha/rank (default 16).")
@click.option("--dropout", type=float, help="LoRA dropout (default 0).")
@click.option("--target-modules", help="Comma-separated module names to adapt (default: every linear layer).")
@click.option("--learning-rate", type=float, help="Peak learning rate (default 1e-4; warm-up, then cosine).")
@click.option("--warmup", type=float, help="Warm-up, as a fraction of the steps (default 0.1).")
@click.option("--grad-accumulation", type=int, help="Steps whose gradients add up to one update (default 1).")
@click.option("--grad-checkpoint", is_flag=True, help="Recompute activations (less memory).")
@click.option("--max-seq-len", type=int, help="Longer records are truncated, with a warning (default 2048).")
@click.option("--train-on-prompt", is_flag=True, help="Train on prompts too (default: assistant turns only).")
@click.option("--seed", type=int, help="Seed for the LoRA init, the data order, the valid split, dropout.")
@click.option("--eval-every", type=int, help="Steps between valid-loss evaluations (default: ten per run).")
@click.option("--save-every", type=int, help="Steps between checkpoints (default: ten per run).")
@click.option("--config", type=click.Path(path_type=Path), help="A YAML file of these options; flags win.")
@click.option("--resume", is_flag=True, help="Continue the unfinished run in OUT.partial/.")
@click.option("--export", "export_spec", metavar="FORMAT:QUANT,...",
              help="Export the tuned model, e.g. gguf:Q4_K_M,onnx:int4,coreml:int8,mlx:4bit.")
@click.option("--force", is_flag=True, help="Replace OUT (or an unfinished OUT.partial/).")
@click.option("--eval", "eval_run", type=click.Path(path_type=Path),
              help="Compare a finished run OUT with its base on --data (held-out) instead of training.")
def finetune(base, data, out, method, iters, batch_size, lora_layers, rank, alpha, dropout, target_modules,
             learning_rate, warmup, grad_accumulation, grad_checkpoint, max_seq_len, train_on_prompt, seed,
             eval_every, save_every, config, resume, export_spec, force, eval_run) -> None:
    """Fine-tune BASE (a catalog id, HF folder, GGUF or MLX folder) on your data in MLX: LoRA,
    DoRA, QLoRA or full. OUT gets the adapter (mlx-lm's layout), manifest.json, train_log.jsonl
    and loss.png; --export also writes OUT/exports/<format>/ for each format."""
    from edgeai.errors import BadInput

    if eval_run is not None:
        if data is None:
            raise BadInput("--eval needs --data: a held-out JSONL file")
        return _evaluate(eval_run, data)
    if not base or data is None or out is None:
        raise BadInput("finetune needs BASE, --data and -o OUT",
                       "e.g. edgeai finetune qwen2.5-coder-0.5b-instruct --data train.jsonl -o my-lora")
    flags = {"base": base, "data": str(data), "out": str(out), "method": method, "iters": iters,
             "batch_size": batch_size, "lora_layers": lora_layers, "rank": rank, "alpha": alpha,
             "dropout": dropout, "learning_rate": learning_rate, "warmup": warmup,
             "grad_accumulation": grad_accumulation, "grad_checkpoint": grad_checkpoint,
             "max_seq_len": max_seq_len, "train_on_prompt": train_on_prompt, "seed": seed,
             "eval_every": eval_every, "save_every": save_every,
             "target_modules": [m.strip() for m in target_modules.split(",") if m.strip()]
             if target_modules else None}
    targets = None
    if export_spec:
        from edgeai.converters.finetune.export import parse_exports

        targets = parse_exports(export_spec)  # a typo fails now, not after training
    _train(flags, config, resume, force, targets)


def _train(flags: dict, config: Path | None, resume: bool, force: bool, targets) -> None:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from edgeai.config import load_settings
    from edgeai.converters.finetune.plan import resolve_options
    from edgeai.converters.finetune.train import check_out, finetune, resumed_options

    out = Path(flags["out"]).expanduser().resolve()
    partial = check_out(out, force=force, resume=resume)
    options = resumed_options(partial, flags) if resume else resolve_options(flags, config)
    settings = load_settings()
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as bar:
        reporter = _reporter(console, bar)
        folder = finetune(options, settings, resume=resume, force=force, reporter=reporter)
    click.echo(summary(folder))
    if targets:
        _export(folder, targets, settings)


def summary(folder: Path) -> str:
    import json

    manifest = json.loads((folder / "manifest.json").read_text())
    first, last = manifest.get("first_val_loss"), manifest.get("final_val_loss")
    drop = (f"; valid loss {first:.3f} → {last:.3f} ({(last - first) / first:+.0%})".replace("-", "−")
            if first and last is not None else "")
    peak = manifest.get("peak_memory_mb")
    memory = (f"; peak memory {peak:,.0f} MB (planned {manifest['plan']['peak_memory_mb']:,.0f})"
              if peak else "")
    return (f"{manifest['method']} · {manifest['steps']} steps in {manifest['seconds']:.0f} s → {folder}\n"
            f"  train loss {manifest['final_loss']:.3f}{drop}{memory}")


def _export(folder: Path, targets, settings) -> None:
    import json

    from rich.console import Console
    from rich.progress import Progress

    from edgeai.cli.convert import LineProgress, RichProgress, card
    from edgeai.converters.finetune.export import export_run

    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
        progress = RichProgress(bar) if console.is_terminal else LineProgress()
        made = export_run(folder, targets, progress=progress, settings=settings)
    for export_folder, manifest in made:
        report_file = Path(export_folder) / "report.json"
        report = json.loads(report_file.read_text()) if report_file.is_file() else None
        click.echo(card(Path(export_folder), manifest, report))
        click.echo(vs_base_line((report or {}).get("vs_base")))
    adapter = folder / "exports" / "adapter-gguf"
    if adapter.is_dir():
        click.echo(f"adapter-only GGUF (llama.cpp --lora, Ollama ADAPTER) → {adapter}")


def vs_base_line(vs_base: dict | None) -> str:
    """What tuning changed, apart from quantization: the export against the original base."""
    if not vs_base:
        return "  vs base: no base to compare with"
    if not vs_base.get("numbers_checked"):
        return f"  vs base: not compared ({vs_base.get('why_not_checked')})"
    greedy = ("identical" if vs_base["greedy_equal"] else
              f"differs from token {vs_base['greedy_first_divergence']}")
    return (f"  vs base ({vs_base['reference']}): top-1 {vs_base['top1_agreement']:.1%} of "
            f"{vs_base['positions']} positions; perplexity {vs_base['perplexity']:.3f} vs "
            f"{vs_base['perplexity_reference']:.3f} (×{vs_base['perplexity_ratio']:.4f}); greedy {greedy}")


def _evaluate(run: Path, data: Path) -> None:
    from edgeai.converters.finetune.evaluate import eval_table, evaluate_run

    click.echo(eval_table(evaluate_run(run, data)))
