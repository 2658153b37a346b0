"""`edgeai doctor --tune`: measure, on this machine, the thread count, the prompt batch size and
(where the model is installed in several formats) the backend, and write the choices into the
config file so the chat and every command use them.

Each probe is a short `llm`-suite run in a child process (bench/llm.py), so a probe that crashes
is reported and skipped. Rules, and why:
- threads and OpenMP's wait policy for headless commands (runtime/threads.py): the highest decode
  tok/s over every count × {active, passive}; within 3% of it, the fewest threads, then `passive`
  (they leave cores to other programs, and decode is bandwidth-bound, so more threads often buy
  nothing);
- the chat's threads and wait policy: the fastest decode whose keypress latency while a reply
  streams (p95, bench/tui.py's probe) stays within 10% of the old default's (all cores but one,
  passive), because the UI must not get slower to type into;
- n_batch (prompt tokens per evaluation step): the smallest within 5% of the best prefill tok/s,
  because a smaller step lets Esc stop a long prompt sooner;
- the format (every installed artifact of the model, at these threads): bench/tune_formats.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgeai.bench.llm import Plan, planned_ticks, run_child

BATCH_SIZES = (64, 128, 256, 512)
KEYPRESS_TOLERANCE = 1.10  # a chat setting may make typing at most 10% slower (p95) than the baseline


@dataclass
class Probe:
    what: str  # "threads" | "n_batch" | "backend"
    value: object
    prefill_tps: float | None = None
    decode_tps: float | None = None
    error: str | None = None
    keypress_p95_s: float | None = None  # the chat probe's: keypress -> frame while a reply streams


@dataclass
class Tuning:
    probes: list[Probe] = field(default_factory=list)
    choice: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def thread_candidates(cores: int) -> list[int]:
    """Every count on small machines; on big ones powers of two plus half and all cores."""
    if cores <= 8:
        return list(range(1, cores + 1))
    counts = {1, cores // 2, cores} | {2**i for i in range(1, cores.bit_length()) if 2**i < cores}
    return sorted(counts)


@dataclass(frozen=True)
class Threads:
    """A headless thread setting: the count and OpenMP's wait policy."""

    threads: int
    policy: str

    def __str__(self) -> str:
        return f"{self.threads} {self.policy}"

    def cost(self) -> tuple[int, bool]:
        """Among probes within the tolerance: fewer threads, then `passive` (idle cores stay free)."""
        return self.threads, self.policy != "passive"


def thread_settings(cores: int) -> list[tuple[int, str]]:
    """Every thread count with each wait policy; one thread has no OpenMP workers to wait."""
    from edgeai.runtime.threads import WAIT_POLICIES

    return [(n, policy) for n in thread_candidates(cores)
            for policy in (WAIT_POLICIES if n > 1 else ("passive",))]


def _median(done: dict, prefix: str) -> float | None:
    import statistics

    values = [s["value"] for s in done["samples"] if s["test"].startswith(prefix)]
    return statistics.median(values) if values else None


def _probe(plan: Plan, backend: str, what: str, value, on_probe, on_tick) -> Probe:
    on_probe(f"{what}={value}", planned_ticks(plan, backend))
    try:
        done = run_child(plan, backend, on_tick)
    except RuntimeError as exc:
        return Probe(what, value, error=str(exc))
    return Probe(what, value, _median(done, "pp"), _median(done, "tg"))


def _pick(probes: list[Probe], key: str, tolerance: float,
          cost: Callable[[Probe], object] = lambda p: p.value) -> Probe | None:
    """The cheapest probe (by `cost`) within `tolerance` of the best `key`."""
    ok = [p for p in probes if getattr(p, key)]
    if not ok:
        return None
    best = max(getattr(p, key) for p in ok)
    return min((p for p in ok if getattr(p, key) >= best * (1 - tolerance)), key=cost)


def tune(model: str, backend: str, cores: int, *,
         on_probe: Callable[[str, int], None] = lambda label, total: None,
         on_tick: Callable[[str], None] = lambda label: None) -> Tuning:
    """Probe threads, then n_batch at the best thread count (`model`: one artifact, on `backend`)."""
    result = Tuning()
    base = Plan(model=model, pp=128, tg=16, warmup=1, repeats=2, n_ctx=2048)
    for threads, policy in thread_settings(cores):
        plan = replace(base, threads=threads, wait_policy=policy)
        result.probes.append(_probe(plan, backend, "threads", Threads(threads, policy), on_probe, on_tick))
    best = _pick([p for p in result.probes if p.what == "threads"], "decode_tps", 0.03,
                 cost=lambda p: p.value.cost())
    if best is None:
        result.notes.append("every thread probe failed: nothing was written")
        return result
    result.choice.update(threads=best.value.threads, wait_policy=best.value.policy)
    base = replace(base, wait_policy=best.value.policy)
    batch_probes = []
    for size in BATCH_SIZES:
        plan = replace(base, threads=best.value.threads, pp=256, tg=0, n_batch=size)
        batch_probes.append(_probe(plan, backend, "n_batch", size, on_probe, on_tick))
    result.probes += batch_probes
    chosen = _pick(batch_probes, "prefill_tps", 0.05)
    if chosen is not None:
        result.choice["n_batch"] = chosen.value
    if backend == "llamacpp":  # the wait policy and the UI's core are OpenMP questions
        probes, choice, note = tune_chat(cores, on_probe, on_tick)
        result.probes += probes
        result.choice.update(choice)
        result.notes += [note] if note else []
    return result  # the installed formats are measured next, at these threads (bench/tune_formats.py)


def chat_candidates(cores: int) -> list[Threads]:
    """The chat's settings worth probing; the first (all cores but one, passive: the default
    before any tuning) is the baseline the keypress latency is held to."""
    base = Threads(max(1, cores - 1), "passive")
    others = [Threads(n, policy) for n, policy in thread_settings(cores) if n >= base.threads]
    return [base] + [t for t in others if t != base]


def _chat_probe(setting: Threads, on_probe, on_tick, keys: int = 30) -> Probe:
    """bench/tui.py's chat probe in a fresh process with the setting's wait policy."""
    import json
    import subprocess
    import sys

    from edgeai.runtime.threads import child_env

    on_probe(f"chat={setting}", 1)
    cmd = [sys.executable, "-m", "edgeai.bench.tui", "--keys", str(keys), "--chat-probe",
           str(setting.threads), setting.policy]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env=child_env(setting.policy))
    on_tick(str(setting))
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        errors = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return Probe("chat", setting, error=errors[-1] if errors else f"exit code {proc.returncode}")
    data = json.loads(lines[-1])
    return Probe("chat", setting, decode_tps=data["decode_tps"], keypress_p95_s=data["keypress_s"]["p95"])


def tune_chat(cores: int, on_probe=lambda label, total: None, on_tick=lambda label: None,
              probe: Callable[..., Probe] = _chat_probe) -> tuple[list[Probe], dict, str | None]:
    """The chat's threads and wait policy: the fastest decode (within 3%: the cheaper setting)
    among the settings whose keypress p95 while streaming stays within 10% of the baseline's.
    Returns the probes, the choice (config keys) and a note."""
    candidates = chat_candidates(cores)
    if len(candidates) == 1:
        only = candidates[0]
        return [], {"chat_threads": only.threads, "chat_wait_policy": only.policy}, \
            f"chat: one core, so {only}: nothing to choose between"
    probes = [probe(setting, on_probe, on_tick) for setting in candidates]
    base = probes[0]
    if base.keypress_p95_s is None:
        return probes, {}, f"chat: the baseline probe failed ({base.error}); the chat keeps its defaults"
    limit = base.keypress_p95_s * KEYPRESS_TOLERANCE
    fit = [p for p in probes if p.keypress_p95_s is not None and p.keypress_p95_s <= limit]
    best = _pick(fit, "decode_tps", 0.03, cost=lambda p: p.value.cost()) or base
    return probes, {"chat_threads": best.value.threads, "chat_wait_policy": best.value.policy}, None


def write_config(path: Path, values: dict[str, object]) -> None:
    """Set top-level keys in a TOML config, keeping every other line (comments included)."""
    from edgeai.fileio import atomic_write

    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    for key, value in values.items():
        text = f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}"
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        # only top-level keys: stop at the first [table] header
        end = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
        index = next((i for i in range(end) if pattern.match(lines[i])), None)
        if index is None:
            lines.insert(end, text)
        else:
            lines[index] = text
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "\n".join(lines) + "\n")
