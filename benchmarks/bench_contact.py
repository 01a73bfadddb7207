"""Contact policy: what checking 20 candidate arms costs a decision, and what a Redis reservation costs.

Workload: ``workloads.contact_policy`` (7 rules: weekly and daily calendar caps in
Europe/Paris, a per-arm rolling cap, a group cap, an sms cap, a push-to-email gap,
outcome suppression, quiet hours) and ``workloads.contact_histories`` (30 contacts
and 10 outcomes over 30 days per profile). Groups:

* ``contact-suppressed-20arms``: ``ContactPolicy.suppressed`` for 20 arms vs a plain
  Python loop recounting the raw list for each arm and each rule (what a first
  implementation would write; it gives the same answers, checked here). Floor 1.0x:
  one pass per rule must not lose to twenty. Per-call p50/p99 of both in
  ``contact-suppressed-latency``.
* ``contact-reserve-redis``: ``RedisContactStore.reserve`` (a read and a
  compare-and-set commit: two round trips, the policy evaluated in Python between
  them) vs a raw ``EVALSHA`` of a trivial script (one round trip). Loose floor 0.15x:
  a guard against a third round trip or a history decoded twice, not a goal. Per-call
  p50/p99 of both in ``extra_info``.
"""

from __future__ import annotations

import os

import pytest

from benchmarks.latency import record_latency
from benchmarks.workloads import CONTACT_ARMS, CONTACT_NOW, contact_histories, contact_policy
from nba.profiles import Cap, Gap, History, QuietHours, RedisContactStore, Suppress
from tests import redis_server

LATENCY_CALLS = int(os.environ.get("NBA_BENCH_LATENCY_CALLS", "5000"))
POLICY = contact_policy()
HISTORIES = contact_histories(64, seed=1)
CHANNELS = ["email", "push", "sms", "web"]


def recount(policy, history: History, arms, channel: str, now: float) -> dict:
    """Each arm, each rule, a fresh count over the raw list: the reference."""
    out = {}
    for arm in arms:
        if arm in policy.transactional:
            continue
        for r in policy.rules:
            reason = None
            if isinstance(r, Cap):
                if r.channel is not None and r.channel != channel:
                    continue
                members = policy.groups.get(r.group, ()) if r.per == "group" else ()
                if r.per == "group" and arm not in members:
                    continue
                start = r.window.start(now)
                n = 0
                for c in history.contacts:
                    if c.arm in policy.transactional or c.ts < start:
                        continue
                    if r.channel is not None and c.channel != r.channel:
                        continue
                    if (r.per == "arm" and c.arm != arm) or (r.per == "group" and c.arm not in members) or \
                            (r.per == "channel" and c.channel != channel):
                        continue
                    n += 1
                if n >= r.limit:
                    reason = r.reason.replace("channel:*", f"channel:{channel}")
            elif isinstance(r, Gap):
                if channel == r.channel and any(c.channel == r.after and c.ts >= now - r.seconds
                                                and c.arm not in policy.transactional for c in history.contacts):
                    reason = r.reason
            elif isinstance(r, Suppress):
                hits = [(o.ts, o.outcome) for o in history.outcomes if o.arm == arm and o.outcome in r.outcomes
                        and o.ts >= now - r.seconds]
                if hits:
                    reason = r.reason_prefix + max(hits)[1]
            elif isinstance(r, QuietHours) and r.quiet(channel, now):
                reason = "quiet_hours"
            if reason is not None:
                out[arm] = reason
                break
    return out


def _calls(fn) -> list:
    return [lambda h=h, ch=ch, t=t: fn(POLICY, h, CONTACT_ARMS, ch, t)
            for i, h in enumerate(HISTORIES) for ch in CHANNELS[i % 2::2][:1] for t in (CONTACT_NOW + i * 3607.0,)]


def _nba(policy, h, arms, ch, t):
    return policy.suppressed(h, arms, ch, t)


def test_reference_agrees():
    for i, h in enumerate(HISTORIES):
        for ch in CHANNELS:
            t = CONTACT_NOW + i * 3607.0
            assert POLICY.suppressed(h, CONTACT_ARMS, ch, t) == recount(POLICY, h, CONTACT_ARMS, ch, t)


@pytest.mark.parametrize("impl", ["nba", "python-recount"])
def test_suppressed(benchmark, impl):
    calls = _calls(_nba if impl == "nba" else recount)
    it = iter(range(1 << 62))
    benchmark.group = "contact-suppressed-20arms"
    benchmark.extra_info.update(impl=impl, arms=len(CONTACT_ARMS), rules=len(POLICY.rules))
    if impl == "nba":
        benchmark.extra_info["floors"] = {"python-recount": 1.0}
    benchmark(lambda: calls[next(it) % len(calls)]())


@pytest.mark.parametrize("impl", ["nba", "python-recount"])
def test_suppressed_latency(benchmark, impl):
    record_latency(benchmark, "contact-suppressed-latency", impl, _calls(_nba if impl == "nba" else recount),
                   LATENCY_CALLS)


@pytest.fixture(scope="module")
def redis_url():
    if not redis_server.available():
        pytest.skip("redis-server is not installed (tools/test_services.sh)")
    with redis_server.redis_server() as server:
        yield server.url


def test_reserve_redis(benchmark, redis_url):
    store = RedisContactStore(redis_url, namespace="bench-contact", retention=POLICY.horizon)
    n = [0]

    def one():
        i = n[0] = n[0] + 1
        # 1000 profiles, a decision on each every 17 minutes of virtual time: most allowed, some capped
        store.reserve(f"p{i % 1000}", CONTACT_ARMS[i % 19], CHANNELS[i % 4], CONTACT_NOW + i * 1.02, POLICY)

    record_latency(benchmark, "contact-reserve-redis", "nba", [one], LATENCY_CALLS)
    benchmark.extra_info.update(floors={"raw-evalsha": 0.15}, call="RedisContactStore.reserve, 7 rules")
    store.close()


def test_raw_evalsha(benchmark, redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    sha = client.script_load("return 1")
    record_latency(benchmark, "contact-reserve-redis", "raw-evalsha",
                   [lambda: client.evalsha(sha, 1, "{bench-contact}:x")], LATENCY_CALLS)
    client.close()
