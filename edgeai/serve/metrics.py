"""The server's Prometheus metrics (`/metrics`): requests, queue depth, batch size, TTFT, tok/s.

Boundary: counters and histograms on one registry per server (prometheus_client), fed by the
routes and the batcher; nothing here knows HTTP beyond a route name and a status code.
"""

from __future__ import annotations

from collections.abc import Callable

from edgeai.types import Chunk

BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
TPS_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 200, 500)


class Metrics:
    def __init__(self, queue_depth: Callable[[], int], active: Callable[[], int]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("edgeai_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=r)
        queue = Gauge("edgeai_queue_depth", "requests waiting for a sequence", registry=r)
        queue.set_function(lambda: queue_depth())
        busy = Gauge("edgeai_active_sequences", "sequences generating or reading a prompt", registry=r)
        busy.set_function(lambda: active())
        self.batch = Histogram("edgeai_batch_size", "sequences evaluated per model call",
                               buckets=BATCH_BUCKETS, registry=r)
        self.ttft = Histogram("edgeai_ttft_seconds", "time from a request's arrival to its first token",
                              buckets=TTFT_BUCKETS, registry=r)
        self.tps = Histogram("edgeai_decode_tokens_per_second", "one reply's decode speed",
                             buckets=TPS_BUCKETS, registry=r)
        self.prompt_tokens = Counter("edgeai_prompt_tokens", "prompt tokens read", registry=r)
        self.completion_tokens = Counter("edgeai_completion_tokens", "tokens generated", registry=r)

    def finished(self, final: Chunk) -> None:
        """A reply's token counts and decode speed (its TTFT is observed by the route, from the
        request's arrival: the wait for a sequence counts)."""
        self.prompt_tokens.inc(final.prompt_tokens or 0)
        self.completion_tokens.inc(final.completion_tokens or 0)
        if final.gen_tps:
            self.tps.observe(final.gen_tps)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
