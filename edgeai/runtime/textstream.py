"""Turns a backend's raw text pieces into answer and reasoning text, honouring stop sequences.

Backend-independent: it sees only strings. It holds back a piece's tail while it could still
become a stop sequence or a `<think>`/`</think>` tag, so no consumer ever sees half a tag or
the start of a stop string. A thinking model's `<think>…</think>` part goes to `reasoning`.
"""

from __future__ import annotations

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


class TextStream:
    def __init__(self, stop: tuple[str, ...] = (), in_reasoning: bool = False):
        self.stop = tuple(s for s in stop if s)
        self.in_reasoning = in_reasoning  # True when the prompt itself opened a <think> block
        self.answer_started = False
        self.stopped = False
        self._buf = ""

    def feed(self, piece: str) -> tuple[str, str]:
        """Add generated text; return the (answer, reasoning) text that is now safe to show."""
        if self.stopped:
            return "", ""
        self._buf += piece
        hits = [i for i in (self._buf.find(s) for s in self.stop) if i >= 0]
        if hits:
            self._buf = self._buf[: min(hits)]
            self.stopped = True
            return self.flush()
        hold = self._holdback()
        ready, self._buf = self._buf[: len(self._buf) - hold], self._buf[len(self._buf) - hold:]
        return self._split(ready)

    def flush(self) -> tuple[str, str]:
        ready, self._buf = self._buf, ""
        return self._split(ready)

    def _patterns(self) -> tuple[str, ...]:
        tag = THINK_CLOSE if self.in_reasoning else (THINK_OPEN if not self.answer_started else "")
        return self.stop + ((tag,) if tag else ())

    def _holdback(self) -> int:
        best = 0
        for pattern in self._patterns():
            for k in range(min(len(pattern) - 1, len(self._buf)), best, -1):
                if self._buf.endswith(pattern[:k]):
                    best = k
                    break
        return best

    def _split(self, ready: str) -> tuple[str, str]:
        answer, reasoning = [], []
        while ready:
            if self.in_reasoning:
                before, closed, ready = ready.partition(THINK_CLOSE)
                reasoning.append(before)
                if closed:
                    self.in_reasoning = False
                    ready = ready.lstrip("\n")
            elif not self.answer_started and ready.lstrip().startswith(THINK_OPEN):
                ready = ready.lstrip()[len(THINK_OPEN):]
                self.in_reasoning = True
            else:
                if not self.answer_started:
                    ready = ready.lstrip("\n") if not "".join(answer) else ready
                self.answer_started = self.answer_started or bool(ready.strip())
                answer.append(ready)
                ready = ""
        return "".join(answer), "".join(reasoning)
