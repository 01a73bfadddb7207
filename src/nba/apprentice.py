"""Apprentice mode: serve the application's own choice while the learned policy shadows it, then switch.

The application passes its baseline arm with each decision (``Decider.decide(...,
baseline=arm)``). While apprenticing, the Decider serves the baseline, logs it with
probability 1.0 and what the learned policy would have drawn (``learned``, from
``learned_pmf``), and counts agreement (learned draw == baseline) in the state backend,
shared by every worker (``nba.state.ApprenticeCounters``). Once ``min_events``
decisions have been counted and the agreement share is at least ``threshold``, the
backend switches (sticky, once, for every worker) and the Decider logs one
``SwitchRecord``; the learned policy then serves, and the baseline is still logged and
counted, so agreement keeps being measured. ``summarize`` reads it all back from a log.

Azure Personalizer had this mode (its successor switched at 60-80% agreement).
"""

from __future__ import annotations

import math
import os
import statistics
import warnings
from collections.abc import Sequence
from datetime import timedelta

import msgspec

from nba.errors import ConfigError, SchemaError
from nba.evaluation import Estimate, Interval

__all__ = ["Apprentice", "ApprenticeStatus", "ApprenticeSummary", "summarize"]


class Apprentice(msgspec.Struct, frozen=True, kw_only=True):
    """The rule of apprentice mode: serve the baseline until the learned policy agrees with it often enough.

    ``threshold``: the agreement share (0..1) at which to switch; ``min_events``: decisions with a
    baseline counted before the rule may switch; ``enabled=False`` serves the learned policy from the
    start (Personalizer's "online" mode) while the baseline is still logged and agreement counted.
    """

    threshold: float = 0.7
    min_events: int = 1000
    enabled: bool = True

    def __post_init__(self) -> None:
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (0.0 <= t <= 1.0):
            raise ConfigError(f"Apprentice: threshold must be an agreement share in [0, 1] (e.g. 0.7), got {t!r}")
        m = self.min_events
        if isinstance(m, bool) or not isinstance(m, int) or m < 0:
            raise ConfigError(f"Apprentice: min_events must be an int >= 0 (decisions counted before a switch), "
                              f"got {m!r}")
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"Apprentice: enabled must be True or False, got {self.enabled!r}")

    @property
    def rule(self) -> tuple[float, int] | None:
        """(threshold, min_events) for the state backend, or None when disabled (it never switches)."""
        return (float(self.threshold), self.min_events) if self.enabled else None


class ApprenticeStatus(msgspec.Struct, frozen=True):
    """What ``Decider.apprentice_status()`` reports: counted decisions with a baseline, agreements, their share
    (None before the first), and whether the switch to the learned policy was made (by any worker)."""

    events: int
    agreements: int
    agreement: float | None
    switched: bool


class ApprenticeSummary(msgspec.Struct, frozen=True):
    """Apprentice mode read back from a log (``summarize``).

    ``events``/``agreements`` count the decisions that logged both a baseline and the learned
    policy's draw (before and after the switch), ``agreement`` their share with a Wilson
    ``agreement_interval``. ``baseline_value`` is the mean reward of the decisions that served the
    baseline (Gaussian interval); ``switching_value`` the learned policy's estimated value on those
    same decisions (IPS with candidate = the logged ``learned_pmf``; None if not computable).
    ``switched_at`` is the SwitchRecord's ts (None: no switch logged); ``notes`` say how far to trust it.
    """

    events: int
    agreements: int
    agreement: float | None
    agreement_interval: Interval | None
    baseline_value: Estimate | None
    switching_value: Estimate | None
    switched_at: float | None
    notes: tuple[str, ...] = ()


def _wilson(k: int, n: int, level: float) -> Interval:
    """Wilson score interval of a binomial share k / n (n > 0): sensible at 0 and n, unlike the normal one."""
    z = statistics.NormalDist().inv_cdf(1 - (1 - level) / 2)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return Interval(max(0.0, mid - half), min(1.0, mid + half), level, "wilson")


def _mean(values: list[float], level: float) -> Estimate:
    n = len(values)
    m = math.fsum(values) / n
    if n < 2:
        return Estimate("mean", m, Interval(math.nan, math.nan, level, "gaussian"))
    z = statistics.NormalDist().inv_cdf(1 - (1 - level) / 2)
    half = z * statistics.stdev(values) / math.sqrt(n)
    return Estimate("mean", m, Interval(m - half, m + half, level, "gaussian"))


def summarize(
    log: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    reward_window: timedelta | float | None = None,
    default_reward: float = 0.0,
    level: float = 0.95,
) -> ApprenticeSummary:
    """Agreement, the baseline's value and the learned policy's estimated value, from a decision log.

    ``log`` is what ``nba.log.read_records`` reads (a directory, a segment, or one directory per
    host); ``reward_window`` and ``default_reward`` join outcomes as ``nba.log.join`` does. Decisions
    without a baseline (or without the learned draw: logged by a Decider that was not apprenticing,
    or whose baseline was not eligible) are left out.
    """
    from nba.evaluation import IPS, UnexploredActionWarning, estimate, from_joined  # (numpy work only here)
    from nba.log.reader import join, read_records
    from nba.log.records import DecisionRecord, SwitchRecord

    if not (isinstance(level, float) and 0 < level < 1):
        raise ConfigError(f"summarize: level={level!r} must be a float in (0, 1), e.g. 0.95")
    notes: list[str] = []
    events = agreements = 0
    seen: set[str] = set()
    switched_at: float | None = None
    switches = 0
    for rec in read_records(log):
        if type(rec) is DecisionRecord:
            if rec.baseline is None or rec.learned is None or rec.event_id in seen:
                continue
            seen.add(rec.event_id)
            if not 0 <= rec.learned < len(rec.actions):
                notes.append(f"decision {rec.event_id!r}: learned={rec.learned} does not index its actions; skipped")
                continue
            events += 1
            agreements += rec.actions[rec.learned] == rec.baseline
        elif type(rec) is SwitchRecord:
            switches += 1
            switched_at = rec.ts if switched_at is None else min(switched_at, rec.ts)
    if switches > 1:
        notes.append(f"{switches} switch records (one expected: each namespace switches once); switched_at is "
                     "the earliest")
    served = [ex for ex in join(log, reward_window=reward_window, default_reward=default_reward)
              if ex.decision.apprentice and ex.decision.baseline is not None]
    baseline_value = _mean([ex.reward for ex in served], level) if served else None
    switching_value = None
    scored = [ex for ex in served if ex.decision.learned_pmf is not None
              and len(ex.decision.learned_pmf) == len(ex.decision.actions)]
    if scored:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UnexploredActionWarning)
                report = estimate(from_joined(scored), lambda rec: rec.learned_pmf, estimators=(IPS(),),
                                  level=level, n_bootstrap=0)
            switching_value = report["ips"]
            if any(issubclass(w.category, UnexploredActionWarning) for w in caught):
                notes.append(
                    f"switching_value: while apprenticing only the baseline was served (p=1), so IPS sees the "
                    f"learned policy's value only where it agreed (it put {report.unexplored_mass:.3g} of its mass "
                    "elsewhere on average): a lower bound for rewards >= 0; a DR estimate needs a reward model "
                    "(nba.evaluation.estimate with estimators=DR())"
                )
        except (SchemaError, ConfigError) as e:
            notes.append(f"switching_value not computed: {e}")
    elif served:
        notes.append("switching_value not computed: no apprentice decision logged the learned pmf")
    return ApprenticeSummary(
        events=events,
        agreements=agreements,
        agreement=agreements / events if events else None,
        agreement_interval=_wilson(agreements, events, level) if events else None,
        baseline_value=baseline_value,
        switching_value=switching_value,
        switched_at=switched_at,
        notes=tuple(notes),
    )
