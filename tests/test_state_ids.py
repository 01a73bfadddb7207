"""nba.state.RedisState and event ids: unique across processes and hosts sharing one Redis, and a reuse is seen."""

from __future__ import annotations

import multiprocessing as mp
import uuid
import warnings

import pytest

import nba
from nba.state import RedisState, StateWarning
from tests import redis_server

pytestmark = pytest.mark.skipif(not redis_server.available(), reason="redis-server is not installed")

SCHEMA = nba.FeatureSchema([nba.Numeric("age")])
ARMS = [nba.Arm(f"a{i}") for i in range(3)]


@pytest.fixture(scope="module")
def server():
    with redis_server.redis_server() as s:
        yield s


def _decide_ids(url: str, ns: str, n: int) -> tuple[list[str], int]:
    """In a fresh process ("another host"): n decisions; their ids and the duplicates the state saw."""
    dec = nba.Decider(ARMS, nba.BetaThompson(3), schema=SCHEMA, policy=nba.Thompson(),
                      state=RedisState(url, namespace=ns))
    ids = [dec.decide({"id": f"u{k}", "age": 1.0}).event_id for k in range(n)]
    dec.flush()
    dups = dec.state.stats()["duplicate_ids"]  # type: ignore[attr-defined]
    dec.close()
    return ids, dups


def test_generated_ids_are_unique_across_spawned_processes(server) -> None:
    ns = f"ids-{uuid.uuid4().hex}"
    with mp.get_context("spawn").Pool(4) as pool:
        results = pool.starmap(_decide_ids, [(server.url, ns, 500)] * 4)
    ids = [i for r, _ in results for i in r]
    assert len(ids) == 2000 and len(set(ids)) == 2000
    assert sum(d for _, d in results) == 0
    assert len({i.split("-")[0] for i in ids}) == 4  # one random prefix per process


def test_an_event_id_reused_by_two_processes_is_counted_and_warned(server) -> None:
    ns = f"ids-{uuid.uuid4().hex}"
    a, b = (nba.Decider(ARMS, nba.BetaThompson(3), schema=SCHEMA, policy=nba.Thompson(),
                        state=RedisState(server.url, namespace=ns)) for _ in range(2))
    a.decide({"id": "u", "age": 1.0}, event_id="order-1")
    a.flush()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        b.decide({"id": "u", "age": 1.0}, event_id="order-1")
        b.flush()
    assert b.state.stats()["duplicate_ids"] == 1  # type: ignore[attr-defined]
    assert any(issubclass(w.category, StateWarning) and "unique" in str(w.message) for w in caught)
    a.close()
    b.close()
