"""`edgeai serve` for tests: the real app under uvicorn on a loopback port, in this process (over
any loaded backend) or as the real command in a subprocess (over the real model)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from edgeai.cli.serve import bind
from edgeai.config import Settings
from edgeai.serve.app import Options, create_app
from edgeai.serve.engine import ServeEngine


@dataclass
class Served:
    root: str  # http://127.0.0.1:PORT
    engine: ServeEngine | None = None
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{self.root}/v1"


@contextmanager
def serving(backend, settings: Settings, *, model_id: str = "echo", options: Options | None = None,
            window: int | None = None, queue: int = 16, hooks=None) -> Iterator[Served]:
    """The app over `backend` until the block ends (the backend stays loaded)."""
    import uvicorn

    window = window or backend.capabilities.context_length or 4096
    extra = {} if hooks is None else {"hooks": hooks}
    engine = ServeEngine(backend, model_id, settings, window=window, queue=queue, **extra)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(engine, options or Options()), log_level="warning",
                                           lifespan="off", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield Served(f"http://127.0.0.1:{sock.getsockname()[1]}", engine)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.close()
        sock.close()


@contextmanager
def serve_command(*args: str, env: dict | None = None, timeout: float = 120) -> Iterator[Served]:
    """`edgeai serve --port 0 ARGS` as a user runs it; its first stdout line is the base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "edgeai", "serve", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    try:
        line = _first_line(proc, timeout)
        yield Served(line.removesuffix("/v1"), process=proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.stdout.close()
        proc.stderr.close()


def _first_line(proc: subprocess.Popen, timeout: float) -> str:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box or not box[0].startswith("http://"):
        proc.kill()
        raise AssertionError(f"edgeai serve did not start: {box} {proc.stderr.read()[-2000:]}")
    return box[0].strip()
