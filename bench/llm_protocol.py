"""The `llm` suite's measurements on one loaded backend, in this process: prompts of an exact
token count, prefill (ppN), time to first token, decode (tgN), at a context depth.

Backend-agnostic: everything goes through `Backend.stream()` with a raw-text prompt, the path
`edgeai run` takes, so a figure here is what a user gets. The protocol, close to llama-bench's:

- ppN: a prompt of N tokens, max_tokens=1. Prefill tok/s = N / time to the first token (the
  first token's sampling is included, as in a user's TTFT). Each repeat starts with a different
  word, so no backend can reuse a cached prefix from the previous repeat.
- tgN: generate exactly N tokens (`ignore_eos`, greedy). Decode tok/s = (N - 1) / (last token -
  first token): the prompt's prefill is excluded.
- depth d: d tokens of context already evaluated. For ppN@d the context is evaluated untimed
  first and then extended by N tokens, so only a backend that keeps its KV cache between calls
  (prefix reuse) can run it; the others skip it with that reason. tgN@d just starts from a
  d-token prompt (prefill excluded by the definition above).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from edgeai.bench.texts import TEXT
from edgeai.runtime.base import PromptTokens
from edgeai.types import GenParams

SALTS = ("Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel", "India", "Juliet",
         "Kilo", "Lima", "Mike", "November", "Oscar", "Papa", "Quebec", "Romeo", "Sierra", "Tango")
# backends whose KV cache survives between stream() calls (what ppN@depth needs)
PREFIX_REUSE = {"llamacpp"}


@dataclass(frozen=True)
class Timing:
    ttft_s: float
    first: float
    last: float
    n_prompt: int | None
    n_gen: int
    drafted: int | None = None  # speculative decoding's draft ids verified / accepted
    accepted: int | None = None


def _counter(backend) -> Callable[[str], list[int]]:
    """The exact prompt tokens of a raw text (special tokens included) where the backend can tell."""
    return backend.prompt_tokens if isinstance(backend, PromptTokens) else backend.tokenize


def exact_prompt(backend, n_tokens: int, salt: int = 0) -> str:
    """Raw text that the backend turns into exactly `n_tokens` prompt tokens (special tokens such
    as BOS included), or the nearest it can: re-tokenizing a cut can merge across the cut."""
    count = _counter(backend)
    head = f"{SALTS[salt % len(SALTS)]} {salt}. "
    body = head + TEXT * (n_tokens // 40 + 2)
    ids = backend.tokenize(body)
    want = n_tokens
    text = body
    for _ in range(6):  # converges in one or two steps
        text = backend.detokenize(ids[:want])
        got = len(count(text))
        if got == n_tokens:
            break
        want += n_tokens - got
    return text


def timed_stream(backend, prompt: str, max_tokens: int, *, ignore_eos: bool = False) -> Timing:
    params = GenParams(max_tokens=max_tokens, temperature=0, top_k=1, ignore_eos=ignore_eos)
    start = time.perf_counter()
    first = last = None
    final = None
    for chunk in backend.stream(prompt, params):
        now = time.perf_counter()
        if chunk.token_ids or chunk.text:
            first, last = first or now, now
        final = chunk
    if first is None:
        raise RuntimeError("the backend produced no token")
    n_gen = final.completion_tokens if final and final.completion_tokens is not None else 1
    return Timing(first - start, first, last, final.prompt_tokens if final else None, n_gen,
                  final.drafted if final else None, final.accepted if final else None)


@dataclass(frozen=True)
class Sample:
    test: str  # "ppN" | "tgN" | "ttft"
    depth: int
    value: float
    n_prompt: int
    n_gen: int
    at_s: float = 0.0  # seconds since the sustained run began (0 elsewhere)
    joules: float | None = None  # energy of a tg run, where the platform reports power
    drafted: int | None = None  # a tg run with --draft: draft ids verified / accepted
    accepted: int | None = None


def measure(backend, name: str, *, pp: int, tg: int, depths: list[int], warmup: int, repeats: int,
            tick: Callable[[str], None] = lambda _: None,
            energy: Callable[[], AbstractContextManager] | None = None) -> Iterator[Sample]:
    """Yield one Sample per timed run: ppN and its TTFT, then tgN, at every depth. `tick` is
    called after every run, warm-ups included (the progress bar). `energy()` gives a meter
    (bench/energy.py) wrapped around each tg run."""
    for depth in depths:
        pp_here = pp and (not depth or name in PREFIX_REUSE)
        for run in range(warmup + repeats):
            timed = run >= warmup
            context = exact_prompt(backend, depth, salt=100 + run) if depth else ""
            if pp_here:
                cached = 0
                if context:
                    timed_stream(backend, context, 1)  # into the KV cache, untimed
                    cached = len(_counter(backend)(context))
                prompt = (context + " " if context else "") + exact_prompt(backend, pp, salt=run)
                t = timed_stream(backend, prompt, 1, ignore_eos=True)  # an EOS first is still a token
                new = (t.n_prompt or pp + cached) - cached
                tick(f"pp{pp}@{depth}")
                if timed:
                    yield Sample(f"pp{pp}", depth, new / t.ttft_s, new, 0)
                    yield Sample("ttft", depth, t.ttft_s, new, 1)
            if tg:
                prompt = context or exact_prompt(backend, 8, salt=run)
                with energy() if energy else nullcontext() as meter:
                    t = timed_stream(backend, prompt, tg, ignore_eos=True)
                tick(f"tg{tg}@{depth}")
                if timed and t.n_gen > 1 and t.last > t.first:
                    yield Sample(f"tg{tg}", depth, (t.n_gen - 1) / (t.last - t.first), 0, t.n_gen,
                                 joules=getattr(meter, "joules", None), drafted=t.drafted,
                                 accepted=t.accepted)


def sustained(backend, tg: int, seconds: float) -> Iterator[Sample]:
    """tgN back to back for `seconds`, every run kept with its time: a falling curve is thermal
    (or power) throttling, which a short run with a cool chip never shows."""
    start = time.perf_counter()
    run = 0
    while time.perf_counter() - start < seconds:
        t = timed_stream(backend, exact_prompt(backend, 8, salt=run), tg, ignore_eos=True)
        run += 1
        if t.n_gen > 1 and t.last > t.first:
            yield Sample(f"tg{tg}", 0, (t.n_gen - 1) / (t.last - t.first), 0, t.n_gen,
                         at_s=round(t.last - start, 3))
