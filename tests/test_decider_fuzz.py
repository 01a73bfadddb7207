"""Hostile calls to decide / activate / reward and the log's append_* (hypothesis state machine).

The invariant, checked after every call: a call either raises a typed ``nba.NbaError``
and changes nothing (no record written, the online model's state byte-identical), or
it returns and writes exactly its one record; at the end, every record reads back
exactly as the calls returned it, without a single skipped line.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import warnings

import numpy as np
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import nba
from nba.bandits import BetaThompson, LinUCB
from nba.log import ActivationRecord, DecisionRecord, OutcomeRecord, read_records

SCHEMA = nba.FeatureSchema(
    [
        nba.Numeric("age", source="profile", allow_missing=True),
        nba.Categorical("segment", ["student", "family", "senior"], source="profile"),
        nba.Boolean("mobile", source="context"),
    ]
)
ARMS = [
    nba.Arm("card", value=2.0, eligibility="age >= 18", channels={"web": "card-web", "app": "card-app"}),
    nba.Arm("loan", value=5.0, eligibility="segment == 'family'", channels={"web": "loan-web", "*": "loan"}),
    nba.Arm("save", value=1.0, channels={"*": "save"}),
]

hostile_text = st.one_of(st.sampled_from(["\ud800", "a\udfffb", ""]), st.integers(257, 2000).map("x".__mul__))
hostile_number = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e300, 1.7e12, True, "1", None, [1]])
timestamps = st.one_of(st.none(), st.floats(0.0, 4.0e9), st.integers(0, 4_000_000_000), hostile_number)
units = st.one_of(
    st.text(max_size=8),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.booleans(),
    st.sampled_from([np.int64(7), np.float64(2.5), [1, 2], {"a": 1}, "\ud800"]),
)
ages = st.one_of(st.floats(-1e3, 1e3), st.none(), st.sampled_from([math.nan, math.inf, "old", 1e308, True]))
segments = st.one_of(st.sampled_from(["student", "family", "senior", "other", None, 5, "\ud800x", "fam\u00efly"]))
channels = st.sampled_from([None, "web", "app", "email", 5, "\ud800", b"web"])


class DeciderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="nba-fuzz-")
        self.log = nba.DecisionLog(self.dir)
        self.models = {"beta": BetaThompson(3), "linucb": LinUCB(3, SCHEMA.n_columns, alpha=0.5)}
        self.deciders = {
            "beta": nba.Decider(ARMS, self.models["beta"], schema=SCHEMA, policy=nba.Thompson(), log=self.log,
                                fallback="save", aggregate="sum", reward_window=100.0),
            "linucb": nba.Decider(ARMS, self.models["linucb"], schema=SCHEMA, policy=nba.UCB(), log=self.log,
                                  fallback="save", arbitration="score"),  # signed scores: not "product"
        }
        self.seq = self.log.last_seq
        self.expected: list[tuple] = []  # what each successful call must read back as
        self.event_ids: list[str] = []
        self.deferred: list[str] = []

    def teardown(self) -> None:
        try:
            self.log.close()
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a skipped line is a failure here
                got = [_key(r) for r in read_records(self.dir)
                       if isinstance(r, (DecisionRecord, OutcomeRecord, ActivationRecord))]
            assert len(got) == len(self.expected)
            for g, e in zip(got, self.expected):
                # None in an expectation: a timestamp the call took from the clock
                assert g == tuple(gv if ev is None else ev for gv, ev in zip(g, e)), (g, e)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _call(self, name: str, fn, *args, **kwargs) -> tuple[bool, object]:
        """Run one public call; on an nba error, check that it changed nothing."""
        states = {k: m.to_bytes() for k, m in self.models.items()}
        try:
            res = fn(*args, **kwargs)
        except nba.NbaError as e:
            event(f"{name} raised {type(e).__name__}")
            assert self.log.last_seq == self.seq, f"{name} raised but wrote a record"
            assert {k: m.to_bytes() for k, m in self.models.items()} == states, f"{name} raised but learned"
            return False, None
        event(f"{name} returned")
        assert self.log.last_seq == self.seq + 1, f"{name} returned but wrote {self.log.last_seq - self.seq} records"
        self.seq = self.log.last_seq
        return True, res

    @rule(
        which=st.sampled_from(["beta", "linucb"]),
        unit=st.one_of(st.text(max_size=8), st.integers(-(2**63), 2**63 - 1), st.none()),
        age=st.one_of(st.floats(-1e3, 1e3), st.none()),
        segment=st.sampled_from(["student", "family", "senior", "other", None, "fam\u00efly"]),
        mobile=st.booleans(),
        channel=st.sampled_from([None, "web", "app", "email"]),
        event_id=st.one_of(st.none(), st.uuids().map(str)),
        defer=st.booleans(),
        now=st.one_of(st.none(), st.floats(0.0, 4.0e9)),
        n=st.sampled_from([1, 2]),
        # at most one argument replaced by a hostile value (in a third of the calls)
        hostile=st.integers(0, 2),
        bad=st.one_of(
            st.tuples(st.just("unit"), units),
            st.tuples(st.just("age"), ages),
            st.tuples(st.just("segment"), segments),
            st.tuples(st.just("mobile"), st.sampled_from([None, 1, "yes", math.nan])),
            st.tuples(st.just("channel"), channels),
            st.tuples(st.just("event_id"), st.one_of(hostile_text, st.integers())),
            st.tuples(st.just("defer"), st.sampled_from([1, 0, None, "yes"])),
            st.tuples(st.just("now"), hostile_number),
            st.tuples(st.just("n"), st.sampled_from([0, -1, True, 1.0, "2"])),
        ),
    )
    def decide(self, which, unit, age, segment, mobile, channel, event_id, defer, now, n, hostile, bad) -> None:
        if hostile == 0:
            name, value = bad
            loc = locals()
            loc[name] = value
            unit, age, segment, mobile, channel, event_id, defer, now, n = (
                loc[k] for k in ("unit", "age", "segment", "mobile", "channel", "event_id", "defer", "now", "n"))
        profile = {"id": unit, "age": age, "segment": segment}
        if isinstance(event_id, str) and event_id in self.event_ids:
            event_id = None  # a repeated id is the caller's replay, not a hostile input
        ok, d = self._call("decide", self.deciders[which].decide, profile, {"mobile": mobile}, channel=channel,
                           event_id=event_id, defer=defer, now=now, n=n)
        if not ok:
            return
        assert isinstance(d, nba.Decision)
        assert d.arm in d.actions and math.isclose(sum(d.pmf), 1.0, rel_tol=1e-9)
        assert d.probability == d.pmf[d.actions.index(d.arm)] > 0
        self.event_ids.append(d.event_id)
        if d.deferred:
            self.deferred.append(d.event_id)
        logged_unit = int(unit) if isinstance(unit, np.integer) else unit
        self.expected.append(("decision", d.event_id, d.timestamp, logged_unit, d.channel, d.arm, d.probability,
                              d.pmf, d.deferred))

    @precondition(lambda self: self.event_ids)
    @rule(which=st.sampled_from(["beta", "linucb"]), pick=st.integers(0, 10**6),
          value=st.one_of(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0, 5.0, -1.0, 2]), hostile_number),
          at=st.one_of(st.none(), st.none(), timestamps))
    def reward_known(self, which, pick, value, at) -> None:
        eid = self.event_ids[pick % len(self.event_ids)]
        if self._call("reward", self.deciders[which].reward, eid, value, now=at)[0]:
            self.expected.append(("outcome", eid, _ts(at), float(value)))

    @rule(eid=st.one_of(hostile_text, st.integers(), st.none(), st.just("never-made")),
          value=st.one_of(st.floats(0.0, 1.0), hostile_number))
    def reward_unknown(self, eid, value) -> None:
        if self._call("reward", self.deciders["beta"].reward, eid, value)[0]:
            self.expected.append(("outcome", eid, None, float(value)))

    @precondition(lambda self: self.deferred)
    @rule(which=st.sampled_from(["beta", "linucb"]), pick=st.integers(0, 10**6), at=timestamps)
    def activate(self, which, pick, at) -> None:
        eid = self.deferred[pick % len(self.deferred)]
        if self._call("activate", self.deciders[which].activate, eid, now=at)[0]:
            self.expected.append(("activation", eid, _ts(at)))

    @rule(
        event_id=st.one_of(st.uuids().map(str), hostile_text, st.integers()),
        actions=st.one_of(st.just(["a", "b", "c"]), st.sampled_from([["a", "a"], [], ["a", 1], ["\ud800"], "abc"])),
        pmf=st.one_of(st.just([0.5, 0.25, 0.25]), st.sampled_from([[0.5, 0.2, 0.0], [1.0, math.nan, 0.0],
                                                                   [1.5, -0.5, 0.0], [1.0], "x"])),
        chosen=st.one_of(st.just([1]), st.sampled_from([[7], [], [-1], [1.0], [True], [0, 0], None])),
        features=st.one_of(st.just({"User": {"age": 3.0}}), st.sampled_from([{"_User": {"a": 1}}, {"User": {"_a": 1}},
                                                                           {"User": {"a": "\ud800"}}, {"U": object()}])),
        unit=st.one_of(st.none(), st.text(max_size=4)), ts=st.one_of(st.none(), st.floats(0, 4e9), hostile_number),
        hostile=st.integers(0, 1),
    )
    def append_decision(self, event_id, actions, pmf, chosen, features, unit, ts, hostile) -> None:
        if not hostile:  # a well-formed record, but for the id
            actions, pmf, chosen, features, ts = ["a", "b", "c"], [0.5, 0.25, 0.25], [1], {"User": {"age": 3.0}}, 10.0
        ok, _ = self._call("append_decision", self.log.append_decision, event_id, actions=actions, pmf=pmf,
                           chosen=chosen, features=features, unit=unit, now=ts)
        if ok:
            self.expected.append(("decision", event_id, _ts(ts), unit, None, actions[chosen[0]], pmf[chosen[0]],
                                  tuple(pmf), False))

    @rule(event_id=st.one_of(st.uuids().map(str), hostile_text, st.integers()),
          value=st.one_of(st.floats(-5, 5), hostile_number), ts=st.one_of(st.none(), st.floats(0, 4e9), hostile_number))
    def append_outcome(self, event_id, value, ts) -> None:
        if self._call("append_outcome", self.log.append_outcome, event_id, value, now=ts)[0]:
            self.expected.append(("outcome", event_id, _ts(ts), float(value)))

    @invariant()
    def models_stay_finite(self) -> None:
        x = SCHEMA.vectorize({"age": 30.0, "segment": "family"}, {"mobile": True})
        assert np.isfinite(self.models["linucb"].score(x)).all()
        assert np.isfinite(self.models["beta"].score(None, event_id="probe", seed=0)).all()


def _ts(at: object) -> float | None:
    return None if at is None else float(at)  # type: ignore[arg-type]


def _key(r: DecisionRecord | OutcomeRecord | ActivationRecord) -> tuple:
    if isinstance(r, DecisionRecord):
        return ("decision", r.event_id, r.ts, r.unit, r.channel, r.actions[r.chosen[0]], r.probability,
                tuple(r.pmf), r.deferred)
    if isinstance(r, OutcomeRecord):
        return ("outcome", r.event_id, r.ts, r.value)
    return ("activation", r.event_id, r.ts)


DeciderMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestDeciderFuzz = DeciderMachine.TestCase
