"""Offline evaluation as Azure Personalizer offered it: compare policies on one log, discover better settings.

``compare`` puts, side by side on one log, the logged (online) policy's
on-policy mean, a baseline (the first offered action, an app-given arm, or a
function of the decision), uniform random over the offered actions and any
candidate policies, each estimated off-policy by ``nba.evaluation`` (DR with
Gaussian and bootstrap intervals, plus IPS and SNIPS). ``discover`` is
Personalizer's "optimisation discovery": it trains a small grid of VW learner
settings on the earlier part of the log (``nba.training.train_vw``) and ranks
them by DR on the later part. Both flag results from fewer than 50,000
decisions as low confidence, as Personalizer did.
"""

from __future__ import annotations

import itertools
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from nba.errors import ConfigError, SchemaError
from nba.evaluation import (
    DR,
    IPS,
    SNIPS,
    BanditData,
    Candidate,
    Estimate,
    LightGBMRewardModel,
    Report,
    RewardModel,
    RewardModelLike,
    estimate,
    from_joined,
)

if TYPE_CHECKING:
    from nba.base import Policy
    from nba.log.reader import JoinedExample
    from nba.log.records import DecisionRecord
    from nba.models.vw import VWModel

__all__ = [
    "Comparison",
    "ComparisonRow",
    "Discovery",
    "LOW_CONFIDENCE_DECISIONS",
    "Setting",
    "Trial",
    "compare",
    "discover",
    "vw_candidate",
]

#: Below this many decisions an offline result is flagged low confidence (Personalizer's threshold).
LOW_CONFIDENCE_DECISIONS = 50_000

_ESTIMATORS = (DR(), IPS(), SNIPS())

Baseline = str | Callable[["DecisionRecord"], "str | int"] | None


def _low_confidence_note(n: int, threshold: int) -> str:
    return (
        f"low confidence: {n} decisions, fewer than {threshold}; as Personalizer warned, with so few the "
        "intervals are wide and a difference between policies may not hold up; gather more traffic"
    )


# --------------------------------------------------------------------------- candidates


def vw_candidate(
    model: VWModel, examples: Iterable[JoinedExample], policy: Policy | None = None
) -> Callable[[DecisionRecord], np.ndarray]:
    """A candidate for joined logs: the pmf ``model`` with ``policy`` gives each decision's offered actions.

    Scores what the dsjson export gives VW (the decision's features, each action's
    catalogue features) with nba's VW scorer; the policy sees the negated costs
    (default ``EpsilonGreedy`` at the model's own epsilon, VW's
    ``--cb_explore_adf``). ``examples`` supply each decision's catalogue.
    """
    from nba.policy import EpsilonGreedy

    pol = policy if policy is not None else EpsilonGreedy(model.info.epsilon or 0.0)
    costs = _vw_costs(model, examples)
    return lambda record: pol.pmf(-costs(record))


def _vw_costs(model: VWModel, examples: Iterable[JoinedExample]) -> Callable[[DecisionRecord], np.ndarray]:
    """VW's per-action costs of a decision's offered actions, with each decision's catalogue features."""
    catalogs = {ex.decision.event_id: ex.catalog for ex in examples}
    prepared: dict[tuple[int, tuple[str, ...]], Any] = {}

    def costs(record: DecisionRecord) -> np.ndarray:
        cat = catalogs.get(record.event_id)
        if cat is None:
            raise SchemaError(
                f"decision {record.event_id!r} has no catalogue in the log, so its actions have no features "
                "to score; register the catalogue (DecisionLog.register_catalog) before logging"
            )
        key = (id(cat), tuple(record.actions))
        actions = prepared.get(key)
        if actions is None:
            try:
                actions = model.prepare_actions([cat.arms[a] for a in record.actions])
            except KeyError as e:
                raise SchemaError(
                    f"decision {record.event_id!r}: action {e.args[0]!r} is not in its catalogue"
                ) from None
            prepared[key] = actions
        return model.score(record.features, actions)

    return costs


def _one_hot(record: DecisionRecord, pick: str | int, where: str) -> np.ndarray:
    out = np.zeros(len(record.actions))
    if isinstance(pick, str):
        try:
            out[record.actions.index(pick)] = 1.0
        except ValueError:
            raise SchemaError(
                f"{where} chose {pick!r} for decision {record.event_id!r}, which offered only {record.actions}; "
                "return one of the offered actions"
            ) from None
    elif isinstance(pick, (int, np.integer)) and not isinstance(pick, bool) and 0 <= pick < len(record.actions):
        out[int(pick)] = 1.0
    else:
        raise SchemaError(
            f"{where} returned {pick!r} for decision {record.event_id!r}; return an offered action's id or index"
        )
    return out


def _baseline(baseline: Baseline) -> tuple[str, Callable[[DecisionRecord], np.ndarray]]:
    if baseline is None:
        return "baseline (first offered action)", lambda r: _one_hot(r, 0, "the baseline")
    if isinstance(baseline, str):
        name = baseline

        def arm(r: DecisionRecord) -> np.ndarray:
            # Personalizer's baseline is the default action; where it was not offered, the first offered one.
            return _one_hot(r, name if name in r.actions else 0, "the baseline")

        return f"baseline ({name})", arm
    if callable(baseline):
        fn = baseline
        return "baseline", lambda r: _one_hot(r, fn(r), "the baseline function")
    raise ConfigError(
        f"baseline={baseline!r} must be None (the first offered action), an arm id, or a function "
        "record -> action id or index"
    )


def _uniform(record: DecisionRecord) -> np.ndarray:
    return np.full(len(record.actions), 1.0 / len(record.actions))


# --------------------------------------------------------------------------- compare


class ComparisonRow(msgspec.Struct, frozen=True):
    """One policy's value on the log: ``estimate`` is the headline (DR; the logged policy's on-policy mean),
    ``report`` every estimator with its intervals and weight diagnostics."""

    name: str
    kind: str  # "logged", "baseline", "uniform" or "candidate"
    estimate: Estimate
    report: Report

    @property
    def value(self) -> float:
        return self.estimate.value


class Comparison(msgspec.Struct, frozen=True):
    """Policies compared on one log of ``n`` decisions, in the order logged, baseline, uniform, candidates.

    ``low_confidence`` is True when ``n`` is below ``threshold`` (50,000 by
    default, Personalizer's); ``notes`` says why, with any estimator warnings.
    """

    rows: tuple[ComparisonRow, ...]
    n: int
    low_confidence: bool
    threshold: int
    level: float
    notes: tuple[str, ...] = ()

    def __getitem__(self, name: str) -> ComparisonRow:
        for r in self.rows:
            if r.name == name or (r.kind == name and r.kind != "candidate"):
                return r
        raise KeyError(f"no policy named {name!r}; have {[r.name for r in self.rows]}")

    def beats(self, a: str, b: str) -> bool:
        """True when ``a``'s interval lies wholly above ``b``'s (Gaussian intervals at ``level``)."""
        return _above(self[a].estimate, self[b].estimate)

    def summary(self) -> str:
        """A table for a terminal: each policy's headline value, interval and effective sample size."""
        return _table(
            [(r.name, r.estimate, r.report) for r in self.rows],
            f"offline comparison on {self.n} decisions ({self.level:.0%} intervals)",
            self.notes,
        )


def _above(a: Estimate, b: Estimate) -> bool:
    return bool(a.gaussian.low > b.gaussian.high)


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.4f}"


def _table(rows: Sequence[tuple[str, Estimate, Report]], title: str, notes: Iterable[str]) -> str:
    width = max([6, *(len(n) for n, _, _ in rows)])
    lines = [title, f"{'policy':<{width}}  {'value':>8}  {'interval':>19}  {'by':<6} {'ess':>9}"]
    for name, e, rep in rows:
        iv = f"[{_fmt(e.gaussian.low)}, {_fmt(e.gaussian.high)}]"
        lines.append(f"{name:<{width}}  {_fmt(e.value):>8}  {iv:>19}  {e.estimator:<6} {rep.ess:>9.1f}")
    lines.extend(f"note: {n}" for n in notes)
    return "\n".join(lines)


def _examples(
    log: str | os.PathLike[str] | Iterable[JoinedExample], reward_window: timedelta | float | None,
    default_reward: float,
) -> list[JoinedExample]:
    from nba.log.reader import joined

    examples = list(joined(log, reward_window=reward_window, default_reward=default_reward))
    if not examples:
        raise ConfigError("the log has no decision to evaluate (empty, or no decision was joined)")
    return examples


def _reward_q(data: BanditData, reward_model: RewardModelLike | None, seed: int) -> RewardModelLike:
    """The reward model's predictions, computed once and shared by every policy's estimate."""
    if reward_model is None:
        reward_model = LightGBMRewardModel(n_folds=2, seed=seed)
    if isinstance(reward_model, RewardModel):
        return np.asarray(reward_model.predict(data), dtype=np.float64)
    return reward_model


def _check_level(level: Any) -> float:
    if not (isinstance(level, float) and 0 < level < 1):
        raise ConfigError(f"level={level!r} must be a float in (0, 1), e.g. 0.95")
    return level


def _check_threshold(threshold: Any) -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
        raise ConfigError(f"low_confidence_below={threshold!r} must be an int >= 0")
    return threshold


def compare(
    log: str | os.PathLike[str] | Iterable[JoinedExample],
    *,
    candidates: Mapping[str, Candidate | VWModel] | None = None,
    baseline: Baseline = None,
    reward_model: RewardModelLike | None = None,
    level: float = 0.95,
    seed: int = 0,
    reward_window: timedelta | float | None = None,
    default_reward: float = 0.0,
    n_bootstrap: int = 500,
    low_confidence_below: int = LOW_CONFIDENCE_DECISIONS,
) -> Comparison:
    """Estimate, on one log, the logged policy, a baseline, uniform random and each candidate.

    ``log`` is a log directory (joined with ``reward_window`` and
    ``default_reward``) or ``nba.log.join`` output. A candidate is a callable
    ``DecisionRecord -> pmf over its actions`` (``nba.evaluation.model_candidate``,
    ``vw_candidate``), an ``(n, K)`` pmf array, or a loaded VW model (scored by
    ``vw_candidate`` at its own epsilon). ``baseline`` is None (the first offered
    action), an arm id (where not offered: the first offered action) or a
    function ``DecisionRecord -> action id or index``. The logged policy's row is
    its on-policy mean reward; the others are DR (``reward_model``: by default a
    cross-fitted ``LightGBMRewardModel``, fitted once) with IPS and SNIPS in
    ``report``. Intervals are at ``level``, bootstraps seeded by ``seed``.
    """
    from nba.models.vw import VWModel

    level = _check_level(level)
    threshold = _check_threshold(low_confidence_below)
    cands = dict(candidates or {})
    examples = _examples(log, reward_window, default_reward)
    data = from_joined(examples)
    q = _reward_q(data, reward_model, seed)
    notes: list[str] = []
    n = data.n
    low = n < threshold
    if low:
        notes.append(_low_confidence_note(n, threshold))
    opts: dict[str, Any] = {"reward_model": q, "level": level, "n_bootstrap": n_bootstrap, "seed": seed}

    rows: list[ComparisonRow] = []
    assert data.pmf is not None
    logged = estimate(data, data.pmf, estimators=(IPS(), SNIPS(), DR()), **opts)
    # Every weight is 1: IPS is exactly the mean logged reward, its interval the mean's.
    rows.append(ComparisonRow("logged", "logged", msgspec.structs.replace(logged["ips"], estimator="mean"), logged))
    base_name, base = _baseline(baseline)
    policies: list[tuple[str, str, Any]] = [(base_name, "baseline", base), ("uniform", "uniform", _uniform)]
    for name, c in cands.items():
        if not isinstance(name, str) or name in ("logged", "uniform", "baseline") or name == base_name:
            raise ConfigError(f"candidate name {name!r} must be a str other than logged, baseline and uniform")
        policies.append((name, "candidate", vw_candidate(c, examples) if isinstance(c, VWModel) else c))
    for name, kind, cand in policies:
        rep = estimate(data, cand, estimators=_ESTIMATORS, **opts)
        rows.append(ComparisonRow(name, kind, rep["dr"], rep))
        notes.extend(f"{name}: {w}" for w in rep.warnings)
    return Comparison(tuple(rows), n, low, threshold, level, tuple(notes))


# --------------------------------------------------------------------------- discover


class Setting(msgspec.Struct, frozen=True):
    """One learner setting ``discover`` tries: ``train_vw``'s keywords of the same names."""

    epsilon: float = 0.05
    interactions: tuple[str, ...] = ()
    learning_rate: float = 0.5
    cb_type: str = "dr"

    @property
    def label(self) -> str:
        inter = ",".join(self.interactions) or "none"
        return f"eps={self.epsilon:g} q={inter} lr={self.learning_rate:g} {self.cb_type}"

    def kwargs(self) -> dict[str, Any]:
        """The setting as ``train_vw`` keywords: ``train_vw(log, out, **setting.kwargs())``."""
        return msgspec.structs.asdict(self)


class Trial(msgspec.Struct, frozen=True):
    """One setting trained on the earlier part of the log and estimated (DR headline) on the held-out part."""

    setting: Setting
    estimate: Estimate
    report: Report


class Discovery(msgspec.Struct, frozen=True):
    """Settings ranked by their DR value on the held-out decisions, best first.

    ``logged`` is the logged policy's on-policy mean on the same held-out part
    (``logged_report`` its report); ``uniform`` uniform random's DR value there;
    ``beats_logged`` is True when the best setting's interval lies wholly above
    it. ``seconds`` is the wall time of the search.
    """

    trials: tuple[Trial, ...]
    best: Setting
    logged: Estimate
    logged_report: Report
    uniform: Estimate
    beats_logged: bool
    n_train: int
    n_holdout: int
    low_confidence: bool
    seconds: float
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """The ranked settings as a table for a terminal."""
        head = (
            f"optimisation discovery: {len(self.trials)} settings trained on {self.n_train} decisions, "
            f"estimated on the next {self.n_holdout} ({self.seconds:.1f} s)"
        )
        rows = [("logged (on-policy)", self.logged, self.logged_report)]
        rows += [(t.setting.label, t.estimate, t.report) for t in self.trials]
        beats = "beats the logged policy (intervals apart)" if self.beats_logged else "does not clearly beat it"
        verdict = f"best: {self.best.label}; {beats}"
        return _table(rows, head, (verdict, *self.notes))


#: ``discover``'s default grid values (the interactions come from the log's namespaces).
DEFAULT_EPSILONS = (0.02, 0.05, 0.1, 0.2)
DEFAULT_LEARNING_RATES = (0.1, 0.5, 1.0)


def _namespace_pairs(examples: Sequence[JoinedExample]) -> list[str]:
    """Quadratic pairs (shared namespace x action namespace, first letters) present in the log."""
    shared: dict[str, None] = {}
    action: dict[str, None] = {}
    for ex in examples[:1000]:
        for ns, v in ex.decision.features.items():
            if isinstance(v, Mapping) and ns:
                shared.setdefault(ns[0])
        if ex.catalog is not None:
            for feats in ex.catalog.arms.values():
                if isinstance(feats, Mapping):
                    for ns, v in feats.items():
                        if isinstance(v, Mapping) and ns:
                            action.setdefault(ns[0])
    return list(dict.fromkeys(s + a for s in shared for a in action))


def _grid(grid: Any, examples: Sequence[JoinedExample]) -> list[Setting]:
    if grid is None:
        pairs = _namespace_pairs(examples)
        inter: list[tuple[str, ...]] = [()]
        if pairs:
            inter.append((pairs[0],))
        if len(pairs) > 1:
            inter.append(tuple(pairs[:2]))
        grid = {"epsilon": DEFAULT_EPSILONS, "interactions": inter, "learning_rate": DEFAULT_LEARNING_RATES}
    if isinstance(grid, Mapping):
        unknown = set(grid) - set(Setting.__struct_fields__)
        if unknown:
            raise ConfigError(f"grid keys {sorted(unknown)} are not settings; use {list(Setting.__struct_fields__)}")
        keys = list(grid)
        values = [list(grid[k]) for k in keys]
        if any(not v for v in values):
            raise ConfigError("every grid entry must list at least one value")
        settings = [Setting(**dict(zip(keys, combo))) for combo in itertools.product(*values)]
    else:
        settings = list(grid)
        for s in settings:
            if not isinstance(s, Setting):
                raise ConfigError(f"grid entry {s!r} must be a nba.offline.Setting (or pass a dict of value lists)")
    if not settings:
        raise ConfigError("the grid holds no setting")
    return [msgspec.structs.replace(s, interactions=tuple(s.interactions)) for s in settings]


def _check_holdout(holdout: Any) -> float:
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 < holdout < 1:
        raise ConfigError(f"holdout={holdout!r} must be a fraction in (0, 1), e.g. 0.3")
    return float(holdout)


def discover(
    log: str | os.PathLike[str],
    *,
    grid: Mapping[str, Sequence[Any]] | Sequence[Setting] | None = None,
    holdout: float = 0.3,
    seed: int = 0,
    reward_window: timedelta | float | None = None,
    default_reward: float = 0.0,
    reward_model: RewardModelLike | None = None,
    level: float = 0.95,
    n_bootstrap: int = 200,
    bits: int = 18,
    passes: int = 1,
    low_confidence_below: int = LOW_CONFIDENCE_DECISIONS,
) -> Discovery:
    """Search learner settings: train each on the first ``1 - holdout`` of the log (time order), rank by DR on the rest.

    The default grid crosses epsilon {0.02, 0.05, 0.1, 0.2}, interactions {none,
    the first shared x action namespace pair, the first two pairs} and learning
    rate {0.1, 0.5, 1.0}; ``grid`` is a list of ``Setting`` or a dict of value
    lists over ``Setting``'s fields. Epsilon changes only the pmf a model's
    exploration gives (VW learns the same weights whatever the epsilon), so one
    model is trained per other setting and scored at each epsilon. The held-out
    reward model (``reward_model``, default a cross-fitted
    ``LightGBMRewardModel``) is fitted once for all.
    """
    from nba.log import export_dsjson
    from nba.models.vw import load_vw
    from nba.training import train_vw_dsjson, vw_args

    t0 = time.perf_counter()
    holdout = _check_holdout(holdout)
    level = _check_level(level)
    threshold = _check_threshold(low_confidence_below)
    if not isinstance(log, (str, os.PathLike)) or not os.path.isdir(log):
        raise ConfigError(f"log={log!r} must be the directory of a DecisionLog")
    settings = _grid(grid, []) if grid is not None else []
    for s in settings:  # refuse a bad setting before reading the log or training anything
        vw_args(cb_type=s.cb_type, epsilon=s.epsilon, interactions=s.interactions,
                learning_rate=s.learning_rate, bits=bits, seed=seed)
    examples = _examples(log, reward_window, default_reward)
    if not any(ex.observed for ex in examples) and default_reward == 0.0:
        raise ConfigError("no decision in the log has a reward; log outcomes, or widen reward_window")
    if grid is None:
        settings = _grid(None, examples)
    order = sorted(range(len(examples)), key=lambda i: examples[i].decision.ts)  # stable: log order on ties
    n_train = int(round(len(examples) * (1 - holdout)))
    if n_train < 1 or n_train >= len(examples):
        raise ConfigError(f"holdout={holdout} of {len(examples)} decisions leaves no training or no held-out part")
    train_ids = [examples[i].decision.event_id for i in order[:n_train]]
    held = [examples[i] for i in order[n_train:]]

    data = from_joined(held)
    q = _reward_q(data, reward_model, seed)
    opts: dict[str, Any] = {"reward_model": q, "level": level, "n_bootstrap": n_bootstrap, "seed": seed}
    assert data.pmf is not None
    logged_rep = estimate(data, data.pmf, estimators=(IPS(),), **opts)
    logged = msgspec.structs.replace(logged_rep["ips"], estimator="mean")
    # Candidates as (n, K) arrays over the vocabulary: epsilon-greedy is (1 - eps) greedy + eps uniform
    # (ties split in the greedy part, as EpsilonGreedy does), so each model is scored and made greedy once.
    index = {a: j for j, a in enumerate(data.actions)}
    cols = [np.array([index[a] for a in ex.decision.actions], dtype=np.intp) for ex in held]
    offered_uniform = np.zeros((data.n, data.n_actions))
    for i, c in enumerate(cols):
        offered_uniform[i, c] = 1.0 / len(c)
    uniform = estimate(data, offered_uniform, estimators=(DR(),), **opts)["dr"]

    trials: list[Trial] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nba-discover-") as tmp:
        everything = os.path.join(tmp, "all.dsjson")
        export_dsjson(log, everything, reward_window=reward_window, default_reward=default_reward)
        lines: dict[str, bytes] = {}
        dec = msgspec.json.Decoder(_EventId)
        with open(everything, "rb") as f:
            for line in f:
                lines[dec.decode(line).EventId] = line
        train_file = os.path.join(tmp, "train.dsjson")
        train_lines = [lines[e] for e in train_ids if e in lines]  # the export leaves out what VW cannot read
        if not train_lines:
            raise ConfigError("no decision of the training part could be exported for VW (see export_dsjson)")
        with open(train_file, "wb") as f:
            f.writelines(train_lines)
        # A model's costs do not depend on epsilon: score the held-out part once per trained model.
        greedy_of: dict[tuple[Any, ...], np.ndarray] = {}
        for s in settings:
            key = (s.interactions, s.learning_rate, s.cb_type)
            greedy = greedy_of.get(key)
            if greedy is None:
                out = os.path.join(tmp, f"m{len(greedy_of)}.vw")
                train_vw_dsjson(train_file, out, passes=passes, bits=bits, seed=seed, **s.kwargs())
                greedy = greedy_of[key] = _greedy_matrix(load_vw(out), held, cols, data.n_actions)
            pi = (1.0 - s.epsilon) * greedy + s.epsilon * offered_uniform
            rep = estimate(data, pi, estimators=_ESTIMATORS, **opts)
            trials.append(Trial(s, rep["dr"], rep))
            notes.extend(f"{s.label}: {w}" for w in rep.warnings)
    ranked = sorted(trials, key=lambda t: -t.estimate.value if not math.isnan(t.estimate.value) else math.inf)
    best = ranked[0]
    low = len(examples) < threshold
    if low:
        notes.insert(0, _low_confidence_note(len(examples), threshold))
    return Discovery(
        trials=tuple(ranked),
        best=best.setting,
        logged=logged,
        logged_report=logged_rep,
        uniform=uniform,
        beats_logged=_above(best.estimate, logged),
        n_train=len(train_lines),
        n_holdout=len(held),
        low_confidence=low,
        seconds=time.perf_counter() - t0,
        notes=tuple(notes),
    )


class _EventId(msgspec.Struct):
    EventId: str


def _greedy_matrix(
    model: VWModel, held: Sequence[JoinedExample], cols: Sequence[np.ndarray], k: int
) -> np.ndarray:
    """The greedy pmf (ties split) of ``model`` on each held-out decision, placed in the ``k``-action vocabulary."""
    from nba.policy import EpsilonGreedy

    greedy = EpsilonGreedy(0.0)
    score = _vw_costs(model, held)
    out = np.zeros((len(held), k))
    for i, ex in enumerate(held):
        out[i, cols[i]] = greedy.pmf(-score(ex.decision))
    return out
