"""Output validation: what a reply must not be, checked once it is written.

Boundary: a reply's text (and what it answers: the system prompt, the schema asked for) -> the
problems found; no model, no I/O. A reply that should be JSON is parsed and validated against the
schema with `jsonschema` (imported on first use). A leaked system prompt is a run of at least
`LEAK_WORDS` consecutive words of it (or all of a shorter one) quoted in the reply. A policy
refusal ("I can't help with that") is recognised so it is logged, not mistaken for an answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

LEAK_WORDS = 12  # consecutive words of the system prompt that make a leak
MIN_PROMPT_WORDS = 6  # a shorter system prompt ("be terse") can be quoted without leaking anything
_WORD = re.compile(r"\w+")
_REFUSAL = re.compile(
    r"^\W*(?:i'?m sorry,? but |sorry,? but |unfortunately,? )?(?:i|we) (?:can(?:no|')t|cannot|won'?t|"
    r"am not able to|'m not able to|am unable to|'m unable to|must decline to|will not) (?:help|assist|"
    r"provide|do|comply|fulfil|fulfill|answer|create|write|share|give|support)\b"
    r"|\bas an ai(?: language model)?,? i (?:can(?:no|')t|cannot|won'?t|am not able to)\b"
    r"|\bi must (?:respectfully )?(?:decline|refuse)\b", re.IGNORECASE)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def leaked_span(reply: str, system_prompt: str | None, min_words: int = LEAK_WORDS) -> str | None:
    """The longest run of the system prompt's words the reply repeats, when it is long enough
    to be a leak; else None."""
    if not system_prompt:
        return None
    prompt = _words(system_prompt)
    if len(prompt) < MIN_PROMPT_WORDS:
        return None
    need = min(min_words, len(prompt))
    shingles = {tuple(prompt[i:i + need]) for i in range(len(prompt) - need + 1)}
    said = _words(reply)
    best: tuple[int, int] | None = None
    i = 0
    while i <= len(said) - need:
        if tuple(said[i:i + need]) in shingles:
            j = i + need
            while j < len(said) and tuple(said[j - need + 1:j + 1]) in shingles:
                j += 1
            if best is None or j - i > best[1] - best[0]:
                best = (i, j)
            i = j
        else:
            i += 1
    return " ".join(said[best[0]:best[1]]) if best else None


def is_refusal(reply: str) -> bool:
    """A reply that declines to answer (checked on its opening and a short reply as a whole)."""
    head = reply.strip()[:300]
    return bool(head) and bool(_REFUSAL.search(head))


def _json_text(reply: str) -> str:
    """The JSON in a reply: as is, or inside a ```json fence."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", reply, re.DOTALL)
    return fenced.group(1) if fenced else reply


def schema_error(reply: str, schema: dict[str, Any]) -> str | None:
    """Why the reply is not a JSON document valid against `schema` (None when it is)."""
    try:
        document = json.loads(_json_text(reply))
    except json.JSONDecodeError as exc:
        return f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    import jsonschema

    try:
        jsonschema.validate(document, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the document"
        return f"{where}: {exc.message}"[:300]
    except jsonschema.SchemaError as exc:
        return f"the schema itself is invalid: {exc.message}"[:300]
    return None
