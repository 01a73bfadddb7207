"""The README's Python examples type-check against the package, as a user's mypy sees them.

Every ```python block that is valid Python becomes one function in a temporary
module; names a block uses but never assigns (``profile``, ``buf``: placeholders
for the reader's own values) become ``Any`` parameters. One mypy run (``--strict``,
the cache kept under the temp directory) checks the module; the package itself is
read but its own errors are not reported here (``mypy`` over ``src/nba`` does that).
Blocks that are not valid Python (``{...}, ...`` as an elided dict) are skipped.
"""

from __future__ import annotations

import ast
import builtins
import re
import tempfile
from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
_ERROR = re.compile(r"^[^:]+:(\d+): error: (.*)$", re.M)


class Block:
    """One README code block: where it starts, its code, the names it leaves to the reader."""

    def __init__(self, line: int, code: str, free: list[str]) -> None:
        self.line, self.code, self.free = line, code, free
        self.errors: list[str] = []


def _blocks() -> list[Block]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = []
    for m in _BLOCK.finditer(text):
        try:
            tree = ast.parse(m.group(1))
        except SyntaxError:
            continue
        stored = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        loaded = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        free = sorted(loaded - stored - set(dir(builtins)) - {"nba", "datetime"})
        blocks.append(Block(text.count("\n", 0, m.start()) + 2, m.group(1), free))
    return blocks


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> list[Block]:
    """Every block, with the mypy errors reported inside it (one mypy run for all)."""
    blocks = _blocks()
    lines = ["from datetime import datetime", "from typing import Any", "", "import nba", ""]
    spans = []
    for b in blocks:
        params = ", ".join(f"{n}: Any" for n in b.free)
        lines.append(f"def readme_line_{b.line}({params}) -> None:")
        start = len(lines) + 1
        lines += [f"    {s}" if s.strip() else "" for s in b.code.splitlines()]
        spans.append((start, len(lines), b))
        lines += ["", ""]
    tmp = tmp_path_factory.mktemp("readme")
    (tmp / "readme_examples.py").write_text("\n".join(lines), encoding="utf-8")
    cache = Path(tempfile.gettempdir()) / "nba-mypy-cache-readme"
    (tmp / "mypy.ini").write_text(
        f"[mypy]\nstrict = True\nmypy_path = {ROOT / 'src'}\ncache_dir = {cache}\n"
        "[mypy-nba.*]\nfollow_imports = silent\n",
        encoding="utf-8",
    )
    out, err, status = api.run(["--config-file", str(tmp / "mypy.ini"), str(tmp / "readme_examples.py")])
    assert status in (0, 1), f"mypy did not run: {err or out}"
    for m in _ERROR.finditer(out):
        n = int(m.group(1))
        for start, end, b in spans:
            if start <= n <= end:
                b.errors.append(f"README.md:{b.line + n - start}: {m.group(2)}")
                break
        else:
            raise AssertionError(f"mypy error outside the README's code: {m.group(0)}")
    return blocks


def test_quick_start_and_complete_examples_type_check(checked: list[Block]) -> None:
    complete = [b for b in checked if not b.free]
    assert any("nba.Decider(" in b.code for b in complete), "the Quick start was not checked"
    assert [e for b in complete for e in b.errors] == []


def test_fragments_type_check(checked: list[Block]) -> None:
    fragments = [b for b in checked if b.free]
    assert fragments
    assert [e for b in fragments for e in b.errors] == []
