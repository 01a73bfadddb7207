"""A simulated market for ``nba demo`` and the tests: customers with hidden preferences.

Each customer has a segment, an age, a tenure and a favourite channel; visits
arrive on web, app, email and the call centre; the chance that a customer takes
an offer depends on all of them through a reward function nba never sees (the
"truth"), and it drifts: from ``drift_at`` (a share of the simulated span) the
students' favourite switches from the cashback card to the travel card. A taken
offer pays its reward after a random delay (a conversion hours later), which the
caller reports with ``Decider.reward(event_id, 1.0, now=...)`` when the clock
passes it.

Everything is drawn from one seed, so a run is reproducible; ``expected`` gives
the true probability of every offer for a visit, so a test can compute any
policy's true value.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

import msgspec
import numpy as np

from nba.errors import ConfigError

__all__ = ["CHANNELS", "OFFERS", "SEGMENTS", "Market", "Visit"]

SEGMENTS = ("student", "family", "senior")
OFFERS = ("cashback_card", "travel_card", "savings_plan", "mortgage_review", "insurance_bundle", "app_tutorial")
CHANNELS = ("web", "app", "email", "call_centre")

# Log-odds of taking each offer (columns) by segment (rows), before age, channel and drift.
_BASE = np.array(
    [
        [-1.6, -3.0, -3.6, -4.6, -3.8, -2.6],  # students: cashback, then the app tutorial
        [-3.2, -2.6, -3.0, -1.9, -2.1, -3.8],  # families: mortgage review, insurance
        [-3.8, -2.9, -1.7, -3.6, -2.5, -4.2],  # seniors: savings plan
    ]
)
# How each channel suits each offer (added log-odds): mortgage talk works on the phone, the app tutorial in the app.
_CHANNEL = np.array(
    [
        [0.0, 0.0, 0.0, -0.4, 0.0, -0.6],  # web
        [0.2, 0.0, -0.2, -0.6, -0.2, 0.9],  # app
        [-0.3, 0.2, 0.1, -0.2, 0.0, -0.8],  # email
        [-0.6, -0.2, 0.3, 0.8, 0.4, -1.2],  # call centre
    ]
)
# Log-odds per decade of age above 40, per offer.
_AGE = np.array([-0.25, 0.05, 0.25, 0.0, 0.15, -0.3])
_DRIFT = np.array([-1.2, 1.5, 0.0, 0.0, 0.0, 0.0])  # students, after the drift: travel replaces cashback


class Visit(msgspec.Struct, frozen=True):
    """One visit: who, on which channel, when (simulated unix seconds)."""

    customer: int
    channel: str
    ts: float


class Market:
    """``customers`` simulated customers visiting ``visits`` times over ``days`` simulated days."""

    def __init__(self, customers: int = 3000, *, days: float = 28.0, drift_at: float = 0.5, seed: int = 0,
                 start: float = 1_767_225_600.0, mean_delay: float = 3 * 3600.0) -> None:
        if customers < 1:
            raise ConfigError(f"customers={customers!r} must be >= 1")
        rng = np.random.default_rng(seed)
        self.n = customers
        self.start = float(start)
        self.span = float(days) * 86400.0
        self.drift_ts = self.start + float(drift_at) * self.span
        self.mean_delay = float(mean_delay)
        self.segment = rng.integers(0, len(SEGMENTS), customers)
        age_mid = np.array([22.0, 40.0, 68.0])[self.segment]
        self.age = np.clip(np.round(age_mid + rng.normal(0, 6, customers)), 18, 95)
        self.tenure = np.round(np.clip(rng.exponential(4.0, customers), 0, 40), 1)
        self.favourite = rng.choice(len(CHANNELS), customers, p=[0.35, 0.35, 0.2, 0.1])
        self.taste = rng.normal(0.0, 0.3, (customers, len(OFFERS)))  # each customer's own quirks
        self._rng = np.random.default_rng(seed + 1)

    def profile(self, customer: int) -> dict[str, object]:
        """The customer's profile as an application holds it (the e-mail is never a feature)."""
        return {
            "id": f"c{customer:06d}",
            "segment": SEGMENTS[int(self.segment[customer])],
            "age": float(self.age[customer]),
            "tenure_years": float(self.tenure[customer]),
            "email": f"c{customer:06d}@example.com",
        }

    def visits(self, n: int, *, start: float, end: float) -> Iterator[Visit]:
        """``n`` visits in time order between ``start`` and ``end``; each on the customer's favourite channel
        70% of the time."""
        rng = self._rng
        ts = np.sort(rng.uniform(start, end, n))
        who = rng.integers(0, self.n, n)
        other = rng.integers(0, len(CHANNELS), n)
        keep = rng.random(n) < 0.7
        ch = np.where(keep, self.favourite[who], other)
        for i in range(n):
            yield Visit(int(who[i]), CHANNELS[int(ch[i])], float(ts[i]))

    def expected(self, visit: Visit) -> np.ndarray:
        """The true probability that the visit's customer takes each offer (in ``OFFERS`` order)."""
        c = visit.customer
        seg = int(self.segment[c])
        z = _BASE[seg] + _CHANNEL[CHANNELS.index(visit.channel)] + _AGE * (self.age[c] - 40.0) / 10.0
        z = z + self.taste[c]
        if seg == 0 and visit.ts >= self.drift_ts:
            z = z + _DRIFT
        return 1.0 / (1.0 + np.exp(-z))

    def respond(self, visit: Visit, offer: str) -> float | None:
        """Whether the customer takes ``offer``: the time its reward arrives, or None."""
        p = self.expected(visit)[OFFERS.index(offer)]
        if self._rng.random() >= p:
            return None
        return visit.ts + float(self._rng.exponential(self.mean_delay))


class Rewards:
    """Rewards waiting for their time: ``due(now)`` pops those that have arrived, in time order."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []

    def add(self, ts: float, event_id: str) -> None:
        heapq.heappush(self._heap, (ts, event_id))

    def due(self, now: float) -> Iterator[tuple[float, str]]:
        heap = self._heap
        while heap and heap[0][0] <= now:
            yield heapq.heappop(heap)

    def __len__(self) -> int:
        return len(self._heap)
