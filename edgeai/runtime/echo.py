"""The `echo` backend: deterministic, scripted replies with realistic timing, for tests and demos.

Tokens are Unicode code points, so tokenize/detokenize round-trip any text. A reply is the
next scripted one (`enqueue`), else "Echo: <last user message>". With a temperature above 0
the seed picks among a few phrasings, so the same seed always gives the same text. A JSON
schema yields the smallest instance that satisfies it. `token_delay` (seconds per token,
from the model's defaults) makes streaming visible in demos; tests leave it at 0.
"""

from __future__ import annotations

import json
import random
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

from edgeai.errors import BadInput, ContextOverflow
from edgeai.memory import peak_rss_mb
from edgeai.runtime import templates
from edgeai.runtime.base import final_chunk
from edgeai.runtime.textstream import TextStream
from edgeai.types import Capabilities, Chunk, GenParams, LoadOptions, Message, ModelSpec

PHRASINGS = ("Echo: {}", "You said: {}", "I heard: {}")
PREFILL_STEP = 32


class EchoBackend:
    name = "echo"

    def __init__(self) -> None:
        self.capabilities = Capabilities(chat_template=True, grammar=True, context_length=4096)
        self.token_delay = 0.0
        self.n_ctx = 4096
        self.script: deque[str] = deque()

    def load(self, spec: ModelSpec, opts: LoadOptions) -> None:
        self.n_ctx = opts.n_ctx
        self.token_delay = float(spec.defaults.get("token_delay", 0.0))
        self.capabilities = Capabilities(chat_template=True, grammar=True, context_length=opts.n_ctx)

    def enqueue(self, *replies: str) -> None:
        """Script the next replies (they may contain <think>…</think>)."""
        self.script.extend(replies)

    def close(self) -> None:
        self.script.clear()

    def tokenize(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def detokenize(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)

    def prompt_tokens(self, prompt: str | list[Message]) -> list[int]:
        """The code points of the prompt as `stream` sees it (messages through chatml)."""
        return self.tokenize(templates.render("chatml", prompt) if isinstance(prompt, list) else prompt)

    def stream(self, prompt: str | list[Message], params: GenParams) -> Iterator[Chunk]:
        text = templates.render("chatml", prompt) if isinstance(prompt, list) else prompt
        if not text.strip():
            raise BadInput("the prompt is empty")
        if len(text) >= self.n_ctx:
            raise ContextOverflow(len(text), self.n_ctx)
        reply = self._reply(prompt, params)
        if params.ignore_eos:  # no end of reply: keep talking until max_tokens
            reply = reply * (params.max_tokens // max(1, len(reply)) + 2)
        budget = min(params.max_tokens, self.n_ctx - len(text))
        return self._run(len(text), reply, params, budget)

    def _reply(self, prompt: str | list[Message], params: GenParams) -> str:
        if params.response_format is not None:
            return json.dumps(smallest_instance(params.response_format))
        if self.script:
            return self.script.popleft()
        last = prompt[-1].content if isinstance(prompt, list) else prompt
        rng = random.Random(params.seed)
        phrasing = PHRASINGS[0] if params.temperature <= 0 else rng.choice(PHRASINGS)
        return phrasing.format(last.strip())

    def _run(self, n_prompt: int, reply: str, params: GenParams, budget: int) -> Iterator[Chunk]:
        start = time.perf_counter()
        for _ in range(0, n_prompt, PREFILL_STEP):
            time.sleep(self.token_delay / 10)
            yield Chunk()
        stream = TextStream(params.stop)
        first = last = None
        count, finish = 0, "stop"
        for char in reply:
            if count >= budget:
                finish = "length"
                break
            time.sleep(self.token_delay)
            last = time.perf_counter()
            first = first or last
            count += 1
            answer, reasoning = stream.feed(char)
            if answer or reasoning:
                yield Chunk(text=answer, reasoning=reasoning, token_ids=(ord(char),))
            if stream.stopped:
                break
        answer, reasoning = stream.flush()
        yield final_chunk(text=answer, reasoning=reasoning, finish_reason=finish,
                          prompt_tokens=n_prompt, completion_tokens=count, start=start, first=first,
                          last=last, peak_mem_mb=peak_rss_mb())


def smallest_instance(schema: Mapping[str, Any] | bool) -> Any:
    """A minimal value that satisfies a (simple) JSON schema."""
    if not isinstance(schema, Mapping):
        return {}
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return smallest_instance(schema[key][0])
    kind = schema.get("type", "object")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        props = schema.get("properties", {})
        return {name: smallest_instance(sub) for name, sub in props.items()}
    if kind == "array":
        return [smallest_instance(schema.get("items", {}))] * int(schema.get("minItems", 0))
    return {"string": "echo", "integer": 0, "number": 0, "boolean": True, "null": None}.get(kind, "")
