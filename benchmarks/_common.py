"""Stdlib-only helpers shared by the client drivers (also imported by the official-connector venv)."""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

CANCEL_PATH = "/sapi/v1/orders/cancel/"
WARMUP_ID_BASE = 900_000_000  # warm-up ids never collide with the measured ids 1..N
MAX_ERROR_SAMPLES = 5
#: Latency distributions are reported as these percentiles (0..100), each nearest-rank.
LATENCY_PERCENTILES = tuple(range(101))


def make_access_token(lifetime_s: int = 86_400) -> str:
    """A JWT-shaped access token (unsigned; the fake server only checks the ``JWT `` scheme)."""

    def b64(obj: dict[str, Any]) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = {"alg": "HS256", "typ": "JWT"}
    claims = {
        "token_type": "access",
        "exp": int(time.time()) + lifetime_s,
        "iat": int(time.time()),
        "jti": "bench",
        "user_id": 1,
    }
    return f"{b64(header)}.{b64(claims)}.{base64.urlsafe_b64encode(b'sig' * 11).rstrip(b'=').decode()}"


def cpu_seconds() -> tuple[float, float]:
    """(user, sys) CPU seconds of this process, all threads."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def proc_status_kb(key: str) -> int | None:
    """A ``kB`` value (e.g. VmRSS, VmHWM) from /proc/self/status, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def check_envelope(raw: bytes, order_id: int, decoded: Any) -> str | None:
    """Return None if ``decoded`` is the success envelope for ``order_id``, else why not."""
    if not isinstance(decoded, dict):
        return f"not an object: {raw[:80]!r}"
    if decoded.get("status") != "success":
        return f"status={decoded.get('status')!r} message={decoded.get('message')!r}"
    payload = decoded.get("payload")
    if not isinstance(payload, dict):
        return "payload is not an object"
    got = payload.get("id", payload.get("order_id"))
    if got != order_id:
        return f"payload id {got!r} != {order_id}"
    return None


@dataclass
class Tally:
    """Per-run success/failure counts with a few error samples."""

    ok: int = 0
    failed: int = 0
    samples: list[str] = field(default_factory=list)
    #: Seconds per cancel (one float per measured cancel; 5,000 floats is 40 kB).
    latencies: list[float] = field(default_factory=list)

    def fail(self, why: str) -> None:
        self.failed += 1
        if len(self.samples) < MAX_ERROR_SAMPLES:
            self.samples.append(why)


@dataclass
class Result:
    """One driver run; printed as a single JSON line."""

    client: str
    n: int
    concurrency: int
    warmup: int
    wall_s: float
    cpu_s: float
    user_s: float
    sys_s: float
    maxrss_kb: int
    ok: int
    failed: int
    errors: list[str]
    hwm_before_kb: int | None = None
    hwm_after_kb: int | None = None
    rss_before_kb: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def emit(self) -> None:
        print(json.dumps(asdict(self)), flush=True)


class Meter:
    """Wall, CPU and peak-RSS measurement around the measured part of a run only."""

    #: Set by a driver (``--ticker``): started and stopped with every measurement, and its
    #: ``result()`` merged into the run's ``extra``.
    companion: Any = None
    #: Set by a driver (``--gc-freeze``): ``gc.freeze()`` just before the measured part, as an
    #: application would after its start-up (what the process imported is then never walked).
    freeze_gc = False

    def __init__(self) -> None:
        self.t0 = 0.0
        self.u0 = self.s0 = 0.0
        self.wall = self.user = self.sys = 0.0
        self.hwm_before: int | None = None
        self.hwm_after: int | None = None
        self.rss_before: int | None = None

    def start(self) -> None:
        if self.freeze_gc:
            gc.freeze()
        reset_peak_rss()
        self.rss_before = proc_status_kb("VmRSS")
        self.hwm_before = proc_status_kb("VmHWM")
        self.u0, self.s0 = cpu_seconds()
        self.t0 = time.perf_counter()
        if self.companion is not None:
            self.companion.start()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self.t0
        if self.companion is not None:
            self.companion.stop()
        u1, s1 = cpu_seconds()
        self.user, self.sys = u1 - self.u0, s1 - self.s0
        self.hwm_after = proc_status_kb("VmHWM")

    def result(
        self,
        client: str,
        n: int,
        concurrency: int,
        warmup: int,
        tally: Tally,
        **extra: Any,
    ) -> Result:
        if self.companion is not None:
            extra.update(self.companion.result())
        return Result(
            client=client,
            n=n,
            concurrency=concurrency,
            warmup=warmup,
            wall_s=self.wall,
            cpu_s=self.user + self.sys,
            user_s=self.user,
            sys_s=self.sys,
            maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            ok=tally.ok,
            failed=tally.failed,
            errors=tally.samples,
            hwm_before_kb=self.hwm_before,
            hwm_after_kb=self.hwm_after,
            rss_before_kb=self.rss_before,
            extra={**extra, "latency_ms_quantiles": latency_quantiles_ms(tally.latencies)}
            if tally.latencies
            else extra,
        )


def latency_quantiles_ms(latencies: list[float]) -> list[float]:
    """``LATENCY_PERCENTILES`` of ``latencies`` (seconds) in milliseconds, nearest rank."""
    ordered = sorted(latencies)
    last = len(ordered) - 1
    return [
        round(ordered[min(last, max(0, -(-p * len(ordered) // 100) - 1))] * 1e3, 4)
        for p in LATENCY_PERCENTILES
    ]


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:PORT")
    p.add_argument("-n", "--n", type=int, default=5000, help="orders to cancel (ids 1..N)")
    p.add_argument("-c", "--concurrency", type=int, default=64)
    p.add_argument("--warmup", type=int, default=300, help="unmeasured requests first")
    p.add_argument("--token", default=None, help="access token (default: a fresh fake JWT)")
    p.add_argument("--cafile", default=None, help="https: the CA (PEM) that signed the server's certificate")
    return p


def client_ssl(cafile: str | None) -> Any:
    """An ``ssl.SSLContext`` trusting ``cafile`` only (verification on), or None for plain http."""
    if cafile is None:
        return None
    import ssl

    return ssl.create_default_context(cafile=cafile)


def die(msg: str, code: int = 2) -> None:
    print(msg, file=sys.stderr, flush=True)
    raise SystemExit(code)


def loopback_only(url: str) -> None:
    """Refuse to benchmark anything but loopback."""
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    if host not in ("127.0.0.1", "localhost", "::1"):
        die(f"refusing non-loopback URL {url!r}")
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost,::1")
