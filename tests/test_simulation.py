"""The demo's simulated market: reproducible, probabilities in (0, 1), the planted drift."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nba.simulation import CHANNELS, OFFERS, Market, Rewards


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 200))
def test_visits_are_ordered_reproducible_and_probabilities_proper(seed, n):
    a, b = Market(50, seed=seed), Market(50, seed=seed)
    va = list(a.visits(n, start=a.start, end=a.start + 86400))
    assert va == list(b.visits(n, start=b.start, end=b.start + 86400))
    assert all(x.ts <= y.ts for x, y in zip(va, va[1:]))
    for v in va:
        p = a.expected(v)
        assert p.shape == (len(OFFERS),) and np.all((p > 0) & (p < 1)) and v.channel in CHANNELS


def test_students_switch_from_cashback_to_travel_after_the_drift():
    m = Market(2000, seed=4, drift_at=0.5)
    students = np.flatnonzero(m.segment == 0)[:200]
    from nba.simulation import Visit

    before = np.mean([m.expected(Visit(int(c), "web", m.drift_ts - 1)) for c in students], axis=0)
    after = np.mean([m.expected(Visit(int(c), "web", m.drift_ts)) for c in students], axis=0)
    assert OFFERS[int(np.argmax(before))] == "cashback_card" and OFFERS[int(np.argmax(after))] == "travel_card"


def test_rewards_arrive_in_time_order_and_only_when_due():
    r = Rewards()
    for ts, e in [(5.0, "b"), (1.0, "a"), (9.0, "c")]:
        r.add(ts, e)
    assert list(r.due(6.0)) == [(1.0, "a"), (5.0, "b")] and len(r) == 1
    assert list(r.due(8.9)) == [] and list(r.due(9.0)) == [(9.0, "c")]
