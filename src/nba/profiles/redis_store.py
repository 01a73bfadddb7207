"""The profile store in Redis: every process and host on one namespace shares the same profiles.

``RedisProfileStore`` keeps what ``EmbeddedProfileStore`` keeps in memory, in Redis,
under ``{namespace}:`` (the namespace is a hash tag, so a cluster keeps it on one slot):

    {ns}:parent     id -> its profile key (kept fully compressed: one HGET resolves an id)
    {ns}:seen       id -> first-seen unix seconds (repr of the float)
    {ns}:members    profile key -> its ids (msgpack list, sorted)
    {ns}:customers  profile key -> its customer ids, master first (msgpack list; absent: anonymous)
    {ns}:merges     profile key -> profiles folded into it so far (absent: 0)
    {ns}:p:<key>    one hash per profile: ``s`` the feature state (``Features.to_bytes``),
                    ``c`` the consent (``Consent.to_bytes``), ``v`` its version
    {ns}:v          the version counter: every write to a profile takes the next value

The feature math stays in Python (``Features.track`` / ``merge``, the one
implementation the embedded store uses too), and so do the identity rules (a small
``IdentityGraph`` built from the entries an ``alias`` or ``identify`` touches). Every
write is an optimistic compare-and-set: one script call reads the states and
versions a batch needs, Python updates them, and one script call commits only the
profiles whose version (and root) is unchanged, reporting the others, which are read
and updated again (at most ``max_attempts`` times, then ``ConflictError``). Versions
come from one counter and are never reused, so an unchanged version means an
unchanged profile; a profile folded away or forgotten has no hash and no longer
resolves to itself, which the commit checks too. So two processes tracking into one
profile, or one tracking while another merges it, lose no event and count none twice.

Round trips: ``profile`` one (a script resolves the id and returns state and
consent); ``track`` and each batch of 256 of ``track_many`` two (read, commit), more
only under contention; ``identify`` / ``alias`` / ``record_consent`` two;
``forget`` one (a script deletes every field and key of the subject). A Redis that
fails raises ``StoreError``; a write under way may then have been applied, so it is
not retried (that could count an event twice).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from nba import _redis, _validate
from nba.errors import ConfigError, ConflictError, IdentityError, SchemaError, StoreError
from nba.profiles.consent import Consent, ConsentChange
from nba.profiles.contact import ContactStore
from nba.profiles.events import Event, check_event
from nba.profiles.features import Features
from nba.profiles.identity import IdentityGraph, Merge
from nba.profiles.store import DEFAULT_PURPOSES, Profile, StoreParts
from nba.profiles.triggers import Triggers

if TYPE_CHECKING:
    from nba.profiles.store import ProfileStore

__all__ = ["RedisProfileStore"]

# Events read and committed together by track_many: two round trips for this many events. Long enough to
# amortise the round trips (about 0.1 ms each on loopback), short enough that a conflicting profile is retried soon.
_BATCH = 256

# Lists of ids (a profile's members, its customer ids) as the identity maps hold them: msgpack.
_IDS_ENCODER = msgspec.msgpack.Encoder()
_IDS_DECODER = msgspec.msgpack.Decoder(list[str])

# The format field of IdentityGraph.to_bytes (read from the class itself, so the two cannot drift apart).
_GRAPH_FORMAT: int = msgspec.msgpack.decode(IdentityGraph().to_bytes())["format"]

# READ: KEYS[1] parent; ARGV[1] profile key prefix, ARGV[2] the number F of fields, ARGV[3..2+F] the
# fields, then ids. Per id: false (not held), or {profile key, the fields of its hash...}.
_READ = """
local prefix, nf = ARGV[1], tonumber(ARGV[2])
local fields = {}
for i = 1, nf do fields[i] = ARGV[2 + i] end
local out = {}
for i = 3 + nf, #ARGV do
  local root = redis.call('HGET', KEYS[1], ARGV[i])
  if root then
    local row = redis.call('HMGET', prefix .. root, unpack(fields))
    table.insert(row, 1, root)
    out[#out + 1] = row
  else
    out[#out + 1] = false
  end
end
return out
"""

# COMMIT: KEYS parent, seen, members, version counter; ARGV[1] prefix, then 6 per profile: key, version read,
# first-seen ts ('' unless the key is an id new to the store), members (msgpack, with ts), state ('' keeps it),
# consent ('' keeps it). A profile is written only if it is as it was read: still its own key, at the version
# read (a new id: still absent). Returns, per profile, its new version (0: not written).
_COMMIT = """
local prefix = ARGV[1]
local out = {}
for i = 2, #ARGV, 6 do
  local root, v, ts, mem, s, c = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local key = prefix .. root
  local ok
  if ts ~= '' then
    ok = redis.call('HEXISTS', KEYS[1], root) == 0
  else
    ok = redis.call('HGET', KEYS[1], root) == root and (redis.call('HGET', key, 'v') or '0') == v
  end
  if ok then
    if ts ~= '' then
      redis.call('HSET', KEYS[1], root, root)
      redis.call('HSET', KEYS[2], root, ts)
      redis.call('HSET', KEYS[3], root, mem)
    end
    local version = redis.call('INCR', KEYS[4])
    local args = {'v', version}
    if s ~= '' then args[#args + 1] = 's'; args[#args + 1] = s end
    if c ~= '' then args[#args + 1] = 'c'; args[#args + 1] = c end
    redis.call('HSET', key, unpack(args))
    out[#out + 1] = version
  else
    out[#out + 1] = 0
  end
end
return out
"""

# IDREAD: KEYS parent, seen, members, customers, merges; ARGV[1] prefix, then ids. Returns {the profile key of
# each id (false: not held), {per distinct key: key, members, customers, merges, v, s, c, {seen of each member}}}.
_IDREAD = """
local roots, infos, done = {}, {}, {}
for i = 2, #ARGV do
  local r = redis.call('HGET', KEYS[1], ARGV[i])
  roots[i - 1] = r
  if r and not done[r] then
    done[r] = true
    local mem = redis.call('HGET', KEYS[3], r)
    local seen = redis.call('HMGET', KEYS[2], unpack(cmsgpack.unpack(mem)))
    local h = redis.call('HMGET', ARGV[1] .. r, 'v', 's', 'c')
    infos[#infos + 1] = {r, mem, redis.call('HGET', KEYS[4], r), redis.call('HGET', KEYS[5], r),
                         h[1], h[2], h[3], seen}
  end
end
return {roots, infos}
"""

# IDCOMMIT: KEYS parent, seen, members, customers, merges, version counter. ARGV[1] prefix; the checks (a count,
# then pairs: a key and its version read, or an id and '' for one that must still be absent); the new profile
# key, its members, customers ('' none), merges ('' none), '1' if its hash is rewritten (a fold) else '0', its
# state and consent ('' none); the keys folded away (a count, then keys); the new ids (a count, then id, ts
# pairs); every member (a count, then ids). 1 if applied, 0 (nothing changed) if a check failed.
_IDCOMMIT = """
local p = ARGV[1]
local i = 2
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local id, v = ARGV[i], ARGV[i + 1]
  i = i + 2
  if v == '' then
    if redis.call('HEXISTS', KEYS[1], id) == 1 then return 0 end
  elseif redis.call('HGET', KEYS[1], id) ~= id or (redis.call('HGET', p .. id, 'v') or '0') ~= v then
    return 0
  end
end
local key, mem, cus, mrg, fold, s, c = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5],
  ARGV[i + 6]
i = i + 7
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local r = ARGV[i]
  i = i + 1
  redis.call('DEL', p .. r)
  redis.call('HDEL', KEYS[3], r)
  redis.call('HDEL', KEYS[4], r)
  redis.call('HDEL', KEYS[5], r)
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HSET', KEYS[1], ARGV[i], key)
  i = i + 1
end
redis.call('HSET', KEYS[3], key, mem)
if cus ~= '' then redis.call('HSET', KEYS[4], key, cus) else redis.call('HDEL', KEYS[4], key) end
if mrg ~= '' then redis.call('HSET', KEYS[5], key, mrg) else redis.call('HDEL', KEYS[5], key) end
if fold == '1' then redis.call('DEL', p .. key) end
local args = {'v', redis.call('INCR', KEYS[6])}
if s ~= '' then args[#args + 1] = 's'; args[#args + 1] = s end
if c ~= '' then args[#args + 1] = 'c'; args[#args + 1] = c end
redis.call('HSET', p .. key, unpack(args))
return 1
"""

# FORGET: KEYS parent, seen, members, customers, merges; ARGV[1] prefix, ARGV[2] an id. Deletes the profile holding
# it: every member's parent and seen fields, its members, customers, merges fields and its hash. The ids removed.
_FORGET = """
local root = redis.call('HGET', KEYS[1], ARGV[2])
if not root then return {} end
local ids = cmsgpack.unpack(redis.call('HGET', KEYS[3], root))
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
redis.call('HDEL', KEYS[3], root)
redis.call('HDEL', KEYS[4], root)
redis.call('HDEL', KEYS[5], root)
redis.call('DEL', ARGV[1] .. root)
return ids
"""


class _Pending:
    """One profile's share of a batch being tracked: what was read, and the events to add."""

    __slots__ = ("version", "state", "ts", "events", "items")

    def __init__(self, version: bytes, state: bytes | None, ts: float | None) -> None:
        self.version = version
        self.state = state
        self.ts = ts  # the first-seen time of an id new to the store; None for a profile held
        self.events: list[Event] = []
        self.items: list[int] = []  # positions in the batch


class RedisProfileStore(StoreParts):
    """Profiles in Redis, shared by every process (and host) that uses the same ``namespace``.

    ``url``: a Redis URL (``redis://host:6379/0``) or a ready ``redis.Redis`` client
    (not closed by ``close``). ``features`` defines each profile's state and must be
    the same for every store on the namespace. ``identity_options`` are
    ``IdentityGraph``'s (limits, ``blocked``, ``clock``), ``consent_default`` and
    ``purposes`` as ``EmbeddedProfileStore``'s. ``max_attempts``: how many times a write
    that lost its compare-and-set is read and tried again before ``ConflictError``.
    ``cache_size``: how many profiles' states this process keeps decoded, as it last
    committed them, so tracking into one again skips ``Features.from_bytes`` when no
    other writer changed it (0, the default: none). A version is never reused, so a
    hit is exact; but a profile forgotten by another process stays in this one's
    memory until it is pushed out (never used again), so leave it 0 where an erasure
    must leave no copy in any process. ``triggers`` and ``contacts`` as
    ``EmbeddedProfileStore``'s (share Redis-backed ones between processes).

    When Redis fails (down, a timeout, out of memory) a call raises ``StoreError``; a
    write that was under way may have been applied, so it is not retried here.

    Thread- and fork-safe: no lock is held across a round trip, and redis-py makes a
    forked child its own connections. See the module docstring for the layout and
    why every write is a versioned compare-and-set.
    """

    def __init__(self, features: Features, url: Any, *, namespace: str = "nba",
                 identity_options: Mapping[str, Any] | None = None,
                 consent_default: Mapping[str, bool] | None = None,
                 purposes: Iterable[str] = DEFAULT_PURPOSES, max_attempts: int = 100,
                 cache_size: int = 0, triggers: Triggers | None = None, contacts: ContactStore | None = None) -> None:
        if not isinstance(features, Features):
            raise SchemaError(f"RedisProfileStore: features must be an nba.profiles.Features, got {features!r}")
        if isinstance(purposes, str):
            raise SchemaError(f"RedisProfileStore: purposes must be a collection of names, got the str {purposes!r}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigError(f"RedisProfileStore: max_attempts must be an int >= 1, got {max_attempts!r}")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ConfigError(f"RedisProfileStore: cache_size must be an int >= 0, got {cache_size!r}")
        if triggers is not None and not isinstance(triggers, Triggers):
            raise SchemaError(f"RedisProfileStore: triggers must be a Triggers or None, got {triggers!r}")
        if contacts is not None and not isinstance(contacts, ContactStore):
            raise SchemaError(f"RedisProfileStore: contacts must be a ContactStore or None, got {contacts!r}")
        self._triggers = triggers
        self._contacts = contacts
        self._client: Any  # redis-py's reply types are unions of every reply: the replies are checked here
        self._client, self._owns_client, tag = _redis.connect(url, namespace, "RedisProfileStore")
        import redis

        self._redis_error = redis.RedisError
        self._features = features
        self._blank = features.init()  # the state of a profile with no event yet: read, never tracked into
        self._identity_options = dict(identity_options or {})
        try:
            self._rules = IdentityGraph(**self._identity_options)  # validates the options; checks single ids
        except TypeError as e:
            raise ConfigError(f"RedisProfileStore: identity_options: {e}") from None
        self._clock = self._identity_options.get("clock", time.time)
        self._default = dict(consent_default or {})
        Consent(default=self._default)  # validates the defaults
        self._purposes = tuple(dict.fromkeys(_validate.text(p, "purpose") for p in purposes))
        self._granted_by_default = frozenset(p for p in self._purposes if self._default.get(p, False))
        self._max_attempts = max_attempts
        self._cache_size = cache_size
        # profile key -> (the version this process committed, the state it committed): a hit skips from_bytes.
        self._cache: dict[str, tuple[bytes, list[Any]]] | None = {} if cache_size else None
        self.namespace = namespace
        self._prefix = f"{tag}:p:"
        self._parent, self._seen, self._members = f"{tag}:parent", f"{tag}:seen", f"{tag}:members"
        self._customers, self._merges, self._version = f"{tag}:customers", f"{tag}:merges", f"{tag}:v"
        self._id_keys = [self._parent, self._seen, self._members, self._customers, self._merges]
        self._commit_keys = [self._parent, self._seen, self._members, self._version]
        # redis-py's Script objects load themselves again after a NOSCRIPT (a restart, SCRIPT FLUSH).
        self._s_read = self._client.register_script(_READ)
        self._s_commit = self._client.register_script(_COMMIT)
        self._s_idread = self._client.register_script(_IDREAD)
        self._s_idcommit = self._client.register_script(_IDCOMMIT)
        self._s_forget = self._client.register_script(_FORGET)

    # ---- events

    def track(self, unit_id: str | int, event: Event) -> None:
        uid = _key(_validate.unit_id(unit_id))
        event = check_event(event)
        self._track_batch([(uid, event)], 0, single=True)

    def track_many(self, items: Iterable[tuple[str | int, Event]]) -> int:
        """``track`` each ``(unit_id, event)``; the number tracked.

        Every batch of 256 items is checked before any of it is tracked, then read and
        committed in two round trips. A bad item raises (``SchemaError``,
        ``IdentityError``) saying which item it was; the items before its batch are
        tracked, and in the batch those before it when the identity rules refused its id.
        """
        done = 0
        batch: list[tuple[str, Event]] = []
        for item in items:
            try:
                if not isinstance(item, tuple) or len(item) != 2:
                    raise SchemaError(f"expected a (unit_id, Event) tuple, got {type(item).__name__} {item!r}")
                batch.append((_key(_validate.unit_id(item[0])), check_event(item[1])))
            except SchemaError as e:
                at = done + len(batch)
                raise SchemaError(f"track_many: item {at}: {e} ({done} items tracked before it)") from None
            if len(batch) == _BATCH:
                done += self._track_batch(batch, done)
                batch = []
        if batch:
            done += self._track_batch(batch, done)
        return done

    def _track_batch(self, batch: list[tuple[str, Event]], done: int, single: bool = False) -> int:
        """Track a checked batch: read, update in Python, commit what is unchanged, again for the rest."""
        features = self._features
        cache = self._cache
        pending = list(range(len(batch)))  # positions not yet committed, in order
        refused: IdentityError | None = None
        tracked = 0
        observed: list[tuple[str, Event]] = []  # committed (key, event), for the triggers
        for attempt in range(self._max_attempts):
            uids = list(dict.fromkeys(batch[i][0] for i in pending))
            rows = dict(zip(uids, self._read(uids, "v", "s")))
            groups: dict[str, _Pending] = {}
            for n, i in enumerate(pending):
                uid, event = batch[i]
                row = rows[uid]
                if row is None:
                    try:
                        self._rules.check(uid, "id")
                    except IdentityError as e:
                        refused = e if single else IdentityError(
                            f"track_many: item {done + i}: {e} ({done + i} items tracked before it)")
                        pending = pending[:n]
                        break
                    g = groups.get(uid)
                    if g is None:
                        g = groups[uid] = _Pending(b"0", None, event.ts)
                else:
                    root = row[0]
                    g = groups.get(root)
                    if g is None:
                        g = groups[root] = _Pending(row[1] or b"0", row[2], None)
                g.events.append(event)
                g.items.append(i)
            if not groups:
                break
            args: list[Any] = [self._prefix]
            order = list(groups.items())
            states = []
            for root, g in order:
                hit = cache.pop(root, None) if cache is not None else None
                if hit is not None and hit[0] == g.version:
                    state = hit[1]  # this process wrote that version: the same state, not decoded again
                else:
                    state = features.init() if g.state is None else features.from_bytes(g.state)
                features.track_many(state, g.events)
                states.append(state)
                if g.ts is None:
                    args += [root, g.version, "", "", features.to_bytes(state), ""]
                else:
                    args += [root, "0", repr(g.ts), _IDS_ENCODER.encode([root]), features.to_bytes(state), ""]
            versions = self._call(self._s_commit, self._commit_keys, args, write=True)
            again: list[int] = []
            for (root, g), state, version in zip(order, states, versions):
                if not version:
                    again.extend(g.items)
                    continue
                tracked += len(g.items)
                if self._triggers is not None:
                    observed.extend((root, ev) for ev in g.events)
                if cache is not None:
                    self._remember(root, version, state)
            if not again:
                pending = []
                break
            pending = sorted(again)
            _backoff(attempt)
        if observed:  # after the commit: a merge meanwhile leaves the firing under an alias, still resolvable
            assert self._triggers is not None
            self._triggers.observe_many(observed)
        if pending:
            raise ConflictError(
                f"track: {len(pending)} events lost their compare-and-set {self._max_attempts} times in a row "
                f"(other writers kept changing their profiles); {done + tracked} items tracked, these were not: "
                "retry them, or raise max_attempts")
        if refused is not None:
            raise refused
        return tracked

    def _call(self, script: Any, keys: list[str], args: list[Any], write: bool = False) -> Any:
        """Run one script (one round trip; redis-py loads it again after NOSCRIPT); ``StoreError`` if Redis fails."""
        try:
            return script(keys=keys, args=args)
        except self._redis_error as e:
            maybe = ("a write was under way and may have been applied (Redis did not answer): read the profile "
                     "before making it again, or an event may count twice; ") if write else ""
            raise StoreError(
                f"RedisProfileStore (namespace {self.namespace!r}): Redis failed ({type(e).__name__}: {e}); {maybe}"
                "check that Redis is up and reachable at the URL given") from e

    def _remember(self, root: str, version: int, state: list[Any]) -> None:
        """Keep the state this process just committed at ``version``, dropping the oldest past ``cache_size``."""
        cache = self._cache
        assert cache is not None
        cache[root] = (b"%d" % version, state)
        while len(cache) > self._cache_size:
            try:
                cache.pop(next(iter(cache)), None)
            except (RuntimeError, StopIteration):  # another thread changed it meanwhile: its turn to trim
                break

    # ---- reads

    def _read(self, uids: list[str], *fields: str) -> list[list[Any] | None]:
        """For each id: None (not held) or [profile key (str), the fields of its hash (bytes or None)...]."""
        reply = self._call(self._s_read, [self._parent], [self._prefix, len(fields), *fields, *uids])
        out: list[list[Any] | None] = []
        for row in reply:
            if row is None:
                out.append(None)
            else:
                row[0] = row[0].decode("utf-8")
                out.append(row)
        return out

    def profile(self, unit_id: str | int, now: float) -> Profile | None:
        uid = _key(_validate.unit_id(unit_id))
        t = _validate.timestamp(now, "now")
        row = self._read([uid], "s", "c")[0]  # one round trip: resolve, state, consent
        if row is None:
            return None
        key, raw_state, raw_consent = row
        state = self._blank if raw_state is None else self._features.from_bytes(raw_state)
        values = self._features.values(state, t)
        if raw_consent is None:
            granted = self._granted_by_default
        else:
            consent = Consent.from_bytes(raw_consent, default=self._default)
            granted = frozenset(p for p in self._purposes if consent.granted_at(p, t))
        return Profile(key, values, granted)

    def consent(self, unit_id: str | int) -> Consent:
        """A copy of the consent of ``unit_id``'s profile (change it with ``record_consent``).

        An unknown id gets an empty Consent with the store's defaults, and is not
        added: a read never creates a profile (nor brings back a forgotten one).
        """
        uid = _key(_validate.unit_id(unit_id))
        row = self._read([uid], "c")[0]
        if row is None or row[1] is None:
            return Consent(default=self._default)
        return Consent.from_bytes(row[1], default=self._default)

    def record_consent(self, unit_id: str | int, change: ConsentChange) -> None:
        uid = _key(_validate.unit_id(unit_id))
        Consent([change])  # the validating path: SchemaError before anything changes
        for attempt in range(self._max_attempts):
            row = self._read([uid], "v", "c")[0]
            if row is None:
                self._rules.check(uid, "id")
                at = _validate.timestamp(change.at, "consent time")
                consent = Consent(default=self._default)
                consent.record(change)
                args = [self._prefix, uid, "0", repr(at), _IDS_ENCODER.encode([uid]), "", consent.to_bytes()]
            else:
                key, version, raw = row
                consent = Consent(default=self._default) if raw is None else Consent.from_bytes(
                    raw, default=self._default)
                consent.record(change)
                args = [self._prefix, key, version or b"0", "", "", "", consent.to_bytes()]
            if self._call(self._s_commit, self._commit_keys, args, write=True)[0]:
                return
            _backoff(attempt)
        raise ConflictError(
            f"record_consent: the profile of {uid!r} lost its compare-and-set {self._max_attempts} times in a row; "
            "nothing was recorded: retry, or raise max_attempts")

    # ---- identity

    def identify(self, anonymous_id: str | int, customer_id: str | int, now: float | None = None,
                 force: bool = False) -> Merge | None:
        a, c = _validate.unit_id(anonymous_id, "anonymous id"), _validate.unit_id(customer_id, "customer id")
        return self._link(self._rules.check(a, "anonymous id"), self._rules.check(c, "customer id"), True, now, force)

    def alias(self, a: str | int, b: str | int, now: float | None = None, force: bool = False) -> Merge | None:
        x, y = _validate.unit_id(a), _validate.unit_id(b)
        return self._link(self._rules.check(x, "id"), self._rules.check(y, "id"), False, now, force)

    def _link(self, x: str, y: str, customer: bool, now: float | None, force: bool) -> Merge | None:
        """Run the IdentityGraph rules over the entries x and y touch; commit the result if they are unchanged."""
        ts = _validate.timestamp(self._clock() if now is None else now, "now")
        for attempt in range(self._max_attempts):
            _, infos = self._call(self._s_idread, self._id_keys, [self._prefix, x, y])
            before: dict[str, Any] = {"format": _GRAPH_FORMAT, "profiles": {}, "seen": {}, "customers": {},
                                      "merges": {}}
            held: dict[str, tuple[bytes, bytes | None, bytes | None]] = {}  # key -> version, state, consent
            for key_b, mem, cus, mrg, version, state, consent, seen in infos:
                key = key_b.decode("utf-8")
                members = _IDS_DECODER.decode(mem)
                for i, s in zip(members, seen):
                    before["profiles"][i] = key
                    before["seen"][i] = float(s)
                if cus is not None:
                    before["customers"][key] = _IDS_DECODER.decode(cus)
                if mrg is not None:
                    before["merges"][key] = int(mrg)
                held[key] = (version or b"0", state, consent)
            graph = IdentityGraph.from_bytes(msgspec.msgpack.encode(before), **self._identity_options)
            merge = graph.identify(x, y, now=ts, force=force) if customer else graph.alias(x, y, now=ts, force=force)
            after = msgspec.msgpack.decode(graph.to_bytes())
            if after == before:
                return merge  # already one profile, nothing to mark: nothing to write
            key = after["profiles"][x]
            members = sorted(after["profiles"])
            new = [i for i in members if i not in before["profiles"]]
            args: list[Any] = [self._prefix, len(held) + len(new)]
            for k, (version, _, _) in held.items():
                args += [k, version]
            for i in new:
                args += [i, ""]
            fold_state = fold_consent = b""
            if merge is not None:
                keys = (merge.master, *merge.merged)
                states = [self._features.from_bytes(h[1]) for k in keys if (h := held.get(k)) and h[1] is not None]
                if states:
                    acc = states[0]
                    for s in states[1:]:
                        acc = self._features.merge(acc, s)
                    fold_state = self._features.to_bytes(acc)
                consents = [Consent.from_bytes(h[2], default=self._default)
                            for k in keys if (h := held.get(k)) and h[2] is not None]
                if consents:
                    folded = consents[0]
                    for c in consents[1:]:
                        folded = folded.merge(c)
                    fold_consent = folded.to_bytes()
            customers = after["customers"].get(key)
            merges = after["merges"].get(key)
            args += [key, _IDS_ENCODER.encode(members), b"" if customers is None else _IDS_ENCODER.encode(customers),
                     "" if merges is None else str(merges), "1" if merge is not None else "0",
                     fold_state, fold_consent]
            dead = [k for k in held if k != key]
            args += [len(dead), *dead, len(new)]
            for i in new:
                args += [i, repr(after["seen"][i])]
            args += [len(members), *members]
            if self._call(self._s_idcommit, [*self._id_keys, self._version], args, write=True):
                if self._cache is not None:
                    for k in held:  # at a version no longer theirs (the key) or gone (folded away): never a hit
                        self._cache.pop(k, None)
                if merge is not None:
                    self._follow(merge)
                return merge
            _backoff(attempt)
        raise ConflictError(
            f"joining {x!r} and {y!r}: their profiles lost the compare-and-set {self._max_attempts} times in a row; "
            "nothing was joined: retry, or raise max_attempts")

    def forget(self, unit_id: str | int) -> tuple[str, ...]:
        """Erase the profile holding ``unit_id``: every alias, its feature state and consent; the ids removed, sorted.

        One script deletes every field and key naming them (identity maps, the
        profile's hash), so nothing of the subject stays in Redis (a Redis with
        persistence keeps older RDB/AOF files until they are rewritten). () for an id
        the store does not hold.
        """
        uid = _key(_validate.unit_id(unit_id))
        gone = tuple(sorted(i.decode("utf-8") for i in self._call(self._s_forget, self._id_keys, [self._prefix, uid],
                                                                   write=True)))
        if self._cache is not None:
            for i in gone:  # the profile key is one of them
                self._cache.pop(i, None)
        try:
            if gone and self._triggers is not None:
                self._triggers.forget(gone)
            if gone and self._contacts is not None:
                self._contacts.forget(gone)
        except self._redis_error as e:
            raise StoreError(f"forget: the profile of {gone!r} is erased, but not yet its triggers and contact "
                             f"history ({e}); call triggers.forget and contacts.forget with these ids") from e
        return gone

    def _follow(self, merge: Merge) -> None:
        """Move the merged profiles' triggers and contact histories to the master."""
        if self._triggers is not None:
            self._triggers.merge(merge.master, merge.merged)
        if self._contacts is not None:
            self._contacts.merge(merge.master, merge.merged)

    def close(self) -> None:
        """Close the connections of a client this store made from a URL (a client passed in is left open)."""
        if self._owns_client:
            self._client.close()


if TYPE_CHECKING:  # the Redis store is a ProfileStore, checked by mypy
    _conforms: type[ProfileStore] = RedisProfileStore



def _key(uid: str | int) -> str:
    """A checked unit id as the str it is held under."""
    return uid if isinstance(uid, str) else str(uid)


def _backoff(attempt: int) -> None:
    """After a lost compare-and-set: at once the first times, then a short random pause so writers spread out."""
    if attempt >= 2:
        time.sleep(random.uniform(0, min(0.001 * (1 << min(attempt, 6)), 0.05)))
