"""The guard's pipeline: the layers in order, their actions by policy, and the audit rows.

Boundary: the chat engine's seam (`edgeai.chat.turn`: a hook sees an `Ask` and the messages)
and the other places text crosses into or out of the model: retrieved passages (`screen`),
files before indexing (`ingest_screen`), the reply (`check_output`). Detection is the layer
modules' (`text`, `injection`, `moderation`, `pii`, `output`); here each finding becomes an
action (refuse, flag, redact, strip, drop, block) and an audit row.

Input, in order: input validation (length, encoding, control/invisible characters), injection,
moderation (the judge last, when on), PII. A refusal raises `GuardRefused`: the turn ends as an
`error` reply with its one-line reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeai.errors import EdgeAIError
from edgeai.guard import injection, moderation
from edgeai.guard.audit import Event, record
from edgeai.guard.policy import Policy, parse_policy, switched
from edgeai.guard.text import hidden_tags, validate
from edgeai.types import Message

REFUSED_HINT = "the guard refused it; [guard] in config.toml sets what each layer does"


class GuardRefused(EdgeAIError):
    """An input a layer refused: the message names the layer and why."""

    def __init__(self, layer: str, reason: str):
        super().__init__(f"refused by the guard ({layer}): {reason}", REFUSED_HINT)
        self.layer = layer
        self.reason = reason


def policy_of(settings) -> Policy:
    return parse_policy(getattr(settings, "guard", None))


@dataclass
class Checked:
    """One text through the input layers: the text to send on and what fired."""

    text: str
    events: list[Event] = field(default_factory=list)
    refusal: GuardRefused | None = None


def check_input(text: str, policy: Policy, *, source: str = "user", judge=None) -> Checked:
    """Run the input layers on one text (no audit write; `Guard` writes the events)."""
    out = Checked(text)

    def refuse(layer: str, reason: str) -> Checked:
        out.refusal = GuardRefused(layer, reason)
        return out

    if policy.on("input"):
        checked = validate(text, policy.max_chars)
        for problem in checked.problems:
            fatal = problem.startswith("too long") or policy.invisible == "refuse"
            action = "refused" if fatal else "stripped"
            rule = problem.split(" (")[0].replace(" ", "-")
            out.events.append(Event("input", rule, action, source, text, problem))
            if fatal:
                return refuse("input", problem)
        out.text = checked.text
    if policy.on("injection"):
        # what the input layer stripped may have been an instruction in tag characters: read it too
        smuggled = hidden_tags(text)
        hit = injection.detect(f"{out.text}\n{smuggled}" if smuggled else out.text, source)
        if hit:
            action = "refused" if policy.on_injection == "refuse" else "flagged"
            out.events.append(Event("injection", ",".join(hit.rules), action, source, out.text,
                                    f"score {hit.score}"))
            if action == "refused":
                return refuse("injection", hit.reason)
    if policy.on("moderation"):
        verdict = moderation.judged(out.text, judge if policy.judge else None, policy.categories)
        if verdict.flagged:
            action = "refused" if policy.on_moderation == "refuse" else "flagged"
            out.events.append(Event("moderation", verdict.category or "judge", action, source, out.text,
                                    verdict.reason))
            if action == "refused":
                return refuse("moderation", f"against the content policy ({verdict.category or 'judge'})")
    if policy.on("pii"):
        from edgeai.guard.pii import find_pii, redact

        found = find_pii(out.text)
        if found:
            action = "redacted" if policy.redact else "flagged"
            out.events += [Event("pii", e.kind, action, source, e.value) for e in found]
            if policy.redact:
                out.text = redact(out.text, found).text
    return out


class Guard:
    """The engine's hook: `guard(ask, messages) -> messages` checks the user's new message, and
    `guard.screen(ask, source)` each retrieved passage before it is placed. Holds the policy,
    the audit log's home and the optional judge; cheap to build (nothing opened until an event)."""

    def __init__(self, policy: Policy, home: Path, judge=None):
        self.policy, self.home, self.judge = policy, Path(home), judge

    def _policy(self, options: Mapping[str, Any] | None) -> Policy:
        return switched(self.policy, options)

    def _record(self, surface: str, events: list[Event], policy: Policy) -> None:
        if policy.audit and events:
            record(self.home, surface, events, redacted=policy.redact)

    def __call__(self, ask, messages: list[Message]) -> list[Message]:
        policy = self._policy(ask.options)
        if not policy.enabled or not messages or messages[-1].role != "user":
            return messages
        last = messages[-1]
        checked = check_input(last.content, policy, source="user", judge=self.judge)
        self._record(ask.surface, checked.events, policy)
        if checked.refusal is not None:
            raise checked.refusal
        if checked.text == last.content:
            return messages
        return [*messages[:-1], replace(last, content=checked.text)]

    def screen(self, ask, source):
        """A retrieved passage (a `rag.context.Source`): as it is, marked `flagged` (fenced
        harder when placed), or None (dropped) by policy."""
        policy = self._policy(ask.options)
        if not policy.on("injection"):
            return source
        hit = injection.detect(source.text, "passage")
        if hit is None:
            return source
        action = "dropped" if policy.on_passage == "drop" else "flagged"
        self._record(ask.surface, [Event("injection", ",".join(hit.rules), action, "passage", source.text,
                                         f"{source.name} score {hit.score}")], policy)
        return None if action == "dropped" else replace(source, flagged=hit.reason)


def hooks(settings, model=None) -> tuple[Guard, ...]:
    """The engine's default hooks for these settings: the guard (none when `[guard] enabled =
    false`). With `judge = true` and a loaded `model`, the model judges what the patterns pass."""
    policy = policy_of(settings)
    if not policy.enabled:
        return ()
    judge = moderation.llm_judge(model) if policy.judge and model is not None else None
    return (Guard(policy, settings.home, judge),)


@dataclass(frozen=True)
class OutputCheck:
    """A reply after the output layers: the text to deliver and what fired."""

    text: str
    findings: tuple[Event, ...] = ()
    blocked: bool = False  # the reply was withheld (a leaked system prompt, by policy)
    schema_error: str | None = None  # why the reply is not valid JSON for the schema asked
    refusal: bool = False  # the model declined (a policy refusal)


LEAK_NOTICE = "[reply withheld by the guard: it quoted the system prompt]"


def check_output(text: str, settings, *, surface: str = "serve", options: Mapping[str, Any] | None = None,
                 system_prompt: str | None = None, schema: dict[str, Any] | None = None) -> OutputCheck:
    """Check (and by policy redact or withhold) a finished reply; audit what fired.

    `options` are the request's guard switches (as in `Ask.options`); `schema` the JSON Schema
    when structured output was asked; `system_prompt` the one the model was given. PII in the
    reply is redacted when `redact` is on, else flagged; a reply quoting a long span of the
    system prompt is replaced by `LEAK_NOTICE` (`on_leak = "block"`) or flagged."""
    policy = switched(policy_of(settings), options)
    events: list[Event] = []
    out = OutputCheck(text)
    if not policy.enabled:
        return out
    if policy.on("output"):
        from edgeai.guard.output import is_refusal, leaked_span, schema_error

        if schema is not None:
            error = schema_error(text, schema)
            if error:
                events.append(Event("output", "schema", "flagged", "output", text, error))
                out = replace(out, schema_error=error)
        leak = leaked_span(text, system_prompt)
        if leak:
            action = "blocked" if policy.on_leak == "block" else "flagged"
            events.append(Event("output", "system-prompt-leak", action, "output", leak,
                                f"{len(leak.split())} words of the system prompt"))
            if action == "blocked":
                out = replace(out, blocked=True, text=LEAK_NOTICE)
        if is_refusal(text):
            events.append(Event("output", "refusal", "noted", "output", text[:200], "the model declined"))
            out = replace(out, refusal=True)
    if policy.on("pii") and not out.blocked:
        from edgeai.guard.pii import find_pii, redact

        found = find_pii(out.text)
        if found:
            action = "redacted" if policy.redact else "flagged"
            events += [Event("pii", e.kind, action, "output", e.value) for e in found]
            if policy.redact:
                out = replace(out, text=redact(out.text, found).text)
    if policy.audit and events:
        record(Path(settings.home), surface, events, redacted=policy.redact)
    return replace(out, findings=tuple(events))


def ingest_screen(settings, surface: str = "ingest"):
    """What indexing calls on each passage before it is embedded: `screen(file, text) ->
    (text, kinds found)`, the text redacted when `ingest_pii = "redact"` (or `redact = true`).
    None when the PII layer is off."""
    policy = policy_of(settings)
    if not policy.on("pii"):
        return None
    redacting = policy.ingest_action == "redact"

    def screen(file: str, text: str) -> tuple[str, list[str]]:
        from edgeai.guard.pii import find_pii, redact

        found = find_pii(text)
        if not found:
            return text, []
        action = "redacted" if redacting else "flagged"
        if policy.audit:
            record(Path(settings.home), surface,
                   [Event("pii", e.kind, action, "file", e.value, Path(file).name) for e in found],
                   redacted=redacting)
        return (redact(text, found).text if redacting else text), sorted({e.kind for e in found})

    return screen
