"""`edgeai rag`: index files into named collections and ask them questions, offline.

Every `rag query` is a new process: nothing here imports torch or transformers (the encoder is
numpy), and heavy modules are imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeai.config import load_settings

COLLECTION = click.option("--collection", "-c", default="default", show_default=True, metavar="NAME",
                          help="Collection name.")


@click.group()
def rag() -> None:
    """Ask questions about your own files: index them, search them, measure retrieval."""


@rag.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@COLLECTION
@click.option("--include", multiple=True, metavar="GLOB", help="Only files matching (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files matching (repeatable).")
@click.option("--max-file-mb", type=float, default=256, show_default=True,
              help="Skip (and report) files larger than this.")
def add(paths, collection, include, exclude, max_file_mb) -> None:
    """Index files and folders (recursive). Unchanged files are skipped; re-running after an
    interruption continues where it stopped."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgeai.rag import api

    settings = load_settings()
    if max_file_mb <= 0:
        raise click.BadParameter("must be above 0", param_hint="--max-file-mb")
    console = Console(stderr=True)
    columns = (TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
               TextColumn("{task.fields[chunks]} chunks · {task.fields[rate]:.1f} chunks/s"),
               TimeElapsedColumn(), TextColumn("{task.fields[current]}"))
    bar = Progress(*columns, console=console)
    task: list = []  # the bar appears with the first update: a bad path fails without one

    def update(p) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task("", total=None, chunks=0, rate=0.0, current=""))
        name = Path(p.current).name if p.current else ""
        detail = p.detail  # a slow file's own progress: "OCR page 3/12"
        bar.update(task[0], total=p.files_total, completed=p.files_done, chunks=p.chunks,
                   rate=p.chunks_per_s, current=name[:40] + (f" · {detail}" if detail else ""))

    try:
        report = api.ingest(settings, collection, list(paths), include=tuple(include),
                            exclude=tuple(exclude), max_mb=max_file_mb, progress=update)
    finally:
        if task:
            bar.stop()
    for notice in report.notices:
        click.echo(f"note: {notice}", err=True)
    for _, message in report.errors:
        click.echo(f"skipped: {message}", err=True)
    click.echo(f"{collection}: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
               f"{report.removed} removed, {len(report.errors)} skipped · {report.chunks} chunks "
               f"in {report.seconds:.1f} s ({report.chunks_per_s:.1f} chunks/s)")
    if report.errors and not (report.added or report.updated or report.unchanged):
        raise click.exceptions.Exit(1)  # nothing could be indexed


def reindex_progress(name: str):
    """The progress of re-indexing a collection kept by an older schema (on its first open):
    a bar on a terminal, else one line per update on stderr."""
    import sys

    def update(p) -> None:
        file = Path(p.current).name if p.current else ""
        line = (f"re-indexing {name} for the new index format: {p.files_done}/{p.files_total} files · "
                f"{p.chunks} chunks" + (f" · {file}" if file else ""))
        if sys.stderr.isatty():
            click.echo("\r\033[K" + line[:120], err=True, nl=p.files_done == p.files_total)
        else:
            click.echo(line, err=True)

    return update


@rag.command()
@click.argument("question")
@COLLECTION
@click.option("-k", "k", type=int, default=5, show_default=True, help="How many passages.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with every hit's full text.")
@click.option("--no-rerank", is_flag=True, help="Skip the rerank stage (fused order only).")
def query(question, collection, k, as_json, no_rerank) -> None:
    """Find the passages that answer QUESTION, best first."""
    from edgeai.rag import api

    hits = api.search(load_settings(), collection, question, k, rerank=not no_rerank,
                      progress=reindex_progress(collection))
    if as_json:
        click.echo(json.dumps({"query": question, "strategy": "retrieval", "hits": [
            {"rank": rank, "score": hit.score, "file": hit.file, "page": hit.page, "span": hit.span,
             "heading": hit.heading, "text": hit.text} for rank, hit in enumerate(hits, 1)]},
            ensure_ascii=False))
        return
    if not hits:
        click.echo("no passages found")
    for rank, hit in enumerate(hits, 1):
        where = ", ".join(x for x in (f"page {hit.page}" if hit.page else "", hit.span) if x)
        click.echo(click.style(f"[{rank}] {hit.file}", bold=True) + (f" ({where})" if where else "")
                   + f"  score {hit.score:.3f}")
        if hit.heading and hit.heading != hit.span:
            click.echo(f"    § {hit.heading}")
        text = " ".join(hit.text.split())
        click.echo(f"    {text[:300]}{'…' if len(text) > 300 else ''}")


@rag.command(name="ls")
def ls_() -> None:
    """List collections."""
    from edgeai.rag import api

    settings = load_settings()
    names = api.list_collections(settings)
    if not names:
        click.echo("no collections yet: edgeai rag add PATH...")
    from edgeai.errors import EdgeAIError

    for name in names:  # one damaged or foreign file must not hide the others
        try:
            info = api.stats(settings, name)
        except EdgeAIError as exc:
            click.echo(f"{name:<20} (cannot be read: {exc.message})")
            continue
        click.echo(f"{name:<20} {info['files']:>6} files {info['chunks']:>8} chunks")


def collection_name(name: str | None, collection: str | None, default: str | None) -> str:
    """NAME or -c NAME (every rag command takes -c; these also take it positionally)."""
    from edgeai.errors import BadInput

    if name and collection and name != collection:
        raise BadInput(f"two collections named: {name!r} and -c {collection!r}", "give one")
    chosen = name or collection or default
    if chosen is None:
        raise BadInput("which collection? give its NAME or -c NAME", "edgeai rag ls lists them")
    return chosen


@rag.command()
@click.argument("name", required=False)
@click.option("--collection", "-c", metavar="NAME", help="Collection name (or give NAME).")
def rm(name, collection) -> None:
    """Delete a collection (the index only; your files are not touched)."""
    from edgeai.rag import api

    name = collection_name(name, collection, None)  # deleting one is never implicit
    api.remove_collection(load_settings(), name)
    click.echo(f"removed collection {name}")


@rag.command()
@click.argument("name", required=False)
@click.option("--collection", "-c", metavar="NAME", help="Collection name (or give NAME; default: default).")
def stats(name, collection) -> None:
    """Files, chunks, embedder and size of a collection."""
    import time

    from edgeai.rag import api
    from edgeai.rag.extract import human_size

    info = api.stats(load_settings(), collection_name(name, collection, "default"))
    info["created"] = time.strftime("%Y-%m-%d %H:%M", time.localtime(info["created"]))
    info["size"] = human_size(info.pop("bytes"))
    for key, value in info.items():
        click.echo(f"{key:<12} {value}")


@rag.command(name="eval")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@COLLECTION
@click.option("-k", "k", type=int, default=5, show_default=True)
def eval_(file, collection, k) -> None:
    """Recall@k on your corpus. FILE: TSV lines of question <TAB> expected snippet."""
    from edgeai.rag import api

    report = api.evaluate(load_settings(), collection, api.read_questions(file), k,
                          progress=reindex_progress(collection))
    for question, expected in report.misses:
        click.echo(f"miss: {question}  (expected: {expected[:60]})")
    click.echo(f"recall@{k} = {report.recall:.3f} ({report.found}/{report.total}) · MRR = {report.mrr:.3f}")
