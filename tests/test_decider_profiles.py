"""Decider with a profile store: decide(profile_id) equals decide(profile dict), and consent is honoured.

The oracle of every test is the dict path: ``decide(id)`` must choose, score and log
exactly what ``decide(store_profile_values)`` does with the same event id, or, without
consent, what ``decide({})`` does with the profile's key as the unit.
"""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nba
from nba.log import DecisionRecord, read_records
from nba.profiles import (
    LOGGING,
    PERSONALISATION,
    ConsentChange,
    Count,
    EmbeddedProfileStore,
    Event,
    Features,
    Sum,
)

T0 = 1_700_000_000.0
NOW = T0 + 600.0


def _schema() -> nba.FeatureSchema:
    return nba.FeatureSchema([nba.Numeric("views"), nba.Numeric("spend"), nba.Numeric("hour", source="context")])


def _features() -> Features:
    return Features([Count("views", "view"), Sum("spend", "buy", "amount"), Count("views_1h", "view", window=3600)])


@pytest.fixture(scope="module")
def catalog() -> nba.Catalog:
    arms = [nba.Arm(f"offer{i}", features={"fee": float(i)}, channels={"*": {"n": i}}) for i in range(4)]
    return nba.Catalog(arms, _schema())


@pytest.fixture(scope="module")
def model(catalog: nba.Catalog):
    rng = np.random.default_rng(3)
    names = list(catalog.feature_names)
    X = rng.normal(size=(500, len(names))) * 3
    y = (X[:, 0] - X[:, 1] + X[:, -1] + rng.normal(size=500) > 0).astype(float)
    params = {"objective": "binary", "verbose": -1, "num_leaves": 7, "seed": 0, "deterministic": True}
    return nba.load_model(lgb.train(params, lgb.Dataset(X, y, feature_name=names), 15))


def _store(*grant: str) -> EmbeddedProfileStore:
    store = EmbeddedProfileStore(_features())
    for i in range(5):
        store.track("anon-1", Event("view", "web", T0 + i))
    store.track("anon-1", Event("buy", "app", T0 + 10, {"amount": 42.0}))
    for purpose in grant:
        store.record_consent("anon-1", ConsentChange(purpose, "granted", T0))
    return store


def _decider(catalog, model, store, log=None, **kw) -> nba.Decider:
    return nba.Decider(catalog, model, policy=nba.EpsilonGreedy(0.3), profiles=store, log=log, seed=7, **kw)


def _same(a: nba.Decision, b: nba.Decision) -> None:
    assert (a.arm, a.pmf, a.scores, a.actions, a.variants) == (b.arm, b.pmf, b.scores, b.actions, b.variants)


def test_a_profile_id_decides_as_its_profile_dict(catalog, model):
    store = _store(PERSONALISATION, LOGGING)
    d = _decider(catalog, model, store)
    values = store.profile("anon-1", NOW).values  # type: ignore[union-attr]
    assert values["views"] == 5 and values["spend"] == 42.0
    for k in range(40):
        by_id = d.decide("anon-1", {"hour": float(k % 24)}, event_id=f"e{k}", now=NOW)
        by_dict = d.decide(values, {"hour": float(k % 24)}, event_id=f"e{k}", now=NOW)
        _same(by_id, by_dict)
        assert by_id.personalised


@settings(max_examples=40, deadline=None)
@given(views=st.integers(0, 30), spend=st.floats(0, 500), hour=st.integers(0, 23), eid=st.integers(0, 10**6))
def test_decide_by_id_equals_the_dict_path_for_any_profile(catalog, model, views, spend, hour, eid):
    store = EmbeddedProfileStore(_features(), consent_default={PERSONALISATION: True, LOGGING: True})
    for i in range(views):
        store.track(7, Event("view", "web", T0 + i))
    if spend:
        store.track(7, Event("buy", "web", T0 + 100, {"amount": spend}))
    if not views and not spend:
        store.track(7, Event("login", "web", T0))
    d = _decider(catalog, model, store)
    want = {"id": "7", "views": float(views), "spend": spend if spend else None}
    _same(d.decide(7, {"hour": hour}, event_id=str(eid), now=NOW), d.decide(want, {"hour": hour}, event_id=str(eid),
                                                                            now=NOW))


def test_the_profile_key_is_the_allocation_unit_after_identify(catalog, model):
    store = _store(PERSONALISATION, LOGGING)
    store.identify("anon-1", "cust-9", now=T0 + 20)
    exp = nba.Experiment("e", ["a", "b", "c", "d"])
    d = _decider(catalog, model, store, experiments=[exp])
    for k in range(30):
        got = d.decide("anon-1", {"hour": 1.0}, event_id=f"x{k}", now=NOW).variants
        assert got == d.decide({"id": "cust-9"}, {"hour": 1.0}, event_id=f"x{k}", now=NOW).variants
        assert got == d.decide("cust-9", {"hour": 1.0}, event_id=f"x{k}", now=NOW).variants


@pytest.mark.parametrize("grant", [(), (LOGGING,)])
def test_without_personalisation_consent_no_profile_feature_is_used(catalog, model, tmp_path: Path, grant):
    store = _store(*grant)
    log = nba.DecisionLog(tmp_path)
    d = _decider(catalog, model, store, log=log)
    for k in range(20):
        got = d.decide("anon-1", {"hour": 3.0}, event_id=f"n{k}", now=NOW)
        _same(got, d.decide({"id": "anon-1"}, {"hour": 3.0}, event_id=f"n{k}", now=NOW))
        assert not got.personalised
    log.close()
    records = [r for r in read_records(tmp_path) if isinstance(r, DecisionRecord)]
    for by_id, blank in zip(records[::2], records[1::2]):
        assert by_id.features == blank.features and by_id.x == blank.x  # the schema's defaults, nothing of the profile


def test_without_logging_consent_the_log_holds_no_profile_feature(catalog, model, tmp_path: Path):
    store = _store(PERSONALISATION)
    log = nba.DecisionLog(tmp_path / "a")
    d = _decider(catalog, model, store, log=log)
    values = store.profile("anon-1", NOW).values  # type: ignore[union-attr]
    got = d.decide("anon-1", {"hour": 5.0}, event_id="z", now=NOW)
    _same(got, d.decide(values, {"hour": 5.0}, event_id="z", now=NOW))  # used for the decision...
    assert got.personalised
    log.close()
    by_id, by_dict = [r for r in read_records(tmp_path / "a") if isinstance(r, DecisionRecord)]
    assert by_dict.features["User"] == {"views": 5.0, "spend": 42.0}
    assert "User" not in by_id.features  # ...but not logged
    assert by_id.features["Context"] == {"hour": 5.0} and by_id.x is not None
    assert by_id.x == [None, None, 5.0] and by_dict.x == [5.0, 42.0, 5.0]


def test_consent_is_read_at_the_decision_time(catalog, model):
    store = _store(PERSONALISATION, LOGGING)
    store.record_consent("anon-1", ConsentChange(PERSONALISATION, "revoked", NOW + 10))
    d = _decider(catalog, model, store)
    assert d.decide("anon-1", {"hour": 1.0}, now=NOW).personalised
    assert not d.decide("anon-1", {"hour": 1.0}, now=NOW + 10).personalised


def test_an_unknown_profile_id_decides_without_profile_and_creates_nothing(catalog, model):
    store = _store(PERSONALISATION, LOGGING)
    d = _decider(catalog, model, store)
    got = d.decide("stranger", {"hour": 2.0}, event_id="s", now=NOW)
    _same(got, d.decide({"id": "stranger"}, {"hour": 2.0}, event_id="s", now=NOW))
    assert not got.personalised
    assert store.profile("stranger", NOW) is None


def test_a_bad_profile_id_raises_and_decides_nothing(catalog, model, tmp_path: Path):
    log = nba.DecisionLog(tmp_path)
    d = _decider(catalog, model, _store(PERSONALISATION), log=log)
    for bad in ("\ud800", 2**70, -(2**64)):
        with pytest.raises(nba.NbaError):
            d.decide(bad, {"hour": 1.0}, now=NOW)
    assert log.last_seq == 2  # the catalogue and schema records only


def test_profiles_must_be_a_store(catalog, model):
    with pytest.raises(nba.ConfigError, match="profiles must be"):
        nba.Decider(catalog, model, profiles={"anon-1": {}})  # type: ignore[arg-type]


def test_without_a_store_a_profile_id_is_refused(catalog, model):
    d = nba.Decider(catalog, model)
    with pytest.raises(nba.SchemaError):
        d.decide("anon-1", {"hour": 1.0}, now=NOW)


def test_forget_erases_the_subject_from_the_store_and_the_log(catalog, model, tmp_path: Path):
    store = _store(PERSONALISATION, LOGGING)
    store.identify("anon-1", "cust-5f0e", now=T0 + 20)
    store.track("bystander", Event("view", "web", T0))
    log = nba.DecisionLog(tmp_path, segment_bytes=1500)
    d = _decider(catalog, model, store, log=log)
    mine = [d.decide("anon-1", {"hour": 1.0}, now=NOW + k) for k in range(5)]
    theirs = [d.decide("bystander", {"hour": 1.0}, now=NOW + k) for k in range(5)]
    for dec in mine + theirs:
        d.reward(dec.event_id, 1.0, now=NOW + 10)
    gone = d.forget("cust-5f0e")
    assert set(gone.ids) == {"anon-1", "cust-5f0e"} and gone.complete and gone.log is not None
    assert gone.log.removed == 10
    assert store.profile("anon-1", NOW) is None and store.profile("cust-5f0e", NOW) is None
    d.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    for needle in (b"anon-1", b"cust-5f0e", *(dec.event_id.encode() for dec in mine)):
        assert needle not in blob
    left = [r.event_id for r in read_records(tmp_path) if isinstance(r, DecisionRecord)]
    assert left == [dec.event_id for dec in theirs]


def test_with_a_redis_store_decide_by_id_is_one_round_trip(catalog, model):
    import secrets

    import redis

    from nba.profiles import RedisProfileStore
    from tests import redis_server

    if not redis_server.available():
        pytest.skip("redis-server is not installed (tools/test_services.sh)")

    class Counting(redis.Redis):  # type: ignore[misc]
        calls = 0

        def execute_command(self, *args, **options):
            self.calls += 1
            return super().execute_command(*args, **options)

    with redis_server.redis_server() as server:
        client = Counting.from_url(server.url)
        store = RedisProfileStore(_features(), client, namespace="d-" + secrets.token_hex(4),
                                  consent_default={PERSONALISATION: True, LOGGING: True})
        for i in range(5):
            store.track("anon-1", Event("view", "web", T0 + i))
        store.track("anon-1", Event("buy", "app", T0 + 10, {"amount": 42.0}))
        d = _decider(catalog, model, store)
        values = store.profile("anon-1", NOW).values  # type: ignore[union-attr]
        before = client.calls
        got = [d.decide("anon-1", {"hour": float(k)}, event_id=f"r{k}", now=NOW) for k in range(10)]
        assert client.calls - before == 10  # one script call (one round trip) a decision
        for k, g in enumerate(got):
            _same(g, d.decide(values, {"hour": float(k)}, event_id=f"r{k}", now=NOW))
        client.close()


def test_a_channel_without_consent_gets_only_transactional_arms(catalog, model, tmp_path: Path):
    from nba.profiles import ContactPolicy, EmbeddedContactStore

    store = EmbeddedProfileStore(_features(), purposes=(PERSONALISATION, LOGGING, "email"),
                                 consent_default={PERSONALISATION: True, LOGGING: True})
    store.track("u", Event("view", "web", T0))
    policy = ContactPolicy([], transactional=["offer3"])
    log = nba.DecisionLog(tmp_path)
    d = _decider(catalog, model, store, log=log, contact=policy, contacts=EmbeddedContactStore(),
                 consent_channels=["email"])
    held = d.decide("u", {"hour": 1.0}, channel="email", now=NOW)
    assert held.arm == "offer3" and held.actions == ("offer3",)
    assert held.suppressed == {f"offer{i}": "consent:email" for i in range(3)}
    assert len(d.decide("u", {"hour": 1.0}, channel="web", now=NOW).actions) == 4  # web needs no consent here
    store.record_consent("u", ConsentChange("email", "granted", NOW + 1))
    assert d.decide("u", {"hour": 1.0}, channel="email", now=NOW + 2).suppressed == {}
    store.record_consent("u", ConsentChange("email", "revoked", NOW + 3))
    assert set(d.decide("u", {"hour": 1.0}, channel="email", now=NOW + 4).suppressed) == {"offer0", "offer1", "offer2"}
    log.close()
    logged = [r.suppressed for r in read_records(tmp_path) if isinstance(r, DecisionRecord)]
    assert logged[0] == held.suppressed


def test_consent_channels_must_be_purposes_the_store_reports(catalog, model):
    with pytest.raises(nba.ConfigError, match="purposes"):
        _decider(catalog, model, _store(), consent_channels=["email"])
    with pytest.raises(nba.ConfigError, match="collection"):
        _decider(catalog, model, _store(), consent_channels="email")


def test_an_experiment_condition_targets_on_the_profile(catalog, model):
    exp = nba.Experiment("big-viewers", ["a", "b"], condition={"views": {"$gte": 3}})
    store = _store(PERSONALISATION, LOGGING)  # anon-1 has 5 views
    store.track("few", Event("view", "web", T0))
    d = _decider(catalog, model, store, experiments=[exp])
    assert d.decide("anon-1", {"hour": 1.0}, now=NOW).variants.keys() == {"big-viewers"}
    assert d.decide("few", {"hour": 1.0}, now=NOW).variants == {}
    assert d.decide({"id": "x", "views": 9.0}, {"hour": 1.0}, now=NOW).variants.keys() == {"big-viewers"}
    assert d.decide({"id": "x"}, {"hour": 1.0}, now=NOW).variants == {}
