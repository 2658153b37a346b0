"""`edgeai finetune` against raw `mlx_lm lora` with the same config: step time, tokens/s, peak memory.

Both sides train the same MLX base on the same data with the same LoRA layers, rank, scale,
dropout, learning-rate schedule and seed, at batch 1 with every record longer than the
sequence limit (so both truncate to exactly `--seq` tokens), for `--steps` steps each,
interleaved in one run, ABBA (edgeai, raw, raw, edgeai, ...: drift on this noisy machine hits
both alike, and a steady drift cancels). The edgeai side is the real command, `edgeai finetune
BASE --data D -o OUT --iters N --batch-size 1 --max-seq-len S --method M --config C`, read
back from OUT/train_log.jsonl. The
raw side is `python -m mlx_lm lora --model <the MLX folder edgeai trained on> --train ...` with
an mlx-lm YAML config of the same values. Its printed table rounds tokens/s to an integer and
leaves out memory, so the child registers one more `--report-to` callback (mlx-lm's own hook,
the one wandb uses) that writes the trainer's exact per-step figures; nothing else changes.

On a CPU, edgeai's QLoRA holds the 4-bit base's values dense in float32 (converters/finetune/
train.py) where `mlx_lm lora` runs mlx's quantized kernels, so a `qlora` ratio there compares
those two choices; `--method lora` compares the same computation, i.e. edgeai's own overhead.
mlx's CPU quantized kernels in float16 (the 4-bit base's scales and activations) do not finish
one step of a 0.5B model in half an hour; `--float32-base` trains both sides on a copy of that
4-bit base with its floating tensors in float32 (same quantized weights, float32 kernels).

Both sides time a step the same way, because both are mlx-lm's `train()`: from before the
compiled step to after its `mx.eval`, evaluation and checkpoints outside. Per side: the median
step time and tokens/s over steps `--skip`+1.. of every run (steps 1-2 compile and warm up),
the peak of `mx.get_peak_memory()`; and the ratio edgeai ÷ raw of the median step times.

    python -m edgeai.bench.finetune_step BASE [--method qlora] [--steps 10] [--seq 256]
        [--repeats 1] [--skip 2] [--float32-base] [--work DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgeai.fileio import atomic_write

# One set of hyper-parameters, written for each side in its own names. The schedule is cosine
# decay without warm-up: edgeai's (warm-up, cosine to a tenth) and mlx-lm's `lr_schedule` then
# compute the same rates.
HYPER = {"rank": 8, "alpha": 16.0, "dropout": 0.0, "learning_rate": 1e-4, "seed": 0, "lora_layers": 16}
NEVER = 1_000_000  # "every N steps" for evaluations and checkpoints that must not happen mid-run


def write_dataset(dest: Path, *, n_train: int = 12, n_valid: int = 2, words: int = 600) -> Path:
    """`text` records of `words` words each (several hundred tokens under any tokenizer, so a
    record always fills the sequence limit), distinct by rotation, in train.jsonl/valid.jsonl."""
    from edgeai.bench.texts import PASSAGES

    pool = " ".join(PASSAGES).split()
    dest.mkdir(parents=True, exist_ok=True)
    for name, count, offset in (("train", n_train, 0), ("valid", n_valid, n_train)):
        lines = []
        for i in range(offset, offset + count):
            start = (i * 37) % len(pool)
            text = " ".join(pool[(start + j) % len(pool)] for j in range(words))
            lines.append(json.dumps({"text": f"Record {i}. {text}"}))
        (dest / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def edgeai_config(dest: Path) -> Path:
    """The edgeai side's `--config`: the shared values, no warm-up, no evaluation or checkpoint
    inside the run (each would happen between steps, outside the timing, but costs wall time)."""
    import yaml

    config = {**{k: v for k, v in HYPER.items() if k != "seed"}, "warmup": 0.0,
              "eval_every": NEVER, "save_every": NEVER, "val_batches": 1}
    dest.write_text(yaml.safe_dump(config), encoding="utf-8")
    return dest


def raw_config(dest: Path, *, method: str, steps: int, layers: int) -> Path:
    """The same run in mlx-lm's YAML names (scale = alpha / rank)."""
    import yaml

    rate = HYPER["learning_rate"]
    config = {"fine_tune_type": "dora" if method == "dora" else "lora", "num_layers": layers,
              "learning_rate": rate, "seed": HYPER["seed"], "val_batches": 1,
              "lora_parameters": {"rank": HYPER["rank"], "scale": HYPER["alpha"] / HYPER["rank"],
                                  "dropout": HYPER["dropout"]},
              "lr_schedule": {"name": "cosine_decay", "arguments": [rate, steps, rate / 10]}}
    dest.write_text(yaml.safe_dump(config), encoding="utf-8")
    return dest


def step_lines(log: Path) -> list[dict]:
    """The per-step training lines of a train_log.jsonl (evaluation lines left out)."""
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in lines if "seconds" in r]


def run_edgeai(base: str, data: Path, out: Path, config: Path, *, method: str, steps: int, seq: int) -> dict:
    cmd = [sys.executable, "-m", "edgeai", "finetune", base, "--data", str(data), "-o", str(out),
           "--iters", str(steps), "--batch-size", "1", "--max-seq-len", str(seq), "--method", method,
           "--seed", str(HYPER["seed"]), "--config", str(config), "--force"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"edgeai finetune failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return {"steps": step_lines(out / "train_log.jsonl"), "wall_s": round(wall, 1),
            "mlx_path": manifest["base"]["mlx_path"], "hyper": manifest.get("hyper", {})}


def run_raw(model: str, data: Path, adapters: Path, config: Path, *, steps: int, seq: int) -> dict:
    log = adapters / "steps.jsonl"
    lora = ["--model", model, "--train", "--data", str(data), "--iters", str(steps), "--batch-size", "1",
            "--max-seq-length", str(seq), "--steps-per-report", "1", "--steps-per-eval", str(NEVER),
            "--save-every", str(NEVER), "--adapter-path", str(adapters), "-c", str(config)]
    cmd = [sys.executable, "-m", "edgeai.bench.finetune_step", "--raw-child", str(log), *lora]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"raw mlx_lm lora failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return {"steps": step_lines(log), "wall_s": round(wall, 1)}


def child_raw(log: Path, lora_argv: list[str]) -> None:
    """`python -m mlx_lm lora ARGS` in this process, with one reporting callback added through
    `--report-to` that writes each step's figures as edgeai's train_log.jsonl does."""
    from mlx_lm import lora
    from mlx_lm.tuner import callbacks

    log.parent.mkdir(parents=True, exist_ok=True)
    sink = log.open("w", encoding="utf-8")

    class StepLog:
        def __init__(self, **_) -> None:
            pass

        def on_train_loss_report(self, info: dict) -> None:
            sink.write(json.dumps({"step": int(info["iteration"]), "loss": float(info["train_loss"]),
                                   "tokens_per_second": float(info["tokens_per_second"]),
                                   "peak_memory_mb": float(info["peak_memory"]) * 1e9 / 2**20,
                                   "seconds": 1.0 / float(info["iterations_per_second"])}) + "\n")
            sink.flush()

        def on_val_loss_report(self, info: dict) -> None:
            pass

    callbacks.SUPPORT_CALLBACK["edgeai-bench"] = StepLog
    sys.argv = ["mlx_lm.lora", *lora_argv, "--report-to", "edgeai-bench"]
    lora.main()
    sink.close()


def float32_base(base: str, dest: Path) -> str:
    """The 4-bit MLX base edgeai's QLoRA trains on (made through the same cached path), copied
    to `dest` with every floating tensor in float32; the packed 4-bit weights are unchanged."""
    import shutil

    import mlx.core as mx

    from edgeai.config import load_settings
    from edgeai.converters.finetune.base import locate, prepare
    from edgeai.converters.progress import Progress

    settings = load_settings()
    located, _ = locate(base, settings)
    source = Path(prepare(located, "qlora", settings, Progress()).mlx_path)
    dest.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.suffix == ".safetensors":
            weights = mx.load(str(path))
            mx.save_safetensors(str(dest / path.name), {
                k: v.astype(mx.float32) if mx.issubdtype(v.dtype, mx.floating) else v
                for k, v in weights.items()})
        elif path.name == "config.json":
            config = json.loads(path.read_text(encoding="utf-8"))
            (dest / path.name).write_text(json.dumps({**config, "torch_dtype": "float32"}, indent=2))
        elif path.is_file():
            shutil.copy2(path, dest / path.name)
    return str(dest)


def counted(steps: list[dict], skip: int) -> list[dict]:
    """The steps after the first `skip` (all of them in a run too short to skip any)."""
    return [s for s in steps if s["step"] > skip] or steps


def summarize(runs: list[dict], skip: int) -> dict:
    """Medians over the counted steps of every run, and the peak memory of all of them."""
    kept = [s for run in runs for s in counted(run["steps"], skip)]
    return {"step_s": statistics.median(s["seconds"] for s in kept),
            "tokens_per_s": statistics.median(s["tokens_per_second"] for s in kept),
            "peak_memory_mb": max(s["peak_memory_mb"] for run in runs for s in run["steps"]),
            "steps_counted": len(kept),
            "run_medians_s": [_median(run, skip) for run in runs]}


def compare(base: str, *, method: str = "qlora", steps: int = 10, seq: int = 256, repeats: int = 1,
            skip: int = 2, work: Path, float32: bool = False, say=lambda line: None) -> dict:
    """Run both sides `repeats` times, interleaved, and return the settings, samples and medians."""
    if float32:
        base = float32_base(base, work / "base-float32")
        say(f"float32 copy of the 4-bit base: {base}")
    data = write_dataset(work / "data")
    config = edgeai_config(work / "edgeai.yaml")
    samples: dict[str, list[dict]] = {"edgeai": [], "raw": []}
    first = run_edgeai(base, data, work / "edgeai-1", config, method=method, steps=steps, seq=seq)
    # the base edgeai trained on (QLoRA's 4-bit one) and its LoRA depth (clamped to the model)
    layers = int(first["hyper"].get("lora_layers", HYPER["lora_layers"]))
    raw_yaml = raw_config(work / "raw.yaml", method=method, steps=steps, layers=layers)
    def ours(i: int) -> dict:
        return first if i == 0 else run_edgeai(base, data, work / f"edgeai-{i + 1}", config, method=method,
                                               steps=steps, seq=seq)

    def theirs(i: int) -> dict:
        return run_raw(first["mlx_path"], data, work / f"raw-{i + 1}", raw_yaml, steps=steps, seq=seq)

    for i in range(repeats):
        if i % 2 == 0:  # ABBA (edgeai, raw, raw, edgeai, ...): a steady drift in the load cancels out
            edge = ours(i)
            raw = theirs(i)
        else:
            raw = theirs(i)
            edge = ours(i)
        samples["edgeai"].append(edge)
        samples["raw"].append(raw)
        say(f"[{i + 1}/{repeats}] edgeai {_median(edge, skip):.3f} s/step, "
            f"raw {_median(raw, skip):.3f} s/step")
    medians = {side: summarize(runs, skip) for side, runs in samples.items()}
    settings = {"base": base, "float32_base": float32, "mlx_path": samples["edgeai"][0]["mlx_path"],
                "method": method, "steps": steps, "seq": seq, "batch_size": 1, "repeats": repeats,
                "skip": skip,
                "hyper": {**HYPER, "lora_layers": layers, "schedule": "cosine decay to a tenth, no warm-up"}}
    return {"settings": settings, "medians": medians,
            "ratio": medians["edgeai"]["step_s"] / medians["raw"]["step_s"], "samples": samples}


def _median(run: dict, skip: int) -> float:
    return statistics.median(s["seconds"] for s in counted(run["steps"], skip))


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(prog="python -m edgeai.bench.finetune_step",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("base", nargs="?", help="what `edgeai finetune` takes: catalog id, HF/MLX folder, GGUF")
    ap.add_argument("--method", default="qlora", choices=("lora", "dora", "qlora"))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--seq", type=int, default=256, help="sequence length (every record is longer)")
    ap.add_argument("--repeats", type=int, default=1, help="runs per side, interleaved")
    ap.add_argument("--skip", type=int, default=2,
                    help="leading steps left out of the medians (compile, warm-up)")
    ap.add_argument("--float32-base", action="store_true",
                    help="qlora: both sides train on the 4-bit base with float32 scales and activations "
                         "(mlx's float16 quantized CPU kernels take tens of minutes a step)")
    ap.add_argument("--work", type=Path,
                    help="keep the data, configs and runs here (default: a temporary folder)")
    ap.add_argument("--json", type=Path, help="also write the settings, samples and medians here")
    ap.add_argument("--raw-child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.raw_child:
        child_raw(Path(args.raw_child[0]), args.raw_child[1:])
        return None
    if not args.base:
        ap.error("BASE is required")
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="finetune-step-") as tmp:
        result = compare(args.base, method=args.method, steps=args.steps, seq=args.seq, repeats=args.repeats,
                         skip=args.skip, work=args.work or Path(tmp), float32=args.float32_base, say=say)
    med = result["medians"]
    for side in ("edgeai", "raw"):
        m = med[side]
        print(f"{side:>6}: {m['step_s']:.3f} s/step, {m['tokens_per_s']:.1f} tokens/s, "
              f"peak {m['peak_memory_mb']:.0f} MiB (median of {m['steps_counted']} steps)")
    print(f"edgeai finetune ÷ raw mlx_lm lora ({args.method}, batch 1, seq {args.seq}, steps "
          f"{args.skip + 1}-{args.steps} of {args.repeats} interleaved run(s) each): x{result['ratio']:.3f}")
    if args.json:
        atomic_write(args.json, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
