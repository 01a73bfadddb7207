"""Online bandits that learn in-process from rewards: state and updates in the compiled core.

Four learners, one interface:

* ``BetaThompson(n_arms, prior=(1, 1))``: Beta-Bernoulli Thompson sampling;
  rewards in [0, 1] (a fractional reward r counts as r successes, 1 - r failures).
* ``UCB1(n_arms)``: mean + sqrt(2 ln t / n_a); rewards are meant to lie in [0, 1].
* ``LinUCB(n_arms, n_features, alpha=1.0, ridge=1.0)``: one ridge regression per
  arm (disjoint LinUCB, Li et al. 2010), score theta_a . x + alpha sqrt(x' A_a^-1 x).
* ``LinearThompson(n_arms, n_features, v=1.0, ridge=1.0)``: the same regressions,
  theta_a drawn from N(theta_a_hat, v^2 A_a^-1) (Agrawal and Goyal 2013).

``score(x, out=None)`` fills one score per arm, higher is better (UCB models:
the upper bound; Thompson models: a posterior draw seeded by ``event_id``, or
the posterior mean without one). ``update(arm_index, x, reward)`` learns;
``updates`` counts the updates, and ``version`` (``"LinUCB@12"``: the class and
that count), what each decision the learner scores logs as ``model_version``,
changes with every one. ``to_bytes()`` / ``from_bytes()`` save and restore the
exact state (msgpack); models also pickle and deep-copy.

Context-free learners (``BetaThompson``, ``UCB1``) accept and ignore ``x``, so a
Decider can call every learner the same way. Linear learners take ``x`` as a
float64 vector of ``n_features``; append a constant 1 for an intercept.

Exact probabilities. ``pmf(x, ...)`` returns the distribution the choice is
really drawn from. UCB models are deterministic given their state: the argmax,
exact ties split evenly. For Thompson sampling, "draw a posterior sample and
take the argmax" has no closed-form propensity, so the pmf is the share of
``draws`` posterior draws, seeded by (seed, event id), in which each arm is
best. The Decider samples the choice from that pmf, so the probability it logs
is exactly the one it used; and since picking an index from the shares is the
same as taking the argmax of one of the draws at random, the choice is, over
events, distributed exactly as plain Thompson sampling. Numerical integration
was the alternative: exact P(best) but ~n^2 special-function calls per
decision (Beta CDFs for ``BetaThompson``), too slow for the hot path, while
draws cost ~n per draw and their error only affects how the pmf varies across
events, never whether the logged probability is right. A small ``draws`` does
give arms that won no draw probability 0 for that event.

Bounded learning. ``check_reward(r)`` returns ``r`` as a float or raises
``SchemaError`` for a reward the model cannot learn: outside [0, 1] for
``BetaThompson``, beyond ``MAX_ABS_REWARD`` (1e6) in magnitude for the others.
``update`` calls it, checks the arm and (linear models) that every |x_i| <=
``MAX_ABS_FEATURE`` (1e9), before it changes anything: a refused update leaves
the state exactly as it was. Those bounds keep the state finite whatever the
sequence of accepted updates (see ``LinUCB``), so one bad reward can no longer
turn a model into NaN that every later decision refuses.

Errors: a wrong ``x`` length or a non-finite ``x`` or reward is a
``SchemaError``; so is an arm index outside [0, n_arms) (it is input that does
not fit the model), and a reward ``check_reward`` refuses. Bad constructor
arguments are ``ConfigError``; undecodable or implausible saved state is
``ModelFormatError``, raised after checking the sizes the state declares
against the bytes it holds and before allocating anything.

Thread safety: each learner's state sits behind one lock in the core, taken
with the GIL released, around every read and every update: concurrent scores
never see half an update and concurrent updates are never lost.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

import msgspec
import numpy as np

from nba import _validate
from nba._core import bandits as bandits_core
from nba.errors import ConfigError, ModelFormatError, SchemaError
from nba.policy import event_key, greedy_pmf, out_buffer

if TYPE_CHECKING:
    from nba.catalog import Catalog

__all__ = [
    "MAX_ABS_FEATURE",
    "MAX_ABS_REWARD",
    "MIN_RIDGE",
    "UCB1",
    "UNPLAYED_SCORE",
    "BetaThompson",
    "LinUCB",
    "LinearThompson",
    "OnlineBandit",
]

# UCB1 score of an arm never played: finite (policies reject inf), above any reward.
UNPLAYED_SCORE: float = bandits_core.UNPLAYED_SCORE

_F64 = np.dtype(np.float64)
_I64 = np.dtype(np.int64)
_LE_F64 = np.dtype("<f8")
_LE_I64 = np.dtype("<i8")
_MAX_ARMS = 1 << 20
_MAX_FEATURES = 1 << 12
# A linear model keeps n_arms * (d^2 + 2 d) floats: at most this many (2 GiB).
_MAX_STATE_FLOATS = 1 << 28

#: Largest |reward| ``UCB1``, ``LinUCB`` and ``LinearThompson`` learn (see ``LinUCB``).
MAX_ABS_REWARD = 1e6
#: Largest |x_i| a linear model learns from (scores take any finite x).
MAX_ABS_FEATURE: float = bandits_core.MAX_ABS_FEATURE
#: Smallest ridge of a linear model: 1 / ridge bounds every entry of A^-1 (see ``LinUCB``).
MIN_RIDGE = 1e-6


# --------------------------------------------------------------------------- saved state


class _BetaState(msgspec.Struct, tag="beta_thompson", forbid_unknown_fields=True):
    n_arms: int
    prior: tuple[float, float]
    draws: int
    alpha: bytes  # little-endian float64 [n_arms]
    beta: bytes
    pulls: bytes  # little-endian int64 [n_arms]
    version: int  # the update count (``updates``); the saved field keeps its name


class _UCB1State(msgspec.Struct, tag="ucb1", forbid_unknown_fields=True):
    n_arms: int
    sums: bytes
    pulls: bytes
    version: int  # the update count


class _LinearState(msgspec.Struct, tag="linear", forbid_unknown_fields=True):
    kind: str  # "linucb" | "linear_thompson"
    n_arms: int
    n_features: int
    ridge: float
    param: float  # alpha (LinUCB) or v (LinearThompson)
    draws: int
    ainv: bytes  # little-endian float64 [n_arms, d, d]
    b: bytes  # [n_arms, d]
    theta: bytes  # [n_arms, d]
    pulls: bytes  # int64 [n_arms]
    version: int  # the update count


_AnyState: TypeAlias = _BetaState | _UCB1State | _LinearState


class _Saved(msgspec.Struct, forbid_unknown_fields=True):
    format: int
    state: _AnyState


_FORMAT = 1
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Saved)


def _to_le(a: np.ndarray, dtype: np.dtype) -> bytes:
    return np.ascontiguousarray(a, dtype=dtype).tobytes()


def _from_le(data: bytes, dtype: np.dtype, shape: tuple[int, ...], what: str) -> np.ndarray:
    n = int(np.prod(shape, dtype=np.int64))
    if len(data) != n * dtype.itemsize:
        raise ModelFormatError(
            f"saved online bandit: {what} holds {len(data)} bytes, expected {n * dtype.itemsize} for shape {shape}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


# --------------------------------------------------------------------------- validation


def _count(owner: str, name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (lo <= value <= hi):
        raise ConfigError(f"{owner}: {name} must be an int in [{lo}, {hi}], got {value!r}")
    return int(value)


def _positive(owner: str, name: str, value: Any, *, allow_zero: bool = False, minimum: float = 0.0) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    v = float(value) if ok else math.nan
    if not (math.isfinite(v) and (v >= minimum if allow_zero or minimum > 0.0 else v > 0.0)):
        sign = f">= {minimum:g}" if minimum > 0.0 else ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{owner}: {name} must be a finite number {sign}, got {value!r}")
    return v


class OnlineBandit:
    """Common interface and checks of the online learners (not instantiated directly)."""

    __slots__ = ("_all_arms", "_core", "_n_arms", "_n_features", "_ones")

    _core: Any
    kind: ClassVar[str] = ""
    exploration: ClassVar[str] = ""  # "ucb" or "thompson": which nba.policy drives it
    #: (lowest, highest) score ``score`` or a policy's draw can take: an estimate of the
    #: reward can be negative unless the model only learns rewards in [0, 1].
    score_bounds: ClassVar[tuple[float, float]] = (-math.inf, math.inf)
    #: The rewards ``check_reward`` accepts, inclusive.
    reward_range: ClassVar[tuple[float, float]] = (-MAX_ABS_REWARD, MAX_ABS_REWARD)

    def _init_common(self, n_arms: int, n_features: int) -> None:
        self._n_arms = n_arms
        self._n_features = n_features
        self._all_arms = np.arange(n_arms, dtype=np.int64)
        self._ones = np.ones(n_arms, dtype=np.float64)

    @property
    def n_arms(self) -> int:
        return self._n_arms

    @property
    def n_features(self) -> int:
        """Length of the context vector ``x`` (0 for context-free learners)."""
        return self._n_features

    @property
    def updates(self) -> int:
        """Number of updates learned so far."""
        return int(self._core.version)

    @property
    def version(self) -> str:
        """``"<class>@<updates>"`` (``"LinUCB@12"``): the ``model_version`` each decision it scores logs.

        Changes with every update, so a log tells which state of the learner scored a decision.
        """
        return f"{type(self).__name__}@{int(self._core.version)}"

    def score(self, x: Any, out: np.ndarray | None = None) -> np.ndarray:
        """One score per arm for context ``x`` (ignored by context-free learners), higher is better."""
        raise NotImplementedError

    def bind(self, catalog: Catalog) -> OnlineScorer:
        """This learner bound to a catalogue (``nba.base.Model``): one arm per catalogue arm, in order;
        a contextual learner's features are the schema's columns (``ConfigError`` otherwise)."""
        return OnlineScorer(self, catalog)

    # ---- checks shared by the subclasses

    def _x(self, x: Any) -> np.ndarray:
        d = self._n_features
        if type(x) is np.ndarray and x.dtype == _F64 and x.shape == (d,) and x.flags.c_contiguous:
            a = x
        else:
            if x is None:
                raise SchemaError(f"{type(self).__name__} needs a context vector x of {d} features, got None")
            try:
                a = np.ascontiguousarray(x, dtype=_F64)
            except (TypeError, ValueError) as e:
                raise SchemaError(f"x must be a vector of {d} numbers: {e}") from None
            if a.shape != (d,):
                raise SchemaError(
                    f"expected x of {d} features (the model's n_features), got shape {a.shape}"
                )
        return a

    @staticmethod
    def _check_x(bad: int, x: np.ndarray) -> None:
        """Raise for the non-finite feature the core reported (``bad`` >= 0)."""
        if bad >= 0:
            raise SchemaError(f"x[{bad}] is {x[bad]!r}; features must be finite (impute missing values first)")

    def _arm(self, arm_index: Any) -> int:
        if isinstance(arm_index, bool) or not isinstance(arm_index, (int, np.integer)):
            raise SchemaError(f"arm_index must be an int, got {type(arm_index).__name__} {arm_index!r}")
        if not (0 <= arm_index < self._n_arms):
            raise SchemaError(f"arm_index {arm_index} is out of range: the model has arms 0..{self._n_arms - 1}")
        return int(arm_index)

    def check_reward(self, value: float) -> float:
        """``value`` as a float if this model can learn it, else ``SchemaError``; changes nothing.

        Cheap (a class check and two comparisons for a float in range), so a
        caller can check a reward before it records or aggregates it.
        """
        lo, hi = self.reward_range
        if value.__class__ is float and lo <= value <= hi:  # NaN fails the comparisons
            return value
        r = _validate.number(value, "reward")
        if not lo <= r <= hi:
            raise SchemaError(self._reward_hint(value))
        return r

    def _reward_hint(self, value: Any) -> str:
        return (
            f"{type(self).__name__} learns rewards with |reward| <= {MAX_ABS_REWARD:g} (so that its state stays "
            f"finite), got {value!r}; rescale the reward"
        )

    def _scores_out(self, out: Any) -> np.ndarray:
        return out_buffer(out, self._n_arms)

    def _offer(self, arms: Any, scale: Any, out: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validated (offered arm indices, their multipliers, the output buffer)."""
        if arms is None:
            a = self._all_arms
        else:
            a = arms if isinstance(arms, np.ndarray) else np.asarray(arms)
            if a.dtype.kind not in "iu" or a.ndim != 1 or a.shape[0] == 0:
                raise SchemaError(f"arms must be a non-empty 1-D sequence of int arm indices, got {arms!r}")
            a = np.ascontiguousarray(a, dtype=_I64)
            lst = a.tolist()  # checks on a list: numpy reductions cost more on a few arms
            if min(lst) < 0 or max(lst) >= self._n_arms:
                raise SchemaError(f"arms holds an index outside 0..{self._n_arms - 1}: {lst}")
            if len(set(lst)) != len(lst):
                raise SchemaError(f"arms must be distinct, got {lst}")
        n = a.shape[0]
        if scale is None:
            s = self._ones if n == self._n_arms else np.ones(n, dtype=_F64)
        else:
            try:
                s = np.ascontiguousarray(scale, dtype=_F64)
            except (TypeError, ValueError) as e:
                raise SchemaError(f"scale must be {n} numbers, one per offered arm: {e}") from None
            if s.shape != (n,):
                raise SchemaError(f"scale must hold one number per offered arm ({n}), got shape {s.shape}")
            if not all(map(math.isfinite, s.tolist())):
                raise SchemaError(f"scale must be finite, got {s.tolist()}")
        return a, s, out_buffer(out, n)

    def _ucb_pmf(self, scores: np.ndarray, arms: Any, scale: Any, out: Any) -> np.ndarray:
        a, s, o = self._offer(arms, scale, out)
        with np.errstate(over="ignore"):  # an unplayed bound x a huge scale: greedy_pmf handles inf
            offered = scores[a] * s if (arms is not None or scale is not None) else scores
        return greedy_pmf(offered, o)

    # ---- persistence

    def to_bytes(self) -> bytes:
        """The exact learned state as msgpack bytes (restore with ``from_bytes``)."""
        return _ENCODER.encode(_Saved(format=_FORMAT, state=self._state()))

    @classmethod
    def from_bytes(cls, data: bytes) -> OnlineBandit:
        """A learner restored from ``to_bytes()``; called on a subclass, the kinds must match."""
        try:
            saved = _DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise ModelFormatError(f"not a saved nba online bandit: {e}") from None
        if saved.format != _FORMAT:
            raise ModelFormatError(f"saved online bandit has format {saved.format}; this nba reads format {_FORMAT}")
        model = _restore(saved.state)
        if cls is not OnlineBandit and not isinstance(model, cls):
            raise ModelFormatError(f"saved state is a {type(model).__name__}, not a {cls.__name__}")
        return model

    def __reduce__(self) -> tuple:
        return (_from_bytes, (self.to_bytes(),))

    def __copy__(self) -> OnlineBandit:
        return _from_bytes(self.to_bytes())

    def __deepcopy__(self, memo: dict) -> OnlineBandit:
        return _from_bytes(self.to_bytes())

    def load_state(self, data: bytes) -> None:
        """Replace what this learner has learned with ``to_bytes()`` of a learner of the same kind and settings.

        How a process joins shared learning (``nba.state``): it takes the merged state
        others saved. ``ModelFormatError`` (nothing changed) for bytes that are no
        saved learner, or one of another kind, shape or settings.
        """
        other = type(self).from_bytes(data)
        mine, theirs = _settings(self._state()), _settings(other._state())
        if mine != theirs:
            raise ModelFormatError(f"saved state is for a learner with {theirs}, this one has {mine}")
        self._core.set_state(*other._core.get_state())

    def _state(self) -> _AnyState:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError


def _settings(st: _AnyState) -> dict[str, Any]:
    """What a saved state says of the learner's kind and settings (not of what it learned)."""
    return {k: v for k, v in msgspec.structs.asdict(st).items() if not isinstance(v, bytes) and k != "version"} | {
        "kind": type(st).__name__ if not isinstance(st, _LinearState) else st.kind}


def _from_bytes(data: bytes) -> OnlineBandit:
    return OnlineBandit.from_bytes(data)


def _linear_size(owner: str, n: int, d: int) -> None:
    floats = n * (d * d + 2 * d)
    if floats > _MAX_STATE_FLOATS:
        raise ConfigError(
            f"{owner}: {n} arms x {d} features need {floats * 8 / 2**30:.1f} GiB of state; "
            f"nba keeps at most {_MAX_STATE_FLOATS * 8 / 2**30:g} GiB (fewer arms or features)"
        )


_TOL = 1 + 1e-6  # rounding room on bounds a state from accepted updates meets exactly
_MAX_STEP = 1e100  # the most one update adds to an entry of A^-1 is 2 * _MAX_STEP (f <= 2, |u_i| <= 1e50)


def _restore(st: _AnyState) -> OnlineBandit:
    """The learner of a decoded state: every size checked against the bytes present before anything is allocated."""
    try:
        if isinstance(st, _BetaState):
            n = _count("saved BetaThompson", "n_arms", st.n_arms, 1, _MAX_ARMS)
            alpha = _from_le(st.alpha, _LE_F64, (n,), "alpha")
            beta = _from_le(st.beta, _LE_F64, (n,), "beta")
            pulls = _from_le(st.pulls, _LE_I64, (n,), "pulls")
            bt = BetaThompson(n, prior=st.prior, draws=st.draws)
            a0, b0 = bt.prior
            cap = pulls.astype(np.float64) * _TOL + 1.0
            if not (np.isfinite(alpha).all() and np.isfinite(beta).all() and (pulls >= 0).all()
                    and (alpha >= a0 / _TOL).all() and (beta >= b0 / _TOL).all()
                    and (alpha - a0 <= cap).all() and (beta - b0 <= cap).all()):
                raise ModelFormatError(
                    "saved BetaThompson: alpha and beta must be finite, at least the prior and at most "
                    "the prior plus the pulls"
                )
            bt._core.set_state(alpha, beta, pulls, st.version)
            return bt
        if isinstance(st, _UCB1State):
            n = _count("saved UCB1", "n_arms", st.n_arms, 1, _MAX_ARMS)
            sums = _from_le(st.sums, _LE_F64, (n,), "sums")
            pulls = _from_le(st.pulls, _LE_I64, (n,), "pulls")
            if not (np.isfinite(sums).all() and (pulls >= 0).all()
                    and (np.abs(sums) <= pulls.astype(np.float64) * MAX_ABS_REWARD * _TOL).all()):
                raise ModelFormatError("saved UCB1: sums must be finite, pulls non-negative and |sums| <= pulls * 1e6")
            ucb = UCB1(n)
            ucb._core.set_state(sums, pulls, st.version)
            return ucb
        if st.kind not in ("linucb", "linear_thompson"):
            raise ModelFormatError(f"saved linear bandit has unknown kind {st.kind!r}")
        owner = "saved LinUCB" if st.kind == "linucb" else "saved LinearThompson"
        n = _count(owner, "n_arms", st.n_arms, 1, _MAX_ARMS)
        d = _count(owner, "n_features", st.n_features, 1, _MAX_FEATURES)
        _linear_size(owner, n, d)
        ainv = _from_le(st.ainv, _LE_F64, (n, d, d), "ainv")
        b = _from_le(st.b, _LE_F64, (n, d), "b")
        theta = _from_le(st.theta, _LE_F64, (n, d), "theta")
        pulls = _from_le(st.pulls, _LE_I64, (n,), "pulls")
        m: _Linear
        if st.kind == "linucb":
            m = LinUCB(n, d, alpha=st.param, ridge=st.ridge)
        else:
            m = LinearThompson(n, d, v=st.param, ridge=st.ridge, draws=st.draws)
        _check_linear(m, ainv, b, theta, pulls)
        m._core.set_state(ainv, b, theta, pulls, st.version)
        return m
    except ConfigError as e:
        raise ModelFormatError(f"saved online bandit has invalid parameters: {e}") from None
    except OverflowError as e:
        raise ModelFormatError(f"saved online bandit has an out-of-range counter: {e}") from None


def _check_linear(m: _Linear, ainv: np.ndarray, b: np.ndarray, theta: np.ndarray, pulls: np.ndarray) -> None:
    """Refuse a linear state that accepted updates cannot produce (the bounds in ``LinUCB``'s docstring)."""
    name = type(m).__name__
    if not all(np.isfinite(a).all() for a in (ainv, b, theta)):
        raise ModelFormatError(f"saved {name}: non-finite values in its state")
    if (pulls < 0).any():
        raise ModelFormatError(f"saved {name}: negative pull counts")
    n, d = m.n_arms, m.n_features
    p = pulls.astype(np.float64)
    a_cap = (1.0 / m.ridge + 2.0 * p * _MAX_STEP) * _TOL
    a_max = np.abs(ainv).reshape(n, -1).max(axis=1)
    b_max = np.abs(b).max(axis=1)
    if (a_max > a_cap).any() or (b_max > p * (MAX_ABS_REWARD * MAX_ABS_FEATURE * _TOL)).any() or \
            (np.abs(theta).max(axis=1) > d * a_max * b_max * _TOL).any():
        raise ModelFormatError(
            f"saved {name}: state out of the range accepted updates reach (|A^-1| <= 1/ridge + 2e100 pulls, "
            "|b| <= pulls * 1e6 * 1e9, |theta| <= d max|A^-1| max|b|)"
        )


class OnlineScorer:
    """An online learner bound to a catalogue (``nba.base.Scorer``): scores the shared vector."""

    __slots__ = ("contextual", "model", "score_bounds")

    def __init__(self, model: OnlineBandit, catalog: Catalog) -> None:
        if model.n_arms != len(catalog):
            raise ConfigError(f"online model has {model.n_arms} arms but the catalogue has {len(catalog)}")
        nf = model.n_features
        if nf not in (0, catalog.schema.n_columns):
            raise ConfigError(
                f"online model expects {nf} features but the schema has {catalog.schema.n_columns} columns"
            )
        self.model = model
        self.contextual = nf > 0
        self.score_bounds = model.score_bounds

    @property
    def version(self) -> str:
        """The learner's ``version``, read per decision (it changes as the learner learns)."""
        return self.model.version

    def buffers(self, n_arms: int) -> dict[str, np.ndarray]:
        return {}

    def score(self, x: np.ndarray, idx: np.ndarray, out: np.ndarray, buf: dict[str, np.ndarray]) -> None:
        """Scores of arms ``idx`` into ``out``: UCB bounds, or a Thompson learner's posterior means."""
        s = self.model.score(x if self.contextual else None)
        np.take(s, idx, out=out)


# --------------------------------------------------------------------------- context-free learners


class BetaThompson(OnlineBandit):
    """Beta-Bernoulli Thompson sampling: one Beta(alpha, beta) posterior per arm.

    ``prior`` is (alpha0, beta0), both > 0. Rewards must lie in [0, 1]. ``draws``
    is the default number of posterior draws behind ``pmf``: a Beta draw costs two
    gamma variates (~10-20 ns), so 16 draws over 10 arms stay within a few
    microseconds; more draws give finer propensities (multiples of 1 / draws), the
    choice follows Thompson sampling exactly either way.
    """

    __slots__ = ("_draws", "_prior")

    kind: ClassVar[str] = "beta_thompson"
    exploration: ClassVar[str] = "thompson"
    score_bounds: ClassVar[tuple[float, float]] = (0.0, 1.0)  # posterior draws and means of a Bernoulli rate
    reward_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(self, n_arms: int, prior: tuple[float, float] = (1.0, 1.0), *, draws: int = 16) -> None:
        n = _count("BetaThompson", "n_arms", n_arms, 1, _MAX_ARMS)
        if not isinstance(prior, (tuple, list)) or len(prior) != 2:
            raise ConfigError(f"BetaThompson: prior must be a pair (alpha0, beta0), got {prior!r}")
        a0 = _positive("BetaThompson", "prior alpha0", prior[0])
        b0 = _positive("BetaThompson", "prior beta0", prior[1])
        self._prior = (a0, b0)
        self._draws = _count("BetaThompson", "draws", draws, 1, 1_000_000)
        self._init_common(n, 0)
        self._core = bandits_core.BetaBernoulliCore(n, a0, b0)

    @property
    def prior(self) -> tuple[float, float]:
        return self._prior

    @property
    def draws(self) -> int:
        return self._draws

    @property
    def alpha(self) -> np.ndarray:
        """Posterior alpha per arm (a copy)."""
        return self._core.get_state()[0]

    @property
    def beta(self) -> np.ndarray:
        """Posterior beta per arm (a copy)."""
        return self._core.get_state()[1]

    @property
    def pulls(self) -> np.ndarray:
        """Updates per arm (a copy)."""
        return self._core.get_state()[2]

    def score(
        self, x: Any = None, out: np.ndarray | None = None, *, event_id: str | None = None, seed: int = 0
    ) -> np.ndarray:
        """One posterior draw per arm seeded by (``seed``, ``event_id``); the posterior mean without one."""
        o = self._scores_out(out)
        if event_id is None:
            self._core.mean(o)
        else:
            self._core.sample(event_key(event_id, seed), o)
        return o

    def pmf(
        self,
        x: Any = None,
        out: np.ndarray | None = None,
        *,
        event_id: str,
        seed: int = 0,
        draws: int | None = None,
        arms: Any = None,
        scale: Any = None,
    ) -> np.ndarray:
        """Share of ``draws`` seeded posterior draws in which each offered arm is best.

        ``arms`` (default all) are the offered arm indices, ``out[j]`` is for
        ``arms[j]``; ``scale`` multiplies each offered arm's draw before the argmax.
        """
        m = self._draws if draws is None else _count("BetaThompson", "draws", draws, 1, 1_000_000)
        a, s, o = self._offer(arms, scale, out)
        self._core.best_pmf(event_key(event_id, seed), m, a, s, o)
        return o

    def _reward_hint(self, value: Any) -> str:
        return (
            f"BetaThompson rewards must lie in [0, 1] (success probability), got {value!r}; "
            "rescale the reward or use LinUCB/UCB1"
        )

    def update(self, arm_index: int, x: Any = None, reward: float = 0.0) -> None:
        """Learn ``reward`` in [0, 1] for ``arm_index``; ``x`` is ignored."""
        arm = self._arm(arm_index)
        self._core.update(arm, self.check_reward(reward))

    def _state(self) -> _BetaState:
        alpha, beta, pulls, version = self._core.get_state()
        return _BetaState(
            n_arms=self._n_arms, prior=self._prior, draws=self._draws, alpha=_to_le(alpha, _LE_F64),
            beta=_to_le(beta, _LE_F64), pulls=_to_le(pulls, _LE_I64), version=int(version),
        )

    def __repr__(self) -> str:
        return f"BetaThompson(n_arms={self._n_arms}, prior={self._prior}, draws={self._draws}, updates={self.updates})"


class UCB1(OnlineBandit):
    """UCB1 (Auer et al. 2002): mean reward + sqrt(2 ln t / n_a); unplayed arms first.

    The bonus is calibrated for rewards in [0, 1]; rescale other rewards.
    ``check_reward`` accepts |reward| <= ``MAX_ABS_REWARD``: a sum stays below
    2**63 * 1e6 ~ 1e25, far from overflow.
    """

    __slots__ = ()

    kind: ClassVar[str] = "ucb1"
    exploration: ClassVar[str] = "ucb"

    def __init__(self, n_arms: int) -> None:
        n = _count("UCB1", "n_arms", n_arms, 1, _MAX_ARMS)
        self._init_common(n, 0)
        self._core = bandits_core.UCB1Core(n)

    @property
    def pulls(self) -> np.ndarray:
        """Updates per arm (a copy)."""
        return self._core.get_state()[1]

    def means(self) -> np.ndarray:
        """Mean reward per arm (0 where never played)."""
        o = np.empty(self._n_arms, dtype=_F64)
        self._core.mean(o)
        return o

    def score(self, x: Any = None, out: np.ndarray | None = None, **_: Any) -> np.ndarray:
        """UCB1 index per arm; ``UNPLAYED_SCORE`` for arms never played. ``x`` is ignored."""
        o = self._scores_out(out)
        self._core.ucb(o)
        return o

    def pmf(
        self, x: Any = None, out: np.ndarray | None = None, *, arms: Any = None, scale: Any = None, **_: Any
    ) -> np.ndarray:
        """One-hot on the best offered arm (by ``scale`` x index), exact ties split evenly."""
        return self._ucb_pmf(self.score(), arms, scale, out)

    def update(self, arm_index: int, x: Any = None, reward: float = 0.0) -> None:
        """Learn ``reward`` for ``arm_index``; ``x`` is ignored."""
        arm = self._arm(arm_index)
        self._core.update(arm, self.check_reward(reward))

    def _state(self) -> _UCB1State:
        sums, pulls, version = self._core.get_state()
        return _UCB1State(
            n_arms=self._n_arms, sums=_to_le(sums, _LE_F64), pulls=_to_le(pulls, _LE_I64), version=int(version)
        )

    def __repr__(self) -> str:
        return f"UCB1(n_arms={self._n_arms}, updates={self.updates})"


# --------------------------------------------------------------------------- linear learners


class _Linear(OnlineBandit):
    __slots__ = ("_draws", "_param", "_ridge")

    def _init_linear(self, owner: str, n_arms: Any, n_features: Any, param: float, ridge: Any, draws: Any) -> None:
        n = _count(owner, "n_arms", n_arms, 1, _MAX_ARMS)
        d = _count(owner, "n_features", n_features, 1, _MAX_FEATURES)
        _linear_size(owner, n, d)
        self._ridge = _positive(owner, "ridge", ridge, minimum=MIN_RIDGE)
        self._param = param
        self._draws = _count(owner, "draws", draws, 1, 1_000_000)
        self._init_common(n, d)
        self._core = bandits_core.LinearCore(n, d, self._ridge)

    @property
    def ridge(self) -> float:
        return self._ridge

    @property
    def theta(self) -> np.ndarray:
        """Ridge estimate per arm, shape (n_arms, n_features) (a copy)."""
        return self._core.get_state()[2]

    @property
    def pulls(self) -> np.ndarray:
        """Updates per arm (a copy)."""
        return self._core.get_state()[3]

    def mean_width(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """(theta_a . x, sqrt(x' A_a^-1 x)) per arm: the estimate and its confidence width."""
        xv = self._x(x)
        mean = np.empty(self._n_arms, dtype=_F64)
        width = np.empty(self._n_arms, dtype=_F64)
        self._check_x(self._core.mean_width(xv, mean, width), xv)
        return mean, width

    def update(self, arm_index: int, x: Any, reward: float) -> None:
        """Learn ``reward`` for ``arm_index`` in context ``x`` (a rank-one update, O(d^2)).

        Every |x_i| must be at most ``MAX_ABS_FEATURE`` and the reward pass
        ``check_reward``; otherwise ``SchemaError`` and nothing is learned.
        """
        arm = self._arm(arm_index)
        r = self.check_reward(reward)
        xv = self._x(x)
        bad = self._core.update(arm, xv, r)
        if bad == -2:
            raise SchemaError(
                f"{type(self).__name__}: update refused (nothing learned): rounding has made arm {arm}'s "
                "A^-1 too inaccurate for this x (x' A^-1 x < 0); features of very different scales cause "
                "this: standardize them"
            )
        if bad >= 0:
            v = float(xv[bad])
            if math.isfinite(v):
                raise SchemaError(
                    f"x[{bad}] is {v!r}; a linear model learns from |x_i| <= {MAX_ABS_FEATURE:g} "
                    "(so that its state stays finite): rescale the feature"
                )
            self._check_x(bad, xv)

    def _state(self) -> _LinearState:
        ainv, b, theta, pulls, version = self._core.get_state()
        return _LinearState(
            kind=self.kind, n_arms=self._n_arms, n_features=self._n_features, ridge=self._ridge,
            param=self._param, draws=self._draws, ainv=_to_le(ainv, _LE_F64), b=_to_le(b, _LE_F64),
            theta=_to_le(theta, _LE_F64), pulls=_to_le(pulls, _LE_I64), version=int(version),
        )


class LinUCB(_Linear):
    """Disjoint LinUCB: theta_a . x + alpha * sqrt(x' A_a^-1 x), one ridge regression per arm.

    ``alpha`` scales the exploration bonus (0 = greedy on the estimates);
    ``ridge`` (>= ``MIN_RIDGE``) is the prior precision (A_a starts as ridge * I).

    Why the state stays finite. ``update`` learns only |reward| <= R = 1e6
    (``MAX_ABS_REWARD``) and |x_i| <= X = 1e9 (``MAX_ABS_FEATURE``), with d <=
    4096 features and ridge >= ``MIN_RIDGE`` = 1e-6; and the core applies a
    Sherman-Morrison step only when u = A^-1 x has every |u_i| <= 1e50 and
    x^T u >= -1/2, so f = 1 / (1 + x^T u) <= 2. (In exact arithmetic x^T u >= 0,
    |A^-1| <= 1/ridge and |u_i| <= 7e16; rounding can break the first two when
    features are scaled very differently, e.g. 1e8 next to 1: such an update
    raises ``SchemaError`` and learns nothing; standardize the features.) So
    after N <= 2**63 updates every entry of A^-1 is at most 1e6 + 2 N 1e100 <
    2e119, |b_i| <= N R X < 1e34, |theta_i| <= d max|A^-1| max|b| < 1e157, and
    for x within the same bounds |theta . x| < 1e170 and the width
    sqrt(x^T A^-1 x) < 1e73: all far below float64's 1.8e308. The same holds
    for ``LinearThompson``; a score is then finite whenever alpha (v) times the
    width is.
    """

    __slots__ = ()

    kind: ClassVar[str] = "linucb"
    exploration: ClassVar[str] = "ucb"

    def __init__(self, n_arms: int, n_features: int, alpha: float = 1.0, ridge: float = 1.0) -> None:
        a = _positive("LinUCB", "alpha", alpha, allow_zero=True)
        self._init_linear("LinUCB", n_arms, n_features, a, ridge, 1)

    @property
    def alpha(self) -> float:
        return self._param

    def score(self, x: Any, out: np.ndarray | None = None, **_: Any) -> np.ndarray:
        """Upper confidence bound per arm for context ``x``."""
        xv = self._x(x)
        o = self._scores_out(out)
        self._check_x(self._core.ucb(xv, self._param, o), xv)
        return o

    def pmf(
        self, x: Any, out: np.ndarray | None = None, *, arms: Any = None, scale: Any = None, **_: Any
    ) -> np.ndarray:
        """One-hot on the best offered arm (by ``scale`` x bound), exact ties split evenly."""
        return self._ucb_pmf(self.score(x), arms, scale, out)

    def __repr__(self) -> str:
        return (
            f"LinUCB(n_arms={self._n_arms}, n_features={self._n_features}, alpha={self._param}, "
            f"ridge={self._ridge}, updates={self.updates})"
        )


class LinearThompson(_Linear):
    """Linear Thompson sampling: theta_a ~ N(theta_a_hat, v^2 A_a^-1), one ridge regression per arm.

    ``v`` scales the posterior spread (exploration); ``ridge`` is the prior
    precision; ``draws`` is the default number of posterior draws behind ``pmf``.
    """

    __slots__ = ()

    kind: ClassVar[str] = "linear_thompson"
    exploration: ClassVar[str] = "thompson"

    def __init__(
        self, n_arms: int, n_features: int, v: float = 1.0, ridge: float = 1.0, *, draws: int = 64
    ) -> None:
        v_ = _positive("LinearThompson", "v", v, allow_zero=True)
        self._init_linear("LinearThompson", n_arms, n_features, v_, ridge, draws)

    @property
    def v(self) -> float:
        return self._param

    @property
    def draws(self) -> int:
        return self._draws

    def score(
        self, x: Any, out: np.ndarray | None = None, *, event_id: str | None = None, seed: int = 0
    ) -> np.ndarray:
        """A posterior draw of theta_a . x per arm seeded by (``seed``, ``event_id``); the mean without one."""
        xv = self._x(x)
        o = self._scores_out(out)
        if event_id is None:
            bad = self._core.ucb(xv, 0.0, o)
        else:
            bad = self._core.sample(xv, self._param, event_key(event_id, seed), o)
        self._check_x(bad, xv)
        return o

    def pmf(
        self,
        x: Any,
        out: np.ndarray | None = None,
        *,
        event_id: str,
        seed: int = 0,
        draws: int | None = None,
        arms: Any = None,
        scale: Any = None,
    ) -> np.ndarray:
        """Share of ``draws`` seeded posterior draws in which each offered arm is best (see BetaThompson.pmf)."""
        xv = self._x(x)
        m = self._draws if draws is None else _count("LinearThompson", "draws", draws, 1, 1_000_000)
        a, s, o = self._offer(arms, scale, out)
        key = event_key(event_id, seed)
        self._check_x(self._core.best_pmf(xv, self._param, key, m, a, s, o), xv)
        return o

    def __repr__(self) -> str:
        return (
            f"LinearThompson(n_arms={self._n_arms}, n_features={self._n_features}, v={self._param}, "
            f"ridge={self._ridge}, draws={self._draws}, updates={self.updates})"
        )
