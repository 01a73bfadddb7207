"""Contact policy and contact history: how often, when and on which channel a customer may be contacted.

A ``ContactPolicy`` is a list of declarative rules evaluated at decision time over a
profile's ``History`` (every contact on every channel, and the outcomes of offers):

- ``Cap(limit, window, per=...)``: at most ``limit`` contacts in a window, counted per
  arm, per arm group, per channel or over all contacts ("at most 3 offers a week",
  "never the same offer twice in a day");
- ``Gap(seconds, channel, after)``: no contact on ``channel`` within ``seconds`` of a
  contact on ``after`` ("no email within 2 hours of a push");
- ``Suppress(outcomes, seconds, per=...)``: an arm (or its group) with one of
  ``outcomes`` (accepted, rejected...) is suppressed for ``seconds``;
- ``QuietHours(start, end, tz, channels)``: no contact in a local time range, which
  may span midnight.

Windows are ``Rolling(seconds)`` (as Pega's rolling periods) or ``Calendar(unit, tz,
week_start)`` (the calendar day, week or month in a time zone, as Braze and Iterable
count). The boundary, the same for every rule: **an entry counts when its ts is at or
after the window start**: ``ts >= now - seconds`` for a rolling window (so a contact
exactly ``seconds`` ago still counts, and one a microsecond older does not), ``ts >=``
the local midnight that starts the day, week or month for a calendar window. Entries
after ``now`` (another process's clock a little ahead) count too: a cap errs on the
side of not contacting. Calendar period starts are computed with ``zoneinfo``, so a
week across a DST change is 167 or 169 hours; a local midnight that does not exist
(a zone that springs forward at midnight) starts the day at the first instant that does.

Transactional arms (``ContactPolicy(transactional=...)``: a password reset, an order
confirmation) bypass every rule, and their contacts and outcomes are **recorded in the
history but counted by no rule**: a receipt does not use up the week's marketing cap.

Reason codes: a suppressed arm gets the reason of the first rule, in the order given,
that blocks it; short stable strings for logs and dashboards to group by:

==========================================  ==========================================
``cap:arm:1/86400s``                         per-arm cap, rolling window of 86400 s
``cap:all:3/week``                           cap over all contacts, calendar week
``cap:group:promos:2/day``                   cap over the arms of group ``promos``
``cap:channel:email:2/day``                  per-channel cap, on the decision's channel
``cap:all@sms:1/day``                        ``channel="sms"``: only sms contacts count
``gap:push>email:7200s``                     an email within 7200 s of a push
``suppressed:accepted``                      this arm was accepted within the duration
``suppressed:group:rejected``                an arm of its group was rejected
``quiet_hours``                              inside quiet hours on this channel
==========================================  ==========================================

``ContactPolicy.reasons`` lists every code a policy can give (per-channel caps with
``channel=None`` give one code per channel, written ``cap:channel:*:...`` there).

A ``ContactStore`` holds histories by profile key: ``EmbeddedContactStore`` (this
process) and ``RedisContactStore`` (shared by processes and hosts). ``reserve`` is the
decision's check-and-record: atomic, so caps are never exceeded under concurrent
decisions. The Redis store does it as a versioned compare-and-set (read the history
and its version, evaluate ``ContactPolicy.check`` in Python, commit with a Lua script
only if the version is unchanged, else retry on the returned current value), so the
rules have one implementation, and calendar boundaries are computed in Python.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec.structs import force_setattr

from nba import _redis, _validate
from nba._core.locks import PoliteLock
from nba.errors import ConfigError, ContactError, ModelFormatError, SchemaError

__all__ = [
    "Cap",
    "Calendar",
    "Contact",
    "ContactPolicy",
    "ContactStore",
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_RETENTION",
    "EmbeddedContactStore",
    "Gap",
    "History",
    "Outcome",
    "QuietHours",
    "RedisContactStore",
    "Rolling",
    "Rule",
    "Suppress",
    "Window",
]

#: Entries (contacts, and separately outcomes) a store keeps per profile, the newest: a bound on
#: a runaway profile. Counts are exact while a profile has at most this many within the horizon.
DEFAULT_MAX_ENTRIES = 1000

_DAY = 86400.0
# How far back a calendar period can start, with a margin for DST shifts (a 31-day month plus an hour).
_CALENDAR_REACH = {"day": 2 * _DAY, "week": 8 * _DAY, "month": 32 * _DAY}


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
        raise ConfigError(f"{what} must be a positive finite number of seconds, got {value!r}")
    return float(value)


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty str, got {value!r}")
    _validate.config_text(value, what)
    return value


def _zone(tz: Any, what: str) -> ZoneInfo:
    if not isinstance(tz, str) or not tz:
        raise ConfigError(f"{what}: tz must be an IANA time zone name such as 'Europe/Paris', got {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{what}: unknown time zone {tz!r}; use an IANA name such as 'Europe/Paris' "
                          "(install tzdata where the system has none)") from None


# --------------------------------------------------------------------------- windows


class Rolling(msgspec.Struct, frozen=True):
    """The last ``seconds`` before now: an entry counts when ``ts >= now - seconds``."""

    seconds: float

    def __post_init__(self) -> None:
        force_setattr(self, "seconds", _seconds(self.seconds, "Rolling: seconds"))

    def start(self, now: float) -> float:
        """The earliest ts that counts at ``now``."""
        return now - self.seconds

    @property
    def label(self) -> str:
        """The window in a reason code: ``86400s``."""
        return f"{self.seconds:g}s"

    @property
    def reach(self) -> float:
        """How far back of now the window can start, seconds."""
        return self.seconds


_UNITS = ("day", "week", "month")


class Calendar(msgspec.Struct, frozen=True):
    """The current calendar ``unit`` ("day", "week", "month") in time zone ``tz``, from its local midnight.

    ``week_start``: the first day of a week, 0 Monday (ISO) to 6 Sunday.
    """

    unit: Literal["day", "week", "month"] = "day"
    tz: str = "UTC"
    week_start: int = 0

    def __post_init__(self) -> None:
        if self.unit not in _UNITS:
            raise ConfigError(f"Calendar: unit must be one of {_UNITS}, got {self.unit!r}")
        if isinstance(self.week_start, bool) or not isinstance(self.week_start, int) or not 0 <= self.week_start <= 6:
            raise ConfigError(f"Calendar: week_start must be an int from 0 (Monday) to 6 (Sunday), "
                              f"got {self.week_start!r}")
        _zone(self.tz, "Calendar")

    def start(self, now: float) -> float:
        """The unix time of the local midnight that starts the period holding ``now`` (DST-correct)."""
        zone = ZoneInfo(self.tz)  # cached by zoneinfo
        local = datetime.fromtimestamp(now, zone)
        day = local.date()
        if self.unit == "week":
            day -= timedelta(days=(day.weekday() - self.week_start) % 7)
        elif self.unit == "month":
            day = day.replace(day=1)
        # fold=0: an ambiguous midnight is its first occurrence; a missing one maps to the instant the
        # clocks jumped (the first instant of that day that exists).
        return datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()

    @property
    def label(self) -> str:
        """The window in a reason code: ``day``, ``week``, ``month``."""
        return self.unit

    @property
    def reach(self) -> float:
        """How far back of now the period can start, seconds (a bound, DST included)."""
        return _CALENDAR_REACH[self.unit]


Window = Rolling | Calendar


# --------------------------------------------------------------------------- rules

_CAP_PER = ("arm", "group", "channel", "all")


class Cap(msgspec.Struct, frozen=True):
    """At most ``limit`` contacts in ``window``; a decision that would make one more is suppressed.

    ``per``: what is counted. ``"arm"``: contacts of the candidate arm; ``"group"``:
    contacts of any arm of group ``group`` (the cap applies to that group's arms only);
    ``"channel"``: contacts on the decision's channel; ``"all"``: every contact.
    ``channel``: when set, the cap applies only to decisions on that channel and only
    that channel's contacts count.
    """

    limit: int
    window: Window
    per: Literal["arm", "group", "channel", "all"] = "all"
    group: str | None = None
    channel: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ConfigError(f"Cap: limit must be an int >= 1, got {self.limit!r} "
                              "(to never show an arm on a channel, use its eligibility)")
        if not isinstance(self.window, (Rolling, Calendar)):
            raise ConfigError(f"Cap: window must be a Rolling or a Calendar, got {self.window!r}")
        if self.per not in _CAP_PER:
            raise ConfigError(f"Cap: per must be one of {_CAP_PER}, got {self.per!r}")
        if self.per == "group":
            _name(self.group, "Cap(per='group'): group")
        elif self.group is not None:
            raise ConfigError(f"Cap: group={self.group!r} is only for per='group' (got per={self.per!r})")
        if self.channel is not None:
            _name(self.channel, "Cap: channel")

    @property
    def reason(self) -> str:
        """The reason code (for per='channel' without a channel, ``*`` stands for the decision's channel)."""
        what: str = self.per
        if self.per == "group":
            what = f"group:{self.group}"
        elif self.per == "channel":
            what = f"channel:{self.channel or '*'}"
        elif self.channel is not None:
            what = f"{self.per}@{self.channel}"
        return f"cap:{what}:{self.limit}/{self.window.label}"


class Gap(msgspec.Struct, frozen=True):
    """No contact on ``channel`` within ``seconds`` of a contact on ``after`` (which may be ``channel`` itself)."""

    seconds: float
    channel: str
    after: str

    def __post_init__(self) -> None:
        force_setattr(self, "seconds", _seconds(self.seconds, "Gap: seconds"))
        _name(self.channel, "Gap: channel")
        _name(self.after, "Gap: after")

    @property
    def reason(self) -> str:
        """The reason code: ``gap:push>email:7200s``."""
        return f"gap:{self.after}>{self.channel}:{self.seconds:g}s"


class Suppress(msgspec.Struct, frozen=True):
    """An arm with one of ``outcomes`` in the last ``seconds`` is suppressed (on every channel).

    ``per="group"``: an outcome of any arm suppresses every arm sharing a group with it,
    itself included (only group ``group`` when given); an arm in no group is not concerned.
    """

    outcomes: tuple[str, ...]
    seconds: float
    per: Literal["arm", "group"] = "arm"
    group: str | None = None

    def __post_init__(self) -> None:
        outcomes = self.outcomes
        if isinstance(outcomes, str) or not isinstance(outcomes, (tuple, list)) or not outcomes:
            raise ConfigError(f"Suppress: outcomes must be a non-empty tuple of names such as ('accepted',), "
                              f"got {outcomes!r}")
        force_setattr(self, "outcomes", tuple(_name(o, "Suppress: outcome") for o in outcomes))
        force_setattr(self, "seconds", _seconds(self.seconds, "Suppress: seconds"))
        if self.per not in ("arm", "group"):
            raise ConfigError(f"Suppress: per must be 'arm' or 'group', got {self.per!r}")
        if self.group is not None:
            if self.per != "group":
                raise ConfigError(f"Suppress: group={self.group!r} is only for per='group'")
            _name(self.group, "Suppress: group")

    @property
    def reason_prefix(self) -> str:
        return "suppressed:group:" if self.per == "group" else "suppressed:"


_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _minutes(value: Any, what: str) -> int:
    m = _HHMM.match(value) if isinstance(value, str) else None
    if m is None:
        raise ConfigError(f"{what} must be a local time 'HH:MM' from 00:00 to 23:59, got {value!r}")
    return int(m.group(1)) * 60 + int(m.group(2))


class QuietHours(msgspec.Struct, frozen=True):
    """No contact from ``start`` (included) to ``end`` (excluded), local time in ``tz``; may span midnight.

    ``channels``: the channels it applies to; empty: every channel.
    """

    start: str = "21:00"
    end: str = "08:00"
    tz: str = "UTC"
    channels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        a, b = _minutes(self.start, "QuietHours: start"), _minutes(self.end, "QuietHours: end")
        if a == b:
            raise ConfigError(f"QuietHours: start and end are both {self.start!r}; give a range of local time")
        _zone(self.tz, "QuietHours")
        if isinstance(self.channels, str) or not isinstance(self.channels, (tuple, list)):
            raise ConfigError(f"QuietHours: channels must be a tuple of channel names, got {self.channels!r}")
        force_setattr(self, "channels", tuple(_name(c, "QuietHours: channel") for c in self.channels))

    def quiet(self, channel: str, now: float) -> bool:
        """True if ``now`` is inside the quiet hours and they apply to ``channel``."""
        if self.channels and channel not in self.channels:
            return False
        local = datetime.fromtimestamp(now, ZoneInfo(self.tz))
        t = local.hour * 60 + local.minute
        a, b = _cached_minutes(self.start, "QuietHours: start"), _cached_minutes(self.end, "QuietHours: end")
        return a <= t < b if a < b else (t >= a or t < b)


_cached_minutes = functools.lru_cache(maxsize=256)(_minutes)  # quiet(): strs validated at construction

Rule = Cap | Gap | Suppress | QuietHours
_RULES = (Cap, Gap, Suppress, QuietHours)


# --------------------------------------------------------------------------- history


class Contact(msgspec.Struct, frozen=True, order=True, array_like=True, gc=False):
    """One contact: ``arm`` shown on ``channel`` at ``ts`` (unix seconds), by decision ``event`` ("" if none)."""

    ts: float
    arm: str
    channel: str
    event: str = ""


class Outcome(msgspec.Struct, frozen=True, order=True, array_like=True, gc=False):
    """One outcome of an arm (``"accepted"``, ``"rejected"``, ...) at ``ts``."""

    ts: float
    arm: str
    outcome: str


class History(msgspec.Struct, frozen=True):
    """A profile's contacts and outcomes, each oldest first; msgpack with ``to_bytes`` / ``from_bytes``."""

    contacts: tuple[Contact, ...] = ()
    outcomes: tuple[Outcome, ...] = ()

    def __post_init__(self) -> None:
        if self.contacts.__class__ is not tuple:
            force_setattr(self, "contacts", tuple(self.contacts))
        if self.outcomes.__class__ is not tuple:
            force_setattr(self, "outcomes", tuple(self.outcomes))

    def merge(self, other: History) -> History:
        """Both histories in one (for identity merges): every entry of each, ordered by time."""
        return History(tuple(sorted(self.contacts + other.contacts)),
                       tuple(sorted(self.outcomes + other.outcomes)))

    def pruned(self, since: float, max_entries: int = DEFAULT_MAX_ENTRIES) -> History:
        """Entries with ``ts >= since``, at most the newest ``max_entries`` of each kind."""
        contacts = tuple(c for c in self.contacts if c.ts >= since)[-max_entries:]
        outcomes = tuple(o for o in self.outcomes if o.ts >= since)[-max_entries:]
        if len(contacts) == len(self.contacts) and len(outcomes) == len(self.outcomes):
            return self
        return History(contacts, outcomes)

    def to_bytes(self) -> bytes:
        return _ENCODER.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> History:
        """The History ``to_bytes`` wrote; ``ModelFormatError`` on anything else."""
        try:
            return _DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise ModelFormatError(f"not a saved nba contact history ({e})") from None


def _sorted_add(entries: tuple[Any, ...], entry: Any) -> tuple[Any, ...]:
    """``entries`` with ``entry`` in time order (appended in the usual case: it is the newest)."""
    if not entries or entries[-1].ts <= entry.ts:
        return (*entries, entry)
    return tuple(sorted((*entries, entry)))


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(History)
_EMPTY = History()


# --------------------------------------------------------------------------- policy


class ContactPolicy:
    """Rules over a profile's contact history, evaluated for the candidate arms of a decision.

    ``rules``: ``Cap``, ``Gap``, ``Suppress`` and ``QuietHours``, checked in this order
    (the first that blocks an arm gives its reason). ``groups``: group name -> arm ids
    (an arm may be in several). ``transactional``: arm ids that bypass every rule; their
    contacts are recorded but counted by no rule. Immutable; safe to share by threads.
    """

    def __init__(self, rules: Iterable[Rule], *, groups: Mapping[str, Sequence[str]] | None = None,
                 transactional: Iterable[str] = ()) -> None:
        if isinstance(rules, _RULES):
            raise ConfigError("ContactPolicy: rules must be a list of rules, got a single rule: wrap it in [...]")
        self.rules: tuple[Rule, ...] = tuple(rules)
        for i, r in enumerate(self.rules):
            if not isinstance(r, _RULES):
                raise ConfigError(f"ContactPolicy: rule {i} must be a Cap, Gap, Suppress or QuietHours, got {r!r}")
        groups = {} if groups is None else groups
        if not isinstance(groups, Mapping):
            raise ConfigError(f"ContactPolicy: groups must map a group name to arm ids, got {groups!r}")
        self.groups: dict[str, tuple[str, ...]] = {}
        for g, members in groups.items():
            _name(g, "ContactPolicy: group name")
            if isinstance(members, str) or not isinstance(members, Iterable):
                raise ConfigError(f"ContactPolicy: group {g!r} must list arm ids, got {members!r}")
            self.groups[g] = tuple(dict.fromkeys(_name(a, f"ContactPolicy: group {g!r} arm") for a in members))
        if isinstance(transactional, str):
            raise ConfigError(f"ContactPolicy: transactional must be a collection of arm ids, got the str "
                              f"{transactional!r}")
        self.transactional: frozenset[str] = frozenset(_name(a, "ContactPolicy: transactional arm")
                                                       for a in transactional)
        for i, r in enumerate(self.rules):
            named = getattr(r, "group", None)
            if named is not None and named not in self.groups:
                raise ConfigError(f"ContactPolicy: rule {i} ({r!r}) names group {named!r}, which groups does not "
                                  f"define (groups: {sorted(self.groups)})")
        # arm -> the groups it is in, for per-group rules
        self._arm_groups: dict[str, tuple[str, ...]] = {}
        for g, members in self.groups.items():
            for a in members:
                self._arm_groups[a] = (*self._arm_groups.get(a, ()), g)
        reach = [0.0]
        for r in self.rules:
            if isinstance(r, Cap):
                reach.append(r.window.reach)
            elif isinstance(r, (Gap, Suppress)):
                reach.append(r.seconds)
        #: How far back of now history matters, seconds: a store may drop entries older than this.
        self.horizon: float = max(reach)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Every reason code this policy can give (``*`` for the channel of per-channel caps)."""
        out: list[str] = []
        for r in self.rules:
            if isinstance(r, (Cap, Gap)):
                out.append(r.reason)
            elif isinstance(r, Suppress):
                out.extend(r.reason_prefix + o for o in r.outcomes)
            else:
                out.append("quiet_hours")
        return tuple(dict.fromkeys(out))

    def check(self, history: History, arm: str, channel: str, now: float) -> str | None:
        """Why ``arm`` may not be contacted on ``channel`` at ``now``, or None when it may."""
        return self.suppressed(history, (arm,), channel, now).get(arm)

    def suppressed(self, history: History, arms: Iterable[str], channel: str, now: float) -> dict[str, str]:
        """The candidate ``arms`` that may not be contacted on ``channel`` at ``now``, each with its reason.

        Arms absent from the result are allowed. Transactional arms are always allowed.
        One pass over the history per rule, whatever the number of arms. ``SchemaError``
        for a ``now`` that is not unix seconds, a channel that is not text.
        """
        if not isinstance(history, History):
            raise SchemaError(f"ContactPolicy: history must be an nba.profiles.History, got {type(history).__name__}")
        channel = _validate.text(channel, "channel")
        now = _validate.timestamp(now, "now")
        if isinstance(arms, str):
            raise SchemaError(f"ContactPolicy: arms must be a collection of arm ids, got the str {arms!r}")
        candidates = [a for a in arms if a not in self.transactional]
        out: dict[str, str] = {}
        if not candidates or not self.rules:
            return out
        tx = self.transactional
        contacts = history.contacts
        if tx:
            contacts = tuple(c for c in contacts if c.arm not in tx)
        outcomes: tuple[Outcome, ...] | None = None
        arm_groups = self._arm_groups
        for rule in self.rules:
            if len(out) == len(candidates):
                break
            if isinstance(rule, Cap):
                if rule.channel is not None and rule.channel != channel:
                    continue
                start = rule.window.start(now)
                on = rule.channel if rule.channel is not None else (channel if rule.per == "channel" else None)
                limit = rule.limit
                if rule.per in ("all", "channel"):
                    n = sum(1 for c in contacts if c.ts >= start and (on is None or c.channel == on))
                    if n >= limit:
                        reason = rule.reason if rule.per == "all" or rule.channel is not None else \
                            f"cap:channel:{channel}:{limit}/{rule.window.label}"
                        for a in candidates:
                            out.setdefault(a, reason)
                elif rule.per == "arm":
                    counts: dict[str, int] = {}
                    for c in contacts:
                        if c.ts >= start and (on is None or c.channel == on):
                            counts[c.arm] = counts.get(c.arm, 0) + 1
                    for a in candidates:
                        if counts.get(a, 0) >= limit:
                            out.setdefault(a, rule.reason)
                else:  # group
                    members = self.groups[rule.group]  # type: ignore[index]  # validated at construction
                    hit = [a for a in candidates if a in members and a not in out]
                    if hit:
                        n = sum(1 for c in contacts
                                if c.ts >= start and c.arm in members and (on is None or c.channel == on))
                        if n >= limit:
                            for a in hit:
                                out[a] = rule.reason
            elif isinstance(rule, Gap):
                if rule.channel != channel:
                    continue
                start = now - rule.seconds
                if any(c.ts >= start and c.channel == rule.after for c in contacts):
                    for a in candidates:
                        out.setdefault(a, rule.reason)
            elif isinstance(rule, Suppress):
                if outcomes is None:
                    outcomes = history.outcomes
                    if tx:
                        outcomes = tuple(o for o in outcomes if o.arm not in tx)
                start = now - rule.seconds
                # the newest matching outcome (ts, outcome) per arm, then per group: the reason names it
                latest: dict[str, tuple[float, str]] = {}
                for o in outcomes:
                    if o.ts >= start and o.outcome in rule.outcomes:
                        seen = latest.get(o.arm)
                        if seen is None or (o.ts, o.outcome) > seen:
                            latest[o.arm] = (o.ts, o.outcome)
                if not latest:
                    continue
                if rule.per == "group":
                    by_group: dict[str, tuple[float, str]] = {}
                    for arm, newest in latest.items():
                        for g in arm_groups.get(arm, ()):
                            if (rule.group is None or g == rule.group) and newest > by_group.get(g, (-math.inf, "")):
                                by_group[g] = newest
                    latest = {}
                    for a in candidates:
                        hits = [by_group[g] for g in arm_groups.get(a, ()) if g in by_group]
                        if hits:
                            latest[a] = max(hits)
                for a in candidates:
                    if a not in out and a in latest:
                        out[a] = rule.reason_prefix + latest[a][1]
            elif rule.quiet(channel, now):
                for a in candidates:
                    out.setdefault(a, "quiet_hours")
        return out

    def __repr__(self) -> str:
        return (f"ContactPolicy({list(self.rules)!r}, groups={self.groups!r}, "
                f"transactional={sorted(self.transactional)!r})")


# --------------------------------------------------------------------------- stores

#: What a store keeps by default, seconds: the reach of the longest calendar window (a month).
DEFAULT_RETENTION = _CALENDAR_REACH["month"]


@runtime_checkable
class ContactStore(Protocol):
    """Where contact histories live, by profile key: the one interface the Decider and every backend share.

    Keys are profile keys (``Profile.key``, what the identity graph resolves an id to).
    Every method may be called from any thread. Each write drops the entries older than
    the store's ``retention`` and keeps at most ``max_entries`` of each kind (the newest).
    """

    def history(self, key: str, now: float) -> History:
        """The history of ``key`` at ``now`` (one read); empty for a key the store does not hold."""
        ...

    def read(self, key: str, now: float) -> tuple[History, object]:
        """``history`` and an opaque token of what was read, for ``reserve(..., seen=token)``."""
        ...

    def reserve(self, key: str, arm: str, channel: str, now: float, policy: ContactPolicy,
                event_id: str = "", seen: object = None) -> str | None:
        """Atomically: check ``arm`` on ``channel`` against the current history and record the contact if allowed.

        None when recorded, else the blocking reason code (nothing recorded). With an
        ``event_id`` (the decision's), ``outcome_of(event_id, ...)`` finds the contact later.
        ``seen``: the token of a ``read`` just made (a decision's check), so a store that
        compares and sets starts from it instead of reading again (a round trip saved when
        nothing changed; the commit still checks).
        """
        ...

    def record(self, key: str, arm: str, channel: str, now: float, event_id: str = "") -> None:
        """Record a contact unconditionally (a deferred decision activated, a contact made outside nba)."""
        ...

    def outcome(self, key: str, arm: str, outcome: str, now: float) -> None:
        """Record an outcome of ``arm`` (``"accepted"``, ``"rejected"``, ...) for ``Suppress`` rules."""
        ...

    def outcome_of(self, event_id: str, outcome: str, now: float) -> bool:
        """Record ``outcome`` for the arm and profile of the contact made by decision ``event_id``.

        From any process: the store links each recorded event id to its profile key
        (following merges) for ``retention``. False, nothing recorded, for an event id it
        does not hold (never recorded with one, forgotten, or older than the retention).
        """
        ...

    def merge(self, master: str, merged: Iterable[str]) -> None:
        """Fold the histories of ``merged`` keys into ``master``'s and drop them (an identity ``Merge``)."""
        ...

    def forget(self, keys: Iterable[str]) -> None:
        """Erase the histories of ``keys``: nothing of them is left in the store."""
        ...

    def close(self) -> None:
        """Release what the store holds outside this object (connections)."""
        ...


class _Args(msgspec.Struct, frozen=True, gc=False):
    key: str
    arm: str
    channel: str
    now: float
    event: str = ""


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise SchemaError(f"a contact history key must be a non-empty str (a profile key), got {key!r}")
    return _validate.text(key, "contact history key")


def _check(key: Any, arm: Any, channel: Any, now: Any, what: str = "channel", event: Any = "") -> _Args:
    return _Args(_check_key(key), _validate.text(arm, "arm"), _validate.text(channel, what),
                 _validate.timestamp(now, "now"), _check_event_id(event))


def _check_event_id(event: Any) -> str:
    if not isinstance(event, str):
        raise SchemaError(f"event_id must be a str (a decision's event id) or '', got {event!r}")
    return _validate.text(event, "event_id")


def _arm_of(h: History, event: str) -> str | None:
    """The arm of the contact ``event`` made, newest first; None when ``h`` holds none."""
    for c in reversed(h.contacts):
        if c.event == event:
            return c.arm
    return None


def _events(hs: Iterable[History]) -> list[str]:
    return [c.event for h in hs for c in h.contacts if c.event]


def _check_limits(retention: Any, max_entries: Any, who: str) -> tuple[float, int]:
    r = _seconds(retention, f"{who}: retention")
    if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
        raise ConfigError(f"{who}: max_entries must be a positive int, got {max_entries!r}")
    return r, max_entries


def _check_policy(policy: Any, retention: float, who: str) -> ContactPolicy:
    if not isinstance(policy, ContactPolicy):
        raise ConfigError(f"{who}.reserve: policy must be a ContactPolicy, got {policy!r}")
    if policy.horizon > retention:
        raise ConfigError(f"{who}: the policy looks back {policy.horizon:g} s but the store keeps {retention:g} s "
                          f"of history; build the store with retention=policy.horizon (or more)")
    return policy


class EmbeddedContactStore:
    """Contact histories in this process's memory, behind one lock (new in a forked child).

    ``retention``: seconds of history kept (at least the ``horizon`` of every policy
    passed to ``reserve``); ``max_entries``: contacts (and outcomes) kept per profile.
    """

    def __init__(self, *, retention: float = DEFAULT_RETENTION, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.retention, self.max_entries = _check_limits(retention, max_entries, "EmbeddedContactStore")
        self._lock = PoliteLock()
        self._histories: dict[str, History] = {}
        self._links: dict[str, tuple[str, float]] = {}  # event id -> (profile key, ts), oldest first

    def history(self, key: str, now: float) -> History:
        k, t = _check_key(key), _validate.timestamp(now, "now")
        with self._lock:
            h = self._histories.get(k, _EMPTY)
        return h.pruned(t - self.retention, self.max_entries)

    def read(self, key: str, now: float) -> tuple[History, object]:
        return self.history(key, now), None

    def reserve(self, key: str, arm: str, channel: str, now: float, policy: ContactPolicy,
                event_id: str = "", seen: object = None) -> str | None:
        a = _check(key, arm, channel, now, event=event_id)
        _check_policy(policy, self.retention, "EmbeddedContactStore")
        with self._lock:
            h = self._histories.get(a.key, _EMPTY).pruned(a.now - self.retention, self.max_entries)
            reason = policy.check(h, a.arm, a.channel, a.now)
            if reason is None:
                self._histories[a.key] = _add_contact(h, a, self.max_entries)
                self._link(a)
        return reason

    def record(self, key: str, arm: str, channel: str, now: float, event_id: str = "") -> None:
        a = _check(key, arm, channel, now, event=event_id)
        with self._lock:
            h = self._histories.get(a.key, _EMPTY).pruned(a.now - self.retention, self.max_entries)
            self._histories[a.key] = _add_contact(h, a, self.max_entries)
            self._link(a)

    def _link(self, a: _Args) -> None:
        """Link the contact's event id to its key; drop the links older than the retention (lock held)."""
        if not a.event:
            return
        links = self._links
        links.pop(a.event, None)
        links[a.event] = (a.key, a.now)
        since = a.now - self.retention
        while links:
            first = next(iter(links))
            if links[first][1] >= since:
                break
            del links[first]

    def outcome_of(self, event_id: str, outcome: str, now: float) -> bool:
        eid = _check_event_id(event_id)
        o, t = _validate.text(outcome, "outcome"), _validate.timestamp(now, "now")
        with self._lock:
            link = self._links.get(eid) if eid else None
            if link is None:
                return False
            h = self._histories.get(link[0], _EMPTY).pruned(t - self.retention, self.max_entries)
            arm = _arm_of(h, eid)
            if arm is None:
                return False
            self._histories[link[0]] = _add_outcome(h, _Args(link[0], arm, o, t), self.max_entries)
        return True

    def outcome(self, key: str, arm: str, outcome: str, now: float) -> None:
        a = _check(key, arm, outcome, now, "outcome")
        with self._lock:
            h = self._histories.get(a.key, _EMPTY).pruned(a.now - self.retention, self.max_entries)
            self._histories[a.key] = _add_outcome(h, a, self.max_entries)

    def merge(self, master: str, merged: Iterable[str]) -> None:
        m, others = _check_merge(master, merged)
        with self._lock:
            hs = [h for k in (m, *others) if (h := self._histories.pop(k, None)) is not None]
            if hs:
                acc = hs[0]
                for h in hs[1:]:
                    acc = acc.merge(h)
                self._histories[m] = _bounded(acc, self.max_entries)
            for e in _events(hs):
                link = self._links.get(e)
                if link is not None:
                    self._links[e] = (m, link[1])

    def forget(self, keys: Iterable[str]) -> None:
        ks = _check_keys(keys)
        with self._lock:
            for k in ks:
                h = self._histories.pop(k, None)
                for e in _events(() if h is None else (h,)):
                    self._links.pop(e, None)
            gone = set(ks)
            for e in [e for e, (k, _) in self._links.items() if k in gone]:  # links whose contacts were pruned
                del self._links[e]

    def close(self) -> None:
        """Nothing to release: the histories live as long as this object."""

    def __len__(self) -> int:
        """The number of profiles with a history."""
        return len(self._histories)


def _check_keys(keys: Iterable[str]) -> tuple[str, ...]:
    if isinstance(keys, str):
        raise SchemaError(f"keys must be a collection of profile keys, got the str {keys!r}: wrap it in [...]")
    return tuple(dict.fromkeys(_check_key(k) for k in keys))


def _check_merge(master: str, merged: Iterable[str]) -> tuple[str, tuple[str, ...]]:
    m = _check_key(master)
    others = _check_keys(merged)
    if m in others:
        raise SchemaError(f"merge: the master key {m!r} is among the merged keys {others!r}")
    return m, others


def _bounded(h: History, max_entries: int) -> History:
    if len(h.contacts) <= max_entries and len(h.outcomes) <= max_entries:
        return h
    return History(h.contacts[-max_entries:], h.outcomes[-max_entries:])


def _add_contact(h: History, a: _Args, max_entries: int) -> History:
    return _bounded(History(_sorted_add(h.contacts, Contact(a.now, a.arm, a.channel, a.event)), h.outcomes),
                    max_entries)


def _add_outcome(h: History, a: _Args, max_entries: int) -> History:
    return _bounded(History(h.contacts, _sorted_add(h.outcomes, Outcome(a.now, a.arm, a.channel))), max_entries)


# Keys of a namespace share one hash tag, so each script touches one slot:
#   {ns}:contact:<profile key>  hash: v (version: a value of the counter, unique), h (History msgpack)
#   {ns}:contact-version        the counter a commit takes its version from (never reused, even
#                               after a key is deleted and written again: no ABA)
#   {ns}:contact-event:<event id>  the profile key whose history holds that decision's contact
#                               (outcome_of finds it from any process); expires with the history
# _COMMIT: KEYS = n history keys, the counter, then (optional) an event link key; ARGV = n, the n
# versions read ('' for absent), the new History for KEYS[1] ('' deletes it), its TTL in ms. KEYS[2..n]
# (a merge) are deleted; the event link, if given, is set to KEYS[1]'s profile key (ARGV[n + 4]).
# Returns {1} on commit, else {0, v1, h1, ..., vn, hn}: the current values, to retry on at once.
_COMMIT = """
local n = tonumber(ARGV[1])
local stale = false
for i = 1, n do
  if (redis.call('HGET', KEYS[i], 'v') or '') ~= ARGV[i + 1] then stale = true break end
end
if stale then
  local out = {0}
  for i = 1, n do
    local r = redis.call('HMGET', KEYS[i], 'v', 'h')
    out[#out + 1] = r[1] or ''
    out[#out + 1] = r[2] or ''
  end
  return out
end
for i = 2, n do redis.call('DEL', KEYS[i]) end
if ARGV[n + 2] == '' then
  redis.call('DEL', KEYS[1])
else
  local ver = redis.call('INCR', KEYS[n + 1])
  redis.call('HSET', KEYS[1], 'v', ver, 'h', ARGV[n + 2])
  redis.call('PEXPIRE', KEYS[1], ARGV[n + 3])
end
if #KEYS > n + 1 then
  redis.call('SET', KEYS[n + 2], ARGV[n + 4], 'PX', ARGV[n + 3])
end
return {1}
"""


class RedisContactStore:
    """Contact histories in Redis, shared by every process (and host) using the same namespace.

    ``url``: a Redis URL (``redis://host:6379/0``) or a ready ``redis.Redis`` client.
    Keys are ``{namespace}:contact:<profile key>``, one hash per profile (the History as
    msgpack and its version), expiring ``retention`` seconds (plus a minute) of real time
    after their last write. Each write is a compare-and-set: read (one round trip),
    compute in Python, commit with one script if no other process wrote meanwhile, else
    compute again on the current value the script returned, at most ``max_attempts``
    times (then ``ContactError``, nothing changed). So a ``reserve`` costs two round trips
    without contention, one more per concurrent writer of the same profile. Redis
    errors (``redis.RedisError``) propagate: whether to decide without contact rules is
    the caller's choice.
    """

    def __init__(self, url: Any, *, namespace: str = "nba", retention: float = DEFAULT_RETENTION,
                 max_entries: int = DEFAULT_MAX_ENTRIES, max_attempts: int = 100) -> None:
        self._client: Any  # redis-py's return types are unions of every reply type: the replies are checked here
        self._client, self._own, tag = _redis.connect(url, namespace, "RedisContactStore")
        self.retention, self.max_entries = _check_limits(retention, max_entries, "RedisContactStore")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigError(f"RedisContactStore: max_attempts must be a positive int, got {max_attempts!r}")
        self._max_attempts = max_attempts
        self.namespace = namespace
        self._prefix = f"{tag}:contact:"
        self._counter = f"{tag}:contact-version"
        self._events = f"{tag}:contact-event:"
        self._ttl_ms = int(self.retention * 1000) + 60_000
        self._commit = self._client.register_script(_COMMIT)

    def _read(self, keys: Sequence[str]) -> list[tuple[bytes, bytes]]:
        """(version, History bytes) of each key, b'' for absent, in one round trip."""
        if len(keys) == 1:
            v, h = self._client.hmget(self._prefix + keys[0], "v", "h")
            return [(v or b"", h or b"")]
        pipe = self._client.pipeline(transaction=False)
        for k in keys:
            pipe.hmget(self._prefix + k, "v", "h")
        return [(v or b"", h or b"") for v, h in pipe.execute()]

    def _decode(self, key: str, raw: bytes) -> History:
        if not raw:
            return _EMPTY
        try:
            return _DECODER.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise ModelFormatError(f"RedisContactStore {self.namespace!r}: the history of {key!r} is not an nba "
                                   f"contact history ({e}); another program writes these keys?") from None

    def _update(self, keys: Sequence[str], change: Any, event: str = "",
                seen: list[tuple[bytes, bytes]] | None = None) -> str | None:
        """Compare-and-set ``keys[0]`` to ``change(histories)`` (and delete the others); a str from change aborts.

        With ``event``, the commit also links that event id to ``keys[0]``; ``seen``: what a
        read just gave, to start from (the commit checks its version all the same)."""
        if seen is None:
            seen = self._read(keys)
        names = [self._prefix + k for k in keys] + [self._counter]
        extra: list[Any] = []
        if event:
            names.append(self._events + event)
            extra.append(keys[0])
        for _ in range(self._max_attempts):
            new = change([self._decode(k, raw) for k, (_, raw) in zip(keys, seen)])
            if isinstance(new, str):
                return new
            data = b"" if new is None else new.to_bytes()
            r = self._commit(keys=names, args=[len(keys), *(v for v, _ in seen), data, self._ttl_ms, *extra])
            if int(r[0]) == 1:
                return None
            flat = r[1:]
            seen = [(flat[2 * i] or b"", flat[2 * i + 1] or b"") for i in range(len(keys))]
        raise ContactError(f"RedisContactStore {self.namespace!r}: the history of {keys[0]!r} changed under each "
                           f"of {self._max_attempts} attempts to update it; nothing changed, try again")

    def history(self, key: str, now: float) -> History:
        return self.read(key, now)[0]

    def read(self, key: str, now: float) -> tuple[History, object]:
        k, t = _check_key(key), _validate.timestamp(now, "now")
        (v, raw), = self._read([k])
        return self._decode(k, raw).pruned(t - self.retention, self.max_entries), (k, v, raw)

    def reserve(self, key: str, arm: str, channel: str, now: float, policy: ContactPolicy,
                event_id: str = "", seen: object = None) -> str | None:
        a = _check(key, arm, channel, now, event=event_id)
        _check_policy(policy, self.retention, "RedisContactStore")
        since, cap = a.now - self.retention, self.max_entries

        def change(hs: list[History]) -> History | str:
            h = hs[0].pruned(since, cap)
            reason = policy.check(h, a.arm, a.channel, a.now)
            return reason if reason is not None else _add_contact(h, a, cap)

        start = None
        if isinstance(seen, tuple) and len(seen) == 3 and seen[0] == a.key:  # a read() of this key
            start = [(seen[1], seen[2])]
        return self._update([a.key], change, a.event, start)

    def record(self, key: str, arm: str, channel: str, now: float, event_id: str = "") -> None:
        a = _check(key, arm, channel, now, event=event_id)
        since, cap = a.now - self.retention, self.max_entries
        self._update([a.key], lambda hs: _add_contact(hs[0].pruned(since, cap), a, cap), a.event)

    def outcome_of(self, event_id: str, outcome: str, now: float) -> bool:
        eid = _check_event_id(event_id)
        o, t = _validate.text(outcome, "outcome"), _validate.timestamp(now, "now")
        if not eid:
            return False
        raw = self._client.get(self._events + eid)
        if raw is None:
            return False
        key = raw.decode("utf-8", "surrogatepass")
        since, cap = t - self.retention, self.max_entries
        found = [False]

        def change(hs: list[History]) -> History | str:
            h = hs[0].pruned(since, cap)
            arm = _arm_of(h, eid)
            if arm is None:
                return "absent"
            found[0] = True
            return _add_outcome(h, _Args(key, arm, o, t), cap)

        return self._update([key], change) is None and found[0]

    def outcome(self, key: str, arm: str, outcome: str, now: float) -> None:
        a = _check(key, arm, outcome, now, "outcome")
        since, cap = a.now - self.retention, self.max_entries
        self._update([a.key], lambda hs: _add_outcome(hs[0].pruned(since, cap), a, cap))

    def merge(self, master: str, merged: Iterable[str]) -> None:
        m, others = _check_merge(master, merged)
        if not others:
            return

        def change(hs: list[History]) -> History | None:
            held = [h for h in hs if h.contacts or h.outcomes]
            if not held:
                return None
            acc = held[0]
            for h in held[1:]:
                acc = acc.merge(h)
            return _bounded(acc, self.max_entries)

        moved = _events(self._decode(k, raw) for k, (_, raw) in zip(others, self._read(others)))
        self._update([m, *others], change)
        if moved:  # the links of the folded contacts now name the master (idempotent: a retry redoes it)
            pipe = self._client.pipeline(transaction=False)
            for e in moved:
                pipe.set(self._events + e, m, xx=True, keepttl=True)
            pipe.execute()

    def forget(self, keys: Iterable[str]) -> None:
        ks = _check_keys(keys)
        if ks:
            links = [self._events + e for e in _events(self._decode(k, raw) for k, (_, raw) in zip(ks, self._read(ks)))]
            self._client.delete(*(self._prefix + k for k in ks), *links)

    def close(self) -> None:
        """Close the connections of a client this store made (a client passed in is the caller's)."""
        if self._own:
            self._client.close()


if TYPE_CHECKING:  # both stores are ContactStores, checked by mypy
    _embedded: type[ContactStore] = EmbeddedContactStore
    _shared: type[ContactStore] = RedisContactStore
