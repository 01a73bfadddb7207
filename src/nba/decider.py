"""Decider: ``decide(profile, context)`` and ``reward(event_id, value)``, the product's front door.

One Decider is shared by all request threads. Each call reads one immutable
snapshot (``_State``: catalogue, schema, models bound to both, policies), so
``swap_model`` replaces the model atomically: a request sees the old model or
the new one, never half of either, and logs the version that made its choice.

Per decision: vectorize the profile and context (schema), find the eligible arms
(catalogue rules, channel, dates), score every arm with the model of the unit's
experiment variant (compiled core), arbitrate (score x value x
weight), turn priorities into a pmf with the policy, sample seeded by
(seed, event id), log, return a frozen ``Decision``.

The Decider orchestrates only: it knows models and policies through the
Protocols of ``nba.base`` (a model binds itself to the catalogue and returns its
scorer; a policy exposes its fused-kernel parameters, or asks the model for its
pmf), asked once per snapshot, so a new model kind or policy needs no edit here.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import msgspec
import numpy as np

from nba import _validate
from nba._core import decide as decide_core
from nba._core.trees import ArmForestCore
from nba.apprentice import Apprentice, ApprenticeStatus
from nba.base import CountingPolicy, FusedPolicy, FusedScorer, Model, ModelPolicy, OnlineLearner, Policy, Scorer
from nba.catalog import Arm, Catalog
from nba.errors import ConfigError, ModelFormatError, NbaError, SchemaError
from nba.experiments import Allocator, Assignment, Experiment, Holdout
from nba.log.erasure import ErasureReport
from nba.log.records import DecisionRecord, SwitchRecord
from nba.log.writer import DecisionLog
from nba.models import load_model
from nba.policy import EpsilonGreedy, sample, sample_slate
from nba.profiles.consent import LOGGING, PERSONALISATION
from nba.profiles.contact import ContactPolicy, ContactStore
from nba.profiles.store import ProfileStore
from nba.schema import FeatureSchema
from nba.state import ApprenticeCounters, DecisionState, EmbeddedState, Lesson, Settings
from nba.sticky import StickyBuckets

__all__ = ["ApprenticeWarning", "Decider", "Decision", "Erasure", "LearnWarning"]

_NO_ASSIGNMENT = Assignment()
_NO_RAW: dict[str, dict[str, Any]] = {}
_MISSING = float("nan")
_NO_PROFILE: dict[str, Any] = {}  # what a decision sees of a profile it may not use (never written to)
_NO_REASONS: dict[str, str] = {}  # no arm suppressed by the contact policy (never written to)
_NOTHING_GRANTED: frozenset[str] = frozenset()
#: Longest event id accepted from a caller (a UUID is 36 characters).
MAX_EVENT_ID = 256
#: Random bytes in a generated event id's prefix: 80 bits, drawn per process (and again
#: in a forked child), so independent processes on any number of hosts do not collide.
_PREFIX_BYTES = 10


def _new_prefix() -> str:
    return os.urandom(_PREFIX_BYTES).hex()


_LIVE: weakref.WeakSet[Decider] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for d in list(_LIVE):
        d._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class LearnWarning(UserWarning):
    """An online model refused an example that was already logged; it learned nothing from it."""


class ApprenticeWarning(UserWarning):
    """Apprentice mode's switch was made (and is shared) but its SwitchRecord could not be logged."""


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """What ``decide`` chose, with everything needed to audit and learn from it.

    ``arm`` is the chosen arm id (``arms`` the ranked slate when ``n > 1``),
    ``payload`` its content for the channel, ``probability`` the exact probability
    with which ``arm`` was drawn, ``pmf`` and ``scores`` are over ``actions`` (the
    eligible arms, catalogue order); ``scores`` are raw model scores (higher is
    better). ``variants`` maps experiment -> variant. ``model_version`` is the
    ``version`` of the model that scored it (of the one serving, for a fallback), as
    the log records it (docs/contracts.md, "model_version"). ``timestamp`` is unix seconds.
    ``personalised`` is False when the decision used no profile feature: a profile id the
    store does not know, or a profile without personalisation consent. ``suppressed``
    maps each arm the contact policy held back to its reason code
    (``nba.profiles.contact``); those arms are not in ``actions``.

    ``baseline`` is the application's own arm, as passed to ``decide``; ``apprentice`` is True
    when the Decider served it because it was apprenticing (``nba.apprentice``): then ``arm`` is
    the baseline, ``pmf`` the serving distribution (one-hot, ``probability`` 1.0) and ``learned``
    the arm the learned policy drew (after the switch, ``learned`` is the served arm). A baseline
    that was not eligible is in ``suppressed`` (``"ineligible"`` unless the contact policy gave its
    own reason) and the learned policy serves.
    """

    event_id: str
    arm: str
    arms: tuple[str, ...]
    payload: Any
    probability: float
    actions: tuple[str, ...]
    pmf: tuple[float, ...]
    scores: tuple[float, ...]
    variants: dict[str, str]
    model_version: str
    policy: str
    timestamp: float
    channel: str | None = None
    holdout: bool = False
    fallback: bool = False
    deferred: bool = False
    personalised: bool = True
    suppressed: dict[str, str] = {}
    baseline: str | None = None
    apprentice: bool = False
    learned: str | None = None


class Erasure(msgspec.Struct, frozen=True):
    """What ``Decider.forget`` erased: the subject's ids, and what the log did (None without a log)."""

    ids: tuple[str, ...]
    log: ErasureReport | None = None
    sticky: int = 0  # sticky bucketing documents deleted (nba.sticky)

    @property
    def complete(self) -> bool:
        """Whether every log segment was cleaned (none was still being written by another process)."""
        return self.log is None or self.log.complete


# --------------------------------------------------------------------------- models and policies

_ACCEPTED = (
    "a model from nba.load_model(...), an nba online learner such as nba.LinUCB(...), "
    "or an object implementing nba.base.Model (version, score_bounds, bind(catalog) -> Scorer)"
)


def _as_model(model: Any, name: str) -> Model:
    """``model`` as a ``Model``; a live model ``nba.load_model`` converts (a ``lightgbm.Booster``) is loaded."""
    if isinstance(model, Model):
        return model
    if model is None:
        raise ConfigError(f"Decider needs a model (model {name!r} is None): {_ACCEPTED}")
    if isinstance(model, (str, bytes, bytearray, memoryview, os.PathLike)):
        raise ConfigError(f"model {name!r} is a {type(model).__name__}: load it first with nba.load_model(...)")
    try:
        return load_model(model)
    except ModelFormatError as e:
        raise ConfigError(
            f"cannot decide with a {type(model).__name__} (model {name!r}): expected {_ACCEPTED}; "
            f"nba.load_model cannot convert it either: {e}"
        ) from None


def _event_id(event_id: Any) -> str:
    """A caller's event id: non-empty text of at most ``MAX_EVENT_ID`` characters."""
    if event_id.__class__ is not str or not event_id.isascii():
        event_id = _validate.text(event_id, "event_id")
    if not 0 < len(event_id) <= MAX_EVENT_ID:
        raise SchemaError(f"event_id must be 1..{MAX_EVENT_ID} characters, got {len(event_id)}")
    return event_id


def _check_fallback(catalog: Catalog, fallback: str) -> None:
    """The fallback arm exists and has a payload for every channel the catalogue serves."""
    try:
        catalog.check_payloads(fallback)  # ConfigError for an unknown arm, too
    except ConfigError as e:
        raise ConfigError(f"fallback: {e}: a request there with no eligible arm could not be answered") from None


def _check_default_reward(model: Model, default_reward: float) -> None:
    """An online model can learn ``default_reward`` (it teaches every decision left without a reward)."""
    if isinstance(model, OnlineLearner):
        try:
            model.check_reward(default_reward)
        except SchemaError as e:
            raise ConfigError(f"default_reward={default_reward!r} cannot be learned by the online model: {e}") from None


class _State:
    """An immutable snapshot of everything a decision reads; replaced whole on swap.

    Everything the Decider needs to know of a model or policy is asked here, once,
    through the Protocols of ``nba.base``: decisions only look the answers up.
    """

    def __init__(self, catalog: Catalog, models: Mapping[str, Model], policies: Mapping[str, Any]) -> None:
        self.catalog = catalog
        self.models = dict(models)
        self.scorers: dict[str, Scorer] = {name: m.bind(catalog) for name, m in models.items()}
        # The models that learn, and whether they take the shared vector (a context-free one gets None).
        self.learners = {name: m if isinstance(m, OnlineLearner) else None for name, m in models.items()}
        self.contextual = {name: m is None or m.n_features > 0 for name, m in self.learners.items()}
        self.policies = dict(policies)
        for name, pol in self.policies.items():
            if not isinstance(pol, (Policy, ModelPolicy)):
                raise ConfigError(
                    f"policy {name!r} is a {type(pol).__name__}, expected an nba policy (e.g. nba.EpsilonGreedy) "
                    "or an object implementing nba.base.Policy (name, pmf(priorities, out))"
                )
        # What model policies multiply a model's draws by: the arbitration's factors.
        f = catalog.arbitration_factors
        self.scale = f[0] * f[1] if f is not None else catalog.values * catalog.weights
        # (model, policy) -> True when the policy's model_pmf chooses, False when its pmf over priorities does.
        self.uses_model: dict[tuple[str, str], bool] = {}
        for sname, sc in self.scorers.items():
            lo, hi = sc.score_bounds
            catalog.check_arbitration(lo, sname)  # "product" must not invert the business ranking
            for pname, pol in self.policies.items():
                uses = False
                if isinstance(pol, ModelPolicy):
                    try:
                        uses = pol.uses_model(self.models[sname])
                    except ConfigError as e:
                        raise ConfigError(f"policy {pname!r} cannot choose for model {sname!r}: {e}") from None
                if not uses and not isinstance(pol, Policy):
                    raise ConfigError(f"policy {pname!r} has no pmf over scores to choose for model {sname!r}")
                if uses and f is None and not (catalog.arbitration == "probability" and 0.0 <= lo and hi <= 1.0):
                    raise ConfigError(
                        f"policy {pname!r} weighs the draws of model {sname!r} by value x weight ('product') or not at "
                        f"all ('score'); arbitration {catalog.arbitration!r} cannot apply to them"
                    )
                self.uses_model[sname, pname] = uses
        # The fused decision kernel needs a bound forest, a built-in arbitration's factors (values, weights)
        # and a policy's kernel_params: model name -> (forest, values, weights), or None.
        self.fused: dict[str, tuple[ArmForestCore, np.ndarray, np.ndarray] | None] = {}
        for name, sc in self.scorers.items():
            forest = sc.forest if isinstance(sc, FusedScorer) else None
            self.fused[name] = (forest, f[0], f[1]) if forest is not None and f is not None else None
        self.kernels = {
            name: pol.kernel_params if isinstance(pol, FusedPolicy) else None for name, pol in self.policies.items()
        }
        # What a learned example tells the policy (SquareCB counts them).
        self.observers = {
            name: pol.observe if isinstance(pol, CountingPolicy) else None for name, pol in self.policies.items()
        }
        self.policy_names = {name: pol.name for name, pol in self.policies.items()}
        # Payloads per declared channel (and None), looked up by arm position; others ask the catalogue.
        self._payloads: dict[Any, tuple] = {}
        for ch in (None, *catalog.channels):
            try:
                self._payloads[ch] = tuple(catalog.payload(i, ch) for i in range(len(catalog)))
            except ConfigError:  # some arm has no payload for it: ask each time, so the error names the arm
                pass
        # Eligible arms of the channels whose arms carry no rule or date (None: evaluate per decision).
        self.static = {ch: catalog.static_eligible(ch) for ch in (None, *catalog.channels)}
        self.local = threading.local()

    def payload(self, arm: int, channel: str | None) -> Any:
        """The chosen arm's payload for the channel (``Catalog.payload``)."""
        p = self._payloads.get(channel) if channel.__class__ is str or channel is None else None
        return p[arm] if p is not None else self.catalog.payload(arm, channel)

    def buffers(self) -> _Buffers:
        """This thread's scratch arrays (made on its first decision)."""
        b = getattr(self.local, "b", None)
        if b is None:
            b = self.local.b = _Buffers(len(self.catalog), self.catalog.schema.n_columns, self.scorers)
        return b


def _nothing() -> None:
    """What there is to log without a DecisionLog."""


def _record(st: _State, eid: str, ts: float, actions: Sequence[str], pmf: Sequence[float], chosen: list[int],
            scores: Sequence[float] | None, x: list[float] | None, raw: dict[str, dict[str, Any]], version: str,
            asg: Assignment, policy: str, channel: str | None, unit: Any, deferred: bool,
            fallback: bool, suppressed: dict[str, str], baseline: str | None = None, apprentice: bool = False,
            learned: int | None = None, learned_pmf: list[float] | None = None) -> DecisionRecord:
    """The log record of a decision (chosen or fallback) from values the Decider has checked."""
    return DecisionRecord(
        event_id=eid,
        ts=ts,
        actions=actions,  # type: ignore[arg-type]  # any sequence encodes as a JSON list
        pmf=pmf,  # type: ignore[arg-type]
        chosen=chosen,
        probability=pmf[chosen[0]],
        scores=scores,  # type: ignore[arg-type]
        x=x,  # type: ignore[arg-type]
        schema_id=None if x is None else st.catalog.schema.schema_id,
        raw=raw,
        model_version=version,
        variants=asg.variants,
        policy=policy,
        channel=channel,
        unit=unit,
        deferred=deferred,
        fallback=fallback,
        catalog_id=st.catalog.catalog_id,
        suppressed=suppressed,
        baseline=baseline,
        apprentice=apprentice,
        learned=learned,
        learned_pmf=learned_pmf,
    )


class _Buffers:
    """Per-thread scratch arrays, so a decision allocates nothing but its result."""

    __slots__ = ("x", "idx", "scores", "pri", "pmf", "scorer")

    def __init__(self, n_arms: int, n_cols: int, scorers: Mapping[str, Any]) -> None:
        self.x = np.empty(n_cols)
        self.idx = np.empty(n_arms, dtype=np.intp)
        self.scores = np.empty(n_arms)
        self.pri = np.empty(n_arms)
        self.pmf = np.empty(n_arms)
        self.scorer = {name: s.buffers(n_arms) for name, s in scorers.items()}


# --------------------------------------------------------------------------- Decider


class Decider:
    """Chooses an arm for a profile and context, logs it, and learns from rewards.

    ``arms``: the catalogue (``nba.Arm`` list or an ``nba.Catalog``). ``schema``:
    the ``nba.FeatureSchema`` of the profile and context features (required unless
    ``arms`` is a Catalog, which carries its own schema and ``arbitration``: then
    passing either here is a ``ConfigError``). ``model``: a model from ``nba.load_model`` (a
    ``lightgbm.Booster`` is loaded with it), an online bandit, or any
    ``nba.base.Model``; ``models``/``policies``: extra named ones that experiment variants
    select through ``overrides={"variant": {"model": name, "policy": name}}``.
    ``policy``: exploration (default ``EpsilonGreedy(0.05)``), an ``nba.base.Policy``
    or ``ModelPolicy``. ``experiments`` and
    ``holdout``: A/B allocation of the unit, read from ``profile[unit_key]``.
    ``log``: an ``nba.DecisionLog`` (or None: nothing is logged). ``seed``: the
    application seed of sampling; with the event id it makes a decision replayable.
    ``fallback``: id of the arm returned, and logged as a fallback, when no arm is
    eligible (without it, no eligible arm raises ``ConfigError``).
    ``reward_window`` (seconds) and ``aggregate`` ("first" or "sum") say how an
    online model learns: with "first" it learns from the first reward at once;
    with "sum" it learns the sum once the window closes; a decision with no reward
    in its window teaches ``default_reward``. Deferred decisions that are never
    activated teach nothing. ``state``: where pending decisions and online learning
    live (``nba.state``): this process's memory by default (``EmbeddedState``), or
    ``RedisState`` to share them with every worker process and host.
    ``profiles``: a ``nba.profiles.ProfileStore``; ``decide`` then also takes a profile
    id (str or int) in place of the profile, reads it in one lookup and honours its
    consent (docs/profiles.md, "Deciding with a profile id"). ``contact``: a
    ``nba.profiles.ContactPolicy`` evaluated in every decision over the profile's contact
    history in ``contacts`` (a ``ContactStore``): arms it holds back are not offered
    (``Decision.suppressed`` says why), and the chosen arm's contact is recorded
    atomically, so caps hold across processes; ``reward`` records the outcome.
    ``consent_channels``: channels (purposes the store reports) on which a profile decided by
    id gets only transactional arms unless it consented to that channel (the others are held
    back with reason ``"consent:<channel>"``).
    ``apprentice``: an ``nba.Apprentice`` rule: decisions given a ``baseline`` serve it while the
    learned policy shadows it, until the shared agreement counters in ``state`` meet the rule
    (docs/apprentice.md).
    ``sticky``: a ``nba.sticky.StickyBuckets`` store for GrowthBook's sticky bucketing of
    ``experiments`` (documents keyed ``unit_key||unit``); ``forget`` erases the unit's.
    """

    def __init__(
        self,
        arms: Sequence[Arm] | Catalog,
        model: Any,
        *,
        schema: FeatureSchema | None = None,
        policy: Any = None,
        experiments: Iterable[Experiment] = (),
        holdout: Holdout | None = None,
        log: DecisionLog | None = None,
        seed: int = 0,
        models: Mapping[str, Any] | None = None,
        policies: Mapping[str, Any] | None = None,
        fallback: str | None = None,
        unit_key: str = "id",
        arbitration: Any = None,
        reward_window: float = 3600.0,
        aggregate: Literal["first", "sum"] = "first",
        default_reward: float = 0.0,
        max_pending: int = 100_000,
        state: DecisionState | None = None,
        profiles: ProfileStore | None = None,
        contact: ContactPolicy | None = None,
        contacts: ContactStore | None = None,
        consent_channels: Iterable[str] = (),
        apprentice: Apprentice | None = None,
        sticky: StickyBuckets | None = None,
    ) -> None:
        if isinstance(arms, Catalog):
            given = [name for name, v in (("schema", schema), ("arbitration", arbitration)) if v is not None]
            if given:  # they would be silently ignored: the Catalog has its own
                raise ConfigError(
                    f"Decider got a Catalog and {' and '.join(given)}=: a Catalog carries its own schema and "
                    "arbitration; pass them to nba.Catalog(arms, schema, arbitration=...) instead"
                )
            catalog = arms
        else:
            if schema is None:
                raise ConfigError("Decider needs schema=nba.FeatureSchema([...]) to turn profiles into features")
            catalog = Catalog(arms, schema, arbitration="product" if arbitration is None else arbitration)
        if aggregate not in ("first", "sum"):
            raise ConfigError(f"aggregate must be 'first' or 'sum', got {aggregate!r}")
        if not (isinstance(reward_window, (int, float)) and reward_window >= 0):
            raise ConfigError(f"reward_window must be a number of seconds >= 0, got {reward_window!r}")
        if fallback is not None:
            _check_fallback(catalog, fallback)
        if not isinstance(max_pending, int) or isinstance(max_pending, bool) or max_pending < 1:
            raise ConfigError(f"max_pending must be a positive int, got {max_pending!r}")
        try:
            default_reward = _validate.number(default_reward, "default_reward")
        except SchemaError as err:
            raise ConfigError(str(err)) from None
        self._models = {name: _as_model(m, name) for name, m in {"default": model, **dict(models or {})}.items()}
        self._policies = {"default": policy if policy is not None else EpsilonGreedy(0.05), **dict(policies or {})}
        for m in self._models.values():
            _check_default_reward(m, default_reward)
        self._state = _State(catalog, self._models, self._policies)
        exps = tuple(experiments)
        for e in exps:
            for variant, ov in e.overrides.items():
                for what, table in (("model", self._models), ("policy", self._policies)):
                    if what in ov and ov[what] not in table:
                        raise ConfigError(
                            f"experiment {e.name!r} variant {variant!r} selects {what} {ov[what]!r}, "
                            f"but the Decider has {what}s {sorted(table)}; pass it in {what}s={{...}}"
                        )
        self._sticky = sticky
        self._allocator = (Allocator(exps, holdout=holdout, sticky=sticky, hash_attribute=unit_key)
                           if exps or holdout is not None else None)
        self._log = log
        self._seed = int(seed)
        self._seed_u64 = self._seed & ((1 << 64) - 1)
        self._fallback = fallback
        self._unit_key = unit_key
        self._window = float(reward_window)
        self._aggregate = aggregate
        self._default_reward = float(default_reward)
        self._max_pending = int(max_pending)
        if state is None:
            state = EmbeddedState()
        elif not isinstance(state, DecisionState):
            raise ConfigError(f"state must be an nba.state backend (EmbeddedState, RedisState), "
                              f"got {type(state).__name__}")
        if profiles is not None and not isinstance(profiles, ProfileStore):
            raise ConfigError(f"profiles must be an nba.profiles store (EmbeddedProfileStore, RedisProfileStore), "
                              f"got {type(profiles).__name__}")
        self._profiles = profiles
        if contact is not None and not isinstance(contact, ContactPolicy):
            raise ConfigError(f"contact must be an nba.profiles.ContactPolicy, got {type(contact).__name__}")
        if contacts is not None and not isinstance(contacts, ContactStore):
            raise ConfigError(f"contacts must be an nba.profiles contact store (EmbeddedContactStore, "
                              f"RedisContactStore), got {type(contacts).__name__}")
        if contact is not None and contacts is None:
            raise ConfigError("a contact policy needs the store of contact histories it reads: pass "
                              "contacts=nba.profiles.EmbeddedContactStore() (one process) or RedisContactStore(url)")
        if contact is not None:
            unknown = sorted({a for g in contact.groups.values() for a in g} - set(catalog.ids)
                             | set(contact.transactional) - set(catalog.ids))
            if unknown:
                raise ConfigError(f"the contact policy names arms the catalogue does not have: {unknown}")
        self._contact = contact
        self._contacts = contacts
        if isinstance(consent_channels, str):
            raise ConfigError(f"consent_channels must be a collection of channel names, got the str "
                              f"{consent_channels!r}: wrap it in [...]")
        self._consent_channels = frozenset(_validate.text(c, "consent channel") for c in consent_channels)
        if self._consent_channels:
            missing = sorted(self._consent_channels - set(profiles.purposes if profiles is not None else ()))
            if missing:
                raise ConfigError(f"consent_channels {missing} must be purposes the profile store reports: build it "
                                  f"with purposes=(\"personalisation\", \"logging\", {', '.join(map(repr, missing))})")
        self._transactional = contact.transactional if contact is not None else frozenset()
        # The model-input columns read from the profile: logged as missing without logging consent.
        self._profile_cols = tuple(c.index for c in catalog.schema.columns if c.source == "profile")
        self._learners = {n: m for n, m in self._state.learners.items() if m is not None}
        if apprentice is not None and not isinstance(apprentice, Apprentice):
            raise ConfigError(f"apprentice must be an nba.Apprentice(threshold=..., min_events=...), "
                              f"got {type(apprentice).__name__}")
        if apprentice is not None and not isinstance(state, ApprenticeCounters):
            raise ConfigError(f"apprentice mode counts agreement in the state backend: {type(state).__name__} does "
                              "not implement nba.state.ApprenticeCounters (EmbeddedState and RedisState do)")
        self._apprentice = apprentice
        self._decisions = state
        self._prefix = _new_prefix()
        self._counter = itertools.count(1)
        _LIVE.add(self)
        if log is not None:
            log.register_catalog(catalog.catalog_id, catalog.features_by_arm)
            log.register_schema(catalog.schema.schema_id, catalog.schema.log_layout)
        state.bind(Settings(self._window, aggregate, self._default_reward, self._max_pending, self._learners),
                   self._learn)
        self._counters: ApprenticeCounters | None = None
        if apprentice is not None:
            assert isinstance(state, ApprenticeCounters)
            self._counters = state
            state.apprentice_bind(apprentice.rule, self._switched)

    # ------------------------------------------------------------------ properties

    @property
    def catalog(self) -> Catalog:
        return self._state.catalog

    @property
    def state(self) -> DecisionState:
        """The state backend holding pending decisions and online learning (``nba.state``)."""
        return self._decisions

    @property
    def apprentice(self) -> Apprentice | None:
        """The apprentice rule (``nba.Apprentice``), or None."""
        return self._apprentice

    def apprentice_status(self) -> ApprenticeStatus:
        """Apprentice mode's counters as this process knows them (shared ones as of the state's last sync, plus
        its own since), and whether any worker made the switch. ``ConfigError`` without ``apprentice=``."""
        if self._counters is None:
            raise ConfigError("this Decider has no apprentice rule: build it with apprentice=nba.Apprentice(...)")
        events, agreements, switched = self._counters.apprentice_status()
        return ApprenticeStatus(events, agreements, agreements / events if events else None, switched)

    def _switched(self, ts: float, events: int, agreements: int) -> None:
        """The state made the switch (this process, once per namespace): log it."""
        if self._log is None or self._apprentice is None:
            return
        a = self._apprentice
        try:
            self._log.append(SwitchRecord(ts, events, agreements, float(a.threshold), a.min_events))
        except NbaError as e:  # the decision was served and logged; the switch itself is made and shared
            warnings.warn(f"the apprentice switch (at {events} decisions, {agreements} agreements) was made but "
                          f"could not be logged: {e}", ApprenticeWarning, stacklevel=2)

    @property
    def model_version(self) -> str:
        """``version`` of the default model now serving: the ``model_version`` its decisions log."""
        return self._state.scorers["default"].version

    # ------------------------------------------------------------------ decide

    def decide(
        self,
        profile: Any,
        context: Any = None,
        *,
        channel: str | None = None,
        event_id: str | None = None,
        n: int = 1,
        defer: bool = False,
        now: float | None = None,
        baseline: str | None = None,
    ) -> Decision:
        """Choose ``n`` arms (ranked) for this profile and context; log and return the decision.

        ``event_id`` defaults to a fresh unique id; pass your own to make the
        decision replayable (same id, seed, inputs and model -> same choice).
        ``defer=True`` logs the decision but it counts for learning and evaluation
        only after ``activate(event_id)`` (when the action is really shown).
        ``now`` (unix seconds) overrides the clock, as in ``activate`` and ``reward``.

        With a ``profiles`` store, ``profile`` may be a profile id: the store's profile at
        ``now`` is used, its key is the allocation unit, and its consent is honoured. Without
        personalisation consent (or for an id the store does not know) the decision sees no
        profile feature (``Decision.personalised`` is False); without logging consent the
        log holds no profile feature (those columns are logged as missing).

        ``baseline`` names the arm the application would have chosen itself; it is logged. With an
        ``apprentice`` rule it is served while the Decider apprentices (``Decision.apprentice``), and
        agreement with the learned policy's draw is counted; an unknown arm is a ``ConfigError`` (nothing
        logged). A baseline that is not eligible for this decision (rules, channel, dates, contact policy)
        is not served: the learned policy serves, ``apprentice=False``, the reason in ``suppressed``, and
        the decision is not counted.
        """
        if n.__class__ is not int or n < 1:
            if isinstance(n, bool) or not (isinstance(n, int) and 1 <= n):
                raise ConfigError(f"n must be a positive int (the slate size), got {n!r}")
        if defer.__class__ is not bool:
            raise ConfigError(f"defer must be True or False, got {type(defer).__name__} {defer!r}")
        st = self._state
        b_i = -1 if baseline is None else self._baseline_index(st, baseline, n)
        ts = time.time() if now is None else _validate.timestamp(now, "now")
        eid = f"{self._prefix}-{next(self._counter):x}" if event_id is None else _event_id(event_id)
        if channel is not None and (channel.__class__ is not str or not channel.isascii()):
            channel = _validate.text(channel, "channel")
        personal = loggable = True
        unreachable = False  # a channel whose consent the profile has not given
        if profile.__class__ is dict:
            unit = profile.get(self._unit_key)
        elif self._profiles is not None and (profile.__class__ is str or profile.__class__ is int):
            profile, unit, personal, loggable, granted = self._stored(profile, ts)
            unreachable = channel in self._consent_channels and channel not in granted
        else:
            unit = self._unit(profile)
        if unit is not None and (unit.__class__ is not str or not unit.isascii()):
            unit = _validate.unit_id(unit, f"unit id (profile[{self._unit_key!r}])")
        if self._allocator is None or unit is None:
            asg = _NO_ASSIGNMENT
        else:  # the profile's attributes feed experiments' targeting conditions (nba.conditions)
            asg = self._allocator.assign(unit, profile if profile.__class__ is dict or isinstance(profile, Mapping)
                                         else None)
        sname = asg.overrides.get("model", "default")
        pname = asg.overrides.get("policy", "default")
        scorer = st.scorers[sname]
        b = st.buffers()
        x = st.catalog.schema.vectorize(profile, context, out=b.x)
        idx = st.static.get(channel) if channel in st.static else st.catalog.static_eligible(channel)
        if idx is None:
            idx = st.catalog.eligible(profile, context, channel, ts, out=b.idx)
        suppressed = _NO_REASONS
        if unreachable:
            idx, suppressed = self._without_consent(st, idx, channel)
        contact = self._contact
        ckey, seen = "", None
        if contact is not None:
            ckey, seen, idx, why = self._contact_check(st, idx, unit, channel, n, ts)
            if why:
                suppressed = {**suppressed, **why} if suppressed else why
        counters = self._counters
        # Apprenticing: the baseline (when eligible) is served; the learned policy still draws.
        serving = (b_i >= 0 and counters is not None and self._apprentice.enabled  # type: ignore[union-attr]
                   and not counters.apprentice_status()[2])
        bpos = -1
        while True:  # once, unless another process took the chosen arm's last contact meanwhile
            k = idx.shape[0]
            if k == 0:
                if b_i >= 0 and counters is not None and baseline not in suppressed:
                    suppressed = {**suppressed, baseline: "ineligible"}  # type: ignore[dict-item]
                return self._fallback_decision(st, eid, ts, channel, asg, scorer, defer, unit, personal,
                                                suppressed, baseline)
            scores = b.scores if k == b.scores.shape[0] else b.scores[:k]
            fused = st.fused[sname]
            kernel = st.kernels[pname] if fused is not None else None
            params = kernel() if kernel is not None else None
            if params is not None and fused is not None:
                # Fused: score, arbitrate, explore and draw in one compiled call.
                forest, values, weights = fused
                code, p1, p2 = params
                c = decide_core.decide_forest(forest, x, idx, values, weights, code, p1, p2,
                                        eid, self._seed_u64, b.scorer[sname]["acc"],
                                        b.scores, b.pri, b.pmf)
                pmf = b.pmf if k == b.pmf.shape[0] else b.pmf[:k]
                if c < 0:
                    self._raise_bad_priority(st, idx, scores, b.pri[:k], -1 - c)
                chosen = [c] if n == 1 else sample_slate(pmf, min(n, k), eid, self._seed).tolist()
            else:
                scorer.score(x, idx, scores, b.scorer[sname])
                pmf = self._pmf(st, sname, pname, x, idx, scores, eid, b)
                if n == 1:
                    chosen = [sample(pmf, eid, self._seed)]
                else:
                    chosen = sample_slate(pmf, min(n, k), eid, self._seed).tolist()
            if b_i >= 0:
                try:
                    bpos = idx.tolist().index(b_i)
                except ValueError:
                    bpos = -1
            if contact is None:
                break
            serve = bpos if serving and bpos >= 0 else chosen[0]
            taken = self._contact_reserve(ckey, st.catalog.ids[idx.item(serve)], channel, ts, eid, seen)
            seen = None  # drawn again: the store reads what changed
            if taken is None:
                break
            suppressed = {**suppressed, **taken}
            idx = idx[idx != idx.item(serve)]
        ids = st.catalog.ids
        actions = ids if k == len(ids) else tuple(map(ids.__getitem__, idx.tolist()))
        pmf_t = tuple(pmf.tolist())
        scores_t = tuple(scores.tolist())
        learned: int | None = None
        learned_pmf: list[float] | None = None
        if b_i >= 0 and counters is not None:
            if bpos < 0:  # not eligible: the learned policy serves, uncounted
                if baseline not in suppressed:
                    suppressed = {**suppressed, baseline: "ineligible"}  # type: ignore[dict-item]
            else:
                learned = chosen[0]
                if serving:  # the log records what was served, with the probability it was served with
                    learned_pmf = list(pmf_t)
                    chosen = [bpos]
                    one_hot = [0.0] * k
                    one_hot[bpos] = 1.0
                    pmf_t = tuple(one_hot)
        arm_i = idx.item(chosen[0])
        version = scorer.version
        pol_name = st.policy_names[pname]
        if self._log is not None:  # first: a decision that cannot be logged is not remembered
            xs = x.tolist()  # the model's input; read_records turns it back into features
            if not loggable:
                for col in self._profile_cols:
                    xs[col] = _MISSING  # logged as missing (null)
                profile = _NO_PROFILE
            raw = st.catalog.schema.log_raw(xs, profile, context) or _NO_RAW
            self._log.append(_record(st, eid, ts, actions, pmf_t, chosen, scores_t, xs, raw, version, asg, pol_name,
                                     channel, unit, defer, False, suppressed, baseline, learned_pmf is not None,
                                     learned, learned_pmf))
        learner = st.learners[sname]
        if learner is not None:
            self._decisions.remember(eid, sname, pname, arm_i, x.copy() if st.contextual[sname] else None, ts,
                                     not defer)
        elif defer:
            self._decisions.remember(eid, None, pname, arm_i, None, ts, False)
        if learned is not None:
            assert counters is not None
            counters.apprentice_record(learned == bpos, ts)  # may switch (and log the switch) after this decision
        return Decision(
            event_id=eid,
            arm=ids[arm_i],
            arms=(ids[arm_i],) if n == 1 else tuple(actions[c] for c in chosen),
            payload=st.payload(arm_i, channel),  # per-channel tuples, built once
            probability=pmf_t[chosen[0]],
            actions=actions,
            pmf=pmf_t,
            scores=scores_t,
            variants=dict(asg.variants),  # the allocator shares its dicts between calls
            model_version=version,
            policy=pol_name,
            timestamp=ts,
            channel=channel,
            holdout=asg.holdout,
            deferred=defer,
            personalised=personal,
            suppressed=suppressed,
            baseline=baseline,
            apprentice=learned_pmf is not None,
            learned=None if learned is None else actions[learned],
        )

    def _baseline_index(self, st: _State, baseline: Any, n: int) -> int:
        """The catalogue position of a caller's baseline arm; ConfigError for an unknown one (nothing changes)."""
        if baseline.__class__ is not str:
            raise ConfigError(f"baseline must be an arm id (str), got {type(baseline).__name__} {baseline!r}")
        try:
            i = st.catalog.index(baseline)
        except (ConfigError, KeyError):
            raise ConfigError(f"baseline {baseline!r} is not an arm of the catalogue; pass one of its arm ids "
                              f"({', '.join(st.catalog.ids[:5])}{', ...' if len(st.catalog) > 5 else ''})") from None
        if self._counters is not None and n != 1:
            raise ConfigError(f"apprentice mode serves one baseline arm: decide(n=1) with baseline=, got n={n}")
        return i

    def _contact_check(self, st: _State, idx: np.ndarray, unit: Any, channel: str | None, n: int,
                       ts: float) -> tuple[str, object, np.ndarray, dict[str, str]]:
        """The contact history's key and read token, the eligible arms the policy allows, and why each other is not."""
        if channel is None:
            raise SchemaError("this Decider has a contact policy: pass channel= to decide() (the policy counts and "
                              "spaces contacts per channel)")
        if unit is None:
            raise SchemaError(f"this Decider has a contact policy: the profile needs its id ({self._unit_key!r}) "
                              "so that its contact history can be read")
        if n != 1:
            raise ConfigError("a Decider with a contact policy chooses one arm per decision (n=1): a slate's "
                              "contacts cannot be reserved together yet")
        assert self._contact is not None and self._contacts is not None
        key = str(unit)
        ids = st.catalog.ids
        arms = [ids[i] for i in idx.tolist()]
        history, seen = self._contacts.read(key, ts)
        why = self._contact.suppressed(history, arms, channel, ts)
        if why:
            idx = np.array([i for i, a in zip(idx.tolist(), arms) if a not in why], dtype=np.intp)
        return key, seen, idx, why

    def _contact_reserve(self, key: str, arm: str, channel: str | None, ts: float, eid: str,
                         seen: object) -> dict[str, str] | None:
        """Record the contact if the policy still allows it (atomically); else the reason it does not."""
        assert self._contact is not None and self._contacts is not None and channel is not None
        reason = self._contacts.reserve(key, arm, channel, ts, self._contact, eid, seen)
        return None if reason is None else {arm: reason}

    def _stored(self, unit_id: str | int, ts: float) -> tuple[dict[str, Any], Any, bool, bool, frozenset[str]]:
        """A profile id's profile dict, allocation unit, whether it may be used and logged, and what is granted."""
        assert self._profiles is not None
        p = self._profiles.profile(unit_id, ts)
        # Without a profile to use, the vector holds the schema's defaults only: logged as the model saw it.
        if p is None:  # unknown to the store: the id itself is the unit
            return _NO_PROFILE, unit_id, False, True, _NOTHING_GRANTED
        granted = p.granted
        if PERSONALISATION not in granted:
            return _NO_PROFILE, p.key, False, True, granted
        return p.values, p.key, True, LOGGING in granted, granted

    def _without_consent(self, st: _State, idx: np.ndarray, channel: str | None) -> tuple[np.ndarray, dict[str, str]]:
        """What a profile without consent for ``channel`` may still get (transactional arms), and why not the rest."""
        ids = st.catalog.ids
        reason = f"consent:{channel}"
        held = {ids[i]: reason for i in idx.tolist() if ids[i] not in self._transactional}
        return np.array([i for i in idx.tolist() if ids[i] not in held], dtype=np.intp), held

    def _unit(self, profile: Any) -> Any:
        """The allocation unit of a profile that is not a plain dict (``decide`` reads those inline)."""
        if profile is None:
            return None
        if isinstance(profile, Mapping):
            return profile.get(self._unit_key)
        return getattr(profile, self._unit_key, None)

    def _pmf(self, st: _State, sname: str, pname: str, x: np.ndarray, idx: np.ndarray, scores: np.ndarray,
             eid: str, b: _Buffers) -> np.ndarray:
        """The policy's pmf over the eligible arms, step by step (any model, policy, arbitration)."""
        k = idx.shape[0]
        policy = st.policies[pname]
        if st.uses_model[sname, pname]:
            scale = st.scale if k == st.scale.shape[0] else st.scale.take(idx)
            return policy.model_pmf(st.models[sname], x if st.contextual[sname] else None, event_id=eid,
                                    seed=self._seed, arms=idx, scale=scale, out=b.pmf[:k], scores=scores)
        pri = st.catalog.priorities(scores, idx, out=b.pri)
        try:
            return policy.pmf(pri, out=b.pmf[:k])
        except SchemaError:  # the policy rejects non-finite priorities: name the arm
            bad = np.flatnonzero(~np.isfinite(pri))
            if bad.size == 0:
                raise
            self._raise_bad_priority(st, idx, scores, pri, int(bad[0]))
            raise  # not reached

    @staticmethod
    def _raise_bad_priority(st: _State, idx: np.ndarray, scores: np.ndarray, pri: np.ndarray, j: int) -> None:
        if j >= idx.shape[0]:  # the pmf failed sample()'s check
            raise SchemaError(f"the policy's pmf over priorities {pri.tolist()!r} is not a distribution")
        raise SchemaError(
            f"arm {st.catalog.ids[int(idx[j])]!r}: model score {scores[j]!r} x value x weight is not finite; "
            "check the model and the input features"
        )

    def _fallback_decision(
        self, st: _State, eid: str, ts: float, channel: str | None, asg: Assignment, scorer: Any, defer: bool,
        unit: Any, personal: bool, suppressed: dict[str, str], baseline: str | None = None,
    ) -> Decision:
        if self._fallback is None:
            held = f" (the contact policy held back {len(suppressed)}: {suppressed})" if suppressed else ""
            raise ConfigError(
                f"no arm is eligible for this decision{held} and the Decider has no fallback arm; "
                "pass fallback='<arm id>' to return a default action instead"
            )
        try:
            payload = st.catalog.payload(self._fallback, channel)
        except ConfigError as e:  # a channel no arm serves (the build checked the served ones)
            raise SchemaError(f"channel {channel!r}: {e}") from None
        if self._log is not None:
            self._log.append(_record(st, eid, ts, (self._fallback,), (1.0,), [0], None, None, _NO_RAW, scorer.version,
                                     asg, "fallback", channel, unit, defer, True, suppressed, baseline))
        if defer:
            self._decisions.remember(eid, None, "fallback", 0, None, ts, False)
        return Decision(
            event_id=eid, arm=self._fallback, arms=(self._fallback,), payload=payload,
            probability=1.0, actions=(self._fallback,), pmf=(1.0,), scores=(), variants=dict(asg.variants),
            model_version=scorer.version, policy="fallback", timestamp=ts, channel=channel, holdout=asg.holdout,
            fallback=True, deferred=defer, personalised=personal, suppressed=suppressed, baseline=baseline,
        )

    # ------------------------------------------------------------------ rewards and learning

    def _learn(self, lesson: Lesson) -> None:
        """Teach the model a lesson; a policy that counts learned examples (SquareCB) counts one.

        The reward is already logged, and this may run inside an unrelated call (a
        window closing) or the shared state's background thread: an example the model
        refuses (``update`` raises ``SchemaError``, e.g. features whose scales rounding
        cannot mix) is skipped with a ``LearnWarning``, and the model is left as it was.
        """
        st = self._state
        learner = st.learners.get(lesson.model)
        if learner is None:  # a model name this Decider does not have (another process's configuration)
            warnings.warn(f"a lesson for model {lesson.model!r} was not learned: this Decider has no such online "
                          "model", LearnWarning, stacklevel=2)
            return
        try:
            learner.update(lesson.arm, lesson.x, lesson.reward)
        except SchemaError as e:
            warnings.warn(f"an example was not learned (the model is unchanged): {e}", LearnWarning, stacklevel=3)
            return
        observe = st.observers.get(lesson.policy)
        if observe is not None:
            observe()

    def activate(self, event_id: str, *, now: float | None = None) -> None:
        """Mark a deferred decision as shown: from now on it counts for learning and evaluation.

        ``now`` (unix seconds) overrides the clock. A decision an online model learns from
        that was not deferred may be activated too: its window then starts again at ``now``.
        Raises ``UnknownEventError`` (and logs nothing) for an id the Decider's state does
        not know: any other decision not made with ``defer=True``, one whose window has
        closed, or no longer remembered (``max_pending``; with ``EmbeddedState``, also a
        decision of another process).
        """
        eid = _event_id(event_id)
        ts = time.time() if now is None else _validate.timestamp(now, "now")
        log = self._log
        self._decisions.activate(eid, ts, _nothing if log is None else (lambda: log.append_activation(eid, now=ts)))

    def reward(self, event_id: str, value: float, *, now: float | None = None, outcome: str | None = None) -> None:
        """Report the outcome of decision ``event_id`` (e.g. 1.0 for a click); logged and learned from.

        An id the Decider's state does not know (with ``EmbeddedState``: made by
        another process, or before a restart) is still logged, so ``nba.log.join``
        attaches it to its decision. A value the online model cannot learn
        (``check_reward``: e.g. 5.0 for a Beta-Bernoulli model, or a sum over 1 with
        ``aggregate="sum"``) raises ``SchemaError`` and changes nothing. ``now`` (unix
        seconds) overrides the clock. With a contact policy, ``outcome`` is recorded in the
        decision's contact history for ``Suppress`` rules, from any process (default:
        ``"accepted"`` for a value > 0, nothing otherwise; pass ``"rejected"`` to say so).
        """
        eid = _event_id(event_id)
        v = _validate.number(value, "reward value")
        ts = time.time() if now is None else _validate.timestamp(now, "now")
        if outcome is not None:
            outcome = _validate.text(outcome, "outcome")
        if self._contacts is not None:  # first: it may fail (Redis down) before anything is logged or learned
            o = outcome if outcome is not None else ("accepted" if v > 0 else None)
            if o is not None:
                self._contacts.outcome_of(eid, o, ts)
        log = self._log
        self._decisions.reward(eid, v, ts, self._check_reward,
                               _nothing if log is None else (lambda: log.append_outcome(eid, v, now=ts)))

    def _check_reward(self, model: str, value: float) -> None:
        learner = self._state.learners.get(model)
        if learner is not None:
            learner.check_reward(value)

    def _after_fork(self) -> None:
        """In a forked child: a fresh event-id stream; the parent's pending decisions stay the parent's.

        (The lock is a PoliteLock, which renews itself in a child.)"""
        self._prefix = _new_prefix()
        self._counter = itertools.count(1)
        self._decisions.after_fork()

    # ------------------------------------------------------------------ erasure

    def forget(self, unit_id: str | int) -> Erasure:
        """Erase a data subject: their profile, every id aliased to it and its state and consent
        from the profile store, then every decision carrying any of those ids (with its activations
        and outcomes) from the log's segments (``nba.log.forget``; other lines stay byte-identical).

        The subject's decisions still pending (the model input they hold) are dropped from the
        state backend, found by their event ids in the log. Segments other live processes are
        still writing are listed in ``Erasure.log.busy``: call again once they rotate. Online
        models keep what they learned (sums over many subjects, no record of anyone). With a
        ``sticky`` store, the sticky bucketing documents of every one of the ids go too
        (``Erasure.sticky`` counts them).
        """
        uid = _validate.unit_id(unit_id)
        ids = self._profiles.forget(uid) if self._profiles is not None else ()
        if not ids:
            ids = (str(uid),)
        if self._contacts is not None:
            self._contacts.forget(ids)  # a store built with these contacts has already; idempotent
        report = None
        if self._log is not None:
            events: set[str] = set()
            report = self._log.forget(ids, events=events)
            self._decisions.forget(events)  # their pending decisions hold the model input too
        sticky = self._sticky.forget(self._unit_key, ids) if self._sticky is not None else 0
        return Erasure(ids=tuple(ids), log=report, sticky=sticky)

    # ------------------------------------------------------------------ operations

    def swap_model(self, model: Any, *, name: str = "default") -> None:
        """Replace a model atomically while traffic flows; in-flight decisions finish on the old one.

        Rewards of earlier decisions teach the online model serving under ``name``
        when they arrive or their window closes."""
        new = _as_model(model, name)
        _check_default_reward(new, self._default_reward)
        models = {**self._models, name: new}
        state = _State(self._state.catalog, models, self._policies)  # binds and validates first
        self._models = models
        self._state = state  # one reference store: the swap is atomic for readers
        self._learners.clear()  # the state backend's view of the models that learn (snapshots, restores)
        self._learners.update({n: m for n, m in state.learners.items() if m is not None})

    def flush(self, *, now: float | None = None) -> None:
        """Teach online models every reward window that closed before ``now`` (the clock by default), and
        flush the log."""
        self._decisions.expire(time.time() if now is None else _validate.timestamp(now, "now"))
        self._decisions.sync()
        if self._log is not None:
            self._log.flush()

    def close(self) -> None:
        """Flush and close the log; later calls to decide, activate and reward then raise ``LogError``
        and change nothing (each writes its record before it changes any state). The state backend
        writes what it has queued first."""
        self._decisions.close()
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> Decider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
