"""A brute-force oracle of nba.profiles.triggers: the rules replayed by event time, from the whole history.

It keeps every event it was shown and, for each claim, recomputes each profile's and
trigger's state from scratch by walking that history in arrival order with the claims
made so far as barriers, using full lists (every cancelling ts seen, not the latest
only). Written from the module docstring of ``nba.profiles.triggers``, not from its
code; slow (quadratic) on purpose.
"""

from __future__ import annotations

from typing import Any

from nba.profiles import Absence, Event, OnEvent


class Oracle:
    def __init__(self, rules: list[Any]) -> None:
        self.rules = rules
        # The history, in arrival order: ("event", key, Event), ("claim", now), ("merge", master, others).
        self.history: list[tuple[Any, ...]] = []

    def observe(self, key: str, event: Event) -> None:
        self.history.append(("event", key, event))

    def merge(self, master: str, others: list[str]) -> None:
        self.history.append(("merge", master, [k for k in others if k != master]))

    def forget(self, keys: list[str]) -> None:
        self.history.append(("forget", list(keys)))

    def due(self, now: float) -> set[tuple[str, str, float, float]]:
        self.history.append(("claim", now))
        return self._replay()[-1]

    def pending(self) -> dict[tuple[str, str], tuple[float, float]]:
        states = self._states()
        return {k: (s["due"], s["cause"]) for k, s in states.items() if s["due"] is not None}

    # -- the replay

    def _replay(self) -> list[set[tuple[str, str, float, float]]]:
        out: list[set[tuple[str, str, float, float]]] = []
        self._states(out)
        return out

    def _states(self, claims: list[set[tuple[str, str, float, float]]] | None = None) -> dict[tuple[str, str], dict]:
        states: dict[tuple[str, str], dict] = {}

        def get(key: str, name: str) -> dict:
            return states.setdefault((key, name), {"due": None, "cause": None, "fired": None, "misses": []})

        for item in self.history:
            if item[0] == "event":
                _, key, ev = item
                for r in self.rules:
                    self._event(r, get(key, r.name), ev)
            elif item[0] == "claim":
                now = item[1]
                got = set()
                for (key, name), s in states.items():
                    if s["due"] is not None and s["due"] <= now:
                        got.add((key, name, s["due"], s["cause"]))
                        s["fired"], s["due"], s["cause"] = s["due"], None, None
                if claims is not None:
                    claims.append(got)
            elif item[0] == "merge":
                _, master, others = item
                for r in self.rules:
                    group = [states.pop((k, r.name)) for k in [master, *others] if (k, r.name) in states]
                    if not group:
                        continue
                    pend = [s for s in group if s["due"] is not None]
                    first = min(pend, key=lambda s: s["due"]) if pend else None
                    fired = [s["fired"] for s in group if s["fired"] is not None]
                    misses = sorted(m for s in group for m in s["misses"])
                    m = {"due": first["due"] if first else None, "cause": first["cause"] if first else None,
                         "fired": max(fired) if fired else None, "misses": misses[-1:]}
                    if m["due"] is not None and m["fired"] is not None:
                        m["due"] = max(m["due"], m["fired"] + r.cooldown)
                    states[(master, r.name)] = m
            else:
                for k in item[1]:
                    for r in self.rules:
                        states.pop((k, r.name), None)
        return states

    @staticmethod
    def _event(r: Any, s: dict, ev: Event) -> None:
        fired = s["fired"]

        def cooled(n: float) -> float:
            return n if fired is None else max(n, fired + r.cooldown)

        if isinstance(r, OnEvent):
            if ev.type != r.event or (r.channel is not None and ev.channel != r.channel):
                return
            if any(k not in ev.properties or ev.properties[k] != v for k, v in r.where.items()):
                return
            n = ev.ts + r.delay
            if fired is not None and n < fired:
                return  # belongs before the last firing
            d = cooled(n)
            if s["due"] is None or d < s["due"]:
                s["due"], s["cause"] = d, ev.ts
            return
        assert isinstance(r, Absence)
        if fired is not None and ev.ts < fired:
            return
        if ev.type in (r.missing, r.cancel):
            if s["due"] is not None and s["cause"] <= ev.ts < s["due"]:
                s["due"] = s["cause"] = None
            s["misses"].append(ev.ts)
        if ev.type == r.after:
            a = ev.ts
            d = cooled(a + r.within)
            # Every cancelling ts seen so far, not only the latest: exact when arrivals are in time order.
            cancelled = any(a < m < d for m in s["misses"])
            if s["due"] is None:
                if not cancelled:
                    s["due"], s["cause"] = d, a
            elif r.restart:
                if s["cause"] < a < s["due"]:
                    if cancelled:
                        s["due"] = s["cause"] = None
                    else:
                        s["due"], s["cause"] = d, a
            elif a < s["cause"] and not cancelled:
                s["due"], s["cause"] = d, a
