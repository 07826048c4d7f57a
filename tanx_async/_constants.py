"""Every tunable default of tanx_async, in one place.

A trading client wants short timeouts: a cancel that takes 30 s is worse than a failed one, so
these are tuned for pulling orders off a book, not for chat completions.
"""

from __future__ import annotations

from typing import Final

MAINNET_URL: Final = "https://api.tanx.fi"
TESTNET_URL: Final = "https://api-testnet.tanx.fi"
NETWORKS: Final = {"mainnet": MAINNET_URL, "testnet": TESTNET_URL}

# Timeouts, seconds.
CONNECT_TIMEOUT: Final = 3.0
READ_TIMEOUT: Final = 5.0
WRITE_TIMEOUT: Final = 5.0
POOL_TIMEOUT: Final = 10.0
# A refresh or login gets its own bound: every waiting request depends on it.
AUTH_TIMEOUT: Final = 10.0
# One operation in all (a cancel and the look-up that settles it, a get, a page of a list),
# retries included: past this a trader learns "unknown" rather than keep waiting.
OPERATION_DEADLINE: Final = 10.0

# Retries: exponential backoff with equal jitter (half fixed, half random), capped; Retry-After honoured up to a cap.
MAX_RETRIES: Final = 3
BACKOFF_BASE: Final = 0.1
BACKOFF_CAP: Final = 2.0
RETRY_AFTER_CAP: Final = 30.0

# Connection pool and in-library concurrency. The limiter is kept a little below the pool so a
# refresh, a login or an order look-up always finds a connection during a cancel burst.
MAX_CONNECTIONS: Final = 68
MAX_CONCURRENCY: Final = 64
POOL_HEADROOM: Final = 4
KEEPALIVE_EXPIRY: Final = 30.0

# Refresh the access token this long before its JWT ``exp``.
REFRESH_SKEW: Final = 30.0

# A fleet (``tanx_async.fleet``): a Redis renewal lock outlives a dead holder by at most the
# lease (a live holder extends it every third of it); one backend call may take FLEET_TIMEOUT
# before the session works alone, and the backend is tried again FLEET_RETRY_AFTER later. A
# member without a rate limit looks for a fleet-wide 429 pause at least every FLEET_PAUSE_POLL.
FLEET_LEASE: Final = 5.0
FLEET_TIMEOUT: Final = 1.0
FLEET_RETRY_AFTER: Final = 5.0
FLEET_PAUSE_POLL: Final = 0.1

# Responses larger than this are refused rather than buffered (tanX answers are a few KiB).
MAX_RESPONSE_BYTES: Final = 8 * 1024 * 1024
# The built-in transport: the status line plus headers may not exceed this (tanX sends < 2 KiB),
# and the next address of a host is raced after this many seconds (happy eyeballs, RFC 8305).
MAX_HEAD_BYTES: Final = 64 * 1024
HAPPY_EYEBALLS_DELAY: Final = 0.25
# An idle connection is not reused within this many seconds of the server's own idle timeout
# (``Keep-Alive: timeout=N``): a request written as the server closes may or may not be processed.
SERVER_IDLE_MARGIN: Final = 1.0
# keep_warm=True: an idle connection is replaced this long (at most half its idle life) before
# it would lapse; the pool is looked at least this often (a server may close idle connections
# without notice), and never more often than MIN_TICK. A connection whose idle life is shorter
# than MIN_LIFE, or that the server closed within MIN_LIFE of opening, is not replaced (churn).
KEEP_WARM_LEAD: Final = 2.0
KEEP_WARM_POLL: Final = 1.0
KEEP_WARM_MIN_TICK: Final = 0.05
KEEP_WARM_MIN_LIFE: Final = 1.0

# The built-in transport reads into one buffer of this size per pool (asyncio's own read size).
READ_BUFFER_SIZE: Final = 256 * 1024

# At most this many answers are processed per event-loop iteration (asyncio): a burst's wave of
# answers is spread over several iterations so other tasks on the loop get their turn between.
# 3: a timer beside a burst stays as punctual as with 2, for less CPU; with 4 it slips
# (benchmarks/RESULTS.md, "Why a burst hands over 3 answers per loop iteration").
ANSWERS_PER_TURN: Final = 3
#: A batch starts this many workers per event-loop iteration (each sends a request at once).
WORKERS_STARTED_PER_TURN: Final = 4

# Batch cancellation.
CONFIRM_TIMEOUT: Final = 10.0
CONFIRM_POLL_INITIAL: Final = 0.05
CONFIRM_POLL_CAP: Final = 1.0
# The settling pass over ``unknown`` outcomes (look-ups with backoff once the exchange answers
# again): it ends at the batch deadline (without one: after the session's deadline, but at most
# this long), and after at most this many look-ups per order.
SETTLE_TIMEOUT: Final = 5.0
SETTLE_MAX_LOOKUPS: Final = 20
SETTLE_POLL_CAP: Final = 1.0
# Unknown outcomes held back for the settling pass, at most (more are delivered unsettled).
SETTLE_MAX_HELD: Final = 10_000
# Cancels queued and waiting for confirmation beside the sending (confirm=True), at most: a lazy
# id stream's workers stop taking ids while this many wait (a sized input never gets near it).
CONFIRM_MAX_PENDING: Final = 10_000
# cancel_iter keeps the outcomes its consumer has not read yet: for a sized input all of them (at
# most one per id); for a lazy input at most this many, after which the workers stop taking ids
# until the consumer reads (the cancels already sent still finish).
ITER_MAX_BUFFERED: Final = 10_000
# A lazy id stream is deduplicated against the ids in flight plus this many recently finished
# ids (memory: about 100 bytes each); a repeat from further back is cancelled and reported again.
DEDUPE_WINDOW: Final = 50_000
# The session remembers the orders it got a 2xx cancel answer for (evidence that a later refusal
# for the same order means "already queued by us"): at most this many, for this many seconds.
CANCEL_MEMORY_SIZE: Final = 10_000
CANCEL_MEMORY_WINDOW: Final = 60.0

# The private stream (``session.stream()``). After HEARTBEAT seconds of silence a ping is sent; if
# nothing arrives within another HEARTBEAT the stream counts as stalled and is reconnected.
STREAM_PATH: Final = "/private"
STREAM_HEARTBEAT: Final = 10.0
STREAM_BUFFER: Final = 1024
# Consecutive failed connects before the stream gives up (a success resets the count).
STREAM_MAX_RECONNECTS: Final = 8
STREAM_BACKOFF_BASE: Final = 0.2
STREAM_BACKOFF_CAP: Final = 5.0
# A connection counts as healthy (its reconnect a success, the backoff starting over) only once
# it has lived this long after subscribing; one that dies sooner is a failed reconnect.
STREAM_HEALTHY_AFTER: Final = 10.0
# One message (any frame sequence) may not exceed this; tanX's updates are well under 1 KiB.
STREAM_MAX_MESSAGE: Final = 1024 * 1024
# confirm=True by push: an order not confirmed by push this long after its cancel was queued is
# polled instead (confirm_with="auto"); opening the stream for a batch tries this many times.
CONFIRM_PUSH_WINDOW: Final = 3.0
# ... and at most this share of confirm_timeout, so that a short one (<= 2 * the window) still
# leaves the poll time for its look-ups (before, a confirm_timeout of 3 s or less never polled).
CONFIRM_PUSH_SHARE: Final = 0.5
CONFIRM_STREAM_ATTEMPTS: Final = 2
# With confirm_with="auto" the first cancel waits for the stream to open, so its opening is cut
# short: at most this many seconds, and at most this share of the batch's deadline; past that the
# batch confirms by polling. (A stream endpoint that took connections and never answered made a
# 2 s batch spend its whole deadline opening the stream and skip every order.)
CONFIRM_STREAM_OPEN_WITHIN: Final = 1.0
CONFIRM_STREAM_OPEN_SHARE: Final = 0.25

# How far the exchange's clock may be from ours when deciding whether an order that is now
# ``cancel`` was closed before our first (unanswered) cancel attempt or possibly by it.
CLOCK_SKEW_TOLERANCE: Final = 2.0

# An offset between the exchange's clock and ours at least this large is logged (once at WARNING).
CLOCK_SKEW_WARNING: Final = 5.0

# Listing orders.
LIST_PAGE_LIMIT: Final = 100
LIST_MAX_LIMIT: Final = 100
# The page size the exchange is sure to serve: its documented default. No largest page is
# documented, so a page of at least this many rows may be a full one cut to the exchange's own
# cap: a walk goes on after it (one page of 50-99 rows may then cost one more request). Only a
# shorter page ends the walk. (Stopping at any page shorter than the 100 asked for, a walk
# against an exchange serving 50 per page saw the first 50 orders only, and cancel_all left the
# rest open.)
LIST_SERVED_PAGE: Final = 50
# cancel_all lists a market's open orders at most this many times (see Orders.cancel_all).
CANCEL_ALL_LISTINGS: Final = 3

# The dead man's switch (``orders.dead_man_switch``). The session beats this many times per
# ``timeout``; the watchdog process must say it is ready within START seconds of being started, and
# exit within STOP seconds of a DISARM (else it is killed: disarmed, it has nothing left to do).
# DEADLINE bounds the cancelling (the parent's on an exception, the watchdog's when it fires),
# done in at most ROUNDS listings with cancels, PAUSE seconds apart (and when the deadline
# strikes after a cancel, one listing more within VERIFY seconds, to report what is open); GRACE
# more seconds and the watchdog ends itself (SIGALRM) whatever it is waiting on.
DEADMAN_TIMEOUT: Final = 2.0
DEADMAN_BEATS_PER_TIMEOUT: Final = 4
DEADMAN_START_TIMEOUT: Final = 20.0
DEADMAN_STOP_TIMEOUT: Final = 5.0
DEADMAN_DEADLINE: Final = 30.0
DEADMAN_ROUNDS: Final = 5
DEADMAN_PAUSE: Final = 0.2
DEADMAN_VERIFY: Final = 5.0
DEADMAN_GRACE: Final = 15.0
# The guard (``tanx-async guard``, a switch's heartbeat key in a redis:// fleet): it looks at the
# fleet every quarter of the shortest armed timeout, within [POLL_MIN, POLL_MAX] seconds, and says
# it runs with a key that lapses PRESENCE seconds after it stopped refreshing it. An expiry more
# than STALE seconds old (no guard ran then) is claimed but not swept: the switch's markets may
# hold orders of processes armed since; the guard says so loudly instead.
GUARD_POLL_MIN: Final = 0.05
GUARD_POLL_MAX: Final = 0.5
GUARD_PRESENCE: Final = 5.0
GUARD_STALE: Final = 60.0

# Endpoints.
CANCEL_PATH: Final = "/sapi/v1/orders/cancel/"
ORDERS_PATH: Final = "/sapi/v1/orders/"
BULK_CANCEL_PATH: Final = "/sapi/v1/user/bulkcancel/"
HEALTH_PATH: Final = "/sapi/v1/health/"

# Authentication paths (three variants exist in the wild; see AuthPaths).
NONCE_PATH: Final = "/sapi/v2/auth/nonce/"
LOGIN_PATH: Final = "/sapi/v2/auth/login/"
REFRESH_PATH: Final = "/sapi/v1/auth/token/refresh/"

USER_AGENT: Final = "tanx-async"
