#!/usr/bin/env python3
"""Run every check tanx-async has: the one test command (README and .ci/run call it).

Creates ``.venv`` beside the project if needed, installs ``tanx-async[dev]`` into it (again only
when pyproject.toml changed), then runs, stopping at the first failure:

    ruff format --check, ruff check, mypy --strict, pytest (with coverage), pytest -m soak

Needs nothing but Python >= 3.10 and pip. Options: ``--no-soak`` skips the soak test;
``--no-install`` uses the current interpreter as it is; extra arguments go to the main pytest run.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"


def _python() -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / ("python.exe" if os.name == "nt" else "python")


def ensure_env() -> str:
    python = _python()
    if not python.exists():
        print(f"==> creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = VENV / ".tanx-async-dev-installed"
    if not stamp.exists() or stamp.read_text() != digest:
        print("==> installing tanx-async[dev]", flush=True)
        run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        run([str(python), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[dev]"])
        stamp.write_text(digest)
    return str(python)


def run(cmd: list[str]) -> None:
    print("==> " + " ".join(cmd[2:] if cmd[1] == "-m" else cmd), flush=True)
    result = subprocess.run(cmd, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(result.returncode)


def main(argv: list[str]) -> None:
    soak = "--no-soak" not in argv
    install = "--no-install" not in argv
    extra = [a for a in argv if a not in ("--no-soak", "--no-install")]
    python = ensure_env() if install else sys.executable
    run([python, "-m", "ruff", "format", "--check", "."])
    run([python, "-m", "ruff", "check", "."])
    run([python, "-m", "mypy"])
    run([python, "-m", "pytest", "-m", "not soak", "--cov", "--cov-report=term", *extra])
    if soak:
        run([python, "-m", "pytest", "-m", "soak", "-q", "--no-cov"])
    print("==> all checks passed", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
