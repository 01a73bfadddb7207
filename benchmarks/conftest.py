"""Benchmark conventions shared by every suite in ``benchmarks/``.

Each benchmark records which implementation it times in
``benchmark.extra_info["impl"]`` ("nba", "lightgbm", "lleaves", "vw-text", ...)
and puts nba beside its references in one ``benchmark.group``. The nba side also
declares ``benchmark.extra_info["floors"] = {"lightgbm": 5.0, ...}``: the smallest
acceptable ratio reference_median / nba_median. ``tools/check_bench.py`` fails CI
only on those ratios, never on an absolute time. The terminal summary prints
every ratio measured in the run.
"""

from __future__ import annotations

from collections import defaultdict


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups = defaultdict(list)
    for bench in session.benchmarks:
        if bench.has_error or not bench.stats:
            continue
        groups[bench.group].append(bench)
    tr = terminalreporter
    tr.section("nba ratios (reference median / nba median; higher is better)")
    for group, benches in sorted(groups.items(), key=lambda kv: str(kv[0])):
        by_impl = {b.extra_info.get("impl"): b for b in benches}
        ours = by_impl.get("nba")
        if ours is None:
            continue
        med = ours.stats.median
        tr.write_line(f"{group}: nba median {med * 1e6:.2f} us")
        for impl, b in sorted(by_impl.items(), key=lambda kv: str(kv[0])):
            if impl == "nba":
                continue
            floor = ours.extra_info.get("floors", {}).get(impl)
            tail = f" (floor {floor}x)" if floor is not None else ""
            tr.write_line(f"    vs {impl}: {b.stats.median * 1e6:.2f} us -> {b.stats.median / med:.1f}x{tail}")
