"""What the scripts in scripts/ install (issue 30, item 9).

``python3 scripts/docs.py`` run alone installs the ``docs`` extra, not ``dev`` (matplotlib, uvloop,
aiohttp, ... are not needed to build the site); a current ``dev`` install (``scripts/test.py``)
serves it without a second install. The steps that would touch the network (``pip``) are recorded
here instead of run; the venv's python is a placeholder file in a temporary folder.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def scripts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[ModuleType, list[list[str]]]:
    """``scripts/_venv`` pointed at an empty venv folder in tmp_path, its commands recorded, not run."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    venv = importlib.import_module("_venv")
    monkeypatch.setattr(venv, "VENV", tmp_path / ".venv")
    python = venv.python_path()
    python.parent.mkdir(parents=True)
    python.write_text("")  # exists: no venv is created
    ran: list[list[str]] = []
    monkeypatch.setattr(venv, "run", ran.append)
    return venv, ran


def installed_extras(ran: list[list[str]]) -> list[str]:
    return [cmd[-1].rsplit("[", 1)[1].rstrip("]") for cmd in ran if "-e" in cmd]


def test_docs_script_alone_installs_the_docs_extra_only(
    scripts: tuple[ModuleType, list[list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    venv, ran = scripts
    docs = importlib.import_module("docs")
    built: list[str] = []
    monkeypatch.setattr(docs, "build_docs", lambda python, site=None: built.append(python))
    docs.main([])
    assert installed_extras(ran) == ["docs"]
    assert built == [str(venv.python_path())]
    # Run again with pyproject.toml unchanged: nothing is installed a second time.
    ran.clear()
    docs.main([])
    assert installed_extras(ran) == []


def test_a_current_dev_install_serves_the_docs_script(scripts: tuple[ModuleType, list[list[str]]]) -> None:
    venv, ran = scripts
    venv.ensure("dev")
    assert installed_extras(ran) == ["dev"]
    ran.clear()
    venv.ensure("docs")
    assert installed_extras(ran) == []  # dev includes docs


def test_a_changed_pyproject_installs_again(
    scripts: tuple[ModuleType, list[list[str]]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    venv, ran = scripts
    venv.ensure("docs")
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + "\n# changed\n")
    monkeypatch.setattr(venv, "ROOT", project)
    ran.clear()
    venv.ensure("docs")
    assert installed_extras(ran) == ["docs"]


def test_the_docs_extra_has_what_the_site_build_imports() -> None:
    """mkdocs.yml's theme and plugins, and the hooks' imports, come with the ``docs`` extra."""
    block = re.search(r"^docs = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.DOTALL | re.MULTILINE)
    assert block is not None
    extra = re.findall(r'^\s*"([^"]+)"', block.group(1), re.MULTILINE)
    names = {req.split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip() for req in extra}
    assert {"mkdocs", "mkdocs-material", "mkdocstrings"} <= names
    assert "mkdocstrings[python]" in " ".join(extra)  # the handler mkdocs.yml configures
    hooks = ast.parse((ROOT / "scripts" / "mkdocs_hooks.py").read_text())
    imported = set()
    for node in ast.walk(hooks):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "__future__"}
    assert third_party == {"mkdocs"}  # tanx_async itself is imported by name, through importlib


def test_the_pre_commit_hooks_run_what_ci_checks_first() -> None:
    """.pre-commit-config.yaml runs ruff format, ruff check and mypy, as scripts/check.py does."""
    yaml = pytest.importorskip("yaml")  # PyYAML comes with mkdocs and pre-commit (dev extra)
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert set(hooks) == {"ruff-format", "ruff", "mypy"}
    check = (ROOT / "scripts" / "check.py").read_text(encoding="utf-8")
    for hook_id, command in (("ruff-format", "ruff format"), ("ruff", "ruff check"), ("mypy", "mypy")):
        assert f" -m {command}" in hooks[hook_id]["entry"], hooks[hook_id]
        assert '"' + '", "'.join(["-m", *command.split()]) + '"' in check, command  # CI runs it too
    assert hooks["mypy"]["pass_filenames"] is False  # the whole tree, as [tool.mypy] files says


def load_test_script(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """scripts/test.py as a module (not named ``test``: that is the standard library's package)."""
    import importlib.util

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location("scripts_test", ROOT / "scripts" / "test.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("argv", "floored"),
    [(["--no-install", "--no-soak"], True), (["--no-install", "--no-soak", "tests/cli"], False)],
)
def test_the_test_command_has_a_coverage_floor(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], floored: bool
) -> None:
    """The whole run fails below the floor; a run of a few tests (extra arguments) does not check it."""
    script = load_test_script(monkeypatch)
    ran: list[list[str]] = []
    for step in ("ensure_nginx", "checks", "build_docs", "check_dist"):
        monkeypatch.setattr(script, step, lambda *args: None)
    monkeypatch.setattr(script._venv, "run", ran.append)
    script.main(argv)
    (pytest_run,) = ran  # --no-soak: the main pytest run only
    assert 80 <= script.COVERAGE_FLOOR < 100
    assert (f"--cov-fail-under={script.COVERAGE_FLOOR}" in pytest_run) is floored
    assert "--cov" in pytest_run and ("tests/cli" in pytest_run) is not floored
