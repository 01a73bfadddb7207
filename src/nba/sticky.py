"""GrowthBook sticky bucketing: where a unit's experiment assignments are remembered.

With a store (``Allocator(..., sticky=store)``, ``Decider(..., sticky=store)``), a unit
keeps the variant it was first given in an experiment while the experiment's weights,
coverage, namespace or condition change, until its ``bucket_version`` is bumped
(``nba.experiments.Experiment``). The documents are GrowthBook's: one per unit, keyed
``attributeName||attributeValue`` (``id||u42``), mapping ``experimentKey__bucketVersion``
to the variation key. So a GrowthBook SDK and nba can share a store: both classes
here also answer GrowthBook's ``AbstractStickyBucketService`` methods
(``get_assignments``, ``save_assignments``, ``get_all_assignments``).

- ``EmbeddedStickyBuckets``: this process's memory (tests, one process, a notebook).
- ``RedisStickyBuckets``: one Redis hash per unit, shared by every process and host.

Saving is first-writer-wins per experiment: an assignment, once stored, is only replaced
by a caller that saw it (a variation key the experiment no longer has, which GrowthBook
overwrites). Two workers running different configurations during a deploy therefore
still agree on the unit's variant: the one stored first.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from nba import _redis
from nba.errors import ConfigError

__all__ = ["EmbeddedStickyBuckets", "RedisStickyBuckets", "StickyBuckets", "sticky_key"]

Assignments = Mapping[str, str]
"""A unit's sticky assignments: ``"experimentKey__bucketVersion"`` -> variation key."""


def sticky_key(attribute: str, value: str) -> str:
    """GrowthBook's document key of a unit: ``attributeName||attributeValue``."""
    return attribute + "||" + value


@runtime_checkable
class StickyBuckets(Protocol):
    """Where units' sticky assignments live; the ``Allocator`` speaks only to this.

    ``attribute`` is the name of what identifies the unit (GrowthBook's
    ``hashAttribute``, the Decider's ``unit_key``), ``value`` the unit id as hashed.
    """

    def get(self, attribute: str, value: str) -> Assignments:
        """The unit's assignments (empty when it has none). Treat the mapping as read-only."""
        ...

    def save(self, attribute: str, value: str, assignments: Assignments, seen: Assignments) -> Assignments:
        """Merge ``assignments`` into the unit's document, atomically; return the document after it.

        Each field is written only if it still holds what ``seen`` says (absent from
        ``seen``: absent), so the first writer of an assignment wins and a caller that
        lost finds the winner's variation in the returned mapping.
        """
        ...

    def forget(self, attribute: str, values: Iterable[str]) -> int:
        """Delete the documents of these units (erasure); how many existed."""
        ...

    def refresh(self) -> None:
        """The configuration changed (a new ``Allocator``): drop cached reads that could now be stale."""
        ...


def _check_text(x: Any, what: str, who: str) -> str:
    if not isinstance(x, str):
        raise ConfigError(f"{who}: {what} must be a str, got {type(x).__name__} {x!r}")
    return x


class _GrowthBookService:
    """GrowthBook's ``AbstractStickyBucketService`` interface over a ``StickyBuckets``."""

    def get(self, attribute: str, value: str) -> Assignments:  # pragma: no cover - overridden
        raise NotImplementedError

    def save(self, attribute: str, value: str, assignments: Assignments, seen: Assignments) -> Assignments:
        raise NotImplementedError  # pragma: no cover - overridden

    def get_key(self, attributeName: str, attributeValue: str) -> str:  # noqa: N803 - GrowthBook's names
        """GrowthBook's document key, ``attributeName||attributeValue``."""
        return sticky_key(attributeName, attributeValue)

    def get_assignments(self, attributeName: str, attributeValue: str) -> dict[str, Any] | None:  # noqa: N803
        """GrowthBook's document of a unit (``attributeName``, ``attributeValue``, ``assignments``), or None."""
        a = self.get(attributeName, attributeValue)
        if not a:
            return None
        return {"attributeName": attributeName, "attributeValue": attributeValue, "assignments": dict(a)}

    def save_assignments(self, doc: dict[str, Any]) -> None:
        """Store a GrowthBook document: its assignments overwrite the unit's (GrowthBook's own semantics)."""
        name, value, new = doc["attributeName"], doc["attributeValue"], dict(doc.get("assignments") or {})
        current = self.get(name, value)
        self.save(name, value, new, {k: current[k] for k in new if k in current})

    def get_all_assignments(self, attributes: dict[str, str]) -> dict[str, dict[str, Any]]:
        """GrowthBook's documents of several identifying attributes, keyed ``name||value``."""
        docs = {}
        for name, value in attributes.items():
            doc = self.get_assignments(name, value)
            if doc:
                docs[sticky_key(name, value)] = doc
        return docs


class EmbeddedStickyBuckets(_GrowthBookService):
    """Sticky assignments in this process's memory: ``{"id||u42": {"exp__0": "treatment"}}``.

    Thread-safe (one lock around each merge). Lost with the process: use
    ``RedisStickyBuckets`` when several processes serve the same units.
    """

    def __init__(self) -> None:
        self._docs: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        _LIVE.add(self)

    @property
    def docs(self) -> dict[str, dict[str, str]]:
        """Every document, ``attributeName||attributeValue`` -> assignments (a copy)."""
        with self._lock:
            return {k: dict(v) for k, v in self._docs.items()}

    def get(self, attribute: str, value: str) -> Assignments:
        """The unit's assignments (the stored dict itself: read-only)."""
        return self._docs.get(attribute + "||" + value) or _EMPTY

    def save(self, attribute: str, value: str, assignments: Assignments, seen: Assignments) -> Assignments:
        """First-writer-wins merge (see ``StickyBuckets.save``)."""
        key = attribute + "||" + value
        with self._lock:
            # Copy on write: a reader holding the old dict keeps a consistent snapshot.
            doc = dict(self._docs.get(key) or ())
            for field, variation in assignments.items():
                if doc.get(field) == seen.get(field):
                    doc[field] = variation
            if doc:  # nothing written to an absent document leaves none (as in Redis)
                self._docs[key] = doc
            return doc

    def forget(self, attribute: str, values: Iterable[str]) -> int:
        """Delete these units' documents; how many existed."""
        with self._lock:
            return sum(self._docs.pop(attribute + "||" + v, None) is not None for v in values)

    def refresh(self) -> None:
        """Nothing cached: every read is the store itself."""

    def destroy(self) -> None:
        """Delete every document (GrowthBook's ``InMemoryStickyBucketService.destroy``)."""
        with self._lock:
            self._docs.clear()


_EMPTY: Mapping[str, str] = {}

# KEYS[1]: the unit's hash. ARGV: field, new variation, seen variation ("" = absent), ...
# Writes a field only if it still holds what the caller saw; returns the whole hash.
_MERGE = """
for i = 1, #ARGV, 3 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if (cur == false and ARGV[i + 2] == '') or cur == ARGV[i + 2] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return redis.call('HGETALL', KEYS[1])
"""

DEFAULT_CACHE_SIZE = 100_000
DEFAULT_CACHE_TTL = 60.0


class RedisStickyBuckets(_GrowthBookService):
    """Sticky assignments in Redis, shared by every process (and host) using the same namespace.

    ``url``: a ``redis://`` URL (nba makes the client and closes it) or a ready
    ``redis.Redis`` (yours). One hash per unit, ``{namespace}:sticky:<attribute>||<value>``,
    field ``experimentKey__bucketVersion`` -> variation key; no expiry (a GrowthBook
    assignment is meant to outlive the session; ``forget`` erases it). A save is one
    script: each field set only if it still holds what the caller read (first writer
    wins), the whole hash returned.

    Reads are cached per process in an LRU of ``cache_size`` units, each entry kept for
    ``cache_ttl`` seconds. A decision's first sight of a unit (or the first after the
    entry expired) costs one round trip, the only one this feature adds to ``decide()``;
    a unit newly enrolled costs one more (the save). A cached assignment never goes stale
    (immutable for its bucket version; a bump is a new field). A cached *absence* can:
    the entry is dropped when the configuration changes (``refresh``, called by every new
    ``Allocator``), since under one configuration the deterministic hash gives every
    worker the same answer, so a miss resolved from Redis stays right; what remains is a
    unit another worker enrolled, under attributes that pass a condition this call's do
    not, after this worker read it: served unenrolled for at most ``cache_ttl``. Erasure
    (``forget``) in one process leaves other processes' cached copies for at most
    ``cache_ttl`` as well. ``cache_size=0`` reads Redis every time. ``clock`` (seconds,
    monotonic) is for tests. Redis errors (``redis.RedisError``) propagate.
    """

    def __init__(self, url: Any, *, namespace: str = "nba", cache_size: int = DEFAULT_CACHE_SIZE,
                 cache_ttl: float = DEFAULT_CACHE_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self._client: Any  # redis-py's return types are unions of every reply type: the replies are checked here
        self._client, self._own, tag = _redis.connect(url, namespace, "RedisStickyBuckets")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ConfigError(f"RedisStickyBuckets: cache_size must be an int >= 0 (units), got {cache_size!r}")
        if isinstance(cache_ttl, bool) or not isinstance(cache_ttl, (int, float)) or not cache_ttl >= 0:
            raise ConfigError(f"RedisStickyBuckets: cache_ttl must be a number of seconds >= 0, got {cache_ttl!r}")
        self.namespace = namespace
        self._prefix = f"{tag}:sticky:"
        self._merge = self._client.register_script(_MERGE)
        self._size = cache_size
        self._ttl = float(cache_ttl)
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, Mapping[str, str]]] = OrderedDict()
        self._lock = threading.Lock()
        _LIVE.add(self)

    def _remember(self, key: str, doc: Mapping[str, str]) -> None:
        if self._size:
            with self._lock:
                self._cache[key] = (self._clock() + self._ttl, doc)
                self._cache.move_to_end(key)
                while len(self._cache) > self._size:
                    self._cache.popitem(last=False)

    @staticmethod
    def _decode(raw: Any) -> dict[str, str]:
        if isinstance(raw, dict):
            items: Iterable[tuple[Any, Any]] = raw.items()
        else:  # the script's flat [field, value, ...] reply
            items = zip(raw[::2], raw[1::2])
        return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                for k, v in items}

    def get(self, attribute: str, value: str) -> Assignments:
        """The unit's assignments: from the cache, else one HGETALL (then cached)."""
        key = attribute + "||" + value
        hit = self._cache.get(key)
        if hit is not None and hit[0] > self._clock():
            try:
                self._cache.move_to_end(key)
            except KeyError:  # evicted by another thread meanwhile
                pass
            return hit[1]
        doc = self._decode(self._client.hgetall(self._prefix + key))
        self._remember(key, doc)
        return doc

    def save(self, attribute: str, value: str, assignments: Assignments, seen: Assignments) -> Assignments:
        """First-writer-wins merge in one script (see ``StickyBuckets.save``); the result is cached."""
        key = attribute + "||" + value
        args: list[str] = []
        for field, variation in assignments.items():
            args += (field, variation, seen.get(field) or "")
        if not args:
            return self.get(attribute, value)
        doc = self._decode(self._merge(keys=[self._prefix + key], args=args))
        self._remember(key, doc)
        return doc

    def forget(self, attribute: str, values: Iterable[str]) -> int:
        """Delete these units' hashes (and this process's cached copies); how many existed."""
        keys = [attribute + "||" + v for v in values]
        with self._lock:
            for k in keys:
                self._cache.pop(k, None)
        if not keys:
            return 0
        return int(self._client.delete(*(self._prefix + k for k in keys)))

    def refresh(self) -> None:
        """Drop the cache: reads made under another configuration cannot vouch for absence."""
        with self._lock:
            self._cache.clear()

    def close(self) -> None:
        """Close the client if nba made it from a URL (a client you passed stays open)."""
        if self._own:
            self._client.close()


# A fork while another thread holds a store's lock would leave the child's copy locked for
# ever: the child gets fresh locks (the data they guard is consistent between operations,
# and redis-py reconnects in the child by itself).
_LIVE: weakref.WeakSet[EmbeddedStickyBuckets | RedisStickyBuckets] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_LIVE):
        store._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
