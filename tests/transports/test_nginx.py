"""Interop through a real reverse proxy: nginx (Debian's package) on 127.0.0.1 with TLS
(certificates made now with trustme), gzip, ``keepalive_requests 4``, a one-second
``keepalive_timeout``, the sandbox exchange as its upstream and a dead upstream giving 502.

Skipped, with the reason, where nginx is not installed (``scripts/test.py`` installs it with
apt-get when it runs as root on Debian) or cannot start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import attrs
import pytest
import trustme

from tanx_async import AsyncTanxSession, CancelStatus
from tests.internals import Http11Sender, start_transport
from tests.sandbox import Sandbox, mismatches, running_sandbox

KEEPALIVE_REQUESTS = 4

CONFIG = """
daemon off;
master_process off;
worker_processes 1;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 512; }}
http {{
    log_format wire '$status $sent_http_content_encoding $connection_requests';
    access_log {dir}/access.log wire;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests {keepalive_requests};
    keepalive_timeout 1s;
    gzip on;
    gzip_min_length 0;
    gzip_proxied any;
    gzip_types application/json;
    upstream sandbox {{
        server 127.0.0.1:{sandbox_port};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        location /dead/ {{
            proxy_pass http://127.0.0.1:{dead_port}/;
        }}
        location / {{
            proxy_pass http://sandbox;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@attrs.define
class Nginx:
    url: str
    ca_file: Path
    folder: Path

    def access_log(self) -> list[list[str]]:
        return [line.split(" ") for line in (self.folder / "access.log").read_text().splitlines()]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(seed=9) as sb:
        yield sb


@pytest.fixture
def nginx(sandbox: Sandbox, tmp_path: Path) -> Iterator[Nginx]:
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (scripts/test.py installs it with apt-get when run as root)")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    port = free_port()
    dead_port = free_port()  # nothing listens there: nginx answers 502
    (tmp_path / "nginx.conf").write_text(
        CONFIG.format(
            dir=tmp_path,
            port=port,
            dead_port=dead_port,
            sandbox_port=sandbox.server.port,
            keepalive_requests=KEEPALIVE_REQUESTS,
        )
    )
    process = subprocess.Popen(
        # -e: the start-up error log too (the default one under /var/log needs root)
        [binary, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(tmp_path / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                why = process.stderr.read().decode(errors="replace") if process.stderr else ""
                pytest.skip(f"nginx could not start: {why.strip()[-300:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if time.monotonic() > deadline:
                pytest.skip("nginx did not listen within 10 s")
            time.sleep(0.05)
        yield Nginx(f"https://localhost:{port}", tmp_path / "ca.pem", tmp_path)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if process.stderr is not None:
            process.stderr.close()


async def test_a_batch_of_cancels_through_nginx_with_tls_gzip_and_connection_rotation(
    sandbox: Sandbox, nginx: Nginx, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(nginx.ca_file))  # the CA from the environment
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    exchange = sandbox.exchange
    open_ids = exchange.seed_orders(sandbox.uid, 150)
    closed = exchange.seed_orders(sandbox.uid, 10, state="done")
    ids = [*open_ids, *closed, 999_999_001, 999_999_002]
    before = {oid: exchange.order(oid).state for oid in [*open_ids, *closed]}
    async with AsyncTanxSession(
        base_url=nginx.url, access_token=sandbox.access, refresh_token=sandbox.refresh, max_concurrency=16
    ) as session:
        assert isinstance(start_transport(session), Http11Sender)
        first = await session.orders.cancel_many(ids[:80])
        await anyio.sleep(1.5)  # past nginx's keepalive_timeout: it closes the idle connections
        second = await session.orders.cancel_many(ids[80:])
    await anyio.sleep(exchange.cancel_delay * 2)  # the last queued cancels take effect
    outcomes = [*first, *second]
    assert [o.order_id for o in outcomes] == ids
    assert mismatches(exchange, outcomes, before) == []
    counts = {status: sum(o.status is status for o in outcomes) for status in CancelStatus}
    assert counts[CancelStatus.QUEUED] == len(open_ids)
    assert counts[CancelStatus.ALREADY_CLOSED] == len(closed)
    assert counts[CancelStatus.NOT_FOUND] == 2
    log = nginx.access_log()
    assert len(log) >= len(ids)
    assert any(encoding == "gzip" for _, encoding, _ in log), "nginx never gzipped an answer"
    # keepalive_requests: connections were closed by nginx after their 4th request, and replaced.
    assert max(int(n) for _, _, n in log) == KEEPALIVE_REQUESTS


async def test_a_dead_upstream_behind_nginx_is_a_502_and_no_outcome_says_ok(
    sandbox: Sandbox, nginx: Nginx, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(nginx.ca_file))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    ids = sandbox.exchange.seed_orders(sandbox.uid, 12)
    async with AsyncTanxSession(
        base_url=nginx.url + "/dead",
        access_token=sandbox.access,
        refresh_token=sandbox.refresh,
        max_retries=1,
    ) as session:
        assert isinstance(start_transport(session), Http11Sender)
        outcomes = await session.orders.cancel_many(ids)
    assert [o.order_id for o in outcomes] == ids
    for outcome in outcomes:
        assert not outcome.ok
        assert outcome.status in (CancelStatus.UNKNOWN, CancelStatus.FAILED)
        assert "502" in str(outcome.error)
    assert {sandbox.exchange.order(oid).state for oid in ids} == {"wait"}
    statuses = {status for status, _, _ in nginx.access_log()}
    assert statuses == {"502"}
