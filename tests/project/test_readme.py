"""README.md is the front door: two set-up commands, one example that runs, links that resolve.

The Python example runs as written against a fresh loopback sandbox (``tests/project/blocks.py``
says how), and its cancels take effect there. The set-up section has exactly two commands, the
demo and the test command, and ``.ci/run`` runs the second. Every relative link points at a file
of the repository. docs/ pages' blocks are run by tests/project/test_docs.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.project.blocks import ROOT, Block, blocks, check_run, run_python

README = ROOT / "README.md"


def python_blocks() -> list[Block]:
    return [b for b in blocks(README) if b.lang == "python"]


def test_the_readme_has_one_example() -> None:
    assert len(python_blocks()) == 1  # the extractor works, and the front door stays short


@pytest.mark.parametrize("block", python_blocks(), ids=lambda b: b.id)
def test_readme_python_block_runs(block: Block, tmp_path: Path) -> None:
    run = run_python(block, tmp_path)
    check_run(block, run)
    assert run.exchange.requests  # it talked to our sandbox ...
    assert {run.exchange.order(i).state for i in run.order_ids} == {"cancel"}  # ... and cancelled
    assert run.result.stdout.count(" ok\n") == len(run.order_ids), run.result.stdout


def test_exactly_two_setup_commands() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Set-up") : text.index("\n## ", text.index("## Set-up") + 1)]
    commands = [line.strip() for line in section.splitlines() if line.startswith("    ")]
    assert len(commands) == 2, commands
    demo, test = commands
    assert demo.startswith("python3 -m venv .venv") and demo.endswith("tanx-async demo"), demo
    assert test == "python3 scripts/test.py"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "exec python3 scripts/test.py" in ci  # what CI runs is what the README says


def test_every_relative_link_resolves() -> None:
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    relative = [link for link in links if not re.match(r"^[a-z]+:", link)]
    assert len(relative) >= 10, relative
    for link in relative:
        assert (ROOT / link).exists(), f"README.md links to {link}, which does not exist"
