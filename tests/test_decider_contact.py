"""Decider with a contact policy: held-back arms are not offered, say why, and the chosen contact is recorded.

The oracle is the policy itself over the contacts the test has seen decided: every
decision's ``actions`` are the eligible arms minus ``ContactPolicy.suppressed`` of that
history, with the same reasons, and the recorded history is exactly the decisions made.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nba
from nba.log import DecisionRecord, read_records
from nba.profiles import (
    Calendar,
    Cap,
    Contact,
    ContactPolicy,
    EmbeddedContactStore,
    Gap,
    History,
    QuietHours,
    Rolling,
    Suppress,
)
from tests import redis_server

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
DAY = 86400.0
ARMS = [nba.Arm(f"offer{i}", features={"fee": float(i)}, channels={"*": {"n": i}}) for i in range(4)]
ARMS.append(nba.Arm("receipt", features={"fee": 0.0}, channels={"*": {}}))
SCHEMA = nba.FeatureSchema([nba.Numeric("age")])


def _decider(policy: ContactPolicy, contacts=None, log=None, **kw) -> nba.Decider:
    model = nba.BetaThompson(len(ARMS))
    return nba.Decider(ARMS, model, schema=SCHEMA, contact=policy, contacts=EmbeddedContactStore() if contacts is None else contacts,
                       fallback="receipt", log=log, **kw)


def test_never_the_same_offer_twice_in_a_day_on_any_channel():
    policy = ContactPolicy([Cap(1, Rolling(DAY), per="arm")], transactional=["receipt"])
    d = _decider(policy)
    offers: list[str] = []
    for k in range(12):
        got = d.decide({"id": "u1"}, channel=["web", "app", "email"][k % 3], now=T0 + k, event_id=f"e{k}")
        assert got.suppressed == {a: "cap:arm:1/86400s" for a in offers}  # what any channel showed before
        if got.arm != "receipt":  # the transactional arm is never held back nor counted
            assert got.arm not in offers
            offers.append(got.arm)
    assert len(offers) == 4 or d.decide({"id": "u1"}, channel="web", now=T0 + 20).suppressed.keys() == set(offers)
    later = d.decide({"id": "u1"}, channel="web", now=T0 + DAY + 10)  # a day on: all allowed again
    assert later.suppressed == {}


def test_no_email_within_two_hours_of_a_push():
    policy = ContactPolicy([Gap(7200, channel="email", after="push")])
    d = _decider(policy)
    d.decide({"id": "u1"}, channel="push", now=T0)
    held = d.decide({"id": "u1"}, channel="email", now=T0 + 7199)
    assert held.fallback and set(held.suppressed) == {a.id for a in ARMS} and held.actions == ("receipt",)
    assert set(held.suppressed.values()) == {"gap:push>email:7200s"}
    assert not d.decide({"id": "u1"}, channel="email", now=T0 + 7201).fallback
    assert not d.decide({"id": "u2"}, channel="email", now=T0 + 1).fallback  # another customer: no push


def test_quiet_hours_hold_back_everything_but_transactional_arms():
    policy = ContactPolicy([QuietHours("21:00", "08:00", tz="Europe/Paris", channels=("sms",))],
                           transactional=["receipt"])
    d = _decider(policy)
    night = T0  # 23:13 in Paris
    got = d.decide({"id": "u1"}, channel="sms", now=night)
    assert got.arm == "receipt" and not got.fallback and got.actions == ("receipt",)
    assert set(got.suppressed) == {f"offer{i}" for i in range(4)}
    assert d.decide({"id": "u1"}, channel="web", now=night).suppressed == {}


def test_the_weekly_cap_counts_calendar_weeks_in_the_time_zone():
    policy = ContactPolicy([Cap(2, Calendar("week", tz="America/New_York"))], transactional=["receipt"])
    d = _decider(policy)
    monday = 1_700_456_400.0  # Monday 2023-11-20 00:00 in New York
    shown = k = 0
    while shown < 2:  # two offers on Sunday night (the receipt, transactional, counts for no cap)
        shown += d.decide({"id": "u"}, channel="web", now=monday - 3600 + k).arm != "receipt"
        k += 1
    held = d.decide({"id": "u"}, channel="web", now=monday - 1)
    assert held.arm == "receipt" and held.suppressed == {f"offer{i}": "cap:all:2/week" for i in range(4)}
    fresh = d.decide({"id": "u"}, channel="web", now=monday)  # a new week
    assert fresh.suppressed == {} and len(fresh.actions) == len(ARMS)


def test_the_history_records_exactly_the_decisions(tmp_path: Path):
    policy = ContactPolicy([Cap(3, Rolling(3600)), Cap(1, Rolling(600), per="arm")], transactional=["receipt"])
    store = EmbeddedContactStore()
    log = nba.DecisionLog(tmp_path)
    d = _decider(policy, store, log=log)
    rng = random.Random(4)
    history = History()
    made = []
    for k in range(40):
        now = T0 + k * 97.0
        channel = rng.choice(["web", "app"])
        want = policy.suppressed(history, [a.id for a in ARMS], channel, now)
        got = d.decide({"id": "u"}, channel=channel, now=now)
        assert got.suppressed == want
        assert set(got.actions) == {a.id for a in ARMS} - set(want) or got.fallback
        if not got.fallback:
            history = History(contacts=(*history.contacts, Contact(now, got.arm, channel)))
        made.append(got)
    assert [(c.ts, c.arm, c.channel) for c in store.history("u", T0 + 4000).contacts] == \
        [(c.ts, c.arm, c.channel) for c in history.contacts]
    log.close()
    logged = {r.event_id: r.suppressed for r in read_records(tmp_path) if isinstance(r, DecisionRecord)}
    assert logged == {m.event_id: m.suppressed for m in made}


@settings(max_examples=30, deadline=None)
@given(limit=st.integers(1, 4), steps=st.lists(st.tuples(st.sampled_from(["web", "app", "email"]),
                                                         st.floats(0, 5000)), max_size=25))
def test_a_cap_is_never_exceeded(limit, steps):
    policy = ContactPolicy([Cap(limit, Rolling(3600))], transactional=["receipt"])
    d = _decider(policy)
    now, shown = T0, []
    for channel, dt in steps:
        now += dt
        got = d.decide({"id": "u"}, channel=channel, now=now)
        if got.arm != "receipt":
            shown.append(now)
        assert sum(1 for t in shown if t >= now - 3600) <= limit


def test_bad_calls_raise_and_record_nothing(tmp_path: Path):
    store = EmbeddedContactStore()
    log = nba.DecisionLog(tmp_path)
    d = _decider(ContactPolicy([Cap(1, Rolling(60))]), store, log=log)
    with pytest.raises(nba.SchemaError, match="channel="):
        d.decide({"id": "u"}, now=T0)
    with pytest.raises(nba.SchemaError, match="its id"):
        d.decide({"age": 3.0}, channel="web", now=T0)
    with pytest.raises(nba.ConfigError, match="n=1"):
        d.decide({"id": "u"}, channel="web", n=2, now=T0)
    assert store.history("u", T0).contacts == () and log.last_seq == 2


def test_the_policy_and_store_are_checked_at_build():
    with pytest.raises(nba.ConfigError, match="contacts="):
        nba.Decider(ARMS, nba.BetaThompson(len(ARMS)), schema=SCHEMA, contact=ContactPolicy([]))
    with pytest.raises(nba.ConfigError, match="arms the catalogue does not have"):
        _decider(ContactPolicy([], transactional=["nope"]))
    with pytest.raises(nba.ConfigError, match="ContactPolicy"):
        nba.Decider(ARMS, nba.BetaThompson(len(ARMS)), schema=SCHEMA, contact=[Cap(1, Rolling(1))],  # type: ignore[arg-type]
                    contacts=EmbeddedContactStore())


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    if not redis_server.available():
        pytest.skip("redis-server is not installed (tools/test_services.sh)")
    with redis_server.redis_server() as server:
        yield server.url


def _worker(url: str, namespace: str, seed: int, out) -> None:
    from nba.profiles import RedisContactStore

    store = RedisContactStore(url, namespace=namespace)
    d = _decider(ContactPolicy([Cap(3, Rolling(DAY))], transactional=["receipt"]), store, seed=seed)
    got = [d.decide({"id": "shared"}, channel="web", now=T0 + i).arm for i in range(25)]
    out.put(sum(a != "receipt" for a in got))


@pytest.mark.parametrize("processes", [2, 4])
def test_caps_hold_across_processes_deciding_at_once(redis_url, processes):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    ns = f"cap{processes}-{os.getpid()}"
    procs = [ctx.Process(target=_worker, args=(redis_url, ns, i, out)) for i in range(processes)]
    for p in procs:
        p.start()
    counts = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert sum(counts) == 3  # exactly the cap, whoever won the races


def test_an_accepted_offer_is_suppressed_from_any_process_that_gets_the_reward(redis_url):
    from nba.profiles import RedisContactStore

    policy = ContactPolicy([Suppress(("accepted", "rejected"), 7 * DAY)], transactional=["receipt"])
    ns = f"outcome-{os.getpid()}"
    web, app = (_decider(policy, RedisContactStore(redis_url, namespace=ns)) for _ in range(2))
    shown = web.decide({"id": "u"}, channel="web", now=T0)
    app.reward(shown.event_id, 1.0, now=T0 + 60)  # the click lands on another worker
    later = app.decide({"id": "u"}, channel="app", now=T0 + 120)
    assert later.suppressed == {} if shown.arm == "receipt" else {shown.arm: "suppressed:accepted"}
    other = web.decide({"id": "u"}, channel="web", now=T0 + 130)
    web.reward(other.event_id, 0.0, now=T0 + 140, outcome="rejected")
    if other.arm not in ("receipt", shown.arm):
        assert web.decide({"id": "u"}, channel="web", now=T0 + 150).suppressed[other.arm] == "suppressed:rejected"
    assert app.decide({"id": "u"}, channel="web", now=T0 + 8 * DAY).suppressed == {}


def test_a_zero_reward_records_no_outcome_and_an_unknown_event_is_fine():
    policy = ContactPolicy([Suppress(("accepted",), DAY)])
    store = EmbeddedContactStore()
    d = _decider(policy, store)
    shown = d.decide({"id": "u"}, channel="web", now=T0)
    d.reward(shown.event_id, 0.0, now=T0 + 1)
    assert store.history("u", T0 + 2).outcomes == ()
    d.reward("never-decided", 1.0, now=T0 + 3)  # logged and learned as before; no contact to mark
    d.reward(shown.event_id, 1.0, now=T0 + 4)
    assert [(o.arm, o.outcome) for o in store.history("u", T0 + 5).outcomes] == [(shown.arm, "accepted")]
