"""What edgeai's `llamacpp` backend costs over raw llama-cpp-python, and what prefix reuse saves.

1. raw vs edgeai. The same GGUF, loaded with identical `Llama` parameters (n_ctx 4096, n_batch 512,
n_threads = n_threads_batch = --threads, layers offloaded only in a GPU build, verbose off, inside
edgeai's `amx_guard`), answers one long-essay request greedily (temperature 0, --gen-tokens).
The parent renders the chat prompt once with edgeai's template; the raw side streams that text
through `Llama.create_completion(stream=True)` as a llama-cpp-python user would, the edgeai side
streams the message list through `LlamaCppBackend.stream`. Each run is a fresh process, raw and
edgeai interleaved, after one short untimed generation whose prompt shares no prefix with the
chat prompt (so no cached tokens are reused). TTFT = first token chunk - the call; prefill tok/s
= prompt tokens / TTFT; decode tok/s = (completion tokens - 1) / (last - first token chunk);
peak RSS = the child's ru_maxrss. Token counts are exact: edgeai's last chunk reports them; raw
chunks can merge tokens (a split UTF-8 character), so there we count the context instead:
llama-cpp-python evaluates every generated token but the last one sampled (the one reaching
max_tokens, or an uncounted EOS): completion = n_tokens - prompt + (finish == "length"). EOS can't
be switched off through GenParams, hence the essay prompt; both sides report what they produced.

2. prefix reuse, edgeai only. A system prompt and public-domain passages make a history of at
least 1,000 tokens; turn 1 answers it (8 tokens) so the KV cache holds it; turn 2 appends the
reply text exactly as generated plus a short follow-up, and we time its TTFT (only the new
tokens are evaluated). A freshly loaded backend, after the same untimed warm-up, then runs the
identical turn-2 messages: the cold prefill TTFT. Each repeat is a fresh process.

  python -m edgeai.bench.overhead [--repeats 5] [--threads 1] [--gen-tokens 128] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from edgeai.bench.texts import PASSAGES
from edgeai.fileio import atomic_write

N_CTX, N_BATCH = 4096, 512
ESSAY = "Write a detailed, long essay about the history of the printing press."
WARMUP = "The quick brown fox"  # raw text: no common prefix with a chat prompt, so no cache reuse
SYSTEM = "You are a careful literary assistant. Answer briefly and precisely."
FOLLOW_UP = "Which of these passages was written first? Answer in one sentence."
HISTORY_MIN = 1000
# Dickens and Lincoln, cycled until the history reaches HISTORY_MIN tokens (the measured setup)
HISTORY_PASSAGES = PASSAGES[:2]


# -- children: one timed run each, JSON on stdout ------------------------------------------------------
def _sample(ttft, n_prompt, n_gen, first, last, **extra) -> dict:
    from edgeai.memory import peak_rss_mb  # this process's ru_maxrss in MB

    decode = (n_gen - 1) / (last - first) if n_gen > 1 and last > first else None
    return {"ttft_s": ttft, "prompt_tokens": n_prompt, "completion_tokens": n_gen,
            "prefill_tps": n_prompt / ttft, "decode_tps": decode, "peak_rss_mb": peak_rss_mb(), **extra}


def _load_edgeai(args):
    from edgeai.config import load_settings
    from edgeai.models import resolve
    from edgeai.runtime import get_backend
    from edgeai.types import LoadOptions

    backend = get_backend("llamacpp")
    backend.load(resolve(args.model, load_settings()), LoadOptions(
        n_ctx=N_CTX, n_batch=N_BATCH, n_threads=args.threads, gpu_layers=args.gpu_layers))
    return backend


def _stream_edgeai(backend, prompt, max_tokens: int) -> dict:
    from edgeai.types import GenParams

    t0, first, last, text, ids = time.perf_counter(), None, None, [], []
    for chunk in backend.stream(prompt, GenParams(max_tokens=max_tokens, temperature=0)):
        now = time.perf_counter()
        if chunk.token_ids:  # prefill progress chunks carry no tokens
            first, last = first or now, now
        text.append(chunk.text)
        ids.extend(chunk.token_ids)
    return {"ttft": first - t0, "first": first, "last": last, "text": "".join(text), "ids": ids, "end": chunk}


def child_edgeai(args) -> dict:
    from edgeai.types import Message

    backend = _load_edgeai(args)
    _stream_edgeai(backend, WARMUP, 8)
    run = _stream_edgeai(backend, [Message("user", ESSAY)], args.gen_tokens)
    end = run["end"]
    return _sample(run["ttft"], end.prompt_tokens, end.completion_tokens, run["first"], run["last"],
                   finish=end.finish_reason, backend_gen_tps=end.gen_tps)


def child_raw(args) -> dict:
    import llama_cpp

    from edgeai.runtime.llamacpp_build import amx_guard

    with amx_guard(llama_cpp):
        llm = llama_cpp.Llama(model_path=args.gguf, n_ctx=N_CTX, n_batch=N_BATCH, n_threads=args.threads,
                              n_threads_batch=args.threads, n_gpu_layers=args.gpu_layers, verbose=False)

    def timed(prompt: str, max_tokens: int):
        t0, first, last, finish = time.perf_counter(), None, None, None
        for part in llm.create_completion(prompt, max_tokens=max_tokens, temperature=0, stream=True):
            now = time.perf_counter()
            finish = part["choices"][0]["finish_reason"]
            if finish is None:  # every chunk but the closing one carries token text
                first, last = first or now, now
        return t0, first, last, finish

    timed(WARMUP, 8)
    # add_bos=True adds BOS/EOS exactly where create_completion does (only if the vocab asks for them)
    n_prompt = len(llm.tokenize(args.prompt_text.encode(), add_bos=True, special=True))
    t0, first, last, finish = timed(args.prompt_text, args.gen_tokens)
    n_gen = llm.n_tokens - n_prompt + (finish == "length")  # see the module docstring
    return _sample(first - t0, n_prompt, n_gen, first, last, finish=finish)


def _history(backend) -> list:
    """System prompt + passages, cycled until the rendered history reaches HISTORY_MIN tokens."""
    from edgeai.types import Message

    parts: list[str] = []
    while True:
        parts.append(HISTORY_PASSAGES[len(parts) % len(HISTORY_PASSAGES)])
        user = "Read these passages; I will ask about them.\n\n" + "\n\n".join(parts)
        messages = [Message("system", SYSTEM), Message("user", user)]
        if len(backend.prompt_tokens(messages)) >= HISTORY_MIN:
            return messages


def child_reuse(args) -> dict:
    from edgeai.types import Message

    backend = _load_edgeai(args)
    _stream_edgeai(backend, WARMUP, 8)
    history = _history(backend)
    turn1 = _stream_edgeai(backend, history, 8)
    # the reply exactly as generated, so turn 2's rendering starts with what the cache holds
    turn2 = [*history, Message("assistant", turn1["text"]), Message("user", FOLLOW_UP)]
    cached, ids2 = backend.prompt_tokens(history) + turn1["ids"], backend.prompt_tokens(turn2)
    common = next((i for i, (a, b) in enumerate(zip(cached, ids2, strict=False)) if a != b), len(cached))
    n_follow = len(backend.tokenize(FOLLOW_UP))
    warm = _stream_edgeai(backend, turn2, 1)
    backend.close()
    backend = _load_edgeai(args)  # cold: a fresh backend, the same untimed warm-up, the same messages
    _stream_edgeai(backend, WARMUP, 8)
    cold = _stream_edgeai(backend, turn2, 1)
    return {"warm_ttft_s": warm["ttft"], "cold_ttft_s": cold["ttft"], "history_tokens": len(cached),
            "followup_tokens": n_follow, "turn2_prompt_tokens": len(ids2),
            "new_tokens": len(ids2) - common, "reply": turn1["text"]}


# -- parent: fresh processes, summary, table -----------------------------------------------------------
def prepare(args) -> None:
    """Resolve the model; render the essay prompt once with edgeai's template, for the raw side."""
    from edgeai.config import load_settings
    from edgeai.models import resolve
    from edgeai.runtime.llamacpp_build import import_llama_cpp, supports_gpu_offload
    from edgeai.runtime.threads import headless_policy
    from edgeai.types import Message

    settings = load_settings()
    args.model = args.model or settings.model
    args.wait_policy = args.wait_policy or headless_policy(settings)
    args.gguf = str(resolve(args.model, settings).artifact("gguf"))
    args.gpu_layers = -1 if supports_gpu_offload(import_llama_cpp()) else 0
    backend = _load_edgeai(args)
    args.prompt_text = backend.render([Message("user", ESSAY)])
    backend.close()


def run_child(kind: str, args, label: str) -> dict:
    from edgeai.runtime.threads import child_env

    cmd = [sys.executable, "-m", "edgeai.bench.overhead", "--child", kind, "--model", args.model,
           "--gguf", args.gguf, "--threads", str(args.threads), "--gen-tokens", str(args.gen_tokens),
           "--gpu-layers", str(args.gpu_layers), "--prompt-text", args.prompt_text]
    env = child_env(args.wait_policy)  # both sides alike
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"{kind} child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    sample = json.loads(proc.stdout.strip().splitlines()[-1])  # the last line: llama.cpp may print too
    shown = {k: round(v, 3) for k, v in sample.items() if isinstance(v, float)}
    print(f"[{label}] {kind}: {shown}", file=sys.stderr, flush=True)
    return sample


def _stat(values) -> dict | None:
    values = [v for v in values if v is not None]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else None


def summarize(samples: dict) -> dict:
    summary = {side: {key: _stat(s[key] for s in runs) for key, value in runs[0].items()
                      if isinstance(value, (int, float))} for side, runs in samples.items()}
    ratios = {f"edgeai/raw {key}": summary["edgeai"][key]["median"] / summary["raw"][key]["median"]
              for key in ("decode_tps", "prefill_tps", "ttft_s", "peak_rss_mb")}
    reuse = summary["reuse"]
    ratios["warm/cold 2nd-turn ttft"] = reuse["warm_ttft_s"]["median"] / reuse["cold_ttft_s"]["median"]
    return {"summary": summary, "ratios": ratios}


def table(result: dict, args) -> str:
    s, r, u = result["summary"], result["ratios"], result["summary"]["reuse"]

    def cell(st: dict, f: str) -> str:
        return f"{st['median']:{f}} [{st['min']:{f}}-{st['max']:{f}}]"

    lines = [f"llamacpp backend vs raw llama-cpp-python: {args.model}, {args.threads} thread(s), "
             f"OMP_WAIT_POLICY={args.wait_policy}, {args.repeats} fresh processes per side, median [min-max]",
             f"{'metric':<19}{'raw':>26}{'edgeai':>26}{'edgeai/raw':>12}"]
    for name, key, f in (("TTFT (s)", "ttft_s", ".3f"), ("prefill tok/s", "prefill_tps", ".1f"),
                         ("decode tok/s", "decode_tps", ".2f"), ("peak RSS (MB)", "peak_rss_mb", ".0f"),
                         ("prompt tokens", "prompt_tokens", ".0f"),
                         ("completion tokens", "completion_tokens", ".0f")):
        ratio = r.get(f"edgeai/raw {key}")
        lines.append(f"{name:<19}{cell(s['raw'][key], f):>26}{cell(s['edgeai'][key], f):>26}"
                     f"{'' if ratio is None else format(ratio, '.3f'):>12}")
    lines += ["", f"2nd turn with prefix reuse (edgeai, {args.repeats} fresh processes): history "
              f"{u['history_tokens']['median']:.0f} tokens, follow-up {u['followup_tokens']['median']:.0f}, "
              f"turn-2 prompt {u['turn2_prompt_tokens']['median']:.0f}, newly evaluated "
              f"{u['new_tokens']['median']:.0f}",
              f"{'warm 2nd-turn TTFT (s)':<28}{cell(u['warm_ttft_s'], '.3f'):>26}",
              f"{'cold prefill TTFT (s)':<28}{cell(u['cold_ttft_s'], '.3f'):>26}",
              f"{'warm / cold':<28}{r['warm/cold 2nd-turn ttft']:>26.3f}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m edgeai.bench.overhead", description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--model", help="a catalog id or a GGUF path (default: the configured model)")
    ap.add_argument("--wait-policy", choices=("active", "passive", "default"),
                    help="OMP_WAIT_POLICY of both sides (default: the headless setting)")
    ap.add_argument("--json", type=Path, help="also write samples, summary and machine facts here")
    for internal in ("--child", "--gguf", "--prompt-text"):  # parent -> child only
        ap.add_argument(internal, help=argparse.SUPPRESS)
    ap.add_argument("--gpu-layers", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps({"raw": child_raw, "edgeai": child_edgeai, "reuse": child_reuse}[args.child](args)))
        return
    prepare(args)
    samples: dict[str, list] = {"raw": [], "edgeai": [], "reuse": []}
    n = 3 * args.repeats
    for i in range(args.repeats):  # interleaved, so drift (heat, other load) hits both sides alike
        for j, kind in enumerate(("raw", "edgeai")):
            samples[kind].append(run_child(kind, args, f"{2 * i + j + 1}/{n}"))
    for i in range(args.repeats):
        samples["reuse"].append(run_child("reuse", args, f"{2 * args.repeats + i + 1}/{n}"))
    result = summarize(samples)
    print(table(result, args), flush=True)
    if args.json:
        import llama_cpp

        from edgeai import __version__
        from edgeai.runtime.llamacpp_build import system_info
        from edgeai.system import cpu_info

        settings = {k: getattr(args, k) for k in ("model", "gguf", "threads", "wait_policy", "gpu_layers",
                                                  "gen_tokens", "repeats", "prompt_text")}
        atomic_write(args.json, json.dumps({
            "settings": {**settings, "n_ctx": N_CTX, "n_batch": N_BATCH, "follow_up": FOLLOW_UP},
            "versions": {"llama_cpp_python": llama_cpp.__version__, "edgeai": __version__,
                         "python": sys.version.split()[0]},
            "cpu": cpu_info(), "llama_system_info": system_info(llama_cpp), **result, "samples": samples},
            indent=2))


if __name__ == "__main__":
    main()
