"""Fail CI when an nba benchmark's ratio against a reference falls below its floor.

Reads pytest-benchmark's JSON (``--benchmark-json``). Within each group, the
benchmark whose ``extra_info["impl"] == "nba"`` declares ``floors`` as
``{reference_impl: minimum reference_median / nba_median}``. A reference that did
not run (skipped: not installed) is reported, not failed. Absolute times never fail.
Per-call latency benchmarks that record ``p50_us``/``p99_us`` in ``extra_info`` have
those percentiles printed too.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.ratios import report  # noqa: E402  (the repository root, on the path above)


def check(path: str) -> int:
    with open(path) as f:
        data = json.load(f)
    groups: dict = defaultdict(dict)
    for b in data.get("benchmarks", []):
        info = b.get("extra_info", {})
        groups[b.get("group") or b["name"]][info.get("impl")] = (b["stats"]["median"], info)
    lines, failures = report(groups)
    print("\n".join(lines))
    if failures:
        print(f"{failures} ratio(s) below floor", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(check(sys.argv[1] if len(sys.argv) > 1 else "bench-results/benchmarks.json"))
