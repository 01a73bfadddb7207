"""Run experiments defined in GrowthBook, from the SDK payload a GrowthBook server publishes.

``load_payload(payload)`` reads the features JSON (``{"features": {key: {"defaultValue":
..., "rules": [...]}}}``) and turns every experiment rule (``key``, ``variations``,
``weights``, ``coverage``, ``hashAttribute``, ``hashVersion``, ``seed``, ``namespace``,
``condition``, ``ranges``, ``filters``, ``meta``) into an ``nba.experiments.Experiment``
hashed in the compiled core; ``GrowthBookPayload.evaluate(attributes)`` then walks each
feature's rules in order as GrowthBook's SDKs do (force rules with their rollouts,
experiment rules, the default value), so a server running nba puts each user in the
same variation as GrowthBook's browser SDK.

Loading is lenient exactly where GrowthBook's SDKs are, because the payload is
GrowthBook's to define: a rule without ``hashVersion`` hashes with v1; weights that
are not one finite, non-negative number per variation summing to 0.99..1.01 fall
back to equal weights; coverage is clamped to [0, 1] and ranges to [0, 1]; an
unknown hash version, an empty namespace range or fewer than two variations enroll
nobody; a user whose hash attribute is missing, empty, zero or not a string or
finite number is not in the experiment (never an error). ``nba.experiments``'s own
constructor stays strict (see ``Experiment``).

What is refused, with a ``ConfigError``: encrypted features (decrypt them first),
prerequisites (``parentConditions``), contextual bandits and anything that is not a
JSON object where GrowthBook expects one. Sticky bucketing: each rule's
``bucketVersion``, ``minBucketVersion`` and ``disableStickyBucketing`` and its
variations' ``meta[i].key`` (else ``"i"``, GrowthBook's variation key) are kept on the
Experiment, which an ``Allocator(..., sticky=store)`` or ``Decider(..., sticky=store)``
then buckets stickily (``nba.sticky``); ``evaluate`` itself does not (no store), nor
is ``fallbackAttribute`` modelled. Not modelled either: saved groups
(``$inGroup``/``$savedGroup`` match nothing), URL targeting and tracking callbacks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgspec

from nba._core import hashing as hashing_core
from nba.conditions import TargetingCondition, _js_number_to_string, check_condition
from nba.errors import ConfigError
from nba.experiments import Allocator, Experiment

__all__ = ["FeatureResult", "GrowthBookRule", "GrowthBookPayload", "load_payload"]

_WEIGHT_SUM_MIN = 0.99
_WEIGHT_SUM_MAX = 1.01
_UNSUPPORTED = ("parentConditions", "contextualBanditRef", "contextualVariations")


class FeatureResult(msgspec.Struct, frozen=True):
    """A feature's value for one user and where it came from (GrowthBook's ``source``).

    ``source`` is ``"experiment"`` (``experiment`` and ``variation`` say which),
    ``"force"`` or ``"defaultValue"``.
    """

    value: Any
    source: str
    experiment: str | None = None
    variation: int | None = None


class GrowthBookRule(msgspec.Struct, frozen=True):
    """One experiment rule of a feature as nba runs it: the Experiment, hashed on ``hash_attribute``.

    ``experiment`` names its variants ``"0"``, ``"1"``, ...: GrowthBook's variation
    indices. ``values`` are the feature values the variations serve. A rule whose
    condition nba's ``Experiment`` would refuse (``check_condition``) keeps it here,
    in ``lenient_condition``, evaluated as GrowthBook does.
    """

    feature: str
    experiment: Experiment
    hash_attribute: str
    values: tuple[Any, ...]
    filters: tuple[dict[str, Any], ...] = ()
    passthrough: tuple[bool, ...] = ()
    lenient_condition: TargetingCondition | None = None


def _real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _hash_value(attributes: Mapping[str, Any], attr: str) -> str:
    """The attribute as GrowthBook hashes it (JS ``String()``), or "" when it cannot identify a user."""
    v = attributes.get(attr)
    if isinstance(v, str):
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return ""
    try:
        if v == 0 or not math.isfinite(v):
            return ""
    except OverflowError:
        return ""
    return _js_number_to_string(v)


def gb_hash(seed: str, value: str, version: int) -> float | None:
    """GrowthBook's ``hash``: v2 ``fnv1a32(str(fnv1a32(seed + value))) % 10000 / 10000``, v1 ``... % 1000``."""
    if version == 2:
        return (hashing_core.fnv1a_32_str(str(hashing_core.fnv1a_32_str(seed + value))) % 10000) / 10000
    if version == 1:
        return (hashing_core.fnv1a_32_str(value + seed) % 1000) / 1000
    return None


def _weights(raw: Any, n: int) -> list[float]:
    """The weights GrowthBook buckets with: as given when valid, else equal weights."""
    try:
        if (isinstance(raw, list) and len(raw) == n and all(_real(w) and w >= 0 for w in raw)
                and _WEIGHT_SUM_MIN <= sum(raw) <= _WEIGHT_SUM_MAX):
            return [float(w) for w in raw]
    except OverflowError:
        pass
    return [1 / n] * n


def _version(raw: Any) -> int:
    """A bucket version as GrowthBook reads it (``x or 0``); nba needs a non-negative int."""
    if isinstance(raw, bool) or not _real(raw) or raw <= 0:
        return 0
    return int(raw)


def _clamp01(x: float) -> float:
    return min(max(float(x), 0.0), 1.0)


def _filtered_out(filters: tuple[dict[str, Any], ...], attributes: Mapping[str, Any]) -> bool:
    """GrowthBook's ``filters``: the user must hash into one of each filter's ranges."""
    for f in filters:
        value = _hash_value(attributes, f.get("attribute", "id"))
        if value == "":
            return True
        n = gb_hash(f.get("seed", ""), value, f.get("hashVersion", 2))
        if n is None or not any(r[0] <= n < r[1] for r in f["ranges"]):
            return True
    return False


def _check_filters(raw: Any, where: str) -> tuple[dict[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(
        isinstance(f, dict) and isinstance(f.get("ranges"), list)
        and all(isinstance(r, list) and len(r) == 2 and all(_real(x) for x in r) for r in f["ranges"])
        for f in raw
    ):
        raise ConfigError(f"{where}: filters must be a list of {{attribute, seed, hashVersion, ranges}}, got {raw!r}")
    return tuple(raw)


class _Force(msgspec.Struct, frozen=True):
    value: Any
    seed: str
    hash_attribute: str
    hash_version: int | None
    coverage: float | None
    range: tuple[float, float] | None
    filters: tuple[dict[str, Any], ...]

    def includes(self, attributes: Mapping[str, Any]) -> bool:
        """GrowthBook's ``_isIncludedInRollout`` (and the rule's filters)."""
        if self.filters and _filtered_out(self.filters, attributes):
            return False
        if self.coverage is None and self.range is None:
            return True
        if self.coverage == 0 and self.range is None:
            return False
        value = _hash_value(attributes, self.hash_attribute)
        if value == "":
            return False
        n = gb_hash(self.seed, value, self.hash_version or 1)
        if n is None:
            return False
        if self.range is not None:
            return self.range[0] <= n < self.range[1]
        return n < (self.coverage if self.coverage is not None else 1.0)


class _Feature:
    __slots__ = ("key", "default", "steps")

    def __init__(self, key: str, default: Any, steps: list[tuple[TargetingCondition | None, Any]]) -> None:
        self.key = key
        self.default = default
        self.steps = steps  # (rule condition, _Force | (GrowthBookRule, Allocator))


class GrowthBookPayload:
    """A loaded SDK payload: its experiment rules as nba Experiments, and feature evaluation.

    Immutable after loading; safe to share across threads.
    """

    def __init__(self, features: list[_Feature], rules: tuple[GrowthBookRule, ...]) -> None:
        self._features = features
        self.rules = rules

    @property
    def experiments(self) -> list[Experiment]:
        """Every experiment rule's Experiment, in payload order (one per rule; a key may repeat)."""
        return [r.experiment for r in self.rules]

    def evaluate(self, attributes: Mapping[str, Any]) -> dict[str, FeatureResult]:
        """Every feature's value for a user with these attributes, as GrowthBook's ``eval_feature`` gives it."""
        return {f.key: self._eval(f, attributes) for f in self._features}

    def _eval(self, feature: _Feature, attributes: Mapping[str, Any]) -> FeatureResult:
        for cond, step in feature.steps:
            if cond is not None and not cond(attributes):
                continue
            if isinstance(step, _Force):
                if step.includes(attributes):
                    return FeatureResult(step.value, "force")
                continue
            rule, alloc = step
            if rule.lenient_condition is not None and not rule.lenient_condition(attributes):
                continue
            if rule.filters and _filtered_out(rule.filters, attributes):
                continue
            unit = _hash_value(attributes, rule.hash_attribute)
            if unit == "":
                continue
            variant = alloc.assign(unit, attributes).variants.get(rule.experiment.name)
            if variant is None:
                continue
            i = int(variant)
            if rule.passthrough and rule.passthrough[i]:
                continue
            return FeatureResult(rule.values[i], "experiment", rule.experiment.name, i)
        return FeatureResult(feature.default, "defaultValue")


def load_payload(payload: Mapping[str, Any] | str | bytes) -> GrowthBookPayload:
    """Load a GrowthBook SDK payload (the features JSON, as a dict or JSON text)."""
    if isinstance(payload, (str, bytes)):
        try:
            payload = msgspec.json.decode(payload)
        except msgspec.DecodeError as exc:
            raise ConfigError(f"GrowthBook payload: not valid JSON ({exc})") from None
    if not isinstance(payload, Mapping):
        raise ConfigError(f"GrowthBook payload: expected a JSON object with 'features', got {type(payload).__name__}")
    if payload.get("encryptedFeatures"):
        raise ConfigError("GrowthBook payload: features are encrypted; decrypt them (or disable encryption) first")
    raw_features = payload.get("features", {})
    if not isinstance(raw_features, Mapping):
        raise ConfigError(f"GrowthBook payload: 'features' must be an object, got {type(raw_features).__name__}")
    features: list[_Feature] = []
    rules: list[GrowthBookRule] = []
    for key, feat in raw_features.items():
        where = f"GrowthBook feature {key!r}"
        if not isinstance(feat, Mapping):
            raise ConfigError(f"{where}: expected an object with defaultValue and rules, got {type(feat).__name__}")
        steps: list[tuple[TargetingCondition | None, Any]] = []
        raw_rules = feat.get("rules") or []
        if not isinstance(raw_rules, list):
            raise ConfigError(f"{where}: rules must be a list, got {type(raw_rules).__name__}")
        for n, rule in enumerate(raw_rules):
            rwhere = f"{where} rule {n}"
            if not isinstance(rule, Mapping):
                raise ConfigError(f"{rwhere}: expected an object, got {type(rule).__name__}")
            for k in _UNSUPPORTED:
                if rule.get(k):
                    raise ConfigError(f"{rwhere}: {k} is not supported by nba; evaluate this feature with GrowthBook")
            raw_cond = rule.get("condition")
            cond = TargetingCondition(raw_cond) if raw_cond else None
            filters = _check_filters(rule.get("filters"), rwhere)
            if "force" in rule and rule["force"] is not None:
                rng = rule.get("range")
                steps.append((cond, _Force(
                    value=rule["force"], seed=str(rule.get("seed") or key),
                    hash_attribute=str(rule.get("hashAttribute") or "id"), hash_version=rule.get("hashVersion"),
                    coverage=float(rule["coverage"]) if _real(rule.get("coverage")) else None,
                    range=(float(rng[0]), float(rng[1])) if isinstance(rng, list) and len(rng) == 2 else None,
                    filters=filters,
                )))
                continue
            step = _experiment_rule(key, rule, filters, rwhere)
            if step is not None:
                rules.append(step[0])
                steps.append((None, step))  # the Experiment evaluates the rule's condition itself
        features.append(_Feature(str(key), feat.get("defaultValue"), steps))
    return GrowthBookPayload(features, tuple(rules))


def _experiment_rule(
    feature: str, rule: Mapping[str, Any], filters: tuple[dict[str, Any], ...], where: str,
) -> tuple[GrowthBookRule, Allocator] | None:
    """An experiment rule as an Experiment plus its one-experiment Allocator; None if it can enroll nobody."""
    variations = rule.get("variations")
    if not isinstance(variations, list) or len(variations) < 2:
        return None  # GrowthBook skips such a rule (no variations: not an experiment rule)
    n = len(variations)
    exp_key = rule.get("key") or feature
    if not isinstance(exp_key, str):
        raise ConfigError(f"{where}: key must be a string, got {exp_key!r}")
    hash_version = rule.get("hashVersion") or 1
    cov = rule.get("coverage")
    if cov is not None and not _real(cov):
        raise ConfigError(f"{where}: coverage must be a number, got {cov!r}")
    coverage = 1.0 if cov is None else _clamp01(cov)
    weights = _weights(rule.get("weights"), n)
    active = hash_version in (1, 2)
    namespace = None
    empty_namespace = False
    raw_ns = rule.get("namespace")
    if raw_ns and not filters:  # filters replace the namespace, as in GrowthBook
        if not (isinstance(raw_ns, list) and len(raw_ns) == 3 and isinstance(raw_ns[0], str)
                and _real(raw_ns[1]) and _real(raw_ns[2])):
            raise ConfigError(f"{where}: namespace must be [id, start, end], got {raw_ns!r}")
        start, end = _clamp01(raw_ns[1]), _clamp01(raw_ns[2])
        if start < end and raw_ns[0]:
            namespace = (raw_ns[0], start, end)
        else:
            empty_namespace = True  # holds nobody new; a sticky assignment still bypasses it, as in GrowthBook
    ranges = None
    raw_ranges = rule.get("ranges")
    if raw_ranges:
        if not (isinstance(raw_ranges, list) and all(
                isinstance(r, list) and len(r) == 2 and _real(r[0]) and _real(r[1]) for r in raw_ranges)):
            raise ConfigError(f"{where}: ranges must be a list of [start, end], got {raw_ranges!r}")
        # Ranges past the variations are never chosen; missing ones enroll nobody there.
        clamped = [(_clamp01(s), max(_clamp01(s), _clamp01(e))) for s, e in raw_ranges[:n]]
        ranges = tuple(clamped + [(0.0, 0.0)] * (n - len(clamped)))
    if empty_namespace:
        ranges = ((0.0, 0.0),) * n
    meta = rule.get("meta")
    passthrough: tuple[bool, ...] = ()
    if isinstance(meta, list):
        passthrough = tuple(bool(isinstance(m, dict) and m.get("passthrough")) for m in meta[:n])
        passthrough += (False,) * (n - len(passthrough))
    metas = meta if isinstance(meta, list) else []
    keys = tuple(  # GrowthBook's variation key: meta[i].key, else the index as text
        str(metas[i]["key"]) if i < len(metas) and isinstance(metas[i], dict) and metas[i].get("key") is not None
        else str(i)
        for i in range(n)
    )
    bucket_version = _version(rule.get("bucketVersion"))
    # GrowthBook never publishes minBucketVersion above bucketVersion; nba's Experiment refuses it.
    min_bucket_version = min(_version(rule.get("minBucketVersion")), bucket_version)
    seed = rule.get("seed")
    raw_cond = rule.get("condition")
    # A condition nba's strict check accepts rides on the Experiment (from_growthbook keeps
    # it); one GrowthBook would partly never match stays on the rule, evaluated leniently.
    condition = dict(raw_cond) if raw_cond and not check_condition(raw_cond) else None
    lenient = TargetingCondition(raw_cond) if raw_cond and condition is None else None
    exp = Experiment(
        exp_key,
        variants={str(i): w for i, w in enumerate(weights)},
        salt=str(seed) if seed else None,
        coverage=coverage,
        namespace=namespace,
        active=active,
        hash_version=int(hash_version) if hash_version in (1, 2) else 2,
        condition=condition,
        ranges=ranges,
        bucket_version=bucket_version,
        min_bucket_version=min_bucket_version,
        disable_sticky_bucketing=bool(rule.get("disableStickyBucketing")),
        variation_keys=keys if len(set(keys)) == n else None,
    )
    hash_attribute = rule.get("hashAttribute") or "id"
    gb_rule = GrowthBookRule(feature, exp, str(hash_attribute), tuple(variations), filters, passthrough, lenient)
    return gb_rule, Allocator([exp])
