"""The `remote` backend: a client for any OpenAI-compatible endpoint (llama-server, Ollama's /v1,
vLLM, LM Studio, `edgeai serve`).

Boundary: HTTP and the OpenAI wire format stop here; callers see the same `Chunk`s as from a
local backend. Standard library only (http.client), so choosing it imports nothing heavy.
A model is addressed as `http(s)://host:port[/v1][#model-name]`. The server renders the chat
template and samples; this side maps `GenParams`, parses the SSE stream, applies stop sequences
and `<think>` splitting (TextStream) and times the reply as the client sees it. Tokenizing uses
llama-server's /tokenize where the server has it, else Unicode code points (a rough count).

Images on a message go as OpenAI `image_url` content parts (Ollama's /v1, vLLM and llama-server
take them): a base64 data URL of the image decoded within the vision cap, downscaled to
`SEND_MAX_PIXELS` and re-encoded (`image_data_url`), so EXIF orientation is applied and no
metadata leaves the machine. The backend says it sees (`Capabilities.vision`): whether the served
model really does is the server's to decide, and a text-only one answers with its own error.
Pillow is imported only when a message carries an image.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from edgeai.errors import BackendUnavailable, BadInput, EdgeAIError
from edgeai.runtime.base import final_chunk
from edgeai.runtime.textstream import TextStream
from edgeai.types import Capabilities, Chunk, GenParams, LoadOptions, Message, ModelSpec

CONNECT_TIMEOUT = 3.0  # seconds to open a connection: an unreachable endpoint is a message, not a hang
PROBE_TIMEOUT = 10.0  # seconds for GET /models to answer at load
DEFAULT_TIMEOUT = 300.0  # seconds a reply may stay silent (a long prefill sends nothing) before we give up
POLL_S = 0.25  # while the server is silent, yield an empty chunk this often: a point to close the stream
ERROR_BYTES = 64 << 10  # most of an error body we read
API_KEY_VARS = ("EDGEAI_REMOTE_API_KEY", "OPENAI_API_KEY")
NOT_THERE = (400, 404, 405, 422, 501)  # how servers without llama-server's /tokenize answer it
# pixels an image is sent with: vision encoders work at 0.1-2 MP (LLaVA 336 px, Qwen2-VL ~1-2 MP),
# and a 40 MP photo as base64 would be a 50 MB request
SEND_MAX_PIXELS = 4_000_000
JPEG_QUALITY = 90


def remote_spec(model: str) -> ModelSpec:
    """`http(s)://host:port[/v1][#name]` -> a spec whose source is the base URL ending in /v1."""
    url, _, name = model.partition("#")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"not an endpoint URL: {model}", "use http://host:port/v1#model-name")
    path = parts.path.rstrip("/")
    path = path if path.endswith("/v1") else path + "/v1"
    base = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    return ModelSpec(id=name.strip() or base, family="remote", source=base)


class RemoteBackend:
    name = "remote"

    def __init__(self) -> None:
        self.capabilities = Capabilities(chat_template=True, vision=True, grammar=True, logits=False)
        self.timeout = _env_timeout()  # tests and impatient users shorten it
        self.base = ""  # http://host:port/v1
        self.root = ""  # the base without /v1: where llama-server's /tokenize lives
        self.model = ""
        self.headers: dict[str, str] = {}
        self.tokenize_fallback = False  # True once the server showed it has no /tokenize
        self._live: set[socket.socket] = set()  # sockets of streams in flight, for close()

    # -- loading -------------------------------------------------------------------------
    def load(self, spec: ModelSpec, opts: LoadOptions) -> None:
        if not spec.source.startswith(("http://", "https://")):
            raise BadInput(f"the remote backend needs an endpoint URL, not {spec.id}",
                           "use --model http://host:port/v1#model-name")
        self.base = spec.source.rstrip("/")
        self.root = self.base.removesuffix("/v1")
        key = next((os.environ[v] for v in API_KEY_VARS if os.environ.get(v)), None)
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        probe = min(self.timeout, PROBE_TIMEOUT)
        try:
            status, raw = self._call("GET", f"{self.base}/models", None, probe)
            listing = json.loads(raw) if status < 400 else None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise self._unreachable(_reason(exc, probe)) from None
        if status >= 400:
            hint = _http_error(self.base, status, raw).hint  # a refused key says which setting to fix
            raise self._unreachable(f"HTTP {status}: {_error_message(raw)}", hint)
        if not isinstance(listing, dict):
            raise self._unreachable("GET /models did not answer with an OpenAI model list")
        models = [m for m in (listing.get("data") or []) if isinstance(m, dict) and "id" in m]
        named = "" if spec.id.startswith(("http://", "https://")) else spec.id
        if not named and not models:
            raise BadInput(f"the endpoint at {self.base} lists no models",
                           f"name one: {self.base}#model-name")
        self.model = named or models[0]["id"]
        # llama-server accepts any name, so a name missing from the list is not refused here
        entry = next((m for m in models if m["id"] == self.model), {})
        self.capabilities = Capabilities(chat_template=True, vision=True, grammar=True, logits=False,
                                         context_length=_context_length(entry))

    def _unreachable(self, reason: str, hint: str | None = None) -> BackendUnavailable:
        return BackendUnavailable(f"cannot reach the OpenAI-compatible endpoint at {self.base}: {reason}",
                                  hint or "start the server, or check the URL (http://host:port/v1#model)")

    def close(self) -> None:
        for sock in list(self._live):
            _hang_up(sock)
        self._live.clear()

    # -- tokens --------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        if not self.tokenize_fallback:
            data = self._tokens_call("/tokenize", {"content": text, "add_special": False})
            if data is not None:
                return [int(t) for t in data.get("tokens", [])]
        return [ord(c) for c in text]

    def detokenize(self, ids: list[int]) -> str:
        if not self.tokenize_fallback:
            data = self._tokens_call("/detokenize", {"tokens": list(ids)})
            if data is not None:
                return str(data.get("content", ""))
        return "".join(chr(i) for i in ids)

    def _tokens_call(self, path: str, body: dict) -> dict | None:
        """llama-server's answer, or None (remembered) when the server has no such endpoint."""
        url = self.root + path
        try:
            status, raw = self._call("POST", url, body, self.timeout)
            if status in NOT_THERE:
                self.tokenize_fallback = True
                return None
            if status >= 400:
                raise _http_error(url, status, raw)
            data = json.loads(raw)
            return data if isinstance(data, dict) else {}
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise EdgeAIError(f"tokenizing through {url} failed: {_reason(exc, self.timeout)}") from None

    # -- generation ----------------------------------------------------------------------
    def stream(self, prompt: str | list[Message], params: GenParams) -> Iterator[Chunk]:
        if not self.base:
            raise EdgeAIError("the remote backend is not loaded")
        chat = isinstance(prompt, list)
        empty = not any(m.content.strip() or m.images for m in prompt) if chat else not prompt.strip()
        if empty:
            raise BadInput("the prompt is empty")
        if chat and any(m.audio for m in prompt):
            raise BadInput("the remote backend does not pass audio on",
                           "transcribe it first: edgeai transcribe")
        body = request_body(params)
        body["model"] = self.model
        if chat:
            path = "/chat/completions"
            body["messages"] = [{"role": m.role, "content": _content(m)} for m in prompt]
        else:  # a raw string is a completion: no chat template on the server either
            path = "/completions"
            body["prompt"] = prompt
        return self._run(self.base + path, body, params, prompt)

    def _run(self, url: str, body: dict, params: GenParams, prompt: str | list[Message]) -> Iterator[Chunk]:
        start = time.perf_counter()
        try:
            conn, sock = self._send("POST", url, body, self.timeout)
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(_reason(exc, self.timeout)) from None
        self._live.add(sock)
        text = TextStream(params.stop)
        first = last = None
        count, finish, usage = 0, None, {}
        try:
            for event in self._events(url, conn):
                if event is None:
                    yield Chunk()  # the server is silent (prefill): a point to close the stream
                    continue
                usage = event.get("usage") or usage
                choice = (event.get("choices") or [{}])[0]
                delta = choice.get("delta") or {}
                piece = delta.get("content") or choice.get("text") or ""
                thought = delta.get("reasoning_content") or delta.get("reasoning") or ""
                finish = choice.get("finish_reason") or finish
                if piece or thought:
                    last = time.perf_counter()
                    first = first or last
                    count += 1
                    answer, reasoning = text.feed(piece)
                    if answer or reasoning or thought:
                        yield Chunk(text=answer, reasoning=thought + reasoning)
                    if text.stopped:
                        break  # a stop sequence the server did not apply: hang up, stop paying for tokens
            if finish is None and not text.stopped:
                raise EdgeAIError(f"the connection to {url} closed before the reply finished")
        finally:  # the reader thread closes the response once the hung-up socket wakes it
            self._live.discard(sock)
            _hang_up(sock)
        answer, reasoning = text.flush()
        prompt_tokens = usage.get("prompt_tokens") or self._count(prompt)
        completion = count if text.stopped else usage.get("completion_tokens") or count
        # peak_mem_mb stays None: the memory is the server's, not ours to measure
        yield final_chunk(text=answer, reasoning=reasoning,
                          finish_reason="length" if finish == "length" and not text.stopped else "stop",
                          prompt_tokens=prompt_tokens, completion_tokens=completion,
                          start=start, first=first, last=last)

    def _events(self, url: str, conn: http.client.HTTPConnection) -> Iterator[dict | None]:
        """The SSE stream's JSON events; None each POLL_S the server stays silent."""
        lines: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=_pump, args=(url, conn, lines), daemon=True).start()
        heard = time.monotonic()
        while True:
            try:
                line = lines.get(timeout=POLL_S)
            except queue.Empty:
                if time.monotonic() - heard > self.timeout:
                    raise self._silent(url) from None
                yield None
                continue
            heard = time.monotonic()
            if isinstance(line, EdgeAIError):
                raise line
            if isinstance(line, TimeoutError):  # the socket's own timeout, a hair before ours
                raise self._silent(url)
            if isinstance(line, Exception):
                raise EdgeAIError(f"the connection to {url} dropped mid-reply: "
                                  f"{_reason(line, self.timeout)}") from None
            if line is None:
                return
            data = line.strip()
            if not data.startswith(b"data:"):
                continue  # blank separators, SSE comments (keep-alives), event names
            data = data[5:].strip()
            if data == b"[DONE]":
                return
            try:
                event = json.loads(data)
            except ValueError:
                raise EdgeAIError(f"{url} sent a stream line that is not JSON: {data[:80]!r}") from None
            if isinstance(event, dict) and event.get("error"):
                raise EdgeAIError(f"{url} failed mid-reply: {_error_message(data)}")
            if isinstance(event, dict):
                yield event

    def _silent(self, url: str) -> EdgeAIError:
        return EdgeAIError(f"{url} sent nothing for {self.timeout:g} s",
                           "the server may be overloaded; EDGEAI_REMOTE_TIMEOUT sets the wait (seconds)")

    def _count(self, prompt: str | list[Message]) -> int | None:
        """The prompt's tokens when the server reported no usage (contents only, no template)."""
        texts = [m.content for m in prompt] if isinstance(prompt, list) else [prompt]
        try:
            return sum(len(self.tokenize(t)) for t in texts)
        except EdgeAIError:
            return None

    # -- HTTP ----------------------------------------------------------------------------
    def _send(self, method: str, url: str, body: dict | None,
              timeout: float) -> tuple[http.client.HTTPConnection, socket.socket]:
        """Connect (within CONNECT_TIMEOUT, whatever `timeout` is) and send one request."""
        parts = urlsplit(url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = kind(parts.hostname, parts.port, timeout=CONNECT_TIMEOUT)
        try:
            try:
                conn.connect()
            except TimeoutError:
                raise OSError(f"no connection within {CONNECT_TIMEOUT:g} s") from None
            conn.sock.settimeout(timeout)
            sock = conn.sock  # kept: http.client drops its own reference once the reply arrives
            data = json.dumps(body, default=dict).encode() if body is not None else None
            headers = {**self.headers, "Accept": "application/json, text/event-stream"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, parts.path or "/", body=data, headers=headers)
        except BaseException:
            conn.close()
            raise
        return conn, sock

    def _call(self, method: str, url: str, body: dict | None, timeout: float) -> tuple[int, bytes]:
        """One small request: the status and the whole body."""
        conn, _ = self._send(method, url, body, timeout)
        try:
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


def _content(message: Message) -> str | list[dict[str, Any]]:
    """A message's OpenAI content: its text, or with images the text part and one `image_url`
    part per image (the order OpenAI's own examples use)."""
    if not message.images:
        return message.content
    parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    parts += [{"type": "image_url", "image_url": {"url": image_data_url(path)}} for path in message.images]
    return parts


def image_data_url(path: str | Path, max_pixels: int = SEND_MAX_PIXELS) -> str:
    """`data:image/...;base64,...` of the image at `path`: decoded within the cap (a corrupt file
    or a bomb is BadInput), EXIF orientation applied, at most `max_pixels`, re-encoded (JPEG for
    a JPEG source, PNG for the rest: screenshots and scans keep sharp text)."""
    import base64
    import io

    from edgeai.vision.image import open_image

    opened = open_image(path)  # the vision cap (not max_pixels: it also bounds a whole decode)
    kind = "jpeg" if opened.facts.format in ("JPEG", "MPO") else "png"
    image = opened.image
    if image.width * image.height > max_pixels:
        shrink = (max_pixels / (image.width * image.height)) ** 0.5
        image = image.resize((max(1, int(image.width * shrink)), max(1, int(image.height * shrink))),
                             reducing_gap=3.0)
    buffer = io.BytesIO()
    image.save(buffer, format=kind.upper(), **({"quality": JPEG_QUALITY} if kind == "jpeg" else {}))
    return f"data:image/{kind};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def request_body(params: GenParams) -> dict[str, Any]:
    """GenParams as OpenAI request fields, plus the llama-server/vLLM sampling extensions."""
    body: dict[str, Any] = {
        "stream": True, "stream_options": {"include_usage": True},
        "max_tokens": params.max_tokens, "temperature": params.temperature, "top_p": params.top_p,
        "presence_penalty": params.presence_penalty, "frequency_penalty": params.frequency_penalty,
        "top_k": params.top_k, "min_p": params.min_p,
        # llama-server reads repeat_penalty, vLLM repetition_penalty; each ignores the other
        "repeat_penalty": params.repeat_penalty, "repetition_penalty": params.repeat_penalty,
    }
    if params.seed is not None:
        body["seed"] = params.seed
    if params.ignore_eos:  # llama-server and vLLM honour it; others ignore an unknown field
        body["ignore_eos"] = True
    if params.stop:
        body["stop"] = list(params.stop)
    if params.response_format is not None:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "output", "schema": params.response_format}}
    return body


def _pump(url: str, conn: http.client.HTTPConnection, out: queue.SimpleQueue) -> None:
    """Read the reply in a thread, so the generator can wake up (and be closed) while the
    server is silent. Puts lines (bytes), then None at the end, or an exception."""
    resp = None
    try:
        resp = conn.getresponse()
        if resp.status >= 400:
            out.put(_http_error(url, resp.status, resp.read(ERROR_BYTES)))
            return
        for line in resp:
            out.put(line)
        out.put(None)
    except Exception as exc:  # a dropped connection, or our own hang-up when the stream closed
        out.put(exc)
    finally:
        if resp is not None:
            resp.close()
        conn.close()


def _hang_up(sock: socket.socket) -> None:
    """Shut the socket down now: the server sees the client leave (llama-server stops
    generating), and a thread blocked reading it wakes up."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer or by the reader
    sock.close()


def _http_error(url: str, status: int, raw: bytes) -> EdgeAIError:
    message = f"{url} answered HTTP {status}: {_error_message(raw)}"
    if status in (401, 403):
        return BadInput(message, "set EDGEAI_REMOTE_API_KEY (or OPENAI_API_KEY) to the server's key")
    if status < 500 and status not in (408, 429):
        return BadInput(message)
    return EdgeAIError(message)


def _error_message(raw: bytes) -> str:
    """The server's own words from an OpenAI-style error body, on one line."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    message: Any = raw.decode("utf-8", "replace")[:300] or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error")
        message = (error.get("message") if isinstance(error, dict) else error) or data.get("message") \
            or data.get("detail") or message
    return " ".join(str(message).split())


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, ValueError):
        return "the answer is not JSON (is this an OpenAI-compatible endpoint?)"
    return " ".join(str(exc).split()) or type(exc).__name__


def _context_length(entry: dict) -> int:
    """The served context window, where the listing says (vLLM: max_model_len; others vary)."""
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    for value in (entry.get("max_model_len"), entry.get("context_length"), entry.get("context_window"),
                  meta.get("n_ctx")):
        if isinstance(value, int) and value > 0:
            return value
    return 0


def _env_timeout() -> float:
    raw = os.environ.get("EDGEAI_REMOTE_TIMEOUT")
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise BadInput(f"EDGEAI_REMOTE_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise BadInput("EDGEAI_REMOTE_TIMEOUT must be above 0")
    return value
