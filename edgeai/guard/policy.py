"""The guard's settings: which layers run and what each does when it fires.

Boundary: the `[guard]` table of `<home>/config.toml` (as `Settings.guard`) -> a frozen `Policy`,
and a request's switches (`Ask.options`, e.g. the server's `{"pii": false}`) applied on top. No
detection here. Unknown keys and bad values are refused with the key named (`BadInput`).

    [guard]
    enabled = true            # the whole pipeline
    input = true              # layers: input, injection, moderation, pii, output
    injection = true
    moderation = true
    pii = true
    output = true
    judge = false             # the loaded model as a moderation judge (slow: off unless asked)
    redact = false            # PII replaced in prompts, outputs and the index; the audit log keeps hashes
    audit = true              # rows in <home>/guard.db
    max_chars = 32000         # longer user input is refused
    invisible = "strip"       # control / invisible characters: strip | refuse
    on_injection = "refuse"   # user input: refuse | flag
    on_passage = "flag"       # retrieved passages: flag (marked, fenced harder) | drop
    on_moderation = "refuse"  # refuse | flag
    on_leak = "block"         # a reply quoting the system prompt: block | flag
    ingest_pii = "flag"       # before indexing: flag | redact (default: redact when redact = true)
    categories = [...]        # the moderation policy list (moderation.CATEGORIES)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from edgeai.errors import BadInput

LAYERS = ("input", "injection", "moderation", "pii", "output")
# what a request may switch (name -> bool): the layers, the judge and redaction
SWITCHES = (*LAYERS, "judge", "redact")
CHOICES = {"invisible": ("strip", "refuse"), "on_injection": ("refuse", "flag"),
           "on_passage": ("flag", "drop"), "on_moderation": ("refuse", "flag"),
           "on_leak": ("block", "flag"), "ingest_pii": ("flag", "redact")}


@dataclass(frozen=True)
class Policy:
    enabled: bool = True
    input: bool = True
    injection: bool = True
    moderation: bool = True
    pii: bool = True
    output: bool = True
    judge: bool = False
    redact: bool = False
    audit: bool = True
    max_chars: int = 32_000
    invisible: str = "strip"
    on_injection: str = "refuse"
    on_passage: str = "flag"
    on_moderation: str = "refuse"
    on_leak: str = "block"
    ingest_pii: str | None = None  # None: "redact" when redact is on, else "flag"
    categories: tuple[str, ...] | None = None  # None: every category moderation knows

    def on(self, layer: str) -> bool:
        """Whether a layer runs (the pipeline as a whole, then the layer's own switch)."""
        return self.enabled and bool(getattr(self, layer))

    @property
    def ingest_action(self) -> str:
        return self.ingest_pii or ("redact" if self.redact else "flag")


def parse_policy(table: Mapping[str, Any] | None, where: str = "config [guard]") -> Policy:
    """The `[guard]` table -> a Policy (missing keys keep their defaults)."""
    if not table:
        return Policy()
    if not isinstance(table, Mapping):
        raise BadInput(f"{where}: must be a table of settings, got {table!r}")
    kinds = {f.name: f for f in fields(Policy)}
    unknown = sorted(set(table) - set(kinds))
    if unknown:
        raise BadInput(f"{where}: unknown setting(s) {', '.join(unknown)}",
                       f"known: {', '.join(sorted(kinds))}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        default = getattr(Policy(), key)
        if key in CHOICES:
            if value not in CHOICES[key]:
                raise BadInput(f"{where}: {key} must be one of {', '.join(CHOICES[key])}, got {value!r}")
        elif key == "categories":
            from edgeai.guard.moderation import CATEGORIES

            if not isinstance(value, list) or not set(value) <= set(CATEGORIES):
                raise BadInput(f"{where}: categories must be a list of {', '.join(CATEGORIES)}")
            value = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise BadInput(f"{where}: {key} must be true or false, got {value!r}")
        elif isinstance(default, int) and (not isinstance(value, int) or value <= 0):
            raise BadInput(f"{where}: {key} must be a positive integer, got {value!r}")
        values[key] = value
    return Policy(**values)


def switched(policy: Policy, options: Mapping[str, Any] | None) -> Policy:
    """The policy with a request's switches applied: {"pii": False, "judge": True, ...}.
    Other keys of `options` belong to other hooks and are left alone; a switch that is not a
    bool is refused (the server answers 400)."""
    if not options:
        return policy
    changes = {}
    for name in SWITCHES:
        if name in options:
            if not isinstance(options[name], bool):
                raise BadInput(f"guard switch {name!r} must be true or false, got {options[name]!r}")
            changes[name] = options[name]
    return replace(policy, **changes) if changes else policy
