"""Fuzzing ``from_bytes`` of every online learner: damaged state loads or raises ModelFormatError, never worse.

Saved states of the four learners (msgpack, see ``nba.bandits``) are
truncated, byte-edited, rewritten field by field (sizes, parameters, counters,
kinds), given huge declared sizes (counts and msgpack length headers that claim
gigabytes the blob does not hold), or replaced by junk. Each mutant runs in a
child with a 1 GiB address space and a time limit (``tests.models.fuzzing``):
``from_bytes`` must raise ``ModelFormatError`` or return a learner that scores
finite values, learns one more update and saves again.
"""

from __future__ import annotations

import random
import struct

import msgspec
import numpy as np
import pytest

import nba
from nba.bandits import UCB1, BetaThompson, LinearThompson, LinUCB, OnlineBandit
from tests.models.fuzzing import (
    Case,
    assert_all_safe,
    error_verdict,
    report,
    run_isolated,
)

CASE_TIMEOUT_S = 10.0
ADDRESS_LIMIT = 1 << 30


def _bases() -> list[bytes]:
    rng = np.random.default_rng(3)
    models = [BetaThompson(4, prior=(2.0, 1.0), draws=8), UCB1(4), LinUCB(3, 4, alpha=0.5, ridge=0.5),
              LinearThompson(3, 4, v=0.4, ridge=2.0, draws=8)]
    for m in models:
        for _ in range(40):
            m.update(int(rng.integers(m.n_arms)), rng.uniform(-1, 1, 4), float(rng.random()))
    return [m.to_bytes() for m in models]


_WEIRD = [0, 1, -1, 2, 3, 4, 5, 2**12, 2**20, 2**20 + 1, 2**31, 2**32 - 1, 2**63 - 1, -(2**63), 2**64 - 1,
          0.0, -0.0, 1.0, -1.0, 0.5, 1e-6, 9.9e-7, 1e-100, 5e-324, 1e300, 1e308, float("inf"), float("-inf"), float("nan"),
          True, None, "", "linucb", "linear_thompson", "x" * 40, b"", b"\x00" * 8, b"\xff" * 64, [], [1.0, 1.0],
          [0.0, 1.0], {}]


def _truncations(bases: list[bytes], rnd: random.Random, n: int) -> list[Case]:
    cases = []
    for b, data in enumerate(bases):
        cuts = set(range(min(len(data), 80))) | {rnd.randrange(len(data)) for _ in range(n)}
        cases += [Case(f"base{b}: truncated at {c}/{len(data)}", data[:c], b) for c in sorted(cuts)]
    return cases


def _byte_edits(bases: list[bytes], rnd: random.Random, n: int) -> list[Case]:
    cases = []
    for b, data in enumerate(bases):
        for _ in range(n):
            buf = bytearray(data)
            ops = []
            for _ in range(rnd.randint(1, 4)):
                pos = rnd.randrange(len(buf))
                op = rnd.randrange(4)
                if op == 0:
                    buf[pos] ^= 1 << rnd.randrange(8)
                elif op == 1:
                    buf[pos] = rnd.choice([0xC0, 0xC4, 0xC5, 0xC6, 0xDC, 0xDD, 0xDE, 0xDF, 0xCF, 0xD3, rnd.randrange(256)])
                elif op == 2:
                    del buf[pos]
                else:
                    buf.insert(pos, rnd.randrange(256))
                ops.append((op, pos))
            cases.append(Case(f"base{b}: byte edits {ops}", bytes(buf), b))
    return cases


def _fields(bases: list[bytes], rnd: random.Random, n: int) -> list[Case]:
    """One or two fields of the decoded state set to weird values, re-encoded as valid msgpack."""
    cases = []
    for b, data in enumerate(bases):
        raw = msgspec.msgpack.decode(data)
        keys = ["format", *(f"state.{k}" for k in raw["state"])]
        for _ in range(n):
            doc = msgspec.msgpack.decode(data)
            changed = {}
            for _ in range(rnd.randint(1, 2)):
                key = rnd.choice(keys)
                value = rnd.choice(_WEIRD)
                if key == "format":
                    doc["format"] = value
                else:
                    doc["state"][key[6:]] = value
                changed[key] = value
            if rnd.random() < 0.05:
                doc["state"]["extra"] = 1
            cases.append(Case(f"base{b}: fields {changed!r}"[:300], msgspec.msgpack.encode(doc), b))
    return cases


def _sizes(bases: list[bytes], rnd: random.Random, n: int) -> list[Case]:
    """Counts that declare huge arrays the blob does not hold, and msgpack headers claiming gigabytes."""
    cases = []
    for b, data in enumerate(bases):
        for _ in range(n):
            doc = msgspec.msgpack.decode(data)
            st = doc["state"]
            if "n_arms" in st:
                st["n_arms"] = rnd.choice([2**10, 2**16, 2**20, 60, 8])
            if "n_features" in st:
                st["n_features"] = rnd.choice([4096, 4000, 1024, 64])
            for k in ("alpha", "beta", "pulls", "sums", "ainv", "b", "theta"):
                if k in st and rnd.random() < 0.5:
                    st[k] = st[k][: rnd.choice([0, 8, 64])]
            cases.append(Case(f"base{b}: declared sizes {st.get('n_arms')} x {st.get('n_features')}",
                              msgspec.msgpack.encode(doc), b))
        # A bin32 / array32 / map32 header claiming 4 GiB with a few bytes behind it, spliced at random places.
        for _ in range(n):
            pos = rnd.randrange(len(data))
            head = rnd.choice([b"\xc6", b"\xdd", b"\xdf", b"\xc5", b"\xdb"])
            claim = struct.pack(">I", rnd.choice([2**32 - 1, 2**31, 2**30, 2**24]))[: 2 if head == b"\xc5" else 4]
            cases.append(Case(f"base{b}: {head.hex()} header claiming {claim.hex()} at {pos}",
                              data[:pos] + head + claim + data[pos : pos + rnd.randint(0, 40)], b))
    return cases


def _junk(bases: list[bytes], rnd: random.Random, n: int) -> list[Case]:
    fixed = [b"", b"\x80", b"\xc0", b"\x82\xa6format\x01\xa5state\xc0", b"\x91" * 10_000 + b"\xc0",
             msgspec.msgpack.encode({"format": 1, "state": {"type": "linear"}})]
    cases = [Case(f"junk: fixed {k}", d, 0) for k, d in enumerate(fixed)]
    for k in range(n):
        size = rnd.choice([1, 8, 64, 1000])
        cases.append(Case(f"junk #{k}: {size} random bytes", bytes(rnd.randrange(256) for _ in range(size)), 0))
    return cases


_KINDS = [BetaThompson, UCB1, LinUCB, LinearThompson]  # the class of each base, in _bases() order


def run_case(case: Case, bases: list[bytes], tmpdir: str, seed: int) -> dict:
    """The fuzzing runner (in a worker process): restore one mutant; a restored learner must keep working."""
    # Mostly the generic loader; sometimes the base's own class, or another (which must refuse the kind).
    cls = (OnlineBandit, _KINDS[case.base], OnlineBandit, _KINDS[seed % 4])[seed % 4]
    try:
        model = cls.from_bytes(case.data)
    except nba.ModelFormatError as e:
        return {"kind": "rejected"} if str(e).strip() else {"kind": "error", "where": "load", "msg": "empty message"}
    except BaseException as e:  # noqa: BLE001 - anything but ModelFormatError is the failure
        return error_verdict("load", e)
    step = "score"
    try:
        d = model.n_features
        x = np.linspace(-1.0, 1.0, d) if d else None
        kw = {"event_id": "e", "draws": 8} if model.exploration == "thompson" else {}
        s = model.score(x)
        step = "pmf"
        p = model.pmf(x, **kw)
        if not (np.isfinite(s).all() and abs(p.sum() - 1.0) < 1e-9):
            return {"kind": "error", "where": step, "type": "non-finite", "msg": f"{s} {p}"}
        step = "update"
        try:
            model.update(0, x, model.check_reward(1.0))
        except nba.SchemaError:
            # A damaged but plausible A^-1 can be indefinite: the update is refused, atomically.
            if model.to_bytes() != OnlineBandit.from_bytes(case.data).to_bytes():
                return {"kind": "error", "where": step, "type": "not atomic", "msg": "a refused update changed state"}
        if not np.isfinite(model.score(x)).all():
            return {"kind": "error", "where": step, "type": "non-finite", "msg": "after one update"}
        step = "to_bytes"
        again = OnlineBandit.from_bytes(model.to_bytes())
        if again.to_bytes() != model.to_bytes():
            return {"kind": "error", "where": step, "type": "mismatch", "msg": "save/restore changed the state"}
    except BaseException as e:  # noqa: BLE001 - any exception from a restored learner is the failure
        return error_verdict(step, e)
    return {"kind": "loaded"}


FAMILIES = {
    "truncate": (_truncations, 60),
    "bytes": (_byte_edits, 200),
    "fields": (_fields, 200),
    "sizes": (_sizes, 40),
    "junk": (_junk, 60),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_mutated_online_states_never_crash_hang_or_exhaust_memory(family, tmp_path):
    build, n = FAMILIES[family]
    seed = 82_026 + list(FAMILIES).index(family)
    bases = _bases()
    cases = build(bases, random.Random(seed), n)
    results = run_isolated(cases, "tests.test_bandits_fuzz:run_case", bases, tmp_path, seed,
                           case_timeout=CASE_TIMEOUT_S, address_limit=ADDRESS_LIMIT)
    counts = assert_all_safe(cases, results)
    report(f"online from_bytes, {family}", counts, len(cases))
    assert counts["crash"] == counts["hang"] == counts["memory"] == 0
    if family in ("fields", "bytes"):
        assert counts.get("loaded", 0) > 0, f"no {family} mutant loaded: the mutations never reach the learners"
