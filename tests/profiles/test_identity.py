"""nba.profiles.identity: the master rule, idempotence, guard rails, forget, snapshots, threads."""

from __future__ import annotations

import random
import sys
import threading
from collections import Counter
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nba.errors import ConfigError, IdentityError, ModelFormatError, NbaError, SchemaError
from nba.profiles.identity import BLOCKED_IDS, IdentityGraph, Merge


def _graph(**kw: Any) -> IdentityGraph:
    return IdentityGraph(clock=lambda: 1000.0, **kw)


def _strings(obj: Any) -> set[str]:
    """Every str reachable from obj through dicts, lists, tuples and sets."""
    out: set[str] = set()
    stack = [obj]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            out.add(v)
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple, set, frozenset)):
            stack.extend(v)
    return out


def _internal_strings(g: IdentityGraph) -> set[str]:
    """Every str held by any internal structure of g (every attribute, not only the maps known today)."""
    return _strings([v for k, v in vars(g).items() if k != "_blocked"])


def _assert_consistent(g: IdentityGraph) -> None:
    """The invariants of the five maps, and the master rule on every profile."""
    parent, seen, members, customers, merges = g._parent, g._seen, g._members, g._customers, g._merges
    assert parent.keys() == seen.keys()
    assert sorted(i for ms in members.values() for i in ms) == sorted(parent)
    for key, ms in members.items():
        assert parent[key] == key
        for i in ms:
            assert g.resolve(i) == key
        cs = customers.get(key, [])
        assert set(cs) <= set(ms)
        rank = {i: (i not in cs, seen[i], i) for i in ms}
        assert key == min(ms, key=rank.__getitem__)
    assert customers.keys() <= members.keys()
    assert merges.keys() <= members.keys()
    assert all(n >= 1 for n in merges.values())


def _partition(g: IdentityGraph) -> dict[str, tuple[str, ...]]:
    return {k: g.ids(k) for k in g._members}


# --------------------------------------------------------------------------- basics


def test_an_added_id_is_its_own_profile_and_an_unknown_id_resolves_to_none() -> None:
    g = _graph()
    assert g.resolve("u1") is None
    assert g.add("u1", now=5.0) == "u1"
    assert g.resolve("u1") == "u1"
    assert g.ids("u1") == ("u1",)
    assert g.ids("nobody") == ()
    assert "u1" in g and "nobody" not in g and 3.5 not in g
    assert len(g) == 1


def test_adding_an_id_again_keeps_its_profile_and_first_seen_time() -> None:
    g = _graph()
    g.add("u1", now=5.0)
    g.alias("u1", "u2", now=7.0)
    assert g.add("u2", now=1.0) == "u1"
    assert g._seen["u2"] == 7.0


def test_int_ids_are_held_as_their_decimal_str_like_unit_ids() -> None:
    g = _graph()
    assert g.add(42, now=1.0) == "42"
    assert g.resolve("42") == "42" and g.resolve(42) == "42"
    assert g.resolve(np.int64(42)) == "42"
    g.alias(np.int64(7), "42", now=2.0)
    assert g.ids(7) == ("42", "7")
    with pytest.raises(IdentityError, match="64-bit"):
        g.add(2**63, now=1.0)
    for bad in (True, 4.0, None, b"u1", ["u1"]):
        with pytest.raises(IdentityError, match="must be a str or an int"):
            g.add(bad, now=1.0)  # type: ignore[arg-type]
        with pytest.raises(IdentityError, match="must be a str or an int"):
            g.resolve(bad)  # type: ignore[arg-type]


def test_ids_accepts_any_member_of_the_profile() -> None:
    g = _graph()
    g.alias("a", "b", now=1.0)
    g.alias("b", "c", now=2.0)
    assert g.ids("c") == g.ids("a") == ("a", "b", "c")


def test_merge_is_plain_frozen_data() -> None:
    m = Merge("c", ("a", "b"))
    assert msgspec.json.decode(msgspec.json.encode(m), type=Merge) == m
    with pytest.raises(AttributeError):
        m.master = "x"  # type: ignore[misc]


def test_identity_error_is_a_value_error_and_an_nba_error() -> None:
    assert issubclass(IdentityError, NbaError) and issubclass(IdentityError, ValueError)


# --------------------------------------------------------------------------- the master rule


def test_the_profile_holding_a_customer_id_is_the_master_even_if_seen_later() -> None:
    g = _graph()
    g.add("anon", now=1.0)
    m = g.identify("anon", "cust", now=50.0)
    assert m == Merge(master="cust", merged=("anon",))
    assert g.resolve("anon") == "cust"


def test_without_customers_the_profile_first_seen_earlier_is_the_master() -> None:
    g = _graph()
    g.add("late", now=9.0)
    g.add("early", now=3.0)
    assert g.alias("late", "early") == Merge("early", ("late",))
    # a new id first seen even earlier becomes the key: the profile's state moves from "early" to it
    assert g.alias("x", "early", now=1.0) == Merge("x", ("early",))
    assert g.resolve("late") == "x"
    assert g.alias("y", "x", now=5.0) is None  # a new id seen later joins: no state moves


def test_a_tie_in_first_seen_goes_to_the_smaller_profile_key() -> None:
    g = _graph()
    g.add("b", now=4.0)
    g.add("a", now=4.0)
    assert g.alias("b", "a") == Merge("a", ("b",))


def test_marking_a_member_as_customer_rekeys_its_profile_and_names_the_old_key() -> None:
    g = _graph()
    g.add("b", now=1.0)
    g.add("c", now=2.0)
    g.add("a", now=3.0)
    assert g.alias("b", "c") == Merge("b", ("c",))
    assert g.identify("a", "c") == Merge("c", ("a", "b"))
    assert g.ids("c") == ("a", "b", "c")
    # without another profile: the re-key alone is a Merge of the old key into the new one
    g2 = _graph()
    g2.alias("p", "q", now=1.0)
    assert g2.resolve("q") == "p"
    assert g2.identify("p", "q") == Merge("q", ("p",))


def test_with_force_the_earliest_seen_customer_keys_the_profile() -> None:
    g = _graph()
    g.identify("a1", "c-late", now=8.0)
    g.identify("a2", "c-early", now=2.0)
    with pytest.raises(IdentityError, match="different customer ids"):
        g.alias("a1", "a2")
    assert g.alias("a1", "a2", force=True) == Merge("c-early", ("c-late",))
    assert g._customers["c-early"] == ["c-early", "c-late"]
    # the forced pair is one profile now: joining more ids to it is no new conflict
    assert g.identify("a3", "c-late", now=9.0) is None
    assert g.resolve("a3") == "c-early"


def test_without_now_the_injected_clock_gives_first_seen_times() -> None:
    t = iter([10.0, 20.0, 5.0, 30.0])
    g = IdentityGraph(clock=lambda: next(t))
    g.add("x")
    g.add("y")
    assert g.alias("y", "x") == Merge("x", ("y",))  # its clock reading (5.0) is unused: neither id is new
    assert g.alias("x", "z") is None
    assert g._seen == {"x": 10.0, "y": 20.0, "z": 30.0}
    assert g.ids("z") == ("x", "y", "z")


def test_now_must_be_unix_seconds() -> None:
    g = _graph()
    with pytest.raises(SchemaError, match="milliseconds"):
        g.add("x", now=1.7e12)
    with pytest.raises(SchemaError):
        g.alias("x", "y", now=float("nan"))
    assert len(g) == 0


# --------------------------------------------------------------------------- idempotence


def test_identify_twice_is_a_no_op() -> None:
    g = _graph()
    g.add("anon", now=1.0)
    assert g.identify("anon", "cust", now=2.0) is not None
    before = g.to_bytes()
    assert g.identify("anon", "cust", now=3.0) is None
    assert g.identify("cust", "cust", now=3.0) is None
    assert g.to_bytes() == before


def test_alias_twice_is_a_no_op_either_way_round() -> None:
    g = _graph()
    g.add("a", now=1.0)
    g.add("b", now=2.0)
    assert g.alias("a", "b") == Merge("a", ("b",))
    before = g.to_bytes()
    assert g.alias("a", "b") is None
    assert g.alias("b", "a") is None
    assert g.alias("a", "a") is None
    assert g.to_bytes() == before


def test_alias_of_an_id_with_itself_only_adds_it() -> None:
    g = _graph()
    assert g.alias("a", "a", now=1.0) is None
    assert g.ids("a") == ("a",)


# --------------------------------------------------------------------------- guard rails

JUNK = ["", " ", "\t\n", "null", "NULL", " None ", "undefined", "Undefined", "anonymous", "ANONYMOUS", "unknown",
        "0", "-1", "00000000-0000-0000-0000-000000000000", "000", 0, -1]


def _refused(g: IdentityGraph, call: Any, match: str) -> None:
    """call() raises IdentityError matching `match` and leaves g exactly as it was."""
    before = g.to_bytes()
    with pytest.raises(IdentityError, match=match):
        call()
    assert g.to_bytes() == before
    _assert_consistent(g)


@pytest.mark.parametrize("junk", JUNK, ids=repr)
def test_placeholder_ids_are_refused_everywhere(junk: Any) -> None:
    g = _graph()
    g.identify("anon", "cust", now=1.0)
    _refused(g, lambda: g.add(junk, now=1.0), "placeholder")
    _refused(g, lambda: g.alias("anon", junk), "placeholder")
    _refused(g, lambda: g.alias(junk, "fresh"), "placeholder")
    _refused(g, lambda: g.identify(junk, "cust"), "placeholder")
    _refused(g, lambda: g.identify("anon", junk), "placeholder")
    assert g.resolve(junk) is None and g.forget(junk) == ()


def test_default_blocked_ids_are_the_documented_ones() -> None:
    assert BLOCKED_IDS == {"null", "none", "undefined", "anonymous", "unknown", "0", "-1"}


def test_blocked_is_configurable_and_case_insensitive() -> None:
    g = _graph(blocked=["Guest"], block_zeros=False)
    assert g.add("null", now=1.0) == "null"  # no longer a default placeholder
    assert g.add("0000", now=1.0) == "0000"
    _refused(g, lambda: g.add("GUEST", now=1.0), "placeholder")
    _refused(g, lambda: g.add("  ", now=1.0), "placeholder")  # an empty id is never an id
    with pytest.raises(ConfigError, match="collection"):
        IdentityGraph(blocked="null")
    with pytest.raises(ConfigError, match="str ids"):
        IdentityGraph(blocked=["null", 0])  # type: ignore[list-item]


def test_ids_that_merely_contain_zeros_or_placeholders_are_fine() -> None:
    g = _graph()
    for ok in ["10", "0x0", "00000000-0000-0000-0000-000000000001", "nullable", "user-0", "none-such"]:
        assert g.add(ok, now=1.0) == ok


def test_an_id_longer_than_max_id_length_is_refused() -> None:
    g = _graph(max_id_length=256)
    assert g.add("x" * 256, now=1.0) == "x" * 256
    _refused(g, lambda: g.add("y" * 257, now=1.0), "257 characters long, more than max_id_length=256")
    _refused(g, lambda: g.identify("x" * 256, "c" * 10_000), "max_id_length")


def test_lone_surrogates_are_refused() -> None:
    g = _graph()
    g.add("ok", now=1.0)
    for bad in ("\ud800", "abc\udfff", "\ud83d"):
        _refused(g, lambda bad=bad: g.add(bad, now=1.0), "lone surrogate")
        _refused(g, lambda bad=bad: g.alias("ok", bad), "lone surrogate")
    assert g.add("caf\u00e9 \U0001f600", now=1.0) == "caf\u00e9 \U0001f600"  # a real astral char is fine


def test_a_profile_cannot_grow_past_max_ids() -> None:
    g = _graph(max_ids=3)
    g.alias("a", "b", now=1.0)
    g.alias("a", "c", now=2.0)
    _refused(g, lambda: g.alias("a", "d", now=3.0), "4 ids, more than max_ids=3")
    g.alias("d", "e", now=3.0)
    _refused(g, lambda: g.alias("e", "b"), "5 ids, more than max_ids=3")
    _refused(g, lambda: g.identify("c", "cust", now=3.0), "max_ids")


def test_a_profile_cannot_join_more_than_max_merges_profiles() -> None:
    g = _graph(max_merges=2)
    for i, u in enumerate("abcd"):
        g.add(u, now=float(i))
    g.alias("a", "b")
    g.alias("a", "c")
    assert g._merges == {"a": 2}
    _refused(g, lambda: g.alias("a", "d"), "3 merges into one profile, more than max_merges=2")
    assert g.alias("a", "new-id", now=9.0) is None  # a new id joins free: no profile's state is folded


def test_joining_two_different_customers_is_refused_unless_forced() -> None:
    g = _graph()
    g.identify("anon1", "cust1", now=1.0)
    g.identify("anon2", "cust2", now=2.0)
    _refused(g, lambda: g.alias("anon1", "anon2"), "different customer ids.*'cust1', 'cust2'.*force=True")
    _refused(g, lambda: g.identify("anon1", "cust2"), "different customer ids")
    _refused(g, lambda: g.identify("cust1", "cust2"), "different customer ids")
    _refused(g, lambda: g.identify("anon1", "cust3", now=3.0), "different customer ids")  # a new, second customer
    assert g.identify("anon1", "cust2", force=True) == Merge("cust1", ("cust2",))


def test_a_member_cannot_become_a_second_customer_of_its_profile() -> None:
    g = _graph()
    g.identify("anon", "cust1", now=1.0)
    g.alias("anon", "device", now=2.0)
    _refused(g, lambda: g.identify("device", "device"), "different customer ids")


def test_limits_must_be_sensible() -> None:
    for kw in ({"max_ids": 0}, {"max_merges": -1}, {"max_id_length": 0}, {"max_ids": 2.0}, {"max_ids": True}):
        with pytest.raises(ConfigError):
            IdentityGraph(**kw)
    with pytest.raises(ConfigError, match="clock"):
        IdentityGraph(clock=5.0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- forget


def _unomi_like_graph() -> IdentityGraph:
    g = _graph()
    g.add("forget-me-anon-01", now=1.0)
    g.alias("forget-me-anon-01", "forget-me-device-02", now=2.0)
    g.identify("forget-me-anon-01", "forget-me-customer-03", now=3.0)
    g.alias("forget-me-device-02", "forget-me-cookie-04", now=4.0)
    g.identify("keep-anon-05", "keep-customer-06", now=5.0)
    g.alias("keep-anon-05", "keep-device-07", now=6.0)
    g.resolve("forget-me-cookie-04")  # compress a path or two
    return g


@pytest.mark.parametrize("via", ["forget-me-customer-03", "forget-me-cookie-04", "forget-me-anon-01"])
def test_forget_removes_the_whole_profile_and_every_alias_leaving_no_trace(via: str) -> None:
    g = _unomi_like_graph()
    gone = {"forget-me-anon-01", "forget-me-device-02", "forget-me-customer-03", "forget-me-cookie-04"}
    assert set(g.ids(via)) == gone
    assert g.forget(via) == tuple(sorted(gone))
    for i in gone:  # Apache Unomi kept aliases after a profile was deleted: none survives here
        assert g.resolve(i) is None and i not in g and g.ids(i) == ()
    assert not gone & _internal_strings(g)
    data = g.to_bytes()
    for i in gone:
        assert i.encode() not in data
    assert b"forget-me" not in data
    assert not gone & _strings(msgspec.msgpack.decode(data))
    # the other profile is untouched
    assert g.ids("keep-device-07") == ("keep-anon-05", "keep-customer-06", "keep-device-07")
    assert g.resolve("keep-anon-05") == "keep-customer-06"
    _assert_consistent(g)


def test_forget_of_an_unknown_id_is_a_no_op_and_a_forgotten_id_comes_back_new() -> None:
    g = _unomi_like_graph()
    before = g.to_bytes()
    assert g.forget("nobody") == ()
    assert g.to_bytes() == before
    g.forget("forget-me-anon-01")
    assert g.forget("forget-me-anon-01") == ()
    assert g.add("forget-me-device-02", now=99.0) == "forget-me-device-02"
    assert g.ids("forget-me-device-02") == ("forget-me-device-02",)
    assert g._seen["forget-me-device-02"] == 99.0
    # the customer id it was merged with is free again: no stale customer blocks it
    assert g.identify("forget-me-device-02", "forget-me-customer-03", now=100.0) == Merge(
        "forget-me-customer-03", ("forget-me-device-02",))


# --------------------------------------------------------------------------- snapshots


def test_snapshot_round_trip_is_exact() -> None:
    g = _unomi_like_graph()
    g.identify("a", "c", now=7.0)
    g.alias("x", "y", now=8.5)
    data = g.to_bytes()
    h = IdentityGraph.from_bytes(data, clock=lambda: 1000.0)
    assert h.to_bytes() == data
    for attr in ("_seen", "_customers", "_merges"):
        assert getattr(h, attr) == getattr(g, attr)
    assert _partition(h) == _partition(g)
    assert {i: h.resolve(i) for i in g._parent} == {i: g.resolve(i) for i in g._parent}
    _assert_consistent(h)
    # and it goes on behaving the same
    assert h.alias("y", "keep-device-07") == g.alias("y", "keep-device-07")
    assert h.to_bytes() == g.to_bytes()


def test_snapshot_bytes_do_not_depend_on_path_compression_or_insertion_order() -> None:
    g = _graph()
    h = _graph()
    for i in range(6):
        g.add(f"u{i}", now=float(i))
    for i in reversed(range(6)):
        h.add(f"u{i}", now=float(i))
    for a, b in [("u0", "u1"), ("u2", "u3"), ("u1", "u3"), ("u4", "u5")]:
        g.alias(a, b)
    for a, b in [("u5", "u4"), ("u3", "u0"), ("u2", "u1"), ("u1", "u0")]:
        h.alias(a, b)
    before = g.to_bytes()
    for i in range(6):
        g.resolve(f"u{i}")
    assert g.to_bytes() == before == h.to_bytes()


def test_from_bytes_takes_the_limits_of_the_caller() -> None:
    g = _graph()
    g.alias("a", "b", now=1.0)
    h = IdentityGraph.from_bytes(g.to_bytes(), max_ids=2)
    with pytest.raises(IdentityError, match="max_ids=2"):
        h.alias("a", "c", now=2.0)


def test_a_profile_restored_over_smaller_limits_can_still_be_identified_but_not_grown() -> None:
    g = _graph()
    for i, u in enumerate("abcd"):
        g.add(u, now=float(i))
    g.alias("a", "b")
    g.alias("a", "c")
    h = IdentityGraph.from_bytes(g.to_bytes(), max_ids=2, max_merges=1)
    assert h.identify("b", "b") == Merge("b", ("a",))  # no growth: only a customer is marked
    with pytest.raises(IdentityError, match="max_ids=2"):
        h.alias("b", "new", now=9.0)
    h2 = IdentityGraph.from_bytes(g.to_bytes(), max_merges=1)
    with pytest.raises(IdentityError, match="max_merges=1"):
        h2.alias("b", "d")


def _snap(**kw: Any) -> bytes:
    base: dict[str, Any] = {"format": 1, "profiles": {"a": "a", "b": "a"}, "seen": {"a": 1.0, "b": 2.0},
                            "customers": {}, "merges": {"a": 1}}
    base.update(kw)
    return msgspec.msgpack.encode(base)


@pytest.mark.parametrize("data, match", [
    (b"", "not a saved"),
    (b"\x93\x01\x02\x03", "not a saved"),
    (msgspec.msgpack.encode({"format": 1}), "not a saved"),
    (_snap(format=2), "format 2"),
    (_snap(seen={"a": 1.0}), "different ids"),
    (_snap(profiles={"a": "a", "b": "c"}, seen={"a": 1.0, "b": 2.0}), "not a profile key"),
    (_snap(profiles={"a": "b", "b": "a"}), "not a profile key"),
    (_snap(seen={"a": 3.0, "b": 2.0}), "earliest-seen id"),
    (_snap(seen={"a": float("nan"), "b": 2.0}), "not unix seconds"),
    (_snap(customers={"a": ["b"]}), "earliest-seen customer"),
    (_snap(customers={"a": ["a", "zz"]}), "distinct ids of that profile"),
    (_snap(customers={"b": ["b"]}), "not a profile key"),
    (_snap(merges={"zz": 1}), "merge count"),
    (_snap(merges={"a": 0}), "merge count"),
], ids=repr)
def test_from_bytes_refuses_damaged_snapshots(data: bytes, match: str) -> None:
    with pytest.raises(ModelFormatError, match=match):
        IdentityGraph.from_bytes(data)


def test_from_bytes_accepts_a_hand_built_consistent_snapshot() -> None:
    h = IdentityGraph.from_bytes(_snap())
    assert h.ids("b") == ("a", "b") and h.to_bytes() == IdentityGraph.from_bytes(h.to_bytes()).to_bytes()


# --------------------------------------------------------------------------- properties

ANON = [f"anon-{i:02d}" for i in range(8)]
CUST = [f"cust-{i:02d}" for i in range(3)]
ALL = ANON + CUST

_op = st.one_of(
    st.tuples(st.just("alias"), st.sampled_from(ALL), st.sampled_from(ALL)),
    st.tuples(st.just("identify"), st.sampled_from(ALL), st.sampled_from(CUST)),
)
_seen_times = st.lists(st.integers(0, 4).map(float), min_size=len(ALL), max_size=len(ALL))  # ties are common


def _components(ops: list[tuple[str, str, str]]) -> list[set[str]]:
    """The sets the ops make, by a naive oracle: repeated merging of overlapping sets."""
    comps: list[set[str]] = []
    for _, a, b in ops:
        hit = [c for c in comps if a in c or b in c]
        joined = {a, b}.union(*hit)
        comps = [c for c in comps if not any(c is h for h in hit)] + [joined]
    return comps


def _needs_force(ops: list[tuple[str, str, str]]) -> bool:
    customers = {b for kind, _, b in ops if kind == "identify"}
    return any(len(c & customers) > 1 for c in _components(ops))


def _run(ops: list[tuple[str, str, str]], seen: dict[str, float], force: bool, order: list[str]) -> IdentityGraph:
    g = IdentityGraph(max_ids=1000, max_merges=1000)
    for i in order:
        g.add(i, now=seen[i])
    for kind, a, b in ops:
        (g.identify if kind == "identify" else g.alias)(a, b, force=force)
    _assert_consistent(g)
    return g


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, max_size=25), _seen_times, st.randoms(use_true_random=False))
def test_any_order_of_the_same_merges_gives_the_same_profiles_and_masters(ops, times, rnd) -> None:
    seen = dict(zip(ALL, times))
    force = _needs_force(ops)
    g = _run(ops, seen, force, ALL)
    shuffled = ops[:]
    rnd.shuffle(shuffled)
    order = ALL[:]
    rnd.shuffle(order)
    h = _run(shuffled, seen, force, order)
    assert _partition(g) == _partition(h)
    assert {i: g.resolve(i) for i in ALL} == {i: h.resolve(i) for i in ALL}
    assert g.to_bytes() == h.to_bytes()  # canonical bytes: seen, customers and merge counts agree too
    # and the master is what the rule says, computed from scratch
    customers = {b for kind, _, b in ops if kind == "identify"}
    for comp in _components(ops):
        expect = min(comp, key=lambda i: (i not in customers, seen[i], i))
        assert {g.resolve(i) for i in comp} == {expect}


_event_op = st.one_of(
    st.tuples(st.just("event"), st.sampled_from(ALL), st.integers(0, 4).map(float)),
    st.tuples(st.just("alias"), st.sampled_from(ALL), st.sampled_from(ALL), st.integers(0, 4).map(float)),
    st.tuples(st.just("identify"), st.sampled_from(ALL), st.sampled_from(CUST), st.integers(0, 4).map(float)),
)


def _replay(ops: list[tuple], force: bool) -> tuple[IdentityGraph, dict[str, Counter], dict[str, Counter]]:
    """Run ops, keeping feature states as multisets folded by every returned Merge; (graph, states, events by id)."""
    g = IdentityGraph(max_ids=1000, max_merges=1000)
    states: dict[str, Counter] = {}
    events: dict[str, Counter] = {}
    for n, op in enumerate(ops):
        if op[0] == "event":
            _, i, now = op
            key = g.add(i, now=now)  # a caller adds an id when it first sees it
            ev = (i, n)
            states.setdefault(key, Counter())[ev] += 1
            events.setdefault(i, Counter())[ev] += 1
            continue
        kind, a, b, now = op
        m = (g.identify if kind == "identify" else g.alias)(a, b, now=now, force=force)
        if m is not None:
            assert m.master not in m.merged and list(m.merged) == sorted(set(m.merged))
            folded = states.pop(m.master, Counter())
            for k in m.merged:
                folded += states.pop(k, Counter())
            states[m.master] = folded
    return g, states, events


@settings(max_examples=300, deadline=None)
@given(st.lists(_event_op, max_size=40), st.randoms(use_true_random=False))
def test_replaying_merges_over_feature_states_loses_and_double_counts_nothing(ops, rnd) -> None:
    force = _needs_force([(op[0], op[1], op[2]) for op in ops if op[0] != "event"])
    orders = [ops, rnd.sample(ops, len(ops))]
    finals = []
    for seq in orders:
        g, states, events = _replay(seq, force)
        _assert_consistent(g)
        profiles = _partition(g)
        assert {k for k, s in states.items() if s} <= profiles.keys()  # no state left under a dead key
        for key, ids in profiles.items():
            expect = sum((events.get(i, Counter()) for i in ids), Counter())
            assert states.get(key, Counter()) == expect
        assert sum(sum(s.values()) for s in states.values()) == sum(1 for op in seq if op[0] == "event")
        finals.append({frozenset(ids): sum((events.get(i, Counter()) for i in ids), Counter())
                       for ids in profiles.values()})
    # whatever the order, the same ids end up together with the same events
    assert finals[0].keys() == finals[1].keys()


@settings(max_examples=150, deadline=None)
@given(st.lists(_op, max_size=25), _seen_times, st.sampled_from(ALL))
def test_forget_leaves_no_trace_of_any_removed_id_and_keeps_the_rest(ops, times, victim) -> None:
    seen = dict(zip(ALL, times))
    g = _run(ops, seen, _needs_force(ops), ALL)
    others = {i: g.ids(i) for i in ALL if i not in g.ids(victim)}
    gone = g.forget(victim)
    assert victim in gone
    assert not set(gone) & _internal_strings(g)
    data = g.to_bytes()
    assert not any(i.encode() in data for i in gone)
    assert {i: g.ids(i) for i in others} == others
    _assert_consistent(g)
    assert IdentityGraph.from_bytes(data).to_bytes() == data


@settings(max_examples=150, deadline=None)
@given(st.lists(_op, max_size=25), _seen_times)
def test_snapshot_round_trip_of_any_graph(ops, times) -> None:
    g = _run(ops, dict(zip(ALL, times)), _needs_force(ops), ALL)
    data = g.to_bytes()
    h = IdentityGraph.from_bytes(data)
    assert h.to_bytes() == data and _partition(h) == _partition(g)
    assert h._customers == g._customers and h._merges == g._merges and h._seen == g._seen


# --------------------------------------------------------------------------- threads


@pytest.fixture
def eager_switching():
    """Threads switch every microsecond, so unguarded interleavings happen (without the lock this fails)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


@pytest.mark.parametrize("seed", range(5))
def test_threads_aliasing_concurrently_end_in_a_consistent_partition(seed: int, eager_switching: None) -> None:
    n_groups, per_group, n_threads = 20, 12, 8
    ids = [f"g{g:02d}-m{m:02d}" for g in range(n_groups) for m in range(per_group)]
    g = IdentityGraph(max_ids=1000, max_merges=1000, clock=lambda: 100.0)
    for k, i in enumerate(ids):
        g.add(i, now=float(k % 7))
    ops = [("alias", f"g{x:02d}-m{m:02d}", f"g{x:02d}-m{m + 1:02d}") for x in range(n_groups) for m in range(per_group - 1)]
    ops += [("identify", f"g{x:02d}-m05", f"cust-{x:02d}") for x in range(0, n_groups, 2)]
    random.Random(seed).shuffle(ops)
    chunks = [ops[t::n_threads] for t in range(n_threads)]
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []

    def work(chunk: list[tuple[str, str, str]]) -> None:
        try:
            barrier.wait()
            for kind, a, b in chunk:
                (g.identify if kind == "identify" else g.alias)(a, b)
                g.resolve(a)  # readers interleave with writers
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    _assert_consistent(g)
    serial = IdentityGraph(max_ids=1000, max_merges=1000, clock=lambda: 100.0)
    for k, i in enumerate(ids):
        serial.add(i, now=float(k % 7))
    for kind, a, b in sorted(ops):
        (serial.identify if kind == "identify" else serial.alias)(a, b)
    assert g.to_bytes() == serial.to_bytes()
    assert len(g._members) == n_groups
