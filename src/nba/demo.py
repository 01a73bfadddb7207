"""``nba demo``: the whole loop on a simulated market, in well under a minute.

1. **Serve** the first half of the simulated month with the current policy (a
   context-free Thompson bandit with 20% uniform exploration), logging every
   decision with its propensity; rewards arrive hours later and are reported
   with ``reward(event_id, 1.0, now=...)``.
2. **Train** a VW contextual bandit from that log: a few learner settings are
   trained on its first 70% and ranked by doubly robust estimates on the rest
   (``nba.offline.discover``), and the best is trained on all of it
   (``nba.training.train_vw``).
3. **Evaluate** it off-policy on the same log against the current policy and
   uniform random (``nba.offline.compare``, doubly robust with intervals).
4. **Promote** it through an A/B test over the second half (current 45%,
   learned 45%, uniform random 10%) and analyse it (``nba.analysis.analyze``:
   lift with intervals, sample-ratio check).
5. **Report**: a short summary on stdout, and with ``--out DIR`` the log, the
   model and an HTML report (``nba.report``) kept in DIR. Without ``--out``
   everything is written to a temporary directory that is removed at the end.

The market (``nba.simulation.Market``) has hidden preferences by segment, age
and channel, and a drift; nba sees only profiles, visits and rewards.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

import msgspec
import numpy as np

from nba.analysis import ExperimentAnalysis, Lift
from nba.errors import ConfigError
from nba.offline import Comparison
from nba.simulation import CHANNELS, OFFERS, SEGMENTS, Market, Rewards

__all__ = ["DemoResult", "run", "run_demo"]


def _catalog() -> Any:
    import nba

    schema = nba.FeatureSchema(
        [
            nba.Categorical("segment", SEGMENTS, source="profile"),
            nba.Numeric("age", source="profile"),
            nba.Numeric("tenure_years", source="profile", default=0.0),
            nba.Categorical("channel", CHANNELS, source="context"),
        ]
    )
    arms = [
        nba.Arm(
            offer,
            features={"offer": offer},
            channels={
                "web": {"banner": f"/banners/{offer}.png"},
                "app": {"message": f"Have you seen our {offer.replace('_', ' ')}?"},
                "email": {"template": f"{offer}-v3"},
                "call_centre": {"script": f"Mention the {offer.replace('_', ' ')} if the customer asks about fees."},
            },
        )
        for offer in OFFERS
    ]
    return nba.Catalog(arms, schema)


def _serve(decider: Any, market: Market, visits: Any, rewards: Rewards, phase: str) -> Any:
    """Decide every visit, report the rewards that have arrived by each visit's time; returns decide() latencies.

    Event ids are the phase and the visit's number, so a run is reproducible (the
    Decider's draws are seeded by its seed and the event id)."""
    lat = []
    for i, visit in enumerate(visits):
        for ts, eid in rewards.due(visit.ts):
            decider.reward(eid, 1.0, now=ts)
        t0 = time.perf_counter_ns()
        d = decider.decide(market.profile(visit.customer), {"channel": visit.channel}, channel=visit.channel,
                           now=visit.ts, event_id=f"{phase}-{i:06d}")
        lat.append(time.perf_counter_ns() - t0)
        arrives = market.respond(visit, d.arm)
        if arrives is not None:
            rewards.add(arrives, d.event_id)
    return np.asarray(lat, dtype=float) / 1e3


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _ci(iv: Any) -> str:
    return f"[{100 * iv.low:.2f}, {100 * iv.high:.2f}]"


class DemoResult(msgspec.Struct, frozen=True):
    """What ``run`` found: the offline comparison on the first log, the A/B analysis (control: the
    starting policy), the learned policy's lift over uniform random, and whether it was promoted."""

    offline: Comparison
    ab: ExperimentAnalysis
    vs_current: Lift
    vs_random: Lift
    promoted: bool
    seconds: float


def run_demo(args: argparse.Namespace) -> int:
    """``nba demo``: run the loop with the command line's sizes and print what happened; an exit code."""
    run(customers=args.customers, visits=args.visits, seed=args.seed, out=args.out)
    return 0


def run(*, customers: int = 3000, visits: int = 40_000, seed: int = 2026, out: str | None = None) -> DemoResult:
    """Serve, log, train, evaluate, A/B-test and report on a simulated market, printing each step.

    ``out`` keeps the logs, the model and report.html there; without it they go to a
    temporary directory removed at the end.
    """
    for name, value, lo in (("customers", customers, 1), ("visits", visits, 200)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ConfigError(f"{name}={value!r} must be an int >= {lo}")
    if out is not None:
        os.makedirs(out, exist_ok=True)
        return _run(customers, visits, seed, out, keep=True)
    with tempfile.TemporaryDirectory(prefix="nba-demo-") as tmp:
        return _run(customers, visits, seed, tmp, keep=False)


def _run(customers: int, n: int, seed: int, workdir: str, *, keep: bool) -> DemoResult:
    import nba
    from nba import analysis, offline, training

    t_all = time.perf_counter()
    market = Market(customers, days=28.0, drift_at=0.3, seed=seed)
    half = market.start + market.span / 2
    catalog = _catalog()
    log_dir = os.path.join(workdir, "log")
    rewards = Rewards()
    window = 24 * 3600.0
    current = nba.EpsilonGreedy(0.2)
    print(f"nba {nba.__version__} demo: {customers:,} simulated customers, {len(OFFERS)} offers on "
          f"{len(CHANNELS)} channels, {n:,} visits over 28 days (their tastes drift on day "
          f"{(market.drift_ts - market.start) / 86400:.0f})")

    # 1. Serve the first half with the current policy.
    with nba.DecisionLog(log_dir, durability="interval") as log:
        decider = nba.Decider(catalog, nba.BetaThompson(len(OFFERS)), policy=current, log=log, seed=seed,
                              reward_window=window)
        lat1 = _serve(decider, market, market.visits(n // 2, start=market.start, end=half), rewards, "serve")
        for ts, eid in rewards.due(half):
            decider.reward(eid, 1.0, now=ts)
    print(f"1. served {n // 2:,} visits with the current policy (context-free Thompson, 20% exploration): "
          f"decide() p50 {np.median(lat1):.1f} us, p99 {np.percentile(lat1, 99):.1f} us")

    # 2. Optimisation discovery: learner settings trained on the log's first 70%, ranked by DR on the rest;
    #    then the best trained on the whole log.
    grid = [offline.Setting(0.05, ("UA", "CA"), lr, cb) for lr in (0.1, 0.5) for cb in ("dr", "mtr")]
    disc = offline.discover(log_dir, grid=grid, reward_window=window, seed=seed, n_bootstrap=0)
    model_path = os.path.join(workdir, "learned.vw")
    trained = training.train_vw(log_dir, model_path, reward_window=window, seed=seed, **disc.best.kwargs())
    learned = nba.load_model(model_path, format="vw")
    print(f"2. optimisation discovery: {len(disc.trials)} VW settings trained on {disc.n_train:,} decisions, "
          f"estimated on the next {disc.n_holdout:,}; best {disc.best.label} "
          f"({_pct(disc.trials[0].estimate.value)}, logged {_pct(disc.logged.value)}); "
          f"trained on all {trained.examples:,} in {disc.seconds + trained.seconds:.1f} s")

    # 3. Evaluate it off-policy on the same log.
    explore = nba.EpsilonGreedy(0.05)
    cmp = offline.compare(log_dir, candidates={"learned": learned}, reward_window=window, seed=seed)
    print("3. off-policy estimates on the first log, 95% intervals (doubly robust; logged: its own mean; "
          "learned: in-sample, discovery above held out):")
    for row in cmp.rows:
        print(f"     {row.kind if row.kind == 'baseline' else row.name:<10} {_pct(row.value)} "
              f"{_ci(row.estimate.gaussian)}")

    # 4. Promote it through an A/B test over the second half.
    ab = nba.Experiment(
        "promote-learned",
        variants={"current": 0.45, "learned": 0.45, "random": 0.10},
        overrides={"learned": {"model": "learned", "policy": "learned"}, "random": {"policy": "random"}},
    )
    ab_dir = os.path.join(workdir, "ab-log")
    with nba.DecisionLog(ab_dir, durability="interval") as log:
        decider = nba.Decider(
            catalog, nba.BetaThompson(len(OFFERS)), policy=current, log=log, seed=seed + 1, reward_window=window,
            models={"learned": learned}, policies={"learned": explore, "random": nba.EpsilonGreedy(1.0)},
            experiments=[ab],
        )
        lat2 = _serve(decider, market, market.visits(n - n // 2, start=half, end=market.start + market.span),
                      rewards, "ab")
        for ts, eid in rewards.due(market.start + market.span + window):
            decider.reward(eid, 1.0, now=ts)
    result = analysis.analyze(ab_dir, experiments=[ab], reward_window=window)["promote-learned"]
    print(f"4. A/B test over the second half ({n - n // 2:,} visits; decide() p50 {np.median(lat2):.1f} us, "
          f"p99 {np.percentile(lat2, 99):.1f} us), reward per decision:")
    for v in result.variants:
        print(f"     {v.variant:<10} {v.decisions:6,} decisions  {_pct(v.mean_per_decision)} "
              f"{_ci(v.interval_per_decision)}")
    srm = result.srm
    print(f"   sample ratio check: {'MISMATCH' if srm.alert else 'ok'} (p = {srm.p_value:.3f})")

    vs_random = analysis.analyze(ab_dir, experiments=[ab], control="random", reward_window=window)["promote-learned"]
    gain_current = {lf.variant: lf for lf in result.lifts}["learned"]
    gain_random = {lf.variant: lf for lf in vs_random.lifts}["learned"]
    print("result: reward per customer of the learned policy in the A/B test, 95% intervals")
    for what, lf in (("the starting policy", gain_current), ("uniform random", gain_random)):
        print(f"   vs {what:<20} {100 * lf.relative:+.0f}% [{100 * lf.relative_interval.low:+.0f}%, "
              f"{100 * lf.relative_interval.high:+.0f}%]  ({lf.absolute:+.3f} rewards per customer "
              f"[{lf.absolute_interval.low:+.3f}, {lf.absolute_interval.high:+.3f}], p = {lf.p_value:.2g})")
    promoted = gain_current.absolute_interval.low > 0 and not result.srm.alert
    print("   promoted: the learned policy beats the starting policy" if promoted else
          "   not promoted: the A/B test does not show the learned policy ahead")
    if keep:
        from nba import report

        path = os.path.join(workdir, "report.html")
        report.write(ab_dir, path, reward_window=window, experiments=[ab])
        print(f"   kept in {workdir}: the logs, the model ({os.path.basename(model_path)}) and report.html")
    else:
        print("   (pass --out DIR to keep the logs, the model and an HTML report)")
    seconds = time.perf_counter() - t_all
    print(f"done in {seconds:.1f} s")
    return DemoResult(cmp, result, gain_current, gain_random, promoted, seconds)
