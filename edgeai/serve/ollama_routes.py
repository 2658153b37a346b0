"""The part of Ollama's API that Open WebUI and Ollama's clients use: /api/version, /api/tags,
/api/show, /api/ps, /api/chat and /api/generate (NDJSON streaming by default).

Boundary: Ollama-shaped dicts only; the reply comes from the same engine and jobs as OpenAI's
routes (`openai_routes.start/collect/finish`).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from edgeai import __version__
from edgeai.errors import describe
from edgeai.serve.app import Served, check_body_size, read_json
from edgeai.serve.batcher import Event
from edgeai.serve.engine import Run
from edgeai.serve.openai_routes import Answer, collect, finish, first_event, start
from edgeai.serve.requests import ollama_request
from edgeai.types import Chunk

OLLAMA_VERSION = "0.6.0"  # the Ollama API level these routes follow (clients gate features on it)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _details(served: Served) -> dict[str, Any]:
    spec = getattr(served.engine.backend, "spec", None)
    return {"format": "gguf" if served.engine.backend.name == "llamacpp" else served.engine.backend.name,
            "family": getattr(spec, "family", None) or "", "families": None,
            "parameter_size": "", "quantization_level": getattr(spec, "quant", None) or ""}


def _model_entry(served: Served) -> dict[str, Any]:
    name = f"{served.model_id}:latest"
    return {"name": name, "model": name, "modified_at": _now(), "size": 0, "digest": "",
            "details": _details(served)}


def _timings(final: Chunk | None, started: float) -> dict[str, Any]:
    """Ollama's counters, in nanoseconds."""
    total = int((time.perf_counter() - started) * 1e9)
    if final is None:
        return {"total_duration": total}
    ttft = int((final.ttft_s or 0) * 1e9)
    return {"total_duration": total, "load_duration": 0,
            "prompt_eval_count": final.prompt_tokens or 0, "prompt_eval_duration": ttft,
            "eval_count": final.completion_tokens or 0, "eval_duration": max(total - ttft, 0)}


def routes(served: Served) -> list[Route]:
    limits = served.options.limits

    async def version(request: Request) -> Response:
        return JSONResponse({"version": OLLAMA_VERSION, "edgeai": __version__})

    async def tags(request: Request) -> Response:
        return JSONResponse({"models": [_model_entry(served)]})

    async def ps(request: Request) -> Response:
        return JSONResponse({"models": [{**_model_entry(served), "expires_at": "0001-01-01T00:00:00Z",
                                         "size_vram": 0}]})

    async def show(request: Request) -> Response:
        body = await read_json(request, limits)
        served.check_model(str(body.get("model") or body.get("name") or ""))
        return JSONResponse({"modelfile": "", "parameters": "", "template": "",
                             "details": _details(served),
                             "model_info": {"general.architecture": _details(served)["family"],
                                            "context_length": served.engine.window},
                             "capabilities": ["completion"], "modified_at": _now()})

    async def chat(request: Request) -> Response:
        return await _generate(served, request, chat=True)

    async def generate(request: Request) -> Response:
        return await _generate(served, request, chat=False)

    return [Route("/api/version", version), Route("/api/tags", tags), Route("/api/ps", ps),
            Route("/api/show", show, methods=["POST"]), Route("/api/chat", chat, methods=["POST"]),
            Route("/api/generate", generate, methods=["POST"])]


async def _generate(served: Served, request: Request, chat: bool) -> Response:
    limits = served.options.limits
    body = await read_json(request, limits, ceiling=limits.max_image_body if chat else None)
    req = ollama_request(body, chat=chat, limits=limits, default_max=limits.max_tokens)
    check_body_size(request, limits, bool(req.images))  # only images earn the larger room
    if not chat and isinstance(req.prompt, list) and not req.prompt[-1].content:
        # an empty prompt loads the model in Ollama: answer done at once
        return JSONResponse({"model": req.model, "created_at": _now(), "response": "", "done": True})
    run = await start(served, req)
    if not req.stream:
        reply = await collect(served, run, request)
        return JSONResponse(_last(served, run, reply, chat, whole=True))
    event = await first_event(served, run, request)
    return StreamingResponse(_lines(served, run, event, chat), media_type="application/x-ndjson")


def _piece(served: Served, chat: bool, text: str) -> dict[str, Any]:
    base = {"model": served.model_id, "created_at": _now(), "done": False}
    if chat:
        return {**base, "message": {"role": "assistant", "content": text}}
    return {**base, "response": text}


def _last(served: Served, run: Run, reply: Answer, chat: bool, whole: bool) -> dict[str, Any]:
    out = _piece(served, chat, reply.text if whole else "")
    out.update(done=True, done_reason="length" if reply.finish_reason == "length" else "stop",
               **_timings(reply.final, run.started))
    return out


async def _lines(served: Served, run: Run, first: Event, chat: bool) -> AsyncIterator[str]:
    reply, done = Answer(), False
    try:
        async for event in run.events(first):
            if event.error is not None:
                yield json.dumps({"error": describe(event.error)}) + "\n"
                return
            chunk = event.chunk
            reply.text += chunk.text
            if chunk.text:
                yield json.dumps(_piece(served, chat, chunk.text)) + "\n"
            reply.final = chunk if chunk.finish_reason else None
        done = True
        finish(served, run, reply)
        yield json.dumps(_last(served, run, reply, chat, whole=False)) + "\n"
    finally:
        if not done:
            served.engine.cancel(run)


