"""``nba demo``: a simulated stream of customers, decided, logged and learned from in-process.

Needs nothing beyond nba itself (no training library): the Decider uses an
online LinUCB bandit that learns from ``reward`` calls, inside an A/B test whose
control arm explores uniformly. The simulated world has a planted best offer
per customer segment, so the printout shows the bandit finding it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

__all__ = ["run_demo"]

_SEGMENTS = ("student", "family", "senior")
_OFFERS = ("cashback_card", "travel_card", "savings_plan", "mortgage_review", "insurance_bundle", "app_tutorial")
# Planted click-through rate of each offer (columns) for each segment (rows).
_CTR = np.array(
    [
        [0.10, 0.04, 0.02, 0.01, 0.02, 0.06],
        [0.03, 0.05, 0.04, 0.09, 0.11, 0.02],
        [0.02, 0.03, 0.12, 0.02, 0.05, 0.01],
    ]
)


def run_demo(args: argparse.Namespace) -> int:
    """Run the simulation and print what happened; returns a process exit code."""
    import nba
    from nba.log import read_records

    n = int(getattr(args, "decisions", 20_000))
    log_dir = getattr(args, "log_dir", None) or tempfile.mkdtemp(prefix="nba-demo-")
    os.makedirs(log_dir, exist_ok=True)
    rng = np.random.default_rng(2026)

    schema = nba.FeatureSchema(
        [
            nba.Categorical("segment", _SEGMENTS, source="profile"),
            nba.Numeric("tenure_years", source="profile", default=0.0),
            nba.Boolean("mobile", source="context"),
        ]
    )
    arms = [
        nba.Arm(
            offer,
            value=1.0,
            channels={
                "web": {"banner": f"/banners/{offer}.png"},
                "app": {"message": f"Have you seen our {offer.replace('_', ' ')}?"},
            },
        )
        for offer in _OFFERS
    ]
    catalog = nba.Catalog(arms, schema)
    bandit = nba.LinUCB(len(arms), schema.n_columns, alpha=0.5)
    experiment = nba.Experiment(
        "bandit-vs-random", variants={"random": 0.2, "bandit": 0.8}, overrides={"random": {"policy": "random"}}
    )
    with nba.DecisionLog(log_dir, durability="interval") as log:
        decider = nba.Decider(
            catalog,
            bandit,
            policy=nba.UCB(),
            policies={"random": _Uniform()},
            experiments=[experiment],
            log=log,
            seed=1,
        )
        clicks = {"random": [0, 0], "bandit": [0, 0]}
        latencies = np.empty(n)
        best_share = []
        t_start = time.perf_counter()
        for i in range(n):
            seg = int(rng.integers(len(_SEGMENTS)))
            profile = {"id": f"customer-{rng.integers(5_000)}", "segment": _SEGMENTS[seg],
                       "tenure_years": float(rng.integers(0, 20)), "email": "never-logged@example.com"}
            context = {"mobile": bool(rng.random() < 0.6)}
            t0 = time.perf_counter_ns()
            d = decider.decide(profile, context, channel="app" if context["mobile"] else "web")
            latencies[i] = (time.perf_counter_ns() - t0) / 1e3
            variant = d.variants.get("bandit-vs-random", "bandit")
            arm = _OFFERS.index(d.arm)
            clicked = rng.random() < _CTR[seg, arm]
            decider.reward(d.event_id, 1.0 if clicked else 0.0)
            clicks[variant][0] += 1
            clicks[variant][1] += int(clicked)
            if variant == "bandit":
                best_share.append(arm == int(np.argmax(_CTR[seg])))
        elapsed = time.perf_counter() - t_start
    best = np.array(best_share, dtype=float)
    q = max(len(best) // 4, 1)
    print(f"nba {nba.__version__} demo: {n:,} simulated decisions, {len(_OFFERS)} offers, 3 segments")
    print(f"  decide() latency: p50 {np.median(latencies):.1f} us, p99 {np.percentile(latencies, 99):.1f} us "
          f"(with experiment allocation, LinUCB scoring and logging)")
    print(f"  end to end {n / elapsed:,.0f} decisions/s including the simulated rewards")
    for v, (shown, c) in clicks.items():
        if shown:
            print(f"  variant {v:>6}: {shown:6,} decisions, click-through {c / shown:.2%}")
    print(f"  bandit picks the planted best offer {best[:q].mean():.0%} of the time in its first quarter, "
          f"{best[-q:].mean():.0%} in its last")
    print(f"  decision log: {log_dir} ({sum(1 for _ in read_records(log_dir)):,} records)")
    return 0


class _Uniform:
    """Uniform random exploration over the eligible arms: the control of the demo's A/B test."""

    name = "uniform"

    def pmf(self, scores: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        out = np.empty(len(scores)) if out is None else out
        out.fill(1.0 / len(scores))
        return out
