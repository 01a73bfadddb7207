"""examples/starlette_app.py under a real uvicorn with 2 workers sharing a real redis-server.

Decisions, activations and rewards go out on a new connection each, so they land on
whichever worker accepts them: the log must join every activation and reward to its
decision, every worker's model must learn every reward exactly once (duplicates
teach nothing), and the workers' models must end up bit-identical to one another and
to a Decider that joins the shared state afterwards.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from nba.log import ActivationRecord, DecisionRecord, OutcomeRecord, join, read_records
from tests import redis_server

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("redis")
if not redis_server.available():
    pytest.skip("redis-server is not installed (tools/test_services.sh)", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
N_DECISIONS = 240  # every third deferred, then activated
N_DUPLICATES = 30  # second rewards, which "first" aggregation logs but does not learn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # one connection per request
    try:
        conn.request(method, path, None if body is None else json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _ok(port: int, path: str, body: dict) -> dict:
    status, out = _request(port, "POST", path, body)
    assert status == 200, (path, body, out)
    return out


def _workers(port: int, until, timeout: float = 20.0) -> dict[int, dict]:
    """/health of each of the 2 workers (by pid), polled until ``until(health)`` holds for both."""
    seen: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, h = _request(port, "GET", "/health")
        except OSError:
            time.sleep(0.05)
            continue
        assert status == 200, h
        seen[h["pid"]] = h
        if len(seen) == 2 and all(until(x) for x in seen.values()):
            return seen
        time.sleep(0.01)
    raise AssertionError(f"workers did not get there within {timeout} s: {seen}")


def _writer(path: Path) -> str:
    return path.name.split("-")[-2]  # decisions-<stamp>-<writer id>-<n>.jsonl: one writer per worker


@pytest.mark.slow
def test_uvicorn_two_workers_share_pending_decisions_and_learning_through_redis(tmp_path, monkeypatch) -> None:
    port = _free_port()
    logs = tmp_path / "logs"
    rng = random.Random(7)
    with redis_server.redis_server() as redis:
        env = {**os.environ, "NBA_LOG_DIR": str(logs), "NBA_REDIS_URL": redis.url}
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "examples.starlette_app:app", "--workers", "2",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--timeout-graceful-shutdown", "10"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            try:
                _workers(port, lambda h: True)  # both workers imported the app and serve
            except AssertionError:
                server.kill()
                raise AssertionError(server.communicate()[1].decode()[-3000:]) from None

            def decide(k: int) -> tuple[str, bool, float]:
                defer = k % 3 == 0
                d = _ok(port, "/decide", {"profile": {"id": f"u{k}", "age": 15 + k % 60, "segment": "gold"},
                                          "context": {"hour": k % 24}, "channel": "web", "defer": defer})
                return d["event_id"], defer, (k % 5) / 4.0

            with ThreadPoolExecutor(8) as pool:
                made = list(pool.map(decide, range(N_DECISIONS)))
                deferred = [eid for eid, defer, _ in made if defer]
                rng.shuffle(deferred)
                list(pool.map(lambda eid: _ok(port, "/activate", {"event_id": eid}), deferred))
                rewards = [(eid, value) for eid, _, value in made]
                rng.shuffle(rewards)
                list(pool.map(lambda r: _ok(port, "/reward", {"event_id": r[0], "value": r[1]}), rewards))
                again = rng.sample(rewards, N_DUPLICATES)
                list(pool.map(lambda r: _ok(port, "/reward", {"event_id": r[0], "value": 1.0 - r[1]}), again))
            assert _request(port, "POST", "/activate", {"event_id": "no-such-id"})[0] == 404

            # Every worker learns every first reward once, from the stream, in the same order.
            health = _workers(port, lambda h: h["state"]["lessons"] >= N_DECISIONS)
        finally:
            server.send_signal(signal.SIGTERM)  # graceful: each worker's lifespan closes its Decider
            try:
                err = server.communicate(timeout=30)[1].decode()
            except subprocess.TimeoutExpired:
                server.kill()
                raise
        assert server.returncode == 0 and "Traceback" not in err, err[-3000:]
        for h in health.values():
            assert h["model_version"] == f"LinUCB@{N_DECISIONS}"
            s = h["state"]
            assert (s["lessons"], s["duplicate_ids"], s["dropped"], s["redis_errors"], s["connected"]) == (
                N_DECISIONS, 0, 0, 0, True), s
        assert len({h["learned"] for h in health.values()}) == 1  # bit-identical models

        # The example built afresh (here, after the workers stopped) joins the shared state: same model.
        monkeypatch.setenv("NBA_LOG_DIR", str(tmp_path / "late"))
        monkeypatch.setenv("NBA_REDIS_URL", redis.url)
        spec = importlib.util.spec_from_file_location("nba_example_starlette_app", ROOT / "examples" / "starlette_app.py")
        late = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(late)
        try:
            assert late.MODEL.updates == N_DECISIONS
            assert hashlib.sha256(late.MODEL.to_bytes()).hexdigest()[:16] == next(iter(health.values()))["learned"]
        finally:
            late.DECIDER.close()

    writer_of: dict[tuple[str, str], str] = {}  # (record kind, event id) -> the worker that wrote it first
    for path in logs.iterdir():
        for rec in read_records(path):
            if isinstance(rec, (DecisionRecord, ActivationRecord, OutcomeRecord)):
                writer_of.setdefault((type(rec).__name__, rec.event_id), _writer(path))
    assert len(set(writer_of.values())) == 2  # both workers served
    ids = [eid for eid, _, _ in made]
    assert len(set(ids)) == N_DECISIONS
    records = list(read_records(logs))
    activated = {r.event_id: r.ts for r in records if isinstance(r, ActivationRecord)}
    assert sorted(activated) == sorted(deferred)
    outcomes = [r for r in records if isinstance(r, OutcomeRecord)]
    assert len(outcomes) == N_DECISIONS + N_DUPLICATES

    joined = {j.decision.event_id: j for j in join(logs, reward_window=3600, aggregate="first")}
    assert set(joined) == set(ids)
    for eid, defer, value in made:
        j = joined[eid]
        assert j.observed and j.reward == value, (eid, j)
        assert j.start == (activated[eid] if defer else j.decision.ts)
    # The point of the shared state: many activations and rewards landed on another worker than their decision.
    moved = [sum(writer_of[kind, eid] != writer_of["DecisionRecord", eid] for eid in of)
             for kind, of in (("ActivationRecord", deferred), ("OutcomeRecord", ids))]
    assert all(m > 0 for m in moved), moved
