"""Benchmark driver for the official synchronous connector ``tanx-connector==2.1.0``.

Runs inside ``benchmarks/.venv-official`` (created by ``run.py``). ``tanxconnector.Client`` only
knows its two hosts, but the host lives in ``client.session.url_base`` (its ``Session`` prefixes
every path with it), so we point that at the loopback server and install the access token with
the public ``Client.set_access_token`` (it sets ``Authorization: JWT <token>`` on the session), no
login. Each call is the public ``client.cancel_order(order_id)``.

``--threads 1`` is sequential; ``--threads T`` shares one Client (one ``requests.Session``, the way
the connector is meant to be used) between T threads pulling ids from one queue.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from _common import (
    WARMUP_ID_BASE,
    Meter,
    Tally,
    base_parser,
    check_envelope,
    loopback_only,
    make_access_token,
)


def make_client(url: str, token: str, cafile: str | None = None) -> Any:
    from tanxconnector import Client

    client = Client("mainnet")
    client.session.url_base = url.rstrip("/")
    if cafile is not None:
        # A requests.Session: trust the run's CA, verification on (and no REQUESTS_CA_BUNDLE
        # from the environment overriding it).
        client.session.verify = cafile
        client.session.trust_env = False
    client.set_access_token(token)
    return client


def run(client: Any, ids: Iterable[int], threads: int, tally: Tally) -> None:
    lock = threading.Lock()
    it: Iterator[int] = iter(ids)

    def one(order_id: int) -> None:
        started = time.perf_counter()
        try:
            resp = client.cancel_order(order_id)  # returns r.json(); raises on HTTP errors
            why = check_envelope(b"", order_id, resp)
        except Exception as exc:  # counted, never hidden
            why = f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - started
        with lock:
            tally.latencies.append(elapsed)
            if why is None:
                tally.ok += 1
            else:
                tally.fail(why)

    if threads <= 1:
        for order_id in it:
            one(order_id)
        return

    def worker() -> None:
        while True:  # bounded by the shared iterator
            with lock:
                order_id = next(it, None)
            if order_id is None:
                return
            one(order_id)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def main(argv: list[str] | None = None) -> int:
    p = base_parser("tanx-connector (official, sync) cancel benchmark")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    loopback_only(args.url)
    # urllib3 keeps 10 connections per host by default; with more threads it logs "Connection pool
    # is full, discarding connection" for every surplus connection. That cost is real and stays;
    # only the log spam is silenced.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    client = make_client(args.url, args.token or make_access_token(), args.cafile)
    warm = Tally()
    run(client, range(WARMUP_ID_BASE, WARMUP_ID_BASE + args.warmup), args.threads, warm)
    if warm.failed:
        raise SystemExit(f"warm-up failed: {warm.samples}")
    tally = Tally()
    meter = Meter()
    meter.start()
    run(client, range(1, args.n + 1), args.threads, tally)
    meter.stop()
    name = "official-seq" if args.threads <= 1 else f"official-{args.threads}thr"
    result = meter.result(name, args.n, args.threads, args.warmup, tally)
    import tanxconnector

    result.extra["tanx_connector"] = getattr(tanxconnector, "__version__", "?")
    print(json.dumps(result.__dict__), flush=True)
    return 0
