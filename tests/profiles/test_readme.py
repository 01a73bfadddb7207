"""The README's profiles example runs, and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_profiles_example_runs_as_written():
    text = README.read_text(encoding="utf-8")
    section = text.split("## Profiles: know the customer", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.group(1), "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    first, second = lines[0].split(" then ")
    assert {first, second.split(" ", 1)[0]} == {"gold_card", "savings"}  # the cap moved the app to the other offer
    assert second.endswith(repr({first: "cap:arm:1/86400s"}))
    assert lines[1:] == ["cust-42 abandoned_cart"]
