"""Decision state: what ``activate``, ``reward`` and online learning need between calls.

A Decider remembers each decision an online model learns from (or that was
deferred) until its reward window closes, then teaches the model the reward it got
(or ``default_reward``). Where that memory lives is a backend:

- ``EmbeddedState`` (the default): this process's memory. Right for one process;
  with several, an activation or reward that reaches another process is only logged.
- ``RedisState``: Redis, shared by every process on every host. ``activate`` and
  ``reward`` work from any process, each expired decision teaches its default reward
  exactly once (claimed atomically by whichever process gets there first), and every
  process's online models learn every lesson, in one order: lessons go into a Redis
  stream that each process applies as it arrives.

``decide()`` never waits on the network: it reads its own models, and a remembered
decision is queued and written by a background thread within ``flush_interval``.
See docs/state.md for the failure behaviour.
"""

from __future__ import annotations

import itertools
import math
import os
import secrets
import socket
import threading
import time
import warnings
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import msgspec
import numpy as np

from nba import _redis
from nba._core.locks import PoliteLock
from nba._core.resp import ReplyError, exchange, pack_args, pack_command, pack_remember, parse_replies
from nba.errors import ConfigError, ModelFormatError, UnknownEventError

__all__ = [
    "ApprenticeCounters",
    "DecisionState",
    "EmbeddedState",
    "Lesson",
    "RedisState",
    "StateWarning",
]


class StateWarning(RuntimeWarning):
    """The shared state is unreachable or was reset: decisions go on from local state (see ``RedisState``)."""


class Lesson(msgspec.Struct, frozen=True, gc=False):
    """One thing an online model learns: ``reward`` for ``arm`` in context ``x`` (None: context-free).

    A Struct, not a NamedTuple: built once per reward, in C (callgrind: ~1k instructions less a reward)."""

    model: str
    policy: str
    arm: int
    x: np.ndarray | None
    reward: float


# check(model, value): raise SchemaError if that model cannot learn value (nothing changed).
Check = Callable[[str, float], None]
# learn(lesson): teach the model (the Decider's; it resolves names to its current models).
Learn = Callable[[Lesson], None]
# log(): write the activation's or outcome's record; raises LogError (then nothing changes).
Log = Callable[[], object]


class Settings(NamedTuple):
    """What the Decider tells its state backend once, at build."""

    window: float  # reward window, seconds
    aggregate: str  # "first" or "sum"
    default_reward: float
    max_pending: int
    learners: dict[str, Any]  # model name -> OnlineLearner, the models that learn


@runtime_checkable
class DecisionState(Protocol):
    """Where a Decider keeps its pending decisions and how its online models learn.

    Every method is called by one Decider (``bind`` first) from any of its threads.
    """

    def bind(self, settings: Settings, learn: Learn) -> None:
        """Attach to a Decider; called once, before any other method."""
        ...

    def remember(self, eid: str, model: str | None, policy: str, arm: int, x: np.ndarray | None, ts: float,
                 active: bool) -> None:
        """Remember a decision that ``model`` learns from (None: a deferred one no model learns from)."""
        ...

    def activate(self, eid: str, ts: float, log: Log) -> None:
        """Mark a deferred decision shown at ``ts``: ``log()`` first, then change; ``UnknownEventError``
        (nothing logged) for an id not remembered."""
        ...

    def reward(self, eid: str, value: float, ts: float, check: Check, log: Log) -> None:
        """Count ``value`` for decision ``eid`` if it is in its window: ``check``, then ``log()``, then change."""
        ...

    def expire(self, now: float) -> None:
        """Close the reward windows that ended before ``now``; each teaches its model once."""
        ...

    def sync(self) -> None:
        """Write what is queued and apply every lesson learned so far (tests, ``Decider.flush``)."""
        ...

    def forget(self, eids: Iterable[str]) -> int:
        """Drop these pending decisions (an erasure: they hold the model input); they teach nothing.
        Returns how many were held."""
        ...

    def after_fork(self) -> None:
        """In a forked child: forget the parent's pending decisions (they stay the parent's)."""
        ...

    def close(self) -> None:
        """Write what is queued and stop background work."""
        ...


# switched(ts, events, agreements): the counters met the rule and this call made the switch (once, in one
# process): the Decider logs its SwitchRecord.
Switched = Callable[[float, int, int], None]


@runtime_checkable
class ApprenticeCounters(Protocol):
    """Apprentice mode's shared agreement counters and switch (``nba.apprentice``), beside a ``DecisionState``.

    A protocol of its own, so a custom ``DecisionState`` without them still serves a Decider that
    does not apprentice. The counters are aggregates (how many decisions had a baseline, how many
    of those the learned policy agreed with): they hold no personal data, and an erasure leaves
    them as they are. The switch is sticky and made once: whichever update first finds the rule
    met sets it (compare-and-set) and calls ``switched``; every other process reads it.
    """

    def apprentice_bind(self, rule: tuple[float, int] | None, switched: Switched) -> None:
        """Count for a Decider; ``rule`` is (threshold, min_events), or None to count without ever switching."""
        ...

    def apprentice_record(self, agreed: bool, ts: float) -> None:
        """Count one decision with a baseline (``agreed``: the learned policy drew it) made at ``ts``; if the
        counters now meet the rule and nobody switched yet, switch (this backend calls ``switched``)."""
        ...

    def apprentice_status(self) -> tuple[int, int, bool]:
        """(events, agreements, switched) as this process knows them, without a round trip."""
        ...


def _meets(rule: tuple[float, int] | None, events: int, agreements: int) -> bool:
    """Whether the counters meet the rule: at least ``min_events``, and agreements / events >= threshold.

    The Redis script computes the same comparison on the same doubles (one division, IEEE)."""
    return rule is not None and events > 0 and events >= rule[1] and agreements / events >= rule[0]


def _no_switch(ts: float, events: int, agreements: int) -> None:
    pass


# --------------------------------------------------------------------------- embedded


class _Pending:
    __slots__ = ("model", "policy", "arm", "x", "start", "active", "total", "rewarded")

    def __init__(self, model: str, policy: str, arm: int, x: np.ndarray | None, start: float,
                 active: bool) -> None:
        self.model = model
        self.policy = policy
        self.arm = arm
        self.x = x
        self.start = start
        self.active = active
        self.total = 0.0
        self.rewarded = False

    def lesson(self, reward: float) -> Lesson:
        return Lesson(self.model, self.policy, self.arm, self.x, reward)


class EmbeddedState:
    """Decision state in this process's memory: the default, for one process.

    Keeps at most ``max_pending`` decisions (the oldest window closes early beyond
    it) and as many deferred ones. An id made by another process is unknown here.
    """

    def __init__(self) -> None:
        self._lock = PoliteLock()  # no convoy with the GIL; new in a forked child
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._deferred: OrderedDict[str, float] = OrderedDict()
        self._settings: Settings | None = None
        self._learn: Learn = _unbound
        self._app_lock = threading.Lock()
        self._app_rule: tuple[float, int] | None = None
        self._app_switched: Switched = _no_switch
        self._app = (0, 0, False)  # events, agreements, switched: replaced whole, so a reader sees one state

    def bind(self, settings: Settings, learn: Learn) -> None:
        if self._settings is not None:
            raise ConfigError("this EmbeddedState already serves a Decider; give each Decider its own")
        self._settings = settings
        self._window = settings.window
        self._first = settings.aggregate == "first"
        self._default = settings.default_reward
        self._max = settings.max_pending
        self._learn = learn

    def remember(self, eid: str, model: str | None, policy: str, arm: int, x: np.ndarray | None, ts: float,
                 active: bool) -> None:
        with self._lock:
            if model is None:
                self._deferred[eid] = ts
                while len(self._deferred) > self._max:
                    self._deferred.popitem(last=False)
                return
            self._pending[eid] = _Pending(model, policy, arm, x, ts, active)
            if len(self._pending) > self._max:
                self._expire(math.inf, limit=len(self._pending) - self._max)

    def activate(self, eid: str, ts: float, log: Log) -> None:
        with self._lock:
            p = self._pending.get(eid)
            if p is None and eid not in self._deferred:
                raise UnknownEventError(
                    f"no deferred decision {eid!r} to activate: it was not made with defer=True, "
                    "or is older than the Decider remembers"
                )
            log()  # first: an activation that cannot be logged changes nothing
            if p is not None:
                p.active = True
                p.start = ts
                self._pending.move_to_end(eid)
            else:
                del self._deferred[eid]

    def reward(self, eid: str, value: float, ts: float, check: Check, log: Log) -> None:
        lesson = None
        with self._lock:
            p = self._pending.get(eid)
            counts = p is not None and p.active and p.start <= ts <= p.start + self._window
            if counts:
                assert p is not None
                if self._first:
                    if not p.rewarded:
                        lesson = Lesson(p.model, p.policy, p.arm, p.x, value)
                        check(p.model, value)
                else:
                    check(p.model, p.total + value)
            log()  # first: an outcome that cannot be logged changes nothing
            if counts:
                assert p is not None
                if lesson is not None:
                    del self._pending[eid]
                p.total += value
                p.rewarded = True
            self._expire(ts)
        if lesson is not None:
            self._learn(lesson)

    def expire(self, now: float) -> None:
        with self._lock:
            self._expire(now)

    def _expire(self, now: float, limit: int | None = None) -> None:
        """Close windows that ended before ``now`` (oldest first); the caller holds the lock."""
        done = 0
        while self._pending and (limit is None or done < limit):
            eid, p = next(iter(self._pending.items()))
            if limit is None and p.start + self._window >= now:
                break
            del self._pending[eid]
            done += 1
            if not p.active:
                continue  # deferred and never shown: teaches nothing
            if not self._first or not p.rewarded:
                self._learn(p.lesson(p.total if p.rewarded else self._default))

    def sync(self) -> None:
        pass

    # -- apprentice mode (ApprenticeCounters): this process's counters

    def apprentice_bind(self, rule: tuple[float, int] | None, switched: Switched) -> None:
        self._app_rule = rule
        self._app_switched = switched

    def apprentice_record(self, agreed: bool, ts: float) -> None:
        with self._app_lock:
            events, agreements, switched = self._app
            events += 1
            agreements += agreed
            made = not switched and _meets(self._app_rule, events, agreements)
            self._app = (events, agreements, switched or made)
        if made:  # outside the lock: it writes the log
            self._app_switched(ts, events, agreements)

    def apprentice_status(self) -> tuple[int, int, bool]:
        return self._app

    def forget(self, eids: Iterable[str]) -> int:
        n = 0
        with self._lock:
            for eid in eids:
                n += (self._pending.pop(eid, None) is not None) + (self._deferred.pop(eid, None) is not None)
        return n

    def after_fork(self) -> None:
        self._pending = OrderedDict()
        self._deferred = OrderedDict()
        self._app_lock = threading.Lock()  # a child counts on from the parent's counters, in its own memory

    def close(self) -> None:
        pass

    def __len__(self) -> int:
        """Decisions remembered (pending and deferred)."""
        return len(self._pending) + len(self._deferred)


def _unbound(lesson: Lesson) -> None:  # pragma: no cover - bind() replaces it
    raise ConfigError("this state backend is not bound to a Decider")


# --------------------------------------------------------------------------- Redis

# Keys of a namespace share one hash tag, so each script touches one slot:
#   {ns}:p:<event id>  hash of a remembered decision: m model ("" none), o policy, a arm,
#                      x model input (float64 bytes, "" none), s window start, act 0/1,
#                      tot reward total, rw 0/1 rewarded, done 1 once its window closed
#   {ns}:due           sorted set: event id -> end of its reward window (decisions a model learns from)
#   {ns}:lessons       stream of lessons (m, o, a, x, r), which every process applies in order
#   {ns}:snap          hash: id (the last lesson it includes), and per model name its to_bytes()
#   {ns}:epoch         random id of this incarnation of the state: gone when Redis lost its data
#   {ns}:trim          the stream holds no lesson before this id (the snapshot before the latest)
#   {ns}:apprentice    hash of apprentice mode's counters: events, agreements; once switched: switched (the
#                      switch's ts), sw_events, sw_agreements (aggregates only: no personal data)
# Floats cross as repr() strings (a remembered decision's window start as 8 bytes of a
# little-endian float64, which the script stores as text) and are added in Lua (IEEE doubles)
# and written back with %.17g, so every value round-trips exactly.

# KEYS: due, then each decision's hash; ARGV: window, ttl, length of the key prefix, then per
# decision: model ("" none), policy, arm, x, window start (8 bytes, a little-endian float64:
# the writer packs it in C without formatting, see nba._core.resp), active. One call remembers a
# batch (one EVALSHA for up to _REMEMBER_BATCH decisions: a call per decision cost the client and
# the server each about twice as much); returns one character per decision: "1" remembered, "0"
# the id was already there (one bulk string: an array of integers cost the writer an object each).
_REMEMBER_MANY = """
local window, ttl, cut = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]) + 1
local out, due = {}, {}
for i = 2, #KEYS do
  local k, j = KEYS[i], 4 + (i - 2) * 6
  if redis.call('HEXISTS', k, 'a') == 1 then
    out[i - 1] = '0'
  else
    local s = struct.unpack('<d', ARGV[j + 4])
    redis.call('HSET', k, 'm', ARGV[j], 'o', ARGV[j + 1], 'a', ARGV[j + 2], 'x', ARGV[j + 3],
               's', string.format('%.17g', s), 'act', ARGV[j + 5], 'tot', '0', 'rw', '0')
    redis.call('EXPIRE', k, ttl)
    if ARGV[j] ~= '' then
      due[#due + 1] = s + window
      due[#due + 1] = string.sub(k, cut)
    end
    out[i - 1] = '1'
  end
end
if #due > 0 then redis.call('ZADD', KEYS[1], unpack(due)) end
return table.concat(out)
"""

_PEEK = """
return redis.call('HMGET', KEYS[1], 'a', 'm', 's', 'act', 'tot', 'rw', 'done')
"""

# ARGV: ts, window, event id, tombstone ttl. A decision no model learns from is shown once, then
# spent (as EmbeddedState forgets it): activating it again is an unknown id.
_ACTIVATE = """
local h = redis.call('HMGET', KEYS[1], 'a', 'm', 'done')
if not h[1] then return 0 end
if h[3] then return -1 end
if h[2] == '' then
  redis.call('HSET', KEYS[1], 'act', '1', 's', ARGV[1], 'done', '1')
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return 1
end
redis.call('HSET', KEYS[1], 'act', '1', 's', ARGV[1])
redis.call('ZADD', KEYS[2], tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[3])
return 1
"""

# ARGV: value, ts, window, aggregate, lo, hi, event id, tombstone ttl, operation id, then per model
# that learns: its name, lowest and highest reward (a sum is checked against its decision's model's
# range; lo, hi are for a model not listed). An operation id seen before is not counted again: a
# pipeline re-sent after a lost reply may repeat it.
_REWARD = """
local h = redis.call('HMGET', KEYS[1], 'a', 'm', 'o', 'x', 's', 'act', 'tot', 'rw', 'done')
if not h[1] then return {0} end
if redis.call('HSETNX', KEYS[1], 'op:' .. ARGV[9], '1') == 0 then return {4} end
if h[9] or h[2] == '' then return {1} end
local s, ts = tonumber(h[5]), tonumber(ARGV[2])
if h[6] ~= '1' or ts < s or ts > s + tonumber(ARGV[3]) then return {1} end
if ARGV[4] == 'first' then
  if h[8] == '1' then return {1} end
  redis.call('XADD', KEYS[3], '*', 'm', h[2], 'o', h[3], 'a', h[1], 'x', h[4], 'r', ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[7])
  redis.call('HSET', KEYS[1], 'rw', '1', 'done', '1')
  redis.call('HDEL', KEYS[1], 'x')
  redis.call('EXPIRE', KEYS[1], ARGV[8])
  return {2}
end
local tot = tonumber(h[7]) + tonumber(ARGV[1])
local lo, hi = tonumber(ARGV[5]), tonumber(ARGV[6])
for i = 10, #ARGV - 2, 3 do
  if ARGV[i] == h[2] then lo, hi = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]) end
end
if tot < lo or tot > hi then return {3} end
redis.call('HSET', KEYS[1], 'tot', string.format('%.17g', tot), 'rw', '1')
return {2}
"""

# KEYS: due, lessons; ARGV: now, limit, default reward, aggregate, key prefix, tombstone ttl
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, eid in ipairs(ids) do
  redis.call('ZREM', KEYS[1], eid)
  local k = ARGV[5] .. eid
  local h = redis.call('HMGET', k, 'a', 'm', 'o', 'x', 'act', 'tot', 'rw', 'done')
  if h[1] and not h[8] then
    if h[5] == '1' and (ARGV[4] == 'sum' or h[7] ~= '1') then
      local r = ARGV[3]
      if h[7] == '1' then r = h[6] end
      redis.call('XADD', KEYS[2], '*', 'm', h[2], 'o', h[3], 'a', h[1], 'x', h[4], 'r', r)
    end
    redis.call('HSET', k, 'done', '1')
    redis.call('HDEL', k, 'x')
    redis.call('EXPIRE', k, ARGV[6])
  end
end
return #ids
"""

# KEYS: snap, lessons, trim; ARGV: id, then model name / state pairs. Replaces an older
# snapshot and trims the stream to the one it replaces, saying where in trim: a process
# still behind it catches up from the new snapshot (_apply_lessons).
_SNAPSHOT = """
local function older(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
local cur = redis.call('HGET', KEYS[1], 'id')
if cur and not older(cur, ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'id', unpack(ARGV))
if cur then
  redis.call('XTRIM', KEYS[2], 'MINID', cur)
  redis.call('SET', KEYS[3], cur)
end
return 1
"""


# KEYS: apprentice; ARGV: events, agreements (this process's since its last call), threshold, min_events,
# rule (1: may switch, 0: count only), ts (the latest counted decision's). Adds the counts and, if they
# now meet the rule and nobody switched, switches (compare-and-set: one caller ever gets made = 1).
# Returns events, agreements, switched ('' not yet: the switch's ts), made, and the switch's counts.
_APPRENTICE = """
local e = redis.call('HINCRBY', KEYS[1], 'events', ARGV[1])
local a = redis.call('HINCRBY', KEYS[1], 'agreements', ARGV[2])
local sw = redis.call('HMGET', KEYS[1], 'switched', 'sw_events', 'sw_agreements')
if not sw[1] and ARGV[5] == '1' and e > 0 and e >= tonumber(ARGV[4]) and a / e >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'switched', ARGV[6], 'sw_events', e, 'sw_agreements', a)
  return {e, a, ARGV[6], 1, e, a}
end
return {e, a, sw[1] or '', 0, tonumber(sw[2] or '0'), tonumber(sw[3] or '0')}
"""


# Decisions queued before decide() wakes the writer: it writes every flush_interval regardless (at
# 30k decisions/s, ~60 a tick), so decide() rarely pays an Event.set and the writer takes the GIL
# about once a tick; 64 woke it about twice as often (issue 10).
_WAKE_BATCH = 256
# Decisions remembered by one script call (its arguments: 6 per decision).
_REMEMBER_BATCH = 256


def _warn(msg: str) -> None:
    warnings.warn(msg, StateWarning, stacklevel=3)


class RedisState:
    """Decision state in Redis, shared by every process (and host) whose Deciders use the same namespace.

    ``url``: a Redis URL (``redis://host:6379/0``) or a ready ``redis.Redis`` client.
    ``namespace``: keys are ``{namespace}:...``; Deciders sharing it must share
    their catalogue, models' kinds and settings, reward window and aggregate rule.

    ``decide()`` makes no round trip: the decision is queued and written by a
    background thread within ``flush_interval`` seconds. ``activate`` and ``reward``
    make two short ones; an id not found yet (the deciding process's queue may not
    have been written) is looked for again for ``grace`` seconds before it counts as
    unknown. Each process applies every lesson (a reward, or the default reward of a
    window closed by whichever process claimed it) from a Redis stream as it arrives:
    its models lag the shared state by the network latency, and by at most
    ``sync_interval`` seconds after a reset. Every ``snapshot_every`` lessons the merged
    models are saved, so a process that starts later begins from them and the stream
    stays bounded.

    When Redis is unreachable, decisions go on from local state: queued writes are
    kept (at most ``max_pending``, oldest dropped) and retried, activations and
    rewards are logged and queued too, a ``StateWarning`` is issued once per outage
    and ``stats()`` counts what happened. If Redis comes back empty (restarted
    without persistence), one process re-seeds it with its models and the others
    take them; decisions pending at the time teach nothing. A process killed with
    SIGKILL loses only its queue (decisions of the last ``flush_interval``), whose
    records are in its log all the same.
    """

    def __init__(self, url: Any, *, namespace: str = "nba", flush_interval: float = 0.002,
                 sync_interval: float = 0.05, claim_interval: float = 0.1, grace: float = 0.05,
                 snapshot_every: int = 10_000) -> None:
        self._client: Any  # redis-py's return types are unions of every reply type: the replies are checked here
        self._client, _, tag = _redis.connect(url, namespace, "RedisState")
        import redis

        for name, v in (("flush_interval", flush_interval), ("sync_interval", sync_interval),
                        ("claim_interval", claim_interval), ("grace", grace)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v <= 60):
                raise ConfigError(f"RedisState: {name} must be seconds in (0, 60], got {v!r}")
        if isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int) or snapshot_every < 1:
            raise ConfigError(f"RedisState: snapshot_every must be a positive int, got {snapshot_every!r}")
        self._redis_mod = redis
        self.namespace = namespace
        self._prefix = f"{tag}:p:"
        self._due = f"{tag}:due"
        self._lessons = f"{tag}:lessons"
        self._snap = f"{tag}:snap"
        self._trim = f"{tag}:trim"
        self._epoch_key = f"{tag}:epoch"
        self._app_key = f"{tag}:apprentice"
        self._app_rule: tuple[float, int] | None = None
        self._app_switched: Switched = _no_switch
        self._app_bound = False
        self._app_shared = (0, 0, False)  # the counters as Redis last answered (replaced whole)
        self._flush_interval = float(flush_interval)
        self._sync_interval = float(sync_interval)
        self._claim_interval = float(claim_interval)
        self._grace = float(grace)
        self._snapshot_every = snapshot_every
        self._scripts = {name: self._client.register_script(src) for name, src in (
            ("remember", _REMEMBER_MANY), ("peek", _PEEK), ("activate", _ACTIVATE), ("reward", _REWARD),
            ("claim", _CLAIM), ("snapshot", _SNAPSHOT), ("apprentice", _APPRENTICE))}
        self._settings: Settings | None = None
        self._learn: Learn = _unbound
        self._closed = False
        self._counts = {"queued": 0, "written": 0, "dropped": 0, "redis_errors": 0, "lessons": 0,
                        "claimed": 0, "snapshots": 0, "restores": 0, "duplicate_ids": 0, "learn_refused": 0}
        self._init_process()

    # -- per process (again in a forked child)

    def _init_process(self) -> None:
        self._lock = threading.Lock()
        # Held while lessons are applied and while the models or the stream position are replaced (a
        # restore): sync() and the reader thread both apply lessons, each lesson must be learned once.
        self._apply_lock = threading.RLock()
        self._wake = threading.Event()
        self._outbox: deque[tuple[Any, ...]] = deque()
        self._outbox_lock = threading.Lock()
        self._resent: set[str] = set()
        self._op_prefix = secrets.token_hex(6) + "-"
        self._op_counter = itertools.count(1)
        self._last_id = "0-0"
        self._epoch: bytes | None = None
        self._since_snapshot = 0
        self._down = False
        self._stop = False
        self._threads: list[threading.Thread] = []
        self._conn: Any = None  # the writer's own connection (see _send), made when first needed
        # Apprentice counts of this process not yet added in Redis (events, agreements, the latest decision's
        # ts), and those in flight (sent, not answered): apprentice_status adds both to the shared counters.
        self._app_lock = threading.Lock()
        self._app_events = self._app_agreements = 0
        self._app_ts = 0.0
        self._app_flight = (0, 0)
        self._app_next_poll = 0.0

    def bind(self, settings: Settings, learn: Learn) -> None:
        if self._settings is not None:
            raise ConfigError("this RedisState already serves a Decider; give each Decider its own")
        if not math.isfinite(settings.window):
            raise ConfigError("RedisState needs a finite reward_window (Redis keeps each decision that long)")
        self._settings = settings
        self._learn = learn
        self._tomb_ttl = int(settings.window) + 60
        self._ttl = int(max(settings.window, 3600.0) * 2) + 60
        try:
            self._join()
        except self._redis_mod.RedisError as e:
            self._outage(e)
        self._start()

    def _join(self) -> None:
        """Take the shared models (the latest snapshot, then every lesson since) before serving."""
        self._client.set(self._epoch_key, secrets.token_hex(8), nx=True)
        self._epoch = self._client.get(self._epoch_key)
        self._restore()
        self._apply_lessons(block_ms=None)

    def _restore(self) -> bool:
        """Load the snapshot's models, if there is one; True if loaded."""
        snap = self._client.hgetall(self._snap)
        if not snap:
            return False
        assert self._settings is not None
        with self._apply_lock:
            for name, learner in self._settings.learners.items():
                data = snap.get(name.encode())
                if data is None:
                    continue
                try:
                    learner.load_state(data)
                except ModelFormatError as e:
                    raise ConfigError(
                        f"RedisState namespace {self.namespace!r} holds model {name!r} of another kind or settings "
                        f"than this Decider's ({e}); use another namespace or the same model"
                    ) from None
            self._last_id = snap[b"id"].decode()
            self._since_snapshot = 0
            self._counts["restores"] += 1
        return True

    def _start(self) -> None:
        self._stop = False
        self._threads = [threading.Thread(target=self._writer_loop, name="nba-state-writer", daemon=True),
                         threading.Thread(target=self._reader_loop, name="nba-state-reader", daemon=True)]
        for t in self._threads:
            t.start()
        _LIVE.add(self)

    # -- the Decider's calls

    def remember(self, eid: str, model: str | None, policy: str, arm: int, x: np.ndarray | None, ts: float,
                 active: bool) -> None:
        self._queue(("remember", eid, model or "", policy, arm, b"" if x is None else x.tobytes(), ts, active))

    def _queue(self, op: tuple[Any, ...]) -> None:
        assert self._settings is not None
        with self._outbox_lock:
            self._outbox.append(op)
            self._counts["queued"] += 1
            if len(self._outbox) > self._settings.max_pending:
                self._outbox.popleft()
                self._counts["dropped"] += 1
        if op[0] != "remember" or len(self._outbox) >= _WAKE_BATCH:
            self._wake.set()  # else the writer's next tick (flush_interval) writes the batch

    def activate(self, eid: str, ts: float, log: Log) -> None:
        assert self._settings is not None
        h = self._with_grace(lambda: self._scripts["peek"](keys=[self._prefix + eid]), eid, found=_found)
        if h is None and self._down:  # log it, apply it when Redis is back
            log()
            self._queue(("activate", eid, ts))
            return
        if h is None or h[6] is not None:  # unknown, or its window has closed
            raise UnknownEventError(
                f"no deferred decision {eid!r} to activate: it was not made with defer=True, "
                "its window has closed, or it is older than the shared state keeps"
            )
        log()  # first: an activation that cannot be logged changes nothing
        try:
            self._scripts["activate"](keys=[self._prefix + eid, self._due],
                                      args=[repr(ts), repr(self._settings.window), eid, self._tomb_ttl])
        except self._redis_mod.RedisError as e:
            self._outage(e)
            self._queue(("activate", eid, ts))

    def reward(self, eid: str, value: float, ts: float, check: Check, log: Log) -> None:
        assert self._settings is not None
        s = self._settings
        h = self._with_grace(lambda: self._scripts["peek"](keys=[self._prefix + eid]), eid, found=_found)
        if h is None:  # unknown, or Redis is down: logged; when down, counted once Redis is back
            log()
            if self._down:
                self._queue(("reward", eid, value, ts, self._op_id()))
            return
        _, model, start, act, tot, rw, done = h
        if model and not done and act == b"1" and float(start) <= ts <= float(start) + s.window:
            if s.aggregate == "first":
                if rw != b"1":
                    check(model.decode(), value)
            else:
                check(model.decode(), float(tot) + value)
        log()
        self._apply_reward(eid, value, ts)

    def _op_id(self) -> str:
        return f"{self._op_prefix}{next(self._op_counter):x}"

    def _apply_reward(self, eid: str, value: float, ts: float) -> None:
        assert self._settings is not None
        s = self._settings
        opid = self._op_id()
        try:
            r = self._scripts["reward"](keys=[self._prefix + eid, self._due, self._lessons],
                                        args=self._reward_args(value, ts, eid, opid))
        except self._redis_mod.RedisError as e:  # it may have run: the queued retry has the same id
            self._outage(e)
            self._queue(("reward", eid, value, ts, opid))
            return
        if int(r[0]) == 3:  # another process's reward made the sum unlearnable since the check
            self._counts["learn_refused"] += 1
            from nba.decider import LearnWarning

            warnings.warn(f"reward {value!r} of {eid!r} was not learned: the sum left the model's range",
                          LearnWarning, stacklevel=3)
        if s.aggregate == "first" and int(r[0]) == 2:
            self._wake.set()

    def _reward_args(self, value: float, ts: float, eid: str, opid: str) -> list[Any]:
        """The reward script's arguments: each model's own reward range bounds a sum of its decisions
        (models are read now: ``swap_model`` may have replaced one by another kind)."""
        assert self._settings is not None
        s = self._settings
        args: list[Any] = [repr(value), repr(ts), repr(s.window), s.aggregate, "-inf", "inf", eid, self._tomb_ttl,
                           opid]
        for name, m in list(s.learners.items()):
            lo, hi = getattr(m, "reward_range", (-math.inf, math.inf))
            args += [name, repr(float(lo)), repr(float(hi))]
        return args

    def _with_grace(self, call: Callable[[], Any], eid: str, found: Callable[[Any], bool] = bool) -> Any:
        """call() until it finds eid (``found``) or ``grace`` has passed; None if not found or Redis is down."""
        deadline = time.monotonic() + self._grace
        self._flush_own(eid)
        while True:
            try:
                r = call()
            except self._redis_mod.RedisError as e:
                self._outage(e)
                return None
            self._recovered()
            if found(r):
                return r
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(self._flush_interval, 0.005))

    def _flush_own(self, eid: str) -> None:
        """Write the queue now if it holds eid (an activation right after its own decision)."""
        with self._outbox_lock:
            mine = any(op[1] == eid for op in self._outbox)
        if mine:
            self._write_outbox()

    def expire(self, now: float) -> None:
        self._write_outbox()  # first: a decision still in the queue may be one whose window has ended
        self._claim(now)

    def _claim(self, now: float) -> int:
        assert self._settings is not None
        s = self._settings
        total = 0
        while True:
            try:
                n = int(self._scripts["claim"](keys=[self._due, self._lessons],
                                               args=[repr(now), 512, repr(s.default_reward), s.aggregate,
                                                     self._prefix, self._tomb_ttl]))
            except self._redis_mod.RedisError as e:
                self._outage(e)
                return total
            self._recovered()
            total += n
            self._counts["claimed"] += n
            if n < 512:
                return total

    def sync(self) -> None:
        self._write_outbox()
        if self._app_bound:
            self._apprentice_sync(time.monotonic(), force=True)
        try:
            self._check_epoch()  # a reset first: lessons of a re-seeded stream go on the re-seeded models
            self._apply_lessons(block_ms=None)
        except self._redis_mod.RedisError as e:
            self._outage(e)

    def after_fork(self) -> None:
        # The child's models are the parent's at the fork, which happened between two lessons (the
        # at-fork hook below holds the apply lock): it goes on from the parent's place in the stream.
        # (From "0-0" it learned again every lesson the parent had learned.)
        place = self._last_id, self._epoch, self._since_snapshot
        self._init_process()
        self._last_id, self._epoch, self._since_snapshot = place
        self._counts = dict.fromkeys(self._counts, 0)  # stats() counts this process's work
        # A new pool of connections, not pool.reset(): reset() takes the pool's lock, which one of the
        # parent's threads may have held at the fork (the child then waited for it forever).
        pool = self._client.connection_pool
        self._client.connection_pool = type(pool)(connection_class=pool.connection_class,
                                                  max_connections=pool.max_connections, **pool.connection_kwargs)
        if self._settings is not None and not self._closed:  # a closed one stays closed in a child
            self._start()

    # -- apprentice mode (ApprenticeCounters): counted here, added in Redis by the writer

    def apprentice_bind(self, rule: tuple[float, int] | None, switched: Switched) -> None:
        self._app_rule = rule
        self._app_switched = switched
        self._app_bound = True
        self._apprentice_sync(time.monotonic(), force=True)  # start from the shared counters (and switch)

    def apprentice_record(self, agreed: bool, ts: float) -> None:
        with self._app_lock:
            self._app_events += 1
            self._app_agreements += agreed
            if ts > self._app_ts:
                self._app_ts = ts

    def _apprentice_call(self, args: list[Any]) -> list[Any]:
        """The counters' script on the writer's connection (``_send``: the round trip without the GIL, so
        deciding threads keep running); the caller holds ``_lock``. Redis lost its scripts: load, once more."""
        script = self._scripts["apprentice"]
        command = pack_command(("EVALSHA", script.sha, 1, self._app_key, *args))
        (reply,) = self._send([command])
        if isinstance(reply, self._redis_mod.exceptions.NoScriptError):
            self._client.script_load(script.script)
            (reply,) = self._send([command])
        if isinstance(reply, Exception):
            raise reply
        return list(reply)

    def apprentice_status(self) -> tuple[int, int, bool]:
        with self._app_lock:
            e, a, sw = self._app_shared
            fe, fa = self._app_flight
            return e + fe + self._app_events, a + fa + self._app_agreements, sw

    def _apprentice_sync(self, t: float, force: bool = False) -> None:
        """Add this process's counts in Redis and read the shared ones (and the switch): the writer's tick.

        Each tick with new counts makes one call; an idle process asks every ``sync_interval`` until it
        sees the switch. The call that finds the rule met switches (compare-and-set in the script) and
        this process then logs the switch, from this thread. So a process serving traffic sees another's
        switch within about ``flush_interval`` plus a round trip; an idle one within ``sync_interval``.
        On a Redis error the counts are kept for the next tick."""
        with self._lock:  # the writer's connection: sync() and close() may call this beside the writer thread
            with self._app_lock:
                if not self._app_events and not force and (self._app_shared[2] or t < self._app_next_poll):
                    return
                de, da, ts = self._app_events, self._app_agreements, self._app_ts
                self._app_flight = (de, da)
                self._app_events = self._app_agreements = 0
                self._app_ts = 0.0
            rule = self._app_rule
            args = [de, da, repr(rule[0]) if rule else "1", rule[1] if rule else 0, 1 if rule else 0,
                    repr(ts if ts > 0 else time.time())]
            try:
                e, a, sw, made, sw_e, sw_a = self._apprentice_call(args)
            except self._redis_mod.RedisError as err:
                self._outage(err)
                with self._app_lock:
                    self._app_flight = (0, 0)
                    self._app_events += de
                    self._app_agreements += da
                    self._app_ts = max(self._app_ts, ts)
                return
            self._recovered()
            with self._app_lock:
                # Sticky: a switch seen stays (Redis emptied by a restart does not send workers back).
                self._app_shared = (int(e), int(a), bool(sw) or self._app_shared[2])
                self._app_flight = (0, 0)
                self._app_next_poll = t + self._sync_interval
        if int(made):
            try:
                self._app_switched(float(sw), int(sw_e), int(sw_a))
            except Exception as err:  # the writer thread must go on (the switch itself is made and shared)
                _warn(f"RedisState {self.namespace!r}: the apprentice switch was made but not logged: {err}")

    def forget(self, eids: Iterable[str]) -> int:
        """Drop the queued and the stored pending decisions of ``eids`` (Redis errors propagate: retry)."""
        gone = set(eids)
        if not gone:
            return 0
        with self._lock:  # the writer's: no batch holding them is in flight meanwhile
            with self._outbox_lock:
                kept = [op for op in self._outbox if op[1] not in gone]
                queued = len(self._outbox) - len(kept)
                self._outbox.clear()
                self._outbox.extend(kept)
            keys = [self._prefix + e for e in gone]
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(*keys)
            pipe.zrem(self._due, *gone)
            deleted, _ = pipe.execute()
        return queued + int(deleted)

    def close(self) -> None:
        self._write_outbox()
        if self._app_bound:
            self._apprentice_sync(time.monotonic(), force=True)
        self._closed = True
        self._stop = True
        self._wake.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(5)
        if self._conn is not None:
            self._conn.disconnect()

    def stats(self) -> dict[str, Any]:
        """Counters of this process: queued/written/dropped writes, Redis errors, lessons applied, claims,
        snapshots written and restored, duplicate event ids; ``connected`` and ``queue`` (length)."""
        return {**self._counts, "connected": not self._down, "queue": len(self._outbox)}

    # -- background work

    def _writer_loop(self) -> None:
        next_claim = 0.0
        while not self._stop:
            self._wake.wait(self._flush_interval if not self._down else 0.25)
            self._wake.clear()
            self._write_outbox()
            t = time.monotonic()
            if self._app_bound:
                self._apprentice_sync(t)
            if t >= next_claim and not self._stop:
                next_claim = t + self._claim_interval
                self._claim(time.time())

    def _write_outbox(self) -> None:
        """Write the queued operations in order, in one pipeline; on failure keep them for the next try."""
        with self._lock:
            with self._outbox_lock:  # taken out, so decide() appending (and dropping) meanwhile cannot mix them up
                ops = list(self._outbox)
                self._outbox.clear()
            if not ops:
                return
            assert self._settings is not None
            s = self._settings
            try:
                commands, calls = self._commands(ops)
                replies = self._send(commands)
                if any(isinstance(r, self._redis_mod.exceptions.NoScriptError) for r in replies):
                    # Redis lost its scripts (a restart, SCRIPT FLUSH): none of the calls ran. Load them and
                    # send the batch again (a reply that did run is safe to repeat: every op is idempotent).
                    for script in self._scripts.values():
                        self._client.script_load(script.script)
                    self._resent.update(op[1] for op in ops if op[0] == "remember")
                    replies = self._send(commands)
                for r in replies:
                    if isinstance(r, Exception):
                        raise r
            except self._redis_mod.RedisError as e:  # back at the front, oldest dropped beyond max_pending
                self._outage(e)
                with self._outbox_lock:
                    self._outbox.extendleft(reversed(ops))
                    self._resent.update(op[1] for op in ops if op[0] == "remember")
                    while len(self._outbox) > s.max_pending:
                        self._outbox.popleft()
                        self._counts["dropped"] += 1
                return
            self._recovered()
            self._counts["written"] += len(ops)
            dup = 0
            for carried, reply in zip(calls, replies):
                if carried[0][0] != "remember" or b"0" not in reply:
                    continue
                for op, r in zip(carried, reply):
                    if r == 48 and op[1] not in self._resent:  # b"0"; a re-sent batch's were written before
                        dup += 1
            self._resent.clear()
            if dup:
                self._counts["duplicate_ids"] += dup
                _warn(f"{dup} event id(s) were already in the shared state: ids must be unique across processes")

    def _commands(self, ops: list[tuple[Any, ...]]) -> tuple[list[bytes], list[list[tuple[Any, ...]]]]:
        """The EVALSHA commands (RESP bytes) that write ``ops`` in order, and per command the ops it carries.

        Consecutive decisions share one call of the batch script (up to _REMEMBER_BATCH), packed in
        the compiled core (``resp.pack_remember``: no Python object per decision, the bytes written
        without the GIL); an activation or reward is a call of its own, after the decisions before it."""
        assert self._settings is not None
        window = repr(self._settings.window)
        sha = self._scripts["remember"].sha.encode()
        fixed = pack_args((window, self._ttl, len(self._prefix)))
        due, prefix = self._due.encode(), self._prefix.encode()
        commands: list[bytes] = []
        calls: list[list[tuple[Any, ...]]] = []
        i, n = 0, len(ops)
        while i < n:
            packed, j = pack_remember(ops, i, _REMEMBER_BATCH, sha, due, prefix, fixed, 3)
            if packed is not None:
                commands.append(packed)
                calls.append(ops[i:j])
                i = j
                continue
            op = ops[i]
            i += 1
            kind, eid = op[0], op[1]
            if kind == "activate":
                commands.append(pack_command(("EVALSHA", self._scripts["activate"].sha, 2, self._prefix + eid,
                                              self._due, repr(op[2]), window, eid, self._tomb_ttl)))
            elif kind == "reward":
                commands.append(pack_command(("EVALSHA", self._scripts["reward"].sha, 3, self._prefix + eid,
                                              self._due, self._lessons,
                                              *self._reward_args(op[2], op[3], eid, op[4]))))
            else:
                continue
            calls.append([op])
        return commands, calls

    def _send(self, commands: list[bytes]) -> list[Any]:
        """Send ``commands`` (RESP bytes) in one write and read their replies: one round trip. An error
        reply is returned as its exception; a connection error disconnects and raises.

        The writer's own connection, without redis-py's pipeline object (which checks each batch's
        scripts with SCRIPT EXISTS first, a second round trip). Measured against the pipeline in
        the same runs: the writer's CPU per decision fell by a third (20,000 decisions in batches
        of 32, three runs), and what RedisState adds to decide()'s p50 in another thread from
        7-12 us to 1.0-1.6 us (bench_state, two runs each).

        On a plain TCP or unix socket the whole round trip is ``resp.exchange``: send and read every
        reply without the GIL, which the writer then takes back once, not after each send and recv
        (each a forced handoff from decide() in another thread, up to the 5 ms switch interval)."""
        conn = self._conn
        if conn is None:
            pool = self._client.connection_pool
            conn = self._conn = pool.connection_class(**pool.connection_kwargs)
        payload = b"".join(commands)
        try:
            sock = getattr(conn, "_sock", None)
            if sock is None:
                conn.connect()
                sock = getattr(conn, "_sock", None)
            if type(sock) is socket.socket:
                # Plain TCP or a unix socket (RESP2 or 3): the whole round trip without the GIL (one handoff a batch,
                # not one after each send and recv); redis-py made the connection and parses the errors.
                try:
                    data = exchange(sock.fileno(), payload, len(commands), conn.socket_timeout or 0.0)
                except TimeoutError as e:
                    raise self._redis_mod.TimeoutError(str(e)) from None
                except OSError as e:  # ConnectionError is one
                    raise self._redis_mod.ConnectionError(f"the writer's connection: {e}") from None
                return [self._reply_error(conn, r.message) if isinstance(r, ReplyError) else r
                        for r in parse_replies(data, len(commands))]
            conn.send_packed_command([payload])  # TLS: redis-py's own I/O (a list: it iterates it)
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except self._redis_mod.ResponseError as e:
                    replies.append(e)
            return replies
        except BaseException:
            conn.disconnect()
            raise

    def _reply_error(self, conn: Any, message: str) -> Exception:
        """redis-py's exception for an error reply (NOSCRIPT -> NoScriptError, ...), as its parser would give."""
        parser = getattr(conn, "_parser", None)
        if parser is not None and hasattr(parser, "parse_error"):
            return parser.parse_error(message)
        exc = self._redis_mod.exceptions
        return exc.NoScriptError(message) if message.startswith("NOSCRIPT") else exc.ResponseError(message)

    def _reader_loop(self) -> None:
        while not self._stop:
            try:
                self._check_epoch()
                self._apply_lessons(block_ms=max(1, int(self._sync_interval * 1000)))
                self._recovered()
            except self._redis_mod.RedisError as e:
                self._outage(e)
                time.sleep(min(0.25, self._sync_interval * 5))

    def _apply_lessons(self, block_ms: int | None) -> None:
        """Apply the lessons after the last one applied: once (block_ms None: until none is left), or waiting."""
        while True:
            start = self._last_id
            res = self._client.xread({self._lessons: start}, count=512, block=block_ms)
            if not res:
                return
            entries = res[0][1]
            # Read after the entries: trimming only moves forward, so if the stream was not trimmed past
            # where this read started, the read missed nothing.
            trim = self._client.get(self._trim)
            snapshot = None
            with self._apply_lock:  # local work only (a fork waits for it): no round trip inside
                # sync() and the reader thread read concurrently: apply only what the other has not.
                after = _stream_id(self._last_id)
                if after < _stream_id(start):  # a restore moved the position back meanwhile: read again
                    continue
                behind = trim is not None and _stream_id(trim) > after
                if not behind:
                    for entry_id, f in entries:
                        sid = _stream_id(entry_id)
                        if sid <= after:
                            continue
                        x = f.get(b"x") or b""
                        self._learn(Lesson(f[b"m"].decode(), f[b"o"].decode(), int(f[b"a"]),
                                           np.frombuffer(x, dtype=np.float64).copy() if x else None,
                                           float(f[b"r"])))
                        self._last_id = entry_id.decode()
                        after = sid
                        self._counts["lessons"] += 1
                        self._since_snapshot += 1
                    if self._since_snapshot >= self._snapshot_every:
                        snapshot = self._snapshot_args()
            if behind:
                # Behind a trim (a process paused, or cut off from Redis, while the others wrote snapshot
                # after snapshot): lessons it needs are gone from the stream; the snapshot holds them.
                if self._restore():
                    _warn(f"RedisState {self.namespace!r}: this process fell behind the shared lessons, which were "
                          "trimmed; took the latest snapshot of the models")
                continue
            if snapshot is not None:
                self._send_snapshot(snapshot)
            if block_ms is not None or len(entries) < 512:
                return

    def _snapshot_args(self) -> list[Any]:
        """The models and the id of the last lesson they include (the caller holds ``_apply_lock``)."""
        assert self._settings is not None
        args: list[Any] = [self._last_id]
        for name, learner in self._settings.learners.items():
            args += [name, learner.to_bytes()]
        self._since_snapshot = 0
        return args

    def _send_snapshot(self, args: list[Any]) -> None:
        if self._scripts["snapshot"](keys=[self._snap, self._lessons, self._trim], args=args):
            self._counts["snapshots"] += 1

    def _check_epoch(self) -> None:
        """After Redis lost its data: the first process to notice re-seeds it with its models; the others take them."""
        epoch = self._client.get(self._epoch_key)
        if epoch == self._epoch and epoch is not None:
            return  # the common case, without the apply lock
        with self._apply_lock:  # rare: no lesson is applied while the models and the position change
            self._adopt_epoch()

    def _adopt_epoch(self) -> None:
        epoch = self._client.get(self._epoch_key)
        if epoch == self._epoch and epoch is not None:
            return  # another thread of this process took it meanwhile
        if epoch is None:
            mine = secrets.token_hex(8)
            if self._client.set(self._epoch_key, mine, nx=True):
                self._epoch = mine.encode()
                self._last_id = "0-1"  # the re-seeded snapshot's id: every later lesson follows it
                self._send_snapshot(self._snapshot_args())
                _warn(f"RedisState {self.namespace!r}: Redis had lost its data; re-seeded it with this process's "
                      "models (decisions pending at the time teach nothing)")
                return
            epoch = self._client.get(self._epoch_key)
        deadline = time.monotonic() + 1.0
        while not self._restore() and time.monotonic() < deadline:
            time.sleep(0.01)  # the re-seeding process writes its snapshot right after the epoch
        self._epoch = epoch
        _warn(f"RedisState {self.namespace!r}: the shared state was reset; took the re-seeded models")

    def _outage(self, e: Exception) -> None:
        self._counts["redis_errors"] += 1
        if not self._down:
            self._down = True
            _warn(f"RedisState {self.namespace!r}: Redis is unreachable ({type(e).__name__}: {e}); "
                  "deciding from local state, queueing writes")

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            self._wake.set()


def _found(h: Any) -> bool:
    return bool(h) and h[0] is not None


def _stream_id(entry_id: str | bytes) -> tuple[int, int]:
    """A stream entry id ("<ms>-<seq>") as a pair that orders like the stream."""
    ms, _, seq = (entry_id.decode() if isinstance(entry_id, bytes) else entry_id).partition("-")
    return int(ms), int(seq or 0)


_LIVE: weakref.WeakSet[RedisState] = weakref.WeakSet()
_FORKING: list[RedisState] = []


def _before_fork() -> None:
    """Fork between two lessons: a child's models and its place in the stream must agree."""
    for s in list(_LIVE):
        s._apply_lock.acquire()
        _FORKING.append(s)


def _after_fork_in_parent() -> None:
    while _FORKING:
        _FORKING.pop()._apply_lock.release()


def _after_fork_in_child() -> None:
    while _FORKING:
        _FORKING.pop()._apply_lock = threading.RLock()  # the Decider's at-fork hook then renews the rest


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                     after_in_child=_after_fork_in_child)
