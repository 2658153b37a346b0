"""The server's side of the chat engine: a request becomes a prompt the way a chat turn does,
then a job on the batcher; its events come back on the request's event loop.

Boundary: `ChatRequest` in, `Run` out (an async stream of `Event`s plus what the reply needs
at its end: the RAG plan for citations, tool handling); no HTTP. The prompt is made by the
chat engine's own steps (`chat.turn.prepare`: hooks such as the guard, RAG retrieval;
`chat.turn.compose_prompt`: the RAG context, the window check), so a RAG turn sent here
produces the same prompt as in the chat app and `chat --plain`.

Images sent with a request are decoded here (a worker thread), kept as files named by their
content hash in a folder of this server's own (removed at close), and routed like a chat turn's
(`vision.route.route_images`, after the hooks): pixels for a backend that sees, a fenced OCR
description for one that reads text; how each was used goes back with the reply (`Run.images`).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeai.chat import rag
from edgeai.chat.history import count_prompt_tokens
from edgeai.chat.turn import HOOKS, Ask, Hook, compose_prompt, output_checker, prepare
from edgeai.config import Settings
from edgeai.errors import BadInput, ContextOverflow, EdgeAIError
from edgeai.guard.pipeline import GuardRefused
from edgeai.serve import tools as tool_calls
from edgeai.serve.batcher import Batcher, Event, Job, QueueFull
from edgeai.serve.metrics import Metrics
from edgeai.serve.requests import ApiError, ChatRequest, Image
from edgeai.types import Message
from edgeai.vision.route import route_images  # light: the image stack loads on first use


@dataclass
class Run:
    """One request in flight."""

    request: ChatRequest
    job: Job
    queue: asyncio.Queue
    plan: rag.RagPlan | None = None
    images: list[str] = field(default_factory=list)  # how each image was used: "VLM", "OCR · 42 words"

    @property
    def started(self) -> float:
        """When the request arrived (perf_counter): TTFT and Ollama's durations count from here."""
        return self.job.submitted

    async def events(self, first: Event | None = None) -> AsyncIterator[Event]:
        """Every event up to and including the last chunk (or an error); `first` is one already
        taken from the queue (to answer an early error with an HTTP status)."""
        while True:
            event = first if first is not None else await self.queue.get()
            first = None
            yield event
            if event.error is not None or (event.chunk is not None and event.chunk.finish_reason):
                return


class ServeEngine:
    """The loaded model behind the routes: its batcher, its metrics, the prompt steps."""

    def __init__(self, backend: Any, model_id: str, settings: Settings, *, window: int, queue: int = 16,
                 hooks: Sequence[Hook] = HOOKS, aliases: Sequence[str] = ()) -> None:
        self.backend = backend
        self.model_id = model_id  # the catalog id /v1/models lists
        self.names = frozenset({model_id, *aliases})  # what a request's "model" may say
        self.settings = settings
        self.window = window  # tokens per sequence (`--ctx`)
        self.hooks = tuple(hooks)
        self.batcher = Batcher(backend, window=window, queue=queue, on_step=self._observe_step,
                               on_done=self._observe_done)
        self.metrics = Metrics(lambda: self.batcher.queue_depth, lambda: self.batcher.active)
        self._reply_s: float | None = None  # recent reply time, arrival to last token (Retry-After)
        self._image_dir: Path | None = None  # made on the first image
        self._image_lock = threading.Lock()

    def _observe_step(self, n: int) -> None:
        self.metrics.batch.observe(n)

    def _observe_done(self, job: Job, final) -> None:
        self.metrics.finished(final)
        took = time.perf_counter() - job.submitted
        self._reply_s = took if self._reply_s is None else 0.8 * self._reply_s + 0.2 * took

    def retry_after(self) -> int:
        """Seconds until a queue place is likely free: the waiting jobs ahead, served `slots` at a
        time, at the recent reply time (1 s before any reply has finished)."""
        if self._reply_s is None:
            return 1
        rounds = (self.batcher.queue_depth + 1) / self.batcher.slots
        return max(1, min(60, math.ceil(rounds * self._reply_s)))

    def close(self) -> None:
        self.batcher.close()
        if self._image_dir is not None:
            import shutil

            shutil.rmtree(self._image_dir, ignore_errors=True)

    def start(self, request: ChatRequest, loop: asyncio.AbstractEventLoop) -> Run:
        """Make the prompt and queue the job (a worker thread: tokenizing, the guard and the
        retrieval take milliseconds to seconds). Raises ApiError for what the client must fix."""
        arrived = time.perf_counter()
        if self.batcher.full:  # before any work: a full server answers at once
            raise _busy(self.retry_after())
        if request.logprobs is not None and not self.batcher.batched:
            raise ApiError(400, f"logprobs are not available on the {self.backend.name} backend",
                           param="logprobs")
        prompt, plan, images = request.prompt, None, []
        if isinstance(prompt, list):
            prompt, plan, images = self._compose(request, prompt)
        params = request.params
        if request.forced_tool:
            schema = tool_calls.forced_schema(request.tools, request.tool_choice)
            params = replace(params, response_format=schema)
        queue: asyncio.Queue = asyncio.Queue()

        def deliver(event: Event) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, event)
            except RuntimeError:  # the request's event loop is gone (shutdown): nobody listens
                job.cancelled = True

        job = Job(prompt, params, deliver, logprobs=request.logprobs, submitted=arrived)
        try:
            self.batcher.prepare(job, tools=request.tools or None)
            self.batcher.submit(job)
        except BaseException as exc:
            if job.sampler is not None:
                job.sampler.close()  # never queued: nobody else would free it
            if isinstance(exc, QueueFull):
                raise _busy(self.retry_after()) from None
            if isinstance(exc, ContextOverflow):
                raise _overflow(exc) from None
            if isinstance(exc, BadInput):
                raise ApiError(400, exc.message) from None
            raise
        return Run(request, job, queue, plan, images)

    def _compose(self, request: ChatRequest, messages: list[Message]
                 ) -> tuple[list[Message], rag.RagPlan | None, list[str]]:
        question = next((m.content for m in reversed(messages) if m.role == "user"), None)
        ask = Ask("serve", question, options=request.guard)
        images: list[str] = []
        try:
            if request.images:
                messages = [replace(m, images=tuple(self._image_file(image) for image in request.images[i]))
                            if i in request.images else m for i, m in enumerate(messages)]
            messages, plan = prepare(ask, messages, self.settings, request.collection, self.hooks)
            if request.images:  # after the hooks, as in a chat turn: the guard reads the user's words
                messages, images = route_images(messages, self.backend.capabilities)
        except GuardRefused as exc:
            raise ApiError(400, exc.message, code="guard_refused") from None
        except EdgeAIError as exc:  # a bad switch, a missing collection, an unreadable image
            raise ApiError(400, exc.message) from None
        try:
            kept, dropped = compose_prompt(messages, plan, self.backend, self.window, request.params)
        except ContextOverflow as exc:
            raise _overflow(exc) from None
        if dropped:  # an API client sends the history it wants read: never cut it silently
            count = count_prompt_tokens(self.backend)(messages)
            raise ApiError(400, f"the messages ({count} tokens) and max_tokens "
                           f"({request.params.max_tokens}) do not fit the context window of "
                           f"{self.window} tokens", code="context_length_exceeded", param="messages")
        return kept, plan, images

    def _image_file(self, image: Image) -> Path:
        """A sent image as a file named by its content (the same image in every turn of a
        conversation is written once; routing caches its analysis by the same hash)."""
        import base64
        import binascii
        import hashlib
        import tempfile

        try:
            data = base64.b64decode(image.data, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "an image is not valid base64", param="messages") from None
        if not data:
            raise ApiError(400, "an image is empty", param="messages")
        with self._image_lock:
            if self._image_dir is None:
                self._image_dir = Path(tempfile.mkdtemp(prefix="edgeai-serve-images-"))
            # named by content (the error for a bad one names this file: short, but unique enough)
            kind = image.media_type.removeprefix("image/")
            suffix = "." + (kind if kind.isalnum() and len(kind) <= 5 else "img")
            path = self._image_dir / f"image-{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
            if not path.exists():
                partial = path.with_suffix(".partial")
                partial.write_bytes(data)
                partial.replace(path)  # a reader never sees half an image
        return path

    def check_output(self, request: ChatRequest, schema: dict | None, text: str):
        """The guard's check of a finished reply (the chat turn's `output_checker`), with the
        request's switches and the system prompt it sent."""
        prompt = request.prompt if isinstance(request.prompt, list) else []
        system = next((m.content for m in prompt if m.role == "system"), None)
        return output_checker(self.settings, "serve", system, schema, request.guard)(text)

    def cancel(self, run: Run) -> None:
        self.batcher.cancel(run.job)


def _busy(retry_after: int) -> ApiError:
    return ApiError(429, "the server is busy: every sequence is in use and the queue is full",
                    code="rate_limit_exceeded", kind="rate_limit_error",
                    headers={"Retry-After": str(retry_after)})


def _overflow(exc: ContextOverflow) -> ApiError:
    return ApiError(400, f"this model's context window is {exc.n_ctx} tokens per request; the prompt "
                    f"is {exc.prompt_tokens} tokens", code="context_length_exceeded", param="messages")
