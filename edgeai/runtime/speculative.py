"""Speculative decoding on one sequence of a `BatchedStep`, and what `--draft` means.

Boundary: this module owns the round (draft, verify, accept, truncate) and the draft length
policy; the guesses come from `runtime/drafts.py`, the token bookkeeping (EOS, budget, stops,
detokenizing, the final chunk) from `decode.Reply`, the model from the backend's batched step.

A round: the last sampled token plus k drafted ids go into ONE `evaluate`, logits at those k+1
positions only. The target's own sampler chain (`sample_row`: penalties, grammar-free filters,
temperature, the seeded draw) runs on the rows in order; a draft is accepted while the sampled
token equals it; the first mismatch emits the target's token; when all k are accepted, the last
row gives a bonus token. Rejected positions are dropped with `truncate`.

Why this keeps the target's distribution: a draft is deterministic, so it is a proposal q that
is one-hot on d. Standard rejection sampling accepts d with min(1, p(d)/q(d)) = p(d) and
otherwise draws from the residual norm(max(0, p - q)) = p without d. Drawing t ~ p and accepting
iff t == d does exactly that: P(accept) = p(d), and given t != d, t is distributed as p without
d. Each emitted token is one draw from the chain on its row, so the seeded RNG advances exactly
as in plain decoding and the penalties see the same tokens; greedy output is plain decoding's
output — up to the batched-vs-single logit rounding of the engine (a k-token call sums in
another order than a one-token call), which can flip a greedy choice only at a near-tie.

Where drafting pays: a k-token verify costs nearly k single steps on a small CPU, so the policy
(`DraftPolicy`) measures what a verify of each size costs as it goes, estimates the acceptance
per drafter context (decayed counts), and drafts the k that maximizes expected tokens per second,
only when that beats a plain step; otherwise it backs off and probes again later. The length
also adapts: it grows after a fully accepted round and shrinks to what was accepted after a
rejection. Grammar-constrained replies do not draft (a grammar sampler cannot be rewound after a
rejected token's accept, and constrained text rarely repeats the prompt).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterator
from dataclasses import replace

from edgeai.errors import BadInput
from edgeai.memory import peak_rss_mb
from edgeai.runtime.decode import BatchedStep, Detokenizer, PromptPlan, Reply, SeqInput, steps
from edgeai.types import Chunk, GenParams

DRAFT_MAX = 16  # llama-server's --draft-max default
DRAFT_MIN = 0  # llama-server's --draft-min default: any draft is worth verifying
PRIOR_COST = 0.45  # a verify of n ids costs 1 + 0.45(n-1) single steps until measured (this CPU's
#                    shape: 1 -> 35.6 ms, 4 -> 89, 11 -> 197); a GPU measures ~flat and drafts more
PRIOR_ACCEPT = (3.0, 1.0)  # pseudo-counts (accepted, rejected): start optimistic, learn fast
DECAY = 0.8  # per round: acceptance tracks the current part of the reply (a quote, then prose)
PROBE_EVERY = 24  # plain steps between probes while drafting does not pay
MARGIN = 1.05  # a k must beat a plain step by this much (the drafting's own overhead)


# -- what --draft means --------------------------------------------------------------------
def resolve_draft(value: str | None, home, model: str) -> str:
    """`--draft` -> "off", "ngram" or a draft model id. `auto` (the default) is what `doctor
    --tune` measured and saved for `model` (edgeai/tuned.py): on only where it won."""
    value = (value or "auto").strip()
    if value != "auto":
        return value or "off"
    from edgeai.tuned import model_tuning

    tuning = model_tuning(home, model) if model else None
    if tuning is None or not tuning.draft or tuning.draft == "off":
        return "off"
    if tuning.draft_speedup is not None and tuning.draft_speedup <= 1.0:
        return "off"  # measured, and it did not win
    return tuning.draft


def switch_draft(settings, model: str, backend, value: str) -> str:
    """The chat's `/draft ngram|off|auto|MODEL` on a loaded backend (between replies, under the
    model's lock): the line to show. A backend without the batched step refuses an explicit
    drafter, as `--draft` does."""
    from edgeai.runtime.base import Drafting
    from edgeai.runtime.loader import draft_options

    chosen = draft_options(settings, model, backend, value or "auto")  # checks, resolves auto
    if not isinstance(backend, Drafting):
        return f"drafting is off: the {backend.name} backend decodes one token at a time"
    backend.set_draft(chosen["draft"], chosen["draft_path"])
    if chosen["draft"] == "off":
        return "drafting is off" + (" (auto: nothing measured a win here)" if value == "auto" else "")
    return f"drafting with {chosen['draft']}: the model verifies the drafts, the output is unchanged"


def draft_note(stats: dict) -> str | None:
    """'drafts 42/57 accepted (74%)' for a reply's statistics; None where nothing was drafted."""
    drafted, accepted = stats.get("drafted") or 0, stats.get("accepted") or 0
    if not drafted:
        return None
    return f"drafts {accepted}/{drafted} accepted ({accepted / drafted:.0%})"


def check_draft_lengths(draft_max: int, draft_min: int) -> None:
    if draft_max < 1 or draft_min < 0 or draft_min > draft_max:
        raise BadInput("--draft-max must be at least 1 and --draft-min between 0 and --draft-max")


# -- the policy ----------------------------------------------------------------------------
class DraftPolicy:
    """How many ids to draft this round: the adaptive length, capped by what pays."""

    def __init__(self, draft_max: int = DRAFT_MAX, draft_min: int = DRAFT_MIN, *,
                 costs: dict[int, float] | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        check_draft_lengths(draft_max, draft_min)
        self.draft_max, self.draft_min, self.clock = draft_max, draft_min, clock
        self.length = min(draft_max, 4)  # the adaptive length: where it starts
        self._cost = {} if costs is None else costs  # ids evaluated -> seconds (EMA; a backend's
        # dict carries them from one reply to the next)
        self._counts: dict[int, list[float]] = {}  # drafter context -> [accepted, rejected], decayed
        self._plain = 0  # plain steps since drafting last paid
        self._per_draft = 0.0  # seconds the drafter takes per id (EMA; ~0 for a lookup)
        self.drafted = self.accepted = 0

    # estimates
    def cost(self, n: int) -> float:
        """Seconds a call evaluating `n` ids takes: measured, else interpolated between measured
        sizes, else extrapolated along the measured slope (the prior's before any verify)."""
        if n in self._cost:
            return self._cost[n]
        if not self._cost:
            return 1 + PRIOR_COST * (n - 1)
        first = min(self._cost)
        one = self._cost.get(1, self._cost[first] / (1 + PRIOR_COST * (first - 1)))
        points = [(1, one)] + sorted((m, c) for m, c in self._cost.items() if m > 1)
        below = max(p for p in points if p[0] < n)
        above = [p for p in points if p[0] > n]
        if above:
            (m0, c0), (m1, c1) = below, above[0]
            return c0 + (c1 - c0) * (n - m0) / (m1 - m0)
        slope = one * PRIOR_COST if below[0] == 1 else max(0.0, (below[1] - one) / (below[0] - 1))
        return below[1] + slope * (n - below[0])

    def accept_rate(self, context: int) -> float:
        acc, rej = self._counts.get(context, (0.0, 0.0))
        return (acc + PRIOR_ACCEPT[0]) / (acc + rej + sum(PRIOR_ACCEPT))

    def best(self, context: int) -> int:
        """The draft length with the most expected tokens per second (0: a plain step wins)."""
        p = min(self.accept_rate(context), 0.999)
        plain = 1.0 / self.cost(1)
        best, best_rate = 0, plain * MARGIN
        for k in range(max(1, self.draft_min), self.draft_max + 1):
            expected = (1 - p ** (k + 1)) / (1 - p)  # accepted drafts + the target's own token
            rate = expected / (self.cost(k + 1) + k * self._per_draft)
            if rate > best_rate:
                best, best_rate = k, rate
        return best

    def want(self, context: int) -> int:
        """Ids to ask the drafter for this round. A drafter that costs real time (a model) is
        not asked where its last context's drafts do not pay (`context`: its last guess's kind);
        a lookup is free to ask, and only its guess tells its context."""
        if 1 not in self._cost:  # a plain step first: what drafting must beat
            return 0
        if self._per_draft > 0.05 * self.cost(1):  # each drafted id costs: only as many as pay
            best = self.best(context)
            if best == 0:
                return min(self.length, 2) if self._backed_off() else 0
            return min(self.length, best)
        return self.length

    def take(self, drafts: list[int], context: int) -> list[int]:
        """The part of a drafter's guess worth verifying: none where drafting does not pay (a
        probe every PROBE_EVERY plain steps keeps the estimate current), none below --draft-min."""
        if not drafts or 1 not in self._cost:
            return []
        k = min(len(drafts), self.length, self.best(context))
        if k == 0:
            if not self._backed_off():
                return []
            k = min(len(drafts), 2)
        if k < max(1, self.draft_min):
            return []
        return drafts[:k]

    def _backed_off(self) -> bool:
        """One more plain step where drafting does not pay; True when it is time for a probe."""
        self._plain += 1
        if self._plain < PROBE_EVERY:
            return False
        self._plain = 0
        return True

    # observations
    def timed(self, n: int, seconds: float) -> None:
        old = self._cost.get(n)
        self._cost[n] = seconds if old is None else 0.7 * old + 0.3 * seconds

    def drafting(self, n: int, seconds: float) -> None:
        if n:
            self._per_draft = 0.7 * self._per_draft + 0.3 * seconds / n if self._per_draft else seconds / n

    def result(self, context: int, drafted: int, accepted: int) -> None:
        if not drafted:
            return
        self.drafted += drafted
        self.accepted += accepted
        counts = self._counts.setdefault(context, [0.0, 0.0])
        counts[0] = counts[0] * DECAY + accepted
        counts[1] = counts[1] * DECAY + (accepted < drafted)
        if accepted == drafted:
            self.length = min(self.draft_max, self.length + 2)
            self._plain = 0
        else:
            self.length = max(max(1, self.draft_min), accepted + 1)


# -- the loop ------------------------------------------------------------------------------
def speculate(target: BatchedStep, seq: int, plan: PromptPlan, params: GenParams, drafter, *,
              policy: DraftPolicy, keep: int = 0, eos: Container[int], detokenizer: Detokenizer,
              sampler=None, peak_mem: Callable[[], float | None] = peak_rss_mb,
              on_close: Callable[[], None] = lambda: None) -> Iterator[Chunk]:
    """Stream one reply of `target`'s sequence `seq` with drafts from `drafter`: empty chunks
    during the prefill (stop points), text chunks as tokens are accepted, then the final chunk
    with `drafted` and `accepted`. `keep`: prompt positions the sequence already holds."""
    reply = Reply(plan, params, eos=eos, detokenizer=detokenizer)
    sampler = sampler or target.sampler(params, params.seed)
    clock = policy.clock
    tokens = plan.tokens
    try:
        target.truncate(seq, min(keep, len(tokens) - 1))  # the last prompt id gives fresh logits
        keep = target.seq_length(seq)
        rows = None
        for part in steps(tokens[keep:], target.prefill_step):
            rows = target.evaluate([SeqInput(seq, part)])[0]
            yield Chunk()  # a point where a closed stream stops the prefill
        history = list(tokens)
        token = sampler.sample_row(rows[-1])
        chunk = reply.accept(token)
        if chunk is not None:
            yield chunk
        while not reply.done:
            history.append(token)
            room = plan.budget - reply.count  # tokens still to emit: a round emits at most k + 1
            drafts = []
            if room > 1:
                start = clock()
                want = min(policy.want(drafter.context), room - 1)
                guess = drafter.draft(history, want) if want > 0 else []
                if want > 0:  # forward passes: the ids drafted, +1 where it stopped early (p_min)
                    policy.drafting(min(want, len(guess) + 1), clock() - start)
                drafts = policy.take(guess, drafter.context)
            base = target.seq_length(seq)
            start = clock()
            rows = target.evaluate([SeqInput(seq, [token, *drafts], logits_at=range(len(drafts) + 1))])[0]
            policy.timed(len(drafts) + 1, clock() - start)
            accepted = 0
            for i, row in enumerate(rows):
                token = sampler.sample_row(row)
                chunk = reply.accept(token)
                if chunk is not None:
                    yield chunk
                if reply.done or i == len(drafts) or token != drafts[i]:
                    break
                accepted += 1
                history.append(token)
            policy.result(drafter.context, len(drafts), accepted)
            target.truncate(seq, base + 1 + accepted)  # the rejected drafts leave the cache
    finally:
        on_close()
    final = reply.final(peak_mem())
    yield replace(final, drafted=policy.drafted, accepted=policy.accepted)
