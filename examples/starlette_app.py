"""A decisioning service on Starlette (ASGI) whose workers share what they learn through Redis.

POST /decide    {"profile": {...}, "context": {...}, "channel": "web", "defer": false}  -> the decision as JSON
POST /activate  {"event_id": "..."}                  -> {"ok": true}; 404 for an id the state does not know
POST /reward    {"event_id": "...", "value": 1.0}    -> {"ok": true}
GET  /health    -> this worker's pid, its model's version and digest, and the state backend's counters

Each worker process builds its Decider at import: an online LinUCB bandit explored
with UCB, logging to ``$NBA_LOG_DIR`` (default: a ``decisions/`` directory next to this
file; every worker writes segments of its own). With ``$NBA_REDIS_URL`` set, the
Decider keeps its pending decisions in ``RedisState``: any worker can activate or
reward any worker's decision, and every worker's model learns every reward. Without
it, each worker's state is its own (``EmbeddedState``).

Run (from the repository root, with ``pip install starlette uvicorn``)::

    redis-server --port 6379 --save '' &
    NBA_REDIS_URL=redis://127.0.0.1:6379/0 uvicorn examples.starlette_app:app --workers 4
    curl -d '{"profile": {"id": "u1", "age": 30, "segment": "gold"}, "context": {"hour": 9}}' localhost:8000/decide
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import nba
from nba.state import EmbeddedState, RedisState

SCHEMA = nba.FeatureSchema(
    [
        nba.Numeric("age", source="profile"),
        nba.Categorical("segment", ["gold", "silver", "bronze"]),
        nba.Numeric("hour", source="context"),
    ]
)
CATALOG = nba.Catalog(
    [
        nba.Arm("card", features={"fee": 0.0}, channels={"web": {"text": "Get our card"}, "*": "card"}),
        nba.Arm("loan", features={"fee": 50.0}, channels={"*": "loan"}, eligibility="age >= 18"),
        nba.Arm("savings", features={"fee": 0.0}, channels={"*": "savings"}),
    ],
    SCHEMA,
)
MODEL = nba.LinUCB(len(CATALOG), SCHEMA.n_columns, alpha=0.5)
STATE = RedisState(os.environ["NBA_REDIS_URL"]) if os.environ.get("NBA_REDIS_URL") else EmbeddedState()
DECIDER = nba.Decider(
    CATALOG, MODEL, policy=nba.UCB(), fallback="savings", state=STATE,
    log=nba.DecisionLog(os.environ.get("NBA_LOG_DIR") or Path(__file__).resolve().parent / "decisions"),
)


def _json(obj: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(obj), status, media_type="application/json")


async def _body(request: Request) -> dict[str, Any]:
    body = await request.json()
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


async def decide(request: Request) -> Response:
    b = await _body(request)  # decide() makes no network call and takes microseconds: no thread hop
    return _json(DECIDER.decide(b.get("profile"), b.get("context"), channel=b.get("channel"),
                                defer=b.get("defer", False)))


async def activate(request: Request) -> Response:
    b = await _body(request)  # activate() and reward() make Redis round trips: off the event loop
    await run_in_threadpool(DECIDER.activate, b["event_id"])
    return _json({"ok": True})


async def reward(request: Request) -> Response:
    b = await _body(request)
    await run_in_threadpool(DECIDER.reward, b["event_id"], b["value"])
    return _json({"ok": True})


async def health(request: Request) -> Response:
    stats = STATE.stats() if isinstance(STATE, RedisState) else {"remembered": len(STATE)}
    learned = hashlib.sha256(MODEL.to_bytes()).hexdigest()[:16]  # with Redis: alike on every worker once synced
    return _json({"pid": os.getpid(), "model_version": DECIDER.model_version, "learned": learned, "state": stats})


async def _error(request: Request, exc: Exception) -> Response:
    status = 404 if isinstance(exc, nba.UnknownEventError) else 503 if isinstance(exc, nba.LogError) else 400
    return _json({"error": f"{type(exc).__name__}: {exc}"}, status)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    DECIDER.close()  # writes the state's queue, flushes and closes the log


app = Starlette(
    routes=[Route("/decide", decide, methods=["POST"]), Route("/activate", activate, methods=["POST"]),
            Route("/reward", reward, methods=["POST"]), Route("/health", health, methods=["GET"])],
    # UnknownEventError (a KeyError) -> 404, LogError (the server's fault) -> 503, bad input -> 400
    exception_handlers={nba.NbaError: _error, ValueError: _error, KeyError: _error, TypeError: _error},
    lifespan=lifespan,
)
