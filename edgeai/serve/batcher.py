"""Continuous batching: one thread owns the model and advances every live request together.

Boundary: jobs in (a prompt, its sampling, where to deliver), `Event`s out; no HTTP and no
OpenAI shapes. On a backend with the batched step (`decode.BatchedStep`: llama.cpp) each job
gets a sequence of the one context; every step evaluates one token for each decoding sequence
and up to `prefill_step` prompt tokens of the sequences still reading their prompt, in one model
call, so a new request joins the running batch between steps and a long prompt never stalls the
replies in flight (chunked prefill); of the prompt tokens a step takes, the shortest prompts get
theirs first, so a short request is not kept behind a long document. Each sequence samples with
its own sampler chain and keeps its tokens after its reply: the next job goes to the free
sequence that holds the longest prefix of its prompt (a returning conversation lands where its
history is). A backend without the batched step is served one job at a time through its `stream`.

Images on a backend that sees (a llama.cpp VLM: mtmd's image chunks, which only `stream`
evaluates) are not batched: such a job waits, first come first served, until the running batch
has finished, then runs alone through `stream`; the jobs that arrived after it wait for it. The
sequence `stream` used (`backend.stream_seq`; every sequence where a backend does not say) is
then treated as holding unknown tokens, so no later job reuses a prefix from it by mistake.

Waiting jobs are bounded (`QueueFull` at once, never a hang); a cancelled job (its client left)
gives its sequence back before the next step.

Speculative decoding (`serve --draft`, a backend with `Drafting` on): while ONE job decodes and
none waits or reads its prompt, its step input is its last token plus the drafts, logits at all
of them, accepted row by row with its own sampler (runtime/speculative.py's round and policy).
With several jobs the batch itself already shares each pass over the weights among them, and
a CPU verify costs about its size, so drafts there would mostly add cost: they stop at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from edgeai.errors import BadInput, EdgeAIError
from edgeai.runtime.base import draft_of
from edgeai.runtime.decode import BatchedStep, PromptPlan, Reply, SeqInput, common_prefix
from edgeai.types import Chunk, GenParams, Message

_UNKNOWN = -1  # a held position whose token the batcher does not know: never a prompt's token


def _has_images(prompt) -> bool:
    return isinstance(prompt, list) and any(m.images for m in prompt)


class QueueFull(Exception):
    """More jobs wait than the queue holds."""


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Event:
    """What a job's client hears: a chunk (the last has `finish_reason`), or an error."""

    chunk: Chunk | None = None
    logprobs: tuple[TokenLogprob, ...] = ()
    error: BaseException | None = None


@dataclass(eq=False)
class Job:
    prompt: str | list[Message]
    params: GenParams
    deliver: Callable[[Event], None]  # called on the batcher's thread; must not block
    plan: PromptPlan | None = None  # batched backends: the tokens, checked when submitted
    sampler: Any = None
    logprobs: int | None = None  # alternatives per token wanted (0: the token's own only)
    cancelled: bool = False
    submitted: float = field(default_factory=time.perf_counter)
    # the batcher's own state
    seq: int = -1
    todo: list[int] = field(default_factory=list)  # prompt tokens not yet evaluated
    reply: Reply | None = None
    token: int | None = None  # sampled, to be evaluated next step
    history: list[int] = field(default_factory=list)  # prompt + reply ids (what a drafter looks at)
    drafter: Any = None  # speculative decoding: this job's drafter, when the backend drafts
    drafted: int = 0
    accepted: int = 0
    pending_logprobs: list[TokenLogprob] = field(default_factory=list)
    alone: bool = False  # served through `stream` with nothing else running (images on a VLM)


class Batcher:
    """The model's only user while the server runs."""

    def __init__(self, backend: Any, *, window: int, queue: int = 16,
                 on_step: Callable[[int], None] = lambda n: None,
                 on_done: Callable[[Job, Chunk], None] = lambda job, final: None) -> None:
        self.backend = backend
        self.window = window  # tokens one sequence may hold (`--ctx`)
        self.queue_limit = queue
        self.batched = isinstance(backend, BatchedStep) and backend.n_seq >= 1
        self.slots = backend.n_seq if self.batched else 1
        self.prefill_step = getattr(backend, "prefill_step", 128)
        self.drafting = self.batched and draft_of(backend) != "off"
        self._policy = backend.draft_policy() if self.drafting else None
        self._on_step, self._on_done = on_step, on_done
        self._waiting: deque[Job] = deque()
        self._active: list[Job] = []
        self._held: list[list[int]] = [[] for _ in range(self.slots)]  # tokens each sequence holds
        self._used: list[float] = [0.0] * self.slots  # when each sequence last served
        self._cv = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="edgeai-batcher", daemon=True)
        self._thread.start()

    # -- the request side (any thread) ----------------------------------------------------
    def prepare(self, job: Job, tools: Sequence[dict] | None = None) -> Job:
        """Tokenize and check the prompt, build its sampler (raises BadInput, ContextOverflow):
        done on the request's thread, so a bad request fails before it waits. Tokenizing reads
        only the vocabulary, which the running batch never changes."""
        if self.batched and _has_images(job.prompt):
            if job.logprobs is not None:
                raise BadInput("logprobs are not available for a request with images")
            job.alone = True  # the backend's stream checks and evaluates it, when it runs
        elif self.batched:
            job.plan = self.backend.plan(job.prompt, job.params, self.window, tools=tools)
            job.sampler = self.backend.sampler(job.params, job.params.seed)
        return job

    def submit(self, job: Job) -> None:
        with self._cv:
            if self._closing:
                raise EdgeAIError("the server is shutting down")
            if self.full:
                raise QueueFull
            self._waiting.append(job)
            self._cv.notify()

    def cancel(self, job: Job) -> None:
        """The client left: a waiting job leaves the queue now; a running one frees its
        sequence before the next step."""
        with self._cv:
            job.cancelled = True
            if job in self._waiting:
                self._waiting.remove(job)
            self._cv.notify()

    @property
    def full(self) -> bool:
        """Every sequence busy or promised, and the queue full. Jobs submitted but not yet
        admitted (the loop admits between steps) count against free sequences first, so a burst
        is not refused for the moments before the loop takes it."""
        return len(self._waiting) + len(self._active) >= self.slots + self.queue_limit

    @property
    def queue_depth(self) -> int:
        """Jobs that will wait for a sequence (not those about to take a free one)."""
        return max(0, len(self._waiting) - (self.slots - len(self._active)))

    @property
    def active(self) -> int:
        return len(self._active)

    def close(self, timeout: float = 10) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout)
        for job in [*self._waiting, *self._active]:
            job.deliver(Event(error=EdgeAIError("the server is shutting down")))

    # -- the loop (the batcher's thread) -------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                self._drop_cancelled()
                while not self._closing and not self._waiting and not self._active:
                    self._cv.wait()
                    self._drop_cancelled()
                if self._closing:
                    return
                if self.batched:
                    job = self._admit()  # a job to serve alone, once nothing else runs
                else:
                    job = self._waiting.popleft() if self._waiting else None
            try:
                if job is not None:
                    self._serve_alone(job)
                    if self.batched:
                        self._forget_stream_seq()
                elif self.batched and self._active:
                    self._step()
            except Exception as exc:  # a bug must not stop the server: its jobs fail, it goes on
                for failed in list(self._active):
                    self._fail(failed, exc)

    def _drop_cancelled(self) -> None:
        self._waiting = deque(j for j in self._waiting if not j.cancelled)
        for job in [j for j in self._active if j.cancelled]:
            self._active.remove(job)  # its sequence is free; what it holds stays reusable

    def _admit(self) -> Job | None:
        """Waiting jobs into free sequences, first come first served; each to the free sequence
        holding the longest prefix of its prompt (ties: the one idle longest). A job to be
        served alone is returned once nothing runs; until then it and the jobs behind it wait."""
        while self._waiting and len(self._active) < self.slots:
            if self._waiting[0].alone:
                return None if self._active else self._waiting.popleft()
            job = self._waiting.popleft()
            busy = {j.seq for j in self._active}
            free = [s for s in range(self.slots) if s not in busy]
            tokens = job.plan.tokens
            seq = max(free, key=lambda s: (common_prefix(self._held[s], tokens[:-1]), -self._used[s]))
            keep = common_prefix(self._held[seq], tokens[:-1])  # the last is evaluated: fresh logits
            if job.params.seed is not None:
                # a seeded request starts from a clean sequence, so the same seed gives the same
                # text: a reused prefix leaves logits that differ in the last bits (llama.cpp's
                # one-token and batched kernels round differently), enough to change a draw
                keep = 0
            self.backend.truncate(seq, keep)
            keep = self.backend.seq_length(seq)  # 0 where the memory could not drop a tail
            del self._held[seq][keep:]
            job.seq, job.todo = seq, list(tokens[keep:])
            job.reply = Reply(job.plan, job.params, eos=self.backend.end_tokens,
                              detokenizer=self.backend.detokenizer())
            if self.drafting and job.params.response_format is None:  # a grammar cannot be rewound
                job.drafter, job.history = self.backend.drafter(), list(tokens)
            self._active.append(job)
        return None

    def _forget_stream_seq(self) -> None:
        """After a job served through `stream`: what its sequence holds is not known here, so no
        prefix of it is reused (the next job there truncates it to nothing)."""
        seq = getattr(self.backend, "stream_seq", None)
        for s in range(self.slots) if seq is None else (seq,):
            self._held[s] = [_UNKNOWN] * self.backend.seq_length(s)
            self._used[s] = time.perf_counter()

    def _step(self) -> None:
        """One model call: a token for every decoding sequence, prompt tokens for the others."""
        inputs: list[SeqInput] = []
        jobs: list[Job] = []
        reading = [j for j in self._active if j.token is None and j.todo]
        solo = len(self._active) == 1 and not reading and not self._waiting
        drafts: list[int] = []
        for job in self._active:
            if job.token is not None:
                drafts = self._drafts(job) if solo and job.drafter is not None else []
                inputs.append(SeqInput(job.seq, [job.token, *drafts], range(len(drafts) + 1)))
                jobs.append(job)
        for job, size in self._prefill_shares(reading):
            part = job.todo[:size]
            inputs.append(SeqInput(job.seq, part, (-1,) if len(part) == len(job.todo) else ()))
            jobs.append(job)
        if not inputs:
            return
        start = time.perf_counter()
        try:
            rows = self.backend.evaluate(inputs)
        except Exception as exc:  # the whole call failed: its jobs fail, their sequences reset
            for job in jobs:
                self._fail(job, exc)
            return
        self._on_step(len(inputs))
        now = time.perf_counter()
        if solo and self._policy is not None:
            self._policy.timed(len(inputs[0].tokens), now - start)
        for job, item, row in zip(jobs, inputs, rows, strict=True):
            base = len(self._held[job.seq])
            self._held[job.seq].extend(item.tokens)
            self._used[job.seq] = now
            if job.token is not None:
                job.token = None
                if len(item.tokens) > 1:
                    self._verify(job, row, list(item.tokens[1:]), base)
                    continue
            else:
                del job.todo[:len(item.tokens)]
            if len(row):
                self._next_token(job, row[0])

    def _drafts(self, job: Job) -> list[int]:
        """This step's drafts for the one decoding job (none where they do not pay)."""
        room = job.plan.budget - job.reply.count  # a verify emits at most k + 1 tokens
        want = min(self._policy.want(job.drafter.context), room - 1)
        if want <= 0:
            return []
        start = time.perf_counter()
        guess = job.drafter.draft(job.history, want)
        self._policy.drafting(min(want, len(guess) + 1), time.perf_counter() - start)
        return self._policy.take(guess, job.drafter.context)

    def _verify(self, job: Job, rows, drafts: list[int], base: int) -> None:
        """Accept the drafts while the job's sampler picks them; its first other pick (or the
        bonus after them all) is the next token; the rejected positions leave the sequence."""
        accepted = 0
        for i, row in enumerate(rows):
            self._next_token(job, row)
            if job not in self._active:  # finished (or failed): nothing more to take
                break
            if i == len(drafts) or job.token != drafts[i]:
                break
            accepted += 1
            job.token = None
        job.drafted += len(drafts)
        job.accepted += accepted
        self._policy.result(job.drafter.context, len(drafts), accepted)
        keep = base + 1 + accepted
        if len(self._held[job.seq]) > keep:  # finished or not, the cache holds what was accepted
            self.backend.truncate(job.seq, keep)
            del self._held[job.seq][keep:]

    def _prefill_shares(self, reading: list[Job]) -> list[tuple[Job, int]]:
        """This step's prompt tokens per job: `prefill_step` in all, shortest prompt first (a
        short request is not kept waiting behind a long document), the oldest job always
        getting some (it cannot be starved by a stream of short ones)."""
        room, shares = self.prefill_step, {}
        if reading:
            oldest = reading[0]
            shares[id(oldest)] = min(len(oldest.todo), max(room // 4, 1))
            room -= shares[id(oldest)]
        for job in sorted(reading, key=lambda j: len(j.todo)):
            take = min(len(job.todo) - shares.get(id(job), 0), room)
            if take > 0:
                shares[id(job)] = shares.get(id(job), 0) + take
                room -= take
        return [(job, shares[id(job)]) for job in reading if shares.get(id(job))]

    def _next_token(self, job: Job, row) -> None:
        try:
            token = job.sampler.sample_row(row)
        except Exception as exc:
            self._fail(job, exc)
            return
        if job.logprobs is not None:
            job.pending_logprobs.append(self._logprob(row, token, job.logprobs))
        chunk = job.reply.accept(token)
        job.history.append(token)
        if chunk is not None:
            job.deliver(Event(chunk, self._take_logprobs(job)))
        if job.reply.done:
            self._finish(job)
        else:
            job.token = token

    def _finish(self, job: Job) -> None:
        final = job.reply.final()
        if job.drafter is not None:
            final = replace(final, drafted=job.drafted, accepted=job.accepted)
        job.deliver(Event(final, self._take_logprobs(job)))
        self._close(job)
        self._on_done(job, final)

    def _fail(self, job: Job, exc: BaseException) -> None:
        self.backend.truncate(job.seq, 0)
        self._held[job.seq].clear()
        job.deliver(Event(error=exc))
        self._close(job)

    def _close(self, job: Job) -> None:
        with self._cv:
            if job in self._active:
                self._active.remove(job)
        if job.sampler is not None:
            job.sampler.close()

    @staticmethod
    def _take_logprobs(job: Job) -> tuple[TokenLogprob, ...]:
        out, job.pending_logprobs = tuple(job.pending_logprobs), []
        return out

    def _logprob(self, row, token: int, top: int) -> TokenLogprob:
        """The model's own log-probability of the token (before sampling's temperature and
        cut-offs, as OpenAI reports it) and its `top` most likely alternatives."""
        import numpy as np

        row = row.astype(np.float64)
        peak = row.max()
        log_total = peak + math.log(np.exp(row - peak).sum())
        text = self.backend.detokenize
        alternatives = ()
        if top:
            best = np.argpartition(-row, top)[:top]
            best = best[np.argsort(-row[best])]
            alternatives = tuple((text([int(t)]), float(row[t] - log_total)) for t in best)
        return TokenLogprob(text([token]), float(row[token] - log_total), alternatives)

    def _serve_alone(self, job: Job) -> None:
        """A backend without the batched step: the job's whole reply through `stream`."""
        with self._cv:
            self._active.append(job)
        stream = None
        try:
            stream = self.backend.stream(job.prompt, job.params)
            for chunk in stream:
                if job.cancelled:
                    break
                if chunk.text or chunk.reasoning or chunk.finish_reason:
                    job.deliver(Event(chunk))
                if chunk.finish_reason:
                    self._on_done(job, chunk)
        except Exception as exc:
            job.deliver(Event(error=exc))
        finally:
            if stream is not None:
                stream.close()
            with self._cv:
                self._active.remove(job)
