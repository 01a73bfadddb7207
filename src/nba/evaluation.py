"""Off-policy evaluation: how a candidate policy would have done, estimated from logged decisions.

The estimators are Open Bandit Pipeline's (IPS with optional clipping, SNIPS, the
direct method, doubly robust, switch-DR and DR with optimistic shrinkage), ported
formula by formula: obp itself does not install on Python 3.11. Each estimate
comes with a Gaussian interval and a seeded bootstrap interval (IPS also with
vw-estimators' Clopper-Pearson interval when rewards lie in a known range), and
with the weight diagnostics that say how far to trust it: the effective sample
size ``(sum w)^2 / sum w^2`` and the largest weight.

Logged data is a ``BanditData`` (arrays over a fixed action vocabulary); build it
from ``nba.log.join(...)`` output with ``from_joined``, or draw it from a
``SyntheticBandit`` whose true policy values are known. ``evaluate`` does both
steps for a log directory or joined examples.

A candidate is a pmf per decision: an ``(n, K)`` array over the vocabulary, or a
callable from a decision's context to a pmf (over ``BanditData.actions``, or for
joined logs over the decision's own ``actions``); ``model_candidate`` wraps a
loaded nba model and a policy as such a callable.
"""

from __future__ import annotations

import math
import os
import statistics
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec
import numpy as np
import numpy.typing as npt

from nba.errors import ConfigError, SchemaError

if TYPE_CHECKING:
    from nba.base import Model, ModelPolicy, Policy
    from nba.catalog import Catalog
    from nba.log.reader import JoinedExample
    from nba.log.records import DecisionRecord

__all__ = [
    "BanditData",
    "DM",
    "DR",
    "DRShrinkage",
    "Estimate",
    "EvaluationWarning",
    "IPS",
    "Interval",
    "LightGBMRewardModel",
    "Report",
    "RewardModel",
    "SNIPS",
    "SwitchDR",
    "SyntheticBandit",
    "UnexploredActionWarning",
    "candidate_pmf",
    "effective_sample_size",
    "estimate",
    "evaluate",
    "from_joined",
    "model_candidate",
]

Array = npt.NDArray[np.float64]

#: How far a pmf's sum may stray from 1 (float rounding of a logged or computed pmf).
PMF_TOLERANCE = 1e-6


class EvaluationWarning(UserWarning):
    """An off-policy estimate was computed but may mislead (see the message)."""


class UnexploredActionWarning(EvaluationWarning):
    """The candidate puts mass on actions the logging policy never explored (propensity 0 or not offered).

    No logged decision can say what those actions earn, so every estimator but DM
    is biased towards 0 for that mass, and DM extrapolates its reward model there."""


# --------------------------------------------------------------------------- data


class BanditData(msgspec.Struct, frozen=True, eq=False):  # arrays: == would be elementwise
    """Logged bandit feedback over a fixed vocabulary of ``K`` actions, ``n`` decisions.

    ``action[i]`` is the vocabulary index chosen, ``pscore[i]`` its logged
    probability, ``reward[i]`` what it earned; ``pmf`` the logging policy's whole
    pmf (``(n, K)``, 0 where an action was not offered) when it is known.
    ``context`` is the reward model's input (``(n, d)``, NaN for missing) and
    ``contexts`` what a candidate callable is given per decision (the rows of
    ``context`` if None). ``expected_reward`` (``(n, K)``) is the true mean reward,
    known for synthetic data only. ``context_names`` names the context columns when
    they are known (the dotted feature names ``from_joined`` flattens).
    """

    context: Array
    action: npt.NDArray[np.intp]
    reward: Array
    pscore: Array
    actions: tuple[str, ...]
    pmf: Array | None = None
    contexts: Sequence[Any] | None = None
    offered: Sequence[Sequence[str]] | None = None
    expected_reward: Array | None = None
    context_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _check_data(self)

    @property
    def n(self) -> int:
        """Number of logged decisions."""
        return int(self.reward.shape[0])

    @property
    def n_actions(self) -> int:
        """Size ``K`` of the action vocabulary."""
        return len(self.actions)

    def policy_value(self, candidate: Candidate) -> float:
        """The candidate's true value on these contexts, ``mean_i sum_a pi(a|x_i) q(x_i, a)`` (obp's ground truth).

        Needs ``expected_reward`` (synthetic data)."""
        if self.expected_reward is None:
            raise ConfigError("policy_value needs the true expected reward, which only synthetic data has")
        pi = candidate_pmf(self, candidate)
        return float(np.mean(np.sum(pi * self.expected_reward, axis=1)))


def _check_data(d: BanditData) -> None:
    n = d.reward.shape[0] if isinstance(d.reward, np.ndarray) and d.reward.ndim == 1 else -1
    if n < 1:
        raise SchemaError(f"reward must be a non-empty 1-d array, got shape {np.shape(d.reward)}")
    k = len(d.actions)
    if k < 1:
        raise SchemaError("actions must name at least one action")
    for name, arr, shape in (
        ("action", d.action, (n,)),
        ("pscore", d.pscore, (n,)),
    ):
        if not isinstance(arr, np.ndarray) or arr.shape != shape:
            raise SchemaError(f"{name} must have shape {shape} (one per reward), got {np.shape(arr)}")
    if not isinstance(d.context, np.ndarray) or d.context.ndim != 2 or d.context.shape[0] != n:
        raise SchemaError(f"context must have shape ({n}, d), got {np.shape(d.context)}")
    if d.action.dtype.kind not in "iu" or d.action.min() < 0 or d.action.max() >= k:
        raise SchemaError(f"action must hold integer indices into the {k} actions")
    if not np.all(np.isfinite(d.reward)):
        raise SchemaError(f"reward must be finite; row {int(np.argmin(np.isfinite(d.reward)))} is not")
    bad = ~(np.isfinite(d.pscore) & (d.pscore > 0) & (d.pscore <= 1 + PMF_TOLERANCE))
    if bad.any():
        i = int(np.argmax(bad))
        raise SchemaError(
            f"pscore[{i}]={d.pscore[i]!r}: a logged propensity must lie in (0, 1] (the chosen action had a "
            "chance); negative or zero propensities mean the log is damaged or not from a randomised policy"
        )
    if d.pmf is not None:
        _check_pmf(d.pmf, n, k, "pmf (logging policy)")
        chosen = d.pmf[np.arange(n), d.action]
        off = np.abs(chosen - d.pscore) > PMF_TOLERANCE
        if off.any():
            i = int(np.argmax(off))
            raise SchemaError(f"pscore[{i}]={d.pscore[i]!r} differs from pmf[{i}, action]={chosen[i]!r}")
    q = d.expected_reward
    if q is not None and (not isinstance(q, np.ndarray) or q.shape != (n, k)):
        raise SchemaError(f"expected_reward must have shape ({n}, {k}), got {np.shape(q)}")
    if d.context_names is not None and len(d.context_names) != d.context.shape[1]:
        raise SchemaError(f"context_names must name the {d.context.shape[1]} context columns, got {d.context_names!r}")
    if d.contexts is not None and len(d.contexts) != n:
        raise SchemaError(f"contexts must hold one context per decision ({n}), got {len(d.contexts)}")


def _check_pmf(pmf: Any, n: int, k: int, what: str) -> Array:
    if not isinstance(pmf, np.ndarray) or pmf.shape != (n, k):
        raise SchemaError(f"{what} must have shape ({n}, {k}) (decisions x actions), got {np.shape(pmf)}")
    if not pmf.min() >= 0 or not np.isfinite(pmf.max()):  # one pass each; NaN fails both comparisons
        bad_row = ~np.all(np.isfinite(pmf) & (pmf >= 0), axis=1)
        i = int(np.argmax(bad_row))
        raise SchemaError(f"{what} row {i} has a negative or non-finite probability: {pmf[i].tolist()}")
    sums = pmf.sum(axis=1)
    off = np.abs(sums - 1.0) > PMF_TOLERANCE
    if off.any():
        i = int(np.argmax(off))
        raise SchemaError(f"{what} row {i} sums to {sums[i]!r}, not 1; normalise it (divide by its sum)")
    return pmf


# --------------------------------------------------------------------------- candidates

Candidate = npt.ArrayLike | Callable[[Any], npt.ArrayLike]


def candidate_pmf(data: BanditData, candidate: Candidate) -> Array:
    """The candidate's pmf over ``data.actions`` for every decision, ``(n, K)``, checked.

    A callable is called once per decision with ``data.contexts[i]`` (or the row
    ``data.context[i]``); when ``data.offered`` is set (joined logs) it returns a
    pmf over that decision's offered actions, placed into the vocabulary here.
    """
    n, k = data.n, data.n_actions
    if not callable(candidate):
        return _check_pmf(np.asarray(candidate, dtype=np.float64), n, k, "candidate pmf")
    contexts = data.contexts if data.contexts is not None else data.context
    out = np.zeros((n, k))
    if data.offered is None:
        for i in range(n):
            p = np.asarray(candidate(contexts[i]), dtype=np.float64)
            if p.shape != (k,):
                raise SchemaError(f"candidate returned a pmf of shape {p.shape} for decision {i}, expected ({k},)")
            out[i] = p
    else:
        index = {a: j for j, a in enumerate(data.actions)}
        for i in range(n):
            offered = data.offered[i]
            p = np.asarray(candidate(contexts[i]), dtype=np.float64)
            if p.shape != (len(offered),):
                raise SchemaError(
                    f"candidate returned a pmf of shape {p.shape} for decision {i}, expected one probability "
                    f"per offered action ({len(offered)})"
                )
            out[i, [index[a] for a in offered]] = p
    return _check_pmf(out, n, k, "candidate pmf")


def model_candidate(
    model: Model, policy: Policy | ModelPolicy, catalog: Catalog, *, seed: int = 0
) -> Callable[[DecisionRecord], Array]:
    """A candidate for joined logs: the pmf a Decider with ``model`` and ``policy`` gives the offered actions.

    Each decision's offered actions are scored on its logged model input ``x``
    (what a Decider writes; else its features, read as the profile and the
    context), arbitrated by ``catalog`` (score x value x weight) and turned into a
    pmf by ``policy``, as ``Decider.decide`` does; a ``ModelPolicy`` (UCB,
    Thompson) draws seeded by (``seed``, event id). Eligibility rules are not
    replayed: the candidate chooses among what was offered.
    """
    from nba.base import ModelPolicy, OnlineLearner

    scorer = model.bind(catalog)
    schema = catalog.schema
    buf = scorer.buffers(len(catalog))
    use_model = isinstance(policy, ModelPolicy) and policy.uses_model(model)
    contextual = not isinstance(model, OnlineLearner) or model.n_features > 0
    scale_all = catalog.values * catalog.weights

    def pmf(record: DecisionRecord) -> Array:
        if record.x is not None and len(record.x) == schema.n_columns:
            x = np.array([math.nan if v is None else v for v in record.x], dtype=np.float64)
        else:
            x = schema.vectorize(record.features, record.features)
        idx = np.empty(len(record.actions), dtype=np.intp)
        for j, a in enumerate(record.actions):
            try:
                idx[j] = catalog.index(a)
            except (KeyError, ValueError):
                raise SchemaError(
                    f"decision {record.event_id!r} offered action {a!r}, which the candidate's catalogue lacks; "
                    "evaluate with the catalogue the log was written with"
                ) from None
        scores = np.empty(len(idx))
        scorer.score(x, idx, scores, buf)
        if use_model:
            assert isinstance(policy, ModelPolicy)
            return policy.model_pmf(
                model,
                x if contextual else None,
                event_id=record.event_id,
                seed=seed,
                arms=idx,
                scale=scale_all.take(idx),
                scores=scores,
            )
        return policy.pmf(catalog.priorities(scores, idx))  # type: ignore[union-attr]

    return pmf


# --------------------------------------------------------------------------- synthetic data


def _sigmoid(z: Array) -> Array:
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def _softmax(z: Array) -> Array:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


class SyntheticBandit(msgspec.Struct, frozen=True):
    """A seeded contextual bandit with a known reward function, like obp's ``SyntheticBanditDataset``.

    Contexts are standard normal in ``dim`` dimensions; the expected reward of
    action ``a`` is ``sigmoid(x . theta_a + b_a)`` (drawn once from ``seed``);
    rewards are Bernoulli on it or Gaussian around it (``reward_std``). The logging
    policy is ``softmax(beta * q(x, .))`` (``beta=0``: uniform random).
    """

    n_actions: int = 5
    dim: int = 5
    beta: float = 1.0
    reward_type: str = "binary"
    reward_std: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.n_actions, int) and self.n_actions >= 2):
            raise ConfigError(f"n_actions={self.n_actions!r} must be an int >= 2")
        if not (isinstance(self.dim, int) and self.dim >= 1):
            raise ConfigError(f"dim={self.dim!r} must be an int >= 1")
        if self.reward_type not in ("binary", "continuous"):
            raise ConfigError(f"reward_type={self.reward_type!r} must be 'binary' or 'continuous'")
        if not (math.isfinite(self.beta) and math.isfinite(self.reward_std) and self.reward_std >= 0):
            raise ConfigError("beta and reward_std must be finite, reward_std >= 0")

    def _params(self) -> tuple[Array, Array]:
        rng = np.random.default_rng([self.seed, 0])
        return rng.normal(size=(self.dim, self.n_actions)), rng.normal(scale=0.5, size=self.n_actions)

    def expected_reward(self, context: Array) -> Array:
        """True mean reward ``q(x, a)`` for each row of ``context`` and each action, ``(n, K)``."""
        theta, bias = self._params()
        return _sigmoid(np.asarray(context, dtype=np.float64) @ theta + bias)

    def behaviour_pmf(self, context: Array) -> Array:
        """The logging policy's pmf for each row of ``context``, ``(n, K)``."""
        return _softmax(self.beta * self.expected_reward(context))

    def sample(self, n: int, *, seed: int = 0) -> BanditData:
        """``n`` logged decisions (``seed`` picks the draw; the reward function stays)."""
        if not (isinstance(n, int) and n >= 1):
            raise ConfigError(f"n={n!r} must be an int >= 1")
        rng = np.random.default_rng([self.seed, 1, seed])
        x = rng.normal(size=(n, self.dim))
        q = self.expected_reward(x)
        pmf = _softmax(self.beta * q)
        u = rng.random(n)
        action = np.minimum((pmf.cumsum(axis=1) < u[:, None]).sum(axis=1), self.n_actions - 1).astype(np.intp)
        mean = q[np.arange(n), action]
        if self.reward_type == "binary":
            reward = (rng.random(n) < mean).astype(np.float64)
        else:
            reward = mean + rng.normal(scale=self.reward_std, size=n)
        return BanditData(
            context=x,
            action=action,
            reward=reward,
            pscore=pmf[np.arange(n), action],
            actions=tuple(f"a{j}" for j in range(self.n_actions)),
            pmf=pmf,
            expected_reward=q,
        )


# --------------------------------------------------------------------------- joined logs


def _feature_value(v: Any, codes: dict[str, int]) -> float:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        return float(codes.setdefault(v, len(codes)))  # a category code: trees split on it
    return math.nan


def _flatten(features: Any, prefix: str = "") -> dict[str, Any]:
    """Nested feature namespaces (``{"User": {"age": 31}}``) as dotted names (``"User.age"``)."""
    out: dict[str, Any] = {}
    for k, v in features.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def from_joined(examples: Iterable[JoinedExample]) -> BanditData:
    """``BanditData`` from ``nba.log.join(...)`` output: one row per joined decision.

    The vocabulary is every action offered, in order of first appearance; the
    logging pmf is placed there (0 for actions a decision did not offer). The
    reward model's context is the logged model input ``x`` when every decision
    has one of the same length, else the features (numbers, booleans as 0/1,
    strings as category codes, absent as NaN). A candidate callable is given the
    ``DecisionRecord`` and returns a pmf over its ``actions``.
    """
    records: list[DecisionRecord] = []
    rewards: list[float] = []
    for ex in examples:
        records.append(ex.decision)
        rewards.append(ex.reward)
    if not records:
        raise SchemaError("no joined decisions to evaluate: the log is empty or no decision was joined")
    vocab: dict[str, int] = {}
    for r in records:
        for a in r.actions:
            vocab.setdefault(a, len(vocab))
    n, k = len(records), len(vocab)
    pmf = np.zeros((n, k))
    action = np.empty(n, dtype=np.intp)
    pscore = np.empty(n)
    for i, r in enumerate(records):
        if len(r.pmf) != len(r.actions) or not r.chosen or not 0 <= r.chosen[0] < len(r.actions):
            raise SchemaError(
                f"decision {r.event_id!r}: pmf and actions differ in length, or chosen is not an index into actions"
            )
        total = math.fsum(r.pmf)
        if not (abs(total - 1.0) <= PMF_TOLERANCE and min(r.pmf) >= 0 and 0 < r.probability <= 1 + PMF_TOLERANCE):
            raise SchemaError(
                f"decision {r.event_id!r}: logged pmf {r.pmf!r} (sum {total!r}) with probability {r.probability!r} "
                "is not a distribution with the chosen action's probability in (0, 1]; the record is damaged"
            )
        cols = [vocab[a] for a in r.actions]
        pmf[i, cols] = r.pmf
        action[i] = cols[r.chosen[0]]
        pscore[i] = r.probability
    xs = [r.x for r in records]
    names: list[str] | None = None
    if all(x is not None for x in xs) and len({len(x) for x in xs if x is not None}) == 1:
        context = np.array([[math.nan if v is None else v for v in x] for x in xs if x is not None], dtype=np.float64)
    else:
        flat = [_flatten(r.features) for r in records]
        names = sorted({f for fs in flat for f in fs})
        codes: dict[str, dict[str, int]] = {f: {} for f in names}
        context = np.array(
            [[_feature_value(fs.get(f), codes[f]) for f in names] for fs in flat], dtype=np.float64
        ).reshape(n, len(names))
    return BanditData(
        context=context,
        action=action,
        reward=np.array(rewards, dtype=np.float64),
        pscore=pscore,
        actions=tuple(vocab),
        pmf=pmf,
        contexts=records,
        offered=[r.actions for r in records],
        context_names=None if names is None else tuple(names),
    )


# --------------------------------------------------------------------------- reward models


@runtime_checkable
class RewardModel(Protocol):
    """Something that predicts ``q(x, a)`` for every logged decision and every action, ``(n, K)``."""

    def predict(self, data: BanditData) -> Array: ...


class LightGBMRewardModel(msgspec.Struct, frozen=True):
    """A LightGBM regression of reward on (context, action), for DM and the DR family.

    The action is a categorical feature beside the context. With ``n_folds >= 2``
    the predictions are cross-fitted: each fold is predicted by a model trained on
    the others, so the model never scores the rewards it learned (DR's bias
    guarantee). Needs the ``lightgbm`` package (``pip install nba[train]``).
    """

    n_folds: int = 1
    num_boost_round: int = 100
    params: dict[str, Any] = {}
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.n_folds, int) and self.n_folds >= 1):
            raise ConfigError(f"n_folds={self.n_folds!r} must be an int >= 1 (1: no cross-fitting)")
        if not (isinstance(self.num_boost_round, int) and self.num_boost_round >= 1):
            raise ConfigError(f"num_boost_round={self.num_boost_round!r} must be an int >= 1")

    def lgb_params(self) -> dict[str, Any]:
        """The LightGBM parameters this model trains with (its defaults, then ``params``)."""
        return {
            "objective": "regression",
            "learning_rate": 0.1,
            "num_leaves": 15,
            "min_data_in_leaf": 20,
            "verbose": -1,
            "seed": self.seed,
            "deterministic": True,
            "num_threads": 1,  # a log of this size trains in well under a second; threads mostly spin on a busy host
            **self.params,
        }

    def fit(
        self, data: BanditData, rows: npt.NDArray[np.intp] | None = None, feature_names: Sequence[str] | None = None
    ) -> Any:
        """A ``lightgbm.Booster`` of reward on ``design(context, action)`` over ``rows`` (default: all).

        ``feature_names`` names the ``d + 1`` columns (LightGBM's ``Column_<i>`` if None)."""
        lgb = _lightgbm()
        rows = np.arange(data.n) if rows is None else rows
        ds = lgb.Dataset(
            design(data.context[rows], data.action[rows]),
            data.reward[rows],
            categorical_feature=[data.context.shape[1]],
            feature_name=list(feature_names) if feature_names is not None else "auto",
            free_raw_data=True,
        )
        return lgb.train(self.lgb_params(), ds, num_boost_round=self.num_boost_round)

    def predict(self, data: BanditData) -> Array:
        """Predicted reward of every action for every decision, ``(n, K)``."""
        _lightgbm()
        n, k = data.n, data.n_actions
        folds = np.random.default_rng(self.seed).permutation(n) % self.n_folds if self.n_folds > 1 else np.zeros(n)
        out = np.empty((n, k))
        for f in range(self.n_folds):
            test = np.flatnonzero(folds == f)
            train = np.flatnonzero(folds != f) if self.n_folds > 1 else test
            booster = self.fit(data, train)
            for a in range(k):
                out[test, a] = booster.predict(design(data.context[test], np.full(len(test), a, dtype=np.intp)))
        return out


def design(context: Array, action: npt.NDArray[np.intp]) -> Array:
    """A reward model's input rows: the context, then the action's vocabulary index (a categorical column)."""
    return np.column_stack([context, np.asarray(action, dtype=np.float64)])


def _lightgbm() -> Any:
    try:
        import lightgbm as lgb
    except ImportError:  # pragma: no cover - the extra is installed in CI
        raise ConfigError(
            "LightGBMRewardModel needs the lightgbm package: pip install nba[train], or pass reward_model= "
            "a callable q(context, action) -> reward"
        ) from None
    return lgb


#: What DM and the DR family accept as the reward model: a ``RewardModel`` (``LightGBMRewardModel``), its
#: predictions as an ``(n, K)`` array, or a callable ``q(context (n, d), action (n,)) -> reward (n,)``.
RewardModelLike = RewardModel | npt.NDArray[np.float64] | Callable[[Array, npt.NDArray[np.intp]], npt.ArrayLike]


def _reward_matrix(data: BanditData, reward_model: RewardModelLike | None) -> Array:
    n, k = data.n, data.n_actions
    if reward_model is None:
        reward_model = LightGBMRewardModel()
    if isinstance(reward_model, np.ndarray):
        q = reward_model
    elif isinstance(reward_model, RewardModel):
        q = np.asarray(reward_model.predict(data), dtype=np.float64)
    elif callable(reward_model):
        q = np.empty((n, k))
        for a in range(k):
            q[:, a] = np.asarray(reward_model(data.context, np.full(n, a, dtype=np.intp)), dtype=np.float64)
    else:
        raise ConfigError(
            f"reward_model={reward_model!r} must be a LightGBMRewardModel, an (n, K) array, or a callable "
            "q(context (n, d), action (n,)) -> predicted reward (n,)"
        )
    if q.shape != (n, k) or not np.all(np.isfinite(q)):
        raise SchemaError(f"reward model predictions must be finite with shape ({n}, {k}), got {q.shape}")
    return q


# --------------------------------------------------------------------------- estimators


class _Inputs(msgspec.Struct, frozen=True):
    """What every estimator reads: importance weights, rewards, and the reward model's two views."""

    w: Array  # pi_e(a_i | x_i) / pi_b(a_i | x_i)
    r: Array
    q_chosen: Array | None  # q(x_i, a_i)
    q_pi: Array | None  # sum_a pi_e(a | x_i) q(x_i, a)


def _check_param(owner: str, name: str, value: Any, lo: float) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= lo
    if not ok or math.isnan(value):
        raise ConfigError(f"{owner}({name}={value!r}): {name} must be a number >= {lo}")


class IPS(msgspec.Struct, frozen=True):
    """Inverse propensity scoring, ``mean(w r)``; weights clipped at ``max_weight`` (obp's ``lambda_``)."""

    max_weight: float = math.inf
    needs_model = False

    def __post_init__(self) -> None:
        _check_param("IPS", "max_weight", self.max_weight, 0.0)

    @property
    def name(self) -> str:
        return "ips" if self.max_weight == math.inf else f"ips(max_weight={self.max_weight:g})"

    def terms(self, inp: _Inputs) -> tuple[Array, Array | None]:
        return np.minimum(inp.w, self.max_weight) * inp.r, None


class SNIPS(msgspec.Struct, frozen=True):
    """Self-normalised IPS, ``sum(w r) / sum(w)``: a little bias for much less variance under large weights.

    NaN when every weight is 0 (the candidate never chose a logged action)."""

    needs_model = False

    @property
    def name(self) -> str:
        return "snips"

    def terms(self, inp: _Inputs) -> tuple[Array, Array | None]:
        return inp.w * inp.r, inp.w


class DM(msgspec.Struct, frozen=True):
    """Direct method, ``mean(sum_a pi(a|x) q(x, a))``: the reward model's value of the candidate."""

    needs_model = True

    @property
    def name(self) -> str:
        return "dm"

    def terms(self, inp: _Inputs) -> tuple[Array, Array | None]:
        assert inp.q_pi is not None
        return inp.q_pi, None


class DR(msgspec.Struct, frozen=True):
    """Doubly robust, ``mean(q_pi + w (r - q(x, a_i)))``; weights clipped at ``max_weight``."""

    max_weight: float = math.inf
    needs_model = True

    def __post_init__(self) -> None:
        _check_param("DR", "max_weight", self.max_weight, 0.0)

    @property
    def name(self) -> str:
        return "dr" if self.max_weight == math.inf else f"dr(max_weight={self.max_weight:g})"

    def terms(self, inp: _Inputs) -> tuple[Array, Array | None]:
        assert inp.q_pi is not None and inp.q_chosen is not None
        return inp.q_pi + np.minimum(inp.w, self.max_weight) * (inp.r - inp.q_chosen), None


class SwitchDR(msgspec.Struct, frozen=True):
    """Switch-DR (obp's form): DR's correction only where ``w <= tau``, the reward model alone elsewhere.

    ``tau=inf`` is DR; ``tau=0`` is DM (for positive weights)."""

    tau: float = math.inf
    needs_model = True

    def __post_init__(self) -> None:
        _check_param("SwitchDR", "tau", self.tau, 0.0)

    @property
    def name(self) -> str:
        return f"switch-dr(tau={self.tau:g})"

    def terms(self, inp: _Inputs) -> tuple[Array, Array | None]:
        assert inp.q_pi is not None and inp.q_chosen is not None
        switch = inp.w <= self.tau
        return inp.q_pi + np.where(switch, inp.w * (inp.r - inp.q_chosen), 0.0), None


class DRShrinkage(msgspec.Struct, frozen=True):
    """DR with optimistic shrinkage (DRos): weights ``lam w / (w^2 + lam)``.

    ``lam=inf`` is DR; ``lam=0`` is defined as DM (obp's formula gives 0/0 at w=0)."""

    lam: float = math.inf
    needs_model = True

    def __post_init__(self) -> None:
        _check_param("DRShrinkage", "lam", self.lam, 0.0)

    @property
    def name(self) -> str:
        return f"dr-os(lambda={self.lam:g})"

    def terms(self, inp: _Inputs) -> tuple[Array, Array | None]:
        assert inp.q_pi is not None and inp.q_chosen is not None
        if self.lam == 0.0:
            return inp.q_pi, None
        w = inp.w if self.lam == math.inf else self.lam * inp.w / (inp.w * inp.w + self.lam)
        return inp.q_pi + w * (inp.r - inp.q_chosen), None


Estimator = IPS | SNIPS | DM | DR | SwitchDR | DRShrinkage

DEFAULT_ESTIMATORS: tuple[Estimator, ...] = (IPS(), SNIPS(), DM(), DR())


# --------------------------------------------------------------------------- results


class Interval(msgspec.Struct, frozen=True):
    """A two-sided confidence interval at ``level`` (e.g. 0.95) by ``method``."""

    low: float
    high: float
    level: float
    method: str


class Estimate(msgspec.Struct, frozen=True):
    """One estimator's value of the candidate with its intervals (``None``: not computed or not defined)."""

    estimator: str
    value: float
    gaussian: Interval
    bootstrap: Interval | None = None
    clopper_pearson: Interval | None = None


class Report(msgspec.Struct, frozen=True):
    """An off-policy evaluation of one candidate on one log.

    ``ess`` is the effective sample size of the (unclipped) weights, ``max_weight``
    the largest; ``unexplored_mass`` the candidate's mean probability on actions
    the logging policy gave probability 0 (None when its pmf is unknown).
    """

    n: int
    estimates: tuple[Estimate, ...]
    ess: float
    max_weight: float
    unexplored_mass: float | None
    warnings: tuple[str, ...] = ()

    def __getitem__(self, estimator: str) -> Estimate:
        for e in self.estimates:
            if e.estimator == estimator:
                return e
        raise KeyError(f"no estimate named {estimator!r}; have {[e.estimator for e in self.estimates]}")


def effective_sample_size(w: npt.ArrayLike) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` (0 if every weight is 0)."""
    w = np.asarray(w, dtype=np.float64)
    s2 = float(np.dot(w, w))
    return float(np.sum(w)) ** 2 / s2 if s2 > 0 else 0.0


def _z(level: float) -> float:
    return statistics.NormalDist().inv_cdf(1 - (1 - level) / 2)


def _seqsum(a: Array) -> float:
    """Left-to-right sum (as a running total adds), unlike ``np.sum``'s pairwise one."""
    return float(np.cumsum(a)[-1]) if a.size else 0.0


def _ratio(num: Array, den: Array | None) -> float:
    if den is None:
        return _seqsum(num) / num.shape[0]
    s = _seqsum(den)
    return _seqsum(num) / s if s != 0 else math.nan


def _gaussian(num: Array, den: Array | None, level: float) -> Interval:
    """Normal interval: sample std (ddof 1) of the per-decision terms; SNIPS by the delta method."""
    n = num.shape[0]
    value = _ratio(num, den)
    if n < 2 or math.isnan(value):
        return Interval(math.nan, math.nan, level, "gaussian")
    if den is None:
        # vw-estimators' form and order of summation (sequential: cumsum), so the two agree to rounding
        # even where the variance cancels to ~0 and the square root would magnify any difference.
        s = _seqsum(num)
        var = (_seqsum(num * num) - s * s / n) / (n - 1)
    else:
        infl = (num - value * den) / (np.sum(den) / n)
        var = float(np.var(infl, ddof=1))
    delta = _z(level) * math.sqrt(max(0.0, var) / n)
    return Interval(value - delta, value + delta, level, "gaussian")


def _clopper_pearson(w: Array, r: Array, level: float, reward_range: tuple[float, float]) -> Interval:
    """vw-estimators' Clopper-Pearson interval of IPS: weighted successes over the largest weight."""
    try:
        from scipy.stats import beta  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover
        raise ConfigError("the Clopper-Pearson interval needs scipy; pip install scipy or leave it out") from None
    lo, hi = reward_range
    alpha = 1 - level
    max_w = float(np.max(w)) if w.size else 0.0
    if max_w <= 0:
        return Interval(math.nan, math.nan, level, "clopper-pearson")
    scaled = (r - lo) / (hi - lo)
    successes = _seqsum(scaled * w) / max_w
    n = w.shape[0] / max_w
    try:
        low = float(beta.ppf(alpha / 2, successes, n - successes + 1)) if successes > 0 else 0.0
    except OverflowError:  # successes subnormal (~1e-310): boost's beta overflows; it is 0 to every digit
        low = 0.0
    high = float(beta.ppf(1 - alpha / 2, successes + 1, n - successes)) if successes < n else 1.0
    return Interval(lo + low * (hi - lo), lo + high * (hi - lo), level, "clopper-pearson")


def _bootstrap(terms: list[tuple[Array, Array | None]], n_bootstrap: int, level: float, seed: int) -> list[Interval]:
    """Percentile bootstrap intervals (obp's), one resample of the decisions shared by all estimators.

    A resample is a vector of counts (how often each decision was drawn), so every
    estimator's resampled sums are one matrix product: counts (b, n) @ terms (n, m),
    several times faster than gathering each estimator's terms per resample.
    """
    n = terms[0][0].shape[0]
    cols: list[Array] = []
    where: list[tuple[int, int | None]] = []
    for num, den in terms:
        cols.append(num)
        if den is None:
            where.append((len(cols) - 1, None))
        else:
            cols.append(den)
            where.append((len(cols) - 2, len(cols) - 1))
    table = np.ascontiguousarray(np.column_stack(cols))
    rng = np.random.default_rng(seed)
    sums = np.empty((n_bootstrap, table.shape[1]))
    chunk = max(1, min(n_bootstrap, 2_000_000 // n))
    counts = np.empty((chunk, n))
    for start in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - start)
        for i in range(b):
            counts[i] = np.bincount(rng.integers(0, n, size=n), minlength=n)
        np.matmul(counts[:b], table, out=sums[start : start + b])
    alpha = 1 - level
    out = []
    for i_num, i_den in where:
        if i_den is None:
            boots = sums[:, i_num] / n
        else:
            d = sums[:, i_den]
            ok = d != 0
            boots = sums[ok, i_num] / d[ok]
        if boots.size == 0:
            out.append(Interval(math.nan, math.nan, level, "bootstrap"))
        else:
            lo, hi = np.percentile(boots, [100 * alpha / 2, 100 * (1 - alpha / 2)])
            out.append(Interval(float(lo), float(hi), level, "bootstrap"))
    return out


def _check_estimators(estimators: Any) -> tuple[Estimator, ...]:
    kinds = (IPS, SNIPS, DM, DR, SwitchDR, DRShrinkage)
    if isinstance(estimators, kinds):
        estimators = (estimators,)
    est = tuple(estimators)
    if not est:
        raise ConfigError("estimators must name at least one estimator, e.g. (IPS(), SNIPS(), DR())")
    for e in est:
        if not isinstance(e, kinds):
            raise ConfigError(
                f"estimators holds {e!r}; use IPS(), SNIPS(), DM(), DR(), SwitchDR(tau) or DRShrinkage(lam)"
            )
    return est


def estimate(
    data: BanditData,
    candidate: Candidate,
    *,
    estimators: Estimator | Iterable[Estimator] = DEFAULT_ESTIMATORS,
    reward_model: RewardModelLike | None = None,
    level: float = 0.95,
    n_bootstrap: int = 1000,
    seed: int = 0,
    reward_range: tuple[float, float] | None = None,
) -> Report:
    """Estimate the candidate's value on logged ``data`` with each of ``estimators``.

    ``reward_model`` (for DM and the DR family) is a ``LightGBMRewardModel`` (the
    default), an ``(n, K)`` array of predictions, or a callable
    ``q(context, action) -> reward`` over arrays. Intervals are at ``level``; the
    bootstrap draws ``n_bootstrap`` resamples from ``seed`` (0: none). With
    ``reward_range=(lo, hi)`` IPS also gets the Clopper-Pearson interval.
    Warns ``UnexploredActionWarning`` when the candidate puts mass where the
    logging policy put none.
    """
    if not isinstance(data, BanditData):
        raise ConfigError(f"data must be BanditData (see from_joined, SyntheticBandit.sample), got {type(data)}")
    est = _check_estimators(estimators)
    if not (isinstance(level, float) and 0 < level < 1):
        raise ConfigError(f"level={level!r} must be a float in (0, 1), e.g. 0.95")
    if not (isinstance(n_bootstrap, int) and n_bootstrap >= 0):
        raise ConfigError(f"n_bootstrap={n_bootstrap!r} must be an int >= 0 (0: no bootstrap interval)")
    if reward_range is not None:
        lo, hi = reward_range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ConfigError(f"reward_range={reward_range!r} must be (low, high) with low < high")
        if np.any(data.reward < lo) or np.any(data.reward > hi):
            raise SchemaError(f"rewards lie outside reward_range={reward_range!r}; widen it")
    pi = candidate_pmf(data, candidate)
    n = data.n
    rows = np.arange(n)
    w = pi[rows, data.action] / data.pscore
    q_chosen = q_pi = None
    if any(e.needs_model for e in est):
        q = _reward_matrix(data, reward_model)
        q_chosen = q[rows, data.action]
        q_pi = np.sum(pi * q, axis=1)
    inp = _Inputs(w=w, r=data.reward, q_chosen=q_chosen, q_pi=q_pi)

    notes: list[str] = []
    unexplored: float | None = None
    if data.pmf is not None:
        never = data.pmf <= 0
        unexplored = float(np.mean(np.sum(np.where(never, pi, 0.0), axis=1))) if never.any() else 0.0
        if unexplored > 0:
            share = float(np.mean(np.any(never & (pi > 0), axis=1)))
            msg = (
                f"the candidate puts {unexplored:.3g} of its probability mass (on average, in {share:.1%} of the "
                "decisions) on actions the logging policy never explored: IPS, SNIPS and the DR family cannot "
                "see what those earn (biased towards 0), DM extrapolates; explore them, or restrict the candidate"
            )
            notes.append(msg)
            warnings.warn(msg, UnexploredActionWarning, stacklevel=2)

    terms = [e.terms(inp) for e in est]
    boots = _bootstrap(terms, n_bootstrap, level, seed) if n_bootstrap > 0 else [None] * len(est)
    results = []
    for e, (num, den), boot in zip(est, terms, boots):
        cp = None
        if reward_range is not None and isinstance(e, IPS):
            cp = _clopper_pearson(np.minimum(w, e.max_weight), data.reward, level, reward_range)
        results.append(Estimate(e.name, _ratio(num, den), _gaussian(num, den, level), boot, cp))
    return Report(
        n=n,
        estimates=tuple(results),
        ess=effective_sample_size(w),
        max_weight=float(np.max(w)),
        unexplored_mass=unexplored,
        warnings=tuple(notes),
    )


def evaluate(
    log: str | os.PathLike[str] | Iterable[JoinedExample] | BanditData,
    candidate: Candidate,
    *,
    estimators: Estimator | Iterable[Estimator] = DEFAULT_ESTIMATORS,
    reward_model: RewardModelLike | None = None,
    level: float = 0.95,
    n_bootstrap: int = 1000,
    seed: int = 0,
    reward_range: tuple[float, float] | None = None,
    **join_options: Any,
) -> Report:
    """Evaluate ``candidate`` off-policy on a log directory, ``nba.log.join(...)`` output, or ``BanditData``.

    A directory is joined with ``join_options`` (``reward_window``, ``default_reward``,
    ...). For joined logs a callable candidate gets each ``DecisionRecord`` and
    returns a pmf over its ``actions`` (``model_candidate`` makes one from a
    model and a policy). The rest is as in ``estimate``.
    """
    if isinstance(log, BanditData):
        data = log
    else:
        if isinstance(log, (str, os.PathLike)):
            from nba.log.reader import join

            log = join(log, **join_options)
        elif join_options:
            raise ConfigError(f"join options {sorted(join_options)} apply only when log is a directory")
        data = from_joined(log)
    return estimate(
        data,
        candidate,
        estimators=estimators,
        reward_model=reward_model,
        level=level,
        n_bootstrap=n_bootstrap,
        seed=seed,
        reward_range=reward_range,
    )
