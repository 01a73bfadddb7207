"""What only RedisProfileStore does: round trips, sharing a namespace, compare-and-set retries, scripts reloaded.

The ProfileStore semantics are the shared suite's (``test_store.py`` runs on this store
too); here: ``profile`` is one round trip and ``track_many`` two per batch (counted on the
client), a write that loses its compare-and-set to another writer is read and made
again (the other writer's change kept), ``ConflictError`` after ``max_attempts``, a
``SCRIPT FLUSH`` (NOSCRIPT) is survived, and construction is checked.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from benchmarks.workloads import profile_definitions
from nba.errors import ConfigError, ConflictError, SchemaError, StoreError
from nba.profiles import PERSONALISATION, ConsentChange, Event, Features, RedisProfileStore
from tests import redis_server

pytestmark = pytest.mark.skipif(not redis_server.available(), reason="redis-server is not installed")

redis = pytest.importorskip("redis")

BASE = 1_700_000_000.0
NOW = BASE + 7200.0
FEATURES = Features(profile_definitions())


class Counting(redis.Redis):  # type: ignore[misc,name-defined]
    """A client that counts the commands it sends (a script call is one EVALSHA: one round trip)."""

    calls = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.calls += 1
        return super().execute_command(*args, **options)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    server = redis_server.RedisServer().start()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def client(url: str) -> Iterator[Counting]:
    c = Counting.from_url(url)
    yield c
    c.close()


def make(client: Any, namespace: str | None = None, **options: Any) -> RedisProfileStore:
    return RedisProfileStore(FEATURES, client, namespace=namespace or "t-" + secrets.token_hex(6), **options)


def view(ts: float, channel: str = "web") -> Event:
    return Event("view", channel, BASE + ts)


def test_profile_is_one_round_trip_and_track_many_two_per_batch(client: Counting) -> None:
    store = make(client)
    store.track_many((f"u{n % 50}", view(float(n))) for n in range(256 * 4))  # and the scripts are loaded
    client.calls = 0
    p = store.profile("u7", NOW)
    assert p is not None and p.values["views"] == 256 * 4 // 50 + 1
    assert client.calls == 1
    client.calls = 0
    assert store.profile("nobody", NOW) is None and client.calls == 1
    client.calls = 0
    assert store.track_many((f"v{n % 300}", view(float(n))) for n in range(256 * 4)) == 256 * 4
    assert client.calls == 2 * 4  # a read and a commit per batch of 256, whatever the number of profiles
    client.calls = 0
    store.track("u7", view(1.0))
    assert client.calls == 2
    assert store.forget("nobody") == ()  # the first call of a script loads it (NOSCRIPT, SCRIPT LOAD): not counted
    client.calls = 0
    assert store.forget("u7") == ("u7",) and client.calls == 1


def test_stores_on_one_namespace_share_profiles_and_other_namespaces_see_none(client: Counting) -> None:
    ns = "t-" + secrets.token_hex(6)
    a, b, other = make(client, ns), make(client, ns), make(client)
    a.track("cookie", view(1.0))
    b.track("cust", view(2.0))
    b.record_consent("cust", ConsentChange(PERSONALISATION, "granted", BASE))
    m = a.identify("cookie", "cust", now=BASE + 3)
    assert m is not None and m.master == "cust"
    p = b.profile("cookie", NOW)
    assert p is not None and p.key == "cust" and p.values["views"] == 2 and p.granted == {PERSONALISATION}
    assert a.profile("cookie", NOW) == p
    assert other.profile("cookie", NOW) is None and other.profile("cust", NOW) is None


def _interfere(store: RedisProfileStore, times: int, write: Callable[[], None]) -> list[int]:
    """Make ``write`` happen between each of the store's next ``times`` reads and its commit (a racing writer)."""
    done = [0]
    names = ["_s_read", "_s_idread"]
    originals = {n: getattr(store, n) for n in names}

    def wrap(original: Any) -> Any:
        def read(*args: Any, **kw: Any) -> Any:
            reply = original(*args, **kw)
            if done[0] < times:
                done[0] += 1
                write()
            return reply
        return read

    for n in names:
        setattr(store, n, wrap(originals[n]))
    return done


def test_a_track_that_loses_its_compare_and_set_is_made_again_keeping_the_other_write(client: Counting) -> None:
    ns = "t-" + secrets.token_hex(6)
    store, rival = make(client, ns), make(client, ns)
    store.track("u", view(1.0))
    done = _interfere(store, 3, lambda: rival.track("u", view(2.0, "app")))
    store.track_many([("u", view(3.0)), ("new-id", view(4.0))])
    assert done[0] == 3  # three racing writes, so three lost commits of "u" and three reads again
    p = store.profile("u", NOW)
    assert p is not None and p.values["views"] == 1 + 3 + 1 and p.values["channels"] == 2
    q = store.profile("new-id", NOW)
    assert q is not None and q.values["views"] == 1  # committed on the first attempt, and only once


def test_a_merge_that_loses_its_compare_and_set_is_made_again_keeping_the_event(client: Counting) -> None:
    ns = "t-" + secrets.token_hex(6)
    store, rival = make(client, ns), make(client, ns)
    store.track("a", view(1.0))
    store.track("b", view(2.0))
    done = _interfere(store, 2, lambda: rival.track("b", view(3.0)))
    m = store.alias("a", "b", now=NOW)
    assert done[0] == 2 and m is not None and m.master == "a" and m.merged == ("b",)
    p = rival.profile("b", NOW)
    assert p is not None and p.key == "a" and p.values["views"] == 4


def test_a_consent_change_that_loses_its_compare_and_set_is_made_again(client: Counting) -> None:
    ns = "t-" + secrets.token_hex(6)
    store, rival = make(client, ns), make(client, ns)
    store.track("u", view(1.0))
    _interfere(store, 1, lambda: rival.track("u", view(2.0)))
    store.record_consent("u", ConsentChange(PERSONALISATION, "granted", BASE))
    p = store.profile("u", NOW)
    assert p is not None and p.values["views"] == 2 and p.granted == {PERSONALISATION}


def test_conflict_error_after_max_attempts_and_the_lost_write_changes_nothing(client: Counting) -> None:
    ns = "t-" + secrets.token_hex(6)
    store, rival = make(client, ns, max_attempts=3), make(client, ns)
    store.track("u", view(1.0))
    store.track("w", view(1.0))
    _interfere(store, 3, lambda: rival.track("u", view(2.0)))
    with pytest.raises(ConflictError, match="3 times in a row.*1 items tracked"):
        store.track_many([("w", view(5.0)), ("u", view(3.0))])
    p = store.profile("u", NOW)
    assert p is not None and p.values["views"] == 1 + 3  # the rival's three, not the lost one
    w = store.profile("w", NOW)
    assert w is not None and w.values["views"] == 2  # its profile was not contended: written once
    _interfere(store, 3, lambda: rival.track("u", view(2.0)))
    with pytest.raises(ConflictError, match="nothing was joined"):
        store.alias("u", "w", now=NOW)
    assert store.profile("w", NOW).key == "w"  # type: ignore[union-attr]


def test_a_script_flush_is_survived(client: Counting) -> None:
    store = make(client)
    store.track("u", view(1.0))
    client.script_flush()  # as after a restart or failover: every script must be loaded again (NOSCRIPT)
    store.track("u", view(2.0))
    store.alias("u", "v", now=NOW)
    client.script_flush()
    p = store.profile("v", NOW)
    assert p is not None and p.values["views"] == 2
    client.script_flush()
    assert store.forget("v") == ("u", "v")


def test_forget_deletes_every_key_and_field_of_the_subject(client: Counting) -> None:
    store = make(client)
    store.track("a", view(1.0))
    store.identify("a", "cust", now=NOW)
    store.record_consent("b", ConsentChange(PERSONALISATION, "granted", BASE))
    store.alias("b", "cust", now=NOW)
    assert store.forget("b") == ("a", "b", "cust")
    keys = sorted(client.keys("{" + store.namespace + "}:*"))
    assert keys == [("{" + store.namespace + "}:v").encode()]  # only the version counter is left


def test_close_closes_only_a_client_the_store_made(url: str, client: Counting) -> None:
    store = make(client)
    store.close()
    assert client.ping()
    own = RedisProfileStore(FEATURES, url, namespace="t-" + secrets.token_hex(6))
    own.track("u", view(1.0))
    own.close()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"url": 5}, ConfigError, "redis:// URL or a redis.Redis"),
    ({"namespace": ""}, ConfigError, "namespace"),
    ({"namespace": "a}b"}, ConfigError, "namespace"),
    ({"max_attempts": 0}, ConfigError, "max_attempts"),
    ({"features": []}, SchemaError, "Features"),
    ({"purposes": "email"}, SchemaError, "collection"),
    ({"identity_options": {"max_ids": 0}}, ConfigError, "max_ids"),
    ({"identity_options": {"nonsense": 1}}, ConfigError, "identity_options"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_construction_is_refused(client: Counting, kwargs: dict[str, Any], error: type[Exception],
                                     match: str) -> None:
    args: dict[str, Any] = {"features": FEATURES, "url": client, "namespace": "ns", **kwargs}
    with pytest.raises(error, match=match):
        RedisProfileStore(args.pop("features"), args.pop("url"), **args)


def test_reads_of_unknown_ids_write_nothing_to_redis(client: Counting) -> None:
    store = make(client)
    assert store.profile("nobody", NOW) is None
    assert store.consent("nobody").changes() == []
    assert store.forget("nobody") == ()
    assert store.identify("a", "a-cust", now=NOW) is None  # two new ids: written, for the contrast
    assert client.keys("{" + store.namespace + "}:*")
    other = make(client)
    other.profile("a", NOW)
    other.consent(7)
    assert client.keys("{" + other.namespace + "}:*") == []


def test_redis_down_is_a_store_error_and_the_store_works_again_when_it_is_back() -> None:
    server = redis_server.RedisServer().start()
    try:
        store = RedisProfileStore(FEATURES, server.url, namespace="down")
        store.track("u", view(1.0))
        server.stop(kill=True)
        with pytest.raises(StoreError, match="Redis failed.*ConnectionError.*reachable"):
            store.profile("u", NOW)
        with pytest.raises(StoreError) as info:
            store.track("u", view(2.0))  # the read fails: nothing was under way
        assert "may have been applied" not in str(info.value)
        server.start()  # empty: no persistence
        _interfere(store, 1, lambda: server.stop(kill=True))  # Redis dies between the read and the commit
        with pytest.raises(StoreError, match="may have been applied"):
            store.track("u", view(2.0))
        server.start()
        assert store.profile("u", NOW) is None  # the scripts are loaded again, the store goes on
        store.track("u", view(3.0))
        p = store.profile("u", NOW)
        assert p is not None and p.values["views"] == 1
        store.close()
    finally:
        server.close()


def _graph_of(client: Any, store: RedisProfileStore) -> Any:
    """The namespace's identity maps as an IdentityGraph (from_bytes checks they are one it could have built)."""
    import msgspec

    from nba.profiles import IdentityGraph

    tag = "{" + store.namespace + "}"
    dec = msgspec.msgpack.Decoder(list[str])
    parent = {k.decode(): v.decode() for k, v in client.hgetall(tag + ":parent").items()}
    members = {k.decode(): dec.decode(v) for k, v in client.hgetall(tag + ":members").items()}
    assert {i for ms in members.values() for i in ms} == set(parent)
    assert all(parent[i] == k for k, ms in members.items() for i in ms)  # fully compressed, members agree
    profiles = {k.decode()[len(tag) + 3:] for k in client.keys(tag + ":p:*")}
    assert profiles <= set(members)  # a profile hash only under a profile key
    snap = {"format": 1, "profiles": parent,
            "seen": {k.decode(): float(v) for k, v in client.hgetall(tag + ":seen").items()},
            "customers": {k.decode(): dec.decode(v) for k, v in client.hgetall(tag + ":customers").items()},
            "merges": {k.decode(): int(v) for k, v in client.hgetall(tag + ":merges").items()}}
    return IdentityGraph.from_bytes(msgspec.msgpack.encode(snap))


def test_threads_tracking_merging_and_forgetting_leave_consistent_maps_and_no_extra_event(client: Counting) -> None:
    import random
    import threading

    ns = "t-" + secrets.token_hex(6)
    ids = [f"id-{k}" for k in range(12)]
    tracked = [0]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rnd = random.Random(seed)
        store = make(client, ns, cache_size=8 * (seed % 2))
        try:
            for n in range(100):
                r = rnd.random()
                if r < 0.6:
                    store.track(rnd.choice(ids), view(float(n)))
                    with lock:
                        tracked[0] += 1
                elif r < 0.8:
                    store.alias(rnd.choice(ids), rnd.choice(ids), now=BASE + n, force=True)
                elif r < 0.9:
                    store.identify(rnd.choice(ids), f"cust-{rnd.randrange(2)}", now=BASE + n, force=True)
                else:
                    store.forget(rnd.choice(ids))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    import sys

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often, so reads and commits of different threads interleave
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors
    store = make(client, ns)
    graph = _graph_of(client, store)  # raises if the maps are not a graph IdentityGraph could have built
    keys = {graph.resolve(i) for i in [*ids, "cust-0", "cust-1"]} - {None}
    for k in keys:
        p = store.profile(k, NOW)
        assert p is not None and p.key == k
        assert set(graph.ids(k)) == {i for i in [*ids, "cust-0", "cust-1"] if store.profile(i, NOW) == p}
    assert sum(store.profile(k, NOW).values["views"] for k in keys) <= tracked[0]  # type: ignore[union-attr]
