"""Profile tanx-async's cancel hot path (scenario a: latency 0, C=64) with cProfile.

Runs ``cancel_many`` (or, with ``--mode iter``, ``cancel_iter`` over a generator) over ids 1..N against ``--url`` (or a fake server it starts itself) after a
warm-up, and prints the top functions by cumulative time in µs per cancel. ``--json`` prints one
JSON line for ``run.py``; ``--pyinstrument`` uses pyinstrument instead when it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import WARMUP_ID_BASE, loopback_only, make_access_token

_SKIP_PREFIXES = ("<built-in method builtins.exec>", "profile_tanx.py")


def _func_name(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    path = Path(filename)
    parts = path.parts
    for anchor in ("site-packages", "tanx_async", "asyncio", "lib"):
        if anchor in parts:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            rel = "/".join(parts[i + (1 if anchor in ("site-packages", "lib") else 0) :])
            return f"{rel}:{line}({name})"
    return f"{path.name}:{line}({name})"


def _package(key: tuple[str, int, str]) -> str:
    filename = key[0]
    if filename == "~":
        return "builtins"
    parts = Path(filename).parts
    if "tanx_async" in parts:
        return "tanx_async"
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].split(".")[0]
    if "asyncio" in parts:
        return "asyncio"
    return "stdlib/other"


async def _run(url: str, n: int, c: int, warmup: int, prof: Any, mode: str = "many") -> tuple[float, int]:
    from tanx_async import AsyncTanxSession

    async with AsyncTanxSession(base_url=url, access_token=make_access_token()) as session:
        await session.orders.cancel_many(list(range(WARMUP_ID_BASE, WARMUP_ID_BASE + warmup)), concurrency=c)
        ok = 0
        if mode == "many":
            ids = list(range(1, n + 1))
            prof.enable()
            t0 = time.perf_counter()
            outcomes = await session.orders.cancel_many(ids, concurrency=c)
            wall = time.perf_counter() - t0
            prof.disable()
            ok = sum(1 for o in outcomes if getattr(o, "ok", False))
        else:
            prof.enable()
            t0 = time.perf_counter()
            async for o in session.orders.cancel_iter((i for i in range(1, n + 1)), concurrency=c):
                ok += bool(getattr(o, "ok", False))
            wall = time.perf_counter() - t0
            prof.disable()
    return wall, ok


def profile_cprofile(url: str, n: int, c: int, warmup: int, top: int, mode: str = "many") -> dict[str, Any]:
    prof = cProfile.Profile()
    wall, ok = asyncio.run(_run(url, n, c, warmup, prof, mode))
    stats = pstats.Stats(prof)
    print(f"total function calls per cancel: {stats.total_calls / n:.1f}")  # type: ignore[attr-defined]
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = []
    by_pkg: dict[str, float] = defaultdict(float)
    loop_turns = 0
    for key, (_cc, nc, tt, ct, _callers) in raw.items():
        if key[2] == "_run_once" and key[0].endswith("base_events.py"):
            loop_turns += nc
        by_pkg[_package(key)] += tt
        name = _func_name(key)
        if any(name.startswith(s) for s in _SKIP_PREFIXES):
            continue
        rows.append(
            {
                "func": name,
                "calls": nc / n,
                "tot_us": tt / n * 1e6,
                "cum_us": ct / n * 1e6,
            }
        )
    rows.sort(key=lambda r: -r["cum_us"])
    own = sorted(rows, key=lambda r: -r["tot_us"])[: top // 2]
    top_rows = rows[:top]
    seen = {r["func"] for r in top_rows}
    top_rows += [r for r in own if r["func"] not in seen]
    pkgs = sorted(((k, v / n * 1e6) for k, v in by_pkg.items()), key=lambda kv: -kv[1])
    ours = [r for r in rows if r["func"].startswith("tanx_async/")][:top]
    return {
        "mode": mode,
        "loop_turns_per_cancel": loop_turns / n,
        "tanx_rows": ours,
        "n": n,
        "concurrency": c,
        "wall_s": wall,
        "ok": ok,
        "rows": top_rows,
        "by_package": pkgs[:8],
    }


def profile_pyinstrument(url: str, n: int, c: int, warmup: int, mode: str = "many") -> str:
    from pyinstrument import Profiler

    class _Adapter:
        def __init__(self) -> None:
            self.p = Profiler(async_mode="disabled", interval=0.0002)

        def enable(self) -> None:
            self.p.start()

        def disable(self) -> None:
            self.p.stop()

    adapter = _Adapter()
    asyncio.run(_run(url, n, c, warmup, adapter, mode))
    text: str = adapter.p.output_text(unicode=False, color=False, show_all=False)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--url", default=None, help="server URL (default: start a fake server)")
    p.add_argument("-n", "--n", type=int, default=5000)
    p.add_argument("-c", "--concurrency", type=int, default=64)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--json", action="store_true")
    p.add_argument("--pyinstrument", action="store_true")
    p.add_argument(
        "--mode", choices=("many", "iter"), default="many", help="cancel_many or cancel_iter(generator)"
    )
    args = p.parse_args(argv)
    try:
        from tanx_async import AsyncTanxSession  # noqa: F401
    except ImportError as exc:
        print(json.dumps({"skipped": f"tanx_async not importable: {exc}"}))
        return 0

    def go(url: str) -> None:
        loopback_only(url)
        if args.pyinstrument:
            print(profile_pyinstrument(url, args.n, args.concurrency, args.warmup, args.mode))
            return
        result = profile_cprofile(url, args.n, args.concurrency, args.warmup, args.top, args.mode)
        if args.json:
            print(json.dumps(result))
            return
        print(f"{result['n']} cancels, wall {result['wall_s']:.2f}s under cProfile, ok={result['ok']}")
        print(f"{'cum us/cancel':>14} {'own us/cancel':>14} {'calls/cancel':>13}  function")
        for r in result["rows"]:
            print(f"{r['cum_us']:14.1f} {r['tot_us']:14.1f} {r['calls']:13.2f}  {r['func']}")
        print("own time by package (us/cancel):", result["by_package"])
        print(f"event-loop iterations per cancel: {result['loop_turns_per_cancel']:.3f}")
        print("tanx_async functions by cumulative time:")
        for r in result["tanx_rows"]:
            print(f"{r['cum_us']:14.1f} {r['tot_us']:14.1f} {r['calls']:13.2f}  {r['func']}")

    if args.url:
        go(args.url)
    else:
        from _harness import fake_server

        with fake_server(0.0, max_seconds=600) as server:
            go(server.url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
