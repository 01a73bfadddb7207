"""Consent by purpose: the change in force, expiry, defaults, merges in any order, snapshots, bad input."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nba.errors import ModelFormatError, SchemaError
from nba.profiles.consent import LOGGING, PERSONALISATION, Consent, ConsentChange

T0 = 1_700_000_000.0


def test_no_change_is_no_consent_unless_a_default_says_so() -> None:
    assert not Consent().granted_at(PERSONALISATION, T0)
    assert Consent(default={LOGGING: True}).granted_at(LOGGING, T0)
    assert not Consent(default={LOGGING: True}).granted_at(PERSONALISATION, T0)


def test_the_latest_change_at_or_before_t_decides() -> None:
    c = Consent()
    c.grant(PERSONALISATION, T0)
    c.revoke(PERSONALISATION, T0 + 100)
    c.grant(PERSONALISATION, T0 + 200, source="app")
    assert not c.granted_at(PERSONALISATION, T0 - 1)
    assert c.granted_at(PERSONALISATION, T0)  # from the instant it was given
    assert c.granted_at(PERSONALISATION, T0 + 99.999)
    assert not c.granted_at(PERSONALISATION, T0 + 100)
    assert c.granted_at(PERSONALISATION, T0 + 200)
    assert c.status(PERSONALISATION, T0 + 150) == ConsentChange(PERSONALISATION, "revoked", T0 + 100)


def test_a_grant_ends_at_its_expiry() -> None:
    c = Consent()
    c.grant("email", T0, expires=T0 + 3600)
    assert c.granted_at("email", T0 + 3599.5) and not c.granted_at("email", T0 + 3600)


def test_changes_recorded_out_of_order_are_read_in_time_order() -> None:
    c = Consent()
    c.deny("push", T0 + 10)
    c.grant("push", T0)
    assert c.granted_at("push", T0 + 5) and not c.granted_at("push", T0 + 10)


def test_at_equal_times_a_refusal_wins_in_any_order() -> None:
    for order in (("grant", "deny"), ("deny", "grant")):
        c = Consent()
        for op in order:
            getattr(c, op)("sms", T0)
        assert not c.granted_at("sms", T0)


def test_purposes_are_independent() -> None:
    c = Consent()
    c.grant(PERSONALISATION, T0)
    c.deny(LOGGING, T0)
    assert c.granted_at(PERSONALISATION, T0 + 1) and not c.granted_at(LOGGING, T0 + 1)


@pytest.mark.parametrize("change, match", [
    (ConsentChange("", "granted", T0), "purpose"),
    (ConsentChange("x" * 129, "granted", T0), "purpose"),
    (ConsentChange("a\ud800", "granted", T0), "surrogate"),
    (ConsentChange("email", "maybe", T0), "status"),  # type: ignore[arg-type]
    (ConsentChange("email", "granted", math.nan), "consent time"),
    (ConsentChange("email", "granted", T0 * 1000), "consent time"),
    (ConsentChange("email", "granted", T0, expires=T0), "after"),
])
def test_a_malformed_change_is_refused_and_changes_nothing(change: ConsentChange, match: str) -> None:
    c = Consent()
    c.grant("email", T0 - 10)
    before = c.to_bytes()
    with pytest.raises(SchemaError, match=match):
        c.record(change)
    assert c.to_bytes() == before


def test_only_consent_changes_are_recorded() -> None:
    with pytest.raises(SchemaError, match="ConsentChange"):
        Consent().record({"purpose": "email"})  # type: ignore[arg-type]


def test_snapshot_round_trips_and_bad_bytes_are_refused() -> None:
    c = Consent()
    c.grant(PERSONALISATION, T0, expires=T0 + 10, source="web")
    c.deny("email", T0 + 0.25)
    again = Consent.from_bytes(c.to_bytes())
    assert again == c and again.to_bytes() == c.to_bytes()
    with pytest.raises(ModelFormatError):
        Consent.from_bytes(b"\x00garbage")


# --------------------------------------------------------------------------- properties

_PURPOSES = st.sampled_from([PERSONALISATION, LOGGING, "email"])
_CHANGES = st.builds(
    ConsentChange,
    purpose=_PURPOSES,
    status=st.sampled_from(["granted", "denied", "revoked"]),
    at=st.integers(0, 20).map(lambda i: T0 + i),  # few distinct times: many ties
    expires=st.one_of(st.none(), st.integers(1, 10).map(float)),
    source=st.sampled_from(["", "web", "app"]),
).map(lambda c: absolute_expiry(c))


def absolute_expiry(c: ConsentChange) -> ConsentChange:
    """Generated expiries are offsets; make them absolute and after ``at``."""
    return ConsentChange(c.purpose, c.status, c.at, None if c.expires is None else c.at + c.expires, c.source)


def oracle(changes: list[ConsentChange], purpose: str, t: float) -> bool:
    """Consent recomputed from the raw changes: the latest at or before t, refusals last among equals."""
    rank = {"granted": 0, "revoked": 1, "denied": 2}
    past = [c for c in set(changes) if c.purpose == purpose and c.at <= t]
    if not past:
        return False
    last = max(past, key=lambda c: (c.at, rank[c.status], math.inf if c.expires is None else c.expires, c.source))
    return last.status == "granted" and (last.expires is None or t < last.expires)


@settings(max_examples=300, deadline=None)
@given(st.lists(_CHANGES, max_size=12), st.integers(-1, 32).map(lambda i: T0 + i / 1.5), _PURPOSES)
def test_granted_at_agrees_with_a_recomputation_from_the_changes(changes, t, purpose) -> None:
    assert Consent(changes).granted_at(purpose, t) == oracle(changes, purpose, t)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_CHANGES, max_size=6), min_size=1, max_size=4), st.randoms(use_true_random=False))
def test_merges_in_any_order_and_grouping_give_one_consent(parts, rnd) -> None:
    consents = [Consent(p) for p in parts]
    left = consents[0]
    for c in consents[1:]:
        left = left.merge(c)
    shuffled = consents[:]
    rnd.shuffle(shuffled)
    right = shuffled[-1]
    for c in reversed(shuffled[:-1]):
        right = c.merge(right)
    everything = Consent([c for p in parts for c in p])
    assert left == right == everything
    assert left.merge(left) == left  # the same profile merged twice changes nothing
