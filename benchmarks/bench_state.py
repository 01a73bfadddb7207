"""Shared decision state: what ``RedisState`` costs ``decide()``, how fast a reward reaches other processes.

Workload: 10 arms with eligibility rules (``workloads.catalogue_arms``), 25 feature
columns, an online ``LinUCB`` explored with ``UCB``, no log (the state's cost alone);
a real ``redis-server`` on loopback (``tests/redis_server.py``), default settings.

* ``state-decide-linucb-10arms``: ``Decider.decide`` with ``RedisState`` ("nba") vs
  the same Decider with the default ``EmbeddedState`` ("embedded"), in the same run.
  Goal: Redis adds <= 5 us at p50 (``decide`` only queues the decision; a background
  thread writes it). Both record per-call p50/p99; the nba side also records the
  embedded percentiles of interleaved blocks and the difference (``added_p50_us``).
* ``state-reward-to-effect``: one process rewards a decision, another polls its
  learner's ``updates`` until the lesson arrives. Goal: <= 100 ms at p99 with the
  default settings; recorded (p50/p99 in ``extra_info``), not asserted.
* ``state-throughput``: 1 and 2 processes deciding flat out into one namespace (each
  until its queue is written): decisions/s, and decisions per CPU-second of the
  deciding processes (``time.process_time``: all their threads) and with Redis's CPU.
"""

from __future__ import annotations

import multiprocessing
import os
import time

import numpy as np
import pytest

pytest.importorskip("redis")

import nba
from benchmarks.workloads import catalogue_arms, profile_features, profiles
from nba.state import EmbeddedState, RedisState
from tests import redis_server

if not redis_server.available():
    pytest.skip("redis-server is not installed (tools/test_services.sh)", allow_module_level=True)

DECIDE_GROUP = "state-decide-linucb-10arms"
# The Redis path at >= 0.3x the embedded speed: a guard against a synchronous round trip per decision
# (~0.15x on loopback), not the goal. Both medians are of rounds of back-to-back calls, so the Redis side
# pays the writer thread's work and its share of the GIL and the caches: CI measured 0.7x, 0.6x and 0.4x
# in three runs while the writer spent ~40k instructions a decision holding the GIL; it now packs and
# sends in the compiled core (nba._core.resp: ~5k a decision in all, the round trip without the GIL).
# The goal (added p50 <= 5 us) is added_p50_us.
FLOORS = {"embedded": 0.3}
LATENCY_CALLS = int(os.environ.get("NBA_BENCH_LATENCY_CALLS", "5000"))
DELAY_REWARDS = int(os.environ.get("NBA_BENCH_STATE_DELAY_REWARDS", "200"))
THROUGHPUT_CALLS = int(os.environ.get("NBA_BENCH_THROUGHPUT_CALLS", "15000"))  # ~0.5 s a process: 4000 left the ratios to noise
N_PROFILES = 256


SCHEMA = nba.FeatureSchema(profile_features(), extra_profile=["age", "country"])
CATALOG = nba.Catalog(catalogue_arms(10), SCHEMA, arbitration="score")


def _decider(state: nba.state.DecisionState | None, model: nba.LinUCB | None = None) -> nba.Decider:
    model = nba.LinUCB(len(CATALOG), CATALOG.schema.n_columns, alpha=0.5) if model is None else model
    return nba.Decider(CATALOG, model, policy=nba.UCB(), state=state, seed=1, fallback="offer_0")


def _work() -> list:
    """Profiles with at least one eligible arm on the web channel (a fallback decision is not remembered)."""
    with _decider(None) as dec:
        return [(p, c) for p, c in profiles(N_PROFILES, seed=3) if not dec.decide(p, c, channel="web").fallback]


@pytest.fixture(scope="module")
def redis_url():
    with redis_server.redis_server() as server:
        yield server.url


@pytest.fixture(scope="module")
def work() -> list:
    return _work()


def _percentiles(ns: np.ndarray) -> tuple[float, float]:
    return float(np.percentile(ns, 50)) / 1e3, float(np.percentile(ns, 99)) / 1e3


def _timed_calls(dec: nba.Decider, work: list, n: int, start: int = 0) -> np.ndarray:
    ns = np.empty(n, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(n):
        prof, ctx = work[(start + i) % len(work)]
        t0 = clock()
        dec.decide(prof, ctx, channel="web")
        ns[i] = clock() - t0
    return ns


def _bench_decide(benchmark, dec: nba.Decider, work: list) -> None:
    it = iter(range(1 << 62))

    def one() -> None:
        prof, ctx = work[next(it) % len(work)]
        dec.decide(prof, ctx, channel="web")

    _timed_calls(dec, work, 200)  # warm up
    benchmark.group = DECIDE_GROUP
    benchmark(one)


# --------------------------------------------------------------------------- (a) decide()


def test_decide_redis_state(benchmark, redis_url, work) -> None:
    state = RedisState(redis_url, namespace="bench-decide")
    with _decider(state) as dec, _decider(None) as ref:
        _bench_decide(benchmark, dec, work)
        # Per-call percentiles of both, in interleaved blocks; the Redis side's queue is written
        # (untimed) after each of its blocks, so the embedded blocks run beside idle threads.
        red, emb = [], []
        block = 500
        for b in range(max(1, LATENCY_CALLS // block)):
            red.append(_timed_calls(dec, work, block, b * block))
            state.sync()
            emb.append(_timed_calls(ref, work, block, b * block))
        stats = state.stats()
    p50, p99 = _percentiles(np.concatenate(red))
    e50, e99 = _percentiles(np.concatenate(emb))
    benchmark.extra_info.update(
        impl="nba", floors=FLOORS, call="Decider.decide with RedisState (10 arms, LinUCB + UCB, no log)",
        p50_us=p50, p99_us=p99, embedded_p50_us=e50, embedded_p99_us=e99, added_p50_us=p50 - e50,
        added_p99_us=p99 - e99, goal_added_p50_us=5.0, redis_written=stats["written"], redis_dropped=stats["dropped"],
    )
    print(f"\n{DECIDE_GROUP}: RedisState p50 {p50:.1f} us, p99 {p99:.1f} us; EmbeddedState p50 {e50:.1f} us, "
          f"p99 {e99:.1f} us; added p50 {p50 - e50:+.1f} us, p99 {p99 - e99:+.1f} us")


def test_decide_embedded_state(benchmark, work) -> None:
    with _decider(EmbeddedState()) as dec:
        _bench_decide(benchmark, dec, work)
        p50, p99 = _percentiles(_timed_calls(dec, work, LATENCY_CALLS))
    benchmark.extra_info.update(impl="embedded", call="Decider.decide with EmbeddedState (the default)",
                                p50_us=p50, p99_us=p99)


# --------------------------------------------------------------------------- (b) reward -> effect elsewhere


def _follower(url: str, namespace: str, conn) -> None:
    """In another process: report (perf_counter) each time this process's learner learns a lesson."""
    model = nba.LinUCB(len(CATALOG), CATALOG.schema.n_columns, alpha=0.5)
    with _decider(RedisState(url, namespace=namespace), model):
        seen = model.updates
        conn.send("ready")
        while not conn.poll():
            n = model.updates
            if n != seen:
                t = time.perf_counter()  # CLOCK_MONOTONIC: one clock for every process of the host
                for _ in range(n - seen):
                    conn.send(t)
                seen = n
            time.sleep(0.0001)  # lets the reader thread (which applies lessons) take the GIL


def test_reward_to_effect_in_another_process(benchmark, redis_url, work) -> None:
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_follower, args=(redis_url, "bench-delay", theirs), daemon=True)
    child.start()
    theirs.close()  # so that ours.recv() raises EOFError if the child dies
    delays, calls = [], []
    try:
        assert ours.poll(60) and ours.recv() == "ready"
        state = RedisState(redis_url, namespace="bench-delay")
        with _decider(state) as dec:

            def run() -> None:
                for i in range(DELAY_REWARDS):
                    prof, c = work[i % len(work)]
                    eid = dec.decide(prof, c, channel="web").event_id
                    while state.stats()["queue"]:  # the writer thread has put the decision in Redis,
                        time.sleep(0.0005)  # as it has long before a real reward comes
                    t0 = time.perf_counter()
                    dec.reward(eid, float(i % 2))
                    calls.append(time.perf_counter() - t0)
                    assert ours.poll(5), f"reward {i} did not reach the other process within 5 s"
                    delays.append(ours.recv() - t0)

            benchmark.group = "state-reward-to-effect"
            benchmark.pedantic(run, rounds=1, iterations=1)
        ours.send("stop")
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    d50, d99 = (float(np.percentile(delays, q)) * 1e3 for q in (50, 99))
    c50, c99 = (float(np.percentile(calls, q)) * 1e3 for q in (50, 99))
    benchmark.extra_info.update(
        impl="nba", call="Decider.reward in one process -> learner.updates in another (RedisState defaults)",
        rewards=len(delays), p50_ms=d50, p99_ms=d99, p50_us=d50 * 1e3, p99_us=d99 * 1e3, max_ms=max(delays) * 1e3,
        reward_call_p50_ms=c50, reward_call_p99_ms=c99, goal_p99_ms=100.0,
    )
    print(f"\nstate-reward-to-effect: p50 {d50:.2f} ms, p99 {d99:.2f} ms (goal <= 100 ms); "
          f"the reward call itself p50 {c50:.2f} ms, p99 {c99:.2f} ms")


# --------------------------------------------------------------------------- (c) throughput


def _producer(url: str | None, namespace: str, n: int, start, conn) -> None:
    """In another process: ``n`` decisions flat out once ``start`` is set, until the queue is written."""
    work = _work()
    state = RedisState(url, namespace=namespace) if url else EmbeddedState()
    with _decider(state) as dec:
        _timed_calls(dec, work, 200)  # warm up, then let its writes drain
        dec.flush()
        conn.send("ready")
        start.wait()
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            prof, ctx = work[i % len(work)]
            dec.decide(prof, ctx, channel="web")
        dec.flush()  # every decision written to Redis
        conn.send((n, time.perf_counter() - t0, time.process_time() - c0))


def _redis_cpu(url: str) -> float:
    import redis

    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _throughput(url: str | None, namespace: str, procs: int) -> dict:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    pipes = [ctx.Pipe() for _ in range(procs)]
    children = [ctx.Process(target=_producer, args=(url, namespace, THROUGHPUT_CALLS, start, theirs), daemon=True)
                for _, theirs in pipes]
    for c, (_, theirs) in zip(children, pipes):
        c.start()
        theirs.close()  # so that ours.recv() raises EOFError if the child dies
    try:
        for ours, _ in pipes:
            assert ours.poll(60) and ours.recv() == "ready"
        start.set()
        r0 = _redis_cpu(url) if url else 0.0
        results = [ours.recv() for ours, _ in pipes]
        redis_cpu = _redis_cpu(url) - r0 if url else 0.0
    finally:
        for c in children:
            c.join(10)
            if c.is_alive():
                c.kill()
    n = sum(r[0] for r in results)
    wall = max(r[1] for r in results)
    cpu = sum(r[2] for r in results)
    return {"decisions_per_s": n / wall, "decisions_per_cpu_s": n / cpu, "cpu_us_per_decision": cpu / n * 1e6,
            "redis_cpu_us_per_decision": redis_cpu / n * 1e6,
            "decisions_per_cpu_s_with_redis": n / (cpu + redis_cpu)}


def test_throughput_one_and_two_processes(benchmark, redis_url) -> None:
    out: dict = {}

    def run() -> None:
        out["redis_1proc"] = _throughput(redis_url, "bench-tp1", 1)
        out["redis_2procs"] = _throughput(redis_url, "bench-tp2", 2)
        out["embedded_1proc"] = _throughput(None, "", 1)

    benchmark.group = "state-throughput"
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(impl="nba", call=f"{THROUGHPUT_CALLS} decisions per process, until written",
                                **{f"{k}_{m}": v for k, r in out.items() for m, v in r.items()})
    print("\nstate-throughput: " + "; ".join(
        f"{k}: {r['decisions_per_s']:.0f} decisions/s, {r['decisions_per_cpu_s']:.0f} per CPU-s "
        f"({r['decisions_per_cpu_s_with_redis']:.0f} with Redis's CPU)" for k, r in out.items()))
