"""One worker machinery for every loader fuzz test: mutants run in capped child processes.

A fuzz test builds ``Case`` objects (the mutant's bytes and what is required of
it) and a *runner*, a module-level function ``runner(case, context, tmpdir,
seed) -> verdict`` that loads one mutant and checks what loaded. ``run_isolated``
runs every case in child processes with an address-space limit
(``RLIMIT_AS``) and a per-case time limit, so that

* a segfault or abort is a ``crash`` verdict for the case that caused it,
* a case that does not answer in time is a ``hang`` (the child is killed),
* an allocation sized by a corrupted count fails fast as ``MemoryError`` (the
  runner's exception verdict, counted as ``memory``) instead of exhausting
  the machine,

and the remaining cases still run in a fresh child. ``assert_all_safe`` then
requires every verdict to be ``rejected`` (the loader's typed error, with a
message) or ``loaded`` (the model then behaved), and returns the counts.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 120.0
MAX_RESTARTS = 40
GOOD = ("rejected", "loaded")


@dataclass(frozen=True)
class Case:
    """One mutant: its bytes, how it was made, how to load it, and what is required of it."""

    label: str
    data: bytes
    base: int  # index of the intact model it came from
    via: str = "bytes"  # "bytes" or "path": how the runner hands it to the loader
    require: str = "safe"  # "safe" | "reject" | "reject_or_identical" (runner-defined)


def error_verdict(where: str, e: BaseException) -> dict:
    """The verdict of an unexpected exception; a MemoryError is its own kind (allocation beyond the cap)."""
    kind = "memory" if isinstance(e, MemoryError) else "error"
    return {"kind": kind, "where": where, "type": type(e).__name__, "msg": str(e)[:300]}


def worker(runner_ref: str, cases_path: str, start: int, address_limit: int) -> None:
    """Child process entry: cap the address space, run cases from ``start``, announcing each before running it."""
    import faulthandler
    import resource
    import tempfile

    faulthandler.enable()  # a segfault prints the stack to stderr, which the parent reports
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = address_limit if hard == resource.RLIM_INFINITY else min(address_limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    module, _, name = runner_ref.partition(":")
    runner = getattr(importlib.import_module(module), name)
    with open(cases_path, "rb") as f:
        payload = pickle.load(f)
    cases, context, seed = payload["cases"], payload["context"], payload["seed"]
    out = sys.stdout
    with tempfile.TemporaryDirectory() as tmpdir:
        for i in range(start, len(cases)):
            out.write(f"S {i}\n")
            out.flush()
            t = time.perf_counter()
            try:
                verdict = runner(cases[i], context, tmpdir, seed + i)
            except BaseException as e:  # noqa: BLE001 - the runner's own failure is the case's verdict
                verdict = error_verdict("runner", e)
            verdict["seconds"] = round(time.perf_counter() - t, 4)
            out.write(f"R {i} {json.dumps(verdict)}\n")
            out.flush()
    out.write("DONE\n")
    out.flush()


def run_isolated(cases: list[Case], runner_ref: str, context: Any, tmp_path: Path, seed: int, *,
                 case_timeout: float = 30.0, address_limit: int = 4 << 30) -> dict[int, dict]:
    """Run every case in child processes; a crash or hang is a verdict for the case that caused it.

    ``runner_ref`` is "module:function" (importable from the repository root);
    ``context`` is pickled to the children with the cases.
    """
    path = tmp_path / "cases.pkl"
    with open(path, "wb") as f:
        pickle.dump({"cases": cases, "context": context, "seed": seed}, f)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    code = ("import sys; from tests.models.fuzzing import worker; "
            "worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))")
    results: dict[int, dict] = {}
    start = 0
    restarts = 0
    while start < len(cases):
        errpath = tmp_path / f"stderr-{start}.txt"
        with open(errpath, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", code, runner_ref, str(path), str(start), str(address_limit)],
                stdout=subprocess.PIPE, stderr=err, cwd=ROOT, env=env,
            )
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        buf = b""
        current: int | None = None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        finished = False
        while True:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                proc.kill()
                proc.wait()
                if current is None:
                    pytest.fail(f"fuzz worker did not start within {STARTUP_TIMEOUT_S} s: {errpath.read_text()[-2000:]}")
                results[current] = {"kind": "hang", "msg": f"no answer within {case_timeout} s (endless loop?)"}
                break
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                rc = proc.wait()
                if current is not None and current not in results:
                    tail = errpath.read_text(errors="replace")[-600:]
                    results[current] = {"kind": "crash", "msg": f"worker died with exit code {rc}: {tail}"}
                elif not finished:
                    pytest.fail(f"fuzz worker exited ({rc}) before running any case: {errpath.read_text()[-2000:]}")
                break
            buf += chunk
            *done, buf = buf.split(b"\n")
            for line in done:
                if line.startswith(b"S "):
                    current = int(line[2:])
                    deadline = time.monotonic() + case_timeout
                elif line.startswith(b"R "):
                    i, _, verdict = line[2:].partition(b" ")
                    results[int(i)] = json.loads(verdict)
                elif line == b"DONE":
                    finished = True
        proc.stdout.close()
        if finished:
            break
        start = (current if current is not None else start) + 1
        restarts += 1
        if restarts > MAX_RESTARTS:
            break
    return results


def assert_all_safe(cases: list[Case], results: dict[int, dict]) -> dict[str, int]:
    """Fail listing every case whose verdict is neither ``rejected`` nor ``loaded``; the counts of each kind.

    ``crash``, ``hang`` and ``memory`` (MemoryError) are counted apart from other
    errors; ``max_seconds`` is the slowest case.
    """
    counts: dict[str, int] = {"crash": 0, "hang": 0, "memory": 0}
    failures = []
    slowest = 0.0
    for i, case in enumerate(cases):
        v = results.get(i, {"kind": "not run", "msg": "too many crashes before it"})
        counts[v["kind"]] = counts.get(v["kind"], 0) + 1
        slowest = max(slowest, float(v.get("seconds", 0.0)))
        if v["kind"] not in GOOD:
            failures.append(f"[{i}] {case.label} (require={case.require}, via={case.via}): {v}")
    counts["max_seconds"] = slowest  # type: ignore[assignment]
    if failures:
        shown = "\n".join(failures[:25])
        pytest.fail(f"{len(failures)} of {len(cases)} mutants misbehaved {counts}:\n{shown}", pytrace=False)
    return counts


def report(name: str, counts: dict[str, Any], n: int) -> None:
    """Print the outcome counts (shown with ``pytest -s``; also kept in the junit properties when recorded)."""
    print(f"\n[fuzz] {name}: {n} mutants: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
