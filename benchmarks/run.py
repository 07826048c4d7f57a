"""The benchmark suite of tanx-async: every measurement is a scenario of this script.

``--scenarios`` picks them (``python benchmarks/run.py --help`` lists them all; a run with no
``--scenarios`` runs the default set). The suite, scenarios a-tls, b-tls, a, b, c and d: the fake
exchange (``_fakeserver.py``, pinned to core 0) per scenario, every client driver as its own
process (``_driver.py``, pinned to core 1), R times interleaved (so every client sees the same
noise), every cancel checked (driver count *and* server-side counter). The other scenarios live in
``scenarios/``, one module each. Each scenario writes its own section of ``benchmarks/RESULTS.md``
(between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``); the sections of scenarios that did not
run are kept as they are. See ``benchmarks/README.md`` for what each number means."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _charts import CPU_CHART, LATENCY_CHART, write_charts
from _charts import main as chart_main
from _harness import (
    BENCH,
    CLIENT_CORE,
    OUT,
    REPO,
    SERVER_CORE,
    can_pin,
    child_command,
    child_env,
    ensure_official_venv,
    fake_server,
    official_python,
    package_versions,
    run_child,
    wait_quiet,
)
from scenarios import SCENARIOS, Context
from scenarios._base import commit, markers
from scenarios._ratios import render_ratios


def _dedupe_window() -> int:
    """cancel_iter's deduplication window (``tanx_async._constants.DEDUPE_WINDOW``), read from the
    source so that the orchestrator imports nothing of the package."""
    found = re.search(
        r"^DEDUPE_WINDOW: Final = ([\d_]+)$", (REPO / "tanx_async" / "_constants.py").read_text(), re.M
    )
    if found is None:
        raise SystemExit("DEDUPE_WINDOW not found in tanx_async/_constants.py")
    return int(found.group(1))


DEDUPE_WINDOW = _dedupe_window()

#: The suite: every client in scenarios (a) and (b), over TLS and not; (c) memory; (d) import.
#: Written together as RESULTS.md's ``suite`` section. The other scenarios: ``scenarios/``.
SUITE = ("a-tls", "b-tls", "a", "b", "c", "d")
DEFAULT_SCENARIOS = SUITE + tuple(e.name for e in SCENARIOS if e.default)
ALL_SCENARIOS = SUITE + tuple(e.name for e in SCENARIOS)
TITLE = "# tanx-async benchmark results\n"
WARMUP = 300
CONCURRENCY = 64
OFFICIAL_THREADS = 16
HEAVY_MODULES = (
    "eth_account",
    "eth_keys",
    "eth_abi",
    "web3",
    "uvicorn",
    "starlette",
    "fastapi",
    "rich",
    "aiohttp",
    "httpx_aiohttp",
    "pydantic",
    "coincurve",
    "Crypto",
    "click",
    "hypothesis",
    "respx",
)


@dataclass(frozen=True)
class ClientSpec:
    name: str
    official: bool = False
    threads: int = 1
    note: str = ""

    def concurrency(self) -> int:
        return self.threads if self.official else CONCURRENCY


CLIENTS: tuple[ClientSpec, ...] = (
    # tanx-async runs right after raw aiohttp in every repeat: the ratio that matters is measured
    # on adjacent runs, so a shift in the shared machine's speed between them stays small.
    ClientSpec("aiohttp", note="raw aiohttp.ClientSession + json.loads (the reference)"),
    ClientSpec("tanx-async", note="AsyncTanxSession.orders.cancel_many, default (native) transport"),
    ClientSpec(
        "floor", note="the Python floor: minimal asyncio.BufferedProtocol client, pre-built requests, orjson"
    ),
    ClientSpec("tanx-async-uvloop", note="tanx-async on a uvloop event loop"),
    ClientSpec("tanx-async-trio", note="tanx-async under trio (the built-in client over anyio streams)"),
    ClientSpec("httpx", note="httpx.AsyncClient, default httpcore transport"),
    ClientSpec("httpx-aiohttp", note="httpx.AsyncClient(transport=AiohttpTransport())"),
    ClientSpec(
        "official-seq",
        official=True,
        threads=1,
        note="tanx-connector 2.1.0, sequential",
    ),
    ClientSpec(
        "official-16thr",
        official=True,
        threads=OFFICIAL_THREADS,
        note="tanx-connector 2.1.0, 16 threads, one Client",
    ),
)


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    latency: float
    n: int
    official_seq_n: int  # a sequential client at 5 ms would take N*5 ms; it gets a smaller N
    tls: bool = False  # https with a certificate made at run time (trustme), verification on


@dataclass
class Cell:
    """All repeats of one (scenario, client)."""

    scenario: Scenario
    spec: ClientSpec
    n: int
    runs: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None

    def good(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r.get("_valid")]

    def median(self, key: str) -> float | None:
        vals = [float(r[key]) for r in self.good()]
        return statistics.median(vals) if vals else None


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def client_cmd(spec: ClientSpec, url: str, n: int, extra: list[str] | None = None) -> list[str]:
    common = ["--url", url, "-n", str(n), "--warmup", str(WARMUP)]
    if spec.official:
        return child_command(
            "_driver_official",
            *common,
            "--threads",
            str(spec.threads),
            *(extra or []),
            python=official_python(),
        )
    return child_command("_driver", "--client", spec.name, *common, "-c", str(CONCURRENCY), *(extra or []))


def child_timeout(n: int, latency: float, conc: int) -> float:
    # generous: 3 ms CPU per cancel worst case, plus the latency floor, plus start-up
    return 60.0 + n * 0.003 + (n * latency / max(conc, 1)) * 3


def validate(result: dict[str, Any], n: int, server_delta: int | None) -> str | None:
    if "error" in result:
        return str(result["error"])
    if result.get("ok") != n or result.get("failed"):
        return f"ok={result.get('ok')} failed={result.get('failed')} of {n}: {result.get('errors')}"
    if server_delta is not None and server_delta < n + WARMUP:
        return f"server saw only {server_delta} cancels for {n}+{WARMUP} warm-up"
    return None


def run_scenario(sc: Scenario, specs: list[ClientSpec], repeats: int) -> list[Cell]:
    cells = [Cell(sc, s, sc.official_seq_n if s.official and s.threads == 1 else sc.n) for s in specs]
    with fake_server(sc.latency, tls=sc.tls) as server:
        log(f"scenario {sc.key}: server {server.url} latency={sc.latency * 1000:g} ms")
        for rep in range(repeats):
            for cell in cells:
                if cell.skipped:
                    continue
                before = server.stats()["cancels"]
                conc = cell.spec.concurrency()
                res = run_child(
                    client_cmd(cell.spec, server.url, cell.n, server.client_args()),
                    timeout=child_timeout(cell.n, sc.latency, conc),
                )
                delta = server.stats()["cancels"] - before
                if "skipped" in res:
                    cell.skipped = str(res["skipped"])
                    log(f"  {cell.spec.name}: SKIPPED ({cell.skipped})")
                    continue
                res["server_cancels"] = delta
                why = validate(res, cell.n, delta)
                res["_valid"] = why is None
                cell.runs.append(res)
                if why:
                    cell.problems.append(why)
                    log(f"  {cell.spec.name} rep {rep + 1}: INVALID {why}")
                else:
                    log(
                        f"  {cell.spec.name} rep {rep + 1}: wall {res['wall_s']:.3f}s "
                        f"cpu {res['cpu_s'] / cell.n * 1e6:.0f} us/cancel"
                    )
                wait_quiet(0.2)
    return cells


# --------------------------------------------------------------------------- memory (c)


def run_memory(ns: list[int], repeats: int, tracemalloc: bool) -> list[Cell]:
    spec = ClientSpec("tanx-async-iter", note="cancel_iter over a generator of ids")
    sc = Scenario("c", "memory", 0.0, 0, 0)
    cells = [Cell(sc, spec, n) for n in ns]
    with fake_server(0.0) as server:
        log(f"scenario c: server {server.url}")
        for rep in range(repeats):
            for cell in cells:
                if cell.skipped:
                    continue
                before = server.stats()["cancels"]
                extra = ["--tracemalloc"] if tracemalloc else []
                res = run_child(
                    client_cmd(spec, server.url, cell.n, extra),
                    timeout=child_timeout(cell.n, 0.0, CONCURRENCY) * (3 if tracemalloc else 1),
                )
                delta = server.stats()["cancels"] - before
                if "skipped" in res:
                    cell.skipped = str(res["skipped"])
                    log(f"  tanx-async-iter: SKIPPED ({cell.skipped})")
                    continue
                why = validate(res, cell.n, delta)
                res["_valid"] = why is None
                if res.get("hwm_after_kb") is not None and res.get("rss_before_kb") is not None:
                    res["growth_kb"] = res["hwm_after_kb"] - res["rss_before_kb"]
                cell.runs.append(res)
                if why:
                    cell.problems.append(why)
                    log(f"  N={cell.n} rep {rep + 1}: INVALID {why}")
                else:
                    log(
                        f"  N={cell.n} rep {rep + 1}: wall {res['wall_s']:.2f}s "
                        f"peak growth {res.get('growth_kb')} kB"
                    )
    return cells


# --------------------------------------------------------------------------- import (d)

_IMPORTTIME_RE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


# httpx's __init__ imports its CLI (httpx._main -> click, rich, pygments) whenever those happen to
# be installed; a plain ``pip install tanx-async`` does not install them. Blocking them shows the
# import cost a user without them pays.
_BLOCK_CLI = "import sys\nfor m in ('rich', 'click', 'pygments'):\n    sys.modules[m] = None\n"


def _importtime_once(code: str) -> tuple[int | None, dict[str, int], dict[str, int], str | None]:
    """(tanx_async cumulative µs, its direct children's µs, third-party packages' µs, error)."""
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
        cwd=REPO,
    )
    if r.returncode != 0:
        return None, {}, {}, (r.stderr.strip().splitlines() or ["?"])[-1]
    total: int | None = None
    children: dict[str, int] = {}
    packages: dict[str, int] = {}
    stdlib: frozenset[str] = getattr(sys, "stdlib_module_names", frozenset())
    # -X importtime prints children before their parent: collect the direct children (level 1)
    # seen since the previous top-level line and keep them when that parent is tanx_async.
    pending: list[tuple[str, int]] = []
    for m in _IMPORTTIME_RE.finditer(r.stderr):
        _self_us, cum_us, indent, name = m.groups()
        level = (len(indent) - 1) // 2
        if "." not in name and name not in stdlib and not name.startswith("_") and name != "tanx_async":
            packages.setdefault(name, int(cum_us))
        if level == 0:
            if name == "tanx_async":
                total = int(cum_us)
                children.update(pending)
            pending = []
        elif level == 1:
            pending.append((name, int(cum_us)))
    return total, children, packages, None


def _median_map(maps: list[dict[str, int]], top: int) -> list[tuple[str, float]]:
    keys = {k for m in maps for k in m}
    meds = ((k, statistics.median([m.get(k, 0) for m in maps])) for k in keys)
    return sorted(meds, key=lambda kv: -kv[1])[:top]


def run_import(repeats: int) -> dict[str, Any]:
    env = child_env()
    py = sys.executable
    totals: list[int] = []
    blocked: list[int] = []
    children: list[dict[str, int]] = []
    packages: list[dict[str, int]] = []
    for _ in range(repeats):
        total, kids, pkgs, err = _importtime_once("import tanx_async")
        if err is not None:
            return {"error": err}
        if total is not None:
            totals.append(total)
        children.append(kids)
        packages.append(pkgs)
        total_b, _, _, err = _importtime_once(_BLOCK_CLI + "import tanx_async")
        if total_b is not None and err is None:
            blocked.append(total_b)
    walls: list[float] = []
    base_walls: list[float] = []
    for _ in range(repeats):
        for code, sink in (("import tanx_async", walls), ("pass", base_walls)):
            t0 = time.perf_counter()
            subprocess.run([py, "-c", code], env=env, cwd=REPO, timeout=120, check=True)
            sink.append(time.perf_counter() - t0)
    mods_code = (
        "import sys, json\nbase = set(sys.modules)\nimport tanx_async\n"
        "print(json.dumps(sorted(set(sys.modules) - base)))"
    )
    r = subprocess.run(
        [py, "-c", mods_code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )
    mods: list[str] = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else []
    stdlib: frozenset[str] = getattr(sys, "stdlib_module_names", frozenset())
    third = sorted({m.split(".")[0] for m in mods} - set(stdlib) - {"tanx_async"})
    third = [t for t in third if not t.startswith("_")]
    heavy = {h: any(m == h or m.startswith(h + ".") for m in mods) for h in HEAVY_MODULES}
    return {
        "import_us": statistics.median(totals) if totals else None,
        "import_no_cli_us": statistics.median(blocked) if blocked else None,
        "process_wall_s": statistics.median(walls),
        "baseline_wall_s": statistics.median(base_walls),
        "modules_added": len(mods),
        "third_party": third,
        "httpx_cli": "httpx._main" in mods,
        "heavy": heavy,
        "top_children": _median_map(children, 10),
        "top_packages_us": _median_map(packages, 10),
    }


# --------------------------------------------------------------------------- capacity


def measure_capacity(seconds: float) -> list[dict[str, Any]]:
    out = []
    with fake_server(0.0) as server:
        for depth in (16, 1):
            cmd = child_command("_loadgen", "--url", server.url, "--connections", "64", "--depth", str(depth))
            res = run_child([*cmd, "--seconds", str(seconds)], timeout=seconds + 60)
            log(f"server capacity depth={depth}: {res}")
            out.append(res)
    return out


# --------------------------------------------------------------------------- profile


def run_profile(n: int, mode: str = "many") -> dict[str, Any]:
    with fake_server(0.0) as server:
        return run_child(
            [
                sys.executable,
                str(BENCH / "profile_tanx.py"),
                "--url",
                server.url,
                "-n",
                str(n),
                "-c",
                str(CONCURRENCY),
                "--mode",
                mode,
                "--json",
            ],
            timeout=300,
        )


# --------------------------------------------------------------------------- report


def fmt(v: float | None, spec: str, dash: str = "—") -> str:
    return dash if v is None else format(v, spec)


def machine_info() -> list[str]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ours = package_versions(
        sys.executable,
        [
            "tanx-async",
            "httpx",
            "httpcore",
            "h11",
            "aiohttp",
            "httpx-aiohttp",
            "anyio",
            "orjson",
        ],
    )
    official = (
        package_versions(
            official_python(),
            ["tanx-connector", "requests", "urllib3", "web3", "sympy"],
        )
        if official_python().exists()
        else {}
    )
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = []
    load = os.getloadavg()
    pin_note = (
        f"taskset, server on core {SERVER_CORE}, clients on core {CLIENT_CORE}"
        if can_pin()
        else "none (taskset unavailable)"
    )
    return [
        f"- nproc: {os.cpu_count()} (affinity {affinity}); CPU: {cpu}",
        (
            f"- Python {platform.python_version()} ({platform.python_implementation()}), "
            f"{platform.system()} {platform.release()}"
        ),
        "- pinning: " + pin_note,
        (
            f"- load average at report time: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
            "(other work shares this machine: numbers are noisy, compare ratios within a run)"
        ),
        "- main venv: " + ", ".join(f"{k} {v}" for k, v in ours.items()),
        "- official venv: " + (", ".join(f"{k} {v}" for k, v in official.items()) or "absent"),
    ]


def render(
    args: argparse.Namespace,
    cells: list[Cell],
    capacity: list[dict[str, Any]],
    memory: list[Cell],
    imports: dict[str, Any] | None,
    profile: dict[str, Any] | None,
    profile_iter: dict[str, Any] | None,
    notes: list[str],
    started: float,
) -> str:
    """RESULTS.md's text for one run of the suite: one section per function below."""
    lines = [
        *render_header(args, started),
        *render_capacity(cells, capacity),
        *render_throughput(cells, memory),
        *render_memory(cells, memory),
        *render_imports(args, imports),
        *render_profile(profile, profile_iter),
        *render_notes(cells, notes),
    ]
    return "\n".join(lines) + "\n"


def render_header(args: argparse.Namespace, started: float) -> list[str]:
    cmd = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/run.py", *sys.argv[1:]])
    how = "QUICK run: small N, 1 repeat" if args.quick else f"{args.repeats} repeats, medians"
    return [
        (
            f"Generated {dt.datetime.now().astimezone().isoformat(timespec='seconds')} by `{cmd}` "
            f"at commit {commit()} ({how}; took {time.time() - started:.0f} s). "
            "Regenerate with `python3 scripts/bench.py` (or `python benchmarks/run.py` from the project venv)."
        ),
        "",
        "## Machine",
        "",
        *machine_info(),
        "",
        "## Server",
        "",
        (
            "`benchmarks/_fakeserver.py`: raw `asyncio.Protocol` HTTP/1.1 loopback server (keep-alive, "
            "pipelining), answers `POST /sapi/v1/orders/cancel/` with the documented success envelope "
            "(≈560-byte body) echoing `order_id`; latency injected with `loop.call_later`. One process, "
            "one core."
        ),
        "",
    ]


def render_capacity(cells: list[Cell], capacity: list[dict[str, Any]]) -> list[str]:
    """The server's capacity, and how much of it the fastest client used (is the server the limit?)."""
    lines = []
    best = max(
        (c.n / w for c in cells if (w := c.median("wall_s")) and c.scenario.key == "a"),
        default=0.0,
    )
    for cap in capacity:
        if "rps" in cap:
            lines.append(
                f"- capacity, 64 connections x {cap['depth']} pipelined requests: "
                f"**{cap['rps']:,.0f} req/s** ({cap['responses']:,} responses in {cap['seconds']:.1f} s)"
            )
        else:
            lines.append(f"- capacity measurement failed: {cap.get('error')}")
    rps = [c["rps"] for c in capacity if "rps" in c]
    if rps and best:
        lines.append(
            f"- fastest client in scenario (a) reached {best:,.0f} cancels/s = "
            f"{best / max(rps) * 100:.0f}% of the server's capacity: **the server is not the "
            "bottleneck**; the client's CPU is."
        )
    return lines


def render_throughput(cells: list[Cell], memory: list[Cell]) -> list[str]:
    """Scenarios (a) and (b): one row per client, ratios to raw aiohttp and to the N·L/C floor."""
    lines = [
        "",
        "## Cancel throughput and CPU (scenarios a, b)",
        "",
        (
            "(a) CPU: latency 0, so the client's own CPU per cancel is what limits it. "
            "(b) wall: 5 ms server latency, where the floor is N·L/C. At C=64 and L=5 ms that floor is "
            "78 µs per cancel: a client spending more CPU than that per cancel on its one core cannot "
            "reach it, so in (b) too the wall time mostly measures CPU."
        ),
        "",
        (
            "| scenario | client | N | latency | concurrency | median wall (s) | cancels/s | "
            "client CPU / cancel (µs) | CPU vs raw aiohttp | wall vs floor N·L/C | "
            "throughput vs raw aiohttp | peak RSS (MB) | runs ok |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in ("a-tls", "b-tls", "a", "b"):
        sc_cells = [c for c in cells if c.scenario.key == key]
        ref = next((c for c in sc_cells if c.spec.name == "aiohttp"), None)
        lines += [throughput_row(key, c, ref) for c in sc_cells]
    problems = [(c, p) for c in cells + memory for p in c.problems]
    if problems:
        lines += ["", "**Invalid runs (excluded from medians):**", ""]
        lines += [f"- {c.scenario.key} {c.spec.name} N={c.n}: {p}" for c, p in problems]
    return [
        *lines,
        "",
        (
            "Every run is checked twice: the driver counts responses that are HTTP 200 with "
            '`"status": "success"` and the requested id (tanx-async: outcomes with `.ok`), and the '
            "server's own counter must have grown by at least N + warm-up. A run that misses either is "
            "invalid and excluded from the medians."
        ),
        "",
        "Clients: " + "; ".join(f"`{s.name}` = {s.note}" for s in CLIENTS) + ".",
    ]


def throughput_row(key: str, c: Cell, ref: Cell | None) -> str:
    """One client's row of the throughput table; ``ref`` is raw aiohttp's cell of the same scenario."""
    ref_cpu_total = ref.median("cpu_s") if ref else None
    ref_cpu = ref_cpu_total / ref.n if ref and ref_cpu_total else None
    ref_wall = ref.median("wall_s") if ref else None
    ref_tput = ref.n / ref_wall if ref and ref_wall else None
    conc = c.spec.concurrency()
    lat = c.scenario.latency
    if c.skipped:
        return (
            f"| {key} | {c.spec.name} | {c.n} | {lat * 1000:g} ms | {conc} | "
            f"skipped: {c.skipped[:70]} | | | | | | | 0/0 |"
        )
    wall = c.median("wall_s")
    cpu = c.median("cpu_s")
    rss = c.median("maxrss_kb")
    cpc = cpu / c.n if cpu is not None else None
    tput = c.n / wall if wall else None
    floor = c.n * lat / conc if lat > 0 else None
    cols = [
        key,
        c.spec.name,
        str(c.n),
        f"{lat * 1000:g} ms",
        str(conc),
        fmt(wall, ".3f"),
        fmt(tput, ",.0f"),
        fmt(cpc * 1e6 if cpc is not None else None, ".0f"),
        fmt(cpc / ref_cpu if cpc is not None and ref_cpu else None, ".2f") + "x",
        (fmt(wall / floor, ".2f") + "x") if floor and wall else "—",
        fmt(tput / ref_tput if tput and ref_tput else None, ".2f") + "x",
        fmt(rss / 1024 if rss is not None else None, ".0f"),
        f"{len(c.good())}/{len(c.runs)}",
    ]
    return "| " + " | ".join(cols) + " |"


def render_memory(cells: list[Cell], memory: list[Cell]) -> list[str]:
    """Scenario (c): ``cancel_iter`` over a generator, peak memory against N."""
    lines = ["", "## Memory (scenario c)", ""]
    if not memory:
        return [*lines, "not run"]
    if all(c.skipped for c in memory):
        return [*lines, f"skipped: {memory[0].skipped}"]
    lines += [
        (
            "tanx-async `orders.cancel_iter(<generator of ids>, concurrency=64)`, outcomes counted "
            "and dropped, latency 0. *Peak growth* = peak RSS during the run (VmHWM, reset via "
            "`/proc/self/clear_refs` at the start) minus RSS at the start."
        ),
        "",
        (
            "| N | median wall (s) | cancels/s | CPU / cancel (µs) | peak RSS growth (MB) | "
            "peak RSS (MB) | tracemalloc peak (MB) | runs ok |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in memory:
        for r in c.runs:
            if "tracemalloc_peak_kb" in r.get("extra", {}):
                r["tracemalloc_peak_kb"] = r["extra"]["tracemalloc_peak_kb"]
        wall, cpu, g = c.median("wall_s"), c.median("cpu_s"), c.median("growth_kb")
        traced = all("tracemalloc_peak_kb" in r for r in c.good()) and c.good()
        trace = c.median("tracemalloc_peak_kb") if traced else None
        rss = c.median("maxrss_kb")
        lines.append(
            f"| {c.n:,} | {fmt(wall, '.2f')} | {fmt(c.n / wall if wall else None, ',.0f')} | "
            f"{fmt(cpu / c.n * 1e6 if cpu else None, '.0f')} | "
            f"{fmt(g / 1024 if g is not None else None, '.1f')} | "
            f"{fmt(rss / 1024 if rss else None, '.0f')} | "
            f"{fmt(trace / 1024 if trace is not None else None, '.1f')} | "
            f"{len(c.good())}/{len(c.runs)} |"
        )
    lines += memory_verdict(memory)
    many = next((c for c in cells if c.scenario.key == "a" and c.spec.name == "tanx-async"), None)
    many_cpu = many.median("cpu_s") if many else None
    iter_cpu = [c.median("cpu_s") for c in memory]
    if many and many_cpu and iter_cpu[-1]:
        per_iter = (iter_cpu[-1] or 0.0) / memory[-1].n
        per_many = many_cpu / many.n
        lines += [
            "",
            f"CPU per cancel through `cancel_iter` ({per_iter * 1e6:.0f} µs at N={memory[-1].n:,}) vs "
            f"`cancel_many` in scenario (a) ({per_many * 1e6:.0f} µs): {per_iter / per_many:.2f}x "
            "(see the cancel_iter profile below for why).",
        ]
    return lines


def render_imports(args: argparse.Namespace, imports: dict[str, Any] | None) -> list[str]:
    """Scenario (d): what ``import tanx_async`` costs and brings in."""
    lines = ["", "## Import (scenario d)", ""]
    if imports is None:
        return [*lines, "not run"]
    if "error" in imports:
        return [*lines, f"skipped: `import tanx_async` failed: {imports['error']}"]
    heavy_in = [k for k, v in imports["heavy"].items() if v]
    no_cli = imports.get("import_no_cli_us")
    via_cli = (
        " — through `httpx._main`: httpx's `__init__` imports its CLI whenever "
        "click, rich and pygments are installed (they are in this dev venv, e.g. via "
        "uvicorn); a lazy `import httpx` or a venv without them avoids it"
        if imports.get("httpx_cli")
        else ""
    )
    heavy = ", ".join(f"**`{h}`**" for h in heavy_in) + via_cli if heavy_in else "none"
    return [
        *lines,
        f'- `python -X importtime -c "import tanx_async"`: tanx_async cumulative '
        f"**{imports['import_us'] / 1000:.1f} ms** (median of {args.import_repeats})",
        f"- the same with rich/click/pygments unavailable (a plain install, see below): "
        f"**{no_cli / 1000:.1f} ms**"
        if no_cli is not None
        else "- (import with rich/click/pygments blocked failed)",
        f'- process wall `python -c "import tanx_async"` {imports["process_wall_s"] * 1000:.0f} ms '
        f"vs `python -c pass` {imports['baseline_wall_s'] * 1000:.0f} ms",
        f"- modules added by the import: {imports['modules_added']}; third-party packages: "
        + ", ".join(f"`{t}`" for t in imports["third_party"]),
        "- heavy extras imported: " + heavy + " (checked: " + ", ".join(HEAVY_MODULES) + ")",
        "- largest third-party packages (cumulative, first import): "
        + ", ".join(f"`{n}` {us / 1000:.1f} ms" for n, us in imports["top_packages_us"] if us >= 500),
        "- largest direct submodules of tanx_async (cumulative): "
        + ", ".join(f"`{n}` {us / 1000:.1f} ms" for n, us in imports["top_children"]),
    ]


def profile_rows(rows: list[dict[str, Any]]) -> list[str]:
    """A profile table: header and one row per function."""
    return [
        "| cumulative µs/cancel | own µs/cancel | calls/cancel | function |",
        "|---|---|---|---|",
        *(f"| {r['cum_us']:.1f} | {r['tot_us']:.1f} | {r['calls']:.2f} | `{r['func']}` |" for r in rows),
    ]


def render_profile(profile: dict[str, Any] | None, profile_iter: dict[str, Any] | None) -> list[str]:
    """cProfile of ``cancel_many`` (and of ``cancel_iter``, when scenario c ran)."""
    lines = ["", "## Profile of tanx-async's hot path (scenario a, cProfile)", ""]
    if profile is None:
        return [*lines, "not run"]
    if "error" in profile or "skipped" in profile:
        return [*lines, f"skipped: {profile.get('error') or profile.get('skipped')}"]
    lines += [
        (
            f"{profile['n']} cancels at concurrency {profile['concurrency']}, latency 0; "
            f"wall {profile['wall_s']:.2f} s under cProfile (which inflates small calls: compare "
            "rows, not absolutes). µs per cancel = time / N."
        ),
        "",
        *profile_rows(profile["rows"]),
    ]
    if profile.get("tanx_rows"):
        lines += [
            "",
            "tanx_async's own functions (coroutines count one call per resumption):",
            "",
            *profile_rows(profile["tanx_rows"]),
        ]
    if profile.get("by_package"):
        lines += [
            "",
            "Own time by package (µs/cancel): "
            + ", ".join(f"`{k}` {v:.0f}" for k, v in profile["by_package"])
            + f"; event-loop iterations per cancel: {profile.get('loop_turns_per_cancel', 0):.3f}.",
        ]
    if profile_iter and "rows" in profile_iter:
        lines += [
            "",
            "### The same for `cancel_iter` over a generator (scenario c's path)",
            "",
            f"wall {profile_iter['wall_s']:.2f} s under cProfile; event-loop iterations per cancel: "
            f"**{profile_iter.get('loop_turns_per_cancel', 0):.3f}** (cancel_many: "
            f"{profile.get('loop_turns_per_cancel', 0):.3f}). Own time by package (µs/cancel): "
            + ", ".join(f"`{k}` {v:.0f}" for k, v in profile_iter["by_package"])
            + ".",
            "",
            *profile_rows(profile_iter["tanx_rows"][:12]),
        ]
    return lines


def render_notes(cells: list[Cell], notes: list[str]) -> list[str]:
    """What to keep in mind reading this run: a shared core, httpx's known cost."""
    notes = list(notes)
    contended = [
        f"{c.spec.name}"
        for c in cells
        if c.scenario.key == "a"
        and not c.spec.official
        and any(r["wall_s"] > 1.3 * r["cpu_s"] for r in c.good())
    ]
    if contended:
        notes.append(
            "in scenario (a) some runs of "
            + ", ".join(f"`{n}`" for n in contended)
            + " took >1.3x longer in wall time than in CPU time: the client core was shared with "
            "other work then, so trust the CPU columns over the wall/throughput ones for those"
        )
    httpx_cell = next((c for c in cells if c.scenario.key == "a" and c.spec.name == "httpx"), None)
    aio_cell = next((c for c in cells if c.scenario.key == "a" and c.spec.name == "aiohttp"), None)
    hx = httpx_cell.median("cpu_s") if httpx_cell else None
    ax = aio_cell.median("cpu_s") if aio_cell else None
    if hx and ax and hx > 5 * ax:
        notes.append(
            f"httpx's own transport costs {hx / ax:.0f}x raw aiohttp's CPU per cancel at concurrency 64 "
            "(known upstream: encode/httpx#3215; httpcore's `_assign_requests_to_connections` rescans "
            "every connection and request on each state change, encode/httpcore#1035). It grows with "
            "concurrency, which is why the library must not put a cancel burst through it"
        )
    return ["", "## Notes", "", *[f"- {n}" for n in notes]] if notes else []


def with_charts(text: str, charts: list[Path], base: Path) -> str:
    """``text`` with the charts embedded before the throughput table (paths relative to ``base``)."""
    if not charts:
        return text
    captions = {
        CPU_CHART: "Client CPU per cancel, scenario (a): lower is better; tanx-async's rows in blue.",
        LATENCY_CHART: (
            "Latency of each cancel within one burst, scenario (b) (exchange latency 5 ms, the red line): "
            "box p25-p75, whiskers p1-p99."
        ),
    }
    section = ["## Charts", ""]
    for chart in charts:
        section += [
            f"![{chart.stem}]({chart.relative_to(base).as_posix()})",
            "",
            captions.get(chart.name, ""),
            "",
        ]
    marker = "## Cancel throughput and CPU"
    head, sep, tail = text.partition(marker)
    return head + "\n".join(section) + "\n" + sep + tail if sep else text + "\n" + "\n".join(section)


def memory_verdict(memory: list[Any]) -> list[str]:
    """Whether ``cancel_iter``'s memory stops growing with N. Its deduplication window keeps the
    last ``DEDUPE_WINDOW`` ids (a set and a queue, about 100 bytes each): below that many ids
    the growth follows N by design, so the verdict compares the two largest runs, which both
    fill the window when the full run's sizes are used."""
    growths = [c.median("growth_kb") for c in memory]
    if len(growths) < 2 or any(g is None for g in growths[-2:]):
        return []
    (a, b), (ga, gb) = (memory[-2].n, memory[-1].n), (growths[-2] or 0.0, growths[-1] or 0.0)
    flat = gb <= ga * 1.25 + 1024
    head = (
        f"Verdict: N {a:,} → {b:,} (x{b // max(a, 1)}): peak growth {ga / 1024:.1f} MB → {gb / 1024:.1f} MB: "
    )
    if a >= DEDUPE_WINDOW:
        verdict = (
            f"**memory stops growing with N** past the deduplication window (the last {DEDUPE_WINDOW:,} ids)."
            if flat
            else "**memory grows with N past the deduplication window** — cancel_iter is holding per-id state."
        )
    else:
        verdict = (
            "**memory does not scale with N**."
            if flat
            else f"memory grows with N, as it must below the deduplication window ({DEDUPE_WINDOW:,} ids); "
            "a full run's sizes show whether it stops there."
        )
    return ["", head + verdict]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="scenarios: "
        + "; ".join(
            [
                "a-tls, b-tls, a, b (CPU and wall per cancel, every client), c (memory), d (import)",
                *(f"{e.name} ({e.about}{'' if e.default else ', opt-in'})" for e in SCENARIOS),
            ]
        ),
    )
    p.add_argument("--quick", action="store_true", help="small N, 1 repeat")
    p.add_argument(
        "--repeats", "-r", type=int, default=None, help="repeats per measurement (3; each scenario's own)"
    )
    p.add_argument(
        "--only",
        action="append",
        default=None,
        help="client name (repeatable or comma-separated): " + ", ".join(s.name for s in CLIENTS),
    )
    p.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated, of {','.join(ALL_SCENARIOS)}, or all (default: {','.join(DEFAULT_SCENARIOS)})",
    )
    p.add_argument("--no-profile", action="store_true", help="skip the tanx-async cProfile")
    p.add_argument("--no-official", action="store_true", help="skip tanx-connector (no venv)")
    p.add_argument("--tracemalloc", action="store_true", help="scenario c: also tracemalloc peak")
    p.add_argument("--output", type=Path, default=None, help="default benchmarks/RESULTS.md")
    p.add_argument(
        "--charts-only", action="store_true", help="redraw the charts from out/results.json, measure nothing"
    )
    args = p.parse_args(argv)
    args.scenario_repeats = args.repeats  # None: each extra scenario's own default
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.import_repeats = 3 if args.quick else 5
    args.wanted = {w for item in (args.only or []) for w in item.split(",") if w}
    unknown = args.wanted - {s.name for s in CLIENTS}
    if unknown:
        p.error(f"unknown client(s) {sorted(unknown)}")
    names = [x for x in args.scenarios.split(",") if x]
    args.scenario_set = set(ALL_SCENARIOS if names == ["all"] else names)
    if not args.scenario_set or args.scenario_set - set(ALL_SCENARIOS):
        p.error(
            f"unknown scenario(s) {sorted(args.scenario_set - set(ALL_SCENARIOS))}; known: {', '.join(ALL_SCENARIOS)}"
        )
    return args


def put_section(text: str, name: str, block: str) -> str:
    """``text`` with ``block`` (which starts and ends with ``name``'s markers) in place of the old
    one, or appended when there was none: a section is replaced only by a run of its scenario."""
    begin, end = markers(name)
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        return head + block + rest.partition(end)[2]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def run_suite(args: argparse.Namespace, scenarios: set[str], notes: list[str]) -> dict[str, Any]:
    """Scenarios a-tls, b-tls, a, b, c, d (those asked for), the server's capacity and the profile."""
    specs = [s for s in CLIENTS if not args.wanted or s.name in args.wanted]
    if args.no_official:
        specs = [s for s in specs if not s.official]
    elif any(s.official for s in specs):
        why = ensure_official_venv(log)
        if why:
            log(f"official connector unavailable: {why}")
            notes.append(f"tanx-connector skipped: {why}")
            specs = [s for s in specs if not s.official]
    n, repeats = (1000 if args.quick else 5000), args.repeats
    tanx_wanted = not args.wanted or "tanx-async" in args.wanted
    got: dict[str, Any] = {"cells": [], "memory": [], "imports": None, "profile": None, "profile_iter": None}
    got["capacity"] = measure_capacity(1.0 if args.quick else 3.0)
    seq_n = 200 if args.quick else 500
    for key, title, latency, tls in (
        ("a-tls", "cpu", 0.0, True),
        ("a", "cpu", 0.0, False),
        ("b-tls", "wall", 0.005, True),
        ("b", "wall", 0.005, False),
    ):
        if key in scenarios:
            official_n = n if latency == 0 else seq_n
            got["cells"] += run_scenario(
                Scenario(key, title, latency, n, official_n, tls=tls), specs, repeats
            )
    if "c" in scenarios and tanx_wanted:
        # The last two full-run sizes are past cancel_iter's deduplication window (50,000 ids).
        mem_ns = [2_000, 20_000] if args.quick else [10_000, 100_000, 300_000]
        got["memory"] = run_memory(mem_ns, 1, args.tracemalloc)
        notes.append("scenario (c) runs once per N (peak RSS is a high-water mark, not noisy)")
    if "d" in scenarios and tanx_wanted:
        got["imports"] = run_import(args.import_repeats)
        log(f"import: {got['imports'].get('import_us') or got['imports'].get('error')}")
    if not args.no_profile and tanx_wanted and "a" in scenarios:
        got["profile"] = run_profile(n)
        log("profile: " + ("ok" if "rows" in got["profile"] else str(got["profile"])))
        if "rows" in got["profile"] and ("c" in scenarios):
            got["profile_iter"] = run_profile(n, "iter")
            log(
                "profile (cancel_iter): "
                + ("ok" if "rows" in got["profile_iter"] else str(got["profile_iter"]))
            )
    return got


def suite_section(
    args: argparse.Namespace, got: dict[str, Any], notes: list[str], output: Path, started: float
) -> str:
    """The ``suite`` section of RESULTS.md, with the charts (written beside ``output``)."""
    cells, memory = got["cells"], got["memory"]
    text = render(
        args,
        cells,
        got["capacity"],
        memory,
        got["imports"],
        got["profile"],
        got["profile_iter"],
        notes,
        started,
    )
    text += "\n".join(render_ratios(cells))
    what = (
        "QUICK run, 1 repeat"
        if args.quick
        else f"median of {args.repeats} runs"
        if args.repeats > 1
        else "1 run"
    )
    raw_cells = raw_suite_cells(got)
    charts = write_charts(raw_cells, output.parent / "charts", f"{what}, {dt.date.today().isoformat()}")
    for chart in charts:
        log(f"wrote {chart.relative_to(REPO) if chart.is_relative_to(REPO) else chart}")
    begin, end = markers("suite")
    return begin + "\n" + with_charts(text, charts, output.parent).strip("\n") + "\n" + end


def raw_suite_cells(got: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"scenario": c.scenario.key, "client": c.spec.name, "n": c.n, "runs": c.runs}
        for c in got["cells"] + got["memory"]
    ]


def run_extra(args: argparse.Namespace, scenarios: set[str]) -> tuple[dict[str, str], dict[str, Any], bool]:
    """The scenarios of ``scenarios/`` asked for: their sections, raw data, and whether any was invalid."""
    ctx = Context(quick=args.quick, repeats=args.scenario_repeats, log=log)
    tanx_wanted = not args.wanted or "tanx-async" in args.wanted
    sections: dict[str, str] = {}
    raw: dict[str, Any] = {}
    bad = False
    for entry in SCENARIOS:
        if entry.name not in scenarios or (entry.needs_tanx and not tanx_wanted):
            continue
        log(f"scenario {entry.name}: {entry.about}")
        try:
            measured = entry.measure(ctx)
        except Exception as exc:  # one scenario's failure is reported, the others still run
            log(f"scenario {entry.name} FAILED (its section is kept as it was): {type(exc).__name__}: {exc}")
            bad = True
            continue
        sections[entry.name] = measured.section
        raw[entry.name] = measured.raw
        bad = bad or measured.invalid
        if measured.invalid:
            log(f"scenario {entry.name}: some runs were invalid (see its section)")
    return sections, raw, bad


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.charts_only:
        return chart_main([])
    scenarios: set[str] = args.scenario_set
    output: Path = args.output or (
        OUT / "RESULTS-quick.md" if args.quick or args.wanted else BENCH / "RESULTS.md"
    )
    started = time.time()
    notes: list[str] = []
    if not can_pin():
        notes.append("taskset unavailable: server and clients were not pinned to separate cores")
    OUT.mkdir(exist_ok=True)
    sections: dict[str, str] = {}
    bad = False
    raw: dict[str, Any] = {}
    if scenarios & set(SUITE):
        got = run_suite(args, scenarios, notes)
        raw = {k: v for k, v in got.items() if k not in ("cells", "memory")}
        raw["cells"] = raw_suite_cells(got)
        sections["suite"] = suite_section(args, got, notes, output, started)
        bad = any(c.problems for c in got["cells"] + got["memory"])
    extra, raw["scenarios"], extra_bad = run_extra(args, scenarios)
    sections.update(extra)
    if "cells" in raw:  # the charts' source: written only by a run of the suite
        (OUT / "results.json").write_text(json.dumps(raw, indent=1, default=str))
    text = output.read_text() if output.exists() else TITLE
    for name, block in sections.items():
        text = put_section(text, name, block)
        if name != "suite":
            print(block)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    log(
        f"wrote {', '.join(sections) or 'nothing'} into {output.relative_to(REPO) if output.is_relative_to(REPO) else output}"
    )
    return 1 if bad or extra_bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
