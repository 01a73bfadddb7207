"""Before/after table of two benchmark runs: each nba ratio against its references.

    python tools/compare_bench.py before.json after.json

Reads pytest-benchmark JSON (``--benchmark-json``) of two checkouts run on the same
machine, and prints per group nba's median in each and, per reference, the ratio
reference_median / nba_median before and after (higher is better for nba) and their
change. Groups or references present in only one run are marked.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any


def _groups(path: str) -> dict[str, dict[Any, float]]:
    with open(path) as f:
        data = json.load(f)
    groups: dict[str, dict[Any, float]] = defaultdict(dict)
    for b in data.get("benchmarks", []):
        groups[b.get("group") or b["name"]][b.get("extra_info", {}).get("impl")] = b["stats"]["median"]
    return groups


def table(before: str, after: str) -> list[str]:
    """The table's lines (markdown)."""
    a, b = _groups(before), _groups(after)
    lines = ["| group | reference | nba median before | after | ratio before | after | change |",
             "|---|---|---|---|---|---|---|"]
    for group in sorted(set(a) | set(b)):
        ga, gb = a.get(group, {}), b.get(group, {})
        na, nb = ga.get("nba"), gb.get("nba")
        if na is None and nb is None:
            continue
        refs = sorted((set(ga) | set(gb)) - {"nba"}, key=str)
        for ref in refs or [None]:
            ra = ga[ref] / na if ref in ga and na else None
            rb = gb[ref] / nb if ref in gb and nb else None
            change = f"{(rb / ra - 1) * 100:+.0f}%" if ra and rb else "only one run"
            lines.append(
                f"| {group} | {ref or '-'} | {_us(na)} | {_us(nb)} | {_x(ra)} | {_x(rb)} | {change if ref else ''} |")
    return lines


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v * 1e6:.2f} us"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print("\n".join(table(sys.argv[1], sys.argv[2])))
