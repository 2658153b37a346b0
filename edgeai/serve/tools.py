"""Function calling: the tools go to the model's chat template; its calls come back as `ToolCall`s.

Boundary: OpenAI tool definitions in; a JSON schema that forces a call (for `tool_choice`
"required" or a named function, through the same llama.cpp grammar as `response_format`); the
calls parsed out of a reply (the forced JSON, or the `<tool_call>{...}</tool_call>` blocks that
Qwen/Hermes-style templates teach); a stream filter that holds back a reply that starts a call.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from edgeai.types import ToolCall

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(OPEN) + r"\s*(.*?)\s*(?:" + re.escape(CLOSE) + r"|$)", re.S)


def forced_schema(tools: list[dict], choice: Any) -> dict:
    """A JSON schema whose every instance is a call of one of the tools (or the named one):
    {"name": ..., "arguments": {...}} with the function's own parameter schema."""
    if isinstance(choice, dict):
        tools = [t for t in tools if t["function"]["name"] == choice["function"]["name"]]
    calls = []
    for tool in tools:
        fn = tool["function"]
        parameters = fn.get("parameters") or {"type": "object"}
        calls.append({"type": "object", "required": ["name", "arguments"],
                      "properties": {"name": {"const": fn["name"]}, "arguments": parameters}})
    return calls[0] if len(calls) == 1 else {"oneOf": calls}


def parse_calls(text: str, forced: bool) -> tuple[str, list[ToolCall]]:
    """(the reply's remaining content, its tool calls). A forced reply is one JSON call; else
    every complete `<tool_call>` block whose JSON names a function is a call."""
    if forced:
        data = _json(text)
        return ("", [_call(data)]) if _is_call(data) else (text, [])
    calls = []
    for match in _BLOCK.finditer(text):
        data = _json(match.group(1))
        if _is_call(data):
            calls.append(_call(data))
    if not calls:
        return text, []
    return _BLOCK.sub("", text).strip(), calls


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _is_call(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("name"), str)


def _call(data: dict) -> ToolCall:
    arguments = data.get("arguments", data.get("parameters", {}))
    return ToolCall(f"call_{uuid.uuid4().hex[:24]}", data["name"],
                    arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False))


class HoldCalls:
    """Streamed content passes through, except a reply that starts a tool call: that is held to
    the end, where `parse_calls` reads it. Text that might still become `<tool_call>` waits."""

    def __init__(self) -> None:
        self.held = ""
        self.passing = False

    def feed(self, text: str) -> str:
        if self.passing:
            return text
        self.held += text
        head = self.held.lstrip()
        if head.startswith(OPEN) or OPEN.startswith(head):
            return ""  # a call, or not yet known
        self.passing, out, self.held = True, self.held, ""
        return out
