"""decide() end to end: nba's Decider against the same job written plainly.

Workload (``workloads.decide_workload``): 10 arms, a 100-tree 31-leaf binary
LightGBM model over the catalogue's rows, EpsilonGreedy(0.1), one 50/50
experiment, a DecisionLog in a temp dir with durability="record".

* ``decide-10arms-100trees``: nba ``Decider.decide`` vs "plain-lightgbm"
  (``Booster.predict`` on the 10 arm rows + numpy epsilon-greedy + ``json.dumps``
  + one ``os.write`` per decision). Before timing, both must score the arms alike.
* The nba benchmark also records per-call p50/p99 (``perf_counter_ns`` loop) and
  decisions/s with 1 and 2 threads (best of 3 runs each) in ``extra_info``.
"""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest

import nba
from benchmarks.workloads import decide_workload
from nba.policy import EpsilonGreedy

lgb = pytest.importorskip("lightgbm")

GROUP = "decide-10arms-100trees"
FLOORS = {"plain-lightgbm": 2.0}  # generous: measured 4.7-5.8x
EPSILON = 0.1
LATENCY_CALLS = int(os.environ.get("NBA_BENCH_LATENCY_CALLS", "5000"))
THROUGHPUT_CALLS = int(os.environ.get("NBA_BENCH_THROUGHPUT_CALLS", "4000"))


@pytest.fixture(scope="module")
def work() -> dict:
    return decide_workload(10, 100, seed=0)


def _decider(work: dict, log_dir) -> nba.Decider:
    catalog = nba.Catalog(work["arms"], work["schema"])
    model = nba.load_model(work["model_text"])
    exp = nba.Experiment("layout", variants={"a": 0.5, "b": 0.5})
    return nba.Decider(catalog, model, policy=EpsilonGreedy(EPSILON), experiments=[exp],
                       log=nba.DecisionLog(log_dir, durability="record"), seed=1)


class PlainDecide:
    """The job by hand: arm rows, Booster.predict, epsilon-greedy in numpy, json.dumps, os.write."""

    def __init__(self, work: dict, path: str) -> None:
        self.catalog = nba.Catalog(work["arms"], work["schema"])
        self.schema = work["schema"]
        self.booster = lgb.Booster(model_str=work["model_text"])
        self.layout = self.catalog.layout(self.catalog.feature_names)
        self.all = np.arange(len(self.catalog), dtype=np.intp)
        self.values = np.array([a.value * a.weight for a in work["arms"]])
        self.ids = list(self.catalog.ids)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.rng = np.random.default_rng(0)
        self.n = 0

    def rows(self, profile: dict, context: dict) -> np.ndarray:
        return self.layout.fill(self.schema.vectorize(profile, context), self.all)

    def decide(self, profile: dict, context: dict) -> str:
        scores = self.booster.predict(self.rows(profile, context), num_threads=1)  # OpenMP only hurts at 10 rows
        k = scores.shape[0]
        pmf = np.full(k, EPSILON / k)
        pmf[int(np.argmax(scores * self.values))] += 1.0 - EPSILON
        i = int(self.rng.choice(k, p=pmf))
        self.n += 1
        rec = {"event_id": f"e{self.n}", "ts": time.time(), "actions": self.ids, "pmf": pmf.tolist(),
               "chosen": [i], "probability": float(pmf[i]), "scores": scores.tolist(),
               "features": {"User": {k2: v for k2, v in profile.items() if k2 != "id"}, "Context": context}}
        os.write(self.fd, (json.dumps(rec) + "\n").encode())
        return self.ids[i]

    def close(self) -> None:
        os.close(self.fd)


def test_plain_and_nba_score_the_arms_alike(work, tmp_path) -> None:
    plain = PlainDecide(work, str(tmp_path / "plain.jsonl"))
    with _decider(work, tmp_path / "log") as dec:
        for prof, ctx in work["profiles"][:32]:
            d = dec.decide(prof, ctx)
            np.testing.assert_allclose(d.scores, plain.booster.predict(plain.rows(prof, ctx)), rtol=1e-9, atol=1e-12)
    plain.close()


def _throughput(dec: nba.Decider, profiles: list, threads: int, repeats: int = 3) -> float:
    """Decisions per second with ``threads`` threads: the best of ``repeats`` runs (the box is noisy)."""
    return max(_throughput_once(dec, profiles, threads) for _ in range(repeats))


def _throughput_once(dec: nba.Decider, profiles: list, threads: int) -> float:
    per = THROUGHPUT_CALLS // threads
    barrier = threading.Barrier(threads + 1)

    def run(t: int) -> None:
        barrier.wait()
        for i in range(per):
            prof, ctx = profiles[(i + t * 7) % len(profiles)]
            dec.decide(prof, ctx, channel="web")

    ths = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for th in ths:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in ths:
        th.join()
    return per * threads / (time.perf_counter() - t0)


def test_decide_nba(benchmark, work, tmp_path) -> None:
    profiles = work["profiles"]
    with _decider(work, tmp_path / "log") as dec:
        it = iter(range(1 << 62))

        def one() -> None:
            prof, ctx = profiles[next(it) % len(profiles)]
            dec.decide(prof, ctx, channel="web")

        benchmark.group = GROUP
        benchmark(one)
        ts = np.empty(LATENCY_CALLS)
        for i in range(LATENCY_CALLS):
            prof, ctx = profiles[i % len(profiles)]
            t0 = time.perf_counter_ns()
            dec.decide(prof, ctx, channel="web")
            ts[i] = time.perf_counter_ns() - t0
        one_thread = _throughput(dec, profiles, 1)
        two_threads = _throughput(dec, profiles, 2)
    p50, p99 = (float(np.percentile(ts, q)) / 1e3 for q in (50, 99))
    benchmark.extra_info.update(
        impl="nba", floors=FLOORS, call="Decider.decide (10 arms, 100 trees, EpsilonGreedy, 1 experiment, log record)",
        p50_us=p50, p99_us=p99, decisions_per_s_1thread=one_thread, decisions_per_s_2threads=two_threads,
    )
    print(f"\n{GROUP}: p50 {p50:.1f} us, p99 {p99:.1f} us; {one_thread:.0f} decisions/s (1 thread), "
          f"{two_threads:.0f} decisions/s (2 threads)")


def test_decide_plain_lightgbm(benchmark, work, tmp_path) -> None:
    profiles = work["profiles"]
    plain = PlainDecide(work, str(tmp_path / "plain.jsonl"))
    it = iter(range(1 << 62))

    def one() -> None:
        prof, ctx = profiles[next(it) % len(profiles)]
        plain.decide(prof, ctx)

    benchmark.group = GROUP
    benchmark.extra_info.update(impl="plain-lightgbm",
                                call="Booster.predict(10 rows) + numpy epsilon-greedy + json.dumps + os.write")
    try:
        benchmark(one)
    finally:
        plain.close()
