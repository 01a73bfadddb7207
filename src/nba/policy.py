"""Exploration policies: a score vector (higher is better) -> the pmf a choice is drawn from.

Score-based policies (``Greedy``, ``EpsilonGreedy``, ``Softmax``, ``SquareCB``)
have ``pmf(scores, out=None)``. Given Vowpal Wabbit's ``cb_adf`` costs negated,
each reproduces VW's ``--cb_explore_adf`` pmf for the same options:

==============================  =============================================
nba                             vw --cb_explore_adf
==============================  =============================================
``Greedy()``                    ``--epsilon 0``
``EpsilonGreedy(e)``            ``--epsilon e``
``Softmax(l)``                  ``--softmax --lambda l`` (VW uses ``|l|``)
``Softmax(l, epsilon=e)``       ``--softmax --lambda l --epsilon e``
``SquareCB(g, p)``, t examples  ``--squarecb --gamma_scale g --gamma_exponent p``
==============================  =============================================

Ties: VW counts as tied with the best action every action whose cost is within
a relative 1e-4 of it (``|a - b| <= 1e-4 (|a| + |b|)``) and splits ``1 - epsilon``
evenly over them; ``tie_rtol`` sets that tolerance (0 means exact ties only).
Softmax: ``p_i ~ exp(lambda_ * s_i)``; VW computes ``exp(-|lambda| * cost_i)``,
so ``lambda_`` is VW's ``--lambda`` on the negated costs and must be >= 0.
SquareCB: the best action (the first of exact ties) gets what the others leave,
each other one ``1 / (n + gamma (s_best - s_i))`` with
``gamma = gamma_scale * t ** gamma_exponent`` and ``t`` the number of examples
learned so far (VW's counter).

Model-based policies (``Thompson``, ``UCB``) also have
``model_pmf(model, x, *, event_id, seed, arms, scale, out, scores)``: they ask an
online bandit from ``nba.bandits`` for the distribution its choice is drawn
from, and ``uses_model(model)`` says, once, whether they do so for a given model.
``UCB`` needs no more than the model's scores (its indices are deterministic:
the pmf is the argmax, exact ties split evenly), so it works from scores too;
Thompson sampling has no closed-form propensity, so ``Thompson`` can only work
through the model, which estimates P(arm is best) from seeded posterior draws.

``sample`` and ``sample_slate`` draw from a pmf with a uniform derived from
(application seed, event id) (the recipe is in ``nba/_core/rng.pxd``), so every
decision can be replayed and audited in another process or on another platform;
``event_key`` is that stream's key, which online models' posterior draws use too.

The policies implement the Protocols of ``nba.base`` (``FusedPolicy``,
``ModelPolicy``, ``CountingPolicy``): ``kernel_params()`` is what the Decider's
fused decision kernel needs of a score-based policy.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec
import numpy as np

from nba._core import decide as decide_core
from nba._core import policy as policy_core
from nba._core.locks import PoliteLock
from nba.errors import ConfigError, SchemaError

__all__ = [
    "Greedy",
    "EpsilonGreedy",
    "Softmax",
    "SquareCB",
    "UCB",
    "Thompson",
    "sample",
    "sample_slate",
    "event_key",
    "greedy_pmf",
    "out_buffer",
    "PMF_TOLERANCE",
]

# How far from 1 the sum of a pmf handed to sample() may be: the logged
# probability is pmf[i], so a pmf that does not sum to 1 would log a wrong one.
PMF_TOLERANCE = policy_core.PMF_TOLERANCE  # 1e-6, shared with the fused decision kernel

_F64 = np.dtype(np.float64)
_U64 = (1 << 64) - 1


# --------------------------------------------------------------------------- validation


def _real(owner: str, name: str, value: Any, lo: float, hi: float = math.inf, hint: str = "") -> float:
    """``value`` as a finite float in [lo, hi], or a ConfigError naming ``owner.name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{owner}: {name} must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not (math.isfinite(v) and lo <= v <= hi):
        rng = f"[{lo}, {hi}]" if hi != math.inf else f">= {lo}"
        raise ConfigError(f"{owner}: {name} must be {rng}, got {value!r}{hint}")
    return v


def _scores(scores: Any, what: str = "scores") -> np.ndarray:
    """``scores`` as a non-empty 1-D C-contiguous float64 array (no copy when it already is one)."""
    if type(scores) is np.ndarray and scores.dtype == _F64 and scores.ndim == 1 and scores.flags.c_contiguous:
        a = scores
    else:
        try:
            a = np.ascontiguousarray(scores, dtype=_F64)
        except (TypeError, ValueError) as e:
            raise SchemaError(f"{what} must be a 1-D array of numbers, got {type(scores).__name__}: {e}") from None
        if a.ndim != 1:
            raise SchemaError(f"{what} must be 1-D (one entry per action), got shape {a.shape}")
    if a.shape[0] == 0:
        raise SchemaError(f"{what} is empty: there must be at least one action to choose from")
    return a


def out_buffer(out: np.ndarray | None, n: int) -> np.ndarray:
    """``out`` if it is a writable C-contiguous float64 vector of ``n``, a new one if None; else SchemaError."""
    if out is None:
        return np.empty(n, dtype=_F64)
    if (
        type(out) is not np.ndarray
        or out.dtype != _F64
        or out.shape != (n,)
        or not out.flags.c_contiguous
        or not out.flags.writeable
    ):
        raise SchemaError(
            f"out must be a writable C-contiguous float64 array of shape ({n},), got "
            f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}"
        )
    return out


def _raise_nonfinite(scores: np.ndarray, i: int) -> None:
    raise SchemaError(
        f"score {i} of {scores.shape[0]} is {scores[i]!r}; scores must be finite "
        "(check the model output and the features it was given)"
    )


def _run_pmf(kernel: Any, scores: Any, out: np.ndarray | None, *params: float) -> np.ndarray:
    """``kernel(scores, *params, out)``, the pmf into ``out`` (a new array if None).

    float64 vectors and a fitting ``out`` go straight to the kernel; anything else
    is converted and checked first. A non-finite score is a SchemaError naming it.
    """
    if out is not None and kernel(scores, *params, out) == -1:
        return out
    s = _scores(scores)
    o = out_buffer(out, s.shape[0])
    bad = kernel(s, *params, o)
    if bad >= 0:
        _raise_nonfinite(s, bad)
    return o


def greedy_pmf(offered: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """One-hot on the largest of ``offered`` (exact ties split evenly) into ``out`` (a new array if None).

    The pmf of a UCB policy over scaled bounds. An unplayed arm's bound
    (UNPLAYED_SCORE) times a large scale can overflow to inf: such arms are the
    best and tie with each other (``offered`` is clipped in place to finite).
    A NaN is a SchemaError, never a silent pmf. ``offered`` is a float64
    C-contiguous vector; an unfit ``out`` is a SchemaError (checked only when the
    kernel refuses it: this runs once per UCB decision).
    """
    if out is None:
        out = np.empty(offered.shape[0], dtype=_F64)
    done = policy_core.pmf_epsilon_greedy(offered, 0.0, 0.0, out)
    if done == -1:
        return out
    if done == -2:  # unusable arrays would leave out unwritten
        out_buffer(out, offered.shape[0])
        raise ValueError("greedy_pmf takes a float64 C-contiguous vector of offered bounds")
    if np.isnan(offered).any():
        raise SchemaError(f"bound x scale is NaN for an offered arm: {offered.tolist()}; check the features and values")
    np.clip(offered, -_F64_MAX, _F64_MAX, out=offered)
    policy_core.pmf_epsilon_greedy(offered, 0.0, 0.0, out)
    return out


_F64_MAX = float(np.finfo(np.float64).max)


def event_key(event_id: str | bytes, seed: int = 0) -> int:
    """The 64-bit key of the random stream of (``seed``, ``event_id``) (the recipe is in ``nba/_core/rng.pxd``).

    ``sample`` draws from this stream, and online models seed their posterior
    draws with it, so a decision replays from its event id. ``seed`` is any int
    (reduced mod 2**64). A str id in the common case skips the general checks:
    this runs once per Thompson decision.
    """
    if type(event_id) is str and type(seed) is int and 0 <= seed <= _U64:
        return policy_core.event_key(event_id.encode("utf-8"), seed)
    return policy_core.event_key(_event_bytes(event_id), _seed(seed))


def _event_bytes(event_id: Any) -> bytes:
    if isinstance(event_id, str):
        return event_id.encode("utf-8")
    if isinstance(event_id, (bytes, bytearray)):
        return bytes(event_id)
    raise SchemaError(f"event_id must be a str, got {type(event_id).__name__} {event_id!r}")


def _seed(seed: Any) -> int:
    """An application seed as an unsigned 64-bit integer (any int, reduced mod 2**64)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    return int(seed) & _U64


def _raise_bad_pmf(p: np.ndarray, bad: int) -> None:
    """Raise for the failure ``_core`` reported: entry ``bad``, or the sum when bad == len(p)."""
    if bad < p.shape[0]:
        raise SchemaError(f"pmf[{bad}] is {p[bad]!r}; a pmf must be finite and non-negative")
    raise SchemaError(
        f"pmf sums to {float(p.sum())!r}, not 1 (tolerance {PMF_TOLERANCE}); normalize it first, "
        "or the logged probability would not be the probability used"
    )


# --------------------------------------------------------------------------- score-based policies


class Greedy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Always the best-scoring action; ties (within ``tie_rtol``, VW's rule) split evenly.

    Same as ``EpsilonGreedy(0.0)`` and VW's ``--cb_explore_adf --epsilon 0``.
    """

    tie_rtol: float = 1e-4

    kind: ClassVar[str] = "greedy"

    def __post_init__(self) -> None:
        _real("Greedy", "tie_rtol", self.tie_rtol, 0.0, 1.0)

    @property
    def name(self) -> str:
        """Short description for logs."""
        return "greedy" if self.tie_rtol == 1e-4 else f"greedy(tie_rtol={self.tie_rtol!r})"

    def kernel_params(self) -> tuple[int, float, float]:
        """(code, p1, p2) of this pmf in the fused decision kernel (``nba._core.decide``)."""
        return (decide_core.DECIDE_EPSILON_GREEDY, 0.0, self.tie_rtol)

    def pmf(self, scores: Any, out: np.ndarray | None = None) -> np.ndarray:
        """The pmf over ``scores`` (higher is better), written into ``out`` if given."""
        return _run_pmf(policy_core.pmf_epsilon_greedy, scores, out, 0.0, self.tie_rtol)


class EpsilonGreedy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``epsilon`` spread uniformly, ``1 - epsilon`` on the best action (ties split, VW's rule).

    VW's ``--cb_explore_adf --epsilon epsilon``.
    """

    epsilon: float
    tie_rtol: float = 1e-4

    kind: ClassVar[str] = "epsilon_greedy"

    def __post_init__(self) -> None:
        _real("EpsilonGreedy", "epsilon", self.epsilon, 0.0, 1.0, "; it is the probability of exploring")
        _real("EpsilonGreedy", "tie_rtol", self.tie_rtol, 0.0, 1.0)

    @property
    def name(self) -> str:
        """Short description for logs."""
        tail = "" if self.tie_rtol == 1e-4 else f",tie_rtol={self.tie_rtol!r}"
        return f"epsilon_greedy(epsilon={self.epsilon!r}{tail})"

    def kernel_params(self) -> tuple[int, float, float]:
        """(code, p1, p2) of this pmf in the fused decision kernel (``nba._core.decide``)."""
        return (decide_core.DECIDE_EPSILON_GREEDY, self.epsilon, self.tie_rtol)

    def pmf(self, scores: Any, out: np.ndarray | None = None) -> np.ndarray:
        """The pmf over ``scores`` (higher is better), written into ``out`` if given."""
        return _run_pmf(policy_core.pmf_epsilon_greedy, scores, out, self.epsilon, self.tie_rtol)


class Softmax(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``p_i ~ exp(lambda_ * s_i)``, then at least ``epsilon / n`` per action.

    ``lambda_`` is an inverse temperature in score units (0: uniform; large:
    greedy). VW's ``--cb_explore_adf --softmax --lambda lambda_ --epsilon epsilon``
    on negated costs; the floor is VW's (a projection, not a mixture).
    """

    lambda_: float
    epsilon: float = 0.0

    kind: ClassVar[str] = "softmax"

    def __post_init__(self) -> None:
        _real(
            "Softmax", "lambda_", self.lambda_, 0.0, math.inf,
            "; scores are higher-is-better, so a positive lambda_ favours high scores",
        )
        _real("Softmax", "epsilon", self.epsilon, 0.0, 1.0, "; it is the total minimum probability")

    @property
    def name(self) -> str:
        """Short description for logs."""
        tail = f",epsilon={self.epsilon!r}" if self.epsilon else ""
        return f"softmax(lambda={self.lambda_!r}{tail})"

    def kernel_params(self) -> tuple[int, float, float]:
        """(code, p1, p2) of this pmf in the fused decision kernel (``nba._core.decide``)."""
        return (decide_core.DECIDE_SOFTMAX, self.lambda_, self.epsilon)

    def pmf(self, scores: Any, out: np.ndarray | None = None) -> np.ndarray:
        """The pmf over ``scores`` (higher is better), written into ``out`` if given."""
        return _run_pmf(policy_core.pmf_softmax, scores, out, self.lambda_, self.epsilon)


class SquareCB:
    """SquareCB (Foster and Rakhlin, 2020): exploration that shrinks as examples accumulate.

    ``gamma = gamma_scale * t ** gamma_exponent`` where ``t`` counts the examples
    the model has learned from: pass it to ``pmf(..., t=...)``, or let the policy
    count them with ``observe()`` (the Decider calls it once per learned reward).
    With t = 0 the pmf is uniform, as in VW. VW's
    ``--cb_explore_adf --squarecb --gamma_scale g --gamma_exponent p`` after t
    learned examples.
    """

    __slots__ = ("_gamma_scale", "_gamma_exponent", "_t", "_lock")

    kind: ClassVar[str] = "squarecb"

    def __init__(self, gamma_scale: float = 10.0, gamma_exponent: float = 0.5, *, t: int = 0) -> None:
        self._gamma_scale = _real("SquareCB", "gamma_scale", gamma_scale, 0.0)
        self._gamma_exponent = _real("SquareCB", "gamma_exponent", gamma_exponent, 0.0)
        self._t = self._count("t", t)
        self._lock = PoliteLock()  # renews itself in a forked child

    @staticmethod
    def _count(name: str, t: Any) -> int:
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
            raise ConfigError(f"SquareCB: {name} must be a non-negative int (examples learned), got {t!r}")
        return int(t)

    @property
    def gamma_scale(self) -> float:
        return self._gamma_scale

    @property
    def gamma_exponent(self) -> float:
        return self._gamma_exponent

    @property
    def t(self) -> int:
        """Examples observed so far."""
        return self._t

    @property
    def name(self) -> str:
        """Short description for logs."""
        return f"squarecb(gamma_scale={self._gamma_scale!r},gamma_exponent={self._gamma_exponent!r})"

    def observe(self, n: int = 1) -> None:
        """Count ``n`` more learned examples (thread-safe)."""
        n = self._count("n", n)
        with self._lock:
            self._t += n

    def gamma(self, t: int | None = None) -> float:
        """The greediness ``gamma_scale * t ** gamma_exponent`` (t defaults to the count)."""
        t = self._t if t is None else self._count("t", t)
        return self._gamma_scale * float(t) ** self._gamma_exponent

    def kernel_params(self) -> tuple[int, float, float]:
        """(code, p1, p2) of this pmf in the fused decision kernel (``nba._core.decide``), with the current count."""
        return (decide_core.DECIDE_SQUARECB, self.gamma(), 0.0)

    def pmf(self, scores: Any, out: np.ndarray | None = None, *, t: int | None = None) -> np.ndarray:
        """The pmf over ``scores`` (higher is better) after ``t`` examples (default: the count)."""
        return _run_pmf(policy_core.pmf_squarecb, scores, out, self.gamma(t))

    def __repr__(self) -> str:
        return f"SquareCB(gamma_scale={self._gamma_scale!r}, gamma_exponent={self._gamma_exponent!r}, t={self._t})"

    def __reduce__(self) -> tuple:
        return (_squarecb, (self._gamma_scale, self._gamma_exponent, self._t))


def _squarecb(gamma_scale: float, gamma_exponent: float, t: int) -> SquareCB:
    return SquareCB(gamma_scale, gamma_exponent, t=t)


# --------------------------------------------------------------------------- model-based policies


def _exploration(model: Any) -> str | None:
    """What an online learner says drives it ("ucb" or "thompson", its ``exploration``); None for other models."""
    return getattr(model, "exploration", None)


_NEEDS = {
    "ucb": "UCB policy needs an upper-confidence-bound model (nba.UCB1, nba.LinUCB)",
    "thompson": "Thompson policy needs a posterior-sampling model (nba.BetaThompson, nba.LinearThompson)",
}


def _require(model: Any, exploration: str) -> None:
    if _exploration(model) != exploration:
        raise ConfigError(f"{_NEEDS[exploration]}, got {type(model).__name__}")


class UCB(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Play the arm with the highest upper confidence bound; exact ties split evenly.

    For ``nba.UCB1`` and ``nba.LinUCB``, whose scores are already the bounds: the
    choice is deterministic given the scores, so the pmf is one-hot (or uniform
    over exact ties) and ``pmf(scores)`` works on any scores.
    """

    kind: ClassVar[str] = "ucb"

    @property
    def name(self) -> str:
        """Short description for logs."""
        return "ucb"

    def pmf(self, scores: Any, out: np.ndarray | None = None) -> np.ndarray:
        """The argmax pmf over ``scores``, exact ties split evenly."""
        return _run_pmf(policy_core.pmf_epsilon_greedy, scores, out, 0.0, 0.0)

    def uses_model(self, model: Any) -> bool:
        """True for an upper-confidence-bound learner; False for a model that is no online learner
        (``pmf`` over its scores); ConfigError for a learner that samples its posterior."""
        if _exploration(model) is None:
            return False
        _require(model, "ucb")
        return True

    def model_pmf(
        self,
        model: Any,
        x: Any = None,
        *,
        event_id: str | None = None,
        seed: int = 0,
        arms: Any = None,
        scale: Any = None,
        out: np.ndarray | None = None,
        scores: np.ndarray | None = None,
    ) -> np.ndarray:
        """The pmf over the offered ``arms`` (default all) of a UCB model for context ``x``.

        ``scale`` multiplies each offered arm's bound before the argmax (value x
        weight); ``event_id`` and ``seed`` are accepted for a uniform call and unused.
        ``scores``: the model's bounds of the offered arms for ``x``, when the caller
        has just computed them (the Decider has): the pmf is then taken from them,
        with ``scale`` and ``out`` of their length, instead of scoring again.
        """
        _require(model, "ucb")
        if scores is not None:
            with np.errstate(over="ignore"):  # an unplayed bound x a huge value: greedy_pmf handles inf
                offered = np.multiply(scores, scale) if scale is not None else scores.copy()
            return greedy_pmf(offered, out)
        return model.pmf(x, out, arms=arms, scale=scale)


class Thompson(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Thompson sampling over an online Bayesian bandit (``nba.BetaThompson``, ``nba.LinearThompson``).

    The pmf is the share of ``draws`` posterior draws (seeded by the event id)
    in which each offered arm is best; the choice is then sampled from that
    pmf, so the logged probability is exactly the one used, and averaged over
    events the choice is distributed exactly as one Thompson draw. ``draws``
    None uses the model's own default.
    """

    draws: int | None = None

    kind: ClassVar[str] = "thompson"

    def __post_init__(self) -> None:
        d = self.draws
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or not (1 <= d <= 1_000_000)):
            raise ConfigError(f"Thompson: draws must be None or an int in [1, 1000000], got {d!r}")

    @property
    def name(self) -> str:
        """Short description for logs."""
        return "thompson" if self.draws is None else f"thompson(draws={self.draws})"

    def pmf(self, scores: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Not available: Thompson sampling's pmf depends on the posterior, not on one score vector."""
        raise ConfigError(
            "Thompson has no pmf over plain scores: use model_pmf(model, x, event_id=...) with "
            "nba.BetaThompson or nba.LinearThompson, or a score-based policy such as EpsilonGreedy"
        )

    def uses_model(self, model: Any) -> bool:
        """True for a learner that samples its posterior; ConfigError for any other model."""
        _require(model, "thompson")
        return True

    def model_pmf(
        self,
        model: Any,
        x: Any = None,
        *,
        event_id: str,
        seed: int = 0,
        arms: Any = None,
        scale: Any = None,
        out: np.ndarray | None = None,
        scores: np.ndarray | None = None,
    ) -> np.ndarray:
        """Estimated P(arm is best) over the offered ``arms`` (default all) for context ``x``.

        ``scale`` multiplies each offered arm's posterior draw before the argmax;
        ``scores`` (the model's scores of the offered arms) is accepted for a
        uniform call and unused: the pmf comes from fresh seeded draws.
        """
        _require(model, "thompson")
        return model.pmf(x, out, event_id=event_id, seed=seed, draws=self.draws, arms=arms, scale=scale)


# --------------------------------------------------------------------------- sampling


def sample(pmf: Any, event_id: str, seed: int = 0) -> int:
    """Index drawn from ``pmf``, reproducibly for (``event_id``, ``seed``).

    ``pmf`` must be finite, non-negative and sum to 1 within ``PMF_TOLERANCE``;
    ``pmf[i]`` is then the probability to log. Zero-probability entries are never drawn.
    """
    if seed.__class__ is int and 0 <= seed <= _U64:
        i = policy_core.sample_index(pmf, event_id, seed, PMF_TOLERANCE)  # fast path: a float64 vector, a str id
        if i is not None and i >= 0:
            return i
    p = _scores(pmf, "pmf")
    j = policy_core.sample_index(p, _event_bytes(event_id), _seed(seed), PMF_TOLERANCE)
    if j is None:  # not reached: p is a float64 vector and the id bytes
        raise SchemaError(f"pmf must be a 1-D float64 vector, got {type(pmf).__name__}")
    if j < 0:
        _raise_bad_pmf(p, -1 - j)
    return j


def sample_slate(pmf: Any, k: int, event_id: str, seed: int = 0) -> np.ndarray:
    """``k`` distinct indices drawn from ``pmf`` without replacement, reproducibly.

    Slot 0 is exactly ``sample(pmf, event_id, seed)`` (its probability is
    ``pmf[slot0]``, the propensity to log); each later slot is drawn from the
    pmf renormalized over the indices not yet taken. Once only zero-probability
    indices remain they fill the slate in pmf order.
    """
    p = _scores(pmf, "pmf")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not (1 <= k <= p.shape[0]):
        raise ConfigError(f"slate size k must be an int in [1, {p.shape[0]}] (the number of actions), got {k!r}")
    out = np.empty(int(k), dtype=np.int64)
    bad = policy_core.sample_slate(p, _event_bytes(event_id), _seed(seed), PMF_TOLERANCE, out)
    if bad >= 0:
        _raise_bad_pmf(p, bad)
    return out
