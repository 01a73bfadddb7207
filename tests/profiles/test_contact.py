"""nba.profiles.contact: the rules and their exact boundaries, the brute-force oracle, and one suite for both stores.

Times are unix seconds built from aware datetimes, so each boundary is written as the
local time a person would name (the Monday midnight of a week in Paris, the first of
a month in New York). The Redis store runs against a real redis-server started for
this module (``tests/redis_server.py``) and stopped at its end.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nba.errors import ConfigError, ContactError, ModelFormatError, SchemaError
from nba.profiles import (
    Calendar,
    Cap,
    Contact,
    ContactPolicy,
    ContactStore,
    EmbeddedContactStore,
    Gap,
    History,
    Outcome,
    QuietHours,
    RedisContactStore,
    Rolling,
    Suppress,
)
from tests import redis_server

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")
DAY = 86400.0


def ts(*args: int, tz: ZoneInfo | timezone = UTC) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


def hist(*contacts: tuple[float, str, str], outcomes: tuple[tuple[float, str, str], ...] = ()) -> History:
    return History(tuple(sorted(Contact(*c) for c in contacts)), tuple(sorted(Outcome(*o) for o in outcomes)))


NOW = ts(2026, 6, 10, 12)  # a Wednesday, noon UTC


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("build, needle", [
    (lambda: Rolling(0), "positive finite"),
    (lambda: Rolling(float("inf")), "positive finite"),
    (lambda: Rolling(True), "positive finite"),
    (lambda: Calendar("year"), "unit must be one of"),
    (lambda: Calendar("week", "Mars/Olympus"), "unknown time zone"),
    (lambda: Calendar("week", week_start=7), "week_start"),
    (lambda: Cap(0, Rolling(60)), "limit must be an int >= 1"),
    (lambda: Cap(1.5, Rolling(60)), "limit must be an int >= 1"),
    (lambda: Cap(1, 60), "window must be a Rolling or a Calendar"),
    (lambda: Cap(1, Rolling(60), per="customer"), "per must be one of"),
    (lambda: Cap(1, Rolling(60), per="group"), "group must be a non-empty str"),
    (lambda: Cap(1, Rolling(60), per="arm", group="g"), "only for per='group'"),
    (lambda: Gap(0, "email", "push"), "Gap: seconds"),
    (lambda: Gap(60, "", "push"), "Gap: channel"),
    (lambda: Suppress("accepted", 60), "non-empty tuple"),
    (lambda: Suppress((), 60), "non-empty tuple"),
    (lambda: Suppress(("accepted",), 60, per="channel"), "per must be 'arm' or 'group'"),
    (lambda: QuietHours("9pm", "08:00"), "'HH:MM'"),
    (lambda: QuietHours("24:00", "08:00"), "'HH:MM'"),
    (lambda: QuietHours("08:00", "08:00"), "give a range"),
    (lambda: QuietHours(channels="email"), "tuple of channel names"),
    (lambda: ContactPolicy(Cap(1, Rolling(60))), "wrap it in"),
    (lambda: ContactPolicy(["cap"]), "rule 0 must be"),
    (lambda: ContactPolicy([Cap(1, Rolling(60), per="group", group="g")]), "names group 'g'"),
    (lambda: ContactPolicy([], groups={"g": "abc"}), "must list arm ids"),
    (lambda: ContactPolicy([], transactional="receipt"), "collection of arm ids"),
    (lambda: EmbeddedContactStore(retention=-1), "retention"),
    (lambda: EmbeddedContactStore(max_entries=0), "max_entries"),
])
def test_bad_configuration_raises_config_error_saying_what(build, needle):
    with pytest.raises(ConfigError, match=needle):
        build()


def test_rules_are_frozen_and_normalised():
    s = Suppress(["accepted"], 60)
    assert s.outcomes == ("accepted",) and isinstance(s.seconds, float)
    with pytest.raises(AttributeError):
        s.seconds = 1.0  # type: ignore[misc]


def test_reason_codes_are_the_documented_strings():
    policy = ContactPolicy([
        Cap(3, Calendar("week")), Cap(1, Rolling(86400), per="arm"), Cap(2, Calendar("day"), per="group", group="promos"),
        Cap(2, Calendar("day"), per="channel"), Cap(1, Calendar("day"), channel="sms"),
        Cap(5, Calendar("month"), per="channel", channel="email"),
        Gap(7200, "email", "push"), Suppress(("accepted", "rejected"), 3600), Suppress(("rejected",), 60, per="group"),
        QuietHours(),
    ], groups={"promos": ["a"]})
    assert policy.reasons == (
        "cap:all:3/week", "cap:arm:1/86400s", "cap:group:promos:2/day", "cap:channel:*:2/day", "cap:all@sms:1/day",
        "cap:channel:email:5/month", "gap:push>email:7200s", "suppressed:accepted", "suppressed:rejected",
        "suppressed:group:rejected", "quiet_hours")


# --------------------------------------------------------------------------- windows and their boundaries


def test_rolling_window_counts_a_contact_exactly_seconds_ago_and_not_one_older():
    policy = ContactPolicy([Cap(1, Rolling(100), per="arm")])
    assert policy.check(hist((NOW - 100, "a", "web")), "a", "web", NOW) == "cap:arm:1/100s"
    assert policy.check(hist((NOW - 100.000001, "a", "web")), "a", "web", NOW) is None
    assert policy.check(hist((NOW + 5, "a", "web")), "a", "web", NOW) == "cap:arm:1/100s"  # a clock ahead counts


def test_calendar_day_starts_at_local_midnight_and_a_contact_there_counts():
    day = Calendar("day", "Europe/Paris")
    midnight = ts(2026, 6, 10, tz=PARIS)
    assert day.start(NOW) == midnight == ts(2026, 6, 9, 22)
    policy = ContactPolicy([Cap(1, day)])
    assert policy.check(hist((midnight, "a", "web")), "b", "web", NOW) == "cap:all:1/day"
    assert policy.check(hist((midnight - 1e-6, "a", "web")), "b", "web", NOW) is None
    assert day.start(midnight) == midnight and day.start(midnight - 1e-6) == ts(2026, 6, 9, tz=PARIS)


def test_calendar_week_across_the_spring_dst_change_in_paris_is_167_hours():
    week = Calendar("week", "Europe/Paris")  # Monday weeks; clocks go forward on Sunday 2026-03-29
    monday = ts(2026, 3, 23, tz=PARIS)
    next_monday = ts(2026, 3, 30, tz=PARIS)
    assert monday == ts(2026, 3, 22, 23) and next_monday == ts(2026, 3, 29, 22)
    assert next_monday - monday == 167 * 3600
    assert week.start(ts(2026, 3, 29, 12)) == monday
    assert week.start(next_monday - 1e-3) == monday
    assert week.start(next_monday) == next_monday
    policy = ContactPolicy([Cap(1, week)])
    now = ts(2026, 4, 1, 9)
    assert policy.check(hist((next_monday, "a", "email")), "a", "email", now) == "cap:all:1/week"
    assert policy.check(hist((next_monday - 1e-3, "a", "email")), "a", "email", now) is None


def test_calendar_week_across_the_autumn_dst_change_and_a_sunday_week_start():
    week = Calendar("week", "Europe/Paris", week_start=6)  # Sunday weeks; clocks go back on Sunday 2026-10-25
    sunday = ts(2026, 10, 25, tz=PARIS)
    assert sunday == ts(2026, 10, 24, 22)
    assert week.start(ts(2026, 10, 31, 20)) == sunday
    assert ts(2026, 11, 1, tz=PARIS) - sunday == 169 * 3600
    assert week.start(ts(2026, 11, 1, tz=PARIS)) == ts(2026, 11, 1, tz=PARIS)


def test_calendar_month_boundary_and_the_year_boundary():
    ny = ZoneInfo("America/New_York")
    month = Calendar("month", "America/New_York")
    march = ts(2026, 3, 1, tz=ny)
    assert march == ts(2026, 3, 1, 5)
    assert month.start(ts(2026, 3, 31, 23)) == march
    policy = ContactPolicy([Cap(2, month, per="arm")])
    now = ts(2026, 3, 20)
    h = hist((march, "a", "email"), (march - 1, "a", "email"), (now - 10, "a", "push"))
    assert policy.check(h, "a", "email", now) == "cap:arm:2/month"
    assert policy.check(hist((march - 1, "a", "email"), (now - 10, "a", "push")), "a", "email", now) is None
    assert Calendar("month").start(ts(2027, 1, 1)) == ts(2027, 1, 1)
    assert Calendar("month").start(ts(2027, 1, 1) - 1) == ts(2026, 12, 1)


def test_a_local_midnight_that_does_not_exist_starts_the_day_when_clocks_jump():
    santiago = ZoneInfo("America/Santiago")  # 2026-09-06 00:00 -04 becomes 01:00 -03
    day = Calendar("day", "America/Santiago")
    jump = ts(2026, 9, 6, 4)
    assert day.start(ts(2026, 9, 6, 15)) == jump
    assert datetime.fromtimestamp(jump, santiago).hour == 1
    assert day.start(jump - 1) == ts(2026, 9, 5, tz=santiago)


def test_policy_horizon_covers_every_rule():
    assert ContactPolicy([]).horizon == 0.0
    assert ContactPolicy([Cap(1, Rolling(50)), Gap(70, "email", "push"), Suppress(("accepted",), 60)]).horizon == 70
    assert ContactPolicy([Cap(1, Calendar("month"))]).horizon >= 31 * DAY + 3600


# --------------------------------------------------------------------------- each rule


def test_cap_per_arm_counts_each_arm_separately_on_every_channel():
    policy = ContactPolicy([Cap(1, Rolling(DAY), per="arm")])
    h = hist((NOW - 3600, "a", "email"))
    assert policy.suppressed(h, ["a", "b"], "push", NOW) == {"a": "cap:arm:1/86400s"}


def test_cap_all_counts_every_contact_and_channel_restricts_it():
    policy = ContactPolicy([Cap(3, Calendar("week"))])
    h = hist((NOW - 1, "a", "email"), (NOW - 2, "b", "push"), (NOW - 3, "c", "sms"))
    assert policy.suppressed(h, ["a", "d"], "web", NOW) == {"a": "cap:all:3/week", "d": "cap:all:3/week"}
    sms = ContactPolicy([Cap(1, Calendar("day"), channel="sms")])
    assert sms.suppressed(h, ["d"], "sms", NOW) == {"d": "cap:all@sms:1/day"}
    assert sms.suppressed(h, ["d"], "email", NOW) == {}  # applies to sms decisions only
    assert sms.suppressed(hist((NOW - 1, "a", "email")), ["d"], "sms", NOW) == {}  # only sms contacts count


def test_cap_per_channel_counts_the_decisions_channel():
    policy = ContactPolicy([Cap(2, Calendar("day"), per="channel")])
    h = hist((NOW - 1, "a", "email"), (NOW - 2, "b", "email"), (NOW - 3, "c", "push"))
    assert policy.suppressed(h, ["x"], "email", NOW) == {"x": "cap:channel:email:2/day"}
    assert policy.suppressed(h, ["x"], "push", NOW) == {}


def test_cap_per_group_counts_the_groups_arms_and_applies_to_them_only():
    policy = ContactPolicy([Cap(2, Rolling(DAY), per="group", group="promos")], groups={"promos": ["p1", "p2"]})
    h = hist((NOW - 1, "p1", "email"), (NOW - 2, "p2", "push"), (NOW - 3, "x", "push"))
    assert policy.suppressed(h, ["p1", "p2", "x"], "web", NOW) == {"p1": "cap:group:promos:2/86400s",
                                                                   "p2": "cap:group:promos:2/86400s"}
    assert policy.suppressed(hist((NOW - 1, "p1", "email")), ["p2"], "web", NOW) == {}


def test_gap_blocks_the_channel_after_the_other_up_to_the_boundary():
    policy = ContactPolicy([Gap(7200, "email", "push")])
    h = hist((NOW, "a", "push"))
    assert policy.check(h, "b", "email", NOW + 7200) == "gap:push>email:7200s"  # exactly 2 h later: still blocked
    assert policy.check(h, "b", "email", NOW + 7200.001) is None
    assert policy.check(h, "b", "push", NOW + 1) is None  # a push after a push is another rule's business
    assert policy.check(hist((NOW, "a", "email")), "b", "email", NOW + 1) is None


def test_suppress_after_an_outcome_for_its_duration():
    policy = ContactPolicy([Suppress(("accepted", "rejected"), 3600)])
    h = hist(outcomes=((NOW - 3600, "a", "rejected"), (NOW - 10, "b", "accepted"), (NOW - 5, "c", "clicked")))
    assert policy.suppressed(h, ["a", "b", "c", "d"], "email", NOW) == {"a": "suppressed:rejected",
                                                                       "b": "suppressed:accepted"}
    assert policy.suppressed(h, ["a"], "email", NOW + 0.001) == {}


def test_suppress_per_group_suppresses_the_arms_sharing_a_group():
    policy = ContactPolicy([Suppress(("accepted",), DAY, per="group")], groups={"cards": ["gold", "silver"],
                                                                               "loans": ["car"]})
    h = hist(outcomes=((NOW - 10, "gold", "accepted"),))
    assert policy.suppressed(h, ["gold", "silver", "car", "free"], "web", NOW) == {
        "gold": "suppressed:group:accepted", "silver": "suppressed:group:accepted"}
    only_loans = ContactPolicy([Suppress(("accepted",), DAY, per="group", group="loans")],
                               groups={"cards": ["gold", "silver"], "loans": ["car"]})
    assert only_loans.suppressed(h, ["gold", "silver"], "web", NOW) == {}


@pytest.mark.parametrize("local, quiet", [
    ((20, 59), False), ((21, 0), True), ((23, 59), True), ((0, 0), True), ((3, 0), True), ((7, 59), True),
    ((8, 0), False), ((12, 0), False)])
def test_quiet_hours_span_midnight_start_included_end_excluded(local, quiet):
    rule = QuietHours("21:00", "08:00", "Europe/Paris", channels=("email", "push"))
    t = ts(2026, 1, 15, *local, tz=PARIS)
    policy = ContactPolicy([rule])
    assert (policy.check(History(), "a", "push", t) == "quiet_hours") is quiet
    assert policy.check(History(), "a", "web", t) is None  # a channel it does not name


def test_quiet_hours_within_a_day_and_on_every_channel():
    policy = ContactPolicy([QuietHours("12:00", "14:00")])
    assert policy.check(History(), "a", "any", ts(2026, 1, 15, 11, 59)) is None
    assert policy.check(History(), "a", "any", ts(2026, 1, 15, 12)) == "quiet_hours"
    assert policy.check(History(), "a", "any", ts(2026, 1, 15, 14)) is None


def test_transactional_arms_bypass_every_rule_and_are_counted_by_none():
    policy = ContactPolicy([Cap(1, Calendar("day")), Gap(3600, "email", "push"), QuietHours("00:00", "23:59"),
                            Suppress(("rejected",), DAY)], transactional=["receipt"])
    full = hist((NOW - 1, "x", "push"), outcomes=((NOW - 1, "receipt", "rejected"),))
    assert policy.suppressed(full, ["receipt", "x"], "email", NOW) == {"x": "cap:all:1/day"}
    receipts = hist((NOW - 1, "receipt", "push"), (NOW - 2, "receipt", "email"))
    capped = ContactPolicy([Cap(1, Calendar("day")), Gap(3600, "email", "push")], transactional=["receipt"])
    assert capped.suppressed(receipts, ["x"], "email", NOW) == {}


def test_the_first_blocking_rule_in_order_gives_the_reason():
    h = hist((NOW - 1, "a", "push"))
    a = ContactPolicy([Gap(60, "email", "push"), Cap(1, Rolling(60))])
    b = ContactPolicy([Cap(1, Rolling(60)), Gap(60, "email", "push")])
    assert a.check(h, "a", "email", NOW) == "gap:push>email:60s"
    assert b.check(h, "a", "email", NOW) == "cap:all:1/60s"


# --------------------------------------------------------------------------- history


def test_history_merge_keeps_every_entry_in_time_order_and_round_trips_msgpack():
    a = hist((3.0, "x", "email"), (1.0, "y", "push"), outcomes=((2.0, "x", "accepted"),))
    b = hist((2.0, "z", "web"), outcomes=((1.0, "z", "rejected"),))
    m = a.merge(b)
    assert [c.ts for c in m.contacts] == [1.0, 2.0, 3.0] and [o.ts for o in m.outcomes] == [1.0, 2.0]
    assert m == b.merge(a)
    assert History.from_bytes(m.to_bytes()) == m
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(m), type=History) == m
    with pytest.raises(ModelFormatError, match="contact history"):
        History.from_bytes(b"\x93junk")


def test_pruned_drops_old_entries_and_keeps_the_newest():
    h = hist(*((float(t), "a", "web") for t in range(10)))
    assert [c.ts for c in h.pruned(5.0).contacts] == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert [c.ts for c in h.pruned(0.0, max_entries=3).contacts] == [7.0, 8.0, 9.0]
    assert h.pruned(0.0) is h


# --------------------------------------------------------------------------- the oracle


def _period(t: float, w: Calendar) -> tuple[int, ...]:
    """The calendar period of ``t`` as a comparable key of local dates: no timestamps of midnights involved."""
    d = datetime.fromtimestamp(t, ZoneInfo(w.tz)).date()
    if w.unit == "day":
        return (d.toordinal(),)
    if w.unit == "week":
        return ((d - timedelta(days=(d.weekday() - w.week_start) % 7)).toordinal(),)
    return (d.year, d.month)


def _in_window(t: float, w: Rolling | Calendar, now: float) -> bool:
    if isinstance(w, Rolling):
        return t >= now - w.seconds
    return _period(t, w) >= _period(now, w)


def oracle(policy: ContactPolicy, contacts: list[tuple[float, str, str]], outcomes: list[tuple[float, str, str]],
           arms: list[str], channel: str, now: float) -> dict[str, str]:
    """Every arm, every rule in order, recounted from the raw lists."""
    out: dict[str, str] = {}
    tx = policy.transactional
    cs = [c for c in contacts if c[1] not in tx]
    os_ = [o for o in outcomes if o[1] not in tx]
    for arm in arms:
        if arm in tx:
            continue
        for r in policy.rules:
            reason = None
            if isinstance(r, Cap):
                if r.channel is not None and r.channel != channel:
                    continue
                if r.per == "group" and arm not in policy.groups[r.group]:
                    continue
                n = 0
                for t, a, ch in cs:
                    if not _in_window(t, r.window, now):
                        continue
                    if r.channel is not None and ch != r.channel:
                        continue
                    if r.per == "arm" and a != arm:
                        continue
                    if r.per == "group" and a not in policy.groups[r.group]:
                        continue
                    if r.per == "channel" and ch != channel:
                        continue
                    n += 1
                if n >= r.limit:
                    reason = r.reason.replace("channel:*", f"channel:{channel}")
            elif isinstance(r, Gap):
                if channel == r.channel and any(ch == r.after and t >= now - r.seconds for t, _, ch in cs):
                    reason = r.reason
            elif isinstance(r, Suppress):
                def related(a: str, r: Suppress = r, arm: str = arm) -> bool:
                    if r.per == "arm":
                        return a == arm
                    return any(arm in m and a in m for g, m in policy.groups.items() if r.group in (None, g))
                hits = [(t, o) for t, a, o in os_ if o in r.outcomes and t >= now - r.seconds and related(a)]
                if hits:
                    reason = r.reason_prefix + max(hits)[1]
            else:
                local = datetime.fromtimestamp(now, ZoneInfo(r.tz))
                m = local.hour * 60 + local.minute
                a_, b_ = (int(x[:2]) * 60 + int(x[3:]) for x in (r.start, r.end))
                inside = (a_ <= m < b_) if a_ < b_ else (m >= a_ or m < b_)
                if inside and (not r.channels or channel in r.channels):
                    reason = "quiet_hours"
            if reason is not None:
                out[arm] = reason
                break
    return out


ARMS = ["a", "b", "c", "d", "tx"]
CHANNELS = ["email", "push", "sms"][:2]
GROUPS = {"g1": ["a", "b"], "g2": ["b", "c"]}
windows = st.one_of(
    st.builds(Rolling, st.sampled_from([60.0, 3600.0, DAY, 7 * DAY, 1.5])),
    st.builds(Calendar, st.sampled_from(["day", "week", "month"]), st.sampled_from(["UTC", "Europe/Paris",
                                                                                   "America/New_York"]),
              st.integers(0, 6)))
maybe_channel = st.sampled_from([None, *CHANNELS])
rules = st.one_of(
    st.builds(Cap, st.integers(1, 2), windows, st.sampled_from(["arm", "channel", "all"]), st.none(), maybe_channel),
    st.builds(Cap, st.integers(1, 2), windows, st.just("group"), st.sampled_from(["g1", "g2"]), maybe_channel),
    st.builds(Gap, st.sampled_from([60.0, 3600.0, 7200.0]), st.sampled_from(CHANNELS), st.sampled_from(CHANNELS)),
    st.builds(Suppress, st.lists(st.sampled_from(["accepted", "rejected"]), min_size=1, max_size=2, unique=True),
              st.sampled_from([60.0, 3600.0, DAY]), st.just("arm")),
    st.builds(Suppress, st.lists(st.sampled_from(["accepted", "rejected"]), min_size=1, max_size=2, unique=True),
              st.sampled_from([60.0, 3600.0, DAY]), st.just("group"), st.sampled_from([None, "g1", "g2"])),
    st.builds(QuietHours, st.sampled_from(["21:00", "08:00", "12:30"]), st.sampled_from(["07:00", "22:15"]),
              st.sampled_from(["UTC", "Europe/Paris"]), st.sampled_from([(), ("email",), ("push", "sms")])),
)
# ``now`` lands near a period start (local midnights of month starts, and of the Monday after Paris's
# spring DST change) plus a shift; entries lie at the shift (exactly on that start), at the rules' own
# durations before now (exact rolling boundaries), a hair either side, or anywhere in 40 days.
BASES = [ts(2026, 3, 1, tz=PARIS), ts(2026, 3, 30, tz=PARIS), ts(2026, 11, 1, tz=ZoneInfo("America/New_York")),
         ts(2027, 1, 1), ts(2026, 6, 10, 12)]
SHIFTS = [0.0, 1e-3, 60.0, 3600.0, 7200.0, DAY, 3 * DAY + 5.0]
DURATIONS = [60.0, 1.5, 3600.0, 7200.0, DAY, 7 * DAY]


def _edges(r, now: float) -> list[float]:
    """How long before ``now`` the rule's window starts: where its boundary cases lie."""
    if isinstance(r, Cap):
        w = r.window
        if isinstance(w, Rolling):
            return [w.seconds]
        d = datetime.fromtimestamp(now, ZoneInfo(w.tz)).date()  # the period's first local date, found by the
        if w.unit == "week":                                     # oracle's own rule, at its local midnight
            d -= timedelta(days=(d.weekday() - w.week_start) % 7)
        elif w.unit == "month":
            d = d.replace(day=1)
        return [now - datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(w.tz)).timestamp()]
    return [r.seconds] if isinstance(r, (Gap, Suppress)) else []


@st.composite
def case(draw):
    """Rules, then a timeline dense at their boundaries: most entries lie exactly on one, or a hair either side."""
    rs = draw(st.lists(rules, min_size=1, max_size=4))
    shift = draw(st.one_of(st.sampled_from(SHIFTS), st.floats(0, 10 * DAY)))
    now = draw(st.sampled_from(BASES)) + shift
    edges = [0.0, shift, *(e for r in rs for e in _edges(r, now))]
    near = st.sampled_from(edges).flatmap(lambda e: st.sampled_from([e, e, e + 1e-3, e - 1e-3]))
    offsets = st.one_of(near, near, st.floats(-60.0, 40 * DAY))
    cs = draw(st.lists(st.tuples(offsets, st.sampled_from(ARMS), st.sampled_from(CHANNELS)), max_size=12))
    os_ = draw(st.lists(st.tuples(offsets, st.sampled_from(ARMS), st.sampled_from(["accepted", "rejected",
                                                                                    "clicked"])), max_size=6))
    return rs, now, [(now - o, a, ch) for o, a, ch in cs], [(now - o, a, x) for o, a, x in os_]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case(), st.sampled_from(CHANNELS), st.booleans())
def test_suppressed_equals_a_recount_from_the_raw_lists(c, channel, with_tx):
    rs, now, contacts, outcomes = c
    policy = ContactPolicy(rs, groups=GROUPS, transactional=["tx"] if with_tx else [])
    h = hist(*contacts, outcomes=tuple(outcomes))
    got = policy.suppressed(h, ARMS, channel, now)
    assert got == oracle(policy, contacts, outcomes, ARMS, channel, now)
    for arm in ARMS:
        assert policy.check(h, arm, channel, now) == got.get(arm)
    for r in rs:  # each rule alone too: in a list, an earlier rule may hide a later one's mistake
        alone = ContactPolicy([r], groups=GROUPS, transactional=policy.transactional)
        assert alone.suppressed(h, ARMS, channel, now) == oracle(alone, contacts, outcomes, ARMS, channel, now)


@st.composite
def calendar_case(draw):
    """One calendar cap, ``now`` anywhere in 2026-2027 (both DST changes of three zones), entries at its period start."""
    window = draw(st.builds(Calendar, st.sampled_from(["day", "week", "month"]),
                            st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Australia/Sydney"]),
                            st.integers(0, 6)))
    rule = draw(st.builds(Cap, st.integers(1, 2), st.just(window), st.sampled_from(["arm", "channel", "all"])))
    now = draw(st.floats(ts(2026, 1, 1), ts(2028, 1, 1)))
    edge = _edges(rule, now)[0]
    offsets = st.one_of(st.sampled_from([edge, edge, edge + 1e-3, edge - 1e-3, edge + DAY, edge - DAY]),
                        st.floats(0.0, 40 * DAY))
    cs = draw(st.lists(st.tuples(offsets, st.sampled_from(ARMS[:2]), st.sampled_from(CHANNELS)), max_size=4))
    return rule, now, [(now - o, a, ch) for o, a, ch in cs]


@settings(max_examples=200, deadline=None)
@given(calendar_case(), st.sampled_from(CHANNELS))
def test_calendar_caps_equal_a_recount_by_local_dates(c, channel):
    rule, now, contacts = c
    policy = ContactPolicy([rule])
    assert policy.suppressed(hist(*contacts), ARMS[:2], channel, now) == oracle(policy, contacts, [], ARMS[:2],
                                                                               channel, now)


def test_the_benchmark_workload_agrees_with_the_oracle():
    from benchmarks.workloads import CONTACT_ARMS, CONTACT_NOW, contact_histories, contact_policy

    policy = contact_policy()
    blocked = 0
    for i, h in enumerate(contact_histories(40, seed=1)):
        now = CONTACT_NOW + i * 3607.0
        contacts = [(c.ts, c.arm, c.channel) for c in h.contacts]
        outcomes = [(o.ts, o.arm, o.outcome) for o in h.outcomes]
        for channel in ("email", "push", "sms", "web"):
            got = policy.suppressed(h, CONTACT_ARMS, channel, now)
            assert got == oracle(policy, contacts, outcomes, CONTACT_ARMS, channel, now)
            blocked += len(got)
    assert 0 < blocked < 40 * 4 * len(CONTACT_ARMS)  # the workload exercises both answers


@pytest.mark.parametrize("call, needle", [
    (lambda p: p.suppressed(History(), ["a"], "web", float("nan")), "finite number"),
    (lambda p: p.suppressed(History(), ["a"], "web", 1.7e12), "milliseconds"),
    (lambda p: p.suppressed(History(), ["a"], 3, NOW), "channel must be a str"),
    (lambda p: p.suppressed([], ["a"], "web", NOW), "must be an nba.profiles.History"),
    (lambda p: p.suppressed(History(), "abc", "web", NOW), "collection of arm ids"),
])
def test_policy_refuses_bad_input_with_schema_error(call, needle):
    with pytest.raises(SchemaError, match=needle):
        call(ContactPolicy([Cap(1, Calendar("day"))]))


# --------------------------------------------------------------------------- the stores: one suite


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    if not redis_server.available():
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = redis_server.RedisServer().start()
    try:
        yield server.url
    finally:
        server.close()


class Stores:
    """``make(**options)`` returns a fresh store of this kind (Redis: on a namespace of its own)."""

    def __init__(self, kind: str, url: str | None) -> None:
        self.kind, self.url = kind, url
        self.made: list[ContactStore] = []
        self.namespaces: list[str] = []

    def make(self, **options) -> ContactStore:
        if self.kind == "embedded":
            store: ContactStore = EmbeddedContactStore(**options)
        else:
            ns = "c-" + secrets.token_hex(6)
            self.namespaces.append(ns)
            store = RedisContactStore(self.url, namespace=ns, **options)
        self.made.append(store)
        return store

    def raw_bytes(self) -> list[bytes]:
        """Everything the stores hold, as bytes: every Redis key name and value, or the embedded dicts encoded."""
        out: list[bytes] = []
        if self.kind == "embedded":
            for s in self.made:
                for k, h in s._histories.items():  # type: ignore[attr-defined]
                    out += [k.encode(), h.to_bytes()]
                for e, (k, _) in s._links.items():  # type: ignore[attr-defined]
                    out += [e.encode(), k.encode()]
            return out
        import redis
        client = redis.Redis.from_url(self.url)
        for key in client.scan_iter(count=1000):
            out.append(key)
            kind = client.type(key)
            if kind == b"hash":
                for f, v in client.hgetall(key).items():
                    out += [f, v]
            elif kind == b"string":
                out.append(client.get(key))
            else:
                out.append(client.dump(key) or b"")
        client.close()
        return out


@pytest.fixture(params=["embedded", "redis"])
def stores(request: pytest.FixtureRequest) -> Iterator[Stores]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    s = Stores(request.param, url)
    yield s
    for store in s.made:
        store.close()


POLICY = ContactPolicy([Cap(2, Calendar("week"), per="all"), Cap(1, Rolling(DAY), per="arm"),
                        Gap(7200, "email", "push"), Suppress(("accepted",), 7 * DAY)], transactional=["receipt"])


def test_store_is_a_contact_store(stores):
    assert isinstance(stores.make(), ContactStore)


def test_reserve_records_what_it_allows_and_returns_the_reason_otherwise(stores):
    store = stores.make(retention=POLICY.horizon)
    assert store.history("p", NOW) == History()
    assert store.reserve("p", "a", "push", NOW, POLICY) is None
    assert store.reserve("p", "a", "web", NOW + 1, POLICY) == "cap:arm:1/86400s"
    assert store.reserve("p", "b", "email", NOW + 2, POLICY) == "gap:push>email:7200s"
    assert store.reserve("p", "b", "web", NOW + 3, POLICY) is None
    assert store.reserve("p", "c", "web", NOW + 4, POLICY) == "cap:all:2/week"
    assert store.reserve("p", "receipt", "email", NOW + 5, POLICY) is None  # transactional: recorded, not counted
    assert store.history("p", NOW + 6) == hist((NOW, "a", "push"), (NOW + 3, "b", "web"), (NOW + 5, "receipt", "email"))
    assert store.history("other", NOW) == History()


def test_the_next_channel_continues_where_the_last_left_off(stores):
    store = stores.make(retention=POLICY.horizon)
    store.record("p", "a", "web", NOW)  # a deferred decision activated on the web
    store.outcome("p", "b", "accepted", NOW + 1)  # accepted in the app
    assert POLICY.suppressed(store.history("p", NOW + 2), ["a", "b", "c"], "email", NOW + 2) == {
        "a": "cap:arm:1/86400s", "b": "suppressed:accepted"}
    assert store.reserve("p", "b", "email", NOW + 3, POLICY) == "suppressed:accepted"
    assert store.reserve("p", "c", "email", NOW + 3, POLICY) is None


def test_record_is_unconditional(stores):
    store = stores.make(retention=POLICY.horizon)
    for i in range(4):
        store.record("p", "a", "push", NOW + i)
    assert len(store.history("p", NOW + 5).contacts) == 4
    assert store.reserve("p", "b", "web", NOW + 5, POLICY) == "cap:all:2/week"


def test_writes_prune_beyond_retention_and_bound_entries(stores):
    store = stores.make(retention=100.0, max_entries=3)
    for i in range(5):
        store.record("p", "a", "web", NOW + i)
    assert [c.ts for c in store.history("p", NOW + 10).contacts] == [NOW + 2, NOW + 3, NOW + 4]
    store.outcome("p", "a", "accepted", NOW + 150)
    h = store.history("p", NOW + 150)
    assert h.contacts == () and h.outcomes == (Outcome(NOW + 150, "a", "accepted"),)
    assert store.history("p", NOW + 250) == h and store.history("p", NOW + 250.001) == History()  # reads prune too


def test_reserve_refuses_a_policy_looking_further_back_than_the_store_keeps(stores):
    store = stores.make(retention=3600.0)
    with pytest.raises(ConfigError, match="retention=policy.horizon"):
        store.reserve("p", "a", "web", NOW, POLICY)
    with pytest.raises(ConfigError, match="must be a ContactPolicy"):
        store.reserve("p", "a", "web", NOW, [Cap(1, Rolling(60))])  # type: ignore[arg-type]


@pytest.mark.parametrize("call", [
    lambda s: s.record("", "a", "web", NOW), lambda s: s.record(7, "a", "web", NOW),
    lambda s: s.record("p", None, "web", NOW), lambda s: s.record("p", "a", "web", NOW * 1000),
    lambda s: s.outcome("p", "a", 1, NOW), lambda s: s.history("p", float("nan")),
    lambda s: s.forget("p"), lambda s: s.merge("p", ["p"]), lambda s: s.record("p", "\ud800", "web", NOW)])
def test_bad_input_raises_schema_error_and_changes_nothing(stores, call):
    store = stores.make()
    with pytest.raises(SchemaError):
        call(store)
    assert store.history("p", NOW) == History()


def test_merge_folds_the_histories_into_the_master_and_drops_the_others(stores):
    store = stores.make(retention=POLICY.horizon)
    store.record("anon", "a", "web", NOW)
    store.outcome("anon", "b", "accepted", NOW + 1)
    store.record("cust", "c", "email", NOW + 2)
    store.record("other", "d", "push", NOW + 3)
    store.merge("cust", ["anon", "ghost"])
    assert store.history("cust", NOW + 4) == hist((NOW, "a", "web"), (NOW + 2, "c", "email"),
                                                  outcomes=((NOW + 1, "b", "accepted"),))
    assert store.history("anon", NOW + 4) == History()
    assert store.reserve("cust", "e", "web", NOW + 5, POLICY) == "cap:all:2/week"
    store.merge("nobody", ["ghost2"])
    assert store.history("nobody", NOW) == History()
    store.merge("cust", [])
    assert len(store.history("cust", NOW + 5).contacts) == 2


def test_forget_leaves_no_byte_of_the_key_or_its_arms(stores):
    store = stores.make(retention=POLICY.horizon)
    store.record("subject-7f3a", "arm-secret-offer", "email", NOW)
    store.outcome("subject-7f3a", "arm-secret-offer", "accepted", NOW + 1)
    store.record("alias-9c1d", "arm-other-secret", "push", NOW)
    store.record("bystander", "arm-public", "web", NOW)
    blob = b"".join(stores.raw_bytes())
    assert b"subject-7f3a" in blob and b"arm-secret-offer" in blob  # the scan sees what is there
    store.forget(["subject-7f3a", "alias-9c1d", "never-seen"])
    blob = b"".join(stores.raw_bytes())
    for needle in (b"subject-7f3a", b"alias-9c1d", b"arm-secret-offer", b"arm-other-secret"):
        assert needle not in blob
    assert b"arm-public" in blob
    assert store.history("subject-7f3a", NOW + 2) == History()


def test_an_outcome_reaches_the_contact_of_its_event_through_merges(stores):
    store = stores.make(retention=POLICY.horizon)
    assert store.reserve("anon", "offer1", "web", NOW, POLICY, "ev-1") is None
    store.record("anon", "offer2", "app", NOW + 1, event_id="ev-2")
    store.record("cust", "offer3", "app", NOW + 2, event_id="ev-3")
    assert store.outcome_of("ev-2", "accepted", NOW + 10)
    store.merge("cust", ["anon"])
    assert store.outcome_of("ev-1", "rejected", NOW + 11)  # its link followed the merge
    assert store.outcome_of("ev-3", "accepted", NOW + 12)
    assert not store.outcome_of("ev-none", "accepted", NOW + 13) and not store.outcome_of("", "accepted", NOW)
    assert [(o.arm, o.outcome) for o in store.history("cust", NOW + 20).outcomes] == [
        ("offer2", "accepted"), ("offer1", "rejected"), ("offer3", "accepted")]
    only = ContactPolicy([Suppress(("accepted",), 7 * DAY)])
    assert only.check(store.history("cust", NOW + 20), "offer2", "web", NOW + 20) == "suppressed:accepted"


def test_forget_erases_the_event_links_too(stores):
    store = stores.make(retention=POLICY.horizon)
    store.record("subject-7f3a", "offer1", "web", NOW, event_id="event-of-subject-55")
    store.record("bystander", "offer1", "web", NOW, event_id="event-of-bystander")
    store.forget(["subject-7f3a"])
    blob = b"".join(stores.raw_bytes())
    assert b"event-of-subject-55" not in blob and b"subject-7f3a" not in blob and b"event-of-bystander" in blob
    assert not store.outcome_of("event-of-subject-55", "accepted", NOW + 1)
    assert store.outcome_of("event-of-bystander", "accepted", NOW + 1)


def test_a_bad_event_id_is_refused(stores):
    store = stores.make()
    with pytest.raises(SchemaError, match="event_id"):
        store.record("k", "a", "web", NOW, event_id=3)  # type: ignore[arg-type]
    with pytest.raises(SchemaError):
        store.outcome_of("\ud800", "accepted", NOW)


def test_embedded_store_is_new_per_instance_and_counts_profiles():
    store = EmbeddedContactStore()
    store.record("p", "a", "web", NOW)
    store.record("q", "a", "web", NOW)
    assert len(store) == 2
    store.forget(["p"])
    assert len(store) == 1


# --------------------------------------------------------------------------- Redis specifics


def test_redis_store_survives_a_script_flush(redis_url):
    import redis
    store = RedisContactStore(redis_url, namespace="c-" + secrets.token_hex(6), retention=POLICY.horizon)
    assert store.reserve("p", "a", "web", NOW, POLICY) is None
    redis.Redis.from_url(redis_url).script_flush()
    assert store.reserve("p", "b", "web", NOW + 1, POLICY) is None  # NOSCRIPT: redis-py loads it again
    assert store.reserve("p", "c", "web", NOW + 2, POLICY) == "cap:all:2/week"
    store.close()


def test_redis_keys_share_the_namespace_hash_tag_and_expire(redis_url):
    import redis
    ns = "c-" + secrets.token_hex(6)
    client = redis.Redis.from_url(redis_url)
    store = RedisContactStore(client, namespace=ns, retention=3600.0)
    store.record("p", "a", "web", NOW)
    keys = sorted(client.scan_iter(match=f"{{{ns}}}:*"))
    assert keys == [f"{{{ns}}}:contact-version".encode(), f"{{{ns}}}:contact:p".encode()]
    assert 3600_000 < client.pttl(f"{{{ns}}}:contact:p") <= 3660_000
    store.close()
    assert client.ping()  # a client passed in stays open: it is the caller's
    client.close()


def test_redis_reserve_recomputes_when_another_process_wrote_in_between(redis_url):
    ns = "c-" + secrets.token_hex(6)
    store = RedisContactStore(redis_url, namespace=ns, retention=POLICY.horizon)
    other = RedisContactStore(redis_url, namespace=ns, retention=POLICY.horizon)
    store.record("p", "a", "web", NOW)
    read = store._read

    def read_then_interfere(keys):
        seen = read(keys)
        other.record("p", "b", "web", NOW + 1)  # lands between this read and the commit
        return seen

    store._read = read_then_interfere  # type: ignore[method-assign]
    assert store.reserve("p", "c", "web", NOW + 2, POLICY) == "cap:all:2/week"  # counted b, which it had not read
    assert len(store.history("p", NOW + 3).contacts) == 2
    store.close()
    other.close()


def test_redis_gives_up_after_max_attempts_with_contact_error(redis_url):
    ns = "c-" + secrets.token_hex(6)
    store = RedisContactStore(redis_url, namespace=ns, retention=POLICY.horizon, max_attempts=3)
    other = RedisContactStore(redis_url, namespace=ns, retention=POLICY.horizon)
    commit = store._commit
    calls = []

    def interfering_commit(keys, args):
        calls.append(1)
        other.record("p", "x", "web", NOW + len(calls))
        return commit(keys=keys, args=args)

    store._commit = interfering_commit  # type: ignore[assignment]
    with pytest.raises(ContactError, match="3 attempts"):
        store.record("p", "a", "web", NOW)
    assert len(calls) == 3
    assert {c.arm for c in store.history("p", NOW + 5).contacts} == {"x"}  # nothing of a
    store.close()
    other.close()


def test_redis_store_refuses_garbage_under_its_keys(redis_url):
    import redis
    ns = "c-" + secrets.token_hex(6)
    redis.Redis.from_url(redis_url).hset(f"{{{ns}}}:contact:p", mapping={"v": "1", "h": "junk"})
    store = RedisContactStore(redis_url, namespace=ns)
    with pytest.raises(ModelFormatError, match="another program"):
        store.history("p", NOW)
    store.close()


@pytest.mark.parametrize("ns", ["", "a}b", "é", 3])
def test_redis_store_refuses_a_bad_namespace(redis_url, ns):
    with pytest.raises(ConfigError, match="namespace"):
        RedisContactStore(redis_url, namespace=ns)


ops = st.lists(st.tuples(st.sampled_from(["reserve", "reserve", "record", "outcome", "merge"]),
                         st.sampled_from(["p", "q"]), st.sampled_from(ARMS), st.sampled_from(CHANNELS),
                         st.sampled_from([0.0, 1.0, 60.0, 3600.0, 7200.0, DAY])), max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_both_stores_give_the_same_answers_and_histories(redis_url, seq):
    policy = ContactPolicy([Cap(2, Calendar("day", "Europe/Paris")), Cap(1, Rolling(3600), per="arm"),
                            Gap(7200, "email", "push"), Suppress(("accepted",), DAY)], transactional=["tx"])
    embedded = EmbeddedContactStore(retention=policy.horizon, max_entries=6)
    red = RedisContactStore(redis_url, namespace="c-" + secrets.token_hex(6), retention=policy.horizon, max_entries=6)
    now = NOW
    try:
        for op, key, arm, channel, step in seq:
            now += step
            if op == "reserve":
                assert embedded.reserve(key, arm, channel, now, policy) == red.reserve(key, arm, channel, now, policy)
            elif op == "record":
                embedded.record(key, arm, channel, now)
                red.record(key, arm, channel, now)
            elif op == "outcome":
                embedded.outcome(key, arm, "accepted", now)
                red.outcome(key, arm, "accepted", now)
            else:
                other = "q" if key == "p" else "p"
                embedded.merge(key, [other])
                red.merge(key, [other])
            for k in ("p", "q"):
                assert embedded.history(k, now) == red.history(k, now)
    finally:
        red.forget(["p", "q"])
        red.close()


def test_a_reserve_after_a_read_is_one_round_trip_and_still_checks(redis_url):
    import redis

    class Counting(redis.Redis):  # type: ignore[misc]
        calls = 0

        def execute_command(self, *args, **options):
            self.calls += 1
            return super().execute_command(*args, **options)

    client = Counting.from_url(redis_url)
    store = RedisContactStore(client, namespace="c-" + secrets.token_hex(6))
    policy = ContactPolicy([Cap(2, Rolling(DAY))])
    assert store.reserve("k", "a", "web", NOW, policy) is None
    _, seen = store.read("k", NOW + 1)
    before = client.calls
    assert store.reserve("k", "b", "web", NOW + 1, policy, seen=seen) is None
    assert client.calls - before == 1  # the commit alone: the read's version still held
    _, stale = store.read("k", NOW + 2)
    other = RedisContactStore(redis_url, namespace=store.namespace)
    assert other.reserve("k", "c", "web", NOW + 2, ContactPolicy([])) is None  # another writer, meanwhile
    assert store.reserve("k", "d", "web", NOW + 3, policy, seen=stale) == "cap:all:2/86400s"  # retried on the fresh value
    assert [c.arm for c in store.history("k", NOW + 4).contacts] == ["a", "b", "c"]
    _, elsewhere = store.read("other-key", NOW)
    assert store.reserve("k2", "a", "web", NOW, policy, seen=elsewhere) is None  # a token of another key is ignored
    other.close()
    client.close()
