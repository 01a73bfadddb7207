"""Bad values at the Decider's edge: a typed error that changes nothing, never a record the reader rejects."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest

import nba
from nba.bandits import BetaThompson, LinUCB
from nba.decider import LearnWarning
from nba.log import ActivationRecord, DecisionRecord, OutcomeRecord, export_dsjson, read_records

SCHEMA = nba.FeatureSchema([nba.Numeric("age", source="profile"), nba.Categorical("segment", ["a", "b"])])
ARMS = [nba.Arm(f"arm{i}", value=1.0, channels={"web": f"w{i}", "app": f"a{i}"}) for i in range(3)]
PROFILE = {"id": "u1", "age": 30.0, "segment": "a"}
BAD_TIMES = [math.nan, math.inf, -math.inf, 1.7e12, -1e300, -1.0, "2026-01-01", True, [1.0]]


def _records(directory) -> list:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing the Decider wrote may be skipped
        return [r for r in read_records(directory)
                if isinstance(r, (DecisionRecord, OutcomeRecord, ActivationRecord))]


@pytest.fixture
def beta(tmp_path):
    bandit = BetaThompson(3)
    dec = nba.Decider(ARMS, bandit, schema=SCHEMA, policy=nba.Thompson(), log=nba.DecisionLog(tmp_path),
                      reward_window=100.0)
    yield dec, bandit
    dec.close()


def test_generated_event_ids_carry_80_random_bits_and_a_counter() -> None:
    dec = nba.Decider(ARMS, BetaThompson(3), schema=SCHEMA, policy=nba.Thompson())
    ids = [dec.decide(PROFILE).event_id for _ in range(3)]
    assert all(re.fullmatch(r"[0-9a-f]{20}-[0-9a-f]+", e) for e in ids)
    assert len({e.split("-")[0] for e in ids}) == 1 and len(set(ids)) == 3
    other = nba.Decider(ARMS, BetaThompson(3), schema=SCHEMA, policy=nba.Thompson())
    assert other.decide(PROFILE).event_id.split("-")[0] != ids[0].split("-")[0]


@pytest.mark.parametrize("unit", [1.5, math.nan, True, False, np.float64(2.0), [1, 2], {"a": 1}, "\ud800", 2**64, b"u1"])
def test_unit_ids_that_are_not_text_or_64_bit_ints_are_refused_before_anything_is_logged(beta, tmp_path, unit) -> None:
    dec, bandit = beta
    with pytest.raises(nba.SchemaError, match="unit id"):
        dec.decide({**PROFILE, "id": unit})
    dec.flush()  # had it been remembered, closing the window would teach it
    assert _records(tmp_path) == [] and bandit.pulls.sum() == 0


def test_a_numpy_integer_unit_id_is_logged_as_a_plain_int(beta, tmp_path) -> None:
    dec, _ = beta
    dec.decide({**PROFILE, "id": np.int64(42)})
    (rec,) = _records(tmp_path)
    assert rec.unit == 42 and type(rec.unit) is int


@pytest.mark.parametrize("defer", [1, 0, None, "yes", np.bool_(True)])
def test_defer_must_be_true_or_false(beta, tmp_path, defer) -> None:
    dec, _ = beta
    with pytest.raises(nba.ConfigError, match="defer"):
        dec.decide(PROFILE, defer=defer)
    assert _records(tmp_path) == []


@pytest.mark.parametrize("bad", BAD_TIMES)
def test_timestamps_must_be_plausible_unix_seconds(beta, tmp_path, bad) -> None:
    dec, _ = beta
    d = dec.decide(PROFILE, defer=True, now=1000.0)
    with pytest.raises(nba.SchemaError):
        dec.decide(PROFILE, now=bad)
    with pytest.raises(nba.SchemaError):
        dec.reward(d.event_id, 1.0, now=bad)
    with pytest.raises(nba.SchemaError):
        dec.activate(d.event_id, now=bad)
    dec.activate(d.event_id, now=1001.0)  # the event is still there, unconsumed
    assert len(_records(tmp_path)) == 2
    assert export_dsjson(tmp_path, tmp_path / "out.json") is not None  # every timestamp has a date


def test_a_millisecond_timestamp_is_named_as_such(beta) -> None:
    with pytest.raises(nba.SchemaError, match="milliseconds"):
        beta[0].decide(PROFILE, now=1.7e12)


def test_a_reward_at_nan_does_not_close_every_pending_window() -> None:
    bandit = BetaThompson(3)
    dec = nba.Decider(ARMS, bandit, schema=SCHEMA, policy=nba.Thompson(), reward_window=10.0)
    d = dec.decide(PROFILE, now=100.0)
    with pytest.raises(nba.SchemaError):
        dec.reward("other", 0.0, now=math.nan)
    dec.reward(d.event_id, 1.0, now=101.0)
    i = dec.catalog.index(d.arm)
    assert bandit.pulls[i] == 1 and bandit.alpha[i] == 2.0  # learned the real reward, not the default


@pytest.mark.parametrize("eid", [12345, None, b"e1", 1.0, "", "x" * 257, "\ud800"])
def test_event_ids_must_be_short_valid_text(beta, tmp_path, eid) -> None:
    dec, _ = beta
    with pytest.raises(nba.SchemaError, match="event_id"):
        dec.reward(eid, 1.0)
    with pytest.raises(nba.SchemaError, match="event_id"):
        dec.activate(eid)
    if eid is not None:
        with pytest.raises(nba.SchemaError, match="event_id"):
            dec.decide(PROFILE, event_id=eid)
    assert _records(tmp_path) == []


@pytest.mark.parametrize("channel", ["\ud800", 5, b"web"])
def test_a_channel_must_be_valid_text(beta, tmp_path, channel) -> None:
    dec, bandit = beta
    with pytest.raises(nba.SchemaError, match="channel"):
        dec.decide(PROFILE, channel=channel)
    dec.flush()
    assert _records(tmp_path) == [] and bandit.pulls.sum() == 0


def test_a_refused_reward_does_not_consume_the_event(beta) -> None:
    dec, bandit = beta
    d = dec.decide(PROFILE, now=10.0)
    before = bandit.to_bytes()
    with pytest.raises(nba.SchemaError):
        dec.reward(d.event_id, 5.0, now=11.0)  # a Beta-Bernoulli model learns rewards in [0, 1]
    assert bandit.to_bytes() == before
    dec.reward(d.event_id, 1.0, now=12.0)
    assert bandit.alpha[dec.catalog.index(d.arm)] == 2.0


def test_sum_aggregate_refuses_the_reward_whose_sum_the_model_cannot_learn(tmp_path) -> None:
    bandit = BetaThompson(3)
    with nba.Decider(ARMS, bandit, schema=SCHEMA, policy=nba.Thompson(), aggregate="sum", reward_window=10.0,
                     log=nba.DecisionLog(tmp_path)) as dec:
        d = dec.decide(PROFILE, now=100.0)
        dec.reward(d.event_id, 0.75, now=101.0)
        with pytest.raises(nba.SchemaError):
            dec.reward(d.event_id, 0.5, now=102.0)  # the sum, 1.25, is no Bernoulli reward: refused now
        dec.reward("unrelated", 0.0, now=200.0)  # closes the window; an unrelated call no longer raises
        assert bandit.alpha[dec.catalog.index(d.arm)] == 1.75
    assert [(r.event_id, r.value) for r in _records(tmp_path) if isinstance(r, OutcomeRecord)] == [
        (d.event_id, 0.75), ("unrelated", 0.0)]


def test_huge_rewards_are_refused_and_linucb_stays_finite() -> None:
    bandit = LinUCB(3, SCHEMA.n_columns, alpha=0.5)
    dec = nba.Decider(ARMS, bandit, schema=SCHEMA, policy=nba.UCB())
    d = dec.decide(PROFILE)
    with pytest.raises(nba.SchemaError):
        dec.reward(d.event_id, 1e308)
    dec.reward(d.event_id, 1.0)
    assert np.isfinite(bandit.score(SCHEMA.vectorize(PROFILE))).all()
    dec.decide(PROFILE)


def test_a_reward_for_an_event_this_decider_never_made_is_logged_for_a_later_join(beta, tmp_path) -> None:
    dec, bandit = beta
    dec.reward("made-by-another-worker", 1.0, now=5.0)
    assert bandit.pulls.sum() == 0
    assert [(r.event_id, r.ts, r.value) for r in _records(tmp_path)] == [("made-by-another-worker", 5.0, 1.0)]


def test_calls_after_close_raise_and_teach_nothing(tmp_path) -> None:
    bandit = BetaThompson(3)
    dec = nba.Decider(ARMS, bandit, schema=SCHEMA, policy=nba.Thompson(), log=nba.DecisionLog(tmp_path))
    d = dec.decide(PROFILE, defer=True)
    dec.close()
    before = bandit.to_bytes()
    with pytest.raises(nba.LogError):
        dec.reward(d.event_id, 1.0)
    with pytest.raises(nba.LogError):
        dec.activate(d.event_id)
    with pytest.raises(nba.LogError):
        dec.decide(PROFILE)
    dec.flush()
    assert bandit.to_bytes() == before and len(_records(tmp_path)) == 1


def test_a_fallback_without_a_payload_for_a_served_channel_is_refused_at_build() -> None:
    arms = [*ARMS, nba.Arm("house", channels={"web": "house-web"})]
    with pytest.raises(nba.ConfigError, match="fallback: arm .house. has no payload for channel .app."):
        nba.Decider(arms, BetaThompson(4), schema=SCHEMA, policy=nba.Thompson(), fallback="house")
    ok = [*ARMS, nba.Arm("house", channels={"web": "house-web", "*": "house"})]
    nba.Decider(ok, BetaThompson(4), schema=SCHEMA, policy=nba.Thompson(), fallback="house")


def test_a_default_reward_the_model_cannot_learn_is_refused_at_build() -> None:
    with pytest.raises(nba.ConfigError, match="default_reward"):
        nba.Decider(ARMS, BetaThompson(3), schema=SCHEMA, policy=nba.Thompson(), default_reward=2.0)
    with pytest.raises(nba.ConfigError, match="default_reward"):
        nba.Decider(ARMS, BetaThompson(3), schema=SCHEMA, policy=nba.Thompson(), default_reward=math.nan)


def test_a_deferred_fallback_decision_can_be_activated(tmp_path) -> None:
    arms = [nba.Arm("gated", eligibility="age >= 18"), nba.Arm("house", eligibility="age >= 200")]
    model = BetaThompson(2)
    with nba.Decider(arms, model, schema=SCHEMA, policy=nba.Thompson(), fallback="house",
                     log=nba.DecisionLog(tmp_path)) as dec:
        d = dec.decide({**PROFILE, "age": 10.0}, defer=True)
        assert d.fallback and d.deferred
        dec.activate(d.event_id)
    assert [type(r).__name__ for r in _records(tmp_path)] == ["DecisionRecord", "ActivationRecord"]


def test_an_example_the_model_refuses_is_logged_and_skipped_with_a_warning(tmp_path) -> None:
    schema = nba.FeatureSchema([nba.Numeric("a"), nba.Numeric("b")])
    bandit = LinUCB(1, 2, ridge=1.0)
    arms = [nba.Arm("only")]
    with nba.Decider(arms, bandit, schema=schema, policy=nba.UCB(), log=nba.DecisionLog(tmp_path)) as dec:
        first = dec.decide({"a": 94906266.0, "b": 1.0})
        dec.reward(first.event_id, 0.0)
        state = bandit.to_bytes()
        d = dec.decide({"a": 60023876.0, "b": 1.0})
        with pytest.warns(LearnWarning, match="not learned"):
            dec.reward(d.event_id, 1.0)  # rounding cannot mix these scales: the model refuses the update
        assert bandit.to_bytes() == state
    assert [r.event_id for r in _records(tmp_path) if isinstance(r, OutcomeRecord)] == [first.event_id, d.event_id]


def test_swapping_in_a_model_that_cannot_learn_the_default_reward_is_refused() -> None:
    dec = nba.Decider(ARMS, LinUCB(3, SCHEMA.n_columns), schema=SCHEMA, policy=nba.UCB(), default_reward=-2.0)
    with pytest.raises(nba.ConfigError, match="default_reward"):
        dec.swap_model(BetaThompson(3))  # a Beta-Bernoulli model learns rewards in [0, 1] only
    assert dec.model_version.startswith("LinUCB")


def test_schema_or_arbitration_beside_a_catalog_is_refused_not_ignored() -> None:
    catalog = nba.Catalog(ARMS, SCHEMA)
    for kw in ({"schema": SCHEMA}, {"arbitration": "score"}):
        with pytest.raises(nba.ConfigError, match="a Catalog carries its own schema and arbitration"):
            nba.Decider(catalog, BetaThompson(3), policy=nba.Thompson(), **kw)
    nba.Decider(catalog, BetaThompson(3), policy=nba.Thompson())
