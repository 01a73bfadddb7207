"""RedisState across real processes: workers started with ``fork`` and with ``spawn`` share one namespace.

Each worker is a ``multiprocessing`` process serving commands over a pipe: decide a
batch (then ``flush()``, so its queue is in Redis before it answers), activate or reward
the ids it is given, close windows, report its learners. The test process routes every
activation and reward to a random live worker, so almost every one reaches a process
other than the one that made the decision. With ``fork`` the workers are forked from
the test process after it built and used its Decider (gunicorn ``--preload``); with
``spawn`` each builds its own and joins the shared state.

Clock: as in test_state.py, decisions take ``now=`` on a virtual clock 10^7 s ahead, so
the real clock (the background claimers) never closes their windows: a window closes
when the test has a worker claim it (``state.expire(now)``, what ``flush`` does at
``time.time()``).

What is checked against the logs (``nba.log.join`` over the directory every process
writes, decisions of the Beta-Bernoulli default model and of a LinUCB variant,
``aggregate="sum"``, rewards of 0.25 or 0.5 so that every sum is exact):

- every decision and every activation is in the log, and every activation joins its
  deferred decision (its window starts there);
- every process's learners, after sync, equal a single-process replay of the joined
  log: Beta-Bernoulli alpha/beta/pulls exactly, LinUCB theta within 1e-9 relative, and
  ``updates`` is one per learnable decision: every reward learned once, every expired
  decision's default once, including those of a worker killed with SIGKILL after its
  decisions reached Redis and before their windows closed (another worker claims them);
- a process that joins at the end starts from the snapshots the others wrote.

The restart test kills Redis (SIGKILL, no persistence) mid-run, keeps it down while the
workers go on, and starts it again empty: see its docstring for what is lost.
"""

from __future__ import annotations

import faulthandler
import math
import multiprocessing as mp
import os
import random
import secrets
import signal
import time
import warnings
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nba
from nba.log import ActivationRecord, DecisionRecord, join, read_records
from nba.state import RedisState
from tests import redis_server

pytestmark = pytest.mark.skipif(not redis_server.available(), reason="redis-server is not installed")

T0 = math.floor(time.time()) + 10_000_000.0
W = 100.0
DEFAULT = 0.25
SCHEMA = nba.FeatureSchema([nba.Numeric("age"), nba.Numeric("tenure"), nba.Numeric("hour", source="context")])
D = SCHEMA.n_columns
N_ARMS = 4
ARMS = [nba.Arm(f"offer{i}", eligibility="age >= 18") for i in range(N_ARMS)]
CTX = {"hour": 9.0}
# Half the units learn with a LinUCB variant, half with the Beta-Bernoulli default.
EXP = nba.Experiment("m", variants=["beta", "lin"], overrides={"lin": {"model": "lin"}})
SNAPSHOT_EVERY = 40  # small: snapshots are written (and the stream trimmed) during the run


def build(url: str, ns: str, log_dir: str) -> tuple[nba.Decider, RedisState, dict[str, Any]]:
    beta, lin = nba.BetaThompson(N_ARMS), nba.LinUCB(N_ARMS, D, alpha=0.3)
    state = RedisState(url, namespace=ns, snapshot_every=SNAPSHOT_EVERY)
    dec = nba.Decider(ARMS, beta, schema=SCHEMA, models={"lin": lin}, policy=nba.EpsilonGreedy(0.2),
                      arbitration="score", experiments=[EXP], fallback="offer0", reward_window=W,
                      aggregate="sum", default_reward=DEFAULT, log=nba.DecisionLog(log_dir), seed=5, state=state)
    return dec, state, {"default": beta, "lin": lin}


def learners_of(dec_state_learners: tuple[nba.Decider, RedisState, dict[str, Any]]) -> dict[str, bytes]:
    return {name: m.to_bytes() for name, m in dec_state_learners[2].items()}


# --------------------------------------------------------------------------- the worker

_INHERITED: tuple[nba.Decider, RedisState, dict[str, Any]] | None = None  # a fork child's Decider


def _worker(conn: Connection, spec: tuple[str, str, str] | None) -> None:
    """Serve commands until "stop" (or SIGKILL); warnings of every thread are recorded and reported."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # a hung worker's stacks, on the test's stderr
    caught: list[tuple[str, str]] = []
    warnings.simplefilter("always")
    warnings.showwarning = lambda message, category, *a, **k: caught.append((category.__name__, str(message)))
    built = _INHERITED if spec is None else build(*spec)
    assert built is not None
    dec, state, learners = built
    failed_decides = 0
    while True:
        cmd, arg = conn.recv()
        if cmd == "decide":
            made = []
            for profile, defer, now in arg:
                try:
                    d = dec.decide(profile, CTX, defer=defer, now=now)
                except Exception as e:  # counted: the test asserts there is none
                    failed_decides += 1
                    made.append(("failed", repr(e)))
                    continue
                made.append((d.event_id, d.timestamp, d.deferred, d.fallback))
            dec.flush()  # the queue is in Redis before the answer
            conn.send((made, failed_decides))
        elif cmd == "decide_queued":  # Redis may be down: no flush
            made = []
            for profile, defer, now in arg:
                try:
                    d = dec.decide(profile, CTX, defer=defer, now=now)
                    made.append((d.event_id, d.timestamp, d.deferred, d.fallback))
                except Exception as e:
                    failed_decides += 1
                    made.append(("failed", repr(e)))
            conn.send((made, failed_decides))
        elif cmd == "ops":
            res = []
            for op in arg:
                try:
                    if op[0] == "activate":
                        dec.activate(op[1], now=op[2])
                    else:
                        dec.reward(op[1], op[2], now=op[3])
                    res.append("ok")
                except nba.NbaError as e:
                    res.append(type(e).__name__)
            conn.send(res)
        elif cmd == "close":
            state.expire(arg)
            dec.flush()
            conn.send("ok")
        elif cmd == "sync":
            dec.flush()
            conn.send(({n: m.to_bytes() for n, m in learners.items()}, state.stats(), list(caught)))
        elif cmd == "await_reset":  # until this process has taken (or re-seeded) the state of a new Redis
            deadline = time.monotonic() + arg
            while time.monotonic() < deadline and not any("re-seeded" in m or "was reset" in m for _, m in caught):
                time.sleep(0.02)
            dec.flush()
            conn.send(list(caught))
        elif cmd == "stop":
            dec.close()
            conn.send("ok")
            return


class Workers:
    """n worker processes of one start method; commands to several run at once."""

    def __init__(self, method: str, n: int, spec: tuple[str, str, str]) -> None:
        ctx = mp.get_context(method)
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for _ in range(n):
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(theirs, None if method == "fork" else spec), daemon=True)
            p.start()
            theirs.close()
            self.conns.append(mine)
            self.procs.append(p)
        self.live = list(range(n))

    def _recv(self, i: int, timeout: float = 30.0) -> Any:
        if not self.conns[i].poll(timeout):
            os.kill(self.procs[i].pid, signal.SIGUSR1)
            time.sleep(0.5)
            raise AssertionError(f"worker {i} did not answer within {timeout} s (its stacks are on stderr)")
        return self.conns[i].recv()

    def call(self, i: int, cmd: str, arg: Any = None) -> Any:
        self.conns[i].send((cmd, arg))
        return self._recv(i)

    def call_many(self, cmds: dict[int, tuple[str, Any]]) -> dict[int, Any]:
        for i, c in cmds.items():
            self.conns[i].send(c)
        return {i: self._recv(i) for i in cmds}

    def kill(self, i: int) -> None:
        os.kill(self.procs[i].pid, signal.SIGKILL)
        self.procs[i].join(10)
        assert self.procs[i].exitcode == -signal.SIGKILL
        self.live.remove(i)

    def route(self, rng: random.Random, ops: list[tuple]) -> list[str]:
        """Send each op to a random live worker, all workers at once; the results in op order."""
        by: dict[int, list[int]] = {i: [] for i in self.live}
        for k in range(len(ops)):
            by[rng.choice(self.live)].append(k)
        got = self.call_many({i: ("ops", [ops[k] for k in ks]) for i, ks in by.items() if ks})
        out = [""] * len(ops)
        for i, ks in by.items():
            for k, r in zip(ks, got.get(i, [])):
                out[k] = r
        return out

    def stop(self) -> None:
        for i in list(self.live):
            try:
                self.call(i, "stop")
            except (AssertionError, OSError, EOFError):
                pass
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()


@pytest.fixture(scope="session")
def shared_url() -> str:
    from tests.test_state import shared_server  # the session's one server, shared with test_state.py

    return shared_server().url


# --------------------------------------------------------------------------- traffic and its replay


def profiles(rng: random.Random, n: int, tag: str) -> list[tuple[dict[str, Any], bool, float]]:
    """n decisions' inputs: a quarter deferred, one in 15 a minor (the fallback), at distinct times."""
    return [({"id": f"{tag}-{rng.randrange(10_000)}", "age": 12.0 if rng.random() < 1 / 15 else 18.0 + rng.randrange(50),
              "tenure": rng.randrange(5) / 4}, rng.random() < 0.25, 0.0) for _ in range(n)]


def at(inputs: list[tuple[dict[str, Any], bool, float]], t: float) -> list[tuple[dict[str, Any], bool, float]]:
    return [(p, defer, t + k * 0.01) for k, (p, defer, _) in enumerate(inputs)]


def activations_for(rng: random.Random, made: list[tuple]) -> tuple[list[tuple], dict[str, float]]:
    """Activate 60% of the deferred decisions, 2 s after them; the ops and each window's start."""
    ops, start = [], {}
    for eid, ts, deferred, _fallback in made:
        if not deferred:
            start[eid] = ts
        elif rng.random() < 0.6:
            ops.append(("activate", eid, ts + 2.0))
            start[eid] = ts + 2.0
    return ops, start


def rewards_for(rng: random.Random, made: list[tuple], start: dict[str, float]) -> list[tuple]:
    """0-2 rewards of 0.25 or 0.5 per decision (a sum is at most 1): most in the window, some late,
    some before a deferred decision was shown, a few for ids nobody made."""
    ops = []
    for eid, ts, _deferred, _fallback in made:
        s = start.get(eid, ts)
        for _ in range(rng.randrange(3)):
            u = rng.random()
            when = s + W + 1 + 10 * rng.random() if u < 0.15 else ts + 0.5 if u < 0.2 else s + 0.9 * W * rng.random()
            ops.append(("reward", eid, rng.choice([0.25, 0.5]), when))
    ops += [("reward", f"nobody-{k}", 0.5, T0) for k in range(3)]
    rng.shuffle(ops)
    return ops


def replay(examples: list[Any]) -> dict[str, Any]:
    """A single process taught what each joined decision earned, in log order."""
    ref = {"default": nba.BetaThompson(N_ARMS), "lin": nba.LinUCB(N_ARMS, D, alpha=0.3)}
    for ex in examples:
        rec = ex.decision
        if rec.fallback:
            continue
        arm = int(rec.actions[rec.chosen[0]][len("offer"):])
        if rec.variants.get("m") == "lin":
            ref["lin"].update(arm, np.asarray(rec.x, dtype=np.float64), ex.reward)
        else:
            ref["default"].update(arm, None, ex.reward)
    return ref


def assert_learned(got: dict[str, bytes], ref: dict[str, Any], who: str) -> None:
    beta, lin = nba.BetaThompson.from_bytes(got["default"]), nba.LinUCB.from_bytes(got["lin"])
    assert isinstance(beta, nba.BetaThompson) and isinstance(lin, nba.LinUCB)
    want_b, want_l = ref["default"], ref["lin"]
    assert (beta.updates, lin.updates) == (want_b.updates, want_l.updates), who
    np.testing.assert_array_equal(beta.alpha, want_b.alpha, err_msg=who)
    np.testing.assert_array_equal(beta.beta, want_b.beta, err_msg=who)
    np.testing.assert_array_equal(beta.pulls, want_b.pulls, err_msg=who)
    np.testing.assert_array_equal(lin.pulls, want_l.pulls, err_msg=who)
    scale = max(1.0, float(np.abs(want_l.theta).max()))
    np.testing.assert_allclose(lin.theta, want_l.theta, rtol=0, atol=1e-9 * scale, err_msg=who)


def joined(log_dir: Path) -> list[Any]:
    return list(join(log_dir, reward_window=W, default_reward=DEFAULT, aggregate="sum"))


def check_log(log_dir: Path, made: list[tuple], activated: list[tuple]) -> list[Any]:
    """Every decision and activation is logged; every activation joins its decision. The joined log."""
    recs = list(read_records(log_dir))
    assert {r.event_id for r in recs if isinstance(r, DecisionRecord)} == {m[0] for m in made}
    acts = {r.event_id: r.ts for r in recs if isinstance(r, ActivationRecord)}
    assert acts == {eid: ts for _, eid, ts in activated}
    ex = joined(log_dir)
    starts = {e.decision.event_id: e.start for e in ex if e.decision.deferred}
    assert starts == acts  # 100% of activations joined, each starting its decision's window
    return ex


# --------------------------------------------------------------------------- shared learning


@pytest.fixture
def parent(shared_url: str, tmp_path: Path) -> Iterator[tuple[nba.Decider, RedisState, dict[str, Any]]]:
    built = build(shared_url, "p-" + secrets.token_hex(6), str(tmp_path / "log"))
    yield built
    built[0].close()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_share_pending_decisions_and_learn_every_lesson_once(parent, shared_url, tmp_path, method) -> None:
    global _INHERITED
    rng = random.Random(f"share-{method}")
    log_dir = tmp_path / "log"
    dec0, state0, _ = parent
    # The test process decides and learns first (before fork: the children inherit what it learned).
    made = []
    for p, defer, now in at(profiles(rng, 12, "p"), T0):
        d = dec0.decide(p, CTX, defer=defer, now=now)
        made.append((d.event_id, d.timestamp, d.deferred, d.fallback))
    acts0, start0 = activations_for(rng, made)
    for op in acts0:
        dec0.activate(op[1], now=op[2])
    for op in rewards_for(rng, made, start0):
        dec0.reward(op[1], op[2], now=op[3])
    state0.expire(T0 + 3 * W)
    dec0.flush()
    assert parent[2]["default"].updates + parent[2]["lin"].updates > 0
    _INHERITED = parent
    workers = Workers(method, 3, (shared_url, state0.namespace, str(log_dir)))
    try:
        t1 = T0 + 5 * W
        got = workers.call_many({i: ("decide", at(profiles(rng, 60, f"w{i}"), t1 + i * 0.001)) for i in workers.live})
        batch = [m for i in workers.live for m in got[i][0]]
        assert all(m[0] != "failed" for m in batch) and len(batch) == 180
        victim = set(m[0] for m in got[0][0])
        workers.kill(0)  # its decisions are in Redis (it flushed before answering), their windows open
        made += batch
        acts, start = activations_for(rng, batch)
        assert set(workers.route(rng, acts)) == {"ok"}
        assert set(workers.route(rng, rewards_for(rng, batch, start))) == {"ok"}
        assert workers.call(rng.choice(workers.live), "close", t1 + 3 * W) == "ok"  # claims the victim's too
        reports = {i: workers.call(i, "sync") for i in workers.live}
        dec0.flush()
        ex = check_log(log_dir, made, acts0 + acts)
        ref = replay(ex)
        learnable = sum(1 for e in ex if not e.decision.fallback)
        assert ref["default"].updates + ref["lin"].updates == learnable  # one lesson per decision
        victims = [e for e in ex if e.decision.event_id in victim and not e.decision.fallback]
        assert len(victims) > 40 and sum(not e.observed for e in victims) > 5  # its defaults are in there
        for i, (learned, stats, caught) in reports.items():
            assert_learned(learned, ref, f"worker {i}")
            assert stats["redis_errors"] == stats["dropped"] == stats["learn_refused"] == 0, stats
            assert stats["duplicate_ids"] == 0 and stats["connected"]
            assert not [c for c in caught if c[0] in ("StateWarning", "LearnWarning")], caught
        assert_learned(learners_of(parent), ref, "the test process")
        # A process joining now starts from the snapshots the others wrote, then the lessons since.
        late = build(shared_url, state0.namespace, str(tmp_path / "late-log"))
        try:
            late[0].flush()
            assert late[1].stats()["restores"] == 1
            assert_learned(learners_of(late), ref, "a late joiner")
        finally:
            late[0].close()
    finally:
        _INHERITED = None
        workers.stop()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_paused_worker_catches_up_from_the_snapshot(parent, shared_url, tmp_path, method) -> None:
    """A worker stopped (SIGSTOP) while the others learn enough for the stream to be trimmed past it
    takes the latest snapshot when it runs again (SIGCONT), and then learns on like the others."""
    global _INHERITED
    rng = random.Random(f"pause-{method}")
    log_dir = tmp_path / "log"
    dec0, state0, _ = parent
    _INHERITED = parent
    workers = Workers(method, 2, (shared_url, state0.namespace, str(log_dir)))
    try:
        t1 = T0 + 5 * W
        got = workers.call_many({i: ("decide", at(profiles(rng, 80, f"w{i}"), t1 + i * 0.001)) for i in workers.live})
        made = [m for i in workers.live for m in got[i][0]]
        paused = workers.procs[1]
        os.kill(paused.pid, signal.SIGSTOP)
        workers.live.remove(1)
        acts, start = activations_for(rng, made)
        assert set(workers.route(rng, acts)) == {"ok"}
        assert set(workers.route(rng, rewards_for(rng, made, start))) == {"ok"}
        ends = sorted(start.get(m[0], m[1]) + W for m in made if not m[3])
        for q in (0.25, 0.5, 0.75, 1.0):  # four claims, each a burst of lessons and a snapshot (every 40)
            workers.call(0, "close", ends[min(len(ends) - 1, int(q * len(ends)))] + 0.001)
            workers.call(0, "sync")
        os.kill(paused.pid, signal.SIGCONT)
        workers.live.append(1)
        reports = {i: workers.call(i, "sync") for i in workers.live}
        dec0.flush()
        ref = replay(check_log(log_dir, made, acts))
        for i, (learned, _, _) in reports.items():
            assert_learned(learned, ref, f"worker {i}")
        assert_learned(learners_of(parent), ref, "the test process")
        _, stats, caught = reports[1]
        assert stats["restores"] >= 1 and any("fell behind" in m for _, m in caught), (stats, caught)
    finally:
        _INHERITED = None
        workers.stop()


# --------------------------------------------------------------------------- Redis killed and restarted


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_redis_killed_and_restarted_mid_run(tmp_path, method) -> None:
    """Redis is SIGKILLed mid-run (no persistence), stays down while the workers go on, comes back empty.

    What the test shows: no ``decide()`` fails; every process issues a ``StateWarning``
    (unreachable, then re-seeded or reset) and its ``stats()`` count Redis errors; what
    was learned before the kill survives (one process re-seeds Redis with its models, the
    others take them); decisions made while Redis was down, with the activations and
    rewards their own process got for them, are queued, written when it is back, and
    learned; every decision after that learns as usual.

    What is lost: the decisions pending in Redis when it died (batch B: made and
    flushed before the kill, windows still open). Their hashes are gone, so their later
    activations and rewards (logged, and joined by ``nba.log.join``) are unknown to
    the shared state, and no window of theirs is ever claimed: they teach nothing, not
    even their default. (Also lost in general, not shown here: lessons in the stream that
    the re-seeding process had not applied yet, and activations/rewards queued during the
    outage by a process other than the one that decided: they may reach the new Redis
    before the decision's own process writes it, and then find nothing.)
    """
    global _INHERITED
    rng = random.Random(f"restart-{method}")
    server = redis_server.RedisServer().start()
    log_dir = tmp_path / "log"
    parent = build(server.url, "r-" + secrets.token_hex(6), str(log_dir))
    workers = None
    here = warnings.catch_warnings(record=True)  # the test process's own StateWarnings, from any thread
    caught_here = here.__enter__()
    warnings.simplefilter("always")
    try:
        dec0, state0, _ = parent
        _INHERITED = parent
        workers = Workers(method, 2, (server.url, state0.namespace, str(log_dir)))
        live = workers.live
        made: list[tuple] = []
        activated: list[tuple] = []

        def decide(t: float, n: int, tag: str, cmd: str = "decide") -> dict[int, list[tuple]]:
            got = workers.call_many({i: (cmd, at(profiles(rng, n, f"{tag}{i}"), t + i * 0.001)) for i in live})
            assert all(got[i][1] == 0 for i in live), got  # no failed decide(), ever
            out = {i: got[i][0] for i in live}
            made.extend(m for i in live for m in out[i])
            return out

        def traffic(batch: list[tuple]) -> None:
            acts, start = activations_for(rng, batch)
            assert set(workers.route(rng, acts)) <= {"ok"}
            activated.extend(acts)
            assert set(workers.route(rng, rewards_for(rng, batch, start))) <= {"ok"}

        # A: learned before the kill, by everyone.
        ta = T0
        a = [m for ms in decide(ta, 30, "a").values() for m in ms]
        traffic(a)
        workers.call(live[0], "close", ta + 3 * W)
        before = {i: workers.call(i, "sync")[0] for i in live}
        dec0.flush()
        ref_a = replay(joined(log_dir))
        for i in live:
            assert_learned(before[i], ref_a, f"worker {i} before the kill")
        # B: pending when Redis dies.
        tb = ta + 5 * W
        b = [m for ms in decide(tb, 20, "b").values() for m in ms]
        lost = {m[0] for m in b}
        server.stop(kill=True)
        # C: while Redis is down: decisions (queued), rewards of B anywhere, activations and rewards
        # of C in the process that decided them (its queue keeps them in order).
        c = decide(tb + 10, 20, "c", cmd="decide_queued")
        traffic(b)
        for i in live:
            acts, start = activations_for(rng, c[i])
            ops = acts + [op for op in rewards_for(rng, c[i], start) if not op[1].startswith("nobody")]
            assert set(workers.call(i, "ops", ops)) == {"ok"}  # logged and queued: nothing refused
            activated.extend(acts)
        time.sleep(0.5)  # the background threads retry and fail meanwhile
        during = {i: workers.call(i, "sync") for i in live}
        for i in live:
            _, stats, caught = during[i]
            assert stats["redis_errors"] > 0 and not stats["connected"] and stats["queue"] > 0, stats
            assert any(k == "StateWarning" and "unreachable" in m for k, m in caught), caught
        server.start()  # the same port, no data
        resets = workers.call_many({i: ("await_reset", 10.0) for i in live})
        for i in live:
            assert any(k == "StateWarning" and ("re-seeded" in m or "was reset" in m) for k, m in resets[i]), resets[i]
        # D: back to normal; rewards for C and D anywhere.
        td = tb + 20
        dd = [m for ms in decide(td, 20, "d").values() for m in ms]
        traffic(dd)
        workers.call(live[-1], "close", td + 3 * W)
        after = {i: workers.call(i, "sync") for i in live}
        dec0.flush()
        ex = check_log(log_dir, made, activated)
        ref = replay(e for e in ex if e.decision.event_id not in lost)
        assert ref["default"].updates + ref["lin"].updates > ref_a["default"].updates + ref_a["lin"].updates + 40
        for i, (learned, stats, _) in after.items():
            assert_learned(learned, ref, f"worker {i} after the restart")
            assert stats["connected"] and stats["queue"] == 0 and stats["dropped"] == 0, stats
        assert_learned(learners_of(parent), ref, "the test process")
        # B really is what was lost: the log joins its decisions, the shared state never learned them.
        lost_ex = [e for e in ex if e.decision.event_id in lost and not e.decision.fallback]
        assert len(lost_ex) > 30 and sum(e.observed for e in lost_ex) > 5
        mine = [str(w.message) for w in caught_here if w.category.__name__ == "StateWarning"]
        assert any("unreachable" in m for m in mine) and any("re-seeded" in m or "was reset" in m for m in mine)
        assert state0.stats()["redis_errors"] > 0 and state0.stats()["connected"]
    finally:
        here.__exit__(None, None, None)
        _INHERITED = None
        if workers is not None:
            workers.stop()
        parent[0].close()
        server.close()
