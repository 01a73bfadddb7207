"""Apprentice mode: the baseline is served while the learned policy shadows it; one shared switch.

The learned policy's own draws are known from a twin Decider (same catalogue, model,
policy and seed, no apprentice rule) deciding the same event id: its choice is what
the apprentice's learned policy must have drawn. Agreement can then be steered (baseline
= the twin's choice, or another arm) to put the switch exactly where the rule says.
"""

from __future__ import annotations

import functools
import math
import multiprocessing as mp
import secrets
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nba
from nba.apprentice import ApprenticeStatus, summarize
from nba.log import DecisionRecord, OutcomeRecord, SwitchRecord, export_dsjson, read_records
from nba.policy import EpsilonGreedy, Greedy
from nba.state import ApprenticeCounters, EmbeddedState, RedisState
from tests import redis_server

SCHEMA = nba.FeatureSchema([nba.Numeric("age"), nba.Numeric("hour", source="context")])
T0 = 1_800_000_000.0


def _arms(n: int) -> list[nba.Arm]:
    arms = [nba.Arm(f"a{i}", features={"fee": float(i)}) for i in range(n - 1)]
    return arms + [nba.Arm(f"a{n - 1}", features={"fee": float(n - 1)}, eligibility="age >= 18")]


@functools.cache
def _model() -> Any:
    """A LightGBM model over CATALOG's rows (trained once, when first needed: not in spawned workers)."""
    import lightgbm as lgb

    catalog = CATALOG
    rng = np.random.default_rng(3)
    names = list(catalog.feature_names)
    X = rng.normal(size=(800, len(names))) * [30.0, 6.0, 2.0][: len(names)]
    y = (np.sin(X[:, 0] / 7) + np.cos(X[:, -1]) + 0.2 * rng.normal(size=800) > 0).astype(float)
    params = {"objective": "binary", "verbose": -1, "num_leaves": 15, "seed": 0, "deterministic": True}
    return nba.load_model(lgb.train(params, lgb.Dataset(X, y, feature_name=names), 30))


CATALOG = nba.Catalog(_arms(5), SCHEMA)


def _pair(policy: Any, rule: nba.Apprentice | None, log_dir: str | None = None, state: Any = None,
          seed: int = 7) -> tuple[nba.Decider, nba.Decider]:
    """(apprentice Decider, twin without the rule): same model, policy and seed."""
    log = nba.DecisionLog(log_dir) if log_dir is not None else None
    dec = nba.Decider(CATALOG, _model(), policy=policy, seed=seed, log=log, apprentice=rule, state=state)
    return dec, nba.Decider(CATALOG, _model(), policy=policy, seed=seed)


def _profile(i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    return {"id": f"u{i}", "age": 18.0 + (i * 37) % 60}, {"hour": float(i % 24)}


def _decisions(log_dir: str | Path) -> list[DecisionRecord]:
    return [r for r in read_records(log_dir) if type(r) is DecisionRecord]


def _switches(log_dir: str | Path) -> list[SwitchRecord]:
    return [r for r in read_records(log_dir) if type(r) is SwitchRecord]


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("kw", [{"threshold": -0.1}, {"threshold": 1.5}, {"threshold": math.nan},
                                {"threshold": "0.7"}, {"threshold": True}, {"min_events": -1},
                                {"min_events": 2.0}, {"min_events": True}, {"enabled": 1}])
def test_apprentice_rule_refuses_bad_settings(kw: dict[str, Any]) -> None:
    with pytest.raises(nba.ConfigError, match="Apprentice"):
        nba.Apprentice(**kw)


def test_apprentice_defaults_and_decider_checks() -> None:
    a = nba.Apprentice()
    assert (a.threshold, a.min_events, a.enabled) == (0.7, 1000, True)
    assert nba.Apprentice(enabled=False).rule is None
    with pytest.raises(nba.ConfigError, match="nba.Apprentice"):
        nba.Decider(CATALOG, _model(), apprentice={"threshold": 0.5})  # type: ignore[arg-type]
    with pytest.raises(nba.ConfigError, match="no apprentice rule"):
        nba.Decider(CATALOG, _model()).apprentice_status()
    assert isinstance(EmbeddedState(), ApprenticeCounters)


def test_unknown_baseline_raises_and_changes_nothing(tmp_path: Path) -> None:
    dec, _ = _pair(Greedy(), nba.Apprentice(min_events=10), str(tmp_path))
    p, c = _profile(1)
    for bad in ("nope", 3, b"a1"):
        with pytest.raises(nba.ConfigError, match="baseline"):
            dec.decide(p, c, baseline=bad, now=T0)  # type: ignore[arg-type]
    with pytest.raises(nba.ConfigError, match="n=1"):
        dec.decide(p, c, baseline="a0", n=2, now=T0)
    dec.close()
    assert _decisions(tmp_path) == []
    assert dec.apprentice_status() == ApprenticeStatus(0, 0, None, False)


# --------------------------------------------------------------------------- while apprenticing


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), eps=st.sampled_from([0.0, 0.3, 1.0]),
       baselines=st.lists(st.integers(0, 4), min_size=1, max_size=30))
def test_baseline_always_served_with_p1_and_the_learned_draw_logged(seed: int, eps: float,
                                                                   baselines: list[int]) -> None:
    with tempfile.TemporaryDirectory() as d:
        dec, twin = _pair(EpsilonGreedy(eps), nba.Apprentice(min_events=10_000), d, seed=seed)
        agreed = 0
        for i, b in enumerate(baselines):
            p, c = _profile(i)
            eid = f"e{i}"
            ref = twin.decide(p, c, event_id=eid, now=T0 + i)
            got = dec.decide(p, c, event_id=eid, baseline=f"a{b}", now=T0 + i)
            assert got.arm == f"a{b}" and got.apprentice and got.probability == 1.0
            assert got.learned == ref.arm  # the learned policy drew what it draws without apprentice mode
            assert got.pmf == tuple(1.0 if a == got.arm else 0.0 for a in got.actions)
            agreed += ref.arm == got.arm
        dec.close()
        recs = _decisions(d)
        assert len(recs) == len(baselines)
        recount = 0
        for r, b in zip(recs, baselines):
            assert r.apprentice and r.baseline == f"a{b}" and r.probability == 1.0
            assert r.actions[r.chosen[0]] == r.baseline
            assert r.learned is not None and r.learned_pmf is not None and len(r.learned_pmf) == len(r.actions)
            assert r.learned_pmf[r.learned] > 0
            recount += r.actions[r.learned] == r.baseline
        st_ = dec.apprentice_status()
        assert (st_.events, st_.agreements, st_.switched) == (len(baselines), recount, False)
        assert recount == agreed
        assert summarize(d).agreements == recount


def test_greedy_agreement_is_the_share_where_baseline_is_the_argmax(tmp_path: Path) -> None:
    dec, twin = _pair(Greedy(), nba.Apprentice(min_events=10_000), str(tmp_path))
    rng = np.random.default_rng(1)
    n, hits = 400, 0
    for i in range(n):
        p, c = _profile(i)
        ref = twin.decide(p, c, event_id=f"g{i}", now=T0)
        best = ref.actions[int(np.argmax(ref.pmf))]
        base = best if rng.random() < 0.6 else str(rng.choice(ref.actions))
        hits += base == best
        dec.decide(p, c, event_id=f"g{i}", baseline=base, now=T0)
    s = dec.apprentice_status()
    assert s.events == n and s.agreements == hits and s.agreement == hits / n
    dec.close()
    summary = summarize(tmp_path)
    assert (summary.events, summary.agreements) == (n, hits)
    lo, hi = summary.agreement_interval.low, summary.agreement_interval.high  # type: ignore[union-attr]
    assert lo < hits / n < hi


# --------------------------------------------------------------------------- the switch


def _steer(dec: nba.Decider, twin: nba.Decider, pattern: list[bool], start: int = 0) -> list[nba.Decision]:
    """Decide with baselines that agree (True) or not with the learned policy's draw."""
    out = []
    for j, agree in enumerate(pattern):
        i = start + j
        p, c = _profile(i)
        ref = twin.decide(p, c, event_id=f"s{i}", now=T0 + i)
        base = ref.arm if agree else next(a for a in ref.actions if a != ref.arm)
        out.append(dec.decide(p, c, event_id=f"s{i}", baseline=base, now=T0 + i))
    return out


def _first_switch(pattern: list[bool], threshold: float, min_events: int) -> int | None:
    """The oracle: the 1-based decision after which the rule first holds."""
    a = 0
    for i, agree in enumerate(pattern, 1):
        a += agree
        if i >= min_events and a / i >= threshold:
            return i
    return None


@pytest.mark.parametrize("threshold, min_events, pattern, at", [
    (0.5, 5, [True] * 8, 5),  # agreement 1.0 from the start: not at 4 = min_events - 1, at 5
    (0.75, 4, [False, False, True, True, True, True, True, True], 8),  # 5/7 = 0.714 just below, 6/8 = 0.75
    (0.6, 5, [False, True, True, False, True, False, False, False], 5),  # 3/5 = 0.6: equality switches
])
def test_switch_happens_exactly_when_the_rule_holds(tmp_path: Path, threshold: float, min_events: int,
                                                    pattern: list[bool], at: int) -> None:
    expected = _first_switch(pattern, threshold, min_events)
    assert expected == at  # the oracle agrees with the hand count
    dec, twin = _pair(Greedy(), nba.Apprentice(threshold=threshold, min_events=min_events), str(tmp_path))
    got = _steer(dec, twin, pattern)
    assert [d.apprentice for d in got] == [i < expected for i in range(len(pattern))]
    for d in got[expected:]:  # the learned policy serves, the baseline is still logged
        assert d.arm == d.learned and d.baseline is not None and d.probability == max(d.pmf)
    dec.close()
    sw = _switches(tmp_path)
    assert len(sw) == 1
    agreements = sum(pattern[:expected])
    assert (sw[0].events, sw[0].agreements, sw[0].threshold, sw[0].min_events) == (
        expected, agreements, threshold, min_events)
    assert sw[0].ts == T0 + expected - 1  # the ts of the decision that made it
    # In the log, the switch comes right after the decision that made it.
    recs = [r for r in read_records(tmp_path) if type(r) in (DecisionRecord, SwitchRecord)]
    assert type(recs[expected]) is SwitchRecord
    assert summarize(tmp_path).switched_at == sw[0].ts


@settings(max_examples=25, deadline=None)
@given(pattern=st.lists(st.booleans(), min_size=1, max_size=40), threshold=st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]),
       min_events=st.integers(0, 20))
def test_switch_matches_the_oracle_and_is_sticky(pattern: list[bool], threshold: float, min_events: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        dec, twin = _pair(Greedy(), nba.Apprentice(threshold=threshold, min_events=min_events), d)
        expected = _first_switch(pattern, threshold, min_events)
        got = _steer(dec, twin, pattern)
        n_app = len(pattern) if expected is None else expected
        assert [x.apprentice for x in got] == [i < n_app for i in range(len(pattern))]
        s = dec.apprentice_status()
        assert (s.events, s.agreements, s.switched) == (len(pattern), sum(pattern), expected is not None)
        if expected is not None:  # sticky: disagreeing from now on changes nothing
            after = _steer(dec, twin, [False] * 3, start=len(pattern))
            assert not any(x.apprentice for x in after) and dec.apprentice_status().switched
        dec.close()
        assert len(_switches(d)) == (expected is not None)


def test_disabled_rule_serves_the_learned_policy_and_still_counts(tmp_path: Path) -> None:
    dec, twin = _pair(Greedy(), nba.Apprentice(threshold=0.0, min_events=0, enabled=False), str(tmp_path))
    got = _steer(dec, twin, [True, False, True, True])
    assert not any(d.apprentice for d in got) and all(d.arm == d.learned for d in got)
    assert dec.apprentice_status() == ApprenticeStatus(4, 3, 0.75, False)
    dec.close()
    assert _switches(tmp_path) == []
    assert all(r.learned_pmf is None and r.learned is not None for r in _decisions(tmp_path))


def test_ineligible_baseline_lets_the_learned_policy_serve_uncounted(tmp_path: Path) -> None:
    dec, twin = _pair(Greedy(), nba.Apprentice(min_events=10), str(tmp_path))
    minor = {"id": "kid", "age": 12.0}
    d = dec.decide(minor, {"hour": 3.0}, event_id="k", baseline="a4", now=T0)  # a4 needs age >= 18
    ref = twin.decide(minor, {"hour": 3.0}, event_id="k", now=T0)
    assert d.arm == ref.arm and not d.apprentice and d.learned is None and d.baseline == "a4"
    assert d.suppressed == {"a4": "ineligible"} and "a4" not in d.actions
    assert dec.apprentice_status().events == 0
    dec.close()
    (rec,) = _decisions(tmp_path)
    assert rec.baseline == "a4" and not rec.apprentice and rec.learned is None and rec.suppressed == {"a4": "ineligible"}
    assert summarize(tmp_path).events == 0


def test_without_a_rule_the_baseline_is_only_logged(tmp_path: Path) -> None:
    dec = nba.Decider(CATALOG, _model(), policy=EpsilonGreedy(0.2), seed=3, log=nba.DecisionLog(tmp_path / "a"))
    ref = nba.Decider(CATALOG, _model(), policy=EpsilonGreedy(0.2), seed=3, log=nba.DecisionLog(tmp_path / "b"))
    for i in range(30):
        p, c = _profile(i)
        x = dec.decide(p, c, event_id=f"w{i}", baseline="a1", now=T0)
        y = ref.decide(p, c, event_id=f"w{i}", now=T0)
        assert x.baseline == "a1" and not x.apprentice and x.learned is None
        assert (x.arm, x.pmf, x.probability) == (y.arm, y.pmf, y.probability)
    dec.close()
    ref.close()
    for r, q in zip(_decisions(tmp_path / "a"), _decisions(tmp_path / "b")):
        assert r.baseline == "a1" and r.learned is None and r.learned_pmf is None
        assert (r.pmf, r.chosen) == (q.pmf, q.chosen)
    # An old reader's view: the new fields are omitted when at their defaults.
    line = next(x for x in (tmp_path / "b").rglob("*") if x.is_file()).read_bytes()
    assert b"learned" not in line and b"apprentice" not in line and b"baseline" not in line


# --------------------------------------------------------------------------- the log's other readers


def _apprentice_log(log_dir: Path, n: int = 60, min_events: int = 40) -> nba.Decider:
    dec, twin = _pair(EpsilonGreedy(0.3), nba.Apprentice(threshold=0.0, min_events=min_events), str(log_dir))
    rng = np.random.default_rng(4)
    for i in range(n):
        p, c = _profile(i)
        d = dec.decide(p, c, event_id=f"x{i}", baseline=f"a{rng.integers(0, 4)}", now=T0 + i)
        dec.reward(d.event_id, float(d.arm in ("a0", "a1")), now=T0 + i + 0.5)
    dec.decide(*_profile(n), event_id="plain", now=T0 + n)  # no baseline: ignored by summarize
    dec.close()
    return dec


def test_summarize_recounts_agreement_and_values(tmp_path: Path) -> None:
    dec = _apprentice_log(tmp_path)
    s = summarize(tmp_path)
    status = dec.apprentice_status()
    recs = [r for r in _decisions(tmp_path) if r.baseline is not None]
    assert s.events == status.events == len(recs) == 60
    assert s.agreements == status.agreements == sum(r.actions[r.learned] == r.baseline for r in recs)  # type: ignore[index]
    assert s.agreement == s.agreements / s.events
    served = [r for r in recs if r.apprentice]
    assert len(served) == 40
    rewards = {r.event_id: r.value for r in read_records(tmp_path) if type(r) is OutcomeRecord}
    assert s.baseline_value is not None
    assert s.baseline_value.value == pytest.approx(np.mean([rewards[r.event_id] for r in served]))
    assert s.baseline_value.gaussian.low < s.baseline_value.value < s.baseline_value.gaussian.high
    # IPS of the learned pmf against the one-hot serving pmf: mean of learned_pmf[baseline] * reward.
    ips = np.mean([r.learned_pmf[r.chosen[0]] * rewards[r.event_id] for r in served])  # type: ignore[index]
    assert s.switching_value is not None and s.switching_value.value == pytest.approx(ips)
    assert any("lower bound" in n for n in s.notes)
    assert s.switched_at == T0 + 39


def test_summarize_is_none_safe(tmp_path: Path) -> None:
    dec = nba.Decider(CATALOG, _model(), log=nba.DecisionLog(tmp_path))
    dec.decide(*_profile(0), now=T0)
    dec.decide(*_profile(1), baseline="a0", now=T0)  # logged only: no learned draw
    dec.close()
    s = summarize(tmp_path)
    assert (s.events, s.agreements, s.agreement, s.agreement_interval) == (0, 0, None, None)
    assert (s.baseline_value, s.switching_value, s.switched_at) == (None, None, None)
    with pytest.raises(nba.ConfigError, match="level"):
        summarize(tmp_path, level=95)  # type: ignore[arg-type]


def test_dsjson_export_and_erasure_handle_apprentice_logs(tmp_path: Path) -> None:
    _apprentice_log(tmp_path / "log")
    report = export_dsjson(tmp_path / "log", tmp_path / "out.dsjson")
    assert report.events == 61 and report.skipped == 0
    import json

    lines = [json.loads(x) for x in (tmp_path / "out.dsjson").read_text().splitlines()]
    assert sum(x["_label_probability"] == 1.0 for x in lines) >= 40  # the served baselines, p = 1
    erased = nba.log.forget(tmp_path / "log", ["u3"])
    assert erased.removed >= 1
    assert len(_switches(tmp_path / "log")) == 1  # no personal data: the switch stays
    assert all(r.unit != "u3" for r in _decisions(tmp_path / "log"))


# --------------------------------------------------------------------------- Redis: one process


@pytest.fixture(scope="module")
def redis_url() -> Any:
    if not redis_server.available():
        pytest.skip("redis-server is not installed")
    with redis_server.redis_server() as server:
        yield server.url


def test_redis_counters_switch_once_and_survive_a_new_process(redis_url: str, tmp_path: Path) -> None:
    ns = "app-" + secrets.token_hex(4)
    rule = nba.Apprentice(threshold=0.5, min_events=20)
    dec, twin = _pair(Greedy(), rule, str(tmp_path / "a"), state=RedisState(redis_url, namespace=ns))
    got = _steer(dec, twin, [True] * 10)
    dec.flush()
    assert dec.apprentice_status() == ApprenticeStatus(10, 10, 1.0, False)
    assert all(d.apprentice for d in got)
    import redis

    redis.Redis.from_url(redis_url).script_flush()  # NOSCRIPT on the next call: loaded again, nothing lost
    got = _steer(dec, twin, [True] * 15, start=10)
    dec.flush()  # the writer adds the counts and switches, at the first sync where the rule holds
    status = dec.apprentice_status()
    assert status.switched and status.events == 25
    assert [d.apprentice for d in _steer(dec, twin, [True] * 3, start=25)] == [False] * 3
    dec.close()
    (sw,) = _switches(tmp_path / "a")
    assert 20 <= sw.events <= 25 and sw.agreements == sw.events
    # A worker started later takes the shared switch at bind: it never apprentices, logs no switch.
    late, twin2 = _pair(Greedy(), rule, str(tmp_path / "b"), state=RedisState(redis_url, namespace=ns))
    assert late.apprentice_status().switched
    assert not any(d.apprentice for d in _steer(late, twin2, [True] * 5, start=100))
    late.close()
    assert _switches(tmp_path / "b") == []
    h = redis.Redis.from_url(redis_url).hgetall("{" + ns + "}:apprentice")
    assert int(h[b"events"]) == 33 and int(h[b"sw_events"]) == sw.events


# --------------------------------------------------------------------------- Redis: two worker processes

SWITCH_AT = 400
AFTER = 300  # learned decisions each worker serves after it sees the switch


def _worker(conn: Connection, url: str, ns: str, log_dir: str) -> None:
    """Decide flat out (wall clock) until AFTER decisions served by the learned policy, or 20 s."""
    dec = nba.Decider(CATALOG, nba.BetaThompson(len(CATALOG)), policy=EpsilonGreedy(0.2), seed=1,
                      log=nba.DecisionLog(log_dir), apprentice=nba.Apprentice(threshold=0.0, min_events=SWITCH_AT),
                      state=RedisState(url, namespace=ns))
    conn.send("ready")
    conn.recv()
    learned = i = 0
    deadline = time.monotonic() + 20
    while learned < AFTER and time.monotonic() < deadline:
        i += 1
        d = dec.decide(*_profile(i), baseline="a0")
        learned += not d.apprentice
    dec.close()
    conn.send((learned, i))


def test_two_workers_share_one_switch_within_a_bounded_lag(redis_url: str, tmp_path: Path) -> None:
    ns = "app2-" + secrets.token_hex(4)
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    for w in range(2):
        mine, theirs = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(theirs, redis_url, ns, str(tmp_path / f"w{w}")), daemon=True)
        p.start()
        pipes.append(mine)
        procs.append(p)
    try:
        for c in pipes:
            assert c.poll(60) and c.recv() == "ready"
        for c in pipes:
            c.send("go")
        results = []
        for c in pipes:
            assert c.poll(60)
            results.append(c.recv())
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    assert all(learned == AFTER for learned, _ in results), results
    dirs = [tmp_path / "w0", tmp_path / "w1"]
    switches = [s for d in dirs for s in _switches(d)]
    assert len(switches) == 1  # one shared switch, logged once
    sw = switches[0]
    assert sw.events >= SWITCH_AT
    # Per worker: decisions still served as the baseline after the switch (its ts), and how long after.
    lag_decisions, lag_seconds = [], []
    for d in dirs:
        recs = _decisions(d)
        late = [r for r in recs if r.apprentice and r.ts > sw.ts]
        lag_decisions.append(len(late))
        lag_seconds.append(max((r.ts - sw.ts for r in late), default=0.0))
        served = [r.apprentice for r in recs]
        first = served.index(False)
        assert not any(served[first:])  # once it serves the learned policy, it never goes back
    total = sum(len(_decisions(d)) for d in dirs)
    import redis

    h = redis.Redis.from_url(redis_url).hgetall("{" + ns + "}:apprentice")
    assert int(h[b"events"]) == total  # every counted decision reached the shared counters
    print(f"\napprentice switch lag per worker: {lag_decisions} decisions, "
          f"{[round(s * 1e3, 2) for s in lag_seconds]} ms (switch at {sw.events} events)")
    assert max(lag_seconds) < 0.5  # the writer's tick (flush_interval, 2 ms) plus a round trip, on a noisy box
