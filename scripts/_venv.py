"""The project's virtual environment: ``.venv`` beside the project, with the extra a script needs.

Shared by the scripts in this folder. Needs nothing but Python >= 3.10 and pip. ``scripts/test.py``
installs ``tanx-async[dev]`` (everything); a script run alone installs only its own extra
(``scripts/docs.py``: ``docs``). An install is repeated only when ``pyproject.toml`` changed since
the last one, and a current ``dev`` install serves every extra (``dev`` includes them all).
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


def python_path() -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / ("python.exe" if os.name == "nt" else "python")


def ensure(extra: str = "dev") -> str:
    """Create ``.venv`` if needed, install ``tanx-async[extra]`` into it, return its python."""
    python = python_path()
    if not python.exists():
        print(f"==> creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not any(_stamp_is(name, digest) for name in dict.fromkeys((extra, "dev"))):
        print(f"==> installing tanx-async[{extra}]", flush=True)
        run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        run([str(python), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[{extra}]"])
        (VENV / f".tanx-async-{extra}-installed").write_text(digest)
    return str(python)


def _stamp_is(extra: str, digest: str) -> bool:
    """Whether ``tanx-async[extra]`` was installed from this very ``pyproject.toml``."""
    stamp = VENV / f".tanx-async-{extra}-installed"
    return stamp.exists() and stamp.read_text() == digest


def run(cmd: list[str]) -> None:
    """Run one step from the project root; stop everything at the first failure."""
    print("==> " + " ".join(cmd[2:] if len(cmd) > 2 and cmd[1] == "-m" else cmd), flush=True)
    result = subprocess.run(cmd, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(result.returncode)
