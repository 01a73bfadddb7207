"""Each feature recomputed from the full list of events and ``now``, as the docstrings define it.

Deliberately naive: no state, no ring, no incremental decay; every call looks at
every event. The incremental definitions in ``nba.profiles.features`` must agree.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from nba.profiles import Count, Decayed, DistinctChannels, Event, FirstSeen, LastValue, Recency, Sum


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _scalar(x: Any) -> bool:
    return isinstance(x, (str, int, bool)) or (isinstance(x, float) and math.isfinite(x))


def _where_ok(where: dict | None, props: dict) -> bool:
    for k, v in (where or {}).items():
        if k not in props:
            return False
        x = props[k]
        if x is None or x != v or isinstance(x, bool) != isinstance(v, bool):
            return False
    return True


def matching(defn, events: list[Event]) -> list[tuple[Event, float]]:
    """The events ``defn`` reads, each with its weight (1, or the numeric property)."""
    out = []
    for e in events:
        if defn.event is not None and e.type != defn.event:
            continue
        if not _where_ok(getattr(defn, "where", None), e.properties):
            continue
        prop = getattr(defn, "prop", None)
        if isinstance(defn, (Sum, Decayed)) and prop is not None:
            w = _number(e.properties.get(prop))
            if w is None:
                continue
        else:
            w = 1.0
        out.append((e, w))
    return out


def tile(ts: float, bucket: float) -> int:
    return int(ts // bucket)


def oracle_value(defn, events: list[Event], now: float) -> Any:
    m = matching(defn, events)
    if isinstance(defn, (Count, Sum)):
        weights = [1 if isinstance(defn, Count) else w for _, w in m]
        if defn.window is None:
            return sum(weights) if isinstance(defn, Count) else math.fsum(weights)
        n = round(defn.window / defn.bucket)
        head = max((tile(e.ts, defn.bucket) for e, _ in m), default=-1)
        h = tile(now, defn.bucket)
        lo = max(h, head) - n + 1
        kept = [w for (e, _), w in zip(m, weights) if lo <= tile(e.ts, defn.bucket) <= h]
        return sum(kept) if isinstance(defn, Count) else math.fsum(kept)
    if isinstance(defn, Decayed):
        if not m:
            return 0.0
        ref = max(now, max(e.ts for e, _ in m))
        return math.fsum(w * 2.0 ** (-(ref - e.ts) / defn.half_life) for e, w in m)
    if isinstance(defn, Recency):
        if not m:
            return None
        return max(0.0, now - max(e.ts for e, _ in m))
    if isinstance(defn, LastValue):
        cands = [e for e, _ in m if _scalar(e.properties.get(defn.prop))]
        if not cands:
            return None
        best = max(cands, key=lambda e: (e.ts, e.seq, msgspec.msgpack.encode(e.properties[defn.prop])))
        return best.properties[defn.prop]
    if isinstance(defn, DistinctChannels):
        return len({e.channel for e, _ in m})
    if isinstance(defn, FirstSeen):
        return min((e.ts for e, _ in m), default=None)
    raise TypeError(defn)


def tolerance(defn, events: list[Event], now: float) -> float:
    """Absolute tolerance for a float feature: 1e-9 of the sum of |terms| (sums may cancel), at least 1e-300."""
    m = matching(defn, events)
    if isinstance(defn, Decayed) and m:
        ref = max(now, max(e.ts for e, _ in m))
        mag = math.fsum(abs(w) * 2.0 ** (-(ref - e.ts) / defn.half_life) for e, w in m)
    else:
        mag = math.fsum(abs(w) for _, w in m)
    return 1e-9 * mag + 1e-300
