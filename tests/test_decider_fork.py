"""A Decider built before fork() (gunicorn --preload, uWSGI): every child is a writer of its own.

The children are real ``os.fork()`` children; each reports through a pipe and leaves
with ``os._exit`` so that nothing of pytest runs twice.
"""

from __future__ import annotations

import json
import os
import select
import threading
import time
from collections.abc import Callable

import pytest

import nba
from nba.bandits import BetaThompson
from nba.log import DecisionRecord, join, read_records

SCHEMA = nba.FeatureSchema([nba.Numeric("age", source="profile"), nba.Categorical("segment", ["a", "b", "c"])])
ARMS = [nba.Arm(f"arm{i}", value=1.0) for i in range(4)]


def _reward_of(unit: str) -> float:
    """The reward a unit's decision earns: known to the test, different across units."""
    return float(sum(map(ord, unit)) % 7) / 6.0


def _in_children(n: int, body: Callable[[int], object], timeout: float = 60.0) -> list[object]:
    """Run ``body(i)`` in ``n`` forked children at once; their JSON results, in child order."""
    children = []
    for i in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 0
            try:
                os.close(r)
                data = json.dumps(body(i)).encode()
            except BaseException as e:  # report the failure to the parent
                data = json.dumps({"error": repr(e)}).encode()
                code = 1
            with os.fdopen(w, "wb") as f:
                f.write(data)
            os._exit(code)
        os.close(w)
        children.append((pid, r))
    out = []
    deadline = time.monotonic() + timeout
    for pid, r in children:
        chunks = []
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([r], [], [], max(left, 0))
            if not ready:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail(f"child {pid} hung (a lock held at fork time?)")
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        res = json.loads(b"".join(chunks))
        assert os.waitstatus_to_exitcode(status) == 0, res
        out.append(res)
    return out


def test_forked_children_issue_distinct_event_ids(tmp_path) -> None:
    dec = nba.Decider(ARMS, BetaThompson(4), schema=SCHEMA, policy=nba.Thompson(), log=nba.DecisionLog(tmp_path))
    before = [dec.decide({"id": "p", "age": 1.0}).event_id for _ in range(10)]

    def child(i: int) -> list[str]:
        return [dec.decide({"id": f"c{i}-{k}", "age": 30.0}).event_id for k in range(100)]

    ids = [e for got in _in_children(3, child) for e in got] + before
    ids += [dec.decide({"id": "p", "age": 1.0}).event_id for _ in range(10)]  # the parent goes on, unchanged
    dec.close()
    assert len(ids) == len(set(ids)) == 320
    logged = [r.event_id for r in read_records(tmp_path) if isinstance(r, DecisionRecord)]
    assert sorted(logged) == sorted(ids)


def test_every_reward_joins_its_own_decision_across_forked_writers(tmp_path) -> None:
    dec = nba.Decider(ARMS, BetaThompson(4), schema=SCHEMA, policy=nba.Thompson(), log=nba.DecisionLog(tmp_path))

    def child(i: int) -> int:
        for k in range(150):
            unit = f"u{i}-{k}"
            d = dec.decide({"id": unit, "age": float(k)})
            dec.reward(d.event_id, _reward_of(unit))
        dec.close()
        return 150

    assert _in_children(2, child) == [150, 150]
    dec.close()
    joined = list(join(tmp_path))
    assert len(joined) == 300 and len({j.decision.event_id for j in joined}) == 300
    assert all(j.observed and j.reward == _reward_of(j.decision.unit) for j in joined)


def test_a_lock_held_at_fork_time_does_not_hang_the_child() -> None:
    dec = nba.Decider(ARMS, BetaThompson(4), schema=SCHEMA, policy=nba.Thompson())
    d0 = dec.decide({"id": "p", "age": 1.0})
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # a request thread inside the Decider's critical section at fork time (white box)
        with dec._decisions._lock:  # the embedded state's lock
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        def child(i: int) -> float:
            d = dec.decide({"id": "c", "age": 2.0})
            dec.reward(d.event_id, 1.0)
            return d.probability

        (p,) = _in_children(1, child, timeout=20)
        assert 0.0 < p <= 1.0
    finally:
        release.set()
        t.join()
    dec.reward(d0.event_id, 1.0)  # the parent's own state is intact


def test_a_child_does_not_learn_the_parents_pending_decisions() -> None:
    bandit = BetaThompson(4)
    dec = nba.Decider(ARMS, bandit, schema=SCHEMA, policy=nba.Thompson(), reward_window=10.0)
    parent = [dec.decide({"id": f"p{k}", "age": 1.0}, now=100.0) for k in range(20)]

    def child(i: int) -> list[float]:
        for d in parent:
            dec.reward(d.event_id, 1.0, now=101.0)  # not this process's decisions: logged only
        dec.flush()
        dec.reward("any", 0.0, now=1000.0)  # closes every window the child knows of
        return bandit.pulls.tolist()

    (pulls,) = _in_children(1, child)
    assert pulls == [0, 0, 0, 0]
    for d in parent:  # the parent still learns its own
        dec.reward(d.event_id, 1.0, now=101.0)
    assert bandit.pulls.sum() == 20
