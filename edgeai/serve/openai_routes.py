"""OpenAI's API: /v1/chat/completions (text and `image_url` parts), /v1/completions (SSE or one
body), /v1/embeddings. Speech (/v1/audio/*) is `audio_routes.py`.

Boundary: the only place OpenAI-shaped dicts are built. A request is read (`requests.py`),
started on the engine, and its events written as OpenAI's chunks or one completion; a client
that leaves mid-reply cancels its job, which frees its sequence before the next step.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edgeai.chat import rag
from edgeai.errors import BadInput, describe
from edgeai.serve import tools as tool_calls
from edgeai.serve.app import Served, check_body_size, error_body, read_json
from edgeai.serve.batcher import Event, TokenLogprob
from edgeai.serve.engine import Run
from edgeai.serve.requests import ApiError, ChatRequest, openai_request
from edgeai.types import Chunk, ToolCall

DISCONNECT_POLL_S = 0.25  # a non-streaming client that left is noticed this fast


@dataclass
class Answer:
    """A finished (or cut) reply, as the routes report it (not `decode.Reply`, the token side)."""

    text: str = ""
    reasoning: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    final: Chunk | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)
    sources: dict[str, Any] | None = None
    guard: list[str] = field(default_factory=list)  # what the output check found

    @property
    def finish_reason(self) -> str:
        if self.calls:
            return "tool_calls"
        return "length" if self.final is not None and self.final.finish_reason == "length" else "stop"


async def start(served: Served, req: ChatRequest) -> Run:
    served.check_model(req.model)
    loop = asyncio.get_running_loop()
    return await run_in_threadpool(served.engine.start, req, loop)


async def next_event(served: Served, run: Run, request: Request) -> Event:
    """The job's next event, while the client is there to hear it: one that leaves (checked
    every `DISCONNECT_POLL_S` while waiting: in the queue, or for a non-streaming reply)
    cancels the job, which frees its sequence."""
    while True:
        try:
            return await asyncio.wait_for(run.queue.get(), DISCONNECT_POLL_S)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                served.engine.cancel(run)
                raise ApiError(499, "the client closed the request") from None


async def first_event(served: Served, run: Run, request: Request) -> Event:
    """The first event, before any response is sent: an error then is an HTTP error status."""
    try:
        event = await next_event(served, run, request)
    except BaseException:
        served.engine.cancel(run)
        raise
    if event.error is not None:
        raise _failure(event.error)
    served.engine.metrics.ttft.observe(time.perf_counter() - run.started)
    return event


def _failure(error: BaseException) -> ApiError:
    if isinstance(error, BadInput):
        return ApiError(400, error.message)
    return ApiError(500, describe(error), kind="server_error")


async def collect(served: Served, run: Run, request: Request) -> Answer:
    """A whole reply, for a non-streaming client; its leaving cancels the job."""
    reply = Answer()
    event = await first_event(served, run, request)
    try:
        while True:
            if event.error is not None:
                raise _failure(event.error)
            chunk = event.chunk
            reply.text += chunk.text
            reply.reasoning += chunk.reasoning
            reply.logprobs.extend(event.logprobs)
            if chunk.finish_reason:
                reply.final = chunk
                break
            event = await next_event(served, run, request)
    except BaseException:
        served.engine.cancel(run)
        raise
    finish(served, run, reply)
    return reply


def finish(served: Served, run: Run, reply: Answer) -> None:
    """What every reply gets once it is whole: citations checked, the guard's output check
    (PII, a leaked system prompt, the schema: a streamed reply was already sent, so there it only
    reports), tool calls read, kept."""
    if run.plan is not None:
        reply.text, reply.sources = rag.finish(run.plan, reply.text)
    if reply.text and served.engine.hooks:
        checked = served.engine.check_output(run.request, run.job.params.response_format, reply.text)
        reply.text = checked.text
        reply.guard = [f"{e.layer}:{e.rule}:{e.action}" for e in checked.findings]
    if run.request.tools:
        reply.text, reply.calls = tool_calls.parse_calls(reply.text, run.request.forced_tool)
    if served.options.store is not None and reply.final is not None:
        served.options.store(run.request, reply)


def routes(served: Served) -> list[Route]:
    limits = served.options.limits

    async def generate(request: Request, chat: bool) -> Response:
        # OpenAI's own defaults: a chat reply runs to the limit, a raw completion to 16 tokens
        body = await read_json(request, limits, ceiling=limits.max_image_body if chat else None)
        req = openai_request(body, chat=chat, limits=limits, default_max=limits.max_tokens if chat else 16)
        check_body_size(request, limits, bool(req.images))  # only images earn the larger room
        run = await start(served, req)
        if req.stream:
            return await _sse(served, run, request, chat=chat)
        reply = await collect(served, run, request)
        return JSONResponse(_completion(served, run, reply, chat=chat))

    async def chat(request: Request) -> Response:
        return await generate(request, chat=True)

    async def completions(request: Request) -> Response:
        return await generate(request, chat=False)

    async def embeddings(request: Request) -> Response:
        body = await read_json(request, limits)
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not (isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts)):
            raise ApiError(400, "input must be a string or a list of strings", param="input")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise ApiError(400, "encoding_format must be float or base64", param="encoding_format")
        vectors, tokens, name = await run_in_threadpool(_embed, texts)
        data = [{"object": "embedding", "index": i, "embedding": _vector(v, encoding)}
                for i, v in enumerate(vectors)]
        return JSONResponse({"object": "list", "data": data, "model": name,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    return [Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"])]


def _embed(texts: list[str]) -> tuple[Any, int, str]:
    """The RAG embedder's vectors (unit length, so a dot product is the cosine `rag` ranks by)."""
    from edgeai.rag.embed import DEFAULT_EMBEDDER, get_embedder

    embedder = get_embedder()
    return embedder.embed(texts), sum(embedder.count_tokens(t) for t in texts), DEFAULT_EMBEDDER


def _vector(vector, encoding: str) -> list[float] | str:
    """float: a JSON list; base64: little-endian float32 bytes (what OpenAI's client asks for)."""
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


# -- shapes --------------------------------------------------------------------------------
def _usage(final: Chunk | None) -> dict[str, int]:
    prompt = (final.prompt_tokens or 0) if final else 0
    completion = (final.completion_tokens or 0) if final else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _logprobs(entries: list[TokenLogprob] | tuple[TokenLogprob, ...]) -> dict[str, Any]:
    return {"content": [{"token": e.token, "logprob": e.logprob, "bytes": list(e.token.encode()),
                         "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())}
                                          for t, lp in e.top]} for e in entries]}


def _calls(calls: list[ToolCall], streaming: bool = False) -> list[dict[str, Any]]:
    out = []
    for i, c in enumerate(calls):
        entry = {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        if streaming:
            entry["index"] = i
        out.append(entry)
    return out


def _completion(served: Served, run: Run, reply: Answer, chat: bool) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": reply.finish_reason}
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text if not reply.calls or reply.text
                                   else None}
        if reply.reasoning:
            message["reasoning_content"] = reply.reasoning
        if reply.calls:
            message["tool_calls"] = _calls(reply.calls)
        choice["message"] = message
        choice["logprobs"] = _logprobs(reply.logprobs) if run.request.logprobs is not None else None
    else:
        choice["text"] = reply.text
        choice["logprobs"] = None
        if run.request.logprobs is not None:
            choice["logprobs"] = {"tokens": [e.token for e in reply.logprobs],
                                  "token_logprobs": [e.logprob for e in reply.logprobs],
                                  "top_logprobs": [dict(e.top) for e in reply.logprobs]}
    body = {"id": _id(chat), "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": served.model_id, "choices": [choice],
            "usage": _usage(reply.final)}
    if reply.sources is not None:
        body["sources"] = reply.sources  # edgeai's extension: the passages the answer may cite
    if reply.guard:
        body["guard"] = reply.guard  # edgeai's extension: what the guard found in the reply
    if run.images:
        body["images"] = run.images  # edgeai's extension: how each image was used ("OCR · 42 words")
    return body


def _id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]


async def _sse(served: Served, run: Run, request: Request, chat: bool) -> Response:
    from sse_starlette.sse import EventSourceResponse

    event = await first_event(served, run, request)  # an error before the first token: an HTTP status
    return EventSourceResponse(_stream(served, run, event, chat), ping=15)


async def _stream(served: Served, run: Run, first: Event, chat: bool) -> AsyncIterator[str]:
    """OpenAI's chunks: the role first, then content (and reasoning) deltas, tool calls once
    whole, the finish reason, usage if asked, then [DONE]."""
    req, ident, created = run.request, _id(chat), int(time.time())
    hold = tool_calls.HoldCalls() if req.tools and not req.forced_tool else None
    reply = Answer()
    done = False

    def frame(choices: list[dict[str, Any]], **extra: Any) -> str:
        return json.dumps({"id": ident, "object": "chat.completion.chunk" if chat else "text_completion",
                           "created": created, "model": served.model_id, "choices": choices, **extra})

    def piece(delta: dict[str, Any], finish: str | None = None, logprobs=None, **extra: Any) -> str:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if chat:
            choice["delta"] = delta
            choice["logprobs"] = _logprobs(logprobs) if logprobs is not None else None
        else:
            choice["text"] = delta.get("content", "")
            choice["logprobs"] = None
        return frame([choice], **extra)

    try:
        if chat:
            yield piece({"role": "assistant", "content": ""})
        async for event in run.events(first):
            if event.error is not None:  # a failure mid-reply: an error event, as llama-server sends
                yield json.dumps(error_body(_failure(event.error)))
                return
            chunk = event.chunk
            reply.text += chunk.text
            reply.reasoning += chunk.reasoning
            text = chunk.text
            if req.forced_tool:
                text = ""
            elif hold is not None:
                text = hold.feed(text)
            delta: dict[str, Any] = {}
            if chunk.reasoning:
                delta["reasoning_content"] = chunk.reasoning
            if text:
                delta["content"] = text
            wanted = event.logprobs if req.logprobs is not None and event.logprobs else None
            if delta or wanted:
                yield piece(delta, logprobs=wanted)
            reply.final = chunk if chunk.finish_reason else None
        done = True
        finish(served, run, reply)
        if reply.calls:
            yield piece({"tool_calls": _calls(reply.calls, streaming=True)})
        elif hold is not None and hold.held:
            yield piece({"content": hold.held})  # it looked like a call but was not one
        last = {"guard": reply.guard} if reply.guard else {}
        if run.images:
            last["images"] = run.images
        yield piece({}, reply.finish_reason, **last)
        if req.include_usage:
            yield frame([], usage=_usage(reply.final))
        yield "[DONE]"
    finally:
        if not done:  # the client left (the response was cancelled) or the reply failed
            served.engine.cancel(run)
