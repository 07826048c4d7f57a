"""``python -m tanx_async.conformance`` against the sandbox exchange, run as a user runs it: a
subprocess, tokens in the environment, the sandbox on a loopback port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tanx_async.testing import PROFILES, SandboxExchange, SandboxServer
from tanx_async.testing._app import ASGIApp, Message, Receive, Scope, Send
from tests.sandbox import running_sandbox

ROOT = Path(__file__).resolve().parents[2]


def conformance(url: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The check in a subprocess (bounded), with ``env`` added to a clean environment."""
    full = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "HOME": env.get("HOME", os.environ.get("HOME", "/tmp")),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "tanx_async.conformance", "--base-url", url, "--stream-seconds", "0.5", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=120,
        check=False,
    )


def states(exchange: SandboxExchange, uid: str) -> dict[int, str]:
    return {o.id: o.state for o in exchange.orders_of(uid)}


@pytest.mark.parametrize("profile", PROFILES)
def test_the_sandbox_passes_in_every_profile_changes_nothing_and_records_no_secret(
    profile: str, tmp_path: Path
) -> None:
    with running_sandbox(seed=33, profile=profile) as sb:
        sb.exchange.seed_orders(sb.uid, 12)
        sb.exchange.seed_orders(sb.uid, 3, state="done")
        before = states(sb.exchange, sb.uid)
        record = tmp_path / "record.jsonl"
        done = conformance(
            sb.server.url,
            {"TANX_ACCESS_TOKEN": sb.access, "TANX_REFRESH_TOKEN": sb.refresh, "HOME": str(tmp_path)},
            "--record",
            str(record),
            "--no-token-cache",
        )
        after = states(sb.exchange, sb.uid)
        queued = [r for r in sb.exchange.requests if r.result == "cancel_queued"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 deviation(s)" in done.stdout
    for check in (
        "list page 1",
        "list page 2",
        "list filter state",
        "get order",
        "cancel unknown order",
        "stream",
    ):
        assert f"ok   {check}" in done.stdout, check
    assert after == before
    assert queued == []
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert {line["check"] for line in lines} >= {"list page 1", "get order", "cancel unknown order", "stream"}
    text = record.read_text()
    assert sb.access not in text and sb.refresh not in text
    assert "eyJ" not in text  # no JWT-shaped string at all
    assert sb.access not in done.stdout + done.stderr


def test_refresh_rotates_the_tokens_into_the_cache_and_records_neither_pair(tmp_path: Path) -> None:
    with running_sandbox(seed=34) as sb:
        sb.exchange.seed_orders(sb.uid, 3)
        record = tmp_path / "record.jsonl"
        state = tmp_path / "state"
        done = conformance(
            sb.server.url,
            {
                "TANX_ACCESS_TOKEN": sb.access,
                "TANX_REFRESH_TOKEN": sb.refresh,
                "XDG_STATE_HOME": str(state),
                "HOME": str(tmp_path),
                "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            },
            "--record",
            str(record),
            "--refresh",
        )
        refreshed = [r for r in sb.exchange.requests if r.path == "/sapi/v1/auth/token/refresh/"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok   refresh" in done.stdout
    assert len(refreshed) == 1
    [cache] = list(state.rglob("tokens.json"))
    entries = json.loads(cache.read_text())
    pairs = [v for v in entries["pairs"].values() if isinstance(v, dict) and "access" in v]
    assert pairs, entries
    new_access = pairs[0]["access"]
    assert new_access != sb.access
    text = record.read_text()
    for secret in (sb.access, sb.refresh, new_access, pairs[0]["refresh"]):
        assert secret not in text


def test_cancel_id_cancels_that_order_only(tmp_path: Path) -> None:
    with running_sandbox(seed=35) as sb:
        first, second = sb.exchange.seed_orders(sb.uid, 2)
        done = conformance(
            sb.server.url,
            {"TANX_ACCESS_TOKEN": sb.access, "HOME": str(tmp_path)},
            "--cancel",
            str(first),
            "--no-token-cache",
        )
        queued = {r.order_id for r in sb.exchange.requests if r.result == "cancel_queued"}
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ok   cancel {first}: queued" in done.stdout
    assert queued == {first}
    assert second not in queued


def _deviating(app: ASGIApp) -> ASGIApp:
    """The sandbox's app, but every order it answers lacks ``market`` and says ``state``
    ``"expired"`` (a value no source documents)."""

    def rewrite(order: Any) -> Any:
        if isinstance(order, dict) and "uuid" in order:
            order = {k: v for k, v in order.items() if k != "market"}
            order["state"] = "expired"
        return order

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            try:
                data = json.loads(body)
            except ValueError:
                data = None
            if isinstance(data, dict):
                payload = data.get("payload")
                data["payload"] = (
                    [rewrite(o) for o in payload] if isinstance(payload, list) else rewrite(payload)
                )
                body = json.dumps(data).encode()
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await app(scope, receive, capture)

    return wrapped


def test_an_order_without_market_and_with_an_undocumented_state_fails_naming_both(tmp_path: Path) -> None:
    exchange = SandboxExchange(seed=36)
    uid = exchange.create_user()
    access, _ = exchange.issue_tokens(uid)
    exchange.seed_orders(uid, 6)
    with SandboxServer(_deviating(exchange.app)) as server:
        done = conformance(
            server.url, {"TANX_ACCESS_TOKEN": access, "HOME": str(tmp_path)}, "--no-token-cache"
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DEVIATION list page 1 $.payload[0].market: missing field" in done.stdout
    assert "DEVIATION get order $.payload.market: missing field" in done.stdout
    assert (
        "DEVIATION list page 1 $.payload[0].state: undocumented value: expected one of pending, wait, done, "
        "cancel, got string 'expired'"
    ) in done.stdout
    assert "the library's decoder refused it" in done.stdout  # Order needs market


def test_the_sandbox_command_and_the_check_as_two_processes(tmp_path: Path) -> None:
    """What CI runs: ``python -m tanx_async.testing`` on a free port, the check against it."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    server = subprocess.Popen(
        [sys.executable, "-m", "tanx_async.testing", "--port", "0", "--seed", "5", "--orders", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # The child restores Python's SIGINT handler (a background test run has it ignored).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler),
    )
    try:
        exports: dict[str, str] = {}
        assert server.stdout is not None
        for line in server.stdout:
            if line.startswith("export "):
                name, _, value = line[len("export ") :].strip().partition("=")
                exports[name] = value.strip("'")
            if line.startswith("# user"):
                break
        assert {"TANX_BASE_URL", "TANX_ACCESS_TOKEN"} <= set(exports), exports
        done = conformance(
            exports["TANX_BASE_URL"],
            {"TANX_ACCESS_TOKEN": exports["TANX_ACCESS_TOKEN"], "HOME": str(tmp_path)},
            "--no-token-cache",
        )
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
        for stream in (server.stdout, server.stderr):
            if stream is not None:
                stream.close()
