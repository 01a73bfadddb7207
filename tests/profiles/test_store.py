"""nba.profiles.store: one suite for every ProfileStore backend, then what only the embedded store does.

Every test of the shared suite takes ``backend`` (parametrized over ``BACKENDS``:
"embedded", and "redis" and "redis-cached", a ``RedisProfileStore`` without and with
its state cache, each store on a namespace of its own of a redis-server started for
the session, whose contents are every key of that namespace with its value) and speaks to the store only through
the ``ProfileStore`` Protocol. ``Backend.contents`` is everything the backend holds,
as bytes, for the erasure tests to scan. The oracle of the merge tests is
``Features`` used directly: every event of a final profile's ids tracked into one state.
"""

from __future__ import annotations

import os
import random
import secrets
import select
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.workloads import profile_definitions
from nba.errors import IdentityError, ModelFormatError, NbaError, SchemaError
from nba.profiles import (
    LOGGING,
    PERSONALISATION,
    Consent,
    ConsentChange,
    Count,
    EmbeddedProfileStore,
    Event,
    Features,
    Profile,
    ProfileStore,
    RedisProfileStore,
)
from tests import redis_server

BASE = 1_700_000_000.0  # a multiple of every bucket below
NOW = BASE + 7200.0

DEFINITIONS = profile_definitions()  # the benchmarks' eight, so the suite checks what they measure
FEATURES = Features(DEFINITIONS)


# --------------------------------------------------------------------------- backends


class Backend:
    """How the suite builds a store of one kind and sees everything it holds."""

    name = ""

    def make(self, features: Features = FEATURES, **options: Any) -> ProfileStore:
        raise NotImplementedError

    def contents(self, store: ProfileStore) -> bytes:
        """Every byte the backend holds for ``store`` (memory, files, keys), for the erasure tests to scan."""
        raise NotImplementedError


def _held(obj: Any, skip: tuple[Any, ...]) -> list[bytes]:
    """Every str (UTF-8) and bytes reachable from obj: containers, attributes, slots and Struct fields."""
    out: list[bytes] = []
    stack = [obj]
    seen: set[int] = set()
    while stack:
        v = stack.pop()
        if id(v) in seen or any(v is s for s in skip):
            continue
        seen.add(id(v))
        if isinstance(v, str):
            out.append(v.encode("utf-8", "surrogatepass"))
        elif isinstance(v, (bytes, bytearray)):
            out.append(bytes(v))
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple, set, frozenset)):
            stack.extend(v)
        elif isinstance(v, (int, float, bool, type(None), type)) or callable(v):
            continue
        else:
            if isinstance(v, msgspec.Struct):
                stack.extend(getattr(v, f) for f in v.__struct_fields__)
            if hasattr(v, "__dict__"):
                stack.extend(vars(v).values())
            for cls in type(v).__mro__:
                for slot in getattr(cls, "__slots__", ()):
                    if hasattr(v, slot):
                        stack.append(getattr(v, slot))
    return out


class Embedded(Backend):
    name = "embedded"

    def make(self, features: Features = FEATURES, **options: Any) -> ProfileStore:
        return EmbeddedProfileStore(features, **options)

    def contents(self, store: ProfileStore) -> bytes:
        assert isinstance(store, EmbeddedProfileStore)
        return store.to_bytes() + b"\0" + b"\0".join(_held(store, skip=(store.features,)))


class Redis(Backend):
    """A RedisProfileStore on a namespace of its own, over one client of the session's redis-server."""

    name = "redis"

    def __init__(self, **options: Any) -> None:
        self.client: Any = None
        self.options = options  # the store's own, for every store this backend makes

    def make(self, features: Features = FEATURES, **options: Any) -> ProfileStore:
        assert self.client is not None, "the redis_backend fixture starts the server"
        if options.pop("identity", None) is not None:
            raise NotImplementedError("a RedisProfileStore takes identity_options, not an IdentityGraph")
        return RedisProfileStore(features, self.client, namespace="t-" + secrets.token_hex(6),
                                 **{**self.options, **options})

    def contents(self, store: ProfileStore) -> bytes:
        """Every key under the store's namespace with its whole value (read by type, not DUMP: DUMP compresses),
        and the states the store keeps decoded in this process."""
        assert isinstance(store, RedisProfileStore)
        c = self.client
        out: list[bytes] = []
        for k in c.scan_iter(match="{" + store.namespace + "}:*", count=1000):
            out.append(k)
            kind = c.type(k)
            if kind == b"hash":
                for f, v in c.hgetall(k).items():
                    out += [f, v]
            elif kind == b"string":
                out.append(c.get(k))
            else:
                raise AssertionError(f"unexpected {kind!r} key {k!r}")
        out += _held(store._cache, skip=())  # and what this process keeps decoded (cache_size), white box
        return b"\0".join(out)


# "redis-cached": each process keeps the states it committed decoded (a different read path for every write).
BACKENDS: dict[str, Backend] = {"embedded": Embedded(), "redis": Redis(), "redis-cached": Redis(cache_size=64)}


@pytest.fixture(scope="session")
def redis_backend() -> Iterator[Any]:
    """A client of a redis-server started for the session (and stopped at its end), for the Redis backends."""
    if not redis_server.available():
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    import redis

    server = redis_server.RedisServer().start()
    client = redis.Redis.from_url(server.url)
    backends = [b for b in BACKENDS.values() if isinstance(b, Redis)]
    for b in backends:
        b.client = client
    try:
        yield client
    finally:
        for b in backends:
            b.client = None
        client.close()
        server.close()


@pytest.fixture(params=sorted(BACKENDS), scope="session")
def backend(request: pytest.FixtureRequest) -> Backend:
    b = BACKENDS[request.param]
    if isinstance(b, Redis):
        request.getfixturevalue("redis_backend")
    return b


@pytest.fixture
def store(backend: Backend) -> Iterator[ProfileStore]:
    s = backend.make()
    yield s
    s.close()


def view(ts: float, channel: str = "web", **props: Any) -> Event:
    return Event("view", channel, BASE + ts, props)


def buy(ts: float, amount: int, sku: str, channel: str = "web", seq: int = 0) -> Event:
    return Event("buy", channel, BASE + ts, {"amount": amount, "sku": sku}, seq)


def direct(events: list[Event], now: float = NOW) -> dict[str, Any]:
    """The oracle: ``events`` tracked into one state by Features itself."""
    state = FEATURES.init()
    for e in events:
        FEATURES.track(state, e)
    return FEATURES.values(state, now)


# --------------------------------------------------------------------------- track and profile


def test_the_backend_is_a_profile_store(store: ProfileStore) -> None:
    assert isinstance(store, ProfileStore)


def test_tracked_events_give_the_values_of_features_used_directly(store: ProfileStore) -> None:
    rnd = random.Random(7)
    ids = [f"user-{i}" for i in range(6)]
    events: dict[str, list[Event]] = {i: [] for i in ids}
    for n in range(600):
        i = rnd.choice(ids)
        t = rnd.uniform(0, 7200)
        ev = buy(t, rnd.randint(1, 9), rnd.choice("abc"), rnd.choice(["web", "app"]), seq=n) if rnd.random() < 0.4 \
            else view(t, rnd.choice(["web", "app", "email"]))
        store.track(i, ev)
        events[i].append(ev)
    for now in (NOW, BASE + 3000.0, BASE + 10_000.0):
        for i in ids:
            p = store.profile(i, now)
            assert p is not None and p.key == i
            assert p.values == direct(events[i], now)


def test_an_unknown_id_has_no_profile_and_reading_it_creates_none(store: ProfileStore) -> None:
    assert store.profile("nobody", NOW) is None
    c = store.consent("nobody")
    assert c.changes() == [] and not c.granted_at(PERSONALISATION, NOW)
    assert store.profile("nobody", NOW) is None
    assert store.forget("nobody") == ()


def test_int_ids_are_held_as_their_decimal_str(store: ProfileStore) -> None:
    store.track(42, view(1.0))
    p = store.profile("42", NOW)
    assert p is not None and p.key == "42" and p.values["views"] == 1
    assert store.profile(42, NOW) == p


def test_profile_is_frozen_plain_data(store: ProfileStore) -> None:
    store.track("u", view(1.0))
    p = store.profile("u", NOW)
    assert isinstance(p, Profile)
    with pytest.raises(AttributeError):
        p.key = "v"  # type: ignore[misc]
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(p), type=Profile) == p


def test_a_new_id_is_first_seen_at_its_first_events_ts(store: ProfileStore) -> None:
    store.track("late", view(100.0))
    store.track("early", view(50.0))
    m = store.alias("late", "early", now=NOW)
    assert m is not None and m.master == "early" and m.merged == ("late",)


def test_track_many_equals_track_one_by_one_and_counts(backend: Backend) -> None:
    a, b = backend.make(), backend.make()
    items = [(f"u{n % 7}", view(float(n), channel=f"c{n % 3}")) for n in range(1000)]
    assert a.track_many(iter(items)) == 1000
    for i, e in items:
        b.track(i, e)
    for n in range(7):
        assert a.profile(f"u{n}", NOW) == b.profile(f"u{n}", NOW)
    assert a.track_many([]) == 0


def test_track_many_says_which_item_was_bad_and_tracks_none_of_its_batch(store: ProfileStore) -> None:
    items: list[Any] = [("u", view(float(n))) for n in range(600)]
    items[555] = ("u", Event("view", "", BASE))
    with pytest.raises(SchemaError, match="item 555"):
        store.track_many(items)
    p = store.profile("u", NOW)
    assert p is not None and p.values["views"] == 512  # the two whole batches before it
    with pytest.raises(SchemaError, match="item 0.*tuple"):
        store.track_many([view(1.0)])  # type: ignore[list-item]
    with pytest.raises(IdentityError, match="item 1"):
        store.track_many([("v", view(1.0)), ("null", view(2.0))])
    assert store.profile("v", NOW) is not None  # in the batch, before the refused id


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad_id, error", [
    (None, SchemaError), (1.5, SchemaError), (True, SchemaError), (b"u", SchemaError), (1 << 64, SchemaError),
    ("\ud800", SchemaError), ("", IdentityError), ("   ", IdentityError), ("null", IdentityError),
    ("00000000-0000-0000-0000-000000000000", IdentityError), ("x" * 300, IdentityError),
], ids=repr)
def test_a_bad_id_is_refused_with_a_typed_error_and_changes_nothing(store: ProfileStore, bad_id: Any,
                                                                   error: type[Exception]) -> None:
    store.track("keep", view(1.0))
    before = store.profile("keep", NOW)
    with pytest.raises(error):
        store.track(bad_id, view(2.0))
    with pytest.raises(error):
        store.alias(bad_id, "keep", now=NOW)
    with pytest.raises(error):
        store.identify("keep", bad_id, now=NOW)
    with pytest.raises(error):
        store.record_consent(bad_id, ConsentChange(PERSONALISATION, "granted", NOW))
    assert store.profile("keep", NOW) == before
    assert issubclass(error, NbaError) and issubclass(error, ValueError)


@pytest.mark.parametrize("bad_id", [None, 1.5, b"u"], ids=repr)
def test_reads_refuse_ids_of_the_wrong_type(store: ProfileStore, bad_id: Any) -> None:
    with pytest.raises(SchemaError, match="str or an int"):
        store.profile(bad_id, NOW)
    with pytest.raises(SchemaError, match="str or an int"):
        store.consent(bad_id)
    with pytest.raises(SchemaError, match="str or an int"):
        store.forget(bad_id)


@pytest.mark.parametrize("event, match", [
    ({"type": "view"}, "expected an nba.profiles.Event"),
    (Event("view", "web", BASE * 1000), "milliseconds"),
    (Event("view", "web", float("nan")), "finite"),
    (Event("", "web", BASE), "must not be empty"),
    (Event("view", "web", BASE, {1: "x"}), "keys must be str"),  # type: ignore[dict-item]
    (Event("view", "web", BASE, seq=1 << 70), "64 bits"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_bad_event_is_refused_naming_the_field_and_adds_no_profile(store: ProfileStore, event: Any,
                                                                    match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        store.track("u", event)
    assert store.profile("u", NOW) is None


def test_profile_wants_now_in_unix_seconds(store: ProfileStore) -> None:
    store.track("u", view(1.0))
    with pytest.raises(SchemaError, match="milliseconds"):
        store.profile("u", NOW * 1000)
    with pytest.raises(SchemaError):
        store.profile("u", "now")  # type: ignore[arg-type]


def test_a_bad_consent_change_is_refused_and_adds_no_profile(store: ProfileStore) -> None:
    with pytest.raises(SchemaError, match="status"):
        store.record_consent("u", ConsentChange(PERSONALISATION, "maybe", NOW))  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="ConsentChange"):
        store.record_consent("u", {"purpose": "logging"})  # type: ignore[arg-type]
    assert store.profile("u", NOW) is None


# --------------------------------------------------------------------------- identity


def test_after_identify_every_id_sees_one_profile_counting_each_event_once(store: ProfileStore) -> None:
    anon = [view(10.0, "web"), buy(20.0, 5, "a", "web")]
    known = [view(15.0, "app"), buy(30.0, 7, "b", "app"), view(40.0, "email")]
    for e in anon:
        store.track("cookie-1", e)
    for e in known:
        store.track("cust-1", e)
    m = store.identify("cookie-1", "cust-1", now=BASE + 50)
    assert m is not None and m.master == "cust-1" and m.merged == ("cookie-1",)
    expect = direct(anon + known)
    assert store.profile("cookie-1", NOW) == store.profile("cust-1", NOW)
    p = store.profile("cookie-1", NOW)
    assert p is not None and p.key == "cust-1" and p.values == expect
    assert store.identify("cookie-1", "cust-1", now=NOW) is None  # twice is a no-op
    assert store.profile("cust-1", NOW) == p
    store.track("cookie-1", view(60.0))  # events by any alias reach the profile
    store.track("cust-1", view(61.0))
    p2 = store.profile("cookie-1", NOW)
    assert p2 is not None and p2.values["views"] == expect["views"] + 2


def test_ids_joined_before_any_event_have_an_empty_profile(store: ProfileStore) -> None:
    assert store.alias("a", "b", now=BASE) is None  # two new ids: nothing to fold
    p = store.profile("b", NOW)
    assert p is not None and p.key == "a" and p.values == direct([])


def test_a_refused_merge_changes_nothing(store: ProfileStore) -> None:
    store.identify("cookie-1", "cust-1", now=BASE)
    store.identify("cookie-2", "cust-2", now=BASE)
    store.track("cookie-1", view(1.0))
    store.track("cookie-2", view(2.0))
    before = [store.profile(i, NOW) for i in ("cookie-1", "cookie-2")]
    with pytest.raises(IdentityError, match="different customer ids"):
        store.alias("cookie-1", "cookie-2", now=NOW)
    assert [store.profile(i, NOW) for i in ("cookie-1", "cookie-2")] == before
    m = store.alias("cookie-1", "cookie-2", now=NOW, force=True)
    assert m is not None
    p = store.profile("cookie-2", NOW)
    assert p is not None and p.values["views"] == 2


ANON = [f"anon-{i}" for i in range(6)]
CUST = [f"cust-{i}" for i in range(2)]
ALL = ANON + CUST
_times = st.integers(0, 7200).map(float)
_op = st.one_of(
    st.tuples(st.just("view"), st.sampled_from(ALL), _times, st.sampled_from(["web", "app", "email"])),
    st.tuples(st.just("buy"), st.sampled_from(ALL), _times, st.integers(1, 9), st.sampled_from("abc"),
              st.integers(0, 2)),
    st.tuples(st.just("alias"), st.sampled_from(ALL), st.sampled_from(ALL), _times),
    st.tuples(st.just("identify"), st.sampled_from(ALL), st.sampled_from(CUST), _times),
    st.tuples(st.just("consent"), st.sampled_from(ALL), st.integers(0, 4).map(float),  # ties are common
              st.sampled_from(["granted", "denied", "revoked"]), st.sampled_from([PERSONALISATION, LOGGING])),
)


def _change(op: tuple) -> ConsentChange:
    return ConsentChange(op[4], op[3], BASE + op[2])


def _event(op: tuple) -> Event:
    if op[0] == "view":
        return view(op[2], op[3])
    return buy(op[2], op[3], op[4], seq=op[5])


def _components(ops: list[tuple]) -> list[set[str]]:
    """The profiles the ops make, by a naive oracle: every id an op names, overlapping sets merged."""
    comps: list[set[str]] = []
    for op in ops:
        ids = {op[1], op[2]} if op[0] in ("alias", "identify") else {op[1]}
        hit = [c for c in comps if c & ids]
        comps = [c for c in comps if not any(c is h for h in hit)] + [ids.union(*hit)]
    return comps


def _run(backend: Backend, ops: list[tuple], force: bool) -> ProfileStore:
    store = backend.make(identity=None)
    for op in ops:
        if op[0] == "alias":
            store.alias(op[1], op[2], now=BASE + op[3], force=force)
        elif op[0] == "identify":
            store.identify(op[1], op[2], now=BASE + op[3], force=force)
        elif op[0] == "consent":
            store.record_consent(op[1], _change(op))
        else:
            store.track(op[1], _event(op))
    return store


@settings(max_examples=200, deadline=None)
@given(st.lists(_op, max_size=40), st.randoms(use_true_random=False))
def test_any_interleaving_of_tracks_consents_and_merges_gives_one_state_and_consent_per_final_profile(
        backend: Backend, ops: list[tuple], rnd: random.Random) -> None:
    comps = _components(ops)
    customers = {op[2] for op in ops if op[0] == "identify"}
    force = any(len(c & customers) > 1 for c in comps)
    for seq in (ops, rnd.sample(ops, len(ops))):
        store = _run(backend, seq, force)
        for comp in comps:
            expect = direct([_event(op) for op in seq if op[0] in ("view", "buy") and op[1] in comp])
            profiles = [store.profile(i, NOW) for i in sorted(comp)]
            assert all(p is not None for p in profiles)
            assert {p.key for p in profiles if p is not None} <= comp and len({p.key for p in profiles if p}) == 1
            consent = Consent([_change(op) for op in seq if op[0] == "consent" and op[1] in comp])
            granted = {u for u in (PERSONALISATION, LOGGING) if consent.granted_at(u, NOW)}
            for i, p in zip(sorted(comp), profiles):
                assert p is not None and p.values == expect and p.granted == granted
                assert store.consent(i) == consent
        assert all(store.profile(i, NOW) is None for i in set(ALL) - set().union(*comps))
        store.close()


# --------------------------------------------------------------------------- consent


def test_granted_reports_the_configured_purposes_at_now(backend: Backend) -> None:
    store = backend.make(purposes=[PERSONALISATION, "email"])
    store.track("u", view(1.0))
    p = store.profile("u", NOW)
    assert p is not None and p.granted == frozenset()  # opt-in: nothing without a change
    store.record_consent("u", ConsentChange(PERSONALISATION, "granted", BASE + 100, expires=BASE + 5000))
    store.record_consent("u", ConsentChange(LOGGING, "granted", BASE + 100))  # not reported by this store
    store.record_consent("u", ConsentChange("email", "granted", BASE + 200))
    p = store.profile("u", BASE + 300)
    assert p is not None and p.granted == {PERSONALISATION, "email"}
    p = store.profile("u", BASE + 150)
    assert p is not None and p.granted == {PERSONALISATION}
    p = store.profile("u", NOW)  # the grant of personalisation expired
    assert p is not None and p.granted == {"email"}
    assert store.consent("u").granted_at(LOGGING, NOW)


def test_consent_default_answers_purposes_without_a_change(backend: Backend) -> None:
    store = backend.make(consent_default={LOGGING: True})
    store.track("u", view(1.0))
    p = store.profile("u", NOW)
    assert p is not None and p.granted == {LOGGING}
    assert store.consent("u").granted_at(LOGGING, NOW) and store.consent("nobody").granted_at(LOGGING, NOW)
    store.record_consent("u", ConsentChange(LOGGING, "denied", BASE))
    p = store.profile("u", NOW)
    assert p is not None and p.granted == frozenset()


def test_consent_is_a_copy_changed_only_through_record_consent(store: ProfileStore) -> None:
    store.record_consent("u", ConsentChange(PERSONALISATION, "granted", BASE))
    c = store.consent("u")
    c.deny(PERSONALISATION, BASE + 1)
    assert store.consent("u").granted_at(PERSONALISATION, NOW)
    p = store.profile("u", NOW)
    assert p is not None and p.granted == {PERSONALISATION}


def test_record_consent_for_an_unknown_id_starts_its_profile_first_seen_then(store: ProfileStore) -> None:
    store.record_consent("b", ConsentChange(PERSONALISATION, "granted", BASE + 10))
    store.track("a", view(20.0))
    m = store.alias("a", "b", now=NOW)
    assert m is not None and m.master == "b"  # first seen at the change's time, before a's event


def test_merging_keeps_every_change_and_a_refusal_wins_a_tie(store: ProfileStore) -> None:
    store.record_consent("cookie", ConsentChange(PERSONALISATION, "granted", BASE + 10, source="banner"))
    store.record_consent("cookie", ConsentChange(LOGGING, "granted", BASE + 10))
    store.record_consent("cust", ConsentChange(PERSONALISATION, "denied", BASE + 10, source="call-centre"))
    store.identify("cookie", "cust", now=BASE + 20)
    p = store.profile("cookie", NOW)
    assert p is not None and p.granted == {LOGGING}
    both = Consent([ConsentChange(PERSONALISATION, "granted", BASE + 10, source="banner"),
                    ConsentChange(LOGGING, "granted", BASE + 10),
                    ConsentChange(PERSONALISATION, "denied", BASE + 10, source="call-centre")])
    assert store.consent("cust") == both and store.consent("cookie") == both
    store.record_consent("cookie", ConsentChange(PERSONALISATION, "granted", BASE + 30))  # a later grant counts
    p = store.profile("cust", NOW)
    assert p is not None and p.granted == {PERSONALISATION, LOGGING}


def test_consent_of_a_merged_profile_follows_it_whichever_side_held_it(store: ProfileStore) -> None:
    store.record_consent("anon-1", ConsentChange(PERSONALISATION, "granted", BASE))
    store.track("anon-2", view(1.0))
    store.alias("anon-2", "anon-1", now=BASE + 5)
    store.identify("anon-2", "cust", now=BASE + 6)  # re-keyed to the customer id
    for i in ("anon-1", "anon-2", "cust"):
        p = store.profile(i, NOW)
        assert p is not None and p.key == "cust" and p.granted == {PERSONALISATION} and p.values["views"] == 1


# --------------------------------------------------------------------------- forget


SECRETS = ["secret-sku-4711", "secret-channel-kiosk", "secret-source-branch-9"]


def _subject(store: ProfileStore) -> None:
    store.track("forget-me-cookie", buy(1.0, 3, "secret-sku-4711", "secret-channel-kiosk"))
    store.track("forget-me-device", view(2.0, "web", note="secret-note-xyz"))
    store.track("forget-me-cust", view(3.0))
    store.record_consent("forget-me-device", ConsentChange(PERSONALISATION, "granted", BASE, source="secret-source-branch-9"))
    store.alias("forget-me-cookie", "forget-me-device", now=BASE + 5)
    store.identify("forget-me-device", "forget-me-cust", now=BASE + 6)


@pytest.mark.parametrize("via", ["forget-me-cookie", "forget-me-device", "forget-me-cust"])
def test_forget_leaves_no_trace_of_the_subject_and_keeps_everyone_else(backend: Backend, via: str) -> None:
    store = backend.make()
    _subject(store)
    store.track("bystander", buy(4.0, 2, "sku-1", "app"))
    store.record_consent("bystander", ConsentChange(LOGGING, "granted", BASE))
    keep = store.profile("bystander", NOW)
    assert all(s.encode() in backend.contents(store) for s in SECRETS)  # the scan sees what is there
    gone = store.forget(via)
    assert gone == ("forget-me-cookie", "forget-me-cust", "forget-me-device")
    data = backend.contents(store)
    for s in [*gone, *SECRETS]:
        assert s.encode() not in data, s
    for i in gone:
        assert store.profile(i, NOW) is None
        assert store.consent(i).changes() == []
    assert store.profile("bystander", NOW) == keep
    assert store.forget(via) == ()
    store.track(via, view(9.0))  # a forgotten id comes back as a new, empty profile
    p = store.profile(via, NOW)
    assert p is not None and p.key == via and p.values == direct([view(9.0)]) and p.granted == frozenset()


# --------------------------------------------------------------------------- threads


@pytest.fixture
def eager_switching() -> Iterator[None]:
    """Threads switch every microsecond, so unguarded interleavings happen."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


@pytest.mark.parametrize("seed", range(3))
def test_threads_tracking_while_ids_merge_lose_and_double_count_no_event(backend: Backend, seed: int,
                                                                        eager_switching: None) -> None:
    store = backend.make()
    n_threads, per_thread = 6, 400
    devices = [f"device-{t}" for t in range(n_threads)]
    merges: list[Callable[[], Any]] = [lambda d=d: store.alias(devices[0], d, now=BASE) for d in devices[1:]]
    merges.append(lambda: store.identify(devices[3], "cust-1", now=BASE))
    random.Random(seed).shuffle(merges)
    barrier = threading.Barrier(n_threads + 2)
    errors: list[BaseException] = []

    def track(device: str) -> None:
        try:
            barrier.wait()
            for n in range(per_thread):
                store.track(device, view(float(n), channel=device))
                if n % 50 == 0:
                    store.profile(device, NOW)  # readers interleave with writers
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def merge() -> None:
        try:
            barrier.wait()
            for m in merges:
                m()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def batch() -> None:
        try:
            barrier.wait()
            store.track_many((devices[n % n_threads], view(float(n))) for n in range(per_thread))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=track, args=(d,)) for d in devices]
    threads += [threading.Thread(target=merge), threading.Thread(target=batch)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    profiles = [store.profile(i, NOW) for i in [*devices, "cust-1"]]
    p = profiles[0]
    assert all(q == p for q in profiles)
    assert p is not None and p.key == "cust-1"
    assert p.values["views"] == (n_threads + 1) * per_thread
    assert p.values["channels"] == n_threads + 1  # each device's channel, and "web" from the batch


# --------------------------------------------------------------------------- embedded: snapshots


def _busy_store() -> EmbeddedProfileStore:
    store = EmbeddedProfileStore(FEATURES)
    rnd = random.Random(3)
    for n in range(300):
        i = f"id-{rnd.randrange(30)}"
        store.track(i, buy(rnd.uniform(0, 7200), rnd.randint(1, 9), rnd.choice("xyz"), seq=n) if n % 3 == 0
                    else view(rnd.uniform(0, 7200), rnd.choice(["web", "app"])))
    for k in range(0, 30, 3):
        store.alias(f"id-{k}", f"id-{k + 1}", now=NOW)
        store.identify(f"id-{k + 1}", f"cust-{k}", now=NOW)
        store.record_consent(f"id-{k + 2}", ConsentChange(PERSONALISATION, "granted", BASE + k))
        store.record_consent(f"id-{k}", ConsentChange(LOGGING, "denied", BASE + k, source="web"))
    return store


IDS = [f"id-{k}" for k in range(30)] + [f"cust-{k}" for k in range(0, 30, 3)]


def _answers(store: EmbeddedProfileStore) -> list[Any]:
    return [(store.profile(i, t), store.consent(i)) for i in IDS for t in (BASE + 1000, NOW)]


def test_a_snapshot_round_trip_gives_the_same_answers_and_bytes(tmp_path: Any) -> None:
    store = _busy_store()
    path = tmp_path / "profiles.nba"
    store.snapshot(path)
    loaded = EmbeddedProfileStore.load(path, FEATURES)
    assert _answers(loaded) == _answers(store)
    assert loaded.to_bytes() == store.to_bytes() == path.read_bytes()
    for s in (store, loaded):  # and both go on alike
        s.track("id-5", view(7000.0))
        s.identify("id-8", "cust-99", now=NOW)
    assert _answers(loaded) == _answers(store)
    assert [f for f in os.listdir(tmp_path)] == ["profiles.nba"]


def test_load_with_more_features_keeps_the_states_of_the_old_ones(tmp_path: Any) -> None:
    store = _busy_store()
    store.snapshot(tmp_path / "p")
    wider = Features([*DEFINITIONS, Count("buys", "buy")])
    loaded = EmbeddedProfileStore.load(tmp_path / "p", wider)
    for i in IDS:
        old, new = store.profile(i, NOW), loaded.profile(i, NOW)
        assert old is not None and new is not None
        assert new.values == {**old.values, "buys": 0}


def test_load_takes_the_identity_limits_and_consent_options_of_the_caller(tmp_path: Any) -> None:
    store = _busy_store()
    store.snapshot(tmp_path / "p")
    loaded = EmbeddedProfileStore.load(tmp_path / "p", FEATURES, identity_options={"max_ids": 3},
                                       consent_default={"email": True}, purposes=["email"])
    with pytest.raises(IdentityError, match="max_ids=3"):
        loaded.alias("id-0", "id-2", now=NOW)
    p = loaded.profile("id-0", NOW)
    assert p is not None and p.granted == {"email"}


def test_a_failed_snapshot_leaves_the_previous_one_intact(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _busy_store()
    path = tmp_path / "profiles.nba"
    store.snapshot(path)
    before, answers = path.read_bytes(), _answers(store)
    store.track("id-1", view(100.0))
    store.forget("id-20")

    def fail(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    for name in ("replace", "fsync"):
        with monkeypatch.context() as m:
            m.setattr(os, name, fail)
            with pytest.raises(OSError, match="No space"):
                store.snapshot(path)
        assert path.read_bytes() == before
        assert os.listdir(tmp_path) == ["profiles.nba"]  # no temporary file left behind
    assert _answers(EmbeddedProfileStore.load(path, FEATURES)) == answers
    store.snapshot(path)  # and the next snapshot goes through
    assert path.read_bytes() == store.to_bytes()


def test_a_snapshot_to_a_missing_directory_raises_and_writes_nothing(tmp_path: Any) -> None:
    with pytest.raises(FileNotFoundError):
        EmbeddedProfileStore(FEATURES).snapshot(tmp_path / "nowhere" / "p")
    with pytest.raises(FileNotFoundError):
        EmbeddedProfileStore.load(tmp_path / "missing", FEATURES)


def _snap(**changes: Any) -> bytes:
    good = msgspec.msgpack.decode(_busy_store().to_bytes())
    good.update(changes)
    return msgspec.msgpack.encode(good)


_GOOD_STATE = FEATURES.to_bytes(FEATURES.init())


@pytest.mark.parametrize("data, match", [
    (b"", "not a saved nba profile store"),
    (b"\x00garbage\xff" * 10, "not a saved nba profile store"),
    (msgspec.msgpack.encode(7), "not a saved nba profile store"),
    (msgspec.msgpack.encode({"kind": "nba.profiles.store"}), "not a saved nba profile store"),
    (_snap(kind="nba.model"), "holds a 'nba.model'"),
    (_snap(format=2), "format 2"),
    (_snap(extra=1), "not a saved nba profile store"),
    (_snap(identity=b"junk"), "IdentityGraph"),
    (_snap(states={"id-2": _GOOD_STATE, "stranger": _GOOD_STATE}), "'stranger', which is not a profile key"),
    (_snap(states={"cust-0": _GOOD_STATE, "id-0": _GOOD_STATE}), "'id-0', which is not a profile key"),
    (_snap(states={"id-2": b"junk"}), "profile 'id-2'"),
    (_snap(consents={"id-2": b"junk"}), "profile 'id-2'.*consent"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_load_refuses_garbage_with_model_format_error(tmp_path: Any, data: bytes, match: str) -> None:
    path = tmp_path / "p"
    path.write_bytes(data)
    with pytest.raises(ModelFormatError, match=match) as info:
        EmbeddedProfileStore.load(path, FEATURES)
    assert str(path) in str(info.value)
    with pytest.raises(ModelFormatError, match=match):
        EmbeddedProfileStore.from_bytes(data, FEATURES)


def test_forget_then_snapshot_holds_no_trace_of_the_subject(tmp_path: Any) -> None:
    store = EmbeddedProfileStore(FEATURES)
    _subject(store)
    store.track("bystander", view(1.0))
    store.snapshot(tmp_path / "p")
    assert b"secret-sku-4711" in (tmp_path / "p").read_bytes()
    gone = store.forget("forget-me-cust")
    store.snapshot(tmp_path / "p")
    data = (tmp_path / "p").read_bytes()
    assert not any(s.encode() in data for s in [*gone, *SECRETS, "secret-note-xyz"])
    loaded = EmbeddedProfileStore.load(tmp_path / "p", FEATURES)
    assert loaded.profile("bystander", NOW) == store.profile("bystander", NOW)
    assert all(loaded.profile(i, NOW) is None for i in gone)


def test_bad_construction_is_refused() -> None:
    with pytest.raises(SchemaError, match="Features"):
        EmbeddedProfileStore(DEFINITIONS)  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="IdentityGraph"):
        EmbeddedProfileStore(FEATURES, identity={})  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="collection"):
        EmbeddedProfileStore(FEATURES, purposes="email")


def _in_child(body: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Run ``body()`` in a forked child; its msgpack result (the child never returns into pytest)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            data = msgspec.msgpack.encode(body())
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            data, code = msgspec.msgpack.encode({"error": repr(e)}), 1
        with os.fdopen(w, "wb") as f:
            f.write(data)
        os._exit(code)
    os.close(w)
    ready, _, _ = select.select([r], [], [], timeout)
    if not ready:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung (a lock held at fork time?)")
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    out = msgspec.msgpack.decode(data)
    assert os.waitstatus_to_exitcode(status) == 0, out
    return out


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_a_free_lock_and_its_own_copy_of_the_profiles() -> None:
    store = EmbeddedProfileStore(FEATURES)
    store.track("u", view(1.0))
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # a thread inside the store's critical section at fork time (white box)
        with store._lock:
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        def child() -> Any:
            store.track("u", view(2.0))
            store.identify("u", "cust", now=NOW)
            p = store.profile("cust", NOW)
            return None if p is None else p.values["views"]

        assert _in_child(child) == 2
    finally:
        release.set()
        t.join()
    p = store.profile("u", NOW)  # the parent's profiles are its own
    assert p is not None and p.key == "u" and p.values["views"] == 1


# --------------------------------------------------------------------------- embedded: snapshots of a live store


def test_a_snapshot_is_the_store_at_its_cut_whatever_changes_while_it_encodes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import nba.profiles.store as store_module

    monkeypatch.setattr(store_module, "_BATCH", 3)  # many batches: changes land between them
    store = _busy_store()
    at_cut, answers = store.to_bytes(), _answers(store)
    identity, cut = store._begin_cut()
    assert store._encode_some(cut)
    store.track("id-2", view(10.0))  # a profile not yet encoded, and one maybe encoded
    store.track("id-29", buy(11.0, 4, "late-sku"))
    store.identify("id-5", "cust-5", now=NOW)  # a re-key: the same state, now under cust-5
    store.track("cust-5", view(14.0))
    store.record_consent("cust-5", ConsentChange(LOGGING, "revoked", BASE + 98))
    store.alias("id-20", "id-23", now=NOW)  # a merge of two profiles at the cut
    store.alias("id-8", "id-11", now=NOW)
    store.alias("id-8", "new-id", now=NOW)  # a new id joins
    store.track("brand-new", view(12.0))  # a new profile
    store.record_consent("id-14", ConsentChange(PERSONALISATION, "denied", BASE + 99))
    store.record_consent("id-2", ConsentChange(LOGGING, "granted", BASE + 99))
    while store._encode_some(cut):
        store.track("id-17", view(13.0))
    data = store._cut_bytes(identity, cut)
    assert data == at_cut
    assert _answers(EmbeddedProfileStore.from_bytes(data, FEATURES)) == answers
    assert store._cut is None
    assert store.to_bytes() != at_cut  # and the changes are in the next one
    p = store.profile("brand-new", NOW)
    assert p is not None and p.values["views"] == 1


def test_a_forget_while_a_snapshot_encodes_starts_it_again_without_the_subject(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import nba.profiles.store as store_module

    monkeypatch.setattr(store_module, "_BATCH", 1)
    store = EmbeddedProfileStore(FEATURES)
    _subject(store)
    for k in range(20):
        store.track(f"bystander-{k}", view(float(k)))
    identity, cut = store._begin_cut()
    assert store._encode_some(cut)
    gone = store.forget("forget-me-cookie")
    assert cut.forgot and store._cut is cut
    assert not cut.states and not cut.done_states  # emptied at once, the bystanders too: it starts again
    assert not store._encode_some(cut) and store._cut is None
    held = b"\0".join(_held(cut, skip=()))
    assert not any(s.encode() in held for s in [*SECRETS, "secret-note-xyz"])  # dropped from the cut at once
    data = store.to_bytes()
    assert not any(s.encode() in data for s in [*gone, *SECRETS, "secret-note-xyz"])


def test_snapshots_taken_while_threads_track_and_merge_are_each_consistent(
        tmp_path: Any, eager_switching: None) -> None:
    store = EmbeddedProfileStore(FEATURES)
    n_threads, per_thread = 4, 300
    stop = threading.Event()
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for n in range(per_thread):
                store.track(f"t{t}-{n % 40}", view(float(n), channel=f"c{t}"))
                if n % 7 == 0:
                    store.alias(f"t{t}-{n % 40}", f"t{t}-{(n + 1) % 40}", now=NOW)
                if n % 50 == 0:
                    store.record_consent(f"t{t}-{n % 40}", ConsentChange(LOGGING, "granted", BASE + n))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    snapshots: list[bytes] = []

    def snap() -> None:
        try:
            while not stop.is_set():
                snapshots.append(store.to_bytes())
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    snapper = threading.Thread(target=snap)
    snapper.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    snapper.join()
    assert not errors and snapshots
    totals = []
    for data in snapshots:  # each loads (state keys are profile keys); a later cut holds every earlier event
        loaded = EmbeddedProfileStore.from_bytes(data, FEATURES)
        profiles = [loaded.profile(f"t{t}-{k}", NOW) for t in range(n_threads) for k in range(40)]
        keys = {p.key for p in profiles if p is not None}
        totals.append(sum(loaded.profile(k, NOW).values["views"] for k in keys))  # type: ignore[union-attr]
    assert totals == sorted(totals) and totals[-1] <= n_threads * per_thread
    final = EmbeddedProfileStore.from_bytes(store.to_bytes(), FEATURES)
    keys = {final.profile(f"t{t}-{k}", NOW).key for t in range(n_threads) for k in range(40)}  # type: ignore[union-attr]
    assert sum(final.profile(k, NOW).values["views"] for k in keys) == n_threads * per_thread  # type: ignore[union-attr]
