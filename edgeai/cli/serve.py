"""`edgeai serve`: the loaded model over OpenAI's and Ollama's HTTP APIs until Ctrl-C.

Boundary: flags -> a bound socket, a loaded model, a `ServeEngine` and uvicorn; the first line
on stdout is the base URL. Safety before anything loads: loopback only unless
`--allow-remote`; the API key from `EDGEAI_API_KEY` or `--api-key-file` (`--api-key` works but
shows in `ps`: a warning says so); the port is bound first, so "in use" fails at once.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from contextlib import ExitStack, suppress
from dataclasses import replace
from pathlib import Path

import click

from edgeai.cli.common import draft_options, mmproj_from, mmproj_option, model_options, settings_from
from edgeai.errors import BadInput, MissingExtra
from edgeai.runtime.base import draft_of

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn(text: str) -> None:
    click.secho(f"warning: {text}", err=True, fg="yellow")


def read_api_key(key_file: str | None, key: str | None) -> str | None:
    """--api-key-file, else EDGEAI_API_KEY, else --api-key (with a warning); None: no key."""
    if key_file:
        path = Path(key_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise BadInput(f"the API key file does not exist: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read the API key file {path}: {exc}") from None
        if not text or "\n" in text:
            raise BadInput(f"the API key file {path} must hold one key on one line")
        return text
    if os.environ.get("EDGEAI_API_KEY"):
        return os.environ["EDGEAI_API_KEY"].strip()
    if key:
        warn("a key given with --api-key shows in `ps` to every user of this machine; "
             "use EDGEAI_API_KEY or --api-key-file")
        return key
    return None


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror}",
                       "choose another --port" if exc.errno == 98 else None) from None
    sock.listen(128)  # connections wait in the backlog while the model loads
    return sock


@click.command()
@model_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port (0: any free one).")
@click.option("--parallel", default=4, show_default=True, type=int,
              help="Requests decoded together (sequences of one context; --ctx is per sequence).")
@click.option("--queue", "queue_size", default=16, show_default=True, type=int,
              help="Requests that may wait for a sequence; more get 429.")
@click.option("--api-key-file", metavar="FILE", help="Require this key (one line) as a Bearer token.")
@click.option("--api-key", metavar="KEY",
              help="Require this key (visible in `ps`: prefer the file or EDGEAI_API_KEY).")
@click.option("--allow-remote", is_flag=True, help="Allow an address other than loopback.")
@click.option("--cors", "cors", multiple=True, metavar="ORIGIN", help="Allow browser requests from ORIGIN.")
@click.option("--store", is_flag=True, help="Keep API conversations in chat.db (they show in the chat app).")
@click.option("--max-tokens", "max_tokens", default=4096, show_default=True, type=int,
              help="The most tokens one reply may ask for.")
@draft_options
@mmproj_option
def serve(host: str, port: int, parallel: int, queue_size: int, api_key_file: str | None,
          api_key: str | None, allow_remote: bool, cors: tuple[str, ...], store: bool, max_tokens: int,
          **opts) -> None:
    """Serve the model over the OpenAI API (/v1/...) and Ollama's (/api/...) until Ctrl-C."""
    if not is_loopback(host) and not allow_remote:
        raise BadInput(f"refusing to listen on {host}: only this machine could reach 127.0.0.1, "
                       f"anyone on the network could reach {host}",
                       "add --allow-remote (and an API key) if that is what you want")
    if parallel < 1 or queue_size < 0 or max_tokens < 1:
        raise BadInput("--parallel and --max-tokens must be at least 1, --queue at least 0")
    key = read_api_key(api_key_file, api_key)
    opts["mmproj"] = mmproj_from(opts)  # a bad projector file, before the port is bound
    if not is_loopback(host):
        warn(f"listening on {host}: other machines can reach this server"
             + ("" if key else " and no API key is set"))
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise MissingExtra("the server (starlette, uvicorn)", "pip install 'edgeai[serve]'") from None
    from edgeai.serve.app import Options
    from edgeai.serve.requests import Limits

    settings = settings_from(opts)
    options = Options(api_key=key, cors=cors, limits=Limits(max_tokens=min(max_tokens, settings.n_ctx)))
    sock = bind(host, port)
    try:
        _run(sock, settings, opts, parallel=parallel, queue=queue_size, options=options, store=store)
    finally:
        sock.close()


def _run(sock: socket.socket, settings, opts, *, parallel: int, queue: int, options, store: bool) -> None:
    """Load the model, build the app, print the base URL, serve until Ctrl-C; then close the
    batcher before the model it uses (an ExitStack unwinds in reverse)."""
    import uvicorn

    from edgeai.chat.turn import default_hooks
    from edgeai.cli.common import open_model
    from edgeai.serve.app import create_app
    from edgeai.serve.engine import ServeEngine

    with ExitStack() as stack:
        backend, spec = open_model(settings, opts.get("backend"), opts.get("chat_template"), n_seq=parallel,
                                   mmproj=opts.get("mmproj"), draft=opts.get("draft"),
                                   draft_max=opts.get("draft_max"),
                                   draft_min=opts.get("draft_min"))  # drafts while one request runs
        stack.callback(backend.close)
        if store:
            from edgeai.chat.store import open_chat_db
            from edgeai.serve.store import ApiStore

            db = open_chat_db(settings)
            stack.callback(db.close)
            options = replace(options, store=ApiStore(db, spec.id, backend.name))
        # the guard, as the chat app runs it (without the LLM judge: the batcher owns the model)
        engine = ServeEngine(backend, catalog_id(spec.id), settings, window=settings.n_ctx, queue=queue,
                             hooks=default_hooks(settings), aliases=(spec.id, settings.model))
        stack.callback(engine.close)
        app = create_app(engine, options)
        host, port = sock.getsockname()[:2]
        click.echo(f"http://{f'[{host}]' if ':' in host else host}:{port}/v1")
        kept = ", conversations kept in chat.db" if store else ""
        if draft_of(backend) != "off":
            kept += f", drafting with {backend.draft} while one request runs"
        if backend.capabilities.vision:
            kept += ", images go to the model, one such request at a time"
        click.echo(f"serving {engine.model_id} ({backend.name}, {parallel} sequences of "
                   f"{settings.n_ctx} tokens{kept}); Ctrl-C stops", err=True)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2)
        with suppress(KeyboardInterrupt):
            uvicorn.Server(config).run(sockets=[sock])


def catalog_id(spec_id: str) -> str:
    """'qwen2.5-coder-0.5b-instruct:q4_k_m@gguf' -> the catalog id clients name it by."""
    from edgeai.models.catalog import parse_id

    try:
        return parse_id(spec_id)[0]
    except BadInput:
        return spec_id
