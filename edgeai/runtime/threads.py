"""Threads and the OpenMP wait policy, chosen per surface.

llama.cpp runs its CPU work on OpenMP threads. Between two decode calls those threads either
spin (`OMP_WAIT_POLICY=active`: the next call starts at once, but the cores stay busy) or sleep
(`passive`: the cores are free for other work and each call pays a wake-up); `default` leaves
the runtime's own (GNU: a short spin, then sleep). Decode of the default model at 2 threads on
a 2-core VM, 3 interleaved `bench llm --quick` rounds: active 30.0 tok/s, default 25.5, passive
16.9 (1 thread: 15.6). Passive only pays where something else needs a core while the model runs
— the chat app's UI — and `active` is bounded (`SPIN_BOUNDS`) so an idle server does not spin.

Two surfaces, each with its settings (config.toml; `edgeai doctor --tune` measures and writes them):
- headless — `run`, `bench`, `serve`, `convert`'s validation, `chat --plain`: `threads`
  (default all cores) and `wait_policy` (default `active`);
- chat — the Textual app: `chat_threads` (default all cores but one) and `chat_wait_policy`
  (default `passive`); the keypress-latency probe (bench/tui.py) is what tune judges them by.

The policy has to be in the environment before the OpenMP runtime loads (`import llama_cpp`):
a process keeps the policy it loaded with, and `loaded_policy()` reports that one. An
`OMP_WAIT_POLICY` the user exported wins over both surfaces' settings.
"""

from __future__ import annotations

import os
from dataclasses import replace

from edgeai.config import Settings, default_threads
from edgeai.errors import BadInput

HEADLESS, CHAT = "headless", "chat"
# "default" leaves OMP_WAIT_POLICY unset: the OpenMP runtime's own (GNU: spin ~300k rounds, then sleep)
WAIT_POLICIES = ("active", "passive", "default")
DEFAULT_POLICY = {HEADLESS: "active", CHAT: "passive"}

# `active` spins between calls, but not forever: unbounded (GNU OpenMP's 30 billion rounds) an
# idle server or chat kept a core at 100% (2.9 s of CPU in 3 s idle, measured); these bounds
# let the threads sleep ~0.2 s after the last call, at 0.97x unbounded decode speed (GNU's
# GOMP_SPINCOUNT; LLVM's KMP_BLOCKTIME in ms). A value the user exported wins.
SPIN_BOUNDS = {"GOMP_SPINCOUNT": "30000000", "KMP_BLOCKTIME": "200"}

_ours: list[str] = []  # values this process put into OMP_WAIT_POLICY (anything else is the user's)
_loaded: list[str] = []  # the policy the OpenMP runtime loaded with (set at `import llama_cpp`)


def check_policy(value: str | None, source: str = "wait_policy") -> str | None:
    if value is not None and value not in WAIT_POLICIES:
        raise BadInput(f"{source} must be one of {', '.join(WAIT_POLICIES)}, got {value!r}")
    return value


def for_surface(settings: Settings, surface: str) -> Settings:
    """`settings` with `threads` and `wait_policy` resolved for `surface`: what a load uses."""
    if surface == CHAT:
        threads = settings.chat_threads or max(1, default_threads() - 1)
        policy = check_policy(settings.chat_wait_policy, "chat_wait_policy") or DEFAULT_POLICY[CHAT]
    else:
        threads = settings.threads or default_threads()
        policy = check_policy(settings.wait_policy) or DEFAULT_POLICY[HEADLESS]
    return replace(settings, threads=threads, wait_policy=policy)


def headless_policy(settings: Settings) -> str:
    """The policy a headless command runs under: the user's exported one, else the setting."""
    return user_policy() or for_surface(settings, HEADLESS).wait_policy


def user_policy() -> str | None:
    """The OMP_WAIT_POLICY the user exported, if any (not one this process set)."""
    value = os.environ.get("OMP_WAIT_POLICY")
    return value if value and value not in _ours else None


def apply(policy: str | None) -> str:
    """Put `policy` into the environment for the OpenMP runtime about to load (and for child
    processes), unless the user exported one or the runtime is already loaded; return the
    policy that holds."""
    if _loaded:
        return _loaded[0]
    if user_policy() is None and policy:
        if policy == "default":
            os.environ.pop("OMP_WAIT_POLICY", None)
        else:
            os.environ["OMP_WAIT_POLICY"] = policy
            _ours.append(policy)
    if os.environ.get("OMP_WAIT_POLICY") == "active":
        for name, value in SPIN_BOUNDS.items():
            os.environ.setdefault(name, value)
    return os.environ.get("OMP_WAIT_POLICY") or "default"


def child_env(policy: str, base: dict | None = None) -> dict[str, str]:
    """An environment for a child process that loads llama.cpp under `policy` (a headless
    edgeai child reads it as its `wait_policy` setting too, "default" included)."""
    env = {**(os.environ if base is None else base), "EDGEAI_WAIT_POLICY": policy}
    env.pop("OMP_WAIT_POLICY", None)
    if policy == "active":
        env = {**SPIN_BOUNDS, **env}
    return env if policy == "default" else {**env, "OMP_WAIT_POLICY": policy}


def mark_loaded() -> None:
    """Called once the OpenMP runtime is loaded: from now on the policy cannot change."""
    if not _loaded:
        _loaded.append(os.environ.get("OMP_WAIT_POLICY", "") or "default")


def loaded_policy() -> str | None:
    """The policy llama.cpp's threads run under in this process, once it is loaded."""
    return _loaded[0] if _loaded else None
