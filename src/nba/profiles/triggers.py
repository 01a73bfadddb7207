"""Triggers: rules that make a profile due for a proactive action, on an event or on a non-event.

``OnEvent`` fires when an event is observed (a failed payment), ``delay`` seconds after
it; ``Absence`` fires when an ``after`` event is *not* followed by a ``missing`` one
within ``within`` seconds ("cart added, no checkout within 30 minutes"; "no login for 14
days" is ``Absence("lapsed", after="login", missing="login", within=14 * 86400,
restart=True)``: each login re-arms it). ``Triggers(rules, store).observe(key, event)``
feeds events in; ``due(now)`` returns the firings due at ``now``, each one to exactly one
caller across every process sharing the store, so a batch job or a worker can call
``decide`` for them. Time is event time (``Event.ts``) and ``now`` is the caller's: no
method reads a clock.

Semantics, per profile and trigger. A trigger holds at most one *pending* firing:
``due_at`` and its ``cause_ts`` (the event that scheduled it). ``due(now)`` claims the
pending firings with ``due_at <= now``; a claimed firing is final, and its ``due_at``
becomes the trigger's *last firing*.

- ``OnEvent``: an event of the type (its channel equal to ``channel`` if set, each
  property in ``where`` equal) schedules a firing at ``ts + delay``. While one is
  pending, another event is absorbed into it (the earlier due time is kept): one action
  per burst, until it is claimed.
- ``Absence``: an ``after`` event at ``ts`` arms a firing at ``ts + within``. A
  ``missing`` or ``cancel`` event with a ts in ``[cause_ts, due_at)`` cancels it; one at
  or after ``due_at`` does not (the absence had happened by then). A further ``after``
  event while armed: with ``restart`` and a ts in ``(cause_ts, due_at)`` it pushes the
  due time to its own ``ts + within``; without ``restart`` an earlier one (arriving
  late) moves the arming back to it, a later one is ignored (the first arming holds).
  An event that is both ``after`` and ``missing`` (logins) cancels, then re-arms.
- Re-eligibility: once claimed, a trigger is armed again by the next ``after`` (or
  event) observed. ``cooldown``: a firing is never due less than ``cooldown`` seconds
  after the last firing; its due time is deferred to the end of the cooldown (a burst
  of events within the cooldown fires once, at its end; for ``Absence`` the cancelling
  window stretches to the deferred due time).

Late and out-of-order events are judged by their ts, not their arrival:

- a ``missing`` event whose ts lies in ``[cause_ts, due_at)`` cancels even if it
  arrives late, as long as the firing has not been claimed; one whose ts is ``>=
  due_at`` never cancels;
- an ``after`` event arriving after a ``missing`` event with a greater ts does not arm
  if that ts falls in its window ``(ts, due)``: the trigger remembers the latest
  ``missing`` ts it saw (one number, so when several arrived first only the latest is
  compared). A ``missing`` event with the *same* ts as the arming event cancels when it
  arrives after it and is taken to precede it when it arrived before (arrival order
  breaks ties, as nothing else can);
- an event arriving after a firing was claimed is stale, and ignored, if it belongs
  before that firing: a ts before its due time (``Absence``), or its own due time
  ``ts + delay`` before it (``OnEvent``). A claimed firing is never undone.

When events arrive in time order, the result is the replay by event time of the rules
above (the property test in ``tests/profiles/test_triggers.py`` checks it against a
brute-force oracle). ``merge(master, merged_keys)`` moves pending state to the master
(per trigger: the earliest pending due, the latest firing and ``missing`` ts, and the
cooldown applied again); ``forget(keys)`` erases every trace of the keys.

Two stores pass one shared suite: ``EmbeddedTriggerStore`` (this process's memory,
one lock) and ``RedisTriggerStore`` (a sorted set of due times and one hash per
profile under ``{namespace}:trg:``; every change is one Lua script, so claims are
exactly once across processes).
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import msgspec

from nba import _redis, _validate
from nba._core.locks import PoliteLock
from nba.errors import ConfigError, SchemaError
from nba.profiles.events import Event, check_event

__all__ = [
    "Absence",
    "Due",
    "EmbeddedTriggerStore",
    "OnEvent",
    "RedisTriggerStore",
    "Step",
    "TriggerRule",
    "TriggerStore",
    "Triggers",
]

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_MISSING = object()


def _rule_name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ConfigError(
            f"trigger name must be 1-64 characters of letters, digits, '_', '.', '-', got {value!r}"
        )
    return value


def _event_type(rule: str, field: str, value: Any, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, str) or not value:
        raise ConfigError(f"trigger {rule!r}: {field} must be a non-empty event type (str), got {value!r}")
    _validate.config_text(value, f"trigger {rule!r}: {field}")


def _seconds(rule: str, field: str, value: Any, positive: bool = False) -> None:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and (value > 0 if positive else value >= 0))
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(f"trigger {rule!r}: {field} must be finite seconds {bound}, got {value!r}")


class OnEvent(msgspec.Struct, frozen=True):
    """Fire on an event: of type ``event``, on ``channel`` (None: any), with each ``where`` property equal.

    Due ``delay`` seconds after the event's ts; ``cooldown`` seconds at least between firings."""

    name: str
    event: str
    where: dict[str, Any] = {}
    delay: float = 0.0
    cooldown: float = 0.0
    channel: str | None = None

    def __post_init__(self) -> None:
        name = _rule_name(self.name)
        _event_type(name, "event", self.event)
        if not isinstance(self.where, dict) or not all(isinstance(k, str) for k in self.where):
            raise ConfigError(f"trigger {name!r}: where must be a dict of property name -> value, got {self.where!r}")
        for k, v in self.where.items():
            if not (v is None or isinstance(v, (str, int, float, bool))):
                raise ConfigError(
                    f"trigger {name!r}: where[{k!r}] must be a str, int, float, bool or None (compared by "
                    f"equality), got {type(v).__name__} {v!r}")
        _validate.config_json_text(self.where, f"trigger {name!r}: where")
        _seconds(name, "delay", self.delay)
        _seconds(name, "cooldown", self.cooldown)
        if self.channel is not None:
            _event_type(name, "channel", self.channel)


class Absence(msgspec.Struct, frozen=True):
    """Fire when an ``after`` event is not followed by ``missing`` (or ``cancel``) within ``within`` seconds.

    ``restart``: a further ``after`` event while armed pushes the due time (else the first
    arming holds); ``cooldown`` seconds at least between firings. See the module docstring."""

    name: str
    after: str
    missing: str
    within: float
    cancel: str | None = None
    restart: bool = False
    cooldown: float = 0.0

    def __post_init__(self) -> None:
        name = _rule_name(self.name)
        _event_type(name, "after", self.after)
        _event_type(name, "missing", self.missing)
        _event_type(name, "cancel", self.cancel, optional=True)
        _seconds(name, "within", self.within, positive=True)
        _seconds(name, "cooldown", self.cooldown)
        if not isinstance(self.restart, bool):
            raise ConfigError(f"trigger {name!r}: restart must be a bool, got {self.restart!r}")


TriggerRule = OnEvent | Absence


class Due(msgspec.Struct, frozen=True):
    """A firing: profile ``key`` is due for ``trigger`` at ``due_at``, caused by the event at ``cause_ts``."""

    key: str
    trigger: str
    due_at: float
    cause_ts: float


# Kinds of step: an OnEvent event, an Absence arming ("after") or a cancelling ("missing"/"cancel") event.
ON_EVENT, ARM, CANCEL = "E", "A", "M"


class Step(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One event's effect on one trigger of one profile, what ``Triggers`` hands its store.

    ``kind``: ``"E"`` (OnEvent), ``"A"`` (Absence after) or ``"M"`` (missing or cancel);
    ``span``: the rule's ``delay`` or ``within``."""

    key: str
    trigger: str
    kind: str
    ts: float
    span: float
    cooldown: float
    restart: bool


@runtime_checkable
class TriggerStore(Protocol):
    """Where pending firings live: each method is atomic, and may be called from any thread (or process)."""

    def apply(self, steps: Sequence[Step]) -> None:
        """Apply the steps in order (one event's steps are consecutive)."""
        ...

    def claim(self, now: float, limit: int) -> list[Due]:
        """Remove and return up to ``limit`` pending firings with ``due_at <= now``, earliest first, each once.

        Ties are in the store's own order (embedded: key, then trigger; Redis: trigger, then key)."""
        ...

    def pending(self, key: str) -> list[Due]:
        """The pending firings of ``key``, by trigger name."""
        ...

    def merge(self, master: str, merged: Sequence[str], cooldowns: Mapping[str, float]) -> None:
        """Fold the state of ``merged`` keys into ``master`` and drop them (``cooldowns``: per trigger)."""
        ...

    def forget(self, keys: Sequence[str]) -> None:
        """Erase every trace of ``keys``."""
        ...


# --------------------------------------------------------------------------- the rules engine


def _key(value: Any) -> str:
    """A profile key: a str, or a 64-bit int written in decimal (as ``IdentityGraph`` does)."""
    k = _validate.unit_id(value, "profile key")
    key = k if isinstance(k, str) else str(k)
    if not key:
        raise SchemaError("profile key must not be empty")
    return key


class Triggers:
    """Rules over a store: ``observe`` events, then ``due(now)`` claims what has become due.

    ``store`` defaults to a new ``EmbeddedTriggerStore``; share a ``RedisTriggerStore``
    (same namespace, same rules) between processes so each firing goes to one of them."""

    def __init__(self, rules: Iterable[TriggerRule], store: TriggerStore | None = None) -> None:
        self.rules: tuple[TriggerRule, ...] = tuple(rules)
        if not self.rules:
            raise ConfigError("Triggers needs at least one rule (OnEvent or Absence)")
        names: set[str] = set()
        by_type: dict[str, list[tuple[TriggerRule, str]]] = {}
        for r in self.rules:
            if not isinstance(r, (OnEvent, Absence)):
                raise ConfigError(f"Triggers: rules must be OnEvent or Absence, got {type(r).__name__} {r!r}")
            if r.name in names:
                raise ConfigError(f"Triggers: two rules are named {r.name!r}; give each trigger its own name")
            names.add(r.name)
            if isinstance(r, OnEvent):
                by_type.setdefault(r.event, []).append((r, ON_EVENT))
            else:
                # Cancel before arming: an event that is both (a login) ends the old arming, then starts one.
                for t in dict.fromkeys((r.missing, r.cancel)):
                    if t is not None:
                        by_type.setdefault(t, []).append((r, CANCEL))
                by_type.setdefault(r.after, []).append((r, ARM))
        self._by_type = by_type
        self._cooldowns = {r.name: float(r.cooldown) for r in self.rules}
        if store is None:
            store = EmbeddedTriggerStore()
        elif not isinstance(store, TriggerStore):
            raise ConfigError(f"Triggers: store must be a TriggerStore, got {type(store).__name__}")
        self.store = store

    def _steps(self, key: str, event: Event, out: list[Step]) -> None:
        for rule, kind in self._by_type.get(event.type, ()):
            if kind == ON_EVENT:
                assert isinstance(rule, OnEvent)
                if rule.channel is not None and event.channel != rule.channel:
                    continue
                if rule.where:
                    props = event.properties
                    if any(props.get(k, _MISSING) != v for k, v in rule.where.items()):
                        continue
                out.append(Step(key, rule.name, kind, event.ts, float(rule.delay), float(rule.cooldown), False))
            else:
                assert isinstance(rule, Absence)
                out.append(Step(key, rule.name, kind, event.ts, float(rule.within), float(rule.cooldown),
                                rule.restart))

    def observe(self, key: str | int, event: Event) -> None:
        """Apply ``event`` of profile ``key`` to every rule; ``SchemaError`` for a bad key or event."""
        self.observe_many(((key, event),))

    def observe_many(self, items: Iterable[tuple[str | int, Event]]) -> None:
        """``observe`` each ``(key, event)`` in order, in one store call (Redis: one round trip)."""
        steps: list[Step] = []
        for key, event in items:
            k = _key(key)
            self._steps(k, check_event(event), steps)
        if steps:
            self.store.apply(steps)

    def due(self, now: float, limit: int = 100) -> list[Due]:
        """Claim up to ``limit`` firings due at ``now`` (``due_at <= now``), earliest first.

        Each firing is returned to exactly one caller, across every process sharing the store.
        A claim is final: a caller that dies before acting on it loses that firing (at most once)."""
        t = _validate.timestamp(now, "due(now)")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise SchemaError(f"due(limit) must be a positive int, got {limit!r}")
        return self.store.claim(t, limit)

    def pending(self, key: str | int) -> list[Due]:
        """The pending (not yet claimed) firings of ``key``, by trigger name; for inspection."""
        return self.store.pending(_key(key))

    def merge(self, master: str | int, merged_keys: Iterable[str | int]) -> None:
        """Move the pending state of ``merged_keys`` to ``master`` (an identity ``Merge``); see the module doc."""
        m = _key(master)
        others = [k for k in dict.fromkeys(_key(k) for k in merged_keys) if k != m]
        if others:
            self.store.merge(m, others, self._cooldowns)

    def forget(self, keys: Iterable[str | int]) -> None:
        """Erase every pending firing and all trigger state of ``keys`` (an erasure request)."""
        ks = list(dict.fromkeys(_key(k) for k in keys))
        if ks:
            self.store.forget(ks)


# --------------------------------------------------------------------------- embedded

# A trigger's state in the embedded store: [due_at, cause_ts, last firing, latest missing ts], None when unset.
_DUE, _CAUSE, _FIRED, _MISS = 0, 1, 2, 3


def _deferred(n: float, fired: float | None, cooldown: float) -> float:
    return n if fired is None or fired + cooldown <= n else fired + cooldown


class EmbeddedTriggerStore:
    """Trigger state in this process's memory behind one lock: for one process, any number of threads."""

    def __init__(self) -> None:
        self._lock = PoliteLock()
        self._state: dict[str, dict[str, list[float | None]]] = {}
        # Heap entries [due_at, key, trigger]: a replaced or cancelled firing's entry stays until popped
        # (then skipped) or compacted; _entries lists each key's entries, so that forget and merge blank
        # theirs in place (key and trigger set to "") instead of rebuilding the heap under the lock.
        self._heap: list[list[Any]] = []
        self._entries: dict[str, list[list[Any]]] = {}
        self._n_pending = 0

    def _set(self, key: str, trigger: str, s: list[float | None], due: float, cause: float) -> None:
        if s[_DUE] is None:
            self._n_pending += 1
        s[_DUE], s[_CAUSE] = due, cause
        self._push(due, key, trigger)

    def _push(self, due: float, key: str, trigger: str) -> None:
        entry = [due, key, trigger]
        heapq.heappush(self._heap, entry)
        self._entries.setdefault(key, []).append(entry)

    def _drop_entries(self, key: str) -> None:
        for entry in self._entries.pop(key, ()):
            entry[1] = entry[2] = ""

    def _clear(self, s: list[float | None]) -> None:
        if s[_DUE] is not None:
            self._n_pending -= 1
        s[_DUE] = s[_CAUSE] = None

    def apply(self, steps: Sequence[Step]) -> None:
        with self._lock:
            for st in steps:
                self._apply(st)
            if len(self._heap) > 2 * self._n_pending + 1024:
                self._compact()

    def _apply(self, st: Step) -> None:
        per = self._state.get(st.key)
        if per is None:
            per = self._state[st.key] = {}
        s = per.get(st.trigger)
        if s is None:
            s = per[st.trigger] = [None, None, None, None]
        ts, fired, due, cause = st.ts, s[_FIRED], s[_DUE], s[_CAUSE]
        if st.kind == ON_EVENT:
            n = ts + st.span
            if fired is not None and n < fired:
                return  # stale: it belongs before a firing already claimed
            d = _deferred(n, fired, st.cooldown)
            if due is None or d < due:
                self._set(st.key, st.trigger, s, d, ts)
            return
        if fired is not None and ts < fired:
            return
        if st.kind == CANCEL:
            if due is not None and cause is not None and cause <= ts < due:
                self._clear(s)
            miss = s[_MISS]
            if miss is None or ts > miss:
                s[_MISS] = ts
            return
        d = _deferred(ts + st.span, fired, st.cooldown)
        miss = s[_MISS]
        cancelled = miss is not None and ts < miss < d
        if due is not None and cause is not None:
            if st.restart:
                if cause < ts < due:
                    if cancelled:
                        self._clear(s)
                    else:
                        self._set(st.key, st.trigger, s, d, ts)
            elif ts < cause and not cancelled:
                self._set(st.key, st.trigger, s, d, ts)
        elif not cancelled:
            self._set(st.key, st.trigger, s, d, ts)

    def claim(self, now: float, limit: int) -> list[Due]:
        out: list[Due] = []
        with self._lock:
            heap = self._heap
            while heap and heap[0][0] <= now and len(out) < limit:
                entry = heapq.heappop(heap)
                due, key, trigger = entry
                if not key:
                    continue  # forgotten or merged away
                mine = self._entries[key]
                for i, e in enumerate(mine):
                    if e is entry:
                        del mine[i]
                        break
                if not mine:
                    del self._entries[key]
                s = self._state.get(key, {}).get(trigger)
                if s is None or s[_DUE] != due:
                    continue  # replaced, cancelled or merged away since it was pushed
                cause = s[_CAUSE]
                assert cause is not None
                self._clear(s)
                s[_FIRED] = due
                out.append(Due(key, trigger, due, cause))
        return out

    def pending(self, key: str) -> list[Due]:
        with self._lock:
            per = self._state.get(key, {})
            out = []
            for t, s in sorted(per.items()):
                due, cause = s[_DUE], s[_CAUSE]
                if due is not None and cause is not None:
                    out.append(Due(key, t, due, cause))
            return out

    def merge(self, master: str, merged: Sequence[str], cooldowns: Mapping[str, float]) -> None:
        with self._lock:
            into = self._state.get(master)
            if into is None:
                into = {}
            for k in merged:
                per = self._state.pop(k, None)
                self._drop_entries(k)
                if not per:
                    continue
                for t, s in per.items():
                    self._n_pending -= s[_DUE] is not None  # its heap entries go stale: the key is gone
                    m = into.get(t)
                    if m is None:
                        into[t] = m = [None, None, None, None]
                    elif m[_DUE] is not None:
                        self._n_pending -= 1
                    if s[_DUE] is not None and (m[_DUE] is None or s[_DUE] < m[_DUE]):  # type: ignore[operator]
                        m[_DUE], m[_CAUSE] = s[_DUE], s[_CAUSE]
                    for i in (_FIRED, _MISS):
                        if s[i] is not None and (m[i] is None or s[i] > m[i]):  # type: ignore[operator]
                            m[i] = s[i]
                    self._n_pending += m[_DUE] is not None
            if into:
                self._state[master] = into
                for t, m in into.items():
                    due = m[_DUE]
                    if due is not None:
                        # Pushed again even if master's entry holds it: a duplicate is skipped when popped.
                        m[_DUE] = d = _deferred(due, m[_FIRED], cooldowns.get(t, 0.0))
                        self._push(d, master, t)

    def forget(self, keys: Sequence[str]) -> None:
        with self._lock:
            for k in keys:
                per = self._state.pop(k, None)
                if per:
                    self._n_pending -= sum(s[_DUE] is not None for s in per.values())
                self._drop_entries(k)  # no heap entry may keep a forgotten key

    def _compact(self) -> None:
        """Rebuild the heap from the live pending firings only (no stale entry, no forgotten key)."""
        for entry in self._heap:
            entry[1] = entry[2] = ""  # a list handed out nowhere, but blank it all the same
        self._heap, self._entries = [], {}
        for k, per in self._state.items():
            for t, s in per.items():
                due = s[_DUE]
                if due is not None:
                    entry = [due, k, t]
                    self._heap.append(entry)
                    self._entries.setdefault(k, []).append(entry)
        heapq.heapify(self._heap)


# --------------------------------------------------------------------------- Redis

# Keys of a namespace share one hash tag, so each script touches one slot:
#   {ns}:trg:due     sorted set: "<trigger>:<profile key>" -> due_at of its pending firing
#   {ns}:trg:p:<key> hash per profile: d:<t> due_at, c:<t> cause ts, f:<t> last firing, m:<t> latest missing ts
# Numbers cross as repr() strings and are written back with %.17g, so every value round-trips exactly.
# The hash of a profile key is named from ARGV (as nba.state's claim does): same slot by the hash tag.

# Lua turns a number into text with 14 digits: every number written goes through fmt (17, exact).
_LUA_COMMON = """
local function fmt(x) return string.format('%.17g', x) end
local function deferred(n, f, cool)
  if f and f + cool > n then return f + cool end
  return n
end
"""

# KEYS: due, then one hash per profile; ARGV: number of profiles, their keys, then 7 per step:
# profile index (1-based), trigger, kind, ts, span, cooldown, restart (1/0). The logic of
# EmbeddedTriggerStore._apply, step for step.
_APPLY = _LUA_COMMON + """
local nk = tonumber(ARGV[1])
local i = nk + 2
while i <= #ARGV do
  local ki, t, kind = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2]
  local ts, span, cool = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
  local restart = ARGV[i + 6] == '1'
  i = i + 7
  local h, member = KEYS[ki + 1], t .. ':' .. ARGV[ki + 1]
  local v = redis.call('HMGET', h, 'd:' .. t, 'c:' .. t, 'f:' .. t, 'm:' .. t)
  local d, c, f, m = tonumber(v[1]), tonumber(v[2]), tonumber(v[3]), tonumber(v[4])
  local function set(due, cause)
    redis.call('HSET', h, 'd:' .. t, fmt(due), 'c:' .. t, fmt(cause))
    redis.call('ZADD', KEYS[1], fmt(due), member)
  end
  local function clear()
    redis.call('HDEL', h, 'd:' .. t, 'c:' .. t)
    redis.call('ZREM', KEYS[1], member)
  end
  if kind == 'E' then
    local n = ts + span
    if not (f and n < f) then
      local due = deferred(n, f, cool)
      if not d or due < d then set(due, ts) end
    end
  elseif not (f and ts < f) then
    if kind == 'M' then
      if d and c <= ts and ts < d then clear() end
      if not m or ts > m then redis.call('HSET', h, 'm:' .. t, fmt(ts)) end
    else
      local due = deferred(ts + span, f, cool)
      local cancelled = m and ts < m and m < due
      if d then
        if restart then
          if c < ts and ts < d then
            if cancelled then clear() else set(due, ts) end
          end
        elseif ts < c and not cancelled then
          set(due, ts)
        end
      elseif not cancelled then
        set(due, ts)
      end
    end
  end
end
return 1
"""

# KEYS: due; ARGV: now, limit, hash prefix. Pops the due members and marks each fired, atomically:
# whoever runs it first gets them, and nobody else ever does. Returns key, trigger, due, cause per firing.
_CLAIM = """
local out = {}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
-- The members read are the first #ids by rank: one removal by rank instead of a ZREM each.
if #ids > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #ids - 1) end
for _, mem in ipairs(ids) do
  local p = string.find(mem, ':', 1, true)
  local t, key = string.sub(mem, 1, p - 1), string.sub(mem, p + 1)
  local h = ARGV[3] .. key
  local v = redis.call('HMGET', h, 'd:' .. t, 'c:' .. t)
  if v[1] then
    redis.call('HDEL', h, 'd:' .. t, 'c:' .. t)
    redis.call('HSET', h, 'f:' .. t, v[1])
    out[#out + 1] = key
    out[#out + 1] = t
    out[#out + 1] = v[1]
    out[#out + 1] = v[2]
  end
end
return out
"""

# KEYS: due, master's hash, then each merged key's hash; ARGV: number of merged keys, master, the
# merged keys, then trigger / cooldown pairs (every rule's).
_MERGE = _LUA_COMMON + """
local nm = tonumber(ARGV[1])
local master = ARGV[2]
local cools = {}
for i = nm + 3, #ARGV, 2 do cools[ARGV[i]] = tonumber(ARGV[i + 1]) end
local best = {}
local function fold(h)
  local flat = redis.call('HGETALL', h)
  for i = 1, #flat, 2 do
    local field, val = flat[i], flat[i + 1]
    local kind, t = string.sub(field, 1, 1), string.sub(field, 3)
    local b = best[t]
    if not b then b = {}; best[t] = b end
    local x = tonumber(val)
    if kind == 'd' then
      if not b.d or x < b.d then b.d = x; b.c = tonumber(redis.call('HGET', h, 'c:' .. t)) end
    elseif kind == 'f' then
      if not b.f or x > b.f then b.f = x end
    elseif kind == 'm' then
      if not b.m or x > b.m then b.m = x end
    end
  end
end
fold(KEYS[2])
for j = 1, nm do
  local h = KEYS[j + 2]
  local flat = redis.call('HKEYS', h)
  for _, field in ipairs(flat) do
    if string.sub(field, 1, 2) == 'd:' then redis.call('ZREM', KEYS[1], string.sub(field, 3) .. ':' .. ARGV[j + 2]) end
  end
  fold(h)
  redis.call('DEL', h)
end
for t, b in pairs(best) do
  if b.f then redis.call('HSET', KEYS[2], 'f:' .. t, fmt(b.f)) end
  if b.m then redis.call('HSET', KEYS[2], 'm:' .. t, fmt(b.m)) end
  if b.d then
    local due = deferred(b.d, b.f, cools[t] or 0)
    redis.call('HSET', KEYS[2], 'd:' .. t, fmt(due), 'c:' .. t, fmt(b.c))
    redis.call('ZADD', KEYS[1], fmt(due), t .. ':' .. master)
  end
end
return 1
"""

# KEYS: due, then each key's hash; ARGV: the keys. Drops their members of the sorted set and their hashes.
_FORGET = """
for j = 2, #KEYS do
  for _, field in ipairs(redis.call('HKEYS', KEYS[j])) do
    if string.sub(field, 1, 2) == 'd:' then redis.call('ZREM', KEYS[1], string.sub(field, 3) .. ':' .. ARGV[j - 1]) end
  end
  redis.call('DEL', KEYS[j])
end
return 1
"""

# Steps per script call: its ARGV holds 7 per step; calls of one batch go in one pipeline (one round trip).
_APPLY_BATCH = 2048


def _num(b: bytes) -> float:
    return float(b)


class RedisTriggerStore:
    """Trigger state in Redis, shared by every process (and host) using the same namespace and rules.

    ``url``: a Redis URL (``redis://host:6379/0``) or a ready ``redis.Redis`` client. Keys
    are ``{namespace}:trg:...``; every change is one Lua script (atomic), and a batch of
    steps is one round trip."""

    def __init__(self, url: Any, *, namespace: str = "nba") -> None:
        self._client: Any  # redis-py's reply types are unions of every reply: they are checked here
        self._client, self._owns_client, tag = _redis.connect(url, namespace, "RedisTriggerStore")
        self.namespace = namespace
        self._due = f"{tag}:trg:due"
        self._prefix = f"{tag}:trg:p:"
        self._apply = self._client.register_script(_APPLY)
        self._claim = self._client.register_script(_CLAIM)
        self._merge = self._client.register_script(_MERGE)
        self._forget = self._client.register_script(_FORGET)

    def apply(self, steps: Sequence[Step]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for lo in range(0, len(steps), _APPLY_BATCH):
            index: dict[str, int] = {}
            argv: list[Any] = []
            for st in steps[lo:lo + _APPLY_BATCH]:
                i = index.get(st.key)
                if i is None:
                    i = index[st.key] = len(index) + 1
                argv += (i, st.trigger, st.kind, repr(st.ts), repr(st.span), repr(st.cooldown),
                         1 if st.restart else 0)
            keys = list(index)
            self._apply(keys=[self._due, *(self._prefix + k for k in keys)], args=[len(keys), *keys, *argv],
                        client=pipe)
        pipe.execute()

    def claim(self, now: float, limit: int) -> list[Due]:
        flat = self._claim(keys=[self._due], args=[repr(now), limit, self._prefix])
        return [Due(flat[i].decode(), flat[i + 1].decode(), _num(flat[i + 2]), _num(flat[i + 3]))
                for i in range(0, len(flat), 4)]

    def pending(self, key: str) -> list[Due]:
        h = self._client.hgetall(self._prefix + key)
        out = []
        for field, v in h.items():
            if field.startswith(b"d:"):
                t = field[2:]
                out.append(Due(key, t.decode(), _num(v), _num(h[b"c:" + t])))
        out.sort(key=lambda d: d.trigger)
        return out

    def merge(self, master: str, merged: Sequence[str], cooldowns: Mapping[str, float]) -> None:
        cool: list[Any] = []
        for t, c in cooldowns.items():
            cool += (t, repr(float(c)))
        self._merge(keys=[self._due, self._prefix + master, *(self._prefix + k for k in merged)],
                    args=[len(merged), master, *merged, *cool])

    def forget(self, keys: Sequence[str]) -> None:
        self._forget(keys=[self._due, *(self._prefix + k for k in keys)], args=list(keys))

    def close(self) -> None:
        """Close the connections of a client this store made from a URL (a client passed in is the caller's)."""
        if self._owns_client:
            self._client.close()
