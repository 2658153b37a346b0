"""A small OpenAI-compatible HTTP server over any edgeai Backend, for tests of the `remote` backend.

Loopback only, a random port, one thread per request and one lock around the backend (a loaded
backend is not thread-safe). It speaks what the remote backend expects of llama-server, vLLM
and Ollama: GET /v1/models, POST /v1/chat/completions and /v1/completions (SSE or one JSON
body), llama-server's POST /tokenize and /detokenize (switchable off, as on Ollama), and
OpenAI error bodies. Every request is recorded so tests can check what the client sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edgeai.errors import BadInput, EdgeAIError
from edgeai.types import Chunk, GenParams, Message

MAX_BODY = 1 << 20  # bytes: a test request is small; anything bigger is refused
NUMBERS = {"max_tokens": int, "temperature": float, "top_p": float, "top_k": int, "min_p": float,
           "repeat_penalty": float, "presence_penalty": float, "frequency_penalty": float, "seed": int}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Endpoint:
    """A running server: `url` is the OpenAI base (ending in /v1), `root` the server root."""

    port: int
    model: str
    requests: list[Request] = field(default_factory=list)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


@contextmanager
def serve_backend(backend, *, model: str = "echo", tokenize: bool = True,
                  reasoning_format: str = "deepseek") -> Iterator[Endpoint]:
    """Serve a loaded backend until the block ends. `tokenize=False` answers /tokenize with 404
    (like Ollama or vLLM); `reasoning_format` is llama-server's flag: "deepseek" sends reasoning
    as `delta.reasoning_content`, "none" inline in the content between <think> tags."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True  # a handler stuck on a dead client never blocks the shutdown
    endpoint = Endpoint(port=server.server_address[1], model=model)
    server.backend, server.endpoint, server.lock = backend, endpoint, threading.Lock()
    server.tokenize, server.reasoning_format = tokenize, reasoning_format
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def params_from(body: dict[str, Any]) -> GenParams:
    """An OpenAI request's sampling fields as GenParams (absent fields keep their defaults)."""
    values = {k: cast(body[k]) for k, cast in NUMBERS.items() if body.get(k) is not None}
    if body.get("max_completion_tokens") is not None:
        values["max_tokens"] = int(body["max_completion_tokens"])
    stop = body.get("stop") or ()
    values["stop"] = (stop,) if isinstance(stop, str) else tuple(str(s) for s in stop)
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        values["response_format"] = fmt["json_schema"]["schema"]
    values["ignore_eos"] = bool(body.get("ignore_eos"))  # llama-server's extension
    return GenParams(**values)


def messages_from(raw: list[dict[str, Any]]) -> list[Message]:
    def text(content: Any) -> str:
        if isinstance(content, list):  # content parts: keep the text ones
            return "".join(p.get("text", "") for p in content if p.get("type") == "text")
        return str(content or "")

    return [Message(str(m["role"]), text(m.get("content"))) for m in raw]


class _Handler(BaseHTTPRequestHandler):
    timeout = 10  # seconds: a client that never sends its body cannot hold a thread forever

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the request log
        pass

    # -- routing -------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._record({})
        if self.path.rstrip("/") != "/v1/models":
            return self._error(404, f"no route GET {self.path}")
        entry = {"id": self.server.endpoint.model, "object": "model", "owned_by": "edgeai"}
        context = self.server.backend.capabilities.context_length
        if context:
            entry["max_model_len"] = context  # where vLLM states the served context window
        self._json(200, {"object": "list", "data": [entry]})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._error(413, f"request body over {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self._error(400, "the request body is not JSON")
        if not isinstance(body, dict):
            return self._error(400, "the request body is not a JSON object")
        self._record(body)
        routes = {"/v1/chat/completions": self._chat, "/v1/completions": self._complete}
        if self.server.tokenize:
            routes.update({"/tokenize": self._tokenize, "/detokenize": self._detokenize})
        route = routes.get(self.path.rstrip("/"))
        if route is None:
            return self._error(404, f"no route POST {self.path}")
        try:
            route(body)
        except (KeyError, TypeError, ValueError) as exc:
            self._error(400, f"malformed request: {type(exc).__name__}: {exc}")

    def _record(self, body: dict[str, Any]) -> None:
        self.server.endpoint.requests.append(
            Request(self.command, self.path, body, {k.lower(): v for k, v in self.headers.items()}))

    # -- endpoints -----------------------------------------------------------------------
    def _tokenize(self, body: dict[str, Any]) -> None:
        with self.server.lock:
            self._json(200, {"tokens": self.server.backend.tokenize(str(body["content"]))})

    def _detokenize(self, body: dict[str, Any]) -> None:
        with self.server.lock:
            self._json(200, {"content": self.server.backend.detokenize([int(t) for t in body["tokens"]])})

    def _chat(self, body: dict[str, Any]) -> None:
        self._generate(body, messages_from(body["messages"]), chat=True)

    def _complete(self, body: dict[str, Any]) -> None:
        prompt = body["prompt"]
        self._generate(body, prompt[0] if isinstance(prompt, list) else str(prompt), chat=False)

    def _generate(self, body: dict[str, Any], prompt: str | list[Message], chat: bool) -> None:
        params = params_from(body)
        with self.server.lock:  # held for the whole reply: the backend serves one turn at a time
            try:
                stream = self.server.backend.stream(prompt, params)
            except BadInput as exc:
                return self._error(400, exc.message)
            except EdgeAIError as exc:
                return self._error(500, exc.message, "server_error")
            try:
                if body.get("stream"):
                    usage = (body.get("stream_options") or {}).get("include_usage", False)
                    self._sse(stream, chat, usage)
                else:
                    self._whole(stream, chat)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client hung up: stop generating, as llama-server does
            finally:
                stream.close()

    # -- replies -------------------------------------------------------------------------
    def _sse(self, stream: Iterator[Chunk], chat: bool, include_usage: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()  # HTTP/1.0: the stream ends when the connection closes
        thinking = False
        if chat:
            self._event(self._piece(chat, {"role": "assistant", "content": ""}))
        try:
            for chunk in stream:
                text, fields = "", {}
                if chunk.reasoning and self.server.reasoning_format == "deepseek":
                    fields["reasoning_content"] = chunk.reasoning
                elif chunk.reasoning:
                    text, thinking = ("" if thinking else "<think>") + chunk.reasoning, True
                if chunk.text:
                    text, thinking = text + ("</think>" if thinking else "") + chunk.text, False
                if text:
                    fields["content"] = text
                if fields or chunk.finish_reason:
                    self._event(self._piece(chat, fields, _finish(chunk)))
                if chunk.finish_reason and include_usage:
                    self._event({**self._piece(chat, {}), "choices": [], "usage": _usage(chunk)})
        except EdgeAIError as exc:  # a failure mid-reply: an error event, as llama-server sends
            self._event({"error": {"message": exc.message, "type": "server_error", "code": 500}})
            return
        self.wfile.write(b"data: [DONE]\n\n")

    def _whole(self, stream: Iterator[Chunk], chat: bool) -> None:
        chunks = list(stream)
        text, reasoning = "".join(c.text for c in chunks), "".join(c.reasoning for c in chunks)
        final = chunks[-1]
        choice: dict[str, Any] = {"index": 0, "finish_reason": _finish(final)}
        if chat:
            choice["message"] = {"role": "assistant", "content": text, "reasoning_content": reasoning or None}
        else:
            choice["text"] = text
        self._json(200, {"id": "edgeai-test", "object": "chat.completion" if chat else "text_completion",
                         "created": int(time.time()), "model": self.server.endpoint.model,
                         "choices": [choice], "usage": _usage(final)})

    def _piece(self, chat: bool, fields: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if chat:
            choice["delta"] = fields
        else:
            choice["text"] = fields.get("content", "")
        return {"id": "edgeai-test", "object": "chat.completion.chunk" if chat else "text_completion",
                "created": int(time.time()), "model": self.server.endpoint.model, "choices": [choice]}

    def _event(self, data: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(data).encode() + b"\n\n")

    def _json(self, status: int, data: dict[str, Any]) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._json(status, {"error": {"message": message, "type": kind, "code": status}})


def _finish(chunk: Chunk) -> str | None:
    if chunk.finish_reason is None:
        return None
    return "length" if chunk.finish_reason == "length" else "stop"


def _usage(chunk: Chunk) -> dict[str, int]:
    prompt, completion = chunk.prompt_tokens or 0, chunk.completion_tokens or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
