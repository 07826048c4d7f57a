#!/usr/bin/env python3
"""Lint and type checks only (fast): ruff format --check, ruff check, mypy --strict.

``python3 scripts/check.py`` (``--no-install`` uses the current interpreter as it is).
"""

from __future__ import annotations

import sys

import _venv


def checks(python: str) -> None:
    _venv.run([python, "-m", "ruff", "format", "--check", "."])
    _venv.run([python, "-m", "ruff", "check", "."])
    _venv.run([python, "-m", "mypy"])


if __name__ == "__main__":
    checks(sys.executable if "--no-install" in sys.argv[1:] else _venv.ensure())
    print("==> checks passed", flush=True)
