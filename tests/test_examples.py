"""examples/: the WSGI app answers /decide and /reward, called directly (no network)."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import pytest

import nba

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
    recs = list(nba.read_records(tmp_path))
    assert [x.event_id for x in recs if isinstance(x, nba.DecisionRecord)] == [d["event_id"]]
    assert [(x.event_id, x.value) for x in recs if isinstance(x, nba.OutcomeRecord)] == [(d["event_id"], 1.0)]


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
