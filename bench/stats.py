"""Small statistics helpers: percentiles and summaries of pooled latencies."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(latencies: Sequence[float], all_times: Sequence[float]) -> dict:
    """Pooled per-tab latency percentiles and the per-change time-to-all-tabs."""
    return {
        "samples": len(latencies),
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "max": max(latencies) if latencies else math.nan,
        "all_median": statistics.median(all_times) if all_times else math.nan,
        "all_max": max(all_times) if all_times else math.nan,
        "changes": len(all_times),
    }


def ratio(a: float, b: float) -> float:
    if not b or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b
