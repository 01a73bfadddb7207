"""Identity resolution: which ids (cookies, devices, customer ids) are one person's profile.

``IdentityGraph`` is a union-find over ids. Each set of ids is one profile, named by
its profile key (its master). ``alias(a, b)`` says two ids are one person,
``identify(anonymous_id, customer_id)`` says so and marks ``customer_id`` as a known
customer; both return a ``Merge`` naming the profile keys folded into the master, so
the caller merges their feature states (``nba.profiles.features``) and drops them.

The master rule makes the result independent of the order of the same merges: a
profile's key is the member that comes first in (is not a customer id, first seen,
id). So a profile holding a customer id is keyed by it (with ``force=True`` and
several, the earliest-seen), any other by its earliest-seen id, ties by the smaller
id; when two profiles merge, the master is the one holding a customer id, else the
one first seen earlier, else the smaller key. An id's first-seen time is the ``now``
of the call that added it (the caller's clock, or ``clock()`` when ``now`` is None),
set once. Marking a member as a customer can re-key its profile: the old key is then
listed in ``Merge.merged`` like any other.

Guard rails, after Segment's identity rules; each raises ``IdentityError`` and
changes nothing: placeholder ids (``blocked``, whitespace, all zeros), ids longer
than ``max_id_length``, a profile growing past ``max_ids`` ids or past ``max_merges``
joins of profiles that existed on their own (an id new to the graph joins free), and
a merge joining two different customer ids (unless ``force``).
"""

# The state is five plain maps and nothing else, so a graph shared between processes is
# one Redis hash per map under a namespace (nba.profiles.redis_store.RedisProfileStore):
#   {ns}:parent     id -> its profile key (kept fully compressed there: one HGET resolves)
#   {ns}:seen       id -> first-seen unix seconds (set once)
#   {ns}:members    profile key -> its ids (msgpack list; bounded by max_ids)
#   {ns}:customers  profile key -> its customer ids, master first (absent: anonymous)
#   {ns}:merges     profile key -> profiles folded into it so far (absent: 0)
# The rules stay here, in one place: alias/identify read the entries of the (at most two)
# profiles involved in one script, rebuild a small graph of them with from_bytes, call this
# class, and commit what changed with a script that checks every touched profile's version;
# forget is one script, HDEL of every member in parent and seen and of the key in the other three.

from __future__ import annotations

import numbers
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from nba import _validate
from nba._core.locks import PoliteLock
from nba.errors import ConfigError, IdentityError, ModelFormatError, SchemaError

__all__ = ["BLOCKED_IDS", "IdentityGraph", "Merge"]

#: Placeholders that clients send when they have no id; compared case-insensitively after
#: stripping whitespace. Joining on one would merge every visitor who sent it.
BLOCKED_IDS: frozenset[str] = frozenset({"null", "none", "undefined", "anonymous", "unknown", "0", "-1"})


class Merge(msgspec.Struct, frozen=True):
    """Profiles folded into ``master``: merge each ``merged`` key's feature state into master's, then drop it."""

    master: str
    merged: tuple[str, ...]  # sorted; never empty, never holds master


class _Snapshot(msgspec.Struct, forbid_unknown_fields=True):
    format: int
    profiles: dict[str, str]  # id -> profile key (paths fully compressed, so the bytes are canonical)
    seen: dict[str, float]
    customers: dict[str, list[str]]
    merges: dict[str, int]


_FORMAT = 1
_ENCODER = msgspec.msgpack.Encoder(order="sorted")  # sorted keys: equal graphs give equal bytes
_DECODER = msgspec.msgpack.Decoder(_Snapshot)


def _limit(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"IdentityGraph: {name} must be an int >= {lo}, got {value!r}")
    return value


class IdentityGraph:
    """Which ids are one profile: a thread-safe union-find with a deterministic master rule.

    Ids are str, or ints (64-bit, as nba's unit ids) written as their decimal str.
    Every method may be called from any thread; each holds one lock briefly.

    Options: ``max_ids`` ids per profile; ``max_merges`` joins of existing profiles
    into one; ``max_id_length`` characters per id; ``blocked`` placeholder ids
    (case-insensitive; empty and whitespace-only ids are always refused);
    ``block_zeros`` refuses ids of only zeros and dashes (a nil UUID); ``clock``
    gives first-seen unix seconds when a call passes no ``now``.
    """

    def __init__(self, *, max_ids: int = 100, max_merges: int = 50, max_id_length: int = 256,
                 blocked: Iterable[str] = BLOCKED_IDS, block_zeros: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self._max_ids = _limit("max_ids", max_ids, 1)
        self._max_merges = _limit("max_merges", max_merges, 0)
        self._max_len = _limit("max_id_length", max_id_length, 1)
        if isinstance(blocked, str):
            raise ConfigError(f"IdentityGraph: blocked must be a collection of ids, got the str {blocked!r}")
        words = list(blocked)
        for w in words:
            if not isinstance(w, str):
                raise ConfigError(f"IdentityGraph: blocked must hold str ids, got {type(w).__name__} {w!r}")
        self._blocked = frozenset(w.strip().casefold() for w in words)
        self._block_zeros = bool(block_zeros)
        if not callable(clock):
            raise ConfigError(f"IdentityGraph: clock must be a callable returning unix seconds, got {clock!r}")
        self._clock = clock
        self._lock = PoliteLock()  # short critical sections; new in a forked child
        self._parent: dict[str, str] = {}
        self._seen: dict[str, float] = {}
        self._members: dict[str, list[str]] = {}
        self._customers: dict[str, list[str]] = {}
        self._merges: dict[str, int] = {}

    # ---- the API

    def resolve(self, id: str | int) -> str | None:
        """The profile key of ``id``'s profile; None for an id the graph does not hold."""
        key = _lookup(id)
        with self._lock:
            return self._find(key) if key in self._parent else None

    def ids(self, id: str | int) -> tuple[str, ...]:
        """Every id of the profile holding ``id`` (a profile key or any member), sorted; () if unknown."""
        key = _lookup(id)
        with self._lock:
            if key not in self._parent:
                return ()
            return tuple(sorted(self._members[self._find(key)]))

    def add(self, id: str | int, now: float | None = None) -> str:
        """Add ``id`` as an anonymous profile of its own, first seen at ``now``; its profile key.

        An id already held keeps its profile and first-seen time."""
        key = self._check(id, "id")
        ts = self._now(now)
        with self._lock:
            if key in self._parent:
                return self._find(key)
            self._add(key, ts)
            return key

    def identify(self, anonymous_id: str | int, customer_id: str | int, now: float | None = None,
                 force: bool = False) -> Merge | None:
        """Join ``anonymous_id``'s profile to ``customer_id``'s and mark ``customer_id`` as a known customer.

        Ids not yet held are added, first seen at ``now``. Returns the ``Merge`` to apply
        to feature states, or None when no profile was folded (already one, or only new
        ids joined). ``IdentityError`` if the profile would hold two different customer
        ids (``force=True`` merges them anyway) or pass ``max_ids`` / ``max_merges``."""
        a = self._check(anonymous_id, "anonymous id")
        c = self._check(customer_id, "customer id")
        ts = self._now(now)
        with self._lock:
            return self._link(a, c, c, ts, force)

    def alias(self, a: str | int, b: str | int, now: float | None = None, force: bool = False) -> Merge | None:
        """Join the profiles of ``a`` and ``b`` (two ids of one person); as ``identify``, but marks no customer."""
        x = self._check(a, "id")
        y = self._check(b, "id")
        ts = self._now(now)
        with self._lock:
            return self._link(x, y, None, ts, force)

    def forget(self, id: str | int) -> tuple[str, ...]:
        """Remove the whole profile holding ``id``, every alias with it, from every map; the ids removed, sorted.

        For erasure requests: afterwards nothing in the graph or its ``to_bytes()`` names
        any of them. () for an id the graph does not hold."""
        key = _lookup(id)
        with self._lock:
            if key not in self._parent:
                return ()
            root = self._find(key)
            gone = self._members.pop(root)
            for i in gone:
                del self._parent[i]
                del self._seen[i]
            self._customers.pop(root, None)
            self._merges.pop(root, None)
        return tuple(sorted(gone))

    def check(self, id: str | int, what: str = "id") -> str:
        """``id`` as the str this graph would hold it under, or ``IdentityError`` saying why it refuses it.

        The guard rails on a single id (a placeholder, too long, not text), for a store
        that keeps the graph's maps elsewhere (Redis) and checks an id before adding it."""
        return self._check(id, what)

    def __contains__(self, id: object) -> bool:
        try:
            key = _lookup(id)
        except IdentityError:
            return False
        with self._lock:
            return key in self._parent

    def __len__(self) -> int:
        """The number of ids held."""
        with self._lock:
            return len(self._parent)

    # ---- snapshots

    def to_bytes(self) -> bytes:
        """The whole graph as msgpack bytes, canonical: graphs with the same profiles give the same bytes."""
        with self._lock:
            snap = _Snapshot(
                format=_FORMAT,
                profiles={i: k for k, ms in self._members.items() for i in ms},
                seen=dict(self._seen),
                customers={k: list(cs) for k, cs in self._customers.items()},
                merges=dict(self._merges),
            )
        return _ENCODER.encode(snap)

    @classmethod
    def from_bytes(cls, data: bytes, **options: Any) -> IdentityGraph:
        """A graph restored from ``to_bytes()``; ``options`` are the constructor's (limits are not saved).

        ``ModelFormatError`` for bytes that are not a consistent snapshot."""
        try:
            snap = _DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise ModelFormatError(f"not a saved nba IdentityGraph: {e}") from None
        if snap.format != _FORMAT:
            raise ModelFormatError(f"saved IdentityGraph has format {snap.format}; this nba reads format {_FORMAT}")
        _check_snapshot(snap)
        graph = cls(**options)
        graph._parent = dict(snap.profiles)
        graph._seen = dict(snap.seen)
        for i, k in snap.profiles.items():
            graph._members.setdefault(k, []).append(i)
        graph._customers = {k: list(cs) for k, cs in snap.customers.items()}
        graph._merges = dict(snap.merges)
        return graph

    # ---- internals (callers hold the lock)

    def _find(self, x: str) -> str:
        parent = self._parent
        root = x
        while (p := parent[root]) != root:
            root = p
        while (p := parent[x]) != root:  # path compression: every id on the way points at the root
            parent[x] = root
            x = p
        return root

    def _add(self, x: str, ts: float) -> None:
        self._parent[x] = x
        self._seen[x] = ts
        self._members[x] = [x]

    def _link(self, x: str, y: str, customer: str | None, ts: float, force: bool) -> Merge | None:
        """Join the profiles of x and y (adding either if new), marking ``customer``; all checks before any change."""
        parent, seen = self._parent, self._seen
        roots: list[str] = []
        new: list[str] = []
        for i in (x, y):
            if i in parent:
                r = self._find(i)
                if r not in roots:
                    roots.append(r)
            elif i not in new:
                new.append(i)
        groups = [self._customers[r] for r in roots if r in self._customers]
        marks = customer is not None and not any(customer in g for g in groups)
        if not new and len(roots) == 1 and not marks:
            return None  # already one profile, nothing to mark: idempotent
        added = {customer} if marks and customer is not None else set()
        if len(groups) + len(added) > 1 and not force:
            held = ", ".join(map(repr, sorted({g[0] for g in groups} | added)))
            raise IdentityError(
                f"joining {x!r} and {y!r} would put different customer ids in one profile ({held}); "
                "one of the ids is probably shared (a family device, a placeholder): leave it out, "
                "or pass force=True if these customers really are one person"
            )
        size = sum(len(self._members[r]) for r in roots) + len(new)
        grows = bool(new) or len(roots) > 1  # marking a customer alone passes a profile restored over new limits
        if size > self._max_ids and grows:
            raise IdentityError(
                f"joining {x!r} and {y!r} would give one profile {size} ids, more than max_ids={self._max_ids}; "
                "an id shared by many people (a placeholder, a shared device) is probably joining them: "
                "add it to blocked=, or raise max_ids"
            )

        def rank(i: str) -> tuple[float, str]:
            return (seen.get(i, ts), i)  # a new id is first seen now

        customers = sorted({c for g in groups for c in g} | added, key=rank)
        key = customers[0] if customers else min(roots + new, key=rank)
        merged = sorted(r for r in roots if r != key)
        # Profiles that lived on their own and were joined (a new id or a re-key is no merge): with every id
        # added first, the count of a profile is its ids - 1, whatever the order of the merges.
        merges = sum(self._merges.get(r, 0) for r in roots) + max(len(roots) - 1, 0)
        if merges > self._max_merges and len(roots) > 1:
            raise IdentityError(
                f"joining {x!r} and {y!r} would make {merges} merges into one profile, more than "
                f"max_merges={self._max_merges}; an id that keeps joining profiles is probably shared: "
                "add it to blocked=, or raise max_merges"
            )
        members: list[str] = []
        for r in roots:
            members.extend(self._members.pop(r))
            self._customers.pop(r, None)
            self._merges.pop(r, None)
            parent[r] = key
        for i in new:
            parent[i] = key
            seen[i] = ts
            members.append(i)
        parent[key] = key  # the new key may have been a member (a customer id marked now)
        self._members[key] = members
        if customers:
            self._customers[key] = customers
        if merges:
            self._merges[key] = merges
        return Merge(key, tuple(merged)) if merged else None

    def _now(self, now: float | None) -> float:
        return _validate.timestamp(self._clock() if now is None else now, "now")

    def _check(self, value: Any, what: str) -> str:
        """``value`` as an id the graph may hold, or ``IdentityError`` saying why it may not."""
        if value.__class__ is not str:
            try:
                v = _validate.unit_id(value, what)
            except SchemaError as e:
                raise IdentityError(str(e)) from None
            value = v if isinstance(v, str) else str(v)
        if len(value) > self._max_len:
            raise IdentityError(
                f"{what} {value[:40]!r}... is {len(value)} characters long, more than max_id_length={self._max_len}; "
                "send a short stable id (a hash of a long one), or raise max_id_length"
            )
        try:
            value = _validate.text(value, what)
        except SchemaError as e:
            raise IdentityError(str(e)) from None
        word = value.strip().casefold()
        if not word or word in self._blocked or (self._block_zeros and not word.strip("0-") and "0" in word):
            raise IdentityError(
                f"{what} {value!r} is a placeholder, not an id (empty, all zeros, or in blocked=): joining on it "
                "would merge everyone who sent it; leave the id out when there is none"
            )
        return value


def _lookup(value: Any) -> str:
    """``value`` as the str key it would be held under; no guard rails (a refused id is simply not held)."""
    if value.__class__ is str:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    raise IdentityError(
        f"id must be a str or an int, got {type(value).__name__} {value!r}; convert ids to str before passing them"
    )


def _check_snapshot(snap: _Snapshot) -> None:
    """``ModelFormatError`` unless ``snap`` is a graph this module could have built."""

    def bad(why: str) -> ModelFormatError:
        return ModelFormatError(f"saved IdentityGraph is inconsistent: {why}; it was not written by to_bytes()")

    profiles, seen = snap.profiles, snap.seen
    if profiles.keys() != seen.keys():
        raise bad("its ids and first-seen times name different ids")
    for i, ts in seen.items():
        if not 0.0 <= ts < _validate.MAX_TS:
            raise bad(f"id {i!r} was first seen at {ts!r}, not unix seconds")
    members: dict[str, list[str]] = {}
    for i, k in profiles.items():
        if profiles.get(k) != k:
            raise bad(f"id {i!r} belongs to {k!r}, which is not a profile key")
        members.setdefault(k, []).append(i)
    for k, cs in snap.customers.items():
        if k not in members:
            raise bad(f"customers of {k!r}, which is not a profile key")
        if not cs or len(set(cs)) != len(cs) or any(profiles.get(c) != k for c in cs):
            raise bad(f"the customer ids of {k!r} are not distinct ids of that profile")
        if sorted(cs, key=lambda c: (seen[c], c)) != cs or cs[0] != k:
            raise bad(f"profile {k!r} is not keyed by its earliest-seen customer id")
    for k, ms in members.items():
        if k not in snap.customers and min(ms, key=lambda i: (seen[i], i)) != k:
            raise bad(f"anonymous profile {k!r} is not keyed by its earliest-seen id")
    for k, n in snap.merges.items():
        if k not in members or n < 1:
            raise bad(f"merge count {n!r} of {k!r}")
