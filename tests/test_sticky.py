"""Sticky bucketing (``nba.sticky``) against the growthbook package's own, and across processes.

The reference: ``growthbook.GrowthBook(sticky_bucket_service=InMemoryStickyBucketService())``
running ``gb.Experiment``s built from the same rules ``nba.from_growthbook`` reads, phase
after phase of changed weights, coverage, namespaces, conditions (with the units'
attributes changing too), ``bucketVersion`` bumps, ``minBucketVersion`` exclusions and
``disableStickyBucketing``. nba's variants and stored documents must equal GrowthBook's
for every unit in every phase.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import secrets
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nba
from benchmarks.workloads import unit_ids
from nba.errors import ConfigError
from nba.experiments import Allocator, Experiment, Holdout, from_growthbook
from nba.sticky import EmbeddedStickyBuckets, RedisStickyBuckets, StickyBuckets
from tests import redis_server

gb = pytest.importorskip("growthbook")

COUNTRIES = ("NL", "DE", "US", "FR")


@pytest.fixture(scope="module")
def redis_url() -> str:
    if not redis_server.available():
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    from tests.test_state import shared_server  # the session's one server, shared with the state tests

    return shared_server().url


@pytest.fixture(scope="module")
def redis_client(redis_url) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def namespace() -> str:
    return "t-" + secrets.token_hex(6)


# --------------------------------------------------------------------------- random experiments, changing


def _weights(rng: random.Random, n: int) -> list[float]:
    raw = [rng.random() + 0.05 for _ in range(n)]
    total = sum(raw)
    w = [x / total for x in raw]
    w[-1] = 1.0 - sum(w[:-1])
    return w


def first_rule(rng: random.Random, i: int) -> dict[str, Any]:
    n = rng.choice((2, 2, 3, 4))
    rule: dict[str, Any] = {
        "key": f"exp{i}",
        "variations": list(range(n)),
        "weights": _weights(rng, n),
        "coverage": rng.choice((1.0, 0.5, 0.3)),
        "hashVersion": rng.choice((1, 2)),
        # GrowthBook finds a stored variation by its meta key: the payload always has them.
        "meta": [{"key": k} for k in (rng.choice((["control", "t1", "t2", "t3"], [str(j) for j in range(4)]))[:n])],
    }
    if rng.random() < 0.5:
        rule["seed"] = f"seed-{i}"
    if rng.random() < 0.4:
        rule["namespace"] = [f"ns{i}", 0.0, rng.choice((0.5, 0.7))]
    if rng.random() < 0.4:
        rule["condition"] = {"country": {"$in": rng.sample(COUNTRIES, 2)}}
    return rule


EVENTS = ("bump", "bump+min", "disable", None)


def next_rule(rng: random.Random, rule: dict[str, Any], event: str | None) -> dict[str, Any]:
    """The rule after an edit in GrowthBook's UI: weights, coverage, namespace, condition, and ``event``.

    ``event``: "bump" re-buckets everyone (``bucketVersion`` + 1), "bump+min" also excludes
    the units of older versions (``minBucketVersion``), "disable" turns sticky bucketing off.
    """
    r = {k: (list(v) if isinstance(v, list) else v) for k, v in rule.items()}
    n = len(r["variations"])
    r["weights"] = _weights(rng, n)
    r["coverage"] = rng.choice((1.0, 0.8, 0.4, 0.1, 0.0))
    if "namespace" in r:
        start = rng.choice((0.0, 0.2, 0.4))
        r["namespace"] = [r["namespace"][0], start, start + 0.4]
    if rng.random() < 0.3:
        r.pop("condition", None)
    elif rng.random() < 0.3:
        r["condition"] = {"country": {"$in": rng.sample(COUNTRIES, 1)}}
    bv = r.get("bucketVersion", 0)
    if event in ("bump", "bump+min"):
        r["bucketVersion"] = bv + 1
        if event == "bump+min":
            r["minBucketVersion"] = bv + 1
    r["disableStickyBucketing"] = event == "disable"
    return r


def payload(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"features": {f"f{i}": {"defaultValue": -1, "rules": [r]} for i, r in enumerate(rules)}}


def gb_variants(client: Any, experiments: list[Any], unit: str, country: str,
                blocked: list[int] | None = None) -> dict[str, str]:
    client.set_attributes({"id": unit, "country": country})  # reloads the unit's sticky documents
    out = {}
    for e in experiments:
        r = client.run(e)
        if r.inExperiment:
            out[e.key] = r.key
        elif r.stickyBucketUsed and blocked is not None:  # excluded by minBucketVersion
            blocked[0] += 1
    return out


def gb_docs(service: Any) -> dict[str, dict[str, str]]:
    return {k: dict(d["assignments"]) for k, d in service.docs.items()}


def nba_docs(store: StickyBuckets, units: list[str]) -> dict[str, dict[str, str]]:
    return {f"id||{u}": dict(a) for u in units if (a := store.get("id", u))}


def key_of(e: Experiment, variant: str) -> str:
    """The variation key GrowthBook reports (and stores) for an nba variant."""
    return e.variation_keys[e.variant_names.index(variant)] if e.variation_keys else variant


def run_phases(store: StickyBuckets, units: list[str], *, n_experiments: int, phases: int,
               seed: int) -> tuple[int, int, int]:
    """nba over ``store`` and GrowthBook over its in-memory service agree on every unit, every phase.

    Returns (assignments kept from the phase before, assignments that moved, units excluded by
    ``minBucketVersion``)."""
    rng = random.Random(seed)
    service = gb.InMemoryStickyBucketService()
    client = gb.GrowthBook(sticky_bucket_service=service, sticky_bucket_identifier_attributes=["id"])
    rules = [first_rule(rng, i) for i in range(n_experiments)]
    moved = sticky_held = 0
    blocked = [0]
    previous: dict[str, dict[str, str]] = {}
    for phase in range(phases):
        alloc = Allocator(from_growthbook(payload(rules)), sticky=store)
        names = {e.name: e for e in alloc.experiments}
        experiments = [gb.Experiment(**r) for r in rules]
        for u in units:
            country = rng.choice(COUNTRIES)
            expected = gb_variants(client, experiments, u, country, blocked)
            got = alloc.assign(u, {"country": country}).variants
            keys = {k: key_of(names[k], v) for k, v in got.items()}
            assert keys == expected, (phase, u, country, rules)
            before = previous.get(u, {})
            sticky_held += sum(1 for k, v in expected.items() if before.get(k) == v)
            moved += sum(1 for k, v in expected.items() if k in before and before[k] != v)
            previous[u] = expected
        assert nba_docs(store, units) == gb_docs(service), phase
        rules = [next_rule(rng, r, EVENTS[(i + phase) % len(EVENTS)]) for i, r in enumerate(rules)]
    return sticky_held, moved, blocked[0]


def test_agrees_with_growthbook_sticky_bucketing_over_changing_experiments() -> None:
    units = unit_ids(10_000, seed=11)
    held, moved, blocked = run_phases(EmbeddedStickyBuckets(), units, n_experiments=3, phases=4, seed=3)
    # The phases exercised what they are meant to: units kept variants, bumps moved some, and
    # minBucketVersion excluded some.
    assert held > 2_000 and moved > 20 and blocked > 1_000, (held, moved, blocked)


def test_agrees_with_growthbook_on_redis(redis_url) -> None:
    seed = 8
    store = RedisStickyBuckets(redis_url, namespace=namespace())
    try:
        held, moved, blocked = run_phases(store, unit_ids(1_000, seed=seed), n_experiments=3, phases=4, seed=seed)
        assert held > 100 and blocked, (held, moved, blocked)
    finally:
        store.close()


def test_sticky_hit_bypasses_weights_coverage_and_condition() -> None:
    store = EmbeddedStickyBuckets()
    first = Experiment("e", {"a": 0.5, "b": 0.5})
    a = Allocator([first], sticky=store)
    units = [f"u{i}" for i in range(200)]
    before = {u: a.assign(u).variants["e"] for u in units}
    assert set(before.values()) == {"a", "b"}
    # Everyone new goes to b, coverage 0 and a condition nobody meets: the enrolled keep their variant.
    changed = Experiment("e", {"a": 0.0, "b": 1.0}, coverage=0.0, condition={"country": "nowhere"})
    a2 = Allocator([changed], sticky=store)
    assert {u: a2.assign(u, {"country": "NL"}).variants.get("e") for u in units} == before
    assert "e" not in a2.assign("newcomer").variants
    # Without the store the same configuration enrolls nobody: stickiness is the store's doing.
    assert all("e" not in Allocator([changed]).assign(u).variants for u in units)


def test_bucket_version_bump_rebuckets_and_min_version_excludes() -> None:
    store = EmbeddedStickyBuckets()
    units = [f"u{i}" for i in range(300)]
    v0 = Allocator([Experiment("e", {"a": 0.5, "b": 0.5})], sticky=store)
    for u in units:
        v0.assign(u)
    v1 = Allocator([Experiment("e", {"a": 0.0, "b": 1.0}, bucket_version=1)], sticky=store)
    assert all(v1.assign(u).variants == {"e": "b"} for u in units)  # re-bucketed under the new weights
    assert store.get("id", units[0]) == {"e__0": store.get("id", units[0])["e__0"], "e__1": "b"}
    v2 = Allocator([Experiment("e", {"a": 0.5, "b": 0.5}, bucket_version=2, min_bucket_version=1)], sticky=store)
    assert all("e" not in v2.assign(u).variants for u in units)  # they hold e__0: excluded
    assert v2.assign("fresh").variants  # a unit without an old assignment is enrolled
    assert "e__2" not in store.get("id", units[0])  # an excluded unit is not saved


def test_disable_sticky_bucketing_neither_reads_nor_saves() -> None:
    store = EmbeddedStickyBuckets()
    Allocator([Experiment("e", ["a", "b"])], sticky=store).assign("u")
    off = Allocator([Experiment("e", {"a": 1.0, "b": 0.0}, disable_sticky_bucketing=True),
                     Experiment("f", ["x", "y"])], sticky=store)
    assert off.assign("u").variants["e"] == "a"
    assert set(store.get("id", "u")) == {"e__0", "f__0"}


def test_holdout_and_forced_win_and_forced_is_not_saved() -> None:
    store = EmbeddedStickyBuckets()
    exp = Experiment("e", ["a", "b"], forced={"qa": "b"})
    a = Allocator([exp], holdout=Holdout(fraction=0.5), sticky=store)
    units = [f"u{i}" for i in range(400)]
    held = [u for u in units if a.assign(u).holdout]
    assert held and all(not a.assign(u).variants and not store.get("id", u) for u in held)
    assert a.assign("qa").variants == {"e": "b"} and not store.get("id", "qa")


def test_a_stored_key_the_experiment_no_longer_has_is_overwritten() -> None:
    store = EmbeddedStickyBuckets()
    store.save("id", "u", {"e__0": "gone"}, {})
    v = Allocator([Experiment("e", ["a", "b"])], sticky=store).assign("u").variants["e"]
    assert store.get("id", "u") == {"e__0": v}


def test_first_writer_wins_when_another_process_stored_first() -> None:
    store = EmbeddedStickyBuckets()
    assert store.save("id", "u", {"e__0": "a"}, {}) == {"e__0": "a"}
    assert store.save("id", "u", {"e__0": "b"}, {}) == {"e__0": "a"}  # it did not see "a": no overwrite
    assert store.save("id", "u", {"e__0": "b"}, {"e__0": "a"}) == {"e__0": "b"}


class _Racing(EmbeddedStickyBuckets):
    """Another worker stores ``a`` for every unit between this one's read and its save."""

    def save(self, attribute, value, assignments, seen):  # type: ignore[no-untyped-def]
        super().save(attribute, value, {k: "a" for k in assignments}, {})
        return super().save(attribute, value, assignments, seen)


def test_allocator_takes_the_winners_variant_after_a_lost_race() -> None:
    a = Allocator([Experiment("e", {"a": 0.0, "b": 1.0})], sticky=_Racing())
    assert a.assign("u").variants == {"e": "a"}


def test_int_and_empty_unit_ids() -> None:
    store = EmbeddedStickyBuckets()
    a = Allocator([Experiment("e", ["a", "b"])], sticky=store, hash_attribute="user")
    assert a.assign(42).variants and "user||42" in store.docs
    assert not a.assign("").variants and not a.assign(0).variants and len(store.docs) == 1


def test_no_store_allocates_exactly_as_before() -> None:
    exps = [Experiment("e", {"a": 0.3, "b": 0.7}, coverage=0.6), Experiment("f", ["x", "y", "z"], hash_version=1)]
    plain, sticky = Allocator(exps), Allocator(exps, sticky=EmbeddedStickyBuckets())
    for u in unit_ids(2_000, seed=4):
        assert plain.assign(u) == sticky.assign(u)


def test_growthbook_sdk_reads_what_nba_stored_and_back() -> None:
    """Both stores speak GrowthBook's AbstractStickyBucketService: a GrowthBook SDK can share them."""
    store = EmbeddedStickyBuckets()
    rule = {"key": "e", "variations": [0, 1], "weights": [0.5, 0.5], "meta": [{"key": "a"}, {"key": "b"}]}
    units = [f"u{i}" for i in range(300)]
    first = Allocator(from_growthbook(payload([rule])), sticky=store)
    nba_said = {u: first.assign(u).variants["e"] for u in units}
    client = gb.GrowthBook(sticky_bucket_service=store, sticky_bucket_identifier_attributes=["id"])
    moved = gb.Experiment(**{**rule, "weights": [1.0, 0.0]})
    assert {u: gb_variants(client, [moved], u, "NL")["e"] for u in units} == {
        u: ("a", "b")[int(v)] for u, v in nba_said.items()}
    client.set_attributes({"id": "gb-first"})
    assert client.run(gb.Experiment(**{**rule, "weights": [0.0, 1.0]})).key == "b"
    later = Allocator(from_growthbook(payload([{**rule, "weights": [1.0, 0.0]}])), sticky=store)
    assert later.assign("gb-first").variants == {"e": "1"}


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="min_bucket_version 2 is above bucket_version 1"):
        Experiment("e", ["a", "b"], bucket_version=1, min_bucket_version=2)
    with pytest.raises(ConfigError, match="bucket_version must be an int >= 0"):
        Experiment("e", ["a", "b"], bucket_version=-1)
    with pytest.raises(ConfigError, match="variation_keys must give one non-empty str per variant"):
        Experiment("e", ["a", "b"], variation_keys=("x",))
    with pytest.raises(ConfigError, match="variation_keys must be distinct"):
        Experiment("e", ["a", "b"], variation_keys=("x", "x"))
    with pytest.raises(ConfigError, match="expected an nba.sticky store"):
        Allocator([Experiment("e", ["a", "b"])], sticky={})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="hash_attribute"):
        Allocator([Experiment("e", ["a", "b"])], sticky=EmbeddedStickyBuckets(), hash_attribute="")
    with pytest.raises(ConfigError, match="cache_size"):
        RedisStickyBuckets("redis://127.0.0.1:1/0", cache_size=-1)
    with pytest.raises(ConfigError, match="namespace"):
        RedisStickyBuckets("redis://127.0.0.1:1/0", namespace="a}b")


def test_from_growthbook_maps_sticky_fields() -> None:
    rule = {"key": "e", "variations": [0, 1, 2], "bucketVersion": 3, "minBucketVersion": 2,
            "disableStickyBucketing": True, "meta": [{"key": "c"}, {}, {"key": "t2"}]}
    (e,) = from_growthbook(payload([rule]))
    assert (e.bucket_version, e.min_bucket_version, e.disable_sticky_bucketing) == (3, 2, True)
    assert e.variation_keys == ("c", "1", "t2")
    (e,) = from_growthbook(payload([{"key": "e", "variations": [0, 1], "bucketVersion": 1, "minBucketVersion": 5}]))
    assert (e.bucket_version, e.min_bucket_version, e.variation_keys) == (1, 1, ("0", "1"))


# --------------------------------------------------------------------------- Redis


_FIELDS = st.sampled_from(["e__0", "e__1", "f__0"])
_VARIANTS = st.sampled_from(["a", "b", "c"])
_UNITS = st.sampled_from(["u1", "u2", "ü😀"])
_OPS = st.lists(st.one_of(
    st.tuples(st.just("get"), _UNITS),
    st.tuples(st.just("save"), _UNITS, st.dictionaries(_FIELDS, _VARIANTS, min_size=1),
              st.dictionaries(_FIELDS, _VARIANTS)),
    st.tuples(st.just("forget"), st.lists(_UNITS, max_size=2)),
), max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS)
def test_redis_store_behaves_as_the_embedded_one(redis_client, ops) -> None:
    """Same answers to any sequence of reads, first-writer-wins saves and erasures (cache on)."""
    embedded, redis_store = EmbeddedStickyBuckets(), RedisStickyBuckets(redis_client, namespace=namespace())
    try:
        for op in ops:
            if op[0] == "get":
                assert dict(redis_store.get("id", op[1])) == dict(embedded.get("id", op[1]))
            elif op[0] == "save":
                assert dict(redis_store.save("id", *op[1:])) == dict(embedded.save("id", *op[1:]))
            else:
                assert redis_store.forget("id", op[1]) == embedded.forget("id", op[1])
        for u in ("u1", "u2", "ü😀"):
            assert dict(RedisStickyBuckets(redis_client, namespace=redis_store.namespace).get("id", u)) == dict(
                embedded.get("id", u))
    finally:
        redis_store.forget("id", ["u1", "u2", "ü😀"])
        redis_store.close()


def test_redis_document_layout_and_forget(redis_url) -> None:
    import redis

    ns = namespace()
    store = RedisStickyBuckets(redis_url, namespace=ns)
    client = redis.Redis.from_url(redis_url)
    try:
        Allocator([Experiment("e", ["a", "b"], bucket_version=2)], sticky=store).assign("u1")
        key = "{" + ns + "}:sticky:id||u1"
        assert set(client.hgetall(key)) == {b"e__2"}
        assert store.get_assignments("id", "u1") == {
            "attributeName": "id", "attributeValue": "u1", "assignments": {"e__2": client.hget(key, "e__2").decode()}}
        assert store.forget("id", ["u1", "nobody"]) == 1
        assert not client.exists(key) and store.get("id", "u1") == {}
    finally:
        store.close()
        client.close()


def test_redis_reads_cached_once_and_dropped_on_refresh_or_ttl(redis_url) -> None:
    import redis

    now = [0.0]
    ns = namespace()
    store = RedisStickyBuckets(redis_url, namespace=ns, cache_ttl=10.0, clock=lambda: now[0])
    other = RedisStickyBuckets(redis_url, namespace=ns, cache_size=0)  # another worker, uncached
    client = redis.Redis.from_url(redis_url)
    try:
        assert store.get("id", "u") == {}  # absence, cached
        other.save("id", "u", {"e__0": "b"}, {})
        assert store.get("id", "u") == {}  # within the TTL, under one configuration
        store.refresh()  # what a new Allocator does
        assert store.get("id", "u") == {"e__0": "b"}
        other.save("id", "v", {"e__0": "a"}, {})
        assert store.get("id", "v") == {"e__0": "a"}
        other.forget("id", ["v"])
        assert store.get("id", "v") == {"e__0": "a"}  # another process's erasure: cached until the TTL
        now[0] = 10.5
        assert store.get("id", "v") == {}
    finally:
        store.close()
        other.close()
        client.close()


def test_redis_survives_script_flush(redis_url) -> None:
    import redis

    store = RedisStickyBuckets(redis_url, namespace=namespace(), cache_size=0)
    client = redis.Redis.from_url(redis_url)
    try:
        store.save("id", "u", {"e__0": "a"}, {})
        client.script_flush()  # NOSCRIPT on the next call: redis-py reloads the script
        assert store.save("id", "u", {"f__0": "x"}, {}) == {"e__0": "a", "f__0": "x"}
    finally:
        store.close()
        client.close()


def _decider(store: StickyBuckets, weights: dict[str, float]) -> nba.Decider:
    schema = nba.FeatureSchema([nba.Numeric("age")])
    arms = [nba.Arm("a0"), nba.Arm("a1")]
    return nba.Decider(arms, nba.BetaThompson(2), schema=schema, experiments=[Experiment("e", weights)],
                       sticky=store, seed=1)


@pytest.mark.parametrize("kind", ["embedded", "redis"])
def test_decider_keeps_variants_and_forget_removes_documents(kind, request) -> None:
    if kind == "redis":
        import redis

        url = request.getfixturevalue("redis_url")
        ns = namespace()
        store: Any = RedisStickyBuckets(url, namespace=ns)
        client = redis.Redis.from_url(url)
    else:
        store = EmbeddedStickyBuckets()
    try:
        first = _decider(store, {"a": 0.5, "b": 0.5})
        units = [f"user-{i}" for i in range(100)]
        said = {u: first.decide({"id": u, "age": 30.0}).variants["e"] for u in units}
        later = _decider(store, {"a": 1.0, "b": 0.0})
        assert {u: later.decide({"id": u, "age": 30.0}).variants["e"] for u in units} == said
        erased = later.forget("user-0")
        assert erased.sticky == 1 and store.get("id", "user-0") == {}
        assert later.decide({"id": "user-0", "age": 30.0}).variants["e"] == "a"  # re-bucketed: gone for good
        for u in units:
            later.forget(u)
        if kind == "redis":
            assert list(client.scan_iter(match="{" + ns + "}:sticky:*")) == []
        else:
            assert store.docs == {}
    finally:
        if kind == "redis":
            store.close()
            client.close()


# --------------------------------------------------------------------------- two processes


def _worker(conn: Connection, url: str, ns: str) -> None:
    store = RedisStickyBuckets(url, namespace=ns)
    try:
        while True:
            cmd, arg = conn.recv()
            if cmd == "stop":
                break
            weights, coverage, units = arg
            alloc = Allocator([Experiment("e", weights, coverage=coverage)], sticky=store)
            conn.send({u: alloc.assign(u).variants.get("e") for u in units})
    finally:
        store.close()


@pytest.fixture
def two_workers(redis_url) -> Iterator[list[Connection]]:
    ctx = mp.get_context("fork")  # each builds its own store, client and cache after the fork, as workers do
    ns = namespace()
    conns, procs = [], []
    for _ in range(2):
        mine, theirs = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(theirs, redis_url, ns), daemon=True)
        p.start()
        conns.append(mine)
        procs.append(p)
    yield conns
    for c in conns:
        try:
            c.send(("stop", None))
        except OSError:
            pass
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()


def test_two_processes_share_assignments_through_redis(two_workers) -> None:
    a, b = two_workers
    units = [f"p{i}" for i in range(600)]

    def call(conn: Connection, weights: dict[str, float], coverage: float, us: list[str]) -> dict[str, Any]:
        conn.send(("assign", (weights, coverage, us)))
        assert conn.poll(60), "worker did not answer"
        return msgspec.convert(conn.recv(), dict[str, Any])

    first = call(a, {"a": 0.5, "b": 0.5}, 0.5, units)
    enrolled = {u: v for u, v in first.items() if v is not None}
    assert 200 < len(enrolled) < 400
    # The other process, after a weight and coverage change, keeps every enrolled unit's variant
    # and enrolls the rest under the new weights.
    second = call(b, {"a": 0.0, "b": 1.0}, 1.0, units)
    assert {u: second[u] for u in enrolled} == enrolled
    assert all(second[u] == "b" for u in units if u not in enrolled)
    # The first process had read (and cached) those units as absent; its new configuration
    # drops that cache, so it sees what the other stored instead of re-bucketing them.
    third = call(a, {"a": 1.0, "b": 0.0}, 1.0, units)
    assert third == second
