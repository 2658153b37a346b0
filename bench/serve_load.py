"""`edgeai bench serve`: `edgeai serve` under concurrent clients on loopback, against llama-cpp-python's
own server on the same model.

Boundary: starts each server as a subprocess (its own process, its own cores), drives it over
HTTP with streaming clients (httpx, one asyncio task per client), and writes the bench schema
(suite "serve"). Three phases:

- batching: N clients (1, 4, 8) at once, raw 32-token prompts, 128 tokens each with EOS
  ignored; aggregate decode tok/s over the window where every client is decoding (from the
  last first token to the first last token), and over the whole run; /metrics' mean batch size.
- load: 32 streaming chat clients at the server's defaults; a 429 is retried after its
  Retry-After, as the OpenAI client does; p50/p95 TTFT (from the first attempt), aggregate
  tok/s, errors (anything but a finished reply), 429s seen.
- queue bound: with every sequence and queue place taken, how fast a further request is refused.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EOS_BIAS = -100  # llama_cpp.server has no ignore_eos: the end tokens get this logit bias instead
PASSAGE = ("The lighthouse keeper climbed the spiral stairs each evening, counting the steps as his "
           "father had, and lit the great lamp while the gulls wheeled over the grey harbour below. ")
# a reply that holds its sequence for long (the queue-bound and client-leaves phases)
LONG_REPLY = {"stream": True, "max_tokens": 512, "ignore_eos": True,
              "messages": [{"role": "user", "content": "Write a long story."}]}


@dataclass
class ClientRun:
    start: float = 0.0
    first: float | None = None
    times: list[float] = field(default_factory=list)  # when each streamed token arrived
    tokens: int = 0
    rejected: int = 0  # 429s before it got in
    error: str | None = None


@dataclass
class Server:
    name: str
    root: str
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_edgeai(model: str, ctx: int, extra: list[str], env: dict[str, str]) -> Server:
    proc = subprocess.Popen([sys.executable, "-m", "edgeai", "serve", "--port", "0", "--model", model,
                             "--ctx", str(ctx), *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)
    line = proc.stdout.readline().strip()
    if not line.startswith("http://"):
        proc.kill()
        raise RuntimeError("edgeai serve did not start")
    return Server("edgeai", line.removesuffix("/v1"), proc)


def start_llama_cpp_server(gguf: Path, ctx: int, threads: int, env: dict[str, str]) -> Server | str:
    """llama-cpp-python's server on a free port, or why it cannot run here."""
    import importlib.util
    import socket

    for module in ("fastapi", "sse_starlette", "starlette_context", "pydantic_settings", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            return f"llama_cpp.server needs {module} (pip install 'llama-cpp-python[server]')"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(ctx),
                             "--n_threads", str(threads), "--n_threads_batch", str(threads),
                             # its default cuts the reply in flight when a new request comes
                             "--interrupt_requests", "False"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    server = Server("llama_cpp.server", f"http://127.0.0.1:{port}", proc)
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server.root}/v1/models", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.3)
    server.stop()
    return "llama_cpp.server did not answer within 120 s"


async def stream_one(http, url: str, body: dict, run: ClientRun, retry: bool) -> None:
    """One streaming request; with `retry`, a 429 waits its Retry-After and tries again."""
    import httpx

    run.start = time.perf_counter()
    while True:
        try:
            async with http.stream("POST", url, json=body) as reply:
                if reply.status_code == 429 and retry:
                    run.rejected += 1
                    await asyncio.sleep(float(reply.headers.get("retry-after", "1")))
                    continue
                if reply.status_code != 200:
                    run.error = f"HTTP {reply.status_code}"
                    return
                async for line in reply.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    data = json.loads(line[6:])
                    if "error" in data:
                        run.error = str(data["error"])
                        return
                    choice = (data.get("choices") or [{}])[0]
                    piece = choice.get("text") or (choice.get("delta") or {}).get("content")
                    if piece:
                        now = time.perf_counter()
                        run.first = run.first or now
                        run.times.append(now)
                        run.tokens += 1
                return
        except httpx.HTTPError as exc:
            run.error = f"{type(exc).__name__}: {exc}"
            return


async def clients(root: str, bodies: list[dict], path: str, retry: bool = False) -> list[ClientRun]:
    import httpx

    runs = [ClientRun() for _ in bodies]
    limits = httpx.Limits(max_connections=len(bodies) + 8)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600, connect=30), limits=limits) as http:
        await asyncio.gather(*(stream_one(http, f"{root}{path}", body, run, retry)
                               for body, run in zip(bodies, runs, strict=True)))
    return runs


def decode_window(runs: list[ClientRun]) -> tuple[float | None, float]:
    """(tok/s over the window where every client decodes, or None if they never overlap;
    tok/s over the whole run from the first request to the last token)."""
    done = [r for r in runs if r.times]
    if not done:
        from edgeai.errors import EdgeAIError

        raise EdgeAIError(f"no client got a token: {next((r.error for r in runs if r.error), 'no reply')}")
    whole = sum(r.tokens for r in done) / (max(r.times[-1] for r in done) - min(r.start for r in runs))
    lo, hi = max(r.times[0] for r in done), min(r.times[-1] for r in done)
    if len(done) < len(runs) or hi <= lo:
        return None, whole
    inside = sum(1 for r in done for t in r.times if lo <= t <= hi)
    return inside / (hi - lo), whole


def prompts(root: str, n: int, tokens: int) -> list[str]:
    """n different raw prompts of exactly `tokens` tokens (edgeai's /tokenize counts them)."""
    import httpx

    out = []
    for i in range(n):
        text = f"Story {i + 1}. " + PASSAGE * 4
        ids = httpx.post(f"{root}/tokenize", json={"content": text}, timeout=30).json()["tokens"]
        cut = httpx.post(f"{root}/detokenize", json={"tokens": ids[:tokens]}, timeout=30)
        out.append(cut.json()["content"])
    return out


def batch_size_mean(root: str) -> float | None:
    import httpx

    text = httpx.get(f"{root}/metrics", timeout=10).text
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("edgeai_batch_size_"))
    count = float(values.get("edgeai_batch_size_count", 0))
    return float(values["edgeai_batch_size_sum"]) / count if count else None


def run_batching(server: Server, model: str, texts: list[str], counts: list[int], n_gen: int,
                 eos: list[int], on_tick: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    for n in counts:
        bodies = [{"model": model, "prompt": t, "max_tokens": n_gen, "temperature": 0, "stream": True,
                   "ignore_eos": True, "logit_bias": {str(e): EOS_BIAS for e in eos}} for t in texts[:n]]
        runs = asyncio.run(clients(server.root, bodies, "/v1/completions"))
        window, whole = decode_window(runs)
        errors = [r.error or "cut short" for r in runs if r.error or r.tokens < n_gen]
        rows.append({"server": server.name, "clients": n, "window_tps": window, "whole_tps": whole,
                     "errors": len(errors), "tokens": [r.tokens for r in runs]})
        on_tick(f"{server.name} {n} clients")
    return rows


def run_load(server: Server, model: str, n: int, n_gen: int) -> dict[str, Any]:
    bodies = [{"model": model, "stream": True, "max_tokens": n_gen, "temperature": 0.7,
               "messages": [{"role": "user", "content": f"Tell me fact number {i + 1} about lighthouses."}]}
              for i in range(n)]
    runs = asyncio.run(clients(server.root, bodies, "/v1/chat/completions", retry=True))
    ttft = sorted((r.first - r.start) * 1000 for r in runs if r.first)
    _, whole = decode_window(runs)
    return {"clients": n, "errors": sum(1 for r in runs if r.error or not r.first),
            "rejected_429": sum(r.rejected for r in runs), "ttft_ms": ttft, "whole_tps": whole,
            "p50_ttft_ms": statistics.median(ttft) if ttft else None,
            "p95_ttft_ms": statistics.quantiles(ttft, n=20)[-1] if len(ttft) > 1 else None}


def run_queue_bound(server: Server, model: str, parallel: int, queue: int, probes: int = 5) -> list[float]:
    """Fill every sequence and queue place with long replies, then time further requests (each
    must be a 429)."""
    import httpx

    async def main() -> list[float]:
        body = {**LONG_REPLY, "model": model}
        url = f"{server.root}/v1/chat/completions"
        limits = httpx.Limits(max_connections=parallel + queue + 8)
        async with httpx.AsyncClient(timeout=600, limits=limits) as http:
            held = [asyncio.create_task(stream_one(http, url, body, ClientRun(), retry=False))
                    for _ in range(parallel + queue)]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                health = (await http.get(f"{server.root}/health")).json()
                if health["queue"] >= queue and health["active"] >= parallel:
                    break
                await asyncio.sleep(0.05)
            waits = []
            for _ in range(probes):
                t0 = time.perf_counter()
                reply = await http.post(url, json=body)
                waits.append((time.perf_counter() - t0) * 1000)
                if reply.status_code != 429:
                    raise RuntimeError(f"expected 429 from a full server, got {reply.status_code}")
            for task in held:
                task.cancel()  # the clients leave: their sequences are freed
            await asyncio.gather(*held, return_exceptions=True)
            return waits

    return asyncio.run(main())


def run_after_leave(server: Server, model: str, parallel: int, short: dict) -> float | None:
    """Every sequence decoding a long reply; one client is killed; how long until a new short
    request's first token (its sequence must be freed first: nothing else is free)."""
    import httpx

    async def main() -> float | None:
        long = {**LONG_REPLY, "model": model}
        async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=parallel + 4)) as http:
            runs = [ClientRun() for _ in range(parallel)]
            held = [asyncio.create_task(stream_one(http, f"{server.root}/v1/chat/completions", long, run,
                                                   retry=False)) for run in runs]
            while not all(run.first for run in runs):
                await asyncio.sleep(0.05)
            held[0].cancel()  # the client is gone: its connection closes
            after = ClientRun()
            await stream_one(http, f"{server.root}/v1/completions", {**short, "model": model}, after,
                             retry=False)
            for task in held[1:]:
                task.cancel()
            await asyncio.gather(*held, return_exceptions=True)
            return (after.first - after.start) * 1000 if after.first else None

    return asyncio.run(main())


def run_serve_bench(model: str, *, counts: list[int], n_gen: int, load_clients: int, load_tokens: int,
                    reference: bool, on_tick: Callable[[str], None], wait_policy: str = "passive") -> dict:
    """The three phases on `edgeai serve --parallel 4`, then the batching phase on llama_cpp.server.
    Both servers run with the same OpenMP wait policy (llama.cpp's threads between decode
    calls: "passive" sleeps, "active" spins), the one thing that otherwise differs between them."""
    from edgeai import __version__
    from edgeai.bench.device import detect, label
    from edgeai.bench.schema import add_row, new_result
    from edgeai.config import default_threads, load_settings
    from edgeai.models import resolve
    from edgeai.runtime.threads import child_env

    settings = load_settings({})
    gguf = resolve(model, settings).artifacts["gguf"]
    threads = default_threads()
    parallel, queue, ctx = 4, 16, 1024
    device = detect()
    result = new_result("serve", device=device, label=label(device, accelerator=False),
                        settings={"parallel": parallel, "queue": queue, "ctx_per_sequence": ctx,
                                  "prompt_tokens": 32, "n_gen": n_gen, "threads": threads,
                                  "omp_wait_policy": wait_policy,
                                  "load_clients": load_clients, "load_tokens": load_tokens},
                        versions={"edgeai": __version__}, source={"tool": "edgeai", "version": __version__})
    common = {"model": model, "quant": "Q4_K_M", "threads": threads}
    env = child_env(wait_policy)
    edgeai = start_edgeai(model, ctx, ["--parallel", str(parallel), "--queue", str(queue)], env)
    try:
        eos = _end_tokens(edgeai.root)
        texts = prompts(edgeai.root, max(counts), 32)
        batching = run_batching(edgeai, model, texts, counts, n_gen, eos, on_tick)
        mean_batch = batch_size_mean(edgeai.root)
        load = run_load(edgeai, model, load_clients, load_tokens)
        on_tick("load")
        refusals = run_queue_bound(edgeai, model, parallel, queue)
        short = {"prompt": texts[0], "max_tokens": 8, "stream": True}
        after_leave = run_after_leave(edgeai, model, parallel, short)
        on_tick("queue bound")
    finally:
        edgeai.stop()
    _add_decode_rows(result, common, "edgeai-serve", batching, mean_batch_size=mean_batch)
    add_row(result, **common, backend="edgeai-serve", test=f"load@{load['clients']}", unit="ms",
            samples=load["ttft_ms"] or [0.0], p95_ttft_ms=load["p95_ttft_ms"], errors=load["errors"],
            rejected_429=load["rejected_429"], aggregate_tps=round(load["whole_tps"], 2))
    add_row(result, **common, backend="edgeai-serve", test="queue_full_429", unit="ms", samples=refusals)
    if after_leave is not None:
        add_row(result, **common, backend="edgeai-serve", test="ttft_after_leave", unit="ms",
                samples=[after_leave])
    reference_rows: list[dict] = []
    if reference:
        other = start_llama_cpp_server(gguf, ctx, threads, env)
        if isinstance(other, str):
            result["skipped"].append({"backend": "llama_cpp.server", "reason": other})
        else:
            try:
                reference_rows = run_batching(other, model, texts, counts, n_gen, eos, on_tick)
            finally:
                other.stop()
            _add_decode_rows(result, common, "llama_cpp.server", reference_rows)
    result["summary"] = {"batching": batching + reference_rows, "queue_full_429_ms": refusals,
                         "ttft_after_leave_ms": after_leave,
                         "load": {k: v for k, v in load.items() if k != "ttft_ms"},
                         "mean_batch_size": mean_batch}
    return result


def _add_decode_rows(result: dict, common: dict, backend: str, rows: list[dict], **extra) -> None:
    """The batching phase's rows of one server: tok/s while every client decodes (the whole
    run's where they never overlapped)."""
    from edgeai.bench.schema import add_row

    for row in rows:
        add_row(result, **common, backend=backend, test=f"decode@{row['clients']}", unit="tok/s",
                samples=[row["window_tps"] or row["whole_tps"]], clients=row["clients"],
                whole_run_tps=round(row["whole_tps"], 2), errors=row["errors"], **extra)


def _end_tokens(root: str) -> list[int]:
    """The chat model's end tokens (Qwen's <|endoftext|> and <|im_end|>), by their text."""
    import httpx

    ids = []
    for text in ("<|endoftext|>", "<|im_end|>"):
        got = httpx.post(f"{root}/tokenize", json={"content": text}, timeout=10).json()["tokens"]
        if len(got) == 1:
            ids.append(got[0])
    return ids


def table(result: dict) -> str:
    s = result["summary"]
    lines = ["server             clients  all-decoding tok/s  whole-run tok/s  errors"]
    for row in s["batching"]:
        window = f"{row['window_tps']:.1f}" if row["window_tps"] else "—"
        lines.append(f"{row['server']:<18} {row['clients']:>7}  {window:>18}  {row['whole_tps']:>15.1f}  "
                     f"{row['errors']:>6}")
    load = s["load"]
    lines.append(f"mean batch size (edgeai): {s['mean_batch_size']:.2f}")
    lines.append(f"load: {load['clients']} streaming clients, {load['errors']} errors, "
                 f"{load['rejected_429']} 429s retried; TTFT p50 {load['p50_ttft_ms']:.0f} ms, "
                 f"p95 {load['p95_ttft_ms']:.0f} ms; {load['whole_tps']:.1f} tok/s aggregate")
    lines.append("429 when full: " + ", ".join(f"{ms:.1f}" for ms in s["queue_full_429_ms"]) + " ms")
    if s["ttft_after_leave_ms"] is not None:
        lines.append(f"first token of a 32-token request after a client left a full server: "
                     f"{s['ttft_after_leave_ms']:.0f} ms")
    return "\n".join(lines)
