#!/usr/bin/env python3
"""Check the distribution: build the sdist and, from it, the wheel (``python -m build``), run
``twine check --strict`` on both, check what each holds, install the wheel into a fresh virtual
environment, import the package there and run ``tanx-async --version``.

``python3 scripts/dist.py`` (everything happens in a temporary folder).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tempfile
import venv
import zipfile
from pathlib import Path

import _venv

#: What a packager needs from the sdist (paths below its top folder).
SDIST_MUST_HAVE = (
    "pyproject.toml",
    "README.md",
    "CHANGELOG.md",
    "LICENSE",
    "mkdocs.yml",
    "_tanx_async_pytest.py",
    "tanx_async/__init__.py",
    "tanx_async/py.typed",
    "tanx_async/testing/__init__.py",
    "tests/conftest.py",
    "examples/kill_switch.py",
    "examples/quoting_loop.py",
    "examples/test_bot.py",
    "docs/index.md",
    "scripts/test.py",
    "benchmarks/run.py",
)
WHEEL_MUST_HAVE = (
    "_tanx_async_pytest.py",
    "tanx_async/__init__.py",
    "tanx_async/py.typed",
    "tanx_async/testing/__init__.py",
)
#: Never shipped: caches, virtual environments, built artefacts.
JUNK = re.compile(
    r"(^|/)(__pycache__|\.venv[^/]*|\.mypy_cache|\.ruff_cache|\.pytest_cache|site|dist)(/|$)|\.pyc$"
)


def project_version() -> str:
    text = (_venv.ROOT / "pyproject.toml").read_text()
    match = re.search(r'^version = "([^"]+)"', text, re.MULTILINE)
    if match is None:
        sys.exit("no version in pyproject.toml")
    return match.group(1)


def fail(message: str) -> None:
    print(f"==> distribution check FAILED: {message}", flush=True)
    sys.exit(1)


def check_sdist(path: Path) -> None:
    with tarfile.open(path) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    missing = [n for n in SDIST_MUST_HAVE if n not in names]
    junk = [n for n in names if JUNK.search(n)]
    if missing or junk:
        fail(f"sdist {path.name}: missing {missing}, junk {junk[:10]}")
    print(
        f"==> sdist {path.name}: {len(names)} files, has {len(SDIST_MUST_HAVE)} required, no junk", flush=True
    )


def check_wheel(path: Path) -> None:
    with zipfile.ZipFile(path) as whl:
        names = whl.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = whl.read(meta).decode()
    missing = [n for n in WHEEL_MUST_HAVE if n not in names]
    stray = [n for n in names if not n.startswith(("tanx_async/", "_tanx_async_pytest.py", "tanx_async-"))]
    junk = [n for n in names if JUNK.search(n)]
    if missing or stray or junk:
        fail(f"wheel {path.name}: missing {missing}, stray {stray[:10]}, junk {junk[:10]}")
    for needed in (
        "[console_scripts]\ntanx-async = tanx_async.cli:main",
        "[pytest11]\ntanx_async = _tanx_async_pytest",
    ):
        if needed not in entry_points:
            fail(f"wheel {path.name}: entry point missing: {needed!r}")
    print(
        f"==> wheel {path.name}: {len(names)} files, py.typed, pytest11 and console script present",
        flush=True,
    )


def check_installed(wheel: Path, tmp: Path, version: str) -> None:
    env = tmp / "fresh-venv"
    venv.EnvBuilder(with_pip=True).create(env)
    bindir = env / ("Scripts" if sys.platform == "win32" else "bin")
    python = str(bindir / "python")
    _venv.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)])
    probe = (
        "import importlib.metadata as m, tanx_async, tanx_async.testing; "
        "eps = [e.value for e in m.entry_points(group='pytest11')]; "
        "assert '_tanx_async_pytest' in eps, eps; "
        "print(tanx_async.__version__, tanx_async.__file__)"
    )
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=tmp, check=False)
    if out.returncode != 0 or not out.stdout.startswith(f"{version} {env}"):
        fail(f"import in a fresh venv: {out.stdout.strip()} {out.stderr.strip()[-500:]}")
    cli = subprocess.run(
        [str(bindir / "tanx-async"), "--version"], capture_output=True, text=True, check=False
    )
    if cli.returncode != 0 or cli.stdout.strip() != f"tanx-async {version}":
        fail(f"tanx-async --version in a fresh venv: {cli.returncode} {cli.stdout!r} {cli.stderr[-300:]!r}")
    print(f"==> fresh venv: import tanx_async {version} ok, `tanx-async --version` ok", flush=True)


def check_dist(python: str) -> None:
    version = project_version()
    with tempfile.TemporaryDirectory(prefix="tanx-dist-") as tmp_name:
        tmp = Path(tmp_name)
        out = tmp / "dist"
        _venv.run([python, "-m", "build", "--outdir", str(out), str(_venv.ROOT)])
        sdists, wheels = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
        if [p.name for p in sdists + wheels] != [
            f"tanx_async-{version}.tar.gz",
            f"tanx_async-{version}-py3-none-any.whl",
        ]:
            fail(f"unexpected artefacts: {[p.name for p in out.iterdir()]}")
        _venv.run([python, "-m", "twine", "check", "--strict", *map(str, sdists + wheels)])
        check_sdist(sdists[0])
        check_wheel(wheels[0])
        check_installed(wheels[0], tmp, version)


if __name__ == "__main__":
    check_dist(_venv.ensure())
    print("==> distribution checked", flush=True)
