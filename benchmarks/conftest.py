"""Benchmark conventions shared by every suite in ``benchmarks/``.

Each benchmark records which implementation it times in
``benchmark.extra_info["impl"]`` ("nba", "lightgbm", "lleaves", "vw-text", ...)
and puts nba beside its references in one ``benchmark.group``. The nba side also
declares ``benchmark.extra_info["floors"] = {"lightgbm": 5.0, ...}``: the smallest
acceptable ratio reference_median / nba_median. ``tools/check_bench.py`` fails CI
only on those ratios, never on an absolute time. Both it and the terminal summary
print the one report of ``benchmarks/ratios.py``.
"""

from __future__ import annotations

from collections import defaultdict

from benchmarks.ratios import report


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups: dict = defaultdict(dict)
    for bench in session.benchmarks:
        if not bench.has_error and bench.stats:
            groups[bench.group][bench.extra_info.get("impl")] = (bench.stats.median, bench.extra_info)
    terminalreporter.section("nba ratios (reference median / nba median; higher is better)")
    for line in report(groups)[0]:
        terminalreporter.write_line(line)
