"""Per-call latency percentiles, shared by the benchmark suites.

pytest-benchmark times rounds of many iterations, which hides the tail; this
times single calls with one ``perf_counter_ns`` pair each (about 0.1 us of timer
overhead, the same for every implementation) and records p50/p99/p99.9/max in
``extra_info`` beside ``impl``, so ``tools/check_bench.py`` and the terminal
summary report them next to the ratios.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np


def record_latency(
    benchmark, group: str, impl: str, calls: Sequence[Callable[[], object]], n_calls: int, *, warmup: int = 50
) -> None:
    """Time ``n_calls`` single calls cycling over ``calls``, after ``warmup`` untimed ones."""

    def loop() -> np.ndarray:
        ns = np.empty(n_calls, dtype=np.int64)
        clock = time.perf_counter_ns
        k = len(calls)
        for i in range(n_calls):
            f = calls[i % k]
            t0 = clock()
            f()
            ns[i] = clock() - t0
        return ns

    for f in calls[:warmup]:  # warm caches and lazy initialisation outside the measurement
        f()
    benchmark.group = group
    us = benchmark.pedantic(loop, rounds=1, iterations=1) / 1e3
    benchmark.extra_info.update(
        impl=impl,
        calls=n_calls,
        p50_us=float(np.percentile(us, 50)),
        p99_us=float(np.percentile(us, 99)),
        p999_us=float(np.percentile(us, 99.9)),
        max_us=float(us.max()),
    )
