"""Vowpal Wabbit's dsjson from the decision log, so ``vw --cb_explore_adf --dsjson`` trains on it directly."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec

from nba.errors import LogError
from nba.log.reader import JoinedExample, LogPaths, ReadReport, _check_on_error, _join
from nba.log.records import _ENCODE_ERRORS, LogWarning, _enc_hook


class _DsOutcome(msgspec.Struct):
    v: float
    Timestamp: str


class _VWState(msgspec.Struct):
    m: str


class _DsjsonEvent(msgspec.Struct):
    """One dsjson line. Field order matters: VW applies the _label_* fields when "c" ends."""

    label_cost: float = msgspec.field(name="_label_cost")
    label_probability: float = msgspec.field(name="_label_probability")
    label_action: int = msgspec.field(name="_label_Action")
    label_index: int = msgspec.field(name="_labelIndex")
    o: list[_DsOutcome] = msgspec.field(name="o")
    timestamp: str = msgspec.field(name="Timestamp")
    version: str = msgspec.field(name="Version")
    event_id: str = msgspec.field(name="EventId")
    a: list[int] = msgspec.field(name="a")
    c: dict[str, Any] = msgspec.field(name="c")
    p: list[float] = msgspec.field(name="p")
    vw_state: _VWState = msgspec.field(name="VWState")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_vw_keys(features: Mapping[str, Any], what: str, event_id: str) -> None:
    """VW's JSON parser drops or reinterprets keys starting with "_" (labels, _multi, _text...)."""
    for ns, feats in features.items():
        if ns.startswith("_"):
            raise LogError(
                f"event {event_id!r}: {what} namespace {ns!r} starts with '_', which VW's JSON parser "
                "treats as a reserved key; rename the namespace"
            )
        if not isinstance(feats, Mapping):
            continue  # a bare value: VW reads it as a feature of the default namespace
        for name in feats:
            if name.startswith("_"):
                raise LogError(
                    f"event {event_id!r}: {what} feature {ns!r}/{name!r} starts with '_', which VW's JSON "
                    "parser ignores or reinterprets; rename the feature"
                )


class ExportReport(msgspec.Struct, frozen=True):
    """What ``export_dsjson`` wrote, and what it left out and why.

    ``events``: dsjson lines written. ``skipped``: decisions left out because
    something about them was wrong (``observed_only`` drops are not counted).
    ``bad_lines``: log lines the reader skipped (corrupt or torn). ``reasons``:
    count per reason, for lines and decisions alike ("corrupt line", "no
    catalogue", "action not in catalogue", ...).
    """

    events: int
    skipped: int = 0
    bad_lines: int = 0
    reasons: dict[str, int] = {}


class _Skip(Exception):
    """A decision the export cannot write: ``reason`` for the report, ``message`` for on_error='raise'."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _dsjson_event(ex: JoinedExample, bad_catalogs: dict[int, str | None], no_schema: set[str]) -> _DsjsonEvent:
    """The dsjson line of one joined decision, or ``_Skip`` saying why there is none."""
    d = ex.decision
    eid = d.event_id
    cat = ex.catalog
    if cat is None:
        raise _Skip(
            "no catalogue",
            f"event {eid!r}: no catalogue record for catalog_id={d.catalog_id!r}, so its actions "
            "have no features to export; call DecisionLog.register_catalog() before logging decisions",
        )
    if eid in no_schema and d.x is not None:
        raise _Skip("schema missing", f"event {eid!r}: no schema record defines its vector {d.schema_id!r}")
    key = id(cat)
    if key not in bad_catalogs:
        bad_catalogs[key] = None
        try:
            for arm_id, arm_features in cat.arms.items():
                if not isinstance(arm_features, Mapping):
                    raise LogError(f"arm {arm_id!r} of catalogue {cat.catalog_id!r} is not a feature dict")
                _check_vw_keys(arm_features, f"arm {arm_id!r}", eid)
        except LogError as e:
            bad_catalogs[key] = str(e)
    if bad_catalogs[key] is not None:
        raise _Skip("reserved key", str(bad_catalogs[key]))
    try:
        _check_vw_keys(d.features, "decision", eid)
    except LogError as e:
        raise _Skip("reserved key", str(e)) from None
    try:
        multi = [cat.arms[a] for a in d.actions]
    except KeyError as e:
        raise _Skip(
            "action not in catalogue",
            f"event {eid!r}: action {e.args[0]!r} is not in catalogue {cat.catalog_id!r}; "
            "register the catalogue with every arm that can be offered",
        ) from None
    n = len(d.actions)
    if len(d.pmf) != n:
        raise _Skip("pmf does not match actions", f"event {eid!r}: {len(d.pmf)} pmf entries for {n} actions")
    if not d.chosen or not 0 <= d.chosen[0] < n:
        raise _Skip("chosen out of range", f"event {eid!r}: chosen={d.chosen!r} does not index actions")
    if not 0.0 < d.probability <= 1.0:
        raise _Skip("bad probability", f"event {eid!r}: probability {d.probability!r} is not in (0, 1]")
    if not math.isfinite(ex.reward):
        raise _Skip("non-finite reward", f"event {eid!r}: reward {ex.reward!r} is not finite")
    try:
        stamp = _iso(d.ts)
        outs = [_DsOutcome(o.value, _iso(o.ts)) for o in ex.outcomes]
    except (ValueError, OverflowError, OSError):
        raise _Skip(
            "timestamp out of range", f"event {eid!r}: ts {d.ts!r} (or an outcome's) is not a calendar date"
        ) from None
    taken = d.chosen[0]
    order = [taken]
    seen = {taken}
    for i in d.chosen[1:]:
        if i not in seen and 0 <= i < n:
            order.append(i)
            seen.add(i)
    order.extend(i for i in range(n) if i not in seen)
    c: dict[str, Any] = dict(d.features)
    c["_multi"] = multi
    return _DsjsonEvent(
        label_cost=-ex.reward if ex.reward else 0.0,  # no -0.0 in the file
        label_probability=d.probability,
        label_action=taken + 1,
        label_index=taken,
        o=outs,
        timestamp=stamp,
        version="1",
        event_id=eid,
        a=[i + 1 for i in order],
        c=c,
        p=[d.pmf[i] for i in order],
        vw_state=_VWState(d.model_version),
    )


def export_dsjson(
    directory: LogPaths,
    out_path: str | os.PathLike[str],
    *,
    reward_window: timedelta | float | None = None,
    default_reward: float = 0.0,
    aggregate: str = "sum",
    observed_only: bool = False,
    on_error: str = "skip",
) -> ExportReport:
    """Write the joined log as VW dsjson lines to ``out_path``; returns an ``ExportReport``.

    ``_label_cost`` is ``-reward`` (VW minimizes cost, nba maximizes reward);
    ``a`` lists 1-based action ids, the taken one first, and ``p`` their
    probabilities in that order; ``c`` holds the decision's namespaces and
    ``_multi`` the catalogue features of each action, in ``actions`` order.
    Joining follows ``join`` (``observed_only`` drops decisions without outcome).
    With ``on_error="skip"`` (default) a corrupt line or a decision that cannot
    be exported (no catalogue, a "_" key VW would misread, an action missing from
    its catalogue...) is left out, counted in the report and warned about once;
    with ``"raise"`` the first one raises ``LogError`` and nothing is written.
    The file is written to a temporary name and renamed, so it is never half there.
    """
    _check_on_error(on_error)
    out = os.fspath(out_path)
    encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
    tmp = f"{out}.tmp-{os.getpid()}"
    report = ReadReport()
    no_schema: set[str] = set()
    bad_catalogs: dict[int, str | None] = {}
    count = skipped = 0
    buf = bytearray()
    try:
        with open(tmp, "wb") as f:
            joined = _join(directory, reward_window, default_reward, aggregate, on_error, report, no_schema)
            for ex in joined:
                if observed_only and not ex.observed:
                    continue
                try:
                    event = _dsjson_event(ex, bad_catalogs, no_schema)
                    try:
                        encoder.encode_into(event, buf)
                    except _ENCODE_ERRORS as e:
                        raise _Skip("unencodable", f"event {ex.decision.event_id!r}: {e}") from None
                except _Skip as s:
                    if on_error == "raise":
                        raise LogError(s.message) from None
                    skipped += 1
                    report._count(s.reason)
                    continue
                buf.append(10)
                f.write(buf)
                count += 1
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if skipped:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(report.reasons.items()))
        warnings.warn(
            f"export_dsjson({directory!r}) left out {skipped} decisions ({reasons}); "
            "pass on_error='raise' to stop at the first with its details",
            LogWarning,
            stacklevel=2,
        )
    return ExportReport(count, skipped, report.corrupt_lines + report.torn_lines, dict(report.reasons))
