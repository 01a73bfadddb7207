"""The profile store: events in by any id, one resolved profile out, merges and erasure applied atomically.

``ProfileStore`` is the seam: the Decider (later) and every backend speak only to
it. ``EmbeddedProfileStore`` keeps everything in this process's memory (an
``IdentityGraph``, one ``Features`` state and one ``Consent`` per profile) and
snapshots to disk crash-safely; a Redis store (later) keeps the same three things
in Redis and runs each read-modify-write as one script.

Consent travels in the ``Profile``: ``profile(unit_id, now)`` returns the feature
values *and* ``granted``, the purposes (of the ones the store was built to report,
``personalisation`` and ``logging`` by default) that are granted at ``now``. A
decision needs both, and asking twice would cost the Redis store a second round
trip on every decision; a frozenset of names is also all a decision may use, while
the full ``Consent`` (its history and sources) stays behind the store, read with
``consent(unit_id)`` by the code that shows or edits it.

Identity belongs to the store: merge ids with ``identify`` and ``alias`` here,
never on the graph directly, or the merged profiles' states are not folded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec

from nba import _files, _validate
from nba._core.locks import PoliteLock
from nba._validate import MAX_TS
from nba.errors import IdentityError, ModelFormatError, SchemaError
from nba.profiles.consent import LOGGING, PERSONALISATION, Consent, ConsentChange
from nba.profiles.contact import ContactStore
from nba.profiles.events import Event, check_event
from nba.profiles.features import Features, Value
from nba.profiles.identity import IdentityGraph, Merge
from nba.profiles.triggers import Triggers

__all__ = ["DEFAULT_PURPOSES", "EmbeddedProfileStore", "Profile", "ProfileStore"]

#: The purposes a store reports in ``Profile.granted`` unless told otherwise: what ``decide()`` reads.
DEFAULT_PURPOSES: tuple[str, ...] = (PERSONALISATION, LOGGING)

# Events a batch validates, then tracks under one hold of the lock: long enough to amortise the
# lock, short enough (about 0.5 ms on a loaded 2-core box) that a profile() waiting behind it hardly notices.
_BATCH = 128
# Profiles whose last read values are kept (EmbeddedProfileStore._memo); beyond it the memo starts over.
_MEMO_MAX = 100_000


class Profile(msgspec.Struct, frozen=True):
    """One resolved profile at a time ``now``: its key, its feature values, and the purposes granted.

    ``values`` is the dict ``FeatureSchema.vectorize`` reads (``Features.values``);
    ``granted`` holds the store's reported purposes that are granted at ``now``.
    """

    key: str
    values: dict[str, Value]
    granted: frozenset[str]


@runtime_checkable
class ProfileStore(Protocol):
    """Where profiles live: the one interface the Decider and every backend share.

    Ids are str, or 64-bit ints (held as their decimal str), as nba's unit ids. Every
    method may be called from any thread. Errors: ``SchemaError`` for a malformed id,
    event, time or consent change; ``IdentityError`` for an id the identity graph
    refuses (a placeholder, too long) or a merge over its limits. Either way nothing
    changed.
    """

    @property
    def purposes(self) -> tuple[str, ...]:
        """The consent purposes ``profile()`` reports in ``Profile.granted``."""
        ...

    def track(self, unit_id: str | int, event: Event) -> None:
        """Add ``event`` to the profile of ``unit_id``; an unknown id is a new profile, first seen at ``event.ts``."""
        ...

    def track_many(self, items: Iterable[tuple[str | int, Event]]) -> int:
        """``track`` each ``(unit_id, event)``, for batch loads; the number tracked."""
        ...

    def profile(self, unit_id: str | int, now: float) -> Profile | None:
        """The profile holding ``unit_id`` at ``now`` (one lookup); None for an id the store does not hold."""
        ...

    def identify(self, anonymous_id: str | int, customer_id: str | int, now: float | None = None,
                 force: bool = False) -> Merge | None:
        """Join ``anonymous_id``'s profile to the customer's (see ``IdentityGraph.identify``); the Merge applied."""
        ...

    def alias(self, a: str | int, b: str | int, now: float | None = None, force: bool = False) -> Merge | None:
        """Join the profiles of two ids of one person (see ``IdentityGraph.alias``); the Merge applied."""
        ...

    def consent(self, unit_id: str | int) -> Consent:
        """A copy of the consent of ``unit_id``'s profile (empty, with the defaults, when it has none)."""
        ...

    def record_consent(self, unit_id: str | int, change: ConsentChange) -> None:
        """Add a consent change to ``unit_id``'s profile (a new profile, first seen at ``change.at``, if unknown)."""
        ...

    def forget(self, unit_id: str | int) -> tuple[str, ...]:
        """Erase the profile holding ``unit_id``: every alias, its features and consent; the ids removed."""
        ...

    def close(self) -> None:
        """Release what the store holds outside this object (connections, threads)."""
        ...


# --------------------------------------------------------------------------- embedded


class _Snapshot(msgspec.Struct, forbid_unknown_fields=True):
    kind: str
    format: int
    identity: bytes  # IdentityGraph.to_bytes()
    states: dict[str, bytes]  # profile key -> Features.to_bytes(state)
    consents: dict[str, bytes]  # profile key -> Consent.to_bytes()


_KIND = "nba.profiles.store"
_FORMAT = 1
_ENCODER = msgspec.msgpack.Encoder(order="sorted")  # sorted keys: equal stores give equal bytes
_DECODER = msgspec.msgpack.Decoder(_Snapshot)


class _Cut:
    """A snapshot being encoded: what is left to encode as it was at the cut, and what is done."""

    __slots__ = ("pid", "states", "consents", "done_states", "done_consents", "forgot")

    def __init__(self, pid: int, states: dict[str, list[Any]], consents: dict[str, Consent]) -> None:
        self.pid = pid
        self.states = states
        self.consents = consents
        self.done_states: dict[str, bytes] = {}
        self.done_consents: dict[str, bytes] = {}
        self.forgot = False


class StoreParts:
    """What both profile stores expose of their configuration (set ``_features``, ``_purposes``,
    ``_triggers`` and ``_contacts`` in ``__init__``)."""

    _features: Features
    _purposes: tuple[str, ...]
    _triggers: Triggers | None
    _contacts: ContactStore | None

    @property
    def features(self) -> Features:
        """The feature definitions every profile's state follows."""
        return self._features

    @property
    def purposes(self) -> tuple[str, ...]:
        """The consent purposes ``profile()`` reports in ``Profile.granted``."""
        return self._purposes

    @property
    def triggers(self) -> Triggers | None:
        """The triggers every tracked event is observed by (under its profile's key), or None."""
        return self._triggers

    @property
    def contacts(self) -> ContactStore | None:
        """The contact histories that follow this store's merges and erasures, or None."""
        return self._contacts


class EmbeddedProfileStore(StoreParts):
    """Profiles in this process's memory: an identity graph, a feature state and a consent per profile.

    ``features`` defines the state each profile keeps; ``identity`` the graph that
    resolves ids (a new ``IdentityGraph()`` by default; the store owns it from now
    on); ``consent_default`` the answer for a purpose with no consent change
    (``Consent(default=...)``; opt-in when None); ``purposes`` those ``profile()``
    reports in ``Profile.granted``. ``triggers`` (``nba.profiles.Triggers``) observe every
    tracked event under its profile's key; they and ``contacts`` (a ``ContactStore``)
    follow the store's merges (``Triggers.merge``, ``ContactStore.merge``) and erasures.

    Thread-safe: one lock, held for one operation at a time (``track_many`` takes it
    per batch of 128 events), so a merge and the events tracked beside it neither
    lose nor double-count anything. In a child made by ``os.fork()`` the lock is new
    and the store holds the parent's profiles as of the fork, from then on the
    child's own. A snapshot is the store at one instant without stopping it: the
    lock is held to copy the profile table (and encode the identity graph), then
    for batches of profiles; a profile about to change is encoded first (copy on write).
    """

    def __init__(self, features: Features, *, identity: IdentityGraph | None = None,
                 consent_default: Mapping[str, bool] | None = None,
                 purposes: Iterable[str] = DEFAULT_PURPOSES, triggers: Triggers | None = None,
                 contacts: ContactStore | None = None) -> None:
        if not isinstance(features, Features):
            raise SchemaError(f"EmbeddedProfileStore: features must be an nba.profiles.Features, got {features!r}")
        if identity is not None and not isinstance(identity, IdentityGraph):
            raise SchemaError(f"EmbeddedProfileStore: identity must be an IdentityGraph or None, got {identity!r}")
        if isinstance(purposes, str):
            raise SchemaError(f"EmbeddedProfileStore: purposes must be a collection of names, got the str {purposes!r}")
        if triggers is not None and not isinstance(triggers, Triggers):
            raise SchemaError(f"EmbeddedProfileStore: triggers must be a Triggers or None, got {triggers!r}")
        if contacts is not None and not isinstance(contacts, ContactStore):
            raise SchemaError(f"EmbeddedProfileStore: contacts must be a ContactStore or None, got {contacts!r}")
        self._triggers = triggers
        self._contacts = contacts
        self._features = features
        self._blank = features.init()  # the state of a profile with no event yet: read, never tracked into
        self._graph = IdentityGraph() if identity is None else identity
        self._default = dict(consent_default or {})
        self._empty_consent = Consent(default=self._default)  # validates the defaults
        self._purposes = tuple(dict.fromkeys(_validate.text(p, "purpose") for p in purposes))
        # Without a change the answer is the default, whatever the time.
        self._granted_by_default = frozenset(p for p in self._purposes if self._default.get(p, False))
        self._lock = PoliteLock()  # short critical sections; new in a forked child
        self._snapshot_lock = PoliteLock()  # one snapshot at a time; taken before _lock, never inside it
        self._cut: _Cut | None = None  # the snapshot being encoded, if any
        self._states: dict[str, list[Any]] = {}  # profile key -> feature state (absent: none tracked yet)
        self._consents: dict[str, Consent] = {}  # profile key -> consent (absent: none recorded)
        # profile key -> (Features.epoch, values) of its last read: the same state read again within
        # the same tiles needs only its live features recomputed. Dropped when the state changes.
        self._memo: dict[str, tuple[tuple[float, ...], dict[str, Value]]] = {}
        # id -> its profile key, as the graph resolved it: the graph's find (and its lock) once per id.
        # Emptied by every merge and erasure, the only changes of a resolution.
        self._keys: dict[str | int, str] = {}

    # ---- events

    def track(self, unit_id: str | int, event: Event) -> None:
        uid = unit_id if unit_id.__class__ is str and unit_id.isascii() else _validate.unit_id(unit_id)
        event = check_event(event)
        with self._lock:
            self._track(uid, event)

    def _track(self, uid: str | int, event: Event) -> None:
        """Resolve (or add) ``uid`` and track the checked ``event``; the caller holds the lock."""
        key = self._keys.get(uid)
        if key is None:
            key = self._graph.resolve(uid)
            if key is None:
                key = self._graph.add(uid, now=event.ts)  # the guard rails: IdentityError before any change
            self._keys[uid] = key
        if self._cut is not None:
            self._keep(key)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = self._features.init()
        self._memo.pop(key, None)
        self._features.track(state, event)
        if self._triggers is not None:  # under the lock: a merge cannot move the key's triggers meanwhile
            self._triggers.observe(key, event)

    def track_many(self, items: Iterable[tuple[str | int, Event]]) -> int:
        """``track`` each ``(unit_id, event)``; the number tracked.

        Every batch of 128 items is checked before any of it is tracked, then
        tracked under one hold of the lock. A bad item raises (``SchemaError``,
        ``IdentityError``) saying which item it was; the items before its batch are
        tracked, and in the batch those before it when the identity graph refused its id.
        """
        done = 0
        batch: list[tuple[str | int, Event]] = []
        for item in items:
            try:
                if not isinstance(item, tuple) or len(item) != 2:
                    raise SchemaError(f"expected a (unit_id, Event) tuple, got {type(item).__name__} {item!r}")
                batch.append((_validate.unit_id(item[0]), check_event(item[1])))
            except SchemaError as e:
                at = done + len(batch)
                raise SchemaError(f"track_many: item {at}: {e} ({done} items tracked before it)") from None
            if len(batch) == _BATCH:
                done += self._track_batch(batch, done)
                batch = []
        if batch:
            done += self._track_batch(batch, done)
        return done

    def _track_batch(self, batch: list[tuple[str | int, Event]], done: int) -> int:
        n = 0
        with self._lock:
            for uid, event in batch:
                try:
                    self._track(uid, event)
                except IdentityError as e:
                    at = done + n
                    raise IdentityError(f"track_many: item {at}: {e} ({at} items tracked before it)") from None
                n += 1
        return n

    # ---- reads

    def profile(self, unit_id: str | int, now: float) -> Profile | None:
        uid = unit_id if unit_id.__class__ is str and unit_id.isascii() else _validate.unit_id(unit_id)
        t = now if now.__class__ is float and 0.0 <= now < MAX_TS else _validate.timestamp(now, "now")
        features = self._features
        with self._lock:
            key = self._keys.get(uid)
            if key is None:
                key = self._graph.resolve(uid)
                if key is not None:
                    self._keys[uid] = key
            if key is None:
                return None
            state = self._states.get(key)
            if state is None:
                state = self._blank
            epoch = features.epoch(t)
            memo = self._memo.get(key)
            if memo is not None and memo[0] == epoch:
                values = memo[1].copy()
                features.refresh(values, state, t)
            else:
                values = features.values_unchecked(state, t)
                if len(self._memo) >= _MEMO_MAX:
                    self._memo.clear()
                self._memo[key] = (epoch, values.copy())
            consent = self._consents.get(key)
            granted = self._granted_by_default if consent is None else frozenset(
                p for p in self._purposes if consent.granted_at(p, t))
        return Profile(key, values, granted)

    def consent(self, unit_id: str | int) -> Consent:
        """A copy of the consent of ``unit_id``'s profile (change it with ``record_consent``).

        An unknown id gets an empty Consent with the store's defaults, and is not
        added: a read never creates a profile (nor brings back a forgotten one).
        """
        uid = _validate.unit_id(unit_id)
        with self._lock:
            key = self._graph.resolve(uid)
            held = None if key is None else self._consents.get(key)
            return self._empty_consent.merge(held) if held is not None else Consent(default=self._default)

    def record_consent(self, unit_id: str | int, change: ConsentChange) -> None:
        uid = _validate.unit_id(unit_id)
        Consent([change])  # the validating path: SchemaError before anything changes
        graph = self._graph
        with self._lock:
            key = graph.resolve(uid)
            if key is None:
                key = graph.add(uid, now=change.at)
            elif self._cut is not None:
                self._keep(key)
            consent = self._consents.get(key)
            if consent is None:
                consent = self._consents[key] = Consent(default=self._default)
            consent.record(change)

    # ---- identity

    def identify(self, anonymous_id: str | int, customer_id: str | int, now: float | None = None,
                 force: bool = False) -> Merge | None:
        a, c = _validate.unit_id(anonymous_id, "anonymous id"), _validate.unit_id(customer_id, "customer id")
        with self._lock:
            merge = self._graph.identify(a, c, now=now, force=force)
            if merge is not None:
                self._fold(merge)
        return merge

    def alias(self, a: str | int, b: str | int, now: float | None = None, force: bool = False) -> Merge | None:
        x, y = _validate.unit_id(a), _validate.unit_id(b)
        with self._lock:
            merge = self._graph.alias(x, y, now=now, force=force)
            if merge is not None:
                self._fold(merge)
        return merge

    def _fold(self, merge: Merge) -> None:
        """Fold the merged profiles' states and consents into the master's; the caller holds the lock."""
        keys = (merge.master, *merge.merged)
        self._keys.clear()
        for k in keys:
            self._memo.pop(k, None)
        if self._cut is not None:
            for k in keys:
                self._keep(k)
        states = [s for k in keys if (s := self._states.pop(k, None)) is not None]
        if states:
            acc = states[0]
            for s in states[1:]:
                acc = self._features.merge(acc, s)
            self._states[merge.master] = acc
        consents = [c for k in keys if (c := self._consents.pop(k, None)) is not None]
        if consents:
            folded = consents[0]
            for c in consents[1:]:
                folded = folded.merge(c)
            self._consents[merge.master] = folded
        if self._triggers is not None:
            self._triggers.merge(merge.master, merge.merged)
        if self._contacts is not None:
            self._contacts.merge(merge.master, merge.merged)

    def forget(self, unit_id: str | int) -> tuple[str, ...]:
        """Erase the profile holding ``unit_id``: every alias, its feature state and consent; the ids removed, sorted.

        Afterwards the store holds nothing of them, and a ``snapshot`` started after
        this returns neither (one under way starts again); an earlier snapshot file
        still does until it is overwritten, so snapshot after an erasure. () for an
        id the store does not hold.
        """
        uid = _validate.unit_id(unit_id)
        with self._lock:
            key = self._graph.resolve(uid)
            if key is None:
                return ()
            ids = self._graph.ids(uid)
            # What follows the profile first: if it fails (Redis down), nothing here has changed yet.
            if self._triggers is not None:
                self._triggers.forget(ids)
            if self._contacts is not None:
                self._contacts.forget(ids)
            gone = self._graph.forget(uid)
            self._keys.clear()
            self._states.pop(key, None)
            self._memo.pop(key, None)
            self._consents.pop(key, None)
            cut = self._cut
            if cut is not None:  # the snapshot under way may hold them (under keys merged since): it starts again
                cut.forgot = True
                for d in (cut.states, cut.consents, cut.done_states, cut.done_consents):
                    d.clear()
        return gone

    def _keep(self, key: str) -> None:
        """Encode ``key``'s state and consent into the snapshot under way, before they change; lock held."""
        cut = self._cut
        assert cut is not None
        if cut.pid != os.getpid():  # a forked child: the snapshot is the parent's
            self._cut = None
            return
        state = cut.states.pop(key, None)
        if state is not None:
            cut.done_states[key] = self._features.to_bytes(state)
        consent = cut.consents.pop(key, None)
        if consent is not None:
            cut.done_consents[key] = consent.to_bytes()

    def close(self) -> None:
        """Nothing to release: the profiles live as long as this object (``snapshot`` first to keep them)."""

    def __len__(self) -> int:
        """The number of ids held (every alias of every profile)."""
        return len(self._graph)

    # ---- snapshots

    def to_bytes(self) -> bytes:
        """The whole store (identity, feature states, consents) as msgpack; equal stores give equal bytes.

        The bytes are the store at one instant (the cut), but the lock is held only
        for a copy of the profile table and then for batches of 128 profiles: a
        profile changed meanwhile is encoded first, as it was at the cut. A
        ``forget`` meanwhile empties the cut and starts again; bytes whose encoding
        started after a ``forget`` returned hold nothing of its subject.
        """
        with self._snapshot_lock:
            while True:
                identity, cut = self._begin_cut()
                try:
                    while self._encode_some(cut):
                        # Let a thread waiting for the lock have it: without this the loop takes it
                        # straight back (the lock is not fair) and a track() waits for the whole snapshot.
                        time.sleep(0)
                except BaseException:
                    with self._lock:
                        self._cut = None
                    raise
                if not cut.forgot:
                    return self._cut_bytes(identity, cut)
                del identity, cut  # they may name the forgotten subject: let them go before starting again

    def _begin_cut(self) -> tuple[bytes, _Cut]:
        """Start a snapshot: the identity graph's bytes, and the profiles to encode as they are now."""
        with self._lock:
            identity = self._graph.to_bytes()
            cut = self._cut = _Cut(os.getpid(), dict(self._states), dict(self._consents))
        return identity, cut

    def _encode_some(self, cut: _Cut) -> bool:
        """Encode the next batch of the cut's profiles; False (and the cut ended) when done or a forget intervened."""
        features = self._features
        with self._lock:
            if cut.forgot or (not cut.states and not cut.consents):
                self._cut = None
                return False
            for _ in range(_BATCH):
                if cut.states:
                    k, state = cut.states.popitem()
                    cut.done_states[k] = features.to_bytes(state)
                elif cut.consents:
                    k, consent = cut.consents.popitem()
                    cut.done_consents[k] = consent.to_bytes()
                else:
                    break
        return True

    @staticmethod
    def _cut_bytes(identity: bytes, cut: _Cut) -> bytes:
        return _ENCODER.encode(_Snapshot(_KIND, _FORMAT, identity, cut.done_states, cut.done_consents))

    def snapshot(self, path: str | os.PathLike[str]) -> None:
        """Write the store to ``path`` crash-safely: ``path`` holds this snapshot or the previous one, never a mix.

        Writes a temporary file in the same directory, fsyncs it, renames it over
        ``path`` (``os.replace``, atomic), and fsyncs the directory so the rename
        survives a power loss. On any error the temporary file is removed, the
        previous snapshot is left as it was, and the error (``OSError``) is raised.
        """
        _files.replace_atomically(os.fspath(path), self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes, features: Features, *, identity_options: Mapping[str, Any] | None = None,
                   consent_default: Mapping[str, bool] | None = None,
                   purposes: Iterable[str] = DEFAULT_PURPOSES) -> EmbeddedProfileStore:
        """A store from ``to_bytes`` output; ``ModelFormatError`` when ``data`` is not a consistent snapshot.

        ``features`` may differ from the snapshot's (see ``Features.from_bytes``: a
        definition kept as it was keeps its state, a new one starts empty).
        ``identity_options`` are ``IdentityGraph``'s (limits and clock are not saved).
        """
        return cls._from_bytes(data, features, "profile store snapshot", identity_options=identity_options,
                               consent_default=consent_default, purposes=purposes)

    @classmethod
    def _from_bytes(cls, data: bytes, features: Features, where: str, *,
                    identity_options: Mapping[str, Any] | None = None,
                    consent_default: Mapping[str, bool] | None = None,
                    purposes: Iterable[str] = DEFAULT_PURPOSES) -> EmbeddedProfileStore:
        try:
            snap = _DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise ModelFormatError(f"{where}: not a saved nba profile store ({e})") from None
        if snap.kind != _KIND:
            raise ModelFormatError(f"{where}: holds a {snap.kind!r}, not a {_KIND!r}")
        if snap.format != _FORMAT:
            raise ModelFormatError(f"{where}: format {snap.format}; this nba reads format {_FORMAT}: upgrade nba")
        try:
            graph = IdentityGraph.from_bytes(snap.identity, **dict(identity_options or {}))
        except ModelFormatError as e:
            raise ModelFormatError(f"{where}: {e}") from None
        store = cls(features, identity=graph, consent_default=consent_default, purposes=purposes)
        for what, keys in (("feature state", snap.states), ("consent", snap.consents)):
            for k in keys:
                if graph.resolve(k) != k:
                    raise ModelFormatError(f"{where}: a {what} is kept under {k!r}, which is not a profile key")
        for k, raw in snap.states.items():
            try:
                store._states[k] = features.from_bytes(raw)
            except SchemaError as e:
                raise ModelFormatError(f"{where}: profile {k!r}: {e}") from None
        for k, raw in snap.consents.items():
            try:
                store._consents[k] = Consent.from_bytes(raw, default=consent_default)
            except ModelFormatError as e:
                raise ModelFormatError(f"{where}: profile {k!r}: {e}") from None
        return store

    @classmethod
    def load(cls, path: str | os.PathLike[str], features: Features, **options: Any) -> EmbeddedProfileStore:
        """The store ``snapshot(path)`` wrote; ``options`` as ``from_bytes``'s. ``ModelFormatError`` on garbage."""
        target = os.fspath(path)
        with open(target, "rb") as f:
            data = f.read()
        return cls._from_bytes(data, features, f"profile store snapshot {target!r}", **options)


if TYPE_CHECKING:  # the embedded store is a ProfileStore, checked by mypy
    _conforms: type[ProfileStore] = EmbeddedProfileStore

