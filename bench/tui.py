"""How the chat app feels: first paint, input latency while a reply streams, conversation switch.

This benchmark measures the app itself, so it depends on it on purpose: it is the one module
outside `apps/tui/` that imports `edgeai.tui` (tests/test_layering.py allows exactly it), and
only inside the functions that drive the app. The switch measurement runs the engine's turn
(`edgeai.chat.turn`, `edgeai.chat.kv`) as the app's worker does.

1. First paint: process start -> the first frame that shows the prompt bar, for `edgeai chat`
   (a fresh EDGEAI_HOME, the real default model loading in its worker) and for a bare Textual
   app with a Header, a TextArea and a Footer, alternating, each in a fresh headless process.
   The parent notes the time before starting the child; the child prints the wall time once
   the frame with the prompt is composed (Textual's headless driver renders, it only discards
   the output). Reported as ratio edgeai / bare.
2. Input latency: a key is delivered as the terminal driver delivers it; timed until the
   character is in the prompt and a frame with it has been rendered (keypress -> rendered
   character), idle and while a reply streams from the real default model (the echo backend
   where the model is missing), p50/p95.
3. Switch time: with the real default model, two conversations each holding a ~1,000-token
   history; switching back to the first and getting the first token of a follow-up, with its
   saved KV state (restored) and without it (the history is re-processed).

    python -m edgeai.bench.tui [--repeats 5] [--keys 40] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgeai.fileio import atomic_write

KEY_TIMEOUT_S = 30.0  # a probe that cannot deliver a key fails, never hangs the tuner waiting
PASSAGE = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the "
           "age of foolishness, it was the epoch of belief, it was the epoch of incredulity. ")


# -- 1. first paint --------------------------------------------------------------------------
def paint_child(kind: str) -> None:
    if kind == "bare":
        from textual.app import App
        from textual.widgets import Footer, Header, TextArea

        class Bare(App):
            def compose(self):
                yield Header()
                yield TextArea()
                yield Footer()

        base, target = Bare, "TextArea"
    else:
        from edgeai.config import load_settings
        from edgeai.tui.app import EdgeChatApp

        base, target = EdgeChatApp, "PromptInput"

    class Timed(base):  # Textual runs every class's on_mount along the MRO
        # a relative CSS_PATH resolves next to the subclass's module: keep the app's own
        CSS_PATH = str(Path(sys.modules[base.__module__].__file__).with_name(base.CSS_PATH)) \
            if base.CSS_PATH else None

        def on_mount(self) -> None:
            self._seen = False
            self.set_interval(0.002, self._look)

        def _look(self) -> None:
            if not self._seen and self.screen.query(target):
                self._seen = True
                self.call_after_refresh(self._painted)

        def _painted(self) -> None:
            print(f"{time.time():.6f}", flush=True)
            self.exit()

    app = Timed() if kind == "bare" else Timed(load_settings())
    app.run(headless=True)


def first_paint(repeats: int) -> dict:
    samples: dict[str, list[float]] = {"bare": [], "edgeai": []}
    for i in range(repeats):
        for kind in ("bare", "edgeai"):
            with tempfile.TemporaryDirectory() as home:
                env = {**os.environ, "EDGEAI_HOME": home}
                start = time.time()
                out = subprocess.run([sys.executable, "-m", "edgeai.bench.tui", "--paint-child", kind],
                                     capture_output=True, text=True, env=env, timeout=120)
            if out.returncode != 0 or not out.stdout.strip():
                raise SystemExit(f"first-paint child {kind} failed: {out.stderr.strip()[-400:]}")
            samples[kind].append(float(out.stdout.split()[-1]) - start)
            print(f"  first paint {kind} #{i + 1}: {samples[kind][-1]:.3f} s", file=sys.stderr)
    return samples


# -- 2. input latency ------------------------------------------------------------------------
def _model(settings=None):
    """The model the app would load, with the chat's threads and wait policy (`settings`: the
    configured ones, or a probe's), else the echo backend where the model is missing."""
    from edgeai.config import load_settings
    from edgeai.runtime import get_backend
    from edgeai.tui.loader import default_loader, ui_settings  # load as the app does: measure that
    from edgeai.types import LoadOptions, ModelSpec

    settings = ui_settings(settings or load_settings())
    try:
        return default_loader(settings)(settings.model, settings.backend, None), settings
    except Exception as exc:  # no model here: say so and measure the UI with echo
        print(f"  (real model unavailable: {exc}; using echo)", file=sys.stderr)
        echo = get_backend("echo")
        spec = ModelSpec(id="echo", family="echo", defaults={"token_delay": 0.02})
        echo.load(spec, LoadOptions())
        echo.enqueue("streaming " * 2000)
        return (echo, spec), settings


async def _key_to_frame(app, prompt) -> float:
    """Deliver one key as the terminal driver would; time until the character is in the prompt
    and a frame with it has been rendered. (Pilot.press waits for the whole app to go idle,
    which a streaming reply never does, so it would time the stream, not the key.)"""
    from textual import events

    before = prompt.text
    rendered = asyncio.Event()
    start = time.perf_counter()
    key = events.Key("x", "x")
    key.set_sender(app)
    app._driver.send_message(key)
    while prompt.text == before:
        if time.perf_counter() - start > KEY_TIMEOUT_S:
            raise RuntimeError(f"a key did not reach the prompt within {KEY_TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.0005)
    app.call_after_refresh(rendered.set)
    await rendered.wait()
    elapsed = time.perf_counter() - start
    await asyncio.sleep(0.02)  # a typist's gap, so keys do not queue behind each other
    return elapsed


async def _press_latencies(keys: int, streaming: bool, settings=None) -> list[float]:
    from edgeai.tui.app import EdgeChatApp
    from edgeai.tui.widgets.prompt import PromptInput

    loaded, settings = _model(settings)
    with tempfile.TemporaryDirectory() as home:
        settings = type(settings)(**{**settings.__dict__, "home": Path(home)})
        app = EdgeChatApp(settings, loaded=loaded, overrides={"max_tokens": 2000})
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            prompt = app.screen.query_one(PromptInput)
            if streaming:
                prompt.text = "Write a very long story about the sea, in many chapters."
                await pilot.press("enter")
                waited = time.perf_counter()
                while "-generating" not in app.screen.query_one("Composer").classes:
                    if time.perf_counter() - waited > KEY_TIMEOUT_S:
                        raise RuntimeError(f"no reply started within {KEY_TIMEOUT_S:.0f} s")
                    await pilot.pause(0.05)
                await pilot.pause(1.0)  # well into the reply
            latencies = [await _key_to_frame(app, prompt) for _ in range(keys)]
            assert prompt.text.endswith("x" * keys), "the keys did not reach the prompt"
            if streaming:
                app.screen.action_stop()
                await pilot.pause(0.5)
    loaded[0].close()
    return latencies


def chat_probe(threads: int, policy: str, keys: int) -> dict:
    """`doctor --tune`'s chat probe, in a fresh process (the wait policy must be set before
    llama.cpp loads): decode tok/s of the app's model at these settings, then the keypress
    latency while a reply streams."""
    from dataclasses import replace

    from edgeai.config import load_settings
    from edgeai.types import GenParams, Message

    settings = replace(load_settings(), chat_threads=threads, chat_wait_policy=policy)
    (backend, spec), _ = _model(settings)
    params = GenParams(max_tokens=48, temperature=0, ignore_eos=True)
    for _ in range(2):  # the first is a warm-up
        final = list(backend.stream([Message("user", "Tell me about the sea.")], params))[-1]
    backend.close()
    latencies = asyncio.run(_press_latencies(keys, streaming=True, settings=settings))
    return {"threads": threads, "policy": policy, "decode_tps": final.gen_tps,
            "keypress_s": _stats(latencies)}


# -- 3. conversation switch ------------------------------------------------------------------
def switch_time(repeats: int) -> dict:
    from edgeai.chat.kv import kv_path, prepare, save_kv
    from edgeai.chat.turn import begin_turn, run_turn
    from edgeai.chatdb import ChatDB
    from edgeai.runtime.loaded import LoadedModel
    from edgeai.types import GenParams

    (backend, spec), settings = _model(None)
    if backend.name != "llamacpp":
        return {"skipped": "needs the real default model (llamacpp) for KV state"}
    model = LoadedModel(backend, spec, spec.id, settings.n_ctx)
    params = GenParams(max_tokens=8, temperature=0)
    samples: dict[str, list[float]] = {"with_kv": [], "without_kv": [], "history_tokens": []}
    with tempfile.TemporaryDirectory() as home:
        db = ChatDB(Path(home) / "chat.db")
        convs = [db.create_conversation(f"history {name}", model=model.request, backend=backend.name)
                 for name in ("A", "B")]
        used = [0]

        def turn(conv, text: str) -> float:
            """Add a user message, stream a reply; return seconds to its first token."""
            begun = begin_turn(db, conv, text, model)
            start, first = time.perf_counter(), []

            def on_text(_t: str, _r: str) -> None:
                if not first:
                    first.append(time.perf_counter() - start)

            # the states are saved below, explicitly, to this run's own kv/ folder
            out = run_turn(begun, model, params, settings, on_text=on_text, save_state=False)
            used[0] = out.context_used or 0  # the tokens the conversation now holds in the cache
            return first[0] if first else float("nan")

        # each history processed once, its state saved. The passage is the first question
        # itself: a user message left without a reply would give way to the next one (history())
        for name, conv in zip(("A", "B"), convs, strict=True):
            turn(conv, f"Conversation {name}. " + PASSAGE * 30 + "Summarize.")
            save_kv(model, kv_path(Path(home), db, conv.id))
        for i in range(repeats):
            for mode in ("with_kv", "without_kv"):
                a, b = convs
                prepare(model, db, b, kv_path(Path(home), db, b.id))  # the cache now holds B
                turn(b, f"Next {i}.")
                save_kv(model, kv_path(Path(home), db, b.id))
                start = time.perf_counter()
                kv = kv_path(Path(home), db, a.id) if mode == "with_kv" else None
                if kv is None:
                    backend.clear_state()  # as after a restart without a saved state
                prepare(model, db, a, kv)
                samples[mode].append(time.perf_counter() - start + turn(a, f"Again {i}?"))
                save_kv(model, kv_path(Path(home), db, a.id))
                print(f"  switch {mode} #{i + 1}: {samples[mode][-1]:.3f} s", file=sys.stderr)
            samples["history_tokens"].append(used[0])
        db.close()
    backend.close()
    return samples


# -- report ----------------------------------------------------------------------------------
def _stats(values: list[float]) -> dict:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median": statistics.median(values), "min": ordered[0], "max": ordered[-1], "p95": p95}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keys", type=int, default=40)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--paint-child", choices=("bare", "edgeai"), help=argparse.SUPPRESS)
    parser.add_argument("--chat-probe", nargs=2, metavar=("THREADS", "POLICY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.paint_child:
        return paint_child(args.paint_child)
    if args.chat_probe:
        print(json.dumps(chat_probe(int(args.chat_probe[0]), args.chat_probe[1], args.keys)))
        return None

    paint = first_paint(args.repeats)
    idle = asyncio.run(_press_latencies(args.keys, streaming=False))
    busy = asyncio.run(_press_latencies(args.keys, streaming=True))
    switch = switch_time(args.repeats)
    report = {"first_paint_s": {k: _stats(v) for k, v in paint.items()},
              "input_latency_s": {"idle": _stats(idle), "streaming": _stats(busy)},
              "switch_s": {k: _stats(v) for k, v in switch.items() if isinstance(v, list)} or switch,
              "samples": {"paint": paint, "idle": idle, "streaming": busy, "switch": switch}}
    fp = report["first_paint_s"]
    print(f"first paint      edgeai {fp['edgeai']['median']:.3f} s  bare Textual "
          f"{fp['bare']['median']:.3f} s  ratio {fp['edgeai']['median'] / fp['bare']['median']:.2f}")
    for name in ("idle", "streaming"):
        lat = report["input_latency_s"][name]
        print(f"input latency    {name:<9} p50 {lat['median'] * 1000:.1f} ms  p95 {lat['p95'] * 1000:.1f} ms")
    if "with_kv" in report["switch_s"]:
        kv, cold = report["switch_s"]["with_kv"], report["switch_s"]["without_kv"]
        print(f"switch + 1st token  with KV state {kv['median']:.3f} s [{kv['min']:.3f}-{kv['max']:.3f}]  "
              f"re-processed {cold['median']:.3f} s [{cold['min']:.3f}-{cold['max']:.3f}]  "
              f"ratio {kv['median'] / cold['median']:.3f}")
    else:
        print(f"switch           skipped: {switch.get('skipped')}")
    if args.json:
        atomic_write(args.json, json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
