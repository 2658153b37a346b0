"""`edgeai run` as a user runs it against raw llama-cpp-python as a user runs that: decode speed.

The edgeai side is the real command, `edgeai run --json --temperature 0 --max-tokens N ESSAY`,
with whatever this machine's tuning chose (the artifact `doctor --tune` recorded, its threads
and wait policy). The raw side is llama-cpp-python with its own defaults on the catalog's GGUF
and all cores: `Llama(model_path=..., n_threads=<cores>, verbose=False)` and
`create_chat_completion([user ESSAY], temperature=0, max_tokens=N, stream=True)`, with
OMP_WAIT_POLICY unset (the OpenMP runtime's own). Decode tok/s on both sides = (completion
tokens - 1) / (last token - first token); the raw side counts tokens from the context (a first
one-token call on the same messages tells the prompt's length, as bench/overhead.py explains).
Fresh processes, the two sides interleaved, medians.

    python -m edgeai.bench.versus_raw [--repeats 5] [--gen-tokens 128] [--model ID] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from edgeai.bench.overhead import ESSAY
from edgeai.fileio import atomic_write


def child_raw(gguf: str, threads: int, gen_tokens: int) -> dict:
    import llama_cpp

    from edgeai.runtime.llamacpp_build import amx_guard

    with amx_guard(llama_cpp):  # a no-op unless the build carries the AMX kernels that crash
        llm = llama_cpp.Llama(model_path=gguf, n_threads=threads, verbose=False)
    messages = [{"role": "user", "content": ESSAY}]
    llm.create_chat_completion(messages, temperature=0, max_tokens=1)
    n_prompt = llm.n_tokens  # the one sampled token is never evaluated
    start, first, last, finish = time.perf_counter(), None, None, None
    for part in llm.create_chat_completion(messages, temperature=0, max_tokens=gen_tokens, stream=True):
        now = time.perf_counter()
        choice = part["choices"][0]
        finish = choice["finish_reason"]
        if choice["delta"].get("content"):
            first, last = first or now, now
    n_gen = llm.n_tokens - n_prompt + (finish == "length")
    return {"decode_tps": (n_gen - 1) / (last - first), "completion_tokens": n_gen,
            "ttft_s": first - start, "finish": finish}


def _env() -> dict[str, str]:
    """The user's shell: no wait policy exported, so each side runs its own choice."""
    return {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "EDGEAI_WAIT_POLICY")}


def run_edgeai(model: str | None, gen_tokens: int) -> dict:
    cmd = [sys.executable, "-m", "edgeai", "run", "--json", "--temperature", "0",
           "--max-tokens", str(gen_tokens), *(["--model", model] if model else []), ESSAY]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    if proc.returncode:
        sys.exit(f"edgeai run failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    out = json.loads(proc.stdout)
    return {"decode_tps": out["gen_tps"], "completion_tokens": out["completion_tokens"],
            "ttft_s": out["ttft_s"], "finish": out["finish_reason"], "backend": out["backend"],
            "format": out.get("format"), "draft": out.get("draft")}


def run_raw(gguf: str, threads: int, gen_tokens: int) -> dict:
    cmd = [sys.executable, "-m", "edgeai.bench.versus_raw", "--raw-child", gguf, str(threads),
           str(gen_tokens)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    if proc.returncode:
        sys.exit(f"raw llama-cpp-python failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m edgeai.bench.versus_raw",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--model", help="catalog id (default: the configured model)")
    ap.add_argument("--json", type=Path, help="also write the samples and medians here")
    ap.add_argument("--raw-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.raw_child:
        gguf, threads, gen = args.raw_child
        print(json.dumps(child_raw(gguf, int(threads), int(gen))))
        return
    from edgeai.config import default_threads, load_settings
    from edgeai.models import resolve
    from edgeai.models.catalog import find_entry, parse_id

    settings = load_settings()
    name = parse_id(args.model or settings.model)[0]
    shipped = next(a for a in find_entry(name).artifacts if a.format == "gguf")  # the catalog's own GGUF
    gguf = str(resolve(f"{name}:{shipped.quant}@gguf", settings).artifact("gguf"))
    cores = default_threads()
    samples: dict[str, list[dict]] = {"edgeai": [], "raw": []}
    for i in range(args.repeats):  # interleaved: drift (heat, other load) hits both sides alike
        samples["edgeai"].append(run_edgeai(args.model, args.gen_tokens))
        samples["raw"].append(run_raw(gguf, cores, args.gen_tokens))
        print(f"[{i + 1}/{args.repeats}] edgeai {samples['edgeai'][-1]['decode_tps']:.1f} tok/s "
              f"({samples['edgeai'][-1]['format']}), raw {samples['raw'][-1]['decode_tps']:.1f} tok/s",
              file=sys.stderr, flush=True)
    medians = {side: statistics.median(s["decode_tps"] for s in runs) for side, runs in samples.items()}
    ratio = medians["edgeai"] / medians["raw"]
    first = samples["edgeai"][0]
    print(f"edgeai run ({first['backend']}, {first['format']}, draft {first['draft']}) "
          f"{medians['edgeai']:.1f} tok/s vs raw llama-cpp-python ({cores} threads, its defaults, "
          f"{Path(gguf).name}) {medians['raw']:.1f} tok/s: x{ratio:.2f} "
          f"(medians of {args.repeats}, interleaved)")
    if args.json:
        facts = {"model": name, "gguf": gguf, "threads": cores, "gen_tokens": args.gen_tokens,
                 "prompt": ESSAY}
        atomic_write(args.json, json.dumps({"settings": facts, "medians": medians, "ratio": ratio,
                                            "samples": samples}, indent=2))


if __name__ == "__main__":
    main()
