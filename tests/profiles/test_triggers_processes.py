"""RedisTriggerStore across real processes: 4 workers claim 2,000 due firings at once, each exactly once.

Workers are ``multiprocessing`` processes (``fork``, and ``spawn``: each builds its own
client) that wait on one barrier, then call ``due(now)`` with a small limit until it
returns nothing, while the test process keeps observing events that cancel some of the
pending firings and schedule new due ones. Every firing due at the end must have been
returned to exactly one worker; none may be left pending, and a cancelled one never
returned. The workers stop at the first empty claim after the test process has
finished scheduling (an Event), so the test waits on nothing but them.
"""

from __future__ import annotations

import multiprocessing as mp
import secrets
from multiprocessing.connection import Connection
from typing import Any

import pytest

from nba.profiles import Absence, Event, OnEvent, RedisTriggerStore, Triggers
from tests import redis_server
from tests.test_state import shared_server

pytestmark = pytest.mark.skipif(not redis_server.available(), reason="redis-server is not installed")

T = 1_700_000_000.0
NOW = T + 10_000.0
RULES = [OnEvent("failed", "payment", delay=60.0),
         Absence("cart", after="cart_add", missing="checkout", within=1800.0)]
N_KEYS = 1000  # two firings each: 2,000
WORKERS = 4


def _worker(url: str, ns: str, start: Any, done: Any, conn: Connection) -> None:
    trig = Triggers(RULES, RedisTriggerStore(url, namespace=ns))
    got: list[tuple[str, str, float, float]] = []
    start.wait()
    while True:
        finished = done.is_set()  # read before the claim: an empty claim after it means nothing is left
        batch = trig.due(NOW, limit=25)
        got += [(d.key, d.trigger, d.due_at, d.cause_ts) for d in batch]
        if not batch and finished:
            break
    conn.send(got)
    conn.close()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_four_processes_claim_each_firing_exactly_once(method: str) -> None:
    url = shared_server().url
    ns = "p-" + secrets.token_hex(6)
    trig = Triggers(RULES, RedisTriggerStore(url, namespace=ns))
    items = []
    for i in range(N_KEYS):
        items += [(f"u{i}", Event("payment", "web", T + i)), (f"u{i}", Event("cart_add", "web", T + i))]
    trig.observe_many(items)
    want = {(f"u{i}", "failed", T + i + 60.0, T + i) for i in range(N_KEYS)}
    want |= {(f"u{i}", "cart", T + i + 1800.0, T + i) for i in range(N_KEYS)}

    ctx = mp.get_context(method)
    start, done = ctx.Barrier(WORKERS + 1), ctx.Event()
    pipes, procs = [], []
    for _ in range(WORKERS):
        ours, theirs = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_worker, args=(url, ns, start, done, theirs), daemon=True)
        p.start()
        theirs.close()
        pipes.append(ours)
        procs.append(p)
    start.wait(timeout=60)
    # While they claim: cancel some carts (late checkouts, ts before the due time) and add new firings.
    late = [(f"u{i}", Event("checkout", "web", T + i + 1000.0)) for i in range(0, N_KEYS, 10)]
    extra = [(f"x{i}", Event("payment", "web", T + i)) for i in range(200)]
    trig.observe_many(late)
    trig.observe_many(extra)
    done.set()
    got: list[tuple[str, str, float, float]] = []
    per_worker = []
    for conn, p in zip(pipes, procs):
        assert conn.poll(60), "a worker did not answer within 60 s"
        mine = conn.recv()
        per_worker.append(len(mine))
        got += mine
        p.join(10)
        assert p.exitcode == 0
    assert len(got) == len(set(got)), "a firing was returned twice"
    claimed = set(got)
    # Each late checkout either cancelled its cart or came after a worker had claimed it: never both.
    cancelled = {(k, "cart", e.ts - 1000.0 + 1800.0, e.ts - 1000.0) for k, e in late} - claimed
    extra_want = {(f"x{i}", "failed", T + i + 60.0, T + i) for i in range(200)}
    assert claimed == (want - cancelled) | extra_want
    assert sum(per_worker) == len(claimed)
    assert trig.due(NOW, limit=10_000) == []
    assert all(trig.pending(k) == [] for k, _ in late)
