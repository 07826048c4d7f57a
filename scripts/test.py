#!/usr/bin/env python3
"""Run every check tanx-async has: the one test command (the README and ``.ci/run`` call it).

Creates ``.venv`` beside the project if needed, installs ``tanx-async[dev]`` into it (again only
when pyproject.toml changed), then runs, stopping at the first failure:

    ruff format --check, ruff check, mypy --strict (scripts/check.py),
    mkdocs build --strict (scripts/docs.py),
    pytest with coverage (tests/ and examples/: the examples run against the sandbox),
    the distribution check (scripts/dist.py: sdist + wheel, twine check, a fresh-venv install),
    pytest -m soak

Needs nothing but Python >= 3.10 and pip. Options: ``--no-soak`` skips the soak test;
``--no-install`` uses the current interpreter as it is; other arguments go to the main pytest run.
"""

from __future__ import annotations

import sys

import _venv
from check import checks
from dist import check_dist

from docs import build_docs

OPTIONS = ("--no-soak", "--no-install")


def main(argv: list[str]) -> None:
    extra = [a for a in argv if a not in OPTIONS]
    python = sys.executable if "--no-install" in argv else _venv.ensure()
    checks(python)
    build_docs(python)
    _venv.run([python, "-m", "pytest", "-m", "not soak", "--cov", "--cov-report=term", *extra])
    check_dist(python)
    if "--no-soak" not in argv:
        _venv.run([python, "-m", "pytest", "-m", "soak", "-q", "--no-cov"])
    print("==> all checks passed", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
