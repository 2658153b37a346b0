"""`doctor --tune`'s format probe: every installed artifact of a model measured at its best
threads, the fastest recorded for `run`, `serve` and `bench`, and the chat's own choice.

Each artifact is a short `llm` child (bench/llm.py) on its own backend, at the thread count the
thread probes chose (and, for a backend other than llama.cpp, also at all cores: its threads do
not spin and its best count can differ). The chat needs three things of a backend — prefix reuse
across turns (the 2nd turn evaluates only the new tokens), stop mid-prefill (Esc during a long
prompt), and the KV cache saved to disk for instant resume — so the chat gets the fastest
artifact whose backend does all three, with the reason in words when that is not the winner.
The choices go to `<home>/tuned.json` (edgeai/tuned.py) through the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from edgeai.bench.llm import Plan
from edgeai.formats import FORMAT_BACKENDS

CHAT_NEEDS = ("prefix reuse", "stop mid-prefill", "saved KV state")
# What each backend does for the chat, as implemented in edgeai/runtime/<backend>.py; the KV
# state is also checked on the class (runtime.base.KVState) so a backend that gains it counts.
PREFIX_REUSE = {"llamacpp", "mlx", "onnx"}  # the onnx generator is kept and rewound (rewind_to)
STOPS_MID_PREFILL = {"llamacpp", "mlx", "onnx", "remote"}  # prefill in steps / abort callback
WHY_NO_KV = {
    "onnx": "onnxruntime-genai 0.18 cannot restore a KV cache: a generator's past_key_values are "
            "copies (get_input/get_output), set_model_input does not replace them and rewind_to "
            "cannot move past the tokens it evaluated, so resuming means prefilling the conversation again",
}


@dataclass
class FormatProbe:
    format: str
    quant: str
    path: str
    backend: str
    threads: int
    prefill_tps: float | None = None
    decode_tps: float | None = None
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.quant}@{self.format}" if self.quant else self.format


@dataclass
class FormatChoice:
    probes: list[FormatProbe] = field(default_factory=list)
    winner: FormatProbe | None = None
    chat: FormatProbe | None = None
    chat_why: str = ""


def chat_missing(backend: str) -> list[str]:
    """What of CHAT_NEEDS the backend lacks (empty: it does everything the chat needs)."""
    from edgeai.runtime import backend_class
    from edgeai.runtime.base import KVState

    missing = [] if backend in PREFIX_REUSE else ["prefix reuse"]
    if backend not in STOPS_MID_PREFILL:
        missing.append("stop mid-prefill")
    try:
        has_kv = isinstance(backend_class(backend)(), KVState)
    except Exception:  # a backend that cannot even be constructed here does nothing for the chat
        has_kv = False
    if not has_kv:
        missing.append("saved KV state")
    return missing


def probe_formats(items, threads: int, cores: int, *, wait_policy: str | None = None,
                  on_probe: Callable[[str, int], None] = lambda label, total: None,
                  on_tick: Callable[[str], None] = lambda label: None) -> FormatChoice:
    """Measure each installed artifact (models.installed.Installed) and choose."""
    from edgeai.bench.tune import _probe

    base = Plan(model="", pp=128, tg=32, warmup=1, repeats=2, n_ctx=2048, wait_policy=wait_policy)
    result = FormatChoice()
    for item in items:
        backend = FORMAT_BACKENDS.get(item.format)
        if backend is None:
            continue
        counts = [threads] if backend == "llamacpp" or cores == threads else [threads, cores]
        for count in counts:
            plan = replace(base, model=str(item.path), threads=count)
            probe = _probe(plan, backend, "format", f"{item.label} {count}t", on_probe, on_tick)
            result.probes.append(FormatProbe(item.format, item.quant, str(item.path), backend, count,
                                             probe.prefill_tps, probe.decode_tps, probe.error))
    return choose(result)


def choose(result: FormatChoice) -> FormatChoice:
    """The fastest decode wins; the chat takes the fastest whose backend does all the chat needs."""
    ok = sorted((p for p in result.probes if p.decode_tps), key=lambda p: p.decode_tps, reverse=True)
    best_per_path: dict[str, FormatProbe] = {}
    for probe in ok:
        best_per_path.setdefault(probe.path, probe)
    ranked = list(best_per_path.values())
    if not ranked:
        return result
    result.winner = ranked[0]
    lacks = {p.backend: chat_missing(p.backend) for p in ranked}  # one backend instance each
    result.chat = next((p for p in ranked if not lacks[p.backend]), None)
    missing = lacks[result.winner.backend]
    if missing:
        why = f"{result.winner.label} decodes fastest ({result.winner.decode_tps:.1f} tok/s) but " \
              f"its backend ({result.winner.backend}) lacks {', '.join(missing)}"
        if "saved KV state" in missing and result.winner.backend in WHY_NO_KV:
            why += f" ({WHY_NO_KV[result.winner.backend]})"
        if result.chat:
            why += f"; the chat uses {result.chat.label} ({result.chat.decode_tps:.1f} tok/s)"
        result.chat_why = why
    return result


def measured_rows(result: FormatChoice) -> list[dict]:
    from dataclasses import asdict

    return [asdict(p) for p in result.probes]
