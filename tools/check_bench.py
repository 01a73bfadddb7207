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


def check(path: str) -> int:
    with open(path) as f:
        data = json.load(f)
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    for b in data.get("benchmarks", []):
        groups[b.get("group") or b["name"]][b.get("extra_info", {}).get("impl")] = b
    failures = 0
    for group, impls in sorted(groups.items()):
        ours = impls.get("nba")
        if ours is None:
            continue
        med = ours["stats"]["median"]
        print(f"{group}: nba median {med * 1e6:.2f} us")
        for impl, b in sorted(impls.items(), key=lambda kv: str(kv[0])):
            info = b.get("extra_info", {})
            if "p99_us" in info:  # per-call latency benchmarks record their own percentiles
                print(f"    {impl} per call: p50 {info['p50_us']:.2f} us, p99 {info['p99_us']:.2f} us")
        for ref, floor in sorted(ours.get("extra_info", {}).get("floors", {}).items()):
            other = impls.get(ref)
            if other is None:
                print(f"    vs {ref}: not run (reference unavailable), floor {floor}x not checked")
                continue
            ratio = other["stats"]["median"] / med
            ok = ratio >= floor
            failures += not ok
            print(f"    vs {ref}: {ratio:.1f}x (floor {floor}x) {'ok' if ok else 'BELOW FLOOR'}")
    if failures:
        print(f"{failures} ratio(s) below floor", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(check(sys.argv[1] if len(sys.argv) > 1 else "bench-results/benchmarks.json"))
