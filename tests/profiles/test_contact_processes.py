"""RedisContactStore across real processes: caps are never exceeded under concurrent reservations.

Four workers (made with ``fork`` and with ``spawn``) wait on one barrier, then each
reserves as fast as it can against one profile whose policy caps all contacts at
``N`` and each arm at ``PER_ARM``, far fewer than the attempts. Every reservation is a
read, a decision in Python and a compare-and-set, so the workers keep colliding; the
test checks that exactly ``N`` succeed in total, that no arm gets more than
``PER_ARM``, that the history in Redis holds exactly the contacts that succeeded, and
that every refusal names a cap. Virtual clock: ``now`` is fixed, so nothing ages out.
"""

from __future__ import annotations

import multiprocessing as mp
import secrets
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from nba.profiles import Cap, ContactPolicy, RedisContactStore, Rolling
from tests import redis_server

pytestmark = pytest.mark.skipif(not redis_server.available(), reason="redis-server is not installed")

N, PER_ARM, WORKERS, ATTEMPTS = 25, 4, 4, 60
ARMS = [f"offer{i}" for i in range(10)]
CHANNELS = ["email", "push", "web"]
NOW = 1_800_000_000.0
POLICY = ContactPolicy([Cap(PER_ARM, Rolling(3600), per="arm"), Cap(N, Rolling(3600), per="all")])


def worker(url: str, ns: str, key: str, seed: int, barrier: Any, out: Any) -> None:
    store = RedisContactStore(url, namespace=ns, retention=POLICY.horizon)
    store.reserve(f"warm-{seed}", "offer0", "web", NOW, POLICY)  # connected, script loaded: all start level
    results = []
    barrier.wait(60)
    for i in range(ATTEMPTS):
        arm, channel = ARMS[(seed * 7 + i) % len(ARMS)], CHANNELS[(seed + i) % len(CHANNELS)]
        results.append((arm, channel, store.reserve(key, arm, channel, NOW + (seed * ATTEMPTS + i) * 1e-6, POLICY)))
    store.close()
    out.put((seed, results))


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = redis_server.RedisServer().start()
    try:
        yield server.url
    finally:
        server.close()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_concurrent_reservations_never_exceed_a_cap(redis_url, method):
    ctx = mp.get_context(method)
    ns, key = "cp-" + secrets.token_hex(6), "profile-1"
    barrier, out = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(redis_url, ns, key, s, barrier, out)) for s in range(WORKERS)]
    for p in procs:
        p.start()
    try:
        got = dict(out.get(timeout=120) for _ in procs)
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
                p.join()
    assert all(p.exitcode == 0 for p in procs)
    allowed = [(arm, ch) for results in got.values() for arm, ch, reason in results if reason is None]
    refused = Counter(reason for results in got.values() for _, _, reason in results if reason is not None)
    assert len(allowed) == N
    assert max(Counter(arm for arm, _ in allowed).values()) <= PER_ARM
    assert set(refused) <= {f"cap:arm:{PER_ARM}/3600s", f"cap:all:{N}/3600s"}
    assert sum(refused.values()) == WORKERS * ATTEMPTS - N
    store = RedisContactStore(redis_url, namespace=ns, retention=POLICY.horizon)
    history = store.history(key, NOW + 1)
    store.close()
    assert Counter((c.arm, c.channel) for c in history.contacts) == Counter(allowed)
