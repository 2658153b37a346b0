"""The ASGI app: routes, the API key, CORS, body limits, errors in OpenAI's shape.

Boundary: Starlette in front of a `ServeEngine`. OpenAI-shaped dicts live in
`openai_routes.py` (and `audio_routes.py` for speech), Ollama's in `ollama_routes.py`; this
module holds what both share: reading a body within its limit, the model check, the API key
(every route but /health), /health, /metrics, /v1/models, /v1/embeddings and llama-server's
/tokenize and /detokenize.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from edgeai.serve.engine import ServeEngine
from edgeai.serve.requests import ApiError, Limits

OPEN_PATHS = ("/health", "/")  # answered without the API key (liveness probes)


@dataclass(frozen=True)
class Options:
    api_key: str | None = None
    cors: tuple[str, ...] = ()
    limits: Limits = Limits()
    store: Callable[..., None] | None = None  # keeps a finished API conversation (`--store`)


def error_body(exc: ApiError) -> dict[str, Any]:
    return {"error": {"message": exc.message, "type": exc.kind, "param": exc.param, "code": exc.code}}


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc), status_code=exc.status, headers=exc.headers)


def _too_large(limits: Limits, most: int | None = None) -> ApiError:
    return ApiError(413, f"the request body is over {most or limits.max_body:,} bytes",
                    code="request_too_large")


async def read_json(request: Request, limits: Limits, ceiling: int | None = None) -> dict[str, Any]:
    """The body as a JSON object, refused past the size limit (413) before it is all read.
    `ceiling` raises the limit for a body that may carry media (chat images); the caller then
    holds a body without any to `max_body` (`request.state.body_bytes` says how big it was)."""
    most = max(limits.max_body, ceiling or 0)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > most:
        raise _too_large(limits, most)
    raw = bytearray()
    async for part in request.stream():
        raw += part
        if len(raw) > most:
            raise _too_large(limits, most)
    request.state.body_bytes = len(raw)
    if len(raw) > limits.max_body and b'"image' not in raw:  # cannot carry media: no need to parse it
        raise _too_large(limits)
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def check_body_size(request: Request, limits: Limits, has_media: bool) -> None:
    """A body read with a media `ceiling` that carries no media is held to `max_body` (413)."""
    if request.state.body_bytes > limits.max_body and not has_media:
        raise _too_large(limits)


class Served:
    """What the routes share: the engine, the options, the names the model answers to."""

    def __init__(self, engine: ServeEngine, options: Options) -> None:
        self.engine, self.options = engine, options
        self.model_id = engine.model_id

    def check_model(self, name: str) -> None:
        """The request's model must be the loaded one: its catalog id (Ollama clients add a
        ":latest" tag) or empty (many clients send none)."""
        base = name.removesuffix(":latest")
        if name and base not in self.engine.names:
            raise ApiError(404, f"the model {name!r} does not exist here; this server runs "
                           f"{self.model_id!r}", code="model_not_found", param="model")


class ApiKey:
    """Pure ASGI middleware: `Authorization: Bearer KEY` on every route but the open ones."""

    def __init__(self, app, key: str | None) -> None:
        self.app, self.key = app, key

    async def __call__(self, scope, receive, send) -> None:
        if self.key is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS \
                or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        given = headers.get(b"authorization", b"").decode("latin-1")
        token = given[7:] if given.lower().startswith("bearer ") else \
            headers.get(b"x-api-key", b"").decode("latin-1")
        if not hmac.compare_digest(token.encode(), self.key.encode()):
            response = error_response(ApiError(401, "a valid API key is required "
                                               "(Authorization: Bearer KEY)", code="invalid_api_key",
                                               kind="authentication_error"))
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


class CountRequests:
    """Pure ASGI middleware: every response counted by route and status (`edgeai_requests`)."""

    def __init__(self, app, metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def counted(message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(scope["path"], str(message["status"])).inc()
            await send(message)

        return await self.app(scope, receive, counted)


def create_app(engine: ServeEngine, options: Options = Options()) -> Starlette:
    from edgeai.serve import audio_routes, ollama_routes, openai_routes

    served = Served(engine, options)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": served.model_id,
                             "queue": engine.batcher.queue_depth, "active": engine.batcher.active})

    async def metrics(request: Request) -> Response:
        return Response(engine.metrics.text(), media_type="text/plain; version=0.0.4")

    async def models(request: Request) -> Response:
        entry = {"id": served.model_id, "object": "model", "created": 0, "owned_by": "edgeai"}
        context = engine.window
        entry["max_model_len"] = context  # where vLLM states the served window (the remote backend reads it)
        return JSONResponse({"object": "list", "data": [entry]})

    async def root(request: Request) -> Response:
        return PlainTextResponse("edgeai is running")  # Ollama clients probe GET /

    routes = [Route("/", root, methods=["GET", "HEAD"]), Route("/health", health),
              Route("/metrics", metrics), Route("/v1/models", models),
              *openai_routes.routes(served), *audio_routes.routes(served), *ollama_routes.routes(served),
              *_tokenizer_routes(served)]
    middleware = [Middleware(CountRequests, metrics=engine.metrics), Middleware(ApiKey, key=options.api_key)]
    if options.cors:
        middleware.insert(0, Middleware(CORSMiddleware, allow_origins=list(options.cors),
                                        allow_methods=["GET", "POST", "OPTIONS"],
                                        allow_headers=["Authorization", "Content-Type"]))

    async def api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc)

    app = Starlette(routes=routes, middleware=middleware, exception_handlers={ApiError: api_error})
    app.state.served = served
    return app


def _tokenizer_routes(served: Served) -> list[Route]:
    """llama-server's /tokenize and /detokenize: the remote backend counts tokens exactly."""
    from starlette.concurrency import run_in_threadpool

    backend = served.engine.backend

    async def tokenize(request: Request) -> Response:
        body = await read_json(request, served.options.limits)
        content = body.get("content")
        if not isinstance(content, str):
            raise ApiError(400, "content must be a string")
        return JSONResponse({"tokens": await run_in_threadpool(backend.tokenize, content)})

    async def detokenize(request: Request) -> Response:
        body = await read_json(request, served.options.limits)
        tokens = body.get("tokens")
        if not (isinstance(tokens, list) and all(isinstance(t, int) for t in tokens)):
            raise ApiError(400, "tokens must be a list of integers")
        return JSONResponse({"content": await run_in_threadpool(backend.detokenize, tokens)})

    return [Route("/tokenize", tokenize, methods=["POST"]),
            Route("/detokenize", detokenize, methods=["POST"])]
