"""What follows a profile in the store: triggers observe its events, and triggers and contact
histories move with its merges and go with its erasure.

The oracle is the same triggers and contact store used directly, by profile key, with
the merges applied by hand: the store must give exactly what they give.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from nba.profiles import (
    Absence,
    Count,
    Due,
    EmbeddedContactStore,
    EmbeddedProfileStore,
    Event,
    Features,
    OnEvent,
    RedisContactStore,
    RedisProfileStore,
    RedisTriggerStore,
    Triggers,
)
from tests import redis_server

T0 = 1_700_000_000.0
RULES = [Absence("abandoned_cart", after="cart_add", missing="checkout", within=1800.0),
         OnEvent("failed_payment", "payment", where={"status": "failed"})]


FEATURES = Features([Count("carts", "cart_add")])


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    if not redis_server.available():
        pytest.skip("redis-server is not installed (tools/test_services.sh)")
    with redis_server.redis_server() as server:
        yield server.url


@pytest.fixture(params=["embedded", "redis"])
def make(request: pytest.FixtureRequest):
    def build() -> EmbeddedProfileStore | RedisProfileStore:
        if request.param == "embedded":
            return EmbeddedProfileStore(FEATURES, triggers=Triggers(RULES), contacts=EmbeddedContactStore())
        url = request.getfixturevalue("redis_url")
        ns = "links-" + secrets.token_hex(4)
        return RedisProfileStore(FEATURES, url, namespace=ns,
                                 triggers=Triggers(RULES, RedisTriggerStore(url, namespace=ns)),
                                 contacts=RedisContactStore(url, namespace=ns))
    return build


def test_tracked_events_arm_and_cancel_triggers_under_the_profile_key(make):
    store = make()
    assert store.triggers is not None
    store.track("anon", Event("cart_add", "web", T0))
    store.track("other", Event("cart_add", "app", T0))
    store.track("other", Event("checkout", "app", T0 + 60))
    store.track("anon", Event("payment", "app", T0 + 10, {"status": "failed"}))
    assert store.triggers.due(T0 + 1799) == [Due("anon", "failed_payment", T0 + 10, T0 + 10)]
    assert store.triggers.due(T0 + 1800) == [Due("anon", "abandoned_cart", T0 + 1800, T0)]
    assert store.triggers.due(T0 + 10**6) == []  # each once; "other" checked out


def test_identify_moves_pending_triggers_and_contacts_to_the_customer(make):
    store = make()
    assert store.triggers is not None and store.contacts is not None
    store.track("anon", Event("cart_add", "web", T0))
    store.contacts.record("anon", "offer1", "web", T0 + 5)
    store.track("cust-1", Event("login", "app", T0 + 1))
    store.contacts.record("cust-1", "offer2", "app", T0 + 6)
    merge = store.identify("anon", "cust-1", now=T0 + 20)
    assert merge is not None and merge.master == "cust-1"
    assert [c.arm for c in store.contacts.history("cust-1", T0 + 30).contacts] == ["offer1", "offer2"]
    assert store.contacts.history("anon", T0 + 30).contacts == ()
    store.track("anon", Event("checkout", "web", T0 + 100))  # on the anonymous device, after identify
    assert store.triggers.due(T0 + 5000) == []  # the checkout, under the customer's key, cancelled it


def test_forget_erases_triggers_and_contacts_of_every_id(make):
    store = make()
    assert store.triggers is not None and store.contacts is not None
    store.track("anon", Event("cart_add", "web", T0))
    store.contacts.record("anon", "offer1", "web", T0 + 5)
    store.identify("anon", "cust-1", now=T0 + 20)
    store.track("cust-1", Event("cart_add", "app", T0 + 30))
    assert store.triggers.pending("cust-1")
    assert set(store.forget("anon")) == {"anon", "cust-1"}
    assert store.triggers.pending("cust-1") == [] and store.triggers.pending("anon") == []
    assert store.contacts.history("cust-1", T0 + 40).contacts == ()
    assert store.contacts.history("anon", T0 + 40).contacts == ()
    assert store.triggers.due(T0 + 10**6) == []
