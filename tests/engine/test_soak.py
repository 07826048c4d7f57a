"""Soak: 50,000 cancels through the sandbox under every kind of fault and two token expiries.

Run with ``pytest -m soak -s`` (the default run skips it). It prints the figures a release note
can quote: ids, faults injected by kind, outcomes by status, refreshes, wall time, memory.
"""

from __future__ import annotations

import os
import random
import resource
import time
from collections import Counter
from collections.abc import Iterator

import anyio
import pytest

from tanx_async import CancelOutcome, CancelStatus
from tanx_async.testing import RequestRecord
from tests.sandbox import mismatches, running_sandbox

pytestmark = pytest.mark.soak


@pytest.fixture(autouse=True)
def only_when_asked(request: pytest.FixtureRequest) -> None:
    """A bare ``pytest`` skips the soak; ``pytest -m soak`` (as .ci/run does) runs it."""
    if "soak" not in str(request.config.getoption("markexpr", default="")):
        pytest.skip("soak test: run it with `pytest -m soak`")


CANCEL_PATH = "/sapi/v1/orders/cancel/"
N_OPEN, N_CANCELLED, N_FILLED, N_UNKNOWN = 48_000, 1_000, 500, 500
STATUSES = list(CancelStatus)


def rss_bytes() -> int:
    """Resident set size now (Linux ``/proc``; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.mark.parametrize("shapes", ["docs+fixed", "mixed+random"])
async def test_soak_50000_cancels_under_faults_and_token_expiry(shapes: str) -> None:
    """Under ``mixed+random`` every answer takes one of the sandbox's real shapes at random and
    every error text the sandbox invents is a random sentence."""
    profile, texts = shapes.split("+")
    with running_sandbox(seed=48, cancel_delay=0.005, profile=profile, texts=texts) as sandbox:
        exchange = sandbox.exchange
        open_ids = exchange.seed_orders(sandbox.uid, N_OPEN)
        closed = exchange.seed_orders(sandbox.uid, N_CANCELLED, state="cancel")
        closed += exchange.seed_orders(sandbox.uid, N_FILLED, state="done")
        for oid in closed:  # closed minutes ago (see test_faults for the skew window)
            exchange.update_order(oid, updated_at=exchange.now() - 600)
        unknown = [90_000_000 + i for i in range(N_UNKNOWN)]
        ids = open_ids + closed + unknown
        random.Random(48).shuffle(ids)
        before = {oid: exchange.order(oid).state for oid in open_ids + closed}
        index = {oid: i for i, oid in enumerate(ids)}
        seen = bytearray(len(ids))
        status_of = bytearray(len(ids))
        total = len(ids)

        faults = exchange.faults
        faults.only_paths = ("/sapi/v1/orders",)  # a lost refresh is test_faults' subject
        faults.latency, faults.latency_jitter = 0.0005, 0.001
        faults.error_rate = 0.01  # 500 JSON / 502 / 503 HTML
        faults.rate_limit_rate, faults.retry_after = 0.0005, None
        faults.drop_before_rate = 0.004
        faults.reset_rate = 0.003
        faults.drop_after_rate = 0.004
        faults.truncate_rate = 0.003
        faults.stall_rate, faults.stall_seconds = 0.0005, 2.0

        fault_counts: Counter[str] = Counter()
        windows: dict[str, tuple[float, float]] = {}
        processed: set[int] = set()
        requests_seen = 0

        def drain_log() -> None:
            """Account for the sandbox's request log and let it go (it would grow with N)."""
            log, exchange.requests = exchange.requests, []
            account(log)

        def account(log: list[RequestRecord]) -> None:
            nonlocal requests_seen
            requests_seen += len(log)
            for r in log:
                if r.fault:
                    fault_counts[r.fault] += 1
                if r.path == CANCEL_PATH and r.result == "cancel_queued" and r.order_id is not None:
                    processed.add(r.order_id)
                for name, (start, end) in windows.items():
                    if r.fault is None and start <= r.time <= end:
                        fault_counts[name] += 1

        pending_logs: list[list[RequestRecord]] = []
        samples: list[tuple[int, int]] = []  # (outcomes so far, rss)
        done = 0

        async def window(name: str, at: float, seconds: float, value: object, off: object) -> None:
            """Switch a fault without a rate on for ``seconds`` once ``at`` of the ids are done."""
            for _ in range(4000):  # at most 200 s
                if done >= at * total:
                    break
                await anyio.sleep(0.05)
            if name != "black_hole":  # the log names black-holed requests itself
                windows[name] = (time.monotonic(), time.monotonic() + seconds)
            setattr(faults, name if name != "huge_body" else "huge_body_bytes", value)
            await anyio.sleep(seconds)
            setattr(faults, name if name != "huge_body" else "huge_body_bytes", off)

        async def chores() -> None:
            expiries = [0.3, 0.7]
            while True:
                await anyio.sleep(0.25)
                samples.append((done, rss_bytes()))
                if expiries and done >= expiries[0] * total:
                    expiries.pop(0)
                    exchange.expire_access_tokens()  # invisible in the JWT's exp
                # Swap the log out; read it a turn later, when no append can still reach it.
                pending_logs.append(exchange.requests)
                exchange.requests = []
                while len(pending_logs) > 1:
                    account(pending_logs.pop(0))

        def source() -> Iterator[int]:
            yield from ids

        baseline = rss_bytes()
        started = time.monotonic()
        async with (
            sandbox.session(max_retries=8, timeout=1.0, max_response_bytes=64 * 1024) as session,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(chores)
            tg.start_soon(window, "close_keepalive", 0.15, 1.0, True, False)
            tg.start_soon(window, "huge_body", 0.45, 0.3, 100_000, None)
            tg.start_soon(window, "black_hole", 0.6, 0.2, True, False)
            with anyio.fail_after(240):
                async for outcome in session.orders.cancel_iter(source(), concurrency=64):
                    i = index[outcome.order_id]
                    seen[i] += 1
                    status_of[i] = STATUSES.index(outcome.status)
                    done += 1
            tg.cancel_scope.cancel()
        wall = time.monotonic() - started
        samples.append((done, rss_bytes()))
        await anyio.sleep(0.1)  # let the last queued cancellations take effect
        for log in pending_logs:
            account(log)
        drain_log()

        refreshes = exchange.refresh_count
        outcomes = [CancelOutcome(order_id=oid, status=STATUSES[status_of[index[oid]]]) for oid in ids]
        wrong = mismatches(exchange, outcomes, before)
        claimed = [
            o.order_id
            for o in outcomes
            if o.status in (CancelStatus.QUEUED, CancelStatus.CANCELLED) and o.order_id not in processed
        ]

    counts = Counter(o.status.value for o in outcomes)
    lost = sum(1 for s in seen if s == 0)
    duplicated = sum(1 for s in seen if s > 1)
    warm = next((rss for n, rss in samples if n >= total * 0.1), samples[0][1])
    peak = max(rss for _, rss in samples)
    mib = 1024 * 1024
    print(
        f"\nsoak ({shapes}): {total} ids ({N_OPEN} open, {N_CANCELLED} cancelled, {N_FILLED} filled, {N_UNKNOWN} unknown)"
        f"\n  wall {wall:.1f} s, {requests_seen} requests served ({requests_seen / wall:.0f}/s)"
        f"\n  faults by kind: {dict(sorted(fault_counts.items()))}"
        f"\n  outcomes: {dict(sorted(counts.items()))}"
        f"\n  lost {lost}, duplicated {duplicated}, refreshes {refreshes}, mismatches {len(wrong)}"
        f"\n  rss: before {baseline / mib:.1f} MiB, at 10% {warm / mib:.1f} MiB, peak {peak / mib:.1f} MiB"
        f" (growth after warm-up {(peak - warm) / mib:.1f} MiB)"
    )
    assert lost == 0 and duplicated == 0
    assert wrong == [], wrong[:20]
    assert claimed == []
    assert refreshes == 2
    assert counts["not_found"] == N_UNKNOWN
    assert counts["already_closed"] == N_CANCELLED + N_FILLED
    assert counts["queued"] + counts["cancelled"] == N_OPEN
    for kind in ("5xx", "429", "drop_before", "reset", "drop_after", "truncate", "stall"):
        assert fault_counts[kind] > 0, kind
    for name in ("close_keepalive", "huge_body", "black_hole"):
        assert fault_counts[name] > 0, name
    # Flat memory: once warm, the client holds O(concurrency), not O(ids).
    assert peak - warm < 64 * mib
