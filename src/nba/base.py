"""The seams between nba's parts: what the Decider asks of models, scorers, online learners and policies.

The Decider speaks only to these Protocols, so a new model kind or policy is a
new class that implements them, with no edit to the Decider:

* a ``Model`` binds itself to a catalogue (its arms and schema) and returns its
  ``Scorer``; it owns its ``version`` and ``score_bounds``;
* an ``OnlineLearner`` is a Model that learns from rewards in-process;
* a ``Policy`` turns the arbitrated priorities of the eligible arms into a pmf;
  a ``FusedPolicy`` also runs inside the fused decision kernel, a
  ``ModelPolicy`` asks the model for its pmf (UCB, Thompson), a
  ``CountingPolicy`` counts the examples the model learns (SquareCB).

The Decider asks the ``runtime_checkable`` ones with ``isinstance`` once, when it
binds its models (construction, ``swap_model``), never per decision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from nba._core.trees import ArmForestCore
    from nba.catalog import Catalog

__all__ = ["CountingPolicy", "FusedPolicy", "FusedScorer", "Model", "ModelPolicy", "OnlineLearner", "Policy", "Scorer"]

Vector = npt.NDArray[np.float64]
Indices = npt.NDArray[np.intp]


# --------------------------------------------------------------------------- models


class Scorer(Protocol):
    """A model bound to one catalogue and its schema: scores the eligible arms of a decision.

    Built by ``Model.bind`` once per Decider snapshot and shared by every request
    thread: ``score`` keeps its per-call scratch in ``buf`` (from ``buffers``,
    allocated once per thread) and changes no shared state.
    """

    @property
    def version(self) -> str:
        """Its model's ``version``, which a decision it scores logs as ``model_version``; read per decision
        (a learner's changes as it learns)."""
        ...

    @property
    def score_bounds(self) -> tuple[float, float]:
        """(lowest, highest) score ``score`` can write; the Decider checks arbitration with it."""
        ...

    def buffers(self, n_arms: int) -> dict[str, Vector]:
        """Scratch arrays for ``score`` for a catalogue of ``n_arms`` arms (one set per thread)."""
        ...

    def score(self, x: Vector, idx: Indices, out: Vector, buf: dict[str, Vector]) -> None:
        """Scores (higher is better) of arms ``idx`` (catalogue positions) for the shared vector ``x``
        (the schema's columns) into ``out`` (``len(idx)``)."""
        ...


@runtime_checkable
class FusedScorer(Scorer, Protocol):
    """A Scorer the fused decision kernel (``nba._core.decide``) can run: a tree ensemble bound to the arms.

    ``forest`` is the bound ensemble, or None when this model cannot be bound (the
    Decider then calls ``score``); ``buffers(n)["acc"]`` is the kernel's accumulator.
    """

    @property
    def forest(self) -> ArmForestCore | None: ...


@runtime_checkable
class Model(Protocol):
    """Something the Decider decides with: a model from ``nba.load_model``, an online learner, or your own.

    ``bind`` is called once per Decider snapshot and raises ``ConfigError`` when the
    catalogue or its schema does not fit the model (feature names, arm count...).
    """

    @property
    def version(self) -> str:
        """What identifies the model's state, logged as the ``model_version`` of each decision it scores.

        A content hash for a loaded model (12 hex digits), ``"<class>@<updates>"`` for an
        nba online learner; the one meaning of ``model_version``: docs/contracts.md.
        """
        ...

    @property
    def score_bounds(self) -> tuple[float, float]:
        """(lowest, highest) score the model gives, higher is better; (-inf, inf) if unbounded."""
        ...

    def bind(self, catalog: Catalog) -> Scorer:
        """This model bound to ``catalog`` (its arms and ``catalog.schema``)."""
        ...


@runtime_checkable
class OnlineLearner(Model, Protocol):
    """A Model that learns from rewards in-process (``nba.BetaThompson``, ``UCB1``, ``LinUCB``, ``LinearThompson``).

    The Decider remembers each decision it makes with one and teaches it the
    reward (or ``default_reward``) once the decision's reward window closes.
    """

    @property
    def n_arms(self) -> int:
        """Arms the model scores, in catalogue order."""
        ...

    @property
    def n_features(self) -> int:
        """Length of the context vector ``x`` it learns from; 0: context-free (``update`` gets ``x=None``)."""
        ...

    def check_reward(self, value: float) -> float:
        """``value`` as a float if the model can learn it, else ``SchemaError``; changes nothing."""
        ...

    def update(self, arm_index: int, x: Vector | None, reward: float) -> None:
        """Learn ``reward`` for arm ``arm_index`` in context ``x``; atomic (a refused update, SchemaError,
        changes nothing)."""
        ...


# --------------------------------------------------------------------------- policies


@runtime_checkable
class Policy(Protocol):
    """An exploration policy over scores: priorities of the eligible arms (higher is better) -> pmf."""

    @property
    def name(self) -> str:
        """Short description, logged with each decision."""
        ...

    def pmf(self, priorities: Vector, out: Vector | None = None) -> Vector:
        """The pmf over ``priorities`` (finite, sum 1) into ``out`` (a new array if None)."""
        ...


@runtime_checkable
class FusedPolicy(Policy, Protocol):
    """A Policy the fused decision kernel can compute (``Greedy``, ``EpsilonGreedy``, ``Softmax``, ``SquareCB``)."""

    def kernel_params(self) -> tuple[int, float, float] | None:
        """(code, p1, p2) of this pmf in the fused kernel (``nba._core.decide.DECIDE_*``) for the next decision,
        or None to have it computed step by step with ``pmf``; called once per fused decision."""
        ...


@runtime_checkable
class ModelPolicy(Protocol):
    """A policy that asks the model for the distribution its choice is drawn from (``UCB``, ``Thompson``)."""

    @property
    def name(self) -> str: ...

    def uses_model(self, model: Any) -> bool:
        """True if ``model_pmf`` chooses for ``model``; False if ``pmf`` over its arbitrated scores does
        (then the policy is a ``Policy`` too); ConfigError if neither can. Asked once, at bind."""
        ...

    def model_pmf(
        self,
        model: Any,
        x: Vector | None = None,
        *,
        event_id: str,
        seed: int = 0,
        arms: Indices | None = None,
        scale: Vector | None = None,
        out: Vector | None = None,
        scores: Vector | None = None,
    ) -> Vector:
        """The pmf over the offered ``arms`` for context ``x`` (None for a context-free learner), each
        arm's draw or bound weighed by ``scale`` (value x weight), seeded by (``seed``, ``event_id``).
        ``scores`` are the model's scores of those arms, just computed by its scorer; a policy may use
        them instead of scoring again."""
        ...


@runtime_checkable
class CountingPolicy(Protocol):
    """A policy that counts the examples its model has learned (``SquareCB``)."""

    def observe(self, n: int = 1) -> None:
        """Count ``n`` more learned examples (thread-safe); the Decider calls it once per learned reward."""
        ...
