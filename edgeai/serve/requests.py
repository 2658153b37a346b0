"""Request bodies (OpenAI's and Ollama's) -> the engine's own types, checked.

Boundary: JSON dicts in, `ChatRequest` out, `ApiError` for anything malformed (the route turns
it into an OpenAI- or Ollama-shaped error body). Nothing here runs a model or touches a file.

Images (OpenAI's `image_url` parts, Ollama's `images`) are checked here for their shape only and
carried as base64 text (`ChatRequest.images`): decoding and writing them is the engine's, on a
worker thread. Only inline data URLs are taken: the server is offline-first and never fetches
an http(s) URL on a client's behalf.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from edgeai.types import GenParams, Message, ToolCall

ROLES = ("system", "developer", "user", "assistant", "tool")
SAMPLING = {"temperature": float, "top_p": float, "top_k": int, "min_p": float, "seed": int,
            "presence_penalty": float, "frequency_penalty": float, "repeat_penalty": float}
OLLAMA_OPTIONS = {"temperature": float, "top_p": float, "top_k": int, "min_p": float, "seed": int,
                  "presence_penalty": float, "frequency_penalty": float, "repeat_penalty": float,
                  "num_predict": int}


class ApiError(Exception):
    """A request the server refuses: HTTP status, OpenAI error type and code, message."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 kind: str = "invalid_request_error", param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind
        self.param, self.headers = param, headers or {}


@dataclass(frozen=True)
class Limits:
    max_body: int = 1 << 20  # bytes
    max_image_body: int = 20 << 20  # bytes of a chat body that carries images (OpenAI takes 20 MB)
    max_upload: int = 25 << 20  # bytes of an audio upload (OpenAI's limit for transcriptions)
    max_speech_chars: int = 4096  # characters of /v1/audio/speech input (OpenAI's limit)
    max_tokens: int = 4096  # a reply's ceiling (`max_tokens` above it: 400)
    max_prompt_chars: int = 200_000  # before tokenizing (the window refuses more later)


@dataclass(frozen=True)
class Image:
    """An image sent inline, not yet decoded: its media type and base64 text."""

    media_type: str  # image/png, image/jpeg, ...
    data: str  # base64


@dataclass
class ChatRequest:
    """One generation request, whichever API it came through."""

    model: str
    prompt: str | list[Message]  # raw text (completions, Ollama's raw generate) or messages
    params: GenParams
    stream: bool = False
    include_usage: bool = False
    tools: list[dict] = field(default_factory=list)  # OpenAI function definitions
    tool_choice: Any = "auto"  # "auto" | "none" | "required" | {"type": "function", ...}
    logprobs: int | None = None  # None: not asked; else alternatives per token
    collection: str | None = None  # edgeai's extension: answer from this RAG collection
    guard: dict[str, bool] = field(default_factory=dict)  # edgeai's extension: layer switches
    images: dict[int, tuple[Image, ...]] = field(default_factory=dict)  # message index -> its images

    @property
    def forced_tool(self) -> bool:
        return bool(self.tools) and (self.tool_choice == "required" or isinstance(self.tool_choice, dict))


def _number(body: dict, key: str, cast, where: str = "") -> Any:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(400, f"{where}{key} must be a number", param=key)
    return cast(value)


def _text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: the text ones here, images in `images_from`
        parts = []
        for part in content:
            if not isinstance(part, dict):
                raise ApiError(400, f"{where}: a content part must be an object")
            if part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif part.get("type") != "image_url":
                raise ApiError(400, f"{where}: content of type {part.get('type')!r} is not supported "
                               "by this server (text and image_url only)")
        return "".join(parts)
    raise ApiError(400, f"{where}: content must be a string or a list of parts")


def messages_from(raw: Any) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "messages must be a non-empty list", param="messages")
    out = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ApiError(400, f"{where}: role must be system, user, assistant or tool", param="messages")
        role = "system" if m["role"] == "developer" else m["role"]
        calls = tuple(_tool_call(c, where) for c in m.get("tool_calls") or ())
        out.append(Message(role, _text(m.get("content"), where), tool_calls=calls,
                           tool_call_id=m.get("tool_call_id")))
    return out


def images_from(raw: Any) -> dict[int, tuple[Image, ...]]:
    """The images of a checked message list, by message index: OpenAI's `image_url` content
    parts (a data URL, as a string or `{"url": ...}`) and Ollama's `images` (base64 strings)."""
    found: dict[int, tuple[Image, ...]] = {}
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        parts = m.get("content") if isinstance(m.get("content"), list) else []
        urls = [p.get("image_url") for p in parts if p.get("type") == "image_url"]
        images = [_data_url(u.get("url") if isinstance(u, dict) else u, where) for u in urls]
        ollama = m.get("images") or []
        if not isinstance(ollama, list) or not all(isinstance(b, str) and b for b in ollama):
            raise ApiError(400, f"{where}: images must be a list of base64 strings", param="messages")
        images += [Image("image/*", b) for b in ollama]
        if images:
            found[i] = tuple(images)
    return found


def _data_url(url: Any, where: str) -> Image:
    if not isinstance(url, str) or not url:
        raise ApiError(400, f"{where}: image_url needs a url", param="messages")
    if url.startswith(("http://", "https://")):
        raise ApiError(400, f"{where}: image_url is an http(s) URL; this server is offline-first and "
                       "does not fetch URLs: send the image inline as a data URL "
                       "(data:image/png;base64,...)", code="image_url_not_fetched", param="messages")
    head, comma, data = url.partition(",")
    media = head.removeprefix("data:").split(";")
    if not (url.startswith("data:") and comma and media[0].startswith("image/") and "base64" in media[1:]):
        raise ApiError(400, f"{where}: image_url must be a base64 data URL of an image "
                       "(data:image/png;base64,...)", param="messages")
    return Image(media[0], data)


def _tool_call(call: Any, where: str) -> ToolCall:
    try:
        fn = call["function"]
        arguments = fn.get("arguments", "{}")
        return ToolCall(str(call.get("id", "")), str(fn["name"]),
                        arguments if isinstance(arguments, str) else json.dumps(arguments))
    except (KeyError, TypeError, AttributeError):
        raise ApiError(400, f"{where}: a tool call needs function.name", param="messages") from None


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise ApiError(400, "stop must be a string or a list of strings", param="stop")


def _schema(fmt: Any) -> dict | None:
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise ApiError(400, "response_format must be an object", param="response_format")
    kind = fmt.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise ApiError(400, "response_format.json_schema.schema must be an object",
                           param="response_format")
        return schema
    raise ApiError(400, f"response_format type {kind!r} is not supported", param="response_format")


def _tools(body: dict) -> tuple[list[dict], Any]:
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise ApiError(400, "tools must be a list", param="tools")
    for t in tools:
        if not (isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("function"), dict)
                and isinstance(t["function"].get("name"), str)):
            raise ApiError(400, "each tool must be {type: function, function: {name, parameters}}",
                           param="tools")
    choice = body.get("tool_choice", "auto" if tools else "none")
    names = {t["function"]["name"] for t in tools}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name not in names:
            raise ApiError(400, f"tool_choice names a function that is not in tools: {name!r}",
                           param="tool_choice")
    elif choice not in ("auto", "none", "required"):
        raise ApiError(400, "tool_choice must be auto, none, required or a function", param="tool_choice")
    elif choice == "required" and not tools:
        raise ApiError(400, "tool_choice is required but no tools were given", param="tool_choice")
    return tools, choice


def _extensions(body: dict) -> tuple[str | None, dict[str, bool]]:
    """edgeai's own fields: `collection` (answer from a RAG collection), `guard` (layer switches)."""
    collection = body.get("collection")
    if collection is not None and not isinstance(collection, str):
        raise ApiError(400, "collection must be a collection's name", param="collection")
    guard = body.get("guard") or {}
    if not (isinstance(guard, dict) and all(isinstance(v, bool) for v in guard.values())):
        raise ApiError(400, "guard must map layer names to true/false", param="guard")
    return collection, guard


def _params(values: dict, limits: Limits, default_max: int) -> GenParams:
    max_tokens = values.pop("max_tokens", None)
    if max_tokens is None:
        max_tokens = default_max
    if max_tokens < 1:
        raise ApiError(400, "max_tokens must be at least 1", param="max_tokens")
    if max_tokens > limits.max_tokens:
        raise ApiError(400, f"max_tokens {max_tokens} is over this server's limit of {limits.max_tokens}",
                       param="max_tokens")
    params = replace(GenParams(), max_tokens=max_tokens, **values)
    if params.temperature < 0 or not 0 < params.top_p <= 1:
        raise ApiError(400, "temperature must be >= 0 and top_p in (0, 1]")
    return params


def openai_request(body: dict, *, chat: bool, limits: Limits, default_max: int) -> ChatRequest:
    """A /v1/chat/completions or /v1/completions body."""
    if (body.get("n") or 1) != 1:
        raise ApiError(400, "only n=1 is supported", param="n")
    values = {k: v for k in SAMPLING if (v := _number(body, k, SAMPLING[k])) is not None}
    for key in ("max_completion_tokens", "max_tokens"):
        if (v := _number(body, key, int)) is not None:
            values["max_tokens"] = v
            break
    values["stop"] = _stop(body.get("stop"))
    values["ignore_eos"] = bool(body.get("ignore_eos"))  # llama-server's extension (benchmarks)
    tools, choice = _tools(body) if chat else ([], "none")
    values["response_format"] = _schema(body.get("response_format"))
    params = _params(values, limits, default_max)
    images = {}
    if chat:
        prompt: str | list[Message] = messages_from(body.get("messages"))
        images = images_from(body["messages"])
    else:
        raw = body.get("prompt")
        if isinstance(raw, list) and len(raw) == 1 and isinstance(raw[0], str):
            raw = raw[0]
        if not isinstance(raw, str):
            raise ApiError(400, "prompt must be a string (one prompt per request)", param="prompt")
        prompt = raw
    size = len(prompt) if isinstance(prompt, str) else sum(len(m.content) for m in prompt)
    if size > limits.max_prompt_chars:
        raise ApiError(400, f"the prompt is {size:,} characters; this server takes up to "
                       f"{limits.max_prompt_chars:,}", code="context_length_exceeded")
    logprobs = None
    if chat and body.get("logprobs"):
        logprobs = int(body.get("top_logprobs") or 0)
    elif not chat and body.get("logprobs") is not None:
        logprobs = int(body["logprobs"])
    if logprobs is not None and not 0 <= logprobs <= 20:
        raise ApiError(400, "top_logprobs must be between 0 and 20", param="top_logprobs")
    collection, guard = _extensions(body)
    return ChatRequest(model=str(body.get("model") or ""), prompt=prompt, params=params,
                       stream=bool(body.get("stream")),
                       include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
                       tools=tools if choice != "none" else [], tool_choice=choice, logprobs=logprobs,
                       collection=collection, guard=guard, images=images)


def ollama_request(body: dict, *, chat: bool, limits: Limits, default_max: int) -> ChatRequest:
    """An Ollama /api/chat or /api/generate body (streaming unless "stream": false)."""
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "options must be an object")
    values = {k: v for k, cast in OLLAMA_OPTIONS.items()
              if (v := _number(options, k, cast, "options.")) is not None}
    if "num_predict" in values:
        n = values.pop("num_predict")
        if n > 0:
            values["max_tokens"] = n
    values["stop"] = _stop(options.get("stop"))
    fmt = body.get("format")
    values["response_format"] = ({"type": "object"} if fmt == "json" else fmt) if fmt else None
    if values["response_format"] is not None and not isinstance(values["response_format"], dict):
        raise ApiError(400, 'format must be "json" or a JSON schema')
    params = _params(values, limits, default_max)
    images = {}
    if chat:
        prompt: str | list[Message] = messages_from(body.get("messages"))
        images = images_from(body["messages"])
    else:
        text = body.get("prompt")
        if not isinstance(text, str):
            raise ApiError(400, "prompt must be a string")
        if body.get("raw"):
            prompt = text
        else:
            system = body.get("system")
            prompt = ([Message("system", str(system))] if system else []) + [Message("user", text)]
    collection, guard = _extensions(body)
    return ChatRequest(model=str(body.get("model") or ""), prompt=prompt, params=params,
                       stream=body.get("stream", True) is not False, collection=collection, guard=guard,
                       images=images)
