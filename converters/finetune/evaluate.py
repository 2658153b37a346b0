"""`edgeai finetune --eval OUT --data FILE`: the base and the tuned model side by side on held-out data.

Boundary: reads a finished run (OUT) and a JSONL file, loads the run's base once through mlx-lm,
measures it, applies the run's adapter in place (mlx-lm's `load_adapters`) and measures again:
the masked loss and perplexity over the records' answers (data.py's masks, batches.py's
`eval_loss`, so exactly what training minimised) and each record's greedy answer to its prompt.
It writes nothing; `eval_table` turns the result into the lines the CLI prints.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from edgeai.converters.progress import Progress

ANSWER_WIDTH = 100  # characters of each answer the table shows


def evaluate_run(run: Path, data: Path, *, progress: Progress | None = None, max_tokens: int = 48) -> dict:
    """Loss, perplexity and greedy answers of the run's base and of the tuned model on `data` (a
    JSONL file: every record; a data folder: its test split, else valid, else train)."""
    import mlx.core as mx
    from mlx_lm.tuner.utils import load_adapters

    from edgeai.converters.finetune.batches import eval_loss
    from edgeai.converters.finetune.data import load_dataset, read_records
    from edgeai.converters.finetune.export import base_mlx, run_manifest
    from edgeai.errors import BadInput

    progress = progress or Progress()
    run, data = Path(run).expanduser(), Path(data).expanduser()
    if max_tokens < 1:
        raise BadInput(f"the answers need at least 1 token, not {max_tokens}")
    info = run_manifest(run)
    base = base_mlx(run, info)
    hyper = info.get("hyper") or {}
    max_seq_len, batch_size = int(hyper.get("max_seq_len", 2048)), int(hyper.get("batch_size", 4))
    start = time.perf_counter()
    progress.start("evaluating: loading the base", None)
    model, tokenizer = _load(base)
    split = _split(data)
    dataset = load_dataset(data, tokenizer, max_seq_len=max_seq_len, valid_fraction=0.0)
    examples = getattr(dataset, split)
    records = read_records(data)[split]
    prompts = [_prompt(record) for record in records]
    targets = sum(sum(e.mask) for e in examples)
    if not targets:
        raise BadInput(f"{data}: no record has an answer token to score (all cut off at {max_seq_len}?)")
    results = {}
    for side in ("base", "tuned"):
        if side == "tuned":
            progress.start("evaluating: applying the adapter", None)
            load_adapters(model, str(run))
            model.eval()
        progress.start(f"evaluating the {side} model: loss", None)
        loss = eval_loss(model, examples, batch_size, max_seq_len)
        progress.start(f"evaluating the {side} model: greedy answers", sum(p is not None for p in prompts))
        answers = []
        for prompt in prompts:
            answers.append(None if prompt is None else _answer(model, tokenizer, prompt[0], max_tokens))
            if prompt is not None:
                progress.advance()
        results[side] = {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else math.inf,
                         "answers": answers}
        mx.clear_cache()
    rows = [{"question": prompt[1], "expected": prompt[2], "base": b, "tuned": t}
            for prompt, b, t in zip(prompts, results["base"]["answers"], results["tuned"]["answers"],
                                    strict=True) if prompt is not None]
    return {"run": str(run), "data": str(data), "split": split, "format": dataset.format,
            "records": len(records), "target_tokens": int(targets), "truncated": dataset.truncated,
            "max_tokens": max_tokens,
            "base": {k: results["base"][k] for k in ("loss", "perplexity")},
            "tuned": {k: results["tuned"][k] for k in ("loss", "perplexity")},
            "matches": {side: sum(_same(row[side], row["expected"]) for row in rows)
                        for side in ("base", "tuned")},
            "answers": rows, "seconds": round(time.perf_counter() - start, 1)}


def _load(base: Path):
    """The base through mlx-lm; on a CPU with its quantized layers made dense (MLX's quantized CPU
    kernels are ~40x slower, runtime/mlx.py), which the adapter then wraps as it wrapped them."""
    import mlx_lm

    from edgeai.errors import BadInput
    from edgeai.runtime.mlx import is_quantized, on_cpu

    try:
        model, tokenizer = mlx_lm.load(str(base))
    except (ValueError, KeyError, FileNotFoundError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BadInput(f"mlx-lm could not load the base {base}: {first}") from None
    if on_cpu() and is_quantized(model):
        from edgeai.converters.finetune.base import dense_float32

        model = dense_float32(model)
    model.eval()
    return model, tokenizer


def _split(data: Path) -> str:
    """Which split of `data` is held out: a file is itself (data.py reads it as "train")."""
    if data.is_dir():
        return next((s for s in ("test", "valid") if (data / f"{s}.jsonl").is_file()), "train")
    return "train"


def _prompt(record: dict) -> tuple[list[dict], str, str] | None:
    """(the messages before the last assistant turn, the last question, that turn's text), or
    None for a `text` record (nothing to answer)."""
    from edgeai.converters.finetune.data import as_messages

    messages = as_messages(record)
    if not messages:
        return None
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")  # data.py ensures one
    question = next((m["content"] for m in reversed(messages[:last]) if m["role"] == "user"), "")
    return messages[:last], question, messages[last]["content"]


def _answer(model, tokenizer, messages: list[dict], max_tokens: int) -> str:
    from mlx_lm import generate
    from mlx_lm.sample_utils import make_sampler

    from edgeai.converters.finetune.data import encode_prompt

    ids = encode_prompt(tokenizer, messages)
    greedy = make_sampler(temp=0.0)
    return generate(model, tokenizer, ids, max_tokens=max_tokens, sampler=greedy, verbose=False).strip()


def _same(answer: str, expected: str) -> bool:
    return " ".join(answer.split()) == " ".join(expected.split())


def _cell(text: str, width: int = ANSWER_WIDTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def eval_table(result: dict) -> str:
    """The evaluation as a short table: loss and perplexity of both, then the answers side by side."""
    base, tuned = result["base"], result["tuned"]
    change = (tuned["loss"] - base["loss"]) / base["loss"] if base["loss"] else 0.0
    lines = [f"{result['records']} records of {Path(result['data']).name} ({result['split']}, "
             f"{result['target_tokens']} answer tokens)",
             f"{'':8}{'loss':>9}{'perplexity':>13}",
             f"{'base':8}{base['loss']:9.3f}{base['perplexity']:13.2f}",
             f"{'tuned':8}{tuned['loss']:9.3f}{tuned['perplexity']:13.2f}   loss {change:+.0%}"]
    rows = result["answers"]
    if not rows:
        lines.append("(text records: no prompts to answer)")
        return "\n".join(lines)
    matches = result["matches"]
    lines.append(f"greedy answers ({result['max_tokens']} tokens at most) equal to the reference: "
                 f"tuned {matches['tuned']}/{len(rows)}, base {matches['base']}/{len(rows)}")
    for number, row in enumerate(rows, start=1):
        lines += ["", f"{number}. {_cell(row['question'])}",
                  f"   expected  {_cell(row['expected'])}",
                  f"   base      {_cell(row['base'])}",
                  f"   tuned     {_cell(row['tuned'])}"]
    return "\n".join(lines)
