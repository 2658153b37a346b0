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

from edgeai.runtime.decode import ChatPrompt, TextDetokenizer, run, steps
from edgeai.types import Capabilities, Chunk, GenParams, LoadOptions, Message, ModelSpec

PHRASINGS = ("Echo: {}", "You said: {}", "I heard: {}")
PREFILL_STEP = 32
END = -1  # the end of the scripted reply, as an end-of-generation token


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

    def _prompt(self) -> ChatPrompt:
        return ChatPrompt("chatml", model_id="echo", bos_text="", eos_text="",
                          encode=lambda text, special, add_bos: self.tokenize(text))

    def prompt_tokens(self, prompt: str | list[Message]) -> list[int]:
        """The code points of the prompt as `stream` sees it (messages through chatml)."""
        return self._prompt().tokens(prompt)

    def stream(self, prompt: str | list[Message], params: GenParams) -> Iterator[Chunk]:
        plan = self._prompt().plan(prompt, params, self.n_ctx)
        reply = self._reply(prompt, params)
        if params.ignore_eos:  # no end of reply: keep talking until max_tokens
            reply = reply * (params.max_tokens // max(1, len(reply)) + 2)
        return run(_ScriptStep(reply, self.token_delay), plan, params, eos={END},
                   detokenizer=TextDetokenizer(self.detokenize))

    def _reply(self, prompt: str | list[Message], params: GenParams) -> str:
        if params.response_format is not None:
            return json.dumps(smallest_instance(params.response_format))
        if self.script:
            return self.script.popleft()
        last = prompt[-1].content if isinstance(prompt, list) else prompt
        rng = random.Random(params.seed)
        phrasing = PHRASINGS[0] if params.temperature <= 0 else rng.choice(PHRASINGS)
        return phrasing.format(last.strip())


class _ScriptStep:
    """The decode loop's step over a scripted reply: one code point per token, `END` after it,
    with the configured delays (a tenth of a token's per prefill step)."""

    def __init__(self, reply: str, delay: float) -> None:
        self._reply, self._delay, self._next = reply, delay, 0

    def prefill(self, tokens: list[int]) -> Iterator[None]:
        for _ in steps(tokens, PREFILL_STEP):
            time.sleep(self._delay / 10)
            yield

    def sample(self) -> int:
        time.sleep(self._delay)
        if self._next >= len(self._reply):
            return END
        self._next += 1
        return ord(self._reply[self._next - 1])

    def feed(self, token: int) -> None:
        pass  # the script does not depend on what came before

    def close(self) -> None:
        pass


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
