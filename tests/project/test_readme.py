"""Every Python code block of README.md runs as written (issue 13, item 8).

Each ```python block is saved as a file and run in a subprocess, the way a reader would run it,
against a fresh loopback sandbox: the environment carries ``TANX_BASE_URL`` (the sandbox's URL),
``TANX_ACCESS_TOKEN`` and ``TANX_REFRESH_TOKEN``, and the arguments are open order ids of that
user. A block that needs an exchange reads them from there (unset, it would talk to mainnet); a
block may also start its own sandbox. A block that defines ``test_`` functions is a test file:
it is run by pytest (the ``tanx_sandbox`` fixture comes with the package) and must pass. Each
must exit 0 without a traceback.

The error tree drawn in the README is also checked against the classes, as the one in
``_errors.py`` is.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tanx_async
from tanx_async.testing import SandboxExchange, SandboxServer

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[tuple[int, str]]:
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_the_readme_has_python_blocks() -> None:
    assert len(python_blocks()) >= 3  # quick start, sandbox, observability (the extractor works)


@pytest.mark.parametrize(
    ("line", "code"), python_blocks(), ids=lambda v: f"line{v}" if isinstance(v, int) else ""
)
def test_readme_python_block_runs(line: int, code: str, tmp_path: Path) -> None:
    exchange = SandboxExchange(seed=line, cancel_delay=0.01)
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid)
    ids = exchange.seed_orders(uid, 5)
    script = tmp_path / f"test_readme_line{line}.py"
    script.write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANX_")}
    with SandboxServer(exchange) as server:
        env.update(TANX_BASE_URL=server.url, TANX_ACCESS_TOKEN=access, TANX_REFRESH_TOKEN=refresh)
        is_test = re.search(r"^(async )?def test_", code, re.MULTILINE) is not None
        argv = ["-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)] if is_test else [str(script)]
        result = subprocess.run(
            [sys.executable, *argv, *(() if is_test else map(str, ids))],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, f"README.md line {line}:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    if is_test:
        assert re.search(r"\b[1-9]\d* passed\b", result.stdout) and "failed" not in result.stdout, (
            result.stdout
        )
    if "TANX_BASE_URL" in code:
        # It talked to our sandbox, and its cancels took effect there.
        assert exchange.requests
        assert "cancel" not in code or exchange.order(ids[0]).state == "cancel"


def test_the_readme_error_tree_is_the_real_hierarchy() -> None:
    text = README.read_text(encoding="utf-8")
    drawing = text[text.index("```text\nTanxError") : text.index("```", text.index("```text\nTanxError") + 7)]
    drawn: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for row in drawing.splitlines():
        match = re.match(r"^[ │├└─]*([A-Z]\w+Error)\b", row)
        if not match:
            continue
        depth = row.index(match.group(1)) // 4
        while stack and stack[-1][0] >= depth:
            stack.pop()
        drawn[match.group(1)] = stack[-1][1] if stack else None
        stack.append((depth, match.group(1)))
    assert set(drawn) == {n for n in tanx_async.__all__ if n.endswith("Error")}
    for name, parent in drawn.items():
        cls = getattr(tanx_async, name)
        ours = [b.__name__ for b in cls.__bases__ if b.__module__.startswith("tanx_async")]
        assert ours[:1] == ([parent] if parent else []), (name, ours, parent)
    # The same drawing as in _errors.py's docstring.
    from tanx_async import _errors

    doc_rows = [
        r[4:] for r in (_errors.__doc__ or "").splitlines() if re.match(r"^    [ │├└─]*[A-Z]\w+Error", r)
    ]
    assert [r.rstrip() for r in drawing.splitlines()[1:]] == [r.rstrip() for r in doc_rows]
