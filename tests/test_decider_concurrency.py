"""Decider under threads: decisions race model swaps; each is logged once, with the model that made it."""

from __future__ import annotations

import threading
import time

import lightgbm as lgb
import numpy as np

import nba
from nba.log import DecisionRecord, read_records
from nba.policy import EpsilonGreedy

N_THREADS = 8
PER_THREAD = 100
SWAPS = 100


def _schema() -> nba.FeatureSchema:
    return nba.FeatureSchema(
        [nba.Numeric("age"), nba.Categorical("segment", ["gold", "silver", "bronze"]), nba.Numeric("hour", source="context")]
    )


def _booster(names: list[str], seed: int) -> lgb.Booster:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(500, len(names)))
    y = (X[:, seed % len(names)] - X[:, -1] > 0).astype(float)
    params = {"objective": "binary", "verbose": -1, "num_leaves": 7, "seed": seed, "deterministic": True}
    return lgb.train(params, lgb.Dataset(X, y, feature_name=names), 15)


def test_threads_deciding_while_models_swap_log_each_decision_once_with_its_model(tmp_path) -> None:
    arms = [nba.Arm(f"a{i}", features={"fee": float(i)}, value=1.0) for i in range(6)]
    catalog = nba.Catalog(arms, _schema())
    names = list(catalog.feature_names)
    models = [nba.load_model(_booster(names, 1)), nba.load_model(_booster(names, 2))]
    by_version = {str(m.version): m for m in models}
    assert len(by_version) == 2
    log = nba.DecisionLog(tmp_path)
    dec = nba.Decider(catalog, models[0], policy=EpsilonGreedy(0.1), log=log, seed=1)

    inputs: dict[str, tuple[dict, dict]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(N_THREADS + 1)

    done = [0] * N_THREADS  # decisions finished per thread (each slot written by one thread)
    swaps_over = threading.Event()

    def worker(t: int) -> None:
        rng = np.random.default_rng(100 + t)
        i = 0
        try:
            start.wait()
            # keep deciding until both the quota and the swapper are done, so every swap is followed by decisions
            while i < PER_THREAD or not swaps_over.is_set():
                eid = f"t{t}-{i}"
                prof = {"id": f"u{t}-{i}", "age": float(rng.integers(18, 90)), "segment": ["gold", "silver", "bronze"][i % 3]}
                ctx = {"hour": float(rng.integers(0, 24))}
                inputs[eid] = (prof, ctx)
                dec.decide(prof, ctx, event_id=eid)
                i += 1
                done[t] = i
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            swaps_over.set()

    def swapper() -> None:
        try:
            start.wait()
            for k in range(SWAPS):
                dec.swap_model(models[(k + 1) % 2])
                # wait for N_THREADS + 1 more finished decisions: at most N_THREADS were in flight at the swap,
                # so at least one decision started after it and used the new model
                target = sum(done) + N_THREADS + 1
                while sum(done) < target and not errors:
                    time.sleep(0)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            swaps_over.set()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(N_THREADS)]
    threads.append(threading.Thread(target=swapper))
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    dec.close()
    assert errors == []

    recs = [r for r in read_records(tmp_path) if isinstance(r, DecisionRecord)]
    ids = [r.event_id for r in recs]
    assert len(ids) == len(set(ids)) == sum(done) >= N_THREADS * PER_THREAD
    assert set(ids) == set(inputs)
    versions_seen = set()
    layout = catalog.layout(names)
    all_arms = np.arange(len(catalog), dtype=np.intp)
    for r in recs:
        m = by_version[r.model_version]
        versions_seen.add(r.model_version)
        prof, ctx = inputs[r.event_id]
        rows = layout.fill(catalog.schema.vectorize(prof, ctx), all_arms)
        expected = [m.predict_row(row) for row in rows]
        assert r.actions == list(catalog.ids)
        np.testing.assert_allclose(r.scores, expected, rtol=1e-12, err_msg=r.event_id)
        other = by_version[next(v for v in by_version if v != r.model_version)]
        # the two models disagree on these inputs, so the check above pins the version
        assert not np.allclose([other.predict_row(row) for row in rows], expected, rtol=1e-12)
    assert dec.model_version == str(models[SWAPS % 2].version)
    assert versions_seen == set(by_version), len(recs)  # guaranteed by the swapper's pacing
