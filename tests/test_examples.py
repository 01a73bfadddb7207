"""examples/: the WSGI app answers /decide and /reward, called directly and under a real gunicorn on loopback."""

from __future__ import annotations

import http.client
import importlib.util
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from nba.log import DecisionRecord, OutcomeRecord, join, read_records

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def wsgi(tmp_path, monkeypatch):
    monkeypatch.setenv("NBA_LOG_DIR", str(tmp_path))
    spec = importlib.util.spec_from_file_location("nba_example_wsgi_app", EXAMPLES / "wsgi_app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    yield mod
    mod.DECIDER.close()


def _call(mod, method: str, path: str, body: object | bytes) -> tuple[str, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "CONTENT_LENGTH": str(len(data)), "wsgi.input": io.BytesIO(data)}
    got = {}

    def start_response(status, headers):
        got["status"] = status
        got["headers"] = dict(headers)

    out = b"".join(mod.app(environ, start_response))
    assert got["headers"]["Content-Type"] == "application/json"
    assert int(got["headers"]["Content-Length"]) == len(out)
    return got["status"], json.loads(out)


def test_decide_then_reward_round_trip_is_logged(wsgi, tmp_path) -> None:
    status, d = _call(wsgi, "POST", "/decide", {"profile": {"id": "u1", "age": 30, "segment": "gold"},
                                                "context": {"hour": 9}, "channel": "web"})
    assert status == "200 OK"
    assert d["arm"] in ("card", "loan", "savings") and d["arm"] in d["actions"]
    assert d["payload"] == wsgi.CATALOG.payload(wsgi.CATALOG.index(d["arm"]), "web")
    assert sum(d["pmf"]) == pytest.approx(1.0)
    status, r = _call(wsgi, "POST", "/reward", {"event_id": d["event_id"], "value": 1.0})
    assert (status, r) == ("200 OK", {"ok": True})
    wsgi.DECIDER.flush()
    recs = list(read_records(tmp_path))
    assert [x.event_id for x in recs if isinstance(x, DecisionRecord)] == [d["event_id"]]
    assert [(x.event_id, x.value) for x in recs if isinstance(x, OutcomeRecord)] == [(d["event_id"], 1.0)]


def test_minor_is_not_offered_the_loan(wsgi) -> None:
    for i in range(20):
        _, d = _call(wsgi, "POST", "/decide", {"profile": {"id": f"k{i}", "age": 15, "segment": "bronze"}, "context": {"hour": 1}})
        assert "loan" not in d["actions"]


def test_bad_requests_get_400_or_404(wsgi) -> None:
    assert _call(wsgi, "GET", "/decide", b"")[0] == "404 Not Found"
    assert _call(wsgi, "POST", "/decide", b"not json")[0] == "400 Bad Request"
    status, err = _call(wsgi, "POST", "/decide", {"profile": {"id": "u", "age": "old", "segment": "gold"}})
    assert status == "400 Bad Request" and "SchemaError" in err["error"]
    assert _call(wsgi, "POST", "/reward", {"event_id": "e", "value": "x"})[0] == "400 Bad Request"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, path: str, body: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _reward_of(unit: str) -> float:
    return float(sum(map(ord, unit)) % 5) / 4.0


@pytest.mark.slow
def test_gunicorn_preload_two_workers_every_reward_joins_its_own_decision(tmp_path) -> None:
    """The example under a real gunicorn, Decider and log built before fork: 2 workers, one log directory."""
    port = _free_port()
    logs = tmp_path / "logs"
    env = {**os.environ, "NBA_LOG_DIR": str(logs)}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--preload", "-w", "2", "-b", f"127.0.0.1:{port}",
         "--chdir", str(EXAMPLES), "--graceful-timeout", "10", "wsgi_app:app"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()[-2000:]
                time.sleep(0.1)

        def session(worker: int) -> list[tuple[str, str]]:
            made = []
            for k in range(75):
                unit = f"w{worker}-{k}"
                status, d = _post(port, "/decide", {"profile": {"id": unit, "age": 20 + k % 50, "segment": "gold"},
                                                    "context": {"hour": k % 24}, "channel": "web"})
                assert status == 200, d
                made.append((unit, d["event_id"]))
            for unit, eid in made:  # the reward lands on whichever worker accepts it
                assert _post(port, "/reward", {"event_id": eid, "value": _reward_of(unit)})[0] == 200
            return made

        with ThreadPoolExecutor(4) as pool:
            made = [m for ms in pool.map(session, range(4)) for m in ms]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    ids = [eid for _, eid in made]
    assert len(set(ids)) == len(ids) == 300
    joined = {j.decision.event_id: j for j in join(logs)}
    assert set(joined) == set(ids)
    assert all(joined[eid].observed and joined[eid].reward == _reward_of(unit) for unit, eid in made)
    writers = {p.name for p in logs.iterdir()
               if any(isinstance(r, DecisionRecord) for r in read_records(p))}
    assert len(writers) >= 2  # both workers decided, each in segments of its own
