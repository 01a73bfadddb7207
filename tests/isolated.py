"""Run a snippet in a fresh interpreter, so that a crash fails one test instead of the whole run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def assert_prints_ok(code: str, timeout: float = 60) -> None:
    """``code`` (run from the repository root) exits 0 and prints exactly ``ok``."""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert res.returncode == 0 and res.stdout.strip() == "ok", (res.returncode, res.stdout, res.stderr[-2000:])
