"""The `guard` suite: the latency the guard adds to a chat turn (acceptance item 5: p95 <= 20 ms
without the LLM judge).

Every record of the shipped evaluation sets (tests/guard/data) is one turn: the input hook on the
user's message, each passage record screened as a retrieved passage, each output record through
`check_output`, with the audit log written as it is in use (a throwaway home). The first turn is
timed apart (`cold`: regexes compiled, detect-secrets imported); the rest give p50/p95 in ms.
Rows land in the schema-v1 result with suite "guard". Run: python -m edgeai.bench.guard [-o FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "tests" / "guard" / "data"
SYSTEM = "You are a helpful assistant on this computer. Answer briefly and cite the documents you use."


def _records(data: Path) -> list[dict]:
    rows = []
    for name in ("attacks.jsonl", "clean.jsonl"):
        path = data / name
        if path.is_file():
            rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return rows


def _turn(guard, settings, record: dict) -> None:
    """One record as the engine would meet it (a refusal is a normal outcome of the turn)."""
    from edgeai.chat.turn import Ask
    from edgeai.guard import GuardRefused, check_output
    from edgeai.rag.context import Source
    from edgeai.types import Message

    text = record["text"]
    ask = Ask("plain", text)
    if record["source"] == "passage":
        guard(ask, [Message("system", SYSTEM), Message("user", "What does the document say?")])
        guard.screen(ask, Source(1, "doc.txt", None, "lines 1-3", text, 1))
    elif record["source"] == "output":
        check_output(text, settings, surface="plain", system_prompt=SYSTEM)
    else:
        try:
            guard(ask, [Message("system", SYSTEM), Message("user", text)])
        except GuardRefused:
            pass


def run_guard(data: Path = DATA, repeats: int = 3) -> dict:
    from edgeai import __version__
    from edgeai.bench.device import detect, label
    from edgeai.bench.schema import add_row, new_result
    from edgeai.config import load_settings
    from edgeai.guard import hooks
    from edgeai.memory import peak_rss_mb

    records = _records(data)
    if not records:
        raise SystemExit(f"no evaluation records under {data}")
    device = detect()
    result = new_result("guard", device=device, label=label(device, accelerator=False),
                        settings={"records": len(records), "repeats": repeats, "judge": False},
                        versions={"edgeai": __version__, "python": platform.python_version()},
                        source={"tool": "edgeai", "version": __version__})
    with tempfile.TemporaryDirectory(prefix="bench-guard-") as home:
        settings = replace(load_settings(), home=Path(home))
        [guard] = hooks(settings)
        t0 = time.perf_counter()
        _turn(guard, settings, records[0])
        cold = (time.perf_counter() - t0) * 1000
        samples = []
        for _ in range(repeats):
            for record in records:
                t0 = time.perf_counter()
                _turn(guard, settings, record)
                samples.append((time.perf_counter() - t0) * 1000)
    common = {"backend": "guard", "model": "rules+detect-secrets", "quant": None, "threads": 1}
    add_row(result, **common, test="cold", unit="ms", samples=[cold])
    p95 = statistics.quantiles(samples, n=20)[-1]
    add_row(result, **common, test="turn", unit="ms", samples=samples,
            p50_ms=round(statistics.median(samples), 3), p95_ms=round(p95, 3))
    peak = peak_rss_mb()
    for row in result["results"]:
        row["peak_rss_mb"] = peak
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, help="write the result JSON here")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    result = run_guard(repeats=args.repeats)
    turn = next(r for r in result["results"] if r["test"] == "turn")
    print(f"guard: {len(turn['samples'])} turns, p50 {turn['p50_ms']:.2f} ms, p95 {turn['p95_ms']:.2f} ms, "
          f"cold {result['results'][0]['median']:.1f} ms")
    if args.output:
        from edgeai.bench.schema import save_result

        save_result(result, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
