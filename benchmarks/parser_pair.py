"""Paired CPU per cancel of the native transport: the hand-written parser (before issue 11) and
llhttp (httptools, now), run alternately in one process against ``benchmarks/fakeserver.py``.

    python benchmarks/parser_pair.py [--rounds 9] [--n 5000] [--concurrency 64] [--before REF]

The old ``_transports/native.py`` is read from git (``--before``, default the last commit that
parsed by hand) and loaded beside the new one; the rest of the package is the same code. Each
round runs both, in alternating order (ABBA), at three levels:

- ``parse``: ``_Connection.data_received`` of one real answer of the fake server (captured once
  over the socket), its thread CPU time around that call alone, N times: the parser's own cost per answer;
- ``transport``: ``Http11Sender.send`` of N cancel requests by ``concurrency`` workers;
- ``session``: ``AsyncTanxSession.orders.cancel_many(N ids)`` with that transport (every
  outcome must be ok).

CPU is this process's user+sys time (the server is another process, pinned to core 0 when
taskset is there; this one then runs on core 1). Prints per variant the median and range of
µs per cancel and, per round, the ratio new/old; the medians of those ratios are the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import httpx  # noqa: E402
from _common import CANCEL_PATH, cpu_seconds, make_access_token  # noqa: E402
from _harness import CLIENT_CORE, can_pin, fake_server  # noqa: E402

from tanx_async import AsyncTanxSession  # noqa: E402
from tanx_async._transports import native  # noqa: E402

BEFORE = "0377db3"  # the last commit whose native transport parsed answers by hand


def load_before(ref: str) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{ref}:tanx_async/_transports/native.py"],
        cwd=BENCH.parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "native_before.py"
    path.write_text(source)
    name = "tanx_async._transports._native_before"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _Sink(asyncio.Transport):
    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        pass


def capture_answer(url: str) -> bytes:
    """One raw answer of the fake server to a cancel, as it comes over the wire."""
    import socket

    port = int(url.rsplit(":", 1)[1])
    body = b'{"order_id":12345}'
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: JWT %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (CANCEL_PATH.encode(), make_access_token().encode(), len(body), body)
        )
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
            data.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0]
        ):
            data += sock.recv(65536)
    return data


async def parse_level(module: Any, answer: bytes, n: int) -> float:
    loop = asyncio.get_running_loop()
    conn = module._Connection(loop, 8 << 20)
    conn.connection_made(_Sink())
    spent = 0
    for _ in range(n):
        pending = asyncio.ensure_future(conn.request(b"", "POST", "http://127.0.0.1/", None))
        await asyncio.sleep(0)  # the request is written; the answer is awaited
        started = time.thread_time_ns()
        conn.data_received(answer)
        spent += time.thread_time_ns() - started
        raw = await pending
        assert raw.status == 200
    return spent / n / 1000


async def transport_level(sender_class: Any, url: str, n: int, concurrency: int) -> float:
    sender = sender_class(
        limits=httpx.Limits(max_connections=concurrency + 4), verify=True, max_response_bytes=8 << 20
    )
    headers = {"Authorization": "JWT " + make_access_token(), "Content-Type": "application/json"}
    timeout = httpx.Timeout(10.0)
    target = url + CANCEL_PATH
    ids = iter(range(1, n + 1 + concurrency * 20))

    async def worker(count: int) -> None:
        for _ in range(count):
            raw = await sender.send("POST", target, headers, b'{"order_id":%d}' % next(ids), timeout)
            assert raw.status == 200, raw.status

    try:
        await asyncio.gather(*(worker(20) for _ in range(concurrency)))  # warm: connections open
        user, system = cpu_seconds()
        per, extra = divmod(n, concurrency)
        await asyncio.gather(*(worker(per + (i < extra)) for i in range(concurrency)))
        user2, system2 = cpu_seconds()
    finally:
        await sender.aclose()
    return (user2 - user + system2 - system) / n * 1e6


async def session_level(sender_class: Any, url: str, n: int, concurrency: int) -> float:
    native_class = native.Http11Sender
    native.Http11Sender = sender_class  # type: ignore[misc]  # make_sender imports it from this module when called
    try:
        async with AsyncTanxSession(
            base_url=url, access_token=make_access_token(), max_concurrency=concurrency
        ) as session:
            warm = await session.orders.cancel_many(range(900_000_000, 900_000_000 + 500))
            assert all(o.ok for o in warm)
            user, system = cpu_seconds()
            outcomes = await session.orders.cancel_many(range(1, n + 1))
            user2, system2 = cpu_seconds()
            assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok][:3]
    finally:
        native.Http11Sender = native_class  # type: ignore[misc]
    return (user2 - user + system2 - system) / n * 1e6


def describe(samples: list[float]) -> str:
    return f"median {statistics.median(samples):6.1f} µs (range {min(samples):.1f}-{max(samples):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--before", default=BEFORE, help="git ref of the hand-written parser")
    args = parser.parse_args()
    old_module = load_before(args.before)
    old = old_module.Http11Sender

    class Before(old):  # type: ignore[misc, valid-type]
        def __init__(self, *, trust_env: bool = True, **kwargs: Any) -> None:
            super().__init__(**kwargs)  # it predates trust_env (no proxies in these runs)

    variants = {"before": Before, "after": native.Http11Sender}
    modules = {"before": old_module, "after": native}
    if can_pin():
        os.sched_setaffinity(0, {CLIENT_CORE})
    results: dict[tuple[str, str], list[float]] = {}
    ratios: dict[str, list[float]] = {"parse": [], "transport": [], "session": []}
    started = time.monotonic()
    with fake_server(latency=0.0) as server:
        answer = capture_answer(server.url)
        for r in range(args.rounds):
            order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
            for level in ratios:
                got = {}
                for name in order:
                    if level == "parse":
                        got[name] = asyncio.run(parse_level(modules[name], answer, args.n))
                    elif level == "transport":
                        got[name] = asyncio.run(
                            transport_level(variants[name], server.url, args.n, args.concurrency)
                        )
                    else:
                        got[name] = asyncio.run(
                            session_level(variants[name], server.url, args.n, args.concurrency)
                        )
                    results.setdefault((level, name), []).append(got[name])
                ratios[level].append(got["after"] / got["before"])
            print(
                f"round {r + 1}/{args.rounds}: "
                + ", ".join(
                    f"{lv} {results[lv, 'before'][-1]:.1f} -> {results[lv, 'after'][-1]:.1f} µs"
                    for lv in ratios
                ),
                flush=True,
            )
    load = os.getloadavg()
    print(
        f"\n{args.rounds} paired rounds, N={args.n}, concurrency {args.concurrency}, "
        f"{time.monotonic() - started:.0f} s, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    for level in ratios:
        for name in ("before", "after"):
            print(f"{level:>9} {name:>6}: {describe(results[level, name])}")
        rs = ratios[level]
        print(
            f"{level:>9} after/before: median {statistics.median(rs):.3f} (range {min(rs):.3f}-{max(rs):.3f})"
        )


if __name__ == "__main__":
    main()
