"""Process memory figures for Chunk stats and the bench."""

from __future__ import annotations

import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def peak_rss_mb() -> float | None:
    """The process's peak resident set size in MB (None where the platform cannot tell).

    On Linux this is VmHWM, the peak of the current address space: ru_maxrss would carry over
    the parent's peak through fork + exec, so a bench child started by a parent that had just
    touched a large buffer would report the parent's memory as its own."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024  # bytes vs KiB
