"""RedisProfileStore across real processes: writers in 2 and 4 processes share one namespace.

Each worker is a process (``fork``, and ``spawn`` once: a store built from nothing in a
fresh interpreter) with a store of its own on the namespace; the workers start together
(a barrier) and track their events, part one by one and part in ``track_many`` batches of
random sizes, so their reads and commits interleave on the same profiles. The oracle is
``Features`` used directly over every event of every worker: the final profile must equal
it exactly (the definitions are the suite's eight: counts, integer sums, a last value,
recency, channels, first seen, all exact), so an event lost or counted twice fails.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.workloads import profile_definitions
from nba.profiles import Event, Features, RedisProfileStore
from tests import redis_server

pytestmark = pytest.mark.skipif(not redis_server.available(), reason="redis-server is not installed")

BASE = 1_700_000_000.0
NOW = BASE + 7200.0
FEATURES = Features(profile_definitions())
PER_WORKER = 600
DEVICES = [f"device-{k}" for k in range(6)]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    server = redis_server.RedisServer().start()
    try:
        yield server.url
    finally:
        server.close()


def events_of(worker: int, n: int = PER_WORKER) -> list[Event]:
    """Worker ``worker``'s events, the same in the parent (the oracle) and in the worker."""
    rnd = random.Random(worker)
    out = []
    for k in range(n):
        t = BASE + rnd.uniform(0, 7200)
        if rnd.random() < 0.4:
            out.append(Event("buy", rnd.choice(["web", "app"]), t,
                             {"amount": rnd.randint(1, 9), "sku": f"w{worker}-{rnd.randrange(5)}"}, k))
        else:
            out.append(Event("view", rnd.choice(["web", "app", "email", f"c{worker}"]), t))
    return out


def ids_of(worker: int, n: int = PER_WORKER) -> list[str]:
    """The id each of the worker's events is tracked under, for the overlapping-profiles test."""
    rnd = random.Random(1000 + worker)
    return [rnd.choice(DEVICES) for _ in range(n)]


def direct(events: list[Event]) -> dict[str, Any]:
    state = FEATURES.init()
    for e in events:
        FEATURES.track(state, e)
    return FEATURES.values(state, NOW)


def _track(url: str, ns: str, worker: int, overlap: bool, barrier: Any, errors: Any) -> None:
    try:
        # Odd workers keep the states they commit decoded (the cache): both read paths race.
        store = RedisProfileStore(FEATURES, url, namespace=ns, cache_size=64 * (worker % 2))
        events = events_of(worker)
        ids = ids_of(worker) if overlap else ["shared"] * len(events)
        rnd = random.Random(worker)
        barrier.wait(30)
        k = 0
        while k < len(events):
            if rnd.random() < 0.5:
                store.track(ids[k], events[k])
                k += 1
            else:
                n = rnd.randint(1, 40)
                assert store.track_many(zip(ids[k:k + n], events[k:k + n])) == len(events[k:k + n])
                k += n
        store.close()
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        errors.put(repr(e))
        raise


def _merge(url: str, ns: str, barrier: Any, errors: Any) -> None:
    """Join every device into one profile keyed by a customer id, in a random order, while the others track."""
    try:
        store = RedisProfileStore(FEATURES, url, namespace=ns)
        rnd = random.Random(99)
        joins: list[tuple[str, str]] = [(DEVICES[0], d) for d in DEVICES[1:]]
        rnd.shuffle(joins)
        barrier.wait(30)
        for n, (a, b) in enumerate(joins):
            if n == 2:
                store.identify(DEVICES[3], "cust-1", now=BASE)
            store.alias(a, b, now=BASE)
            for _ in range(20):  # reads between the merges, so they spread over the trackers' run
                store.profile(DEVICES[rnd.randrange(len(DEVICES))], NOW)
        store.close()
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        errors.put(repr(e))
        raise


def _run(url: str, n_workers: int, overlap: bool, method: str = "fork") -> str:
    ctx = mp.get_context(method)
    ns = "procs-" + secrets.token_hex(6)
    barrier = ctx.Barrier(n_workers + (1 if overlap else 0))
    errors = ctx.Queue()
    procs = [ctx.Process(target=_track, args=(url, ns, w, overlap, barrier, errors)) for w in range(n_workers)]
    if overlap:
        procs.append(ctx.Process(target=_merge, args=(url, ns, barrier, errors)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    assert errors.empty(), errors.get()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return ns


@pytest.mark.parametrize("n_workers, method", [(2, "fork"), (4, "fork"), (2, "spawn")])
def test_processes_tracking_into_one_profile_lose_and_double_count_no_event(url: str, n_workers: int,
                                                                             method: str) -> None:
    ns = _run(url, n_workers, overlap=False, method=method)
    store = RedisProfileStore(FEATURES, url, namespace=ns)
    p = store.profile("shared", NOW)
    events = [e for w in range(n_workers) for e in events_of(w)]
    assert p is not None and p.values["views"] == sum(e.type == "view" for e in events)
    assert p.values == direct(events)
    store.close()


@pytest.mark.parametrize("n_workers", [2, 4])
def test_processes_tracking_into_profiles_another_process_merges_lose_and_double_count_no_event(
        url: str, n_workers: int) -> None:
    ns = _run(url, n_workers, overlap=True)
    store = RedisProfileStore(FEATURES, url, namespace=ns)
    profiles = [store.profile(i, NOW) for i in [*DEVICES, "cust-1"]]
    assert all(q == profiles[0] for q in profiles)
    p = profiles[0]
    events = [e for w in range(n_workers) for e in events_of(w)]
    assert p is not None and p.key == "cust-1"
    assert p.values["views"] == sum(e.type == "view" for e in events)
    assert p.values == direct(events)
    store.close()
