"""`edgeai bench`: run a suite (`llm`, `embed`, `rag`, `stt`, `tts`, ...), compare results across
machines, and move results in and out of the community's formats (llama-bench, mlx_lm.benchmark).
The suites live in bench/."""

from __future__ import annotations

from pathlib import Path

import click

from edgeai.cli.common import settings_from, with_progress


@click.group()
def bench() -> None:
    """Benchmark this machine with one protocol, and compare results across machines."""


@bench.command()
@click.option("--quick", is_flag=True, help="llamacpp on the default GGUF, pp128/tg32, 1 warm-up, 3 repeats.")
@click.option("--backend", "backends", multiple=True, metavar="NAME", help="Backend(s) to run (repeatable).")
@click.option("--model", "-m", metavar="ID|PATH", help="Model id or file (default: the configured model).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Result JSON (default: <data dir>/bench/llm-<time>.json).")
@click.option("--pp", type=int, help="Prompt tokens for the prefill test (default 512; quick 128).")
@click.option("--tg", type=int, help="Tokens to generate for the decode test (default 128; quick 32).")
@click.option("--depth", "depths", type=int, multiple=True, metavar="N",
              help="Context depth(s): tokens already in context (repeatable; default 0).")
@click.option("--repeats", type=int, help="Timed runs per test (default 5; quick 3).")
@click.option("--warmup", type=int, help="Untimed runs first (default 1).")
@click.option("--threads", "-t", type=int, help="CPU threads (default: all cores).")
@click.option("--wait-policy", type=click.Choice(["active", "passive", "default"]),
              help="OMP_WAIT_POLICY of the run (default: the headless setting; recorded in the result).")
@click.option("--gpu-layers", type=int, help="Layers to offload (default: all where the build can).")
@click.option("--ctx", "n_ctx", type=int, default=4096, show_default=True, help="Context window.")
@click.option("--sustained", type=float, default=0.0, metavar="SECONDS",
              help="Also decode back to back this long to show thermal throttling.")
@click.option("--draft", default="off", show_default=True, metavar="MODEL|ngram|auto|off",
              help="Speculative decoding in the decode test (a `draft` column; accept rate in tg rows).")
def llm(quick, backends, model, output, pp, tg, depths, repeats, warmup, threads, wait_policy, gpu_layers,
        n_ctx, sustained, draft) -> None:
    """Load time, TTFT, prefill and decode speed, peak memory, % of the memory-bandwidth ceiling."""
    from dataclasses import replace

    from edgeai.bench.compare import render_table
    from edgeai.bench.llm import Plan, quick_plan, run_llm
    from edgeai.bench.schema import save_result
    from edgeai.config import DEFAULT_MODEL
    from edgeai.errors import BadInput

    if sustained < 0:
        raise BadInput("--sustained must be 0 or more seconds")
    settings = settings_from({"model": model, "threads": threads, "gpu_layers": gpu_layers, "ctx": n_ctx})
    # --quick is one fixed protocol: the embedded default GGUF unless a model is named
    base = quick_plan(model or DEFAULT_MODEL) if quick else Plan(model=settings.model)
    given = {"backends": tuple(backends), "pp": pp, "tg": tg, "depths": tuple(depths) or None,
             "repeats": repeats, "warmup": warmup, "threads": threads, "wait_policy": wait_policy,
             "gpu_layers": gpu_layers, "n_ctx": n_ctx, "sustained_s": sustained, "draft": draft}
    plan = replace(base, **{k: v for k, v in given.items() if v is not None})
    path = result_path(output, "llm")
    result = with_progress(lambda start, tick: run_llm(plan, settings, on_start=start, on_tick=tick))
    click.echo(render_table(result))  # the skipped backends, with their reasons, under the table
    for name, run in result.get("sustained", {}).items():
        click.echo(f"sustained {name}: {run['test']} {run['first_quarter']:.2f} -> "
                   f"{run['last_quarter']:.2f} tok/s over {run['at_s'][-1]:.0f} s (x{run['ratio']})")
    save_result(result, path)
    click.echo(f"saved: {path}")
    if not any(row["test"] != "load" for row in result["results"]):
        raise click.exceptions.Exit(1)  # nothing was measured: every backend was skipped


def result_path(output: Path | None, suite: str) -> Path:
    """Where a run's JSON goes: `-o`, else `<data dir>/bench/<suite>-<time>.json` (never the
    working directory); checked writable before a long run, not after it."""
    import os
    import time

    from edgeai.errors import BadInput

    path = output or settings_from({}).home / "bench" / f"{suite}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"cannot write results to {path.parent}: {exc.strerror or exc}") from None
    if not os.access(path.parent, os.W_OK) or path.is_dir():
        raise BadInput(f"cannot write results to {path}")
    return path


@bench.command()
@click.option("--remeasure", is_flag=True, help="Measure again (a few seconds), not the cached figure.")
@click.option("--json", "as_json", is_flag=True, help="Print the probe as JSON.")
def bandwidth(remeasure, as_json) -> None:
    """This machine's memory read bandwidth with its spread: the ceiling `bench llm` divides by,
    measured once per machine and cached."""
    import json

    from edgeai.bench.bandwidth_probe import cache_path, cached_probe, describe

    entry, cached = cached_probe(remeasure=remeasure)
    click.echo(json.dumps({**entry, "cached": cached}, indent=2) if as_json else
               describe(entry, cached, cache_path()))


@bench.command()
@click.option("--corpus", type=click.Path(file_okay=False, path_type=Path),
              help="Also index this folder end to end (extract, chunk, embed, store) and report chunks/s.")
@click.option("--repeats", type=int, default=3, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Result JSON (default: <data dir>/bench/embed-<time>.json).")
def embed(corpus, repeats, output) -> None:
    """Embedding speed (chunks/s), query-embedding latency, and optionally a real corpus's indexing."""
    from edgeai.bench.compare import render_table
    from edgeai.bench.embed import run_embed
    from edgeai.bench.schema import save_result

    if repeats < 1:
        raise click.BadParameter("must be at least 1", param_hint="--repeats")
    settings = settings_from({})
    path = result_path(output, "embed")

    def work(start, tick) -> dict:
        start("embed", 2 * repeats + (1 if corpus else 0))
        return run_embed(settings, repeats=repeats, corpus=corpus, on_tick=tick)

    result = with_progress(work)
    click.echo(render_table(result))
    save_result(result, path)
    click.echo(f"saved: {path}")


@bench.command(name="serve")
@click.option("--model", "-m", default=None, metavar="ID", help="Catalog id (default: the default model).")
@click.option("--clients", default="1,4,8", show_default=True, metavar="N,N",
              help="Concurrent clients for the batching measurement.")
@click.option("--tg", "n_gen", type=int, default=128, show_default=True,
              help="Tokens per reply (EOS ignored).")
@click.option("--load", "load_clients", type=int, default=32, show_default=True,
              help="Streaming chat clients for the load measurement.")
@click.option("--load-tokens", type=int, default=64, show_default=True, help="Most tokens per load reply.")
@click.option("--no-reference", is_flag=True, help="Skip llama-cpp-python's own server.")
@click.option("--wait-policy", type=click.Choice(["active", "passive", "default"]),
              help="OMP_WAIT_POLICY for both servers (llama.cpp's threads between decode calls; "
                   "default: the headless setting, `wait_policy`).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Result JSON (default: <data dir>/bench/serve-<time>.json).")
def serve_(model, clients, n_gen, load_clients, load_tokens, no_reference, wait_policy, output) -> None:
    """`edgeai serve` under concurrent clients: batching at 1/4/8 clients vs llama_cpp.server,
    32 streaming clients, and the 429 of a full queue."""
    from edgeai.bench.schema import save_result
    from edgeai.bench.serve_load import run_serve_bench, table
    from edgeai.config import DEFAULT_MODEL, load_settings
    from edgeai.errors import BadInput
    from edgeai.runtime.threads import headless_policy

    try:
        counts = [int(c) for c in clients.split(",") if c.strip()]
    except ValueError:
        raise BadInput(f"--clients must be numbers separated by commas, not {clients!r}") from None
    if not counts or min(counts) < 1 or n_gen < 1 or load_clients < 1 or load_tokens < 1:
        raise BadInput("--clients, --tg, --load and --load-tokens must be at least 1")
    path = result_path(output, "serve")

    def work(start, tick) -> dict:
        start("serve", 2 * len(counts) + 2)
        policy = wait_policy or headless_policy(load_settings())
        return run_serve_bench(model or DEFAULT_MODEL, counts=counts, n_gen=n_gen, load_clients=load_clients,
                               load_tokens=load_tokens, reference=not no_reference, on_tick=tick,
                               wait_policy=policy)

    result = with_progress(work)
    click.echo(table(result))
    save_result(result, path)
    click.echo(f"saved: {path}")


@bench.command(name="rag")
@click.option("--sizes", default="10000,100000", show_default=True, metavar="N,N",
              help="Collection sizes in chunks (vectors generated once, clustered, and cached).")
@click.option("--queries", type=int, default=200, show_default=True, help="Single queries per size.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Result JSON (default: <data dir>/bench/rag-<time>.json).")
def rag_(sizes, queries, output) -> None:
    """Retrieval latency p50/p95: exact vs ANN vs faiss-flat, ANN recall@10, full retrieve()."""
    from edgeai.bench.rag_search import as_result, measure_size, table
    from edgeai.bench.schema import save_result
    from edgeai.errors import BadInput, MissingExtra
    from edgeai.rag.embed import get_embedder

    try:
        counts = [int(s) for s in sizes.split(",") if s.strip()]
    except ValueError:
        raise BadInput(f"--sizes must be numbers separated by commas, not {sizes!r}") from None
    if not counts or min(counts) < 100 or queries < 1:
        raise BadInput("--sizes must each be at least 100 and --queries at least 1")
    try:
        minilm = get_embedder("minilm")
    except MissingExtra:
        minilm = None  # vector-path numbers only
    path = result_path(output, "rag")
    rows = [measure_size(n, queries, minilm) for n in counts]
    click.echo(table(rows))  # p50 (p95), ANN recall@10, the faiss-flat ratio, new-process cost
    save_result(as_result(rows, queries), path)
    click.echo(f"saved: {path}")


def _names(value: str, option: str) -> list[str]:
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise click.BadParameter("name at least one", param_hint=option)
    return names


@bench.command(name="stt")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--engines", default="faster-whisper,openai-whisper", show_default=True, metavar="NAME,NAME",
              help="Speech engines to run on the same clips.")
@click.option("--models", default="whisper-base,whisper-tiny.en", show_default=True, metavar="ID,ID",
              help="Whisper models (catalog ids or CTranslate2 folders).")
@click.option("--beam", default="1,5", show_default=True, metavar="N,N",
              help="Beam size(s); 1 is greedy, 5 is the default of `edgeai transcribe`.")
@click.option("--repeats", type=int, default=3, show_default=True, help="Timed runs per clip.")
@click.option("--sentences", default="all", show_default=True, metavar="all|none|N,N",
              help="Which of the 12 evaluation sentences to synthesize (1-based numbers).")
@click.option("--threads", "-t", type=int, help="CPU threads (default: all cores).")
@click.option("--no-direct", is_flag=True,
              help="Skip faster-whisper called directly (the overhead reference).")
@click.option("--json", "-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path),
              help="Result JSON (default: <data dir>/bench/stt-<time>.json).")
def stt_(files, engines, models, beam, repeats, sentences, threads, no_direct, output) -> None:
    """Speech to text: RTF and WER per engine, model and beam on clips piper speaks from the
    evaluation set (plus FILES, scored against a sibling .txt), edgeai vs faster-whisper called
    directly, and openai-whisper vs faster-whisper per sentence."""
    from edgeai.bench.schema import save_result
    from edgeai.bench.stt import parse_sentences, report, run_stt
    from edgeai.errors import BadInput

    try:
        beams = [int(b) for b in _names(beam, "--beam")]
    except ValueError:
        raise BadInput(f"--beam takes numbers separated by commas, not {beam!r}") from None
    picked = parse_sentences(sentences)
    settings = settings_from({"threads": threads})
    path = result_path(output, "stt")

    def work(start, tick) -> dict:
        return run_stt(settings, list(files), sentences=picked, engines=_names(engines, "--engines"),
                       models=_names(models, "--models"), beams=beams, repeats=repeats, threads=threads,
                       direct=not no_direct, on_start=start, on_tick=tick)

    result = with_progress(work)
    click.echo(report(result))
    save_result(result, path)
    click.echo(f"saved: {path}")


@bench.command(name="tts")
@click.option("--voices", default=None, metavar="NAME,NAME", help="Voices (default: the default voice, joe).")
@click.option("--text", default=None, help="The reply to speak (default: a public-domain passage).")
@click.option("--repeats", type=int, default=3, show_default=True, help="Timed runs per way per voice.")
@click.option("--json", "-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path),
              help="Result JSON (default: <data dir>/bench/tts-<time>.json).")
def tts_(voices, text, repeats, output) -> None:
    """Text to speech: time to first audio (a streamed reply vs the whole text) and RTF per voice."""
    from edgeai.bench.schema import save_result
    from edgeai.bench.tts import report, run_tts

    names: list[str | None] = list(_names(voices, "--voices")) if voices is not None else [None]
    path = result_path(output, "tts")
    result = with_progress(lambda start, tick: run_tts(names, text=text, repeats=repeats,
                                                       on_start=start, on_tick=tick))
    click.echo(report(result))
    save_result(result, path)
    click.echo(f"saved: {path}")


@bench.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for compare.md and the PNG plots (default: <data dir>/bench/compare).")
@click.option("--references/--no-references", default=False,
              help="Add the published reference results (Apple M-series, Jetson Orin).")
def compare(files, out_dir, references) -> None:
    """Merge results (edgeai JSON, llama-bench JSON, mlx_lm.benchmark output) into a markdown
    table, PNG plots and a terminal chart."""
    from edgeai.bench.compare import load_all, terminal_chart, write_comparison

    out_dir = out_dir or settings_from({}).home / "bench" / "compare"
    results = load_all(list(files), include_references=references)
    written = write_comparison(results, out_dir)
    click.echo(terminal_chart(results))
    for path in written:
        click.echo(f"wrote {path}")


@bench.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
def import_(file, output) -> None:
    """Convert llama-bench JSON or mlx_lm.benchmark output into an edgeai result."""
    from edgeai.bench.importers import import_any
    from edgeai.bench.schema import save_result

    save_result(import_any(file), output)
    click.echo(f"wrote {output}")


@bench.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
def export(file, output) -> None:
    """Write an edgeai result as llama-bench-compatible JSON."""
    from edgeai.bench.compare import dump_llama_bench
    from edgeai.bench.schema import load_result

    dump_llama_bench(load_result(file), output)
    click.echo(f"wrote {output}")
