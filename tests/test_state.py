"""One suite, two backends: EmbeddedState and RedisState behave the same through the Decider.

Every test but the last runs once per backend (``make_state``: a fresh ``EmbeddedState``,
or a ``RedisState`` on a namespace of its own in the session's real redis-server) and
asserts only what the Decider's public API shows: what its learners learned
(``updates``, ``alpha``/``beta``/``pulls``, ``theta``), the errors it raises, and its log
(``nba.log.read_records`` / ``nba.log.join``). The last test (a Hypothesis property)
runs one random sequence of operations on both backends side by side.

The clock. Decisions, activations and rewards take ``now=`` on a virtual clock ``T0``,
10^7 s in the future, so nothing a backend does on the real clock (RedisState's
background claims at ``time.time()``, ``Decider.flush``'s expiry at ``time.time()``)
can close one of these windows: a window closes when the test says so, with
``close_windows(dec, state, now)``: the backend's ``expire(now)`` (what
``Decider.flush`` runs at ``time.time()``, and RedisState's claimer in the background),
then ``dec.flush()``. ``Decider.flush`` takes no ``now=`` (see the report); a test of
the real-clock path uses decisions in the past instead. RedisState is asynchronous:
``dec.flush()`` writes its queue and applies every lesson learned so far, so every
assertion on a learner follows one.
"""

from __future__ import annotations

import atexit
import itertools
import math
import secrets
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nba
from nba.decider import LearnWarning
from nba.errors import ConfigError
from nba.log import ActivationRecord, DecisionRecord, OutcomeRecord, join, read_records
from nba.state import DecisionState, EmbeddedState, RedisState, StateWarning
from tests import redis_server

T0 = math.floor(time.time()) + 10_000_000.0
W = 100.0  # the reward window of every Decider here, seconds

SCHEMA = nba.FeatureSchema(
    [nba.Numeric("age"), nba.Numeric("tenure"), nba.Numeric("hour", source="context")]
)
D = SCHEMA.n_columns
N_ARMS = 4
# Every arm wants an adult: a minor gets the fallback (a decision no model learns from).
ARMS = [nba.Arm(f"offer{i}", eligibility="age >= 18") for i in range(N_ARMS)]
CTX = {"hour": 9.0}
MINOR = {"id": "kid", "age": 12.0, "tenure": 0.0}


def adult(i: int) -> dict[str, Any]:
    return {"id": f"u{i}", "age": 18.0 + i % 47, "tenure": (i % 5) / 4}


LEARNERS: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
    "beta": (lambda: nba.BetaThompson(N_ARMS), nba.Thompson),
    "ucb1": (lambda: nba.UCB1(N_ARMS), nba.UCB),
    "linucb": (lambda: nba.LinUCB(N_ARMS, D, alpha=0.5), nba.UCB),
    "linthompson": (lambda: nba.LinearThompson(N_ARMS, D, v=0.3), nba.Thompson),
}


def decider(state: DecisionState, learner: Any, *, log: nba.DecisionLog | None = None, policy: Any = None,
            **kw: Any) -> nba.Decider:
    return nba.Decider(ARMS, learner, schema=SCHEMA, policy=policy if policy is not None else nba.Thompson(),
                       arbitration="score", fallback="offer0", reward_window=W, log=log, seed=11, state=state, **kw)


def close_windows(dec: nba.Decider, state: DecisionState, now: float) -> None:
    """Close every reward window that ended before ``now`` (virtual clock), then sync."""
    state.expire(now)
    dec.flush()


def arm_index(d: nba.Decision) -> int:
    return int(d.arm[len("offer"):])


# --------------------------------------------------------------------------- backends

_SERVER: redis_server.RedisServer | None = None


def shared_server() -> redis_server.RedisServer:
    """The session's redis-server (test_state_processes.py uses it too): started once, stopped at exit."""
    global _SERVER
    if _SERVER is None:
        _SERVER = redis_server.RedisServer().start()
        atexit.register(_SERVER.close)
    return _SERVER


@pytest.fixture(scope="session")
def redis_url() -> str:
    if not redis_server.available():
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return shared_server().url


def namespace() -> str:
    return "t-" + secrets.token_hex(6)


class StateFactory:
    """``make()`` returns a fresh backend of this kind (RedisState: on a namespace of its own)."""

    def __init__(self, kind: str, url: str | None) -> None:
        self.kind = kind
        self.url = url
        self.made: list[DecisionState] = []

    def __call__(self, **redis_kw: Any) -> DecisionState:
        s: DecisionState
        if self.kind == "embedded":
            s = EmbeddedState()
        else:
            # A short grace: an unknown id is looked for 10 ms (no other process could write it here).
            s = RedisState(self.url, namespace=namespace(), **{"grace": 0.01, **redis_kw})
        self.made.append(s)
        return s


@pytest.fixture(params=["embedded", "redis"])
def make_state(request: pytest.FixtureRequest) -> Iterator[StateFactory]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    f = StateFactory(request.param, url)
    yield f
    for s in f.made:
        s.close()


# --------------------------------------------------------------------------- replay of a log


def replay(log_dir: Path, learner: Any, *, aggregate: str, default_reward: float) -> int:
    """Teach ``learner`` what ``nba.log.join`` says each learnable decision earned; the number taught."""
    n = 0
    for ex in join(log_dir, reward_window=W, default_reward=default_reward, aggregate=aggregate):
        rec = ex.decision
        if rec.fallback:
            continue
        arm = ARMS.index(next(a for a in ARMS if a.id == rec.actions[rec.chosen[0]]))
        learner.update(arm, np.asarray(rec.x, dtype=np.float64) if learner.n_features else None, ex.reward)
        n += 1
    return n


def assert_same_learner(got: Any, want: Any, *, rtol: float = 0.0) -> None:
    """Same updates and counts; the same floats (exactly, or within ``rtol`` of the largest entry)."""
    assert got.updates == want.updates
    np.testing.assert_array_equal(got.pulls, want.pulls)
    if isinstance(want, nba.BetaThompson):
        np.testing.assert_array_equal(got.alpha, want.alpha)
        np.testing.assert_array_equal(got.beta, want.beta)
    elif isinstance(want, nba.UCB1):
        np.testing.assert_array_equal(got.means(), want.means())
    else:
        scale = max(1.0, float(np.abs(want.theta).max()))
        np.testing.assert_allclose(got.theta, want.theta, rtol=0, atol=rtol * scale)


def outcomes(log_dir: Path) -> list[tuple[str, float, float]]:
    return [(r.event_id, r.value, r.ts) for r in read_records(log_dir) if isinstance(r, OutcomeRecord)]


def activations(log_dir: Path) -> list[tuple[str, float]]:
    return [(r.event_id, r.ts) for r in read_records(log_dir) if isinstance(r, ActivationRecord)]


# --------------------------------------------------------------------------- aggregate "first"


def test_first_reward_is_learned_at_once_and_only_once(make_state, tmp_path) -> None:
    state, bandit = make_state(), nba.BetaThompson(N_ARMS)
    with decider(state, bandit, log=nba.DecisionLog(tmp_path)) as dec:
        d = dec.decide(adult(1), CTX, event_id="e1", now=T0)
        i = arm_index(d)
        dec.reward("e1", 1.0, now=T0 + 1)
        dec.reward("e1", 0.0, now=T0 + 2)  # a later reward of the same decision teaches nothing
        dec.flush()
        assert bandit.updates == 1 and bandit.pulls[i] == 1
        assert bandit.alpha[i] == 2.0 and bandit.beta[i] == 1.0
        close_windows(dec, state, T0 + W + 1)
        assert bandit.updates == 1  # rewarded: no default when the window closes
        close_windows(dec, state, T0 + 10 * W)
        assert bandit.updates == 1
    assert outcomes(tmp_path) == [("e1", 1.0, T0 + 1), ("e1", 0.0, T0 + 2)]  # both logged


def test_many_rewards_each_learned_exactly_once_while_syncing(make_state) -> None:
    """A lesson the state's background reader and ``sync()`` read at the same time is learned once."""
    state, bandit = make_state(), nba.BetaThompson(N_ARMS)
    rng = np.random.default_rng(3)
    clicks = rng.random(300) < 0.4
    with decider(state, bandit) as dec:
        for k, click in enumerate(clicks):
            d = dec.decide(adult(k), CTX, event_id=f"e{k}", now=T0 + k * 0.01)
            dec.reward(d.event_id, float(click), now=T0 + k * 0.01 + 0.005)
            state.sync()  # at once: RedisState's reader thread is applying the same lesson
        dec.flush()
        assert bandit.updates == 300 and bandit.pulls.sum() == 300
        assert bandit.alpha.sum() - N_ARMS == clicks.sum()
        assert bandit.beta.sum() - N_ARMS == 300 - clicks.sum()


# --------------------------------------------------------------------------- aggregate "sum"


@pytest.mark.parametrize("kind", ["beta", "linucb"])
def test_sum_is_learned_once_when_the_window_closes(make_state, kind) -> None:
    state, learner = make_state(), LEARNERS[kind][0]()
    with decider(state, learner, aggregate="sum", policy=LEARNERS[kind][1]()) as dec:
        d = dec.decide(adult(1), CTX, event_id="e1", now=T0)
        i = arm_index(d)
        dec.reward("e1", 0.25, now=T0 + 1)
        dec.reward("e1", 0.5, now=T0 + W)  # the window's last instant still counts
        close_windows(dec, state, T0 + W)  # not closed yet: it ends at T0 + W
        assert learner.updates == 0
        close_windows(dec, state, T0 + W + 0.5)
        close_windows(dec, state, T0 + 2 * W)  # closed once, taught once
    ref = LEARNERS[kind][0]()
    ref.update(i, SCHEMA.vectorize(adult(1), CTX), 0.75)
    assert_same_learner(learner, ref)  # exactly: one update with the same x and sum


def test_a_sum_beyond_the_model_range_raises_schema_error_and_changes_nothing(make_state, tmp_path) -> None:
    state, bandit = make_state(), nba.BetaThompson(N_ARMS)
    with decider(state, bandit, aggregate="sum", log=nba.DecisionLog(tmp_path)) as dec:
        d = dec.decide(adult(1), CTX, event_id="e1", now=T0)
        dec.reward("e1", 0.75, now=T0 + 1)
        with pytest.raises(nba.SchemaError):
            dec.reward("e1", 0.5, now=T0 + 2)  # 1.25 > 1: a Beta-Bernoulli model cannot learn it
        dec.reward("e1", 0.25, now=T0 + 3)  # the sum is still 0.75, so 1.0 is fine
        close_windows(dec, state, T0 + W + 1)
        i = arm_index(d)
        assert bandit.updates == 1 and bandit.alpha[i] == 2.0 and bandit.beta[i] == 1.0
    assert outcomes(tmp_path) == [("e1", 0.75, T0 + 1), ("e1", 0.25, T0 + 3)]


def test_variant_models_check_the_sum_against_their_own_reward_range(make_state) -> None:
    """A UCB1 variant learns sums outside [0, 1] beside a Beta-Bernoulli default model."""
    exp = nba.Experiment("m", variants=["beta", "ucb"], overrides={"ucb": {"model": "ucb"}},
                         forced={"u-ucb": "ucb", "u-beta": "beta"})
    state, bandit, ucb = make_state(), nba.BetaThompson(N_ARMS), nba.UCB1(N_ARMS)
    # A policy for both kinds of model (nba.UCB and nba.Thompson each choose for their kind only).
    with decider(state, bandit, aggregate="sum", models={"ucb": ucb}, policy=nba.EpsilonGreedy(0.2),
                 experiments=[exp]) as dec:
        du = dec.decide({**adult(1), "id": "u-ucb"}, CTX, event_id="eu", now=T0)
        db = dec.decide({**adult(2), "id": "u-beta"}, CTX, event_id="eb", now=T0)
        for k, v in enumerate((2.0, 3.0)):
            dec.reward("eu", v, now=T0 + 1 + k)
        with pytest.raises(nba.SchemaError):
            dec.reward("eb", 2.0, now=T0 + 1)
        dec.reward("eb", 0.5, now=T0 + 2)
        close_windows(dec, state, T0 + W + 1)
    assert ucb.updates == 1 and ucb.pulls[arm_index(du)] == 1 and ucb.means()[arm_index(du)] == 5.0
    assert bandit.updates == 1 and bandit.alpha[arm_index(db)] == 1.5


# --------------------------------------------------------------------------- the reward window


@pytest.mark.parametrize("aggregate", ["first", "sum"])
def test_rewards_outside_the_window_are_not_counted(make_state, tmp_path, aggregate) -> None:
    state, bandit = make_state(), nba.BetaThompson(N_ARMS)
    with decider(state, bandit, aggregate=aggregate, default_reward=0.0, log=nba.DecisionLog(tmp_path)) as dec:
        d1 = dec.decide(adult(1), CTX, event_id="e1", now=T0)
        d2 = dec.decide(adult(2), CTX, event_id="e2", now=T0)
        dec.reward("e1", 1.0, now=T0 - 1)  # before the decision
        dec.reward("e2", 1.0, now=T0 + W)  # the last instant: counts
        dec.reward("e1", 1.0, now=T0 + W + 0.5)  # after the window
        close_windows(dec, state, T0 + W + 1)
        i1, i2 = arm_index(d1), arm_index(d2)
    assert bandit.updates == 2
    want_alpha = np.ones(N_ARMS)
    want_alpha[i2] += 1.0  # e2 learned 1.0; e1 its default, 0.0
    want_beta = np.ones(N_ARMS)
    want_beta[i1] += 1.0
    np.testing.assert_array_equal(bandit.alpha, want_alpha)
    np.testing.assert_array_equal(bandit.beta, want_beta)
    assert len(outcomes(tmp_path)) == 3  # all logged
    joined = {ex.decision.event_id: (ex.observed, ex.reward) for ex in join(tmp_path, reward_window=W)}
    assert joined == {"e1": (False, 0.0), "e2": (True, 1.0)}  # the log's join agrees


def test_the_default_reward_is_taught_exactly_once_per_expired_decision(make_state) -> None:
    state, bandit = make_state(), nba.BetaThompson(N_ARMS)
    with decider(state, bandit, default_reward=0.25) as dec:
        arms = [arm_index(dec.decide(adult(k), CTX, event_id=f"e{k}", now=T0 + k)) for k in range(30)]
        dec.flush()  # the real clock closes none of them
        assert bandit.updates == 0
        close_windows(dec, state, T0 + W + 10.5)  # windows of e0..e10 ended
        assert bandit.updates == 11
        for _ in range(3):  # closing again teaches nothing again
            close_windows(dec, state, T0 + W + 10.5)
            dec.flush()
        assert bandit.updates == 11
        close_windows(dec, state, T0 + 5 * W)
        close_windows(dec, state, T0 + 6 * W)
    assert bandit.updates == 30
    np.testing.assert_array_equal(bandit.pulls, np.bincount(arms, minlength=N_ARMS))
    np.testing.assert_array_equal(bandit.alpha, 1.0 + 0.25 * bandit.pulls)
    np.testing.assert_array_equal(bandit.beta, 1.0 + 0.75 * bandit.pulls)


def test_forgotten_decisions_teach_nothing_and_leave_nothing(make_state, tmp_path) -> None:
    state, bandit = make_state(), nba.LinUCB(N_ARMS, D, alpha=0.5)
    log = nba.DecisionLog(tmp_path)
    with decider(state, bandit, log=log, default_reward=0.25, policy=nba.UCB()) as dec:
        for k in range(20):
            eid = f"subj-ev-{k}" if k % 4 == 0 else f"e{k}"
            dec.decide({**adult(k), "id": "subject-5e" if k % 4 == 0 else f"u{k}"}, CTX, event_id=eid, now=T0 + k)
        deferred = dec.decide({**adult(99), "id": "subject-5e"}, CTX, event_id="d99", defer=True, now=T0 + 30)
        dec.flush()
        gone = dec.forget("subject-5e")
        assert gone.ids == ("subject-5e",) and gone.log is not None and gone.log.removed == 6
        assert state.forget([f"subj-ev-{k}" for k in range(0, 20, 4)]) == 0  # already gone
        close_windows(dec, state, T0 + 5 * W)
        with pytest.raises(nba.UnknownEventError):
            dec.activate(deferred.event_id, now=T0 + 31)
    assert bandit.updates == 15  # the 15 others taught their default reward; the subject's 5 nothing
    if isinstance(state, RedisState):
        import redis

        client = redis.Redis.from_url(make_state.url)
        blob = b"".join(k + (client.dump(k) or b"") for k in client.scan_iter(f"{{{state.namespace}}}*"))
        assert b"subj-ev-" not in blob and b"d99" not in blob and b"e1" in blob
        client.close()


def test_flush_teaches_windows_the_real_clock_has_closed(make_state) -> None:
    """``Decider.flush()`` (no virtual clock) closes every window that ended before ``time.time()``,
    including those of decisions made just before it (RedisState: still in its queue)."""
    state, bandit = make_state(flush_interval=30.0), nba.BetaThompson(N_ARMS)  # a queue written only on demand
    past = time.time() - 10 * W
    with decider(state, bandit, default_reward=1.0) as dec:
        for k in range(20):
            dec.decide(adult(k), CTX, now=past + k)
            dec.flush()
            assert bandit.updates == k + 1
    assert bandit.alpha.sum() == N_ARMS + 20


# --------------------------------------------------------------------------- deferred and fallback decisions


def test_deferred_decisions_count_from_their_activation(make_state, tmp_path) -> None:
    state, bandit = make_state(), nba.BetaThompson(N_ARMS)
    with decider(state, bandit, default_reward=0.0, log=nba.DecisionLog(tmp_path)) as dec:
        d1 = dec.decide(adult(1), CTX, event_id="d1", defer=True, now=T0)
        dec.decide(adult(2), CTX, event_id="d2", defer=True, now=T0)  # never shown
        d3 = dec.decide(adult(3), CTX, event_id="d3", defer=True, now=T0)
        dec.reward("d1", 1.0, now=T0 + 1)  # not shown yet: not counted
        dec.reward("d2", 1.0, now=T0 + 1)
        dec.activate("d1", now=T0 + 5)
        dec.reward("d1", 1.0, now=T0 + 6)  # counted, at once
        dec.activate("d3", now=T0 + 50)  # its window: [T0 + 50, T0 + 150]
        dec.flush()
        assert bandit.updates == 1 and bandit.alpha[arm_index(d1)] == 2.0
        close_windows(dec, state, T0 + W + 1)  # d2's window closed unshown: it teaches nothing
        assert bandit.updates == 1
        with pytest.raises(nba.UnknownEventError):
            dec.activate("d2", now=T0 + W + 2)  # too late
        with pytest.raises(nba.UnknownEventError):
            dec.activate("never-made", now=T0 + W + 2)
        close_windows(dec, state, T0 + 50 + W + 1)  # d3: shown, no reward: its default
        assert bandit.updates == 2 and bandit.beta[arm_index(d3)] == 2.0
    assert activations(tmp_path) == [("d1", T0 + 5), ("d3", T0 + 50)]  # nothing logged for the refused ones
    assert [o[0] for o in outcomes(tmp_path)] == ["d1", "d2", "d1"]


def test_activating_again_restarts_the_window(make_state) -> None:
    state, bandit = make_state(), nba.BetaThompson(N_ARMS)
    with decider(state, bandit, default_reward=0.0) as dec:
        d = dec.decide(adult(1), CTX, event_id="d", defer=True, now=T0)
        dec.activate("d", now=T0 + 10)
        dec.activate("d", now=T0 + 60)  # shown again: the window is [T0 + 60, T0 + 160]
        dec.reward("d", 1.0, now=T0 + 130)
        close_windows(dec, state, T0 + 10 * W)
    assert bandit.updates == 1 and bandit.alpha[arm_index(d)] == 2.0


def test_a_deferred_decision_no_model_learns_from_is_activated_once(make_state, tmp_path) -> None:
    """A fallback (no arm eligible) made with defer=True: activated once, then unknown."""
    state, bandit = make_state(), nba.BetaThompson(N_ARMS)
    with decider(state, bandit, log=nba.DecisionLog(tmp_path)) as dec:
        d = dec.decide(MINOR, CTX, event_id="f", defer=True, now=T0)
        assert d.fallback and d.deferred and d.arm == "offer0"
        dec.activate("f", now=T0 + 1)
        with pytest.raises(nba.UnknownEventError):
            dec.activate("f", now=T0 + 2)
        dec.reward("f", 1.0, now=T0 + 3)
        close_windows(dec, state, T0 + 10 * W)
    assert bandit.updates == 0
    assert activations(tmp_path) == [("f", T0 + 1)]
    [ex] = join(tmp_path, reward_window=W)
    assert ex.decision.fallback and ex.observed and ex.reward == 1.0  # logged and joined, never learned


def test_an_activation_that_cannot_be_logged_changes_nothing(make_state, tmp_path) -> None:
    state, bandit, log = make_state(), nba.BetaThompson(N_ARMS), nba.DecisionLog(tmp_path)
    with decider(state, bandit, log=log) as dec:
        dec.decide(adult(1), CTX, event_id="d", defer=True, now=T0)
        log.close()  # every later record is refused (LogError)
        with pytest.raises(nba.LogError):
            dec.activate("d", now=T0 + 1)
        state.expire(T0 + 10 * W)  # Decider.flush would flush the closed log too
        state.sync()
        assert bandit.updates == 0  # never shown: its window closed teaching nothing


def test_fallback_decisions_teach_nothing(make_state, tmp_path) -> None:
    state, bandit = make_state(), nba.BetaThompson(N_ARMS)
    with decider(state, bandit, default_reward=0.5, log=nba.DecisionLog(tmp_path)) as dec:
        for k in range(5):
            d = dec.decide(MINOR, CTX, event_id=f"f{k}", now=T0)
            assert d.fallback
            dec.reward(f"f{k}", 1.0, now=T0 + 1)
        with pytest.raises(nba.UnknownEventError):
            dec.activate("f0", now=T0 + 2)  # not deferred
        close_windows(dec, state, T0 + 10 * W)
    assert bandit.updates == 0
    assert len(outcomes(tmp_path)) == 5 and activations(tmp_path) == []


# --------------------------------------------------------------------------- refused rewards


def test_unlearnable_rewards_raise_schema_error_and_change_nothing(make_state, tmp_path) -> None:
    state, bandit, lin = make_state(), nba.BetaThompson(N_ARMS), nba.LinUCB(N_ARMS, D)
    exp = nba.Experiment("m", variants=["beta", "lin"], overrides={"lin": {"model": "lin"}},
                         forced={"u-lin": "lin", "u-beta": "beta"})
    with decider(state, bandit, models={"lin": lin}, policy=nba.EpsilonGreedy(0.2), experiments=[exp],
                 log=nba.DecisionLog(tmp_path)) as dec:
        db = dec.decide({**adult(1), "id": "u-beta"}, CTX, event_id="eb", now=T0)
        dl = dec.decide({**adult(2), "id": "u-lin"}, CTX, event_id="el", now=T0)
        for v in (5.0, -0.5, 1.5):
            with pytest.raises(nba.SchemaError):
                dec.reward("eb", v, now=T0 + 1)
        with pytest.raises(nba.SchemaError):
            dec.reward("el", 2e6, now=T0 + 1)  # beyond LinUCB's |reward| <= 1e6
        with pytest.raises(nba.SchemaError):
            dec.reward("eb", float("nan"), now=T0 + 1)
        dec.flush()
        assert bandit.updates == 0 and lin.updates == 0 and outcomes(tmp_path) == []  # nothing changed
        dec.reward("unknown-id", 5.0, now=T0 + 1)  # no model to check it against: logged only
        dec.reward("eb", 1.0, now=T0 + 2)
        dec.reward("el", -3.0, now=T0 + 2)
        dec.reward("eb", 5.0, now=T0 + 3)  # already rewarded ("first"): not checked, logged, not learned
        close_windows(dec, state, T0 + 10 * W)
    assert bandit.updates == 1 and bandit.alpha[arm_index(db)] == 2.0
    ref = nba.LinUCB(N_ARMS, D)
    ref.update(arm_index(dl), SCHEMA.vectorize(adult(2), CTX), -3.0)
    assert_same_learner(lin, ref)
    assert [(o[0], o[1]) for o in outcomes(tmp_path)] == [("unknown-id", 5.0), ("eb", 1.0), ("el", -3.0), ("eb", 5.0)]


# --------------------------------------------------------------------------- every learner, its policy


def _run_traffic(dec: nba.Decider, state: DecisionState, kind: str, n: int, seed: int) -> None:
    """n decisions with a learner's policy: some deferred (half of them shown), clicks, late and missing rewards."""
    rng = np.random.default_rng(seed)
    values = [0.0, 0.25, 0.5, 1.0] if kind == "beta" else [-1.5, 0.0, 0.5, 2.0, 3.25]
    t = T0
    for k in range(n):
        t += 1.0 + float(rng.integers(0, 8))
        defer = rng.random() < 0.25
        d = dec.decide(adult(int(rng.integers(0, 1000))), CTX, event_id=f"e{k}", defer=defer, now=t)
        start = t
        if defer and rng.random() < 0.5:
            start = t + 0.5
            dec.activate(d.event_id, now=start)
        # A decision's rewards in time order: a late one closes EmbeddedState's window on arrival (it
        # closes windows at each call's clock), so an earlier one arriving after it would not count there.
        whens = sorted(start + (W + 1.0 + 5 * rng.random() if rng.random() < 0.2 else W * rng.random() * 0.9)
                       for _ in range(int(rng.integers(0, 3))))
        for when in whens:
            v = float(rng.choice(values))
            try:
                dec.reward(d.event_id, v, now=when)
            except nba.SchemaError:  # a sum beyond [0, 1]: refused, nothing logged
                pass
        if k % 10 == 9:
            close_windows(dec, state, t - W / 2)  # some windows close while traffic goes on
    close_windows(dec, state, t + 10 * W)


@pytest.mark.parametrize("aggregate", ["first", "sum"])
@pytest.mark.parametrize("kind", sorted(LEARNERS))
def test_every_learner_learns_what_a_replay_of_its_log_teaches(make_state, tmp_path, kind, aggregate) -> None:
    make, policy = LEARNERS[kind]
    state, learner = make_state(), make()
    with decider(state, learner, policy=policy(), aggregate=aggregate, default_reward=0.25,
                 log=nba.DecisionLog(tmp_path)) as dec:
        _run_traffic(dec, state, kind, 80, seed=len(kind) * 7 + len(aggregate))
    ref = make()
    taught = replay(tmp_path, ref, aggregate=aggregate, default_reward=0.25)
    assert taught > 40 and learner.updates == taught
    assert_same_learner(learner, ref, rtol=1e-9)  # linear models: the same updates in another order


# --------------------------------------------------------------------------- both backends side by side

_OP = st.one_of(
    st.tuples(st.just("decide"), st.booleans(), st.booleans()),  # (defer, a minor: the fallback)
    st.tuples(st.just("activate"), st.integers(0, 63)),
    st.tuples(st.just("activate_unknown"), st.integers(0, 3)),
    st.tuples(st.just("reward"), st.integers(0, 63), st.sampled_from([0.0, 0.25, 0.5, 1.0, 5.0])),
    st.tuples(st.just("reward_unknown"), st.sampled_from([0.5, 5.0])),
    st.tuples(st.just("wait"), st.sampled_from([1.0, 30.0, 60.0, 150.0])),
    st.tuples(st.just("expire")),
)

_runs = itertools.count()


def _drive(ops: list[tuple], kind: str, aggregate: str, default: float, url: str, root: Path) -> None:
    """Apply ``ops`` to an EmbeddedState Decider and a RedisState one; compare what each shows."""
    made = {"embedded": EmbeddedState(), "redis": RedisState(url, namespace=namespace(), grace=0.005)}
    learners = {b: LEARNERS[kind][0]() for b in made}
    logs = {b: root / f"{next(_runs)}-{b}" for b in made}
    # Exploration 1.0: each choice depends on the event id only, not on what was learned by then,
    # so both backends choose the same arms and their learners can be compared exactly.
    decs = {b: decider(made[b], learners[b], policy=nba.EpsilonGreedy(1.0), aggregate=aggregate,
                       default_reward=default, log=nba.DecisionLog(logs[b])) for b in made}
    results: dict[str, list[str]] = {b: [] for b in made}
    made_at: list[tuple[float, bool]] = []  # per decision: its time, deferred
    shown: set[int] = set()
    t = T0
    try:
        for op in ops:
            t += 0.001  # every operation at its own instant
            kind_ = op[0]
            if kind_ == "wait":
                t += op[1]
                continue
            if kind_ == "activate":
                if not made_at:
                    continue
                k = op[1] % len(made_at)
                ts, deferred = made_at[k]
                # Shown once, while its window (from the decision) is open: beyond that, when a window
                # closes differs by design (EmbeddedState closes them on any call, RedisState on claims).
                if not deferred or k in shown or t > ts + W:
                    continue
                shown.add(k)
            for b, dec in decs.items():
                try:
                    if kind_ == "decide":
                        dec.decide(MINOR if op[2] else adult(len(made_at)), CTX, event_id=f"e{len(made_at)}",
                                   defer=op[1], now=t)
                    elif kind_ == "activate":
                        dec.activate(f"e{op[1] % len(made_at)}", now=t)
                    elif kind_ == "activate_unknown":
                        dec.activate(f"nope{op[1]}", now=t)
                    elif kind_ == "reward":
                        if made_at:
                            dec.reward(f"e{op[1] % len(made_at)}", op[2], now=t)
                    elif kind_ == "reward_unknown":
                        dec.reward("nope", op[1], now=t)
                    else:
                        close_windows(dec, made[b], t)
                    results[b].append("ok")
                except nba.NbaError as e:
                    results[b].append(type(e).__name__)
            if kind_ == "decide":
                made_at.append((t, op[1]))
        for b, dec in decs.items():
            close_windows(dec, made[b], t + 10 * W)
    finally:
        for dec in decs.values():
            dec.close()
    assert results["embedded"] == results["redis"]
    exact = kind == "beta"
    assert_same_learner(learners["redis"], learners["embedded"], rtol=0.0 if exact else 1e-9)
    for b in made:
        ref = LEARNERS[kind][0]()
        assert replay(logs[b], ref, aggregate=aggregate, default_reward=default) == learners[b].updates
        assert_same_learner(learners[b], ref, rtol=0.0 if exact else 1e-9)

    def log_of(b: str) -> list[tuple]:
        out = []
        for r in read_records(logs[b]):
            if isinstance(r, DecisionRecord):
                out.append(("d", r.event_id, r.ts, r.actions[r.chosen[0]], r.deferred, r.fallback))
            elif isinstance(r, (ActivationRecord, OutcomeRecord)):
                out.append((type(r).__name__, r.event_id, r.ts, getattr(r, "value", None)))
        return out

    assert log_of("embedded") == log_of("redis")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_OP, max_size=50), kind=st.sampled_from(["beta", "linucb"]),
       aggregate=st.sampled_from(["first", "sum"]), default=st.sampled_from([0.0, 0.5]))
def test_random_operations_show_the_same_on_both_backends_and_equal_a_replay(redis_url, ops, kind, aggregate,
                                                                              default) -> None:
    with tempfile.TemporaryDirectory() as root, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _drive(ops, kind, aggregate, default, redis_url, Path(root))
    assert [str(w.message) for w in caught if issubclass(w.category, (LearnWarning, StateWarning))] == []


# --------------------------------------------------------------------------- RedisState only


def test_redis_state_refuses_an_infinite_window(redis_url) -> None:
    state = RedisState(redis_url, namespace=namespace())
    with pytest.raises(ConfigError, match="finite reward_window"):
        nba.Decider(ARMS, nba.BetaThompson(N_ARMS), schema=SCHEMA, policy=nba.Thompson(), reward_window=math.inf,
                    state=state)


def test_writes_go_on_after_redis_lost_its_scripts(redis_url) -> None:
    """SCRIPT FLUSH (as after a restart): the writer loads the scripts again and writes the batch, no warning."""
    state = RedisState(redis_url, namespace=namespace(), flush_interval=60)
    dec = decider(state, nba.BetaThompson(N_ARMS))
    before = dec.decide(adult(1), CTX, now=T0).event_id
    dec.flush()
    state._client.script_flush()
    after = [dec.decide(adult(2), CTX, now=T0).event_id, dec.decide(adult(3), CTX, now=T0).event_id]
    d = dec.decide(adult(4), CTX, now=T0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StateWarning)
        dec.reward(d.event_id, 1.0, now=T0 + 1)  # a decision and its reward in one batch after the flush
    assert all(state._client.hexists(state._prefix + e, "a") for e in [before, *after, d.event_id])
    assert state.stats()["duplicate_ids"] == 0 and state.stats()["redis_errors"] == 0
    assert state._client.hget(state._prefix + d.event_id, "rw") == b"1"
    dec.close()


def test_a_reward_sent_twice_under_one_operation_id_counts_once(redis_url) -> None:
    """A pipeline re-sent after a lost reply repeats its operations: the reward script sees the id again."""
    state = RedisState(redis_url, namespace=namespace())
    dec = decider(state, nba.UCB1(N_ARMS), policy=nba.UCB(), aggregate="sum")
    d = dec.decide(adult(1), CTX, now=T0)
    state.sync()
    args = state._reward_args(0.5, T0 + 1, d.event_id, "op-1")  # white box: the script a retry re-sends
    keys = [state._prefix + d.event_id, state._due, state._lessons]
    assert [int(state._scripts["reward"](keys=keys, args=args)[0]) for _ in range(2)] == [2, 4]
    close_windows(dec, state, T0 + W + 1)
    learner = dec._state.learners["default"]
    assert learner.updates == 1 and learner.means()[arm_index(d)] == 0.5
    dec.close()


def test_decisions_queued_while_a_write_fails_are_kept_in_order(redis_url, monkeypatch) -> None:
    """The writer takes its batch out of the queue; a failed write puts it back in front of what came meanwhile."""
    state = RedisState(redis_url, namespace=namespace(), flush_interval=60)
    dec = decider(state, nba.BetaThompson(N_ARMS), max_pending=6)
    first = [dec.decide(adult(i), CTX, now=T0).event_id for i in range(3)]
    real = state._send
    later: list[str] = []

    def failing(*a: Any, **k: Any) -> Any:  # decide() runs during the write, then the write fails
        later.extend(dec.decide(adult(10 + i), CTX, now=T0).event_id for i in range(2))
        raise redis.ConnectionError("lost")

    monkeypatch.setattr(state, "_send", failing)
    with pytest.warns(StateWarning):
        state._write_outbox()
    monkeypatch.setattr(state, "_send", real)
    assert [op[1] for op in state._outbox] == first + later and state.stats()["dropped"] == 0
    state._write_outbox()
    assert state.stats()["queue"] == 0 and state.stats()["duplicate_ids"] == 0
    for eid in first + later:
        assert state._client.hexists(state._prefix + eid, "a")
    dec.close()
