"""Run the code blocks of a Markdown page as a reader would (README.md, docs/*.md).

A block is a fenced block with a language. What happens to it depends on the language and on a
marker, an HTML comment on the line just above the fence (invisible on the rendered page):

- ``python`` that defines ``test_`` functions: a test file, run by pytest in a subprocess with
  pytest-asyncio in **strict** mode (its default: what a user who just installed it gets), with
  the ``tanx_sandbox`` fixture that comes with the package. Every test must pass, none skipped.
- other ``python``: a program, saved as a file and run in a subprocess against a fresh loopback
  sandbox. The environment carries ``TANX_BASE_URL`` (the sandbox's URL), ``TANX_ACCESS_TOKEN``
  and ``TANX_REFRESH_TOKEN`` of a user, and ``TANX_PRIVATE_KEY`` and ``TANX_ETH_ADDRESS`` of
  that user's wallet; the arguments are open order ids of that user.
- ``python`` marked ``<!-- test: fragment -->``: a few lines of a larger program, run inside
  :data:`FRAGMENT` (below): every public name of ``tanx_async`` imported, inside
  ``async with AsyncTanxSession(...) as session`` pointed at the sandbox, with ``order_ids`` (and
  ``ids``) the user's open orders.
- ``python`` marked ``<!-- test: from examples/NAME.py -->``: an excerpt of that example, which
  must appear in it verbatim (tests/project/test_examples.py runs the examples).
- ``python`` marked ``<!-- test: requires MODULE (why) -->``: run as above when MODULE can be
  imported, skipped (saying why) when it cannot.
- ``python`` marked ``<!-- test: skip (why) -->``: not run; the test is skipped with that reason.
- ``console``, marked ``<!-- test: parse only (why) -->``: shell commands, checked, not run
  (they need a real account, install from PyPI, or serve until Ctrl-C): every ``tanx-async ...``
  and ``python -m tanx_async.testing ...`` command must parse with that command line's own
  parser, every ``pip install`` must name extras that exist.
- ``text``: a drawing: the error tree of docs/errors.md, checked against the classes by
  tests/decoding/test_errors.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs

from tanx_async.testing import SandboxExchange, SandboxServer

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
MARKER = re.compile(r"^<!-- test: (.+?) -->$")

#: The program a ``<!-- test: fragment -->`` block runs in (``{code}``, indented into place).
FRAGMENT = """\
import asyncio
import os
import sys

from tanx_async import *  # noqa: F403
from tanx_async import AsyncTanxSession


async def block() -> None:
    async with AsyncTanxSession(
        base_url=os.environ["TANX_BASE_URL"],
        access_token=os.environ["TANX_ACCESS_TOKEN"],
        refresh_token=os.environ["TANX_REFRESH_TOKEN"],
    ) as session:
        order_ids = ids = [int(arg) for arg in sys.argv[1:]]
{code}

asyncio.run(block())
"""


@attrs.frozen
class Block:
    """One fenced block: where it is, its language, its marker (None when unmarked) and its code."""

    page: str
    line: int
    lang: str
    marker: str | None
    code: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def is_test_file(self) -> bool:
        return re.search(r"^(async )?def test_", self.code, re.MULTILINE) is not None


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, in order."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    found = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        above = MARKER.match(lines[line - 2]) if line >= 2 else None
        page = str(path.relative_to(ROOT))
        found.append(Block(page, line, m.group(1), above.group(1) if above else None, m.group(2)))
    return found


@attrs.frozen
class Run:
    """What a block's run left: the exchange it talked to, its open orders, the process's result."""

    exchange: SandboxExchange
    order_ids: list[int]
    result: subprocess.CompletedProcess[str]


def run_python(block: Block, tmp_path: Path) -> Run:
    """Run a ``python`` block (a program, a test file or a fragment) against a fresh sandbox."""
    from eth_account import Account

    wallet = Account.from_key("0x" + "4c" * 32)
    exchange = SandboxExchange(seed=block.line, cancel_delay=0.01)
    uid = exchange.create_user(eth_address=wallet.address)
    access, refresh = exchange.issue_tokens(uid)
    ids = exchange.seed_orders(uid, 5)
    code = block.code
    if block.marker == "fragment":
        code = FRAGMENT.format(code=textwrap.indent(code, " " * 8))
    script = tmp_path / f"test_block_line{block.line}.py"
    script.write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANX_")}
    env.update(TANX_PRIVATE_KEY=wallet.key.hex(), TANX_ETH_ADDRESS=wallet.address)
    if block.is_test_file:
        # -o asyncio_mode=strict: pytest-asyncio's default, spelled out (docs/testing.md's first
        # test once failed there, issue 30 item 1).
        argv = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=strict", str(script)]
    else:
        argv = [str(script), *map(str, ids)]
    with SandboxServer(exchange) as server:
        env.update(TANX_BASE_URL=server.url, TANX_ACCESS_TOKEN=access, TANX_REFRESH_TOKEN=refresh)
        result = subprocess.run(
            [sys.executable, *argv], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
    return Run(exchange, ids, result)


def check_run(block: Block, run: Run) -> None:
    """The run exited 0 without a traceback; a test file passed every test it has."""
    out = run.result
    where = f"{block.id}:\n{out.stdout}\n{out.stderr}"
    assert out.returncode == 0, where
    assert "Traceback" not in out.stderr, where
    if block.is_test_file:
        passed = re.search(r"\b(\d+) passed\b", out.stdout)
        assert passed and int(passed.group(1)) >= len(re.findall(r"^(?:async )?def test_", block.code, re.M))
        assert not re.search(r"\b(failed|skipped|error|errors|xfailed)\b", out.stdout.splitlines()[-1]), where
