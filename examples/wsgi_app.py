"""A minimal decisioning service on the standard library's WSGI server.

POST /decide  {"profile": {...}, "context": {...}, "channel": "web"}  -> the decision as JSON
POST /reward  {"event_id": "...", "value": 1.0}                       -> {"ok": true}

The Decider is built once, at import, and shared by every request thread; under
``gunicorn --preload -w N`` it is built before the workers fork, and each worker then
issues its own event ids and writes its own log segments. It
scores with the model file named by ``$NBA_MODEL`` (e.g. a LightGBM model trained
over the catalogue's feature names) when it is set, else with an online LinUCB bandit that
learns from the rewards posted here. Decisions are logged to ``$NBA_LOG_DIR``
(default: a ``decisions/`` directory next to this file).

Run: ``python examples/wsgi_app.py`` and
``curl -d '{"profile": {"id": "u1", "age": 30, "segment": "gold"}, "context": {"hour": 9}}' localhost:8000/decide``;
with several worker processes: ``gunicorn --preload -w 2 --chdir examples wsgi_app:app``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec

import nba

HERE = Path(__file__).resolve().parent
MODEL_PATH = Path(os.environ["NBA_MODEL"]) if os.environ.get("NBA_MODEL") else None
MAX_BODY = 64 * 1024

SCHEMA = nba.FeatureSchema(
    [
        nba.Numeric("age", source="profile"),
        nba.Categorical("segment", ["gold", "silver", "bronze"]),
        nba.Numeric("hour", source="context"),
    ]
)
ARMS = [
    nba.Arm("card", features={"fee": 0.0}, value=1.0, channels={"web": {"text": "Get our card"}, "*": "card"}),
    nba.Arm("loan", features={"fee": 50.0}, value=2.0, channels={"web": {"text": "Need a loan?"}, "*": "loan"},
            eligibility="age >= 18"),
    nba.Arm("savings", features={"fee": 0.0}, value=1.5, channels={"*": "savings"}),
]
CATALOG = nba.Catalog(ARMS, SCHEMA, arbitration="score")


def build_decider(log_dir: str | os.PathLike[str] | None = None) -> nba.Decider:
    """The service's Decider: the model in $NBA_MODEL if set, else an online LinUCB bandit."""
    if MODEL_PATH is not None:
        model: Any = nba.load_model(str(MODEL_PATH))
    else:
        model = nba.LinUCB(len(CATALOG), SCHEMA.n_columns, alpha=0.5)
    directory = log_dir if log_dir is not None else os.environ.get("NBA_LOG_DIR", str(HERE / "decisions"))
    return nba.Decider(CATALOG, model, policy=nba.EpsilonGreedy(0.1), log=nba.DecisionLog(directory),
                       fallback="savings")


DECIDER = build_decider()  # built once, at import; shared by every request thread


def _read_json(environ: dict[str, Any]) -> dict[str, Any]:
    try:
        n = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ValueError("bad Content-Length") from None
    if n <= 0 or n > MAX_BODY:
        raise ValueError(f"body must be 1..{MAX_BODY} bytes of JSON")
    body = json.loads(environ["wsgi.input"].read(n))
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def _respond(start_response: Callable[..., Any], status: str, obj: Any) -> list[bytes]:
    data = msgspec.json.encode(obj)
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The WSGI application."""
    path = environ.get("PATH_INFO", "")
    if environ.get("REQUEST_METHOD") != "POST" or path not in ("/decide", "/reward"):
        return _respond(start_response, "404 Not Found", {"error": "POST /decide or POST /reward"})
    try:
        body = _read_json(environ)
        if path == "/decide":
            d = DECIDER.decide(body.get("profile"), body.get("context"), channel=body.get("channel"))
            return _respond(start_response, "200 OK", msgspec.to_builtins(d))
        # An event id this worker did not make (another worker's decision) is logged for
        # nba.log.join all the same: reward() does not raise for it.
        DECIDER.reward(body["event_id"], body["value"])
        return _respond(start_response, "200 OK", {"ok": True})
    except nba.LogError as e:  # the server's fault (disk full, ...), not the client's
        return _respond(start_response, "503 Service Unavailable", {"error": f"{type(e).__name__}: {e}"})
    except (ValueError, KeyError) as e:  # bad JSON, a missing field, or a typed nba error (SchemaError, ...)
        return _respond(start_response, "400 Bad Request", {"error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    from wsgiref.simple_server import make_server

    with make_server("127.0.0.1", int(os.environ.get("PORT", "8000")), app) as server:
        print(f"nba example on http://127.0.0.1:{server.server_port}/decide")
        server.serve_forever()
