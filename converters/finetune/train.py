"""One fine-tuning run, start to finish, on mlx-lm's trainer.

mlx-lm does the step (`tuner.trainer.train`: the compiled value-and-grad, gradient
accumulation, gradient checkpointing) and the layers (`linear_to_lora_layers`, LoRA and DoRA);
this module drives it through its hooks: our masked loss and resumable batches
(`batches.py`), a `TrainingCallback` that logs every step, evaluates, checkpoints and stops
cleanly on Ctrl-C, and a schedule (linear warm-up, cosine decay to a tenth) held in the
optimizer's state so a resumed run continues it.

The run lives in `OUT.partial/` (options, log, checkpoints) and becomes OUT by one rename when
it finishes: OUT then holds the adapter in mlx-lm's layout, `adapter_config.json`,
`manifest.json`, `train_log.jsonl` and `loss.png`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path

from edgeai.converters.finetune import checkpoint
from edgeai.converters.finetune.base import Base
from edgeai.converters.finetune.plan import TuneOptions
from edgeai.converters.progress import Progress
from edgeai.errors import BadInput, EdgeAIError
from edgeai.fileio import atomic_write

RUN, LOG, MANIFEST, CONFIG, ADAPTER, PLOT = ("run.json", "train_log.jsonl", "manifest.json",
                                             "adapter_config.json", "adapters.safetensors", "loss.png")
TRAINER_COPY = ".mlx-lm-adapters.safetensors"  # mlx-lm's own final save (in place): ours is atomic


class Interrupted(EdgeAIError):
    """Ctrl-C: the run stopped after a step, checkpointed, and can be resumed."""

    exit_code = 130


class Reporter:
    """What a run tells its user; the CLI draws it, tests pass this silent one."""

    stages: Progress = Progress()  # base conversion

    def say(self, line: str) -> None:
        pass

    def step(self, record: dict, total: int) -> None:
        pass

    def evaluated(self, record: dict) -> None:
        pass


@dataclass
class Run:
    """A run's state the callback needs."""

    options: TuneOptions
    partial: Path
    total: int
    done: int  # steps finished before this process started (a resume)
    valid: list
    valid_batch: int
    log: io.TextIOBase | None = None
    stop: bool = False


def partial_of(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def check_out(out: Path, *, force: bool, resume: bool) -> Path:
    """OUT and OUT.partial as the user asked: refuse before anything is loaded."""
    partial = partial_of(out)
    if out.exists() and not force:
        raise BadInput(f"{out} exists", "pass --force to replace it once the new run finishes")
    if resume:
        if not (partial / RUN).is_file():
            raise BadInput(f"nothing to resume: {partial} holds no run", "start the run without --resume")
    elif partial.exists():
        if not force:
            raise BadInput(f"{partial} holds an unfinished run",
                           "continue it with --resume, or start over with --force")
        shutil.rmtree(partial)
    return partial


def resumed_options(partial: Path, flags: dict) -> TuneOptions:
    """The options a run started with; only --iters may change on resume."""
    saved = json.loads((partial / RUN).read_text())["options"]
    for key, value in flags.items():
        if value is None or value is False or key in ("iters", "out", "resume", "force"):
            continue
        if key in saved and saved[key] != value:
            raise BadInput(f"--{key.replace('_', '-')} differs from the run being resumed "
                           f"({value!r} vs {saved[key]!r})", "resume with the options it started with")
    if flags.get("iters"):
        saved["iters"] = flags["iters"]
    return TuneOptions(**saved)


# -- the run -------------------------------------------------------------------------------------
def finetune(options: TuneOptions, settings, *, resume: bool = False, force: bool = False,
             reporter: Reporter | None = None) -> Path:
    """Train per `options` and return OUT. Raises BadInput before loading anything heavy when the
    data, BASE or plan is wrong, Interrupted after a clean Ctrl-C stop."""
    from edgeai.converters.finetune import base as bases
    from edgeai.converters.finetune import data as datasets
    from edgeai.converters.finetune.plan import (
        Shape,
        available_mb,
        clamp_to,
        estimate,
        refuse_if_too_big,
        valid_batch,
    )

    reporter = reporter or Reporter()
    out = Path(options.out).expanduser().resolve()
    partial = partial_of(out)
    located, note = bases.locate(options.base, settings)
    if note and options.method != "qlora":
        reporter.say(f"note: {note}")
        options.method = "qlora"
    tokenizer = load_tokenizer(Path(located.hf_path or located.mlx_path))
    dataset = datasets.load_dataset(Path(options.data), tokenizer, max_seq_len=options.max_seq_len,
                                    train_on_prompt=options.train_on_prompt, seed=options.seed)
    if not dataset.train:
        raise BadInput(f"{options.data}: no training records")
    shape = Shape.from_config(Path(located.hf_path or located.mlx_path) / "config.json")
    clamp_to(options, depth=shape.layers, context=shape.context, train=len(dataset.train),
             valid=len(dataset.valid))
    longest = min(options.max_seq_len, dataset.longest)  # batches are padded to their longest record
    plan = estimate(shape, replace(options, max_seq_len=longest), dense=held_dense(options.method))
    have, where = available_mb()
    refuse_if_too_big(plan, options, have, where)
    if dataset.truncated:
        records = len(dataset.train) + len(dataset.valid) + len(dataset.test)
        reporter.say(f"warning: {dataset.truncated} of {records} records are longer than "
                     f"{options.max_seq_len} tokens (the longest {dataset.longest}): truncated")
    for line in [*options.chosen, *plan.lines()]:
        reporter.say(line)
    reporter.say(f"data: {len(dataset.train)} train / {len(dataset.valid)} valid records "
                 f"({dataset.format}, {dataset.train_tokens:,} train tokens"
                 + (", valid carved off train" if dataset.valid_carved else "") + ")")

    ready = bases.prepare(located, options.method, settings, reporter.stages)
    model, optimizer = build(ready, options)  # OUT.partial appears only once the base has loaded
    started = time.time()
    if not resume:
        partial.mkdir(parents=True, exist_ok=True)
        atomic_write(partial / RUN, json.dumps({"options": options.to_json(), "base": ready.to_json(),
                                                "started": started}, indent=1))
    else:
        started = json.loads((partial / RUN).read_text()).get("started", started)
    run = Run(options=options, partial=partial, total=options.iters, done=0, valid=dataset.valid,
              valid_batch=valid_batch(options, len(dataset.valid)))
    found = checkpoint.latest(partial) if resume else None
    if found:
        checkpoint.restore(found, model, optimizer)
        run.done = found.step
        reporter.say(f"resuming at step {found.step} of {run.total}")
    keep_log(partial / LOG, run.done if found else -1)
    with open(partial / LOG, "a", encoding="utf-8") as log, _stop_on_ctrl_c(run, reporter):
        run.log = log
        if run.done == 0 and run.valid:
            _log(run, {"step": 0, "val_loss": validation_loss(model, run)}, reporter)
        if run.done < run.total:
            _train(model, optimizer, dataset, run, reporter)
    save_adapter(model, partial / ADAPTER)
    return finish(out, run, ready, dataset, plan, started, force=force)


def load_tokenizer(folder: Path):
    from mlx_lm.tokenizer_utils import load as load_tokenizer_files

    try:
        return load_tokenizer_files(folder)
    except (OSError, ValueError) as exc:
        raise BadInput(f"{folder}: its tokenizer does not load ({str(exc).splitlines()[0]})") from None


def build(base: Base, options: TuneOptions):
    """The model with its trainable layers, and the optimizer with its schedule."""
    import mlx.core as mx
    import mlx.optimizers as optim
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    try:
        model, _ = load(base.mlx_path)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        raise BadInput(f"MLX cannot load {base.source}: {str(exc).splitlines()[0]}") from None
    if base.quantized and held_dense(options.method):  # trained against the 4-bit values
        from edgeai.converters.finetune.base import dense_float32

        model = dense_float32(model)
    mx.eval(model.parameters())
    mx.reset_peak_memory()  # the peak a run reports is training's, not the load's transient copies
    mx.random.seed(options.seed)  # the LoRA matrices' initialisation
    model.freeze()
    if options.method == "full":
        for layer in model.layers[-options.lora_layers:]:
            layer.unfreeze()
    else:
        params = lora_parameters(options)
        if options.target_modules:  # kept resolved: run.json, a resume and adapter_config.json use them
            options.target_modules = params["keys"] = module_keys(model, options.target_modules)
        linear_to_lora_layers(model, options.lora_layers, params, use_dora=options.method == "dora")
    warmup = int(options.iters * options.warmup)
    rate = options.learning_rate
    decay = optim.cosine_decay(rate, max(1, options.iters - warmup), rate / 10)
    schedule = (optim.join_schedules([optim.linear_schedule(0.0, options.learning_rate, warmup), decay],
                                     [warmup]) if warmup else decay)
    return model, optim.Adam(learning_rate=schedule)


def save_adapter(model, path: Path) -> None:
    """The trained weights (mlx-lm's adapters.safetensors), written whole or not at all."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.safetensors")
    mx.save_safetensors(str(tmp), dict(tree_flatten(model.trainable_parameters())))
    os.replace(tmp, path)


def held_dense(method: str) -> bool:
    """Whether QLoRA's 4-bit base is held dense for training: on a CPU (no Metal, no CUDA)."""
    if method != "qlora":
        return False
    from edgeai.runtime.mlx import on_cpu

    return on_cpu()


def module_keys(model, names: list[str]) -> list[str]:
    """`--target-modules q_proj,v_proj` as mlx-lm's keys inside a block (`self_attn.q_proj`):
    a name matches a module's full key or its last part; one that matches nothing is an error."""
    import mlx.nn as nn

    inside = [key for key, module in model.layers[-1].named_modules()
              if isinstance(module, (nn.Linear, nn.QuantizedLinear))]
    keys = []
    for name in names:
        found = [key for key in inside if key == name or key.rsplit(".", 1)[-1] == name]
        if not found:
            short = sorted({key.rsplit(".", 1)[-1] for key in inside})
            raise BadInput(f"--target-modules: no linear layer named {name!r}",
                           f"this model's are: {', '.join(short)}")
        keys += [key for key in found if key not in keys]
    return keys


def lora_parameters(options: TuneOptions) -> dict:
    """mlx-lm's `lora_parameters` (its `scale` is our alpha / rank)."""
    params = {"rank": options.rank, "scale": options.alpha / options.rank, "dropout": options.dropout}
    if options.target_modules:
        params["keys"] = list(options.target_modules)
    return params


def _train(model, optimizer, dataset, run: Run, reporter: Reporter) -> None:
    import mlx.core as mx
    from mlx_lm.tuner.trainer import TrainingArgs, train

    from edgeai.converters.finetune.batches import batches, masked_loss

    options = run.options

    def iterate_batches(**_):
        stream = batches(dataset.train, options.batch_size, seed=options.seed,
                         max_seq_len=options.max_seq_len, start=run.done)
        for step, batch in enumerate(stream, start=run.done + 1):
            # dropout's noise is a function of (seed, step), so a resumed step draws what it drew
            mx.random.seed(options.seed * 1_000_003 + step)
            yield batch

    args = TrainingArgs(batch_size=options.batch_size, iters=run.total - run.done, steps_per_report=1,
                        steps_per_eval=run.total + 1, steps_per_save=run.total + 1,
                        adapter_file=str(run.partial / TRAINER_COPY), max_seq_length=options.max_seq_len,
                        grad_checkpoint=options.grad_checkpoint,
                        grad_accumulation_steps=options.grad_accumulation)
    callback = _Callback(model, optimizer, run, reporter)
    with contextlib.redirect_stdout(io.StringIO()):  # mlx-lm's own progress table; ours is on stderr
        train(model=model, optimizer=optimizer, train_dataset=dataset.train, val_dataset=None, args=args,
              loss=masked_loss, iterate_batches=iterate_batches, training_callback=callback)


class _Callback:
    """mlx-lm's TrainingCallback: called after every step (steps_per_report=1)."""

    def __init__(self, model, optimizer, run: Run, reporter: Reporter) -> None:
        self.model, self.optimizer, self.run, self.reporter = model, optimizer, run, reporter

    def on_val_loss_report(self, info: dict) -> None:  # evaluation is ours (see on_train_loss_report)
        pass

    def on_train_loss_report(self, info: dict) -> None:
        run = self.run
        step = run.done + int(info["iteration"])
        record = {"step": step, "loss": round(float(info["train_loss"]), 6),
                  "learning_rate": float(info["learning_rate"]),
                  "tokens_per_second": round(float(info["tokens_per_second"]), 1),
                  "peak_memory_mb": round(float(info["peak_memory"]) * 1e9 / 2**20, 1),
                  "seconds": round(1.0 / float(info["iterations_per_second"]), 4)}
        _log(run, record, self.reporter)
        self.reporter.step(record, run.total)
        options = run.options
        if run.valid and (step % options.eval_every == 0 or step == run.total):
            _log(run, {"step": step, "val_loss": validation_loss(self.model, run)}, self.reporter)
        boundary = step % options.grad_accumulation == 0
        if step < run.total and boundary and (step % options.save_every == 0 or run.stop):
            run.log.flush()
            checkpoint.save(run.partial, step, self.model, self.optimizer)
        if run.stop and boundary and step < run.total:
            raise Interrupted(f"stopped at step {step} of {run.total}; the checkpoint is in {run.partial}",
                              "continue with the same command and --resume")


def validation_loss(model, run: Run) -> float:
    from edgeai.converters.finetune.batches import eval_loss

    examples = run.valid
    if run.options.val_batches > 0:
        examples = examples[: run.options.val_batches * run.valid_batch]
    model.eval()
    try:
        return round(float(eval_loss(model, examples, run.valid_batch, run.options.max_seq_len)), 6)
    finally:
        model.train()


def _log(run: Run, record: dict, reporter: Reporter) -> None:
    run.log.write(json.dumps(record) + "\n")
    run.log.flush()
    if "val_loss" in record:
        reporter.evaluated(record)


def keep_log(path: Path, step: int) -> None:
    """The log up to `step` (what a killed run wrote after its last checkpoint is redone)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and _step_of(line) <= step]
    atomic_write(path, "".join(f"{line}\n" for line in kept))


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # a line cut by a kill: dropped


@contextlib.contextmanager
def _stop_on_ctrl_c(run: Run, reporter: Reporter):
    """The first Ctrl-C stops after the current step with a checkpoint; a second one now."""
    def stop(signum, frame):
        if run.stop:
            raise KeyboardInterrupt
        run.stop = True
        reporter.say("stopping after this step (Ctrl-C again to stop now, losing it)…")

    try:
        previous = signal.signal(signal.SIGINT, stop)
    except ValueError:  # not the main thread: no handler, a KeyboardInterrupt as usual
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# -- OUT -----------------------------------------------------------------------------------------
def finish(out: Path, run: Run, base: Base, dataset, plan, started: float, *, force: bool) -> Path:
    """Write the adapter, its config, the manifest and the plot into OUT.partial, then make it OUT."""
    from edgeai import __version__

    options, partial = run.options, run.partial
    lines = [json.loads(line) for line in (partial / LOG).read_text().splitlines() if line.strip()]
    config = {"model": base.mlx_path, "fine_tune_type": "full" if options.method == "full" else
              ("dora" if options.method == "dora" else "lora"),
              "num_layers": options.lora_layers, "lora_parameters": lora_parameters(options),
              "method": options.method}
    atomic_write(partial / CONFIG, json.dumps(config, indent=1))
    train_lines = [r for r in lines if "loss" in r]
    val_lines = [r for r in lines if "val_loss" in r]
    manifest = {
        "base": base.to_json(), "method": options.method,
        "data": {"path": str(Path(options.data).resolve()), "format": dataset.format,
                 "sha256": dataset.sha256,
                 "files": dataset.files, "train": len(dataset.train), "valid": len(dataset.valid),
                 "test": len(dataset.test), "train_tokens": dataset.train_tokens,
                 "truncated": dataset.truncated, "valid_carved": dataset.valid_carved},
        "hyper": options.to_json(), "chosen": options.chosen,
        "versions": versions(__version__), "started": started, "finished": time.time(),
        "seconds": round(time.time() - started, 1), "steps": run.total,
        "peak_memory_mb": max((r.get("peak_memory_mb", 0) for r in train_lines), default=None),
        "final_loss": train_lines[-1]["loss"] if train_lines else None,
        "first_val_loss": val_lines[0]["val_loss"] if val_lines else None,
        "final_val_loss": val_lines[-1]["val_loss"] if val_lines else None,
        "plan": {"peak_memory_mb": round(plan.total, 1), "weights_mb": round(plan.weights, 1),
                 "trainable_mb": round(plan.trainable, 1), "activations_mb": round(plan.activations, 1),
                 "logits_mb": round(plan.logits, 1), "trainable_params": plan.trainable_params},
    }
    atomic_write(partial / MANIFEST, json.dumps(manifest, indent=1))
    plot_losses(lines, partial / PLOT)
    for name in (RUN, TRAINER_COPY, checkpoint.CURRENT, checkpoint.OLD, checkpoint.NEW):
        target = partial / name
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    if out.exists() and force:
        aside = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, aside)
        os.replace(partial, out)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(partial, out)
    return out


def versions(edgeai_version: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"edgeai": edgeai_version}
    for package in ("mlx", "mlx-lm"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def plot_losses(lines: list[dict], path: Path) -> None:
    """The loss curve (train and valid) as a PNG; skipped without matplotlib (the bench extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
    train = [(r["step"], r["loss"]) for r in lines if "loss" in r]
    valid = [(r["step"], r["val_loss"]) for r in lines if "val_loss" in r]
    if train:
        axes.plot(*zip(*train, strict=True), label="train", linewidth=1)
    if valid:
        axes.plot(*zip(*valid, strict=True), label="valid", marker="o", linewidth=1.5)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write(path, buffer.getvalue())
