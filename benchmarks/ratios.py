"""The one ratio report: every nba benchmark's median against each reference in its group.

A group holds nba (``extra_info["impl"] == "nba"``) beside its references; nba's
``extra_info["floors"]`` maps a reference to the smallest acceptable ratio
reference_median / nba_median. Used by the benchmark suite's terminal summary
(``benchmarks/conftest.py``) and by CI's check (``tools/check_bench.py``), which fails
only on a ratio below its floor, never on an absolute time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: {group: {impl: (median seconds, extra_info)}}
Groups = Mapping[str, Mapping[Any, tuple[float, Mapping[str, Any]]]]


def report(groups: Groups) -> tuple[list[str], int]:
    """The report's lines, and how many ratios fell below their floor."""
    lines: list[str] = []
    failures = 0
    for group, impls in sorted(groups.items(), key=lambda kv: str(kv[0])):
        ours = impls.get("nba")
        if ours is None:
            continue
        med, info = ours
        floors = info.get("floors", {})
        lines.append(f"{group}: nba median {med * 1e6:.2f} us")
        for impl, (_, extra) in sorted(impls.items(), key=lambda kv: str(kv[0])):
            if "p99_us" in extra:  # per-call latency benchmarks record their own percentiles
                lines.append(f"    {impl} per call: p50 {extra['p50_us']:.2f} us, p99 {extra['p99_us']:.2f} us")
        for impl in sorted(set(impls) - {"nba"} | set(floors), key=str):
            floor = floors.get(impl)
            if impl not in impls:
                lines.append(f"    vs {impl}: not run (reference unavailable), floor {floor}x not checked")
                continue
            ratio = impls[impl][0] / med
            verdict = ""
            if floor is not None:
                ok = ratio >= floor
                failures += not ok
                verdict = f" (floor {floor}x) {'ok' if ok else 'BELOW FLOOR'}"
            lines.append(f"    vs {impl}: {impls[impl][0] * 1e6:.2f} us -> {ratio:.1f}x{verdict}")
    return lines, failures
