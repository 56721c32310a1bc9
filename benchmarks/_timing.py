"""Shared helper of the benchmark scripts: interleaved medians of several callables."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from lossgraph.bench import time_interleaved


def medians(calls: Mapping[str, Callable[[], Any]], repeat: int = 5) -> dict[str, float]:
    """Median seconds per callable (one warm-up round, then ``repeat`` interleaved rounds)."""
    return {k: t.median_s for k, (t, _) in time_interleaved(calls, repeat, lambda: None).items()}
