"""Experiment analysis: what an A/B test logged by nba says, with GrowthBook's frequentist statistics.

``analyze`` reads a decision log (or ``nba.log.join`` output) in one pass, keeps
one accumulator per randomisation unit and experiment, and reports per variant
the reward per unit, the reward per decision (a ratio metric) and the reward
rate; per non-control variant its lift over the control (absolute by Welch's
t-test, relative by the delta method, optionally CUPED-adjusted with a
pre-period covariate); a sample-ratio-mismatch check; and per chosen arm the
decisions and mean reward.

The formulas are the textbook ones GrowthBook's frequentist engine uses:

* Welch: ``diff = mean_b - mean_a``, ``se^2 = s_a^2/n_a + s_b^2/n_b``, degrees of
  freedom by Welch-Satterthwaite, two-sided p from Student's t (equal to
  ``scipy.stats.ttest_ind(b, a, equal_var=False)``).
* Relative lift ``mean_b / mean_a - 1`` with variance
  ``s_b^2/(n_b mean_a^2) + mean_b^2 s_a^2/(n_a mean_a^4)``, t interval at Welch's df.
* CUPED: ``theta = cov(Y, X) / var(X)`` pooled over both groups,
  ``Y' = Y - theta (X - mean X)``; the lift is computed on ``Y'``, the relative one
  over the control's unadjusted mean with the full delta method (the covariance of
  the adjusted difference with that mean included; without CUPED it is the formula above).
* SRM: Pearson's chi-square goodness of fit of the units per variant against the
  expected weights, alert when ``p < threshold``.

The t and chi-square distributions come from scipy, imported when first needed:
install the ``analysis`` extra (``pip install nba[analysis]``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from nba.errors import ConfigError, SchemaError
from nba.evaluation import Interval
from nba.experiments import Experiment
from nba.log.reader import joined

if TYPE_CHECKING:
    from nba.log.reader import JoinedExample

__all__ = [
    "SRM",
    "ArmStats",
    "ExperimentAnalysis",
    "Lift",
    "VariantStats",
    "Welch",
    "analyze",
    "lift",
    "srm",
    "welch",
]

#: What a unit's pre-period covariate is when ``covariate`` does not know the unit (GrowthBook fills 0 too).
MISSING_COVARIATE = 0.0

Covariate = Mapping[Any, float] | Callable[[Any], "float | None"]


# --------------------------------------------------------------------------- results


class Welch(msgspec.Struct, frozen=True):
    """Welch's unequal-variance t-test of ``mean b - mean a``: estimate, standard error, df, t, two-sided p."""

    diff: float
    se: float
    df: float
    t: float
    p_value: float
    interval: Interval


class SRM(msgspec.Struct, frozen=True):
    """Sample-ratio-mismatch check: units per variant against the counts the weights expect.

    ``checked`` is False when a variant with weight has fewer than ``min_units``
    units (too early to say, as GrowthBook skips the check); then ``alert`` is False.
    Variants with weight 0 are left out of the test (as GrowthBook does).
    """

    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float
    p_value: float
    alert: bool
    checked: bool


class VariantStats(msgspec.Struct, frozen=True):
    """One variant's units, decisions and reward: per unit (the unit's sum), per decision (a ratio), as a rate.

    ``interval_per_decision`` is the delta method's across units (decisions of one
    unit are not independent); ``rate`` is the share of decisions with reward > 0.
    """

    variant: str
    units: int
    decisions: int
    reward_sum: float
    mean_per_unit: float
    interval_per_unit: Interval
    mean_per_decision: float
    interval_per_decision: Interval
    rate: float


class Lift(msgspec.Struct, frozen=True):
    """``variant`` against ``control`` on reward per unit: absolute (Welch) and relative (delta method).

    ``p_value`` is Welch's two-sided p of the absolute difference; ``cuped`` says the
    per-unit rewards were adjusted with a pre-period covariate first.
    """

    variant: str
    control: str
    absolute: float
    absolute_interval: Interval
    relative: float
    relative_interval: Interval
    p_value: float
    cuped: bool


class ArmStats(msgspec.Struct, frozen=True):
    """Decisions of one variant that took ``arm`` first, and their mean reward.

    The interval treats the decisions as independent (a unit's decisions are not:
    read it as a guide); ``arm`` is ``""`` for decisions that chose nothing.
    """

    variant: str
    arm: str
    decisions: int
    mean: float
    interval: Interval


class ExperimentAnalysis(msgspec.Struct, frozen=True):
    """The analysis of one experiment: variants, lifts against the control, SRM, arms, and notes on caveats."""

    experiment: str
    control: str
    variants: tuple[VariantStats, ...]
    lifts: tuple[Lift, ...]
    srm: SRM
    arms: tuple[ArmStats, ...]
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """A plain-text table for a terminal: variants, lifts, arms, SRM and notes."""
        lines = [f"experiment {self.experiment!r} (control {self.control!r})", ""]
        head = f"{'variant':<16}{'units':>9}{'decisions':>11}{'per unit':>11}{'  interval':<24}"
        head += f"{'per decision':>13}{'rate':>8}"
        lines.append(head)
        for v in self.variants:
            lines.append(
                f"{v.variant[:15]:<16}{v.units:>9}{v.decisions:>11}{_num(v.mean_per_unit):>11}"
                f"  {_iv(v.interval_per_unit):<22}{_num(v.mean_per_decision):>13}{_num(v.rate, 3):>8}"
            )
        if self.lifts:
            lines += ["", f"{'lift vs ' + self.control:<24}{'absolute':>11}{'  interval':<24}"
                      f"{'relative':>10}{'  interval':<24}{'p':>9}"]
            for lf in self.lifts:
                rel_iv = f"[{_pct(lf.relative_interval.low)}, {_pct(lf.relative_interval.high)}]"
                name = lf.variant[:18] + (" (CUPED)" if lf.cuped else "")
                lines.append(
                    f"{name:<24}{_num(lf.absolute):>11}  {_iv(lf.absolute_interval):<22}"
                    f"{_pct(lf.relative):>10}  {rel_iv:<22}{_num(lf.p_value, 4):>9}"
                )
        if self.arms:
            lines += ["", f"{'arm (first chosen)':<28}{'decisions':>11}{'mean':>11}  interval"]
            for a in self.arms:
                name = f"{a.variant[:12]} / {a.arm[:12] or '(none)'}"
                lines.append(f"{name:<28}{a.decisions:>11}{_num(a.mean):>11}  {_iv(a.interval)}")
        s = self.srm
        verdict = "ALERT" if s.alert else ("ok" if s.checked else "not checked")
        lines += ["", f"SRM: chi2 {_num(s.chi2)}, p {_num(s.p_value, 4)}: {verdict}"]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _num(x: float, digits: int = 4) -> str:
    return "nan" if math.isnan(x) else f"{x:.{digits}g}"


def _pct(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:+.2%}"


def _iv(iv: Interval) -> str:
    return f"[{_num(iv.low)}, {_num(iv.high)}]"


# --------------------------------------------------------------------------- distributions (scipy, lazily)


def _stats() -> Any:
    try:
        from scipy import stats  # type: ignore[import-untyped]
    except ImportError:
        raise ConfigError(
            "nba.analysis needs scipy for the t and chi-square distributions; install the analysis extra: "
            "pip install 'nba[analysis]'"
        ) from None
    return stats


def _check_level(level: Any) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 < level < 1.0:
        raise ConfigError(f"level={level!r} must be a number strictly between 0 and 1, e.g. 0.95")
    return float(level)


_NAN_INTERVAL = (math.nan, math.nan)


def _t_interval(est: float, se: float, df: float, level: float, method: str) -> Interval:
    if not (math.isfinite(est) and math.isfinite(se) and df > 0):
        return Interval(math.nan, math.nan, level, method)
    q = float(_stats().t.ppf(0.5 + level / 2, df))
    # est +- q*se written as scipy's confidence_interval writes it, so the two agree to rounding
    return Interval(est - q * se, est + q * se, level, method)


# --------------------------------------------------------------------------- Welch


def _sample(x: Any, what: str) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise SchemaError(f"{what} must be a 1-d sequence of numbers, got {type(x).__name__}") from None
    if a.ndim != 1:
        raise SchemaError(f"{what} must be 1-d, got shape {a.shape}")
    if a.size < 2:
        raise SchemaError(f"{what} needs at least 2 observations for a variance, got {a.size}")
    if not np.all(np.isfinite(a)):
        raise SchemaError(f"{what} must be finite; element {int(np.argmin(np.isfinite(a)))} is not")
    return a


def _welch(mean_a: float, var_a: float, n_a: int, mean_b: float, var_b: float, n_b: int, level: float) -> Welch:
    """Welch's test from summary statistics (sample variances, ddof 1); NaN when the variance is 0 or n < 2."""
    diff = mean_b - mean_a
    if n_a < 2 or n_b < 2:
        nan = math.nan
        return Welch(diff if n_a and n_b else nan, nan, nan, nan, nan, Interval(nan, nan, level, "welch-t"))
    vn_a, vn_b = var_a / n_a, var_b / n_b
    s = vn_a + vn_b
    if not s > 0:
        nan = math.nan
        return Welch(diff, 0.0, nan, nan, nan, Interval(nan, nan, level, "welch-t"))
    df = s * s / (vn_a * vn_a / (n_a - 1) + vn_b * vn_b / (n_b - 1))
    se = math.sqrt(s)
    t = diff / se
    p = float(2.0 * _stats().t.sf(abs(t), df))
    return Welch(diff, se, df, t, p, _t_interval(diff, se, df, level, "welch-t"))


def welch(a: Any, b: Any, *, level: float = 0.95) -> Welch:
    """Welch's t-test of ``mean(b) - mean(a)`` (two-sided), with its t interval at ``level``.

    Equals ``scipy.stats.ttest_ind(b, a, equal_var=False)``: statistic, p-value, df
    and ``confidence_interval(level)``. Each sample needs 2 or more finite values;
    when both are constant the test is undefined and its fields are NaN.
    """
    level = _check_level(level)
    xa, xb = _sample(a, "sample a"), _sample(b, "sample b")
    return _welch(
        float(np.mean(xa)), float(np.var(xa, ddof=1)), xa.size,
        float(np.mean(xb)), float(np.var(xb, ddof=1)), xb.size, level,
    )  # fmt: skip


# --------------------------------------------------------------------------- lift (absolute, relative, CUPED)


def _relative(diff: float, var: float, raw_mean_a: float, df: float, level: float) -> tuple[float, Interval]:
    """``diff / mean_a`` and its t interval at ``df`` from the delta method's ``var``; NaN when mean_a is 0."""
    if raw_mean_a == 0.0 or math.isnan(raw_mean_a):
        return math.nan, Interval(math.nan, math.nan, level, "delta-t")
    rel = diff / raw_mean_a
    se = math.sqrt(var) if var >= 0 else math.nan  # NaN var (too few units): NaN interval
    return rel, _t_interval(rel, se, df, level, "delta-t")


def _cuped_theta(y: np.ndarray, x: np.ndarray) -> float:
    """``cov(Y, X) / var(X)`` over the pooled sample; 0 when X does not vary (nothing to adjust by)."""
    xc = x - x.mean()
    sxx = float(xc @ xc)
    return float((y - y.mean()) @ xc) / sxx if sxx > 0 else 0.0


def _lift(
    ya: np.ndarray, yb: np.ndarray, xa: np.ndarray | None, xb: np.ndarray | None,
    level: float, variant: str, control: str,
) -> tuple[Lift, float]:  # fmt: skip
    """The lift of ``yb`` over ``ya``, CUPED-adjusted when covariates are given; also theta (0 without)."""
    na, nb = ya.size, yb.size
    raw_a = float(ya.mean()) if na else math.nan
    raw_b = float(yb.mean()) if nb else math.nan
    raw_ya = ya
    theta = 0.0
    cuped = xa is not None and xb is not None
    if xa is not None and xb is not None:
        x = np.concatenate([xa, xb])
        theta = _cuped_theta(np.concatenate([ya, yb]), x)
        mx = float(x.mean()) if x.size else 0.0
        ya = ya - theta * (xa - mx)
        yb = yb - theta * (xb - mx)
    ma = float(ya.mean()) if na else math.nan
    mb = float(yb.mean()) if nb else math.nan
    va = float(np.var(ya, ddof=1)) if na > 1 else math.nan
    vb = float(np.var(yb, ddof=1)) if nb > 1 else math.nan
    w = _welch(ma, va, na, mb, vb, nb, level)
    var_rel = math.nan
    if na > 1 and nb > 1 and raw_a != 0.0:
        m2 = raw_a * raw_a
        if not cuped:  # GrowthBook's: var_b/(n_b mean_a^2) + mean_b^2 var_a/(n_a mean_a^4)
            var_rel = vb / (m2 * nb) + va * (raw_b / raw_a) ** 2 / (m2 * na)
        else:
            # The delta method for (mean Y'_b - mean Y'_a) / mean Y_a: the numerator's variance, the
            # denominator's (of the raw control), and their covariance -cov(Y'_a, Y_a)/n_a. Without
            # CUPED it is GrowthBook's formula above; GrowthBook's shortcut (adjusted variances in
            # that formula) drops the denominator's extra variance and under-covers large lifts.
            d = w.diff
            var_raw_a = float(np.var(raw_ya, ddof=1))
            cov_a = float(np.cov(ya, raw_ya, ddof=1)[0, 1])
            var_rel = (va / na + vb / nb) / m2 + d * d * var_raw_a / (na * m2 * m2) + 2 * d * cov_a / (na * m2 * raw_a)
    rel, rel_iv = _relative(w.diff, var_rel, raw_a, w.df, level)
    return Lift(variant, control, w.diff, w.interval, rel, rel_iv, w.p_value, cuped), theta


def lift(
    control: Any,
    treatment: Any,
    *,
    covariate_control: Any = None,
    covariate_treatment: Any = None,
    level: float = 0.95,
    variant: str = "treatment",
    control_name: str = "control",
) -> Lift:
    """The lift of ``treatment`` over ``control`` (one value per unit): absolute by Welch, relative by delta method.

    With both ``covariate_*`` (each unit's pre-period value, aligned with its
    sample) the values are CUPED-adjusted first (``theta`` pooled over both groups).
    """
    level = _check_level(level)
    ya, yb = _sample(control, "control"), _sample(treatment, "treatment")
    if (covariate_control is None) != (covariate_treatment is None):
        raise ConfigError("CUPED needs both covariate_control and covariate_treatment, or neither")
    xa = xb = None
    if covariate_control is not None:
        xa, xb = _sample(covariate_control, "covariate_control"), _sample(covariate_treatment, "covariate_treatment")
        if xa.size != ya.size or xb.size != yb.size:
            raise SchemaError(
                f"covariates must align with their samples: control {ya.size} vs {xa.size}, "
                f"treatment {yb.size} vs {xb.size}"
            )
    return _lift(ya, yb, xa, xb, level, variant, control_name)[0]


# --------------------------------------------------------------------------- SRM


def srm(
    observed: Mapping[str, int], weights: Mapping[str, float], *, threshold: float = 0.001, min_units: int = 8
) -> SRM:
    """Chi-square goodness of fit of units per variant to ``weights`` (normalised); alert when ``p < threshold``.

    Every observed variant must have a weight; a weighted variant not observed
    counts 0. Equal to ``scipy.stats.chisquare(observed, expected)``.
    """
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold={threshold!r} must lie strictly between 0 and 1, e.g. 0.001")
    if isinstance(min_units, bool) or not isinstance(min_units, int) or min_units < 0:
        raise ConfigError(f"min_units={min_units!r} must be an int >= 0")
    unknown = sorted(set(observed) - set(weights))
    if unknown:
        raise ConfigError(f"SRM: observed variants {unknown} have no weight; weights name {sorted(weights)}")
    for name, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"SRM: weight of variant {name!r} must be a finite number >= 0, got {w!r}")
    obs: dict[str, int] = {}
    for name in weights:
        n = observed.get(name, 0)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise SchemaError(f"SRM: count of variant {name!r} must be an int >= 0, got {n!r}")
        obs[name] = int(n)
    live = [v for v, w in weights.items() if w > 0]
    total_w = sum(float(weights[v]) for v in live)
    total = sum(obs[v] for v in live)
    expected = {v: (total * float(weights[v]) / total_w if weights[v] > 0 else 0.0) for v in weights}
    if len(live) < 2 or total == 0:
        return SRM(obs, expected, 0.0, 1.0, False, False)
    chi2 = sum((obs[v] - expected[v]) ** 2 / expected[v] for v in live)
    p = float(_stats().chi2.sf(chi2, len(live) - 1))
    checked = all(obs[v] >= min_units for v in live)
    return SRM(obs, expected, float(chi2), p, checked and p < threshold, checked)


# --------------------------------------------------------------------------- analyze


class _Acc:
    """One experiment's accumulators: unit -> [variant, decisions, reward sum, rewarded decisions, mixed],
    (variant, arm) -> [decisions, sum and sum of squares of reward - first, first reward], unit-less decisions."""

    __slots__ = ("units", "arms", "anonymous")

    def __init__(self) -> None:
        self.units: dict[Any, list[Any]] = {}
        self.arms: dict[tuple[str, str], list[float]] = {}
        self.anonymous = 0


def _mean_interval(values: np.ndarray, level: float) -> tuple[float, Interval]:
    n = values.size
    if n == 0:
        return math.nan, Interval(math.nan, math.nan, level, "t")
    m = float(values.mean())
    if n < 2:
        return m, Interval(math.nan, math.nan, level, "t")
    return m, _t_interval(m, float(np.std(values, ddof=1)) / math.sqrt(n), n - 1, level, "t")


def _ratio_interval(y: np.ndarray, d: np.ndarray, level: float) -> tuple[float, Interval]:
    """``sum y / sum d`` with the delta method's variance across units."""
    n = y.size
    if n == 0 or d.sum() == 0:
        return math.nan, Interval(math.nan, math.nan, level, "delta-t")
    r = float(y.sum() / d.sum())
    if n < 2:
        return r, Interval(math.nan, math.nan, level, "delta-t")
    cov = np.cov(y, d, ddof=1)
    md = float(d.mean())
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (md * md * n)
    return r, _t_interval(r, math.sqrt(max(float(var), 0.0)), n - 1, level, "delta-t")


def _declared(
    experiments: Iterable[str | Experiment], weights: Mapping[str, Mapping[str, float]] | None
) -> tuple[dict[str, Experiment | None], dict[str, dict[str, float]]]:
    named: dict[str, Experiment | None] = {}
    wts: dict[str, dict[str, float]] = {}
    if isinstance(experiments, (str, Experiment)):
        experiments = (experiments,)
    for e in experiments:
        if isinstance(e, Experiment):
            named[e.name] = e
            wts[e.name] = dict(zip(e.variant_names, e.weights))
        elif isinstance(e, str) and e:
            named.setdefault(e, None)
        else:
            raise ConfigError(f"experiments must hold Experiment objects or experiment names, got {e!r}")
    for name, w in (weights or {}).items():
        if not isinstance(w, Mapping) or not w:
            raise ConfigError(f"weights[{name!r}] must map variant -> weight, got {w!r}")
        wts[name] = {str(k): v for k, v in w.items()}
    return named, wts


def analyze(
    log: str | os.PathLike[str] | Iterable[JoinedExample],
    *,
    experiments: Iterable[str | Experiment] = (),
    control: str | Mapping[str, str] | None = None,
    covariate: Covariate | None = None,
    level: float = 0.95,
    reward_window: Any = None,
    default_reward: float = 0.0,
    weights: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, ExperimentAnalysis]:
    """Analyse every experiment in a decision log: per-variant reward, lifts against the control, SRM, arms.

    ``log`` is a log directory (joined with ``reward_window`` and ``default_reward``)
    or ``nba.log.join`` output. Experiments are those in the decisions' ``variants``,
    or only those named in ``experiments`` (``Experiment`` objects also give the
    variation order and the weights SRM expects; ``weights={experiment: {variant:
    weight}}`` gives weights too; without either SRM assumes equal weights and a
    note says so). A named experiment with no decisions gets an analysis with zero
    units and a note; with none named, an empty log gives ``{}``.

    The randomisation unit is ``decision.unit``; a decision without one counts as
    its own unit. The metric is a unit's reward sum over its decisions in the
    experiment. A unit logged in two variants of one experiment is left out of it
    (its decisions still count in ``arms``), with a note. ``control`` (one variant
    name, or ``{experiment: variant}``) defaults to the Experiment's first variant,
    else the alphabetically first seen. ``covariate`` maps a unit to its pre-period
    value (a mapping, or a callable returning None when unknown); units it does not
    know get 0, and the lifts are CUPED-adjusted.
    """
    level = _check_level(level)
    named, wts = _declared(experiments, weights)
    if control is not None and not isinstance(control, (str, Mapping)):
        raise ConfigError(f"control must be a variant name or {{experiment: variant}}, got {control!r}")
    if covariate is not None and not (isinstance(covariate, Mapping) or callable(covariate)):
        raise ConfigError(f"covariate must map unit -> pre-period value (a Mapping or a callable), got {covariate!r}")
    only = set(named) if named else None

    accs: dict[str, _Acc] = {e: _Acc() for e in named}
    try:
        _accumulate(joined(log, reward_window=reward_window, default_reward=default_reward), accs, only)
    except AttributeError as e:
        raise SchemaError(
            f"log must yield nba.log.JoinedExample (a decision with its reward), got an item without {e.name!r}"
        ) from None

    out: dict[str, ExperimentAnalysis] = {}
    for exp in sorted(accs, key=lambda e: (e not in named, e)):
        out[exp] = _analyse_one(
            exp, named.get(exp), wts.get(exp), accs[exp], control, covariate, level
        )
    return out


def _accumulate(examples: Iterable[JoinedExample], accs: dict[str, _Acc], only: set[str] | None) -> None:
    """The one pass: every decision's reward into its unit's and its arm's accumulator, per experiment."""
    last_exp: str | None = None
    acc = _Acc()
    units, arms = acc.units, acc.arms
    for ex in examples:
        dec = ex.decision
        variants = dec.variants
        if not variants:
            continue
        reward = ex.reward
        unit = dec.unit
        chosen = dec.chosen
        arm = dec.actions[chosen[0]] if chosen else ""
        positive = reward > 0
        for exp, variant in variants.items():
            if exp != last_exp:  # one experiment per log is the common case: look its accumulator up once
                if only is not None and exp not in only:
                    continue
                got = accs.get(exp)
                if got is None:
                    got = accs[exp] = _Acc()
                acc, last_exp = got, exp
                units, arms = acc.units, acc.arms
            if unit is None:
                key: Any = ("\0event", dec.event_id)
                acc.anonymous += 1
            else:
                key = unit
            u = units.get(key)
            if u is None:
                units[key] = [variant, 1, reward, positive, False]
            else:
                if u[0] != variant:
                    u[4] = True
                u[1] += 1
                u[2] += reward
                u[3] += positive
            ak = (variant, arm)
            a = arms.get(ak)
            if a is None:
                arms[ak] = [1, 0.0, 0.0, reward]
            else:  # sums of reward - first reward: no cancellation in the variance of large, similar rewards
                dr = reward - a[3]
                a[0] += 1
                a[1] += dr
                a[2] += dr * dr


def _analyse_one(
    exp: str,
    declared: Experiment | None,
    weights: dict[str, float] | None,
    acc: _Acc,
    control: str | Mapping[str, str] | None,
    covariate: Covariate | None,
    level: float,
) -> ExperimentAnalysis:
    notes: list[str] = []
    units, arms, anonymous = acc.units, acc.arms, acc.anonymous
    seen = sorted({u[0] for u in units.values()} | {v for v, _ in arms})
    if declared is not None:
        order = list(declared.variant_names)
    elif weights is not None:
        order = list(weights)
    else:
        order = []
    extra = [v for v in seen if v not in order]
    if order and extra:
        raise SchemaError(
            f"experiment {exp!r}: the log has variants {extra} that its definition does not declare "
            f"({order}); pass the Experiment (or weights) as it ran"
        )
    order = order or seen

    if isinstance(control, Mapping):
        ctl = control.get(exp)
    else:
        ctl = control
    if ctl is not None:
        if ctl not in order:
            raise ConfigError(f"experiment {exp!r}: control {ctl!r} is not one of its variants {order}")
        notes.append(f"control {ctl!r} as given")
    elif order:
        ctl = order[0]
        how = "the experiment's first variant" if declared is not None or weights is not None else (
            "the alphabetically first variant seen")
        notes.append(f"control {ctl!r}: {how}")
    else:
        ctl = ""

    mixed = [k for k, u in units.items() if u[4]]
    for k in mixed:
        del units[k]
    if mixed:
        notes.append(
            f"{len(mixed)} unit(s) logged in more than one variant are left out (their decisions stay in arms)"
        )
    if anonymous:
        notes.append(f"{anonymous} decision(s) without a unit each count as their own unit")
    if not units:
        notes.append("no units in the log for this experiment: nothing to analyse")

    by_variant: dict[str, list[list[Any]]] = {v: [] for v in order}
    keys: dict[str, list[Any]] = {v: [] for v in order}
    for k, u in units.items():
        by_variant[u[0]].append(u)
        keys[u[0]].append(k)

    y: dict[str, np.ndarray] = {}
    stats: list[VariantStats] = []
    for v in order:
        us = by_variant[v]
        yv = np.fromiter((u[2] for u in us), np.float64, len(us))
        dv = np.fromiter((u[1] for u in us), np.float64, len(us))
        if not np.all(np.isfinite(yv)):
            raise SchemaError(f"experiment {exp!r}, variant {v!r}: rewards must be finite; a unit's sum is {yv.sum()}")
        y[v] = yv
        n_dec = int(dv.sum())
        m_unit, iv_unit = _mean_interval(yv, level)
        m_dec, iv_dec = _ratio_interval(yv, dv, level)
        rate = sum(u[3] for u in us) / n_dec if n_dec else math.nan
        stats.append(VariantStats(v, len(us), n_dec, float(yv.sum()), m_unit, iv_unit, m_dec, iv_dec, rate))
        if len(us) < 2:
            notes.append(f"variant {v!r} has {len(us)} unit(s): its intervals and lifts are undefined (NaN)")

    x: dict[str, np.ndarray] | None = None
    if covariate is not None:
        x, missing = _covariates(covariate, keys)
        if missing:
            notes.append(f"{missing} unit(s) have no pre-period covariate: CUPED uses {MISSING_COVARIATE} for them")
    lifts = []
    for v in order:
        if v == ctl:
            continue
        lf, theta = _lift(
            y[ctl], y[v], None if x is None else x[ctl], None if x is None else x[v], level, v, ctl
        )
        lifts.append(lf)
        if x is not None:
            notes.append(f"CUPED {v!r} vs {ctl!r}: theta {theta:.6g}")
        if y[ctl].size and y[ctl].mean() == 0.0:
            notes.append(f"{ctl!r} has mean 0 per unit: the relative lift of {v!r} is undefined (NaN)")

    if weights is None:
        weights = {v: 1.0 for v in order}
        if order:
            notes.append("SRM assumes equal weights (pass the Experiment or weights= to check the real split)")
    check = srm({s.variant: s.units for s in stats}, weights)
    for vs in stats:
        if vs.units and not weights.get(vs.variant, 0.0) > 0:
            notes.append(f"variant {vs.variant!r} has weight 0 but {vs.units} unit(s): left out of the SRM check")
    if check.alert:
        notes.append(f"sample ratio mismatch (p={check.p_value:.3g}): the split is not the configured one; "
                     "distrust the lifts until the assignment is explained")

    arm_stats = []
    vpos = {v: i for i, v in enumerate(order)}
    for (v, arm), (n, s, ss, shift) in sorted(arms.items(), key=lambda kv: (vpos.get(kv[0][0], len(vpos)), kv[0][1])):
        k = int(n)
        m = shift + s / k
        if k > 1:
            var = max((ss - s * s / k) / (k - 1), 0.0)
            iv = _t_interval(m, math.sqrt(var / k), k - 1, level, "t")
        else:
            iv = Interval(math.nan, math.nan, level, "t")
        arm_stats.append(ArmStats(v, arm, k, m, iv))
    return ExperimentAnalysis(exp, ctl, tuple(stats), tuple(lifts), check, tuple(arm_stats), tuple(notes))


def _covariates(covariate: Covariate, keys: Mapping[str, Sequence[Any]]) -> tuple[dict[str, np.ndarray], int]:
    get: Callable[[Any], Any] = covariate.get if isinstance(covariate, Mapping) else covariate
    missing = 0
    out: dict[str, np.ndarray] = {}
    for v, ks in keys.items():
        vals = np.empty(len(ks), dtype=np.float64)
        for i, k in enumerate(ks):
            c = None if isinstance(k, tuple) else get(k)  # a unit-less decision has no pre-period
            if c is None:
                missing += 1
                c = MISSING_COVARIATE
            elif isinstance(c, bool) or not isinstance(c, (int, float, np.number)) or not math.isfinite(c):
                raise SchemaError(f"covariate of unit {k!r} must be a finite number or None, got {c!r}")
            vals[i] = c
        out[v] = vals
    return out, missing
