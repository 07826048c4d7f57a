"""Process plumbing for the orchestrator: the fake server, pinned child processes, the official venv."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
OFFICIAL_VENV = BENCH / ".venv-official"
OFFICIAL_REQUIREMENTS = ("tanx-connector==2.1.0", "sympy<1.13", "web3<7")
SERVER_CORE = 0
CLIENT_CORE = 1
_PROXY_VARS = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
)


def child_env() -> dict[str, str]:
    """Environment for every child: no proxies, loopback exempt, the repo importable."""
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


#: ``python -c BOOT BENCH MODULE ARGS...``: imports ``MODULE`` from ``BENCH`` and runs its ``main()``
#: with ``sys.argv`` = ``[MODULE, *ARGS]``. The modules a child process runs (``_driver``, ``_fakeserver``,
#: ...) are modules with a ``main()``, not scripts: the only scripts here are ``run.py``,
#: ``profile_tanx.py`` and ``ab.py``.
_BOOT = (
    "import importlib, sys; sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = sys.argv.pop(1); "
    "raise SystemExit(importlib.import_module(sys.argv[0]).main())"
)


def child_command(module: str, *args: str, python: str | Path = sys.executable) -> list[str]:
    """The command that runs ``benchmarks/<module>.py``'s ``main()`` in a process of its own
    (``python``: the official connector's venv runs ``_driver_official`` this way too)."""
    return [str(python), "-c", _BOOT, str(BENCH), module, *args]


def can_pin() -> bool:
    """taskset exists and both cores used by the harness are available to us."""
    if shutil.which("taskset") is None:
        return False
    try:
        cores = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return False
    return {SERVER_CORE, CLIENT_CORE} <= cores


def pinned(core: int, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *cmd] if can_pin() else cmd


def last_json_line(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def run_child(cmd: list[str], timeout: float, core: int | None = CLIENT_CORE) -> dict[str, Any]:
    """Run one pinned child to completion (bounded by ``timeout``) and return its JSON line."""
    full = pinned(core, cmd) if core is not None else cmd
    try:
        proc = subprocess.run(
            full,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env(),
            cwd=REPO,
        )
    except subprocess.TimeoutExpired:  # subprocess.run kills the child on timeout
        return {"error": f"timeout after {timeout:.0f}s: {' '.join(cmd)}"}
    data = last_json_line(proc.stdout)
    if proc.returncode != 0 or data is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)}"}
    return data


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and the server's certificate for 127.0.0.1/localhost (PEM files)."""

    ca: Path
    cert: Path
    key: Path


_TLS: TlsFiles | None = None


def tls_files() -> TlsFiles:
    """Made once per process at run time with trustme (the ``bench`` extra), in a temporary
    folder removed at exit. Clients trust ``ca`` only: verification stays on."""
    global _TLS
    if _TLS is None:
        import atexit

        import trustme

        folder = Path(tempfile.mkdtemp(prefix="tanx-bench-tls-"))
        atexit.register(shutil.rmtree, folder, True)
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        files = TlsFiles(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
        ca.cert_pem.write_to_path(str(files.ca))
        server.cert_chain_pems[0].write_to_path(str(files.cert))
        for extra in server.cert_chain_pems[1:]:
            extra.write_to_path(str(files.cert), append=True)
        server.private_key_pem.write_to_path(str(files.key))
        _TLS = files
    return _TLS


class FakeServer:
    """The fake exchange as its own (pinned) process; always stopped on exit."""

    def __init__(
        self,
        latency: float,
        max_seconds: float = 900.0,
        *,
        tls: bool = False,
        keep_alive: float | None = None,
    ) -> None:
        self.latency = latency
        self.max_seconds = max_seconds
        self.tls = tls_files() if tls else None
        self.keep_alive = keep_alive
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def client_args(self) -> list[str]:
        """What a driver needs to trust this server (``--cafile``), if it speaks TLS."""
        return ["--cafile", str(self.tls.ca)] if self.tls else []

    def start(self, ready_timeout: float = 15.0) -> None:
        cmd = child_command(
            "_fakeserver", "--latency", str(self.latency), "--max-seconds", str(self.max_seconds)
        )
        if self.tls:
            cmd += ["--tls", str(self.tls.cert), str(self.tls.key)]
        if self.keep_alive:
            cmd += ["--keep-alive", str(self.keep_alive)]
        self.proc = subprocess.Popen(
            pinned(SERVER_CORE, cmd),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=REPO,
        )
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout=ready_timeout):
                raise RuntimeError("fake server did not report its port in time")
            line = self.proc.stdout.readline()
        finally:
            sel.close()
        info = last_json_line(line)
        if info is None:
            raise RuntimeError(f"fake server said {line!r}")
        self.port = int(info["port"])

    def stats(self) -> dict[str, int]:
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if self.tls:
            handlers.append(
                urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=str(self.tls.ca)))
            )
        opener = urllib.request.build_opener(*handlers)
        with opener.open(self.url + "/__stats", timeout=5) as resp:
            data: dict[str, int] = json.loads(resp.read())
        return data

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@contextlib.contextmanager
def fake_server(
    latency: float, max_seconds: float = 900.0, *, tls: bool = False, keep_alive: float | None = None
) -> Iterator[FakeServer]:
    server = FakeServer(latency, max_seconds, tls=tls, keep_alive=keep_alive)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def official_python() -> Path:
    return OFFICIAL_VENV / "bin" / "python"


def ensure_official_venv(log: Any = print) -> str | None:
    """Create ``benchmarks/.venv-official`` with tanx-connector 2.1.0 if needed; None or why not."""
    py = official_python()
    check = [str(py), "-c", "import tanxconnector; print(tanxconnector.__version__)"]

    def importable() -> bool:
        try:
            r = subprocess.run(check, check=False, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return r.returncode == 0 and r.stdout.strip() == "2.1.0"

    if py.exists() and importable():
        return None
    log(f"creating {OFFICIAL_VENV.relative_to(REPO)} (tanx-connector==2.1.0) ...")
    base = getattr(sys, "_base_executable", sys.executable)
    steps = [
        [base, "-m", "venv", "--clear", str(OFFICIAL_VENV)],
        [str(py), "-m", "pip", "install", "-q", *OFFICIAL_REQUIREMENTS],
    ]
    for step in steps:
        try:
            r = subprocess.run(step, check=False, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(step[:4])}: {exc}"
        if r.returncode != 0:
            return f"{' '.join(step[:4])} failed: {r.stderr.strip().splitlines()[-3:]}"
    return None if importable() else "tanxconnector still not importable after install"


def package_versions(python: str | Path, names: list[str]) -> dict[str, str]:
    code = (
        "import json, sys\nfrom importlib import metadata\nout = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try:\n        out[n] = metadata.version(n)\n"
        "    except metadata.PackageNotFoundError:\n        out[n] = '-'\n"
        "print(json.dumps(out))"
    )
    try:
        r = subprocess.run(
            [str(python), "-c", code, *names],
            capture_output=True,
            text=True,
            timeout=60,
        )
        data = last_json_line(r.stdout)
    except (OSError, subprocess.TimeoutExpired):
        data = None
    return {k: str(v) for k, v in (data or {}).items()}


def wait_quiet(seconds: float) -> None:
    """A short pause between runs so one run's teardown does not bleed into the next."""
    time.sleep(seconds)
