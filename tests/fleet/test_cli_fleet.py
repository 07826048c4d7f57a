"""Issue 31: the CLI's ``--fleet URL`` (and ``TANX_FLEET``): real ``tanx-async`` processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, Desk, desk


def cli(d: Desk, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TANX_")}
    environ.update(
        TANX_ACCESS_TOKEN=d.access,
        TANX_REFRESH_TOKEN=d.refresh,
        XDG_STATE_HOME=str(tmp_path / "state"),
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        PYTHONPATH=str(ROOT),
        **(env or {}),
    )
    argv = [sys.executable, "-m", "tanx_async", "--base-url", d.server.url, *args]
    return subprocess.Popen(argv, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def done(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = process.communicate(timeout=60)
    assert "Traceback" not in err, err
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_an_unsupported_fleet_url_is_a_usage_error_before_anything_is_sent(tmp_path: Path) -> None:
    with desk(2) as d:
        d.exchange.clear_requests()
        result = done(cli(d, tmp_path, "order", str(d.ids[0]), env={"TANX_FLEET": "ftp://example.com/x"}))
        assert result.returncode == 2, result.stderr
        assert "--fleet" in result.stderr and "file:///path/to/dir" in result.stderr
        assert list(d.exchange.requests) == []


@pytest.mark.parametrize("how", ["option", "environment"])
def test_runs_at_the_same_time_share_one_refresh(tmp_path: Path, how: str) -> None:
    with desk(6) as d:
        d.exchange.expire_access_tokens()  # every run must renew
        url = (tmp_path / "fleet").as_uri()
        extra, env = (["--fleet", url], None) if how == "option" else ([], {"TANX_FLEET": url})
        runs = [cli(d, tmp_path, "cancel", str(oid), "--json", *extra, env=env) for oid in d.ids[:3]]
        results = [done(p) for p in runs]
        for result in results:
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout)["status"] == "queued"
        assert d.exchange.refresh_failures == 0
        assert d.exchange.refresh_count == 1  # one renewal for the three runs
        assert (tmp_path / "fleet" / "tokens.json").exists()
        assert not (tmp_path / "state").exists()  # the fleet holds the pair, not the token cache


def test_without_a_fleet_runs_at_the_same_time_knock_each_other_out(tmp_path: Path) -> None:
    with desk(6) as d:
        d.exchange.expire_access_tokens()
        runs = [cli(d, tmp_path, "cancel", str(oid), "--no-token-cache") for oid in d.ids[:3]]
        results = [done(p) for p in runs]
        # One run's refresh rotates the token the other two then send: their cancels fail, and
        # those runs end as every command ends on refused credentials (exit 3, with the hint).
        assert sorted(r.returncode for r in results) == [0, 3, 3]
        assert d.exchange.refresh_failures == 2
