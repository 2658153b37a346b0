"""The remote backend's own promises: addressing, errors that are messages (never hangs),
GenParams on the wire, reasoning, the tokenize fallback, and `edgeai run` against an endpoint."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from edgeai_testing.openai_server import serve_backend

from edgeai.config import Settings
from edgeai.errors import BackendUnavailable, BadInput, EdgeAIError
from edgeai.runtime import generate, get_backend
from edgeai.runtime.loader import pick_backend
from edgeai.runtime.remote import RemoteBackend, remote_spec
from edgeai.types import Chunk, GenParams, LoadOptions, Message, ModelSpec

SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
GREEDY = GenParams(max_tokens=64, temperature=0)


def echo(n_ctx: int = 4096, delay: float = 0.0):
    backend = get_backend("echo")
    backend.load(ModelSpec(id="echo", defaults={"token_delay": delay}), LoadOptions(n_ctx=n_ctx))
    return backend


def connect(url: str, timeout: float | None = None) -> RemoteBackend:
    remote = RemoteBackend()
    if timeout is not None:
        remote.timeout = timeout
    remote.load(remote_spec(url), LoadOptions())
    return remote


def ask(text: str) -> list[Message]:
    return [Message("user", text)]


@contextmanager
def raw_server(routes: dict[str, bytes], close: bool = True) -> Iterator[str]:
    """A bare loopback TCP server for what a well-behaved server never does. Each connection gets
    the bytes routed by its request line ("GET /v1/models"), then is closed (or held open with
    close=False); an unrouted request gets no answer at all."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    held: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)
            conn.settimeout(5)
            line = read_request(conn).split(b"\r\n", 1)[0].decode()
            reply = next((r for key, r in routes.items() if line.startswith(key + " ")), None)
            if reply is not None:
                conn.sendall(reply)
                if close:
                    conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        done.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


def read_request(conn: socket.socket) -> bytes:
    """The whole request: closing with unread bytes would send a reset, not a clean end."""
    data = b""
    while b"\r\n\r\n" not in data and (more := conn.recv(65536)):
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n")
                   if h.lower().startswith(b"content-length:")), 0)
    while len(body) < length and (more := conn.recv(65536)):
        body += more
    return head + b"\r\n\r\n" + body


def http_reply(body: bytes, content_type: str = "application/json", status: str = "200 OK") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if content_type == "application/json" else ""
    return f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{length}\r\n".encode() + body


MODELS = http_reply(json.dumps({"object": "list", "data": [{"id": "m"}]}).encode())
ONE_EVENT = http_reply(b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n',
                       content_type="text/event-stream")


# -- addressing ------------------------------------------------------------------------------
@pytest.mark.parametrize("model, source, model_id", [
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1"),
    ("http://127.0.0.1:8080/v1/#qwen", "http://127.0.0.1:8080/v1", "qwen"),
    ("https://llm.example/openai/v1#org/model-7b", "https://llm.example/openai/v1", "org/model-7b"),
    ("http://localhost:11434#llama3.2:1b", "http://localhost:11434/v1", "llama3.2:1b"),
])
def test_an_endpoint_url_resolves_to_a_remote_spec(model, source, model_id, tmp_path):
    from edgeai.runtime.loader import model_spec

    spec = model_spec(Settings(home=tmp_path), model, None)  # the loader, not the catalog
    assert (spec.family, spec.source, spec.id) == ("remote", source, model_id)
    assert pick_backend(spec, None) == "remote"


def test_a_url_without_a_host_is_bad_input():
    with pytest.raises(BadInput, match="not an endpoint URL"):
        remote_spec("http:///v1#m")


def test_without_a_name_the_first_listed_model_is_used():
    with serve_backend(echo(n_ctx=2048), model="tiny-echo") as endpoint:
        remote = connect(endpoint.url)
        assert remote.model == "tiny-echo"
        assert remote.capabilities.context_length == 2048  # from the listing's max_model_len
        generate(remote, ask("hi"), GREEDY)
        assert endpoint.requests[-1].body["model"] == "tiny-echo"


# -- errors are messages, never hangs --------------------------------------------------------
def test_an_unreachable_endpoint_is_a_quick_one_line_error():
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed on leaving the block: nothing listens there
    start = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        connect(f"http://127.0.0.1:{port}/v1#m")
    assert time.monotonic() - start < 5
    message = caught.value.message
    assert message.startswith(f"cannot reach the OpenAI-compatible endpoint at http://127.0.0.1:{port}/v1: ")
    assert "refused" in message and "\n" not in message


def test_a_server_that_never_answers_times_out_with_a_clear_error():
    with raw_server({}) as url:
        start = time.monotonic()
        with pytest.raises(BackendUnavailable, match=r"no answer within 0\.5 s"):
            connect(url, timeout=0.5)
        assert time.monotonic() - start < 5


def test_a_server_that_falls_silent_mid_reply_times_out_after_progress_chunks():
    with raw_server({"GET /v1/models": MODELS, "POST /v1/chat/completions": ONE_EVENT}, close=False) as url:
        remote = connect(url, timeout=0.6)
        start = time.monotonic()
        chunks: list[Chunk] = []
        with pytest.raises(EdgeAIError, match=r"sent nothing for 0\.6 s"):
            for chunk in remote.stream(ask("hi"), GREEDY):
                chunks.append(chunk)
        assert time.monotonic() - start < 5
        assert chunks[0].text == "Hi"
        # empty chunks while the server is silent: a point at which a consumer may close the stream
        assert len(chunks) > 1 and all(c == Chunk() for c in chunks[1:])


def test_a_connection_dropped_mid_reply_is_an_error():
    with raw_server({"GET /v1/models": MODELS, "POST /v1/chat/completions": ONE_EVENT}) as url:
        with pytest.raises(EdgeAIError, match="closed before the reply finished"):
            generate(connect(url), ask("hi"), GREEDY)


def test_a_non_json_models_answer_is_unavailable():
    page = http_reply(b"<html>hello</html>", content_type="text/html")
    with raw_server({"GET /v1/models": page}) as url:
        with pytest.raises(BackendUnavailable, match="not JSON"):
            connect(url)


class FailingEcho:
    """A backend that fails the way a server's backend can (out of memory, a crashed worker)."""

    name = "failing"

    def __init__(self) -> None:
        self.capabilities = echo().capabilities

    def stream(self, prompt, params):
        raise EdgeAIError("the GPU ran out of memory\nwhile allocating the KV cache")


def test_an_http_500_is_a_one_line_error_with_the_servers_message():
    with serve_backend(FailingEcho()) as endpoint:
        remote = connect(endpoint.url)
        with pytest.raises(EdgeAIError) as caught:
            generate(remote, ask("hi"), GREEDY)
    assert not isinstance(caught.value, BadInput)
    message = caught.value.message
    assert "HTTP 500" in message and "\n" not in message
    assert "the GPU ran out of memory while allocating the KV cache" in message


def test_an_http_400_from_the_server_is_bad_input():
    with serve_backend(echo(n_ctx=64)) as endpoint:
        with pytest.raises(BadInput, match="HTTP 400: prompt is .* the context window is 64"):
            generate(connect(endpoint.url), ask("x" * 200), GREEDY)


def test_an_empty_prompt_fails_before_any_request():
    with serve_backend(echo()) as endpoint:
        remote = connect(endpoint.url)
        with pytest.raises(BadInput, match="the prompt is empty"):
            remote.stream(ask("  "), GREEDY)
        with pytest.raises(BadInput, match="the prompt is empty"):
            remote.stream("", GREEDY)
        assert endpoint.paths() == ["/v1/models"]


# -- what goes over the wire -----------------------------------------------------------------
def test_gen_params_and_the_api_key_go_over_the_wire(monkeypatch):
    monkeypatch.setenv("EDGEAI_REMOTE_API_KEY", "sk-test")
    params = GenParams(max_tokens=33, temperature=0.5, top_p=0.9, top_k=7, min_p=0.1, repeat_penalty=1.1,
                       presence_penalty=0.2, frequency_penalty=0.3, seed=5, stop=("zzz",),
                       response_format=SCHEMA)
    with serve_backend(echo()) as endpoint:
        result = generate(connect(f"{endpoint.url}#echo"), ask("hi"), params)
        sent = endpoint.requests[-1]
    assert json.loads(result.text) == {"ok": True}
    assert sent.path == "/v1/chat/completions" and sent.headers["authorization"] == "Bearer sk-test"
    body = sent.body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    expected = {"max_tokens": 33, "temperature": 0.5, "top_p": 0.9, "top_k": 7, "min_p": 0.1,
                "repeat_penalty": 1.1, "presence_penalty": 0.2, "frequency_penalty": 0.3, "seed": 5,
                "stop": ["zzz"]}
    assert {k: body[k] for k in expected} == expected
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "output", "schema": SCHEMA}}


def test_a_raw_string_is_a_completion():
    with serve_backend(echo()) as endpoint:
        result = generate(connect(endpoint.url), "Once upon a time", GREEDY)
        assert endpoint.requests[-1].path == "/v1/completions"
    assert result.text == "Echo: Once upon a time"
    assert result.final.prompt_tokens == len("Once upon a time")  # the server's usage, not a guess
    assert result.final.peak_mem_mb is None


@pytest.mark.parametrize("reasoning_format", ["none", "deepseek"])
def test_think_blocks_become_reasoning(reasoning_format):
    backend = echo()
    backend.enqueue("<think>The user greets me.</think>\n\nHello there!")
    with serve_backend(backend, reasoning_format=reasoning_format) as endpoint:
        result = generate(connect(endpoint.url), ask("hi"), GREEDY)
    assert result.reasoning == "The user greets me."
    assert result.text == "Hello there!"


def test_closing_the_stream_hangs_up_at_once():
    with serve_backend(echo(delay=0.02)) as endpoint:  # the whole reply would take about 4 s
        remote = connect(endpoint.url)
        stream = remote.stream(ask("a" * 200), GenParams(max_tokens=400, temperature=0))
        assert any(chunk.text for chunk in stream)  # stops at the first text
        stream.close()
        assert not remote._live
        start = time.monotonic()
        again = generate(remote, ask("yes"), GREEDY)  # waits for the server's lock if it still generates
        assert again.text == "Echo: yes" and time.monotonic() - start < 1.5


def test_tokenize_uses_the_servers_tokenizer_and_falls_back_to_code_points_without_one():
    with serve_backend(echo()) as endpoint:
        remote = connect(endpoint.url)
        ids = remote.tokenize("Grüße 🚀")
        assert remote.detokenize(ids) == "Grüße 🚀" and not remote.tokenize_fallback
        assert endpoint.paths()[-2:] == ["/tokenize", "/detokenize"]
    with serve_backend(echo(), tokenize=False) as endpoint:  # like Ollama: no /tokenize
        remote = connect(endpoint.url)
        assert remote.tokenize("Grüße 🚀") == [ord(c) for c in "Grüße 🚀"]
        assert remote.tokenize_fallback and remote.detokenize([72, 105]) == "Hi"
        remote.tokenize("again")
        assert endpoint.paths().count("/tokenize") == 1  # the fallback is remembered


def test_without_usage_in_the_stream_the_tokens_are_counted():
    events = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in [
        {"choices": [{"index": 0, "delta": {"content": "Hi"}}]},
        {"choices": [{"index": 0, "delta": {"content": " there"}, "finish_reason": "length"}]},
    ]) + b": a comment line is ignored\n\ndata: [DONE]\n\n"
    routes = {"GET /v1/models": MODELS, "POST /tokenize": http_reply(b"{}", status="404 Not Found"),
              "POST /v1/chat/completions": http_reply(events, content_type="text/event-stream")}
    with raw_server(routes) as url:
        result = generate(connect(url), ask("hello"), GREEDY)
    assert result.text == "Hi there" and result.final.finish_reason == "length"
    assert (result.final.prompt_tokens, result.final.completion_tokens) == (5, 2)


def test_a_chunked_stream_split_mid_line_is_read_whole():
    # llama-server frames its SSE in HTTP/1.1 chunks, which need not end at a line
    sse = (b'data: {"choices": [{"index": 0, "delta": {"content": "Hel"}}]}\n\n'
           b'data: {"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]}\n\n'
           b'data: {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}\n\n'
           b'data: [DONE]\n\n')
    pieces = [sse[i:i + 37] for i in range(0, len(sse), 37)]
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    with raw_server({"GET /v1/models": MODELS, "POST /v1/chat/completions": head + body}) as url:
        result = generate(connect(url), ask("hello"), GREEDY)
    assert result.text == "Hello" and result.final.finish_reason == "stop"
    assert (result.final.prompt_tokens, result.final.completion_tokens) == (9, 2)


def test_a_refused_api_key_says_which_setting_to_fix():
    refused = http_reply(b'{"error": {"message": "Invalid API Key", "type": "authentication_error"}}',
                         status="401 Unauthorized")
    with raw_server({"GET /v1/models": refused}) as url:
        with pytest.raises(BackendUnavailable, match="HTTP 401: Invalid API Key") as caught:
            connect(url)
    assert "EDGEAI_REMOTE_API_KEY" in caught.value.hint


# -- the real command ------------------------------------------------------------------------
def test_edgeai_run_streams_the_reply_from_an_endpoint(cli):
    with serve_backend(echo()) as endpoint:
        result = cli("run", "--model", f"{endpoint.url}#echo", "--temperature", "0", "hi", timeout=60)
        report = cli("run", "--model", endpoint.root, "--temperature", "0", "--json", "hi", timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "Echo: hi"
    data = json.loads(report.stdout)
    assert (data["text"], data["backend"], data["finish_reason"]) == ("Echo: hi", "remote", "stop")


def test_edgeai_run_against_nothing_says_so_in_one_line(cli):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    result = cli("run", "--model", f"http://127.0.0.1:{port}/v1#m", "hi", timeout=60)
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert lines[0].startswith("edgeai: error: cannot reach the OpenAI-compatible endpoint at ")
    assert len(lines) == 2 and lines[1].startswith("  hint: ")
