"""The `llm` suite: `edgeai bench llm`. Plans the runs, runs each backend in a child process,
and turns the samples into one schema-v1 result (bench/schema.py).

Why a child per backend: a backend that crashes or cannot load here (a missing extra, the wrong
artifact format, a driver) is skipped with its reason and the run goes on; peak memory is that
backend's own (the child's VmHWM, see edgeai/memory.py), not the sum of everything loaded before it.

The child speaks JSON lines on stdout, each prefixed with `EVENT` so llama.cpp's prints cannot be
mistaken for them: {"tick": label} after every run (the progress bar), then {"done": {...}}.
Measurements themselves live in bench/llm_protocol.py.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from edgeai.errors import BadInput
from edgeai.formats import EXPORT_BACKENDS

EVENT = "@@edgeai-bench "


@dataclass(frozen=True)
class Plan:
    model: str
    backends: tuple[str, ...] = ()  # empty: the model's own backend
    pp: int = 512
    tg: int = 128
    depths: tuple[int, ...] = (0,)
    warmup: int = 1
    repeats: int = 5
    threads: int | None = None
    gpu_layers: int | None = None
    n_ctx: int = 4096
    quick: bool = False
    sustained_s: float = 0.0  # > 0: repeat tgN for this long and keep every sample (throttling)
    n_batch: int | None = None  # prompt tokens per evaluation step (None: the backend's default)
    draft: str = "off"  # speculative decoding (`--draft`): off, ngram, a draft model, auto (tuned.json)
    wait_policy: str | None = None  # OMP_WAIT_POLICY of the child (None: the headless setting)


def quick_plan(model: str, **changes) -> Plan:
    """`--quick`: llamacpp on the default GGUF, pp128/tg32, 1 warm-up, 3 repeats, depth 0."""
    return replace(Plan(model=model, pp=128, tg=32, depths=(0,), warmup=1, repeats=3, quick=True), **changes)


def check_plan(plan: Plan) -> None:
    from edgeai.runtime import all_backends

    known = set(all_backends())
    for name in plan.backends:
        if name not in known:
            raise BadInput(f"unknown backend {name!r}", f"known: {', '.join(sorted(known))}")
    if plan.pp < 0 or plan.tg < 0 or not (plan.pp or plan.tg):
        raise BadInput("--pp and --tg must be 0 or more, and not both 0")
    if plan.tg == 1:
        raise BadInput("--tg must be at least 2 (decode speed is measured between tokens)")
    if plan.repeats < 1 or plan.warmup < 0:
        raise BadInput("--repeats must be at least 1 and --warmup 0 or more")
    for depth in plan.depths:
        if depth < 0 or depth + plan.pp + max(plan.tg, 8) + 8 > plan.n_ctx:
            raise BadInput(f"depth {depth} + pp{plan.pp} + tg{plan.tg} does not fit --ctx {plan.n_ctx}")


def planned_ticks(plan: Plan, backend: str) -> int:
    from edgeai.bench.llm_protocol import PREFIX_REUSE

    per_run = sum(bool(plan.pp and (not d or backend in PREFIX_REUSE)) + bool(plan.tg) for d in plan.depths)
    return (plan.warmup + plan.repeats) * per_run + (1 if plan.sustained_s else 0)


# -- the child: one backend, one model ----------------------------------------------------------
def _model_facts(spec, backend: str | None = None) -> dict:
    """Size, quantization and the bytes a decode step streams (bench/token_bytes.py) of the
    artifact `backend` runs, where they are known."""
    from edgeai.bench.token_bytes import file_estimate, gguf_token_bytes, token_bytes
    from edgeai.formats import FORMAT_BACKENDS

    # a catalog id's name without ":quant@format" (the quant has its own column); a file's name
    facts: dict = {"model": spec.id.partition(":")[0], "quant": None, "model_bytes": None,
                   "token_bytes": None}
    # the artifact the backend runs: its own format's, else the only one there is
    fmt = next((f for f, b in FORMAT_BACKENDS.items() if b == backend and spec.artifact(f)), None)
    path = spec.artifact(fmt) if fmt else next(iter(spec.artifacts.values()), None)
    if path is None or not Path(path).exists():
        return facts
    header = None
    if Path(path).suffix == ".gguf":
        from edgeai.gguf_info import quant_name, read_header

        header = read_header(path)
        facts["quant"] = quant_name(header)
    try:  # a GGUF's header is read once, for the quant and the tensor table
        counted = gguf_token_bytes(Path(path), header) if header else token_bytes(Path(path))
    except Exception:  # a graph or header this reader does not know: the files, marked as an estimate
        counted = file_estimate(Path(path))
    facts.update(model_bytes=counted.file_bytes, token_bytes=counted.as_dict())
    return facts


def _emit(**event) -> None:
    print(EVENT + json.dumps(event), flush=True)


def child_main(plan: Plan, backend_name: str, device: dict | None = None) -> None:
    from edgeai.bench.energy import measure_energy
    from edgeai.bench.llm_protocol import measure, sustained
    from edgeai.config import default_threads, load_settings
    from edgeai.memory import peak_rss_mb
    from edgeai.runtime.base import Drafting, Offload
    from edgeai.runtime.loader import load_model

    settings = load_settings({"threads": plan.threads, "gpu_layers": plan.gpu_layers, "n_ctx": plan.n_ctx,
                              "n_batch": plan.n_batch})
    settings = replace(settings, threads=settings.threads or default_threads())
    start = time.perf_counter()
    backend, spec = load_model(settings, plan.model, backend_name, draft=plan.draft)
    load_s = time.perf_counter() - start
    gpu_layers = backend.gpu_layers if isinstance(backend, Offload) else settings.gpu_layers
    source = energy_source(device, on_gpu=bool(gpu_layers))
    samples = [asdict(s) for s in measure(backend, backend_name, pp=plan.pp, tg=plan.tg,
                                          depths=list(plan.depths), warmup=plan.warmup,
                                          repeats=plan.repeats, tick=lambda label: _emit(tick=label),
                                          energy=(lambda: measure_energy(device, source=source))
                                          if source else None)]
    timeline = []
    if plan.sustained_s and plan.tg:
        timeline = [asdict(s) for s in sustained(backend, plan.tg, plan.sustained_s)]
        _emit(tick="sustained")
    backend.close()
    where = "the GPU" if gpu_layers else "the CPU"
    energy = ({"source": source, "reason": None} if source else
              {"source": None, "reason": f"no power sensor readable here covers {where} "
                                         f"({measure_energy(device).reason or 'none found'})"})
    _emit(done={"load_s": load_s, "samples": samples, "sustained": timeline, "peak_rss_mb": peak_rss_mb(),
                "energy": energy,
                "threads": settings.threads, "gpu_layers": gpu_layers,
                "draft": backend.draft if isinstance(backend, Drafting) else "off",
                "versions": backend_versions(backend_name), **_model_facts(spec, backend_name)})


def energy_source(device: dict | None, *, on_gpu: bool) -> str | None:
    """The power sensor that sees where this run executes: the GPU board (nvidia-smi) or the
    Jetson module for offloaded layers, the CPU package (RAPL, powermetrics) otherwise; a
    Jetson's tegrastats reads the whole module either way. None: let measure_energy say why."""
    from edgeai.bench.energy import measure_energy

    order = (["tegrastats", "nvidia", "powermetrics"] if on_gpu
             else ["tegrastats", "powermetrics", "rapl"])
    for name in order:
        if measure_energy(device, source=name).source is not None:
            return name
    return None


def backend_versions(name: str) -> dict:
    from importlib import metadata

    from edgeai.formats import backend_dist

    dist = backend_dist(name)
    try:
        return {dist: metadata.version(dist)} if dist else {}
    except metadata.PackageNotFoundError:
        return {}


# -- the parent -----------------------------------------------------------------------------------
def run_child(plan: Plan, backend: str, on_tick: Callable[[str], None], device: dict | None = None) -> dict:
    """Run one backend's child; return its `done` payload, or raise RuntimeError with the reason."""
    payload = json.dumps({"plan": asdict(plan), "backend": backend, "device": device})
    return run_event_child(["edgeai.bench.llm", "--child", payload], plan.wait_policy, on_tick)


def run_event_child(module_args: list[str], wait_policy: str | None, on_tick: Callable[[str], None]) -> dict:
    """Run `python -m MODULE ARGS...`, a child that speaks EVENT lines, with OMP_WAIT_POLICY
    `wait_policy` (None: the headless setting, as for any headless command): each tick to
    `on_tick`; return its `done` payload, or raise RuntimeError with the reason its stderr gives."""
    from edgeai.config import load_settings
    from edgeai.runtime.threads import child_env, headless_policy

    env = child_env(wait_policy or headless_policy(load_settings()))
    done = None
    # stderr goes to a file: a chatty child (llama.cpp logs) can never fill a pipe and stall
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errors:
        proc = subprocess.Popen([sys.executable, "-m", *module_args],
                                stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
        try:
            for line in proc.stdout:
                if not line.startswith(EVENT):
                    continue
                event = json.loads(line[len(EVENT):])
                if "tick" in event:
                    on_tick(event["tick"])
                done = event.get("done", done)
            proc.wait()
        except BaseException:  # Ctrl-C: never leave a child running a model
            proc.kill()
            proc.wait()
            raise
        errors.seek(0)
        stderr = errors.read()
    if proc.returncode or done is None:
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        ours = [ln.partition("edgeai: error: ")[2] for ln in lines if "edgeai: error:" in ln]
        reason = ours[-1] if ours else lines[-1] if lines else f"exit code {proc.returncode}"
        raise RuntimeError(reason.strip())
    return done


def add_backend_rows(result: dict, backend: str, done: dict, bandwidth: float | None,
                     spread_pct: float | None = None) -> None:
    """Fold one child's samples into result rows: medians, the ceiling share, memory. A decode
    row's share counts the bytes a step streams at its average context (bench/token_bytes.py)
    and carries the bandwidth it used and that bandwidth's spread (None for a spec figure)."""
    from edgeai.bench.schema import add_row, ceiling_pct
    from edgeai.bench.token_bytes import TokenBytes

    common = {"backend": backend, "model": done["model"], "quant": done["quant"],
              "model_bytes": done["model_bytes"], "n_params": None, "threads": done["threads"],
              "gpu_layers": done["gpu_layers"], "peak_rss_mb": done["peak_rss_mb"],
              "draft": done.get("draft", "off")}
    add_row(result, **common, test="load", n_prompt=0, n_gen=0, depth=0, unit="s",
            samples=[done["load_s"]])
    groups: dict[tuple[str, int], list[dict]] = {}
    for sample in done["samples"]:
        groups.setdefault((sample["test"], sample["depth"]), []).append(sample)
    for (test, depth), samples in groups.items():
        values = [s["value"] for s in samples]
        row = {**common, "test": test, "depth": depth, "unit": "s" if test == "ttft" else "tok/s",
               "samples": values}
        if test == "ttft":  # ppN/tgN rows take their token counts from the name (speeds use the exact ones)
            row.update(n_prompt=samples[0]["n_prompt"], n_gen=1)
        joules = [s["joules"] for s in samples]
        if test.startswith("tg") and common["draft"] != "off":  # what drafting did in these runs
            drafted, accepted = (sum(s.get(k) or 0 for s in samples) for k in ("drafted", "accepted"))
            row.update(drafted=drafted, accepted=accepted,
                       accept_rate=round(accepted / drafted, 3) if drafted else None)
        if test.startswith("tg") and all(j for j in joules):
            row["tokens_per_joule"] = round(sum(s["n_gen"] for s in samples) / sum(joules), 3)
        counted = done.get("token_bytes")
        if test.startswith("tg") and bandwidth and counted and counted["weights"]:
            context = depth + 8 + samples[0]["n_gen"] // 2  # the average context while decoding
            per_token = TokenBytes(**counted).at_context(context)
            row.update(bw_ceiling_pct=ceiling_pct(statistics.median(values), per_token, bandwidth),
                       bytes_per_token=per_token, bw_gbps=bandwidth, bw_spread_pct=spread_pct)
        add_row(result, **row)
    if done.get("sustained"):
        result.setdefault("sustained", {})[backend] = sustained_summary(done["sustained"])


def sustained_summary(timeline: list[dict]) -> dict:
    """The --sustained run: every decode speed with its time, and the last quarter's median
    over the first quarter's (below 1: the machine slowed down as it heated up)."""
    speeds = [s["value"] for s in timeline]
    quarter = max(1, len(speeds) // 4)
    first, last = statistics.median(speeds[:quarter]), statistics.median(speeds[-quarter:])
    return {"test": timeline[0]["test"], "at_s": [s["at_s"] for s in timeline], "tok_s": speeds,
            "first_quarter": round(first, 3), "last_quarter": round(last, 3),
            "ratio": round(last / first, 3) if first else None}


def run_llm(plan: Plan, settings, *, on_start: Callable[[str, int], None] = lambda name, total: None,
            on_tick: Callable[[str], None] = lambda label: None) -> dict:
    """Run the plan: every backend in its own child; return the schema-v1 result (unsaved)."""
    import platform

    from edgeai import __version__
    from edgeai.bench.device import detect, label
    from edgeai.bench.schema import bandwidth_gbps, new_result
    from edgeai.runtime.loader import model_spec, pick_backend
    from edgeai.runtime.threads import HEADLESS, for_surface, headless_policy

    check_plan(plan)
    headless = for_surface(settings, HEADLESS)
    plan = replace(plan, threads=plan.threads or headless.threads,
                   wait_policy=plan.wait_policy or headless_policy(settings))
    backends = plan.backends or (pick_backend(model_spec(settings, plan.model, settings.backend),
                                              settings.backend),)
    # the ceiling is what the machine can read (the cached probe's best over 1..all threads)
    device = detect(measure_bandwidth=True)
    result = new_result(
        "llm", device=device, label=label(device),
        settings={"threads": plan.threads, "omp_wait_policy": plan.wait_policy, "warmup": plan.warmup,
                  "repeats": plan.repeats, "n_ctx": plan.n_ctx, "quick": plan.quick, "pp": plan.pp,
                  "tg": plan.tg, "depths": list(plan.depths), "sustained_s": plan.sustained_s,
                  "model": plan.model},
        versions={"edgeai": __version__, "python": platform.python_version()},
        source={"tool": "edgeai", "version": __version__, "citation": None, "url": None})
    for name in backends:
        on_start(name, planned_ticks(plan, name))
        try:
            done = run_child(plan, name, on_tick, device)
        except RuntimeError as exc:
            result["skipped"].append({"backend": name, "reason": str(exc)})
            on_tick("skipped")
            continue
        result["versions"].update(done["versions"])
        bandwidth, source = bandwidth_gbps(device, on_gpu=bool(done["gpu_layers"]))
        spread = (device["bandwidth"] or {}).get("spread") if source == "measured" else None
        result["settings"].setdefault("ceiling", {})[name] = {
            "bandwidth_gbps": bandwidth, "source": source, "spread": spread, "bytes": done.get("token_bytes")}
        result["settings"].setdefault("energy", {})[name] = done["energy"]
        add_backend_rows(result, name, done, bandwidth, spread["pct"] if spread else None)
    if not plan.backends:  # say why the other runtimes did not run: the table reads as a survey
        for name in EXPORT_BACKENDS:  # edgeai/formats.py
            if name not in backends:
                result["skipped"].append({"backend": name, "reason": export_reason(name, plan.model)})
    return result




def export_reason(name: str, model: str) -> str:
    if name == "coreml" and sys.platform != "darwin":
        return "Core ML runs only on macOS"
    return f"no {name} artifact for {model} (make one with `edgeai convert {model} --to {name} -o DIR`)"


def _child_entry(argv: list[str]) -> int:
    from edgeai.errors import EdgeAIError

    data = json.loads(argv[argv.index("--child") + 1])
    plan = Plan(**{**data["plan"], "backends": tuple(data["plan"]["backends"]),
                   "depths": tuple(data["plan"]["depths"])})
    try:
        child_main(plan, data["backend"], data.get("device"))
    except EdgeAIError as exc:
        print(f"edgeai: error: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_child_entry(sys.argv))
