"""Process memory figures for Chunk stats and the bench."""

from __future__ import annotations

import sys


def peak_rss_mb() -> float | None:
    """The process's peak resident set size in MB (None where the platform cannot tell)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024  # bytes vs KiB
