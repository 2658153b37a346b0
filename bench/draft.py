"""The drafting probe: does speculative decoding win on this machine, for this model?

`probe_draft` decodes two kinds of answer — a quote-heavy one (a passage repeated with one word
changed: prompt lookup's best case) and a story (its worst) — greedily, with each candidate
drafter and without, interleaved (off, on, off, on...) in one child process per candidate (a
crash or a refused drafter is that candidate's row, not the tuner's end), and reports median
decode speeds, the speed-up and the accept rate per answer. `doctor --tune` calls it to decide
what `--draft auto` does (edgeai/tuned.py): a candidate is chosen only where it wins overall
and loses nowhere beyond noise, so `auto` is never slower than `off`.

`python -m edgeai.bench.draft [--threads N] [--model ID]` prints the rows (what the issue's note
reports: accept rate and speed-up at 1 and 2 threads).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Callable, Sequence

from edgeai.bench.llm import _emit, run_event_child
from edgeai.bench.texts import PASSAGES

TASKS = {
    "quote": "Repeat this paragraph exactly, changing only the word 'times' to 'days'. Write "
             "nothing else.\n\n" + PASSAGES[0],
    "story": "Write a short story about a lighthouse keeper who finds a message in a bottle.",
}
WIN = 1.05  # the overall speed-up a drafter must reach to be chosen
NOISE = 0.95  # ... and what it may lose on any one answer (the "never slower than off")


def probe_draft(model: str, backend: str, threads: int,
                on_probe: Callable[[str, int], None] = lambda label, total: None,
                on_tick: Callable[[str], None] = lambda label: None, *,
                candidates: Sequence[str] = ("ngram",), repeats: int = 3, warmup: int = 1,
                max_tokens: int = 96, wait_policy: str | None = None) -> tuple[str, float | None, list[dict]]:
    """(choice, speed-up, rows): the drafter `--draft auto` should use ("off" where none wins),
    the chosen one's speed-up (the best candidate's where none won; None where nothing ran), and
    one row per (candidate, answer, off/on) with median tok/s, samples, accept rate, speed-up."""
    rows: list[dict] = []
    for candidate in candidates:
        total = (warmup + repeats) * len(TASKS) * 2
        on_probe(f"draft={candidate} threads={threads}", total)
        try:
            job = {"model": model, "backend": backend, "threads": threads, "draft": candidate,
                   "repeats": repeats, "warmup": warmup, "max_tokens": max_tokens}
            done = run_event_child(["edgeai.bench.draft", "--child", json.dumps(job)], wait_policy, on_tick)
        except RuntimeError as exc:
            rows.append({"draft": candidate, "threads": threads, "error": str(exc)})
            continue
        rows.extend(summarize(done["runs"], candidate, threads))
    return (*decide(rows), rows)


def decide(rows: list[dict]) -> tuple[str, float | None]:
    """The candidate with the best overall speed-up (geometric mean over the answers) among
    those that reach WIN overall and NOISE on every answer; "off" where none does (with the best
    candidate's speed-up, for the record)."""
    measured = []  # (wins, overall speed-up, candidate)
    for candidate in dict.fromkeys(r["draft"] for r in rows if r["draft"] != "off" and "error" not in r):
        ups = [r["speedup"] for r in rows if r["draft"] == candidate and r.get("speedup")]
        if len(ups) == len(TASKS):
            overall = math.exp(sum(math.log(u) for u in ups) / len(ups))
            measured.append((overall >= WIN and min(ups) >= NOISE, overall, candidate))
    if not measured:
        return "off", None
    wins, overall, candidate = max(measured)
    return (candidate if wins else "off"), round(overall, 3)


def summarize(runs: list[dict], candidate: str, threads: int) -> list[dict]:
    """Medians per (answer, off/on); on the drafted rows the speed-up over off, the accept rate,
    and whether the greedy tokens were the same in every pair."""
    rows = []
    for task in TASKS:
        off = [r for r in runs if r["task"] == task and r["draft"] == "off"]
        on = [r for r in runs if r["task"] == task and r["draft"] != "off"]
        base = statistics.median(r["gen_tps"] for r in off) if off else None
        for mode, group in (("off", off), (candidate, on)):
            if not group:
                continue
            speed = statistics.median(r["gen_tps"] for r in group)
            drafted = sum(r["drafted"] or 0 for r in group)
            accepted = sum(r["accepted"] or 0 for r in group)
            row = {"task": task, "threads": threads, "draft": mode, "gen_tps": round(speed, 2),
                   "samples": [round(r["gen_tps"], 2) for r in group], "tokens": group[0]["n"]}
            if mode != "off":
                row.update(drafted=drafted, accepted=accepted,
                           accept_rate=round(accepted / drafted, 3) if drafted else None,
                           speedup=round(speed / base, 3) if base else None,
                           same_tokens=all(r["same"] for r in group))
            rows.append(row)
    return rows


# -- the child: one model, one candidate, the answers interleaved ----------------------------
def child_main(job: dict) -> None:
    from dataclasses import replace

    from edgeai.config import load_settings
    from edgeai.errors import BadInput
    from edgeai.runtime.base import Drafting
    from edgeai.runtime.loader import draft_options, load_model
    from edgeai.types import GenParams, Message

    settings = replace(load_settings({"threads": job["threads"], "n_ctx": 2048}), threads=job["threads"])
    backend, _ = load_model(settings, job["model"], job["backend"], draft=job["draft"])
    if not isinstance(backend, Drafting) or backend.draft == "off":
        raise BadInput(f"the {backend.name} backend cannot draft with {job['draft']}")
    on = draft_options(settings, job["model"], backend, job["draft"])
    params = GenParams(max_tokens=job["max_tokens"], temperature=0)
    runs = []
    for rep in range(job["warmup"] + job["repeats"]):
        for task, text in TASKS.items():
            tokens = {}
            for mode in ("off", job["draft"]):
                backend.set_draft(mode, on["draft_path"] if mode != "off" else None)
                chunks = list(backend.stream([Message("user", text)], params))
                final = chunks[-1]
                tokens[mode] = [t for c in chunks for t in c.token_ids]
                _emit(tick=f"{task} {mode}")
                if rep >= job["warmup"] and final.gen_tps:
                    runs.append({"task": task, "draft": mode, "gen_tps": final.gen_tps,
                                 "drafted": final.drafted, "accepted": final.accepted,
                                 "n": final.completion_tokens})
            if rep >= job["warmup"]:
                same = tokens["off"] == tokens[job["draft"]]
                for run in runs[-2:]:
                    run["same"] = same
    backend.close()
    _emit(done={"runs": runs})


def _main(argv: list[str]) -> int:
    from edgeai.errors import EdgeAIError

    if "--child" in argv:
        try:
            child_main(json.loads(argv[argv.index("--child") + 1]))
        except EdgeAIError as exc:
            print(f"edgeai: error: {exc.message}", file=sys.stderr)
            return 1
        return 0
    import argparse

    from edgeai.config import DEFAULT_MODEL

    parser = argparse.ArgumentParser(prog="python -m edgeai.bench.draft")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--backend", default="llamacpp")
    parser.add_argument("--threads", type=int, action="append")
    parser.add_argument("--draft", action="append", help="candidates (default: ngram)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--wait-policy", choices=("active", "passive", "default"),
                        help="OpenMP wait policy of the child (default: the headless surface's)")
    args = parser.parse_args(argv)
    def dot(label: str) -> None:
        print(".", end="", file=sys.stderr, flush=True)

    for threads in args.threads or [1, 2]:
        choice, speedup, rows = probe_draft(args.model, args.backend, threads, on_tick=dot,
                                            candidates=args.draft or ("ngram",), repeats=args.repeats,
                                            max_tokens=args.max_tokens, wait_policy=args.wait_policy)
        print(file=sys.stderr)
        print(json.dumps({"threads": threads, "choice": choice, "speedup": speedup, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
