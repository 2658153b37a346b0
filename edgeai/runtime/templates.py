"""Chat templates: render a list of Messages into the prompt string a model was trained on.

A model's own Jinja template (GGUF `tokenizer.chat_template`, HF `chat_template`) is used
when it has one. When it has none we pick an explicit built-in by architecture, and the
backend checks that the template's control tokens exist in the vocabulary — never a silent
guess such as llama-cpp-python's `llama-2` fallback. Rendering follows transformers' Jinja
settings (sandboxed, trim_blocks, lstrip_blocks, `tojson`, `raise_exception`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from edgeai.errors import BadInput
from edgeai.types import Message

BUILTIN_TEMPLATES: dict[str, str] = {
    "chatml": (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    # Gemma has no system role: the system text opens the first user turn.
    "gemma": (
        "{{ bos_token }}{% set ns = namespace(sys='') %}"
        "{% for m in messages %}{% if m.role == 'system' %}{% set ns.sys = m.content + '\n\n' %}"
        "{% else %}<start_of_turn>{{ 'model' if m.role == 'assistant' else 'user' }}\n"
        "{% if m.role == 'user' %}{{ ns.sys }}{% set ns.sys = '' %}{% endif %}"
        "{{ m.content | trim }}<end_of_turn>\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    ),
    "llama3": (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n"
        "{{ m.content | trim }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    ),
    "phi3": (
        "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    ),
}

# Control tokens each built-in needs; a vocabulary without them cannot use that template.
TEMPLATE_TOKENS: dict[str, tuple[str, ...]] = {
    "chatml": ("<|im_start|>", "<|im_end|>"),
    "gemma": ("<start_of_turn>", "<end_of_turn>"),
    "llama3": ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    "phi3": ("<|user|>", "<|assistant|>", "<|end|>"),
}

# model architecture (GGUF general.architecture / HF model_type) -> built-in template
ARCH_TEMPLATES: dict[str, str] = {
    "gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma", "gemma3_text": "gemma",
    "qwen2": "chatml", "qwen3": "chatml", "qwen2moe": "chatml", "qwen3moe": "chatml",
    "llama": "llama3", "phi3": "phi3",
}


def template_for_arch(arch: str) -> str | None:
    return ARCH_TEMPLATES.get(arch.lower())


def _raise(message: str) -> None:
    raise ValueError(message)


@lru_cache(maxsize=16)
def _compile(source: str):
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, ensure_ascii=False,
                                                                   indent=indent)
    env.globals.update(raise_exception=_raise,
                       strftime_now=lambda fmt: datetime.now().strftime(fmt))
    try:
        return env.from_string(source)
    except jinja2.TemplateError as exc:
        raise BadInput(f"chat template does not parse: {exc}") from None


def _message_dict(message: Message) -> dict[str, Any]:
    """A message as chat templates read it (Hugging Face's shape: tool calls with their
    arguments as a mapping, a tool result with the id it answers)."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": _arguments(c.arguments)}}
                             for c in message.tool_calls]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def resolve_template(name_or_source: str) -> str:
    """A built-in name becomes its Jinja text; anything else is taken as Jinja text."""
    return BUILTIN_TEMPLATES.get(name_or_source, name_or_source)


def prepare(template: str) -> None:
    """Parse (and cache) a template now, so a bad one fails at load and the first turn is fast."""
    _compile(resolve_template(template))


def render(template: str, messages: Sequence[Message], *, bos_token: str = "",
           eos_token: str = "", add_generation_prompt: bool = True, **extra: Any) -> str:
    payload = [_message_dict(m) for m in messages]
    try:
        return _compile(resolve_template(template)).render(
            messages=payload, bos_token=bos_token, eos_token=eos_token,
            add_generation_prompt=add_generation_prompt, **extra)
    except ValueError as exc:  # the template's own raise_exception
        raise BadInput(f"the chat template rejected the conversation: {exc}") from None


def render_chat(template: str | None, messages, *, model_id: str, bos_token: str, eos_token: str,
                tools: Sequence[dict] | None = None) -> str:
    """`render`, or the one error every backend gives for a model without a chat template."""
    if template is None:
        raise BadInput(f"model {model_id} has no chat template (a base model?)",
                       "send a raw prompt, or choose a template with "
                       "--chat-template chatml|gemma|llama3|phi3")
    extra = {"tools": list(tools)} if tools else {}
    return render(template, messages, bos_token=bos_token, eos_token=eos_token, **extra)


def choose_template(chosen: str | None, own: str | None, arch: str,
                    is_single_token: Callable[[str], bool]) -> str | None:
    """The chat template a backend uses: the user's or catalog's choice, else the model's own,
    else the built-in for its architecture when the model has that template's control tokens."""
    if chosen:
        return resolve_template(chosen)
    if own:
        return own
    name = template_for_arch(arch or "")
    if name and all(is_single_token(t) for t in TEMPLATE_TOKENS[name]):
        return BUILTIN_TEMPLATES[name]
    return None
