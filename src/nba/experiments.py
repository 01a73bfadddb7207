"""Deterministic A/B allocation, bucket for bucket the same as GrowthBook's SDKs.

A unit (user id or anonymous id) is hashed with each experiment's salt into a
bucket: GrowthBook hash version 2, ``fnv1a32(str(fnv1a32(salt + unit))) % 10000``
over 10,000 buckets, or hash version 1, ``fnv1a32(unit + salt) % 1000`` over 1,000
(FNV-1a over UTF-16 code units as JavaScript's ``charCodeAt`` sees them).

Which version: GrowthBook's ``run()``, inline experiments and feature rules without
``hashVersion`` use **v1**; a GrowthBook server publishes each experiment rule's
``hashVersion`` (new experiments use 2). nba's own ``Experiment`` defaults to
**v2**, as it always has: changing the default would move every unit of every
existing nba experiment mid-flight, and v2 is the hash GrowthBook introduced to
replace v1 (v1 hashes ``unit + seed``, so experiments sharing a seed suffix or a
unit prefix see related buckets). Experiments loaded from GrowthBook
(``nba.growthbook``) take the version GrowthBook would use for them: the rule's
``hashVersion``, else 1.

Variants own the bucket ranges GrowthBook derives from weights and coverage, so a
web front end running a GrowthBook SDK and a back end running nba put the same
unit in the same variant. Namespaces use GrowthBook's separate
hash-version-1 namespace hash; experiments in one namespace with disjoint ranges
never share a unit (a layer). A global holdout, hashed like a GrowthBook rollout,
keeps its units out of every experiment.

Everything is precomputed at construction: per experiment a 10,000-entry table
bucket -> variant, and the salts' hash states. ``Allocator.assign`` then costs one
call into the compiled core plus a dict lookup.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from nba._core import experiments as experiments_core
from nba._core import hashing as hashing_core
from nba.conditions import TargetingCondition, check_condition
from nba.errors import ConfigError, SchemaError

if TYPE_CHECKING:
    from nba.sticky import StickyBuckets

__all__ = ["Experiment", "Holdout", "Assignment", "Allocator", "OVERRIDE_KEYS", "HASH_VERSIONS", "from_growthbook"]

OVERRIDE_KEYS: tuple[str, ...] = ("model", "policy")
"""What a variant may change in a decision: the model and/or the policy it uses (opaque to nba)."""

_BUCKETS = experiments_core.GB_BUCKETS  # hash v2
_NS_BUCKETS = experiments_core.GB_NS_BUCKETS  # hash v1: namespaces and v1 experiments
HASH_VERSIONS: tuple[int, ...] = (1, 2)
"""GrowthBook hash versions nba buckets with (1: ``fnv1a32(unit + seed) % 1000``, 2: the double hash)."""
# GrowthBook accepts weight vectors summing to within [0.99, 1.01] and buckets them
# as given; nba accepts exactly the same window (and rejects the rest, where
# GrowthBook would silently fall back to equal weights).
_WEIGHT_SUM_MIN = 0.99
_WEIGHT_SUM_MAX = 1.01
_MAX_VARIANTS = 255  # one byte per experiment in the core's allocation code
_MAX_EXPERIMENTS = experiments_core.MAX_EXPERIMENTS  # the core folds every salt in one pass, on the stack
_JS_SAFE_INT = 2**53 - 1
_CACHE_LIMIT = 4096
_HOLDOUT_BIT = experiments_core.HOLDOUT_BIT
_FORCED_BIT = experiments_core.FORCED_BIT


def _real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class Experiment(msgspec.Struct, frozen=True):
    """One A/B test: variants with weights, traffic coverage, optional namespace range.

    ``variants`` maps variant name -> weight (insertion order is GrowthBook's
    variation order), or lists names for equal weights. ``salt`` is the hash seed
    (GrowthBook's ``seed``); empty or ``None`` uses ``name``, as GrowthBook uses the
    experiment key. ``coverage`` is the enrolled fraction of traffic: raising it
    only adds units, it never moves an enrolled one. ``namespace`` is GrowthBook's
    ``(namespace_id, start, end)``. ``overrides`` maps a variant to what it changes
    (``{"model": ..., "policy": ...}``). ``forced`` maps unit id -> variant for QA; a
    forced variant wins over coverage, namespace, holdout and ``active``.

    ``hash_version`` is GrowthBook's: 2 (the default, nba's historical bucketing) or
    1 (what GrowthBook's ``run()`` uses when an experiment does not say; set it to 1
    when moving such an experiment to nba, or its units change variant).

    ``condition`` targets the experiment: a GrowthBook condition (``nba.conditions``)
    over the attributes passed to ``Allocator.assign``; a unit whose attributes fail
    it is not enrolled (a forced variant still applies, as in GrowthBook). ``ranges``
    replaces the ranges derived from weights and coverage with explicit ``[start,
    end)`` bucket ranges per variant, as GrowthBook's ``ranges`` does.

    Sticky bucketing (GrowthBook's, used when the ``Allocator`` has a ``sticky=``
    store, ``nba.sticky``): a unit keeps the variant it was first given while
    weights, coverage, namespace or condition change, until ``bucket_version``
    (GrowthBook's ``bucketVersion``) is bumped; units given a variant under a
    version below ``min_bucket_version`` (``minBucketVersion``) are enrolled
    nowhere. ``disable_sticky_bucketing`` (``disableStickyBucketing``) opts the
    experiment out. ``variation_keys`` are the keys the stored documents name
    variants by (GrowthBook's ``meta[i].key``); default: the variant names.

    The constructor is strict where GrowthBook's SDKs are lenient (weights that do
    not sum to 1, coverage outside [0, 1], an unknown hash version, a condition
    with an unknown operator or a bad regex raise ``ConfigError`` instead of
    silently falling back or never matching): nba's own configuration is
    written by hand, and a typo there should stop a deploy, not skew an experiment.
    Definitions loaded from GrowthBook (``nba.growthbook``) get GrowthBook's lenient
    treatment before they reach this constructor.
    """

    name: str
    variants: dict[str, float] | list[str]
    salt: str | None = None
    coverage: float = 1.0
    namespace: tuple[str, float, float] | None = None
    overrides: dict[str, dict[str, Any]] = {}
    forced: dict[str, str] = {}
    active: bool = True
    hash_version: int = 2
    condition: dict[str, Any] | None = None
    ranges: tuple[tuple[float, float], ...] | None = None
    bucket_version: int = 0
    min_bucket_version: int = 0
    disable_sticky_bucketing: bool = False
    variation_keys: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _validate_experiment(self)

    @property
    def variant_names(self) -> tuple[str, ...]:
        """Variant names in GrowthBook variation order."""
        return tuple(self.variants)

    @property
    def weights(self) -> tuple[float, ...]:
        """Variant weights as bucketed (equal weights ``1/n`` when ``variants`` is a list)."""
        if isinstance(self.variants, dict):
            return tuple(float(w) for w in self.variants.values())
        return tuple(1 / len(self.variants) for _ in self.variants)

    @property
    def seed(self) -> str:
        """The hash seed actually used: ``salt``, or ``name`` when the salt is empty."""
        return self.salt or self.name


class Holdout(msgspec.Struct, frozen=True):
    """A global holdout: ``fraction`` of units get no experiment and are flagged.

    Hashed as a GrowthBook rollout (hash v2, ``seed = salt or name``): a unit is
    held out when its bucket ``n`` satisfies ``n < fraction``, so raising the
    fraction keeps everyone already held out.
    """

    name: str = "holdout"
    fraction: float = 0.0
    salt: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"Holdout name: expected a non-empty str, got {self.name!r}")
        if not _real(self.fraction) or not 0.0 <= self.fraction < 1.0:
            raise ConfigError(
                f"holdout {self.name!r}: fraction must be a number in [0, 1), got {self.fraction!r}; "
                "e.g. 0.05 holds out 5% of units"
            )
        if self.salt is not None and not isinstance(self.salt, str):
            raise ConfigError(f"holdout {self.name!r}: salt must be a str or None, got {type(self.salt).__name__}")

    @property
    def seed(self) -> str:
        """The hash seed actually used: ``salt``, or ``name`` when the salt is empty."""
        return self.salt or self.name


class Assignment(msgspec.Struct, frozen=True):
    """Where one unit landed: its variant in each experiment it is enrolled in.

    ``variants`` maps experiment -> variant (experiments the unit is not enrolled
    in are absent: they run their default). ``overrides`` merges what the unit's
    variants change (``{"model": ..., "policy": ...}``). ``holdout`` flags a unit
    in the global holdout; ``forced`` flags a QA-forced unit. Assignments are
    shared between calls: treat them, and their dicts, as read-only.
    """

    variants: dict[str, str] = {}
    overrides: dict[str, Any] = {}
    holdout: bool = False
    forced: bool = False

    @property
    def model(self) -> Any:
        """The model override of this unit's variants, or ``None`` (use the default)."""
        return self.overrides.get("model")

    @property
    def policy(self) -> Any:
        """The policy override of this unit's variants, or ``None`` (use the default)."""
        return self.overrides.get("policy")


def _validate_experiment(exp: Experiment) -> None:
    if not isinstance(exp.name, str) or not exp.name:
        raise ConfigError(f"Experiment name: expected a non-empty str, got {exp.name!r}")
    where = f"experiment {exp.name!r}"
    variants = exp.variants
    if isinstance(variants, dict):
        names = list(variants)
        weights = list(variants.values())
        for n, w in variants.items():
            if not _real(w) or w < 0:
                raise ConfigError(
                    f"{where}: weight of variant {n!r} must be a finite number >= 0, got {w!r}"
                )
        total = math.fsum(weights)
        if not _WEIGHT_SUM_MIN <= total <= _WEIGHT_SUM_MAX:
            raise ConfigError(
                f"{where}: variant weights sum to {total:g}, expected 1 (GrowthBook accepts 0.99 to 1.01); "
                "scale them so they add up to 1, and use coverage to enroll less traffic"
            )
    elif isinstance(variants, (list, tuple)):
        names = list(variants)
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ConfigError(f"{where}: duplicate variant names {dup}; give each variant a distinct name")
    else:
        raise ConfigError(
            f"{where}: variants must be a dict name -> weight or a list of names, got {type(variants).__name__}"
        )
    if not 2 <= len(names) <= _MAX_VARIANTS:
        raise ConfigError(
            f"{where}: expected 2 to {_MAX_VARIANTS} variants (a control and at least one treatment), got {len(names)}"
        )
    for n in names:
        if not isinstance(n, str) or not n:
            raise ConfigError(f"{where}: variant names must be non-empty str, got {n!r}")
    if exp.salt is not None and not isinstance(exp.salt, str):
        raise ConfigError(f"{where}: salt must be a str or None, got {type(exp.salt).__name__}")
    if not _real(exp.coverage) or not 0.0 <= exp.coverage <= 1.0:
        raise ConfigError(f"{where}: coverage must be a number in [0, 1], got {exp.coverage!r}")
    if exp.namespace is not None:
        ns = exp.namespace
        if not isinstance(ns, (tuple, list)) or len(ns) != 3:
            raise ConfigError(f"{where}: namespace must be (namespace_id, start, end), got {ns!r}")
        ns_id, start, end = ns
        if not isinstance(ns_id, str) or not ns_id:
            raise ConfigError(f"{where}: namespace id must be a non-empty str, got {ns_id!r}")
        if not (_real(start) and _real(end) and 0.0 <= start < end <= 1.0):
            raise ConfigError(
                f"{where}: namespace {ns_id!r} range must satisfy 0 <= start < end <= 1, got [{start!r}, {end!r})"
            )
    if not isinstance(exp.overrides, dict):
        raise ConfigError(
            f"{where}: overrides must be a dict variant -> {{key: value}}, got {type(exp.overrides).__name__}"
        )
    for v, changes in exp.overrides.items():
        if v not in names:
            raise ConfigError(f"{where}: overrides name unknown variant {v!r}; variants are {names}")
        if not isinstance(changes, dict):
            raise ConfigError(f"{where}: overrides[{v!r}] must be a dict such as {{'model': 'v2'}}, got {changes!r}")
        for key in changes:
            if key not in OVERRIDE_KEYS:
                raise ConfigError(
                    f"{where}: overrides[{v!r}] has unknown key {key!r}; a variant can override {list(OVERRIDE_KEYS)}"
                )
    if not isinstance(exp.forced, dict):
        raise ConfigError(f"{where}: forced must be a dict unit id -> variant, got {type(exp.forced).__name__}")
    for unit, v in exp.forced.items():
        if not isinstance(unit, str):
            raise ConfigError(f"{where}: forced unit ids must be str, got {unit!r}")
        if v not in names:
            raise ConfigError(f"{where}: forced[{unit!r}] names unknown variant {v!r}; variants are {names}")
    if not isinstance(exp.active, bool):
        raise ConfigError(f"{where}: active must be a bool, got {exp.active!r}")
    if exp.condition is not None and not isinstance(exp.condition, dict):
        raise ConfigError(
            f"{where}: condition must be a GrowthBook condition dict such as {{'country': {{'$in': ['NL']}}}}, "
            f"got {type(exp.condition).__name__}"
        )
    if exp.condition is not None:
        problems = check_condition(exp.condition)
        if problems:
            raise ConfigError(
                f"{where}: its condition would never match as written (GrowthBook ignores these silently): "
                + "; ".join(problems)
            )
    if exp.ranges is not None:
        rs = exp.ranges
        if not isinstance(rs, (tuple, list)) or len(rs) != len(names):
            raise ConfigError(f"{where}: ranges must give one (start, end) per variant ({len(names)}), got {rs!r}")
        for r in rs:
            if not (isinstance(r, (tuple, list)) and len(r) == 2 and _real(r[0]) and _real(r[1])
                    and 0.0 <= r[0] <= r[1] <= 1.0):
                raise ConfigError(f"{where}: each range must be (start, end) with 0 <= start <= end <= 1, got {r!r}")
    for field in ("bucket_version", "min_bucket_version"):
        v = getattr(exp, field)
        if type(v) is not int or v < 0:
            raise ConfigError(
                f"{where}: {field} must be an int >= 0, got {v!r}; bump bucket_version to re-bucket units"
            )
    if exp.min_bucket_version > exp.bucket_version:
        raise ConfigError(
            f"{where}: min_bucket_version {exp.min_bucket_version} is above bucket_version {exp.bucket_version}, "
            "which would exclude units of the current version too; raise bucket_version with it"
        )
    if not isinstance(exp.disable_sticky_bucketing, bool):
        raise ConfigError(f"{where}: disable_sticky_bucketing must be a bool, got {exp.disable_sticky_bucketing!r}")
    if exp.variation_keys is not None:
        keys = exp.variation_keys
        if (not isinstance(keys, (tuple, list)) or len(keys) != len(names)
                or not all(isinstance(k, str) and k for k in keys)):
            raise ConfigError(
                f"{where}: variation_keys must give one non-empty str per variant ({len(names)}), got {keys!r}"
            )
        if len(set(keys)) != len(keys):
            raise ConfigError(f"{where}: variation_keys must be distinct (they name the stored variant), got {keys!r}")
    if type(exp.hash_version) is not int or exp.hash_version not in HASH_VERSIONS:
        raise ConfigError(
            f"{where}: hash_version must be 1 or 2 (GrowthBook's hash versions), got {exp.hash_version!r}; "
            "use 1 for an experiment GrowthBook ran without hashVersion, 2 otherwise"
        )


def bucket_ranges(weights: Sequence[float], coverage: float = 1.0) -> list[tuple[float, float]]:
    """GrowthBook's variant ranges ``[start, end)`` on [0, 1): each starts at its cumulative weight.

    A range spans ``coverage * weight`` from its fixed start, which is why raising
    coverage never moves an enrolled unit. Same float arithmetic as the SDKs.
    """
    cumulative = 0.0
    ranges = []
    for w in weights:
        start = cumulative
        cumulative += w
        ranges.append((start, start + coverage * w))
    return ranges


def _variant_table(
    weights: Sequence[float], coverage: float, active: bool, hash_version: int = 2,
    ranges: Sequence[tuple[float, float]] | None = None,
) -> np.ndarray:
    """Bucket -> variant index + 1 (0: not enrolled): 10,000 hash-v2 buckets, or 1,000 v1 buckets first."""
    table = np.zeros(_BUCKETS, dtype=np.uint8)
    if not active:
        return table
    buckets = _BUCKETS if hash_version == 2 else _NS_BUCKETS
    # k / buckets in IEEE doubles, compared to the ranges as GrowthBook does; the
    # first matching range wins, hence filling in reverse.
    n = np.arange(buckets, dtype=np.float64) / buckets
    view = table[:buckets]
    if ranges is None:
        ranges = bucket_ranges(weights, coverage)
    for i, (start, end) in reversed(list(enumerate(ranges))):
        view[(n >= start) & (n < end)] = i + 1
    return table


def _buckets_below(x: float, buckets: int) -> int:
    """How many buckets ``k`` satisfy ``k / buckets < x``: the integer form of a float bound."""
    return int(np.count_nonzero(np.arange(buckets, dtype=np.float64) / buckets < x))


def _unit_str(unit_id: Any) -> str:
    """A unit id as GrowthBook's SDKs hash it (JavaScript ``String()`` of the attribute)."""
    if isinstance(unit_id, str):
        return unit_id
    if isinstance(unit_id, int) and not isinstance(unit_id, bool):
        if unit_id == 0:  # GrowthBook treats a falsy id as missing
            return ""
        if abs(unit_id) > _JS_SAFE_INT:
            raise SchemaError(
                f"unit id {unit_id} is beyond 2**53 - 1, which JavaScript SDKs cannot represent exactly; "
                "pass it as a str"
            )
        return str(unit_id)
    raise SchemaError(f"unit id must be a str or an int, got {type(unit_id).__name__} {unit_id!r}")


class Allocator:
    """Assigns units to variants of a set of experiments, under an optional global holdout.

    Validates the whole set at construction (unique names, disjoint ranges within a
    namespace, no two experiments that can share a unit overriding the same thing)
    and precomputes every bucket table. Immutable and safe to share across threads.

    ``sticky``: a ``nba.sticky.StickyBuckets`` store, for GrowthBook's sticky bucketing
    (each experiment's ``bucket_version``, ``min_bucket_version``,
    ``disable_sticky_bucketing``). Its documents name the unit ``hash_attribute||unit``
    (GrowthBook's ``hashAttribute``; the Decider passes its ``unit_key``). For each
    active experiment with sticky bucketing on, in GrowthBook's order: a unit holding
    an assignment from a version below ``min_bucket_version`` is enrolled nowhere; one
    holding an assignment of the current ``bucket_version`` keeps that variant, whatever
    the weights, coverage, namespace or condition now say; any other is bucketed as
    usual and, when enrolled, its variant is saved. The global holdout and ``forced``
    variants still win (forced variants are not saved); an inactive experiment
    enrolls nobody. Without ``sticky`` allocation is pure hashing, as before.
    """

    def __init__(
        self, experiments: Iterable[Experiment] = (), *, holdout: Holdout | None = None,
        sticky: StickyBuckets | None = None, hash_attribute: str = "id",
    ) -> None:
        exps = tuple(experiments)
        for e in exps:
            if not isinstance(e, Experiment):
                raise ConfigError(f"Allocator: expected Experiment objects, got {type(e).__name__}")
        if holdout is not None and not isinstance(holdout, Holdout):
            raise ConfigError(f"Allocator holdout: expected a Holdout or None, got {type(holdout).__name__}")
        _validate_set(exps)
        self._experiments = exps
        self._holdout = holdout
        self._names = tuple(e.name for e in exps)
        self._variant_names = tuple(e.variant_names for e in exps)
        self._overrides = tuple(
            tuple(e.overrides.get(v, {}) for v in e.variant_names) for e in exps
        )
        self._table = self._build_table(exps, holdout)
        self._forced = self._build_forced(exps)
        self._conditions = tuple(
            (i, TargetingCondition(e.condition)) for i, e in enumerate(exps) if e.condition is not None
        )
        self._cache: dict[bytes, Assignment] = {}
        self._sticky = sticky
        self._sticky_plan: tuple[tuple[int, str, tuple[str, ...], dict[str, int], tuple[str, ...]], ...] = ()
        if sticky is not None:
            from nba.sticky import StickyBuckets

            if not isinstance(sticky, StickyBuckets):
                raise ConfigError(
                    f"Allocator sticky: expected an nba.sticky store (EmbeddedStickyBuckets, RedisStickyBuckets or "
                    f"a StickyBuckets implementation), got {type(sticky).__name__}"
                )
            if not isinstance(hash_attribute, str) or not hash_attribute:
                raise ConfigError(f"Allocator hash_attribute: expected a non-empty str, got {hash_attribute!r}")
            self._sticky_plan = tuple(
                (i, f"{e.name}__{e.bucket_version}", tuple(f"{e.name}__{v}" for v in range(e.min_bucket_version)),
                 {k: j + 1 for j, k in enumerate(keys)}, keys)
                for i, e in enumerate(exps) if e.active and not e.disable_sticky_bucketing
                for keys in (e.variation_keys or e.variant_names,)
            )
            sticky.refresh()  # a new configuration: cached reads no longer vouch for absence
        self._attribute = hash_attribute

    @staticmethod
    def _build_table(exps: tuple[Experiment, ...], holdout: Holdout | None) -> experiments_core.ExperimentTable:
        n = len(exps)
        salt_state = np.array([hashing_core.fnv1a_32_str(e.seed) for e in exps], dtype=np.uint32)
        table = np.zeros((n, _BUCKETS), dtype=np.uint8)
        ns_start = np.full(n, -1, dtype=np.int32)
        ns_len = np.zeros(n, dtype=np.int32)
        ns_lo = np.zeros(n, dtype=np.int32)
        ns_hi = np.zeros(n, dtype=np.int32)
        v1_start = np.full(n, -1, dtype=np.int32)
        v1_len = np.zeros(n, dtype=np.int32)
        units: list[np.ndarray] = []
        offsets: dict[str, tuple[int, int]] = {}
        used = 0
        for i, e in enumerate(exps):
            table[i] = _variant_table(e.weights, float(e.coverage), e.active, e.hash_version, e.ranges)
            if e.hash_version == 1:  # fnv1a32(unit + seed): the seed's code units continue the unit
                cu = np.frombuffer(e.seed.encode("utf-16-le", "surrogatepass"), dtype="<u2")
                units.append(cu.astype(np.uint16))
                v1_start[i], v1_len[i] = used, len(cu)
                used += len(cu)
            if e.namespace is None:
                continue
            ns_id, start, end = e.namespace
            if ns_id not in offsets:
                # GrowthBook's namespace hash: v1 with seed "__" + id, i.e. fnv1a32(unit + "__" + id).
                cu = np.frombuffer(("__" + ns_id).encode("utf-16-le", "surrogatepass"), dtype="<u2")
                units.append(cu.astype(np.uint16))
                offsets[ns_id] = (used, len(cu))
                used += len(cu)
            ns_start[i], ns_len[i] = offsets[ns_id]
            ns_lo[i] = _buckets_below(float(start), _NS_BUCKETS)
            ns_hi[i] = _buckets_below(float(end), _NS_BUCKETS)
        ns_units = np.concatenate(units) if units else np.zeros(0, dtype=np.uint16)
        if holdout is not None and holdout.fraction > 0:
            h_state = hashing_core.fnv1a_32_str(holdout.seed)
            h_buckets = _buckets_below(float(holdout.fraction), _BUCKETS)
        else:
            h_state, h_buckets = 0, 0
        return experiments_core.ExperimentTable(salt_state, table, ns_start, ns_len, ns_lo, ns_hi, ns_units,
                                                h_state, h_buckets, v1_start, v1_len)

    @staticmethod
    def _build_forced(exps: tuple[Experiment, ...]) -> dict[str, tuple[tuple[int, int], ...]]:
        """unit -> ((experiment index, code byte), ...): forced variants and namespace siblings cleared."""
        by_unit: dict[str, dict[int, int]] = {}
        for i, e in enumerate(exps):
            names = e.variant_names
            for unit, v in e.forced.items():
                by_unit.setdefault(unit, {})[i] = names.index(v) + 1
        forced: dict[str, tuple[tuple[int, int], ...]] = {}
        for unit, chosen in by_unit.items():
            patch: dict[int, int] = {}
            for i in chosen:
                ns = exps[i].namespace
                if ns is None:
                    continue
                # A layer holds a unit in one experiment at most: forcing it into one
                # takes it out of the namespace's other experiments.
                for j, other in enumerate(exps):
                    if other.namespace is not None and other.namespace[0] == ns[0] and j != i:
                        if j in chosen:
                            raise ConfigError(
                                f"unit {unit!r} is forced into both {exps[i].name!r} and {other.name!r}, which share "
                                f"namespace {ns[0]!r} and so never share a unit; force it into one of them"
                            )
                        patch[j] = 0
            patch.update(chosen)
            forced[unit] = tuple(sorted(patch.items()))
        return forced

    @property
    def experiments(self) -> tuple[Experiment, ...]:
        """The experiments, in the column order of ``assign_many``."""
        return self._experiments

    @property
    def holdout(self) -> Holdout | None:
        """The global holdout, if any."""
        return self._holdout

    def assign(self, unit_id: str | int, attributes: Mapping[str, Any] | None = None) -> Assignment:
        """The unit's variants in every experiment, its holdout flag and what its variants override.

        Deterministic: the same unit (and attributes) always gets the same
        ``Assignment``. An empty id (or the int 0) is enrolled nowhere, as in
        GrowthBook. ``attributes`` feed the experiments' conditions (none given: an
        empty mapping, which most conditions reject).
        """
        unit = unit_id if type(unit_id) is str else _unit_str(unit_id)
        code = self._table.assign(unit)
        if self._conditions:
            code = self._apply_conditions(code, {} if attributes is None else attributes)
        if self._sticky is not None and self._sticky_plan and unit and not code[0] & _HOLDOUT_BIT:
            code = self._apply_sticky(code, unit)
        if self._forced and unit in self._forced:
            code = self._apply_forced(code, unit)
        a = self._cache.get(code)
        if a is None:
            a = self._resolve(code)
        return a

    def _apply_conditions(self, code: bytes, attributes: Mapping[str, Any]) -> bytes:
        b = None
        for i, cond in self._conditions:
            if code[1 + i] and not cond(attributes):
                if b is None:
                    b = bytearray(code)
                b[1 + i] = 0
        return code if b is None else bytes(b)

    def _apply_sticky(self, code: bytes, unit: str) -> bytes:
        """GrowthBook's sticky lookup over the hashed code: stored variants win, blocked versions unenroll."""
        assert self._sticky is not None
        docs = self._sticky.get(self._attribute, unit)
        b = bytearray(code)
        forced = {i for i, _ in self._forced.get(unit, ())} if self._forced else ()
        new: dict[str, str] = {}
        seen: dict[str, str] = {}
        fresh: list[tuple[int, str, dict[str, int]]] = []
        for i, field, blocked, index, keys in self._sticky_plan:
            k = None
            if docs:
                if blocked and any(f in docs for f in blocked):
                    b[1 + i] = 0  # assigned under a version below min_bucket_version
                    continue
                k = docs.get(field)
                if k is not None:
                    v = index.get(k)
                    if v is not None:
                        b[1 + i] = v
                        continue
            v = b[1 + i]
            if v and i not in forced:
                new[field] = keys[v - 1]
                if k is not None:
                    seen[field] = k  # a key the experiment no longer has: GrowthBook overwrites it
                fresh.append((i, field, index))
        if new:
            stored = self._sticky.save(self._attribute, unit, new, seen)
            for i, field, index in fresh:  # another process may have stored first: its variant wins
                v = index.get(stored.get(field, ""), 0)
                if v:
                    b[1 + i] = v
        return bytes(b)

    def _apply_forced(self, code: bytes, unit: str) -> bytes:
        b = bytearray(code)
        b[0] |= _FORCED_BIT
        for i, v in self._forced[unit]:
            b[1 + i] = v
        return bytes(b)

    def _resolve(self, code: bytes) -> Assignment:
        variants: dict[str, str] = {}
        overrides: dict[str, Any] = {}
        for i, v in enumerate(code[1:]):
            if v:
                variants[self._names[i]] = self._variant_names[i][v - 1]
                overrides.update(self._overrides[i][v - 1])
        a = Assignment(variants, overrides, bool(code[0] & _HOLDOUT_BIT), bool(code[0] & _FORCED_BIT))
        if len(self._cache) < _CACHE_LIMIT:
            self._cache[code] = a
        return a

    def assign_many(
        self, unit_ids: Iterable[str | int], attributes: Sequence[Mapping[str, Any]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Variant indices of many units at once, for analysis and offline replay.

        Returns ``(variants, holdout)``: ``variants[i, e]`` is the index of unit i's
        variant in ``experiments[e]`` (-1: not enrolled), ``holdout[i]`` its holdout
        flag. Same answers as ``assign``, forced variants included; ``attributes[i]``
        are unit i's attributes for the experiments' conditions. Pure hashing: the
        sticky store (if any) is neither read nor written.
        """
        units = tuple(u if type(u) is str else _unit_str(u) for u in unit_ids)
        out = np.empty((len(units), 1 + len(self._experiments)), dtype=np.uint8)
        self._table.assign_many(units, out)
        if self._conditions:
            if attributes is not None and len(attributes) != len(units):
                raise SchemaError(f"assign_many: {len(units)} units but {len(attributes)} attribute mappings")
            for i, cond in self._conditions:
                for row in np.flatnonzero(out[:, 1 + i]).tolist():
                    if not cond({} if attributes is None else attributes[row]):
                        out[row, 1 + i] = 0
        if self._forced:
            for row, unit in enumerate(units):
                patch = self._forced.get(unit)
                if patch is not None:
                    for i, v in patch:
                        out[row, 1 + i] = v
        return out[:, 1:].astype(np.int16) - 1, (out[:, 0] & _HOLDOUT_BIT).astype(bool)


def _validate_set(exps: tuple[Experiment, ...]) -> None:
    """Checks across experiments: names, namespace overlaps, override conflicts."""
    if len(exps) > _MAX_EXPERIMENTS:
        raise ConfigError(
            f"an Allocator holds at most {_MAX_EXPERIMENTS} experiments, got {len(exps)}; "
            "remove finished experiments from the configuration"
        )
    seen: set[str] = set()
    for e in exps:
        if e.name in seen:
            raise ConfigError(f"duplicate experiment name {e.name!r}; experiment names must be unique")
        seen.add(e.name)
    for i, a in enumerate(exps):
        for b in exps[i + 1 :]:
            if a.namespace is not None and b.namespace is not None and a.namespace[0] == b.namespace[0]:
                (ns, s1, e1), (_, s2, e2) = a.namespace, b.namespace
                if s1 < e2 and s2 < e1:
                    raise ConfigError(
                        f"experiments {a.name!r} [{s1}, {e1}) and {b.name!r} [{s2}, {e2}) overlap in namespace {ns!r}; "
                        "give experiments of one namespace disjoint ranges so they never share a unit"
                    )
                continue
            keys_a = {k for changes in a.overrides.values() for k in changes}
            keys_b = {k for changes in b.overrides.values() for k in changes}
            clash = sorted(keys_a & keys_b)
            if clash:
                raise ConfigError(
                    f"experiments {a.name!r} and {b.name!r} can enroll the same unit and both override {clash}; "
                    "put them in one namespace with disjoint ranges (a layer), or let only one of them override it"
                )


def from_growthbook(payload: Mapping[str, Any] | str | bytes) -> list[Experiment]:
    """The experiments of a GrowthBook SDK payload's experiment rules, bucketed as GrowthBook buckets them.

    Each hashes the unit id an ``Allocator`` is given (GrowthBook's ``hashAttribute``
    value; the rule's own is in ``nba.growthbook.GrowthBookRule``). Rule order,
    conditions, force rules and filters are the feature's, not the experiment's:
    ``nba.growthbook.load_payload(payload).evaluate(attributes)`` runs them all.
    """
    from nba.growthbook import load_payload  # nba.growthbook builds on this module

    return load_payload(payload).experiments
