"""``nba report``: a self-contained HTML report of a decision log, and the same figures as JSON.

``build`` reads the log once (``nba.log.join``) and gathers the figures into a
``ReportData``: the headline numbers, reward over time per experiment variant,
arm shares over time, off-policy estimates (``nba.evaluation``) of the logged
policy, uniform random and any candidates, their importance-weight diagnostics,
each experiment's SRM check and lifts (``nba.analysis``) and the apprentice's
agreement and value of switching (``nba.apprentice``). ``render_html`` turns it
into one HTML file with every plot embedded as a PNG data URI (matplotlib, Agg
canvas); ``write`` does both. Plots and the progress bar need the ``report``
extra (``pip install nba[report]``); ``build`` alone needs neither unless
``progress=True``.

Time buckets are equal-width over the span from the first to the last decision;
a bucket's reward figures are over the decisions made in it, whenever their
outcomes arrived.
"""

from __future__ import annotations

import base64
import html
import importlib
import io
import math
import os
import statistics
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from nba.errors import ConfigError, LogError, SchemaError

if TYPE_CHECKING:
    from nba.evaluation import BanditData, Candidate
    from nba.experiments import Experiment
    from nba.log.reader import JoinedExample, LogPaths

__all__ = [
    "ApprenticeSection",
    "ArmShares",
    "Bounds",
    "CandidateEstimates",
    "EstimateRow",
    "ExperimentSummary",
    "ExperimentsSection",
    "Headline",
    "LiftRow",
    "OPESection",
    "ReportData",
    "RewardSeries",
    "SRMRow",
    "VariantRow",
    "build",
    "render_html",
    "write",
]

#: The estimators every candidate gets (Gaussian intervals; no bootstrap, to keep a report fast).
ESTIMATORS = ("ips", "snips", "dr")
#: Arms drawn in the share plot; the rest are summed as "other".
MAX_ARMS_PLOTTED = 10
#: Experiments drawn in the reward-over-time plot (one panel each); the table lists all.
MAX_EXPERIMENTS_PLOTTED = 6
_WEIGHT_BINS = 30
_EXTRA_HINT = "pip install nba[report] (matplotlib and tqdm)"


# --------------------------------------------------------------------------- data


class Bounds(msgspec.Struct, frozen=True):
    """A confidence interval as the report stores it: ``None`` where undefined (JSON has no NaN)."""

    low: float | None
    high: float | None
    level: float
    method: str


class Headline(msgspec.Struct, frozen=True):
    """The log at a glance. ``reward_rate`` is the mean reward per decision, ``observed_rate`` the share
    of decisions with an outcome in the window; times are unix seconds."""

    decisions: int
    units: int
    start: float | None
    end: float | None
    span_seconds: float
    observed: int
    reward_sum: float
    reward_rate: float | None
    observed_rate: float | None
    arms: int
    experiments: tuple[str, ...]


class RewardSeries(msgspec.Struct, frozen=True):
    """Mean reward per decision in each time bucket for one variant (``experiment`` None: every decision)."""

    experiment: str | None
    variant: str
    decisions: tuple[int, ...]
    reward_sum: tuple[float, ...]
    mean: tuple[float | None, ...]
    low: tuple[float | None, ...]
    high: tuple[float | None, ...]


class ArmShares(msgspec.Struct, frozen=True):
    """How often each arm was chosen per time bucket: ``counts[i][b]`` for ``arms[i]`` in bucket ``b``."""

    arms: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]


class EstimateRow(msgspec.Struct, frozen=True):
    """One estimator's value of a candidate with its Gaussian interval."""

    estimator: str
    value: float | None
    interval: Bounds


class CandidateEstimates(msgspec.Struct, frozen=True):
    """Off-policy estimates of one candidate and how far to trust them.

    ``kind``: "logged" (the logging policy itself: its IPS is the on-policy mean),
    "uniform" (uniform random over each decision's offered actions), "candidate"
    (given to ``build``) or "learned" (the apprentice's ``learned_pmf``).
    ``weight_counts`` is the histogram of the positive importance weights over
    ``OPESection.weight_edges``; ``zero_weights`` counts the rest.
    """

    name: str
    kind: str
    n: int
    estimates: tuple[EstimateRow, ...]
    ess: float
    max_weight: float
    unexplored_mass: float | None
    weight_counts: tuple[int, ...]
    zero_weights: int
    warnings: tuple[str, ...] = ()


class OPESection(msgspec.Struct, frozen=True):
    """Every candidate's estimates; ``reward_model`` names DR's reward model."""

    reward_model: str
    weight_edges: tuple[float, ...]
    candidates: tuple[CandidateEstimates, ...]
    notes: tuple[str, ...] = ()


class VariantRow(msgspec.Struct, frozen=True):
    """One variant's figures as ``nba.analysis`` reports them."""

    variant: str
    units: int
    decisions: int
    reward_sum: float
    mean_per_unit: float | None
    interval_per_unit: Bounds | None
    mean_per_decision: float | None
    interval_per_decision: Bounds | None
    rate: float | None


class LiftRow(msgspec.Struct, frozen=True):
    """A variant's lift over the control (absolute and relative) with intervals and p-value."""

    variant: str
    control: str
    absolute: float | None
    absolute_interval: Bounds | None
    relative: float | None
    relative_interval: Bounds | None
    p_value: float | None
    cuped: bool


class SRMRow(msgspec.Struct, frozen=True):
    """The sample-ratio-mismatch check: units observed against expected per variant."""

    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float | None
    p_value: float | None
    alert: bool
    checked: bool


class ExperimentSummary(msgspec.Struct, frozen=True):
    """One experiment's analysis (``nba.analysis.analyze``)."""

    experiment: str
    control: str
    variants: tuple[VariantRow, ...]
    lifts: tuple[LiftRow, ...]
    srm: SRMRow | None
    notes: tuple[str, ...] = ()


class ExperimentsSection(msgspec.Struct, frozen=True):
    """The experiments' analyses; ``available`` is False when ``nba.analysis`` could not be imported."""

    available: bool
    experiments: tuple[ExperimentSummary, ...] = ()
    notes: tuple[str, ...] = ()


class ApprenticeSection(msgspec.Struct, frozen=True):
    """Apprentice agreement per time bucket (from the report's own pass) and ``nba.apprentice.summarize``.

    ``decisions[b]`` counts apprentice decisions in bucket ``b``, ``agreements[b]`` those
    where the learned policy's pick equals the one taken. ``summary`` holds the
    summary's fields as plain data (None when the module is not available or the
    log has no apprentice decisions).
    """

    available: bool
    decisions: tuple[int, ...]
    agreements: tuple[int, ...]
    summary: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()


class ReportData(msgspec.Struct, frozen=True):
    """Everything a report shows, as plain data (``msgspec.json.encode`` it for machines).

    ``edges`` are the ``buckets + 1`` time-bucket boundaries (unix seconds); every
    per-bucket tuple has one entry per bucket. ``notes`` say what is missing and why.
    """

    log: str
    generated: float
    level: float
    reward_window: float | None
    default_reward: float
    headline: Headline
    edges: tuple[float, ...]
    rewards: tuple[RewardSeries, ...]
    arms: ArmShares
    ope: OPESection | None
    experiments: ExperimentsSection
    apprentice: ApprenticeSection
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------- helpers


def _num(x: Any) -> float | None:
    """``x`` as a finite float, or None (NaN, inf, None, not a number)."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _bounds(iv: Any) -> Bounds | None:
    """An ``nba.evaluation.Interval`` (or anything with low/high/level/method) as ``Bounds``."""
    if iv is None:
        return None
    return Bounds(_num(getattr(iv, "low", None)), _num(getattr(iv, "high", None)),
                  float(getattr(iv, "level", math.nan)), str(getattr(iv, "method", "")))


def _plain(x: Any) -> Any:
    """``x`` as JSON-safe builtins, non-finite floats as None (msgspec would write them as null anyway)."""
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        return _num(x)
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.generic, np.ndarray)):
        return _plain(x.tolist())
    return _plain(msgspec.to_builtins(x, enc_hook=lambda o: repr(o)))


def _z(level: float) -> float:
    return statistics.NormalDist().inv_cdf(1 - (1 - level) / 2)


def _window(reward_window: timedelta | float | None) -> float | None:
    if reward_window is None:
        return None
    if isinstance(reward_window, timedelta):
        return reward_window.total_seconds()
    return float(reward_window)


def _need(module: str) -> Any:
    """Import an optional dependency of the ``report`` extra, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"nba report needs {module.split('.')[0]}, part of the report extra: {_EXTRA_HINT}") from None


# --------------------------------------------------------------------------- the pass over the log


class _Pass:
    """What the one pass over the joined log keeps: a few numbers per decision, and the examples for OPE."""

    def __init__(self) -> None:
        self.examples: list[JoinedExample] = []
        self.ts: list[float] = []
        self.reward: list[float] = []
        self.arm: list[int] = []
        self.arm_ids: dict[str, int] = {}
        self.units: set[Any] = set()
        self.observed = 0
        # experiment -> (variant per decision index, or absent)
        self.variants: dict[str, dict[int, str]] = {}
        self.apprentice: list[int] = []  # decision indices of apprentice decisions
        self.agree: list[bool] = []

    def add(self, ex: JoinedExample) -> None:
        rec = ex.decision
        i = len(self.ts)
        self.examples.append(ex)
        self.ts.append(rec.ts)
        self.reward.append(ex.reward)
        self.observed += ex.observed
        taken = rec.chosen[0] if rec.chosen else -1
        arm = rec.actions[taken] if 0 <= taken < len(rec.actions) else "?"
        self.arm.append(self.arm_ids.setdefault(arm, len(self.arm_ids)))
        if rec.unit is not None:
            self.units.add(rec.unit)
        for name, variant in rec.variants.items():
            self.variants.setdefault(name, {})[i] = variant
        if getattr(rec, "apprentice", False):
            self.apprentice.append(i)
            self.agree.append(getattr(rec, "learned", None) == taken)


def _bucket_index(ts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bucket ``k`` of each time: ``edges[k] <= t < edges[k + 1]``, the last bucket closed on the right.

    By search in the edges themselves (not by dividing by the width), so a time on an edge
    goes where the edges the report shows say it goes."""
    b = len(edges) - 1
    return np.clip(np.searchsorted(edges, ts, side="right") - 1, 0, b - 1).astype(np.intp)


def _series(experiment: str | None, variant: str, bucket: np.ndarray, reward: np.ndarray, b: int,
            level: float) -> RewardSeries:
    n = np.bincount(bucket, minlength=b)
    s = np.bincount(bucket, weights=reward, minlength=b)
    ss = np.bincount(bucket, weights=reward * reward, minlength=b)
    z = _z(level)
    mean: list[float | None] = []
    low: list[float | None] = []
    high: list[float | None] = []
    for k in range(b):
        if n[k] == 0:
            mean.append(None)
            low.append(None)
            high.append(None)
            continue
        m = s[k] / n[k]
        mean.append(float(m))
        if n[k] < 2:
            low.append(None)
            high.append(None)
            continue
        var = max(0.0, (ss[k] - n[k] * m * m) / (n[k] - 1))
        d = z * math.sqrt(var / n[k])
        low.append(float(m - d))
        high.append(float(m + d))
    return RewardSeries(experiment, variant, tuple(int(v) for v in n), tuple(float(v) for v in s),
                        tuple(mean), tuple(low), tuple(high))


# --------------------------------------------------------------------------- off-policy evaluation


def _reward_matrix(data: BanditData) -> tuple[np.ndarray, str]:
    """DR's reward model predictions ``(n, K)``, fitted once and shared by every candidate.

    LightGBM (cross-fitted in 2 folds) when installed; else each action's mean logged reward,
    which keeps DR unbiased (the weights correct it) if less tight."""
    from nba.evaluation import LightGBMRewardModel

    try:
        import lightgbm  # noqa: F401
    except ImportError:
        pass
    else:
        if data.n >= 200:
            return LightGBMRewardModel(n_folds=2, num_boost_round=50).predict(data), "lightgbm (2-fold cross-fitted)"
    k = data.n_actions
    sums = np.bincount(data.action, weights=data.reward, minlength=k)
    counts = np.bincount(data.action, minlength=k)
    overall = float(np.mean(data.reward))
    per_action = np.where(counts > 0, sums / np.maximum(counts, 1), overall)
    return np.broadcast_to(per_action, (data.n, k)).copy(), "per-action mean reward"


def _learned_pmf(examples: Sequence[JoinedExample]) -> tuple[list[JoinedExample], list[list[float]]]:
    """The decisions that logged a ``learned_pmf`` over their offered actions, with it."""
    subset: list[JoinedExample] = []
    pmfs: list[list[float]] = []
    for ex in examples:
        p = getattr(ex.decision, "learned_pmf", None)
        if p is not None and len(p) == len(ex.decision.actions):
            subset.append(ex)
            pmfs.append(list(p))
    return subset, pmfs


def _place(data: BanditData, rows: Sequence[Sequence[float]] | None = None) -> np.ndarray:
    """Per-decision pmfs over the offered actions placed into ``data``'s vocabulary, ``(n, K)``;
    without ``rows``, uniform over each decision's offered actions."""
    assert data.offered is not None
    index = {a: j for j, a in enumerate(data.actions)}
    lengths = np.fromiter((len(o) for o in data.offered), dtype=np.intp, count=data.n)
    cols = np.fromiter((index[a] for o in data.offered for a in o), dtype=np.intp, count=int(lengths.sum()))
    rows_at = np.repeat(np.arange(data.n), lengths)
    if rows is None:
        values = np.repeat(1.0 / np.maximum(lengths, 1), lengths)
    else:
        values = np.fromiter((v for p in rows for v in p), dtype=np.float64, count=cols.size)
    out = np.zeros((data.n, data.n_actions))
    out[rows_at, cols] = values
    return out


def _evaluate(data: BanditData, q: np.ndarray, name: str, kind: str, pi: np.ndarray, level: float
              ) -> tuple[CandidateEstimates, np.ndarray]:
    from nba.evaluation import DR, IPS, SNIPS, estimate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the report's table shows them (Report.warnings)
        rep = estimate(data, pi, estimators=(IPS(), SNIPS(), DR()), reward_model=q, level=level, n_bootstrap=0)
    w = pi[np.arange(data.n), data.action] / data.pscore
    rows = tuple(EstimateRow(e.estimator, _num(e.value), _bounds(e.gaussian) or Bounds(None, None, level, ""))
                 for e in rep.estimates)
    cand = CandidateEstimates(name, kind, rep.n, rows, float(rep.ess), float(rep.max_weight),
                              _num(rep.unexplored_mass), (), int(np.sum(w <= 0)), tuple(rep.warnings))
    return cand, w


def _ope(examples: list[JoinedExample], candidates: Mapping[str, Candidate], level: float,
         notes: list[str]) -> OPESection | None:
    from nba.evaluation import candidate_pmf, from_joined

    if not examples:
        return None
    try:
        data = from_joined(examples)
    except SchemaError as e:
        notes.append(f"off-policy evaluation skipped: {e}")
        return None
    q, model_name = _reward_matrix(data)
    assert data.pmf is not None
    uniform = _place(data)
    results: list[tuple[CandidateEstimates, np.ndarray]] = [
        _evaluate(data, q, "logged policy", "logged", data.pmf, level),
        _evaluate(data, q, "uniform random", "uniform", uniform, level),
    ]
    sec_notes: list[str] = []
    for name, cand in candidates.items():
        try:
            pi = candidate_pmf(data, cand)
        except SchemaError as e:
            sec_notes.append(f"candidate {name!r} skipped: {e}")
            continue
        results.append(_evaluate(data, q, str(name), "candidate", pi, level))
    subset, pmfs = _learned_pmf(examples)
    if subset:
        sub = data if len(subset) == len(examples) else from_joined(subset)
        q_sub = q if sub is data else _reward_matrix(sub)[0]
        try:
            results.append(_evaluate(sub, q_sub, "learned policy", "learned", _place(sub, pmfs), level))
        except SchemaError as e:
            sec_notes.append(f"learned policy skipped: {e}")
        if len(subset) < len(examples):
            sec_notes.append(f"the learned policy is estimated on the {len(subset):,} decisions that logged its pmf")
    positive = np.concatenate([w[w > 0] for _, w in results])
    lo, hi = (float(positive.min()), float(positive.max())) if positive.size else (1.0, 1.0)
    if hi <= lo:
        lo, hi = lo / 2, hi * 2
    edges = np.geomspace(lo, hi, _WEIGHT_BINS + 1)
    cands = tuple(
        msgspec.structs.replace(c, weight_counts=tuple(int(v) for v in np.histogram(w[w > 0], bins=edges)[0]))
        for c, w in results
    )
    return OPESection(model_name, tuple(float(e) for e in edges), cands, tuple(sec_notes))


# --------------------------------------------------------------------------- other modules' sections


def _experiments(examples: list[JoinedExample], default_reward: float, level: float, has_experiments: bool,
                 defined: tuple[Experiment, ...]) -> ExperimentsSection:
    try:
        analysis = importlib.import_module("nba.analysis")
    except ImportError:
        return ExperimentsSection(False, (), ("not available: nba.analysis is not installed in this build",))
    if not has_experiments:
        return ExperimentsSection(True, (), ("no data: no decision in the log belongs to an experiment",))
    out = []
    # The log does not hold the experiments' weights: only their definitions give SRM its expected split.
    extra = {"experiments": defined} if defined else {}
    # analyze takes nba.log.join output as its log: the report's own join, not a second pass over the files.
    for name, a in analysis.analyze(examples, reward_window=None, default_reward=default_reward,
                                    level=level, **extra).items():
        variants = tuple(
            VariantRow(str(v.variant), int(v.units), int(v.decisions), float(v.reward_sum), _num(v.mean_per_unit),
                       _bounds(v.interval_per_unit), _num(v.mean_per_decision), _bounds(v.interval_per_decision),
                       _num(v.rate))
            for v in a.variants
        )
        lifts = tuple(
            LiftRow(str(x.variant), str(x.control), _num(x.absolute), _bounds(x.absolute_interval),
                    _num(x.relative), _bounds(x.relative_interval), _num(x.p_value), bool(x.cuped))
            for x in a.lifts
        )
        s = a.srm
        srm = None if s is None else SRMRow(
            {str(k): int(v) for k, v in s.observed.items()}, {str(k): float(v) for k, v in s.expected.items()},
            _num(s.chi2), _num(s.p_value), bool(s.alert), bool(s.checked))
        out.append(ExperimentSummary(str(getattr(a, "experiment", name)), str(a.control), variants, lifts, srm,
                                     tuple(str(n) for n in (a.notes or ()))))
    return ExperimentsSection(True, tuple(out), ())


_SUMMARY_FIELDS = ("events", "agreements", "agreement", "agreement_interval", "baseline_value", "switching_value",
                   "switched_at", "notes")


def _apprentice(log: LogPaths, reward_window: Any, default_reward: float, level: float, p: _Pass,
                bucket: np.ndarray, b: int) -> ApprenticeSection:
    idx = np.asarray(p.apprentice, dtype=np.intp)
    decisions = tuple(int(v) for v in np.bincount(bucket[idx], minlength=b)) if idx.size else (0,) * b
    agreements = (tuple(int(v) for v in np.bincount(bucket[idx], weights=np.asarray(p.agree, float), minlength=b))
                  if idx.size else (0,) * b)
    try:
        apprentice = importlib.import_module("nba.apprentice")
    except ImportError:
        return ApprenticeSection(False, decisions, agreements, None,
                                 ("not available: nba.apprentice is not installed in this build",))
    if not idx.size:
        return ApprenticeSection(True, decisions, agreements, None,
                                 ("no data: the log has no apprentice decisions",))
    s = apprentice.summarize(log, reward_window=reward_window, default_reward=default_reward, level=level)
    summary = {f: _plain(getattr(s, f, None)) for f in _SUMMARY_FIELDS}
    return ApprenticeSection(True, decisions, agreements, summary, ())


# --------------------------------------------------------------------------- build


def build(
    log: LogPaths,
    *,
    reward_window: timedelta | float | None = None,
    default_reward: float = 0.0,
    candidates: Mapping[str, Candidate] | None = None,
    experiments: Iterable[Experiment] = (),
    level: float = 0.95,
    buckets: int = 20,
    progress: bool = False,
) -> ReportData:
    """Read ``log`` once and gather every figure of the report.

    ``reward_window`` and ``default_reward`` are ``nba.log.join``'s. ``candidates``
    maps a name to a candidate policy for off-policy evaluation (an ``(n, K)`` pmf
    array or a callable from a ``DecisionRecord`` to a pmf over its actions, e.g.
    ``nba.evaluation.model_candidate``). ``experiments`` (``nba.Experiment``) give the
    SRM check its expected split (the log holds no weights: without them ``nba.analysis``
    expects equal ones). Intervals are at ``level``; time is cut
    into ``buckets`` equal-width buckets. ``progress=True`` shows a tqdm bar over
    the decisions on stderr.
    """
    from nba.log.reader import join

    if not (isinstance(level, float) and 0 < level < 1):
        raise ConfigError(f"level={level!r} must be a float in (0, 1), e.g. 0.95")
    if not (isinstance(buckets, int) and not isinstance(buckets, bool) and 1 <= buckets <= 1000):
        raise ConfigError(f"buckets={buckets!r} must be an int between 1 and 1000")
    candidates = dict(candidates or {})
    from nba.experiments import Experiment

    defined = tuple(experiments)
    for e in defined:
        if not isinstance(e, Experiment):
            raise ConfigError(f"experiments holds {e!r}; pass the nba.Experiment definitions the Decider ran")
    for name in candidates:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"candidate names must be non-empty strings, got {name!r}")
    window = _window(reward_window)
    joined: Iterable[JoinedExample] = join(log, reward_window=reward_window, default_reward=default_reward)
    if progress:
        tqdm = _need("tqdm").tqdm
        joined = tqdm(joined, desc="nba report", unit=" decisions", file=sys.stderr, mininterval=0.5,
                      dynamic_ncols=True)
    p = _Pass()
    for ex in joined:
        p.add(ex)

    notes: list[str] = []
    n = len(p.ts)
    ts = np.asarray(p.ts, dtype=np.float64)
    reward = np.asarray(p.reward, dtype=np.float64)
    start: float | None = None
    end: float | None = None
    if n:
        start, end = float(ts.min()), float(ts.max())
        edges = np.linspace(start, end, buckets + 1) if end > start else np.array([start, start])
    else:
        notes.append("no data: the log holds no decisions (check the directory, or the reward window and "
                     "activations: deferred decisions never activated are left out)")
        edges = np.array([0.0, 0.0])
    b = len(edges) - 1
    bucket = _bucket_index(ts, edges)
    if n and p.observed == 0:
        notes.append(f"no data on rewards: no decision has an outcome in the window; every reward is the "
                     f"default ({default_reward:g})")
    if n and not p.units:
        notes.append("no units: the log's decisions carry no unit id")
    headline = Headline(
        decisions=n,
        units=len(p.units),
        start=start,
        end=end,
        span_seconds=(end - start) if start is not None and end is not None else 0.0,
        observed=p.observed,
        reward_sum=math.fsum(p.reward),
        reward_rate=math.fsum(p.reward) / n if n else None,
        observed_rate=p.observed / n if n else None,
        arms=len(p.arm_ids),
        experiments=tuple(sorted(p.variants)),
    )

    series: list[RewardSeries] = []
    if n:
        if not p.variants:
            series.append(_series(None, "all decisions", bucket, reward, b, level))
        for name in sorted(p.variants):
            assigned = p.variants[name]
            idx = np.fromiter(assigned.keys(), dtype=np.intp, count=len(assigned))
            labels = list(assigned.values())
            for variant in sorted(set(labels)):
                sel = idx[np.array([v == variant for v in labels])]
                series.append(_series(name, variant, bucket[sel], reward[sel], b, level))

    arm_idx = np.asarray(p.arm, dtype=np.intp)
    counts = np.zeros((len(p.arm_ids), b), dtype=np.int64)
    if n:
        np.add.at(counts, (arm_idx, bucket), 1)
    arms = ArmShares(tuple(p.arm_ids), tuple(tuple(int(v) for v in row) for row in counts))

    ope = _ope(p.examples, candidates, level, notes)
    section = _experiments(p.examples, default_reward, level, bool(p.variants), defined)
    apprentice = _apprentice(log, reward_window, default_reward, level, p, bucket, b)
    return ReportData(
        log=os.fspath(log) if isinstance(log, (str, os.PathLike)) else ", ".join(os.fspath(x) for x in log),
        generated=datetime.now(timezone.utc).timestamp(),
        level=level,
        reward_window=window,
        default_reward=float(default_reward),
        headline=headline,
        edges=tuple(float(e) for e in edges),
        rewards=tuple(series),
        arms=arms,
        ope=ope,
        experiments=section,
        apprentice=apprentice,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- rendering

SECTIONS = (
    "Headline numbers",
    "Reward over time",
    "Arm shares over time",
    "Off-policy estimates",
    "Importance weights",
    "Experiments: SRM and lift",
    "Apprentice agreement",
)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ddd;padding:.25em .6em;
text-align:right}th{background:#f4f4f4}td.l,th.l{text-align:left}
img{max-width:100%;height:auto;display:block;margin:.6em 0}.note{color:#8a5a00;background:#fff7e0;
padding:.4em .7em;border-left:3px solid #e0a800;margin:.4em 0}.alert{color:#a00;font-weight:bold}
.ok{color:#070}.meta{color:#666;font-size:.85em}
"""


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "–"
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.{digits}g}"
    return html.escape(str(x))


def _fmt_bounds(iv: Bounds | None) -> str:
    if iv is None or iv.low is None or iv.high is None:
        return "–"
    return f"[{_fmt(iv.low)}, {_fmt(iv.high)}]"


def _fmt_time(t: float | None) -> str:
    if t is None:
        return "–"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _fmt_span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    if seconds < 172800:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} days"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1) -> str:
    """An HTML table; the first ``left`` columns are left-aligned (names)."""
    def cell(tag: str, j: int, v: Any) -> str:
        cls = ' class="l"' if j < left else ""
        return f"<{tag}{cls}>{v if isinstance(v, _Raw) else _fmt(v)}</{tag}>"

    head = "".join(cell("th", j, h) for j, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", j, v) for j, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Raw(str):
    """Table cell text that is already HTML."""


def _notes(notes: Iterable[str]) -> str:
    return "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)


class _Plots:
    """Makes the report's figures on matplotlib's Agg canvas (no pyplot: no global state, no display)."""

    def __init__(self) -> None:
        _need("matplotlib")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self._figure = Figure
        self._canvas = FigureCanvasAgg

    def figure(self, width: float = 10.0, height: float = 4.0, rows: int = 1) -> Any:
        fig = self._figure(figsize=(width, height), dpi=100, layout="constrained")
        self._canvas(fig)
        return fig

    @staticmethod
    def png(fig: Any) -> str:
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        return f'<img src="data:image/png;base64,{data}" alt="">'

    @staticmethod
    def time_axis(ax: Any) -> None:
        import matplotlib.dates as mdates

        locator = mdates.AutoDateLocator(minticks=3, maxticks=8)  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
        ax.grid(True, alpha=0.3)


def _mids(edges: Sequence[float]) -> list[datetime]:
    e = list(edges)
    return [datetime.fromtimestamp((e[i] + e[i + 1]) / 2, timezone.utc) for i in range(len(e) - 1)]


def _section_headline(d: ReportData) -> str:
    h = d.headline
    rows = [
        ("decisions", h.decisions),
        ("units", h.units),
        ("arms chosen", h.arms),
        ("first decision", _fmt_time(h.start)),
        ("last decision", _fmt_time(h.end)),
        ("span", _fmt_span(h.span_seconds)),
        ("decisions with an outcome", h.observed),
        ("share with an outcome", h.observed_rate),
        ("reward sum", h.reward_sum),
        ("reward rate (mean per decision)", h.reward_rate),
        ("experiments", ", ".join(h.experiments) or "none"),
        ("reward window", "none" if d.reward_window is None else _fmt_span(d.reward_window)),
    ]
    return _table(("figure", "value"), rows)


def _section_rewards(d: ReportData, plots: _Plots | None) -> str:
    if not d.rewards:
        return _notes(["no data: the log holds no decisions"])
    out = []
    if plots is not None:
        groups: dict[str | None, list[RewardSeries]] = {}
        for s in d.rewards:
            groups.setdefault(s.experiment, []).append(s)
        shown = list(groups.items())[:MAX_EXPERIMENTS_PLOTTED]
        fig = plots.figure(10, 3.2 * len(shown))
        axes = fig.subplots(len(shown), 1, squeeze=False, sharex=True)[:, 0]
        x = _mids(d.edges)
        for ax, (exp, ss) in zip(axes, shown):
            for s in ss:
                y = [math.nan if v is None else v for v in s.mean]
                lo = [math.nan if v is None else v for v in s.low]
                hi = [math.nan if v is None else v for v in s.high]
                (line,) = ax.plot(x, y, marker="o", markersize=3, label=f"{s.variant} (n={sum(s.decisions):,})")
                ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
            ax.set_title(f"experiment {exp}" if exp is not None else "every decision", loc="left", fontsize=10)
            ax.set_ylabel("mean reward / decision")
            ax.legend(fontsize=8, loc="best")
            plots.time_axis(ax)
        fig.suptitle(f"Reward over time ({d.level:.0%} Gaussian intervals)", fontsize=11)
        out.append(plots.png(fig))
        if len(groups) > MAX_EXPERIMENTS_PLOTTED:
            out.append(_notes([f"plotted the first {MAX_EXPERIMENTS_PLOTTED} of {len(groups)} experiments"]))
    rows = [
        (s.experiment or "–", s.variant, sum(s.decisions), math.fsum(s.reward_sum),
         math.fsum(s.reward_sum) / max(1, sum(s.decisions)))
        for s in d.rewards
    ]
    out.append(_table(("experiment", "variant", "decisions", "reward sum", "mean reward"), rows, left=2))
    return "".join(out)


def _section_arms(d: ReportData, plots: _Plots | None) -> str:
    a = d.arms
    if not a.arms:
        return _notes(["no data: the log holds no decisions"])
    counts = np.asarray(a.counts, dtype=np.float64)
    totals = counts.sum(axis=1)
    order = np.argsort(-totals, kind="stable")
    out = []
    if plots is not None:
        top = order[:MAX_ARMS_PLOTTED]
        stack = [counts[i] for i in top]
        labels = [a.arms[i] for i in top]
        if len(order) > MAX_ARMS_PLOTTED:
            stack.append(counts[order[MAX_ARMS_PLOTTED:]].sum(axis=0))
            labels.append(f"other ({len(order) - MAX_ARMS_PLOTTED} arms)")
        per_bucket = counts.sum(axis=0)
        shares = np.array(stack) / np.where(per_bucket > 0, per_bucket, 1)
        fig = plots.figure(10, 4)
        ax = fig.add_subplot()
        x = _mids(d.edges)
        if len(x) == 1:  # one bucket (every decision at one instant): a bar, not an area
            bottom = 0.0
            for lab, s in zip(labels, shares[:, 0]):
                ax.bar([0], [s], bottom=bottom, label=lab)
                bottom += s
            ax.set_xticks([0], [_fmt_time(d.edges[0])])
        else:
            ax.stackplot(x, shares, labels=labels, alpha=0.85)
            plots.time_axis(ax)
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of decisions")
        ax.set_title("Arm shares over time (the arm taken)", loc="left", fontsize=11)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
        out.append(plots.png(fig))
    n = float(totals.sum())
    rows = [(a.arms[i], int(totals[i]), totals[i] / n) for i in order]
    out.append(_table(("arm", "decisions", "share"), rows))
    return "".join(out)


def _section_ope(d: ReportData, plots: _Plots | None) -> str:
    o = d.ope
    if o is None:
        return _notes(["no data: off-policy evaluation needs logged decisions"])
    out = [f'<p class="meta">Estimators IPS, SNIPS and DR with {d.level:.0%} Gaussian intervals; DR\'s reward '
           f"model: {html.escape(o.reward_model)}. The logged policy's IPS is its on-policy mean reward.</p>"]
    if plots is not None:
        fig = plots.figure(10, 1.0 + 0.9 * len(o.candidates))
        ax = fig.add_subplot()
        k = len(ESTIMATORS)
        colors = {"ips": "C0", "snips": "C1", "dr": "C2"}
        for ci, c in enumerate(o.candidates):
            for ei, e in enumerate(c.estimates):
                if e.value is None:
                    continue
                y = ci + (ei - (k - 1) / 2) * 0.22
                lo, hi = e.interval.low, e.interval.high
                err = ([[e.value - lo], [hi - e.value]] if lo is not None and hi is not None else None)
                ax.errorbar([e.value], [y], xerr=err, fmt="o", color=colors.get(e.estimator, "C3"), capsize=3,
                            markersize=4, label=e.estimator.upper() if ci == 0 else None)
        ax.set_yticks(range(len(o.candidates)), [c.name for c in o.candidates])
        ax.invert_yaxis()
        ax.set_xlabel("estimated mean reward per decision")
        ax.set_title("Off-policy estimates", loc="left", fontsize=11)
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
        out.append(plots.png(fig))
    rows = []
    for c in o.candidates:
        for e in c.estimates:
            rows.append((c.name, e.estimator.upper(), e.value, _Raw(_fmt_bounds(e.interval))))
    out.append(_table(("candidate", "estimator", "value", f"{d.level:.0%} interval"), rows, left=2))
    out.append(_notes([f"{c.name}: {w}" for c in o.candidates for w in c.warnings]))
    out.append(_notes(o.notes))
    return "".join(out)


def _section_weights(d: ReportData, plots: _Plots | None) -> str:
    o = d.ope
    if o is None:
        return _notes(["no data: importance weights need logged decisions"])
    out = []
    shown = [c for c in o.candidates if c.kind != "logged"]  # the logged policy's weights are all 1
    if plots is not None and shown:
        fig = plots.figure(10, 4)
        ax = fig.add_subplot()
        edges = np.asarray(o.weight_edges)
        for c in shown:
            ax.stairs(np.asarray(c.weight_counts, dtype=float), edges, label=f"{c.name} (ESS {c.ess:,.0f})",
                      linewidth=1.5)
        ax.set_xscale("log")
        ax.set_xlabel("importance weight  π(a|x) / μ(a|x)  (positive weights; log scale)")
        ax.set_ylabel("decisions")
        ax.axvline(1.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_title("Importance-weight histogram", loc="left", fontsize=11)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        out.append(plots.png(fig))
    rows = [(c.name, c.n, c.ess, c.ess / c.n if c.n else None, c.max_weight, c.zero_weights, c.unexplored_mass)
            for c in o.candidates]
    out.append(_table(("candidate", "decisions", "ESS", "ESS / n", "max weight", "zero weights",
                       "unexplored mass"), rows))
    return "".join(out)


def _section_experiments(d: ReportData, plots: _Plots | None) -> str:
    e = d.experiments
    if not e.available or not e.experiments:
        return _notes(e.notes or ["no data: no experiment analyses"])
    out = []
    with_lifts = [x for x in e.experiments if x.lifts]
    if plots is not None and with_lifts:
        n_rows = sum(len(x.lifts) for x in with_lifts)
        fig = plots.figure(10, 1.2 + 0.6 * n_rows + 0.4 * len(with_lifts))
        ax = fig.add_subplot()
        labels = []
        y = 0
        for x in with_lifts:
            for lift in x.lifts:
                iv = lift.absolute_interval
                if lift.absolute is not None:
                    err = None
                    if iv is not None and iv.low is not None and iv.high is not None:
                        err = [[lift.absolute - iv.low], [iv.high - lift.absolute]]
                    color = "C3" if x.srm is not None and x.srm.alert else "C0"
                    ax.errorbar([lift.absolute], [y], xerr=err, fmt="o", color=color, capsize=4)
                labels.append(f"{x.experiment}: {lift.variant} vs {lift.control}")
                y += 1
        ax.axvline(0.0, color="grey", linewidth=0.8)
        ax.set_yticks(range(len(labels)), labels)
        ax.invert_yaxis()
        ax.set_xlabel(f"absolute lift, variant - control ({d.level:.0%} interval; red: SRM alert)")
        ax.set_title("Lift over control", loc="left", fontsize=11)
        ax.grid(True, axis="x", alpha=0.3)
        out.append(plots.png(fig))
    for x in e.experiments:
        out.append(f"<h3>{html.escape(x.experiment)} <span class=\"meta\">(control: {html.escape(x.control)})</span>"
                   "</h3>")
        if x.srm is not None:
            s = x.srm
            if not s.checked:
                status = _Raw('<span class="meta">not checked</span>')
            elif s.alert:
                status = _Raw('<span class="alert">SRM ALERT</span>')
            else:
                status = _Raw('<span class="ok">ok</span>')
            out.append(_table(("SRM", "chi²", "p-value", "observed", "expected"), [(
                status, s.chi2, s.p_value,
                ", ".join(f"{k}: {v:,}" for k, v in s.observed.items()),
                ", ".join(f"{k}: {v:,.1f}" for k, v in s.expected.items()))]))
        out.append(_table(
            ("variant", "units", "decisions", "reward sum", "mean / unit", "interval", "mean / decision",
             "interval", "rate"),
            [(v.variant, v.units, v.decisions, v.reward_sum, v.mean_per_unit, _Raw(_fmt_bounds(v.interval_per_unit)),
              v.mean_per_decision, _Raw(_fmt_bounds(v.interval_per_decision)), v.rate) for v in x.variants]))
        if x.lifts:
            out.append(_table(
                ("variant", "control", "absolute lift", "interval", "relative lift", "interval", "p-value", "CUPED"),
                [(lift.variant, lift.control, lift.absolute, _Raw(_fmt_bounds(lift.absolute_interval)),
                  lift.relative, _Raw(_fmt_bounds(lift.relative_interval)), lift.p_value, lift.cuped)
                 for lift in x.lifts], left=2))
        out.append(_notes(x.notes))
    return "".join(out)


def _wilson(k: int, n: int, z: float) -> tuple[float, float]:
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return mid - half, mid + half


def _section_apprentice(d: ReportData, plots: _Plots | None) -> str:
    a = d.apprentice
    out = []
    total = sum(a.decisions)
    if plots is not None and total:
        z = _z(d.level)
        x = _mids(d.edges)
        rate = [k / n if n else math.nan for k, n in zip(a.agreements, a.decisions)]
        bands = [_wilson(k, n, z) if n else (math.nan, math.nan) for k, n in zip(a.agreements, a.decisions)]
        fig = plots.figure(10, 3.5)
        ax = fig.add_subplot()
        ax.plot(x, rate, marker="o", markersize=3, label="agreement")
        ax.fill_between(x, [b[0] for b in bands], [b[1] for b in bands], alpha=0.2, linewidth=0)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("learned pick = pick taken")
        ax.set_title(f"Apprentice agreement over time ({d.level:.0%} Wilson intervals)", loc="left", fontsize=11)
        plots.time_axis(ax)
        out.append(plots.png(fig))
    if total:
        out.append(_table(("apprentice decisions", "agreements", "agreement"),
                          [(total, sum(a.agreements), sum(a.agreements) / total)]))
    if a.summary is not None:
        s = a.summary
        rows = []
        for f in _SUMMARY_FIELDS:
            if f == "notes":
                continue
            v = s.get(f)
            if isinstance(v, dict) and "low" in v and "high" in v:  # an Interval
                v = _Raw(_fmt_bounds(Bounds(_num(v.get("low")), _num(v.get("high")), 0.0, "")))
            elif isinstance(v, dict) and "value" in v:  # an Estimate: value, then its Gaussian interval
                g = v.get("gaussian")
                iv: dict[str, Any] = g if isinstance(g, dict) else {}
                bounds = _fmt_bounds(Bounds(_num(iv.get("low")), _num(iv.get("high")), 0.0, ""))
                label = f" ({html.escape(str(v['estimator']))})" if v.get("estimator") else ""
                v = _Raw(f"{_fmt(_num(v.get('value')))} {bounds}{label}")
            elif f == "switched_at" and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 1e8:
                v = _fmt_time(float(v))
            elif isinstance(v, (dict, list)):
                v = msgspec.json.encode(v).decode()
            rows.append((f.replace("_", " "), v))
        out.append(_table(("figure", "value"), rows))
        out.append(_notes(str(n) for n in (s.get("notes") or ())))
    out.append(_notes(a.notes))
    if not total and not a.notes:
        out.append(_notes(["no data: the log has no apprentice decisions"]))
    return "".join(out)


def render_html(data: ReportData) -> str:
    """The report as one self-contained HTML page (every plot an embedded PNG).

    Needs matplotlib (``pip install nba[report]``).
    """
    plots = _Plots()
    n = data.headline.decisions
    bodies = [
        _section_headline(data),
        _section_rewards(data, plots if n else None),
        _section_arms(data, plots if n else None),
        _section_ope(data, plots if n else None),
        _section_weights(data, plots if n else None),
        _section_experiments(data, plots),
        _section_apprentice(data, plots),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>nba report: {html.escape(data.log)}</title><style>{_CSS}</style></head><body>",
        f"<h1>nba report</h1><p class=\"meta\">log: {html.escape(data.log)}<br>generated "
        f"{_fmt_time(data.generated)}; intervals at {data.level:.0%}; default reward "
        f"{_fmt(data.default_reward)}</p>",
        _notes(data.notes),
    ]
    for i, (title, body) in enumerate(zip(SECTIONS, bodies), 1):
        parts.append(f'<section id="s{i}"><h2>{i}. {title}</h2>{body}</section>')
    parts.append("</body></html>")
    return "\n".join(parts)


def write(
    log: LogPaths,
    out: str | os.PathLike[str],
    *,
    reward_window: timedelta | float | None = None,
    default_reward: float = 0.0,
    candidates: Mapping[str, Candidate] | None = None,
    experiments: Iterable[Experiment] = (),
    level: float = 0.95,
    buckets: int = 20,
    progress: bool = False,
    format: str | None = None,
) -> ReportData:
    """Build the report of ``log`` and write it to ``out`` as ``format``, "html" or "json" (``msgspec.json``
    of the ``ReportData``); by default JSON if ``out`` ends in ``.json``, else HTML.

    Returns the ``ReportData``; the other arguments are ``build``'s.
    """
    path = os.fspath(out)
    if format is None:
        format = "json" if path.endswith(".json") else "html"
    if format not in ("html", "json"):
        raise ConfigError(f"format={format!r} must be 'html' or 'json' (or None: by the file name)")
    if format == "html":
        _need("matplotlib")  # before the pass over the log, not after it
    data = build(log, reward_window=reward_window, default_reward=default_reward, candidates=candidates,
                 experiments=experiments, level=level, buckets=buckets, progress=progress)
    if format == "json":
        payload = msgspec.json.encode(data)
    else:
        payload = render_html(data).encode("utf-8")
    from nba._files import replace_atomically

    try:
        replace_atomically(path, payload)
    except OSError as e:
        raise LogError(f"cannot write the report to {path!r}: {e.strerror or e}") from e
    return data
