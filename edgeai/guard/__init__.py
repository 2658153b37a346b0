"""Guardrails for every surface (the TUI, `chat --plain`, the server): one pipeline of layers,
each switchable in `[guard]` of config.toml and per request.

    input       length, encoding, control and invisible characters          text.py
    injection   prompt injection, jailbreaks, extraction probes;            injection.py
                on user input and on retrieved passages
    moderation  a policy list of categories + patterns; an opt-in judge     moderation.py
    pii         email, phone, card (Luhn), IBAN (mod-97), SSN, secrets      pii.py, keys.py
                (detect-secrets); before indexing, in prompts, in outputs
    output      JSON Schema, a leaked system prompt, a refusal              output.py
    audit       <home>/guard.db; `edgeai guard log`                         audit.py

The engine calls `hooks(settings, model)` for its default hooks (`edgeai.chat.turn`); the
server passes the same hooks to `prepare` with `Ask(surface="serve", options=<switches>)` and
checks each reply with `check_output(text, settings, surface=, options=, system_prompt=, schema=)`.
Policy and wiring: policy.py, pipeline.py. detect-secrets and jsonschema load on first use.
"""

from edgeai.guard.pipeline import (
    LEAK_NOTICE,
    Guard,
    GuardRefused,
    OutputCheck,
    check_input,
    check_output,
    hooks,
    ingest_screen,
    policy_of,
)
from edgeai.guard.policy import LAYERS, SWITCHES, Policy, parse_policy, switched

__all__ = ["LAYERS", "LEAK_NOTICE", "SWITCHES", "Guard", "GuardRefused", "OutputCheck", "Policy",
           "check_input", "check_output", "hooks", "ingest_screen", "parse_policy", "policy_of", "switched"]
