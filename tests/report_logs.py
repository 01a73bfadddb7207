"""Realistic decision logs for the report's tests and its timing: a Decider in an A/B test, with rewards.

A simulated stream like ``nba demo``'s (planted click rates per segment and offer), on an
injected clock (``now=``) so the log spans ``hours`` deterministically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import nba
from nba.policy import EpsilonGreedy

SEGMENTS = ("student", "family", "senior")
OFFERS = ("cashback_card", "travel_card", "savings_plan", "mortgage_review", "insurance_bundle", "app_tutorial")
CTR = np.array(
    [
        [0.10, 0.04, 0.02, 0.01, 0.02, 0.06],
        [0.03, 0.05, 0.04, 0.09, 0.11, 0.02],
        [0.02, 0.03, 0.12, 0.02, 0.05, 0.01],
    ]
)
T0 = 1_780_000_000.0  # 2026-05-28
EXPERIMENT = nba.Experiment("bandit-vs-random", variants={"random": 0.3, "bandit": 0.7},
                            overrides={"random": {"policy": "random"}})


def catalog() -> nba.Catalog:
    schema = nba.FeatureSchema([
        nba.Categorical("segment", SEGMENTS, source="profile"),
        nba.Numeric("tenure_years", source="profile", default=0.0),
        nba.Boolean("mobile", source="context"),
    ])
    return nba.Catalog([nba.Arm(o, value=1.0) for o in OFFERS], schema)


def write_log(
    path: Path,
    n: int,
    *,
    experiment: bool = True,
    rewards: bool = True,
    hours: float = 24.0,
    units: int = 2_000,
    seed: int = 0,
) -> None:
    """Write ``n`` decisions (and their click outcomes) to a DecisionLog in ``path``.

    With ``experiment``, units are split 30/70 between a uniformly exploring "random"
    variant and an epsilon-greedy LinUCB "bandit" variant.
    """
    rng = np.random.default_rng(seed)
    cat = catalog()
    bandit = nba.LinUCB(len(OFFERS), cat.schema.n_columns, alpha=0.5)
    exps = [EXPERIMENT] if experiment else []
    step = hours * 3600.0 / max(n, 1)
    with nba.DecisionLog(path, durability="close") as log:
        dec = nba.Decider(cat, bandit, policy=EpsilonGreedy(0.1), policies={"random": EpsilonGreedy(1.0)},
                          experiments=exps, log=log, seed=seed, reward_window=60.0)
        for i in range(n):
            now = T0 + i * step
            seg = int(rng.integers(len(SEGMENTS)))
            profile = {"id": f"c{rng.integers(units)}", "segment": SEGMENTS[seg],
                       "tenure_years": float(rng.integers(0, 20))}
            d = dec.decide(profile, {"mobile": bool(rng.random() < 0.6)}, now=now)
            if rewards:
                clicked = rng.random() < CTR[seg, OFFERS.index(d.arm)]
                if clicked:
                    dec.reward(d.event_id, 1.0, now=now + 1.0)
            if i % 500 == 499:
                dec.flush(now=now)  # the online bandit learns every reward window closed by then
        dec.flush(now=T0 + hours * 3600.0 + 10 * 86400)
